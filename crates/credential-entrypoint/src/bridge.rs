//! The MCP bridge (`--serve-mcp ADDR`): the child speaks MCP over stdio;
//! the entrypoint serves it over HTTP — legacy SSE at `/sse` + `/message`
//! (what the runner connects to) and Streamable HTTP at `/mcp` — through
//! the transport shared with ambient-mcp (`ambient-mcp-http`), so a
//! sidecar image needs no Python `mcp-proxy`.
//!
//! Each MCP session gets its own child, started on the session's
//! `initialize` with the current credential and ended with the session.
//! When the credential's environment rotates, the session keeps going: its
//! next request finds the child outdated, stops it, starts a new one with
//! the new credential, replays the session's `initialize` to it, and goes on.

use std::ffi::OsString;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
    InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService, ServiceError};
use rmcp::{ErrorData as McpError, ServerHandler};
use tokio::sync::{Mutex, watch};

use crate::child::{BaseEnv, Child};
use crate::mapping::Delivery;

/// What every session's child is started from.
#[derive(Debug)]
pub struct Upstreams {
    pub command: Vec<OsString>,
    pub base: BaseEnv,
    /// The current delivery; a new value means "restart children".
    pub delivery: watch::Receiver<Delivery>,
    pub grace_period: std::time::Duration,
    /// `--on-rotate restart`: an environment change restarts session children.
    pub restart_on_rotate: bool,
}

/// One session's child and the MCP client connected to its stdio.
struct Upstream {
    client: RunningService<RoleClient, InitializeRequestParams>,
    child: Child,
    /// The delivery it was started with.
    delivery: Delivery,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("child", &self.child)
            .finish()
    }
}

/// The handler of one MCP session.
#[derive(Debug)]
pub struct Bridge {
    upstreams: Arc<Upstreams>,
    state: Mutex<Session>,
}

#[derive(Debug, Default)]
struct Session {
    init: Option<InitializeRequestParams>,
    upstream: Option<Upstream>,
}

impl Bridge {
    pub fn new(upstreams: Arc<Upstreams>) -> Self {
        Self {
            upstreams,
            state: Mutex::new(Session::default()),
        }
    }

    /// Starts a child with the current delivery and initializes it with
    /// the session's own `initialize` parameters.
    async fn start(&self, init: &InitializeRequestParams) -> Result<Upstream, McpError> {
        let delivery = self.upstreams.delivery.borrow().clone();
        let vars = self.upstreams.base.with(&delivery);
        let (child, stdin, stdout) = Child::spawn_stdio(&self.upstreams.command, &vars)
            .map_err(|e| internal(format!("cannot start the MCP server: {e}")))?;
        tracing::info!(pid = child.id(), "MCP server started for a session");
        let client = rmcp::service::serve_client(init.clone(), (stdout, stdin))
            .await
            .map_err(|e| internal(format!("MCP server did not initialize: {e}")))?;
        Ok(Upstream {
            client,
            child,
            delivery,
        })
    }

    /// The session's upstream peer, restarted first when the credential
    /// rotated since it started.
    async fn peer(&self) -> Result<rmcp::Peer<RoleClient>, McpError> {
        let mut state = self.state.lock().await;
        let init = state
            .init
            .clone()
            .ok_or_else(|| internal("session not initialized".to_owned()))?;
        let outdated = state.upstream.as_ref().is_none_or(|u| {
            let current = self.upstreams.delivery.borrow();
            self.upstreams.restart_on_rotate && u.delivery.env_differs(&current)
        });
        if outdated {
            if let Some(Upstream {
                client, mut child, ..
            }) = state.upstream.take()
            {
                tracing::info!("credential rotated: restarting this session's MCP server");
                drop(client);
                let _ = child.stop(self.upstreams.grace_period).await;
            }
            state.upstream = Some(self.start(&init).await?);
        }
        state
            .upstream
            .as_ref()
            .map(|u| u.client.peer().clone())
            .ok_or_else(|| internal("no MCP server".to_owned()))
    }
}

