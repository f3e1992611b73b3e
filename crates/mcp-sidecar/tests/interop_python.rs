//! Interop with an MCP client we did not write: the Python `mcp` SDK (from
//! the virtualenv `cargo xtask test` prepares, `AMBIENT_TEST_PYTHON`) lists
//! the 16 tools and calls `list_projects`, `create_session` without a name,
//! `get_session` and `patch_session_labels` (add, then delete by empty
//! value), over legacy SSE and over Streamable HTTP.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::{API_TOKEN, Rest, assert_object, devserver, s, sidecar_static};

const PY: &str = r#"
import asyncio, json, sys
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

base, kind, project = sys.argv[1:4]

def body(result):
    return {"error": bool(result.is_error), "value": json.loads(result.content[0].text)}

async def main():
    transport = sse_client(f"{base}/sse") if kind == "sse" else streamable_http_client(f"{base}/mcp")
    out = {}
    async with transport as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            init = await session.initialize()
            out["server"] = init.server_info.name
            tools = await session.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            out["projects"] = body(await session.call_tool("list_projects", {}))
            created = body(await session.call_tool("create_session", {"project_id": project, "prompt": "Python says hi"}))
            out["created"] = created
            sid = created["value"]["id"]
            out["got"] = body(await session.call_tool("get_session", {"session_id": sid}))
            await session.call_tool("patch_session_labels", {"session_id": sid, "labels": {"lang": "py", "tmp": "1"}})
            out["labels"] = body(await session.call_tool("patch_session_labels", {"session_id": sid, "labels": {"tmp": ""}}))
            out["missing"] = body(await session.call_tool("get_session", {"session_id": "no-such-session"}))
    print(json.dumps(out))

asyncio.run(main())
"#;

fn python() -> String {
    std::env::var("AMBIENT_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("AMBIENT_TEST_PYTHON is not set: run the interop tests through `cargo xtask test`")
    })
}

async fn python_client(kind: &str) {
    let dev = devserver(&[API_TOKEN], None, None);
    let rest = Rest::new(dev.addr("http"), API_TOKEN);
    let project = rest.project(&format!("py-{kind}")).await;
    let mcp = sidecar_static(&format!("http://{}", dev.addr("http")), API_TOKEN);
    let base = format!("http://{}", mcp.addr("mcp"));
    let out = Command::new(python())
        .args(["-c", PY, &base, kind, &project])
        .output()
        .unwrap_or_else(|e| panic!("python: {e}"));
    assert!(
        out.status.success(),
        "python failed:\n{}\nsidecar:\n{}",
        String::from_utf8_lossy(&out.stderr),
        mcp.logs()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["server"], "ambient-platform");
    let tools = v["tools"].as_array().map(Vec::len);
    assert_eq!(tools, Some(16), "{v}");
    assert_eq!(v["projects"]["error"], false, "{v}");
    assert!(
        v["projects"]["value"]["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|p| p["id"] == project.as_str()))
    );
    assert_eq!(v["created"]["error"], false, "{v}");
    assert_eq!(v["created"]["value"]["name"], "python-says-hi");
    assert_eq!(v["created"]["value"]["phase"], "Pending");
    let sid = s(&v["created"]["value"]["id"]);
    assert_eq!(v["got"]["value"]["id"], sid.as_str());
    assert_object(&v["labels"]["value"]["labels"], json!({"lang": "py"}));
    assert_eq!(v["missing"]["error"], true);
    assert_eq!(v["missing"]["value"]["code"], "SESSION_NOT_FOUND");
    let stored = rest.get(&format!("/sessions/{sid}")).await;
    assert_object(&stored["labels"], json!({"lang": "py"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mcp_client_over_legacy_sse() {
    python_client("sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mcp_client_over_streamable_http() {
    python_client("http").await;
}
