//! The control plane's side of session identity (wire.md §3 "Session
//! tokens and the session gateway"): which session's pod an exchange comes
//! from ([`CallerBinding`], asked of the runtime), and what the session
//! gateway knows of sessions without asking the API ([`SessionFacts`]).
//!
//! Phase and project come from the session informer. What a session's pod
//! is (its generation, the credentials it was given) comes from the
//! runtime, remembered per session when an exchange from that pod is bound
//! (every container exchanges first) and refreshed in the background when
//! the gateway asks about a session this replica has not bound yet; until
//! then its generation is unknown (`None`, no pod has called here) and no
//! credential is known to be delivered. A change of phase, of generation
//! or a deletion is announced to the gateway, which closes the session's
//! streams that no longer hold.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ambient_protocol::phase::Phase;
use ambient_protocol::v1::Session;
use ambient_session_gateway::{SessionFacts, SessionState};
use ambient_token_server::{Binding, BoxFuture, CallerBinding, DirectoryError};
use tokio::sync::broadcast;

use crate::informer::Store;
use crate::runtime::{Caller, PodFacts, SessionRuntime};

/// Sessions whose state changes are announced at once before a slow
/// gateway subscriber lags (it then re-checks every stream it holds).
const CHANGES: usize = 1024;

/// Sessions as the exchange and the gateway see them. Cheap to share.
pub struct SessionIdentities {
    sessions: Arc<Store<Session>>,
    runtime: Arc<dyn SessionRuntime>,
    pods: Mutex<HashMap<String, PodFacts>>,
    /// Sessions whose pod facts are being read in the background.
    reading: Mutex<BTreeSet<String>>,
    changes: broadcast::Sender<String>,
}

impl std::fmt::Debug for SessionIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionIdentities").finish_non_exhaustive()
    }
}

impl SessionIdentities {
    /// Facts from `sessions` (the informer's cache) and `runtime`.
    pub fn new(sessions: Arc<Store<Session>>, runtime: Arc<dyn SessionRuntime>) -> Arc<Self> {
        Arc::new(Self {
            sessions,
            runtime,
            pods: Mutex::default(),
            reading: Mutex::default(),
            changes: broadcast::channel(CHANGES).0,
        })
    }

    /// The informer saw session `id` change (or go away): the gateway
    /// re-checks its streams. A session that is gone or terminal forgets
    /// its pod.
    pub fn session_changed(&self, id: &str) {
        let live = self.sessions.get(id).is_some_and(|s| is_live(&s));
        if !live {
            self.pods_map().remove(id);
        }
        let _ = self.changes.send(id.to_owned());
    }

    fn pods_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodFacts>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the facts of `id`'s pod, announcing a new generation.
    fn remember(&self, id: &str, facts: PodFacts) {
        let changed = {
            let mut pods = self.pods_map();
            let changed = pods.get(id).is_none_or(|old| *old != facts);
            pods.insert(id.to_owned(), facts);
            changed
        };
        if changed {
            let _ = self.changes.send(id.to_owned());
        }
    }

    fn namespace(&self, id: &str) -> String {
        self.sessions
            .get(id)
            .and_then(|s| s.kube_namespace.clone())
            .unwrap_or_default()
    }

    /// Reads `id`'s pod facts in the background, once at a time.
    fn refresh(self: &Arc<Self>, id: &str) {
        if !self
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned())
        {
            return;
        }
        let (this, id) = (self.clone(), id.to_owned());
        tokio::spawn(async move {
            let namespace = this.namespace(&id);
            match this.runtime.pod_facts(&id, &namespace).await {
                Ok(Some(facts)) => this.remember(&id, facts),
                Ok(None) => {}
                Err(e) => tracing::debug!(session = %id, error = %e, "cannot read the session's pod"),
            }
            this.reading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
}

fn is_live(s: &Session) -> bool {
    Phase::of_session(s.phase.as_deref()).is_ok_and(|p| !p.is_terminal())
}

/// The gateway's facts of the sessions behind `identities`.
#[derive(Debug, Clone)]
pub struct GatewayFacts(pub Arc<SessionIdentities>);

impl SessionFacts for GatewayFacts {
    fn session(&self, id: &str) -> Option<SessionState> {
        let session = self.0.sessions.get(id)?;
        let generation = self.0.pods_map().get(id).map(|f| f.generation.clone());
        if generation.is_none() {
            // Not bound here yet (another replica served its exchange, or
            // this one restarted): learn it for the next call.
            self.0.refresh(id);
        }
        Some(SessionState {
            project: session.project_id.clone().unwrap_or_default(),
            live: is_live(&session),
            generation,
        })
    }

    fn delivered_credentials(&self, id: &str) -> BTreeSet<String> {
        match self.0.pods_map().get(id) {
            Some(f) => f.credentials.clone(),
            None => {
                self.0.refresh(id);
                BTreeSet::new()
            }
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.changes.subscribe()
    }
}

/// Binds an exchange to the claimed session's pod (wire.md §3).
impl CallerBinding for SessionIdentities {
    fn bind<'a>(
        &'a self,
        session_id: &'a str,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> BoxFuture<'a, Result<Binding, DirectoryError>> {
        Box::pin(async move {
            let namespace = self.namespace(session_id);
            let caller = self
                .runtime
                .caller(session_id, &namespace, peer, local)
                .await
                .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
            Ok(match caller {
                Caller::Member(facts) => {
                    let generation = facts.generation.clone();
                    self.remember(session_id, facts);
                    Binding::Bound { generation }
                }
                Caller::NotYet => Binding::NotYet,
                Caller::Stranger => Binding::Refused,
            })
        })
    }
}
