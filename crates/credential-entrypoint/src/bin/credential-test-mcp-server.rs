//! `credential-test-mcp-server`: a tiny MCP server over stdio (newline-
//! delimited JSON-RPC) that stands in for a third-party MCP server in the
//! credential entrypoint's tests and benchmarks. Not for production.
//!
//! It reports what it was given: its arguments, its environment, and the
//! content of every file (up to 64 KiB) an argument or an environment value
//! points at — through its `report` tool, and (when `TEST_SERVER_REPORT_DIR` is set) as
//! `<dir>/report-<pid>.json`, rewritten every 100 ms so that a file rotated
//! under it shows up. For the MCP bridge's forwarding tests it also has
//! tools that send notifications (`notify`), wait to be cancelled (`wait`),
//! and ask the client things (`ask_roots`, `ask_then_cancel`), and it
//! remembers the log level, resource subscriptions and cancellations it
//! was sent (in `report`, under `mcp`). Behaviour knobs (environment):
//! - `TEST_SERVER_SIGNALS_TO_EXIT` (default 1): SIGTERM/SIGINTs it takes to exit;
//! - `TEST_SERVER_EXIT_CODE` (default 0): its exit code after those signals;
//! - `TEST_SERVER_EXIT_AFTER_MS` + `TEST_SERVER_EXIT_CODE`: exit on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Default)]
struct Counts {
    term: u32,
    int: u32,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Arguments, environment, pointed-at files and signals seen, as JSON.
/// Files larger than this are not reported.
const MAX_REPORTED_FILE: u64 = 64 * 1024;

fn report(counts: &Counts) -> Value {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut files = BTreeMap::new();
    for candidate in args.iter().chain(env.values()) {
        let path = Path::new(candidate);
        // Credential files are small; a variable naming a program (`CARGO`
        // under cargo) or a CA bundle is not one to read at every call.
        if path.is_absolute()
            && std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= MAX_REPORTED_FILE)
            && let Ok(content) = std::fs::read_to_string(path)
        {
            files.insert(candidate.clone(), content);
        }
    }
    json!({
        "pid": std::process::id(),
        "args": args,
        "env": env,
        "files": files,
        "signals": {"term": counts.term, "int": counts.int},
    })
}

fn write_report(dir: &Path, counts: &Counts) {
    let pid = std::process::id();
    let tmp = dir.join(format!(".report-{pid}.tmp"));
    let path = dir.join(format!("report-{pid}.json"));
    if std::fs::write(&tmp, report(counts).to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// What the MCP side of the server remembers (the bridge's forwarding
/// tests read it back through `report`).
#[derive(Debug, Default)]
struct Mcp {
    level: Option<String>,
    subscriptions: BTreeSet<String>,
    /// Request IDs the client cancelled.
    cancelled: Vec<Value>,
    /// Request IDs of the `wait` calls received (so a test knows one is in
    /// flight before it cancels it).
    waiting: Vec<Value>,
    /// The `tools/call` waiting for the client's `roots/list` answer.
    roots_for: Option<Value>,
}

fn reply(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

const TOOLS: [(&str, &str); 5] = [
    (
        "report",
        "Arguments, environment and pointed-at files of this server.",
    ),
    (
        "notify",
        "Sends progress (for the call's progressToken; `progress` notifications, 2 by default), a log message, resources/updated and the list_changed notifications, then answers.",
    ),
    (
        "wait",
        "Answers only when cancelled (never); the cancellation is recorded.",
    ),
    (
        "ask_roots",
        "Asks the client for its roots and answers with them.",
    ),
    (
        "ask_then_cancel",
        "Asks the client to sample a message, then cancels that request.",
    ),
];

/// The messages the server sends for one message it received.
fn handle(msg: &Value, counts: &Counts, mcp: &mut Mcp) -> Vec<Value> {
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let Some(id) = msg.get("id").cloned() else {
        if method == "notifications/cancelled"
            && let Some(rid) = msg.pointer("/params/requestId")
        {
            mcp.cancelled.push(rid.clone());
        }
        return Vec::new();
    };
    if method.is_empty() {
        // The client's answer to one of our requests.
        if id == json!("srv-roots")
            && let Some(call) = mcp.roots_for.take()
        {
            let text = msg
                .get("result")
                .cloned()
                .unwrap_or(Value::Null)
                .to_string();
            return vec![reply(
                call,
                json!({"content": [{"type": "text", "text": text}]}),
            )];
        }
        return Vec::new();
    }
    let result = match method {
        "initialize" => {
            let version = msg
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("2025-03-26");
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": true},
                                 "prompts": {"listChanged": true}, "logging": {}, "completions": {}},
                "serverInfo": {"name": "credential-test-mcp-server", "version": env!("CARGO_PKG_VERSION")},
            })
        }
        "ping" => json!({}),
        "resources/unsubscribe" => {
            if let Some(uri) = msg.pointer("/params/uri").and_then(Value::as_str) {
                mcp.subscriptions.remove(uri);
            }
            json!({})
        }
        "resources/subscribe" => {
            if let Some(uri) = msg.pointer("/params/uri").and_then(Value::as_str) {
                mcp.subscriptions.insert(uri.to_owned());
            }
            json!({})
        }
        "logging/setLevel" => {
            mcp.level = msg
                .pointer("/params/level")
                .and_then(Value::as_str)
                .map(str::to_owned);
            json!({})
        }
        "completion/complete" => {
            let typed = msg
                .pointer("/params/argument/value")
                .and_then(Value::as_str)
                .unwrap_or("");
            let values: Vec<&str> = ["alpha", "beta", "gamma"]
                .into_iter()
                .filter(|v| v.starts_with(typed))
                .collect();
            json!({"completion": {"values": values, "total": values.len(), "hasMore": false}})
        }
        "tools/list" => json!({"tools": TOOLS.iter().map(|(name, description)| json!({
            "name": name, "description": description,
            "inputSchema": {"type": "object", "properties": {}},
        })).collect::<Vec<_>>()}),
        "tools/call" => return call_tool(msg, id, counts, mcp),
        _ => return vec![error(id, -32601, "method not found")],
    };
    vec![reply(id, result)]
}

