//! The images doing their job in podman: the devserver image serves the REST
//! API to its token; the token server image exchanges a session's encrypted
//! bearer for a session token and serves the session gateway; the ambient-mcp
//! image fetches that token and answers MCP `tools/list` and a `get_session`
//! call (through the gateway) over Streamable HTTP.

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::Built;
use super::http::{self, Answer};
use super::podman::{Container, free_port, podman};

const PROJECTS: &str = "/api/ambient/v1/projects";

/// A devserver container with its HTTP and gRPC ports and its token.
struct Devserver {
    container: Container,
    http: u16,
    grpc: u16,
    token: String,
}

impl Devserver {
    fn start(image: &Built) -> Result<Self> {
        let (http, grpc) = (free_port()?, free_port()?);
        let token = format!("test-{}", std::process::id());
        let http_env = format!("127.0.0.1:{http}");
        let grpc_env = format!("127.0.0.1:{grpc}");
        let container = Container::start(
            image,
            "devserver",
            &[
                ("AMBIENT_DEVSERVER_HTTP_LISTEN", &http_env),
                ("AMBIENT_DEVSERVER_GRPC_LISTEN", &grpc_env),
                ("AMBIENT_DEVSERVER_TOKEN", &token),
            ],
            &[],
            &["--in-memory"],
        )?;
        let dev = Self {
            container,
            http,
            grpc,
            token,
        };
        wait_for(&dev.container, "the devserver", || {
            http::get(dev.http, PROJECTS, Some(&dev.token))
        })?;
        Ok(dev)
    }

    /// `POST /api/ambient/v1/<path>` with the token; the new object's id.
    fn create(&self, path: &str, body: Value) -> Result<String> {
        let auth = format!("Bearer {}", self.token);
        let answer = http::request(
            self.http,
            "POST",
            &format!("/api/ambient/v1/{path}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(&body.to_string()),
        )?;
        let created: Value = serde_json::from_str(&answer.body)
            .with_context(|| format!("POST {path} answered {}", answer.status))?;
        created["id"]
            .as_str()
            .map(String::from)
            .with_context(|| format!("POST {path} answered {}: {created}", answer.status))
    }
}

/// Retries `probe` until it gets any HTTP answer (30 s), else fails with the
/// container's log.
fn wait_for(
    container: &Container,
    what: &str,
    mut probe: impl FnMut() -> Result<Answer>,
) -> Result<Answer> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match probe() {
            Ok(answer) => return Ok(answer),
            Err(e) if Instant::now() > deadline => {
                bail!("{what} did not answer: {e}\n{}", container.logs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

pub fn devserver_serves(image: &Built) -> Result<()> {
    let dev = Devserver::start(image)?;
    let answer = http::get(dev.http, PROJECTS, Some(&dev.token))?;
    if answer.status != 200 || !answer.body.contains("\"items\"") {
        bail!(
            "GET {PROJECTS} with the token answered {}: {}",
            answer.status,
            answer.body
        );
    }
    let anonymous = http::get(dev.http, PROJECTS, None)?.status;
    if anonymous != 401 {
        bail!("GET {PROJECTS} without a token answered {anonymous}, want 401");
    }
    let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &dev.container.0])?;
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_owned();
    let status_file = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid = status_file
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|u| u.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    if uid.iter().any(|u| *u != "65532") {
        bail!("the devserver runs as uid {uid:?}, want 65532");
    }
    podman(&["stop", "-t", "10", &dev.container.0])?;
    let code = podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &dev.container.0,
    ])?;
    let code = String::from_utf8_lossy(&code.stdout).trim().to_owned();
    if code != "0" {
        bail!("the devserver exited {code} on SIGTERM, want 0");
    }
    println!(
        "{:<24} serves {PROJECTS} to its token (401 without), runs as uid 65532, exits 0 on SIGTERM",
        image.name
    );
    Ok(())
}

