//! The credential entrypoint in front of the real third-party MCP servers
//! the sidecar images run, at their pinned current releases (installed by
//! `cargo xtask test` under `target/interop-servers`, named by
//! `AMBIENT_TEST_SERVERS`): mcp-atlassian (jira), kubernetes-mcp-server
//! (kubeconfig), workspace-mcp (google) and `@modelcontextprotocol/server-github`
//! (github's stdio stand-in). Each in the reference image's command form and
//! in ours (`--serve-mcp` over the server's stdio mode), the credential
//! fetched from the devserver through the token server, a Python `mcp`
//! client at `/sse` (and `/mcp` where served) listing the tools and calling
//! one, and a rotated credential reaching the server. Nothing leaves the
//! machine: Jira is a local stub that records the credentials it is sent.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use support::{Entrypoint, World};

/// Connects (retrying until the server listens), lists the tools, calls
/// one and prints the outcome; on a line `again` calls it again in the
/// same MCP session.
const PY: &str = r#"
import asyncio, json, sys, time
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
try:
    from mcp.shared.exceptions import MCPError as McpError
except ImportError:
    from mcp.shared.exceptions import McpError

url, kind, tool, args = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])

async def call(session):
    try:
        r = await session.call_tool(tool, args)
    except McpError as e:
        # The server answered with a JSON-RPC error (server-github does so
        # for a failed call): an answer all the same.
        return {"error": True, "text": str(e)}
    text = "".join(getattr(c, "text", "") for c in r.content)
    return {"error": bool(r.is_error), "text": text}

async def once(connected):
    transport = sse_client(url) if kind == "sse" else streamable_http_client(url)
    async with transport as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            init = await session.initialize()
            connected.append(True)
            tools = await session.list_tools()
            first = await call(session)
            print(json.dumps({"server": init.server_info.name, "tools": [t.name for t in tools.tools], "call": first}), flush=True)
            while (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip() == "again":
                print(json.dumps({"call": await call(session)}), flush=True)

async def main():
    deadline = time.monotonic() + 90
    connected = []
    while True:
        try:
            return await once(connected)
        except Exception:
            if connected or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)

asyncio.run(main())
"#;

/// `target/interop-servers` of `cargo xtask test`.
fn servers() -> PathBuf {
    std::env::var_os("AMBIENT_TEST_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "AMBIENT_TEST_SERVERS is not set: run the interop tests through `cargo xtask test`"
            )
        })
}

/// PATH with the real servers' directories first.
fn path_with(dirs: &[PathBuf]) -> (String, String) {
    let mut all: Vec<PathBuf> = dirs.to_vec();
    all.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let joined = std::env::join_paths(all).unwrap_or_else(|e| panic!("{e}"));
    ("PATH".into(), joined.to_string_lossy().into_owned())
}

