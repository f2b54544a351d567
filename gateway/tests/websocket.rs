//! WebSockets and server-sent events to the app behind the public listener: a real WebSocket
//! server (axum) and client (tokio-tungstenite) through the real gateway. The session is
//! checked before the upgrade: without one the upgrade is refused and never reaches the app;
//! with one the app gets the identity headers on the upgrade request. An event stream reaches
//! the client event by event, not buffered.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as AppMessage, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use common::*;
use futures::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// What the app counts and waits on.
#[derive(Default)]
struct AppState {
    upgrades: AtomicUsize,
    /// Lets the event stream's second event go.
    next_event: Notify,
}

/// The app: `/ws` upgrades, greets with the user id it was given and echoes every text
/// message; `/events` streams one event, waits for the test, then another.
fn app(state: Arc<AppState>) -> App {
    App::custom(move |listener, _ports| {
        let ws_state = state.clone();
        let sse_state = state;
        let router = axum::Router::new()
            .route(
                "/ws",
                axum::routing::get(move |headers: HeaderMap, upgrade: WebSocketUpgrade| {
                    let state = ws_state.clone();
                    async move {
                        state.upgrades.fetch_add(1, Ordering::SeqCst);
                        let user = headers
                            .get("x-spotify-user-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("nobody")
                            .to_string();
                        upgrade.on_upgrade(move |socket| talk(socket, user))
                    }
                }),
            )
            .route(
                "/events",
                axum::routing::get(move || {
                    let state = sse_state.clone();
                    async move { events(state) }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        })
    })
}

async fn talk(mut socket: WebSocket, user: String) {
    if socket
        .send(AppMessage::Text(format!("hello {user}").into()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(msg)) = socket.recv().await {
        if let AppMessage::Text(text) = msg {
            if socket.send(AppMessage::Text(text)).await.is_err() {
                return;
            }
        }
    }
}

fn events(state: Arc<AppState>) -> impl IntoResponse {
    let stream = async_stream(state);
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
}

/// Event 1, then (once the test has read it) event 2, then the end.
fn async_stream(
    state: Arc<AppState>,
) -> impl futures::Stream<Item = Result<String, std::convert::Infallible>> {
    futures::stream::unfold(0, move |step| {
        let state = state.clone();
        async move {
            match step {
                0 => Some((Ok("data: first\n\n".to_string()), 1)),
                1 => {
                    state.next_event.notified().await;
                    Some((Ok("data: second\n\n".to_string()), 2))
                }
                _ => None,
            }
        }
    })
}

/// A WebSocket request to the gateway's `/ws`, with `cookie` when given.
fn ws_request(
    s: &Stack,
    cookie: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("ws://127.0.0.1:{}/ws", s.ports.public);
    let mut req = url.into_client_request().expect("request");
    if let Some(cookie) = cookie {
        req.headers_mut()
            .insert("cookie", cookie.parse().expect("cookie"));
    }
    req
}

async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message within 5 s")
        .expect("open")
        .expect("message");
    match msg {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_needs_a_session_and_carries_its_identity() {
    let state = Arc::new(AppState::default());
    let s = Stack::builder().app(app(state.clone())).start().await;

    // No session: refused before the upgrade; the app never sees it.
    match tokio_tungstenite::connect_async(ws_request(&s, None)).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        Err(other) => panic!("expected a 401 answer, got {other}"),
        Ok(_) => panic!("upgraded without a session"),
    }
    assert_eq!(state.upgrades.load(Ordering::SeqCst), 0);

    let browser = browser();
    let trip = login(&browser, &s.gw, "alice", "/").await;
    let cookie = trip.session_cookie();
    let mut req = ws_request(&s, Some(&cookie));
    // An identity the client claims on the upgrade counts for nothing.
    req.headers_mut()
        .insert("x-spotify-user-id", "mallory".parse().expect("value"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade with a session");
    assert_eq!(resp.status(), 101);
    assert_eq!(next_text(&mut ws).await, "hello alice");
    for text in ["ping", "a longer message ".repeat(200).as_str()] {
        ws.send(Message::Text(text.to_string().into()))
            .await
            .expect("send");
        assert_eq!(next_text(&mut ws).await, text);
    }
    ws.close(None).await.expect("close");
    assert_eq!(state.upgrades.load(Ordering::SeqCst), 1);

    // Signed out: the next upgrade is refused again.
    logout(&browser, &s.gw).await;
    match tokio_tungstenite::connect_async(ws_request(&s, Some(&cookie))).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        Err(other) => panic!("expected a 401 answer, got {other}"),
        Ok(_) => panic!("upgraded with an ended session"),
    }
    assert_eq!(state.upgrades.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_the_browser_one_by_one() {
    let state = Arc::new(AppState::default());
    let s = Stack::builder().app(app(state.clone())).start().await;
    let browser = browser();
    login(&browser, &s.gw, "alice", "/").await;
    let resp = browser
        .get(format!("{}/events", s.gw.public_url()))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("events");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    // The first event arrives while the app still holds the second: nothing is buffered.
    while !seen.contains("data: first\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("the first event within 5 s, before the stream ends")
            .expect("more body")
            .expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("second"), "{seen}");
    state.next_event.notify_one();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("the rest within 5 s")
    {
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    assert_eq!(seen, "data: first\n\ndata: second\n\n");
}
