//! The whole system on one machine: ambient-devserver (a data directory in
//! a private temporary directory) and ambient-control-plane with the
//! process runtime (embedded token server), plus the REST calls a user
//! makes. Used by the end-to-end tests, `cargo xtask demo` and `cargo xtask
//! bench reconcile`. Every call says why it failed instead of panicking.
//!
//! On drop the control plane and the devserver are stopped, the output of
//! every session container is copied into the suite's log directory (so
//! the secret scan covers it) and the temporary directory is removed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Daemon, Spec, TempDir, register_secret};

/// How the system is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Directory of the binaries (else found like [`crate::bin_path`]).
    pub bin_dir: Option<PathBuf>,
    /// `--runner-command` (else the demo runner).
    pub runner_command: Option<String>,
    /// `--credential-refresh-seconds`.
    pub credential_refresh_seconds: Option<u64>,
    /// More control-plane flags.
    pub control_plane_args: Vec<String>,
    /// `--log-level` of both daemons (default `info`).
    pub log_level: Option<String>,
    /// `--session-identity platform`: sessions get the control plane's own
    /// token and no session gateway runs (the reference's behaviour).
    pub platform_identity: bool,
}

/// A running devserver + control plane.
#[derive(Debug)]
pub struct LocalSystem {
    pub options: Options,
    pub devserver: Option<Daemon>,
    pub control_plane: Option<Daemon>,
    /// The devserver's gRPC and HTTP addresses.
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The control plane's token server and session gateway (kept across
    /// its restarts, as a Service address is: the sessions it adopts were
    /// given them).
    pub token_server: SocketAddr,
    pub gateway: SocketAddr,
    token: String,
    http_client: reqwest::blocking::Client,
    dir: TempDir,
}

