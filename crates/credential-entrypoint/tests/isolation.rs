//! The child cannot read what the entrypoint withheld from it: the
//! entrypoint is non-dumpable, so a process of the same user gets EACCES on
//! its `/proc/PID/environ` (where the exchange inputs are), while
//! `/proc/PID/stat` stays readable.

mod support;

use serde_json::json;
use support::{Entrypoint, World};

/// True when this test runs as root: root keeps CAP_SYS_PTRACE (which reads
/// any process) unless its capabilities are dropped, and a process without
/// them is refused a parent that has them whatever the parent's
/// dumpability, so both run without any, as in a pod.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cannot_read_the_entrypoints_environment() {
    let w = World::start("ce-isolation").await;
    let dir = w.tmp.path().to_owned();
    let id = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_isolation_sec"}))
        .await;
    // The child tries both files of its parent and records how each went.
    let script = r#"
        cat /proc/$PPID/stat > /dev/null 2> "$TEST_SERVER_REPORT_DIR/stat.err"
        echo $? > "$TEST_SERVER_REPORT_DIR/stat.code"
        cat /proc/$PPID/environ > /dev/null 2> "$TEST_SERVER_REPORT_DIR/environ.err"
        echo $? > "$TEST_SERVER_REPORT_DIR/environ.code"
    "#;
    let wrapper: &[&str] = if is_root() {
        // Same uid (0), no capabilities, entrypoint and child alike.
        &["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]
    } else {
        &[]
    };
    let private = dir.join("private");
    let args = [
        "--files-dir",
        private.to_str().unwrap_or_default(),
        "sh",
        "-c",
        script,
    ];
    let reports = dir.join("reports");
    let mut ep = Entrypoint::start_via(wrapper, &args, &w.sidecar_env("github", &id), &reports);
    let status = ep.exit().await;
    assert_eq!(status.code(), Some(0), "{}", ep.stderr());
    let read = |name: &str| std::fs::read_to_string(reports.join(name)).unwrap_or_default();
    assert_eq!(read("stat.code").trim(), "0", "stat: {}", read("stat.err"));
    assert_ne!(
        read("environ.code").trim(),
        "0",
        "the child read the entrypoint's environment"
    );
    assert!(
        read("environ.err").contains("Permission denied"),
        "not EACCES: {}",
        read("environ.err")
    );
}
