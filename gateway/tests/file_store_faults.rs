//! The file store (redb) on a full disk: a real tmpfs, filled up and freed. A rotated refresh
//! token the disk cannot take is kept in memory until it lands, `/readyz` says why it fails
//! meanwhile, and an I/O error does not leave the store broken until a restart.
//!
//! These tests mount a tmpfs, so they need root (CI runs them as root); without it they fail
//! saying so.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use spotify_gateway::store::{FileStore, Namespace, Store, StoreErrorKind, FREE_SPACE_RESERVE};

/// Room for the redb file (about 1.5 MiB when new) and the free-space reserve, with a margin.
const TMPFS_SIZE: u64 = 8 * 1024 * 1024;

/// How long the gateway may take to notice that space is back (it writes unsaved records
/// again every second).
const RECOVERY: Duration = Duration::from_secs(15);

async fn readyz(gw: &Gateway) -> (u16, String) {
    let resp = reqwest::get(format!("{}/readyz", gw.admin_url()))
        .await
        .expect("readyz");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_rotated_refresh_token() {
    // Declared first, so it is unmounted last, after the gateway has exited.
    let disk = Tmpfs::mount(TMPFS_SIZE);
    let store_path = disk.path().join("sessions.redb");
    let mut s = Stack::builder()
        .app(App::Echo)
        .set("spotify.flow", "pkce")
        .set("store.backend", "file")
        .set("store.path", store_path.to_str().expect("utf-8 path"))
        .start()
        .await;
    let alice = browser();
    login(&alice, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&alice).await;
    assert_eq!(egress_status(&s.gw, &assertion).await, 200);

    // The disk fills up. Spotify ends alice's access token, so her next call refreshes, and
    // under PKCE Spotify rotates her refresh token: the new one exists only in the gateway.
    let filler = disk.fill();
    let refreshes = token_requests(&s.mock, "refresh_token").await;
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    assert_eq!(
        egress_status(&s.gw, &assertion).await,
        200,
        "the refresh works on a full disk:\n{}",
        s.gw.log()
    );
    assert_eq!(
        token_requests(&s.mock, "refresh_token").await,
        refreshes + 1
    );

    // Not ready, naming the store and why; the new record waits in memory.
    let (status, body) = readyz(&s.gw).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("session store (file)") && body.contains("is full"),
        "{body}"
    );
    assert!(
        body.contains("1 refreshed session(s) not yet saved"),
        "{body}"
    );
    assert_eq!(s.metric("spotify_gateway_unsaved_sessions").await, 1.0);
    assert!(
        s.metric("spotify_gateway_store_errors_total{app=\"default\",backend=\"file\",kind=\"unavailable\"}")
            .await
            >= 1.0
    );
    assert!(s
        .gw
        .log()
        .contains("the session store file takes no writes"));
    // Alice's calls go on from memory.
    assert_eq!(egress_status(&s.gw, &assertion).await, 200);

    // A new login cannot be kept now: it is refused at its start, before Spotify issues
    // anything that could be lost.
    let bob = browser();
    let logins_at_spotify = token_requests(&s.mock, "authorization_code").await;
    let resp = bob
        .get(format!("{}/auth/login?return_to=/", s.gw.public_url()))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body = resp.text().await.unwrap_or_default();
    assert!(body.contains("session store"), "{body}");
    assert_eq!(
        token_requests(&s.mock, "authorization_code").await,
        logins_at_spotify
    );

    // Space comes back: the waiting record lands and the gateway is ready again, by itself.
    std::fs::remove_file(&filler).expect("remove the filler");
    s.gw.wait_until(
        RECOVERY,
        "/readyz to answer 200 once space is back",
        || async { readyz(&s.gw).await.0 == 200 },
    )
    .await;
    assert_eq!(s.metric("spotify_gateway_unsaved_sessions").await, 0.0);
    assert!(s
        .gw
        .log()
        .contains("the session store file takes writes again"));
    login(&bob, &s.gw, "bob", "/").await;

    // The rotated refresh token reached the disk: after a restart on the same file, alice's
    // next refresh works (the mock answers the rotated-away token with invalid_grant, which
    // would end her session).
    s.gw.restart().await;
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    let refreshes = token_requests(&s.mock, "refresh_token").await;
    assert_eq!(
        egress_status(&s.gw, &assertion).await,
        200,
        "alice's session survived:\n{}",
        s.gw.log()
    );
    assert_eq!(
        token_requests(&s.mock, "refresh_token").await,
        refreshes + 1
    );
    let (status, _) = s.userinfo(&bob).await;
    assert_eq!(status, 200, "bob's login was kept");
}

