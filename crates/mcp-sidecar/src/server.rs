//! The rmcp handler: one [`PlatformServer`] per MCP session, serving the
//! tool catalog and dispatching calls.
//!
//! It declares the logging capability (deprecated by SEP-2577 in the newest
//! MCP revision) because watches without a progress token deliver through
//! logging notifications (daemons.md).
#![allow(deprecated)]

use std::sync::{Arc, LazyLock};

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    SetLevelRequestParams, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use crate::api::Api;
use crate::config::TransportKind;
use crate::tools::{self, Args, ToolError, ToolResult, agents, projects, sessions};
use crate::watch::{self, Subscriptions, WatchCall};

/// Server name and version announced in `initialize` (the reference's).
pub const SERVER_NAME: &str = "ambient-platform";
pub const SERVER_VERSION: &str = "1.0.0";

static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(tools::catalog::tools);

/// The handler of one MCP session.
#[derive(Debug, Clone)]
pub struct PlatformServer {
    api: Api,
    transport: TransportKind,
    subscriptions: Arc<Subscriptions>,
}

impl PlatformServer {
    /// A handler for a new MCP session.
    pub fn new(api: Api, transport: TransportKind, max_subscriptions: usize) -> Self {
        Self {
            api,
            transport,
            subscriptions: Subscriptions::new(max_subscriptions),
        }
    }

    async fn dispatch(
        &self,
        name: &str,
        args: &Args,
        context: &RequestContext<RoleServer>,
    ) -> Option<ToolResult> {
        let api = &self.api;
        Some(match name {
            "list_sessions" => sessions::list(api, args).await,
            "get_session" => sessions::get(api, args).await,
            "create_session" => sessions::create(api, args).await,
            "push_message" => sessions::push_message(api, args).await,
            "patch_session_labels" => sessions::patch_labels(api, args).await,
            "patch_session_annotations" => sessions::patch_annotations(api, args).await,
            "watch_session_messages" if !self.transport.is_http() => Err(ToolError::new(
                "TRANSPORT_NOT_SUPPORTED",
                "watch_session_messages needs the SSE or Streamable HTTP transport; this sidecar serves stdio",
            )),
            "watch_session_messages" => {
                let call = WatchCall {
                    api,
                    subscriptions: &self.subscriptions,
                    peer: context.peer.clone(),
                    progress: context.meta.get_progress_token(),
                    cancelled: context.ct.clone(),
                };
                watch::watch(call, args).await
            }
            "unwatch_session_messages" => watch::unwatch(&self.subscriptions, args),
            "list_agents" => agents::list(api, args).await,
            "get_agent" => agents::get(api, args).await,
            "create_agent" => agents::create(api, args).await,
            "update_agent" => agents::update(api, args).await,
            "patch_agent_annotations" => agents::patch_annotations(api, args).await,
            "list_projects" => projects::list(api, args).await,
            "get_project" => projects::get(api, args).await,
            "patch_project_annotations" => projects::patch_annotations(api, args).await,
            _ => return None,
        })
    }
}

/// A tool result as MCP content: indented JSON text, or the error object.
fn to_result(name: &str, result: ToolResult) -> CallToolResult {
    match result {
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| "null".into());
            CallToolResult::success(vec![ContentBlock::text(text)])
        }
        Err(e) => {
            tracing::debug!(tool = name, code = e.code, reason = e.reason, "tool error");
            CallToolResult::error(vec![ContentBlock::text(e.to_json(name))])
        }
    }
}

impl ServerHandler for PlatformServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new(SERVER_NAME, SERVER_VERSION))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(TOOLS.clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let args = Args(request.arguments.unwrap_or_default());
        tracing::debug!(tool = name, "tool call");
        match self.dispatch(&name, &args, &context).await {
            Some(result) => Ok(to_result(&name, result).into()),
            None => Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}"),
                Some(Value::from(name)),
            )),
        }
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Message notifications are `info`; every level a client may set
        // keeps them (they are data, not diagnostics).
        Ok(())
    }
}