/// The devserver, token server and ambient-mcp images together: the sidecar
/// exchanges its session's encrypted bearer at the token server (which checks
/// the session over the devserver's gRPC) and serves MCP with the session
/// token, its API calls going through the token server's session gateway.
pub fn mcp_answers(mcp: &Built, token_server: &Built, devserver: &Built, dir: &Path) -> Result<()> {
    let dev = Devserver::start(devserver)?;
    let project = dev.create("projects", json!({"name": "images"}))?;
    let session = dev.create("sessions", json!({"name": "images", "project_id": project}))?;

    // The key and the API token in a directory only the image's user reads.
    let keys = dir.join("keys");
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys)?;
    std::fs::write(keys.join("api-token"), &dev.token)?;
    for path in [keys.join("api-token"), keys.clone()] {
        chown(&path, Some(65532), Some(65532))
            .with_context(|| format!("chown 65532 {}", path.display()))?;
    }
    std::fs::set_permissions(keys.join("api-token"), PermissionsExt::from_mode(0o600))?;
    std::fs::set_permissions(&keys, PermissionsExt::from_mode(0o700))?;
    let volume = format!("{}:/keys", keys.display());
    let print_key = [
        "--key-file",
        "/keys/key.pem",
        "--generate-key",
        "--print-public-key",
    ];
    let mut argv = super::podman::RUN_FLAGS.to_vec();
    argv.extend(["--rm", "-v", &volume, &token_server.repo_tag]);
    argv.extend(print_key);
    let public = String::from_utf8(podman(&argv)?.stdout)?;
    if !public.starts_with("-----BEGIN PUBLIC KEY-----") {
        bail!("the token server image printed no public key: {public:?}");
    }

    // Session tokens (the default): the image creates its signing key in
    // the volume and serves the session gateway, the only API the sidecar
    // is given (a session token opens nothing on the devserver itself).
    let ts_port = free_port()?;
    let gateway_port = free_port()?;
    let listen = format!("127.0.0.1:{ts_port}");
    let gateway_listen = format!("127.0.0.1:{gateway_port}");
    let grpc = format!("127.0.0.1:{}", dev.grpc);
    let api_url = format!("http://127.0.0.1:{}", dev.http);
    let ts = Container::start(
        token_server,
        "token-server",
        &[("TOKEN_SERVER_LISTEN", &listen)],
        &["-v", &volume],
        &[
            "--key-file",
            "/keys/key.pem",
            "--signing-key-file",
            "/keys/signing-key.pem",
            "--generate-signing-key",
            "--api-token-file",
            "/keys/api-token",
            "--api-server-grpc",
            &grpc,
            "--gateway-listen",
            &gateway_listen,
            "--api-server-url",
            &api_url,
        ],
    )?;
    wait_for(&ts, "the token server", || {
        http::get(ts_port, "/healthz", None)
    })?;

    let mcp_port = free_port()?;
    let token_url = format!("http://{listen}/token");
    let api_url = format!("http://{gateway_listen}");
    let bind = format!("127.0.0.1:{mcp_port}");
    let sidecar = Container::start(
        mcp,
        "mcp",
        &[
            ("AMBIENT_CP_TOKEN_URL", &token_url),
            ("AMBIENT_CP_TOKEN_PUBLIC_KEY", &public),
            ("SESSION_ID", &session),
        ],
        &[],
        &["--transport", "sse", "--bind", &bind, "--api-url", &api_url],
    )?;
    let mut client = McpClient::connect(&sidecar, mcp_port)?;
    let tools = client.call("tools/list", json!({}))?;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    if !names.contains(&"get_session") {
        bail!("tools/list has no get_session: {tools}");
    }
    // A tool call reaches the API, through the gateway, with the session
    // token the sidecar fetched.
    let got = client.call(
        "tools/call",
        json!({"name": "get_session", "arguments": {"session_id": session}}),
    )?;
    if got["result"]["isError"] == json!(true) || !got.to_string().contains(&session) {
        bail!(
            "get_session through the ambient-mcp image failed: {got}\n{}",
            sidecar.logs()
        );
    }
    drop(ts);
    println!(
        "{:<24} fetched a session token from the token server image, answers tools/list ({} tools) and get_session through its gateway",
        mcp.name,
        names.len()
    );
    Ok(())
}

/// A minimal MCP client over Streamable HTTP (JSON or SSE answers).
struct McpClient {
    port: u16,
    session: String,
    next_id: i64,
}

impl McpClient {
    fn connect(container: &Container, port: u16) -> Result<Self> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": "xtask-test-images", "version": "0"}}});
        let answer = wait_for(container, "the ambient-mcp image", || {
            post(port, None, &init)
        })?;
        let session = answer
            .header("mcp-session-id")
            .with_context(|| {
                format!(
                    "initialize answered {} without a session: {}\n{}",
                    answer.status,
                    answer.body,
                    container.logs()
                )
            })?
            .to_owned();
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        post(port, Some(&session), &note)?;
        Ok(Self {
            port,
            session,
            next_id: 1,
        })
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = post(self.port, Some(&self.session), &request)?;
        response_of(&answer.body, id)
            .with_context(|| format!("{method} answered {}: {}", answer.status, answer.body))
    }
}

fn post(port: u16, session: Option<&str>, body: &Value) -> Result<Answer> {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        headers.push(("Mcp-Session-Id", s));
    }
    http::request(port, "POST", "/mcp", &headers, Some(&body.to_string()))
}

/// The JSON-RPC response with `id` in a JSON or SSE body.
fn response_of(body: &str, id: i64) -> Option<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return (v["id"] == id).then_some(v);
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v["id"] == id)
}
