//! The one set of roots both clients to Spotify trust, and what a failed TLS handshake means.
//!
//! The token client (reqwest) would otherwise carry a compiled-in root list and the egress
//! proxy (pingora) the system's: a CA added with `update-ca-certificates` was trusted by one
//! and not the other. Here the system's roots (rustls-native-certs: `/etc/ssl/certs`, or
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus `spotify.ca_file` become one [`Trust`], handed to
//! reqwest as a rustls config and to pingora's connector once, when the egress proxy is built
//! ([`Trust::connector_roots`]): a per-peer CA list would make pingora build a TLS config for
//! every connection, and a fresh config has no session cache, so no reconnection could resume
//! (issue 29). With several apps the one connector takes the union of their roots
//! ([`Trust::connector_roots_of`]; why in `server::build`). Verification is never switched
//! off: there is no option for it.
//!
//! A failed handshake is classified once ([`classify`]) into a bounded [`TlsReason`], for the
//! caller's 502, the operator's log line and the `upstream_tls_failures_total` counter.

use std::io;
use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::config::CaFile;
use crate::telemetry::metrics::Metrics;

/// The roots the gateway trusts for Spotify, in the two forms its clients take.
pub struct Trust {
    roots: Arc<RootCertStore>,
    /// The same certificates as they were read, for pingora's connector (a PEM bundle).
    certs: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// The system's roots plus `extra`. A system certificate that cannot serve as a root is
    /// skipped with a warning; `extra` was checked by config validation.
    pub fn load(extra: Option<&CaFile>) -> io::Result<Trust> {
        Trust::load_for(extra, "Spotify", "spotify.ca_file")
    }

    /// [`Trust::load`] for another client (a webhook): `purpose` and `key` name it in the
    /// log and errors.
    pub fn load_for(extra: Option<&CaFile>, purpose: &str, key: &str) -> io::Result<Trust> {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "cannot read some of the system's CA certificates");
        }
        let extra_certs = extra
            .into_iter()
            .flat_map(|f| f.certs.iter().map(|c| CertificateDer::from(c.clone())));
        let mut roots = RootCertStore::empty();
        let mut certs = Vec::new();
        let mut skipped = 0;
        for cert in native.certs.into_iter().chain(extra_certs) {
            match roots.add(cert.clone()) {
                Ok(()) => certs.push(cert),
                Err(_) => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "some CA certificates cannot serve as roots; skipped"
            );
        }
        if let (Some(f), true) = (extra, roots.is_empty()) {
            // Validation accepted the file, so this means the parsers disagree.
            return Err(io::Error::other(format!(
                "{key} = {:?}: no usable CA certificate",
                f.path
            )));
        }
        if roots.is_empty() {
            tracing::error!(
                "no CA certificates found on this system: no https:// {purpose} can be \
                 trusted; install ca-certificates or set {key}"
            );
        }
        tracing::info!(
            roots = roots.len(),
            ca_file = ?extra.map(|f| &f.path),
            "trusting these roots for {purpose}"
        );
        Ok(Trust {
            roots: Arc::new(roots),
            certs,
        })
    }

    /// The rustls config for the token client (`reqwest::ClientBuilder::use_preconfigured_tls`).
    pub fn client_config(&self) -> io::Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth())
    }

    /// The same roots as a PEM bundle for pingora's connector (`ConnectorOptions::ca_file`,
    /// which takes a path and reads it once, when the proxy is built); `None` when there are
    /// none (the connector then reads the system's, which are none either). The bundle lives
    /// in memory (a memfd named by `/proc/self/fd`), so a read-only file system is no
    /// obstacle and nothing is left behind; keep it until the proxy is built.
    pub fn connector_roots(&self) -> io::Result<Option<RootsFile>> {
        Trust::connector_roots_of([self])
    }

    /// [`Trust::connector_roots`] for the one connector of several apps (`[[apps]]`): the
    /// union of their roots (the system's once, plus every app's `spotify.ca_file`), each
    /// certificate once.
    pub fn connector_roots_of<'a>(
        trusts: impl IntoIterator<Item = &'a Trust>,
    ) -> io::Result<Option<RootsFile>> {
        let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        let mut certs: Vec<&CertificateDer<'static>> = Vec::new();
        for cert in trusts.into_iter().flat_map(|t| t.certs.iter()) {
            if seen.insert(cert.as_ref()) {
                certs.push(cert);
            }
        }
        if certs.is_empty() {
            return Ok(None);
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut pem = String::with_capacity(certs.len() * 2048);
        for cert in certs {
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            let text = b64.encode(cert.as_ref());
            for line in text.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).unwrap_or_default());
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        RootsFile::new(pem.as_bytes()).map(Some)
    }
}

/// A PEM bundle pingora's connector can read by path, gone when dropped.
pub struct RootsFile {
    file: std::fs::File,
}