/// 32 random hex digits.
pub fn random_hex() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl LocalSystem {
    /// Starts the devserver and the control plane; ready when this returns.
    pub fn start(options: Options) -> Result<LocalSystem, String> {
        let dir = TempDir::new("ambient-local");
        let token = format!("local-{}", random_hex());
        register_secret(&token);
        let token_file = dir.path().join("api-token");
        write_private(&token_file, &token)?;
        let mut system = LocalSystem {
            options,
            devserver: None,
            control_plane: None,
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_server: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway: SocketAddr::from(([127, 0, 0, 1], 0)),
            token,
            http_client: reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?,
            dir,
        };
        system.start_devserver()?;
        system.start_control_plane()?;
        Ok(system)
    }

    /// The private temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control plane's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// The file holding the API token.
    pub fn token_file(&self) -> PathBuf {
        self.dir().join("api-token")
    }

    /// The API token (a test secret).
    pub fn token(&self) -> &str {
        &self.token
    }

    fn spec(&self, bin: &str) -> Spec {
        let spec = Spec::new(bin);
        match &self.options.bin_dir {
            Some(d) => spec.program(d.join(bin)),
            None => spec,
        }
    }

    fn log_level(&self) -> String {
        self.options
            .log_level
            .clone()
            .unwrap_or_else(|| "info".into())
    }

    /// Starts the devserver (again on the same ports after the first time).
    pub fn start_devserver(&mut self) -> Result<(), String> {
        let spec = self
            .spec("ambient-devserver")
            .arg("--data-dir")
            .arg(self.dir().join("devserver").display().to_string())
            .args(["--grpc-listen", &self.grpc.to_string()])
            .args(["--http-listen", &self.http.to_string()])
            .arg("--token-file")
            .arg(self.token_file().display().to_string())
            .args(["--log-level", &self.log_level()])
            .listener("grpc")
            .listener("http");
        let d = Daemon::try_start(spec)?;
        self.grpc = d.addr("grpc");
        self.http = d.addr("http");
        self.devserver = Some(d);
        Ok(())
    }

    /// Starts the control plane (process runtime) and waits until it is ready.
    pub fn start_control_plane(&mut self) -> Result<(), String> {
        let mut spec = self
            .spec("ambient-control-plane")
            .args(["--runtime", "process"])
            .arg("--state-dir")
            .arg(self.state_dir().display().to_string())
            .arg("--api-server-url")
            .arg(format!("http://{}", self.http))
            .args(["--grpc-server-addr", &self.grpc.to_string()])
            .arg("--api-token-file")
            .arg(self.token_file().display().to_string())
            .args(["--token-listen-addr", &self.token_server.to_string()])
            .args(["--gateway-listen-addr", &self.gateway.to_string()])
            .args(["--health-listen-addr", "127.0.0.1:0"])
            .args(["--log-level", &self.log_level()])
            .args(self.options.control_plane_args.clone())
            .listener("token server")
            .listener("health");
        spec = if self.options.platform_identity {
            spec.args(["--session-identity", "platform"])
        } else {
            spec.listener("session gateway")
        };
        if let Some(cmd) = &self.options.runner_command {
            spec = spec.arg("--runner-command").arg(cmd.clone());
        }
        if let Some(secs) = self.options.credential_refresh_seconds {
            spec = spec
                .arg("--credential-refresh-seconds")
                .arg(secs.to_string());
        }
        if let Some(dir) = &self.options.bin_dir {
            spec = spec
                .arg("--mcp-command")
                .arg(dir.join("ambient-mcp").display().to_string());
        }
        let cp = Daemon::try_start(spec)?;
        self.token_server = cp.addr("token server");
        if !self.options.platform_identity {
            self.gateway = cp.addr("session gateway");
        }
        let ready = format!("http://{}/readyz", cp.addr("health"));
        self.control_plane = Some(cp);
        self.wait_until(
            Duration::from_secs(30),
            "the control plane to be ready",
            || {
                Ok(self
                    .http_client
                    .get(&ready)
                    .send()
                    .is_ok_and(|r| r.status().is_success()))
            },
        )
    }

    /// Calls the REST API: `method` `path` (under `/api/ambient/v1`), JSON in and out.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("http://{}/api/ambient/v1{path}", self.http);
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| format!("method {method}: {e}"))?;
        let mut req = self
            .http_client
            .request(method.clone(), &url)
            .bearer_auth(&self.token)
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {text}"));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: not JSON: {e}"))
    }

    /// Creates a project (its ID is its name).
    pub fn create_project(&self, name: &str) -> Result<(), String> {
        self.api("POST", "/projects", Some(json!({"name": name})))
            .map(|_| ())
    }

    /// Creates a credential and the injection binding that hands it to
    /// every session of `project` (wire.md §2); returns the credential ID.
    pub fn bind_credential(
        &self,
        project: &str,
        provider: &str,
        token: &str,
    ) -> Result<String, String> {
        register_secret(token);
        let cred = self.api(
            "POST",
            "/credentials",
            Some(json!({"name": format!("{project}-{provider}"), "provider": provider, "token": token})),
        )?;
        let id = id_of(&cred)?;
        self.api(
            "POST",
            "/role_bindings",
            Some(json!({
                "role_id": "credential:viewer",
                "scope": "credential",
                "credential_id": id,
                "project_id": project,
            })),
        )?;
        Ok(id)
    }

    /// Creates a session in `project` (`extra` adds fields); returns its
    /// ID. The control plane runs a session whose phase is still empty
    /// like a `Pending` one, so creating it starts it.
    pub fn start_session(&self, project: &str, name: &str, extra: Value) -> Result<String, String> {
        let mut body = json!({"name": name, "project_id": project});
        if let (Some(b), Value::Object(more)) = (body.as_object_mut(), extra) {
            b.extend(more);
        }
        let session = self.api("POST", "/sessions", Some(body))?;
        id_of(&session)
    }

    /// The session's phase now ("" before it starts).
    pub fn phase(&self, id: &str) -> Result<String, String> {
        let s = self.api("GET", &format!("/sessions/{id}"), None)?;
        Ok(s.get("phase")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Waits for one of `phases`; returns it.
    pub fn wait_phase(&self, id: &str, phases: &[&str], limit: Duration) -> Result<String, String> {
        let mut last = String::new();
        let what = format!("session {id} to reach {phases:?}");
        self.wait_until(limit, &what, || {
            last = self.phase(id)?;
            Ok(phases.contains(&last.as_str()))
        })
        .map_err(|e| format!("{e} (last phase {last:?})"))?;
        Ok(last)
    }

    /// The session's messages as JSON objects.
    pub fn messages(&self, id: &str) -> Result<Vec<Value>, String> {
        match self.api("GET", &format!("/sessions/{id}/messages"), None)? {
            Value::Array(items) => Ok(items),
            other => Ok(other
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()),
        }
    }

    /// Polls `done` every 50 ms until it says yes or `limit` passes.
    pub fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut() -> Result<bool, String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if done()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {limit:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The output of one session container (empty when there is none).
    pub fn container_log(&self, session: &str, container: &str) -> String {
        std::fs::read_to_string(
            self.state_dir()
                .join("sessions")
                .join(session)
                .join("logs")
                .join(format!("{container}.log")),
        )
        .unwrap_or_default()
    }

    /// When the process runtime received the create request of the
    /// session's pod (`pod_requested_at` in the session's `session.json`),
    /// once it has.
    pub fn pod_requested_at(&self, id: &str) -> Option<std::time::SystemTime> {
        let path = self
            .state_dir()
            .join("sessions")
            .join(id)
            .join("session.json");
        let record: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let at: prost_types::Timestamp = record.get("pod_requested_at")?.as_str()?.parse().ok()?;
        std::time::SystemTime::try_from(at).ok()
    }

    /// Pids of every process whose command line or environment mentions
    /// our temporary directory (every daemon, shim and container of this
    /// system does).
    pub fn processes(&self) -> Vec<u32> {
        let marker = self.dir().display().to_string();
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                ["cmdline", "environ"].iter().any(|f| {
                    std::fs::read(format!("/proc/{pid}/{f}"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
                }) && !is_zombie(*pid)
            })
            .collect()
    }

    /// Stops the control plane and the devserver (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        for d in [self.control_plane.take(), self.devserver.take()]
            .into_iter()
            .flatten()
        {
            let mut d = d;
            d.terminate(Duration::from_secs(15));
        }
    }

    fn copy_container_logs(&self) {
        let sessions = self.state_dir().join("sessions");
        let Ok(entries) = std::fs::read_dir(&sessions) else {
            return;
        };
        for session in entries.flatten() {
            let Ok(logs) = std::fs::read_dir(session.path().join("logs")) else {
                continue;
            };
            for log in logs.flatten() {
                let name = format!(
                    "session-{}-{}",
                    session.file_name().to_string_lossy(),
                    log.file_name().to_string_lossy()
                );
                if let (Some(mut out), Ok(mut input)) = (
                    crate::artifacts::log_file(&name, std::process::id()),
                    std::fs::File::open(log.path()),
                ) {
                    let _ = std::io::copy(&mut input, &mut out);
                }
            }
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(true)
}

impl Drop for LocalSystem {
    fn drop(&mut self) {
        self.stop();
        self.copy_container_logs();
        // Whatever still runs from our directory goes with it.
        for pid in self.processes() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn id_of(v: &Value) -> Result<String, String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no id in {v}"))
}

fn write_private(path: &Path, content: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
