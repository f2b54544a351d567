//! Who a request speaks for, and that nobody else can say so: a session cookie that is
//! tampered with, truncated, foreign or ended opens nothing; the identity headers the app gets
//! (user id, `account_id`, scopes, the assertion) are the gateway's, never the client's
//! however spelt; on egress a forged, expired or foreign assertion is refused, and a plain
//! user id is trusted only in trusted-header mode, from loopback unless loudly allowed.
//!
//! The adversarial cases check refusal, no state change and no call to Spotify
//! (`common/snapshot.rs`).

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::Value;

// The gateway library, as this file uses it.
use spotify_gateway::crypto::Keyring;
use spotify_gateway::proxy::assertion::{verify, Claims};
use spotify_gateway::secret::Secret;

/// The identity headers the app must only ever get from the gateway.
const IDENTITY: [&str; 4] = [
    "x-spotify-user-id",
    "x-spotify-account-id",
    "x-spotify-scopes",
    "x-gateway-user",
];

fn keys(secret: &str) -> Keyring {
    Keyring::new(&Secret::runtime(secret), None)
}

/// An HS256 assertion with these claims, signed with the assertion key of `secret`.
fn mint(secret: &str, claims: &Claims) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(keys(secret).assertion_key()),
    )
    .expect("sign")
}

