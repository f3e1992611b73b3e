//! Test support: the real binaries (ambient-devserver, ambient-token-server,
//! ambient-mcp) on ephemeral loopback ports, a REST client for setup and
//! checks, and a small MCP client over both HTTP transports (legacy SSE and
//! Streamable HTTP) written from the MCP specification, so the sidecar is
//! exercised over real sockets exactly as a runner would.

#![allow(dead_code)]

pub mod mcp;

use std::time::{Duration, Instant};

use integration_tests::{Daemon, Spec, TempDir};
use serde_json::{Value, json};

pub const API_TOKEN: &str = "mcp-it-api-token-5f3e";

/// Starts a devserver accepting `tokens`, persisted in `data_dir` when given
/// (so it can be restarted), on `ports` (grpc, http) when given.
pub fn devserver(tokens: &[&str], data_dir: Option<&TempDir>, ports: Option<(u16, u16)>) -> Daemon {
    let (grpc, http) = ports.unwrap_or((0, 0));
    let mut spec = Spec::new("ambient-devserver")
        .args([
            "--grpc-listen".to_owned(),
            format!("127.0.0.1:{grpc}"),
            "--http-listen".to_owned(),
            format!("127.0.0.1:{http}"),
        ])
        .listener("grpc")
        .listener("http");
    spec = match data_dir {
        Some(d) => spec.arg("--data-dir").arg(d.path().to_string_lossy()),
        None => spec.arg("--in-memory"),
    };
    if !tokens.is_empty() {
        spec = spec.env("AMBIENT_DEVSERVER_TOKEN", tokens.join(","));
    }
    Daemon::start(spec)
}

/// Starts the sidecar with the HTTP transports and the static token.
pub fn sidecar_static(api: &str, token: &str) -> Daemon {
    Daemon::start(
        Spec::new("ambient-mcp")
            .args([
                "--transport",
                "http",
                "--bind",
                "127.0.0.1:0",
                "--api-url",
                api,
            ])
            .args([
                "--log-level",
                "ambient_mcp=trace,ambient_mcp_http=trace,info",
            ])
            .env("AMBIENT_TOKEN", token)
            .listener("mcp"),
    )
}

/// The REST API, for setup and checks.
#[derive(Debug, Clone)]
pub struct Rest {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Rest {
    pub fn new(http_addr: std::net::SocketAddr, token: &str) -> Rest {
        Rest {
            base: format!("http://{http_addr}/api/ambient/v1"),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("REST {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        self.ok(reqwest::Method::GET, path, None).await
    }

    /// Creates a project; returns its ID.
    pub async fn project(&self, name: &str) -> String {
        let p = self
            .ok(
                reqwest::Method::POST,
                "/projects",
                Some(json!({"name": name})),
            )
            .await;
        s(&p["id"])
    }

    /// Creates a session in `project`; returns its ID.
    pub async fn session(&self, project: &str, name: &str) -> String {
        let body = json!({"name": name, "project_id": project});
        let v = self
            .ok(reqwest::Method::POST, "/sessions", Some(body))
            .await;
        s(&v["id"])
    }

    /// Pushes a message as the runner would; returns its seq.
    pub async fn push(&self, session: &str, payload: &str) -> i64 {
        let body = json!({"payload": payload, "event_type": "user"});
        let v = self
            .ok(
                reqwest::Method::POST,
                &format!("/sessions/{session}/messages"),
                Some(body),
            )
            .await;
        v["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {v}"))
    }

    /// Drives a session to `phase` through the status endpoint.
    pub async fn set_phase(&self, session: &str, phase: &str) {
        self.ok(
            reqwest::Method::PATCH,
            &format!("/sessions/{session}/status"),
            Some(json!({"phase": phase})),
        )
        .await;
    }
}

/// Checks a labels/annotations field after a client-side merge: exactly
/// `want`, since the API replaces the whole object on PATCH (wire.md §2), so
/// a key deleted by the merge must be gone.
pub fn assert_object(field: &Value, want: Value) {
    assert_eq!(object_field(field), want, "after the client-side merge");
}

/// A JSON string value.
pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// A labels/annotations field as an object.
pub fn object_field(v: &Value) -> Value {
    match v {
        Value::String(t) if !t.is_empty() => serde_json::from_str(t).unwrap_or(Value::Null),
        Value::Object(_) => v.clone(),
        _ => json!({}),
    }
}

/// Polls `f` until it returns Some, up to 10 s.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails if any of `secrets` appears in `logs`.
pub fn assert_no_secret(logs: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret appears in the logs:\n{logs}"
        );
    }
}
