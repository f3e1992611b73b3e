//! Exchange v3 end to end (wire.md §3 "v3"), over the real binaries on the
//! process runtime: the control plane writes each session pod's key file
//! (0600, in the session's directory, named by `AMBIENT_SESSION_KEY_FILE`)
//! before the pod starts; the session's runner (`ambient-session-probe`)
//! exchanges it for a session token and uses the gateway with it; v2 keeps
//! working beside it; another session's key file, and the key file of a
//! replaced pod, get no token; the key is in no environment and no log.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ambient_protocol::exchange::Protocol;
use ambient_protocol::exchange::v3::SessionKeyFile;
use ambient_protocol::keys::PrivateKey;
use integration_tests::local_system::{LocalSystem, Options};
use integration_tests::{bin_path, register_secret};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(45);

fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn system(extra_args: &[&str]) -> LocalSystem {
    let runner = format!(
        "if [ -n \"$PROBE_CELLS\" ]; then exec '{}'; else exec '{}'; fi",
        bin_path("ambient-session-probe").display(),
        bin_path("ambient-demo-runner").display()
    );
    ok(LocalSystem::start(Options {
        runner_command: Some(runner),
        control_plane_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    }))
}

fn key_path(sys: &LocalSystem, id: &str) -> PathBuf {
    sys.state_dir()
        .join("sessions")
        .join(id)
        .join("pod/volumes/session-key/session-key.json")
}

/// The key file's JSON `key` (registered for the suite's leak scan).
fn key_of(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_slice(&raw).unwrap_or_default();
    let key = json["key"].as_str().unwrap_or_default().to_owned();
    assert!(key.len() > 40, "no key in the key file");
    register_secret(&key);
    key
}

/// The probe's report, the last run's line per cell: name → (ok, status).
fn report(log: &str) -> BTreeMap<String, (bool, String)> {
    log.lines()
        .filter_map(|l| l.strip_prefix("probe: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_owned(),
                (v["ok"].as_bool()?, v["status"].as_str()?.to_owned()),
            ))
        })
        .collect()
}

fn probe_runs(sys: &LocalSystem, id: &str) -> usize {
    sys.container_log(id, "ambient-code-runner")
        .matches("probe: done")
        .count()
}

fn wait_runs(sys: &LocalSystem, id: &str, runs: usize) {
    ok(sys.wait_until(LIMIT, "the probe to finish", || {
        Ok(probe_runs(sys, id) >= runs)
    }));
}

fn start_probe(sys: &LocalSystem, project: &str, name: &str, cells: &Value) -> String {
    let env = json!({"PROBE_CELLS": cells.to_string(), "PROBE_HOLD": "1"});
    ok(sys.start_session(
        project,
        name,
        json!({"environment_variables": env.to_string()}),
    ))
}

#[test]
fn a_runner_exchanges_its_key_file_for_a_session_token_and_the_key_leaks_nowhere() {
    let sys = system(&[]);
    ok(sys.create_project("alpha"));
    let cells = json!([
        {"name": "v3", "exchange_v3": null, "rest": ["GET", "/api/ambient/v1/projects/alpha"]},
        {"name": "v3 other project", "exchange_v3": null, "rest": ["GET", "/api/ambient/v1/projects/beta"]},
    ]);
    let id = start_probe(&sys, "alpha", "v3", &cells);
    wait_runs(&sys, &id, 1);
    let log = sys.container_log(&id, "ambient-code-runner");
    let got = report(&log);
    assert_eq!(got.get("v3"), Some(&(true, "200/200".to_owned())), "{log}");
    // The v3 token is a session token: the gateway confines it.
    assert_eq!(
        got.get("v3 other project")
            .map(|(ok, s)| (*ok, s.starts_with("200/"))),
        Some((false, true)),
        "{log}"
    );
    // v2 (the runner client's own exchange) still works beside v3.
    assert!(log.contains("probe: token {\"jwt\":true"), "{log}");

    let path = key_path(&sys, &id);
    let mode = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    let file = SessionKeyFile::read(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.session_id(), id);
    let key = key_of(&path);

    // Not in any environment of the system's processes (the runner's
    // included: it gets the file's path), not in any log.
    let pids = sys.processes();
    assert!(pids.len() >= 3, "too few processes found: {pids:?}");
    for pid in pids {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        assert!(!environ.contains(&key), "K_s in the environment of {pid}");
        if environ.contains("PROBE_CELLS") {
            assert!(
                environ.contains(&format!("AMBIENT_SESSION_KEY_FILE={}", path.display())),
                "the runner is not pointed at its key file"
            );
        }
    }
    let cp = sys
        .control_plane
        .as_ref()
        .map(|d| d.logs())
        .unwrap_or_default();
    assert!(!cp.contains(&key), "K_s in the control plane's log");
    for container in ["ambient-code-runner", "ambient-mcp"] {
        assert!(
            !sys.container_log(&id, container).contains(&key),
            "K_s in the log of {container}"
        );
    }
}

