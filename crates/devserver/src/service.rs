//! The operations both wires share: validation, phase transitions, merge
//! patches, pagination, watches. REST and gRPC are thin translations onto
//! [`Api`], so they cannot disagree.

use ambient_protocol::Secret;
use ambient_protocol::phase::Phase;
use ambient_protocol::provider::Provider;
use ambient_protocol::v1::{
    CreateProjectRequest, CreateProjectSettingsRequest, CreateSessionRequest, EventType,
    ObjectReference, Project, ProjectSettings, Session, SessionMessage, UpdateProjectRequest,
    UpdateProjectSettingsRequest, UpdateSessionRequest, UpdateSessionStatusRequest,
};
use futures::Stream;
use prost_types::Timestamp;
use tokio::sync::{broadcast, watch};

use crate::error::ApiError;
use crate::events::{Event, Resource, ResourceEvent};
use crate::ids::new_id;
use crate::labels;
use crate::model::{Agent, AgentFields, Credential, CredentialFields, ProjectRecord};
use crate::search::{self, Clause, Op};
use crate::store::{Store, Stored};
use crate::time::now;

/// REST path prefix; `href`s are built on it.
pub const API_PREFIX: &str = "/api/ambient/v1";
/// Page size when none (or a non-positive one) is asked for.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// Largest page size served.
pub const MAX_PAGE_SIZE: i64 = 10_000;
/// Messages read from the database per replay batch.
const REPLAY_BATCH: i64 = 500;

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Page number, from 1.
    pub page: i32,
    /// Number of items on this page.
    pub size: i32,
    /// Number of matching items over all pages.
    pub total: i32,
}

impl<T> Page<T> {
    /// Maps the items, keeping the counts.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            page: self.page,
            size: self.size,
            total: self.total,
        }
    }
}

/// What to list: page (from 1), size, and an optional `search` string.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Page number (from 1; values below 1 mean 1).
    pub page: Option<i64>,
    /// Page size (values below 1 mean [`DEFAULT_PAGE_SIZE`]; capped at [`MAX_PAGE_SIZE`]).
    pub size: Option<i64>,
    /// The `search` filter (wire.md §2).
    pub search: Option<String>,
}

impl ListQuery {
    /// A page/size query without search (the gRPC `List*` requests).
    pub fn page(page: i32, size: i32) -> Self {
        Self {
            page: Some(page.into()),
            size: Some(size.into()),
            search: None,
        }
    }

    fn bounds(&self) -> (i64, i64) {
        let page = self.page.unwrap_or(1).clamp(1, i64::from(i32::MAX));
        let size = match self.size {
            Some(s) if s >= 1 => s.min(MAX_PAGE_SIZE),
            _ => DEFAULT_PAGE_SIZE,
        };
        (page, size)
    }

    fn clauses<R: Stored>(&self) -> Result<Vec<Clause>, ApiError> {
        search::parse(self.search.as_deref().unwrap_or(""), R::SEARCH_FIELDS)
            .map_err(|e| ApiError::invalid(e.to_string()))
    }
}

fn object_ref(kind: &str, collection: &str, id: &str, at: Timestamp) -> ObjectReference {
    ObjectReference {
        id: id.to_owned(),
        created_at: Some(at),
        updated_at: Some(at),
        kind: kind.to_owned(),
        href: format!("{API_PREFIX}/{collection}/{id}"),
    }
}

fn touch(meta: &mut Option<ObjectReference>) {
    if let Some(m) = meta.as_mut() {
        m.updated_at = Some(now());
    }
}

fn set<T>(dst: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *dst = value;
    }
}

fn required(field: &str, value: Option<String>) -> Result<String, ApiError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ApiError::invalid(format!("{field} is required"))),
    }
}

fn rename(dst: &mut String, field: &str, value: Option<String>) -> Result<(), ApiError> {
    if let Some(v) = value {
        *dst = required(field, Some(v))?;
    }
    Ok(())
}

