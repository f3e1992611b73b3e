//! The MCP bridge (`--serve-mcp ADDR`): the child speaks MCP over stdio;
//! the entrypoint serves it over HTTP — legacy SSE at `/sse` + `/message`
//! (what the runner connects to) and Streamable HTTP at `/mcp` — through
//! the transport shared with ambient-mcp (`ambient-mcp-http`), so a
//! sidecar image needs no Python `mcp-proxy`.
//!
//! Each MCP session gets its own child, started on the session's
//! `initialize` with the current credential and ended with the session.
//! Everything MCP carries is forwarded both ways: requests (tools, prompts,
//! resources, `completion/complete`, `resources/subscribe`/`unsubscribe`,
//! `logging/setLevel` to the child; sampling, roots, elicitation to the
//! runner) with their progress and cancellation ([`relay`]), and
//! notifications (progress, logging, `resources/updated`, `list_changed`,
//! `cancelled`, `roots/list_changed`) ([`downstream`]).
//!
//! When the credential's environment rotates, the session keeps going: its
//! next request finds the child outdated, stops it, starts a new one with
//! the new credential, replays the session's `initialize`, log level and
//! resource subscriptions to it, and goes on. `POST /refresh` ([`refresh`])
//! and SIGHUP re-fetch the credential on demand.

#![allow(deprecated)] // rmcp marks logging, subscribe and roots as legacy; MCP clients still use them.

mod downstream;
mod in_order;
mod refresh;
mod relay;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest,
    CompleteRequestParams, CompleteResult, GetPromptRequest, GetPromptRequestParams,
    GetPromptResponse, InitializeRequestParams, InitializeResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequest, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerResult, SetLevelRequest, SetLevelRequestParams,
    SubscribeRequest, SubscribeRequestParams, UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{
    NotificationContext, Peer, RequestContext, RoleClient, RoleServer, RunningService,
};
use rmcp::{ErrorData as McpError, ServerHandler};
use tokio::sync::{Mutex, watch};

use crate::child::{BaseEnv, Child};
use crate::mapping::Delivery;
use downstream::Downstream;
use relay::{Caller, Routes, relay, relay_error};

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
    client: RunningService<RoleClient, Downstream>,
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
    /// Progress routes of runner → child requests (see [`relay`]).
    to_child: Routes,
    /// Progress routes of child → runner requests.
    to_runner: Routes,
}

/// What a session replays to a restarted child.
#[derive(Debug, Default)]
struct Session {
    init: Option<InitializeRequestParams>,
    runner: Option<Peer<RoleServer>>,
    upstream: Option<Upstream>,
    level: Option<SetLevelRequestParams>,
    subscriptions: BTreeSet<String>,
}

impl Bridge {
    pub fn new(upstreams: Arc<Upstreams>) -> Self {
        Self {
            upstreams,
            state: Mutex::new(Session::default()),
            to_child: Routes::default(),
            to_runner: Routes::default(),
        }
    }

    /// Starts a child with the current delivery and initializes it with
    /// the session's own `initialize` parameters.
    async fn start(
        &self,
        init: &InitializeRequestParams,
        runner: Peer<RoleServer>,
    ) -> Result<Upstream, McpError> {
        let delivery = self.upstreams.delivery.borrow().clone();
        let vars = self.upstreams.base.with(&delivery);
        let (child, stdin, stdout) = Child::spawn_stdio(&self.upstreams.command, &vars)
            .map_err(|e| internal(format!("cannot start the MCP server: {e}")))?;
        tracing::info!(pid = child.id(), "MCP server started for a session");
        let transport = in_order::wrap(
            rmcp::transport::async_rw::AsyncRwTransport::new_client(stdout, stdin),
            runner.clone(),
            self.to_child.clone(),
        );
        let handler = Downstream {
            runner,
            init: init.clone(),
            to_runner: self.to_runner.clone(),
        };
        let client = rmcp::service::serve_client(handler, transport)
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
    async fn peer(&self) -> Result<Peer<RoleClient>, McpError> {
        let mut state = self.state.lock().await;
        let (Some(init), Some(runner)) = (state.init.clone(), state.runner.clone()) else {
            return Err(internal("session not initialized".to_owned()));
        };
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
            let upstream = self.start(&init, runner).await?;
            replay(upstream.client.peer(), &state).await;
            state.upstream = Some(upstream);
        }
        state
            .upstream
            .as_ref()
            .map(|u| u.client.peer().clone())
            .ok_or_else(|| internal("no MCP server".to_owned()))
    }