impl RootsFile {
    fn new(pem: &[u8]) -> io::Result<RootsFile> {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create takes a NUL-terminated name and flags; the fd it returns is
        // new and ours alone, so `File` may own it.
        let fd = unsafe { libc::memfd_create(c"spotify-gateway-roots".as_ptr(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(pem)?;
        Ok(RootsFile { file })
    }

    /// A path that reads the bundle from its start, for as long as `self` lives.
    pub fn path(&self) -> String {
        use std::os::fd::AsRawFd;
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }
}

/// The same set for the Redis client (`store.ca_file`), which takes its roots as one PEM
/// bundle: the system's roots plus `extra`, so a `rediss://` store trusts what the clients to
/// Spotify trust, and what `store.ca_file` adds.
pub fn roots_pem(extra: Option<&CaFile>) -> io::Result<Vec<u8>> {
    use base64::Engine;
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "cannot read some of the system's CA certificates");
    }
    let extra_certs = extra.into_iter().flat_map(|f| f.certs.iter().cloned());
    let mut pem = Vec::new();
    for der in native
        .certs
        .into_iter()
        .map(|c| c.to_vec())
        .chain(extra_certs)
    {
        // A certificate rustls cannot use as a root would fail the whole bundle in the Redis
        // client: skip it here, as `Trust::load_for` does.
        if RootCertStore::empty()
            .add(CertificateDer::from(der.clone()))
            .is_err()
        {
            continue;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    if pem.is_empty() {
        return Err(io::Error::other(
            "no CA certificates: install ca-certificates or set store.ca_file",
        ));
    }
    Ok(pem)
}

/// Why a TLS connection to Spotify failed; each is a label value of
/// `upstream_tls_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsReason {
    /// Signed by a CA the gateway does not trust.
    Untrusted,
    /// Expired, or not valid yet.
    Expired,
    /// Valid, but not for the host the gateway connected to.
    WrongName,
    /// Any other problem with the certificate (bad signature, wrong usage...).
    BadCertificate,
    /// The handshake failed for a reason other than the certificate.
    Handshake,
}

impl TlsReason {
    pub fn label(self) -> &'static str {
        match self {
            TlsReason::Untrusted => "untrusted",
            TlsReason::Expired => "expired",
            TlsReason::WrongName => "wrong_name",
            TlsReason::BadCertificate => "bad_certificate",
            TlsReason::Handshake => "handshake",
        }
    }

    /// The cause, as the caller's answer names it.
    pub fn cause(self) -> &'static str {
        match self {
            TlsReason::Untrusted => "certificate not trusted",
            TlsReason::Expired => "certificate expired",
            TlsReason::WrongName => "certificate for the wrong name",
            TlsReason::BadCertificate => "certificate invalid",
            TlsReason::Handshake => "TLS handshake failed",
        }
    }

    /// What the operator can do about it, for a client whose extra roots are the config key
    /// `ca_file` and whose server is named by `url` (e.g. `spotify.ca_file`, or a webhook's).
    pub fn remedy(self, ca_file: &str, url: &str) -> String {
        match self {
            TlsReason::Untrusted | TlsReason::BadCertificate => format!(
                "if this CA is meant to be trusted (a test set-up, TLS inspection), add it to \
                 the system store (update-ca-certificates) or set {ca_file} to a PEM bundle \
                 holding it"
            ),
            TlsReason::Expired => format!(
                "the server's certificate must be renewed (or this machine's clock is wrong); \
                 {ca_file} cannot help"
            ),
            TlsReason::WrongName => {
                format!("the certificate was issued for another host: check the host in {url}")
            }
            TlsReason::Handshake => {
                "check that the URL points at a TLS server speaking TLS 1.2 or 1.3".to_string()
            }
        }
    }

    /// Whether trying again could help: never for the certificate itself.
    pub fn is_certificate(self) -> bool {
        self != TlsReason::Handshake
    }
}

impl std::fmt::Display for TlsReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.cause())
    }
}

/// The client that met the failure, a label value of `upstream_tls_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsTarget {
    /// The token endpoint (`spotify.accounts_url`).
    Accounts,
    /// The Web API (`spotify.api_url`), through the egress proxy or `/v1/me` after a login.
    Api,
}

impl TlsTarget {
    fn label(self) -> &'static str {
        match self {
            TlsTarget::Accounts => "accounts",
            TlsTarget::Api => "api",
        }
    }
}

/// What a TLS failure means, from the error's text (rustls's error reaches both clients only
/// as text: pingora keeps the message, reqwest wraps it in `io::Error`). `tls_error` says the
/// error is known to come from a TLS handshake (pingora's `TLSHandshakeFailure`); without a
/// certificate problem in the text it is then `Handshake`. `None`: not a TLS failure.
pub fn classify(chain: &str, tls_error: bool) -> Option<TlsReason> {
    if chain.contains("invalid peer certificate") {
        let has = |words: &[&str]| words.iter().any(|w| chain.contains(w));
        return Some(if has(&["UnknownIssuer", "UnknownCA"]) {
            TlsReason::Untrusted
        } else if has(&[
            "Expired",
            "certificate expired",
            "NotValidYet",
            "not valid yet",
        ]) {
            TlsReason::Expired
        } else if has(&["NotValidForName", "not valid for name"]) {
            TlsReason::WrongName
        } else {
            TlsReason::BadCertificate
        });
    }
    let handshake = [
        "received fatal alert",
        "peer is incompatible",
        "peer misbehaved",
    ];
    (tls_error || handshake.iter().any(|w| chain.contains(w))).then_some(TlsReason::Handshake)
}

