//! What the suite-wide leak scan needs: every daemon's output as a file, and
//! every secret the tests created. Both live under `AMBIENT_TEST_ARTIFACTS`
//! (nothing is recorded when it is unset).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Spec;

/// The environment variable naming the artifacts directory.
pub const DIR_VAR: &str = "AMBIENT_TEST_ARTIFACTS";

/// Shorter values are not recorded: they would match innocent log text.
const MIN_SECRET_LEN: usize = 8;

fn dir() -> Option<PathBuf> {
    std::env::var_os(DIR_VAR)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// A new log file for one daemon run, or `None` when not recording.
pub(crate) fn log_file(bin: &str, pid: u32) -> Option<File> {
    let dir = dir()?.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    File::create(dir.join(format!("{bin}-{pid}-{}.log", unique()))).ok()
}

/// The log of a server a test runs in its own process (a token server, a
/// gateway): a test that captures that server's tracing output tees it here
/// (`in_process_log("token-server")`), so the suite-wide leak scan reads it
/// like a daemon's. `None` when not recording.
pub fn in_process_log(server: &str) -> Option<File> {
    log_file(&format!("in-process-{server}"), std::process::id())
}

/// A tracing writer for an in-process server: every line goes to `also`
/// (the test's own capture) and to the server's [`in_process_log`].
#[derive(Clone, Debug)]
pub struct TeeLog<W> {
    also: W,
    file: Option<std::sync::Arc<std::sync::Mutex<File>>>,
}

impl<W: Write> TeeLog<W> {
    pub fn new(server: &str, also: W) -> TeeLog<W> {
        TeeLog {
            also,
            file: in_process_log(server).map(|f| std::sync::Arc::new(std::sync::Mutex::new(f))),
        }
    }
}

impl<W: Write> Write for TeeLog<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = &self.file {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(buf)?;
        }
        self.also.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.also.flush()
    }
}

/// Records `value` as a secret the suite created: the leak scan fails if any
/// daemon log contains it (or, for a multi-line value such as a PEM, any of
/// its lines). Values shorter than 8 characters are ignored.
pub fn register_secret(value: &str) {
    let Some(dir) = dir().map(|d| d.join("secrets")) else {
        return;
    };
    let lines: Vec<&str> = value
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= MIN_SECRET_LEN && !l.starts_with("-----"))
        .collect();
    if lines.is_empty() || std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    // One file per test process; each line is one appended write.
    let path = dir.join(format!("{}.txt", std::process::id()));
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        for line in lines {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Records one Kubernetes API access the fake API server allowed
/// (`"<group> <resource> <verb>"`), for the suite-wide comparison with
/// the control plane's rbac.yaml (`cargo xtask test`). Each distinct line
/// is worth recording once per process; duplicates are harmless.
pub fn record_kube_access(line: &str) {
    let Some(dir) = dir().map(|d| d.join("kube-access")) else {
        return;
    };
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join(format!("{}.txt", std::process::id()));
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// Every access [`record_kube_access`] recorded under `dir`.
pub fn kube_accesses(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for file in read_dir_sorted(&dir.join("kube-access"))? {
        for line in std::fs::read_to_string(&file)?.lines() {
            if !line.trim().is_empty() {
                out.insert(line.trim().to_owned());
            }
        }
    }
    Ok(out)
}

/// Whether a flag or variable name carries a secret value (or, when it ends in
/// `file`, names a file holding one).
pub fn names_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    let secretish = [
        "token", "secret", "password", "private", "api-key", "apikey",
    ]
    .iter()
    .any(|w| n.contains(w));
    let harmless = ["url", "addr", "listen", "ttl", "public", "expir", "name"]
        .iter()
        .any(|w| n.contains(w));
    secretish && !harmless
}

fn register_value(name: &str, value: &str) {
    if !names_secret(name) {
        return;
    }
    let n = name.to_ascii_lowercase();
    if n.ends_with("file") {
        if let Ok(contents) = std::fs::read_to_string(value) {
            register_secret(&contents);
        }
        return;
    }
    register_secret(value);
    // `--token NAME=SECRET` names a caller; the secret is the part after `=`.
    if let Some((_, secret)) = value.split_once('=') {
        register_secret(secret);
    }
}

/// Records the secrets a daemon is started with: values of secret-bearing
/// flags (`--flag value` and `--flag=value`) and environment variables, and
/// the contents of secret files they name.
pub(crate) fn register_spec_secrets(spec: &Spec) {
    if dir().is_none() {
        return;
    }
    let mut args = spec.args.iter().peekable();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        if let Some((name, value)) = flag.split_once('=') {
            register_value(name, value);
        } else if let Some(value) = args.peek().filter(|v| !v.starts_with("--")) {
            register_value(flag, value);
        }
    }
    for (k, v) in &spec.env {
        register_value(k, v);
    }
}

