//! The admin listener: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (ready to
//! take traffic; fails from the moment shutdown begins), and the admin API under
//! `/admin/v1/` (`admin_api`), which exists only here and only when `[admin]` has a token.
//! With the cargo feature `test-clock` (integration tests only) also `POST /test/clock`,
//! which moves the gateway's clock forward (`clock`).

pub mod api;
pub mod client;

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::server::apps::Apps;
use crate::server::state::Gateway;

pub struct AdminApp {
    apps: Arc<Apps>,
    /// The first app: the process-wide parts (metrics, lifecycle, store) are the same in all.
    gw: Arc<Gateway>,
}

impl AdminApp {
    pub fn new(apps: Arc<Apps>) -> AdminApp {
        let gw = Arc::clone(apps.first());
        AdminApp { apps, gw }
    }
}

fn text(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// `/readyz` waits no longer than this for the store to answer.
const STORE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl AdminApp {
    async fn readyz(&self) -> Response<Vec<u8>> {
        const PLAIN: &str = "text/plain; charset=utf-8";
        if self.gw.is_shutting_down() {
            return text(503, PLAIN, b"shutting down\n".to_vec());
        }
        if !self.gw.is_serving() {
            return text(503, PLAIN, b"starting\n".to_vec());
        }
        let store = self.gw.sessions.store();
        let problem = match tokio::time::timeout(STORE_PING_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("session store unavailable: {e}")),
            Err(_) => Some(format!(
                "session store ({}) did not answer in time",
                store.backend()
            )),
        };
        // Counted after the ping (which may take a moment): a write-back that landed
        // meanwhile is not reported.
        let unsaved: usize = self
            .apps
            .all()
            .iter()
            .map(|g| g.sessions.unsaved_count())
            .sum();
        let waiting = (unsaved > 0).then(|| {
            format!(
                "{unsaved} refreshed session(s) not yet saved to the session store; a restart \
                 now would lose them"
            )
        });
        match (problem, waiting) {
            (None, None) => text(200, PLAIN, b"ready\n".to_vec()),
            (problem, waiting) => {
                let reason = [problem, waiting].into_iter().flatten().collect::<Vec<_>>();
                text(503, PLAIN, format!("{}\n", reason.join("\n")).into_bytes())
            }
        }
    }
}

/// `POST /test/clock?advance_ms=N`: the gateway's clock moves N ms forward, so a test sees a
/// token or a cool-down run out without waiting for it. Never in a production build.
#[cfg(feature = "test-clock")]
const TEST_CLOCK: &str = "/test/clock";

#[cfg(feature = "test-clock")]
fn advance_clock(req: &pingora::http::RequestHeader) -> Response<Vec<u8>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method != http::Method::POST {
        return text(405, PLAIN, b"POST only\n".to_vec());
    }
    let by = req.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "advance_ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
    });
    match by {
        Some(ms) => {
            let offset = crate::clock::test_clock::advance(ms);
            text(200, PLAIN, format!("offset_ms {offset}\n").into_bytes())
        }
        None => text(400, PLAIN, b"?advance_ms=N expected\n".to_vec()),
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // The header is in: tells the listener's header deadline (`listeners`).
        if let Some(context) = session.take_connection_user_context() {
            crate::server::guards::RequestContext::header_read(context);
        }
        let path = session.req_header().uri.path().to_string();
        let route = match path.as_str() {
            "/metrics" | "/healthz" | "/readyz" => path.as_str(),
            #[cfg(feature = "test-clock")]
            TEST_CLOCK => TEST_CLOCK,
            p if p.starts_with(crate::admin::api::PREFIX) => crate::admin::api::route_label(p),
            _ => "unmatched",
        };
        let resp = match route {
            r if r.starts_with(crate::admin::api::PREFIX) => {
                crate::admin::api::serve(&self.apps, session.req_header()).await
            }
            "/metrics" => {
                for app in self.apps.all() {
                    app.sessions.count_reauth_due();
                }
                text(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.gw.metrics.render(),
                )
            }
            "/healthz" => text(200, "text/plain; charset=utf-8", b"ok\n".to_vec()),
            "/readyz" => self.readyz().await,
            #[cfg(feature = "test-clock")]
            TEST_CLOCK => advance_clock(session.req_header()),
            _ => text(404, "text/plain; charset=utf-8", b"not found\n".to_vec()),
        };
        self.gw
            .metrics
            .requests
            .with_label_values(&[
                // The admin listener is no app's.
                "",
                "admin",
                route,
                crate::telemetry::metrics::status_class(resp.status().as_u16()),
            ])
            .inc();
        resp
    }
}
