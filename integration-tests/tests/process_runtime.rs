//! End to end on one machine: ambient-devserver + ambient-control-plane
//! with the process runtime, sessions run by ambient-demo-runner (with the
//! real ambient-mcp and credential-entrypoint sidecars), driven over REST
//! like a user would. What `cargo xtask demo` shows (a credential bound to
//! the project by a role binding included), plus failures: stop, delete
//! mid-run, the API server killed and restarted, the control plane killed
//! with SIGKILL and restarted, a credential rotated mid-session.

use std::path::PathBuf;
use std::time::Duration;

use ambient_demo::proof::fingerprint;
use integration_tests::local_system::{LocalSystem, Options, random_hex};
use integration_tests::{bin_path, register_secret};
use serde_json::{Value, json};

const PROJECT: &str = "e2e";
const LIMIT: Duration = Duration::from_secs(45);

fn system() -> LocalSystem {
    LocalSystem::start(Options::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A session whose runner does its steps, then waits for a user message
/// `exit` (or SIGTERM).
fn holding_session(sys: &LocalSystem, name: &str) -> String {
    let env = json!({"DEMO_RUNNER_HOLD": "1"}).to_string();
    let id = ok(sys.start_session(PROJECT, name, json!({"environment_variables": env})));
    ok(sys.wait_phase(&id, &["Running"], LIMIT));
    // Running is written when the runner starts: wait for its steps too.
    ok(sys.wait_until(LIMIT, "the runner to hold", || {
        Ok(sys
            .container_log(&id, "ambient-code-runner")
            .contains("holding until"))
    }));
    id
}

fn payloads(sys: &LocalSystem, id: &str) -> Vec<String> {
    ok(sys.messages(id))
        .iter()
        .filter_map(|m| m.get("payload").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn pod_dir(sys: &LocalSystem, id: &str) -> PathBuf {
    sys.state_dir().join("sessions").join(id).join("pod")
}

/// Pids of the session's shims, from the runtime's records.
fn shim_pids(sys: &LocalSystem, id: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir(pod_dir(sys, id))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
        .filter_map(|e| {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            v.get("pid")?.as_i64().and_then(|p| i32::try_from(p).ok())
        })
        .collect();
    pids.sort();
    pids
}

/// Every process in the sessions those shims lead (the containers and what they started).
fn session_members(leaders: &[i32]) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s[s.rfind(')')? + 1..].to_owned();
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let live = !matches!(f.first(), Some(&"Z") | Some(&"X"));
                    Some(live && leaders.contains(&f.get(3)?.parse().ok()?))
                })
                .unwrap_or(false)
        })
        .collect()
}

fn send_user_message(sys: &LocalSystem, id: &str, text: &str) {
    ok(sys.api(
        "POST",
        &format!("/sessions/{id}/messages"),
        Some(json!({"payload": text})),
    ));
}

#[test]
fn a_session_runs_its_containers_as_processes_and_completes() {
    let sys = system();
    ok(sys.create_project(PROJECT));
    let token = format!("ghp_e2e{}", random_hex());
    ok(sys.bind_credential(PROJECT, "github", &token));
    let before = std::time::SystemTime::now();
    let id = ok(sys.start_session(PROJECT, "demo", json!({"prompt": "hi"})));
    ok(sys.wait_phase(&id, &["Completed"], LIMIT));
    // The runtime recorded when the pod's create request reached it.
    let requested = sys.pod_requested_at(&id);
    assert!(
        requested.is_some_and(|at| at >= before),
        "pod_requested_at {requested:?}, created after {before:?}"
    );
    let texts = payloads(&sys, &id);
    let proof = format!(
        "credential github arrived: its MCP server got GITHUB_PERSONAL_ACCESS_TOKEN = {}",
        fingerprint(&token)
    );
    for needle in [
        "my API token came from the exchange",
        "ambient-mcp get_session: name \"demo\", phase Running",
        "hello through ambient-mcp's push_message",
        proof.as_str(),
        "Done: every step worked.",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(needle)),
            "no message with {needle:?} in {texts:#?}"
        );
    }
    // A terminal session loses its pod: the sidecars stop, the logs stay.
    ok(sys.wait_until(LIMIT, "the pod to go", || Ok(!pod_dir(&sys, &id).exists())));
    assert!(
        sys.container_log(&id, "ambient-mcp")
            .contains("mcp listening on")
    );
    assert!(
        sys.container_log(&id, "ambient-code-runner")
            .contains("Done: every step worked.")
    );
    ok(sys.wait_until(LIMIT, "the control plane to say so", || {
        Ok(sys
            .control_plane
            .as_ref()
            .is_some_and(|d| d.logs().contains("session processes gone")))
    }));
}

