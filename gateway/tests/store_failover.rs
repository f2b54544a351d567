//! Failover under load: two gateway replicas on a Sentinel set (master, replica, three
//! sentinels) or a Cluster (three masters, a replica each), under a steady load of egress
//! calls, PKCE logins and forced token rotations; the master is killed (`kill -9`) and
//! Sentinel or the cluster promotes its replica. Pass: no call past its deadline (every one
//! answered 200, or 503 with `Retry-After`, the store away, also when the call waited for the
//! store until its deadline; a 504, a deadline that passed, is a failure), no sign-out, no
//! session lost, every user still
//! refreshes afterwards (no rotated refresh token lost), `/readyz` says 503 while the store is
//! gone and 200 after, and the 429 hold and the budget are still shared.
//!
//! Why this file is over 600 lines: both shapes' tests share one load (its tasks, its tally,
//! the checks after the failover); split apart, the rule the two tests apply would be read in
//! two places.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `egress.total_timeout`: the deadline of every egress call.
const DEADLINE: Duration = Duration::from_secs(5);
/// How long the test's clients wait for an answer before calling it late: the deadline,
/// plus room for a busy machine. An answer after this is a call past its deadline.
const PATIENCE: Duration = Duration::from_secs(8);
/// Users signed in before the failover.
const USERS: usize = 8;
/// The mock's access tokens live this long: each session refreshes (and, under PKCE, rotates
/// its refresh token) every couple of seconds under the load.
const TOKEN_LIFETIME: Duration = Duration::from_secs(2);
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const ADMIN_TOKEN_VAR: &str = "TEST_ADMIN_TOKEN";

/// Where one replica answers, for the load's tasks.
#[derive(Clone)]
struct Urls {
    public: String,
    egress: String,
    admin: String,
}

impl Urls {
    fn of(gw: &Gateway) -> Urls {
        Urls {
            public: gw.public_url(),
            egress: gw.egress_url(),
            admin: gw.admin_url(),
        }
    }
}

/// The users the mock lets sign in (a development-mode app); each signs in many times (a
/// session per sign-in).
const NAMES: [&str; 2] = ["alice", "bob"];

/// A session: its user, a label of its own, the browser holding its cookie, and the assertion
/// apps send.
#[derive(Clone)]
struct User {
    name: String,
    label: String,
    browser: reqwest::Client,
    assertion: String,
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// Answers the load accepts, by kind.
    ok: u64,
    unavailable: u64,
    /// Anything else: a sign-out (401), a 504 (the deadline passed), an error, a 503 without
    /// `Retry-After`.
    wrong: Vec<String>,
    /// Calls (egress, login, `/readyz`) not answered within `PATIENCE`.
    late: Vec<String>,
    /// `/readyz` answers seen: 200 and 503.
    ready: u64,
    not_ready: u64,
    /// Users signed in during the load.
    new_users: Vec<User>,
    /// 200s per user after `recovered` was set.
    after: std::collections::HashMap<String, u64>,
}

impl Tally {
    fn summary(&self) -> String {
        format!(
            "ok {}, unavailable {}, ready {}/{}, wrong {:?}, late {:?}, served after {:?}",
            self.ok,
            self.unavailable,
            self.ready,
            self.not_ready,
            self.wrong.iter().take(10).collect::<Vec<_>>(),
            self.late.iter().take(10).collect::<Vec<_>>(),
            self.after
        )
    }
}

struct Load {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    recovered: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn patient() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client")
}

/// Two replicas on `store` (an edit of the stack's config), PKCE, an admin API, a budget large
/// enough never to refuse, no cache (every call reaches Spotify).
async fn two_replicas(store: impl FnOnce(StackBuilder) -> StackBuilder) -> (Stack, Gateway) {
    let builder = Stack::builder()
        .app(App::Echo)
        .token_lifetime(TOKEN_LIFETIME)
        .set("spotify.flow", "pkce")
        .set("egress.total_timeout", format!("{}s", DEADLINE.as_secs()))
        .set("egress.cache_size", 0)
        .set("egress.budget_per_30s", 100_000)
        .edit(|doc| {
            let mut admin = toml_edit::Table::new();
            admin["token_env"] = toml_edit::value(ADMIN_TOKEN_VAR);
            doc["admin"] = toml_edit::Item::Table(admin);
        })
        .env(ADMIN_TOKEN_VAR, ADMIN_TOKEN)
        .more_gateways(1);
    let s = store(builder).start().await;
    let other = s
        .start_replica_with_env(vec![(ADMIN_TOKEN_VAR.into(), ADMIN_TOKEN.into())])
        .await;
    (s, other)
}

