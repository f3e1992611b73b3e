//! The cap on MCP sessions open at once, shared by both transports: each
//! session has its own handler (for the credential bridge, its own child
//! process), so the cap bounds what a caller can make the sidecar start.
//! A session counts from its handler's creation until rmcp drops it (the
//! stream closed, `DELETE /mcp`, the idle timeout, shutdown).

use std::sync::{Arc, Mutex, Weak};

/// Hands out handlers while fewer than `max` are alive.
pub struct Capacity<S> {
    max: usize,
    live: Mutex<Vec<Weak<S>>>,
}

impl<S> std::fmt::Debug for Capacity<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capacity")
            .field("max", &self.max)
            .field("open", &self.open())
            .finish()
    }
}

impl<S> Capacity<S> {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            live: Mutex::new(Vec::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Weak<S>>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|h| h.strong_count() > 0);
        live
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.live().len()
    }

    /// True when no session can be opened now.
    pub fn full(&self) -> bool {
        self.open() >= self.max
    }

    /// A handler made by `make`, counted while it lives; `None` at the cap.
    pub fn admit(&self, make: impl FnOnce() -> S) -> Option<Arc<S>> {
        let mut live = self.live();
        if live.len() >= self.max {
            return None;
        }
        let handler = Arc::new(make());
        live.push(Arc::downgrade(&handler));
        Some(handler)
    }
}

#[cfg(test)]
mod tests {
    use super::Capacity;

    #[test]
    fn a_session_counts_while_its_handler_lives() {
        let cap = Capacity::new(2);
        let a = cap.admit(|| 1);
        let b = cap.admit(|| 2);
        assert!(a.is_some() && b.is_some());
        assert!(cap.full());
        assert!(cap.admit(|| 3).is_none());
        drop(a);
        assert_eq!(cap.open(), 1);
        assert!(cap.admit(|| 4).is_some());
    }
}
