//! Shared helpers of the devserver's black-box tests: start the real binary on
//! ephemeral loopback ports, talk to it over REST (reqwest) and gRPC (tonic).

#![allow(dead_code)]

use std::time::Duration;

use ambient_protocol::v1::project_service_client::ProjectServiceClient;
use ambient_protocol::v1::project_settings_service_client::ProjectSettingsServiceClient;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use integration_tests::{Daemon, Spec};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The static token every test server accepts.
pub const TOKEN: &str = "test-token-0123456789";

/// Starts `ambient-devserver` with `--in-memory` (unless `extra` names a
/// `--data-dir`), one static token, and ephemeral ports.
pub fn start(extra: &[&str]) -> Daemon {
    start_with_env(extra, &[])
}

/// As [`start`], with environment variables besides `AMBIENT_DEVSERVER_TOKEN`
/// = [`TOKEN`] (which one of `env` may replace).
pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut spec = Spec::new("ambient-devserver")
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("AMBIENT_DEVSERVER_TOKEN", TOKEN)
        .listener("grpc")
        .listener("http");
    for (k, v) in env {
        spec = spec.env(*k, *v);
    }
    if !extra.contains(&"--data-dir") {
        spec = spec.arg("--in-memory");
    }
    Daemon::start(spec.args(extra.iter().copied()))
}

/// Adds `authorization: Bearer <token>` to every gRPC call.
#[derive(Debug, Clone)]
pub struct Bearer(pub Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            let value = format!("Bearer {t}")
                .parse()
                .map_err(|_| tonic::Status::internal("bad token"))?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }
}

pub type Sessions = SessionServiceClient<InterceptedService<Channel, Bearer>>;
pub type Projects = ProjectServiceClient<InterceptedService<Channel, Bearer>>;
pub type Settings = ProjectSettingsServiceClient<InterceptedService<Channel, Bearer>>;

async fn channel(d: &Daemon) -> Channel {
    let url = format!("http://{}", d.addr("grpc"));
    Channel::from_shared(url)
        .unwrap_or_else(|e| panic!("{e}"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to gRPC: {e}"))
}

/// A `SessionService` client with the given token (`None`: no header).
pub async fn sessions_with(d: &Daemon, token: Option<&str>) -> Sessions {
    SessionServiceClient::with_interceptor(channel(d).await, Bearer(token.map(str::to_owned)))
}

/// A `SessionService` client with [`TOKEN`].
pub async fn sessions(d: &Daemon) -> Sessions {
    sessions_with(d, Some(TOKEN)).await
}

/// A `ProjectService` client with [`TOKEN`].
pub async fn projects(d: &Daemon) -> Projects {
    ProjectServiceClient::with_interceptor(channel(d).await, Bearer(Some(TOKEN.into())))
}

/// A `ProjectSettingsService` client with [`TOKEN`].
pub async fn settings(d: &Daemon) -> Settings {
    ProjectSettingsServiceClient::with_interceptor(channel(d).await, Bearer(Some(TOKEN.into())))
}

/// A REST client of `/api/ambient/v1`.
#[derive(Debug, Clone)]
pub struct Rest {
    pub base: String,
    pub token: Option<String>,
    pub client: reqwest::Client,
}

impl Rest {
    pub fn new(d: &Daemon) -> Self {
        Self::with_token(d, Some(TOKEN))
    }

    pub fn with_token(d: &Daemon, token: Option<&str>) -> Self {
        Rest {
            base: format!("http://{}", d.addr("http")),
            token: token.map(str::to_owned),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/api/ambient/v1/{path}", self.base)
        };
        let mut rb = self
            .client
            .request(method, url)
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    /// Sends and returns status and JSON body (`Null` when empty).
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_else(|e| panic!("{e}"));
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "non-JSON body ({status}): {e}: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::POST, path)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.request(Method::PATCH, path).json(&body))
            .await
    }

    /// Sends a raw body with `Content-Type: application/json`.
    pub async fn raw(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        self.send(
            self.request(method, path)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// Creates a session and returns it (asserting 201).
    pub async fn create_session(&self, body: Value) -> Value {
        let (status, s) = self.post("sessions", body).await;
        assert_eq!(status, StatusCode::CREATED, "{s}");
        s
    }
}

/// Asserts `body` is the wire.md §2 error body.
pub fn assert_error_body(body: &Value) {
    assert_eq!(body["kind"], "Error", "not an error body: {body}");
    for key in ["id", "href", "code", "reason", "operation_id"] {
        assert!(body[key].is_string(), "error body lacks {key}: {body}");
    }
}

/// A string field of a JSON object.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

/// Runs a future with a generous guard against hangs (not a timing assertion).
pub async fn guard<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 60 s"))
}

/// Reads SSE frames (`id:` / `data:`) from a streaming response until `n`
/// frames have arrived; returns `(id, data JSON)` pairs.
pub async fn read_sse(resp: &mut reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut frames = Vec::new();
    let mut buf = String::new();
    while frames.len() < n {
        let chunk = guard("SSE frame", resp.chunk())
            .await
            .unwrap_or_else(|e| panic!("SSE read: {e}"))
            .unwrap_or_else(|| panic!("SSE stream ended after {} frames", frames.len()));
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                let json = serde_json::from_str(&data).unwrap_or_else(|e| panic!("SSE data: {e}"));
                frames.push((id, json));
            }
        }
    }
    frames
}

/// How long a child process of a test may run.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `cmd` to completion with its output captured, failing the test (and
/// killing the process) if it has not exited within [`CHILD_DEADLINE`]: a
/// binary that wrongly starts serving must not hang the suite.
pub fn run_to_exit(cmd: &mut std::process::Command, what: &str) -> std::process::Output {
    use std::process::Stdio;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    integration_tests::output_within(child, CHILD_DEADLINE, what)
}
