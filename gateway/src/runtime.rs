//! The process-wide I/O runtime.
//!
//! pingora gives each listener its own tokio runtime. Clients with pooled connections —
//! reqwest for the token endpoint, the Redis connection manager — keep their connection tasks
//! on the runtime that created them, and using one from several runtimes hangs or fails with
//! "dispatch task is gone" (seanmonstar/reqwest#1148). So such clients live here, and callers
//! await a task spawned on this runtime.

use std::future::Future;
use std::sync::{Mutex, OnceLock};

use tokio::runtime::{Handle, Runtime};

static HOME: OnceLock<Runtime> = OnceLock::new();
/// Held by the one caller that starts the runtime. Two racing callers must not both build
/// one: the loser's would be dropped where it was built, and dropping a runtime inside an
/// async context (a `#[tokio::test]`, a listener's task) panics.
static STARTING: Mutex<()> = Mutex::new(());

/// The handle of the I/O runtime, started on first use; it lives as long as the process.
pub fn io_home() -> std::io::Result<Handle> {
    if let Some(rt) = HOME.get() {
        return Ok(rt.handle().clone());
    }
    let _starting = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = HOME.get() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gateway-io")
        .enable_all()
        .build()?;
    Ok(HOME.get_or_init(|| rt).handle().clone())
}

/// Runs `fut` on the I/O runtime and waits for it from wherever the caller runs.
pub async fn on_home<F, T>(home: &Handle, fut: F) -> Result<T, tokio::task::JoinError>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    home.spawn(fut).await
}
