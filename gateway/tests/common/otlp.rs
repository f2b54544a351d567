//! A real OTLP/HTTP receiver on loopback: it takes `POST /v1/traces`, decodes each body as an
//! `ExportTraceServiceRequest` with the protocol's own definitions (`opentelemetry-proto`),
//! and keeps every span it got, flattened for the tests' questions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One span as exported.
#[derive(Clone, Debug)]
pub struct ExportedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP's `SpanKind` number (2 server, 3 client).
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    /// OTLP's status code (0 unset, 1 ok, 2 error).
    pub status: i32,
    /// The resource's attributes (`service.name`).
    pub resource: HashMap<String, String>,
    /// The spans it links to: (trace id, span id).
    pub links: Vec<(String, String)>,
}

impl ExportedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<ExportedSpan>,
    /// Every request decoded, in its `Debug` form: what a grep for a secret reads.
    dumps: Vec<String>,
    /// Each request's headers.
    headers: Vec<HashMap<String, String>>,
}

pub struct OtlpReceiver {
    /// The base URL (`tracing.otlp_endpoint`).
    pub url: String,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Received::default()));
        let app = axum::Router::new()
            .route("/v1/traces", post(take))
            .with_state(received.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver {
            url,
            received,
            task,
        }
    }

    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.received.lock().expect("lock").spans.clone()
    }

    /// The headers of every export request received.
    pub fn headers(&self) -> Vec<HashMap<String, String>> {
        self.received.lock().expect("lock").headers.clone()
    }

    /// Everything received, decoded, as text.
    pub fn dump(&self) -> String {
        self.received.lock().expect("lock").dumps.join("\n")
    }

    /// Waits until a span satisfies `what`, and returns it.
    pub async fn span(&self, describe: &str, what: impl Fn(&ExportedSpan) -> bool) -> ExportedSpan {
        let find = || self.spans().into_iter().find(|s| what(s));
        super::wait_until(
            Duration::from_secs(10),
            format!("an exported span: {describe}"),
            || async { find().is_some() },
        )
        .await;
        find().expect("found above")
    }

    /// Waits for the server span of the request whose `X-Request-Id` was `id`.
    pub async fn request_span(&self, id: &str) -> ExportedSpan {
        self.span(&format!("the request {id}"), |sp| {
            sp.attr("gateway.request_id") == Some(id)
        })
        .await
    }
}

async fn take(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = received.lock().expect("lock");
    received.headers.push(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
    );
    received.dumps.push(format!("{request:?}"));
    for rs in &request.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| flatten(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                received.spans.push(ExportedSpan {
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes: flatten(&span.attributes),
                    status: span.status.as_ref().map_or(0, |s| s.code),
                    resource: resource.clone(),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    StatusCode::OK
}

fn flatten(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A collector that accepts connections and reads what it is sent, but never answers: a
/// hanging backend.
pub struct HangingCollector {
    pub url: String,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HangingCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HangingCollector {
    pub async fn start() -> HangingCollector {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        HangingCollector {
            url,
            accepted,
            task,
        }
    }

    /// Connections it has taken (and never answered).
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