fn internal(message: String) -> McpError {
    McpError::internal_error(message, None)
}

fn upstream_error(e: ServiceError) -> McpError {
    match e {
        ServiceError::McpError(e) => e,
        other => internal(format!("MCP server: {other}")),
    }
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        let mut answer = self.negotiate_initialize(&request)?;
        let upstream = self.start(&request).await?;
        if let Some(info) = upstream.client.peer_info() {
            answer.capabilities = info.capabilities.clone();
            answer.instructions = info.instructions.clone();
            if let Some(server) = &info.server_info {
                answer.server_info = server.clone();
            }
        }
        let mut state = self.state.lock().await;
        state.init = Some(request);
        state.upstream = Some(upstream);
        Ok(answer)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.peer()
            .await?
            .list_tools(request)
            .await
            .map_err(upstream_error)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.peer()
            .await?
            .call_tool_once(request)
            .await
            .map_err(upstream_error)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.peer()
            .await?
            .list_prompts(request)
            .await
            .map_err(upstream_error)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.peer()
            .await?
            .get_prompt_once(request)
            .await
            .map_err(upstream_error)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.peer()
            .await?
            .list_resources(request)
            .await
            .map_err(upstream_error)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.peer()
            .await?
            .list_resource_templates(request)
            .await
            .map_err(upstream_error)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.peer()
            .await?
            .read_resource_once(request)
            .await
            .map_err(upstream_error)
    }
}

/// Serves the bridge on `listener` until SIGTERM/SIGINT, refreshing the
/// credential meanwhile: files are rewritten at once, an environment change
/// restarts each session's child at its next request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    upstreams: Upstreams,
    publish: watch::Sender<Delivery>,
    rotation: crate::rotate::Rotation,
    refresh_interval: std::time::Duration,
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<crate::supervise::Incoming>,
) -> std::io::Result<i32> {
    use crate::supervise::Incoming;
    use tokio::time::Instant;

    let shutdown = tokio_util::sync::CancellationToken::new();
    let upstreams = Arc::new(upstreams);
    let router = ambient_mcp_http::router(
        move || Bridge::new(upstreams.clone()),
        &ambient_mcp_http::HttpConfig::default(),
        shutdown.clone(),
    );
    ambient_daemon::announce_listening("mcp", listener.local_addr()?);
    let server = tokio::spawn(ambient_mcp_http::serve(listener, router, shutdown.clone()));
    let mut backoff = ambient_protocol::backoff::Backoff::new(
        std::time::Duration::from_secs(1),
        refresh_interval.max(std::time::Duration::from_secs(1)),
    );
    let mut next = Instant::now() + refresh_interval;
    'serving: loop {
        tokio::select! {
            Some(sig) = incoming.recv() => match sig {
                Incoming::Stop(_) => break 'serving,
                Incoming::Refresh => next = Instant::now(),
            },
            () = tokio::time::sleep_until(next) => {
                let fetched = tokio::select! {
                    r = rotation.fetch() => r,
                    Some(Incoming::Stop(_)) = incoming.recv() => break 'serving,
                };
                let current = publish.borrow().clone();
                let applied = fetched.map_err(|e| e.to_string()).and_then(|fresh| {
                    crate::rotate::write_files(&rotation.paths, Some(&current), &fresh)
                        .map_err(|e| e.to_string())
                        .map(|()| fresh)
                });
                match applied {
                    Ok(fresh) => {
                        backoff.reset();
                        if fresh != current {
                            tracing::info!("credential rotated");
                            publish.send_replace(fresh);
                        }
                        next = Instant::now() + refresh_interval;
                    }
                    Err(error) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "credential refresh failed; keeping the last good credential");
                        next = Instant::now() + wait;
                    }
                }
            }
        }
    }
    tracing::info!("stopping the MCP bridge");
    shutdown.cancel();
    rotation.exchanger.stop().await;
    match server.await {
        Ok(result) => result.map(|()| 0),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}
