//! A real panic, in a process whose logging was set up the way every daemon
//! does it (`init_tracing`): this test binary runs itself again as the
//! panicking child, with a secret in its environment that the panic message
//! quotes. The child's stderr holds the report, on one line, without the
//! secret.

use std::process::Command;

const CHILD: &str = "AMBIENT_DAEMON_PANIC_CHILD";
const SECRET: &str = "panic-test-secret-c0ffee42";
const NAME: &str = "a_panic_quoting_a_secret_prints_it_redacted";

#[test]
fn a_panic_quoting_a_secret_prints_it_redacted() {
    if std::env::var_os(CHILD).is_some() {
        let _ = ambient_daemon::init_tracing(ambient_daemon::LogFormat::Text, "info");
        let token = std::env::var("AMBIENT_API_TOKEN").unwrap_or_default();
        let worker = std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || panic!("the API refused bearer {token}\nwhile listing"));
        let _ = worker.map(|w| w.join());
        return;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(exe)
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("AMBIENT_API_TOKEN", SECRET)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Vec<&str> = stderr.lines().filter(|l| l.starts_with("panic")).collect();
    assert_eq!(report.len(), 1, "one line: {stderr}");
    let line = report[0];
    assert!(
        line.starts_with(&format!("panic in thread 'worker' at {}:", file!())),
        "{line}"
    );
    assert!(
        line.ends_with(": the API refused bearer *** while listing"),
        "{line}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(SECRET),
        "stdout"
    );
}