fn merge_into(
    dst: &mut Option<String>,
    field: &str,
    patch: Option<String>,
) -> Result<(), ApiError> {
    if let Some(p) = patch {
        *dst = labels::merge(field, dst.as_deref(), &p)?;
    }
    Ok(())
}

fn resource_event(event_type: EventType, resource: Resource) -> Event {
    Event::Resource(ResourceEvent {
        event_type,
        resource,
    })
}

/// Waits until the shutdown flag is raised (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The shared operations over one [`Store`].
#[derive(Debug, Clone)]
pub struct Api {
    store: Store,
    shutdown: watch::Receiver<bool>,
}

impl Api {
    /// Operations over `store`; open watches end when `shutdown` becomes true.
    pub fn new(store: Store, shutdown: watch::Receiver<bool>) -> Self {
        Self { store, shutdown }
    }

    async fn get<R: Stored>(&self, id: &str) -> Result<R, ApiError> {
        let id = id.to_owned();
        self.store.read(move |tx| existing::<R>(tx, &id)).await
    }

    async fn list<R: Stored>(
        &self,
        query: &ListQuery,
        mut clauses: Vec<Clause>,
    ) -> Result<Page<R>, ApiError> {
        clauses.extend(query.clauses::<R>()?);
        let (page, size) = query.bounds();
        let offset = (page - 1).saturating_mul(size);
        let (items, total) = self
            .store
            .read(move |tx| Ok(tx.list::<R>(&clauses, offset, size)?))
            .await?;
        Ok(Page {
            page: i32::try_from(page).unwrap_or(i32::MAX),
            size: i32::try_from(items.len()).unwrap_or(i32::MAX),
            total: i32::try_from(total).unwrap_or(i32::MAX),
            items,
        })
    }

    // ----- sessions -------------------------------------------------------

