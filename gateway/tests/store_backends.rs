//! The same store suite against every backend: `memory`, `file` (redb) and Redis in its
//! three shapes (`redis`: a real redis-server; `redis-sentinel`: a master, a replica and
//! three sentinels; `redis-cluster`: three masters with a replica each).

mod common;

use std::sync::Arc;
use std::time::Duration;

use spotify_gateway::secret::Secret;
use spotify_gateway::store::RedisStore;
use spotify_gateway::store::{
    CoolDownNotice, FileStore, Invalidation, MemoryStore, Namespace, Store,
};

async fn suite(store: &dyn Store) {
    let ns = Namespace::Session;
    let minute = Duration::from_secs(60);
    assert_eq!(store.get(ns, "a").await.unwrap(), None);
    store.put(ns, "a", b"one".to_vec(), minute).await.unwrap();
    assert_eq!(
        store.get(ns, "a").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        store.get(Namespace::Pending, "a").await.unwrap(),
        None,
        "namespaces are apart"
    );
    store.put(ns, "a", b"two".to_vec(), minute).await.unwrap();
    assert_eq!(
        store.get(ns, "a").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(store.count(ns).await.unwrap(), 1);

    // take is single-use, even under concurrency.
    store
        .put(Namespace::Pending, "s", b"login".to_vec(), minute)
        .await
        .unwrap();
    let takes =
        futures::future::join_all((0..8).map(|_| store.take(Namespace::Pending, "s"))).await;
    let winners = takes
        .into_iter()
        .filter(|t| matches!(t, Ok(Some(_))))
        .count();
    assert_eq!(winners, 1);

    assert!(store.delete(ns, "a").await.unwrap());
    assert!(!store.delete(ns, "a").await.unwrap());
    assert_eq!(store.get(ns, "a").await.unwrap(), None);

    // Expiry: invisible at once, gone after purge (Redis expires by itself).
    store
        .put(ns, "old", b"x".to_vec(), Duration::from_millis(1))
        .await
        .unwrap();
    store.put(ns, "live", b"y".to_vec(), minute).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.get(ns, "old").await.unwrap(), None);
    assert_eq!(store.take(ns, "old").await.unwrap(), None);
    store.purge_expired().await.unwrap();
    assert_eq!(store.count(ns).await.unwrap(), 1);
    store.ping().await.unwrap();

    // The user → sessions index: every session of a user, each entry expiring with it.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert!(store.user_sessions("alice").await.unwrap().is_empty());
    store.add_user_session("alice", "s1", minute).await.unwrap();
    store.add_user_session("alice", "s2", minute).await.unwrap();
    store.add_user_session("alice", "s2", minute).await.unwrap();
    store.add_user_session("bob", "s3", minute).await.unwrap();
    store
        .add_user_session("alice", "gone", Duration::from_millis(1))
        .await
        .unwrap();
    // A user id that is a prefix of another does not see the other's sessions.
    store.add_user_session("ali", "s4", minute).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        sorted(store.user_sessions("alice").await.unwrap()),
        ["s1", "s2"],
        "one entry per session, expired ones left out"
    );
    assert_eq!(store.user_sessions("bob").await.unwrap(), ["s3"]);
    assert_eq!(store.user_sessions("ali").await.unwrap(), ["s4"]);
    assert!(store.remove_user_session("alice", "s1").await.unwrap());
    assert!(!store.remove_user_session("alice", "s1").await.unwrap());
    assert!(
        !store.remove_user_session("bob", "s2").await.unwrap(),
        "not bob's"
    );
    assert_eq!(store.user_sessions("alice").await.unwrap(), ["s2"]);
    store.purge_expired().await.unwrap();
    assert_eq!(store.user_sessions("alice").await.unwrap(), ["s2"]);
    assert!(store.remove_user_session("alice", "s2").await.unwrap());
    assert!(store.user_sessions("alice").await.unwrap().is_empty());
    assert_eq!(
        store.count(Namespace::Session).await.unwrap(),
        1,
        "the index is not a session"
    );

    // Listing the users in the index, a page at a time, in byte order; users whose entries
    // all expired or were removed (alice) are not listed.
    let mut expected = vec!["ali".to_string(), "bob".to_string()];
    for i in 0..25 {
        let user = format!("user-{i:02}");
        store
            .add_user_session(&user, &format!("k{i}"), minute)
            .await
            .unwrap();
        expected.push(user);
    }
    store
        .add_user_session("expired-user", "old", Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    expected.sort();
    let (mut listed, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = store.users_page(after.as_deref(), 10).await.unwrap();
        assert!(page.users.len() <= 10);
        pages += 1;
        listed.extend(page.users);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, expected);
    assert_eq!(pages, 3, "27 users in pages of 10");
    let exact = store.users_page(None, expected.len()).await.unwrap();
    assert_eq!(exact.users, expected);
    assert_eq!(exact.next, None, "a page that holds the rest is the last");
    let tail = store.users_page(Some("user-23"), 10).await.unwrap();
    assert_eq!(tail.users, ["user-24"]);
    assert!(store
        .users_page(Some("zzz"), 10)
        .await
        .unwrap()
        .users
        .is_empty());

    // Locks: always granted by single-process stores, exclusive by owner on a shared one.
    assert!(store.lock("refresh:x", "owner-a", minute).await.unwrap());
    let second = store.lock("refresh:x", "owner-b", minute).await.unwrap();
    if store.backend() == "redis" {
        assert!(!second, "held by owner-a");
        store.unlock("refresh:x", "owner-b").await.unwrap();
        assert!(
            !store.lock("refresh:x", "owner-b", minute).await.unwrap(),
            "not b's to release"
        );
        store.unlock("refresh:x", "owner-a").await.unwrap();
        assert!(store.lock("refresh:x", "owner-b", minute).await.unwrap());
        // A lock whose holder died expires.
        assert!(store
            .lock("refresh:y", "dead", Duration::from_millis(50))
            .await
            .unwrap());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(store.lock("refresh:y", "alive", minute).await.unwrap());
    }
}

