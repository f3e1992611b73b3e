//! The control plane's side of session identity (wire.md §3 "Session
//! tokens and the session gateway"): which session's pod an exchange comes
//! from ([`CallerBinding`], asked of the runtime), and what the session
//! gateway knows of sessions without asking the API ([`SessionFacts`]).
//!
//! Phase and project come from the session informer. What a session's pod
//! is (its generation, the credentials it was given) comes from the
//! runtime, remembered per session when an exchange from that pod is bound
//! (every container exchanges first), and read again in the background
//! when the gateway asks about a session this replica does not know or
//! knew more than [`FRESH`] ago (a pod replaced or deleted meanwhile).
//! Until it is known the gateway refuses the session's tokens (`401`: the
//! client exchanges again, which binds its pod here). A change of phase,
//! of generation or a deletion is announced to the gateway, which closes
//! the session's streams that no longer hold.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambient_protocol::phase::Phase;
use ambient_protocol::v1::Session;
use ambient_session_gateway::{SessionFacts, SessionState};
use ambient_token_server::{Binding, BoxFuture, CallerBinding, DirectoryError};
use tokio::sync::broadcast;

use crate::informer::Store;
use crate::runtime::{Caller, PodFacts, SessionRuntime};

/// Session changes announced before a slow gateway subscriber lags (it
/// then re-checks every stream it holds): the capacity of the channel the
/// session informer and the bindings announce on.
pub const CHANGES: usize = 1024;

/// How long what a replica learnt of a session's pod is taken as true
/// without reading it again.
pub const FRESH: Duration = Duration::from_secs(30);

/// The channel on which changed session IDs are announced.
pub fn changes() -> broadcast::Sender<String> {
    broadcast::channel(CHANGES).0
}

/// Sessions as the exchange and the gateway see them. Cheap to share.
pub struct SessionIdentities {
    sessions: Arc<Store<Session>>,
    runtime: Arc<dyn SessionRuntime>,
    pods: Mutex<HashMap<String, (PodFacts, Instant)>>,
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
    /// Facts from `sessions` (the informer's cache, which announces every
    /// changed session on `changes`) and `runtime`.
    pub fn new(
        sessions: Arc<Store<Session>>,
        runtime: Arc<dyn SessionRuntime>,
        changes: broadcast::Sender<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sessions,
            runtime,
            pods: Mutex::default(),
            reading: Mutex::default(),
            changes,
        })
    }

    /// Forgets the pods of sessions that ended or went away, as the
    /// informer announces them. Runs until the channel closes.
    pub async fn forget_ended(self: Arc<Self>) {
        let mut changes = self.changes.subscribe();
        loop {
            let ended: Vec<String> = match changes.recv().await {
                Ok(id) => vec![id],
                // Missed some: look at every session we remember.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.pods_map().keys().cloned().collect()
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            for id in ended {
                if !self.sessions.get(&id).is_some_and(|s| is_live(&s)) {
                    self.pods_map().remove(&id);
                }
            }
        }
    }

    /// The session directory of the token server: the informer's cache.
    pub fn directory(&self) -> Arc<dyn ambient_token_server::SessionDirectory> {
        self.sessions.clone()
    }

    fn pods_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (PodFacts, Instant)>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the facts of `id`'s pod (or that it has none),
    /// announcing a change.
    fn remember(&self, id: &str, facts: Option<PodFacts>) {
        let changed = {
            let mut pods = self.pods_map();
            match facts {
                Some(f) => {
                    let same = pods.get(id).is_some_and(|(old, _)| *old == f);
                    pods.insert(id.to_owned(), (f, Instant::now()));
                    !same
                }
                None => pods.remove(id).is_some(),
            }
        };
        if changed {
            let _ = self.changes.send(id.to_owned());
        }
    }

    /// What is remembered of `id`'s pod; a background read when it is
    /// unknown or older than [`FRESH`].
    fn known(self: &Arc<Self>, id: &str) -> Option<PodFacts> {
        let known = self
            .pods_map()
            .get(id)
            .map(|(f, at)| (f.clone(), at.elapsed() < FRESH));
        match known {
            Some((facts, true)) => Some(facts),
            Some((facts, false)) => {
                self.refresh(id);
                Some(facts)
            }
            None => {
                self.refresh(id);
                None
            }
        }
    }

    /// The session's project, which places its pod (never its
    /// `kube_namespace`, which the session itself can write).
    fn project(&self, id: &str) -> String {
        self.sessions
            .get(id)
            .and_then(|s| s.project_id.clone())
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
            let project = this.project(&id);
            match this.runtime.pod_facts(&id, &project).await {
                Ok(facts) => this.remember(&id, facts),
                Err(e) => {
                    tracing::debug!(session = %id, error = %e, "cannot read the session's pod")
                }
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
        let generation = self.0.known(id).map(|f| f.generation);
        Some(SessionState {
            project: session.project_id.clone().unwrap_or_default(),
            live: is_live(&session),
            generation,
        })
    }

    fn delivered_credentials(&self, id: &str) -> BTreeSet<String> {
        self.0.known(id).map(|f| f.credentials).unwrap_or_default()
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
            let project = self.project(session_id);
            let caller = self
                .runtime
                .caller(session_id, &project, peer, local)
                .await
                .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
            Ok(match caller {
                Caller::Member(facts) => {
                    let generation = facts.generation.clone();
                    self.remember(session_id, Some(facts));
                    Binding::Bound { generation }
                }
                Caller::NotYet => Binding::NotYet,
                Caller::Stranger => Binding::Refused {
                    reason: "the connection does not come from the session's pod".into(),
                },
            })
        })
    }
}

