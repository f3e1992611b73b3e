//! The `ambient.v1` gRPC services over [`Api`]: `SessionService`,
//! `ProjectService`, `ProjectSettingsService`, `InboxService`, each behind
//! the bearer interceptor, which attaches the caller's identity.
//!
//! As on the reference: every gRPC caller is a service caller, which may
//! not push `user` messages (`PERMISSION_DENIED`); a watch's DELETED event
//! carries only `resource_id`.

use std::pin::Pin;
use std::sync::Arc;

use ambient_protocol::v1::inbox_service_server::{InboxService, InboxServiceServer};
use ambient_protocol::v1::project_service_server::{ProjectService, ProjectServiceServer};
use ambient_protocol::v1::project_settings_service_server::{
    ProjectSettingsService, ProjectSettingsServiceServer,
};
use ambient_protocol::v1::session_service_server::{SessionService, SessionServiceServer};
use ambient_protocol::v1::{
    CreateProjectRequest, CreateProjectSettingsRequest, CreateSessionRequest, DeleteProjectRequest,
    DeleteProjectResponse, DeleteProjectSettingsRequest, DeleteProjectSettingsResponse,
    DeleteSessionRequest, DeleteSessionResponse, EventType, GetProjectRequest,
    GetProjectSettingsRequest, GetSessionRequest, InboxMessage, ListMeta,
    ListProjectSettingsRequest, ListProjectSettingsResponse, ListProjectsRequest,
    ListProjectsResponse, ListSessionsRequest, ListSessionsResponse, Project, ProjectSettings,
    ProjectSettingsWatchEvent, ProjectWatchEvent, PushSessionMessageRequest, Session,
    SessionMessage, SessionWatchEvent, UpdateProjectRequest, UpdateProjectSettingsRequest,
    UpdateSessionRequest, UpdateSessionStatusRequest, WatchInboxMessagesRequest,
    WatchProjectSettingsRequest, WatchProjectsRequest, WatchSessionMessagesRequest,
    WatchSessionsRequest,
};
use futures::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::auth::Auth;
use crate::events::{Kind, Resource, ResourceEvent};
use crate::service::{Api, Caller, ListQuery, Page, Speaker};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The bearer-token check applied to every gRPC call.
#[derive(Debug, Clone)]
pub struct BearerInterceptor(Arc<Auth>);

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        match self.0.caller(header) {
            Some(caller) => {
                let mut req = req;
                req.extensions_mut().insert(caller);
                Ok(req)
            }
            None => Err(Status::unauthenticated("missing or invalid bearer token")),
        }
    }
}

/// The services, ready to add to a tonic server.
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

/// `InboxService` behind the interceptor.
pub type InboxSvc = InterceptedService<InboxServiceServer<Services>, BearerInterceptor>;

/// Builds the intercepted services over `api`.
pub fn services(
    api: Api,
    auth: Arc<Auth>,
) -> (SessionSvc, ProjectSvc, ProjectSettingsSvc, InboxSvc) {
    let s = Services { api };
    let i = BearerInterceptor(auth);
    (
        SessionServiceServer::with_interceptor(s.clone(), i.clone()),
        ProjectServiceServer::with_interceptor(s.clone(), i.clone()),
        ProjectSettingsServiceServer::with_interceptor(s.clone(), i.clone()),
        InboxServiceServer::with_interceptor(s, i),
    )
}

/// The caller the interceptor attached.
fn caller<T>(r: &Request<T>) -> Result<Caller, Status> {
    r.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing or invalid bearer token"))
}

/// The watch of one `kind` as gRPC events: `event` turns a change into
/// the kind's watch event.
fn watch<T: Send + 'static>(
    api: &Api,
    kind: Kind,
    event: fn(ResourceEvent) -> Option<T>,
) -> BoxStream<T> {
    Box::pin(api.watch_resources(kind).filter_map(move |e| {
        std::future::ready(match e {
            Err(e) => Some(Err(Status::from(e))),
            Ok(ev) => event(ev).map(Ok),
        })
    }))
}

/// A watch event's object: absent on DELETED, as on the reference.
fn unless_deleted<T>(event_type: EventType, object: T) -> Option<T> {
    (event_type != EventType::Deleted).then_some(object)
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
        let caller = caller(&r)?;
        Ok(Response::new(
            self.api
                .create_session(&caller, r.into_inner(), None, None)
                .await?,
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
            .list_sessions(&ListQuery::page(r.page, r.size), None)
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
        Ok(Response::new(watch(
            &self.api,
            Kind::Session,
            |ev| match ev.resource {
                Resource::Session(s) => Some(SessionWatchEvent {
                    r#type: ev.event_type.into(),
                    resource_id: id_of(s.metadata.as_ref()),
                    session: unless_deleted(ev.event_type, *s),
                }),
                _ => None,
            },
        )))
    }

    async fn push_session_message(
        &self,
        r: Request<PushSessionMessageRequest>,
    ) -> Result<Response<SessionMessage>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.api
                .push_message(
                    Speaker::Service,
                    &r.session_id,
                    Some(r.event_type),
                    r.payload,
                )
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
        let caller = caller(&r)?;
        let record = self
            .api
            .create_project(&caller, r.into_inner(), None)
            .await?;
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
        Ok(Response::new(watch(
            &self.api,
            Kind::Project,
            |ev| match ev.resource {
                Resource::Project(p) => Some(ProjectWatchEvent {
                    r#type: ev.event_type.into(),
                    resource_id: id_of(p.metadata.as_ref()),
                    project: unless_deleted(ev.event_type, *p),
                }),
                _ => None,
            },
        )))
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
        Ok(Response::new(watch(
            &self.api,
            Kind::ProjectSettings,
            |ev| match ev.resource {
                Resource::ProjectSettings(s) => Some(ProjectSettingsWatchEvent {
                    r#type: ev.event_type.into(),
                    resource_id: id_of(s.metadata.as_ref()),
                    project_settings: unless_deleted(ev.event_type, *s),
                }),
                _ => None,
            },
        )))
    }
}

#[tonic::async_trait]
impl InboxService for Services {
    type WatchInboxMessagesStream = BoxStream<InboxMessage>;

    async fn watch_inbox_messages(
        &self,
        r: Request<WatchInboxMessagesRequest>,
    ) -> Result<Response<Self::WatchInboxMessagesStream>, Status> {
        let stream = self
            .api
            .watch_inbox(&r.into_inner().agent_id)
            .map(|m| m.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use ambient_protocol::v1::{CreateProjectSettingsRequest, UpdateProjectSettingsRequest};
    use prost::Message as _;

    /// The wire numbers of wire.md §1, which differ from the resource's own.
    #[test]
    fn project_settings_requests_use_the_reference_field_numbers() {
        let create = CreateProjectSettingsRequest {
            repositories: Some("r".into()),
            ..Default::default()
        };
        // Field 4, length-delimited: tag byte (4 << 3) | 2.
        assert_eq!(create.encode_to_vec(), [0x22, 1, b'r']);
        let update = UpdateProjectSettingsRequest {
            repositories: Some("r".into()),
            ..Default::default()
        };
        // Field 5.
        assert_eq!(update.encode_to_vec(), [0x2a, 1, b'r']);
        let group = CreateProjectSettingsRequest {
            group_access: Some("g".into()),
            ..Default::default()
        };
        assert_eq!(group.encode_to_vec(), [0x12, 1, b'g']);
    }
}
