//! Reconcilers: level-triggered, idempotent, one run per key at a time.
//!
//! A worker takes a key from the [`WorkQueue`], reads the *latest* cached
//! object (never an event snapshot), compares it with what the runtime
//! sees, and acts. Errors requeue the key with its own backoff; nothing is
//! ever dropped.

mod context;
mod project;
mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambient_protocol::v1::{Project, ProjectSettings, Session};
use tokio::sync::watch;

use crate::api::{Api, ApiError};
use crate::credentials::CredentialError;
use crate::informer::Store;
use crate::metrics::Metrics;
use crate::objects::{PodConfig, ServiceAccountRef};
use crate::queue::WorkQueue;
use crate::rest::{Rest, RestError};
use crate::runtime::{RuntimeError, SessionRuntime};

pub use project::group_bindings;
pub use session::may_write;

/// What a work-queue key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Session(String),
    Project(String),
    ProjectSettings(String),
    /// A project's group access (by project ID).
    Access(String),
}

impl Key {
    fn kind(&self) -> &'static str {
        match self {
            Key::Session(_) => "session",
            Key::Project(_) => "project",
            Key::ProjectSettings(_) => "project_settings",
            Key::Access(_) => "access",
        }
    }
}

/// A reconcile failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("api: {0}")]
    Api(#[from] ApiError),
    #[error("api (REST): {0}")]
    Rest(#[from] RestError),
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialError),
    #[error("no result within {0:?}")]
    Deadline(Duration),
}

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Converged until something changes.
    Converged,
    /// Look again after a while (e.g. a pod is terminating).
    After(Duration),
}

/// Everything the reconcilers share.
pub struct Controller {
    pub api: Api,
    pub sessions: Arc<Store<Session>>,
    pub projects: Arc<Store<Project>>,
    pub settings: Arc<Store<ProjectSettings>>,
    pub runtime: Arc<dyn SessionRuntime>,
    pub pod_config: PodConfig,
    pub public_key_pem: Option<String>,
    pub queue: WorkQueue<Key>,
    pub metrics: Metrics,
    /// The REST side of the API: credentials, role bindings, prompts. Without
    /// it sessions get no credentials and only their own prompt.
    pub rest: Option<Rest>,
    /// The control plane's user ID in the API (`GRPC_SERVICE_ACCOUNT`):
    /// sessions' token-reader grants are made for it.
    pub service_identity: Option<String>,
    /// The control plane's ServiceAccount, bound to the project-manager Role
    /// of every project namespace.
    pub manager: ServiceAccountRef,
    /// Sessions whose grants were revoked since this process started (a
    /// terminal session's resync then asks the API nothing).
    revoked: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

/// Delay before looking again at something in progress.
const POLL: Duration = Duration::from_secs(1);
/// A pod being deleted: its pod events enqueue the session again; this
/// only bounds how long a missed event can delay it.
const POD_EVENT_FALLBACK: Duration = Duration::from_secs(30);
/// Delay before looking again at a deleted project whose sessions still run.
const PROJECT_WAIT: Duration = Duration::from_secs(5);
/// A reconcile taking longer fails and is retried: a hung Kubernetes or API
/// call never holds a worker forever.
pub const RECONCILE_DEADLINE: Duration = Duration::from_secs(120);

impl Controller {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        api: Api,
        sessions: Arc<Store<Session>>,
        projects: Arc<Store<Project>>,
        settings: Arc<Store<ProjectSettings>>,
        runtime: Arc<dyn SessionRuntime>,
        pod_config: PodConfig,
        public_key_pem: Option<String>,
        queue: WorkQueue<Key>,
        metrics: Metrics,
    ) -> Self {
        let manager = ServiceAccountRef {
            namespace: pod_config.control_plane_namespace.clone(),
            name: crate::names::CONTROL_PLANE_SERVICE_ACCOUNT.to_owned(),
        };
        Self {
            manager,
            api,
            sessions,
            projects,
            settings,
            runtime,
            pod_config,
            public_key_pem,
            queue,
            metrics,
            rest: None,
            service_identity: None,
            revoked: std::sync::Mutex::default(),
        }
    }

    /// With the REST side of the API (credentials, role bindings, prompts)
    /// and the service identity the session grants are made for.
    pub fn with_rest(mut self, rest: Rest, service_identity: Option<String>) -> Self {
        self.rest = Some(rest);
        self.service_identity = service_identity;
        self
    }

    /// Binding `manager` (the control plane's own ServiceAccount) to the
    /// project-manager Role of project namespaces.
    pub fn with_manager(mut self, manager: ServiceAccountRef) -> Self {
        self.manager = manager;
        self
    }

