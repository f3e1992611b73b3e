//! The real API server behind the gateway, and the control plane's own
//! identity toward it (the only bearer that ever goes upstream).

use std::sync::Arc;

use ambient_protocol::Secret;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use futures::future::BoxFuture;
use tonic::transport::Channel;

/// The control plane's API token. The token server's `TokenProvider` is
/// adapted to it by the control plane (this crate must not depend on the
/// token server, which depends on it).
pub trait UpstreamAuth: Send + Sync + 'static {
    /// A current token; errors say why without any secret.
    fn token(&self) -> BoxFuture<'_, Result<Secret, String>>;
}

/// The API server: one HTTP client (one connection pool) for REST, one gRPC
/// channel, and the identity both present. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    /// `…/api/ambient/v1` with no trailing slash.
    pub(crate) rest_base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) grpc: SessionServiceClient<Channel>,
    pub(crate) auth: Arc<dyn UpstreamAuth>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("rest_base", &self.rest_base)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The API server whose REST root is `api_url` (e.g.
    /// `http://ambient-api-server:8000`; `/api/ambient/v1` is appended) and
    /// whose gRPC side is `grpc` (e.g. a lazily connected
    /// [`ambient_protocol::grpc::endpoint`]). `http` should not follow
    /// redirects and carries the API's CA; it is shared by every call.
    pub fn new(
        api_url: &url::Url,
        http: reqwest::Client,
        grpc: Channel,
        auth: Arc<dyn UpstreamAuth>,
    ) -> Upstream {
        let root = api_url.as_str().trim_end_matches('/');
        Upstream {
            rest_base: format!("{root}{}", crate::allow::API_PREFIX),
            http,
            grpc: SessionServiceClient::new(grpc),
            auth,
        }
    }

    /// The control plane's bearer token, or why there is none.
    pub(crate) async fn bearer(&self) -> Result<Secret, String> {
        self.auth.token().await
    }
}
