//! `ProcessRuntime`: a session's Pod as local child processes (daemons.md,
//! Runtimes) — the embedded default for a laptop and for end-to-end tests.
//!
//! It interprets the [`SessionObjects`] the Kubernetes runtime would apply
//! ([`plan`]): each container becomes a process with the environment the
//! pod would give it, on free loopback ports, the pod's volumes as
//! directories ([`start`]). Each process runs under a [`shim`] (this
//! binary) that records its pid, start time and exit in the [`state`]
//! directory, which is the only truth about what runs: a control plane
//! restarted, even after `kill -9`, adopts what its predecessor started (or
//! cleans it up for deleted sessions) and never signals a recycled pid
//! ([`exits`]). The runner's exit is reported as an [`Observation`] like a
//! pod's container status ([`observe`]), so phase sync is the reconciler's
//! one code path. Stop and delete send SIGTERM to everything the
//! containers started, then SIGKILL after the pod's grace period
//! ([`stop`]). Namespaces and group access do not exist here.
//!
//! The file system and `/proc` are read and written on the blocking pool,
//! never on the async workers; the time a pod's create request arrived is
//! recorded in the session's record (`pod_requested_at`).

pub mod caller;
mod exits;
mod keys;
pub mod logs;
mod observe;
pub mod plan;
pub mod settings;
pub mod shim;
mod start;
pub mod state;
mod stop;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ambient_protocol::keys::PrivateKey;
use ambient_session_gateway::token::{KeyRing, SigningKey};
use tokio::sync::mpsc::UnboundedSender;

use super::{BoxFuture, Caller, GroupBinding, Observation, PodFacts, RuntimeError, SessionRuntime};
use crate::names;
use crate::objects::SessionObjects;
pub use settings::{ProcessSettings, RuntimeArgs, RuntimeKind};
use state::{Durability, Layout, PodRecord, SessionRecord};

/// How long a delete waits at most for SIGTERM to work before SIGKILL.
const DELETE_GRACE: Duration = Duration::from_secs(10);

/// Sessions as local processes.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ProcessSettings,
    layout: Layout,
    changed: Mutex<Option<UnboundedSender<String>>>,
    /// (session, container) pairs with a task waiting for their exit.
    watched: Mutex<HashSet<(String, String)>>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    /// Set by [`ProcessRuntime::shutdown`]: nothing new starts.
    closing: std::sync::atomic::AtomicBool,
    /// The exchange-v3 roots session key files are derived from.
    session_keys: Mutex<Option<crate::session_keys::V3Roots>>,
    /// Held while we run: one control plane per state directory.
    _lock: std::fs::File,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("state_dir", &self.inner.layout.root())
            .finish_non_exhaustive()
    }
}

/// The base URL (`http://ip:port`) sessions use to reach a listener of
/// ours bound at `addr` (the session gateway).
pub fn local_base_url(addr: std::net::SocketAddr) -> String {
    local_token_url(addr).trim_end_matches("/token").to_owned()
}

/// The token URL sessions use to reach the embedded token server bound at `addr`.
pub fn local_token_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    format!(
        "http://{}/token",
        std::net::SocketAddr::new(ip, addr.port())
    )
}

fn io(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Transient(format!("{what}: {e}"))
}

fn session_id_of(objects: &SessionObjects) -> Result<String, RuntimeError> {
    let id = objects
        .pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::LABEL_SESSION_ID))
        .cloned()
        .unwrap_or_default();
    if !state::valid_session_id(&id) {
        return Err(RuntimeError::Permanent(format!(
            "session ID {id:?} cannot name a local directory"
        )));
    }
    Ok(id)
}

impl Inner {
    fn pod(&self, id: &str) -> Result<Option<PodRecord>, RuntimeError> {
        state::read_json(&self.layout.pod_record(id)).map_err(|e| io("pod record", e))
    }