/// A whole PKCE login on `gw`: `Ok(user)`, `Err(None)` when the gateway answered 503 with
/// `Retry-After` (the store is away), `Err(Some(why))` for anything else.
async fn try_login(gw: &Urls, name: &str, label: String) -> Result<User, Option<String>> {
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PATIENCE)
        .build()
        .expect("browser");
    let step = |r: Result<reqwest::Response, reqwest::Error>| match r {
        Ok(resp) if resp.status() == 302 => Ok(location(&resp)),
        Ok(resp) if resp.status() == 503 && resp.headers().contains_key("retry-after") => Err(None),
        Ok(resp) => Err(Some(format!(
            "{name}: {} at {}",
            resp.status(),
            resp.url().path()
        ))),
        Err(e) if e.is_timeout() => Err(Some(format!("late: {name}'s login"))),
        Err(e) => Err(Some(format!("{name}: {e}"))),
    };
    let authorize = step(
        b.get(format!("{}/auth/login?return_to=/app", gw.public))
            .send()
            .await,
    )?;
    let callback = step(
        b.get(format!(
            "{authorize}&mock_user={name}&mock_decision=approve"
        ))
        .send()
        .await,
    )?;
    step(b.get(&callback).send().await)?;
    let app = b.get(format!("{}/app", gw.public)).send().await;
    let (status, seen) = match app {
        Ok(r) => (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        ),
        Err(e) if e.is_timeout() => return Err(Some(format!("late: {name}'s /app"))),
        Err(e) => return Err(Some(format!("{name}: /app {e}"))),
    };
    match seen["headers"]["x-gateway-user"].as_str() {
        Some(assertion) if status == 200 => Ok(User {
            name: name.to_string(),
            label,
            browser: b,
            assertion: assertion.to_string(),
        }),
        _ if status == 503 => Err(None),
        _ => Err(Some(format!(
            "{name}: /app answered {status} after the login"
        ))),
    }
}

/// One egress `GET /v1/me` as `user` on `gw`, counted in `tally`.
async fn egress_call(
    http: &reqwest::Client,
    gw: &Urls,
    user: &User,
    tally: &Mutex<Tally>,
    recovered: bool,
) {
    let answer = http
        .get(format!("{}/v1/me", gw.egress))
        .header("x-gateway-user", &user.assertion)
        .send()
        .await;
    let mut t = tally.lock().unwrap();
    match answer {
        Ok(r) if r.status() == 200 => {
            t.ok += 1;
            if recovered {
                *t.after.entry(user.label.clone()).or_default() += 1;
            }
        }
        // The store away (at once, or at the call's deadline while it waited for the store).
        Ok(r) if r.status() == 503 && r.headers().contains_key("retry-after") => t.unavailable += 1,
        Ok(r) => t
            .wrong
            .push(format!("{}: egress {}", user.label, r.status())),
        Err(e) if e.is_timeout() => t.late.push(format!("{}: egress", user.label)),
        Err(e) => t.wrong.push(format!("{}: egress {e}", user.label)),
    }
}

