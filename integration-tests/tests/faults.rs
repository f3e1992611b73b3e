//! The fault suite: every reliability bullet of the quality bars
//! (`quality.md`, "Reliability") is a test. Most live next to the daemon
//! they exercise; this table says where, and this file holds the faults
//! that cross daemons or had no test yet. Everything runs in `cargo xtask
//! test` (and so in `.ci/run`), on loopback, with the real binaries.
//!
//! | bullet | test |
//! |---|---|
//! | API server killed mid-watch: the control plane keeps serving tokens, reconnects, relists, converges; sessions created meanwhile get pods, deleted ones are cleaned | `control-plane/tests/reconcile.rs` `api_server_restart_mid_watch_converges`; tokens while it is down: `control-plane/tests/ha_and_tokens.rs` `tokens_are_served_while_the_api_server_is_down`; relist edge cases: `races.rs` `relist_never_deletes_an_object_a_page_skipped`, `a_late_reply_never_resurrects_a_deleted_session`, `projects_and_settings_deleted_while_down_are_cleaned` |
//! | control plane restarted: no duplicate pods, nothing leaks | SIGTERM: `reconcile.rs` `control_plane_restart_applies_nothing_twice_and_leaks_nothing`; SIGKILL mid-reconcile (kube runtime): `kube_failures.rs` `killed_mid_reconcile_and_restarted_creates_nothing_twice`; `races.rs` `the_reprovision_memory_survives_a_restart`; with the process runtime: issue 15's end-to-end tests |
//! | kube API 409/429/500/timeouts → retried with backoff; one failing session never blocks the others | `reconcile.rs` `kube_errors_on_one_session_are_retried_without_blocking_others`; `kube_failures.rs` `apply_faults_are_retried` (409, 429, 500, 504), `a_kube_request_that_never_answers_is_retried` (a hung apply); API calls: `races.rs` `a_hung_api_call_ends_with_deadline_exceeded` |
//! | token server down at start → retries, then a clear error | `protocol` `exchanger::tests::a_dropping_server_is_a_transport_error_after_three_attempts`, `recovers_after_two_503s_in_exactly_three_requests_with_default_waits`; binaries: `mcp-sidecar/tests/token.rs` `an_unreachable_token_server_stops_startup`, here `runner_client_without_a_token_server_retries_then_fails_clearly`, `credential-entrypoint/tests/entrypoint.rs` `fail_closed_paths_exit_non_zero_and_never_start_the_child` ("exchange refused") |
//! | token server down later → the last good token until it expires, refresh retried with backoff | `protocol` `exchanger::tests::the_last_good_token_stays_while_the_server_is_down`; binary: here `ambient_mcp_keeps_its_last_good_token_until_it_expires` |
//! | 401 from the API → one immediate refresh and retry | `protocol` `exchanger::tests::invalidate_after_401_refetches`; `mcp-sidecar/tests/token.rs` `token_rotation_mid_run_is_handled_by_one_refresh_and_retry`; `runner-client/tests/exchange.rs` `revoked_token_mid_watch_is_refreshed_and_the_watch_continues` |
//! | credential entrypoint: API down at start → non-zero exit before the child runs | `entrypoint.rs` `fail_closed_paths_exit_non_zero_and_never_start_the_child` ("api down", "exchange refused", "unknown credential", ...) |
//! | credential rotation while the child runs → the child gets it | `entrypoint.rs` `rotation_reaches_the_running_child`; `credential-entrypoint/tests/interop_python.rs` (bridge sessions) |
//! | every daemon: SIGTERM → graceful stop in its grace period, exit 0 | devserver: `devserver/tests/lifecycle.rs` `sigterm_stops_gracefully_with_exit_zero`, `sigterm_with_open_watches_still_exits_zero`; token server: `token-server/tests/cli.rs` `platform_identity_serves_the_api_token_warns_and_stops_on_sigterm`; control plane: `reconcile.rs` `control_plane_restart_applies_nothing_twice_and_leaks_nothing`; ambient-mcp (open SSE session): `mcp-sidecar/tests/token.rs` `token_rotation_mid_run_is_handled_by_one_refresh_and_retry`; credential-entrypoint with its child: `entrypoint.rs` `every_provider_reaches_the_child` (`stop_cleanly`); runner-client watch: `runner-client/tests/cli.rs` `sigterm_stops_a_watch_with_exit_0` |
//! | devserver: full disk / read-only data directory → a clear error, no corruption | here `devserver_on_a_full_disk_refuses_writes_and_keeps_its_data`, `devserver_on_a_read_only_data_dir_stops_in_one_line` |
//!
//! A full disk without mounting anything: the devserver runs with SIGXFSZ
//! ignored (a shell `trap` before `exec`; an ignored signal stays ignored
//! across `exec`), and `prlimit` lowers its file-size limit to 0 while it
//! runs, so every write to a regular file fails with `EFBIG`, as on a full
//! disk, until the limit is raised again. A read-only directory for root
//! (who ignores modes): `setpriv` drops the capabilities that override file
//! modes from the devserver's bounding set.

