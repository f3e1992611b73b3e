//! A FAKE `ambient.v1` API server for tests — not the devserver, not the
//! reference. In this process, on a loopback port, so a test can script what
//! a busy API server does between two calls of the control plane:
//! - sessions, projects and project settings kept in creation order and
//!   listed with offset paging (`page`, `size`, capped by `page_cap`), like
//!   the reference and the devserver;
//! - watches that deliver every change after they open (DELETED events
//!   carry only `resource_id`);
//! - hooks run after a given list page is served (to change things between
//!   pages), and calls that hang (never answer) per method.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use ambient_protocol::v1::project_service_server::{ProjectService, ProjectServiceServer};
use ambient_protocol::v1::project_settings_service_server::{
    ProjectSettingsService, ProjectSettingsServiceServer,
};
use ambient_protocol::v1::session_service_server::{SessionService, SessionServiceServer};
use ambient_protocol::v1::*;
use futures::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type Hook = Box<dyn FnOnce(&FakeApi) + Send>;

#[derive(Default)]
struct State {
    sessions: Vec<Session>,
    projects: Vec<Project>,
    settings: Vec<ProjectSettings>,
    clock: i64,
    page_cap: usize,
    /// A session list's `total`, whatever the list holds (a lying server).
    sessions_total: Option<i32>,
    /// (kind, page) → run after that page is served.
    after_page: Vec<(&'static str, i32, Hook)>,
    /// method → how many of the next calls hang.
    hang: HashMap<&'static str, u32>,
    /// method names in call order.
    calls: Vec<&'static str>,
}

/// The fake API server. Cheap to clone.
#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    sessions_tx: broadcast::Sender<SessionWatchEvent>,
    projects_tx: broadcast::Sender<ProjectWatchEvent>,
    settings_tx: broadcast::Sender<ProjectSettingsWatchEvent>,
}

fn meta(id: &str, clock: i64) -> Option<ObjectReference> {
    Some(ObjectReference {
        id: id.into(),
        created_at: Some(prost_types::Timestamp {
            seconds: clock,
            nanos: 0,
        }),
        updated_at: Some(prost_types::Timestamp {
            seconds: clock,
            nanos: 0,
        }),
        ..ObjectReference::default()
    })
}

fn touch(m: &mut Option<ObjectReference>, clock: i64) {
    if let Some(m) = m {
        m.updated_at = Some(prost_types::Timestamp {
            seconds: clock,
            nanos: 0,
        });
    }
}

fn id_of(m: &Option<ObjectReference>) -> &str {
    m.as_ref().map(|m| m.id.as_str()).unwrap_or_default()
}

fn page_of<T: Clone>(items: &[T], page: i32, size: i32, cap: usize) -> (Vec<T>, i32) {
    let size = usize::try_from(size.max(1)).unwrap_or(1).min(cap.max(1));
    let page = usize::try_from(page.max(1)).unwrap_or(1);
    let start = (page - 1) * size;
    let out = items.iter().skip(start).take(size).cloned().collect();
    (out, i32::try_from(items.len()).unwrap_or(i32::MAX))
}

