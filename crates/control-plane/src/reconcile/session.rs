//! The session reconciler: a session's phase → what runs for it, and what
//! runs → the phase written back, never against a user's intent.

use std::time::SystemTime;

use ambient_protocol::phase::Phase;
use ambient_protocol::provider::Provider;
use ambient_protocol::v1::{Project, Session, UpdateSessionStatusRequest};

use super::{Controller, Done, Key, POD_EVENT_FALLBACK, ReconcileError};
use crate::names;
use crate::objects::{self, SessionInput};
use crate::runtime::{Observation, RuntimeError};

/// Whether the control plane may move a session from `current` (as the API
/// holds it now) to `target` (daemons.md): nothing leaves a terminal phase
/// (only a user's restart does), `Stopping` only becomes `Stopped`, only
/// `Stopping` becomes `Stopped`, and nothing goes back to `Creating` or
/// `Pending`.
pub fn may_write(current: Phase, target: Phase) -> bool {
    use Phase::*;
    match (current, target) {
        (Stopped | Completed | Failed, _) => false,
        (Stopping, Stopped) => true,
        (Stopping, _) | (_, Stopped | Pending) => false,
        (Running, Creating) => false,
        _ => true,
    }
}

fn id_of(session: &Session) -> &str {
    session
        .metadata
        .as_ref()
        .map(|m| m.id.as_str())
        .unwrap_or_default()
}

impl Controller {
    pub(super) async fn reconcile_session(&self, id: &str) -> Result<Done, ReconcileError> {
        let Some(session) = self.sessions.get(id) else {
            // Deleted: remove its objects and grants, never the namespace.
            self.runtime.cleanup(id).await?;
            self.revoke(id).await?;
            self.sessions.forget_tombstone(id);
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
            // Driven by pod events: the pod's deletion enqueues it again.
            Phase::Stopping => {
                if self.runtime.stop(id, &ns).await? {
                    self.write_phase(&session, Phase::Stopped, None, None)
                        .await?;
                    Ok(Done::Converged)
                } else {
                    Ok(Done::After(POD_EVENT_FALLBACK))
                }
            }
            // The phase is written: the pod (and its sidecars) would
            // otherwise run forever. The namespace stays.
            Phase::Stopped | Phase::Completed | Phase::Failed => {
                if self.runtime.stop(id, &ns).await? {
                    self.revoke(id).await?;
                    Ok(Done::Converged)
                } else {
                    Ok(Done::After(POD_EVENT_FALLBACK))
                }
            }
        }
    }