/// A port free now, for a server that takes `--port N`.
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr()
        .map(|a| a.port().to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A Python MCP client session (see [`PY`]).
struct Client {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Client {
    fn start(url: &str, kind: &str, tool: &str, args: Value) -> Client {
        let python = std::env::var("AMBIENT_TEST_PYTHON").unwrap_or_else(|_| {
            panic!(
                "AMBIENT_TEST_PYTHON is not set: run the interop tests through `cargo xtask test`"
            )
        });
        let mut child = Command::new(python)
            .args(["-c", PY, url, kind, tool, &args.to_string()])
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
        Client { child, lines }
    }

    /// The next printed outcome (up to 120 s: a Python server's first start).
    fn next(&self, ep: &Entrypoint) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| {
                panic!(
                    "no answer from the MCP client ({e}); entrypoint:\n{}",
                    ep.stderr()
                )
            });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Calls the tool again in the same MCP session.
    fn again(&mut self, ep: &Entrypoint) -> Value {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"again\n");
            let _ = stdin.flush();
        }
        self.next(ep)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the entrypoint logged the rotation.
async fn rotated(ep: &Entrypoint) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ep.stderr().contains("credential rotated") {
        assert!(Instant::now() < deadline, "{}", ep.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the entrypoint with SIGTERM; its output holds none of `secrets`.
async fn stop(mut ep: Entrypoint, secrets: &[&str]) {
    ep.signal("TERM");
    let status = ep.exit().await;
    let out = format!("{}{}", ep.stderr(), ep.stdout());
    assert!(status.code().is_some(), "{status}\n{out}");
    for s in secrets {
        assert!(
            !out.contains(s),
            "secret in the entrypoint's output:\n{out}"
        );
    }
}

fn tools(first: &Value) -> Vec<&str> {
    first["tools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

// --- jira: mcp-atlassian against a local Jira stub --------------------------

/// A Jira REST stub: answers every request with one user and records the
/// `Authorization` headers it was sent.
struct JiraStub {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl JiraStub {
    async fn start() -> JiraStub {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let record = record.clone();
            async move {
                if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok())
                    && let Ok(mut seen) = record.lock()
                {
                    seen.push(auth.to_owned());
                }
                axum::Json(json!({
                    "accountId": "acc-1", "name": "stub", "key": "stub",
                    "displayName": "Stub Jira User", "emailAddress": EMAIL, "active": true
                }))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JiraStub { url, seen }
    }

    fn saw(&self, token: &str) -> bool {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{EMAIL}:{token}"))
        );
        self.seen
            .lock()
            .map(|s| s.contains(&basic))
            .unwrap_or(false)
    }
}

const EMAIL: &str = "ci@example.com";

/// The Jira tool that shows the credential arrived: it calls the stub.
fn jira_profile() -> (&'static str, Value) {
    ("jira_get_user_profile", json!({"user_identifier": EMAIL}))
}

async fn jira_world(tag: &str) -> (World, JiraStub, String, Vec<(String, String)>) {
    let w = World::start(tag).await;
    let stub = JiraStub::start().await;
    let id = w
        .credential(json!({"name": "jira", "provider": "jira", "token": "jira-tok-one", "url": stub.url, "email": EMAIL}))
        .await;
    let mut env = w.sidecar_env("jira", &id);
    env.push(path_with(&[servers().join("jira/bin")]));
    env.push(("HOME".into(), w.tmp.path().display().to_string()));
    env.push(("AMBIENT_CREDENTIAL_REFRESH_SECONDS".into(), "1".into()));
    (w, stub, id, env)
}

fn assert_jira_first(first: &Value, stub: &JiraStub, token: &str) {
    let names = tools(first);
    assert!(
        names.contains(&"jira_get_user_profile") && names.contains(&"jira_search"),
        "Jira tools registered only when JIRA_URL and the credential arrived: {first}"
    );
    assert_eq!(first["call"]["error"], json!(false), "{first}");
    assert!(
        first["call"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Stub Jira User")),
        "{first}"
    );
    assert!(stub.saw(token), "the stub never saw {token}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_mcp_atlassian_in_the_reference_form() {
    let (w, stub, id, env) = jira_world("rs-jira-ref").await;
    let port = free_port();
    // The reference image: ENTRYPOINT credential-entrypoint mcp-atlassian,
    // CMD --transport sse --port 8092. Without ALLOW_GLOBAL_CRED_FALLBACK
    // (set by the entrypoint) every request is 401.
    let args = ["mcp-atlassian", "--transport", "sse", "--port", &port];
    let ep = Entrypoint::start(&args, &env, &w.tmp.path().join("r"));
    let (tool, targs) = jira_profile();
    let url = format!("http://127.0.0.1:{port}/sse");
    let first = Client::start(&url, "sse", tool, targs.clone()).next(&ep);
    assert_jira_first(&first, &stub, "jira-tok-one");

    // Rotation restarts the server (its environment changed); a new
    // connection's call carries the new token.
    w.rotate(&id, "jira-tok-two").await;
    rotated(&ep).await;
    let after = Client::start(&url, "sse", tool, targs).next(&ep);
    assert_jira_first(&after, &stub, "jira-tok-two");
    stop(ep, &["jira-tok-one", "jira-tok-two"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_mcp_atlassian_behind_serve_mcp() {
    let (w, stub, id, env) = jira_world("rs-jira-ours").await;
    let args = ["--serve-mcp", "127.0.0.1:0", "mcp-atlassian"];
    let mut ep = Entrypoint::start(&args, &env, &w.tmp.path().join("r"));
    let base = format!("http://{}", ep.listening("mcp").await);
    let (tool, targs) = jira_profile();
    let mut sse = Client::start(&format!("{base}/sse"), "sse", tool, targs.clone());
    let mut http = Client::start(&format!("{base}/mcp"), "http", tool, targs);
    assert_jira_first(&sse.next(&ep), &stub, "jira-tok-one");
    assert_jira_first(&http.next(&ep), &stub, "jira-tok-one");

    // The open sessions survive the rotation; their next call carries the
    // new token.
    w.rotate(&id, "jira-tok-two").await;
    rotated(&ep).await;
    for client in [&mut sse, &mut http] {
        let after = client.again(&ep);
        assert_eq!(after["call"]["error"], json!(false), "{after}");
    }
    assert!(stub.saw("jira-tok-two"), "the new token never reached Jira");
    drop((sse, http));
    stop(ep, &["jira-tok-one", "jira-tok-two"]).await;
}

// --- kubeconfig: kubernetes-mcp-server --------------------------------------

fn kubeconfig(cluster: &str) -> String {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: ctx\n  context:\n    cluster: {cluster}\n    user: u\ncurrent-context: ctx\nusers:\n- name: u\n  user:\n    token: kube-secret-{cluster}\n"
    );
    base64::engine::general_purpose::STANDARD.encode(yaml)
}

fn kube_binary() -> PathBuf {
    let dir = servers().join("npm/node_modules/kubernetes-mcp-server-linux-amd64/bin");
    // The package ships the binary under its platform name; the images
    // call it kubernetes-mcp-server.
    let link = servers().join("npm/kubernetes-mcp-server");
    if !link.exists() {
        let _ = std::os::unix::fs::symlink(dir.join("kubernetes-mcp-server-linux-amd64"), &link);
    }
    link
}

async fn kube_world(tag: &str) -> (World, String, Vec<(String, String)>, String) {
    let w = World::start(tag).await;
    let id = w
        .credential(json!({"name": "k", "provider": "kubeconfig", "token": kubeconfig("ambient-cluster-one")}))
        .await;
    let kubeconfig_path = w.tmp.path().join("kubeconfig").display().to_string();
    let mut env = w.sidecar_env("kubeconfig", &id);
    env.push(path_with(&[servers().join("npm")]));
    env.push(("HOME".into(), w.tmp.path().display().to_string()));
    env.push(("CREDENTIAL_KUBECONFIG_PATH".into(), kubeconfig_path.clone()));
    env.push(("AMBIENT_CREDENTIAL_REFRESH_SECONDS".into(), "1".into()));
    kube_binary();
    (w, id, env, kubeconfig_path)
}

/// `configuration_view` names the cluster of the kubeconfig it was given.
fn names_cluster(outcome: &Value, cluster: &str) -> bool {
    outcome["call"]["error"] == json!(false)
        && outcome["call"]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("name: {cluster}")))
}

/// Calls `configuration_view` on new connections until the rotated
/// kubeconfig shows (the server re-reads the file it was pointed at).
fn until_cluster(url: &str, kind: &str, cluster: &str, ep: &Entrypoint) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Client::start(url, kind, "configuration_view", json!({})).next(ep);
        if names_cluster(&out, cluster) {
            return;
        }
        assert!(Instant::now() < deadline, "{cluster} never shown: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_kubernetes_mcp_server_in_the_reference_form() {
    let (w, id, env, path) = kube_world("rs-kube-ref").await;
    let port = free_port();
    // The reference image's command: the server's own HTTP listener.
    let args = [
        "kubernetes-mcp-server",
        "--port",
        &port,
        "--disable-multi-cluster",
        "--kubeconfig",
        &path,
    ];
    let ep = Entrypoint::start(&args, &env, &w.tmp.path().join("r"));
    let base = format!("http://127.0.0.1:{port}");
    let first = Client::start(
        &format!("{base}/mcp"),
        "http",
        "configuration_view",
        json!({}),
    )
    .next(&ep);
    assert!(tools(&first).contains(&"pods_list"), "{first}");
    assert!(names_cluster(&first, "ambient-cluster-one"), "{first}");
    // What the runner connects to is not served in this form (hence ours).
    let sse = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .get(format!("{base}/sse"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sse.status().as_u16(), 404);

    w.rotate(&id, &kubeconfig("ambient-cluster-two")).await;
    rotated(&ep).await;
    until_cluster(&format!("{base}/mcp"), "http", "ambient-cluster-two", &ep);
    stop(ep, &["kube-secret-ambient-cluster"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_kubernetes_mcp_server_behind_serve_mcp() {
    let (w, id, env, path) = kube_world("rs-kube-ours").await;
    // Ours (the control plane's and our image's): its stdio mode, bridged.
    let args = [
        "--serve-mcp",
        "127.0.0.1:0",
        "kubernetes-mcp-server",
        "--disable-multi-cluster",
        "--kubeconfig",
        &path,
    ];
    let mut ep = Entrypoint::start(&args, &env, &w.tmp.path().join("r"));
    let base = format!("http://{}", ep.listening("mcp").await);
    let mut sse = Client::start(
        &format!("{base}/sse"),
        "sse",
        "configuration_view",
        json!({}),
    );
    let mut http = Client::start(
        &format!("{base}/mcp"),
        "http",
        "configuration_view",
        json!({}),
    );
    for first in [sse.next(&ep), http.next(&ep)] {
        assert!(tools(&first).contains(&"pods_list"), "{first}");
        assert!(names_cluster(&first, "ambient-cluster-one"), "{first}");
    }

    w.rotate(&id, &kubeconfig("ambient-cluster-two")).await;
    rotated(&ep).await;
    // The open sessions see the rewritten file.
    for client in [&mut sse, &mut http] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let after = client.again(&ep);
            if names_cluster(&after, "ambient-cluster-two") {
                break;
            }
            assert!(Instant::now() < deadline, "{after}");
        }
    }
    drop((sse, http));
    stop(ep, &["kube-secret-ambient-cluster"]).await;
}

// --- google and github: servers that can only show their tools offline ------

/// A stdio server behind `mcp-proxy` (the reference form) or behind
/// `--serve-mcp` (ours): tools listed at `/sse` (and `/mcp`), `tool`
/// called (an answer, not a broken session), and after a rotation (the
/// server restarted with the new environment) the same again.
struct Offline {
    tag: &'static str,
    cred: Value,
    rotated_to: &'static str,
    command: &'static [&'static str],
    path: Vec<PathBuf>,
    expect: &'static [&'static str],
    tool: &'static str,
}

async fn offline_server(o: Offline, reference_form: bool) {
    let Offline {
        tag,
        cred,
        rotated_to,
        command,
        path,
        expect,
        tool,
    } = o;
    let w = World::start(tag).await;
    let provider = cred["provider"].as_str().unwrap_or_default().to_owned();
    let first_token = cred["token"].as_str().unwrap_or_default().to_owned();
    let id = w.credential(cred).await;
    let mut env = w.sidecar_env(&provider, &id);
    env.push(path_with(&path));
    env.push(("HOME".into(), w.tmp.path().display().to_string()));
    env.push(("AMBIENT_CREDENTIAL_REFRESH_SECONDS".into(), "1".into()));
    let port = free_port();
    let mut args: Vec<&str> = if reference_form {
        vec!["mcp-proxy", "--pass-environment", "--port", &port, "--"]
    } else {
        vec!["--serve-mcp", "127.0.0.1:0"]
    };
    args.extend(command);
    let mut ep = Entrypoint::start(&args, &env, &w.tmp.path().join("r"));
    let base = if reference_form {
        format!("http://127.0.0.1:{port}")
    } else {
        format!("http://{}", ep.listening("mcp").await)
    };
    let kinds: &[(&str, &str)] = &[("sse", "/sse"), ("http", "/mcp")];
    let check = |out: &Value| {
        let names = tools(out);
        for want in expect {
            assert!(names.contains(want), "{want} missing: {out}");
        }
        assert!(out["call"]["text"].is_string(), "{out}");
    };
    for (kind, at) in kinds {
        check(&Client::start(&format!("{base}{at}"), kind, tool, json!({})).next(&ep));
    }
    w.rotate(&id, rotated_to).await;
    rotated(&ep).await;
    for (kind, at) in kinds {
        check(&Client::start(&format!("{base}{at}"), kind, tool, json!({})).next(&ep));
    }
    stop(ep, &[&first_token, rotated_to]).await;
}

fn google(tag: &'static str) -> Offline {
    Offline {
        tag,
        cred: json!({"name": "g", "provider": "google", "token": "ya29.google-one", "email": "user@example.com"}),
        rotated_to: "ya29.google-two",
        // The server's real entry point (`python -m workspace_mcp`, the
        // reference image's CMD, does not exist in 1.17.1).
        command: &["workspace-mcp", "--permissions", "gmail:send", "drive:full"],
        path: vec![servers().join("google/bin")],
        expect: &["send_gmail_message", "get_drive_file_content"],
        tool: "list_gmail_labels",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_workspace_mcp_behind_mcp_proxy() {
    offline_server(google("rs-google-ref"), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_workspace_mcp_behind_serve_mcp() {
    offline_server(google("rs-google-ours"), false).await;
}

fn github(tag: &'static str) -> Offline {
    Offline {
        tag,
        cred: json!({"name": "gh", "provider": "github", "token": "ghp_real_server_one"}),
        rotated_to: "ghp_real_server_two",
        command: &["mcp-server-github"],
        // mcp-proxy from a server virtualenv, mcp-server-github from npm.
        path: vec![
            servers().join("jira/bin"),
            servers().join("npm/node_modules/.bin"),
        ],
        expect: &["search_repositories", "get_file_contents", "create_issue"],
        tool: "list_commits",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_server_behind_mcp_proxy() {
    offline_server(github("rs-github-ref"), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_server_behind_serve_mcp() {
    offline_server(github("rs-github-ours"), false).await;
}
