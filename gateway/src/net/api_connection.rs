//! One warm HTTP/2 connection to the Web API, which every call shares (issue 29, item 6).
//!
//! pingora dials a new connection for each caller that finds its pool empty: 20 first calls
//! at once opened 19 connections to Spotify, each a full TLS handshake. Here:
//!
//! - the lifecycle warms a connection at start, and again when the one in use is gone
//!   ([`ApiConnection::warm`]): a warm-up call through the egress listener that opens the
//!   connection in the proxy's own pool and sends Spotify nothing;
//! - callers pass pingora's connector one at a time ([`ApiConnection::enter`], until
//!   `connected`): the one that finds no connection dials it while the others wait, then
//!   they take streams on it. Passing one at a time matters after the first dial too: pingora
//!   takes a connection out of its pool while it opens a stream on it, and a caller that
//!   looks meanwhile finds the pool empty and dials (4 connections for 6 waves of 20 calls
//!   with the first dial alone gated). Taking a stream costs microseconds, so the line
//!   moves fast;
//! - the connection calls ride is known by its socket (`connected`), so the lifecycle sees
//!   it closed ([`ApiConnection::check`]) without asking pingora, which does not tell.
//!
//! Only for an `https://` API, where ALPN offers `h2`; a server that answers HTTP/1.1 turns
//! all of it off (every concurrent call needs a connection of its own there anyway).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The header that makes a call to the egress listener a warm-up; its value is this
/// process' [`ApiConnection::warm_token`], so no client can send one.
pub const WARM_HEADER: &str = "x-spotify-gateway-warm";

/// How long a warm-up call may take (connect, TLS, HTTP/2 settings).
const WARM_TIMEOUT: Duration = Duration::from_secs(15);

/// Not an HTTP/2 API, or a server that answered HTTP/1.1: calls dial as pingora does.
const OFF: u8 = 0;
/// No connection known: the next caller dials.
const COLD: u8 = 1;
/// A connection is open: callers take streams on it.
const LIVE: u8 = 2;

/// The connection calls ride: its socket, named by the file descriptor and the socket's
/// inode (the descriptor's number alone may be reused by the next socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Socket {
    fd: i32,
    inode: u64,
}

pub struct ApiConnection {
    /// `OFF`, `COLD` or `LIVE`.
    phase: AtomicU8,
    /// One caller at a time in pingora's connector.
    gate: Arc<Semaphore>,
    socket: Mutex<Option<Socket>>,
    /// Spotify answered over HTTP/2 on this process' connections: a dropped connection is
    /// warmed again (not a server that only speaks HTTP/1.1, whose warm-up closes at once).
    confirmed_h2: AtomicBool,
    warm_token: String,
}