/// A child process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn logs_follow_prints_what_a_running_session_writes_until_it_ends() {
    use std::io::BufRead as _;
    let sys = system();
    ok(sys.create_project(PROJECT));
    let id = holding_session(&sys, "follow-me");
    // `--state-dir` after the subcommand, as the README and the demo write it.
    let mut child = std::process::Command::new(bin_path("ambient-control-plane"))
        .args(["logs", "--state-dir"])
        .arg(sys.state_dir())
        .args(["--follow", &id, "ambient-code-runner"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("logs --follow: {e}"));
    let stdout = child.stdout.take();
    let mut follow = Killed(child);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout
            .map(std::io::BufReader::new)
            .into_iter()
            .flat_map(|r| r.lines())
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str| {
        while !seen.iter().any(|l: &String| l.contains(needle)) {
            match lines.recv_timeout(LIMIT) {
                Ok(l) => seen.push(l),
                Err(e) => panic!("no {needle:?} from logs --follow ({e}): {seen:#?}"),
            }
        }
    };
    // What was written before it started, then what the runner writes after.
    wait_for("holding until");
    send_user_message(&sys, &id, "exit");
    wait_for("Done: every step worked.");
    // The runner exited: it ends by itself.
    ok(sys.wait_until(LIMIT, "logs --follow to end", || {
        Ok(follow.0.try_wait().ok().flatten().is_some())
    }));
    let status = follow.0.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "logs --follow exited {status}");
}

#[test]
fn stopping_a_running_session_stops_every_process() {
    let sys = system();
    ok(sys.create_project(PROJECT));
    let id = holding_session(&sys, "stop-me");
    let shims = shim_pids(&sys, &id);
    assert_eq!(shims.len(), 2, "runner and ambient-mcp");
    assert!(
        session_members(&shims).len() >= 4,
        "shims and containers run"
    );
    ok(sys.api("POST", &format!("/sessions/{id}/stop"), None));
    ok(sys.wait_phase(&id, &["Stopped"], LIMIT));
    assert_eq!(session_members(&shims), Vec::<i32>::new());
    assert!(!pod_dir(&sys, &id).exists());
    assert!(
        sys.container_log(&id, "ambient-code-runner")
            .contains("SIGTERM: exiting")
    );
}

