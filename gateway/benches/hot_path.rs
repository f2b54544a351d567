//! The per-request work of the gateway, as the library calls the listeners make.
//!
//! ```text
//! cargo bench -p spotify-gateway --bench hot_path
//! ```
//!
//! Groups, each with a baseline run side by side and the ratio printed after it:
//! - `assertion`: verifying `X-Gateway-User` (egress) and issuing it (public listener) vs a
//!   bare HMAC-SHA256 of the same bytes with a 32-byte key.
//! - `cookie`: opening the session cookie vs a bare AES-256-GCM decrypt of the same bytes;
//!   and the whole cookie → session lookup.
//! - `cache`: the session lookup (`session::cache`, then the record's lock) vs a `HashMap` behind an
//!   `RwLock`; the access token of a warm session.
//! - `egress`: every step of an egress request that is ours, then all of them together vs
//!   what a proxy injecting a static `Authorization` header does to the same request
//!   (copy the request header, drop `Connection`, set one header).

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use pingora::http::RequestHeader;
use sha2::Sha256;
use spotify_gateway::crypto::Purpose;
use spotify_gateway::proxy::assertion;
use spotify_gateway::proxy::egress;
use spotify_gateway::proxy::egress::links::{LinkMap, LinkRewriter};
use spotify_gateway::proxy::UpstreamTarget;
use spotify_gateway::secret::SessionKey;
use spotify_gateway::session::LiveSession;
use support::seed;

type HmacSha256 = Hmac<Sha256>;

/// Hot sessions in the cache while measuring, so lookups do not hit a one-entry map.
const WARM_SESSIONS: usize = 10_000;

/// `https://api.spotify.com`'s stand-in and the egress listener, as in the load benchmark.
const API_BASE: &str = "http://127.0.0.1:18900";
const LINK_FROM: &str = "http://127.0.0.1:18900/v1/";
const LINK_TO: &str = "http://127.0.0.1:18081/v1/";

/// The `/v1/me`-shaped body the load benchmark's upstream answers (one paging-style link).
fn body() -> bytes::Bytes {
    format!(
        r#"{{"country":"SE","display_name":"Alice","email":"alice@example.com","explicit_content":{{"filter_enabled":false,"filter_locked":false}},"external_urls":{{"spotify":"https://open.spotify.com/user/alice"}},"followers":{{"href":null,"total":12}},"href":"{LINK_FROM}users/alice","id":"alice","images":[],"product":"premium","type":"user","uri":"spotify:user:alice"}}"#
    )
    .into_bytes()
    .into()
}

/// The request an internal app sends to the egress listener (what wrk sends in load.sh).
fn incoming(assertion: &str) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/v1/me", None).expect("request");
    req.insert_header("host", "127.0.0.1:18081").expect("h");
    req.insert_header("user-agent", "spotipy/2.24").expect("h");
    req.insert_header("accept", "application/json").expect("h");
    req.insert_header("x-gateway-user", assertion).expect("h");
    req
}

/// The copy pingora makes of the request header, then `EgressProxy::upstream_request_filter`'s
/// edits.
fn upstream_headers(incoming: &RequestHeader, bearer: &str, host: &str) -> RequestHeader {
    let mut upstream = incoming.clone();
    let request_id = format!("{:032x}", rand::random::<u128>());
    egress::upstream_headers(&mut upstream, Some(bearer), host, &request_id).expect("headers");
    upstream
}

/// What nginx's `proxy_set_header Authorization "Bearer ..."` amounts to.
fn static_header(incoming: &RequestHeader, bearer: &str) -> RequestHeader {
    let mut upstream = incoming.clone();
    upstream.remove_header("connection");
    upstream.insert_header("authorization", bearer).expect("h");
    upstream
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Loops `iters` times inside one `block_on`, so the runtime's entry cost is not measured.
fn async_iters<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            f().await;
        }
        start.elapsed()
    })
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    gw: Arc<spotify_gateway::server::state::Gateway>,
    one: seed::Seeded,
    assertion: String,
    cookie: String,
}

fn fixture() -> Fixture {
    let rt = support::runtime();
    let gw = support::gateway();
    let seeded = rt.block_on(async {
        let mut all = Vec::with_capacity(WARM_SESSIONS);
        for i in 0..WARM_SESSIONS {
            all.push(seed::seed(&gw.sessions, i).await.expect("seed"));
        }
        all
    });
    let one = seeded.into_iter().nth(WARM_SESSIONS / 2).expect("seeded");
    let assertion = assertion::issue(&gw.sessions.keys(), &one.user_id, &one.key);
    let cookie = seed::cookie_value(&gw.sessions, &one);
    Fixture {
        rt,
        gw,
        one,
        assertion,
        cookie,
    }
}

