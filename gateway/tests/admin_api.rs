//! The admin API (`/admin/v1/users`) and `spotify-gateway users`, through the real gateway:
//! the token, the listeners it does not exist on, paging, revocation across replicas, and the
//! command against a running gateway.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use spotify_gateway::crypto::{Keyring, Purpose};
use spotify_gateway::secret::{AccessToken, RefreshToken, Secret};
use spotify_gateway::session::{Scopes, SessionRecord};
use spotify_gateway::store::{Namespace, RedisStore, Store};

const TOKEN: &str = "test-admin-token-0123456789";
const TOKEN_VAR: &str = "TEST_ADMIN_TOKEN";

/// A stack whose admin API is on, with `TOKEN` from the environment.
fn with_admin(b: StackBuilder) -> StackBuilder {
    b.edit(|doc| {
        let mut admin = toml_edit::Table::new();
        admin["token_env"] = toml_edit::value(TOKEN_VAR);
        doc["admin"] = toml_edit::Item::Table(admin);
    })
    .env(TOKEN_VAR, TOKEN)
}

async fn admin_get(gw: &Gateway, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", gw.admin_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn users_cli(args: &[&str], admin: &str, token: Option<&str>) -> (i32, String, String) {
    let mut all = vec!["users"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--admin", admin]);
    let env: Vec<(&str, &str)> = token
        .map(|t| vec![("SPOTIFY_GATEWAY_ADMIN_TOKEN", t)])
        .unwrap_or_default();
    run_cli(&all, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_asks_for_its_token_and_exists_only_on_the_admin_listener() {
    let s = with_admin(Stack::builder().app(App::Echo)).start().await;
    let b = browser();
    let trip = login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;

    // No token, a wrong one, a token without "Bearer ": 401, JSON, nothing listed.
    for token in [
        None,
        Some("wrong-token"),
        Some("test-admin-token-012345678"),
    ] {
        let (status, body) = admin_get(&s.gw, "/admin/v1/users", token).await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"], "unauthorized");
    }
    let resp = reqwest::Client::new()
        .get(format!("{}/admin/v1/users", s.gw.admin_url()))
        .header("authorization", TOKEN)
        .send()
        .await
        .expect("admin");
    assert_eq!(resp.status(), 401, "the scheme is required");
    // Prometheus and the probes stay open.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let status = reqwest::get(format!("{}{path}", s.gw.admin_url()))
            .await
            .expect("probe")
            .status();
        assert_eq!(status, 200, "{path}");
    }

    // With the token: alice, without anything that opens her session.
    let (status, body) = admin_get(&s.gw, "/admin/v1/users", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let users = body["users"].as_array().expect("users");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["user_id"], "alice");
    assert_eq!(users[0]["sessions"], 1);
    assert!(users[0]["account_id"].is_string());
    assert!(users[0]["scopes"].is_array());
    assert!(users[0]["created_at"].is_string());
    assert!(body["next_cursor"].is_null());
    let text = body.to_string();
    let cookie = trip.session_cookie();
    let cookie_value = cookie.split_once('=').expect("cookie").1;
    for secret in [
        cookie_value,
        assertion.as_str(),
        "access_token",
        "refresh_token",
    ] {
        assert!(!text.contains(secret), "{secret:?} in {text}");
    }
    let (status, one) = admin_get(&s.gw, "/admin/v1/users/alice", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(one["user_id"], "alice");
    let (status, filtered) = admin_get(&s.gw, "/admin/v1/users?user_id=alice", Some(TOKEN)).await;
    assert_eq!(
        (status, filtered["users"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (status, none) = admin_get(&s.gw, "/admin/v1/users?user_id=bob", Some(TOKEN)).await;
    assert_eq!(
        (status, none["users"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    assert_eq!(
        admin_get(&s.gw, "/admin/v1/users/bob", Some(TOKEN)).await.0,
        404
    );
    assert_eq!(
        admin_get(&s.gw, "/admin/v1/users?limit=501", Some(TOKEN))
            .await
            .0,
        400
    );

    // The public and egress listeners have no admin routes, whatever the request carries.
    for url in [s.gw.public_url(), s.gw.egress_url()] {
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let resp = reqwest::Client::new()
                .request(method.clone(), format!("{url}/admin/v1/users/alice"))
                .bearer_auth(TOKEN)
                .header("x-gateway-user", &assertion)
                .send()
                .await
                .expect("listener");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert!(
                body.get("user_id").is_none() && body.get("sessions_ended").is_none(),
                "{url} {method} answered as the admin API: {status} {body}"
            );
        }
    }
    assert_eq!(
        egress_status(&s.gw, &assertion).await,
        200,
        "alice is still signed in"
    );

    // The command: a table, JSON, and its refusals.
    let admin = s.gw.admin_url();
    let (code, out, err) = users_cli(&["list"], &admin, Some(TOKEN));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("USER_ID") && out.contains("alice"), "{out}");
    let (code, out, err) = users_cli(&["show", "alice", "--json"], &admin, Some(TOKEN));
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["user_id"], "alice");
    let (code, _, err) = users_cli(&["list"], &admin, Some("wrong-token"));
    assert_ne!(code, 0);
    assert!(err.contains("refused the admin token"), "{err}");
    let (code, _, err) = users_cli(&["list"], &admin, None);
    assert_ne!(code, 0);
    assert!(
        err.contains("SPOTIFY_GATEWAY_ADMIN_TOKEN is not set"),
        "{err}"
    );
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = users_cli(&["list"], &nobody, Some(TOKEN));
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    let (code, _, err) = users_cli(&["show", "bob"], &admin, Some(TOKEN));
    assert_ne!(code, 0);
    assert!(err.contains("no live session of user \"bob\""), "{err}");

    // Revoked by the command: the session is gone, egress refuses it.
    let (code, out, err) = users_cli(&["revoke", "alice"], &admin, Some(TOKEN));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 session(s) ended"), "{out}");
    assert_eq!(egress_status(&s.gw, &assertion).await, 401);
    assert_eq!(
        admin_get(&s.gw, "/admin/v1/users/alice", Some(TOKEN))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_is_off_and_the_command_says_so() {
    let s = Stack::builder().start().await;
    let (status, body) = admin_get(&s.gw, "/admin/v1/users", Some(TOKEN)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "admin_api_off");
    assert_eq!(
        reqwest::get(format!("{}/metrics", s.gw.admin_url()))
            .await
            .expect("metrics")
            .status(),
        200
    );
    let (code, _, err) = users_cli(&["list"], &s.gw.admin_url(), Some(TOKEN));
    assert_ne!(code, 0);
    assert!(err.contains("the admin API is off"), "{err}");
}

/// Writes a live session of `user` under `key` into the shared store, sealed as the gateway
/// seals it (the mock Spotify knows three users, so 250 real logins are not possible).
async fn seed_session(store: &dyn Store, keys: &Keyring, user: &str, key: &str) {
    let now = now_millis();
    let record = SessionRecord {
        user_id: user.into(),
        account_id: Some(format!("acc-{user}")),
        display_name: Some(user.to_uppercase()),
        scopes: Scopes::new(&["user-read-email"]),
        access_token: AccessToken::new(format!("access-token-of-{user}")),
        access_expires_at_ms: now + 3_600_000,
        access_lifetime_ms: 3_600_000,
        refresh_token: RefreshToken::new(format!("refresh-token-of-{user}")),
        created_at_ms: now,
        reauth_by_ms: Some(now + 86_400_000),
        updated_at_ms: now,
        expires_at_ms: now + 3_600_000,
    };
    let plain = serde_json::to_vec(&record).expect("json");
    let sealed = keys.seal(Purpose::StoredRecord, key.as_bytes(), &plain);
    let hour = Duration::from_secs(3600);
    store
        .put(Namespace::Session, key, sealed.into_bytes(), hour)
        .await
        .expect("put");
    store
        .add_user_session(user, key, hour)
        .await
        .expect("index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_over_250_users_seeded_in_the_shared_store() {
    let redis = RedisServer::start().await;
    let s = with_admin(Stack::builder())
        .redis_store(&redis)
        .start()
        .await;
    // Seeded through the store API (the gateway's own sealing), not through logins.
    let store = RedisStore::open(&Secret::runtime(redis.url())).expect("redis");
    let keys = Keyring::new(&Secret::runtime(SESSION_SECRET), None);
    let mut expected: Vec<String> = (0..250).map(|i| format!("user{i:03}")).collect();
    for (i, user) in expected.iter().enumerate() {
        seed_session(&store, &keys, user, &format!("seeded-{i}")).await;
    }
    expected.sort();

    let (mut listed, mut cursor, mut pages) = (Vec::<String>::new(), None::<String>, 0);
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/users?limit=100&cursor={c}"),
            None => "/admin/v1/users".to_string(),
        };
        let (status, body) = admin_get(&s.gw, &path, Some(TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for u in body["users"].as_array().expect("users") {
            assert_eq!(u["sessions"], 1);
            assert!(u.to_string().find("token-of").is_none(), "{u}");
            listed.push(u["user_id"].as_str().expect("id").to_string());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3, "250 users in pages of 100");
    assert_eq!(listed, expected, "every user once, in order");

    // The command pages too.
    let (code, out, err) = users_cli(&["list", "--json"], &s.gw.admin_url(), Some(TOKEN));
    assert_eq!(code, 0, "{err}");
    let all: Vec<Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(all.len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_on_one_replica_ends_the_user_on_both_within_a_second() {
    let redis = RedisServer::start().await;
    let s = with_admin(Stack::builder().app(App::Echo).more_gateways(1))
        .redis_store(&redis)
        .start()
        .await;
    let other = s
        .start_replica_with_env(vec![(TOKEN_VAR.to_string(), TOKEN.to_string())])
        .await;
    let (first, second, bob) = (browser(), browser(), browser());
    login(&first, &s.gw, "alice", "/").await;
    login(&second, &other, "alice", "/").await;
    login(&bob, &s.gw, "bob", "/").await;
    let alice = [s.assertion(&first).await, s.assertion(&second).await];
    let bob_assertion = s.assertion(&bob).await;
    // Both replicas hold both of alice's sessions in memory.
    for gw in [&s.gw, &other] {
        for a in &alice {
            assert_eq!(egress_status(gw, a).await, 200);
        }
    }
    let (_, listed) = admin_get(&other, "/admin/v1/users/alice", Some(TOKEN)).await;
    assert_eq!(listed["sessions"], 2, "one store, seen from either replica");

    let resp = revoke_user(&s.gw, "alice", TOKEN).await;
    let done = Instant::now();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["sessions_ended"], 2);
    wait_until(
        done + Duration::from_secs(1),
        "both replicas to refuse both of alice's sessions",
        || async {
            let mut refused = 0;
            for gw in [&s.gw, &other] {
                for a in &alice {
                    match egress_status(gw, a).await {
                        401 => refused += 1,
                        status => assert_eq!(status, 200),
                    }
                }
            }
            refused == 4
        },
    )
    .await;
    assert_eq!(via_public(&second, &other, "/auth/userinfo").await.0, 401);
    assert_eq!(
        egress_status(&other, &bob_assertion).await,
        200,
        "bob is untouched"
    );
    assert_eq!(
        admin_get(&other, "/admin/v1/users/alice", Some(TOKEN))
            .await
            .0,
        404
    );
    let (_, page) = admin_get(&other, "/admin/v1/users", Some(TOKEN)).await;
    let ids: Vec<&str> = page["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    assert_eq!(ids, ["bob"]);
}