    /// The session's pod as the gateway needs it: named by when it was
    /// created, with the credentials it was given.
    fn pod_facts(&self, id: &str) -> Result<Option<PodFacts>, RuntimeError> {
        if self.pod(id)?.is_none() {
            return Ok(None);
        }
        let record: Option<SessionRecord> = state::read_json(&self.layout.session_record(id))
            .map_err(|e| io("session record", e))?;
        Ok(record.map(|r| PodFacts {
            generation: r.pod_requested_at.unwrap_or_else(|| "0".into()),
            credentials: r.credentials,
        }))
    }

    /// Whether the connection `peer` → `local` comes from a process of
    /// session `id`'s pod ([`caller`]).
    fn caller(
        &self,
        id: &str,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
    ) -> Result<Caller, RuntimeError> {
        let Some(pod) = self.pod(id)? else {
            return Ok(Caller::NotYet);
        };
        let members = state::session_members(&stop::leaders(self, id, &pod));
        if members.is_empty() {
            return Ok(Caller::NotYet);
        }
        let Some(inode) =
            caller::client_socket_inode(std::path::Path::new("/proc/net"), peer, local)
        else {
            tracing::debug!(session = %id, %peer, "no local socket for the caller: not from this machine");
            return Ok(Caller::Stranger);
        };
        match caller::holder(&members, inode) {
            caller::Holder::Session => Ok(match self.pod_facts(id)? {
                Some(facts) => Caller::Member(facts),
                None => Caller::NotYet,
            }),
            caller::Holder::Nobody => Ok(Caller::Stranger),
            caller::Holder::Hidden => {
                tracing::warn!(
                    session = %id,
                    "cannot attribute a token request: some of the session's processes hide \
                     their open files (non-dumpable) and this control plane lacks CAP_SYS_PTRACE; \
                     refused"
                );
                Ok(Caller::Stranger)
            }
        }
    }
}

