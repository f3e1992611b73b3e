//! Sessions: create (scoped, caller-owned), update, status, start/stop, delete.

use ambient_protocol::phase::Phase;
use ambient_protocol::v1::{
    CreateSessionRequest, EventType, Session, UpdateSessionRequest, UpdateSessionStatusRequest,
};

use super::{
    Api, Caller, ListQuery, Page, existing, object_ref, rename, replace_json_object, required,
    resource_event, set, touch,
};
use crate::error::ApiError;
use crate::events::Resource;
use crate::ids::new_id;
use crate::labels;
use crate::search::{Expr, Op};
use crate::store::Stored;
use crate::time::now;

/// True when `value` may be used as a project scope or interpolated into a
/// search (wire.md §2: `^[a-zA-Z0-9_.@:\-]+$`).
pub fn is_safe_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@:-".contains(&b))
}

impl Api {
    /// Creates a session (phase empty) for `caller`, in the request's project
    /// or else in `scope` (the caller's project, wire.md §2). A non-empty
    /// prompt is also stored as the session's first `user` message.
    pub async fn create_session(
        &self,
        caller: &Caller,
        req: CreateSessionRequest,
        scope: Option<String>,
        agent_id: Option<String>,
    ) -> Result<Session, ApiError> {
        let name = required("name", Some(req.name))?;
        let created_by = caller.0.clone();
        let project_id = req.project_id.filter(|p| !p.is_empty()).or(scope);
        let labels = labels::normalize("labels", req.labels)?;
        let annotations = labels::normalize("annotations", req.annotations)?;
        self.store
            .write(move |tx| {
                let id = new_id()?;
                let session = Session {
                    metadata: Some(object_ref(Session::KIND, "sessions", &id, now())),
                    name,
                    repo_url: req.repo_url,
                    prompt: req.prompt,
                    created_by_user_id: Some(created_by),
                    assigned_user_id: req.assigned_user_id,
                    workflow_id: req.workflow_id,
                    repos: req.repos,
                    timeout: req.timeout,
                    llm_model: req.llm_model,
                    llm_temperature: req.llm_temperature,
                    llm_max_tokens: req.llm_max_tokens,
                    parent_session_id: req.parent_session_id,
                    bot_account_name: req.bot_account_name,
                    resource_overrides: req.resource_overrides,
                    environment_variables: req.environment_variables,
                    labels,
                    annotations,
                    project_id,
                    agent_id,
                    ..Session::default()
                };
                tx.put(&session)?;
                tx.publish(resource_event(
                    EventType::Created,
                    Resource::Session(Box::new(session.clone())),
                ));
                if let Some(prompt) = session.prompt.as_deref().filter(|p| !p.is_empty()) {
                    tx.append_message(&id, "user", prompt)?;
                }
                Ok(session)
            })
            .await
    }

    /// A session by ID.
    pub async fn get_session(&self, id: &str) -> Result<Session, ApiError> {
        self.get(id).await
    }

    /// Lists sessions, only those of project `scope` when given; a `phase`
    /// compared with `=` or `in` must be one of the seven phases (or empty).
    pub async fn list_sessions(
        &self,
        query: &ListQuery,
        scope: Option<&str>,
    ) -> Result<Page<Session>, ApiError> {
        if let Some(filter) = query.filter::<Session>()? {
            for (field, op, value) in filter.comparisons() {
                if field == "phase" && op == Op::Eq && !value.is_empty() {
                    Phase::parse(value).map_err(|e| ApiError::invalid(e.to_string()))?;
                }
            }
        }
        self.list(query, scope.map(|p| Expr::eq("project_id", p)))
            .await
    }

    /// Updates the writable fields given; `labels`/`annotations` replace the
    /// stored value.
    pub async fn update_session(&self, req: UpdateSessionRequest) -> Result<Session, ApiError> {
        self.store
            .write(move |tx| {
                let mut s: Session = existing::<Session>(tx, &req.id)?;
                rename(&mut s.name, "name", req.name)?;
                set(&mut s.repo_url, req.repo_url);
                set(&mut s.prompt, req.prompt);
                set(&mut s.assigned_user_id, req.assigned_user_id);
                set(&mut s.workflow_id, req.workflow_id);
                set(&mut s.repos, req.repos);
                set(&mut s.timeout, req.timeout);
                set(&mut s.llm_model, req.llm_model);
                set(&mut s.llm_temperature, req.llm_temperature);
                set(&mut s.llm_max_tokens, req.llm_max_tokens);
                set(&mut s.parent_session_id, req.parent_session_id);
                set(&mut s.bot_account_name, req.bot_account_name);
                set(&mut s.resource_overrides, req.resource_overrides);
                set(&mut s.environment_variables, req.environment_variables);
                replace_json_object(&mut s.labels, "labels", req.labels)?;
                replace_json_object(&mut s.annotations, "annotations", req.annotations)?;
                set(&mut s.project_id, req.project_id);
                touch(&mut s.metadata);
                tx.put(&s)?;
                tx.publish(resource_event(
                    EventType::Updated,
                    Resource::Session(Box::new(s.clone())),
                ));
                Ok(s)
            })
            .await
    }