#[path = "../../crates/mcp-sidecar/tests/support/mcp.rs"]
#[allow(dead_code)]
mod mcp;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{Daemon, Spec, TempDir, bin_path, output_within};
use mcp::{Kind, Tools as _, connect};
use serde_json::{Value, json};

const API_TOKEN: &str = "faults-api-token-51c7e0";
const OIDC_ID: &str = "faults-control-plane";
const OIDC_SECRET: &str = "faults-oidc-secret-8d2b94";

fn devserver(data: &Path, extra: &[&str]) -> Spec {
    Spec::new("ambient-devserver")
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("AMBIENT_DEVSERVER_TOKEN", API_TOKEN)
        .arg("--data-dir")
        .arg(data.to_string_lossy())
        .args(extra.iter().copied())
        .listener("grpc")
        .listener("http")
}

/// REST on the devserver: (status, body).
async fn rest(
    dev: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}/api/ambient/v1{path}", dev.addr("http"));
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(API_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create_session(dev: &Daemon, name: &str) -> (u16, Value) {
    rest(
        dev,
        reqwest::Method::POST,
        "/sessions",
        Some(json!({"name": name, "project_id": "disk"})),
    )
    .await
}

/// Creates project `disk` and session `name` in it; the session's ID.
async fn session_in_new_project(dev: &Daemon, name: &str) -> String {
    let project = Some(json!({"name": "disk"}));
    let (status, _) = rest(dev, reqwest::Method::POST, "/projects", project).await;
    assert_eq!(status, 201);
    let (status, session) = create_session(dev, name).await;
    assert_eq!(status, 201, "{session}");
    session["id"].as_str().unwrap_or_default().to_owned()
}

/// The names of every session, sorted.
async fn session_names(dev: &Daemon) -> Vec<String> {
    let (status, list) = rest(dev, reqwest::Method::GET, "/sessions?size=100", None).await;
    assert_eq!(status, 200, "{list}");
    let mut names: Vec<String> = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn prlimit_fsize(pid: u32, soft: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={soft}:")])
        .status()
        .unwrap_or_else(|e| panic!("prlimit (util-linux) is needed: {e}"));
    assert!(status.success(), "prlimit --fsize={soft}: failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devserver_on_a_full_disk_refuses_writes_and_keeps_its_data() {
    let tmp = TempDir::new("faults-full-disk");
    let data = tmp.path().join("data");
    // SIGXFSZ ignored: a write past the limit fails with EFBIG instead of
    // killing the process, as a full disk fails with ENOSPC.
    let mut dev =
        Daemon::start(devserver(&data, &[]).via(["sh", "-c", "trap '' XFSZ; exec \"$0\" \"$@\""]));
    let (status, project) = rest(
        &dev,
        reqwest::Method::POST,
        "/projects",
        Some(json!({"name": "disk"})),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    for name in ["before-1", "before-2"] {
        assert_eq!(create_session(&dev, name).await.0, 201);
    }

    // The disk is full: writes fail with a clear error and change nothing;
    // reads go on.
    prlimit_fsize(dev.pid(), "0");
    for name in ["during-1", "during-2"] {
        let (status, body) = create_session(&dev, name).await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["reason"], "internal storage error", "{body}");
    }
    assert_eq!(session_names(&dev).await, ["before-1", "before-2"]);
    let logs = dev.logs();
    let failure = logs
        .lines()
        .find(|l| l.contains("storage failure"))
        .unwrap_or_else(|| panic!("no storage failure logged:\n{logs}"));
    assert!(
        failure.contains("large") || failure.contains("full") || failure.contains("disk I/O"),
        "the log line says why: {failure}"
    );

    // Space again: writes work without a restart.
    prlimit_fsize(dev.pid(), "unlimited");
    assert_eq!(create_session(&dev, "after").await.0, 201);
    let stopped = dev.terminate(Duration::from_secs(10));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");

    // Nothing lost, nothing half-written: the restarted devserver has exactly
    // the writes that were answered 201.
    let dev = Daemon::start(devserver(&data, &[]));
    assert_eq!(session_names(&dev).await, ["after", "before-1", "before-2"]);
}

/// Runs `cmd` to its exit (at most 30 s): (exit code, stderr).
fn run_to_exit(cmd: &mut Command, what: &str) -> (Option<i32>, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let out = output_within(child, Duration::from_secs(30), what);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devserver_on_a_read_only_data_dir_stops_in_one_line() {
    let tmp = TempDir::new("faults-read-only");
    let data = tmp.path().join("data");
    let mut dev = Daemon::start(devserver(&data, &[]));
    let (status, _) = rest(
        &dev,
        reqwest::Method::POST,
        "/projects",
        Some(json!({"name": "disk"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(create_session(&dev, "kept").await.0, 201);
    let stopped = dev.terminate(Duration::from_secs(10));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");

    // Read-only: the directory and every file in it. Root ignores modes, so
    // the devserver runs without the capabilities that override them.
    let files: Vec<_> = std::fs::read_dir(&data)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    for f in &files {
        chmod(f, 0o400);
    }
    chmod(&data, 0o500);
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--bounding-set",
        "-dac_override,-dac_read_search,-fowner",
        "--",
    ])
    .arg(bin_path("ambient-devserver"))
    .args([
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
    .env("AMBIENT_DEVSERVER_TOKEN", API_TOKEN)
    .arg("--data-dir")
    .arg(&data);
    let (code, stderr) = run_to_exit(&mut cmd, "devserver on a read-only data dir");
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains("ermission denied"),
        "names the directory and why: {stderr}"
    );
    assert!(!stderr.contains(API_TOKEN), "{stderr}");

    // Writable again: everything is still there.
    chmod(&data, 0o700);
    for f in &files {
        chmod(f, 0o600);
    }
    let dev = Daemon::start(devserver(&data, &[]));
    assert_eq!(session_names(&dev).await, ["kept"]);
}

#[test]
fn runner_client_without_a_token_server_retries_then_fails_clearly() {
    let key = ambient_protocol::keys::PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    // A port nobody listens on (bound, then released).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let (code, stderr) = run_to_exit(
        Command::new(bin_path("ambient-runner-client"))
            .arg("token")
            .env("AMBIENT_CP_TOKEN_URL", format!("http://{dead}/token"))
            .env("AMBIENT_CP_TOKEN_PUBLIC_KEY", key.public_key().to_pem())
            .env("SESSION_ID", "sess-faults-1")
            .env("AMBIENT_GRPC_URL", "127.0.0.1:9"),
        "runner client without a token server",
    );
    assert_ne!(code, Some(0), "{stderr}");
    assert!(code.is_some(), "exited, not killed");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ambient-runner-client: ") && last.contains("token"),
        "ends with one line saying what failed: {stderr}"
    );
    // Three attempts, 1 s and 2 s apart (the wire contract's retries).
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "gave up after {:?} without retrying",
        started.elapsed()
    );
}

/// A token server with an OIDC identity toward the devserver, handing out
/// session tokens that live `ttl`; its exchange and signing keys (in `keys`)
/// are reused across restarts. With `gateway`, it serves the session
/// gateway too (announced as "session gateway").
fn token_server(keys: &Path, dev: &Daemon, listen: &str, ttl: Duration, gateway: bool) -> Daemon {
    let mut spec = Spec::new("ambient-token-server")
        .args(["--listen", listen, "--session-cache-ms", "0"])
        .arg("--key-file")
        .arg(keys.join("key.pem").to_string_lossy())
        .arg("--generate-key")
        .arg("--signing-key-file")
        .arg(keys.join("signing-key.pem").to_string_lossy())
        .arg("--generate-signing-key")
        .args(["--session-token-ttl", &ttl.as_secs().to_string()])
        .args(["--api-server-grpc", &dev.addr("grpc").to_string()])
        .arg("--allow-insecure-oidc")
        .arg("--oidc-token-url")
        .arg(format!("http://{}/oidc/token", dev.addr("http")))
        .args(["--oidc-client-id", OIDC_ID])
        .arg("--oidc-client-secret-file")
        .arg(keys.join("oidc-secret").to_string_lossy())
        .listener("token server");
    if gateway {
        spec = spec
            .args(["--gateway-listen", "127.0.0.1:0"])
            .arg("--api-server-url")
            .arg(format!("http://{}", dev.addr("http")))
            .listener("session gateway");
    }
    Daemon::start(spec)
}

/// Waits until `gateway` answers `GET /sessions/<sid>` to `token` (it
/// learns of a session it did not exchange for in the background).
async fn wait_admitted(gateway: &str, sid: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let url = format!("http://{gateway}/api/ambient/v1/sessions/{sid}");
    loop {
        let resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(token)
            .send()
            .await;
        match resp.map(|r| r.status().as_u16()) {
            Ok(200) => return,
            other if Instant::now() < deadline => {
                let _ = other;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("the gateway does not admit the session: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambient_mcp_keeps_its_last_good_token_until_it_expires() {
    const TTL: Duration = Duration::from_secs(12);
    let tmp = TempDir::new("faults-last-good-token");
    let dev = Daemon::start(
        devserver(&tmp.path().join("data"), &[])
            .args(["--oidc-client-id", OIDC_ID])
            .env("AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET", OIDC_SECRET)
            .args(["--oidc-token-ttl", &TTL.as_secs().to_string()]),
    );
    let sid = session_in_new_project(&dev, "watched").await;
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(keys.join("oidc-secret"), OIDC_SECRET).unwrap_or_else(|e| panic!("{e}"));
    // The sidecar's API is a session gateway of its own process (sharing
    // the signing key), so the token server can go away while the API stays.
    let gw = token_server(&keys, &dev, "127.0.0.1:0", TTL, true);
    let gw_addr = gw.addr("session gateway").to_string();
    let mut ts = token_server(&keys, &dev, "127.0.0.1:0", TTL, false);
    let ts_addr = ts.addr("token server").to_string();
    let public_key = ambient_protocol::keys::PrivateKey::from_pem(
        &std::fs::read_to_string(keys.join("key.pem")).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .public_key()
    .clone();
    let public = public_key.to_pem();
    let probe = ambient_protocol::exchanger::TokenExchanger::new(
        ambient_protocol::exchanger::ExchangerConfig::new(
            format!("http://{ts_addr}/token"),
            public_key,
            &sid,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (token, _) = probe.fetch().await.unwrap_or_else(|e| panic!("{e}"));
    integration_tests::register_secret(token.expose());
    wait_admitted(&gw_addr, &sid, token.expose()).await;

    let mut sidecar = Daemon::start(
        Spec::new("ambient-mcp")
            .args(["--transport", "http", "--bind", "127.0.0.1:0"])
            .args(["--api-url", &format!("http://{gw_addr}")])
            .args(["--log-level", "debug"])
            .env("AMBIENT_CP_TOKEN_URL", format!("http://{ts_addr}/token"))
            .env("AMBIENT_CP_TOKEN_PUBLIC_KEY", public)
            .env("SESSION_ID", &sid)
            .listener("mcp"),
    );
    // The first token was fetched before the sidecar announced itself.
    let fetched = Instant::now();
    let client = connect(Kind::Streamable, sidecar.addr("mcp")).await;
    let args = json!({"session_id": sid});
    client.ok("get_session", args.clone()).await;

    // The token server goes away: the token in hand keeps working.
    ts.kill();
    let got = client.ok("get_session", args.clone()).await;
    assert_eq!(got["id"], json!(sid));

    // Until it expires: then a clear tool error, and the sidecar lives on.
    tokio::time::sleep(
        (fetched + TTL + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    )
    .await;
    let err = client
        .call("get_session", args.clone())
        .await
        .err()
        .unwrap_or_else(|| panic!("an expired token was used"));
    assert_eq!(err["code"], "UNAUTHORIZED", "{err}");
    assert!(
        err["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot obtain an API token")),
        "{err}"
    );

    // The token server is back on its address: the next call gets a token.
    let mut ts = token_server(&keys, &dev, &ts_addr, TTL, false);
    let got = client.ok("get_session", args).await;
    assert_eq!(got["id"], json!(sid));
    let logs = sidecar.logs();
    assert!(
        logs.contains("refresh"),
        "the failed refreshes are logged:\n{logs}"
    );

    let status = sidecar.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    ts.terminate(Duration::from_secs(10));
    drop(gw);
}

/// Session pods name the service CA of an optional ConfigMap in
/// `SSL_CERT_FILE`; on a cluster without it the file is absent. The sidecar
/// must still start and serve (it used to refuse its configuration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_service_ca_file_is_ignored_with_a_warning() {
    let tmp = TempDir::new("faults-missing-ca");
    let dev = Daemon::start(devserver(&tmp.path().join("data"), &[]));
    let sid = session_in_new_project(&dev, "no-ca").await;
    let missing = tmp.path().join("service-ca.crt");
    let sidecar = Daemon::start(
        Spec::new("ambient-mcp")
            .args(["--transport", "http", "--bind", "127.0.0.1:0"])
            .args(["--api-url", &format!("http://{}", dev.addr("http"))])
            .env("AMBIENT_TOKEN", API_TOKEN)
            .env("SESSION_ID", &sid)
            .env("SSL_CERT_FILE", missing.to_string_lossy().into_owned())
            .listener("mcp"),
    );
    let client = connect(Kind::Streamable, sidecar.addr("mcp")).await;
    let got = client.ok("get_session", json!({"session_id": sid})).await;
    assert_eq!(got["id"], json!(sid));
    assert!(
        sidecar.logs().contains("SSL_CERT_FILE names no file"),
        "warns about the missing file: {}",
        sidecar.logs()
    );
}

/// Every name a table cell quotes in backticks that could name a test (a
/// snake_case word with an underscore, or the last part of a `a::b::c`
/// path), and every `.rs` file it quotes.
fn quoted(cell: &str) -> (Vec<String>, Vec<String>) {
    let (mut names, mut files) = (Vec::new(), Vec::new());
    for (i, part) in cell.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        if part.ends_with(".rs") {
            files.push(part.to_owned());
            continue;
        }
        let last = part.rsplit("::").next().unwrap_or(part);
        let snake = last
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if snake && last.contains('_') && !last.starts_with('_') {
            names.push(last.to_owned());
        }
    }
    (names, files)
}

/// Every `fn` name and every `.rs` path (relative to the repository) of
/// the repository's Rust sources, `target/` aside.
fn sources(root: &Path) -> (std::collections::BTreeSet<String>, Vec<String>) {
    let mut fns = std::collections::BTreeSet::new();
    let mut paths = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !(name == "target" || name.starts_with('.')) {
                    dirs.push(path);
                }
                continue;
            }
            if !name.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for piece in text.split("fn ").skip(1) {
                let ident: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                fns.insert(ident);
            }
            // A fuzz target is named by its file.
            fns.insert(name.trim_end_matches(".rs").to_owned());
            let rel = path.strip_prefix(root).unwrap_or(&path);
            paths.push(rel.to_string_lossy().into_owned());
        }
    }
    (fns, paths)
}

/// The fault table (this file) and the security table (`security.rs`):
/// every row names at least one test, and every test and file a row
/// names exists, so a renamed or deleted test cannot leave a row pointing
/// at nothing.
#[test]
fn every_row_of_the_fault_and_security_tables_names_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (fns, paths) = sources(&root);
    let mut problems = Vec::new();
    let mut rows = 0;
    for table in ["faults.rs", "security.rs"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(table);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{table}: {e}"));
        for line in text.lines() {
            let Some(row) = line.strip_prefix("//! |") else {
                continue;
            };
            let cells: Vec<&str> = row.split(" | ").collect();
            if row.starts_with("---") || cells.first().is_some_and(|c| c.trim() == "bullet") {
                continue;
            }
            rows += 1;
            let bullet = cells.first().map_or("", |c| c.trim());
            let (names, files) = quoted(&cells[1..].join(" | "));
            let missing: Vec<&String> = names.iter().filter(|n| !fns.contains(*n)).collect();
            if !missing.is_empty() {
                problems.push(format!("{table} {bullet:?}: no test named {missing:?}"));
            }
            if names.is_empty() {
                problems.push(format!("{table} {bullet:?}: names no test"));
            }
            for file in files {
                if !paths.iter().any(|p| p.ends_with(&file)) {
                    problems.push(format!("{table} {bullet:?}: no file {file}"));
                }
            }
        }
    }
    assert!(
        rows >= 15,
        "only {rows} table rows found: is the table format changed?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
