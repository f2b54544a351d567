//! A real HTTP receiver of the gateway's webhooks, on loopback: it records every delivery
//! (headers and body) and answers as the test asks — 2xx, 500 for the first attempts of each
//! event, or never (it reads the request and holds the connection open). Over plain http, or
//! over https with a certificate from a `mock_spotify::TestCa` ([`WebhookReceiver::start_tls`]),
//! served by the same rustls the mock uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mock_spotify::MockTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the receiver answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// 200 to everything.
    Ok,
    /// 500 to the first `n` attempts of each event id, then 200.
    FailFirst(usize),
    /// Reads the request, then never answers (the connection stays open).
    Never,
}

/// One POST the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What it answered; `None` while it holds the connection.
    pub status: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn event_id(&self) -> &str {
        self.header("spotify-gateway-event-id")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    attempts: HashMap<String, usize>,
    /// Connections held open ([`Answer::Never`]).
    held: Vec<Box<dyn Send>>,
}

pub struct WebhookReceiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    /// TLS handshakes that failed (the client refused the certificate).
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// A plain http receiver.
    pub async fn start(answer: Answer) -> WebhookReceiver {
        WebhookReceiver::listen(answer, None).await
    }

    /// An https receiver serving `tls` (a certificate for `127.0.0.1` or another name).
    pub async fn start_tls(answer: Answer, tls: &MockTls) -> WebhookReceiver {
        WebhookReceiver::listen(answer, Some(acceptor(tls))).await
    }

    async fn listen(answer: Answer, tls: Option<tokio_rustls::TlsAcceptor>) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}/hooks/gateway",
            listener.local_addr().expect("addr")
        );
        let state = Arc::new(Mutex::new(State::default()));
        let refused = Arc::new(AtomicUsize::new(0));
        let (shared, refusals) = (Arc::clone(&state), Arc::clone(&refused));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, refusals) = (Arc::clone(&shared), Arc::clone(&refusals));
                match tls.clone() {
                    None => drop(tokio::spawn(serve(stream, answer, state))),
                    Some(acceptor) => drop(tokio::spawn(async move {
                        match acceptor.accept(stream).await {
                            Ok(stream) => serve(stream, answer, state).await,
                            Err(_) => {
                                refusals.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })),
                }
            }
        });
        WebhookReceiver {
            url,
            state,
            refused,
            task,
        }
    }

    /// TLS handshakes that failed: attempts that reached the receiver but never got to send.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Every POST so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Connections it holds open without answering.
    pub fn held(&self) -> usize {
        self.state.lock().unwrap().held.len()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The server side of `tls`, HTTP/1.1 only (as the gateway's webhook client speaks it).
fn acceptor(tls: &MockTls) -> tokio_rustls::TlsAcceptor {
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).expect("a private key PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn serve<S>(mut stream: S, answer: Answer, state: Arc<Mutex<State>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some((headers, body)) = read_request(&mut stream).await else {
        return;
    };
    let id = headers
        .get("spotify-gateway-event-id")
        .cloned()
        .unwrap_or_default();
    let status = {
        let mut st = state.lock().unwrap();
        let n = st.attempts.entry(id).or_insert(0);
        *n += 1;
        let status = match answer {
            Answer::Ok => Some(200),
            Answer::FailFirst(fails) if *n <= fails => Some(500),
            Answer::FailFirst(_) => Some(200),
            Answer::Never => None,
        };
        st.received.push(Received {
            headers,
            body,
            status,
        });
        status
    };
    match status {
        Some(status) => {
            let reason = if status == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
        }
        None => state.lock().unwrap().held.push(Box::new(stream)),
    }
}

/// One HTTP/1.1 request with a `Content-Length` body: lowercase headers and the body.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Option<(HashMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut headers = HashMap::new();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}

/// Checks `Spotify-Gateway-Signature` (`t=<unix>,v1=<hex>`) as a receiver would, with its own
/// HMAC-SHA256 over `"<t>.<body>"`: true when some `v1` matches.
pub fn signature_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    sigs.contains(&expected)
}

pub const WEBHOOK_SECRET: &str = "test-webhook-secret-do-not-log-0123";
pub const WEBHOOK_SECRET_VAR: &str = "TEST_WEBHOOK_SECRET";

/// `[[webhooks]]` entries, as TOML tables.
pub fn webhooks(doc: &mut toml_edit::DocumentMut, hooks: &[toml_edit::Table]) {
    let mut array = toml_edit::ArrayOfTables::new();
    for hook in hooks {
        array.push(hook.clone());
    }
    doc["webhooks"] = toml_edit::Item::ArrayOfTables(array);
}

/// One `[[webhooks]]` entry: `name`, `url`, the secret from [`WEBHOOK_SECRET_VAR`], and `extra`
/// keys.
pub fn hook(name: &str, url: &str, extra: &[(&str, toml_edit::Value)]) -> toml_edit::Table {
    let mut t = toml_edit::Table::new();
    t["name"] = toml_edit::value(name);
    t["url"] = toml_edit::value(url);
    t["secret_env"] = toml_edit::value(WEBHOOK_SECRET_VAR);
    for (k, v) in extra {
        t[*k] = toml_edit::Item::Value(v.clone());
    }
    t
}
