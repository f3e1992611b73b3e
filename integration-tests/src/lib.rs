//! Support for black-box tests: start a real binary of the workspace, wait for
//! its `<name> listening on <addr>` lines, collect its logs, stop it.
//!
//! Binaries are found next to the test executable (`target/<profile>/`), or in
//! `AMBIENT_BIN_DIR`. `cargo xtask test` builds every workspace binary before
//! running the suite; `cargo build --workspace --bins` does the same by hand.
//! A binary older than any source file it was built from (cargo's dep-info
//! file `<bin>.d` beside it lists them) is refused with the command to run,
//! so a test never exercises yesterday's code.
//!
//! Secrets: when `AMBIENT_TEST_ARTIFACTS` names a directory (`cargo xtask
//! test` sets it), every daemon's output is written line by line to
//! `logs/<bin>-<pid>.log` there, and every secret a test hands a daemon (the
//! values of secret-bearing flags and environment variables, the contents of
//! secret files) or registers with [`register_secret`] is recorded under
//! `secrets/`. After the suite, `cargo xtask test` scans every log for every
//! recorded secret.

mod artifacts;
pub mod bench;
mod deadline;
pub mod local_system;
pub mod mcp;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use artifacts::{
    DIR_VAR as ARTIFACTS_VAR, Leak, TeeLog, in_process_log, kube_accesses, names_secret,
    record_kube_access, register_secret, scan_logs,
};
pub use deadline::{output_within, wait_within};

/// Path of a workspace binary.
pub fn bin_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("AMBIENT_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().unwrap_or_default();
            // target/<profile>/deps/<test> → target/<profile>
            exe.parent()
                .and_then(|deps| deps.parent())
                .map(PathBuf::from)
                .unwrap_or_default()
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace binaries first (cargo build --workspace --bins, or cargo xtask test)",
        path.display()
    );
    if let Some(newer) = newer_source(&path) {
        panic!(
            "{} is older than {}, a file it is built from: rebuild the workspace binaries \
             (cargo build --workspace --bins, or cargo xtask test)",
            path.display(),
            newer.display()
        );
    }
    path
}

/// A source file listed in the binary's dep-info (`<bin>.d`, written by cargo
/// beside it) that was modified after the binary was linked, if any.
fn newer_source(bin: &std::path::Path) -> Option<PathBuf> {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let depinfo = std::fs::read_to_string(bin.with_extension("d")).ok()?;
    let (_, deps) = depinfo.lines().next()?.split_once(": ")?;
    dep_paths(deps).into_iter().find(|dep| {
        std::fs::metadata(dep)
            .and_then(|m| m.modified())
            .is_ok_and(|changed| changed > built)
    })
}

/// The paths of a Makefile-style dependency list (`\ ` escapes a space).
fn dep_paths(list: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            ' ' => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut cur)));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    out
}

/// A running daemon. Killed on drop if still running.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    addrs: HashMap<String, SocketAddr>,
    output: Arc<Mutex<String>>,
}

/// How to start a daemon.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub bin: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Listener names to wait for, e.g. `["grpc", "http"]` for lines
    /// `grpc listening on 127.0.0.1:1234`.
    pub listeners: Vec<String>,
    /// The program to run, when not the workspace binary `bin` found by [`bin_path`].
    pub program: Option<PathBuf>,
    /// A command that `exec`s the binary (given its path and arguments
    /// after these words), e.g. a shell that changes a signal disposition
    /// first; empty: the binary is started directly.
    pub via: Vec<String>,
}

impl Spec {
    pub fn new(bin: &str) -> Self {
        Self {
            bin: bin.into(),
            ..Self::default()
        }
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn listener(mut self, name: impl Into<String>) -> Self {
        self.listeners.push(name.into());
        self
    }
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }
    /// Starts the binary through `wrapper` (the `via` field).
    pub fn via<I: IntoIterator<Item = S>, S: Into<String>>(mut self, wrapper: I) -> Self {
        self.via = wrapper.into_iter().map(Into::into).collect();
        self
    }
}

impl Daemon {
    /// Starts the daemon and waits (up to 60 s) for every listener line.
    /// Panics with the daemon's output if it exits or never announces them.
    pub fn start(spec: Spec) -> Daemon {
        Self::try_start(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Daemon::start`], saying why instead of panicking (the daemon's
    /// output included).
    pub fn try_start(spec: Spec) -> Result<Daemon, String> {
        artifacts::register_spec_secrets(&spec);
        let program = spec.program.clone().unwrap_or_else(|| bin_path(&spec.bin));
        let mut cmd = match spec.via.split_first() {
            Some((wrapper, words)) => {
                let mut c = Command::new(wrapper);
                c.args(words).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.bin))?;
        let output = Arc::new(Mutex::new(String::new()));
        let log_file = artifacts::log_file(&spec.bin, child.id()).map(|f| Arc::new(Mutex::new(f)));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        for pipe in [
            stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            stderr.map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            let log_file = log_file.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut o) = output.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                    if let Some(Ok(mut f)) = log_file.as_ref().map(|f| f.lock()) {
                        let _ = writeln!(f, "{line}");
                    }
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let mut daemon = Daemon {
            child,
            addrs: HashMap::new(),
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while spec.listeners.iter().any(|l| !daemon.addrs.contains_key(l)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some((name, addr)) = line.split_once(" listening on ")
                        && let Ok(addr) = addr.trim().parse()
                    {
                        daemon.addrs.insert(name.trim().to_owned(), addr);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "{} did not announce {:?}; output:\n{}",
                        spec.bin,
                        spec.listeners,
                        daemon.logs()
                    ));
                }
            }
        }
        Ok(daemon)
    }

    /// The address a listener announced.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        *self
            .addrs
            .get(listener)
            .unwrap_or_else(|| panic!("no listener {listener:?}"))
    }

    /// Everything the daemon printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `grace` for the exit; kills after that.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Kills the daemon at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// A fresh private temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let unique = format!(
            "{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir(path)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_paths_with_escaped_spaces() {
        assert_eq!(
            dep_paths("/a/b.rs /c/my\\ dir/d.rs  /e.rs"),
            vec![
                PathBuf::from("/a/b.rs"),
                PathBuf::from("/c/my dir/d.rs"),
                PathBuf::from("/e.rs")
            ]
        );
    }

    #[test]
    fn a_binary_older_than_a_source_is_stale() {
        let dir = TempDir::new("stale-bin");
        let src = dir.path().join("main.rs");
        let bin = dir.path().join("tool");
        std::fs::write(&src, "fn main() {}").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&bin, "binary").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("tool.d"),
            format!("{}: {}\n", bin.display(), src.display()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        let set = |p: &std::path::Path, t| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .and_then(|f| f.set_modified(t))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        set(&src, old);
        assert_eq!(newer_source(&bin), None, "fresh binary");
        set(&bin, old - Duration::from_secs(60));
        assert_eq!(
            newer_source(&bin),
            Some(src),
            "source edited after the link"
        );
    }
}