impl ProcessRuntime {
    /// Opens (creating) the state directory, takes its lock and adopts the
    /// processes a previous control plane left running. Call inside a Tokio
    /// runtime.
    pub fn open(settings: ProcessSettings) -> anyhow::Result<ProcessRuntime> {
        use anyhow::Context as _;
        let layout = Layout::new(settings.state_dir.clone());
        state::private_dir(&layout.sessions())
            .with_context(|| format!("cannot create {}", layout.sessions().display()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(layout.lock())
            .with_context(|| format!("cannot open {}", layout.lock().display()))?;
        if lock.try_lock().is_err() {
            anyhow::bail!(
                "{} is in use by another control plane",
                layout.root().display()
            );
        }
        let runtime = ProcessRuntime {
            inner: Arc::new(Inner {
                settings,
                layout,
                changed: Mutex::default(),
                watched: Mutex::default(),
                tasks: Mutex::default(),
                closing: Default::default(),
                session_keys: Mutex::default(),
                _lock: lock,
            }),
        };
        runtime.adopt()?;
        Ok(runtime)
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ProcessSettings {
        &self.inner.settings
    }

    /// The token-exchange key and the session-token signing keys in the
    /// state directory, generated (0600) the first time.
    pub async fn keys(&self) -> anyhow::Result<crate::keypair::Keys> {
        use anyhow::Context as _;
        let exchange = self.exchange_key().await?;
        let signing = match self.signing_keys()? {
            Some(ring) => ring,
            None => {
                let key = tokio::task::spawn_blocking(SigningKey::generate)
                    .await
                    .context("key generation")?
                    .context("key generation")?;
                let ring = KeyRing::new(key);
                self.save_signing_keys(&ring)?;
                ring
            }
        };
        let roots = match self.session_roots()? {
            Some(roots) => roots,
            None => {
                let roots = crate::keypair::roots::RootRing::generate()
                    .map_err(|e| anyhow::anyhow!("key generation: {e}"))?;
                self.save_session_roots(&roots)?;
                roots
            }
        };
        Ok(crate::keypair::Keys {
            exchange,
            signing,
            roots,
        })
    }

    /// The signing keys stored in the state directory (`None`: none yet).
    pub fn signing_keys(&self) -> anyhow::Result<Option<KeyRing>> {
        use anyhow::Context as _;
        let path = self.inner.layout.signing_keys();
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let data: std::collections::BTreeMap<String, String> = serde_json::from_slice(&raw)
            .with_context(|| format!("{} is not the expected JSON", path.display()))?;
        let data = data
            .into_iter()
            .map(|(k, v)| (k, ambient_protocol::Secret::new(v)))
            .collect();
        KeyRing::from_secret_data(&data, SystemTime::now())
            .map(Some)
            .with_context(|| format!("{} holds no usable signing keys", path.display()))
    }

    /// Writes the signing keys to the state directory (0600, atomically).
    pub fn save_signing_keys(&self, ring: &KeyRing) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let path = self.inner.layout.signing_keys();
        let data: std::collections::BTreeMap<String, String> = ring
            .to_secret_data()?
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_owned()))
            .collect();
        state::write_atomic(&path, &serde_json::to_vec(&data)?, Durability::Disk)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The token-exchange key in the state directory, generated (0600) the first time.
    async fn exchange_key(&self) -> anyhow::Result<PrivateKey> {
        use anyhow::Context as _;
        let path = self.inner.layout.keypair();
        match std::fs::read_to_string(&path) {
            Ok(pem) => {
                return PrivateKey::from_pem(&pem)
                    .with_context(|| format!("{} holds no usable key", path.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let key = tokio::task::spawn_blocking(PrivateKey::generate)
            .await
            .context("key generation")?
            .context("key generation")?;
        state::write_atomic(&path, key.to_pkcs8_pem().as_bytes(), Durability::Disk)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(key)
    }

    /// Stops every session's processes when configured to, and the watchers.
    pub async fn shutdown(&self) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self.inner.settings.stop_sessions_on_exit {
            let ids = self.inner.layout.session_ids().unwrap_or_default();
            for id in &ids {
                self.terminate(id, DELETE_GRACE).await;
                let _ = std::fs::remove_dir_all(self.inner.layout.pod(id));
            }
        }
        let tasks = std::mem::take(&mut *self.lock_tasks());
        drop(tasks);
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, tokio::task::JoinSet<()>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.lock_tasks().spawn(task);
    }

    /// Records the session (its "ServiceAccount") and starts its pod unless
    /// it has one; `received` is when the request arrived.
    fn provision_now(
        &self,
        objects: &SessionObjects,
        received: (SystemTime, Instant),
    ) -> Result<(), RuntimeError> {
        let id = session_id_of(objects)?;
        let inner = &self.inner;
        let layout = &inner.layout;
        state::private_dir(&layout.session(&id)).map_err(|e| io("mkdir", e))?;
        let reprovisions = objects
            .service_account
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::ANNOTATION_REPROVISIONS))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // A pod is immutable: start one only when there is none.
        let has_pod = inner.pod(&id)?.is_some();
        let closing = inner.closing.load(std::sync::atomic::Ordering::SeqCst);
        let previous = || {
            state::read_json::<SessionRecord>(&layout.session_record(&id))
                .ok()
                .flatten()
        };
        let (pod_requested_at, credentials) = if has_pod || closing {
            let previous = previous();
            (
                previous.as_ref().and_then(|r| r.pod_requested_at.clone()),
                previous.map(|r| r.credentials).unwrap_or_default(),
            )
        } else {
            (
                Some(prost_types::Timestamp::from(received.0).to_string()),
                super::delivered_credentials(&objects.pod),
            )
        };
        let record = SessionRecord {
            namespace: objects.namespace_name.clone(),
            reprovisions,
            pod_requested_at,
            credentials,
        };
        state::write_json(&layout.session_record(&id), &record)
            .map_err(|e| io("cannot write the session record", e))?;
        if has_pod {
            return Ok(());
        }
        if closing {
            return Err(RuntimeError::Transient(
                "the control plane is stopping".into(),
            ));
        }
        if objects.uses_session_key() {
            let generation = record.pod_requested_at.as_deref().unwrap_or("0");
            self.write_session_key(&id, generation)?;
        }
        self.start_pod(&id, objects, received.1)
    }

    /// Removes the session's processes and files (a deleted session).
    async fn cleanup_now(&self, id: String) -> Result<(), RuntimeError> {
        let dir = self.inner.layout.session(&id);
        if !dir.exists() {
            return Ok(());
        }
        self.terminate(&id, DELETE_GRACE).await;
        self.blocking(move |rt| {
            if let Some(pod) = rt.inner.pod(&id)?
                && rt.inner.live_processes(&id, &pod) > 0
            {
                return Err(RuntimeError::Transient(
                    "session processes survived SIGKILL".into(),
                ));
            }
            std::fs::remove_dir_all(&dir)
                .map_err(|e| io(&format!("cannot remove {}", dir.display()), e))?;
            tracing::info!(session = %id, "session processes and files removed");
            Ok(())
        })
        .await?
    }
}

impl SessionRuntime for ProcessRuntime {
    fn provision<'a>(
        &'a self,
        objects: &'a SessionObjects,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let received = (SystemTime::now(), Instant::now());
        Box::pin(async move {
            let objects = objects.clone();
            self.blocking(move |rt| rt.provision_now(&objects, received))
                .await?
        })
    }

    fn observe<'a>(
        &'a self,
        session_id: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<Observation, RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(Observation::Absent);
            }
            let id = session_id.to_owned();
            self.blocking(move |rt| rt.inner.observe(&id)).await?
        })
    }

    fn reprovisions<'a>(
        &'a self,
        session_id: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(0);
            }
            let record: Option<SessionRecord> =
                state::read_json(&self.inner.layout.session_record(session_id))
                    .map_err(|e| io("session record", e))?;
            Ok(record.map_or(0, |r| r.reprovisions))
        })
    }

    fn stop<'a>(
        &'a self,
        session_id: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(true);
            }
            let id = session_id.to_owned();
            self.blocking(move |rt| rt.stop_now(&id)).await?
        })
    }

    fn cleanup<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(());
            }
            self.cleanup_now(session_id.to_owned()).await
        })
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            self.inner
                .layout
                .session_ids()
                .map_err(|e| io("state directory", e))
        })
    }

    fn projects(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn remove_project<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn sync_group_access<'a>(
        &'a self,
        _: &'a str,
        _: &'a [GroupBinding],
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn caller<'a>(
        &'a self,
        session_id: &'a str,
        _project_id: &'a str,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
    ) -> BoxFuture<'a, Result<Caller, RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(Caller::Stranger);
            }
            let id = session_id.to_owned();
            self.blocking(move |rt| rt.inner.caller(&id, peer, local))
                .await?
        })
    }

    fn pod_facts<'a>(
        &'a self,
        session_id: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodFacts>, RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(None);
            }
            let id = session_id.to_owned();
            self.blocking(move |rt| rt.inner.pod_facts(&id)).await?
        })
    }

    fn rewrite_session_keys<'a>(
        &'a self,
        roots: &'a ambient_protocol::exchange::v3::RootKeys,
    ) -> BoxFuture<'a, Result<usize, RuntimeError>> {
        let roots = roots.clone();
        Box::pin(async move { self.blocking(move |rt| rt.rewrite_keys_now(&roots)).await? })
    }

    fn watch(&self, changed: UnboundedSender<String>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Whatever changed while nobody listened is looked at again.
            for id in self.inner.layout.session_ids().unwrap_or_default() {
                let _ = changed.send(id);
            }
            *self.inner.changed.lock().unwrap_or_else(|p| p.into_inner()) = Some(changed);
            std::future::pending::<()>().await;
        })
    }
}

#[cfg(test)]
mod tests;