/// An error and its sources, e.g. "client error: error sending request: connection refused":
/// rustls's reason is deep in reqwest's chain, and [`classify`] reads the text.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A pingora error from connecting to the API, when it is a TLS failure.
pub fn classify_proxy_error(e: &pingora::Error) -> Option<TlsReason> {
    use pingora::ErrorType::{InvalidCert, TLSHandshakeFailure};
    let tls = matches!(e.etype(), TLSHandshakeFailure | InvalidCert);
    classify(&e.to_string(), tls)
}

/// Counts the failure and tells the operator what to do (error level: nothing reaches Spotify
/// until someone acts).
pub fn report(metrics: &Metrics, target: TlsTarget, host: &str, reason: TlsReason) {
    metrics
        .upstream_tls_failures
        .with_label_values(&[target.label(), reason.label()])
        .inc();
    tracing::error!(
        target_host = host,
        client = target.label(),
        reason = reason.label(),
        "TLS to {host} failed: {}; {}",
        reason.cause(),
        reason.remedy(
            "spotify.ca_file",
            "spotify.api_url and spotify.accounts_url"
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn certificate_problems_are_told_apart_from_rustls_messages() {
        let cases = [
            (
                "error sending request: client error (Connect): invalid peer certificate: \
                 UnknownIssuer",
                TlsReason::Untrusted,
            ),
            (
                "TLS connect() failed: invalid peer certificate: certificate expired: \
                 verification time 1 (UNIX), but certificate is not valid after 0",
                TlsReason::Expired,
            ),
            ("invalid peer certificate: Expired", TlsReason::Expired),
            (
                "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; \
                 certificate is only valid for DnsName(\"wrong.example\")",
                TlsReason::WrongName,
            ),
            (
                "invalid peer certificate: BadSignature",
                TlsReason::BadCertificate,
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(classify(text, false), Some(reason), "{text}");
            assert_eq!(classify(text, true), Some(reason), "{text}");
        }
    }

    #[test]
    fn other_handshake_failures_and_non_tls_errors() {
        assert_eq!(
            classify("received fatal alert: HandshakeFailure", false),
            Some(TlsReason::Handshake)
        );
        assert_eq!(
            classify("tls stream error", true),
            Some(TlsReason::Handshake)
        );
        assert_eq!(classify("connection refused", false), None);
        assert!(!TlsReason::Handshake.is_certificate());
        assert!(TlsReason::Expired.is_certificate());
    }

    #[test]
    fn a_pingora_handshake_error_is_classified_from_its_context() {
        let e = pingora::Error::explain(
            pingora::ErrorType::TLSHandshakeFailure,
            "TLS connect() failed: invalid peer certificate: UnknownIssuer, SNI: 127.0.0.1",
        );
        assert_eq!(classify_proxy_error(&e), Some(TlsReason::Untrusted));
        let refused = pingora::Error::explain(pingora::ErrorType::ConnectRefused, "refused");
        assert_eq!(classify_proxy_error(&refused), None);
    }

    #[test]
    fn the_system_roots_and_the_ca_file_are_one_set() {
        let none = Trust::load(None).expect("system roots");
        let system = none.roots.len();
        let pem = mock_spotify::TestCa::new("unit test CA").cert_pem();
        let ca = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.expect("pem").to_vec())
            .collect();
        let file = CaFile {
            path: "test-ca.pem".into(),
            certs: ca,
        };
        let with = Trust::load(Some(&file)).expect("roots and file");
        assert_eq!(with.roots.len(), system + 1);
        assert_eq!(with.certs.len(), system + 1);
        with.client_config().expect("a rustls config");
        // pingora's connector reads the same set from the bundle.
        let bundle = with.connector_roots().expect("bundle").expect("some roots");
        let mut store = RootCertStore::empty();
        pingora::tls::load_ca_file_into_store(bundle.path(), &mut store).expect("pingora reads it");
        assert_eq!(store.len(), system + 1);
        // Several apps' connector: the system's roots once, and each app's CA.
        let other_pem = mock_spotify::TestCa::new("another app's CA").cert_pem();
        let other = CaFile {
            path: "other-ca.pem".into(),
            certs: rustls::pki_types::CertificateDer::pem_slice_iter(other_pem.as_bytes())
                .map(|c| c.expect("pem").to_vec())
                .collect(),
        };
        let other = Trust::load(Some(&other)).expect("roots and the other file");
        let union = Trust::connector_roots_of([&with, &none, &other, &with])
            .expect("bundle")
            .expect("some roots");
        let mut store = RootCertStore::empty();
        pingora::tls::load_ca_file_into_store(union.path(), &mut store).expect("pingora reads it");
        assert_eq!(store.len(), system + 2);
    }
}
