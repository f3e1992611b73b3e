//! The gateway: its parts, how it is built, and how it is served (gRPC and
//! REST on one listener, TLS optional).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::response::Response;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::facts::SessionFacts;
use crate::rest::{Answer, lookup};
use crate::tls::GatewayTls;
use crate::upstream::Upstream;
use crate::{SessionIdentity, VerifyToken, grpc, rest};

/// Sessions whose project was looked up upstream, kept: a session's project
/// never changes (PATCH ignores `project_id`) and IDs are not reused, so the
/// answer stays true. Bounded: cleared when full.
const PROJECT_MEMO: usize = 65_536;

pub(crate) struct Inner {
    pub(crate) verify: Arc<dyn VerifyToken>,
    pub(crate) facts: Arc<dyn SessionFacts>,
    pub(crate) upstream: Upstream,
    projects: RwLock<HashMap<String, String>>,
}

impl Inner {
    /// The project of session `id`: the caller's own, the control plane's
    /// cache, the memo, or (once) the API. `Ok(None)`: no such session;
    /// `Err`: the API could not be asked (the answer to relay).
    pub(crate) async fn session_project(
        &self,
        who: &SessionIdentity,
        id: &str,
    ) -> Result<Option<String>, Response> {
        if id == who.session_id {
            return Ok(Some(who.project.clone()));
        }
        if let Some(s) = self.facts.session(id) {
            return Ok(Some(s.project));
        }
        if let Some(p) = self.projects.read().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(Some(p));
        }
        let s = match self.lookup(&format!("/sessions/{id}"), &who.project).await {
            Answer::Object(s) => s,
            Answer::Refused(_) => return Ok(None),
            Answer::Failed(resp) => return Err(resp),
        };
        let Some(project) = s.get("project_id").and_then(Value::as_str) else {
            return Ok(None);
        };
        if let Ok(mut memo) = self.projects.write() {
            if memo.len() >= PROJECT_MEMO {
                memo.clear();
            }
            memo.insert(id.to_owned(), project.to_owned());
        }
        Ok(Some(project.to_owned()))
    }

    /// `GET path` upstream, for a scope check.
    pub(crate) async fn lookup(&self, path: &str, project: &str) -> Answer {
        lookup(&self.upstream, path, project).await
    }
}

/// The session gateway. Cheap to clone; every clone serves the same state.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("upstream", &self.inner.upstream)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway admitting the tokens `verify` accepts while `facts` says
    /// their session is live, forwarding to `upstream`.
    pub fn new(
        verify: Arc<dyn VerifyToken>,
        facts: Arc<dyn SessionFacts>,
        upstream: Upstream,
    ) -> Gateway {
        Gateway {
            inner: Arc::new(Inner {
                verify,
                facts,
                upstream,
                projects: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// gRPC `ambient.v1` and REST `/api/ambient/v1` as one router: gRPC
    /// requests (`content-type: application/grpc…`) go to the gRPC side,
    /// everything else to REST.
    pub fn router(&self) -> axum::Router {
        let grpc = grpc::router(self.inner.clone());
        let rest = rest::router(self.inner.clone());
        axum::Router::new().fallback_service(tower::service_fn(
            move |req: axum::extract::Request| {
                let is_grpc = req
                    .headers()
                    .get(axum::http::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                let target = if is_grpc { grpc.clone() } else { rest.clone() };
                tower::ServiceExt::oneshot(target, req)
            },
        ))
    }

    /// Serves [`Gateway::router`] on `listener` (HTTP/1.1 and HTTP/2, TLS
    /// when `tls` is given) until `shutdown` resolves. Announces
    /// `gateway listening on <addr>`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<GatewayTls>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("gateway listening on {addr}");
        }
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .tcp_nodelay(true)
            .add_routes(tonic::service::Routes::from(self.router()));
        match tls {
            Some(tls) => {
                server
                    .serve_with_incoming_shutdown(tls.incoming(listener), shutdown)
                    .await
            }
            None => {
                let incoming = nodelay_incoming(listener);
                server
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
        }
    }
}

/// The connections `listener` accepts, without Nagle's algorithm. The
/// server builder's `tcp_nodelay` applies only to listeners it binds
/// itself: without this, a watched message waited for Nagle and a delayed
/// ACK (~40 ms a hop; `bench gateway` push → watch went from 44 ms to 1 ms).
fn nodelay_incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        use tokio_stream::StreamExt as _;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut incoming = std::pin::pin!(nodelay_incoming(listener));
        let _client = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let accepted = incoming
            .next()
            .await
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("nothing accepted"));
        assert!(accepted.nodelay().unwrap_or(false));
    }
}