/// redb refuses every transaction after one I/O error until the database is opened again; the
/// store does that at the next operation. A real ENOSPC inside redb: a value larger than the
/// space left (but with the reserve free, so the store lets the write through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_reopens_the_database_at_the_next_operation() {
    let disk = Tmpfs::mount(TMPFS_SIZE);
    let store = FileStore::open(&disk.path().join("sessions.redb")).expect("open");
    let reopens = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reopens);
    // Reopens that worked (one that failed shows as the next operation's error).
    store.on_reopen(move |opened| {
        if opened {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (ns, minute) = (Namespace::Session, Duration::from_secs(60));
    store
        .put(ns, "kept", b"a session".to_vec(), minute)
        .await
        .expect("put");

    // Leave twice the reserve, then write more than that: redb fails half-way through.
    let filler = disk.fill();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .expect("filler");
    let len = file.metadata().expect("filler size").len();
    file.set_len(len - 2 * FREE_SPACE_RESERVE)
        .expect("shrink the filler");
    let too_big = vec![7u8; 4 * FREE_SPACE_RESERVE as usize];
    let e = store
        .put(ns, "too-big", too_big, minute)
        .await
        .expect_err("no room for it");
    assert_eq!(e.kind, StoreErrorKind::Unavailable);
    assert!(e.to_string().contains("No space left on device"), "{e}");
    assert_eq!(reopens.load(Ordering::SeqCst), 0);

    // Space comes back; the next operations work, on a database opened once more.
    drop(file);
    std::fs::remove_file(&filler).expect("remove the filler");
    store
        .put(ns, "after", b"written".to_vec(), minute)
        .await
        .expect("the store writes again without a restart");
    assert_eq!(reopens.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.get(ns, "kept").await.expect("get").as_deref(),
        Some(&b"a session"[..])
    );
    assert_eq!(store.get(ns, "too-big").await.expect("get"), None);
    store.ping().await.expect("ready");
    assert_eq!(reopens.load(Ordering::SeqCst), 1, "one reopen was enough");
}

/// With too little space left, a record is refused before redb writes anything, so the
/// database needs no reopening; reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_records_before_redb_writes() {
    let disk = Tmpfs::mount(TMPFS_SIZE);
    let store = FileStore::open(&disk.path().join("sessions.redb")).expect("open");
    let reopens = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reopens);
    store.on_reopen(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let (ns, minute) = (Namespace::Session, Duration::from_secs(60));
    store
        .put(ns, "a", b"record".to_vec(), minute)
        .await
        .expect("put");

    let filler = disk.fill();
    assert!(disk.available() < FREE_SPACE_RESERVE);
    let e = store
        .put(ns, "c", b"record".to_vec(), minute)
        .await
        .expect_err("refused");
    assert_eq!(e.kind, StoreErrorKind::Unavailable);
    assert!(e.to_string().contains("is full"), "{e}");
    let e = store.ping().await.expect_err("not ready");
    assert!(e.to_string().contains("is full"), "{e}");
    assert_eq!(
        store.get(ns, "a").await.expect("reads go on").as_deref(),
        Some(&b"record"[..])
    );

    std::fs::remove_file(&filler).expect("remove the filler");
    store
        .put(ns, "c", b"record".to_vec(), minute)
        .await
        .expect("space is back");
    store.ping().await.expect("ready");
    assert_eq!(
        reopens.load(Ordering::SeqCst),
        0,
        "nothing needed reopening"
    );
}
