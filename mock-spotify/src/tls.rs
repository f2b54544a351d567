//! HTTPS like Spotify's: a test CA that issues server certificates ([`TestCa`]), the
//! certificate and key the mock serves ([`MockTls`]), and the listener that does the TLS
//! handshake before axum sees a connection.
//!
//! Certificates are made with `rcgen` at run time, so no test carries key material and each
//! failure case (an unknown CA, an expired certificate, the wrong name) is one call away.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::MockTls;
use crate::state::App;

/// A client that never finishes its handshake must not hold a task for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an issued certificate is valid now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// Valid from 1975 to 4096 (rcgen's defaults).
    Current,
    /// Valid only during 2020: expired long ago.
    Expired,
}

/// A certificate authority for tests: its PEM certificate is what a client trusts
/// (`spotify.ca_file`), and it signs the mock's server certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A new CA named `name` (its common name), with a fresh key.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa { cert, key }
    }

    /// The CA certificate, PEM: the file a client adds to its roots.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (DNS names or IP literals such as `127.0.0.1`),
    /// signed by this CA.
    pub fn issue(&self, names: &[&str], validity: Validity) -> MockTls {
        self.issue_with(names, validity, vec![ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// A certificate for `names` that serves both ends of a connection (server and client
    /// authentication), as nodes that connect to each other present (a Redis Cluster's bus,
    /// which always asks the connecting node for its certificate).
    pub fn issue_for_peers(&self, names: &[&str]) -> MockTls {
        let both = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue_with(names, Validity::Current, both)
    }

    fn issue_with(
        &self,
        names: &[&str],
        validity: Validity,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> MockTls {
        let key = KeyPair::generate().expect("generate a server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "mock-spotify");
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the server certificate");
        MockTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The rustls server side of `tls`; ALPN offers `h2` first when `http2`, as Spotify does.
fn acceptor(tls: &MockTls, http2: bool) -> io::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| io::Error::other(format!("MockTls::cert_pem: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|e| io::Error::other(format!("MockTls::key_pem holds no private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = match http2 {
        true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        false => vec![b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener whose connections have finished the TLS handshake. Handshakes run as tasks
/// of their own, so a client that fails one (a gateway refusing the certificate) or stalls
/// holds up nobody else.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    pub(crate) fn new(
        tcp: TcpListener,
        tls: &MockTls,
        http2: bool,
        app: Arc<App>,
    ) -> io::Result<TlsListener> {
        let acceptor = acceptor(tls, http2)?;
        let addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // The socket closes as soon as the server stops (the receiver is dropped).
                let (stream, peer) = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::debug!(error = %e, "mock-spotify accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx, app) = (acceptor.clone(), tx.clone(), Arc::clone(&app));
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let wire = &app.wire;
                            wire.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                            let conn = tls.get_ref().1;
                            if conn.alpn_protocol() == Some(b"h2") {
                                wire.tls_handshakes_h2.fetch_add(1, Ordering::Relaxed);
                            }
                            if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                                wire.tls_resumed.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
