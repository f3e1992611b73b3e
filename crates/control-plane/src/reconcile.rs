//! Reconcilers: level-triggered, idempotent, one run per key at a time.
//!
//! A worker takes a key from the [`WorkQueue`], reads the *latest* cached
//! object (never an event snapshot), compares it with what the runtime
//! sees, and acts. Errors requeue the key with its own backoff; nothing is
//! ever dropped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ambient_protocol::phase::Phase;
use ambient_protocol::v1::{Project, ProjectSettings, Session, UpdateSessionStatusRequest};
use tokio::sync::watch;

use crate::api::{Api, ApiError};
use crate::informer::Store;
use crate::metrics::Metrics;
use crate::names;
use crate::objects::{self, PodConfig, SessionInput};
use crate::queue::WorkQueue;
use crate::runtime::{GroupBinding, Observation, Role, RuntimeError, SessionRuntime};

/// What a work-queue key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Session(String),
    Project(String),
    ProjectSettings(String),
}

impl Key {
    fn kind(&self) -> &'static str {
        match self {
            Key::Session(_) => "session",
            Key::Project(_) => "project",
            Key::ProjectSettings(_) => "project_settings",
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
    /// Sessions whose vanished pod was already re-provisioned once.
    reprovisioned: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

/// Delay before looking again at something in progress.
const POLL: Duration = Duration::from_secs(1);
/// Delay before looking again at a deleted project whose sessions still run.
const PROJECT_WAIT: Duration = Duration::from_secs(5);

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
        Self {
            api,
            sessions,
            projects,
            settings,
            runtime,
            pod_config,
            public_key_pem,
            queue,
            metrics,
            reprovisioned: Mutex::new(HashSet::new()),
        }
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
        tasks.spawn(async move { runtime.watch(tx).await });
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
        for id in self.settings.ids() {
            self.queue.add(Key::ProjectSettings(id));
        }
    }

