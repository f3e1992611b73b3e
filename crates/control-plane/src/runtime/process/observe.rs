//! What runs for a session, read from its records: the runner's status
//! reported like a pod's container status.

use super::state::{self, ExitRecord, PidRecord};
use super::{Inner, Observation, RuntimeError};
use crate::names;

/// A runner without a pid record this long after its pod was written never started.
const START_TIMEOUT_MS: u64 = 30_000;

/// A container's state from its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    NotStarted,
    Running(PidRecord),
    Exited(i32),
    /// Its shim is gone without a record.
    Lost,
}

impl Inner {
    fn status(&self, id: &str, container: &str) -> Status {
        if let Ok(Some(exit)) = state::read_json::<ExitRecord>(&self.layout.exit(id, container)) {
            return Status::Exited(exit.code);
        }
        match state::read_json::<PidRecord>(&self.layout.pid(id, container)) {
            Ok(Some(pid)) if pid.alive() => Status::Running(pid),
            Ok(Some(_)) => {
                // It may have recorded its exit since we looked.
                match state::read_json::<ExitRecord>(&self.layout.exit(id, container)) {
                    Ok(Some(exit)) => Status::Exited(exit.code),
                    _ => Status::Lost,
                }
            }
            _ => Status::NotStarted,
        }
    }

    /// The session's runner as a pod's container status.
    pub(super) fn observe(&self, id: &str) -> Result<Observation, RuntimeError> {
        let Some(pod) = self.pod(id)? else {
            return Ok(Observation::Absent);
        };
        if pod.stopping_since_ms.is_some() {
            return Ok(Observation::Terminating);
        }
        Ok(match self.status(id, names::RUNNER_CONTAINER) {
            Status::Running(_) => Observation::Running,
            Status::Exited(code) => Observation::Exited(code),
            Status::Lost => Observation::Failed(
                "the runner process ended without an exit status (killed with its shim)".into(),
            ),
            Status::NotStarted => {
                let written = std::fs::metadata(self.layout.pod_record(id))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .map_or(0, |d| d.as_millis() as u64);
                if written > START_TIMEOUT_MS {
                    Observation::Failed("the runner process never started".into())
                } else {
                    Observation::Starting
                }
            }
        })
    }
}