#[tokio::test]
async fn memory_backend() {
    suite(&MemoryStore::default()).await;
}

#[tokio::test]
async fn file_backend_and_it_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/store.redb");
    {
        let store = FileStore::open(&path).unwrap();
        suite(&store).await;
        store
            .put(
                Namespace::Session,
                "keep",
                b"v".to_vec(),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
    }
    let reopened = FileStore::open(&path).unwrap();
    assert_eq!(
        reopened
            .get(Namespace::Session, "keep")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
    // A second process cannot open the same file: redb locks it.
    let again = FileStore::open(&path);
    assert!(again.is_err(), "the file is held by `reopened`");
}

/// A shared store: the suite, with invalidations reaching its own subscription.
async fn shared_suite(store: &dyn Store) {
    let mut changes = store
        .invalidations()
        .expect("a shared store publishes invalidations");
    // The subscription announces itself with `All` once it is up.
    let first = tokio::time::timeout(Duration::from_secs(10), changes.recv()).await;
    assert_eq!(first.ok().flatten(), Some(Invalidation::All));
    suite(store).await;
    store.publish_invalidation("session-key").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), changes.recv()).await;
    assert_eq!(
        got.ok().flatten(),
        Some(Invalidation::Key("session-key".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_and_invalidations() {
    let redis = common::RedisServer::start().await;
    let store = RedisStore::open(&Secret::runtime(redis.url())).unwrap();
    shared_suite(&store).await;
}

/// The `[store]` table of a config for `backend` with `keys`, opened as the gateway does.
fn open_configured(store_table: &str) -> Arc<dyn Store> {
    use spotify_gateway::config::Config;
    let text = format!(
        r#"
[spotify]
client_id = "id"
client_secret = "secret"
redirect_uri = "http://127.0.0.1:8080/auth/callback"
[session]
secret = "a-session-secret-that-is-long-enough-0123"
[store]
{store_table}
"#
    );
    let config = Config::parse(&text, "test.toml", &|_| None).expect("valid config");
    let metrics = Arc::new(spotify_gateway::telemetry::metrics::Metrics::new());
    spotify_gateway::store::open(&config.store, metrics).expect("open")
}

fn quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", items.join(", "))
}

fn sentinel_table(set: &common::SentinelSet) -> String {
    format!(
        "backend = \"redis-sentinel\"\nsentinels = {}\nmaster_name = \"{}\"\n",
        quoted(&set.sentinel_addrs()),
        common::MASTER_NAME
    )
}

fn cluster_table(cluster: &common::Cluster) -> String {
    format!(
        "backend = \"redis-cluster\"\nnodes = {}\n",
        quoted(&cluster.seeds())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_backend_and_invalidations() {
    let set = common::SentinelSet::start().await;
    let store = open_configured(&sentinel_table(&set));
    shared_suite(store.as_ref()).await;
    let other = open_configured(&sentinel_table(&set));
    shares_cool_downs_and_the_budget(store.as_ref(), other.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_backend_and_invalidations() {
    let cluster = common::Cluster::start().await;
    let store = open_configured(&cluster_table(&cluster));
    shared_suite(store.as_ref()).await;
    // The records spread over every master; the user index's buckets too.
    for master in cluster.master_ports().await {
        assert!(
            cluster.keys_on(master, "sgw:*").await > 0,
            "master {master} holds none of the store's keys"
        );
    }
    let other = open_configured(&cluster_table(&cluster));
    shares_cool_downs_and_the_budget(store.as_ref(), other.as_ref()).await;
}

/// The quota's shared state on Redis: a cool-down reaches every subscriber (and one that
/// subscribes later, from its key); each developer account's budget window is one for every
/// client, and two accounts' windows are apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shares_cool_downs_and_the_budget() {
    let redis = common::RedisServer::start().await;
    let store = RedisStore::open(&Secret::runtime(redis.url())).unwrap();
    let late = RedisStore::open(&Secret::runtime(redis.url())).unwrap();
    shares_cool_downs_and_the_budget(&store, &late).await;
    assert_eq!(
        MemoryStore::default()
            .take_budget(None, 3, None, Duration::from_secs(30))
            .await
            .unwrap(),
        None
    );
}

/// `late` has not read its cool-downs yet: it learns the running one from its key.
async fn shares_cool_downs_and_the_budget(store: &dyn Store, late: &dyn Store) {
    let notices = tokio::sync::Mutex::new(
        store
            .cool_downs()
            .expect("a shared store shares cool-downs"),
    );
    let mut changes = store.invalidations();
    if let Some(changes) = changes.as_mut() {
        let up = tokio::time::timeout(Duration::from_secs(10), changes.recv()).await;
        assert_eq!(up.ok().flatten(), Some(Invalidation::All), "subscribed");
    }
    // The store's subscription is up (announced on its invalidations, or, when a suite took
    // them, by a notice coming through).
    // The app it names travels too (`[[apps]]`), through the channel and the key.
    let notice = CoolDownNotice {
        hold_ms: 60_000,
        quota_exceeded: true,
        app: Some("radio".into()),
    };
    common::wait_until(
        Duration::from_secs(10),
        "a cool-down to come through",
        || async {
            store.publish_cool_down(notice.clone()).await.unwrap();
            let mut notices = notices.lock().await;
            tokio::time::timeout(Duration::from_millis(200), notices.recv())
                .await
                .ok()
                .flatten()
                == Some(notice.clone())
        },
    )
    .await;

    let mut late_notices = late.cool_downs().expect("cool-downs");
    let running = tokio::time::timeout(Duration::from_secs(10), late_notices.recv())
        .await
        .ok()
        .flatten()
        .expect("the running cool-down, read on subscribing");
    assert!(running.quota_exceeded);
    assert_eq!(running.app.as_deref(), Some("radio"));
    assert!((50_000..=60_000).contains(&running.hold_ms), "{running:?}");

    let window = Duration::from_secs(30);
    // App-token calls have their own share (2 of 4), counted on both replicas.
    for s in [store, late] {
        let taken = s.take_budget(None, 4, Some(2), window).await.unwrap();
        assert_eq!(taken, Some(None), "an app call taken");
    }
    let app_full = store.take_budget(None, 4, Some(2), window).await.unwrap();
    assert!(
        app_full.is_some_and(|wait| wait.is_some_and(|w| w <= window)),
        "the app share is spent on both: {app_full:?}"
    );
    for s in [late, store] {
        assert_eq!(
            s.take_budget(None, 4, None, window).await.unwrap(),
            Some(None),
            "a user's call"
        );
    }
    let full = late
        .take_budget(None, 4, None, window)
        .await
        .unwrap()
        .expect("shared");
    assert!(full.is_some_and(|wait| wait <= window), "{full:?}");

    // Another developer account (`[[apps]] developer_account`) has a window of its own,
    // shared by both replicas too: the default account's full window leaves it untouched.
    for s in [store, late] {
        assert_eq!(
            s.take_budget(Some("acme"), 2, None, window).await.unwrap(),
            Some(None),
            "acme's call, the default account's window full"
        );
    }
    let acme_full = store
        .take_budget(Some("acme"), 2, None, window)
        .await
        .unwrap()
        .expect("shared");
    assert!(
        acme_full.is_some(),
        "acme's window holds both replicas' calls"
    );
    assert_eq!(
        late.take_budget(Some("radio-team"), 2, None, window)
            .await
            .unwrap(),
        Some(None),
        "a third account is not held by the other two"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_errors_are_clear_when_redis_is_down() {
    let url = format!("redis://127.0.0.1:{}", common::free_port());
    let store = RedisStore::open(&Secret::runtime(url)).unwrap();
    let err = store.get(Namespace::Session, "a").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("redis"), "{text}");
    assert!(store.ping().await.is_err());
}

/// `rediss://`: the server's certificate is verified against the system's roots plus
/// `store.ca_file`; without the file, a private CA's certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_trusts_the_store_ca_file() {
    let ca = common::Ca::new("Redis test CA");
    let tls = ca
        .ca
        .issue(common::LOOPBACK, mock_spotify::Validity::Current);
    let (_redis, tls_port) = common::RedisNode::start_tls(&tls.cert_pem, &tls.key_pem).await;
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let trusted = open_configured(&format!(
        "backend = \"redis\"\nurl = \"{url}\"\nca_file = \"{}\"\n",
        ca.file()
    ));
    trusted
        .ping()
        .await
        .expect("verified against store.ca_file");
    let ns = Namespace::Session;
    trusted
        .put(ns, "k", b"v".to_vec(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        trusted.get(ns, "k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );

    let untrusted = open_configured(&format!("backend = \"redis\"\nurl = \"{url}\"\n"));
    let err = untrusted
        .ping()
        .await
        .expect_err("a private CA is not a system root");
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// `store.url` plus `store.password_env`: the password from the environment reaches Redis,
/// and a wrong one is a clear error that does not echo it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_password_from_the_environment() {
    use spotify_gateway::config::Config;
    let redis = common::RedisServer::start_with_password("redis-pass-0123456789").await;
    let config = |pw: &'static str| {
        let text = format!(
            r#"
[spotify]
client_id = "id"
client_secret = "secret"
redirect_uri = "http://127.0.0.1:8080/auth/callback"
[session]
secret = "a-session-secret-that-is-long-enough-0123"
[store]
backend = "redis"
url = "{}"
password_env = "REDIS_PASSWORD"
"#,
            redis.url()
        );
        Config::parse(&text, "test.toml", &move |name| {
            (name == "REDIS_PASSWORD").then(|| pw.to_string())
        })
        .expect("valid config")
    };
    let metrics = std::sync::Arc::new(spotify_gateway::telemetry::metrics::Metrics::new());
    let open = |pw| spotify_gateway::store::open(&config(pw).store, metrics.clone());
    let good = open("redis-pass-0123456789").expect("open");
    good.ping().await.expect("authenticated");
    suite(good.as_ref()).await;

    let bad = open("wrong-password-999").expect("opening is lazy");
    let err = bad.ping().await.expect_err("wrong password");
    assert!(!err.to_string().contains("wrong-password-999"), "{err}");
    let printed = format!("{:?}", config("wrong-password-999"));
    assert!(
        !printed.contains("wrong-password-999"),
        "Debug shows no password"
    );
}
