//! Session identity end to end (wire.md §3 "Session tokens and the session
//! gateway"), over the real binaries on the process runtime: a session's
//! runner is `ambient-session-probe`, an agent trying every call of the
//! access matrix with its own session token, from inside its session.
//! Exactly the cells the allow-list grants succeed; the control plane's
//! token reaches no session; a token of another session cannot be had.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::bin_path;
use integration_tests::local_system::{LocalSystem, Options};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(45);

fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The runner: the probe for sessions given cells, the demo runner (held)
/// for the others.
fn runner_command() -> String {
    format!(
        "if [ -n \"$PROBE_CELLS\" ]; then exec '{}'; else exec '{}'; fi",
        bin_path("ambient-session-probe").display(),
        bin_path("ambient-demo-runner").display()
    )
}

fn system() -> LocalSystem {
    system_with(false)
}

fn system_with(platform_identity: bool) -> LocalSystem {
    ok(LocalSystem::start(Options {
        runner_command: Some(runner_command()),
        platform_identity,
        ..Options::default()
    }))
}

/// The probe's line about its token: whether it is a JWT, and its SHA-256.
fn token_line(log: &str) -> Value {
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix("probe: token "))
        .unwrap_or_else(|| panic!("no token line:\n{log}"));
    serde_json::from_str(line).unwrap_or_default()
}

/// The escape hatch restores the reference's behaviour, defect included:
/// the session holds the control plane's own token. (This is what every
/// session got before session tokens.)
#[test]
fn platform_identity_hands_sessions_the_control_planes_token() {
    let sys = system_with(true);
    ok(sys.create_project("alpha"));
    let env = json!({"PROBE_CELLS": "[]"});
    let probe = ok(sys.start_session(
        "alpha",
        "probe",
        json!({"environment_variables": env.to_string()}),
    ));
    ok(sys.wait_until(LIMIT, "the probe to finish", || {
        Ok(sys
            .container_log(&probe, "ambient-code-runner")
            .contains("probe: done"))
    }));
    let token = token_line(&sys.container_log(&probe, "ambient-code-runner"));
    assert_eq!(
        token["sha256"].as_str(),
        Some(ambient_demo::proof::sha256_hex(sys.token()).as_str())
    );
    let cp = sys
        .control_plane
        .as_ref()
        .map(|d| d.logs())
        .unwrap_or_default();
    assert!(
        cp.contains("CP_SESSION_IDENTITY=platform"),
        "no startup warning:\n{cp}"
    );
}

fn held(sys: &LocalSystem, project: &str, name: &str) -> String {
    let env = json!({"DEMO_RUNNER_HOLD": "1"}).to_string();
    let id = ok(sys.start_session(project, name, json!({"environment_variables": env})));
    ok(sys.wait_phase(&id, &["Running"], LIMIT));
    id
}

/// The probe's report: cell name → (ok, status).
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