fn assertion_group(c: &mut Criterion, fx: &Fixture) {
    let keys = fx.gw.sessions.keys();
    // The bytes HS256 signs: base64url(header) "." base64url(claims).
    let signing_input = fx.assertion.rsplit_once('.').expect("jwt").0.to_string();
    let key = rand::random::<[u8; 32]>();
    let mut g = c.benchmark_group("assertion");
    g.bench_function("verify", |b| {
        b.iter(|| assertion::verify(&keys, black_box(&fx.assertion)))
    });
    g.bench_function("issue", |b| {
        b.iter(|| assertion::issue(&keys, black_box(&fx.one.user_id), black_box(&fx.one.key)))
    });
    g.bench_function("hmac_sha256_bare", |b| {
        b.iter(|| hmac(black_box(&key), black_box(signing_input.as_bytes())))
    });
    g.finish();
    support::print_ratio("assertion", "verify", "hmac_sha256_bare");
    support::print_ratio("assertion", "issue", "hmac_sha256_bare");
}

fn cookie_group(c: &mut Criterion, fx: &Fixture) {
    let keys = fx.gw.sessions.keys();
    // The same shape as a sealed cookie: nonce ‖ ciphertext ‖ tag of the session id.
    let cipher = Aes256Gcm::new(&rand::random::<[u8; 32]>().into());
    let nonce: [u8; 12] = rand::random();
    let aad = b"session-cookie\0".to_vec();
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: fx.one.sid.as_bytes(),
                aad: &aad,
            },
        )
        .expect("encrypt");
    let mut g = c.benchmark_group("cookie");
    g.bench_function("open", |b| {
        b.iter(|| keys.open(Purpose::SessionCookie, b"", black_box(&fx.cookie)))
    });
    g.bench_function("aes_gcm_decrypt_bare", |b| {
        b.iter(|| {
            cipher.decrypt(
                Nonce::from_slice(black_box(&nonce)),
                Payload {
                    msg: black_box(&sealed),
                    aad: &aad,
                },
            )
        })
    });
    g.bench_function("base64_decode_bare", |b| {
        b.iter(|| URL_SAFE_NO_PAD.decode(black_box(&fx.cookie)))
    });
    g.bench_function("index_key", |b| {
        b.iter(|| keys.index_key("session", black_box(&fx.one.sid)))
    });
    g.bench_function("by_cookie", |b| {
        b.iter_custom(|iters| {
            async_iters(&fx.rt, iters, || async {
                black_box(fx.gw.sessions.by_cookie(&fx.cookie).await.expect("store"));
            })
        })
    });
    g.finish();
    support::print_ratio("cookie", "open", "aes_gcm_decrypt_bare");
    support::print_ratio("cookie", "by_cookie", "aes_gcm_decrypt_bare");
}

fn cache_group(c: &mut Criterion, fx: &Fixture) {
    let sessions = &fx.gw.sessions;
    let tokens = &fx.gw.user_tokens;
    let warm: Arc<LiveSession> = fx
        .rt
        .block_on(sessions.by_key(&SessionKey::new(fx.one.key.as_str())))
        .expect("store")
        .expect("hot");
    // The baseline: a plain map of the same size behind a lock.
    let map: RwLock<HashMap<String, Arc<LiveSession>>> = RwLock::new(
        (0..WARM_SESSIONS)
            .map(|i| (format!("{i:043}"), warm.clone()))
            .chain([(fx.one.key.clone(), warm.clone())])
            .collect(),
    );
    let key = SessionKey::new(fx.one.key.as_str());
    let mut g = c.benchmark_group("cache");
    g.bench_function("by_key", |b| {
        b.iter_custom(|iters| {
            async_iters(&fx.rt, iters, || async {
                black_box(sessions.by_key(black_box(&key)).await.expect("ok"));
            })
        })
    });
    g.bench_function("hashmap_rwlock_bare", |b| {
        b.iter(|| {
            map.read()
                .expect("lock")
                .get(black_box(fx.one.key.as_str()))
                .cloned()
        })
    });
    g.bench_function("access_token", |b| {
        b.iter_custom(|iters| {
            async_iters(&fx.rt, iters, || async {
                black_box(tokens.access_token(&warm).await.expect("fresh"));
            })
        })
    });
    g.finish();
    support::print_ratio("cache", "by_key", "hashmap_rwlock_bare");
    support::print_ratio("cache", "access_token", "hashmap_rwlock_bare");
}

