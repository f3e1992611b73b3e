//! What bounds the MCP bridge (`--serve-mcp`): who may call it (loopback
//! peers, or the allow-list, whatever `Host` they send), where `:PORT`
//! binds (loopback), how many MCP sessions (each with its own child) it
//! holds at once on both transports (503 beyond), and when an idle
//! Streamable HTTP session is ended (its child stopped).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use integration_tests::mcp::{Kind, McpClient};
use serde_json::json;
use support::{Entrypoint, TEST_SERVER, World};

/// A world and an entrypoint serving MCP on `listen` for a github
/// credential, with `extra` options and environment.
async fn bridge(
    tag: &str,
    listen: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (World, Entrypoint, SocketAddr) {
    let w = World::start(tag).await;
    let id = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_limits_1"}))
        .await;
    let mut args = vec!["--serve-mcp", listen];
    args.extend_from_slice(extra);
    args.push(TEST_SERVER);
    let mut vars = w.sidecar_env("github", &id);
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let reports = w.tmp.path().join("reports");
    let mut ep = Entrypoint::start(&args, &vars, &reports);
    let addr = ep
        .listening("mcp")
        .await
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    (w, ep, addr)
}

/// A non-loopback address of this machine (`hostname -I`).
fn outside_address() -> IpAddr {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .unwrap_or_else(|e| panic!("hostname -I: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .unwrap_or_else(|| panic!("this machine has no non-loopback IPv4 address"))
}

/// `GET /sse` status with `Host: localhost`, from wherever `to` is reached.
async fn sse_status(to: SocketAddr) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .get(format!("http://{to}/sse"))
        .header("Host", "localhost")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /sse at {to}: {e}"))
        .status()
        .as_u16()
}

/// `POST /mcp` with an `initialize` request: the status.
async fn initialize_status(addr: SocketAddr) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{addr}/mcp"))
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                       "clientInfo": {"name": "it", "version": "0"}}
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /mcp: {e}"))
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_only_loopback_and_listed_peers_are_served() {
    let outside = outside_address();
    let (_w, ep, addr) = bridge("ce-peers", "0.0.0.0:0", &[], &[]).await;
    let from_outside = SocketAddr::new(outside, addr.port());
    // The case: `Host: localhost` from a non-loopback peer.
    assert_eq!(sse_status(from_outside).await, 403);
    assert_eq!(
        sse_status(SocketAddr::from(([127, 0, 0, 1], addr.port()))).await,
        200
    );
    assert!(
        ep.stderr().contains("listens beyond loopback"),
        "no warning:\n{}",
        ep.stderr()
    );
    drop(ep);

    // An allow-listed peer is served.
    let listed = format!("{outside}/32");
    let (_w, _ep, addr) = bridge(
        "ce-peers-listed",
        "0.0.0.0:0",
        &["--mcp-allow-peer", &listed],
        &[],
    )
    .await;
    assert_eq!(sse_status(SocketAddr::new(outside, addr.port())).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_alone_means_loopback() {
    let (_w, ep, addr) = bridge("ce-port-only", ":0", &[], &[]).await;
    assert!(addr.ip().is_loopback(), "listening on {addr}");
    assert!(
        ep.stderr().contains("means 127.0.0.1:0 (loopback"),
        "not said:\n{}",
        ep.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_cap_a_new_session_is_503_on_each_transport() {
    let (_w, _ep, addr) = bridge(
        "ce-cap",
        "127.0.0.1:0",
        &[],
        &[("CREDENTIAL_MCP_MAX_SESSIONS", "2")],
    )
    .await;
    let sse = McpClient::connect(Kind::LegacySse, addr).await;
    let streamable = McpClient::connect(Kind::Streamable, addr).await;
    assert_eq!(
        sse_status(addr).await,
        503,
        "a third session over legacy SSE"
    );
    assert_eq!(
        initialize_status(addr).await,
        503,
        "a third session over Streamable HTTP"
    );
    // The open sessions still work.
    for client in [&sse, &streamable] {
        let tools = client.request("tools/list", json!({})).await;
        assert!(tools["result"]["tools"].is_array(), "{tools}");
    }
    // A closed session frees its place.
    streamable.close().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while initialize_status(addr).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the closed session's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when `pid` has exited (gone, or a zombie waiting for its parent).
fn exited(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_streamable_session_is_ended_and_its_child_exits() {
    let (_w, mut ep, addr) = bridge(
        "ce-idle",
        "127.0.0.1:0",
        &[],
        &[("CREDENTIAL_MCP_IDLE_SECONDS", "1")],
    )
    .await;
    let client = McpClient::connect(Kind::Streamable, addr).await;
    let report = ep.report().await;
    let pid = report["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {report}"));
    assert!(!exited(pid), "the session's child is not running");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "the idle session's child still runs:\n{}",
            ep.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The session is gone: its ID is no longer known.
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/mcp"))
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", client.session_id())
        .header("MCP-Protocol-Version", "2025-03-26")
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status().as_u16(), 404);
}
