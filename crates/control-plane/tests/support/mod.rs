//! Test support: the fake Kubernetes API (in this process), the real
//! devserver and the real control plane (child processes), and REST helpers.
#![allow(dead_code)]

pub mod exchange;
pub mod fake_api;
pub mod fake_kube;
pub mod render;
pub mod test_runtime;

use std::time::{Duration, Instant};

use integration_tests::{Daemon, Spec, TempDir};
use serde_json::{Value, json};

#[allow(unused_imports)]
pub use fake_kube::{Container, FakeKube};

pub const TOKEN: &str = "devserver-test-token";

/// A running devserver plus a REST client for it.
pub struct DevServer {
    pub daemon: Daemon,
    pub data: Option<TempDir>,
    http: reqwest::Client,
}

impl DevServer {
    pub fn start() -> DevServer {
        Self::start_with(None, None)
    }

    /// On `data` (persistent) and fixed ports when restarting.
    pub fn start_with(data: Option<TempDir>, ports: Option<(u16, u16)>) -> DevServer {
        Self::start_full(data, ports, &[])
    }

    /// With extra flags.
    pub fn start_full(
        data: Option<TempDir>,
        ports: Option<(u16, u16)>,
        extra: &[&str],
    ) -> DevServer {
        Self::spawn(data, ports, extra, None)
    }

    /// With the OIDC client `id` (its secret from the environment, as the
    /// devserver wants it) and extra flags.
    pub fn start_oidc(id: &str, secret: &str, extra: &[&str]) -> DevServer {
        let mut args = vec!["--oidc-client-id", id];
        args.extend_from_slice(extra);
        Self::spawn(None, None, &args, Some(secret))
    }

    fn spawn(
        data: Option<TempDir>,
        ports: Option<(u16, u16)>,
        extra: &[&str],
        oidc_secret: Option<&str>,
    ) -> DevServer {
        let (grpc, http) = ports.map_or(
            ("127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned()),
            |(g, h)| (format!("127.0.0.1:{g}"), format!("127.0.0.1:{h}")),
        );
        let mut spec = Spec::new("ambient-devserver")
            .args(["--grpc-listen", &grpc, "--http-listen", &http])
            .env("AMBIENT_DEVSERVER_TOKEN", TOKEN)
            .args(extra.iter().copied())
            .listener("grpc")
            .listener("http");
        if let Some(secret) = oidc_secret {
            spec = spec.env("AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET", secret);
        }
        spec = match &data {
            Some(d) => spec.args(["--data-dir", &d.path().display().to_string()]),
            None => spec.arg("--in-memory"),
        };
        DevServer {
            daemon: Daemon::start(spec),
            data,
            http: reqwest::Client::new(),
        }
    }

    /// Base URL of the REST side.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.daemon.addr("http"))
    }

    pub fn grpc(&self) -> String {
        self.daemon.addr("grpc").to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/api/ambient/v1{path}", self.daemon.addr("http"))
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Creates project `name` and returns its ID (also its namespace: IDs
    /// are lowercase). The control plane runs no session of a project the
    /// API does not know.
    pub async fn project(&self, name: &str) -> String {
        let (code, p) = self
            .call(
                reqwest::Method::POST,
                "/projects",
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(code, 201, "{p}");
        p["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Creates a session in `project` (an ID); its empty phase counts as Pending,
    /// so the control plane provisions it. Returns its ID.
    pub async fn new_session(&self, project: &str, name: &str) -> String {
        let body = json!({"name": name, "project_id": project});
        let (code, s) = self
            .call(reqwest::Method::POST, "/sessions", Some(body))
            .await;
        assert_eq!(code, 201, "{s}");
        s["id"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn phase(&self, id: &str) -> String {
        let (_, s) = self
            .call(reqwest::Method::GET, &format!("/sessions/{id}"), None)
            .await;
        s["phase"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn session(&self, id: &str) -> Value {
        self.call(reqwest::Method::GET, &format!("/sessions/{id}"), None)
            .await
            .1
    }
}

/// Starts the control plane against `dev` and `kube` with the static token.
pub fn control_plane(
    dev: &DevServer,
    kube: &FakeKube,
    dir: &TempDir,
    identity: &str,
    leader_election: bool,
) -> Daemon {
    let auth = [("AMBIENT_API_TOKEN", TOKEN)];
    control_plane_with(dev, kube, dir, identity, leader_election, &auth)
}

/// Starts the control plane with the given auth environment.
pub fn control_plane_with(
    dev: &DevServer,
    kube: &FakeKube,
    dir: &TempDir,
    identity: &str,
    leader_election: bool,
    auth: &[(&str, &str)],
) -> Daemon {
    let kubeconfig = kube.kubeconfig(dir.path());
    let token_url = "http://ambient-control-plane.ambient-code.svc:8080/token";
    let mut spec = Spec::new("ambient-control-plane")
        .env("AMBIENT_GRPC_SERVER_ADDR", dev.grpc())
        .env("AMBIENT_API_SERVER_URL", dev.http_url())
        .env("KUBECONFIG", kubeconfig.display().to_string())
        .env("CP_RUNTIME_NAMESPACE", "ambient-code")
        .env("CP_TOKEN_LISTEN_ADDR", "127.0.0.1:0")
        .env("CP_GATEWAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("CP_HEALTH_LISTEN_ADDR", "127.0.0.1:0")
        .env("CP_TOKEN_URL", token_url)
        .env("MCP_IMAGE", "mcp:test")
        .env("ANTHROPIC_API_KEY", "sk-ant-NEVER-PRINTED")
        .env("POD_NAME", identity)
        .env("CP_LEADER_ELECTION", leader_election.to_string())
        .env("LOG_LEVEL", "info,ambient_control_plane=debug")
        .listener("token server")
        .listener("health");
    // Last, so a test can override any default above (e.g. `LOG_LEVEL`).
    for (k, v) in auth {
        spec = spec.env(*k, *v);
    }
    Daemon::start(spec)
}

/// Polls `check` until it is true or `limit` passes; panics with `what`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until the session reaches `phase`.
pub async fn wait_phase(dev: &DevServer, id: &str, phase: &str) {
    eventually(
        &format!("session {id} phase {phase}"),
        Duration::from_secs(30),
        || async { dev.phase(id).await == phase },
    )
    .await;
}

/// Waits until no Pod, Service, ServiceAccount or Secret of session `id` is left.
pub async fn wait_cleaned(kube: &FakeKube, id: &str, what: &str) {
    let selector = format!("ambient-code.io/session-id={id}");
    eventually(what, Duration::from_secs(30), || async {
        ["pods", "services", "serviceaccounts", "secrets"]
            .iter()
            .all(|p| kube.names(p, &selector).is_empty())
    })
    .await;
}

pub fn safe(id: &str) -> String {
    id.to_lowercase().chars().take(40).collect()
}

pub fn pod_name(id: &str) -> String {
    format!("session-{}-runner", safe(id))
}

pub fn running() -> Value {
    json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
}

pub fn exited(code: i32) -> Value {
    json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}})
}
