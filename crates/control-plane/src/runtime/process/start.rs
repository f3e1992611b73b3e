//! Starting a session's pod: its plan made real (directories, the pod
//! record, then one shim per container, each with its log file).

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use super::state::{self, ExitRecord, PidRecord, PodRecord};
use super::{ProcessRuntime, RuntimeError, io, plan, shim};
use crate::objects::SessionObjects;

/// The pod's grace period between SIGTERM and SIGKILL, as Kubernetes reads it.
fn grace_seconds(objects: &SessionObjects) -> u64 {
    objects
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .and_then(|g| u64::try_from(g).ok())
        .unwrap_or(30)
}

impl ProcessRuntime {
    /// Starts every container of the pod; `received` is when the runtime
    /// got the request (for the log line).
    pub(super) fn start_pod(
        &self,
        id: &str,
        objects: &SessionObjects,
        received: Instant,
    ) -> Result<(), RuntimeError> {
        let layout = &self.inner.layout;
        let planned = plan::plan(
            &self.inner.settings,
            objects,
            |v| layout.volume(id, v),
            plan::free_port,
        )
        .map_err(|e| RuntimeError::Permanent(e.to_string()))?;
        for dir in planned
            .iter()
            .flat_map(|p| p.dirs.iter().chain([&p.cwd]))
            .chain([&layout.logs(id)])
        {
            state::private_dir(dir).map_err(|e| io(&format!("mkdir {}", dir.display()), e))?;
        }
        for (to, from) in planned.iter().flat_map(|p| p.files.iter()) {
            let bytes = std::fs::read(from)
                .map_err(|e| io(&format!("cannot read {}", from.display()), e))?;
            if let Some(dir) = to.parent() {
                state::private_dir(dir).map_err(|e| io(&format!("mkdir {}", dir.display()), e))?;
            }
            state::write_atomic(to, &bytes, state::Durability::Process)
                .map_err(|e| io(&format!("cannot write {}", to.display()), e))?;
        }
        let record = PodRecord {
            containers: planned
                .iter()
                .map(|p| state::ContainerRecord {
                    name: p.name.clone(),
                    ports: p.ports.clone(),
                })
                .collect(),
            grace_seconds: grace_seconds(objects),
            stopping_since_ms: None,
            terminated: Vec::new(),
        };
        state::write_json(&layout.pod_record(id), &record)
            .map_err(|e| io("cannot write the pod record", e))?;
        for p in planned {
            self.start_container(id, &p);
        }
        tracing::info!(
            session = %id,
            since_request_ms = received.elapsed().as_secs_f64() * 1e3,
            "session processes started"
        );
        Ok(())
    }

    fn start_container(&self, id: &str, p: &plan::Planned) {
        let layout = &self.inner.layout;
        let log_path = layout.log(id, &p.name);
        let exit_file = layout.exit(id, &p.name);
        let pid_file = layout.pid(id, &p.name);
        let spawned = open_log(&log_path).and_then(|log| {
            let err = log.try_clone()?;
            tokio::process::Command::new(&self.inner.settings.shim)
                .arg(shim::SHIM_ARG)
                .arg(&pid_file)
                .arg(&exit_file)
                .arg("--")
                .args(&p.argv)
                .env_clear()
                .envs(&p.env)
                .current_dir(&p.cwd)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .kill_on_drop(false)
                .spawn()
        });
        match spawned {
            Ok(child) => {
                // The shim records itself too; this closes the window
                // before it does, so a restart never misses it.
                if let Some(record) = child
                    .id()
                    .and_then(|pid| i32::try_from(pid).ok())
                    .and_then(PidRecord::of)
                {
                    let _ = state::write_json(&pid_file, &record);
                }
                self.watch_child(id, &p.name, child);
            }
            Err(e) => {
                tracing::warn!(session = %id, container = %p.name, error = %e, "cannot start the container");
                let _ = state::write_json(&exit_file, &ExitRecord { code: 127 });
                self.inner.notify(id);
            }
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}