    /// Updates the status subset. At least one field must be given; a phase
    /// must be one of the seven.
    pub async fn update_session_status(
        &self,
        req: UpdateSessionStatusRequest,
    ) -> Result<Session, ApiError> {
        let any = req.phase.is_some()
            || req.start_time.is_some()
            || req.completion_time.is_some()
            || req.sdk_session_id.is_some()
            || req.sdk_restart_count.is_some()
            || req.conditions.is_some()
            || req.reconciled_repos.is_some()
            || req.reconciled_workflow.is_some()
            || req.kube_cr_uid.is_some()
            || req.kube_namespace.is_some();
        if !any {
            return Err(ApiError::invalid(
                "a status update needs at least one field",
            ));
        }
        if let Some(p) = req.phase.as_deref() {
            Phase::parse(p).map_err(|e| ApiError::invalid(e.to_string()))?;
        }
        self.store
            .write(move |tx| {
                let mut s: Session = existing::<Session>(tx, &req.id)?;
                set(&mut s.phase, req.phase);
                set(&mut s.start_time, req.start_time);
                set(&mut s.completion_time, req.completion_time);
                set(&mut s.sdk_session_id, req.sdk_session_id);
                set(&mut s.sdk_restart_count, req.sdk_restart_count);
                set(&mut s.conditions, req.conditions);
                set(&mut s.reconciled_repos, req.reconciled_repos);
                set(&mut s.reconciled_workflow, req.reconciled_workflow);
                set(&mut s.kube_cr_uid, req.kube_cr_uid);
                set(&mut s.kube_namespace, req.kube_namespace);
                touch(&mut s.metadata);
                tx.put(&s)?;
                tx.publish(resource_event(
                    EventType::Updated,
                    Resource::Session(Box::new(s.clone())),
                ));
                Ok(s)
            })
            .await
    }

    /// Moves a session from phase empty/`Stopped`/`Failed`/`Completed` to
    /// `Pending` (`/start`); any other phase is a conflict.
    pub async fn start_session(&self, id: &str) -> Result<Session, ApiError> {
        self.transition(id, "start", Phase::Pending, |phase| {
            matches!(phase, None | Some(""))
                || phase
                    .and_then(|p| Phase::parse(p).ok())
                    .is_some_and(Phase::is_terminal)
        })
        .await
    }

    /// Moves a session from `Pending`/`Creating`/`Running` to `Stopping`
    /// (`/stop`); any other phase is a conflict.
    pub async fn stop_session(&self, id: &str) -> Result<Session, ApiError> {
        self.transition(id, "stop", Phase::Stopping, |phase| {
            matches!(phase, Some("Pending" | "Creating" | "Running"))
        })
        .await
    }

    async fn transition(
        &self,
        id: &str,
        verb: &'static str,
        to: Phase,
        allowed: fn(Option<&str>) -> bool,
    ) -> Result<Session, ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let mut s: Session = existing::<Session>(tx, &id)?;
                if !allowed(s.phase.as_deref()) {
                    return Err(ApiError::Conflict(format!(
                        "cannot {verb} session {id:?} in phase {:?}",
                        s.phase.as_deref().unwrap_or("")
                    )));
                }
                s.phase = Some(to.as_str().to_owned());
                touch(&mut s.metadata);
                tx.put(&s)?;
                tx.publish(resource_event(
                    EventType::Updated,
                    Resource::Session(Box::new(s.clone())),
                ));
                Ok(s)
            })
            .await
    }

    /// Deletes a session and its messages.
    pub async fn delete_session(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let s: Session = existing::<Session>(tx, &id)?;
                tx.delete::<Session>(&id)?;
                tx.delete_messages(&id)?;
                tx.publish(resource_event(
                    EventType::Deleted,
                    Resource::Session(Box::new(s)),
                ));
                Ok(())
            })
            .await
    }
}
