//! MCP over HTTP, for every ambient sidecar that serves MCP (ambient-mcp,
//! and the credential entrypoint's bridge): one listener that serves
//!
//! - **Streamable HTTP** at `/mcp`, rmcp's own server transport;
//! - **legacy SSE** (protocol 2024-11-05): `GET /sse` opens an event stream
//!   whose first event, `endpoint`, names the relative URL
//!   `/message?sessionId=<id>`; `POST` there answers `202` and the reply
//!   goes out on the stream; an unknown session is `404` ([`legacy_sse`]);
//!
//! behind a `Host`/`Origin` check that admits loopback names only unless
//! configured otherwise ([`guard`]), so a page in a browser cannot reach the
//! sidecar through DNS rebinding.
//!
//! Each MCP session gets its own handler from the factory; it is dropped
//! when the session ends (stream closed, `DELETE /mcp`, or shutdown).

pub mod backlog;
pub mod guard;
pub mod legacy_sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub use guard::AllowedHosts;

/// How the HTTP transports are served.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `Host` / `Origin` names admitted.
    pub allowed_hosts: AllowedHosts,
    /// Interval of SSE keep-alive comments on both transports.
    pub keep_alive: Duration,
    /// Most legacy SSE sessions open at once.
    pub max_sse_sessions: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: AllowedHosts::loopback(),
            keep_alive: Duration::from_secs(15),
            max_sse_sessions: 64,
        }
    }
}

/// The router for both transports. `factory` makes one handler per MCP
/// session; `shutdown` ends every session when cancelled.
pub fn router<S, F>(factory: F, config: &HttpConfig, shutdown: CancellationToken) -> Router
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let factory = Arc::new(factory);
    let streamable = {
        let factory = factory.clone();
        let mut cfg = StreamableHttpServerConfig::default()
            .with_sse_keep_alive(Some(config.keep_alive))
            .with_cancellation_token(shutdown.child_token())
            // The guard below checks Host and Origin for every route.
            .disable_allowed_hosts();
        cfg.sse_retry = None;
        StreamableHttpService::new(
            move || Ok(factory()),
            Arc::new(LocalSessionManager::default()),
            cfg,
        )
    };
    let sse = legacy_sse::LegacySse::new(
        move || factory(),
        config.keep_alive,
        config.max_sse_sessions,
        shutdown,
    );
    Router::new()
        .route_service("/mcp", streamable)
        .merge(sse.router())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.allowed_hosts.clone()),
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
