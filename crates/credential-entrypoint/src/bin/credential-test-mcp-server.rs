//! `credential-test-mcp-server`: a tiny MCP server over stdio (newline-
//! delimited JSON-RPC) that stands in for a third-party MCP server in the
//! credential entrypoint's tests and benchmarks. Not for production.
//!
//! It reports what it was given: its arguments, its environment, and the
//! content of every file an argument or an environment value points at —
//! through its `report` tool, and (when `TEST_SERVER_REPORT_DIR` is set) as
//! `<dir>/report-<pid>.json`, rewritten every 100 ms so that a file rotated
//! under it shows up. Behaviour knobs (environment):
//! - `TEST_SERVER_SIGNALS_TO_EXIT` (default 1): SIGTERM/SIGINTs it takes to exit;
//! - `TEST_SERVER_EXIT_CODE` (default 0): its exit code after those signals;
//! - `TEST_SERVER_EXIT_AFTER_MS` + `TEST_SERVER_EXIT_CODE`: exit on its own.

use std::collections::BTreeMap;
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
fn report(counts: &Counts) -> Value {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut files = BTreeMap::new();
    for candidate in args.iter().chain(env.values()) {
        let path = Path::new(candidate);
        if path.is_absolute()
            && path.is_file()
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

fn answer(request: &Value, counts: &Counts) -> Option<Value> {
    let id = request.get("id")?.clone();
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let result = match method {
        "initialize" => {
            let version = request
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("2025-03-26");
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "credential-test-mcp-server", "version": env!("CARGO_PKG_VERSION")},
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": [{
            "name": "report",
            "description": "Arguments, environment and pointed-at files of this server.",
            "inputSchema": {"type": "object", "properties": {}},
        }]}),
        "tools/call" => {
            let name = request.pointer("/params/name").and_then(Value::as_str);
            if name != Some("report") {
                return Some(json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32602, "message": "unknown tool"}}));
            }
            json!({"content": [{"type": "text", "text": report(counts).to_string()}]})
        }
        _ => {
            return Some(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "method not found"}}));
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let counts = Arc::new(Mutex::new(Counts::default()));
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
                let Ok(request) = serde_json::from_str::<Value>(&line) else { continue };
                let reply = counts.lock().ok().and_then(|c| answer(&request, &c));
                if let Some(reply) = reply {
                    stdout.write_all(format!("{reply}\n").as_bytes()).await?;
                    stdout.flush().await?;
                }
            }
        }
    }
}