fn text(value: &Value) -> Value {
    json!({"content": [{"type": "text", "text": value.to_string()}]})
}

fn call_tool(msg: &Value, id: Value, counts: &Counts, mcp: &mut Mcp) -> Vec<Value> {
    let name = msg.pointer("/params/name").and_then(Value::as_str);
    match name {
        Some("report") => {
            let mut r = report(counts);
            r["mcp"] = json!({"level": mcp.level, "subscriptions": mcp.subscriptions,
                "cancelled": mcp.cancelled, "waiting": mcp.waiting});
            vec![reply(id, text(&r))]
        }
        Some("notify") => {
            let mut out = Vec::new();
            let total = msg
                .pointer("/params/arguments/progress")
                .and_then(Value::as_u64)
                .unwrap_or(2);
            if let Some(token) = msg.pointer("/params/_meta/progressToken") {
                for n in 1..=total {
                    out.push(notification(
                        "notifications/progress",
                        json!({"progressToken": token, "progress": n, "total": total}),
                    ));
                }
            }
            out.push(notification(
                "notifications/message",
                json!({"level": "warning", "logger": "test-server", "data": {"note": "hello"}}),
            ));
            for uri in &mcp.subscriptions {
                out.push(notification(
                    "notifications/resources/updated",
                    json!({"uri": uri}),
                ));
            }
            for list in ["resources", "tools", "prompts"] {
                out.push(notification(
                    &format!("notifications/{list}/list_changed"),
                    json!({}),
                ));
            }
            out.push(reply(id, text(&json!({"sent": out.len()}))));
            out
        }
        Some("wait") => {
            mcp.waiting.push(id);
            Vec::new()
        }
        Some("ask_roots") => {
            mcp.roots_for = Some(id);
            vec![json!({"jsonrpc": "2.0", "id": "srv-roots", "method": "roots/list", "params": {}})]
        }
        Some("ask_then_cancel") => vec![
            json!({"jsonrpc": "2.0", "id": "srv-sample", "method": "sampling/createMessage",
                   "params": {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 8}}),
            notification(
                "notifications/cancelled",
                json!({"requestId": "srv-sample", "reason": "changed my mind"}),
            ),
            reply(id, text(&json!({"asked_and_cancelled": true}))),
        ],
        _ => vec![error(id, -32602, "unknown tool")],
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut mcp = Mcp::default();
    let report_dir = std::env::var_os("TEST_SERVER_REPORT_DIR").map(PathBuf::from);
    let signals_to_exit = env_u64("TEST_SERVER_SIGNALS_TO_EXIT", 1) as u32;
    let exit_code = env_u64("TEST_SERVER_EXIT_CODE", 0) as i32;
    let exit_after = std::env::var("TEST_SERVER_EXIT_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let own_exit = async {
        match exit_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(own_exit);
    let snapshot = |c: &Arc<Mutex<Counts>>| {
        if let (Some(dir), Ok(c)) = (&report_dir, c.lock()) {
            write_report(dir, &c);
        }
    };
    loop {
        tokio::select! {
            _ = tick.tick() => snapshot(&counts),
            () = &mut own_exit => {
                snapshot(&counts);
                std::process::exit(exit_code);
            }
            Some(()) = term.recv() => {
                let seen = counts.lock().map(|mut c| { c.term += 1; c.term + c.int }).unwrap_or(1);
                snapshot(&counts);
                if seen >= signals_to_exit {
                    std::process::exit(exit_code);
                }
            }
            Some(()) = int.recv() => {
                let seen = counts.lock().map(|mut c| { c.int += 1; c.term + c.int }).unwrap_or(1);
                snapshot(&counts);
                if seen >= signals_to_exit {
                    std::process::exit(exit_code);
                }
            }
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { return Ok(()) };
                let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
                let out = counts.lock().map(|c| handle(&msg, &c, &mut mcp)).unwrap_or_default();
                for m in out {
                    stdout.write_all(format!("{m}\n").as_bytes()).await?;
                }
                stdout.flush().await?;
            }
        }
    }
}