    /// Creates a session (phase empty). A non-empty prompt is also stored as
    /// the session's first `user` message.
    pub async fn create_session(
        &self,
        req: CreateSessionRequest,
        agent_id: Option<String>,
    ) -> Result<Session, ApiError> {
        let name = required("name", Some(req.name))?;
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
                    created_by_user_id: req.created_by_user_id,
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
                    project_id: req.project_id,
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

    /// Lists sessions; `search` may name `id`, `name`, `project_id`, `phase`,
    /// `agent_id`; `phase = '...'` must be one of the seven phases (or empty).
    pub async fn list_sessions(&self, query: &ListQuery) -> Result<Page<Session>, ApiError> {
        for clause in query.clauses::<Session>()? {
            if clause.field == "phase" && clause.op == Op::Eq && !clause.value.is_empty() {
                Phase::parse(&clause.value).map_err(|e| ApiError::invalid(e.to_string()))?;
            }
        }
        self.list(query, Vec::new()).await
    }

    /// Updates the writable fields given; `labels`/`annotations` are merge patches.
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
                merge_into(&mut s.labels, "labels", req.labels)?;
                merge_into(&mut s.annotations, "annotations", req.annotations)?;
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

    // ----- session messages -----------------------------------------------

    /// Appends a message to a session; its `seq` is the session's next one.
    pub async fn push_message(
        &self,
        session_id: &str,
        event_type: String,
        payload: String,
    ) -> Result<SessionMessage, ApiError> {
        let event_type = required("event_type", Some(event_type))?;
        let session_id = session_id.to_owned();
        self.store
            .write(move |tx| {
                if tx.get::<Session>(&session_id)?.is_none() {
                    return Err(ApiError::not_found(Session::KIND, session_id));
                }
                Ok(tx.append_message(&session_id, &event_type, &payload)?)
            })
            .await
    }

    /// Every message of a session with `seq > after_seq`.
    pub async fn list_messages(
        &self,
        session_id: &str,
        after_seq: i64,
    ) -> Result<Vec<SessionMessage>, ApiError> {
        let session_id = session_id.to_owned();
        self.store
            .read(move |tx| {
                if tx.get::<Session>(&session_id)?.is_none() {
                    return Err(ApiError::not_found(Session::KIND, session_id));
                }
                Ok(tx.messages_after(&session_id, after_seq, i64::MAX)?)
            })
            .await
    }

    /// The messages of a session with `seq > after_seq`, then every new one,
    /// in `seq` order with no gap and no duplicate.
    ///
    /// The hub is subscribed *before* the database is read, so a message
    /// committed after the replay read is necessarily on the live channel;
    /// live messages with `seq` at or below the last one sent are skipped. A
    /// watcher that falls behind the live buffer re-subscribes and replays
    /// from the database, so it never loses a message. The stream ends when
    /// the session is deleted and on shutdown.
    pub async fn watch_messages(
        &self,
        session_id: &str,
        after_seq: i64,
    ) -> Result<impl Stream<Item = Result<SessionMessage, ApiError>> + Send + 'static, ApiError>
    {
        enum Next {
            Message(Result<SessionMessage, broadcast::error::RecvError>),
            Change(Result<ResourceEvent, broadcast::error::RecvError>),
            Stop,
        }
        let hub = self.store.hub().clone();
        let mut live = hub.subscribe_messages();
        let mut changes = hub.subscribe_resources();
        self.get_session(session_id).await?;
        let api = self.clone();
        let session_id = session_id.to_owned();
        let mut shutdown = self.shutdown.clone();
        let is_deletion = move |ev: &ResourceEvent, id: &str| {
            ev.event_type == EventType::Deleted
                && matches!(&ev.resource, Resource::Session(s) if s.id() == id)
        };
        Ok(async_stream::try_stream! {
            let mut last = after_seq;
            'resubscribe: loop {
                // Replay what is stored after `last`, in batches.
                loop {
                    let sid = session_id.clone();
                    let batch = api
                        .store
                        .read(move |tx| Ok(tx.messages_after(&sid, last, REPLAY_BATCH)?))
                        .await?;
                    let n = batch.len();
                    for m in batch {
                        last = m.seq;
                        yield m;
                    }
                    if i64::try_from(n).unwrap_or(0) < REPLAY_BATCH {
                        break;
                    }
                }
                // Then live.
                loop {
                    let next = tokio::select! {
                        r = live.recv() => Next::Message(r),
                        r = changes.recv() => Next::Change(r),
                        () = stopped(&mut shutdown) => Next::Stop,
                    };
                    match next {
                        Next::Stop
                        | Next::Message(Err(broadcast::error::RecvError::Closed))
                        | Next::Change(Err(broadcast::error::RecvError::Closed)) => break 'resubscribe,
                        Next::Message(Err(broadcast::error::RecvError::Lagged(_))) => {
                            live = hub.subscribe_messages();
                            continue 'resubscribe;
                        }
                        Next::Message(Ok(m)) => {
                            if m.session_id == session_id && m.seq > last {
                                last = m.seq;
                                yield m;
                            }
                        }
                        Next::Change(Ok(ev)) => {
                            if is_deletion(&ev, &session_id) {
                                // Messages committed before the deletion are
                                // already on the live channel: send them first.
                                while let Ok(m) = live.try_recv() {
                                    if m.session_id == session_id && m.seq > last {
                                        last = m.seq;
                                        yield m;
                                    }
                                }
                                break 'resubscribe;
                            }
                        }
                        Next::Change(Err(broadcast::error::RecvError::Lagged(_))) => {
                            changes = hub.subscribe_resources();
                            let sid = session_id.clone();
                            let exists = api
                                .store
                                .read(move |tx| Ok(tx.get::<Session>(&sid)?.is_some()))
                                .await?;
                            if !exists {
                                break 'resubscribe;
                            }
                        }
                    }
                }
            }
        })
    }