    /// Enqueues sessions the runtime has objects for but the API no longer
    /// knows (deleted while we were down). Only after the caches synced.
    pub async fn sweep_orphans(&self) {
        let mut backoff = ambient_protocol::backoff::Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
        );
        loop {
            match self.runtime.sessions().await {
                Ok(ids) => {
                    for id in ids {
                        if self.sessions.get(&id).is_none() {
                            tracing::info!(session = %id, "orphaned session objects found; cleaning up");
                            self.queue.add(Key::Session(id));
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list runtime sessions for the orphan sweep");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    async fn worker(self: Arc<Self>) {
        while let Some(key) = self.queue.next().await {
            self.metrics.set_queue_depth(self.queue.len());
            let started = Instant::now();
            let result = self.reconcile(&key).await;
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
            self.queue.done(&key);
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
        }
    }

    async fn reconcile_session(&self, id: &str) -> Result<Done, ReconcileError> {
        let Some(session) = self.sessions.get(id) else {
            // Deleted: remove its objects, never the namespace.
            self.runtime.cleanup(id).await?;
            self.sessions.forget_tombstone(id);
            self.lock_reprovisioned().remove(id);
            return Ok(Done::Converged);
        };
        let phase = match Phase::of_session(session.phase.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "session has an unknown phase; leaving it alone");
                return Ok(Done::Converged);
            }
        };
        let Some(project_id) = session.project_id.clone().filter(|p| !p.is_empty()) else {
            if phase.is_live() {
                self.write_phase(
                    &session,
                    Phase::Failed,
                    Some("session has no project_id"),
                    None,
                )
                .await?;
            }
            return Ok(Done::Converged);
        };
        let ns = names::namespace(self.pod_config.platform_mode, &project_id);
        match phase {
            Phase::Pending | Phase::Creating | Phase::Running => {
                let observed = self.runtime.observe(id, &ns).await?;
                self.converge_live(&session, phase, &ns, observed).await
            }
            Phase::Stopping => {
                if self.runtime.stop(id, &ns).await? {
                    self.write_phase(&session, Phase::Stopped, None, None)
                        .await?;
                    Ok(Done::Converged)
                } else {
                    Ok(Done::After(POLL))
                }
            }
            Phase::Stopped | Phase::Completed | Phase::Failed => Ok(Done::Converged),
        }
    }

    async fn converge_live(
        &self,
        session: &Session,
        phase: Phase,
        ns: &str,
        observed: Observation,
    ) -> Result<Done, ReconcileError> {
        let id = session
            .metadata
            .as_ref()
            .map(|m| m.id.as_str())
            .unwrap_or_default();
        match (phase, observed) {
            (_, Observation::Terminating) => Ok(Done::After(POLL)),
            // A restarted session still has the finished pod of its last run.
            (Phase::Pending, Observation::Exited(_) | Observation::Failed(_)) => {
                self.runtime.stop(id, ns).await?;
                Ok(Done::After(POLL))
            }
            (Phase::Pending, Observation::Absent) => {
                if !self.provision(session).await? {
                    return Ok(Done::Converged);
                }
                self.write_phase(session, Phase::Creating, None, Some(ns))
                    .await?;
                Ok(Done::Converged)
            }
            (_, Observation::Absent) => {
                let first = self.lock_reprovisioned().insert(id.to_owned());
                if first {
                    tracing::warn!(session = %id, "the session's pod vanished; re-provisioning once");
                    self.provision(session).await?;
                } else {
                    self.write_phase(
                        session,
                        Phase::Failed,
                        Some("the session's pod vanished twice"),
                        None,
                    )
                    .await?;
                }
                Ok(Done::Converged)
            }
            (Phase::Pending, Observation::Starting) => {
                self.write_phase(session, Phase::Creating, None, Some(ns))
                    .await?;
                Ok(Done::Converged)
            }
            (_, Observation::Starting) => Ok(Done::Converged),
            (Phase::Running, Observation::Running) => Ok(Done::Converged),
            (_, Observation::Running) => {
                self.write_phase(session, Phase::Running, None, Some(ns))
                    .await?;
                Ok(Done::Converged)
            }
            (_, Observation::Exited(0)) => {
                self.write_phase(session, Phase::Completed, None, None)
                    .await?;
                Ok(Done::Converged)
            }
            (_, Observation::Exited(code)) => {
                let why = format!("the runner exited with code {code}");
                self.write_phase(session, Phase::Failed, Some(&why), None)
                    .await?;
                Ok(Done::Converged)
            }
            (_, Observation::Failed(reason)) => {
                self.write_phase(session, Phase::Failed, Some(&reason), None)
                    .await?;
                Ok(Done::Converged)
            }
        }
    }

    /// Builds and applies the session's objects; `Ok(false)` when the
    /// session cannot be built (it is marked Failed).
    async fn provision(&self, session: &Session) -> Result<bool, ReconcileError> {
        let project = session
            .project_id
            .as_deref()
            .and_then(|p| self.projects.get(p));
        let credentials = objects::resolve_credentials(session, project.as_ref());
        let built = objects::build(
            &self.pod_config,
            SessionInput {
                session,
                project: project.as_ref(),
                public_key_pem: self.public_key_pem.as_deref(),
                credentials: &credentials,
            },
            None,
        );
        let objects = match built {
            Ok(o) => o,
            Err(e) => {
                self.write_phase(session, Phase::Failed, Some(&e.to_string()), None)
                    .await?;
                return Ok(false);
            }
        };
        match self.runtime.provision(&objects).await {
            Ok(()) => Ok(true),
            Err(RuntimeError::Permanent(why)) => {
                self.write_phase(session, Phase::Failed, Some(&why), None)
                    .await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a phase (with the bookkeeping fields it implies) and caches the answer.
    async fn write_phase(
        &self,
        session: &Session,
        phase: Phase,
        failure: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<(), ReconcileError> {
        let id = session
            .metadata
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        let now = prost_types::Timestamp::from(SystemTime::now());
        let mut req = UpdateSessionStatusRequest {
            id: id.clone(),
            phase: Some(phase.as_str().into()),
            ..UpdateSessionStatusRequest::default()
        };
        if let Some(ns) = namespace {
            req.kube_namespace = Some(ns.into());
        }
        if phase == Phase::Running && session.start_time.is_none() {
            req.start_time = Some(now);
        }
        if phase.is_terminal() && session.completion_time.is_none() {
            req.completion_time = Some(now);
        }
        if let Some(why) = failure {
            req.conditions = Some(
                serde_json::json!([{"type": "Ready", "status": "False", "reason": phase.as_str(), "message": why}])
                    .to_string(),
            );
        }
        let updated = self.api.update_session_status(req).await?;
        tracing::info!(session = %id, phase = %phase, reason = failure.unwrap_or(""), "phase written");
        self.metrics.phase_written(phase.as_str());
        self.sessions.upsert(updated);
        Ok(())
    }

    async fn reconcile_project(&self, id: &str) -> Result<Done, ReconcileError> {
        if self.projects.get(id).is_some() || self.projects.tombstone(id).is_none() {
            return Ok(Done::Converged);
        }
        // A live session would only bring the namespace back: wait until the
        // project's sessions have ended or are gone.
        let live = self.sessions.count_where(|s| {
            s.project_id.as_deref() == Some(id)
                && Phase::of_session(s.phase.as_deref()).is_ok_and(|p| !p.is_terminal())
        });
        if live > 0 {
            tracing::info!(project = %id, "project deleted; keeping its namespace while sessions still run");
            return Ok(Done::After(PROJECT_WAIT));
        }
        self.runtime.remove_project(id).await?;
        self.projects.forget_tombstone(id);
        Ok(Done::Converged)
    }

    async fn reconcile_settings(&self, id: &str) -> Result<Done, ReconcileError> {
        let (settings, bindings) = match self.settings.get(id) {
            Some(s) => {
                let b = group_bindings(s.group_access.as_deref().unwrap_or(""));
                (s, b)
            }
            None => match self.settings.tombstone(id) {
                Some(s) => (s, Vec::new()),
                None => return Ok(Done::Converged),
            },
        };
        self.runtime
            .sync_group_access(&settings.project_id, &bindings)
            .await?;
        self.settings.forget_tombstone(id);
        Ok(Done::Converged)
    }

    fn lock_reprovisioned(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.reprovisioned.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `group_access` (a JSON array of `{groupName, role}`) as bindings; invalid
/// entries are skipped with a warning.
pub fn group_bindings(group_access: &str) -> Vec<GroupBinding> {
    if group_access.trim().is_empty() {
        return Vec::new();
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(group_access) else {
        tracing::warn!("group_access is not a JSON array; granting nothing");
        return Vec::new();
    };
    let mut out: Vec<GroupBinding> = items
        .iter()
        .filter_map(|item| {
            let group = item.get("groupName")?.as_str()?.to_owned();
            let role = Role::parse(item.get("role")?.as_str()?);
            match role {
                Some(role) if !group.is_empty() => Some(GroupBinding { group, role }),
                _ => {
                    tracing::warn!(group = %group, "skipping group access entry with an unknown role");
                    None
                }
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_access_parsing() {
        let b = group_bindings(
            r#"[{"groupName":"devs","role":"edit"},{"groupName":"ops","role":"admin"},
                {"groupName":"x","role":"root"},{"role":"view"},{"groupName":"devs","role":"edit"}]"#,
        );
        assert_eq!(
            b,
            vec![
                GroupBinding {
                    group: "devs".into(),
                    role: Role::Edit
                },
                GroupBinding {
                    group: "ops".into(),
                    role: Role::Admin
                },
            ]
        );
        assert!(group_bindings("not json").is_empty());
        assert!(group_bindings("").is_empty());
    }
}
