//! Test support: the real ambient-devserver (restartable on the same ports
//! and data directory), sessions created over gRPC, the runner-client
//! binary run as a one-shot command or as a long-running watcher.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambient_protocol::Secret;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_protocol::v1::{CreateSessionRequest, UpdateSessionStatusRequest};
use ambient_runner_client::{Api, SessionMessages, TokenSource};
use integration_tests::{Daemon, Spec, TempDir};
use serde_json::Value;

/// The static token every test devserver accepts.
pub const TOKEN: &str = "runner-client-test-token-5e1f";

/// The runner-client binary of this package.
pub const CLIENT: &str = env!("CARGO_BIN_EXE_ambient-runner-client");

/// A devserver that can be restarted on the same ports and data directory.
pub struct DevServer {
    pub daemon: Daemon,
    pub data: TempDir,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    ports: Option<(u16, u16)>,
}

impl DevServer {
    /// On a fresh data directory, ephemeral ports, plus `extra` flags.
    pub fn start(extra: &[&str]) -> DevServer {
        Self::start_with_env(extra, &[])
    }

    /// As [`DevServer::start`], with environment variables (its secrets).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> DevServer {
        let data = TempDir::new("rc-devserver");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let daemon = spawn_devserver(&data, &extra, &env, (0, 0));
        let ports = Some((daemon.addr("grpc").port(), daemon.addr("http").port()));
        DevServer {
            daemon,
            data,
            extra,
            env,
            ports,
        }
    }

    /// Stops the server (SIGTERM when `graceful`, else SIGKILL) and starts
    /// it again on the same ports and data directory.
    pub fn restart(&mut self, graceful: bool) {
        if graceful {
            let status = self.daemon.terminate(Duration::from_secs(20));
            assert!(
                status.is_some_and(|s| s.success()),
                "devserver did not stop cleanly: {status:?}"
            );
        } else {
            self.daemon.kill();
        }
        self.daemon = spawn_devserver(
            &self.data,
            &self.extra,
            &self.env,
            self.ports.unwrap_or((0, 0)),
        );
    }

    /// gRPC address.
    pub fn grpc(&self) -> String {
        self.daemon.addr("grpc").to_string()
    }

    pub fn http(&self) -> String {
        self.daemon.addr("http").to_string()
    }
}

fn spawn_devserver(
    data: &TempDir,
    extra: &[String],
    env: &[(String, String)],
    (grpc, http): (u16, u16),
) -> Daemon {
    let mut spec = Spec::new("ambient-devserver").env("AMBIENT_DEVSERVER_TOKEN", TOKEN);
    for (k, v) in env {
        spec = spec.env(k, v);
    }
    Daemon::start(
        spec.args([
            "--grpc-listen".to_owned(),
            format!("127.0.0.1:{grpc}"),
            "--http-listen".to_owned(),
            format!("127.0.0.1:{http}"),
            "--data-dir".to_owned(),
            data.path().display().to_string(),
        ])
        .args(extra.iter().cloned())
        .listener("grpc")
        .listener("http"),
    )
}

/// An API client with a static token.
pub fn api(addr: &str, token: &str) -> Api {
    Api::new(addr, false, None, TokenSource::fixed(Secret::new(token)))
        .unwrap_or_else(|e| panic!("api: {e}"))
}

/// Creates a session; returns its ID.
pub async fn new_session(api: &Api, name: &str) -> String {
    let req = CreateSessionRequest {
        name: name.to_owned(),
        ..CreateSessionRequest::default()
    };
    let s = api
        .unary(req, |ch, req| async move {
            SessionServiceClient::new(ch).create_session(req).await
        })
        .await
        .unwrap_or_else(|e| panic!("create session: {e}"));
    s.metadata.map(|m| m.id).unwrap_or_default()
}

/// Sets a session's phase.
pub async fn set_phase(api: &Api, id: &str, phase: &str) {
    let req = UpdateSessionStatusRequest {
        id: id.to_owned(),
        phase: Some(phase.to_owned()),
        ..UpdateSessionStatusRequest::default()
    };
    api.unary(req, |ch, req| async move {
        SessionServiceClient::new(ch)
            .update_session_status(req)
            .await
    })
    .await
    .unwrap_or_else(|e| panic!("set phase: {e}"));
}

