//! `cargo xtask demo --keep`, as a user runs it from a terminal: it prints
//! the addresses, the API token file and commands to try, keeps serving
//! (the printed commands work), and Ctrl-C — SIGINT to the whole foreground
//! process group — stops everything: exit 0, no process and no temporary
//! directory left. Uses the suite's binaries (`--bin-dir`), builds nothing.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use integration_tests::bin_path;

/// Kills the demo's process group if the test fails midway.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            signal_group(self.0.id(), "-KILL");
            let _ = self.0.wait();
        }
    }
}

fn signal_group(leader: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{leader}")])
        .status();
}

/// The next line of the demo's output that satisfies `wanted` (every line
/// read on the way is appended to `seen`).
fn line_until(
    lines: &mpsc::Receiver<String>,
    seen: &mut String,
    deadline: Instant,
    wanted: impl Fn(&str) -> bool,
) -> String {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if wanted(&line) {
                    return line;
                }
            }
            Err(e) => panic!("demo output ended or stalled ({e}); so far:\n{seen}"),
        }
    }
}

/// The value printed after `label` on a line of `output`.
fn printed(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{output}"))
}

/// Live processes whose command line or environment mentions `dir`.
fn processes_of(dir: &Path) -> Vec<u32> {
    let marker = dir.display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let live = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s[s.rfind(')')? + 1..].trim_start().chars().next())
                .is_some_and(|state| state != 'Z' && state != 'X');
            live && ["cmdline", "environ"].iter().any(|f| {
                std::fs::read(format!("/proc/{pid}/{f}"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
            })
        })
        .collect()
}

#[test]
fn demo_keep_serves_until_ctrl_c_then_leaves_nothing_behind() {
    for bin in [
        "ambient-devserver",
        "ambient-mcp",
        "credential-entrypoint",
        "ambient-demo-runner",
        "credential-test-mcp-server",
    ] {
        bin_path(bin);
    }
    let cp = bin_path("ambient-control-plane");
    let bin_dir = cp.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["demo", "--keep", "--bin-dir"])
        .arg(&bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, as a terminal's foreground job.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start xtask: {e}"));
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let demo = Group(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout
            .map(BufReader::new)
            .into_iter()
            .flat_map(|r| r.lines())
        {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        text
    });

    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    line_until(&lines, &mut seen, deadline, |l| {
        l.contains("Ctrl-C stops it")
    });
    line_until(&lines, &mut seen, deadline, |l| {
        l.contains("starts another session")
    });
    let api = printed(&seen, "REST API");
    let token_file = PathBuf::from(printed(&seen, "token file"));
    let state_dir = PathBuf::from(printed(&seen, "state dir"));
    let temp = state_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for label in ["gRPC", "token server", "health"] {
        assert!(!printed(&seen, label).is_empty());
    }

    // It keeps serving, and what it suggests works.
    let token = std::fs::read_to_string(&token_file)
        .unwrap_or_else(|e| panic!("token file {}: {e}", token_file.display()));
    let sessions: serde_json::Value = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .and_then(|c| {
            c.get(format!("{api}/sessions"))
                .bearer_auth(token.trim())
                .send()
        })
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("GET {api}/sessions: {e}"));
    let phase = sessions
        .pointer("/items/0/phase")
        .and_then(serde_json::Value::as_str);
    assert_eq!(phase, Some("Completed"), "{sessions}");
    let logs = seen
        .lines()
        .find(|l| l.contains(" logs --state-dir "))
        .unwrap_or_else(|| panic!("no logs command in:\n{seen}"));
    let out = Command::new("/bin/sh")
        .args(["-c", logs])
        .output()
        .unwrap_or_else(|e| panic!("{logs}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("demo-runner: Done"),
        "{logs}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !processes_of(&temp).is_empty(),
        "nothing runs from {temp:?}"
    );

    // Ctrl-C.
    let mut demo = demo;
    signal_group(demo.0.id(), "-INT");
    let stop_deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = demo.0.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < stop_deadline,
            "the demo did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        seen.push_str(&line);
        seen.push('\n');
    }
    let errors = errors.join().unwrap_or_default();
    assert!(status.success(), "exit {status}:\n{seen}\n{errors}");
    assert!(
        seen.contains("no process of ours left, temporary directory removed"),
        "{seen}\n{errors}"
    );
    assert!(!temp.exists(), "{} is still there", temp.display());
    assert_eq!(
        processes_of(&temp),
        Vec::<u32>::new(),
        "processes left behind"
    );
}
