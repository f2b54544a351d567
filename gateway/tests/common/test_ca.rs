//! A test CA (`mock_spotify::TestCa`) with its certificate in a file a config can name
//! (`spotify.ca_file`, a webhook's `ca_file`), and a Spotify on `https://` behind it
//! ([`StackBuilder::mock_over_tls`]).

use mock_spotify::{TestCa, Validity};

use super::StackBuilder;

/// The names the mock's good certificate is for: the harness points the gateway at
/// `https://127.0.0.1:PORT`.
pub const LOOPBACK: &[&str] = &["127.0.0.1", "localhost"];

/// A test CA and its certificate written where a config can name it.
pub struct Ca {
    pub ca: TestCa,
    /// Where the certificate is (more files may go next to it).
    pub dir: tempfile::TempDir,
    path: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let ca = TestCa::new(name);
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, ca.cert_pem()).expect("write CA");
        Ca {
            ca,
            path: file.display().to_string(),
            dir,
        }
    }

    /// The certificate's file.
    pub fn file(&self) -> &str {
        &self.path
    }

    /// A client (a browser without redirects, with cookies) that trusts only this CA.
    pub fn browser(&self) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.ca.cert_pem().as_bytes()).expect("pem");
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }
}

impl StackBuilder {
    /// The mock on `https://` with a good certificate from `ca` for [`LOOPBACK`], and the
    /// gateway trusting `ca` through `spotify.ca_file`.
    pub fn mock_over_tls(self, ca: &Ca) -> StackBuilder {
        let tls = ca.ca.issue(LOOPBACK, Validity::Current);
        self.mock_config(move |c| c.tls = Some(tls))
            .set("spotify.ca_file", ca.file())
    }
}
