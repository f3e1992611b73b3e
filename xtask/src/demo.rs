//! `cargo xtask demo [--keep]`: the whole system on this machine, step by
//! step. Builds the binaries, starts ambient-devserver (temporary data
//! directory) and ambient-control-plane (process runtime, embedded token
//! server), creates a project, a GitHub credential bound to it (wire.md
//! §2) and a session run by the demo runner, follows the session to
//! `Completed`, shows its messages (the MCP tool results among them), then
//! stops everything and checks nothing is left. A failing step says why,
//! with the relevant log lines (secrets redacted), and exits non-zero.
//! `--keep` leaves the system running until Ctrl-C (SIGINT or SIGTERM),
//! printing its addresses, the API token file and commands to try, then
//! cleans up the same way. `--bin-dir DIR` runs the binaries in DIR and
//! builds nothing (the test of `--keep` uses the suite's build).
//! `--real-servers` also binds a kubeconfig credential whose sidecar runs
//! the real kubernetes-mcp-server (the pinned one of the interop tests,
//! installed under `target/interop-servers` when missing) over its stdio
//! mode, and the runner lists that server's tools through the sidecar.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use integration_tests::local_system::{LocalSystem, Options, random_hex};
use serde_json::{Value, json};

const PROJECT: &str = "demo";
const RUNNER: &str = "ambient-code-runner";
const PACKAGES: [&str; 5] = [
    "ambient-devserver",
    "ambient-control-plane",
    "ambient-mcp",
    "credential-entrypoint",
    "ambient-demo",
];

struct Clock(Instant);

impl Clock {
    fn step(&self, line: &str) {
        println!("demo: [{:6.2} s] {line}", self.0.elapsed().as_secs_f64());
    }
}

/// Set on SIGINT/SIGTERM; every wait checks it.
fn interrupted_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            set.store(true, Ordering::SeqCst);
        });
    });
    flag
}

/// `cargo xtask demo` arguments.
#[derive(Debug, Default)]
struct Args {
    keep: bool,
    real_servers: bool,
    bin_dir: Option<std::path::PathBuf>,
}

fn parse(args: &[String]) -> Result<Args> {
    let usage = "usage: cargo xtask demo [--keep] [--real-servers] [--bin-dir DIR]";
    let mut parsed = Args::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--keep" => parsed.keep = true,
            "--real-servers" => parsed.real_servers = true,
            "--bin-dir" => match rest.next() {
                Some(dir) => parsed.bin_dir = Some(dir.into()),
                None => bail!("--bin-dir needs a directory\n{usage}"),
            },
            other => bail!("unknown argument {other:?}\n{usage}"),
        }
    }
    Ok(parsed)
}

/// Runs the demo.
pub fn demo(args: &[String]) -> Result<()> {
    let Args {
        keep,
        real_servers,
        bin_dir,
    } = parse(args)?;
    let clock = Clock(Instant::now());
    let stop = interrupted_flag();
    let bin_dir = match bin_dir {
        // The containers run in their own directories: a relative path
        // would name nothing there.
        Some(dir) => std::fs::canonicalize(&dir)
            .map_err(|e| anyhow::anyhow!("--bin-dir {}: {e}", dir.display()))?,
        None => {
            clock.step("building the binaries (cargo build)…");
            let mut build = super::cargo();
            build.args(["build", "--quiet", "--bins"]);
            for p in PACKAGES {
                build.args(["-p", p]);
            }
            super::run(&mut build)?;
            target_dir().join("debug")
        }
    };
    let mut control_plane_args = vec!["--stop-sessions-on-exit".to_owned()];
    if real_servers {
        clock.step("the real third-party MCP servers (target/interop-servers; installed once)…");
        let kube = crate::servers::prepare()?.join(crate::servers::KUBERNETES_MCP_SERVER);
        control_plane_args.push("--credential-command".into());
        control_plane_args.push(format!(
            "kubeconfig=exec {} --disable-multi-cluster --kubeconfig \"$CREDENTIAL_KUBECONFIG_PATH\"",
            kube.display()
        ));
    }
    let options = Options {
        bin_dir: Some(bin_dir.clone()),
        credential_refresh_seconds: Some(5),
        control_plane_args,
        log_level: Some("info".into()),
        ..Options::default()
    };
    let mut system = LocalSystem::start(options).map_err(anyhow::Error::msg)?;
    let dir = system.dir().to_path_buf();
    clock.step(&format!(
        "ambient-devserver up: REST http://{}, gRPC {} (data in {})",
        system.http,
        system.grpc,
        dir.join("devserver").display()
    ));
    clock.step(&format!(
        "ambient-control-plane up: process runtime, embedded token server, state in {}",
        system.state_dir().display()
    ));
    let credential = format!("ghp_demo{}", random_hex());
    let kube_token = format!("demo-kube-{}", random_hex());
    let mut secrets = vec![system.token().to_owned(), credential.clone()];
    let kubeconfig = real_servers.then(|| {
        secrets.push(kube_token.clone());
        demo_kubeconfig(&kube_token)
    });
    let outcome = steps(&system, &clock, &stop, &credential, kubeconfig.as_deref());
    let session = match outcome {
        Ok(id) => id,
        Err(e) => {
            eprintln!("demo: FAILED: {e:#}");
            explain(&system, &secrets);
            drop(system);
            bail!("the demo failed");
        }
    };
    if keep {
        keep_running(&system, &session, &bin_dir, &stop);
    }
    clock.step("stopping the control plane (it stops the session processes) and the devserver");
    system.stop();
    let left = system.processes();
    drop(system);
    if !left.is_empty() {
        bail!("processes outlived the demo (now killed): {left:?}");
    }
    if dir.exists() {
        bail!("the temporary directory {} is still there", dir.display());
    }
    clock.step("done: no process of ours left, temporary directory removed");
    Ok(())
}

