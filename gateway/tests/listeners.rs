//! Each listener's connections, through the real gateway: a taken listen address is a clear
//! start-up error, a client trickling its header is cut off, a flood of the public listener
//! leaves the egress and admin listeners working under a low file-descriptor limit, and on
//! SIGTERM readiness fails at once, every request in flight is finished, new connections are
//! refused, and the admin listener stays up through the drain.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this test process's own descriptor limit: the flood needs more than the default.
fn raise_own_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 4096,
        "hard limit {} is too low",
        limit.rlim_cur
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_header_is_cut_off() {
    let s = Stack::builder()
        .app(App::Echo)
        .set("server.header_read_timeout", "2s")
        .start()
        .await;
    let mut slow = TcpStream::connect(("127.0.0.1", s.ports.public))
        .await
        .expect("connect");
    slow.write_all(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n")
        .await
        .expect("write");
    // One header byte every half second, as a slowloris client sends them; the gateway must
    // close the connection once the deadline passes, whatever keeps arriving.
    let started = Instant::now();
    let closed = loop {
        if slow.write_all(b"X").await.is_err() {
            break true;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(500), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => panic!("an answer to an incomplete header"),
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(8) {
            break false;
        }
    };
    assert!(closed, "a trickling client kept its connection for 8 s");
    assert_eq!(
        s.metric(r#"spotify_gateway_header_timeouts_total{listener="public"}"#)
            .await,
        1.0
    );
    // A request that takes longer than the header deadline, once its header is in, is not
    // cut: the deadline is for the header only.
    s.fault(json!({"target": "api", "delay_ms": 3000, "times": 1}))
        .await;
    let resp = s.egress_get("/v1/search?q=abba&type=track").await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_the_public_listener_leaves_egress_and_admin_working() {
    raise_own_fd_limit();
    const FD_LIMIT: u64 = 1200;
    const FLOOD: usize = 1250;
    let stack = Stack::builder().app(App::Echo).start().await;
    // The same gateway again, now under a low descriptor limit.
    let ports = Ports::new();
    let mut config = stack.config_for(ports);
    config = config.set(
        "upstream.url",
        format!("http://127.0.0.1:{}", stack.ports.app),
    );
    let gw = Gateway::start_limited(ports, &config, Some(FD_LIMIT)).await;

    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        match TcpStream::connect(("127.0.0.1", gw.ports.public)).await {
            Ok(c) => flood.push(c),
            Err(e) => panic!("the kernel refused a connection: {e}"),
        }
    }
    gw.wait_until(
        Duration::from_secs(10),
        "the public listener to refuse connections over its limit",
        || async {
            metric_value(
                &gw,
                r#"spotify_gateway_connections_refused_total{listener="public"}"#,
            )
            .await
            .unwrap_or(0.0)
                > 0.0
        },
    )
    .await;
    // While the flood holds its connections, the internal apps' calls still work...
    for _ in 0..20 {
        let resp = reqwest::Client::new()
            .get(format!("{}/v1/search?q=abba&type=track", gw.egress_url()))
            .send()
            .await
            .expect("egress call during the flood");
        assert_eq!(resp.status(), 200);
    }
    // ...and so do the probes.
    let ready = reqwest::get(format!("{}/readyz", gw.admin_url()))
        .await
        .expect("readyz during the flood");
    assert_eq!(ready.status(), 200);
    let open = metric_value(
        &gw,
        r#"spotify_gateway_open_connections{listener="public"}"#,
    )
    .await
    .unwrap_or(0.0);
    assert!(
        open > 0.0 && open < FLOOD as f64,
        "open public connections: {open}"
    );
    assert!(!gw.log().contains("Too many open files"), "{}", gw.log());
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_answers_during_the_drain() {
    let mut s = Stack::builder()
        .app(App::Echo)
        .set("server.grace_period", "4s")
        .start()
        .await;
    assert_eq!(
        s.egress_get("/v1/search?q=a&type=track").await.status(),
        200
    );
    // One call stays in flight at Spotify for the drain.
    s.fault(json!({"target": "api", "delay_ms": 2500, "times": 1}))
        .await;
    let url = format!("{}/v1/search?q=abba&type=track", s.gw.egress_url());
    let in_flight = tokio::spawn(async move {
        reqwest::get(url)
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    });
    s.gw.wait_until(
        Duration::from_secs(5),
        "the slow call to reach the mock",
        || async { s.api_requests().await >= 2 },
    )
    .await;

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGTERM) };
    let ready_url = format!("{}/readyz", s.gw.admin_url());
    let answer = |url: String| async move {
        match reqwest::get(url).await {
            Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap_or_default())),
            Err(_) => None,
        }
    };
    s.gw.wait_until(
        Duration::from_secs(2),
        "/readyz to answer 503 after SIGTERM",
        || async { matches!(answer(ready_url.clone()).await, Some((503, _))) },
    )
    .await;
    // The call is still in flight, so the process is draining: the probe keeps connecting.
    assert!(!in_flight.is_finished(), "the slow call finished too early");
    let (status, body) = answer(ready_url.clone())
        .await
        .expect("the admin listener refused a probe during the drain");
    assert_eq!(status, 503);
    assert!(body.contains("shutting down"), "{body}");
    let metrics = reqwest::get(format!("{}/metrics", s.gw.admin_url()))
        .await
        .expect("metrics during the drain");
    assert_eq!(metrics.status(), 200);
    assert_eq!(in_flight.await.expect("task"), 200);
    let status = s.gw.wait_exit();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_and_finishes_every_request_in_flight() {
    let mut s = Stack::builder()
        .app(App::Echo)
        .set("server.grace_period", "4s")
        .start()
        .await;
    // Warm the app token so the slow calls are all in Spotify's hands.
    assert_eq!(
        egress_get_status(&s.gw, "/v1/search?q=a&type=track", None).await,
        200
    );
    mock_post(&s.mock, "/__mock/reset", None).await;
    const IN_FLIGHT: u64 = 40;
    mock_post(
        &s.mock,
        "/__mock/fault",
        Some(json!({"target": "api", "delay_ms": 1500, "times": IN_FLIGHT})),
    )
    .await;
    // Each call its own (another offset), so none is coalesced with another.
    let calls: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let url = format!(
                "{}/v1/search?q=abba&type=track&offset={i}",
                s.gw.egress_url()
            );
            tokio::spawn(async move {
                reqwest::get(url)
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    // Every call has reached Spotify (and waits there) before the signal.
    wait_until(
        Duration::from_secs(10),
        format!("all {IN_FLIGHT} calls to reach the mock"),
        || async { mock_stats(&s.mock).await["api_requests"].as_u64() >= Some(IN_FLIGHT) },
    )
    .await;

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGTERM) };
    let ready_url = format!("{}/readyz", s.gw.admin_url());
    s.gw.wait_until(
        Duration::from_secs(1),
        "/readyz to stop answering 200 after SIGTERM",
        || async {
            let status = reqwest::get(&ready_url)
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            status != 200
        },
    )
    .await;

    let statuses = futures::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    assert_eq!(ok as u64, IN_FLIGHT, "{statuses:?}");

    // New connections are no longer accepted.
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.ports.egress)).await;
    assert!(refused.is_err(), "the egress listener still accepts");
    let status = s.gw.wait_exit();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_taken_listen_address_is_a_clear_start_up_error() {
    let ports = Ports::new();
    let taken = std::net::TcpListener::bind(("127.0.0.1", ports.public)).expect("hold the port");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("gateway.toml");
    GatewayConfig::template(ports, "http://127.0.0.1:9").write(&path);
    let (code, _, err) = run_cli(
        &["run", "--config", path.to_str().expect("utf-8")],
        &[
            ("TEST_CLIENT_SECRET", CLIENT_SECRET),
            ("TEST_SESSION_SECRET", SESSION_SECRET),
        ],
    );
    drop(taken);
    assert_ne!(code, 0);
    assert!(err.contains("listen.public"), "{err}");
    assert!(err.contains(&ports.public.to_string()), "{err}");
}