impl Load {
    /// Starts the load on both replicas: each user's egress calls (their tokens live
    /// `TOKEN_LIFETIME`: refreshed, and rotated, every second or two), new logins, `/readyz`.
    fn start(s: &Stack, other: &Gateway, users: &[User]) -> Load {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let recovered = Arc::new(AtomicBool::new(false));
        let gws = Arc::new([Urls::of(&s.gw), Urls::of(other)]);
        let mut tasks = Vec::new();
        for (i, user) in users.iter().cloned().enumerate() {
            let (tally, stop, recovered, gws) =
                (tally.clone(), stop.clone(), recovered.clone(), gws.clone());
            tasks.push(tokio::spawn(async move {
                let http = patient();
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let after = recovered.load(Ordering::Relaxed);
                    egress_call(&http, &gws[n % 2], &user, &tally, after).await;
                    n += 1;
                }
            }));
        }
        {
            // Logins, alternately on each replica, and the new users' calls.
            let (tally, stop, gws) = (tally.clone(), stop.clone(), gws.clone());
            tasks.push(tokio::spawn(async move {
                let http = patient();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let gw = &gws[n % 2];
                    let name = NAMES[n % NAMES.len()];
                    let outcome = try_login(gw, name, format!("{name}#new-{n}")).await;
                    match outcome {
                        Ok(user) => {
                            egress_call(&http, &gws[(n + 1) % 2], &user, &tally, false).await;
                            tally.lock().unwrap().new_users.push(user);
                        }
                        Err(None) => tally.lock().unwrap().unavailable += 1,
                        Err(Some(why)) if why.starts_with("late") => {
                            tally.lock().unwrap().late.push(why)
                        }
                        Err(Some(why)) => tally.lock().unwrap().wrong.push(why),
                    }
                    n += 1;
                }
            }));
        }
        {
            let (tally, stop, gws) = (tally.clone(), stop.clone(), gws.clone());
            tasks.push(tokio::spawn(async move {
                let http = patient();
                while !stop.load(Ordering::Relaxed) {
                    for gw in gws.iter() {
                        let answer = http.get(format!("{}/readyz", gw.admin)).send().await;
                        let mut t = tally.lock().unwrap();
                        match answer {
                            Ok(r) if r.status() == 200 => t.ready += 1,
                            Ok(r) if r.status() == 503 => t.not_ready += 1,
                            Ok(r) => t.wrong.push(format!("/readyz {}", r.status())),
                            Err(_) => t.late.push("/readyz".into()),
                        }
                    }
                    // Pacing, as a load balancer's probe.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        Load {
            tally,
            stop,
            recovered,
            tasks,
        }
    }

    /// Waits until `/readyz` has said 503 (the store is gone: it must not say ready).
    async fn wait_not_ready(&self) {
        wait_until(
            PATIENCE,
            "/readyz to say the store is unavailable",
            || async { self.tally.lock().unwrap().not_ready > 0 },
        )
        .await;
    }

    /// After the failover: every user of the load has had `n` calls answered 200.
    async fn wait_served_after(&self, users: &[User], n: u64, gws: [&Gateway; 2]) {
        self.recovered.store(true, Ordering::Relaxed);
        wait_until_explained(
            FAILOVER_TIMEOUT,
            "every user's calls to be served again",
            || async {
                let t = self.tally.lock().unwrap();
                users
                    .iter()
                    .all(|u| t.after.get(&u.label).copied().unwrap_or(0) >= n)
            },
            || {
                let logs: Vec<String> = gws
                    .iter()
                    .map(|gw| {
                        let log = gw.log();
                        let lines: Vec<&str> = log
                            .lines()
                            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                            .collect();
                        lines[lines.len().saturating_sub(30)..].join("\n")
                    })
                    .collect();
                format!(
                    "{}\n{}",
                    self.tally.lock().unwrap().summary(),
                    logs.join("\n---\n")
                )
            },
        )
        .await;
    }

    async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        Arc::try_unwrap(self.tally)
            .ok()
            .expect("the load is over")
            .into_inner()
            .unwrap()
    }
}

/// Both replicas say ready.
async fn wait_ready(gws: [&Gateway; 2]) {
    for gw in gws {
        gw.wait_until(
            FAILOVER_TIMEOUT,
            "/readyz 200 after the failover",
            || async {
                reqwest::get(format!("{}/readyz", gw.admin_url()))
                    .await
                    .is_ok_and(|r| r.status() == 200)
            },
        )
        .await;
    }
}

/// The warnings and errors both replicas logged (pingora's retries left out), for a failure's
/// message.
fn problems_logged(gws: [&Gateway; 2]) -> String {
    gws.iter()
        .map(|gw| {
            gw.log()
                .lines()
                // Not the store errors every call logs while the master is gone.
                .filter(|l| !l.contains("Fail to proxy") && !l.contains("operation failed"))
                .filter(|l| !l.contains("budget unavailable"))
                .filter(|l| {
                    l.contains("WARN")
                        || l.contains("ERROR")
                        || l.contains("invalid_grant")
                        || l.contains("refresh")
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// What must hold after the failover, whatever the shape.
async fn nothing_lost(s: &Stack, other: &Gateway, tally: &Tally, users: &[User]) {
    assert!(
        tally.late.is_empty(),
        "calls past their deadline: {:?}",
        tally.late
    );
    assert!(
        tally.wrong.is_empty(),
        "wrong answers: {:?}\n{}",
        tally.wrong,
        problems_logged([&s.gw, other])
    );
    assert!(tally.ok > 0 && tally.ready > 0, "the load ran");
    let everyone: Vec<&User> = users.iter().chain(&tally.new_users).collect();
    let gws = [&s.gw, other];
    // No session lost: each is signed in on both replicas.
    for user in &everyone {
        for gw in gws {
            let (status, info) = via_public(&user.browser, gw, "/auth/userinfo").await;
            assert_eq!(
                status,
                200,
                "{} lost their session (or the store is away on {}): {info}\n{}",
                user.label,
                gw.public_url(),
                problems_logged([&s.gw, other])
            );
            assert_eq!(info["user_id"], user.name.as_str());
        }
    }
    // No rotated refresh token lost: twice, every token goes stale on both replicas (their
    // clocks move on) and every session refreshes with the refresh token it holds now.
    let refreshes = token_requests(&s.mock, "refresh_token").await;
    for _ in 0..2 {
        for gw in gws {
            gw.advance_clock(TOKEN_LIFETIME).await;
        }
        for user in &everyone {
            for gw in gws {
                let status = egress_status(gw, &user.assertion).await;
                assert_eq!(
                    status,
                    200,
                    "{} cannot refresh after the failover on {}\n{}",
                    user.label,
                    gw.egress_url(),
                    problems_logged([&s.gw, other])
                );
            }
        }
    }
    let refreshed = token_requests(&s.mock, "refresh_token").await - refreshes;
    assert!(
        refreshed >= 2 * everyone.len() as u64,
        "every session refreshed twice: {refreshed} refreshes for {} sessions",
        everyone.len()
    );
}

/// The budget's window is one for both replicas: emptied, then calls on each land in it.
/// `key` is the window's key; `nodes` the masters that may hold it.
async fn budget_shared(s: &Stack, other: &Gateway, user: &User, nodes: &[u16], key: &str) {
    let window_len = || async {
        let mut n = 0;
        for node in nodes {
            let len: Option<usize> = query_port(*node, redis::cmd("ZCARD").arg(key)).await;
            n += len.unwrap_or(0);
        }
        n
    };
    for node in nodes {
        // On a cluster, the masters that do not own the key answer MOVED: nothing to do.
        let _: Option<i64> = query_port(*node, redis::cmd("DEL").arg(key)).await;
    }
    assert_eq!(window_len().await, 0);
    for gw in [&s.gw, other, &s.gw, other] {
        assert_eq!(egress_status(gw, &user.assertion).await, 200);
    }
    assert_eq!(
        window_len().await,
        4,
        "both replicas' calls are in the one window"
    );
}

/// A 429 on one replica holds the other.
async fn hold_shared(s: &Stack, other: &Gateway, user: &User) {
    s.fault(serde_json::json!({"target": "api", "status": 429, "retry_after": 60, "times": 1}))
        .await;
    assert_eq!(egress_status(&s.gw, &user.assertion).await, 429);
    other
        .wait_until(
            Duration::from_secs(5),
            "the other replica to hold",
            || async {
                metric_value(
                    other,
                    r#"spotify_gateway_rate_limit_blocked_until_timestamp_seconds{app="default"}"#,
                )
                .await
                .unwrap_or(0.0)
                    > 0.0
            },
        )
        .await;
}

async fn sign_in(s: &Stack, other: &Gateway, n: usize) -> Vec<User> {
    sign_in_from(s, other, 0, n).await
}

/// Users `from..from + n`, signed in alternately on each replica.
async fn sign_in_from(s: &Stack, other: &Gateway, from: usize, n: usize) -> Vec<User> {
    let mut users = Vec::new();
    for i in from..from + n {
        let gw = if i % 2 == 0 { &s.gw } else { other };
        let name = NAMES[i % NAMES.len()];
        let user = try_login(&Urls::of(gw), name, format!("{name}#{i}"))
            .await
            .unwrap_or_else(|e| panic!("login before the failover: {e:?}"));
        users.push(user);
    }
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_load_loses_nothing() {
    let mut set = SentinelSet::start().await;
    let sentinels = set.sentinel_addrs();
    let (s, other) = two_replicas(|b| {
        b.set("store.backend", "redis-sentinel")
            .set("store.sentinels", sentinels)
            .set("store.master_name", MASTER_NAME)
    })
    .await;
    let users = sign_in(&s, &other, USERS).await;
    let load = Load::start(&s, &other, &users);
    load.wait_served_after(&users, 0, [&s.gw, &other]).await;

    let old = set.kill_master().await;
    load.wait_not_ready().await;
    let new = set.wait_promoted(old).await;
    wait_ready([&s.gw, &other]).await;
    load.wait_served_after(&users, 3, [&s.gw, &other]).await;
    let tally = load.stop().await;
    nothing_lost(&s, &other, &tally, &users).await;

    for gw in [&s.gw, &other] {
        let master = format!("spotify_gateway_store_master{{node=\"127.0.0.1:{new}\"}}");
        assert_eq!(
            metric_value(gw, &master).await,
            Some(1.0),
            "the new master is named"
        );
        assert!(
            metric_value(gw, "spotify_gateway_store_failovers_total").await >= Some(1.0),
            "the failover is counted"
        );
    }
    budget_shared(&s, &other, &users[0], &[new], "sgw:budget").await;
    hold_shared(&s, &other, &users[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_under_load_loses_nothing() {
    let mut cluster = Cluster::start().await;
    cluster.wait_replicated().await;
    let seeds = cluster.seeds();
    let (s, other) = two_replicas(|b| {
        b.set("store.backend", "redis-cluster")
            .set("store.nodes", seeds)
    })
    .await;
    let mut users = sign_in(&s, &other, USERS).await;
    // Session keys fall on any slot: more users until every master holds some, so the one
    // killed takes sessions with it and its replica must bring them back.
    let masters = cluster.master_ports().await;
    for _ in 0..8 {
        let mut empty = 0;
        for &master in &masters {
            if cluster.keys_on(master, "sgw:sessions:*").await == 0 {
                empty += 1;
            }
        }
        if empty == 0 {
            break;
        }
        let more = sign_in_from(&s, &other, users.len(), 4).await;
        users.extend(more);
    }
    let victim = masters[0];
    let on_victim = cluster.keys_on(victim, "sgw:sessions:*").await;
    assert!(on_victim > 0, "the master to kill holds sessions");
    let load = Load::start(&s, &other, &users);
    load.wait_served_after(&users, 0, [&s.gw, &other]).await;

    cluster.kill(victim);
    load.wait_not_ready().await;
    cluster.wait_whole(3).await;
    wait_ready([&s.gw, &other]).await;
    load.wait_served_after(&users, 3, [&s.gw, &other]).await;
    let tally = load.stop().await;
    nothing_lost(&s, &other, &tally, &users).await;
    // The keys spread over every master (the sessions' keys fall on any slot).
    for master in cluster.master_ports().await {
        assert!(
            cluster.keys_on(master, "sgw:sessions:*").await > 0,
            "master {master} holds no session (the killed master's replica holds its sessions now)"
        );
    }

    // The admin listing: every user exactly once, over pages, across the masters.
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!(
            "{}/admin/v1/users?limit=3&cursor={cursor}",
            s.gw.admin_url()
        );
        let page: Value = reqwest::Client::new()
            .get(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("json");
        for u in page["users"].as_array().expect("users") {
            listed.push(u["user_id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(listed, NAMES, "every user once, in order");

    let masters = cluster.master_ports().await;
    budget_shared(&s, &other, &users[0], &masters, "sgw:{budget}").await;
    hold_shared(&s, &other, &users[0]).await;
}