fn steps(
    system: &LocalSystem,
    clock: &Clock,
    stop: &AtomicBool,
    credential: &str,
    kubeconfig: Option<&str>,
) -> Result<String> {
    let e = anyhow::Error::msg;
    system.create_project(PROJECT).map_err(e)?;
    clock.step(&format!("project {PROJECT:?} created"));
    if let Some(kubeconfig) = kubeconfig {
        let id = system
            .bind_credential(PROJECT, "kubeconfig", kubeconfig)
            .map_err(e)?;
        clock.step(&format!(
            "kubeconfig credential {id} (cluster {DEMO_CLUSTER:?}) bound to project {PROJECT:?}; its sidecar runs the real kubernetes-mcp-server"
        ));
    }
    let cred_id = system
        .bind_credential(PROJECT, "github", credential)
        .map_err(e)?;
    clock.step(&format!(
        "GitHub credential {cred_id} created (token {}) and bound to project {PROJECT:?} by a role binding (credential:viewer)",
        fingerprint(credential)
    ));
    let session = system
        .start_session(
            PROJECT,
            "demo",
            json!({"prompt": "Show that the session plane works end to end."}),
        )
        .map_err(e)?;
    clock.step(&format!(
        "session {session} created (the control plane starts it)"
    ));
    follow(system, clock, stop, &session)?;
    let messages = system.messages(&session).map_err(e)?;
    clock.step(&format!("the session's {} messages:", messages.len()));
    for m in &messages {
        println!(
            "        #{} {:<9} {}",
            m.get("seq").and_then(Value::as_i64).unwrap_or(0),
            m.get("event_type").and_then(Value::as_str).unwrap_or(""),
            m.get("payload").and_then(Value::as_str).unwrap_or("")
        );
    }
    let text: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.get("payload").and_then(Value::as_str))
        .collect();
    for (what, needle) in [
        (
            "the runner's API token",
            "my API token came from the exchange",
        ),
        ("ambient-mcp get_session", "ambient-mcp get_session"),
        ("ambient-mcp push_message", "hello through ambient-mcp"),
    ] {
        if !text.iter().any(|t| t.contains(needle)) {
            bail!("no message shows {what}");
        }
    }
    if kubeconfig.is_some() {
        let Some(line) = text
            .iter()
            .find(|t| t.contains("credential kubeconfig sidecar serves kubernetes-mcp-server"))
        else {
            bail!("the runner did not list the tools of kubernetes-mcp-server through its sidecar");
        };
        if !line.contains("configuration_view") {
            bail!("kubernetes-mcp-server's tools lack configuration_view: {line}");
        }
        clock.step("the runner listed the real kubernetes-mcp-server's tools through its credential sidecar (/sse)");
    }
    let proof = fingerprint(credential);
    if !text
        .iter()
        .any(|t| t.contains("credential github arrived") && t.contains(&proof))
    {
        bail!("the runner did not show the GitHub credential ({proof}) reaching its sidecar");
    }
    clock.step(&format!(
        "the credential sidecar's MCP server got the bound GitHub token ({proof}, shown only as a fingerprint)"
    ));
    Ok(session)
}

