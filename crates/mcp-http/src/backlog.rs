//! A count of things under way that a task can wait to see fall: the
//! messages a legacy SSE session has queued but not yet written (its
//! sender waits while too many are), the progress notifications a bridged
//! request's answer must not overtake.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Backlog {
    count: AtomicUsize,
    fell: Notify,
}

impl Backlog {
    /// One more under way.
    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// One fewer under way.
    pub fn done(&self) {
        // Never below zero, whatever a caller does.
        let _ = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.fell.notify_waiters();
    }

    /// How many are under way.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns once at most `limit` are under way.
    pub async fn at_most(&self, limit: usize) {
        loop {
            let fell = self.fell.notified();
            tokio::pin!(fell);
            // Registered before the check: a `done` in between is not missed.
            fell.as_mut().enable();
            if self.len() <= limit {
                return;
            }
            fell.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn waiting_ends_when_the_count_falls_to_the_limit() {
        let b = Backlog::default();
        assert!(poll_once(std::pin::pin!(b.at_most(0))).is_ready());
        b.add();
        b.add();
        b.add();
        let mut to_one = std::pin::pin!(b.at_most(1));
        let mut to_zero = std::pin::pin!(b.at_most(0));
        assert!(poll_once(to_one.as_mut()).is_pending());
        assert!(poll_once(to_zero.as_mut()).is_pending());
        b.done();
        assert!(poll_once(to_one.as_mut()).is_pending());
        b.done();
        assert!(poll_once(to_one.as_mut()).is_ready());
        assert!(poll_once(to_zero.as_mut()).is_pending());
        b.done();
        assert!(poll_once(to_zero.as_mut()).is_ready());
        b.done();
        assert!(b.is_empty(), "never below zero");
    }
}