fn watch_stream<E: Clone + Send + 'static>(rx: broadcast::Receiver<E>) -> BoxStream<E> {
    use futures::StreamExt;
    Box::pin(
        tokio_stream::wrappers::BroadcastStream::new(rx)
            .filter_map(|e| async move { e.ok().map(Ok) }),
    )
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let api = FakeApi {
            addr,
            state: Arc::new(Mutex::new(State {
                page_cap: 500,
                sessions_total: None,
                ..State::default()
            })),
            sessions_tx: broadcast::channel(1024).0,
            projects_tx: broadcast::channel(1024).0,
            settings_tx: broadcast::channel(1024).0,
        };
        let router = tonic::transport::Server::builder()
            .add_service(SessionServiceServer::new(api.clone()))
            .add_service(ProjectServiceServer::new(api.clone()))
            .add_service(ProjectSettingsServiceServer::new(api.clone()));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            let _ = router.serve_with_incoming(incoming).await;
        });
        api
    }

    /// The gRPC address (`host:port`).
    pub fn grpc(&self) -> String {
        self.addr.to_string()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pages never hold more than `cap` objects.
    pub fn set_page_cap(&self, cap: usize) {
        self.lock().page_cap = cap;
    }

    /// Every session list page reports `total`, whatever the list holds.
    pub fn set_sessions_total(&self, total: i32) {
        self.lock().sessions_total = Some(total);
    }

    /// Runs `hook` right after page `page` of `kind` (`session`, `project`,
    /// `project_settings`) is served next (hooks for one page run one per
    /// serve, in the order they were added).
    pub fn after_page(
        &self,
        kind: &'static str,
        page: i32,
        hook: impl FnOnce(&FakeApi) + Send + 'static,
    ) {
        self.lock().after_page.push((kind, page, Box::new(hook)));
    }

    /// The next `n` calls of `method` (e.g. `GetSession`) never answer.
    pub fn hang_next(&self, method: &'static str, n: u32) {
        *self.lock().hang.entry(method).or_default() += n;
    }

    /// Every call made, by method name, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        self.lock().calls.clone()
    }

    async fn enter(&self, method: &'static str) {
        let hang = {
            let mut s = self.lock();
            s.calls.push(method);
            match s.hang.get_mut(method) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if hang {
            std::future::pending::<()>().await;
        }
    }

    /// Runs the first hook registered for this page (one per serve).
    fn run_hooks(&self, kind: &'static str, page: i32) {
        let hook = {
            let mut s = self.lock();
            let at = s
                .after_page
                .iter()
                .position(|(k, p, _)| *k == kind && *p == page);
            at.map(|i| s.after_page.remove(i).2)
        };
        if let Some(h) = hook {
            h(self);
        }
    }

    fn tick(s: &mut State) -> i64 {
        s.clock += 1;
        s.clock
    }

    /// Adds a session of `project` in `phase` ("" = Pending).
    pub fn add_session(&self, id: &str, project: &str, phase: &str) -> Session {
        let mut s = self.lock();
        let clock = Self::tick(&mut s);
        let session = Session {
            metadata: meta(id, clock),
            name: id.into(),
            project_id: Some(project.into()),
            phase: Some(phase.into()),
            ..Session::default()
        };
        s.sessions.push(session.clone());
        drop(s);
        let _ = self.sessions_tx.send(SessionWatchEvent {
            r#type: EventType::Created.into(),
            session: Some(session.clone()),
            resource_id: id.into(),
        });
        session
    }

    /// The session as the API holds it now.
    pub fn session(&self, id: &str) -> Option<Session> {
        self.lock()
            .sessions
            .iter()
            .find(|s| id_of(&s.metadata) == id)
            .cloned()
    }

    /// The phase of a session now ("" when unknown).
    pub fn phase(&self, id: &str) -> String {
        self.session(id).and_then(|s| s.phase).unwrap_or_default()
    }

    /// Changes a session's phase as a user would (e.g. `Stopping`).
    pub fn set_phase(&self, id: &str, phase: &str) -> Option<Session> {
        self.update_session(id, |s| s.phase = Some(phase.into()))
    }

    fn update_session(&self, id: &str, f: impl FnOnce(&mut Session)) -> Option<Session> {
        let mut s = self.lock();
        let clock = Self::tick(&mut s);
        let session = s.sessions.iter_mut().find(|x| id_of(&x.metadata) == id)?;
        f(session);
        touch(&mut session.metadata, clock);
        let out = session.clone();
        drop(s);
        let _ = self.sessions_tx.send(SessionWatchEvent {
            r#type: EventType::Updated.into(),
            session: Some(out.clone()),
            resource_id: id.into(),
        });
        Some(out)
    }

    /// Deletes a session (the watch gets a DELETED event with only its ID).
    pub fn delete_session(&self, id: &str) -> bool {
        let mut s = self.lock();
        let before = s.sessions.len();
        s.sessions.retain(|x| id_of(&x.metadata) != id);
        let gone = s.sessions.len() != before;
        drop(s);
        if gone {
            let _ = self.sessions_tx.send(SessionWatchEvent {
                r#type: EventType::Deleted.into(),
                session: None,
                resource_id: id.into(),
            });
        }
        gone
    }

    /// Adds a project (its ID is its name).
    pub fn add_project(&self, id: &str) {
        let mut s = self.lock();
        let clock = Self::tick(&mut s);
        let project = Project {
            metadata: meta(id, clock),
            name: id.into(),
            ..Project::default()
        };
        s.projects.push(project.clone());
        drop(s);
        let _ = self.projects_tx.send(ProjectWatchEvent {
            r#type: EventType::Created.into(),
            project: Some(project),
            resource_id: id.into(),
        });
    }

    pub fn delete_project(&self, id: &str) {
        self.lock().projects.retain(|x| id_of(&x.metadata) != id);
        let _ = self.projects_tx.send(ProjectWatchEvent {
            r#type: EventType::Deleted.into(),
            project: None,
            resource_id: id.into(),
        });
    }

    /// Adds project settings `id` for `project` with `group_access` JSON.
    pub fn add_settings(&self, id: &str, project: &str, group_access: &str) {
        let mut s = self.lock();
        let clock = Self::tick(&mut s);
        let settings = ProjectSettings {
            metadata: meta(id, clock),
            project_id: project.into(),
            group_access: Some(group_access.into()),
            ..ProjectSettings::default()
        };
        s.settings.push(settings.clone());
        drop(s);
        let _ = self.settings_tx.send(ProjectSettingsWatchEvent {
            r#type: EventType::Created.into(),
            project_settings: Some(settings),
            resource_id: id.into(),
        });
    }
}

