//! The internal app behind the gateway's public listener.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::Ports;

/// Which app [`super::StackBuilder::app`] starts on `ports.app` before the gateway.
pub enum App {
    /// Nothing listens there (tests of the egress listener only).
    None,
    /// [`start_echo_app`].
    Echo,
    /// [`start_recording_app`]; the hits are [`super::Stack::hits`].
    Recording,
    /// Any other app, given its bound listener and the gateway's ports.
    Custom(Box<dyn FnOnce(tokio::net::TcpListener, Ports) -> JoinHandle<()> + Send>),
}

impl App {
    pub fn custom(
        start: impl FnOnce(tokio::net::TcpListener, Ports) -> JoinHandle<()> + Send + 'static,
    ) -> App {
        App::Custom(Box::new(start))
    }
}

async fn bind(port: u16) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the app")
}

/// Starts `app` on `ports.app`: its task, and the hits when it records them.
pub(super) async fn start_app(app: App, ports: Ports) -> (Option<JoinHandle<()>>, Option<Hits>) {
    match app {
        App::None => (None, None),
        App::Echo => (Some(start_echo_app(ports.app).await), None),
        App::Recording => (None, Some(start_recording_app(ports.app).await)),
        App::Custom(start) => (Some(start(bind(ports.app).await, ports)), None),
    }
}

/// The internal app for tests: answers every request with what it received, as JSON
/// `{"method","path","headers":{name: value}}`.
pub async fn start_echo_app(port: u16) -> JoinHandle<()> {
    use axum::http::{HeaderMap, Method, Uri};
    async fn echo(method: Method, uri: Uri, headers: HeaderMap) -> axum::Json<Value> {
        let mut map = serde_json::Map::new();
        for (name, value) in &headers {
            let value = value.to_str().unwrap_or("<binary>").to_string();
            map.entry(name.as_str().to_string())
                .and_modify(|v| {
                    *v = Value::String(format!("{}, {value}", v.as_str().unwrap_or("")))
                })
                .or_insert(Value::String(value));
        }
        axum::Json(json!({
            "method": method.as_str(),
            "path": uri.to_string(),
            "headers": map,
        }))
    }
    let listener = bind(port).await;
    let router = axum::Router::new().fallback(echo);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })
}

/// One request as the recording app received it.
#[derive(Clone, Debug)]
pub struct AppHit {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl AppHit {
    /// Values of a header whose name is `name` once `_` is read as `-` (as CGI/WSGI-style
    /// app servers do), in any case.
    pub fn lookalike_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().replace('_', "-") == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Every request the recording app received, oldest first.
pub type Hits = Arc<Mutex<Vec<AppHit>>>;

/// The recording app: records every request (headers as sent, in order, and the body) and
/// answers with `{"path", "headers": [[name, value], ...]}`.
pub async fn start_recording_app(port: u16) -> Hits {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, Uri};
    async fn record(
        State(hits): State<Hits>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::Json<Value> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_string(), v)
            })
            .collect();
        let echo = json!({ "path": uri.to_string(), "headers": headers });
        hits.lock().expect("hits").push(AppHit {
            method: method.to_string(),
            path: uri.to_string(),
            headers,
            body: body.to_vec(),
        });
        axum::Json(echo)
    }
    let hits = Hits::default();
    let listener = bind(port).await;
    let router = axum::Router::new()
        .fallback(record)
        .with_state(hits.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    hits
}