/// A registered secret found in a daemon log. Its `Display` never shows the
/// secret, only where it was found and who registered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub log: PathBuf,
    pub line: usize,
    pub registered_by: PathBuf,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: contains a secret registered in {}",
            self.log.display(),
            self.line,
            self.registered_by.display()
        )
    }
}

/// A run of base64 characters this long is an exchange ciphertext (an
/// RSA-4096 block is 512 bytes, 683 characters in base64) or a key: no log
/// line may hold one, whoever created it.
const CIPHERTEXT_LEN: usize = 600;

/// What the scan reports as the registrant of a ciphertext-shaped leak.
pub const CIPHERTEXT_PATTERN: &str = "(the ciphertext pattern: a base64 run of 600+ characters)";

fn holds_ciphertext(line: &str) -> bool {
    let mut run = 0;
    for b in line.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=') {
            run += 1;
            if run >= CIPHERTEXT_LEN {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Scans every log under `dir/logs` for every secret under `dir/secrets`,
/// and for anything shaped like an exchange ciphertext. Returns the number
/// of logs and secrets scanned, and the leaks found.
pub fn scan_logs(dir: &Path) -> std::io::Result<(usize, usize, Vec<Leak>)> {
    let mut secrets: BTreeSet<(String, PathBuf)> = BTreeSet::new();
    for file in read_dir_sorted(&dir.join("secrets"))? {
        for line in std::fs::read_to_string(&file)?.lines() {
            if line.len() >= MIN_SECRET_LEN {
                secrets.insert((line.to_owned(), file.clone()));
            }
        }
    }
    let logs = read_dir_sorted(&dir.join("logs"))?;
    let mut leaks = Vec::new();
    for log in &logs {
        let text = String::from_utf8_lossy(&std::fs::read(log)?).into_owned();
        for (n, line) in text.lines().enumerate() {
            let by = secrets
                .iter()
                .find(|(s, _)| line.contains(s.as_str()))
                .map(|(_, by)| by.clone())
                .or_else(|| holds_ciphertext(line).then(|| PathBuf::from(CIPHERTEXT_PATTERN)));
            if let Some(by) = by {
                leaks.push(Leak {
                    log: log.clone(),
                    line: n + 1,
                    registered_by: by,
                });
            }
        }
    }
    Ok((logs.len(), secrets.len(), leaks))
}

fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "token",
            "api-token",
            "oidc-client-secret",
            "AMBIENT_API_TOKEN",
            "OIDC_CLIENT_SECRET",
            "BOT_TOKEN",
            "ANTHROPIC_API_KEY",
            "api-token-file",
            "token-file",
        ] {
            assert!(names_secret(n), "{n} should carry a secret");
        }
        for n in [
            "token-url",
            "AMBIENT_CP_TOKEN_URL",
            "AMBIENT_CP_TOKEN_PUBLIC_KEY",
            "oidc-token-ttl",
            "listen",
            "data-dir",
            "VERTEX_SECRET_NAME",
        ] {
            assert!(!names_secret(n), "{n} should not carry a secret");
        }
    }

    #[test]
    fn scan_finds_a_registered_secret_and_names_no_value() {
        let root = crate::TempDir::new("artifacts-scan");
        let secrets = root.path().join("secrets");
        let logs = root.path().join("logs");
        std::fs::create_dir_all(&secrets).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(secrets.join("1.txt"), "s3cr3t-value-xyz\nshort\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(logs.join("a.log"), "fine\nshort is not a secret\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(logs.join("b.log"), "ok\nbearer s3cr3t-value-xyz here\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let (n_logs, n_secrets, leaks) = scan_logs(root.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((n_logs, n_secrets), (2, 1));
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].log, logs.join("b.log"));
        assert_eq!(leaks[0].line, 2);
        assert!(!leaks[0].to_string().contains("s3cr3t"));
    }

    #[test]
    fn a_ciphertext_shaped_run_is_a_leak_whoever_made_it() {
        let root = crate::TempDir::new("artifacts-ciphertext");
        let logs = root.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{e}"));
        let long = "Qk".repeat(CIPHERTEXT_LEN / 2);
        let short = &long[..CIPHERTEXT_LEN - 1];
        std::fs::write(
            logs.join("a.log"),
            format!("ok {short} ok\nbearer {long}\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (_, secrets, leaks) = scan_logs(root.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(secrets, 0);
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].line, 2);
        assert_eq!(leaks[0].registered_by, PathBuf::from(CIPHERTEXT_PATTERN));
    }
}