#[test]
fn another_sessions_key_file_and_a_replaced_pods_key_file_get_no_token() {
    let sys = system(&[]);
    ok(sys.create_project("alpha"));
    let stolen = sys.dir().join("stolen-key.json");
    let old = sys.dir().join("old-generation-key.json");
    // Session A: its key file is copied where B's runner can read it.
    let a = start_probe(&sys, "alpha", "a", &json!([]));
    wait_runs(&sys, &a, 1);
    key_of(&key_path(&sys, &a));
    std::fs::copy(key_path(&sys, &a), &stolen).unwrap_or_else(|e| panic!("{e}"));

    let cells = json!([
        {"name": "own", "exchange_v3": null},
        {"name": "stolen", "exchange_v3": stolen.display().to_string()},
        {"name": "old generation", "exchange_v3": old.display().to_string()},
    ]);
    let b = start_probe(&sys, "alpha", "b", &cells);
    wait_runs(&sys, &b, 1);
    let log = sys.container_log(&b, "ambient-code-runner");
    let got = report(&log);
    assert_eq!(got.get("own"), Some(&(true, "200".to_owned())), "{log}");
    let refused = |cell: &str, got: &BTreeMap<String, (bool, String)>| {
        let (ok, status) = got.get(cell).cloned().unwrap_or_default();
        assert!(
            !ok && (status == "401" || status == "403"),
            "{cell}: {ok} {status}\n{log}"
        );
    };
    refused("stolen", &got);

    // B's pod is replaced: its first pod's key file gets nothing.
    let first = key_path(&sys, &b);
    let first_generation = SessionKeyFile::read(&first)
        .unwrap_or_else(|e| panic!("{e}"))
        .generation()
        .to_owned();
    key_of(&first);
    std::fs::copy(&first, &old).unwrap_or_else(|e| panic!("{e}"));
    ok(sys.api("POST", &format!("/sessions/{b}/stop"), None));
    ok(sys.wait_phase(&b, &["Stopped"], LIMIT));
    ok(sys.api("POST", &format!("/sessions/{b}/start"), None));
    wait_runs(&sys, &b, 2);
    let second = SessionKeyFile::read(&key_path(&sys, &b)).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        second.generation(),
        first_generation,
        "a new pod, a new generation"
    );
    key_of(&key_path(&sys, &b));
    let log = sys.container_log(&b, "ambient-code-runner");
    let got = report(&log);
    assert_eq!(got.get("own"), Some(&(true, "200".to_owned())), "{log}");
    assert_eq!(
        got.get("old generation"),
        Some(&(false, "403".to_owned())),
        "{log}"
    );
    refused("stolen", &got);
}

/// The status of a v1 or v2 exchange claiming `id`, from this process
/// (not a process of the session).
fn outside_exchange(sys: &LocalSystem, id: &str, protocol: Protocol) -> String {
    use ambient_protocol::exchanger::{ExchangeError, ExchangerConfig, TokenExchanger};
    let pem = std::fs::read_to_string(sys.state_dir().join("keypair.pem"))
        .unwrap_or_else(|e| panic!("keypair.pem: {e}"));
    let key = PrivateKey::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = ExchangerConfig::new(
        format!("http://{}/token", sys.token_server),
        key.public_key().clone(),
        id,
    );
    cfg.protocol = protocol;
    cfg.retry_waits = Vec::new();
    let exchanger = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    match rt.block_on(exchanger.fetch()) {
        Ok(_) => "200".into(),
        Err(ExchangeError::Status { status, .. }) => status.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// With `--token-require-v3` a v1 or v2 exchange is refused (401) before
/// anything else is looked at; without it the same request reaches the
/// caller binding (403: not from the session's pod).
#[test]
fn require_v3_refuses_v1_and_v2() {
    for (args, refused) in [(&[][..], "403"), (&["--token-require-v3"][..], "401")] {
        let sys = system(args);
        ok(sys.create_project("alpha"));
        let id = start_probe(&sys, "alpha", "held", &json!([]));
        // (Under require-v3 a runner client that speaks only v2 fails.)
        ok(sys.wait_phase(&id, &["Running", "Failed"], LIMIT));
        for protocol in [Protocol::V1, Protocol::V2] {
            assert_eq!(
                outside_exchange(&sys, &id, protocol),
                refused,
                "{args:?} {protocol:?}"
            );
        }
    }
}
