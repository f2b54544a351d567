//! What guards each listener's connections, around pingora's own apps: a connection limit per
//! listener (so a flood of one cannot take the file descriptors the others need), a deadline
//! for a complete request header (so a client that sends a byte every few seconds is cut off),
//! a request's cut (so a session's end can close a WebSocket or a stream it is carrying, from
//! outside: `session::streams`), and, for the admin listener, staying open through the drain
//! after SIGTERM (so probes see `/readyz` 503 rather than a refused connection).
//!
//! pingora 0.9 has none of these: its header reads are timed per read, not per header; a
//! listening service has no connection limit; a proxied upgrade or stream can only be ended
//! by one of its two ends (its copy loop wakes on nothing else); and SIGTERM closes every
//! listener at once.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
#[cfg(unix)]
use pingora::server::ListenFds;
use pingora::server::ShutdownWatch;

/// File descriptors kept out of the listeners' budget: the store, logs, the token client,
/// the resolver.
const RESERVED_FDS: u64 = 64;

/// The limits of one listener, and where it counts what they did.
pub struct Guard {
    /// Open connections allowed at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a connection may take to deliver a complete request header, idle keep-alive
    /// time before it included.
    pub header_deadline: Duration,
    pub open: prometheus::IntGauge,
    pub refused: prometheus::IntCounter,
    pub header_timeouts: prometheus::IntCounter,
}

/// What a listener hands the app with each request, through the connection's user context:
/// pingora gives it back in `on_connection_reuse`, which runs once the request header is in.
pub struct RequestContext {
    header_read: Arc<AtomicBool>,
    cut: Cut,
}

impl RequestContext {
    /// The header is in, so the header deadline no longer applies (called by a listener's
    /// `on_connection_reuse`, or an app's response, with the context). Returns the request's
    /// [`Cut`], for a listener whose requests may have to end from outside.
    pub fn header_read(context: Box<dyn Any + Send + Sync>) -> Option<Cut> {
        let context = context.downcast::<RequestContext>().ok()?;
        context.header_read.store(true, Ordering::Release);
        Some(context.cut)
    }
}

/// Ends one request from outside, whatever it is waiting for: once fired, the listener shuts
/// the client's connection (reads end, writes fail: nothing more reaches the client) and lets
/// the proxy finish for at most [`CUT_GRACE`] (its access line, the app's connection closed),
/// then drops what is left. Fired by the session registry when the request's session ends.
#[derive(Clone, Default)]
pub struct Cut(Arc<CutState>);

#[derive(Default)]
struct CutState {
    fired: AtomicBool,
    /// One waiter (the listener); `notify_one` keeps a permit when it is not waiting yet.
    notify: tokio::sync::Notify,
}

impl Cut {
    pub fn fire(&self) {
        if !self.0.fired.swap(true, Ordering::AcqRel) {
            self.0.notify.notify_one();
        }
    }

