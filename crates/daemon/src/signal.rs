//! The graceful-stop signal: SIGTERM (what Kubernetes sends) or SIGINT.

use std::future::Future;

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed
/// before this returns, so a signal that arrives while the daemon is still
/// starting is not lost.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
