//! The MCP test client (`integration_tests::mcp`) plus what is particular
//! to ambient-mcp: its server name, and its tool results (pretty JSON text;
//! errors as `{"code", "reason", "operation_id"}`).

use std::net::SocketAddr;
use std::sync::Arc;

pub use integration_tests::mcp::{Kind, McpClient};
use serde_json::{Value, json};

/// Connects and initialises; the server must be ambient-mcp.
pub async fn connect(kind: Kind, addr: SocketAddr) -> Arc<McpClient> {
    let client = McpClient::connect(kind, addr).await;
    let init = client.init_result();
    assert_eq!(init["serverInfo"]["name"], "ambient-platform", "{init}");
    client
}

/// Tool calls with ambient-mcp's result shapes.
#[allow(async_fn_in_trait)]
pub trait Tools {
    fn client(&self) -> &McpClient;

    /// Calls a tool: Ok(result JSON) or Err(the tool error object).
    async fn call(&self, tool: &str, args: Value) -> Result<Value, Value> {
        self.call_with(tool, args, None).await
    }

    /// Calls a tool that must succeed; its result.
    async fn ok(&self, tool: &str, args: Value) -> Value {
        self.call(tool, args)
            .await
            .unwrap_or_else(|e| panic!("{tool} failed: {e}"))
    }

    /// Calls a tool that must fail; its error code.
    async fn err_code(&self, tool: &str, args: Value) -> String {
        match self.call(tool, args).await {
            Ok(v) => panic!("{tool} succeeded: {v}"),
            Err(e) => e["code"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Calls a tool with a `progressToken`.
    async fn call_with(
        &self,
        tool: &str,
        args: Value,
        progress: Option<&str>,
    ) -> Result<Value, Value> {
        let mut params = json!({"name": tool, "arguments": args});
        if let Some(token) = progress {
            params["_meta"] = json!({"progressToken": token});
        }
        let resp = self.client().request("tools/call", params).await;
        let result = &resp["result"];
        assert!(resp.get("error").is_none(), "{tool}: protocol error {resp}");
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let parsed: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{tool}: {e}: {text}"));
        if result["isError"] == json!(true) {
            assert_eq!(parsed["operation_id"], tool, "{parsed}");
            Err(parsed)
        } else {
            Ok(parsed)
        }
    }
}

impl Tools for McpClient {
    fn client(&self) -> &McpClient {
        self
    }
}