    /// Whether it has fired: the request's end is the cut's doing.
    pub fn has_fired(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    /// Returns once fired.
    async fn fired(&self) {
        if !self.0.fired.load(Ordering::Acquire) {
            self.0.notify.notified().await;
        }
    }
}

/// How long a cut request's proxy may take to notice its closed connection and finish (its
/// logging, the app's connection) before it is dropped whole. The client sees the close at
/// once either way.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// An HTTP app whose header reads end at [`Guard::header_deadline`], and each of whose
/// requests ends when its [`Cut`] fires.
pub struct RequestGuard<A> {
    inner: Arc<A>,
    guard: Arc<Guard>,
}

impl<A> RequestGuard<A> {
    pub fn new(inner: A, guard: Arc<Guard>) -> RequestGuard<A> {
        RequestGuard {
            inner: Arc::new(inner),
            guard,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for RequestGuard<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let read = Arc::new(AtomicBool::new(false));
        let cut = Cut::default();
        session.set_connection_user_context(Some(Box::new(RequestContext {
            header_read: Arc::clone(&read),
            cut: cut.clone(),
        })));
        let socket = session.stream().map(|s| s.id());
        let serve = self.inner.process_new_http(session, shutdown);
        tokio::pin!(serve);
        let cut_off = cut.fired();
        tokio::pin!(cut_off);
        // `biased`: once the cut has fired, no further poll of the request can write to the
        // client before the connection is shut.
        tokio::select! {
            biased;
            () = &mut cut_off => {}
            done = &mut serve => return done,
            _ = tokio::time::sleep(self.guard.header_deadline) => {
                if !read.load(Ordering::Acquire) {
                    self.guard.header_timeouts.inc();
                    // Dropping the session closes the connection.
                    return None;
                }
                // The header came in time; the request itself may take as long as it takes,
                // until it is cut.
                tokio::select! {
                    biased;
                    () = &mut cut_off => {}
                    done = &mut serve => return done,
                }
            }
        }
        if let Some(fd) = socket {
            shut(fd);
            let _ = tokio::time::timeout(CUT_GRACE, &mut serve).await;
        }
        // A cut connection is never reused; dropping what is left closes it.
        None
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.inner.h2_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

/// Shuts both directions of the client's connection: the proxy's reads see its end and its
/// writes fail, so it finishes on its own, and nothing written from now on reaches the client.
fn shut(fd: pingora::protocols::UniqueIDType) {
    // SAFETY: `fd` is the socket of the connection whose request future the caller still
    // holds (not dropped, so not closed, so not reused for another connection); shutdown(2)
    // changes no memory and leaves the descriptor open.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// A server app that serves at most [`Guard::max_connections`] connections at once.
pub struct ConnectionLimit<A> {
    inner: Arc<A>,
    guard: Arc<Guard>,
    live: AtomicUsize,
}

impl<A> ConnectionLimit<A> {
    pub fn new(inner: A, guard: Arc<Guard>) -> ConnectionLimit<A> {
        ConnectionLimit {
            inner: Arc::new(inner),
            guard,
            live: AtomicUsize::new(0),
        }
    }
}

/// Gives a connection's slot back when its task ends, however it ends.
struct Slot<'a>(&'a AtomicUsize, &'a prometheus::IntGauge);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionLimit<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.guard.max_connections {
            self.live.fetch_sub(1, Ordering::AcqRel);
            self.guard.refused.inc();
            // Dropping the stream closes it at once, giving its descriptor back.
            return None;
        }
        self.guard.open.inc();
        let _slot = Slot(&self.live, &self.guard.open);
        // The whole connection holds its slot, keep-alive requests included.
        let mut next = self.inner.process_new(stream, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// A pingora service that keeps listening after SIGTERM, until the process exits: it hands
/// the service a shutdown signal of its own that never fires.
pub struct KeepOpen<S> {
    inner: S,
    never: tokio::sync::watch::Sender<bool>,
}

impl<S> KeepOpen<S> {
    pub fn new(inner: S) -> KeepOpen<S> {
        KeepOpen {
            inner,
            never: tokio::sync::watch::channel(false).0,
        }
    }
}

#[async_trait]
impl<S: pingora::services::Service + 'static> pingora::services::Service for KeepOpen<S> {
    async fn start_service(
        &mut self,
        #[cfg(unix)] fds: Option<ListenFds>,
        _shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let never = self.never.subscribe();
        self.inner
            .start_service(
                #[cfg(unix)]
                fds,
                never,
                listeners_per_fd,
            )
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// The process's file-descriptor limit, raised from its soft to its hard value (as Go and
/// nginx do): a proxy needs descriptors for its clients and its upstreams.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// Default connection limits for a descriptor limit: half of what is left after the reserve
/// for the public listener, three tenths for egress, each halved again because a proxied
/// connection may hold an upstream connection too; the admin listener's is small and fixed.
/// Whatever floods the public listener, egress and admin keep descriptors of their own.
pub fn default_limits(fd_limit: u64) -> (usize, usize, usize) {
    let budget = fd_limit.saturating_sub(RESERVED_FDS).max(64);
    let public = (budget * 5 / 10 / 2).max(8) as usize;
    let egress = (budget * 3 / 10 / 2).max(8) as usize;
    (public, egress, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_leave_room_for_every_listener() {
        let (public, egress, admin) = default_limits(1200);
        assert_eq!((public, egress, admin), (284, 170, 32));
        // Each proxied connection may hold two descriptors; admin one.
        assert!(2 * (public + egress) + admin + RESERVED_FDS as usize <= 1200);
        let (public, egress, _) = default_limits(1_048_576);
        assert!(public > 200_000 && egress > 100_000);
    }
}
