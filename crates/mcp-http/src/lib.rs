//! MCP over HTTP, for every ambient sidecar that serves MCP (ambient-mcp,
//! and the credential entrypoint's bridge): one listener that serves
//!
//! - **Streamable HTTP** at `/mcp`, rmcp's own server transport;
//! - **legacy SSE** (protocol 2024-11-05): `GET /sse` opens an event stream
//!   whose first event, `endpoint`, names the relative URL
//!   `/message?sessionId=<id>`; `POST` there answers `202` and the reply
//!   goes out on the stream; an unknown session is `404` ([`legacy_sse`]);
//!
//! behind a check of the peer address (loopback, or an allow-list) and of
//! `Host`/`Origin` (loopback names unless configured otherwise) ([`guard`]),
//! so neither the network nor a page in a browser (DNS rebinding) reaches
//! the sidecar. [`listen`] reads the listen address (`:PORT` is loopback).
//!
//! Each MCP session gets its own handler from the factory; it is dropped
//! when the session ends (stream closed, `DELETE /mcp`, a Streamable HTTP
//! session idle for [`HttpConfig::idle_timeout`], or shutdown). At most
//! [`HttpConfig::max_sessions`] are open at once, both transports together
//! ([`capacity`]); beyond, a new session is answered `503`.

pub mod backlog;
pub mod capacity;
pub mod guard;
pub mod legacy_sse;
pub mod listen;
pub mod peers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub use capacity::Capacity;
pub use guard::{AllowedHosts, Guard};
pub use listen::ListenAddr;
pub use peers::AllowedPeers;

/// Most MCP sessions open at once by default (both transports together).
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// A Streamable HTTP session without a message either way for this long is
/// ended, by default (rmcp's own default).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How the HTTP transports are served.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Peers and `Host` / `Origin` names admitted.
    pub guard: Guard,
    /// Interval of SSE keep-alive comments on both transports.
    pub keep_alive: Duration,
    /// Most MCP sessions open at once, both transports together.
    pub max_sessions: usize,
    /// A Streamable HTTP session idle this long is ended. (A legacy SSE
    /// session lives as long as its stream: its client's connection.)
    pub idle_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            guard: Guard::default(),
            keep_alive: Duration::from_secs(15),
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The answer to a new session beyond the cap.
fn too_many_sessions() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "too many MCP sessions").into_response()
}

/// Middleware of `/mcp`: a request that would open a session (a POST
/// without `Mcp-Session-Id`) is `503` at the cap. (The factory checks again,
/// under the lock, so two racing requests cannot both pass.)
async fn refuse_beyond_capacity<S: Send + Sync + 'static>(
    State(capacity): State<Arc<Capacity<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let opens =
        request.method() == Method::POST && !request.headers().contains_key("mcp-session-id");
    if opens && capacity.full() {
        tracing::warn!("refused a new MCP session: too many open");
        return too_many_sessions();
    }
    next.run(request).await
}

/// The router for both transports. `factory` makes one handler per MCP
/// session; `shutdown` ends every session when cancelled.
pub fn router<S, F>(factory: F, config: &HttpConfig, shutdown: CancellationToken) -> Router
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let factory = Arc::new(factory);
    let capacity = Arc::new(Capacity::new(config.max_sessions));
    let streamable = {
        let (factory, capacity) = (factory.clone(), capacity.clone());
        let mut cfg = StreamableHttpServerConfig::default()
            .with_sse_keep_alive(Some(config.keep_alive))
            .with_cancellation_token(shutdown.child_token())
            // The guard below checks Host and Origin for every route.
            .disable_allowed_hosts();
        cfg.sse_retry = None;
        let mut sessions = LocalSessionManager::default();
        sessions.session_config.keep_alive = Some(config.idle_timeout);
        StreamableHttpService::new(
            move || {
                capacity
                    .admit(|| factory())
                    .ok_or_else(|| std::io::Error::other("too many MCP sessions"))
            },
            Arc::new(sessions),
            cfg,
        )
    };
    let sse = legacy_sse::LegacySse::new(
        move || factory(),
        capacity.clone(),
        config.keep_alive,
        shutdown,
    );
    Router::new()
        .route_service("/mcp", streamable)
        .layer(axum::middleware::from_fn_with_state(
            capacity,
            refuse_beyond_capacity::<S>,
        ))
        .merge(sse.router())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.guard.clone()),
            guard::check,
        ))
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Without TCP_NODELAY an SSE answer written in two pieces waits for the
    // peer's delayed ACK (~40 ms per tool call).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
