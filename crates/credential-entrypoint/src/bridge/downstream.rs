//! The child's view of the runner: the rmcp client handler on the child's
//! stdio. What the child sends on its own goes to the runner's MCP session:
//! notifications (progress, logging, `resources/updated`, the three
//! `list_changed`) and requests (sampling, roots, elicitation), the latter
//! relayed with their progress and cancellation ([`super::relay`]).

#![allow(deprecated)] // rmcp marks logging, roots and sampling as legacy; MCP clients still use them.

use rmcp::ClientHandler;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientConfig, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequest, ElicitRequestParams, ElicitResult, ListRootsRequest,
    ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam,
    ResourceUpdatedNotificationParam, ServerRequest,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, RoleClient, RoleServer};

use super::relay::{Caller, Routes, relay};

/// Forwards what the child initiates to the runner's session.
#[derive(Debug)]
pub struct Downstream {
    /// The runner's MCP session.
    pub runner: Peer<RoleServer>,
    /// The runner's `initialize`, replayed to every child of the session.
    pub init: ClientConfig,
    /// Progress of runner → child requests: the bridge's token → the runner's.
    pub to_child: Routes,
    /// Progress of child → runner requests: the bridge's token → the child's.
    pub to_runner: Routes,
}

fn unexpected() -> McpError {
    McpError::internal_error("unexpected answer from the MCP client", None)
}

impl Downstream {
    async fn ask(
        &self,
        request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, McpError> {
        let caller = Caller {
            meta: &context.meta,
            cancelled: &context.ct,
        };
        relay(&self.runner, request, caller, &self.to_runner).await
    }
}

impl ClientHandler for Downstream {
    fn get_info(&self) -> ClientConfig {
        self.init.clone()
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self.ask(request, &context).await? {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(unexpected()),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest {
            method: Default::default(),
            extensions: Default::default(),
        });
        match self.ask(request, &context).await? {
            ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.ask(request, &context).await? {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn on_progress(
        &self,
        mut params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        // Only for a runner request still in flight, under the runner's token.
        if let Some(forward) = self.to_child.forward(&params.progress_token) {
            params.progress_token = forward.caller_token.clone();
            let _ = self.runner.notify_progress(params).await;
            drop(forward);
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.runner.notify_logging_message(params).await;
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.runner.notify_resource_updated(params).await;
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.runner.notify_resource_list_changed().await;
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.runner.notify_tool_list_changed().await;
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.runner.notify_prompt_list_changed().await;
    }
}