/// The control plane's own API identity, as the gateway presents it upstream.
pub struct PlatformAuth(pub Arc<dyn ambient_token_server::TokenProvider>);

impl std::fmt::Debug for PlatformAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlatformAuth(..)")
    }
}

impl ambient_session_gateway::UpstreamAuth for PlatformAuth {
    fn token(&self) -> BoxFuture<'_, Result<ambient_protocol::Secret, String>> {
        Box::pin(async move {
            self.0
                .token()
                .await
                .map(|t| t.token)
                .map_err(|e| e.to_string())
        })
    }
}

/// Where session pods reach the gateway at `base` (`scheme://host:port`):
/// their gRPC address and whether it is TLS.
pub fn grpc_target(base: &str) -> (String, bool) {
    match base.split_once("://") {
        Some(("https", rest)) => (rest.to_owned(), true),
        Some((_, rest)) => (rest.to_owned(), false),
        None => (base.to_owned(), false),
    }
}

/// Points every API address of the pods of `pod` at the gateway `base`.
pub fn point_pods_at(pod: &mut crate::objects::PodConfig, base: &str) {
    let (grpc, tls) = grpc_target(base);
    pod.backend_api_url = base.to_owned();
    pod.sidecar_api_url = base.to_owned();
    pod.grpc_url = grpc;
    pod.grpc_use_tls = tls;
}

/// The session gateway over these sessions, forwarding to the API server of
/// `cfg` with the control plane's identity (`provider`); tokens are
/// verified by `minter`.
pub fn gateway(
    cfg: &crate::config::Config,
    identities: &Arc<SessionIdentities>,
    provider: &Arc<dyn ambient_token_server::TokenProvider>,
    minter: Arc<ambient_session_gateway::SessionTokens>,
) -> anyhow::Result<ambient_session_gateway::Gateway> {
    use anyhow::Context as _;
    let api_url = url::Url::parse(&cfg.api_server_url).context("AMBIENT_API_SERVER_URL")?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("the gateway's HTTP client")?;
    let grpc = ambient_protocol::grpc::endpoint(
        &cfg.grpc_server_addr,
        cfg.grpc_use_tls,
        cfg.grpc_ca_cert_file.as_deref(),
    )
    .context("AMBIENT_GRPC_SERVER_ADDR")?
    .connect_lazy();
    let upstream = ambient_session_gateway::Upstream::new(
        &api_url,
        http,
        grpc,
        Arc::new(PlatformAuth(provider.clone())),
    );
    Ok(ambient_session_gateway::Gateway::new(
        minter,
        Arc::new(GatewayFacts(identities.clone())),
        upstream,
    ))
}
