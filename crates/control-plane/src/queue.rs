//! Work queue: keyed, de-duplicating, one in-flight reconcile per key,
//! capped exponential backoff per key, and it never drops a key.
//!
//! A key handed out is held by an [`Active`] guard: however its reconcile
//! ends (done, error, panic, or the worker aborted when the Lease is lost),
//! dropping the guard releases the key, so it can never stay "active" for
//! ever and be refused to every later worker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambient_protocol::backoff::Backoff;
use tokio::sync::Notify;

/// First retry delay of a failing key.
pub const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay of a failing key.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// A work queue of keys. Cheap to clone.
#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    ready: Arc<Notify>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            ready: self.ready.clone(),
        }
    }
}

#[derive(Debug)]
struct State<K> {
    queue: VecDeque<K>,
    queued: HashSet<K>,
    active: HashSet<K>,
    /// Added again while being reconciled: requeue when done.
    dirty: HashSet<K>,
    failures: HashMap<K, Backoff>,
    shutdown: bool,
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                active: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
                shutdown: false,
            })),
            ready: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues `key` unless it is already waiting; a key being reconciled
    /// is reconciled once more when its current run ends.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.active.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Enqueues `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Waits for the next key and marks it active until the returned guard
    /// is dropped. `None` after shutdown.
    pub async fn next(&self) -> Option<Active<K>> {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                if s.shutdown {
                    return None;
                }
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.active.insert(key.clone());
                    if !s.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return Some(Active {
                        queue: self.clone(),
                        key,
                    });
                }
            }
            notified.await;
        }
    }

    /// Ends a reconcile of `key`; requeues it if it was added meanwhile.
    fn done(&self, key: &K) {
        let mut s = self.lock();
        s.active.remove(key);
        if s.dirty.remove(key) && s.queued.insert(key.clone()) {
            s.queue.push_back(key.clone());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Schedules a retry of a failed `key` with its own growing backoff;
    /// returns the delay.
    pub fn retry(&self, key: &K) -> Duration {
        let delay = {
            let mut s = self.lock();
            s.failures
                .entry(key.clone())
                .or_insert_with(|| Backoff::new(RETRY_BASE, RETRY_MAX))
                .next_delay()
        };
        self.add_after(key.clone(), delay);
        delay
    }

    /// Clears the failure history of `key` after a success.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Keys waiting (not counting active ones).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Failed attempts of `key` since its last success.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).map_or(0, Backoff::attempts)
    }

    /// Wakes every waiting worker with `None`.
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.ready.notify_waiters();
    }
}

/// A key being reconciled; released (and requeued if it was added
/// meanwhile) when dropped.
#[derive(Debug)]
pub struct Active<K: Clone + Eq + Hash + Send + 'static> {
    queue: WorkQueue<K>,
    key: K,
}

impl<K: Clone + Eq + Hash + Send + 'static> Active<K> {
    /// The key.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Drop for Active<K> {
    fn drop(&mut self) {
        self.queue.done(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_waiting_keys() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await.map(|a| *a.key()), Some("a"));
        assert_eq!(q.next().await.map(|a| *a.key()), Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn one_in_flight_per_key_and_requeue_when_added_meanwhile() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.next().await;
        assert_eq!(k.as_ref().map(Active::key), Some(&"a"));
        // added while active: not handed out to a second worker...
        q.add("a");
        assert!(q.is_empty());
        // ...but again once the first run is done.
        drop(k);
        assert_eq!(q.len(), 1);
        let k = q.next().await;
        assert_eq!(k.as_ref().map(Active::key), Some(&"a"));
        drop(k);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn an_aborted_reconcile_releases_its_key() {
        let q = WorkQueue::new();
        q.add("a");
        // A worker takes the key and is aborted mid-reconcile (Lease lost).
        let q2 = q.clone();
        let worker = tokio::spawn(async move {
            let _active = q2.next().await;
            std::future::pending::<()>().await;
        });
        while !q.is_empty() {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        worker.abort();
        let _ = worker.await;
        // Leadership regained: the key is handed out again.
        q.add("a");
        let k = tokio::time::timeout(Duration::from_secs(5), q.next())
            .await
            .ok()
            .flatten();
        assert_eq!(k.as_ref().map(Active::key), Some(&"a"), "the key is stuck");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_and_never_drop() {
        let q = WorkQueue::new();
        q.add("a");
        for _ in 0..8 {
            let k = tokio::time::timeout(Duration::from_secs(60), q.next())
                .await
                .ok()
                .flatten();
            assert_eq!(k.as_ref().map(Active::key), Some(&"a"));
            drop(k);
            q.retry(&"a");
        }
        assert_eq!(q.failures(&"a"), 8);
        let k = tokio::time::timeout(Duration::from_secs(60), q.next())
            .await
            .ok()
            .flatten();
        assert_eq!(
            k.as_ref().map(Active::key),
            Some(&"a"),
            "the key came back after 8 failures"
        );
        q.forget(&"a");
        assert_eq!(q.failures(&"a"), 0);
    }

    #[tokio::test]
    async fn shutdown_wakes_workers() {
        let q: WorkQueue<&str> = WorkQueue::new();
        let q2 = q.clone();
        let worker = tokio::spawn(async move { q2.next().await.is_some() });
        tokio::task::yield_now().await;
        q.shutdown();
        assert_eq!(worker.await.ok(), Some(false));
    }
}
