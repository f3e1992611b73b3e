//! How the runtime learns that a container ended: a task per container
//! waits for its shim (our child) or polls an adopted one (a predecessor's
//! child, found in the state directory), and every change enqueues the
//! session again; a stop past its grace period escalates to SIGKILL.

use std::time::Duration;

use rustix::process::Signal;

use super::state::{self, ExitRecord, PidRecord, PodRecord, now_ms};
use super::{Inner, ProcessRuntime};

/// How often an adopted process (not our child) is checked for its exit.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

impl ProcessRuntime {
    /// Watches every live process of every pod in the state directory and
    /// resumes the stop of pods that were stopping.
    pub(super) fn adopt(&self) -> anyhow::Result<()> {
        let layout = &self.inner.layout;
        for id in layout.session_ids()? {
            let Ok(Some(pod)) = state::read_json::<PodRecord>(&layout.pod_record(&id)) else {
                continue;
            };
            let mut adopted = 0;
            for c in &pod.containers {
                if let Ok(Some(pid)) = state::read_json::<PidRecord>(&layout.pid(&id, &c.name))
                    && pid.alive()
                {
                    self.watch_adopted(&id, &c.name, pid);
                    adopted += 1;
                }
            }
            if adopted > 0 {
                tracing::info!(session = %id, processes = adopted, "adopted running session processes");
            }
            if let Some(since) = pod.stopping_since_ms {
                let elapsed = Duration::from_millis(now_ms().saturating_sub(since));
                let left = Duration::from_secs(pod.grace_seconds).saturating_sub(elapsed);
                self.escalate_after(&id, left);
            }
        }
        Ok(())
    }

    /// Claims the watch of (session, container); false when already watched.
    fn claim(&self, id: &str, container: &str) -> bool {
        self.inner
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((id.to_owned(), container.to_owned()))
    }

    fn watch_adopted(&self, id: &str, container: &str, pid: PidRecord) {
        if !self.claim(id, container) {
            return;
        }
        let (inner, id, container) = (self.inner.clone(), id.to_owned(), container.to_owned());
        self.spawn_task(async move {
            while pid.alive() {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            inner.exited(&id, &container);
        });
    }

    pub(super) fn watch_child(&self, id: &str, container: &str, mut child: tokio::process::Child) {
        self.claim(id, container);
        let (inner, id, container) = (self.inner.clone(), id.to_owned(), container.to_owned());
        self.spawn_task(async move {
            let status = child.wait().await;
            let exit_file = inner.layout.exit(&id, &container);
            // A shim killed by a signal recorded nothing: record that.
            if let Ok(s) = status
                && !exit_file.exists()
                && inner.layout.pod(&id).exists()
            {
                use std::os::unix::process::ExitStatusExt as _;
                let code = s.code().or(s.signal().map(|sig| 128 + sig)).unwrap_or(1);
                let _ = state::write_json(&exit_file, &ExitRecord { code });
            }
            inner.exited(&id, &container);
        });
    }

    /// SIGKILL for whatever still runs in `id`'s pod after `delay`.
    pub(super) fn escalate_after(&self, id: &str, delay: Duration) {
        let (inner, id) = (self.inner.clone(), id.to_owned());
        self.spawn_task(async move {
            tokio::time::sleep(delay).await;
            let signalled = {
                let (inner, id) = (inner.clone(), id.clone());
                tokio::task::spawn_blocking(move || inner.signal_pod(&id, Signal::KILL)).await
            };
            if let Ok(killed @ 1..) = signalled {
                tracing::warn!(session = %id, processes = killed, "grace period over: killed");
            }
            inner.notify(&id);
        });
    }
}

impl Inner {
    pub(super) fn notify(&self, id: &str) {
        if let Some(tx) = self
            .changed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(id.to_owned());
        }
    }

    fn exited(&self, id: &str, container: &str) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(id.to_owned(), container.to_owned()));
        self.notify(id);
    }
}
