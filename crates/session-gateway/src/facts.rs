//! What the gateway knows about sessions without asking the API: the
//! control plane answers from its caches (the session informer, the pod
//! reflector, the credentials it resolved when it provisioned the session).

use std::collections::BTreeSet;

use tokio::sync::broadcast;

/// A session as the control plane last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// The session's project.
    pub project: String,
    /// The session is not in a terminal phase (wire.md §1: `Stopped`,
    /// `Completed`, `Failed`) and not deleted.
    pub live: bool,
    /// The generation of the session's current pod (pod UID or
    /// re-provision count, as minted into its tokens); `None` while it has
    /// no pod.
    pub generation: Option<String>,
}

/// The control plane's view of sessions, read on every call (no API round
/// trip). Implementations must be cheap: a map lookup under a lock.
pub trait SessionFacts: Send + Sync + 'static {
    /// The session `id`; `None` when unknown (never seen, or deleted).
    fn session(&self, id: &str) -> Option<SessionState>;

    /// The IDs of the credentials delivered to session `id` (the provider →
    /// credential map resolved when it was provisioned, wire.md §2).
    fn delivered_credentials(&self, id: &str) -> BTreeSet<String>;

    /// A receiver of the IDs of sessions whose [`SessionState`] changed
    /// (phase, generation, deletion). The gateway closes a session's open
    /// watches when its state stops admitting their token; a lagged
    /// receiver makes it re-check every watch it holds.
    fn subscribe(&self) -> broadcast::Receiver<String>;
}
