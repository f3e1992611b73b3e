//! Child processes a test waits for (Python interop scripts, CLIs) get a
//! deadline: a hung child fails the test with a message naming what it
//! waited for, instead of stalling the suite.

use std::process::{Child, ExitStatus, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Waits up to `limit` for `child` to exit. Past it, kills the child and
/// panics with "timed out after … waiting for <what>".
pub fn wait_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("timed out after {limit:?} waiting for {what}");
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// Collects the output of `child` (spawned with piped stdout/stderr) within
/// `limit`. Past it, kills the child and panics naming `what`.
pub fn output_within(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("waiting for {what}: {e}"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("timed out after {limit:?} waiting for {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_hung_child_fails_with_what_was_awaited() {
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = std::panic::catch_unwind(move || {
            output_within(child, Duration::from_millis(200), "a sleeping child")
        })
        .err()
        .unwrap_or_else(|| panic!("a hung child must fail"));
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("waiting for a sleeping child"), "{msg}");
    }

    #[test]
    fn a_quick_child_gives_its_output() {
        let child = Command::new("echo")
            .arg("hi")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let out = output_within(child, Duration::from_secs(30), "echo");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
        let mut child = Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(wait_within(&mut child, Duration::from_secs(30), "true").success());
    }
}
