//! The world of a credential sidecar on loopback: the real
//! ambient-devserver (API), the real ambient-token-server (exchange), a
//! live session, credentials created through REST, and the entrypoint
//! running `credential-test-mcp-server`, which reports what it got.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::{Daemon, Spec, TempDir};
use serde_json::{Value, json};

pub const API_TOKEN: &str = "it-ce-api-token-5f0e";
pub const ENTRYPOINT: &str = env!("CARGO_BIN_EXE_credential-entrypoint");
pub const TEST_SERVER: &str = env!("CARGO_BIN_EXE_credential-test-mcp-server");

/// Devserver + token server + a live session.
pub struct World {
    pub dev: Daemon,
    pub ts: Daemon,
    pub tmp: TempDir,
    pub public_pem: String,
    pub token_url: String,
    pub api_url: String,
    pub session_id: String,
    http: reqwest::Client,
}

impl World {
    pub async fn start(tag: &str) -> World {
        let dev = Daemon::start(
            Spec::new("ambient-devserver")
                .args(["--in-memory", "--grpc-listen", "127.0.0.1:0"])
                .args(["--http-listen", "127.0.0.1:0"])
                .env("AMBIENT_DEVSERVER_TOKEN", API_TOKEN)
                .listener("grpc")
                .listener("http"),
        );
        let tmp = TempDir::new(tag);
        let key = tmp.path().join("token-key.pem");
        let token_file = tmp.path().join("api-token");
        std::fs::write(&token_file, API_TOKEN).unwrap_or_else(|e| panic!("{e}"));
        let ts = Daemon::start(
            Spec::new("ambient-token-server")
                .args(["--listen", "127.0.0.1:0", "--generate-key", "--key-file"])
                .arg(key.to_string_lossy())
                .arg("--api-token-file")
                .arg(token_file.to_string_lossy())
                .args(["--api-server-grpc", &dev.addr("grpc").to_string()])
                .args(["--session-cache-ms", "200"])
                // The entrypoint's fetch and rotation are under test, with
                // the API directly; through the session gateway in
                // crates/session-gateway/tests/clients.rs.
                .args(["--session-identity", "platform"])
                .listener("token server"),
        );
        let pem = std::fs::read_to_string(&key).unwrap_or_else(|e| panic!("{e}"));
        let public_pem = ambient_protocol::keys::PrivateKey::from_pem(&pem)
            .unwrap_or_else(|e| panic!("{e}"))
            .public_key()
            .to_pem();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut world = World {
            token_url: format!("http://{}/token", ts.addr("token server")),
            api_url: format!("http://{}", dev.addr("http")),
            dev,
            ts,
            tmp,
            public_pem,
            session_id: String::new(),
            http,
        };
        let (status, body) = world
            .call(
                reqwest::Method::POST,
                "/sessions",
                Some(json!({"name": tag})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        world.session_id = body["id"].as_str().unwrap_or_default().to_owned();
        let (status, body) = world
            .call(
                reqwest::Method::POST,
                &format!("/sessions/{}/start", world.session_id),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        world
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/ambient/v1{path}", self.api_url))
            .bearer_auth(API_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Creates a credential; returns its ID.
    pub async fn credential(&self, body: Value) -> String {
        if let Some(token) = body["token"].as_str() {
            integration_tests::register_secret(token);
        }
        let (status, created) = self
            .call(reqwest::Method::POST, "/credentials", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Replaces a credential's token.
    pub async fn rotate(&self, id: &str, token: &str) {
        integration_tests::register_secret(token);
        let (status, body) = self
            .call(
                reqwest::Method::PATCH,
                &format!("/credentials/{id}"),
                Some(json!({"token": token})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// The sidecar environment of wire.md §5 for `provider` → `id`.
    pub fn sidecar_env(&self, provider: &str, id: &str) -> Vec<(String, String)> {
        vec![
            ("SESSION_ID".into(), self.session_id.clone()),
            ("CREDENTIAL_PROVIDER".into(), provider.into()),
            ("CREDENTIAL_IDS".into(), json!({ provider: id }).to_string()),
            ("AMBIENT_API_URL".into(), self.api_url.clone()),
            ("AMBIENT_CP_TOKEN_URL".into(), self.token_url.clone()),
            (
                "AMBIENT_CP_TOKEN_PUBLIC_KEY".into(),
                self.public_pem.clone(),
            ),
        ]
    }
}

/// A running entrypoint, its stdin held open (the child inherits it).
pub struct Entrypoint {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub reports: PathBuf,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl Entrypoint {
    /// Starts `credential-entrypoint <args...>` with exactly `env` (plus
    /// PATH and the test server's report directory `reports`).
    pub fn start(args: &[&str], env: &[(String, String)], reports: &Path) -> Entrypoint {
        Self::start_via(&[], args, env, reports)
    }

    /// [`Entrypoint::start`] through `wrapper` (a program and its
    /// arguments that execs the entrypoint, e.g. `setpriv … --`).
    pub fn start_via(
        wrapper: &[&str],
        args: &[&str],
        env: &[(String, String)],
        reports: &Path,
    ) -> Entrypoint {
        std::fs::create_dir_all(reports).unwrap_or_else(|e| panic!("{e}"));
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(ENTRYPOINT);
                c
            }
            None => Command::new(ENTRYPOINT),
        };
        let mut child = command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TEST_SERVER_REPORT_DIR", reports)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the entrypoint: {e}"));
        let stderr = collect(child.stderr.take());
        let stdout = collect(child.stdout.take());
        Entrypoint {
            stdin: child.stdin.take(),
            child,
            reports: reports.to_owned(),
            stderr,
            stdout,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits up to 30 s for `<name> listening on <addr>` on stdout.
    pub async fn listening(&mut self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let prefix = format!("{name} listening on ");
        loop {
            let out = self.stdout();
            if let Some(addr) = out.lines().find_map(|l| l.strip_prefix(&prefix)) {
                return addr.trim().to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "entrypoint exited ({status}) before listening:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not listening:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// Waits up to 30 s for the exit.
    pub async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the stderr reader drain.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "entrypoint did not exit:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to 30 s for a report that satisfies `pred`.
    pub async fn report_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for r in reports(&self.reports) {
                if pred(&r) {
                    return r;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "entrypoint exited ({status}) before {what}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no report with {what}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first report of a child.
    pub async fn report(&mut self) -> Value {
        self.report_where("a started child", |_| true).await
    }
}

impl Drop for Entrypoint {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for r in reports(&self.reports) {
            if let Some(pid) = r["pid"].as_u64() {
                signal(pid as u32, "KILL");
            }
        }
    }
}

/// Collects a pipe into a string, on a thread.
fn collect(pipe: Option<impl std::io::Read + Send + 'static>) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    if let Some(mut pipe) = pipe {
        let sink = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    text
}

/// Every report in `dir` (one per child process).
pub fn reports(dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("report-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|s| serde_json::from_str(&s).ok())
        .collect()
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

/// A value of the child's environment in a report.
pub fn env_of<'a>(report: &'a Value, name: &str) -> Option<&'a str> {
    report["env"][name].as_str()
}

/// The process group of a process (field 5 of /proc/<pid>/stat).
pub fn pgrp(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(2)?.parse().ok()
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}
