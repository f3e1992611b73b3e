//! `cargo xtask bench credential-bridge`: with release binaries on loopback
//! (ambient-devserver, ambient-token-server, credential-entrypoint and
//! credential-test-mcp-server),
//!
//! - idle RSS of `credential-entrypoint --serve-mcp` vs PyPI `mcp-proxy`
//!   bridging the same test server, side by side in one run (the bridge
//!   process only; mcp-proxy has already started its one child, ours starts
//!   a child per MCP session); target ≤ 0.2×;
//! - rotation latency: a credential PATCHed in the API → the running child
//!   (restarted, env provider) reports the new token, with
//!   `--refresh-interval 1` (so the figure is bounded by that interval);
//! - tool-call latency through each, side by side: the same client (a
//!   Streamable HTTP MCP client at `/mcp`) calling the same child's `report`
//!   tool, calls alternating between the two bridges (p50, p99);
//! - per-session memory, after those calls: the bridge with its child
//!   (RSS of the process tree), ours with ambient-mcp's idle RSS added
//!   (`--ambient-mcp-rss-kib`, from `bench mcp-sidecar`), as one line an
//!   operator multiplies by sessions (`plots`).
//!
//! The credential-entrypoint measured is `--sidecar PATH` (xtask passes the
//! binary its image ships: the sidecar build profile), else the one in
//! `--bin-dir`.
//!
//! Arguments: `--bin-dir DIR [--sidecar PATH] --mcp-proxy PATH --out FILE [--rotations N]
//! [--calls N] [--ambient-mcp-rss-kib KIB]`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use integration_tests::bench::{Proc, percentile, rss_kib, start_announced};
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TOKEN: &str = "bridge-bench-api-token";

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bin_dir: PathBuf,
    #[arg(long)]
    sidecar: Option<PathBuf>,
    #[arg(long)]
    mcp_proxy: PathBuf,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    rotations: usize,
    /// Tool calls through each bridge.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// ambient-mcp's idle RSS, added to ours in the per-session memory.
    #[arg(long)]
    ambient_mcp_rss_kib: Option<u64>,
}

/// A Streamable HTTP MCP client of one session at `url` (`…/mcp`).
struct McpClient {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    next: u64,
}

impl McpClient {
    async fn connect(http: &reqwest::Client, url: String) -> Result<Self> {
        let mut c = Self {
            http: http.clone(),
            url,
            session: None,
            next: 0,
        };
        c.request(
            "initialize",
            json!({"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "bridge-bench", "version": "0"}}),
        )
        .await?;
        let resp = c
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(format!("{}: initialized: HTTP {}", c.url, resp.status()).into());
        }
        Ok(c)
    }

    fn post(&self, body: Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req
    }

    /// One request; its result (the answer may come as JSON or as SSE).
    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next += 1;
        let id = self.next;
        let resp = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(format!("{}: {method}: HTTP {}", self.url, resp.status()).into());
        }
        if let Some(s) = resp.headers().get("mcp-session-id") {
            self.session = Some(s.to_str()?.to_owned());
        }
        let text = resp.text().await?;
        let answer = std::iter::once(text.as_str())
            .chain(text.lines().filter_map(|l| l.strip_prefix("data:")))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v["id"] == json!(id))
            .ok_or_else(|| format!("{}: {method}: no answer in {text:?}", self.url))?;
        if !answer["error"].is_null() {
            return Err(format!("{}: {method}: {}", self.url, answer["error"]).into());
        }
        Ok(answer["result"].clone())
    }
}

/// RSS of `pid` and every process below it, in KiB.
fn tree_rss_kib(pid: u32) -> Result<u64> {
    let mut total = rss_kib(pid)?;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            // A process that exited meanwhile holds no memory.
            total += tree_rss_kib(child).unwrap_or(0);
        }
    }
    Ok(total)
}