/// A caller's turn in pingora's connector, until it is connected (`connected`) or gives
/// up (dropped: the dial failed, the call went away); the next caller goes then.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl ApiConnection {
    /// `http2`: the API is `https://` and offered `h2` (`UpstreamTarget::is_http2`).
    pub fn new(http2: bool) -> Arc<ApiConnection> {
        use rand::Rng;
        let token: [u8; 16] = rand::thread_rng().gen();
        Arc::new(ApiConnection {
            phase: AtomicU8::new(if http2 { COLD } else { OFF }),
            gate: Arc::new(Semaphore::new(1)),
            socket: Mutex::new(None),
            confirmed_h2: AtomicBool::new(false),
            warm_token: token.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.phase.load(Ordering::Relaxed) != OFF
    }

    /// This process' warm-up mark ([`WARM_HEADER`]).
    pub fn is_warm_token(&self, value: &[u8]) -> bool {
        value == self.warm_token.as_bytes()
    }

    /// Before a call connects: its turn in pingora's connector, waiting at most `limit`
    /// (a dial under way: its handshake). `None`: go on without one, because the API is not
    /// HTTP/2 (nothing to share) or `limit` passed (better a connection of its own than a
    /// failed call).
    pub async fn enter(&self, limit: Duration) -> Option<Turn> {
        if !self.enabled() {
            return None;
        }
        let permit = Arc::clone(&self.gate).acquire_owned();
        match tokio::time::timeout(limit, permit).await {
            Ok(Ok(permit)) => Some(Turn { _permit: permit }),
            _ => None,
        }
    }

    /// A call (or the warm-up) is connected, on a new connection (`reused` false) or on a
    /// stream of a pooled one, whose socket is `fd`: its turn ends, the next caller goes.
    pub fn connected(&self, turn: Option<Turn>, fd: i32, reused: bool) {
        let phase = self.phase.load(Ordering::Relaxed);
        // The common case, a stream on the connection already known, costs nothing more.
        if phase == OFF || (reused && phase == LIVE) {
            return drop(turn);
        }
        {
            let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
            if !reused || socket.is_none() {
                *socket = socket_inode(fd).map(|inode| Socket { fd, inode });
            }
        }
        let _ = self
            .phase
            .compare_exchange(COLD, LIVE, Ordering::Relaxed, Ordering::Relaxed);
        drop(turn);
    }

    /// Spotify answered a call over `h2` (true) or HTTP/1.1 (false): the latter turns the
    /// shared connection off for good, the former lets a dropped connection be warmed again.
    pub fn answered(&self, h2: bool) {
        if h2 {
            if !self.confirmed_h2.load(Ordering::Relaxed) {
                self.confirmed_h2.store(true, Ordering::Relaxed);
            }
        } else if self.phase.swap(OFF, Ordering::Relaxed) != OFF {
            // Waiting callers go on: nothing is shared over HTTP/1.1.
            self.gate.close();
            tracing::info!("Spotify answers over HTTP/1.1: no shared HTTP/2 connection");
        }
    }

    /// The lifecycle's periodic look: true when the live connection is gone and should be
    /// warmed again (the next caller would otherwise dial, and its concurrent peers with it).
    pub fn check(&self) -> bool {
        if self.phase.load(Ordering::Relaxed) != LIVE {
            return false;
        }
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = *socket else { return false };
        if socket_inode(s.fd) == Some(s.inode) {
            return false;
        }
        *socket = None;
        drop(socket);
        let was_live = self
            .phase
            .compare_exchange(LIVE, COLD, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        tracing::debug!("the HTTP/2 connection to the API closed");
        was_live && self.confirmed_h2.load(Ordering::Relaxed)
    }

    /// A warm-up call through the egress listener at `egress` (loopback when it listens on
    /// every address) for the app named `app`: the proxy opens a connection to the API in its
    /// pool, as for a call, and sends nothing on it. The call names its app with
    /// `X-Gateway-App` (`proxy::egress::by_app`), so that with several apps it reaches this
    /// connection's app, whose proxy alone knows this token.
    pub async fn warm(&self, egress: SocketAddr, app: &str) {
        let started = Instant::now();
        let request = format!(
            "GET /v1/ HTTP/1.1\r\nHost: {egress}\r\nX-Gateway-App: {app}\r\n\
             {WARM_HEADER}: {}\r\nConnection: close\r\n\r\n",
            self.warm_token
        );
        let call = async {
            let mut stream = tokio::net::TcpStream::connect(egress).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(WARM_TIMEOUT, call).await {
            Ok(Ok(answer)) if answer.starts_with(b"HTTP/1.1 204") => tracing::debug!(
                app,
                ms = started.elapsed().as_millis() as u64,
                "a connection to the API is warm"
            ),
            Ok(Ok(_)) => tracing::debug!(app, "warming a connection to the API failed"),
            Ok(Err(e)) => {
                tracing::debug!(app, error = %e, "cannot reach the egress listener to warm")
            }
            Err(_) => tracing::debug!(app, "warming a connection to the API timed out"),
        }
    }
}

/// The inode of the socket `fd` names (`/proc/self/fd/N` reads `socket:[INODE]`), or `None`
/// when it names no socket (closed). Elsewhere than Linux: `None`, so a connection is never
/// tracked (callers still wait for a dial under way).
fn socket_inode(fd: i32) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn callers_pass_the_connector_one_at_a_time() {
        let conn = ApiConnection::new(true);
        let first = conn.enter(WAIT).await.expect("the first caller's turn");
        let second = tokio::spawn({
            let conn = Arc::clone(&conn);
            async move { conn.enter(WAIT).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "a second caller waits for the first");
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        conn.connected(Some(first), socket.as_raw_fd(), false);
        assert!(second.await.expect("task"), "then it has its turn");
    }

    #[tokio::test]
    async fn a_failed_dial_lets_the_next_caller_go() {
        let conn = ApiConnection::new(true);
        let first = conn.enter(WAIT).await;
        assert!(first.is_some());
        let second = tokio::spawn({
            let conn = Arc::clone(&conn);
            async move { conn.enter(WAIT).await.is_some() }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(second.await.expect("task"));
    }

    #[tokio::test]
    async fn a_caller_goes_without_a_turn_after_its_limit() {
        let conn = ApiConnection::new(true);
        let _dialling = conn.enter(WAIT).await;
        assert!(conn.enter(Duration::from_millis(1)).await.is_none());
    }

    #[tokio::test]
    async fn a_closed_connection_is_warmed_again_once_h2_was_seen() {
        let conn = ApiConnection::new(true);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        let turn = conn.enter(WAIT).await;
        conn.connected(turn, socket.as_raw_fd(), false);
        assert!(!conn.check(), "still open: nothing to warm");
        conn.answered(true);
        drop(socket);
        assert!(conn.check(), "closed: warmed again");
        assert!(!conn.check(), "once");
        // Never confirmed as HTTP/2 (a warm-up the server closed): not warmed in a loop.
        let other = ApiConnection::new(true);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        other.connected(None, socket.as_raw_fd(), false);
        drop(socket);
        assert!(!other.check());
    }

    #[tokio::test]
    async fn http1_and_plain_apis_are_left_to_pingora() {
        let plain = ApiConnection::new(false);
        assert!(!plain.enabled());
        assert!(plain.enter(Duration::ZERO).await.is_none());
        let conn = ApiConnection::new(true);
        let first = conn.enter(WAIT).await;
        let waiting = tokio::spawn({
            let conn = Arc::clone(&conn);
            async move { conn.enter(WAIT).await.is_none() }
        });
        tokio::task::yield_now().await;
        conn.answered(false);
        assert!(waiting.await.expect("task"), "waiting callers go on");
        assert!(conn.enter(WAIT).await.is_none());
        assert!(!conn.check());
        drop(first);
    }

    #[test]
    fn warm_tokens_are_this_process_own() {
        let a = ApiConnection::new(true);
        let b = ApiConnection::new(true);
        assert!(a.is_warm_token(a.warm_token.as_bytes()));
        assert!(!a.is_warm_token(b.warm_token.as_bytes()));
        assert!(!a.is_warm_token(b""));
    }
}
