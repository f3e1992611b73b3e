//! The `ambient.v1` gRPC services over [`Api`]: `SessionService`,
//! `ProjectService`, `ProjectSettingsService`, each behind the bearer
//! interceptor.

use std::pin::Pin;
use std::sync::Arc;

use ambient_protocol::v1::project_service_server::{ProjectService, ProjectServiceServer};
use ambient_protocol::v1::project_settings_service_server::{
    ProjectSettingsService, ProjectSettingsServiceServer,
};
use ambient_protocol::v1::session_service_server::{SessionService, SessionServiceServer};
use ambient_protocol::v1::{
    CreateProjectRequest, CreateProjectSettingsRequest, CreateSessionRequest, DeleteProjectRequest,
    DeleteProjectResponse, DeleteProjectSettingsRequest, DeleteProjectSettingsResponse,
    DeleteSessionRequest, DeleteSessionResponse, GetProjectRequest, GetProjectSettingsRequest,
    GetSessionRequest, ListMeta, ListProjectSettingsRequest, ListProjectSettingsResponse,
    ListProjectsRequest, ListProjectsResponse, ListSessionsRequest, ListSessionsResponse, Project,
    ProjectSettings, ProjectSettingsWatchEvent, ProjectWatchEvent, PushSessionMessageRequest,
    Session, SessionMessage, SessionWatchEvent, UpdateProjectRequest, UpdateProjectSettingsRequest,
    UpdateSessionRequest, UpdateSessionStatusRequest, WatchProjectSettingsRequest,
    WatchProjectsRequest, WatchSessionMessagesRequest, WatchSessionsRequest,
};
use futures::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::auth::Auth;
use crate::events::Resource;
use crate::service::{Api, ListQuery, Page};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The bearer-token check applied to every gRPC call.
#[derive(Debug, Clone)]
pub struct BearerInterceptor(Arc<Auth>);

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        if self.0.accepts_header(header) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or invalid bearer token"))
        }
    }
}

/// The three services, ready to add to a tonic server.
#[derive(Debug, Clone)]
pub struct Services {
    api: Api,
}

/// `SessionService` behind the interceptor.
pub type SessionSvc = InterceptedService<SessionServiceServer<Services>, BearerInterceptor>;
/// `ProjectService` behind the interceptor.
pub type ProjectSvc = InterceptedService<ProjectServiceServer<Services>, BearerInterceptor>;
/// `ProjectSettingsService` behind the interceptor.
pub type ProjectSettingsSvc =
    InterceptedService<ProjectSettingsServiceServer<Services>, BearerInterceptor>;

/// Builds the three intercepted services over `api`.
pub fn services(api: Api, auth: Arc<Auth>) -> (SessionSvc, ProjectSvc, ProjectSettingsSvc) {
    let s = Services { api };
    let i = BearerInterceptor(auth);
    (
        SessionServiceServer::with_interceptor(s.clone(), i.clone()),
        ProjectServiceServer::with_interceptor(s.clone(), i.clone()),
        ProjectSettingsServiceServer::with_interceptor(s, i),
    )
}

fn meta<T>(page: &Page<T>) -> Option<ListMeta> {
    Some(ListMeta {
        page: page.page,
        size: page.size,
        total: page.total,
    })
}

fn id_of(meta: Option<&ambient_protocol::v1::ObjectReference>) -> String {
    meta.map(|m| m.id.clone()).unwrap_or_default()
}

#[tonic::async_trait]
impl SessionService for Services {
    async fn get_session(
        &self,
        r: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        Ok(Response::new(
            self.api.get_session(&r.into_inner().id).await?,
        ))
    }

    async fn create_session(
        &self,
        r: Request<CreateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        Ok(Response::new(
            self.api.create_session(r.into_inner(), None).await?,
        ))
    }

    async fn update_session(
        &self,
        r: Request<UpdateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        Ok(Response::new(
            self.api.update_session(r.into_inner()).await?,
        ))
    }

    async fn update_session_status(
        &self,
        r: Request<UpdateSessionStatusRequest>,
    ) -> Result<Response<Session>, Status> {
        Ok(Response::new(
            self.api.update_session_status(r.into_inner()).await?,
        ))
    }

    async fn delete_session(
        &self,
        r: Request<DeleteSessionRequest>,
    ) -> Result<Response<DeleteSessionResponse>, Status> {
        self.api.delete_session(&r.into_inner().id).await?;
        Ok(Response::new(DeleteSessionResponse {}))
    }

    async fn list_sessions(
        &self,
        r: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let r = r.into_inner();
        let page = self
            .api
            .list_sessions(&ListQuery::page(r.page, r.size))
            .await?;
        Ok(Response::new(ListSessionsResponse {
            metadata: meta(&page),
            items: page.items,
        }))
    }

    type WatchSessionsStream = BoxStream<SessionWatchEvent>;

