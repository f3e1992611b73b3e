//! The supervision loop: one child at a time; SIGTERM/SIGINT forwarded to
//! its process group (every one of them); the credential refreshed every
//! interval (or on SIGHUP, at most once per
//! `rotate::ON_DEMAND_WINDOW`) in the background; a change rewrites files and,
//! for an environment credential, restarts the child gracefully; a failed
//! refresh keeps the last good credential and retries with backoff; the
//! child's exit ends the loop with its code (128+signal when signalled).

use std::ffi::OsString;
use std::time::Duration;

use ambient_protocol::backoff::Backoff;
use rustix::process::Signal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::child::{BaseEnv, Child, exit_code};
use crate::cli::OnRotate;
use crate::mapping::Delivery;
use crate::rotate::{self, RefreshError, Rotation};

/// Loop settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub refresh_interval: Duration,
    pub on_rotate: OnRotate,
    pub grace_period: Duration,
}

/// Signals the entrypoint reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// SIGTERM or SIGINT: forwarded to the child.
    Stop(Signal),
    /// SIGHUP: refresh now.
    Refresh,
}

/// Installs the handlers; each signal arrives on the returned channel.
pub fn signals() -> std::io::Result<mpsc::UnboundedReceiver<Incoming>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                Some(()) = term.recv() => Incoming::Stop(Signal::TERM),
                Some(()) = int.recv() => Incoming::Stop(Signal::INT),
                Some(()) = hup.recv() => Incoming::Refresh,
                else => return,
            };
            if tx.send(sig).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// A rotation restart under way: the old child was sent SIGTERM.
#[derive(Debug)]
struct Restart {
    kill_at: Instant,
    killed: bool,
}

/// The loop's state.
#[derive(Debug)]
pub struct Supervisor {
    pub child: Child,
    pub command: Vec<OsString>,
    pub base: BaseEnv,
    /// What the running child was given.
    pub current: Delivery,
    pub rotation: Rotation,
    pub policy: Policy,
}

/// What to do after an event.
enum Next {
    Continue,
    Exit(i32),
}

#[derive(Debug, Default)]
struct State {
    refreshing: Option<JoinHandle<Result<Delivery, RefreshError>>>,
    restart: Option<Restart>,
    /// The delivery the restarted child gets.
    pending: Option<Delivery>,
    stopping: bool,
}

impl Supervisor {
    /// Supervises the child until it exits for good; returns our exit code.
    pub async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<Incoming>) -> i32 {
        let interval = self.policy.refresh_interval;
        let mut backoff =
            Backoff::new(Duration::from_secs(1), interval.max(Duration::from_secs(1)));
        let mut next_refresh = Instant::now() + interval;
        let mut on_demand = rotate::OnDemand::new(rotate::ON_DEMAND_WINDOW);
        let mut st = State::default();
        loop {
            let kill_at = st.restart.as_ref().filter(|r| !r.killed).map(|r| r.kill_at);
            tokio::select! {
                status = self.child.wait() => {
                    if let Next::Exit(code) = self.on_exit(status.map(exit_code).unwrap_or(1), &mut st) {
                        if let Some(task) = st.refreshing.take() {
                            task.abort();
                        }
                        self.rotation.exchanger.stop().await;
                        return code;
                    }
                }
                Some(sig) = incoming.recv() => match sig {
                    Incoming::Stop(sig) => {
                        tracing::info!(signal = sig.as_raw(), "forwarding signal to the child");
                        st.stopping = true;
                        self.child.signal(sig);
                    }
                    Incoming::Refresh => match on_demand.admit(Instant::now()) {
                        Ok(()) => next_refresh = Instant::now(),
                        Err(wait) => tracing::info!(retry_in_s = wait.as_secs(), "SIGHUP: a refresh ran recently; not refreshing again yet"),
                    },
                },
                () = sleep_until(kill_at) => {
                    tracing::warn!("child did not stop within the grace period; killing it");
                    self.child.signal(Signal::KILL);
                    if let Some(r) = st.restart.as_mut() {
                        r.killed = true;
                    }
                }
                () = tokio::time::sleep_until(next_refresh), if st.refreshing.is_none() && !st.stopping => {
                    let rotation = self.rotation.clone();
                    st.refreshing = Some(tokio::spawn(async move { rotation.fetch().await }));
                    next_refresh = Instant::now() + interval;
                }
                joined = join(&mut st.refreshing) => {
                    st.refreshing = None;
                    let fetched = joined.unwrap_or_else(|e| Err(RefreshError::Panicked(e.to_string())));
                    let failure = match fetched {
                        Ok(next) => self.apply(next, &mut st),
                        Err(e) => Some(e.to_string()),
                    };
                    match failure {
                        None => backoff.reset(),
                        Some(error) => {
                            let wait = backoff.next_delay();
                            tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "credential refresh failed; the child keeps the last good credential");
                            next_refresh = Instant::now() + wait;
                        }
                    }
                }
            }
        }
    }

    /// The child exited: respawn it when a rotation restart asked for
    /// that, else end with its code.
    fn on_exit(&mut self, code: i32, st: &mut State) -> Next {
        match (st.restart.take(), st.pending.take()) {
            (Some(_), Some(next)) if !st.stopping => {
                match Child::spawn(&self.command, &self.base.with(&next)) {
                    Ok(c) => {
                        tracing::info!(pid = c.id(), "child restarted with the rotated credential");
                        self.child = c;
                        self.current = next;
                        Next::Continue
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot restart the child");
                        Next::Exit(1)
                    }
                }
            }
            _ => {
                if !st.stopping {
                    tracing::warn!(code, "child exited");
                }
                Next::Exit(code)
            }
        }
    }

    /// Applies a fresh delivery: files rewritten, and for a changed
    /// environment a graceful restart begun (or skipped with `--on-rotate
    /// ignore`). Returns an error text when the refresh must be retried.
    fn apply(&mut self, next: Delivery, st: &mut State) -> Option<String> {
        let change = rotate::diff(&self.current, &next);
        if !change.files && !change.env {
            tracing::debug!("credential unchanged");
            return None;
        }
        if let Err(e) = rotate::write_files(&self.rotation.paths, Some(&self.current), &next) {
            return Some(e.to_string());
        }
        if change.files {
            tracing::info!("credential rotated: files rewritten");
        }
        if !change.env {
            self.current = next;
            return None;
        }
        match self.policy.on_rotate {
            OnRotate::Ignore => {
                tracing::info!(
                    "credential rotated; the child keeps its environment (--on-rotate ignore)"
                );
                self.current = next;
            }
            OnRotate::Restart => {
                tracing::info!("credential rotated: restarting the child");
                st.pending = Some(next);
                if st.restart.is_none() {
                    self.child.signal(Signal::TERM);
                    st.restart = Some(Restart {
                        kill_at: Instant::now() + self.policy.grace_period,
                        killed: false,
                    });
                }
            }
        }
        None
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The refresh task's result, or never when none runs.
async fn join(
    task: &mut Option<JoinHandle<Result<Delivery, RefreshError>>>,
) -> Result<Result<Delivery, RefreshError>, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}
