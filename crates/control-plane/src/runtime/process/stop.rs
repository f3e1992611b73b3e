//! Stopping a session's pod as the kubelet stops one: SIGTERM to each
//! container's main process (the others keep running, so a main process
//! can end its children gracefully), SIGKILL to whatever is left once the
//! main processes are gone or the grace period is over; the pod's
//! directory removed once nothing of it runs. A delete (cleanup) waits for
//! that itself.

use std::time::Duration;

use rustix::process::Signal;

use super::state::{self, PidRecord, PodRecord, now_ms};
use super::{Inner, ProcessRuntime, RuntimeError, io};

/// The pid records of the pod's containers (those that started).
pub(super) fn leaders(inner: &Inner, id: &str, pod: &PodRecord) -> Vec<PidRecord> {
    pod.containers
        .iter()
        .filter_map(|c| state::read_json::<PidRecord>(&inner.layout.pid(id, &c.name)).ok()?)
        .collect()
}

impl Inner {
    /// Every live process of the pod (containers and what they started).
    pub(super) fn live_processes(&self, id: &str, pod: &PodRecord) -> usize {
        state::session_members(&leaders(self, id, pod)).len()
    }

    /// Sends `signal` to every process of the pod; how many got it.
    pub(super) fn signal_pod(&self, id: &str, signal: Signal) -> usize {
        let Ok(Some(pod)) = self.pod(id) else {
            return 0;
        };
        state::signal_sessions(&leaders(self, id, &pod), signal)
    }

    /// SIGTERM to the main process of each of the pod's containers; how
    /// many got it.
    pub(super) fn terminate_main(&self, id: &str) -> usize {
        let Ok(Some(pod)) = self.pod(id) else {
            return 0;
        };
        state::signal(
            &state::main_processes(&leaders(self, id, &pod)),
            Signal::TERM,
        )
    }

    /// True while a container's shim runs (its main process has not ended).
    pub(super) fn containers_running(&self, id: &str) -> bool {
        self.pod(id)
            .ok()
            .flatten()
            .is_some_and(|pod| leaders(self, id, &pod).iter().any(PidRecord::alive))
    }
}

impl ProcessRuntime {
    /// Runs `f` on the blocking pool (it reads `/proc` or the state directory).
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ProcessRuntime) -> T + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| io("a blocking task of the process runtime", e))
    }

    /// SIGTERM to the main processes, up to `grace` for them to exit, then
    /// SIGKILL to whatever is left.
    pub(super) async fn terminate(&self, id: &str, grace: Duration) {
        let owned = id.to_owned();
        let live = |id: String| {
            self.blocking(move |rt| {
                rt.inner
                    .pod(&id)
                    .ok()
                    .flatten()
                    .map_or(0, |pod| rt.inner.live_processes(&id, &pod))
            })
        };
        let running = |id: String| self.blocking(move |rt| rt.inner.containers_running(&id));
        let term = self
            .blocking({
                let id = owned.clone();
                move |rt| rt.inner.terminate_main(&id)
            })
            .await
            .unwrap_or(0);
        if term == 0 && live(owned.clone()).await.unwrap_or(0) == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while running(owned.clone()).await.unwrap_or(false)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let send = |id: String, signal| self.blocking(move |rt| rt.inner.signal_pod(&id, signal));
        if send(owned.clone(), Signal::KILL).await.unwrap_or(0) > 0 {
            tracing::info!(session = %id, "processes left after the main processes: killed");
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while live(owned.clone()).await.unwrap_or(0) > 0 && tokio::time::Instant::now() < until
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Stops the pod: `Ok(true)` once nothing of it runs and it is gone.
    /// `/proc` is scanned when a shim is gone or a signal is due, and at a
    /// look while a shim still runs (for a main process that started late).
    pub(super) fn stop_now(&self, id: &str) -> Result<bool, RuntimeError> {
        let inner = &self.inner;
        let Some(mut pod) = inner.pod(id)? else {
            return Ok(true);
        };
        let leaders = leaders(inner, id, &pod);
        let grace_over = pod
            .stopping_since_ms
            .is_some_and(|since| now_ms().saturating_sub(since) > pod.grace_seconds * 1000);
        // Signalled already and a shim still runs: nothing to do until it
        // exits, but for a container that started after the stop began
        // (its main process was not there to signal): its SIGTERM now,
        // not SIGKILL at the end of the grace period.
        if pod.stopping_since_ms.is_some() && !grace_over && leaders.iter().any(PidRecord::alive) {
            let late: Vec<i32> = state::main_processes(&leaders)
                .into_iter()
                .filter(|pid| !pod.terminated.contains(pid))
                .collect();
            if !late.is_empty() {
                state::signal(&late, Signal::TERM);
                tracing::info!(session = %id, processes = late.len(), "stopping main processes that started late");
                pod.terminated.extend(late);
                state::write_json(&inner.layout.pod_record(id), &pod)
                    .map_err(|e| io("cannot write the pod record", e))?;
            }
            return Ok(false);
        }
        let mut members = state::session_members(&leaders);
        if pod.stopping_since_ms.is_some() && !members.is_empty() {
            // The main processes are gone (or the grace period is over):
            // the rest goes, as a container's processes go with its main one.
            state::signal(&members, Signal::KILL);
            let until = std::time::Instant::now() + Duration::from_secs(2);
            while !members.is_empty() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
                members = state::session_members(&leaders);
            }
        }
        if members.is_empty() {
            let dir = inner.layout.pod(id);
            std::fs::remove_dir_all(&dir)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .map_err(|e| io(&format!("cannot remove {}", dir.display()), e))?;
            tracing::info!(session = %id, "session processes gone");
            return Ok(true);
        }
        if pod.stopping_since_ms.is_none() {
            pod.stopping_since_ms = Some(now_ms());
            let mains = state::main_processes(&leaders);
            pod.terminated.clone_from(&mains);
            state::write_json(&inner.layout.pod_record(id), &pod)
                .map_err(|e| io("cannot write the pod record", e))?;
            let signalled = state::signal(&mains, Signal::TERM);
            tracing::info!(session = %id, processes = signalled, "stopping the containers' main processes");
            self.escalate_after(id, Duration::from_secs(pod.grace_seconds));
        }
        Ok(false)
    }
}
