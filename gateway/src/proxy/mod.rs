//! The two proxy listeners (pingora `ProxyHttp`): `public` (login, sessions, identity to the
//! internal app) and `egress` (internal apps to Spotify's Web API), and what they share: the
//! upstream address (`upstream`), the one failure-to-answer mapping (`respond`), the one path
//! rule (`path_rule`), the headers dropped on the way upstream (`headers`), request ids, trace
//! context (`trace`) and the access record.
//!
//! Phase order is pingora's (docs/user_guide/phase.md): `request_filter` answers locally or
//! picks the token, `upstream_peer` picks the address, `upstream_request_filter` rewrites the
//! headers, `upstream_response_filter` sees the answer, `logging` records metrics. What each
//! listener does at each phase, in order, is in the repository's docs/phases.md.

pub mod assertion;
pub mod egress;
pub mod headers;
pub mod pages;
pub mod path_rule;
pub mod public;
pub mod respond;
pub mod trace;
pub mod upstream;

use std::time::Instant;

use opentelemetry::KeyValue;
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::telemetry::traces::{RequestSpan, Traces};

pub use upstream::UpstreamTarget;

/// Headers that carry identity or credentials between the gateway and its clients. A client
/// never gets to choose them on the way in, and they never travel on to an upstream.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-spotify-user-id",
    "x-spotify-account-id",
    "x-spotify-scopes",
    "x-gateway-user",
    "x-gateway-app",
];

/// A request id from the client when it looks like one, else a new one (`crate::telemetry::request_id`,
/// the rule the admin listener follows too).
pub fn request_id(session: &Session) -> String {
    crate::telemetry::request_id::of(&session.req_header().headers)
}

/// The status written to the client, or 0 when none was.
pub fn response_status(session: &Session) -> u16 {
    session
        .response_written()
        .map(|r| r.status.as_u16())
        .unwrap_or(0)
}

/// Method and path only: pingora logs this summary with errors, and a query string can carry
/// an authorization code or state.
pub fn request_summary(session: &Session) -> String {
    let req = session.req_header();
    format!("{} {}", req.method, req.uri.path())
}

/// What both listeners know of every request from its first phase: when it started, its
/// route label, its request id and its trace.
pub struct RequestInfo {
    pub started: Instant,
    pub route: &'static str,
    pub id: String,
    /// The HTTP version the upstream answered with (`h2`, `http/1.1`), once it has.
    pub upstream_protocol: Option<&'static str>,
    pub trace: trace::TraceContext,
    /// The request's span while `tracing.enabled` is on (`telemetry::traces`).
    pub span: Option<RequestSpan>,
    /// No app took the request (`[[apps]]`: a host no app serves, a call naming no app).
    pub no_app: bool,
}

impl Default for RequestInfo {
    fn default() -> RequestInfo {
        RequestInfo {
            started: Instant::now(),
            route: "unmatched",
            id: String::new(),
            upstream_protocol: None,
            trace: trace::TraceContext::default(),
            span: None,
            no_app: false,
        }
    }
}

impl RequestInfo {
    /// The first phase: the request id and the trace context from the client's headers, and
    /// the request's span (continuing the client's trace) when tracing is on; the upstream then
    /// gets the span as its parent.
    pub fn begin(&mut self, listener: &'static str, session: &Session, traces: &Traces) {
        self.id = request_id(session);
        self.trace = trace::TraceContext::of(session.req_header());
        let given = self.trace.kept.then_some(self.trace.traceparent.as_str());
        self.span = traces.request(listener, given);
        if let Some(span) = &self.span {
            span.set([KeyValue::new("gateway.request_id", self.id.clone())]);
            // HTTP semantic conventions: the host the client addressed (never the path, which
            // can name a user; `http.route` is the template).
            let host = session.req_header().headers.get(http::header::HOST);
            let parsed = host
                .and_then(|h| h.to_str().ok())
                .and_then(|h| crate::net::host::HostPort::parse(h).ok());
            if let Some(crate::net::host::HostPort { host, port }) = parsed {
                span.set([KeyValue::new("server.address", host)]);
                if let Some(port) = port {
                    span.set([KeyValue::new("server.port", i64::from(port))]);
                }
            }
            self.trace.traceparent = span.traceparent();
        }
    }

    /// The `logging` phase: metrics and one access log line. `user` is the session the
    /// request acted for; its user id is logged only where configured.
    pub fn record(
        &self,
        listener: &'static str,
        user: Option<&crate::session::LiveSession>,
        gw: &crate::server::state::Gateway,
        session: &Session,
        e: Option<&Error>,
    ) {
        let status = response_status(session);
        let elapsed = self.started.elapsed();
        if let Some(span) = &self.span {
            if let Some(e) = e {
                span.set([KeyValue::new("error.type", e.etype().as_str())]);
            }
            if let Some(protocol) = self.upstream_protocol {
                span.set([KeyValue::new("gateway.upstream_protocol", protocol)]);
            }
        }
        // A request no app took (an unknown host, a call naming no app) is no app's.
        let app = (!self.no_app).then_some(gw.app.name.as_str());
        if let (Some(span), Some(app)) = (&self.span, app) {
            span.set([KeyValue::new("gateway.app", app.to_string())]);
        }
        if let (Some(span), Some(user)) = (&self.span, user) {
            // The audit events' name for the user: its keyed hash unless `log_user_id`.
            let (name, plain) = gw.events.user_name(&user.user_id());
            let key = if plain {
                "enduser.id"
            } else {
                "enduser.pseudo.id"
            };
            span.set([KeyValue::new(key, name)]);
        }
        gw.metrics.observe_request(
            app.unwrap_or(""),
            listener,
            self.route,
            status,
            elapsed.as_secs_f64(),
        );
        let user = user.filter(|_| gw.live().log_user_id).map(|s| s.user_id());
        tracing::info!(
            target: "access",
            listener,
            app,
            request_id = %self.id,
            trace_id = %self.trace.trace_id(),
            method = %session.req_header().method,
            route = self.route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            user = user.as_deref(),
            upstream_protocol = self.upstream_protocol,
            error = e.map(|e| e.etype().as_str()),
        );
    }

    /// Ends the request's span (after `record`, which may add to it).
    pub fn end_span(&mut self, session: &Session) {
        if let Some(span) = self.span.take() {
            let method = session.req_header().method.as_str();
            span.end(method, self.route, response_status(session));
        }
    }
}