/// One line per phase the session goes through, until Completed: the
/// phases the control plane writes (from its log, so none is missed
/// however fast), checked against the API.
fn follow(system: &LocalSystem, clock: &Clock, stop: &AtomicBool, id: &str) -> Result<()> {
    clock.step("session phase: Pending (phase empty until the control plane acts)");
    let started = Instant::now();
    let marker = format!("phase written session={id} phase=");
    let mut shown = 0;
    let mut last = "Pending".to_owned();
    let mut last_line = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let logs = system
            .control_plane
            .as_ref()
            .map(|d| d.logs())
            .unwrap_or_default();
        let written: Vec<&str> = logs
            .lines()
            .filter_map(|l| l.split_once(&marker)?.1.split_whitespace().next())
            .collect();
        for phase in written.iter().skip(shown) {
            clock.step(&format!("session phase: {phase}"));
            last = (*phase).to_owned();
            last_line = Instant::now();
        }
        shown = written.len();
        if last_line.elapsed() > Duration::from_secs(3) {
            clock.step(&format!(
                "… still {last} ({:.0} s)",
                started.elapsed().as_secs_f64()
            ));
            last_line = Instant::now();
        }
        if matches!(last.as_str(), "Completed" | "Failed" | "Stopped") {
            let phase = system.phase(id).map_err(anyhow::Error::msg)?;
            if phase == "Completed" {
                return Ok(());
            }
            let s = system
                .api("GET", &format!("/sessions/{id}"), None)
                .unwrap_or(Value::Null);
            bail!(
                "the session ended {phase}: {}",
                s.get("conditions").and_then(Value::as_str).unwrap_or("")
            );
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the session did not complete within 120 s (phase {last})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cluster of the demo's kubeconfig (never contacted).
const DEMO_CLUSTER: &str = "ambient-demo-cluster";

/// A kubeconfig naming [`DEMO_CLUSTER`] with `token` as its user's.
fn demo_kubeconfig(token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {DEMO_CLUSTER}\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: demo\n  context:\n    cluster: {DEMO_CLUSTER}\n    user: demo\ncurrent-context: demo\nusers:\n- name: demo\n  user:\n    token: {token}\n"
    )
}

/// `target/` (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| super::root().join("target"), std::path::PathBuf::from)
}

fn fingerprint(secret: &str) -> String {
    ambient_demo::proof::fingerprint(secret)
}

/// The last lines of the control plane's and the runner's logs, redacted.
fn explain(system: &LocalSystem, secrets: &[String]) {
    let redact = |text: &str| {
        secrets
            .iter()
            .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
    };
    let tail = |title: &str, text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("demo: --- {title} (last {} lines) ---", lines.len().min(25));
        for l in &lines[lines.len().saturating_sub(25)..] {
            eprintln!("  {}", redact(l));
        }
    };
    if let Some(cp) = &system.control_plane {
        tail("ambient-control-plane", &cp.logs());
    }
    let sessions = system.state_dir().join("sessions");
    for entry in std::fs::read_dir(sessions).into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let logs = entry.path().join("logs");
        for log in std::fs::read_dir(logs).into_iter().flatten().flatten() {
            let name = log.file_name().to_string_lossy().into_owned();
            let container = name.trim_end_matches(".log");
            tail(
                &format!("session {id} container {container}"),
                &system.container_log(&id, container),
            );
        }
    }
    if let Some(d) = &system.devserver {
        tail("ambient-devserver", &d.logs());
    }
}

fn keep_running(system: &LocalSystem, session: &str, bin_dir: &std::path::Path, stop: &AtomicBool) {
    let api = format!("http://{}/api/ambient/v1", system.http);
    let token_file = system.token_file();
    let auth = format!(
        "-H \"Authorization: Bearer $(cat {})\"",
        token_file.display()
    );
    let cp = system.control_plane.as_ref();
    let cp_addr = |name: &str| cp.map_or("?".to_owned(), |d| d.addr(name).to_string());
    println!("demo: the system keeps running; Ctrl-C stops it and cleans up.");
    println!("  REST API      {api}");
    println!("  gRPC          {}", system.grpc);
    println!("  token server  http://{}/token", cp_addr("token server"));
    println!("  health        http://{}/readyz", cp_addr("health"));
    println!("  token file    {}", token_file.display());
    println!("  state dir     {}", system.state_dir().display());
    println!("  try:");
    println!("    curl -s {auth} {api}/sessions");
    println!("    curl -s {auth} {api}/sessions/{session}/messages");
    println!(
        "    {} logs --state-dir {} {session} {RUNNER}",
        bin_dir.join("ambient-control-plane").display(),
        system.state_dir().display()
    );
    println!(
        "    curl -s {auth} -H 'Content-Type: application/json' -d '{{\"name\":\"again\",\"project_id\":\"{PROJECT}\"}}' {api}/sessions   # starts another session"
    );
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!();
}