/// The claims of an assertion, as the gateway's type (read, not verified).
fn claims(assertion: &str) -> Claims {
    serde_json::from_value(claims_of(assertion)).expect("claims")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_cookies_open_no_session() {
    let s = watched_stack(Stack::builder()).await;
    let (other_gw, _other_hits) = s.other_deployment().await;
    let alice = session_for(&s.gw, "alice").await;
    let foreign = session_for(&other_gw, "alice").await;
    let login_cookie = pending_login(&s.gw, "alice").await.login_cookie;
    let logged_out = session_for(&s.gw, "bob").await;
    let resp = plain()
        .post(format!("{}/auth/logout", s.gw.public_url()))
        .header("cookie", format!("{SESSION_COOKIE}={logged_out}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 200);

    let many: String = (0..500)
        .map(|i| format!("junk{i}=value{i}; "))
        .collect::<String>()
        + &format!("{SESSION_COOKIE}={}", tamper(&alice));
    let cases: Vec<(&str, String)> = vec![
        ("tampered", format!("{SESSION_COOKIE}={}", tamper(&alice))),
        (
            "truncated",
            format!("{SESSION_COOKIE}={}", &alice[..alice.len() - 5]),
        ),
        (
            "from another deployment's secret",
            format!("{SESSION_COOKIE}={foreign}"),
        ),
        (
            "a login cookie as the session cookie",
            format!("{SESSION_COOKIE}={login_cookie}"),
        ),
        ("old after logout", format!("{SESSION_COOKIE}={logged_out}")),
        ("empty", format!("{SESSION_COOKIE}=")),
        ("not base64", format!("{SESSION_COOKIE}=%3Cscript%3E!!..--")),
        (
            "oversized (9 KB)",
            format!("{SESSION_COOKIE}={}", "A".repeat(9 * 1024)),
        ),
        ("500 cookies", many),
    ];
    for (name, cookie) in &cases {
        let before = s.snapshot().await;
        let resp = plain()
            .get(format!("{}/auth/userinfo", s.gw.public_url()))
            .header("cookie", cookie)
            .send()
            .await
            .expect("userinfo");
        assert_eq!(resp.status(), 401, "{name}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "unauthenticated", "{name}");
        // The app is not reached with it either.
        let resp = plain()
            .get(format!("{}/app", s.gw.public_url()))
            .header("cookie", cookie)
            .header("accept", "application/json")
            .send()
            .await
            .expect("app");
        assert_eq!(resp.status(), 401, "{name}");
        assert!(!creates_session(&resp), "{name}");
        s.assert_untouched(&before, name).await;
    }

    // Beyond pingora's limits (1 MiB of header, 256 header lines): refused while parsing.
    let huge = format!(
        "GET /auth/userinfo HTTP/1.1\r\nHost: gw\r\nCookie: {SESSION_COOKIE}={}\r\nConnection: close\r\n\r\n",
        "A".repeat(1100 * 1024)
    );
    let mut lines =
        String::from("GET /auth/userinfo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    for i in 0..300 {
        lines.push_str(&format!("Cookie: c{i}=v\r\n"));
    }
    lines.push_str(&format!("Cookie: {SESSION_COOKIE}={alice}\r\n\r\n"));
    for (name, request) in [
        ("oversized Cookie header (1.1 MB)", huge),
        ("300 Cookie header lines", lines),
    ] {
        let before = s.snapshot().await;
        let (status, answer) = raw_request(s.gw.ports.public, request.as_bytes()).await;
        assert!(
            status == 400,
            "{name}: {status} {}",
            &answer[..answer.len().min(200)]
        );
        assert!(
            !answer.to_ascii_lowercase().contains("set-cookie"),
            "{name}"
        );
        s.assert_untouched(&before, name).await;
    }
    // The real cookie still works: nothing above spoiled it.
    assert_eq!(s.userinfo_status(&alice).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_never_reach_the_app_as_sent() {
    let s = watched_stack(Stack::builder()).await;
    let alice = session_for(&s.gw, "alice").await;
    // Every spoofed value carries a marker that no real value contains.
    let spoof: &[(&str, &str)] = &[
        ("X-Spotify-User-Id", "bob-SPOOFED"),
        ("X-SPOTIFY-USER-ID", "bob-SPOOFED"),
        ("x-spotify-scopes", "everything-SPOOFED ugc-image-upload"),
        ("X-Spotify-Account-Id", "acc-SPOOFED"),
        ("X_Spotify_Account_Id", "acc-SPOOFED"),
        ("X-Gateway-User", "forged.assertion.SPOOFED"),
        // CGI/WSGI-style servers read `_` as `-`.
        ("X_Spotify_User_Id", "bob-SPOOFED"),
        ("x_gateway_user", "forged.assertion.SPOOFED"),
        ("X-Spotify_Scopes", "everything-SPOOFED"),
    ];
    let send = |path: &str, cookie: Option<&str>| {
        let mut req = plain()
            .get(format!("{}{path}", s.gw.public_url()))
            .header("accept", "application/json");
        for (n, v) in spoof {
            req = req.header(*n, *v);
        }
        if let Some(c) = cookie {
            req = req.header("cookie", format!("{SESSION_COOKIE}={c}"));
        }
        req.send()
    };
    let no_spoof_reaches = |hit: &AppHit, case: &str| {
        for name in IDENTITY {
            for v in hit.lookalike_values(name) {
                assert!(
                    !v.contains("SPOOFED"),
                    "{case}: {name}: {v} reached the app"
                );
            }
        }
    };

    // Without a session, on a public path: the app gets no identity at all.
    let before = s.snapshot().await;
    let resp = send("/public/logo.svg", None).await.expect("public");
    assert_eq!(resp.status(), 200);
    let hits = s.app_hits_since(&before);
    assert_eq!(hits.len(), 1);
    for name in IDENTITY {
        assert!(
            hits[0].lookalike_values(name).is_empty(),
            "public path: {name}"
        );
    }
    s.assert_spotify_untouched(&before, "public path").await;

    // With alice's session: exactly the gateway's values.
    let before = s.snapshot().await;
    let resp = send("/app", Some(&alice)).await.expect("app");
    assert_eq!(resp.status(), 200);
    let hits = s.app_hits_since(&before);
    assert_eq!(hits.len(), 1);
    no_spoof_reaches(&hits[0], "alice's session");
    assert_eq!(hits[0].lookalike_values("x-spotify-user-id"), ["alice"]);
    assert_eq!(hits[0].lookalike_values("x-spotify-account-id").len(), 1);
    let assertion = hits[0].lookalike_values("x-gateway-user");
    assert_eq!(assertion.len(), 1);
    let claims = verify(&keys(SESSION_SECRET), assertion[0]).expect("valid");
    assert_eq!(claims.sub, "alice");
    s.assert_spotify_untouched(&before, "alice's session").await;

    // Without a session, on a protected path: refused, the app is not reached.
    let before = s.snapshot().await;
    let resp = send("/app", None).await.expect("app");
    assert_eq!(resp.status(), 401);
    s.assert_untouched(&before, "no session").await;

    // A header smuggled inside another one with a bare LF is still a client header.
    let before = s.snapshot().await;
    let (status, answer) = raw_request(
        s.gw.ports.public,
        b"GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Note: a\nX-Spotify-User-Id: bob-SPOOFED\r\nConnection: close\r\n\r\n",
    )
    .await;
    // httparse takes a bare LF as a line end: two headers, and the spoofed one is stripped.
    assert_eq!(status, 200, "bare LF: {answer}");
    assert_eq!(s.app_hits_since(&before).len(), 1, "bare LF");
    for hit in s.app_hits_since(&before) {
        no_spoof_reaches(&hit, "bare LF");
    }
    s.assert_spotify_untouched(&before, "bare LF").await;
}

/// alice's `account_id` as Spotify (the mock) reports it.
async fn account_id_at_spotify(s: &Stack, assertion: &str) -> String {
    let me: Value = s
        .egress_get_as(assertion, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    me["account_id"].as_str().expect("account_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_id_reaches_the_app_the_assertion_and_userinfo_and_names_a_user_on_egress() {
    let s = Stack::builder()
        .app(App::Echo)
        .set("egress.trust_user_header", true)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    let account = account_id_at_spotify(&s, &assertion).await;
    assert_ne!(account, "alice");

    // To the app: the gateway's value, never the client's.
    let resp = b
        .get(format!("{}/app", s.gw.public_url()))
        .header("x-spotify-account-id", "acc-SPOOFED")
        .send()
        .await
        .expect("app");
    let seen: Value = resp.json().await.expect("json");
    assert_eq!(seen["headers"]["x-spotify-account-id"], account.as_str());
    assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
    let claims = claims_of(
        seen["headers"]["x-gateway-user"]
            .as_str()
            .expect("assertion"),
    );
    assert_eq!(claims["account_id"], account.as_str());
    assert_eq!(claims["sub"], "alice");
    let (status, info) = s.userinfo(&b).await;
    assert_eq!(status, 200);
    assert_eq!(info["account_id"], account.as_str());

    // Trusted-header mode: the account id names alice, in either header.
    for header in ["x-spotify-account-id", "x-spotify-user-id"] {
        let resp = s
            .http
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .header(header, &account)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 200, "{header}");
        let me: Value = resp.json().await.expect("json");
        assert_eq!(me["id"], "alice", "{header}");
        // Neither header travels on to Spotify.
        let sent = s.last_api_request().await;
        assert!(sent["headers"].get("x-spotify-account-id").is_none());
        assert!(sent["headers"].get("x-spotify-user-id").is_none());
    }
    let resp = s
        .http
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-spotify-account-id", "acc-nobody")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 401, "an account id with no session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_assertions_are_refused_on_egress() {
    // No app token: a call that names no valid user gets nothing at all.
    let s = watched_stack(Stack::builder().set("egress.app_token", false)).await;
    let (other_gw, _other_hits) = s.other_deployment().await;
    let alice_cookie = session_for(&s.gw, "alice").await;
    let alice = s.assertion_for(&alice_cookie).await;
    let bob_cookie = session_for(&s.gw, "bob").await;
    let bob = s.assertion_for(&bob_cookie).await;
    let ended_cookie = session_for(&s.gw, "bob").await;
    let ended = s.assertion_for(&ended_cookie).await;
    let resp = plain()
        .post(format!("{}/auth/logout", s.gw.public_url()))
        .header("cookie", format!("{SESSION_COOKIE}={ended_cookie}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 200);
    // A genuine assertion from another deployment, for its own alice.
    let foreign = {
        let cookie = session_for(&other_gw, "alice").await;
        let resp = plain()
            .get(format!("{}/app", other_gw.public_url()))
            .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
            .send()
            .await
            .expect("other app");
        let seen: Value = resp.json().await.expect("json");
        seen["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .find(|h| h[0] == "x-gateway-user")
            .and_then(|h| h[1].as_str())
            .expect("assertion")
            .to_string()
    };
    // Warm: alice's token works, so refusals below are the assertion's doing.
    let resp = plain()
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-gateway-user", &alice)
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);

    let real = claims(&alice);
    let now = now_secs();
    let with = |f: &dyn Fn(&mut Claims)| {
        let mut c = claims(&alice);
        f(&mut c);
        c
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let parts: Vec<&str> = alice.split('.').collect();
    let bob_claims = serde_json::to_string(&with(&|c| c.sub = "bob".into())).expect("json");
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-an-assertion".into()),
        ("three dots of garbage", "a.b.c".into()),
        (
            "alg none",
            format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), parts[1]),
        ),
        (
            "tampered claims (sub = bob), signature kept",
            format!("{}.{}.{}", parts[0], b64(&bob_claims), parts[2]),
        ),
        ("signature stripped", format!("{}.{}.", parts[0], parts[1])),
        (
            "wrong key",
            mint(
                "an-attackers-guess-at-the-secret-0123456789",
                &with(&|c| c.iat = now),
            ),
        ),
        ("genuine, from another deployment", foreign),
        (
            "expired (right key)",
            mint(
                SESSION_SECRET,
                &with(&|c| {
                    c.iat = now - 600;
                    c.exp = now - 1;
                }),
            ),
        ),
        (
            "wrong issuer (right key)",
            mint(SESSION_SECRET, &with(&|c| c.iss = "someone-else".into())),
        ),
        (
            "alice's name on bob's session (right key)",
            mint(SESSION_SECRET, &with(&|c| c.sid = claims(&bob).sid)),
        ),
        (
            "a session key that does not exist (right key)",
            mint(SESSION_SECRET, &with(&|c| c.sid = "no-such-session".into())),
        ),
        ("after logout", ended),
        ("oversized", format!("{}.{}", alice, "A".repeat(4096))),
    ];
    assert_eq!(real.sub, "alice");
    for (name, assertion) in &cases {
        let before = s.snapshot().await;
        let resp = plain()
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .header("x-gateway-user", assertion)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 401, "{name}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["status"], 401, "{name}");
        s.assert_untouched(&before, name).await;
        // The same forgery as a bearer token is ignored: the call names no user.
        let before = s.snapshot().await;
        let resp = plain()
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .bearer_auth(assertion)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 401, "{name} as bearer");
        s.assert_untouched(&before, name).await;
    }

    // A plain user id is not trusted by default; a non-UTF-8 assertion is no assertion.
    let before = s.snapshot().await;
    let resp = plain()
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-spotify-user-id", "alice")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 401, "untrusted X-Spotify-User-Id");
    s.assert_untouched(&before, "untrusted X-Spotify-User-Id")
        .await;
    let (status, answer) = raw_request(
        s.gw.ports.egress,
        b"GET /v1/me HTTP/1.1\r\nHost: gw\r\nX-Gateway-User: \xff\xfe\xfd\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401, "non-UTF-8: {answer}");
    s.assert_untouched(&before, "non-UTF-8 assertion").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_user_header_needs_loopback_or_the_loud_setting() {
    // Start-up refuses it on a network address, naming key and line.
    let ports = Ports::new();
    let text = GatewayConfig::template(ports, "http://127.0.0.1:9")
        .set("listen.egress", format!("0.0.0.0:{}", ports.egress))
        .set("egress.trust_user_header", true)
        .to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &text).expect("write");
    let line = text
        .lines()
        .position(|l| l.starts_with("trust_user_header"))
        .expect("line")
        + 1;
    let envs = [
        ("TEST_CLIENT_SECRET", CLIENT_SECRET),
        ("TEST_SESSION_SECRET", SESSION_SECRET),
    ];
    for command in ["check-config", "run"] {
        let (code, _out, err) =
            run_cli(&[command, "--config", path.to_str().expect("path")], &envs);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(
            err.contains(&format!("line {line}, key `egress.trust_user_header`")),
            "{command}: {err}"
        );
        assert!(err.contains("allow_trusted_header_on_network"), "{err}");
    }

    // With the loud setting, from a non-loopback address of this machine: honoured, and the
    // start-up log says what that means. (A loopback-bound listener only ever sees loopback
    // peers; the refusal of non-loopback peers without the setting is the unit test
    // `trusted_user_header_only_from_loopback_unless_allowed` in proxy/egress.rs.)
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback IPv4 address on this machine: network part not run");
        return;
    };
    let ports = Ports::new();
    let s = Stack::builder()
        .ports(ports)
        .app(App::Recording)
        .set("listen.egress", format!("0.0.0.0:{}", ports.egress))
        .set("egress.app_token", false)
        .set("egress.trust_user_header", true)
        .set("egress.allow_trusted_header_on_network", true)
        .start()
        .await;
    let gw = &s.gw;
    assert!(
        gw.log().contains("SECURITY WARNING")
            && gw.log().contains("allow_trusted_header_on_network"),
        "{}",
        gw.log()
    );
    session_for(gw, "bob").await;
    let from_network = reqwest::Client::builder()
        .local_address(Some(ip))
        .build()
        .expect("client");
    let resp = from_network
        .get(format!("http://{ip}:{}/v1/me", ports.egress))
        .header("x-spotify-user-id", "bob")
        .send()
        .await
        .expect("egress from the network");
    assert_eq!(resp.status(), 200);
    let me: Value = resp.json().await.expect("json");
    assert_eq!(me["id"], "bob");
}

/// A non-loopback IPv4 address of this machine, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}
