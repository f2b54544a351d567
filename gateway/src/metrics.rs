//! Prometheus metrics, prefix `spotify_gateway_`. Labels take bounded values only: listener
//! names, route templates, status classes, results. Never a raw path, user id or token.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
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
    pub active_sessions: IntGauge,
    pub spotify_rate_limited: IntCounter,
    pub rate_limited_local: IntCounter,
    pub retries: IntCounter,
    pub store_errors: IntCounterVec,
    pub store_operations: IntCounterVec,
    pub token_request_duration: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("spotify_gateway".into()), None)
            .expect("static registry prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by listener, route and status class",
            ),
            &["listener", "route", "status"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request to the end of the response, by listener and route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["listener", "route"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "upstream_duration_seconds",
                "Time until the upstream's response header arrived, by listener",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["listener"],
        )
        .expect("valid metric");
        let app_token_fetches = IntCounterVec::new(
            Opts::new(
                "app_token_fetches_total",
                "Client-credentials token requests to Spotify, by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let token_refreshes = IntCounterVec::new(
            Opts::new("token_refreshes_total", "User token refreshes, by result"),
            &["result"],
        )
        .expect("valid metric");
        let token_cache = IntCounterVec::new(
            Opts::new(
                "token_cache_total",
                "User token cache lookups, by result (hit, miss)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new("logins_total", "Completed or failed logins, by result"),
            &["result"],
        )
        .expect("valid metric");
        let active_sessions = IntGauge::new(
            "active_sessions",
            "Sessions held in this replica's memory cache",
        )
        .expect("valid metric");
        let spotify_rate_limited = IntCounter::new(
            "spotify_rate_limited_total",
            "429 answers received from Spotify",
        )
        .expect("valid metric");
        let rate_limited_local = IntCounter::new(
            "rate_limited_local_total",
            "Calls answered 429 by the gateway during a Retry-After cool-down",
        )
        .expect("valid metric");
        let retries = IntCounter::new(
            "retries_total",
            "Extra attempts sent to Spotify after a connection failure or a 502/503/504",
        )
        .expect("valid metric");
        let store_errors = IntCounterVec::new(
            Opts::new(
                "store_errors_total",
                "Failed session store operations, by backend",
            ),
            &["backend"],
        )
        .expect("valid metric");
        let store_operations = IntCounterVec::new(
            Opts::new(
                "store_operations_total",
                "Session store operations, by backend and operation",
            ),
            &["backend", "op"],
        )
        .expect("valid metric");
        let token_request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "token_request_duration_seconds",
                "Duration of requests to Spotify's token endpoint",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let build_info = IntGauge::with_opts(
            Opts::new("build_info", "Build information; the value is always 1")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build_info.set(1);

        let m = Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            app_token_fetches,
            token_refreshes,
            token_cache,
            logins,
            active_sessions,
            spotify_rate_limited,
            rate_limited_local,
            retries,
            store_errors,
            store_operations,
            token_request_duration,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.upstream_duration.clone()),
            Box::new(m.app_token_fetches.clone()),
            Box::new(m.token_refreshes.clone()),
            Box::new(m.token_cache.clone()),
            Box::new(m.logins.clone()),
            Box::new(m.active_sessions.clone()),
            Box::new(m.spotify_rate_limited.clone()),
            Box::new(m.rate_limited_local.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.store_errors.clone()),
            Box::new(m.store_operations.clone()),
            Box::new(m.token_request_duration.clone()),
            Box::new(build_info),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding to a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// Records one finished request.
    pub fn observe_request(&self, listener: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[listener, route, status_class(status)])
            .inc();
        self.request_duration
            .with_label_values(&[listener, route])
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
