//! The MCP bridge (`--serve-mcp`) with a client we did not write: the
//! Python `mcp` SDK (from the virtualenv `cargo xtask test` prepares,
//! `AMBIENT_TEST_PYTHON`) lists and calls the test server's tools over
//! legacy SSE and Streamable HTTP; each session has its own child; a
//! rotated credential reaches an open session (its child restarted, its
//! `initialize` replayed) without the client noticing.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Entrypoint, TEST_SERVER, World};

const PY: &str = r#"
import asyncio, json, sys
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

base, kind = sys.argv[1:3]

async def report(session):
    result = await session.call_tool("report", {})
    value = json.loads(result.content[0].text)
    return {"pid": value["pid"], "token": value["env"].get("GITHUB_TOKEN")}

async def main():
    transport = sse_client(f"{base}/sse") if kind == "sse" else streamable_http_client(f"{base}/mcp")
    async with transport as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            first = await report(session)
            print(json.dumps({"server": init.server_info.name, "tools": [t.name for t in tools.tools], "report": first}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            print(json.dumps({"report": await report(session)}), flush=True)

asyncio.run(main())
"#;

fn python() -> String {
    std::env::var("AMBIENT_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("AMBIENT_TEST_PYTHON is not set: run the interop tests through `cargo xtask test`")
    })
}

/// A Python MCP client session kept open between two reports.
struct PyClient {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PyClient {
    fn start(base: &str, kind: &str) -> PyClient {
        let mut child = Command::new(python())
            .args(["-c", PY, base, kind])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python: {e}"));
        let (tx, lines) = std::sync::mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        PyClient { child, lines }
    }

    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no answer from the Python client: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    fn again(&mut self) -> Value {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"\n");
            let _ = stdin.flush();
        }
        let out = self.next();
        let _ = self.child.wait();
        out
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_over_sse_and_streamable_http_with_rotation() {
    let w = World::start("ce-bridge").await;
    let id = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_bridge_one"}))
        .await;
    let args = [
        "--serve-mcp",
        "127.0.0.1:0",
        "--refresh-interval",
        "1",
        TEST_SERVER,
    ];
    let reports = w.tmp.path().join("reports");
    let mut ep = Entrypoint::start(&args, &w.sidecar_env("github", &id), &reports);
    let base = format!("http://{}", ep.listening("mcp").await);

    let (sse, http) = (
        PyClient::start(&base, "sse"),
        PyClient::start(&base, "http"),
    );
    let (mut sse, mut http) = (sse, http);
    let (a, b) = (sse.next(), http.next());
    for first in [&a, &b] {
        assert_eq!(
            first["server"],
            json!("credential-test-mcp-server"),
            "{first}"
        );
        assert_eq!(
            first["tools"],
            json!(["report", "notify", "wait", "ask_roots", "ask_then_cancel"]),
            "{first}"
        );
        assert_eq!(first["report"]["token"], json!("ghp_bridge_one"), "{first}");
    }
    assert_ne!(
        a["report"]["pid"], b["report"]["pid"],
        "one child per session"
    );

    w.rotate(&id, "ghp_bridge_two").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ep.stderr().contains("credential rotated") {
        assert!(Instant::now() < deadline, "{}", ep.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (client, before) in [(&mut sse, &a), (&mut http, &b)] {
        let after = client.again();
        assert_eq!(after["report"]["token"], json!("ghp_bridge_two"), "{after}");
        assert_ne!(
            after["report"]["pid"], before["report"]["pid"],
            "not restarted"
        );
    }

    ep.signal("TERM");
    let status = ep.exit().await;
    let stderr = ep.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("ghp_bridge"),
        "secret in stderr:\n{stderr}"
    );
}