    async fn watch_sessions(
        &self,
        _r: Request<WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        let stream = self.api.watch_resources().filter_map(|e| async move {
            match e {
                Err(e) => Some(Err(Status::from(e))),
                Ok(ev) => match ev.resource {
                    Resource::Session(s) => Some(Ok(SessionWatchEvent {
                        r#type: ev.event_type.into(),
                        resource_id: id_of(s.metadata.as_ref()),
                        session: Some(*s),
                    })),
                    _ => None,
                },
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn push_session_message(
        &self,
        r: Request<PushSessionMessageRequest>,
    ) -> Result<Response<SessionMessage>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.api
                .push_message(&r.session_id, r.event_type, r.payload)
                .await?,
        ))
    }

    type WatchSessionMessagesStream = BoxStream<SessionMessage>;

    async fn watch_session_messages(
        &self,
        r: Request<WatchSessionMessagesRequest>,
    ) -> Result<Response<Self::WatchSessionMessagesStream>, Status> {
        let r = r.into_inner();
        let stream = self
            .api
            .watch_messages(&r.session_id, r.after_seq)
            .await?
            .map(|m| m.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl ProjectService for Services {
    async fn get_project(
        &self,
        r: Request<GetProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let record = self.api.get_project(&r.into_inner().id).await?;
        Ok(Response::new(record.project.unwrap_or_default()))
    }

    async fn create_project(
        &self,
        r: Request<CreateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let record = self.api.create_project(r.into_inner(), None).await?;
        Ok(Response::new(record.project.unwrap_or_default()))
    }

    async fn update_project(
        &self,
        r: Request<UpdateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let record = self.api.update_project(r.into_inner(), None).await?;
        Ok(Response::new(record.project.unwrap_or_default()))
    }

    async fn delete_project(
        &self,
        r: Request<DeleteProjectRequest>,
    ) -> Result<Response<DeleteProjectResponse>, Status> {
        self.api.delete_project(&r.into_inner().id).await?;
        Ok(Response::new(DeleteProjectResponse {}))
    }

    async fn list_projects(
        &self,
        r: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        let r = r.into_inner();
        let page = self
            .api
            .list_projects(&ListQuery::page(r.page, r.size))
            .await?;
        Ok(Response::new(ListProjectsResponse {
            metadata: meta(&page),
            items: page
                .items
                .into_iter()
                .map(|p| p.project.unwrap_or_default())
                .collect(),
        }))
    }

    type WatchProjectsStream = BoxStream<ProjectWatchEvent>;

    async fn watch_projects(
        &self,
        _r: Request<WatchProjectsRequest>,
    ) -> Result<Response<Self::WatchProjectsStream>, Status> {
        let stream = self.api.watch_resources().filter_map(|e| async move {
            match e {
                Err(e) => Some(Err(Status::from(e))),
                Ok(ev) => match ev.resource {
                    Resource::Project(p) => Some(Ok(ProjectWatchEvent {
                        r#type: ev.event_type.into(),
                        resource_id: id_of(p.metadata.as_ref()),
                        project: Some(*p),
                    })),
                    _ => None,
                },
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl ProjectSettingsService for Services {
    async fn get_project_settings(
        &self,
        r: Request<GetProjectSettingsRequest>,
    ) -> Result<Response<ProjectSettings>, Status> {
        Ok(Response::new(
            self.api.get_project_settings(&r.into_inner().id).await?,
        ))
    }

    async fn create_project_settings(
        &self,
        r: Request<CreateProjectSettingsRequest>,
    ) -> Result<Response<ProjectSettings>, Status> {
        Ok(Response::new(
            self.api.create_project_settings(r.into_inner()).await?,
        ))
    }

    async fn update_project_settings(
        &self,
        r: Request<UpdateProjectSettingsRequest>,
    ) -> Result<Response<ProjectSettings>, Status> {
        Ok(Response::new(
            self.api.update_project_settings(r.into_inner()).await?,
        ))
    }

    async fn delete_project_settings(
        &self,
        r: Request<DeleteProjectSettingsRequest>,
    ) -> Result<Response<DeleteProjectSettingsResponse>, Status> {
        self.api.delete_project_settings(&r.into_inner().id).await?;
        Ok(Response::new(DeleteProjectSettingsResponse {}))
    }

    async fn list_project_settings(
        &self,
        r: Request<ListProjectSettingsRequest>,
    ) -> Result<Response<ListProjectSettingsResponse>, Status> {
        let r = r.into_inner();
        let page = self
            .api
            .list_project_settings(&ListQuery::page(r.page, r.size))
            .await?;
        Ok(Response::new(ListProjectSettingsResponse {
            metadata: meta(&page),
            items: page.items,
        }))
    }

    type WatchProjectSettingsStream = BoxStream<ProjectSettingsWatchEvent>;

    async fn watch_project_settings(
        &self,
        _r: Request<WatchProjectSettingsRequest>,
    ) -> Result<Response<Self::WatchProjectSettingsStream>, Status> {
        let stream = self.api.watch_resources().filter_map(|e| async move {
            match e {
                Err(e) => Some(Err(Status::from(e))),
                Ok(ev) => match ev.resource {
                    Resource::ProjectSettings(s) => Some(Ok(ProjectSettingsWatchEvent {
                        r#type: ev.event_type.into(),
                        resource_id: id_of(s.metadata.as_ref()),
                        project_settings: Some(*s),
                    })),
                    _ => None,
                },
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
