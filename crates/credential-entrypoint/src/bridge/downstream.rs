//! The child's view of the runner: the rmcp client handler on the child's
//! stdio. The requests the child sends on its own (sampling, roots,
//! elicitation) go to the runner's MCP session, relayed with their
//! progress and cancellation ([`super::relay`]). Its notifications go
//! there too, in order, by the child's transport ([`super::in_order`]).

#![allow(deprecated)] // rmcp marks logging, roots and sampling as legacy; MCP clients still use them.

use rmcp::ClientHandler;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientConfig, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequest, ElicitRequestParams, ElicitResult, ListRootsRequest,
    ListRootsResult, ServerRequest,
};
use rmcp::service::{Peer, RequestContext, RoleClient, RoleServer};

use super::relay::{Caller, Routes, relay};

/// Forwards what the child initiates to the runner's session.
#[derive(Debug)]
pub struct Downstream {
    /// The runner's MCP session.
    pub runner: Peer<RoleServer>,
    /// The runner's `initialize`, replayed to every child of the session.
    pub init: ClientConfig,
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
}