    /// Runs `workers` reconcile workers until `stop` turns true.
    pub async fn run(self: Arc<Self>, workers: usize, mut stop: watch::Receiver<bool>) {
        // Absent from a cache that has not loaded yet is not "deleted": no
        // reconcile before every cache holds a full list.
        while !self.synced() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => return,
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let this = self.clone();
            tasks.spawn(async move { this.worker().await });
        }
        // Runtime changes (pod events) enqueue their session.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let runtime = self.runtime.clone();
        tasks.spawn(crate::supervisor::supervise("pod watcher", move || {
            let (runtime, tx) = (runtime.clone(), tx.clone());
            async move { runtime.watch(tx).await }
        }));
        let queue = self.queue.clone();
        tasks.spawn(async move {
            while let Some(id) = rx.recv().await {
                queue.add(Key::Session(id));
            }
        });
        // Everything we know, and every orphan the runtime still has.
        self.enqueue_all();
        let this = self.clone();
        tasks.spawn(async move { this.sweep_orphans().await });
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    /// True once every cache holds a full list.
    pub fn synced(&self) -> bool {
        self.sessions.is_synced() && self.projects.is_synced() && self.settings.is_synced()
    }

    /// Enqueues every cached object.
    pub fn enqueue_all(&self) {
        for id in self.sessions.ids() {
            self.queue.add(Key::Session(id));
        }
        for id in self.projects.ids() {
            self.queue.add(Key::Project(id));
        }
        for id in self.settings.ids() {
            self.queue.add(Key::ProjectSettings(id));
        }
    }

    /// Enqueues what the runtime holds but the caches do not know: sessions
    /// deleted while we were down (their objects), projects deleted
    /// meanwhile (their namespaces and group access) and projects whose
    /// settings went (their group access). Only after the caches synced;
    /// each reconcile confirms with the API before removing anything.
    pub async fn sweep_orphans(&self) {
        let mut backoff = ambient_protocol::backoff::Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
        );
        loop {
            match self.sweep_once().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the runtime's objects for the orphan sweep");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    async fn sweep_once(&self) -> Result<(), RuntimeError> {
        let sessions = self.runtime.sessions().await?;
        let projects = self.runtime.projects().await?;
        let (mut orphans, mut unknown) = (0, 0);
        for id in sessions {
            if self.sessions.get(&id).is_none() {
                tracing::info!(session = %id, "orphaned session objects found; cleaning up");
                self.queue.add(Key::Session(id));
                orphans += 1;
            }
        }
        for id in projects {
            if self.projects.get(&id).is_none() {
                tracing::info!(project = %id, "objects of an unknown project found; checking it");
                self.queue.add(Key::Project(id.clone()));
                unknown += 1;
            }
            self.queue.add(Key::Access(id));
        }
        // Tests (and operators) wait for this line: the sweep is over.
        tracing::info!(
            orphaned_sessions = orphans,
            unknown_projects = unknown,
            "orphan sweep done"
        );
        Ok(())
    }

    async fn worker(self: Arc<Self>) {
        // The guard releases the key however the reconcile ends, even when
        // this task is aborted mid-reconcile (the Lease was lost).
        while let Some(active) = self.queue.next().await {
            let key = active.key().clone();
            self.metrics.set_queue_depth(self.queue.len());
            let started = Instant::now();
            let result = match tokio::time::timeout(RECONCILE_DEADLINE, self.reconcile(&key)).await
            {
                Ok(r) => r,
                Err(_) => Err(ReconcileError::Deadline(RECONCILE_DEADLINE)),
            };
            let kind = key.kind();
            match result {
                Ok(Done::Converged) => {
                    self.queue.forget(&key);
                    self.metrics.reconciled(kind, "ok", started.elapsed());
                }
                Ok(Done::After(delay)) => {
                    self.queue.forget(&key);
                    self.queue.add_after(key.clone(), delay);
                    self.metrics.reconciled(kind, "requeue", started.elapsed());
                }
                Err(e) => {
                    let delay = self.queue.retry(&key);
                    tracing::warn!(?key, error = %e, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
                    self.metrics.reconciled(kind, "error", started.elapsed());
                }
            }
            drop(active);
        }
    }

    /// One reconcile of `key`.
    pub async fn reconcile(&self, key: &Key) -> Result<Done, ReconcileError> {
        if !self.synced() {
            return Ok(Done::After(POLL));
        }
        match key {
            Key::Session(id) => self.reconcile_session(id).await,
            Key::Project(id) => self.reconcile_project(id).await,
            Key::ProjectSettings(id) => self.reconcile_settings(id).await,
            Key::Access(id) => self.reconcile_access(id).await,
        }
    }
}