#[test]
fn deleting_a_session_mid_run_leaves_nothing() {
    let sys = system();
    ok(sys.create_project(PROJECT));
    let id = holding_session(&sys, "delete-me");
    let shims = shim_pids(&sys, &id);
    ok(sys.api("DELETE", &format!("/sessions/{id}"), None));
    let dir = sys.state_dir().join("sessions").join(&id);
    ok(sys.wait_until(LIMIT, "the session's files to go", || Ok(!dir.exists())));
    assert_eq!(session_members(&shims), Vec::<i32>::new());
    let left: Vec<_> = std::fs::read_dir(sys.state_dir().join("sessions"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_api_server_killed_and_restarted_mid_session_converges() {
    let mut sys = system();
    ok(sys.create_project(PROJECT));
    let id = holding_session(&sys, "outage");
    if let Some(d) = sys.devserver.as_mut() {
        d.kill();
    }
    std::thread::sleep(Duration::from_secs(1));
    ok(sys.start_devserver());
    // The runner's message watch and the control plane's informers come back.
    send_user_message(&sys, &id, "exit");
    ok(sys.wait_phase(&id, &["Completed"], LIMIT));
    ok(sys.wait_until(LIMIT, "the pod to go", || Ok(!pod_dir(&sys, &id).exists())));
}

#[test]
fn a_control_plane_killed_and_restarted_adopts_its_children_and_cleans_orphans() {
    let mut sys = system();
    ok(sys.create_project(PROJECT));
    let kept = holding_session(&sys, "kept");
    let deleted = holding_session(&sys, "deleted-while-down");
    let kept_shims = shim_pids(&sys, &kept);
    let deleted_shims = shim_pids(&sys, &deleted);
    if let Some(cp) = sys.control_plane.as_mut() {
        cp.kill();
    }
    // The session processes outlive the control plane, like pods.
    assert!(session_members(&kept_shims).len() >= 4);
    ok(sys.api("DELETE", &format!("/sessions/{deleted}"), None));
    ok(sys.start_control_plane());
    let dir = sys.state_dir().join("sessions").join(&deleted);
    ok(sys.wait_until(LIMIT, "the orphan to be cleaned", || Ok(!dir.exists())));
    assert_eq!(session_members(&deleted_shims), Vec::<i32>::new());
    // Adopted, not duplicated.
    assert_eq!(ok(sys.phase(&kept)), "Running");
    assert_eq!(shim_pids(&sys, &kept), kept_shims);
    send_user_message(&sys, &kept, "exit");
    ok(sys.wait_phase(&kept, &["Completed"], LIMIT));
    ok(sys.wait_until(LIMIT, "the adopted pod to go", || {
        Ok(!pod_dir(&sys, &kept).exists())
    }));
    assert_eq!(session_members(&kept_shims), Vec::<i32>::new());
    let cp = sys
        .control_plane
        .as_ref()
        .map(|d| d.logs())
        .unwrap_or_default();
    assert!(cp.contains("adopted running session processes"), "{cp}");
}

#[test]
fn a_credential_rotated_mid_session_reaches_the_sidecars_command() {
    let sys = LocalSystem::start(Options {
        credential_refresh_seconds: Some(1),
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    ok(sys.create_project(PROJECT));
    let first = format!("ghp_first{}", random_hex());
    let credential = ok(sys.bind_credential(PROJECT, "github", &first));
    let env = json!({"DEMO_RUNNER_HOLD": "1", "DEMO_RUNNER_WATCH_CREDENTIALS": "1"}).to_string();
    let id = ok(sys.start_session(PROJECT, "rotate", json!({"environment_variables": env})));
    let shows = |what: &str, print: &str| {
        payloads(&sys, &id)
            .iter()
            .any(|t| t.contains(what) && t.contains(print))
    };
    ok(sys.wait_until(LIMIT, "the credential to arrive", || {
        Ok(shows("credential github arrived", &fingerprint(&first)))
    }));
    let second = format!("ghp_second{}", random_hex());
    register_secret(&second);
    ok(sys.api(
        "PATCH",
        &format!("/credentials/{credential}"),
        Some(json!({"token": second})),
    ));
    ok(
        sys.wait_until(LIMIT, "the rotated credential to reach the command", || {
            Ok(shows("credential github changed", &fingerprint(&second)))
        }),
    );
    send_user_message(&sys, &id, "exit");
    ok(sys.wait_phase(&id, &["Completed"], LIMIT));
}

/// A session started again resumes its messages after the last one of its
/// previous run (`RESUME_AFTER_SEQ`): the demo runner's `exit` of the first
/// run does not end the second one.
#[test]
fn a_session_started_again_resumes_after_its_last_message() {
    let sys = system();
    ok(sys.create_project(PROJECT));
    let id = holding_session(&sys, "resume");
    send_user_message(&sys, &id, "exit");
    ok(sys.wait_phase(&id, &["Completed"], LIMIT));
    let last = ok(sys.messages(&id))
        .iter()
        .filter_map(|m| m.get("seq").and_then(Value::as_i64))
        .max()
        .unwrap_or_default();
    assert!(last > 0);
    ok(sys.api("POST", &format!("/sessions/{id}/start"), None));
    let resumed = format!("watching messages after seq {last}");
    ok(sys.wait_until(
        LIMIT,
        "the restarted runner to hold after the last message",
        || {
            Ok(sys
                .container_log(&id, "ambient-code-runner")
                .contains(&resumed))
        },
    ));
    send_user_message(&sys, &id, "exit");
    ok(sys.wait_phase(&id, &["Completed"], LIMIT));
}

/// A session started again while the pod of its last run is still
/// stopping (a sidecar slow to end on SIGTERM) starts once that pod is
/// gone. It stayed `Pending` forever before: the stopping pod was observed
/// as terminating and nothing went on with its stop.
#[test]
fn a_session_started_while_its_last_pod_stops_starts_once_it_is_gone() {
    let dir = integration_tests::TempDir::new("slow-sidecar");
    let sidecar = dir.path().join("slow-mcp-sidecar");
    let script = "#!/bin/sh\ntrap 'sleep 2; exit 0' TERM\nwhile :; do sleep 0.1; done\n";
    ok(std::fs::write(&sidecar, script).map_err(|e| e.to_string()));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::Permissions::from_mode(0o755);
        ok(std::fs::set_permissions(&sidecar, mode).map_err(|e| e.to_string()));
    }
    let sys = LocalSystem::start(Options {
        // A second for the sidecar to be up before the runner ends (a stop
        // that began before a container started is another matter: its
        // SIGTERM comes at the next look, see `stop_now`).
        runner_command: Some("sleep 1; echo \"runner ran\"".into()),
        control_plane_args: vec!["--mcp-command".into(), sidecar.display().to_string()],
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    ok(sys.create_project(PROJECT));
    let id = ok(sys.start_session(PROJECT, "restart-while-stopping", json!({})));
    ok(sys.wait_phase(&id, &["Completed"], LIMIT));
    let first = sys.pod_requested_at(&id);
    ok(sys.api("POST", &format!("/sessions/{id}/start"), None));
    ok(sys.wait_until(LIMIT, "the runner of the second run", || {
        Ok(sys.pod_requested_at(&id) != first
            && sys
                .container_log(&id, "ambient-code-runner")
                .matches("runner ran")
                .count()
                >= 2)
    }));
    ok(sys.wait_phase(&id, &["Completed"], LIMIT));
}

/// A stop signals each container's main process first, as the kubelet
/// does: this runner traps SIGTERM and ends its child through a FIFO, which
/// works only while the child is alive (a SIGTERM to every process at once
/// kills the child first, and the runner then hangs until SIGKILL).
#[test]
fn a_stop_signals_the_main_processes_first_so_they_end_their_children() {
    let runner = r#"mkfifo ask || exit 1
( read line < ask; echo "child finished: $line" ) &
child=$!
trap 'echo bye > ask; wait $child; echo "main: child done"; exit 0' TERM
echo "holding until SIGTERM"
wait $child
echo "main: the child ended by itself"
exit 1"#;
    let sys = LocalSystem::start(Options {
        runner_command: Some(runner.into()),
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    ok(sys.create_project(PROJECT));
    let id = ok(sys.start_session(PROJECT, "graceful", json!({})));
    ok(sys.wait_until(LIMIT, "the runner to hold", || {
        Ok(sys
            .container_log(&id, "ambient-code-runner")
            .contains("holding until SIGTERM"))
    }));
    ok(sys.api("POST", &format!("/sessions/{id}/stop"), None));
    ok(sys.wait_phase(&id, &["Stopped"], LIMIT));
    let log = sys.container_log(&id, "ambient-code-runner");
    assert!(log.contains("child finished: bye"), "{log}");
    assert!(log.contains("main: child done"), "{log}");
}
