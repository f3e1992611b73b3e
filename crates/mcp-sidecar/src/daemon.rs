//! The wiring: first token (the sidecar serves nothing before it can call
//! the API), then stdio or the HTTP listener, until SIGTERM/SIGINT.

use ambient_mcp_http::{Guard, HttpConfig};
use ambient_protocol::TokenExchanger;
use anyhow::{Context as _, Result};
use rmcp::ServiceExt as _;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::config::{Settings, TokenSource};
use crate::credentials::Credentials;
use crate::server::PlatformServer;

/// Obtains the first token; starts the background refresh.
async fn credentials(source: &TokenSource) -> Result<Credentials> {
    match source {
        TokenSource::Exchange(cfg) => {
            let exchanger =
                TokenExchanger::new((**cfg).clone()).context("token exchange configuration")?;
            exchanger
                .start()
                .await
                .context("initial token fetch failed")?;
            tracing::info!("API token obtained through the token exchange");
            Ok(Credentials::Exchange(exchanger))
        }
        TokenSource::Static(token) => {
            tracing::info!("using the static AMBIENT_TOKEN (no token exchange)");
            Ok(Credentials::Static(token.clone()))
        }
    }
}

/// Runs the sidecar until a signal (or, on stdio, the end of input).
pub async fn run(settings: Settings) -> Result<()> {
    let shutdown_signal =
        ambient_daemon::shutdown_signal().context("installing the signal handlers")?;
    let credentials = credentials(&settings.token).await?;
    let api = Api::new(
        settings.api_base.clone(),
        credentials.clone(),
        settings.ca_file.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal.await;
            tracing::info!("shutdown requested");
            shutdown.cancel();
        });
    }
    let transport = settings.transport;
    let max = settings.max_subscriptions;
    let result = if transport.is_http() {
        settings.bind.log_meaning("MCP_BIND_ADDR");
        let listener = tokio::net::TcpListener::bind(settings.bind.addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.bind.addr))?;
        let addr = listener.local_addr()?;
        let config = HttpConfig {
            guard: Guard {
                hosts: settings.allowed_hosts.clone(),
                peers: settings.allowed_peers.clone(),
            },
            ..HttpConfig::default()
        };
        let router = ambient_mcp_http::router(
            move || PlatformServer::new(api.clone(), transport, max),
            &config,
            shutdown.clone(),
        );
        ambient_daemon::announce_listening("mcp", addr);
        tracing::info!(%addr, "serving MCP: legacy SSE at /sse, Streamable HTTP at /mcp");
        ambient_mcp_http::serve(listener, router, shutdown.clone())
            .await
            .context("MCP HTTP server")
    } else {
        tracing::info!("serving MCP on stdio");
        let running = PlatformServer::new(api, transport, max)
            .serve(rmcp::transport::stdio())
            .await
            .context("MCP over stdio")?;
        let ct = running.cancellation_token();
        tokio::select! {
            r = running.waiting() => r.map(|_| ()).context("MCP over stdio"),
            () = shutdown.cancelled() => {
                ct.cancel();
                Ok(())
            }
        }
    };
    if let Credentials::Exchange(x) = &credentials {
        x.stop().await;
    }
    tracing::info!("ambient-mcp stopped");
    result
}