#[test]
fn a_session_reaches_exactly_what_the_allow_list_grants() {
    let sys = system();
    for p in ["alpha", "beta"] {
        ok(sys.create_project(p));
    }
    let delivered = ok(sys.bind_credential("alpha", "github", "ghp_alpha_secret_value"));
    let undelivered = ok(sys.bind_credential("beta", "jira", "jira_beta_secret_value"));
    let same = held(&sys, "alpha", "neighbour");
    let other = held(&sys, "beta", "stranger");

    let rest =
        |name: &str, method: &str, path: String| json!({"name": name, "rest": [method, path]});
    let grpc = |name: &str, rpc: &str, session: &str| json!({"name": name, "grpc": rpc, "session": session});
    let v1 = "/api/ambient/v1";
    // (cell, expected to succeed)
    let mut cells: Vec<(Value, bool)> = Vec::new();
    for (target, id) in [("same", same.as_str()), ("other", other.as_str())] {
        for rpc in [
            "GetSession",
            "PushSessionMessage",
            "WatchSessionMessages",
            "UpdateSessionStatus",
            "DeleteSession",
        ] {
            cells.push((grpc(&format!("grpc {rpc} {target}"), rpc, id), false));
        }
        cells.push((
            json!({"name": format!("exchange as {target}"), "exchange_as": id}),
            false,
        ));
    }
    // A runner may record its SDK session, never move its phase (a Stop
    // undone would keep its session, tokens and credentials alive).
    cells.push((
        json!({"name": "grpc UpdateSessionStatus own phase", "grpc": "UpdateSessionStatus", "phase": "Pending"}),
        false,
    ));
    for (rpc, allowed) in [
        ("GetSession", true),
        ("PushSessionMessage", true),
        ("WatchSessionMessages", true),
        ("UpdateSessionStatus", true),
        ("WatchSessions", true),
        ("DeleteSession", false),
        ("ListSessions", false),
        ("ListProjects", false),
    ] {
        cells.push((
            json!({"name": format!("grpc {rpc} own"), "grpc": rpc}),
            allowed,
        ));
    }
    for (target, id, allowed) in [
        ("same", same.as_str(), true),
        ("other", other.as_str(), false),
    ] {
        cells.push((
            rest(
                &format!("rest get {target}"),
                "GET",
                format!("{v1}/sessions/{id}"),
            ),
            allowed,
        ));
        cells.push((
            rest(
                &format!("rest messages {target}"),
                "GET",
                format!("{v1}/sessions/{id}/messages"),
            ),
            allowed,
        ));
        cells.push((
            json!({"name": format!("rest push {target}"), "rest": ["POST", format!("{v1}/sessions/{id}/messages")], "body": {"payload": "probe"}}),
            allowed,
        ));
        cells.push((
            json!({"name": format!("rest update {target}"), "rest": ["PATCH", format!("{v1}/sessions/{id}")], "body": {"labels": "{\"probe\":\"1\"}"}}),
            allowed,
        ));
        cells.push((
            rest(
                &format!("rest delete {target}"),
                "DELETE",
                format!("{v1}/sessions/{id}"),
            ),
            false,
        ));
    }
    cells.push((
        rest(
            "rest list own project",
            "GET",
            format!("{v1}/sessions?project_id=alpha"),
        ),
        true,
    ));
    cells.push((
        rest(
            "rest list other project",
            "GET",
            format!("{v1}/sessions?project_id=beta"),
        ),
        false,
    ));
    cells.push((
        rest(
            "rest get own project",
            "GET",
            format!("{v1}/projects/alpha"),
        ),
        true,
    ));
    cells.push((
        rest(
            "rest get other project",
            "GET",
            format!("{v1}/projects/beta"),
        ),
        false,
    ));
    cells.push((
        rest(
            "rest delivered token",
            "GET",
            format!("{v1}/credentials/{delivered}/token"),
        ),
        true,
    ));
    cells.push((
        rest(
            "rest delivered metadata",
            "GET",
            format!("{v1}/credentials/{delivered}"),
        ),
        true,
    ));
    cells.push((
        rest(
            "rest undelivered token",
            "GET",
            format!("{v1}/credentials/{undelivered}/token"),
        ),
        false,
    ));
    cells.push((
        rest(
            "rest undelivered metadata",
            "GET",
            format!("{v1}/credentials/{undelivered}"),
        ),
        false,
    ));
    cells.push((
        rest("rest list credentials", "GET", format!("{v1}/credentials")),
        false,
    ));
    cells.push((
        rest("rest role bindings", "GET", format!("{v1}/role_bindings")),
        false,
    ));

    let spec: Vec<&Value> = cells.iter().map(|(c, _)| c).collect();
    let env = json!({"PROBE_CELLS": serde_json::to_string(&spec).unwrap_or_default()});
    let probe = ok(sys.start_session(
        "alpha",
        "probe",
        json!({"environment_variables": env.to_string()}),
    ));
    ok(sys.wait_until(LIMIT, "the probe to finish", || {
        Ok(sys
            .container_log(&probe, "ambient-code-runner")
            .contains("probe: done"))
    }));
    let log = sys.container_log(&probe, "ambient-code-runner");
    let got = report(&log);
    let mut wrong = Vec::new();
    for (cell, allowed) in &cells {
        let name = cell["name"].as_str().unwrap_or_default();
        match got.get(name) {
            Some((okay, status)) if okay != allowed => wrong.push(format!(
                "{name}: expected {}, got {status}",
                if *allowed { "success" } else { "refusal" }
            )),
            Some(_) => {}
            None => wrong.push(format!("{name}: not reported")),
        }
    }
    assert!(
        wrong.is_empty(),
        "cells that disagree with the allow-list:\n{}\n\nprobe log:\n{log}",
        wrong.join("\n")
    );

    // The token the probe holds is a session token, not the control plane's.
    let token = token_line(&log);
    assert_eq!(token["jwt"], true, "{token}");

    // The control plane's token is nowhere a session can look: not in any
    // file of the sessions' directories (pod spec, volumes, logs), not in
    // the environment of any session process.
    let cp_token = sys.token().as_bytes();
    let mut leaks = Vec::new();
    let mut files = vec![sys.state_dir().join("sessions")];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if let Ok(bytes) = std::fs::read(&path) {
            scanned += 1;
            if bytes.windows(cp_token.len()).any(|w| w == cp_token) {
                leaks.push(path.display().to_string());
            }
        }
    }
    assert!(scanned > 0, "no session file was scanned");
    let cp_pid = sys.control_plane.as_ref().map(|d| d.pid());
    let dev_pid = sys.devserver.as_ref().map(|d| d.pid());
    let session_processes: Vec<u32> = sys
        .processes()
        .into_iter()
        .filter(|p| Some(*p) != cp_pid && Some(*p) != dev_pid)
        .collect();
    assert!(
        !session_processes.is_empty(),
        "no session process was scanned"
    );
    for pid in session_processes {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if environ.windows(cp_token.len()).any(|w| w == cp_token) {
            leaks.push(format!("the environment of process {pid}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "the control plane's token reached: {leaks:?}"
    );
    assert_ne!(
        token["sha256"].as_str(),
        Some(ambient_demo::proof::sha256_hex(sys.token()).as_str())
    );
}