fn egress_group(c: &mut Criterion, fx: &Fixture) {
    let gw = &fx.gw;
    let sessions = &gw.sessions;
    let tokens = &gw.user_tokens;
    let api = UpstreamTarget::from_url(&API_BASE.parse().expect("url"));
    let req = incoming(&fx.assertion);
    let warm = fx
        .rt
        .block_on(sessions.by_key(&SessionKey::new(fx.one.key.as_str())))
        .expect("store")
        .expect("hot");
    let token = fx.rt.block_on(tokens.access_token(&warm)).expect("token");
    let body = body();
    let static_bearer = format!("Bearer {}", token.expose());

    let mut g = c.benchmark_group("egress");
    g.bench_function("1_verify_assertion", |b| {
        b.iter(|| assertion::verify(&sessions.keys(), black_box(&fx.assertion)))
    });
    let claims = assertion::verify(&sessions.keys(), &fx.assertion).expect("valid");
    g.bench_function("2_session_lookup", |b| {
        b.iter_custom(|iters| {
            async_iters(&fx.rt, iters, || async {
                let s = sessions
                    .by_key(&SessionKey::new(claims.sid.as_str()))
                    .await
                    .expect("ok")
                    .expect("hot");
                black_box(s.user_id() == claims.sub);
            })
        })
    });
    g.bench_function("3_access_token", |b| {
        b.iter_custom(|iters| {
            async_iters(&fx.rt, iters, || async {
                black_box(tokens.access_token(&warm).await.expect("fresh"));
            })
        })
    });
    g.bench_function("4_upstream_peer", |b| {
        b.iter_custom(|iters| {
            async_iters(&fx.rt, iters, || async {
                black_box(api.peer(None).await.expect("peer"));
            })
        })
    });
    g.bench_function("5_upstream_headers", |b| {
        b.iter(|| upstream_headers(black_box(&req), token.expose(), api.host_header()))
    });
    let links = LinkMap::new(LINK_FROM, LINK_TO);
    g.bench_function("6_link_rewrite", |b| {
        b.iter(|| {
            let mut r = LinkRewriter::new(links.clone(), false);
            r.feed(black_box(body.clone()), true).expect("rewrite")
        })
    });
    g.bench_function("7_metrics", |b| {
        b.iter(|| {
            gw.metrics
                .upstream_duration
                .with_label_values(&["egress"])
                .observe(0.0002);
            gw.metrics
                .observe_request("default", "egress", "/v1/me", 200, black_box(0.0004));
        })
    });
    g.bench_function("total", |b| {
        b.iter_custom(|iters| {
            async_iters(&fx.rt, iters, || async {
                let claims = assertion::verify(&sessions.keys(), &fx.assertion).expect("valid");
                let s = sessions
                    .by_key(&SessionKey::new(claims.sid.as_str()))
                    .await
                    .expect("ok")
                    .expect("hot");
                assert!(s.user_id() == claims.sub);
                let token = tokens.access_token(&s).await.expect("fresh");
                black_box(api.peer(None).await.expect("peer"));
                black_box(upstream_headers(&req, token.expose(), api.host_header()));
                let mut r = LinkRewriter::new(links.clone(), false);
                black_box(r.feed(body.clone(), true).expect("rewrite"));
                gw.metrics
                    .upstream_duration
                    .with_label_values(&["egress"])
                    .observe(0.0002);
                gw.metrics
                    .observe_request("default", "egress", "/v1/me", 200, 0.0004);
            })
        })
    });
    g.bench_function("static_header_baseline", |b| {
        b.iter(|| static_header(black_box(&req), &static_bearer))
    });
    g.finish();
    for step in [
        "1_verify_assertion",
        "2_session_lookup",
        "3_access_token",
        "4_upstream_peer",
        "5_upstream_headers",
        "6_link_rewrite",
        "7_metrics",
    ] {
        if let (Some(s), Some(t)) = (
            support::median_ns("egress", step),
            support::median_ns("egress", "total"),
        ) {
            println!(
                "share egress/{step}: {} = {:.0}% of total",
                support::fmt_ns(s),
                100.0 * s / t
            );
        }
    }
    support::print_ratio("egress", "total", "static_header_baseline");
}

fn benches(c: &mut Criterion) {
    let fx = fixture();
    assertion_group(c, &fx);
    cookie_group(c, &fx);
    cache_group(c, &fx);
    egress_group(c, &fx);
}

criterion_group! {
    name = hot_path;
    config = support::criterion();
    targets = benches
}
criterion_main!(hot_path);
