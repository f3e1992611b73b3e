//! The API server side: a gRPC client of `ambient.v1` whose calls carry the
//! bearer of a [`TokenProvider`] (static or OIDC, the token server's), with
//! one refresh-and-retry on `UNAUTHENTICATED`. Every call has a deadline
//! (token fetch included; for a watch, until the stream opens): a hung API
//! server can never hold a worker or an informer forever.

use std::sync::Arc;
use std::time::Duration;

use ambient_protocol::v1::project_service_client::ProjectServiceClient;
use ambient_protocol::v1::project_settings_service_client::ProjectSettingsServiceClient;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_protocol::v1::{
    GetProjectRequest, GetProjectSettingsRequest, GetSessionRequest, ListProjectSettingsRequest,
    ListProjectsRequest, ListSessionsRequest, Project, ProjectSettings, ProjectSettingsWatchEvent,
    ProjectWatchEvent, Session, SessionWatchEvent, UpdateSessionStatusRequest,
    WatchProjectSettingsRequest, WatchProjectsRequest, WatchSessionsRequest,
};
use ambient_token_server::TokenProvider;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

/// An API call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("API server address: {0}")]
    Address(String),
    #[error("cannot get an API token: {0}")]
    Token(String),
    #[error("API call failed: {code:?}: {message}")]
    Status { code: Code, message: String },
}

impl ApiError {
    fn from_status(s: &Status) -> Self {
        ApiError::Status {
            code: s.code(),
            message: s.message().chars().take(200).collect(),
        }
    }

    /// True for `NOT_FOUND`.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ApiError::Status {
                code: Code::NotFound,
                ..
            }
        )
    }
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i32,
}

/// Deadline of one API call unless [`Api::with_timeout`] says otherwise.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// gRPC client of the API server.
#[derive(Clone)]
pub struct Api {
    channel: Channel,
    provider: Arc<dyn TokenProvider>,
    timeout: Duration,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// A client of `addr` (TLS when `use_tls` or an `https://` address,
    /// trusting the system roots and `ca_file`); connects lazily, so the API
    /// server may be down now.
    pub fn new(
        addr: &str,
        use_tls: bool,
        ca_file: Option<&std::path::Path>,
        provider: Arc<dyn TokenProvider>,
    ) -> Result<Self, ApiError> {
        let endpoint = ambient_protocol::grpc::endpoint(addr, use_tls, ca_file)
            .map_err(|e| ApiError::Address(e.to_string()))?;
        Ok(Self {
            channel: endpoint.connect_lazy(),
            provider,
            timeout: CALL_TIMEOUT,
        })
    }

    /// The same client with another per-call deadline.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn request<T>(&self, msg: T) -> Result<Request<T>, ApiError> {
        let token = self
            .provider
            .token()
            .await
            .map_err(|e| ApiError::Token(e.to_string()))?;
        let mut req = Request::new(msg);
        let value = format!("Bearer {}", token.token.expose())
            .parse()
            .map_err(|_| ApiError::Token("token is not a valid header value".into()))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }

    /// Runs `call` once, and once more with a fresh token after
    /// `UNAUTHENTICATED`; `DEADLINE_EXCEEDED` when no answer came in time.
    async fn call<M, R, F, Fut>(&self, msg: M, call: F) -> Result<R, ApiError>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        match tokio::time::timeout(self.timeout, self.call_once(msg, call)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Status {
                code: Code::DeadlineExceeded,
                message: format!("no answer within {:?}", self.timeout),
            }),
        }
    }

    async fn call_once<M, R, F, Fut>(&self, msg: M, call: F) -> Result<R, ApiError>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        for attempt in 0..2 {
            let req = self.request(msg.clone()).await?;
            match call(self.channel.clone(), req).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if s.code() == Code::Unauthenticated && attempt == 0 => {
                    tracing::info!(
                        "API answered UNAUTHENTICATED; refreshing the token and retrying once"
                    );
                    self.provider.invalidate();
                }
                Err(s) => return Err(ApiError::from_status(&s)),
            }
        }
        Err(ApiError::Status {
            code: Code::Unauthenticated,
            message: "still unauthenticated after a token refresh".into(),
        })
    }

    pub async fn list_sessions(&self, page: i32, size: i32) -> Result<Page<Session>, ApiError> {
        let r = self
            .call(ListSessionsRequest { page, size }, |ch, req| async move {
                SessionServiceClient::new(ch).list_sessions(req).await
            })
            .await?;
        Ok(Page {
            total: r.metadata.map_or(0, |m| m.total),
            items: r.items,
        })
    }

    pub async fn get_session(&self, id: &str) -> Result<Session, ApiError> {
        let msg = GetSessionRequest { id: id.into() };
        self.call(msg, |ch, req| async move {
            SessionServiceClient::new(ch).get_session(req).await
        })
        .await
    }

    pub async fn watch_sessions(&self) -> Result<Streaming<SessionWatchEvent>, ApiError> {
        self.call(WatchSessionsRequest {}, |ch, req| async move {
            SessionServiceClient::new(ch).watch_sessions(req).await
        })
        .await
    }

    pub async fn update_session_status(
        &self,
        req: UpdateSessionStatusRequest,
    ) -> Result<Session, ApiError> {
        self.call(req, |ch, req| async move {
            SessionServiceClient::new(ch)
                .update_session_status(req)
                .await
        })
        .await
    }

    pub async fn list_projects(&self, page: i32, size: i32) -> Result<Page<Project>, ApiError> {
        let r = self
            .call(ListProjectsRequest { page, size }, |ch, req| async move {
                ProjectServiceClient::new(ch).list_projects(req).await
            })
            .await?;
        Ok(Page {
            total: r.metadata.map_or(0, |m| m.total),
            items: r.items,
        })
    }

    pub async fn get_project(&self, id: &str) -> Result<Project, ApiError> {
        let msg = GetProjectRequest { id: id.into() };
        self.call(msg, |ch, req| async move {
            ProjectServiceClient::new(ch).get_project(req).await
        })
        .await
    }

    pub async fn watch_projects(&self) -> Result<Streaming<ProjectWatchEvent>, ApiError> {
        self.call(WatchProjectsRequest {}, |ch, req| async move {
            ProjectServiceClient::new(ch).watch_projects(req).await
        })
        .await
    }

    pub async fn list_project_settings(
        &self,
        page: i32,
        size: i32,
    ) -> Result<Page<ProjectSettings>, ApiError> {
        let r = self
            .call(
                ListProjectSettingsRequest { page, size },
                |ch, req| async move {
                    ProjectSettingsServiceClient::new(ch)
                        .list_project_settings(req)
                        .await
                },
            )
            .await?;
        Ok(Page {
            total: r.metadata.map_or(0, |m| m.total),
            items: r.items,
        })
    }

    pub async fn get_project_settings(&self, id: &str) -> Result<ProjectSettings, ApiError> {
        let msg = GetProjectSettingsRequest { id: id.into() };
        self.call(msg, |ch, req| async move {
            ProjectSettingsServiceClient::new(ch)
                .get_project_settings(req)
                .await
        })
        .await
    }

    pub async fn watch_project_settings(
        &self,
    ) -> Result<Streaming<ProjectSettingsWatchEvent>, ApiError> {
        self.call(WatchProjectSettingsRequest {}, |ch, req| async move {
            ProjectSettingsServiceClient::new(ch)
                .watch_project_settings(req)
                .await
        })
        .await
    }
}