    /// Every resource change from now on. A watcher that falls behind the
    /// bounded buffer gets [`ApiError::Lagged`] and the stream ends; the
    /// stream also ends on shutdown. Subscribes before returning.
    pub fn watch_resources(
        &self,
    ) -> impl Stream<Item = Result<ResourceEvent, ApiError>> + Send + 'static {
        let mut rx = self.store.hub().subscribe_resources();
        let mut shutdown = self.shutdown.clone();
        async_stream::try_stream! {
            loop {
                let next = tokio::select! {
                    r = rx.recv() => Some(r),
                    () = stopped(&mut shutdown) => None,
                };
                match next {
                    None | Some(Err(broadcast::error::RecvError::Closed)) => break,
                    Some(Err(broadcast::error::RecvError::Lagged(_))) => Err(ApiError::Lagged)?,
                    Some(Ok(event)) => yield event,
                }
            }
        }
    }

    // ----- projects -------------------------------------------------------

    /// Creates a project (`name` required).
    pub async fn create_project(
        &self,
        req: CreateProjectRequest,
        prompt: Option<String>,
    ) -> Result<ProjectRecord, ApiError> {
        let name = required("name", Some(req.name))?;
        let labels = labels::normalize("labels", req.labels)?;
        let annotations = labels::normalize("annotations", req.annotations)?;
        self.store
            .write(move |tx| {
                let id = new_id()?;
                let record = ProjectRecord {
                    project: Some(Project {
                        metadata: Some(object_ref(ProjectRecord::KIND, "projects", &id, now())),
                        name,
                        display_name: req.display_name,
                        description: req.description,
                        labels,
                        annotations,
                        status: None,
                    }),
                    prompt,
                };
                tx.put(&record)?;
                tx.publish(resource_event(
                    EventType::Created,
                    Resource::Project(Box::new(record.project.clone().unwrap_or_default())),
                ));
                Ok(record)
            })
            .await
    }

    /// A project by ID.
    pub async fn get_project(&self, id: &str) -> Result<ProjectRecord, ApiError> {
        self.get(id).await
    }

    /// Lists projects (`search` on `id`, `name`).
    pub async fn list_projects(&self, query: &ListQuery) -> Result<Page<ProjectRecord>, ApiError> {
        self.list(query, Vec::new()).await
    }

    /// Updates the fields given; `labels`/`annotations` are merge patches.
    pub async fn update_project(
        &self,
        req: UpdateProjectRequest,
        prompt: Option<String>,
    ) -> Result<ProjectRecord, ApiError> {
        self.store
            .write(move |tx| {
                let mut record: ProjectRecord = existing::<ProjectRecord>(tx, &req.id)?;
                let p = record.project.get_or_insert_with(Project::default);
                rename(&mut p.name, "name", req.name)?;
                set(&mut p.display_name, req.display_name);
                set(&mut p.description, req.description);
                merge_into(&mut p.labels, "labels", req.labels)?;
                merge_into(&mut p.annotations, "annotations", req.annotations)?;
                set(&mut p.status, req.status);
                touch(&mut p.metadata);
                let project = p.clone();
                set(&mut record.prompt, prompt);
                tx.put(&record)?;
                tx.publish(resource_event(
                    EventType::Updated,
                    Resource::Project(Box::new(project)),
                ));
                Ok(record)
            })
            .await
    }

    /// Deletes a project.
    pub async fn delete_project(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let record: ProjectRecord = existing::<ProjectRecord>(tx, &id)?;
                tx.delete::<ProjectRecord>(&id)?;
                tx.publish(resource_event(
                    EventType::Deleted,
                    Resource::Project(Box::new(record.project.unwrap_or_default())),
                ));
                Ok(())
            })
            .await
    }

    // ----- project settings -----------------------------------------------

    /// Creates project settings (`project_id` required).
    pub async fn create_project_settings(
        &self,
        req: CreateProjectSettingsRequest,
    ) -> Result<ProjectSettings, ApiError> {
        let project_id = required("project_id", Some(req.project_id))?;
        self.store
            .write(move |tx| {
                let id = new_id()?;
                let settings = ProjectSettings {
                    metadata: Some(object_ref(
                        ProjectSettings::KIND,
                        "project_settings",
                        &id,
                        now(),
                    )),
                    project_id,
                    group_access: req.group_access,
                    repositories: req.repositories,
                };
                tx.put(&settings)?;
                tx.publish(resource_event(
                    EventType::Created,
                    Resource::ProjectSettings(Box::new(settings.clone())),
                ));
                Ok(settings)
            })
            .await
    }

    /// Project settings by ID.
    pub async fn get_project_settings(&self, id: &str) -> Result<ProjectSettings, ApiError> {
        self.get(id).await
    }

    /// Lists project settings.
    pub async fn list_project_settings(
        &self,
        query: &ListQuery,
    ) -> Result<Page<ProjectSettings>, ApiError> {
        self.list(query, Vec::new()).await
    }

    /// Updates the fields given.
    pub async fn update_project_settings(
        &self,
        req: UpdateProjectSettingsRequest,
    ) -> Result<ProjectSettings, ApiError> {
        self.store
            .write(move |tx| {
                let mut s: ProjectSettings = existing::<ProjectSettings>(tx, &req.id)?;
                rename(&mut s.project_id, "project_id", req.project_id)?;
                set(&mut s.group_access, req.group_access);
                set(&mut s.repositories, req.repositories);
                touch(&mut s.metadata);
                tx.put(&s)?;
                tx.publish(resource_event(
                    EventType::Updated,
                    Resource::ProjectSettings(Box::new(s.clone())),
                ));
                Ok(s)
            })
            .await
    }

    /// Deletes project settings.
    pub async fn delete_project_settings(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let s: ProjectSettings = existing::<ProjectSettings>(tx, &id)?;
                tx.delete::<ProjectSettings>(&id)?;
                tx.publish(resource_event(
                    EventType::Deleted,
                    Resource::ProjectSettings(Box::new(s)),
                ));
                Ok(())
            })
            .await
    }

    // ----- agents ---------------------------------------------------------

    /// Creates an agent in project `project_id` (`name` required; a body
    /// `project_id`, if given, must match).
    pub async fn create_agent(&self, project_id: &str, f: AgentFields) -> Result<Agent, ApiError> {
        check_project_id(project_id, f.project_id.as_deref())?;
        let name = required("name", f.name)?;
        let labels = labels::normalize("labels", f.labels)?;
        let annotations = labels::normalize("annotations", f.annotations)?;
        let project_id = project_id.to_owned();
        self.store
            .write(move |tx| {
                let at = now();
                let agent = Agent {
                    id: new_id()?,
                    created_at: at,
                    updated_at: at,
                    project_id,
                    name,
                    display_name: f.display_name,
                    description: f.description,
                    prompt: f.prompt,
                    repo_url: f.repo_url,
                    llm_model: f.llm_model,
                    llm_temperature: f.llm_temperature,
                    llm_max_tokens: f.llm_max_tokens,
                    labels,
                    annotations,
                };
                tx.put(&agent)?;
                Ok(agent)
            })
            .await
    }

    /// An agent of a project.
    pub async fn get_agent(&self, project_id: &str, id: &str) -> Result<Agent, ApiError> {
        let agent: Agent = self.get(id).await?;
        if agent.project_id != project_id {
            return Err(ApiError::not_found(Agent::KIND, id));
        }
        Ok(agent)
    }

    /// Lists a project's agents (`search` on `id`, `name`, `project_id`).
    pub async fn list_agents(
        &self,
        project_id: &str,
        query: &ListQuery,
    ) -> Result<Page<Agent>, ApiError> {
        let scope = Clause {
            field: "project_id".into(),
            op: Op::Eq,
            value: project_id.to_owned(),
        };
        self.list(query, vec![scope]).await
    }

    /// Updates the fields given; `labels`/`annotations` are merge patches.
    pub async fn update_agent(
        &self,
        project_id: &str,
        id: &str,
        f: AgentFields,
    ) -> Result<Agent, ApiError> {
        check_project_id(project_id, f.project_id.as_deref())?;
        let (project_id, id) = (project_id.to_owned(), id.to_owned());
        self.store
            .write(move |tx| {
                let mut a: Agent = tx
                    .get(&id)?
                    .filter(|a: &Agent| a.project_id == project_id)
                    .ok_or_else(|| ApiError::not_found(Agent::KIND, &id))?;
                rename(&mut a.name, "name", f.name)?;
                set(&mut a.display_name, f.display_name);
                set(&mut a.description, f.description);
                set(&mut a.prompt, f.prompt);
                set(&mut a.repo_url, f.repo_url);
                set(&mut a.llm_model, f.llm_model);
                set(&mut a.llm_temperature, f.llm_temperature);
                set(&mut a.llm_max_tokens, f.llm_max_tokens);
                merge_into(&mut a.labels, "labels", f.labels)?;
                merge_into(&mut a.annotations, "annotations", f.annotations)?;
                a.updated_at = now();
                tx.put(&a)?;
                Ok(a)
            })
            .await
    }

    /// Deletes an agent of a project.
    pub async fn delete_agent(&self, project_id: &str, id: &str) -> Result<(), ApiError> {
        let (project_id, id) = (project_id.to_owned(), id.to_owned());
        self.store
            .write(move |tx| {
                tx.get::<Agent>(&id)?
                    .filter(|a| a.project_id == project_id)
                    .ok_or_else(|| ApiError::not_found(Agent::KIND, &id))?;
                tx.delete::<Agent>(&id)?;
                Ok(())
            })
            .await
    }

    // ----- credentials ----------------------------------------------------

    /// Creates a credential (`name` and a known `provider` required).
    pub async fn create_credential(&self, f: CredentialFields) -> Result<Credential, ApiError> {
        let name = required("name", f.name)?;
        let provider = check_provider(required("provider", f.provider)?)?;
        let labels = labels::normalize("labels", f.labels)?;
        let annotations = labels::normalize("annotations", f.annotations)?;
        self.store
            .write(move |tx| {
                let at = now();
                let credential = Credential {
                    id: new_id()?,
                    created_at: at,
                    updated_at: at,
                    name,
                    provider,
                    url: f.url,
                    email: f.email,
                    description: f.description,
                    labels,
                    annotations,
                    token: f.token.unwrap_or_default(),
                };
                tx.put(&credential)?;
                Ok(credential)
            })
            .await
    }

    /// A credential (its token is only in [`Credential::token`], never serialised).
    pub async fn get_credential(&self, id: &str) -> Result<Credential, ApiError> {
        self.get(id).await
    }

    /// Lists credentials (`search` on `id`, `name`, `provider`).
    pub async fn list_credentials(&self, query: &ListQuery) -> Result<Page<Credential>, ApiError> {
        self.list(query, Vec::new()).await
    }

    /// Updates the fields given (a new `token` rotates the secret).
    pub async fn update_credential(
        &self,
        id: &str,
        f: CredentialFields,
    ) -> Result<Credential, ApiError> {
        let provider = f.provider.map(check_provider).transpose()?;
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let mut c: Credential = existing::<Credential>(tx, &id)?;
                rename(&mut c.name, "name", f.name)?;
                if let Some(p) = provider {
                    c.provider = p;
                }
                if let Some(t) = f.token {
                    c.token = t;
                }
                set(&mut c.url, f.url);
                set(&mut c.email, f.email);
                set(&mut c.description, f.description);
                merge_into(&mut c.labels, "labels", f.labels)?;
                merge_into(&mut c.annotations, "annotations", f.annotations)?;
                c.updated_at = now();
                tx.put(&c)?;
                Ok(c)
            })
            .await
    }

    /// Deletes a credential.
    pub async fn delete_credential(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                if !tx.delete::<Credential>(&id)? {
                    return Err(ApiError::not_found(Credential::KIND, id));
                }
                Ok(())
            })
            .await
    }

    /// The token of a credential, with its provider.
    pub async fn credential_token(&self, id: &str) -> Result<(String, Secret), ApiError> {
        let c = self.get_credential(id).await?;
        Ok((c.provider, c.token))
    }
}

