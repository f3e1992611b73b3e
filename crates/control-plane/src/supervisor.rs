//! Supervision of the control plane's long-running tasks (informers, the
//! pod watcher): a task that panics is logged and restarted after a
//! backoff, never left dead in silence.

use std::time::Duration;

use ambient_protocol::backoff::Backoff;

/// Aborts the task when dropped (so aborting the supervisor aborts it).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `make()` as a task forever: restarts it (after a growing delay)
/// whenever it panics or returns. Returns only when its task is cancelled.
pub async fn supervise<F, Fut>(name: &'static str, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let task = tokio::spawn(make());
        let _guard = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(()) => tracing::warn!(task = name, "task ended; restarting it"),
            Err(e) if e.is_panic() => {
                tracing::error!(task = name, "task panicked; restarting it");
            }
            Err(_) => return,
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_panicking_task_is_restarted() {
        let runs = Arc::new(AtomicU32::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = runs.clone();
        let supervisor = tokio::spawn(supervise("test", move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                assert!(n > 0, "the first run panics");
                let _ = tx.send(n);
                std::future::pending::<()>().await;
            }
        }));
        let second = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert_eq!(second.ok().flatten(), Some(1), "the task was restarted");
        supervisor.abort();
    }
}