fn not_found(what: &str, id: &str) -> Status {
    Status::not_found(format!("{what} {id} not found"))
}

#[tonic::async_trait]
impl SessionService for FakeApi {
    async fn get_session(
        &self,
        r: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        self.enter("GetSession").await;
        let id = r.into_inner().id;
        self.session(&id)
            .map(Response::new)
            .ok_or_else(|| not_found("session", &id))
    }

    async fn create_session(
        &self,
        _: Request<CreateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_session(
        &self,
        _: Request<UpdateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_session_status(
        &self,
        r: Request<UpdateSessionStatusRequest>,
    ) -> Result<Response<Session>, Status> {
        self.enter("UpdateSessionStatus").await;
        let req = r.into_inner();
        let id = req.id.clone();
        self.update_session(&id, move |s| {
            if req.phase.is_some() {
                s.phase = req.phase;
            }
            if req.start_time.is_some() {
                s.start_time = req.start_time;
            }
            if req.completion_time.is_some() {
                s.completion_time = req.completion_time;
            }
            if req.conditions.is_some() {
                s.conditions = req.conditions;
            }
            if req.kube_namespace.is_some() {
                s.kube_namespace = req.kube_namespace;
            }
        })
        .map(Response::new)
        .ok_or_else(|| not_found("session", &id))
    }

    async fn delete_session(
        &self,
        _: Request<DeleteSessionRequest>,
    ) -> Result<Response<DeleteSessionResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_sessions(
        &self,
        r: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        self.enter("ListSessions").await;
        let req = r.into_inner();
        let (items, total) = {
            let s = self.lock();
            let (items, total) = page_of(&s.sessions, req.page, req.size, s.page_cap);
            (items, s.sessions_total.unwrap_or(total))
        };
        self.run_hooks("session", req.page);
        Ok(Response::new(ListSessionsResponse {
            items,
            metadata: Some(ListMeta {
                page: req.page,
                size: req.size,
                total,
            }),
        }))
    }

    type WatchSessionsStream = BoxStream<SessionWatchEvent>;

    async fn watch_sessions(
        &self,
        _: Request<WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        self.enter("WatchSessions").await;
        Ok(Response::new(watch_stream(self.sessions_tx.subscribe())))
    }

    async fn push_session_message(
        &self,
        _: Request<PushSessionMessageRequest>,
    ) -> Result<Response<SessionMessage>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchSessionMessagesStream = BoxStream<SessionMessage>;

    async fn watch_session_messages(
        &self,
        _: Request<WatchSessionMessagesRequest>,
    ) -> Result<Response<Self::WatchSessionMessagesStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl ProjectService for FakeApi {
    async fn get_project(
        &self,
        r: Request<GetProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        self.enter("GetProject").await;
        let id = r.into_inner().id;
        self.lock()
            .projects
            .iter()
            .find(|p| id_of(&p.metadata) == id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| not_found("project", &id))
    }

    async fn create_project(
        &self,
        _: Request<CreateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_project(
        &self,
        _: Request<UpdateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete_project(
        &self,
        _: Request<DeleteProjectRequest>,
    ) -> Result<Response<DeleteProjectResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_projects(
        &self,
        r: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        self.enter("ListProjects").await;
        let req = r.into_inner();
        let (items, total) = {
            let s = self.lock();
            page_of(&s.projects, req.page, req.size, s.page_cap)
        };
        self.run_hooks("project", req.page);
        Ok(Response::new(ListProjectsResponse {
            items,
            metadata: Some(ListMeta {
                page: req.page,
                size: req.size,
                total,
            }),
        }))
    }

    type WatchProjectsStream = BoxStream<ProjectWatchEvent>;

    async fn watch_projects(
        &self,
        _: Request<WatchProjectsRequest>,
    ) -> Result<Response<Self::WatchProjectsStream>, Status> {
        self.enter("WatchProjects").await;
        Ok(Response::new(watch_stream(self.projects_tx.subscribe())))
    }
}

#[tonic::async_trait]
impl ProjectSettingsService for FakeApi {
    async fn get_project_settings(
        &self,
        r: Request<GetProjectSettingsRequest>,
    ) -> Result<Response<ProjectSettings>, Status> {
        self.enter("GetProjectSettings").await;
        let id = r.into_inner().id;
        self.lock()
            .settings
            .iter()
            .find(|p| id_of(&p.metadata) == id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| not_found("project settings", &id))
    }

    async fn create_project_settings(
        &self,
        _: Request<CreateProjectSettingsRequest>,
    ) -> Result<Response<ProjectSettings>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_project_settings(
        &self,
        _: Request<UpdateProjectSettingsRequest>,
    ) -> Result<Response<ProjectSettings>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete_project_settings(
        &self,
        _: Request<DeleteProjectSettingsRequest>,
    ) -> Result<Response<DeleteProjectSettingsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_project_settings(
        &self,
        r: Request<ListProjectSettingsRequest>,
    ) -> Result<Response<ListProjectSettingsResponse>, Status> {
        self.enter("ListProjectSettings").await;
        let req = r.into_inner();
        let (items, total) = {
            let s = self.lock();
            page_of(&s.settings, req.page, req.size, s.page_cap)
        };
        self.run_hooks("project_settings", req.page);
        Ok(Response::new(ListProjectSettingsResponse {
            items,
            metadata: Some(ListMeta {
                page: req.page,
                size: req.size,
                total,
            }),
        }))
    }

    type WatchProjectSettingsStream = BoxStream<ProjectSettingsWatchEvent>;

    async fn watch_project_settings(
        &self,
        _: Request<WatchProjectSettingsRequest>,
    ) -> Result<Response<Self::WatchProjectSettingsStream>, Status> {
        self.enter("WatchProjectSettings").await;
        Ok(Response::new(watch_stream(self.settings_tx.subscribe())))
    }
}
