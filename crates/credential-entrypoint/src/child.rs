//! The supervised child: started in its own process group with a clean
//! environment (the inherited one minus the exchange variables, plus the
//! credential), signalled as a group, stopped gracefully, and its exit
//! status turned into ours (128+signal when it was killed by a signal).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use ambient_protocol::env;
use rustix::process::{Pid, Signal};
use tokio::process::{ChildStdin, ChildStdout};

use crate::mapping::Delivery;

/// Variables the child does not inherit: with the session ID they would let
/// it exchange for the session's API token itself (the v3 key file's path
/// included; the file itself is the container's, see the README).
pub const WITHHELD: [&str; 4] = [
    env::AMBIENT_CP_TOKEN_URL,
    env::AMBIENT_CP_TOKEN_PUBLIC_KEY,
    env::AMBIENT_SESSION_KEY_FILE,
    env::CREDENTIAL_IDS,
];

/// The environment the entrypoint inherited, captured once.
#[derive(Debug, Clone)]
pub struct BaseEnv(BTreeMap<OsString, OsString>);

impl BaseEnv {
    /// The current process environment minus [`WITHHELD`].
    pub fn capture() -> Self {
        Self(
            std::env::vars_os()
                .filter(|(k, _)| !WITHHELD.iter().any(|w| k == w))
                .collect(),
        )
    }

    /// The child's environment for `delivery`.
    pub fn with(&self, delivery: &Delivery) -> BTreeMap<OsString, OsString> {
        let mut vars = self.0.clone();
        for (k, v) in &delivery.defaults {
            vars.entry(k.into()).or_insert_with(|| v.into());
        }
        for (k, v) in &delivery.env {
            vars.insert(k.into(), v.expose().into());
        }
        vars
    }
}

/// A running child process (the leader of its own process group).
#[derive(Debug)]
pub struct Child {
    inner: tokio::process::Child,
    pid: Option<Pid>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `command` with exactly `vars` as its environment; it shares
    /// our stdin, stdout and stderr.
    pub fn spawn(
        command: &[OsString],
        vars: &BTreeMap<OsString, OsString>,
    ) -> std::io::Result<Child> {
        Self::spawn_with(command, vars, false)
    }

    /// Like [`Child::spawn`], with its stdin and stdout piped to us (an MCP
    /// server spoken to over stdio).
    pub fn spawn_stdio(
        command: &[OsString],
        vars: &BTreeMap<OsString, OsString>,
    ) -> std::io::Result<(Child, ChildStdin, ChildStdout)> {
        let mut child = Self::spawn_with(command, vars, true)?;
        let stdin = child.inner.stdin.take();
        let stdout = child.inner.stdout.take();
        match (stdin, stdout) {
            (Some(i), Some(o)) => Ok((child, i, o)),
            _ => Err(std::io::Error::other("child has no stdio pipes")),
        }
    }

    fn spawn_with(
        command: &[OsString],
        vars: &BTreeMap<OsString, OsString>,
        piped: bool,
    ) -> std::io::Result<Child> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(vars)
            .process_group(0)
            .kill_on_drop(false);
        if piped {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        }
        let inner = cmd.spawn()?;
        let pid = inner
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        Ok(Child {
            inner,
            pid,
            status: None,
        })
    }

    /// Process ID (also the process group ID).
    pub fn id(&self) -> Option<u32> {
        self.pid.map(|p| p.as_raw_nonzero().get().unsigned_abs())
    }

    /// Sends `signal` to the child's process group (ignored once it is gone).
    pub fn signal(&self, signal: Signal) {
        if self.status.is_some() {
            return;
        }
        if let Some(pid) = self.pid
            && let Err(e) = rustix::process::kill_process_group(pid, signal)
            && e != rustix::io::Errno::SRCH
        {
            tracing::warn!(error = %e, signal = signal.as_raw(), "cannot signal the child");
        }
    }

    /// Waits for the child to exit (cancel-safe; the status is kept).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.inner.wait().await?;
        self.status = Some(s);
        Ok(s)
    }

    /// SIGTERM to the group, then SIGKILL after `grace`; waits for the exit.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        self.signal(Signal::TERM);
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "child ignored SIGTERM; killing it"
                );
                self.signal(Signal::KILL);
                self.wait().await
            }
        }
    }
}

impl Drop for Child {
    /// A child still running when dropped (an MCP session that ended) is
    /// asked to stop.
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.inner.try_wait(), Ok(None)) {
            self.signal(Signal::TERM);
        }
    }
}

/// Our exit code for a child's status: its code, or 128+signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_codes_and_signals_map_like_a_shell() {
        let sh = |script: &str| -> Vec<OsString> {
            ["sh", "-c", script].iter().map(OsString::from).collect()
        };
        let env = BaseEnv::capture().with(&Delivery::default());
        let mut c = Child::spawn(&sh("exit 7"), &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.wait().await.map(exit_code).ok(), Some(7));
        let mut c = Child::spawn(&sh("kill -9 $$"), &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.wait().await.map(exit_code).ok(), Some(137));
        let ready = std::env::temp_dir().join(format!("ce-child-ready-{}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let script = format!(
            "trap '' TERM; touch '{}'; while :; do sleep 0.05; done",
            ready.display()
        );
        let mut c = Child::spawn(&sh(&script), &env).unwrap_or_else(|e| panic!("{e}"));
        while !ready.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_file(&ready);
        let status = c.stop(Duration::from_millis(300)).await;
        assert_eq!(status.map(exit_code).ok(), Some(137));
    }

    #[test]
    fn credential_overrides_and_defaults_yield() {
        let base = BaseEnv(
            [("KEEP", "k"), ("GITHUB_TOOLSETS", "mine")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        let mut d = Delivery::default();
        d.defaults
            .insert("GITHUB_TOOLSETS".into(), "default".into());
        d.defaults.insert("OTHER".into(), "o".into());
        d.env.insert("KEEP".into(), "new".into());
        let vars = base.with(&d);
        let get = |k: &str| vars.get(&OsString::from(k)).and_then(|v| v.to_str());
        assert_eq!(get("GITHUB_TOOLSETS"), Some("mine"));
        assert_eq!(get("OTHER"), Some("o"));
        assert_eq!(get("KEEP"), Some("new"));
    }
}