fn check_project_id(path: &str, body: Option<&str>) -> Result<(), ApiError> {
    match body {
        Some(b) if b != path => Err(ApiError::invalid(format!(
            "project_id {b:?} does not match the project in the path"
        ))),
        _ => Ok(()),
    }
}

fn check_provider(p: String) -> Result<String, ApiError> {
    Provider::parse(&p)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| ApiError::invalid(e.to_string()))
}

/// The stored `R` with `id`, or NOT_FOUND.
fn existing<R: Stored>(tx: &crate::store::Tx<'_>, id: &str) -> Result<R, ApiError> {
    tx.get::<R>(id)?
        .ok_or_else(|| ApiError::not_found(R::KIND, id))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::events::Hub;

    fn api(capacity: usize) -> (Api, watch::Sender<bool>) {
        let store =
            Store::open(None, Hub::with_capacity(capacity)).unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = watch::channel(false);
        (Api::new(store, rx), tx)
    }

    async fn session(api: &Api) -> String {
        let s = api
            .create_session(
                CreateSessionRequest {
                    name: "s".into(),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.id().to_owned()
    }

    #[tokio::test]
    async fn a_lagging_message_watcher_recovers_from_the_database() {
        let (api, stop) = api(2);
        let id = session(&api).await;
        let stream = api
            .watch_messages(&id, 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Not polled yet: these overflow the live buffer of 2.
        for i in 0..10 {
            api.push_message(&id, "user".into(), format!("m{i}"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut stream = std::pin::pin!(stream);
        let mut seqs = Vec::new();
        while seqs.len() < 10 {
            match stream.next().await {
                Some(Ok(m)) => seqs.push(m.seq),
                other => panic!("unexpected {other:?}"),
            }
        }
        // More pushes after the replay, beyond the buffer again.
        for i in 10..15 {
            api.push_message(&id, "user".into(), format!("m{i}"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        while seqs.len() < 15 {
            match stream.next().await {
                Some(Ok(m)) => seqs.push(m.seq),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seqs, (1..=15).collect::<Vec<i64>>());
        let _ = stop.send(true);
        assert!(stream.next().await.is_none(), "shutdown ends the stream");
    }

    #[tokio::test]
    async fn a_lagging_resource_watcher_is_told_and_cut_off() {
        let (api, _stop) = api(2);
        let stream = api.watch_resources();
        for _ in 0..5 {
            session(&api).await;
        }
        let items: Vec<_> = stream.collect::<Vec<_>>().await;
        assert!(
            matches!(items.last(), Some(Err(ApiError::Lagged))),
            "expected the stream to end with Lagged, got {items:?}"
        );
    }

    #[tokio::test]
    async fn phase_transitions() {
        let (api, _stop) = api(16);
        let id = session(&api).await;
        assert!(matches!(
            api.stop_session(&id).await,
            Err(ApiError::Conflict(_))
        ));
        let s = api
            .start_session(&id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert!(matches!(
            api.start_session(&id).await,
            Err(ApiError::Conflict(_))
        ));
        for (phase, startable, stoppable) in [
            ("Creating", false, true),
            ("Running", false, true),
            ("Stopping", false, false),
            ("Stopped", true, false),
            ("Completed", true, false),
            ("Failed", true, false),
        ] {
            api.update_session_status(UpdateSessionStatusRequest {
                id: id.clone(),
                phase: Some(phase.into()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            let started = api.start_session(&id).await;
            assert_eq!(started.is_ok(), startable, "start from {phase}");
            if started.is_ok() {
                // Back to the phase under test.
                api.update_session_status(UpdateSessionStatusRequest {
                    id: id.clone(),
                    phase: Some(phase.into()),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            }
            assert_eq!(
                api.stop_session(&id).await.is_ok(),
                stoppable,
                "stop from {phase}"
            );
        }
    }
}
