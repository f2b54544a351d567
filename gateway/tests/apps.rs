//! Several Spotify apps behind one gateway (`[[apps]]`), through the real gateway and the
//! mock Spotify that knows each client id: three apps on three loopback hosts
//! (`common::three_apps`: `radio`, PKCE without a secret, and `charts`, with a secret, of the
//! developer account `acme`; `solo`, with a secret, of another account). Each app has its
//! own cookie, sessions, tokens and admin view; a single-app gateway's sessions stay valid
//! when its config moves to `[[apps]]`.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::*;

const ADMIN_TOKEN: &str = "apps-admin-token-0123456789";

/// The three apps, an echo app behind them, and the admin API on.
async fn stack() -> Stack {
    three_apps(Stack::builder().app(App::Echo))
        .edit(|doc| {
            doc["admin"] = toml_edit::table();
            doc["admin"]["token_env"] = toml_edit::value("TEST_ADMIN_TOKEN");
        })
        .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .start()
        .await
}

/// `user` signs into `app` with `browser`: the login trip, on the app's host.
async fn sign_in(s: &Stack, browser: &reqwest::Client, app: &TestApp, user: &str) -> LoginTrip {
    let url = format!(
        "{}/auth/login?return_to=%2Fapp",
        app.public_url(s.ports.public)
    );
    login_from(browser, &url, user).await
}