    async fn converge_live(
        &self,
        session: &Session,
        phase: Phase,
        ns: &str,
        observed: Observation,
    ) -> Result<Done, ReconcileError> {
        let id = id_of(session);
        match (phase, observed) {
            // A restarted session still has the pod of its last run,
            // finished or still stopping (started again while the stop of
            // a terminal phase was under way): the stop goes on here, as
            // nothing else drives it now, and once the pod is gone (the
            // process runtime may remove it in this very call, and no pod
            // event follows then) the session starts anew.
            (
                Phase::Pending,
                Observation::Exited(_) | Observation::Failed(_) | Observation::Terminating,
            ) => {
                if self.runtime.stop(id, ns).await? {
                    return self.start(session, ns).await;
                }
                Ok(Done::After(POD_EVENT_FALLBACK))
            }
            (Phase::Pending, Observation::Absent) => self.start(session, ns).await,
            (_, Observation::Terminating) => Ok(Done::After(POD_EVENT_FALLBACK)),
            (_, Observation::Absent) => {
                // Remembered on the session's ServiceAccount, so a restart
                // or failover of the control plane does not forget it.
                let before = self.runtime.reprovisions(id, ns).await?;
                if before == 0 {
                    tracing::warn!(session = %id, "the session's pod vanished; re-provisioning once");
                    self.provision(session, ns, 1).await?;
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

    /// Starts a (re)started session's pod: its re-provision count starts at 0.
    async fn start(&self, session: &Session, ns: &str) -> Result<Done, ReconcileError> {
        let Some(undelivered) = self.provision(session, ns, 0).await? else {
            return Ok(Done::Converged);
        };
        let conditions = start_conditions(session, &undelivered);
        self.write_status(session, Phase::Creating, conditions, Some(ns))
            .await?;
        Ok(Done::Converged)
    }

    /// The session's project as the API knows it: cached, or fetched when
    /// the project informer has not seen it yet. `None` when the API says
    /// it does not exist.
    pub(super) async fn known_project(&self, id: &str) -> Result<Option<Project>, ReconcileError> {
        if let Some(p) = self.projects.get(id) {
            return Ok(Some(p));
        }
        if self.projects.is_deleted(id) {
            return Ok(None);
        }
        match self.api.get_project(id).await {
            Ok(p) => {
                self.projects.upsert(p.clone());
                Ok(Some(p))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Builds and applies the session's objects in `ns`, its ServiceAccount
    /// remembering `reprovisions`: the credentials resolved but not
    /// delivered (no sidecar image), or `None` when the session cannot run
    /// there (it is marked Failed).
    async fn provision(
        &self,
        session: &Session,
        ns: &str,
        reprovisions: u32,
    ) -> Result<Option<Vec<Provider>>, ReconcileError> {
        let cfg = &self.pod_config;
        let mpp_config = cfg.mpp_config_namespace.as_deref();
        if let Some(why) = names::reserved_namespace(ns, &cfg.control_plane_namespace, mpp_config) {
            let why = format!("namespace {ns} is {why}: refusing to run a session there");
            self.write_phase(session, Phase::Failed, Some(&why), None)
                .await?;
            return Ok(None);
        }
        let project_id = session.project_id.as_deref().unwrap_or_default();
        let Some(project) = self.known_project(project_id).await? else {
            let why = format!("project {project_id} does not exist");
            self.write_phase(session, Phase::Failed, Some(&why), None)
                .await?;
            return Ok(None);
        };
        // Resolved once, here: the pod keeps what it was built with.
        let started = std::time::Instant::now();
        let waited = since_created_ms(session);
        let read = self.session_context(session).await?;
        let credentials = read.credentials;
        let context = started.elapsed();
        let key = self.public_key_pem.as_deref();
        if let Some(why) = objects::environment_problem(session) {
            tracing::warn!(session = %id_of(session), reason = %why,
                "environment_variables is no JSON object: ignored, the session starts without it");
        }
        let built = objects::build(
            &self.pod_config,
            SessionInput {
                session,
                project: Some(&project),
                public_key_pem: key,
                credentials: &credentials,
                prompt: &read.prompt,
                last_seq: read.last_seq,
            },
            None,
        );
        let mut objects = match built {
            Ok(o) => o,
            Err(e) => {
                self.write_phase(session, Phase::Failed, Some(&e.to_string()), None)
                    .await?;
                return Ok(None);
            }
        };
        objects
            .service_account
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(
                names::ANNOTATION_REPROVISIONS.into(),
                reprovisions.to_string(),
            );
        let delivered = objects::delivered_credentials(&self.pod_config, key, &credentials);
        let undelivered: Vec<Provider> = credentials
            .keys()
            .filter(|p| !delivered.contains_key(p))
            .copied()
            .collect();
        for provider in &undelivered {
            tracing::warn!(session = %id_of(session), provider = %provider,
                "credential resolved but not delivered: no sidecar image for its provider");
        }
        // Before the pod exists: its sidecars read the tokens at once.
        self.grant(id_of(session), &delivered).await?;
        let granted = started.elapsed();
        let provisioned = self.runtime.provision(&objects).await;
        tracing::debug!(
            session = %id_of(session),
            since_created_ms = waited,
            context_ms = ms(context),
            grant_ms = ms(granted - context),
            runtime_ms = ms(started.elapsed() - granted),
            "provisioned"
        );
        match provisioned {
            Ok(()) => Ok(Some(undelivered)),
            Err(RuntimeError::Permanent(why)) => {
                self.write_phase(session, Phase::Failed, Some(&why), None)
                    .await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a phase (with the bookkeeping fields it implies) and caches
    /// the answer. The write is computed from a fresh read of the session,
    /// not from the snapshot this reconcile started with: when the session
    /// moved meanwhile in a way [`may_write`] refuses (a user's `Stopping`
    /// during provisioning, a delete), nothing is written, the fresh state
    /// is cached and the session is reconciled again. `Ok(false)` then.
    pub(super) async fn write_phase(
        &self,
        session: &Session,
        phase: Phase,
        failure: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<bool, ReconcileError> {
        let conditions = failure.map(|why| {
            serde_json::json!([{"type": "Ready", "status": "False", "reason": phase.as_str(), "message": why}])
                .to_string()
        });
        self.write_status(session, phase, conditions, namespace)
            .await
    }

    /// [`Controller::write_phase`] with the session's `conditions` (JSON) given.
    async fn write_status(
        &self,
        session: &Session,
        phase: Phase,
        conditions: Option<String>,
        namespace: Option<&str>,
    ) -> Result<bool, ReconcileError> {
        let id = id_of(session).to_owned();
        let fresh = match self.api.get_session(&id).await {
            Ok(s) => s,
            // Deleted meanwhile: its delete event will follow.
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let current = Phase::of_session(fresh.phase.as_deref()).ok();
        if !current.is_some_and(|c| may_write(c, phase)) {
            tracing::info!(session = %id, phase = %phase, now = fresh.phase.as_deref().unwrap_or(""),
                "session changed meanwhile; not writing the phase");
            self.sessions.upsert(fresh);
            self.queue.add(Key::Session(id));
            return Ok(false);
        }
        let now = prost_types::Timestamp::from(SystemTime::now());
        let mut req = UpdateSessionStatusRequest {
            id: id.clone(),
            phase: Some(phase.as_str().into()),
            ..UpdateSessionStatusRequest::default()
        };
        if let Some(ns) = namespace {
            req.kube_namespace = Some(ns.into());
        }
        if phase == Phase::Running && fresh.start_time.is_none() {
            req.start_time = Some(now);
        }
        if phase.is_terminal() && fresh.completion_time.is_none() {
            req.completion_time = Some(now);
        }
        req.conditions = conditions;
        let req_conditions = req.conditions.clone();
        let updated = self.api.update_session_status(req).await?;
        tracing::info!(session = %id, phase = %phase, conditions = req_conditions.as_deref().unwrap_or(""), "phase written");
        self.metrics.phase_written(phase.as_str());
        // Cached here, so the informer's event for this write changes
        // nothing and enqueues nothing: look again at the new phase (a
        // terminal one still has a pod to delete).
        self.sessions.upsert(updated);
        self.queue.add(Key::Session(id));
        Ok(true)
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Milliseconds since the API created `session` (its clock, ours: one
/// machine in the process runtime), for the provisioning log line.
fn since_created_ms(session: &Session) -> Option<f64> {
    let created = session.metadata.as_ref()?.created_at?;
    let created = SystemTime::try_from(created).ok()?;
    SystemTime::now().duration_since(created).ok().map(ms)
}

/// The `conditions` of a session started with something left out: its
/// credentials not all delivered, its `environment_variables` ignored.
fn start_conditions(session: &Session, undelivered: &[Provider]) -> Option<String> {
    let mut conditions = Vec::new();
    if !undelivered.is_empty() {
        let names: Vec<&str> = undelivered.iter().map(|p| p.as_str()).collect();
        let message = format!(
            "credentials resolved but not delivered (no sidecar image): {}",
            names.join(", ")
        );
        conditions.push(
            serde_json::json!({"type": "CredentialsDelivered", "status": "False",
            "reason": "NoSidecarImage", "message": message}),
        );
    }
    if let Some(why) = objects::environment_problem(session) {
        let message = format!("environment_variables ignored: not a JSON object ({why})");
        conditions.push(
            serde_json::json!({"type": "EnvironmentVariables", "status": "False",
            "reason": "InvalidJSON", "message": message}),
        );
    }
    (!conditions.is_empty()).then(|| serde_json::Value::Array(conditions).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_stop_and_terminal_phases_are_never_overwritten() {
        use Phase::*;
        for target in [Creating, Running, Completed, Failed] {
            assert!(!may_write(Stopping, target), "Stopping → {target}");
        }
        assert!(may_write(Stopping, Stopped));
        for current in [Stopped, Completed, Failed] {
            for target in Phase::ALL {
                assert!(!may_write(current, target), "{current} → {target}");
            }
        }
        for current in [Pending, Creating, Running] {
            assert!(
                !may_write(current, Stopped),
                "only Stopping becomes Stopped"
            );
            assert!(may_write(current, Failed));
            assert!(may_write(current, Completed));
            assert!(may_write(current, Running));
        }
        assert!(may_write(Pending, Creating));
        assert!(!may_write(Running, Creating));
    }
}