    /// Relays a runner request to the child.
    async fn forward(
        &self,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, McpError> {
        let peer = self.peer().await?;
        let caller = Caller {
            meta: &context.meta,
            cancelled: &context.ct,
        };
        relay(&peer, request, caller, &self.to_child).await
    }
}

/// Gives a restarted child the session's log level and subscriptions.
async fn replay(child: &Peer<RoleClient>, session: &Session) {
    if let Some(level) = &session.level
        && let Err(error) = child.set_level(level.clone()).await
    {
        tracing::warn!(%error, "the restarted MCP server refused the session's log level");
    }
    for uri in &session.subscriptions {
        if let Err(error) = child
            .subscribe(SubscribeRequestParams::new(uri.clone()))
            .await
        {
            tracing::warn!(%error, "the restarted MCP server refused a resource subscription");
        }
    }
}

fn internal(message: String) -> McpError {
    McpError::internal_error(message, None)
}

fn unexpected() -> McpError {
    internal("unexpected answer from the MCP server".to_owned())
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
        let upstream = self.start(&request, context.peer.clone()).await?;
        if let Some(info) = upstream.client.peer_info() {
            answer.capabilities = info.capabilities.clone();
            answer.instructions = info.instructions.clone();
            if let Some(server) = &info.server_info {
                answer.server_info = server.clone();
            }
        }
        let mut state = self.state.lock().await;
        state.init = Some(request);
        state.runner = Some(context.peer);
        state.upstream = Some(upstream);
        Ok(answer)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let peer = self.peer().await?;
        peer.list_tools(request).await.map_err(relay_error)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(request));
        match self.forward(request, &context).await? {
            ServerResult::CallToolResult(r) => Ok(CallToolResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
            ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
            _ => Err(unexpected()),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let peer = self.peer().await?;
        peer.list_prompts(request).await.map_err(relay_error)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(request));
        match self.forward(request, &context).await? {
            ServerResult::GetPromptResult(r) => Ok(GetPromptResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
            _ => Err(unexpected()),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let peer = self.peer().await?;
        peer.list_resources(request).await.map_err(relay_error)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let peer = self.peer().await?;
        peer.list_resource_templates(request)
            .await
            .map_err(relay_error)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request));
        match self.forward(request, &context).await? {
            ServerResult::ReadResourceResult(r) => Ok(ReadResourceResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(ReadResourceResponse::InputRequired(r)),
            _ => Err(unexpected()),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let request = ClientRequest::CompleteRequest(CompleteRequest::new(request));
        match self.forward(request, &context).await? {
            ServerResult::CompleteResult(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let forwarded = ClientRequest::SetLevelRequest(SetLevelRequest::new(request.clone()));
        self.forward(forwarded, &context).await?;
        self.state.lock().await.level = Some(request);
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let uri = request.uri.clone();
        let forwarded = ClientRequest::SubscribeRequest(SubscribeRequest::new(request));
        self.forward(forwarded, &context).await?;
        self.state.lock().await.subscriptions.insert(uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let uri = request.uri.clone();
        let forwarded = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request));
        self.forward(forwarded, &context).await?;
        self.state.lock().await.subscriptions.remove(&uri);
        Ok(())
    }

    async fn on_progress(
        &self,
        mut notification: ProgressNotificationParam,
        _: NotificationContext<RoleServer>,
    ) {
        // Progress of a child → runner request still in flight, under the child's token.
        let Some(forward) = self.to_runner.forward(&notification.progress_token) else {
            return;
        };
        notification.progress_token = forward.caller_token.clone();
        if let Ok(peer) = self.peer().await {
            let _ = peer.notify_progress(notification).await;
        }
        drop(forward);
    }

    async fn on_roots_list_changed(&self, _: NotificationContext<RoleServer>) {
        if let Ok(peer) = self.peer().await {
            let _ = peer.notify_roots_list_changed().await;
        }
    }
}

/// Serves the bridge on `listener` until SIGTERM/SIGINT, refreshing the
/// credential meanwhile: files are rewritten at once, an environment change
/// restarts each session's child at its next request. SIGHUP and `POST
/// /refresh` refresh now, at most once per [`crate::rotate::ON_DEMAND_WINDOW`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ambient_mcp_http::HttpConfig,
    upstreams: Upstreams,
    publish: watch::Sender<Delivery>,
    rotation: crate::rotate::Rotation,
    refresh_interval: std::time::Duration,
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<crate::supervise::Incoming>,
) -> std::io::Result<i32> {
    use crate::rotate::{ON_DEMAND_WINDOW, OnDemand};
    use crate::supervise::Incoming;
    use tokio::time::Instant;

    let shutdown = tokio_util::sync::CancellationToken::new();
    let upstreams = Arc::new(upstreams);
    let (asks_tx, mut asks) = tokio::sync::mpsc::channel::<refresh::Ask>(8);
    let router = ambient_mcp_http::router(
        move || Bridge::new(upstreams.clone()),
        &config,
        shutdown.clone(),
    )
    .merge(refresh::router(asks_tx, config.guard.clone()));
    ambient_daemon::announce_listening("mcp", listener.local_addr()?);
    let server = tokio::spawn(ambient_mcp_http::serve(listener, router, shutdown.clone()));
    let mut backoff = ambient_protocol::backoff::Backoff::new(
        std::time::Duration::from_secs(1),
        refresh_interval.max(std::time::Duration::from_secs(1)),
    );
    let mut on_demand = OnDemand::new(ON_DEMAND_WINDOW);
    let mut next = Instant::now() + refresh_interval;
    'serving: loop {
        let mut reply: Option<refresh::Ask> = None;
        tokio::select! {
            Some(sig) = incoming.recv() => match sig {
                Incoming::Stop(_) => break 'serving,
                Incoming::Refresh => match on_demand.admit(Instant::now()) {
                    Ok(()) => next = Instant::now(),
                    Err(wait) => tracing::info!(retry_in_s = wait.as_secs(), "SIGHUP: a refresh ran recently; not refreshing again yet"),
                },
            },
            Some(ask) = asks.recv() => match on_demand.admit(Instant::now()) {
                Ok(()) => reply = Some(ask),
                Err(wait) => {
                    let _ = ask.send(refresh::Outcome::TooSoon(wait));
                    continue 'serving;
                }
            },
            () = tokio::time::sleep_until(next) => {}
        }
        if reply.is_none() && Instant::now() < next {
            continue;
        }
        let applied = tokio::select! {
            r = apply(&rotation, &publish) => r,
            Some(Incoming::Stop(_)) = incoming.recv() => break 'serving,
        };
        let outcome = match applied {
            Ok(changed) => {
                backoff.reset();
                next = Instant::now() + refresh_interval;
                refresh::Outcome::Done { changed }
            }
            Err(error) => {
                let wait = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "credential refresh failed; keeping the last good credential");
                next = Instant::now() + wait;
                refresh::Outcome::Failed(error)
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
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

/// One refresh: fetch, write changed files, publish a changed delivery
/// (children restart at their next request). `Ok(true)` when it changed.
async fn apply(
    rotation: &crate::rotate::Rotation,
    publish: &watch::Sender<Delivery>,
) -> Result<bool, String> {
    let fresh = rotation.fetch().await.map_err(|e| e.to_string())?;
    let current = publish.borrow().clone();
    crate::rotate::write_files(&rotation.paths, Some(&current), &fresh)
        .map_err(|e| e.to_string())?;
    if fresh == current {
        return Ok(false);
    }
    tracing::info!("credential rotated");
    publish.send_replace(fresh);
    Ok(true)
}