/// Tool calls alternating between the two clients: each one's latencies.
async fn alternate_calls(
    a: &mut McpClient,
    b: &mut McpClient,
    calls: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    let call = json!({"name": "report", "arguments": {}});
    for i in 0..calls + 20 {
        for (client, lat) in [(&mut *a, &mut la), (&mut *b, &mut lb)] {
            let t0 = Instant::now();
            client.request("tools/call", call.clone()).await?;
            // The first 20 of each warm up.
            if i >= 20 {
                lat.push(t0.elapsed());
            }
        }
    }
    la.sort();
    lb.sort();
    Ok((la, lb))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Starts `cmd` and waits for `<name> listening on <addr>` for each name.
fn start(cmd: &mut Command, names: &[&str]) -> Result<(Proc, Vec<String>)> {
    let (proc, addrs, _) = start_announced(cmd, names)?;
    Ok((proc, addrs))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn api(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http
        .request(method, format!("{base}/api/ambient/v1{path}"))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    if !resp.status().is_success() {
        return Err(format!("{path}: HTTP {}", resp.status()).into());
    }
    Ok(resp.json().await?)
}

/// The newest report of the test server in `dir` with `token`.
fn report_with(dir: &Path, token: &str) -> Option<Value> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("report-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|s| serde_json::from_str::<Value>(&s).ok())
        .find(|r| r["env"]["GITHUB_TOKEN"] == json!(token))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = |n: &str| args.bin_dir.join(n);
    let entrypoint = args
        .sidecar
        .clone()
        .unwrap_or_else(|| bin("credential-entrypoint"));
    println!(
        "credential-entrypoint measured: {} ({:.1} MiB on disk)",
        entrypoint.display(),
        std::fs::metadata(&entrypoint)?.len() as f64 / (1024.0 * 1024.0)
    );
    let tmp = std::env::temp_dir().join(format!("bridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let (_dev, dev) = start(
        Command::new(bin("ambient-devserver"))
            .args(["--in-memory", "--grpc-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .env("AMBIENT_DEVSERVER_TOKEN", TOKEN),
        &["grpc", "http"],
    )?;
    let key = tmp.join("key.pem");
    let token_file = tmp.join("token");
    std::fs::write(&token_file, TOKEN)?;
    let (_ts, ts) = start(
        Command::new(bin("ambient-token-server"))
            .args(["--listen", "127.0.0.1:0", "--generate-key", "--key-file"])
            .arg(&key)
            .arg("--api-token-file")
            .arg(&token_file)
            .args(["--api-server-grpc", &dev[0]])
            // The bridge's own cost is measured, against the API directly.
            .args(["--session-identity", "platform"]),
        &["token server"],
    )?;
    let pem = std::fs::read_to_string(&key)?;
    let public = ambient_protocol::keys::PrivateKey::from_pem(&pem)?
        .public_key()
        .to_pem();
    let http = reqwest::Client::builder().no_proxy().build()?;
    let api_url = format!("http://{}", dev[1]);
    let session = api(
        &http,
        &api_url,
        reqwest::Method::POST,
        "/sessions",
        Some(json!({"name": "bench"})),
    )
    .await?;
    let sid = session["id"].as_str().unwrap_or_default().to_owned();
    api(
        &http,
        &api_url,
        reqwest::Method::POST,
        &format!("/sessions/{sid}/start"),
        None,
    )
    .await?;
    let cred = api(
        &http,
        &api_url,
        reqwest::Method::POST,
        "/credentials",
        Some(json!({"name": "gh", "provider": "github", "token": "ghp_bench_0"})),
    )
    .await?;
    let cid = cred["id"].as_str().unwrap_or_default().to_owned();
    let token_url = format!("http://{}/token", ts[0]);
    let sidecar_env = [
        ("SESSION_ID", sid.as_str()),
        ("CREDENTIAL_PROVIDER", "github"),
        ("AMBIENT_API_URL", api_url.as_str()),
        ("AMBIENT_CP_TOKEN_URL", token_url.as_str()),
        ("AMBIENT_CP_TOKEN_PUBLIC_KEY", public.as_str()),
    ];
    let ids = json!({"github": cid}).to_string();
    let server = bin("credential-test-mcp-server");

    // Idle RSS, side by side.
    let (ours, ours_addr) = start(
        Command::new(&entrypoint)
            .args(["--serve-mcp", "127.0.0.1:0"])
            .arg(&server)
            .envs(sidecar_env)
            .env("CREDENTIAL_IDS", &ids),
        &["mcp"],
    )?;
    let port = free_port()?;
    let theirs = Proc(
        // Its child gets the environment ours gets (credential-entrypoint
        // passes its own on): the same child answers the same `report`.
        Command::new(&args.mcp_proxy)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--pass-environment", "--"])
            .arg(&server)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("mcp-proxy did not listen".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ours_kib = rss_kib(ours.id())?;
    let theirs_kib = rss_kib(theirs.id())?;
    let ratio = ours_kib as f64 / theirs_kib as f64;
    println!(
        "idle RSS: credential-entrypoint --serve-mcp {ours_kib} KiB, mcp-proxy {theirs_kib} KiB, ratio {ratio:.3} (target <= 0.2)"
    );

    // Tool calls through each, same child and client, alternating; then
    // the memory of each bridge with its child.
    let mut ours_mcp = McpClient::connect(&http, format!("http://{}/mcp", ours_addr[0])).await?;
    let mut theirs_mcp = McpClient::connect(&http, format!("http://127.0.0.1:{port}/mcp")).await?;
    let (ours_lat, theirs_lat) =
        alternate_calls(&mut ours_mcp, &mut theirs_mcp, args.calls).await?;
    let (ours50, ours99) = (
        us(percentile(&ours_lat, 0.5)),
        us(percentile(&ours_lat, 0.99)),
    );
    let (theirs50, theirs99) = (
        us(percentile(&theirs_lat, 0.5)),
        us(percentile(&theirs_lat, 0.99)),
    );
    println!(
        "tool call (report) through credential-entrypoint: p50 {ours50:.0} µs, p99 {ours99:.0} µs; through mcp-proxy: p50 {theirs50:.0} µs, p99 {theirs99:.0} µs ({} calls each, alternating)",
        ours_lat.len()
    );
    let ours_tree_kib = tree_rss_kib(ours.id())?;
    let theirs_tree_kib = tree_rss_kib(theirs.id())?;
    let ours_session_kib = ours_tree_kib + args.ambient_mcp_rss_kib.unwrap_or(0);
    println!(
        "per-session memory (RSS, after the calls): credential-entrypoint + child {ours_tree_kib} KiB{}, mcp-proxy + child {theirs_tree_kib} KiB",
        match args.ambient_mcp_rss_kib {
            Some(k) => format!(" (+ ambient-mcp idle {k} KiB = {ours_session_kib} KiB)"),
            None => " (ambient-mcp not given)".into(),
        }
    );
    drop((ours, theirs));

    // Rotation latency: env provider, child restarted.
    let reports = tmp.join("reports");
    std::fs::create_dir_all(&reports)?;
    let mut child_cmd = Command::new(&entrypoint);
    child_cmd
        .args(["--refresh-interval", "1"])
        .arg(&server)
        .envs(sidecar_env)
        .env("CREDENTIAL_IDS", &ids)
        .env("TEST_SERVER_REPORT_DIR", &reports)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _supervised = Proc(child_cmd.spawn()?);
    let mut latencies = Vec::new();
    for n in 1..=args.rotations {
        let token = format!("ghp_bench_{n}");
        let t0 = Instant::now();
        api(
            &http,
            &api_url,
            reqwest::Method::PATCH,
            &format!("/credentials/{cid}"),
            Some(json!({"token": token})),
        )
        .await?;
        while report_with(&reports, &token).is_none() {
            if t0.elapsed() > Duration::from_secs(30) {
                return Err("rotation never reached the child".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(t0.elapsed());
    }
    let ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    let max = ms.iter().copied().fold(0.0, f64::max);
    println!(
        "rotation → child (restart, --refresh-interval 1): mean {mean:.0} ms, max {max:.0} ms over {} rotations",
        ms.len()
    );
    let _ = std::fs::remove_dir_all(&tmp);
    if let Some(out) = args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            &out,
            serde_json::to_string_pretty(&json!({
                "idle_rss_kib": {"credential_entrypoint": ours_kib, "mcp_proxy": theirs_kib, "ratio": ratio},
                "rotation_ms": {"refresh_interval_s": 1, "mean": mean, "max": max, "samples": ms},
                "tool_call_us": {
                    "calls": ours_lat.len(),
                    "credential_entrypoint": {"p50": ours50, "p99": ours99},
                    "mcp_proxy": {"p50": theirs50, "p99": theirs99},
                },
                "session_rss_kib": {
                    "credential_entrypoint_and_child": ours_tree_kib,
                    "ambient_mcp_idle": args.ambient_mcp_rss_kib,
                    "ours": ours_session_kib,
                    "mcp_proxy_and_child": theirs_tree_kib,
                },
                "plots": [memory_plot(ours_session_kib, theirs_tree_kib, args.ambient_mcp_rss_kib.is_some())],
                // The figures `cargo xtask bench all` reports.
                "figures": [
                    {"name": "idle RSS vs mcp-proxy", "value": ratio, "unit": "x", "target": 0.2, "better": "lower"},
                    {"name": "rotation -> child, mean", "value": mean, "unit": "ms", "target": null, "better": "lower"},
                    {"name": "tool call p50 vs mcp-proxy", "value": ours50 / theirs50, "unit": "x", "target": null, "better": "lower"},
                    {"name": "tool call p50, credential-entrypoint", "value": ours50, "unit": "µs", "target": null, "better": "lower"},
                    {"name": "tool call p50, mcp-proxy", "value": theirs50, "unit": "µs", "target": null, "better": "lower"},
                    {"name": "tool call p99, credential-entrypoint", "value": ours99, "unit": "µs", "target": null, "better": "lower"},
                    {"name": "tool call p99, mcp-proxy", "value": theirs99, "unit": "µs", "target": null, "better": "lower"},
                    {"name": "per-session memory vs mcp-proxy + child", "value": ours_session_kib as f64 / theirs_tree_kib as f64, "unit": "x", "target": null, "better": "lower"},
                ],
            }))?,
        )?;
    }
    Ok(())
}

/// Per-session sidecar memory, multiplied by sessions: one line each.
fn memory_plot(ours_kib: u64, theirs_kib: u64, with_ambient_mcp: bool) -> Value {
    let line = |kib: u64| -> Vec<Value> {
        [1u32, 10, 100, 1000]
            .iter()
            .map(|n| json!([n, f64::from(*n) * kib as f64 / 1024.0]))
            .collect()
    };
    let ours = if with_ambient_mcp {
        "ambient-mcp + credential-entrypoint + child"
    } else {
        "credential-entrypoint + child"
    };
    json!({
        "id": "sidecar-memory",
        "title": format!(
            "per-session sidecar memory: {:.1} MiB (ours) vs {:.1} MiB (mcp-proxy) per session",
            ours_kib as f64 / 1024.0,
            theirs_kib as f64 / 1024.0
        ),
        "x": {"label": "sessions", "unit": "", "log": true},
        "y": {"label": "sidecar memory (RSS)", "unit": "MiB", "log": true},
        "series": [
            {"name": ours, "points": line(ours_kib)},
            {"name": "mcp-proxy + child", "points": line(theirs_kib)},
        ],
        "levels": [],
    })
}