/// Everything stored for `session` up to and including `until_seq`, read
/// through a fresh watch from seq 0.
pub async fn stored(api: &Api, session: &str, until_seq: i64) -> Vec<(i64, String)> {
    use futures::StreamExt as _;
    let mut out = Vec::new();
    let watch = SessionMessages::new(api.clone(), session).watch(0);
    let mut watch = Box::pin(watch);
    let deadline = Duration::from_secs(60);
    while out.last().is_none_or(|(seq, _)| *seq < until_seq) {
        match tokio::time::timeout(deadline, watch.next()).await {
            Ok(Some(Ok(m))) => out.push((m.seq, m.payload)),
            other => panic!("reading stored messages: {other:?}"),
        }
    }
    out
}

/// Runs the client binary with only `env` in its environment (60 s limit).
/// Its stderr (the logs) goes to the suite's leak scan; stdout is the product
/// (`token` prints a token on purpose).
pub fn run_client(args: &[&str], env: &[(&str, &str)]) -> Output {
    register_env_secrets(env);
    let child = Command::new(CLIENT)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {CLIENT}: {e}"));
    let pid = child.id();
    let what = format!("ambient-runner-client {}", args.join(" "));
    let out = integration_tests::output_within(child, Duration::from_secs(60), &what);
    if let Some(mut log) = log_file(pid) {
        let _ = log.write_all(&out.stderr);
    }
    out
}

/// Records the secret values of `env` for the suite's leak scan.
fn register_env_secrets(env: &[(&str, &str)]) {
    for (k, v) in env {
        if *k == "BOT_TOKEN" {
            integration_tests::register_secret(v);
        }
    }
}

/// A log file under `AMBIENT_TEST_ARTIFACTS/logs` (scanned for secrets
/// after the suite), when the suite records them.
fn log_file(pid: u32) -> Option<std::fs::File> {
    let dir = std::env::var_os(integration_tests::ARTIFACTS_VAR)
        .filter(|d| !d.is_empty())
        .map(|d| std::path::PathBuf::from(d).join("logs"))?;
    std::fs::create_dir_all(&dir).ok()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::fs::File::create(dir.join(format!("ambient-runner-client-{pid}-{nanos}.log"))).ok()
}

/// The JSON lines a process printed (stdout), parsed.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The client binary running a long command (e.g. `watch`): its stdout
/// lines and stderr are collected; killed on drop.
pub struct Watcher {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Watcher {
    /// Starts the client with the test's environment plus `env`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Watcher {
        register_env_secrets(env);
        let mut child = Command::new(CLIENT)
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CLIENT}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = log_file(child.id()).map(|f| Arc::new(Mutex::new(f)));
        if let Some(pipe) = child.stdout.take() {
            let lines = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        if let Some(pipe) = child.stderr.take() {
            let text = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(Ok(mut f)) = log.as_ref().map(|f| f.lock()) {
                        let _ = writeln!(f, "{line}");
                    }
                    if let Ok(mut t) = text.lock() {
                        t.push_str(&line);
                        t.push('\n');
                    }
                }
            });
        }
        Watcher {
            child,
            stdout,
            stderr,
        }
    }

    /// Everything on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// (seq, payload) of every message printed so far.
    pub fn lines(&self) -> Vec<(i64, String)> {
        let text = self.stdout.lock().map(|l| l.join("\n")).unwrap_or_default();
        json_lines(&text)
            .iter()
            .map(|v| {
                (
                    v["seq"].as_i64().unwrap_or(-1),
                    v["payload"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Waits (up to 60 s) until at least `n` messages were printed.
    pub async fn wait_lines(&self, n: usize) -> Vec<(i64, String)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = self.lines();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "watcher printed {} of {n} messages; stderr:\n{}",
                lines.len(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 60 s) for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "watcher did not exit; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit().await
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
