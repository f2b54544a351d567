//! Prometheus metrics, prefix `spotify_gateway_`. Labels take bounded values only: listener
//! names, route templates, status classes, results. Never a raw path, user id or token.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds: sub-millisecond proxy overhead up to slow Spotify calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub app_token_fetches: IntCounterVec,
    pub token_refreshes: IntCounterVec,
    pub token_cache: IntCounterVec,
    pub logins: IntCounterVec,
    pub playback_tokens: IntCounterVec,
    pub active_sessions: IntGaugeVec,
    pub sessions_reauth_due: IntGaugeVec,
    pub unsaved_sessions: IntGaugeVec,
    pub open_connections: IntGaugeVec,
    pub connections_refused: IntCounterVec,
    pub header_timeouts: IntCounterVec,
    pub spotify_rate_limited: IntCounterVec,
    pub rate_limited_local: IntCounterVec,
    pub rate_limit_blocked_until: IntGaugeVec,
    pub answer_cache: IntCounterVec,
    pub answers_purged: IntCounterVec,
    pub answer_cache_entries: IntGaugeVec,
    pub answer_cache_bytes: IntGaugeVec,
    pub budget: IntCounterVec,
    pub retries: IntCounterVec,
    pub upstream_body_refused: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub store_reopens: IntCounterVec,
    pub store_operations: IntCounterVec,
    pub store_failovers: IntCounter,
    pub store_master: IntGaugeVec,
    pub store_redirections: IntCounterVec,
    pub store_replica_wait_timeouts: IntCounter,
    pub token_request_duration: Histogram,
    pub upstream_tls_failures: IntCounterVec,
    pub upstream_connections: IntCounterVec,
    pub upstream_responses: IntCounterVec,
    pub audit_events: IntCounterVec,
    pub sessions_ended: IntCounterVec,
    pub streams_open: IntGaugeVec,
    pub streams_closed: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_failing: IntGaugeVec,
    pub webhook_queue_depth: IntGaugeVec,
    pub trace_spans: IntCounterVec,
}

/// Registers each metric as it is made, so a metric cannot be made and forgotten.
struct Builder {
    registry: Registry,
}

impl Builder {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.registry
            .register(Box::new(c.clone()))
            .expect("metric names are unique");
        c
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn latency_opts(name: &str, help: &str) -> HistogramOpts {
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
    }

    fn latency(&self, name: &str, help: &str) -> Histogram {
        self.add(Histogram::with_opts(Self::latency_opts(name, help)).expect("valid metric"))
    }