/// What the echo app saw of `GET /app` on `app`'s host: status and the echoed request.
async fn via(s: &Stack, browser: &reqwest::Client, app: &TestApp) -> (u16, Value) {
    let resp = browser
        .get(format!("{}/app", app.public_url(s.ports.public)))
        .send()
        .await
        .expect("public");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The assertion the app behind `app`'s host receives for `browser`.
async fn assertion(s: &Stack, browser: &reqwest::Client, app: &TestApp) -> String {
    let (status, seen) = via(s, browser, app).await;
    assert_eq!(status, 200, "{seen}");
    seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion")
        .to_string()
}

/// An egress `GET /v1/me` (or `path`) with these headers: status and the client id whose
/// token reached the mock (`None` when nothing reached it).
async fn egress(s: &Stack, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let before = s.api_requests().await;
    let mut req = reqwest::Client::new().get(format!("{}{path}", s.gw.egress_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let status = req.send().await.expect("egress").status().as_u16();
    let client = if s.api_requests().await > before {
        s.last_api_request().await["client_id"]
            .as_str()
            .map(str::to_string)
    } else {
        None
    };
    (status, client)
}

fn session_cookie_name(trip: &LoginTrip) -> String {
    trip.set_cookies
        .iter()
        .filter_map(|c| c.split(';').next())
        .find(|c| c.starts_with("spotify_gateway_session") && !c.contains("-login"))
        .and_then(|c| c.split_once('='))
        .map(|(name, _)| name.to_string())
        .expect("a session cookie")
}

/// `name=value` of the app's session cookie the login set.
fn session_cookie_pair(trip: &LoginTrip) -> String {
    let name = session_cookie_name(trip);
    trip.set_cookies
        .iter()
        .filter_map(|c| c.split(';').next())
        .find(|c| c.split_once('=').is_some_and(|(n, _)| n == name))
        .expect("the session cookie")
        .to_string()
}

#[tokio::test]
async fn a_user_signs_into_two_apps_and_each_cookie_opens_only_its_app() {
    let s = stack().await;
    let browser = browser();
    let radio = sign_in(&s, &browser, &RADIO, "alice").await;
    let charts = sign_in(&s, &browser, &CHARTS, "alice").await;
    // Each app logged in at its own client id (the PKCE one without a secret).
    assert!(radio.authorize_url.contains("client_id=radio-client-id"));
    assert!(radio.authorize_url.contains("code_challenge="));
    assert!(charts.authorize_url.contains("client_id=charts-client-id"));
    assert!(!charts.authorize_url.contains("code_challenge="));
    assert_eq!(session_cookie_name(&radio), "spotify_gateway_session.radio");
    assert_eq!(
        session_cookie_name(&charts),
        "spotify_gateway_session.charts"
    );
    // Both sessions are alice's, each on its own host.
    for app in [&RADIO, &CHARTS] {
        let (status, seen) = via(&s, &browser, app).await;
        assert_eq!(status, 200, "{}: {seen}", app.name);
        assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
        assert_eq!(seen["headers"]["x-gateway-app"], app.name);
        // The app sees no gateway cookie, its own or another app's.
        let cookies = seen["headers"]["cookie"].as_str().unwrap_or("");
        assert!(!cookies.contains("spotify_gateway_session"), "{cookies}");
    }
    // Radio's cookie, sent to charts under either name, opens nothing there.
    let radio_cookie = radio
        .set_cookies
        .iter()
        .find(|c| c.starts_with("spotify_gateway_session.radio="))
        .and_then(|c| c.split(';').next())
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("radio's cookie");
    for name in [
        "spotify_gateway_session.radio",
        "spotify_gateway_session.charts",
    ] {
        let resp = plain()
            .get(format!("{}/app", CHARTS.public_url(s.ports.public)))
            .header("cookie", format!("{name}={radio_cookie}"))
            .header("accept", "application/json")
            .send()
            .await
            .expect("public");
        assert_eq!(resp.status(), 401, "{name} on charts");
    }
    // A host no app serves is answered by the gateway alone.
    let resp = plain()
        .get(format!("{}/app", RADIO.public_url(s.ports.public)))
        .header("host", format!("nobody.example:{}", s.ports.public))
        .send()
        .await
        .expect("public");
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn egress_carries_the_token_of_the_app_the_call_names() {
    let s = stack().await;
    let browser = browser();
    sign_in(&s, &browser, &RADIO, "alice").await;
    sign_in(&s, &browser, &CHARTS, "alice").await;
    let radio = assertion(&s, &browser, &RADIO).await;
    let charts = assertion(&s, &browser, &CHARTS).await;
    assert_eq!(claims_of(&radio)["app"], "radio");
    // A user's call: the assertion names its app, and its user token goes.
    for (token, client) in [(&radio, RADIO.client_id), (&charts, CHARTS.client_id)] {
        let (status, seen) = egress(&s, "/v1/me", &[("x-gateway-user", token)]).await;
        assert_eq!((status, seen.as_deref()), (200, Some(client)));
    }
    // The assertion as the bearer token (client libraries) names its app too.
    let bearer = format!("Bearer {charts}");
    let (status, seen) = egress(&s, "/v1/me", &[("authorization", &bearer)]).await;
    assert_eq!((status, seen.as_deref()), (200, Some(CHARTS.client_id)));
    // Naming another app than the assertion's is an invalid assertion.
    let (status, seen) = egress(
        &s,
        "/v1/me",
        &[("x-gateway-user", &radio), ("x-gateway-app", "charts")],
    )
    .await;
    assert_eq!((status, seen), (401, None));
    // The app token: per app, by X-Gateway-App; a public client has none.
    let search = "/v1/search?q=abba&type=track";
    for app in [&CHARTS, &SOLO] {
        let (status, seen) = egress(&s, search, &[("x-gateway-app", app.name)]).await;
        assert_eq!((status, seen.as_deref()), (200, Some(app.client_id)));
    }
    let (status, seen) = egress(&s, search, &[("x-gateway-app", "radio")]).await;
    assert_eq!((status, seen), (401, None));
    // Without an app, where there are several: refused, saying how to name one.
    let resp = reqwest::get(format!("{}{search}", s.gw.egress_url()))
        .await
        .expect("egress");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("X-Gateway-App"), "{body}");
    let (status, _) = egress(&s, search, &[("x-gateway-app", "nope")]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn revoking_a_user_in_one_app_leaves_the_other() {
    let s = stack().await;
    let browser = browser();
    sign_in(&s, &browser, &RADIO, "alice").await;
    sign_in(&s, &browser, &CHARTS, "alice").await;
    let radio = assertion(&s, &browser, &RADIO).await;
    let charts = assertion(&s, &browser, &CHARTS).await;
    let admin = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("{}{path}", s.gw.admin_url()))
            .bearer_auth(ADMIN_TOKEN)
    };
    // Several apps: the admin API must be told which.
    let resp = admin(reqwest::Method::GET, "/admin/v1/users")
        .send()
        .await
        .expect("admin");
    assert_eq!(resp.status(), 400);
    for app in ["radio", "charts"] {
        let page: Value = admin(reqwest::Method::GET, &format!("/admin/v1/users?app={app}"))
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("json");
        let users: Vec<_> = page["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["user_id"].clone())
            .collect();
        assert_eq!(users, ["alice"], "{app}: {page}");
    }
    let solo: Value = admin(reqwest::Method::GET, "/admin/v1/users?app=solo")
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(solo["users"], serde_json::json!([]), "{solo}");
    let resp = admin(reqwest::Method::DELETE, "/admin/v1/users/alice?app=radio")
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        egress(&s, "/v1/me", &[("x-gateway-user", &radio)]).await.0,
        401
    );
    let (status, seen) = egress(&s, "/v1/me", &[("x-gateway-user", &charts)]).await;
    assert_eq!((status, seen.as_deref()), (200, Some(CHARTS.client_id)));
    assert_eq!(
        via(&s, &browser, &RADIO).await.0,
        401,
        "radio's session ended"
    );
    assert_eq!(via(&s, &browser, &CHARTS).await.0, 200, "charts' lives on");
    // The `users` command, app by app.
    let admin_url = s.gw.admin_url();
    let token = [("SPOTIFY_GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)];
    let users = |app: &'static str| {
        let args = [
            "users", "list", "--json", "--admin", &admin_url, "--app", app,
        ];
        run_cli(&args, &token)
    };
    let (code, out, err) = users("charts");
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed[0]["user_id"], "alice", "{listed}");
    let (code, out, _) = users("radio");
    assert_eq!((code, out.trim()), (0, "[]"), "revoked in radio");
    let (code, _, err) = run_cli(&["users", "list", "--admin", &admin_url], &token);
    assert_eq!(code, 1);
    assert!(err.contains("?app="), "{err}");
    // The audit events name their app.
    let lines = audit_lines(&s.gw);
    let apps = |kind| -> Vec<Value> {
        of_type(&lines, kind)
            .iter()
            .map(|l| l["app"].clone())
            .collect()
    };
    assert_eq!(apps("login.succeeded"), ["radio", "charts"]);
    assert_eq!(apps("user.revoked"), ["radio"]);
}

/// A single-app gateway's file store and cookie, after its config moves to `[[apps]]` with
/// that app named `default` beside a new one: the session still opens.
#[tokio::test]
async fn a_single_app_gateways_sessions_survive_the_move_to_apps() {
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("sessions.redb");
    let mut s = Stack::builder()
        .app(App::Echo)
        .set("store.backend", "file")
        .set("store.path", store.display().to_string())
        .mock_config(|m| {
            m.other_clients.push(mock_spotify::MockClient {
                client_id: CHARTS.client_id.into(),
                client_secret: CLIENT_SECRET.into(),
                redirect_uris: Vec::new(),
                app_name: "charts".into(),
                mode: mock_spotify::AppMode::Development,
                registered: vec!["alice".into()],
                developer_account: "acme".into(),
            })
        })
        .start()
        .await;
    let browser = browser();
    login(&browser, &s.gw, "alice", "/app").await;
    let before = s.assertion(&browser).await;
    let port = s.ports.public;
    let moved = s.gw.config().edit(move |doc| {
        let mut default = toml_edit::Table::new();
        default["name"] = toml_edit::value("default");
        default["hosts"] = toml_edit::value(toml_edit::Array::from_iter(["127.0.0.1"]));
        default["spotify"] = toml_edit::Item::Table(take_table(doc, "spotify"));
        default["upstream"] = toml_edit::Item::Table(take_table(doc, "upstream"));
        let mut charts = toml_edit::Table::new();
        charts["name"] = toml_edit::value("charts");
        charts["hosts"] = toml_edit::value(toml_edit::Array::from_iter(["127.0.0.2"]));
        let mut spotify = default["spotify"].as_table().expect("table").clone();
        spotify["client_id"] = toml_edit::value(CHARTS.client_id);
        spotify["redirect_uri"] =
            toml_edit::value(format!("http://127.0.0.2:{port}/auth/callback"));
        charts["spotify"] = toml_edit::Item::Table(spotify);
        let mut apps = toml_edit::ArrayOfTables::new();
        apps.push(default);
        apps.push(charts);
        doc["apps"] = toml_edit::Item::ArrayOfTables(apps);
        doc["listen"]["public"] = toml_edit::value(format!("0.0.0.0:{port}"));
    });
    s.gw.write_config(&moved);
    s.gw.restart().await;
    let (status, seen) = via_public(&browser, &s.gw, "/app").await;
    assert_eq!(status, 200, "the old cookie opens the default app: {seen}");
    assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
    assert!(
        seen["headers"].get("x-gateway-app").is_none(),
        "the default app names none"
    );
    // The old assertion names no app, and is the default app's still.
    assert!(claims_of(&before).get("app").is_none());
    let (status, seen) = egress(&s, "/v1/me", &[("x-gateway-user", &before)]).await;
    assert_eq!((status, seen.as_deref()), (200, Some(CLIENT_ID)));
}

/// The stack for the quota: no cache, so every call that leaves reaches the mock; with `ca`,
/// the mock on `https://` and every app verifying it against `spotify.ca_file`. Alice is
/// signed into radio.
struct Quota {
    s: Stack,
    /// Alice's radio assertion.
    radio: String,
    /// A client that reaches the mock's control endpoints (trusting `ca` over TLS).
    control: reqwest::Client,
}

async fn quota_stack(ca: Option<&Ca>) -> Quota {
    let mut builder = Stack::builder().app(App::Echo);
    if let Some(ca) = ca {
        builder = builder.mock_over_tls(ca);
    }
    let s = three_apps(builder)
        .set("egress.cache_size", 0)
        .start()
        .await;
    assert_eq!(
        s.mock.base_url().starts_with("https://"),
        ca.is_some(),
        "{}",
        s.mock.base_url()
    );
    let (browser, control) = match ca {
        Some(ca) => (ca.browser(), ca.browser()),
        None => (browser(), reqwest::Client::new()),
    };
    sign_in(&s, &browser, &RADIO, "alice").await;
    let radio = assertion(&s, &browser, &RADIO).await;
    Quota { s, radio, control }
}

impl Quota {
    /// `rate_limit_blocked_until_timestamp_seconds` of `app`: `None` when the series is not
    /// on the page.
    async fn held_until(&self, app: &str) -> Option<f64> {
        let series =
            format!(r#"spotify_gateway_rate_limit_blocked_until_timestamp_seconds{{app="{app}"}}"#);
        metric_value(&self.s.gw, &series).await
    }

    /// Sets the mock's quota (`/__mock/quota`).
    async fn set_quota(&self, quota: Value) {
        let resp = self
            .control
            .post(format!("{}/__mock/quota", self.s.mock.base_url()))
            .json(&quota)
            .send()
            .await
            .expect("mock control");
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    async fn mock_get(&self, path: &str) -> Value {
        self.control
            .get(format!("{}{path}", self.s.mock.base_url()))
            .send()
            .await
            .expect("mock control")
            .json()
            .await
            .expect("json")
    }

    /// As [`egress`]: status, and the client id whose token reached the mock.
    async fn egress(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
        let count = |stats: Value| stats["api_requests"].as_u64().expect("count");
        let before = count(self.mock_get("/__mock/stats").await);
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.s.gw.egress_url()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let status = req.send().await.expect("egress").status().as_u16();
        if count(self.mock_get("/__mock/stats").await) == before {
            return (status, None);
        }
        let log = self.mock_get("/__mock/requests").await;
        let last = log
            .as_array()
            .and_then(|l| l.iter().rev().find(|r| r["target"] == "api"))
            .expect("an API request reached the mock");
        (status, last["client_id"].as_str().map(str::to_string))
    }
}

const SEARCH: &str = "/v1/search?q=abba&type=track";

#[tokio::test]
async fn quota_exceeded_holds_every_app_of_the_account_and_no_other() {
    quota_exceeded_holds_the_account(quota_stack(None).await).await;
}

#[tokio::test]
async fn over_tls_quota_exceeded_holds_every_app_of_the_account_and_no_other() {
    let ca = Ca::new("several apps' quota CA");
    quota_exceeded_holds_the_account(quota_stack(Some(&ca)).await).await;
}

async fn quota_exceeded_holds_the_account(q: Quota) {
    q.set_quota(
        serde_json::json!({"account": "acme", "quota_exceeded": true, "retry_after": 3600}),
    )
    .await;
    let (status, reached) = q.egress("/v1/me", &[("x-gateway-user", &q.radio)]).await;
    assert_eq!((status, reached.as_deref()), (429, Some(RADIO.client_id)));
    let resp = q.s.egress_get_as(&q.radio, "/v1/me").await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["reason"], "QUOTA_EXCEEDED", "{body}");
    // Charts, of the same account, is held by the gateway: nothing reaches Spotify.
    let (status, reached) = q.egress(SEARCH, &[("x-gateway-app", "charts")]).await;
    assert_eq!((status, reached), (429, None));
    let resp = reqwest::Client::new()
        .get(format!("{}{SEARCH}", q.s.gw.egress_url()))
        .header("x-gateway-app", "charts")
        .send()
        .await
        .expect("egress");
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after > 3000, "the account's hold: {retry_after}");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["reason"], "QUOTA_EXCEEDED", "{body}");
    // Solo, of another account, goes on.
    let (status, reached) = q.egress(SEARCH, &[("x-gateway-app", "solo")]).await;
    assert_eq!((status, reached.as_deref()), (200, Some(SOLO.client_id)));
    // The counters name the app: Spotify refused radio; the gateway held radio once and
    // charts twice.
    let series = |name: &str, app: &str| {
        format!(r#"spotify_gateway_{name}{{app="{app}",reason="quota_exceeded"}}"#)
    };
    let s = &q.s;
    assert_eq!(
        s.metric(&series("spotify_rate_limited_total", "radio"))
            .await,
        1.0
    );
    assert_eq!(
        s.metric(&series("rate_limited_local_total", "charts"))
            .await,
        2.0
    );
    assert_eq!(
        s.metric(&series("rate_limited_local_total", "solo")).await,
        0.0
    );
    // The gauge says which apps are held: both of the account, for Spotify's hour; not solo.
    let in_an_hour = unix_seconds() + 3000.0;
    for app in ["radio", "charts"] {
        let until = q.held_until(app).await.unwrap_or(0.0);
        assert!(until > in_an_hour, "{app} held until {until}");
    }
    assert_eq!(q.held_until("solo").await, Some(0.0), "solo is not held");
}

/// Now, in unix seconds (the unit of the held-until gauge).
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[tokio::test]
async fn a_plain_429_holds_only_its_app() {
    a_plain_429_holds_its_app(quota_stack(None).await).await;
}

#[tokio::test]
async fn over_tls_a_plain_429_holds_only_its_app() {
    let ca = Ca::new("several apps' rate limit CA");
    a_plain_429_holds_its_app(quota_stack(Some(&ca)).await).await;
}

async fn a_plain_429_holds_its_app(q: Quota) {
    q.set_quota(serde_json::json!({"client_id": RADIO.client_id, "budget_per_30s": 0}))
        .await;
    let resp = q.s.egress_get_as(&q.radio, "/v1/me").await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.expect("json");
    assert!(body["error"].get("reason").is_none(), "{body}");
    // Radio is held now: its next call stays at the gateway.
    let (status, reached) = q.egress("/v1/me", &[("x-gateway-user", &q.radio)]).await;
    assert_eq!((status, reached), (429, None));
    // Charts, of the same account, is not.
    let (status, reached) = q.egress(SEARCH, &[("x-gateway-app", "charts")]).await;
    assert_eq!((status, reached.as_deref()), (200, Some(CHARTS.client_id)));
    // The gauge says so: radio's is set, the others' are at 0.
    let radio = q.held_until("radio").await.unwrap_or(0.0);
    assert!(radio > 0.0, "radio is held: {radio}");
    for app in ["charts", "solo"] {
        assert_eq!(q.held_until(app).await, Some(0.0), "{app} is not held");
    }
}

/// Two replicas on one Redis: each app's sessions are read on the other replica, a
/// revocation in one app reaches the other replica for that app only, and a `QUOTA_EXCEEDED`
/// one replica met holds the other replica's apps of that account, not the other account's.
#[tokio::test]
async fn on_redis_what_a_replica_learns_reaches_the_other_for_its_app_only() {
    let redis = RedisServer::start().await;
    let s = three_apps(Stack::builder().app(App::Echo))
        .redis_store(&redis)
        .set("egress.cache_size", 0)
        .edit(|doc| {
            doc["admin"] = toml_edit::table();
            doc["admin"]["token_env"] = toml_edit::value("TEST_ADMIN_TOKEN");
        })
        .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .more_gateways(1)
        .start()
        .await;
    let mut env = app_secrets_env();
    env.push(("TEST_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()));
    let other = s.start_replica_with_env(env).await;
    let mut assertions = Vec::new();
    for user in ["alice", "bob"] {
        let browser = browser();
        sign_in(&s, &browser, &RADIO, user).await;
        sign_in(&s, &browser, &CHARTS, user).await;
        assertions.push((
            assertion(&s, &browser, &RADIO).await,
            assertion(&s, &browser, &CHARTS).await,
        ));
    }
    let [(alice_radio, alice_charts), (bob_radio, _)] = &assertions[..] else {
        unreachable!("two users")
    };
    let on_other = |headers: Vec<(&'static str, String)>, path: &'static str| {
        let url = format!("{}{path}", other.egress_url());
        async move {
            let mut req = reqwest::Client::new().get(url);
            for (k, v) in &headers {
                req = req.header(*k, v);
            }
            req.send().await.expect("egress").status().as_u16()
        }
    };
    for a in [alice_radio, alice_charts, bob_radio] {
        assert_eq!(
            on_other(vec![("x-gateway-user", a.clone())], "/v1/me").await,
            200
        );
    }
    // Alice revoked in radio, on the first replica: the other forgets her radio session only.
    let resp = reqwest::Client::new()
        .delete(format!(
            "{}/admin/v1/users/alice?app=radio",
            s.gw.admin_url()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    let radio = alice_radio.clone();
    other
        .wait_until(
            Duration::from_secs(5),
            "alice's radio session to end there",
            || {
                let headers = vec![("x-gateway-user", radio.clone())];
                let status = on_other(headers, "/v1/me");
                async move { status.await == 401 }
            },
        )
        .await;
    assert_eq!(
        on_other(vec![("x-gateway-user", alice_charts.clone())], "/v1/me").await,
        200
    );
    // The account's quota, met by charts on the first replica: held on the other too, for
    // radio (same account), not for solo.
    mock_post(
        &s.mock,
        "/__mock/quota",
        Some(serde_json::json!({"account": "acme", "quota_exceeded": true, "retry_after": 3600})),
    )
    .await;
    let (status, _) = egress(&s, SEARCH, &[("x-gateway-app", "charts")]).await;
    assert_eq!(status, 429);
    // Charts met it; radio, of the same account, is held there too.
    let held_until = r#"spotify_gateway_rate_limit_blocked_until_timestamp_seconds{app="radio"}"#;
    other
        .wait_until(
            Duration::from_secs(5),
            "the account's hold to reach it",
            || {
                let gauge = metric_value(&other, held_until);
                async move { gauge.await.unwrap_or(0.0) > 0.0 }
            },
        )
        .await;
    let before = s.api_requests().await;
    let status = on_other(vec![("x-gateway-user", bob_radio.clone())], "/v1/me").await;
    assert_eq!(status, 429);
    assert_eq!(s.api_requests().await, before, "held there, not sent");
    assert_eq!(
        on_other(vec![("x-gateway-app", "solo".into())], SEARCH).await,
        200
    );
}

/// Each app warms its own HTTP/2 connection to its API at start (issue 29), through the one
/// egress listener: the warm-up names its app (`X-Gateway-App`), so the router hands it to
/// that app's proxy, the only one that knows its mark. A warm-up mark this process did not
/// make is no warm-up: the call is served as the same call without it.
#[tokio::test]
async fn every_app_warms_its_api_connection_through_the_router_and_a_forged_warm_up_is_a_call() {
    let ca = Ca::new("several apps' warm-up CA");
    let s = three_apps(Stack::builder().mock_over_tls(&ca))
        .set("server.log_level", "info,spotify_gateway=debug")
        .start()
        .await;
    let warmed = |log: &str, app: &str| {
        log.lines()
            .any(|l| l.contains("a connection to the API is warm") && l.contains(app))
    };
    wait_until(
        Duration::from_secs(10),
        "every app's warm-up to reach its proxy",
        || async {
            let log = s.gw.log();
            APPS.iter().all(|a| warmed(&log, a.name))
        },
    )
    .await;
    let call = |warm: Option<&'static str>| {
        let url = format!("{}/v1/", s.gw.egress_url());
        async move {
            let mut req = reqwest::Client::new()
                .get(url)
                .header("X-Gateway-App", RADIO.name);
            if let Some(mark) = warm {
                req = req.header("x-spotify-gateway-warm", mark);
            }
            req.send().await.expect("egress").status().as_u16()
        }
    };
    let forged = call(Some("00112233445566778899aabbccddeeff")).await;
    assert_ne!(forged, 204, "a forged warm-up is not answered as one");
    assert_eq!(forged, call(None).await, "it is served as any call");
}

/// `egress.budget_per_30s` is one per developer account, on Redis shared by the replicas:
/// the calls of radio and charts (account `acme`) on both replicas fill one window, while
/// solo's (another account) has a window of its own, also shared.
#[tokio::test]
async fn on_redis_each_developer_account_spends_its_own_budget_on_every_replica() {
    let redis = RedisServer::start().await;
    let s = three_apps(Stack::builder().app(App::Echo))
        .redis_store(&redis)
        .set("egress.cache_size", 0)
        // Two calls per 30 s, one of them at most for an app token.
        .set("egress.budget_per_30s", 2)
        .more_gateways(1)
        .start()
        .await;
    let other = s.start_replica_with_env(app_secrets_env()).await;
    let browser = browser();
    sign_in(&s, &browser, &RADIO, "alice").await;
    let radio = assertion(&s, &browser, &RADIO).await;
    let get = |base: String, headers: Vec<(&'static str, String)>| async move {
        let mut req = reqwest::Client::new().get(format!("{base}{SEARCH}"));
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        req.send().await.expect("egress").status().as_u16()
    };
    let as_radio = || vec![("x-gateway-user", radio.clone())];
    let app = |name: &str| vec![("x-gateway-app", name.to_string())];
    // Acme's window: one call of radio on each replica fills it.
    assert_eq!(get(s.gw.egress_url(), as_radio()).await, 200);
    assert_eq!(get(other.egress_url(), as_radio()).await, 200);
    // Charts, the same account, finds it full on either replica: the gateway answers.
    let before = s.api_requests().await;
    assert_eq!(get(other.egress_url(), app("charts")).await, 429);
    assert_eq!(get(s.gw.egress_url(), app("charts")).await, 429);
    assert_eq!(s.api_requests().await, before, "nothing sent for charts");
    // Solo, of another account, has its own window: its app-token share (one call) is
    // taken on this replica, and so spent on the other too.
    assert_eq!(get(s.gw.egress_url(), app("solo")).await, 200);
    assert_eq!(s.api_requests().await, before + 1, "solo's call went");
    assert_eq!(get(other.egress_url(), app("solo")).await, 429);
    // The counters name the app.
    let series = |app: &str, result: &str| {
        format!(r#"spotify_gateway_budget_total{{app="{app}",result="{result}"}}"#)
    };
    let other = &other;
    let on_other =
        |series: String| async move { metric_value(other, &series).await.unwrap_or(0.0) };
    assert_eq!(on_other(series("charts", "refused")).await, 1.0);
    assert_eq!(on_other(series("radio", "taken")).await, 1.0);
    assert_eq!(on_other(series("solo", "refused")).await, 1.0);
    assert_eq!(s.metric(&series("solo", "taken")).await, 1.0);
}

/// Forward-auth (`/auth/check`) with several apps: the check request's `Host` picks the app,
/// and its answer reads that app's cookie alone. Alice, signed into radio and charts, is
/// admitted on each host with her session there; radio's cookie on charts' check (the same
/// user) is no session: 401 with charts' login.
#[tokio::test]
async fn each_hosts_forward_auth_answers_with_its_apps_cookie_and_refuses_anothers() {
    const INGRESS_HOST: &str = "reports.test:8443";
    let s = three_apps(Stack::builder().app(App::Echo))
        .forward_auth(&[INGRESS_HOST], &["127.0.0.0/8"])
        .start()
        .await;
    let radio = session_cookie_pair(&sign_in(&s, &browser(), &RADIO, "alice").await);
    let charts = session_cookie_pair(&sign_in(&s, &browser(), &CHARTS, "alice").await);
    let check = |app: &TestApp, cookie: &str| {
        plain()
            .get(format!("{}/auth/check", app.public_url(s.ports.public)))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", INGRESS_HOST)
            .header("x-forwarded-uri", "/reports")
            .header("cookie", cookie.to_string())
            .send()
    };
    let header = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    for (app, cookie) in [(&RADIO, &radio), (&CHARTS, &charts)] {
        let resp = check(app, cookie).await.expect("check");
        assert_eq!(resp.status(), 200, "{}", app.name);
        assert_eq!(header(&resp, "x-spotify-user-id").as_deref(), Some("alice"));
        assert_eq!(header(&resp, "x-gateway-app").as_deref(), Some(app.name));
        // Its assertion is that app's: egress carries that app's token.
        let assertion = header(&resp, "x-gateway-user").expect("assertion");
        let (status, client) = egress(&s, "/v1/me", &[("x-gateway-user", &assertion)]).await;
        assert_eq!((status, client.as_deref()), (200, Some(app.client_id)));
    }
    // A cookie of one app is no session on the other's check, either way round.
    for (app, other_cookie) in [(&CHARTS, &radio), (&RADIO, &charts)] {
        let resp = check(app, other_cookie).await.expect("check");
        assert_eq!(resp.status(), 401, "{}", app.name);
        assert_eq!(header(&resp, "x-spotify-user-id"), None);
        let login = header(&resp, "x-login-url").expect("a login URL");
        assert!(
            login.starts_with(&format!("{}/auth/login?", app.public_url(s.ports.public))),
            "the login of {}: {login}",
            app.name
        );
    }
}

/// A change made to a config file.
type ConfigEdit<'a> = dyn Fn(&mut toml_edit::DocumentMut) + 'a;

/// Writes `config`, sends SIGHUP and waits until the log holds `n` lines containing `what`.
async fn reload(s: &Stack, config: &GatewayConfig, what: &str, n: usize) {
    s.gw.write_config(config);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(Duration::from_secs(5), what, || async {
        s.gw.log().matches(what).count() >= n
    })
    .await;
}

/// `config` with `paths` as the public paths of the app `index` (of [`APPS`]).
fn public_paths(config: GatewayConfig, index: usize, paths: &[&str]) -> GatewayConfig {
    let paths = toml_edit::Array::from_iter(paths.iter().copied());
    config.edit(move |doc| {
        let apps = doc["apps"].as_array_of_tables_mut().expect("[[apps]]");
        let app = apps.get_mut(index).expect("the app");
        app["upstream"]["public_paths"] = toml_edit::value(paths);
    })
}

/// SIGHUP with several apps: a live key of one app applies to that app only, and the log names
/// the apps and the app of each key; a file that adds, removes or renames an app is refused
/// whole with a line naming `apps` and the restart it needs, and the running apps go on.
#[tokio::test]
async fn a_reload_names_the_apps_and_refuses_to_add_remove_or_rename_one() {
    let s = stack().await;
    let open_on = |app: &'static TestApp| {
        let url = format!("{}/open/page", app.public_url(s.ports.public));
        async move { plain().get(url).send().await.expect("public").status() }
    };
    assert_eq!(open_on(&CHARTS).await, 401, "not public yet");
    let original = s.gw.config();
    let opened = public_paths(original.clone(), 1, &["/public/", "/open/"]);
    reload(&s, &opened, "config reloaded", 1).await;
    assert_eq!(open_on(&CHARTS).await, 200, "charts' new public path");
    assert_eq!(open_on(&RADIO).await, 401, "radio's paths unchanged");
    let log = s.gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("config reloaded"))
        .expect("the reload line");
    assert!(
        line.contains(r#"["radio", "charts", "solo"]"#),
        "the apps named: {line}"
    );
    assert!(
        line.contains("upstream.public_paths (app charts)"),
        "the key and its app: {line}"
    );

    // Renamed (solo → hits), removed (solo), added (a fourth app): each refused, nothing of
    // the file applied (radio's public path in it included).
    let rename = |doc: &mut toml_edit::DocumentMut| {
        let apps = doc["apps"].as_array_of_tables_mut().expect("[[apps]]");
        apps.get_mut(2).expect("solo")["name"] = toml_edit::value("hits");
    };
    let remove = |doc: &mut toml_edit::DocumentMut| {
        doc["apps"]
            .as_array_of_tables_mut()
            .expect("[[apps]]")
            .remove(2);
    };
    let add = |doc: &mut toml_edit::DocumentMut| {
        let apps = doc["apps"].as_array_of_tables_mut().expect("[[apps]]");
        // A copy of solo made afresh: a table cloned keeps its place in the file.
        let mut fourth = toml_edit::Table::new();
        for (key, item) in apps.get(2).expect("solo").iter() {
            fourth[key] = match item.as_table() {
                Some(table) => {
                    let mut fresh = toml_edit::Table::new();
                    for (k, v) in table.iter() {
                        fresh[k] = v.clone();
                    }
                    toml_edit::Item::Table(fresh)
                }
                None => item.clone(),
            };
        }
        fourth["name"] = toml_edit::value("extra");
        fourth["hosts"] = toml_edit::value(toml_edit::Array::from_iter(["127.0.0.4"]));
        let redirect = format!("http://127.0.0.4:{}/auth/callback", s.ports.public);
        fourth["spotify"]["redirect_uri"] = toml_edit::value(redirect);
        apps.push(fourth);
    };
    let cases: [(&ConfigEdit<'_>, &str); 3] = [
        (&rename, "apps changed (added: hits; removed: solo)"),
        (&remove, "apps changed (added: none; removed: solo)"),
        (&add, "apps changed (added: extra; removed: none)"),
    ];
    for (n, (change, logged)) in cases.into_iter().enumerate() {
        let file = public_paths(opened.clone(), 0, &["/public/", "/open/"]).edit(change);
        reload(&s, &file, "config reload failed", n + 1).await;
        let log = s.gw.log();
        assert!(
            log.contains(&format!(
                "config reload failed, keeping the running config: {logged}: adding, removing \
                 or renaming an app needs a restart"
            )),
            "{logged}:\n{log}"
        );
        assert_eq!(open_on(&RADIO).await, 401, "nothing of the file applied");
        assert_eq!(open_on(&CHARTS).await, 200, "the running config kept");
        // Solo still serves (a query of its own each time: the cache would answer).
        let search = format!("/v1/search?q=reload{n}&type=track");
        let (status, reached) = egress(&s, &search, &[("x-gateway-app", "solo")]).await;
        assert_eq!((status, reached.as_deref()), (200, Some(SOLO.client_id)));
    }
}

/// `listen.public` as a list: the apps' loopback addresses are served, and only they (the
/// demo's `--apps 2` takes no address beyond its apps').
#[tokio::test]
async fn the_public_listener_takes_the_listed_addresses_only() {
    let s = stack().await;
    for app in &APPS {
        let resp = plain()
            .get(format!("{}/auth/login", app.public_url(s.ports.public)))
            .send()
            .await
            .expect("a listed address");
        assert_eq!(resp.status(), 302, "{}", app.name);
    }
    let unlisted = std::net::SocketAddr::from(([127, 0, 0, 4], s.ports.public));
    let refused = tokio::net::TcpStream::connect(unlisted).await;
    assert!(
        refused.is_err(),
        "{unlisted} is not listed, yet something answers there"
    );
}

/// Metrics name the app: each app's logins, audit events, store operations and cache are its
/// own series, and the `app` label takes only the configured names (or none, for what no
/// app owns).
#[tokio::test]
async fn metrics_name_the_app_and_only_configured_apps() {
    let s = stack().await;
    for app in [&RADIO, &CHARTS] {
        sign_in(&s, &browser(), app, "alice").await;
    }
    let search = "/v1/search?q=metrics&type=track";
    for _ in 0..2 {
        let (status, _) = egress(&s, search, &[("x-gateway-app", "charts")]).await;
        assert_eq!(status, 200);
    }
    let series = |name: &str, app: &str, rest: &str| {
        format!(r#"spotify_gateway_{name}{{app="{app}"{rest}}}"#)
    };
    for app in ["radio", "charts"] {
        let logins = series("audit_events_total", app, r#",type="login.succeeded""#);
        assert_eq!(s.metric(&logins).await, 1.0, "{logins}");
        let puts = series(
            "store_operations_total",
            app,
            r#",backend="memory",op="put""#,
        );
        assert!(s.metric(&puts).await >= 1.0, "{puts}");
    }
    let solo_logins = series("audit_events_total", "solo", r#",type="login.succeeded""#);
    assert_eq!(
        metric_value(&s.gw, &solo_logins).await,
        Some(0.0),
        "present at 0"
    );
    assert_eq!(
        s.metric(&series("answer_cache_total", "charts", r#",result="hit""#))
            .await,
        1.0
    );
    assert!(
        s.metric(&series("answer_cache_entries", "charts", ""))
            .await
            >= 1.0
    );
    assert_eq!(
        s.metric(&series("answer_cache_total", "radio", r#",result="hit""#))
            .await,
        0.0
    );
    // Every `app` value on the page is a configured app's name, or empty.
    let page = scrape(&s.gw).await;
    let mut seen = std::collections::BTreeSet::new();
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, rest)) = line.split_once("app=\"") {
            seen.insert(rest.split('"').next().unwrap_or_default().to_string());
        }
    }
    let allowed = ["", "radio", "charts", "solo"];
    assert!(
        seen.iter().all(|a| allowed.contains(&a.as_str())),
        "{seen:?}"
    );
    assert!(seen.contains("solo"), "every app's series exist: {seen:?}");
}

/// Webhooks name the app: alice's logins into radio and charts reach the receiver as two
/// `login.succeeded` events, each with its app.
#[tokio::test]
async fn webhooks_name_the_app_of_each_event() {
    let receiver = WebhookReceiver::start(Answer::Ok).await;
    let url = receiver.url.clone();
    let s = three_apps(Stack::builder().app(App::Echo))
        .env(WEBHOOK_SECRET_VAR, WEBHOOK_SECRET)
        .edit(move |doc| {
            let logins = toml_edit::Value::from(toml_edit::Array::from_iter(["login.succeeded"]));
            webhooks(doc, &[hook("audit", &url, &[("events", logins)])]);
        })
        .start()
        .await;
    for app in [&RADIO, &CHARTS] {
        sign_in(&s, &browser(), app, "alice").await;
    }
    s.gw.wait_until(
        Duration::from_secs(15),
        "both events at the receiver",
        || async { receiver.received().len() >= 2 },
    )
    .await;
    let mut apps: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json())
        .inspect(|e| assert_eq!(e["type"], "login.succeeded", "{e}"))
        .map(|e| e["app"].as_str().unwrap_or_default().to_string())
        .collect();
    apps.sort();
    assert_eq!(apps, ["charts", "radio"]);
}

/// `/auth/disconnect` on radio's host ends alice's radio sessions only, and its page names
/// radio; her charts session goes on.
#[tokio::test]
async fn a_disconnect_acts_on_its_app_and_says_so() {
    let s = stack().await;
    let b = browser();
    sign_in(&s, &b, &RADIO, "alice").await;
    sign_in(&s, &b, &CHARTS, "alice").await;
    let radio = RADIO.public_url(s.ports.public);
    let page = b
        .get(format!("{radio}/auth/disconnect"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("the form")
        .text()
        .await
        .expect("page");
    let (_, rest) = page
        .split_once(r#"name="csrf" value=""#)
        .expect("the form carries its token");
    let token = rest.split('"').next().expect("token");
    let resp = b
        .post(format!("{radio}/auth/disconnect"))
        .header("accept", "text/html")
        .header("origin", radio.as_str())
        .form(&[("csrf", token)])
        .send()
        .await
        .expect("disconnect");
    assert_eq!(resp.status(), 200);
    let done = resp.text().await.expect("page");
    assert!(done.contains("Disconnected"), "{done}");
    assert!(done.contains("(radio)"), "the page names the app: {done}");
    assert_eq!(via(&s, &b, &RADIO).await.0, 401, "radio: signed out");
    let (status, seen) = via(&s, &b, &CHARTS).await;
    assert_eq!(status, 200, "charts: still signed in");
    assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
}