    fn latencies(&self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        self.add(HistogramVec::new(Self::latency_opts(name, help), labels).expect("valid metric"))
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("spotify_gateway".into()), None)
            .expect("static registry prefix is valid");
        let b = Builder { registry };
        let build_info = b.add(
            IntGauge::with_opts(
                Opts::new("build_info", "Build information; the value is always 1")
                    .const_label("version", env!("CARGO_PKG_VERSION")),
            )
            .expect("valid metric"),
        );
        build_info.set(1);
        Metrics {
            requests: b.counters(
                "requests_total",
                "Requests answered, by app (empty on the admin listener and for requests no app \
                 took), listener, route and status class",
                &["app", "listener", "route", "status"],
            ),
            request_duration: b.latencies(
                "request_duration_seconds",
                "Time from request to the end of the response, by app, listener and route",
                &["app", "listener", "route"],
            ),
            upstream_duration: b.latencies(
                "upstream_duration_seconds",
                "Time until the upstream's response header arrived, by app and listener",
                &["app", "listener"],
            ),
            app_token_fetches: b.counters(
                "app_token_fetches_total",
                "Client-credentials token requests to Spotify, by app and result",
                &["app", "result"],
            ),
            token_refreshes: b.counters(
                "token_refreshes_total",
                "User token refreshes, by app and result",
                &["app", "result"],
            ),
            token_cache: b.counters(
                "token_cache_total",
                "User token cache lookups, by app and result (hit, miss)",
                &["app", "result"],
            ),
            logins: b.counters(
                "logins_total",
                "Completed or failed logins, by app and result",
                &["app", "result"],
            ),
            playback_tokens: b.counters(
                "playback_tokens_total",
                "Answers of /auth/playback-token ([playback]), by app and result (issued; \
                 refused: unauthenticated, no_scope, cross_site, rate_limited; error: no usable \
                 token)",
                &["app", "result"],
            ),
            active_sessions: b.gauges(
                "active_sessions",
                "Sessions held in this replica's memory cache, by app",
                &["app"],
            ),
            sessions_reauth_due: b.gauges(
                "sessions_reauth_due",
                "Sessions in this replica's memory whose refresh token ends (Spotify: six months \
                 after the user's authorization) within 14 days, by app",
                &["app"],
            ),
            unsaved_sessions: b.gauges(
                "unsaved_sessions",
                "Refreshed sessions the session store has not taken yet (kept in memory and \
                 written again; /readyz fails while this is above 0), by app",
                &["app"],
            ),
            open_connections: b.gauges(
                "open_connections",
                "Client connections open now, by listener",
                &["listener"],
            ),
            connections_refused: b.counters(
                "connections_refused_total",
                "Client connections closed at once because the listener was at its limit \
                 (server.max_connections_*), by listener",
                &["listener"],
            ),
            header_timeouts: b.counters(
                "header_timeouts_total",
                "Connections closed because no complete request header came within \
                 server.header_read_timeout, by listener",
                &["listener"],
            ),
            spotify_rate_limited: b.counters(
                "spotify_rate_limited_total",
                "429 answers received from Spotify, by app and reason (quota_exceeded: the \
                 developer account's quota; rate_limited: the app's rolling 30-second limit)",
                &["app", "reason"],
            ),
            rate_limited_local: b.counters(
                "rate_limited_local_total",
                "Calls answered 429 by the gateway during a Retry-After cool-down (its own, or \
                 one another replica published), by app and the cool-down's reason",
                &["app", "reason"],
            ),
            rate_limit_blocked_until: b.gauges(
                "rate_limit_blocked_until_timestamp_seconds",
                "Unix time until which no call of the app goes to Spotify after a 429 (its own, \
                 or its developer account's QUOTA_EXCEEDED; in the past, or 0, when calls flow), \
                 by app",
                &["app"],
            ),
            answer_cache: b.counters(
                "answer_cache_total",
                "Egress GETs by how Spotify's answer was had: hit (the cache, fresh), miss (from \
                 Spotify), revalidated (the cache, after Spotify's 304), coalesced (a copy of an \
                 identical call in flight), by app",
                &["app", "result"],
            ),
            answers_purged: b.counters(
                "answer_cache_purged_total",
                "Cached answers dropped because their user left: disconnected, revoked, or \
                 their session ended by invalid_grant, here or on another replica; and every \
                 user's when this replica's Redis subscription came back (notices may have \
                 been missed); by app",
                &["app"],
            ),
            answer_cache_entries: b.gauges(
                "answer_cache_entries",
                "Answers the egress cache holds, by app",
                &["app"],
            ),
            answer_cache_bytes: b.gauges(
                "answer_cache_bytes",
                "Memory the egress cache's answers take, in bytes, as the cache weighs them \
                 (headers, body and bookkeeping); egress.cache_size bounds it, by app",
                &["app"],
            ),
            budget: b.counters(
                "budget_total",
                "Calls to Spotify against egress.budget_per_30s (one per developer account), by \
                 app and result (taken at once, waited for room, refused with a local 429)",
                &["app", "result"],
            ),
            retries: b.counters(
                "retries_total",
                "Extra attempts sent to Spotify after a connection failure or a 502/503/504, by \
                 app",
                &["app"],
            ),
            upstream_body_refused: b.counters(
                "upstream_body_refused_total",
                "Spotify answers refused mid-body (502, or cut off once under way), by app and \
                 reason (inflate_limit: the gzip body inflated past the gateway's bound; \
                 corrupt_gzip)",
                &["app", "reason"],
            ),
            store_errors: b.counters(
                "store_errors_total",
                "Failed session store operations, by backend and kind (unavailable: not \
                 reached, or the I/O failed, a full disk included; corrupt: a value that does \
                 not decode; conflict: the file is held by another process), by app (empty: \
                 the process's own, the budget's)",
                &["app", "backend", "kind"],
            ),
            store_reopens: b.counters(
                "store_reopens_total",
                "Times the file store opened its database again after an I/O error (redb \
                 refuses every transaction after one), by result (ok, failed: tried again at \
                 the next operation)",
                &["result"],
            ),
            store_operations: b.counters(
                "store_operations_total",
                "Session store operations, by app (empty: the process's own, the budget's), \
                 backend and operation",
                &["app", "backend", "op"],
            ),
            store_failovers: b.counter(
                "store_failovers_total",
                "Times the Redis master changed under the gateway: Sentinel named another \
                 master, or a cluster's set of masters changed",
            ),
            store_master: b.gauges(
                "store_master",
                "1 for each Redis node (host:port) this replica sees as master now \
                 (redis-sentinel: the one; redis-cluster: every master)",
                &["node"],
            ),
            store_redirections: b.counters(
                "store_redirections_total",
                "Redirections a Redis Cluster node answered and the gateway followed, by kind \
                 (moved: the slot has a new owner, the slot map is read again; ask: the slot is \
                 migrating, one command asks its new owner)",
                &["kind"],
            ),
            store_replica_wait_timeouts: b.counter(
                "store_replica_wait_timeouts_total",
                "Session writes (a login, a rotated token) no replica acknowledged within \
                 store.replica_wait: kept on the master, and lost if it fails before a replica \
                 copies them",
            ),
            token_request_duration: b.latency(
                "token_request_duration_seconds",
                "Duration of requests to Spotify's token endpoint",
            ),
            upstream_tls_failures: b.counters(
                "upstream_tls_failures_total",
                "TLS connections to Spotify that failed, by client (accounts, api) and reason \
                 (untrusted, expired, wrong_name, bad_certificate, handshake)",
                &["target", "reason"],
            ),
            upstream_connections: b.counters(
                "upstream_connections_total",
                "Connections the egress proxy opened to Spotify's API (each a TCP and, over \
                 https, a TLS handshake; reused connections are not counted)",
                &["target"],
            ),
            upstream_responses: b.counters(
                "upstream_responses_total",
                "Answers from Spotify's API by the HTTP version negotiated (h2, http/1.1)",
                &["target", "protocol"],
            ),
            audit_events: b.counters(
                "audit_events_total",
                "Audit events emitted (events module), by app and type (login.succeeded, ...)",
                &["app", "type"],
            ),
            sessions_ended: b.counters(
                "sessions_ended_total",
                "Sessions ended, by app and reason (signed_out, disconnected, invalid_grant, \
                 deadline, lifetime, revoked)",
                &["app", "reason"],
            ),
            streams_open: b.gauges(
                "streams_open",
                "Requests of a signed-in session the public listener is proxying to the app now \
                 (WebSockets, event streams, any response under way); each is closed when its \
                 session ends, by app",
                &["app"],
            ),
            streams_closed: b.counters(
                "streams_closed_total",
                "Streams closed because their session ended, by reason (signed_out, replaced, \
                 disconnected, revoked, invalid_grant, deadline, lifetime, other_replica: ended \
                 on another replica), by app",
                &["app", "reason"],
            ),
            webhook_deliveries: b.counters(
                "webhook_deliveries_total",
                "Webhook delivery outcomes, by webhook name and result (delivered; retried: an \
                 extra attempt after a failure; dropped: queue full or retries given up)",
                &["webhook", "result"],
            ),
            webhook_failing: b.gauges(
                "webhook_failing",
                "1 while the latest delivery attempt to the webhook failed, 0 after a success",
                &["webhook"],
            ),
            webhook_queue_depth: b.gauges(
                "webhook_queue_depth",
                "Events waiting in the webhook's queue (besides the one being delivered)",
                &["webhook"],
            ),
            trace_spans: b.counters(
                "trace_spans_total",
                "Sampled spans by what became of them (exported; dropped: the export queue was \
                 full; failed: the collector did not take their batch)",
                &["result"],
            ),
            registry: b.registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding to a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// Records one finished request of `app` (empty: the admin listener's, or no app's).
    pub fn observe_request(
        &self,
        app: &str,
        listener: &str,
        route: &str,
        status: u16,
        seconds: f64,
    ) {
        self.requests
            .with_label_values(&[app, listener, route, status_class(status)])
            .inc();
        self.request_duration
            .with_label_values(&[app, listener, route])
            .observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `2xx`, `4xx`...; `0` means no response was written (client went away).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}
