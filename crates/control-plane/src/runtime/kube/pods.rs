//! What the pods say: the runner's state in a pod, and any of its
//! containers that will not run ([`observe_pod`]), and the
//! watch on managed pods that feeds the reflector [`SessionRuntime::observe`]
//! reads and reports every session whose pod changed or vanished
//! ([`PodSessions`]).
//!
//! [`SessionRuntime::observe`]: crate::runtime::SessionRuntime::observe

use std::collections::HashSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::{self, Event};

use super::KubeRuntime;
use crate::names;
use crate::runtime::Observation;

/// Waiting reasons that mean the runner will not start.
pub const FAILING_WAIT_REASONS: [&str; 4] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
];

/// Waiting reasons of any container, init containers included, that fail
/// the session: the reference's (`pod_sync.go`), so a sidecar stuck pulling
/// its image does not leave the session Running.
pub const BROKEN_CONTAINER_REASONS: [&str; 3] =
    ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"];

/// Restarts of a (non-init) container that fail the session, as the reference.
pub const MAX_RESTARTS: i32 = 5;

/// What a pod says about its session: the runner's end decides; before
/// that, any broken container fails it.
pub fn observe_pod(pod: &Pod) -> Observation {
    if pod.metadata.deletion_timestamp.is_some() {
        return Observation::Terminating;
    }
    let Some(status) = &pod.status else {
        return Observation::Starting;
    };
    let runner = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == names::RUNNER_CONTAINER);
    let state = runner.and_then(|c| c.state.as_ref());
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        if t.reason.as_deref() == Some("OOMKilled") {
            return Observation::Failed("OOMKilled".into());
        }
        return Observation::Exited(t.exit_code);
    }
    if let Some(why) = broken_container(status) {
        return Observation::Failed(why);
    }
    if let Some(state) = state {
        if let Some(w) = &state.waiting
            && let Some(reason) = w
                .reason
                .as_deref()
                .filter(|r| FAILING_WAIT_REASONS.contains(r))
        {
            return Observation::Failed(format!("container {}: {reason}", names::RUNNER_CONTAINER));
        }
        if state.running.is_some() {
            return Observation::Running;
        }
    }
    match status.phase.as_deref() {
        Some("Failed") => {
            Observation::Failed(status.reason.clone().unwrap_or_else(|| "pod failed".into()))
        }
        Some("Succeeded") => Observation::Exited(0),
        _ => Observation::Starting,
    }
}

/// The first container (init containers included) that will not run, as
/// `container <name>: <reason>`: waiting for a [`BROKEN_CONTAINER_REASONS`]
/// reason, or (not an init container) restarted [`MAX_RESTARTS`] times.
fn broken_container(status: &PodStatus) -> Option<String> {
    let waiting = |c: &ContainerStatus| {
        c.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            .filter(|r| BROKEN_CONTAINER_REASONS.contains(r))
            .map(|r| format!("container {}: {r}", c.name))
    };
    let containers = status.container_statuses.iter().flatten();
    let inits = status.init_container_statuses.iter().flatten();
    containers
        .map(|c| {
            waiting(c).or_else(|| {
                (c.restart_count >= MAX_RESTARTS)
                    .then(|| format!("container {} restarted {} times", c.name, c.restart_count))
            })
        })
        .chain(inits.map(waiting))
        .flatten()
        .next()
}

impl KubeRuntime {
    /// Follows the managed pods (the reflector [`SessionRuntime::observe`]
    /// reads), sending the session ID of every change.
    pub(super) async fn watch_pods(&self, changed: tokio::sync::mpsc::UnboundedSender<String>) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = names::managed_selector(&self.installation);
        let config = watcher::Config::default().labels(&selector);
        let writer: Writer<Pod> = Writer::default();
        let reader = writer.as_reader();
        let stream = reflector::reflector(writer, watcher::watcher(pods, config).default_backoff());
        let mut stream = std::pin::pin!(stream);
        let mut seen = PodSessions::default();
        while let Some(event) = stream.next().await {
            let ids = match event {
                Ok(event) => {
                    if matches!(event, Event::InitDone) {
                        self.set_pod_store(Some(reader.clone()));
                    }
                    seen.apply(&event)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch error");
                    continue;
                }
            };
            for id in ids {
                if changed.send(id).is_err() {
                    self.set_pod_store(None);
                    return;
                }
            }
        }
        self.set_pod_store(None);
    }
}

/// The sessions whose pods the watch has seen, to report the ones whose
/// pod is missing from a relist (it vanished while the watch was down, and
/// no delete event will ever say so).
#[derive(Debug, Default)]
pub struct PodSessions {
    known: HashSet<String>,
    relisting: Option<HashSet<String>>,
}

impl PodSessions {
    /// The session IDs `event` concerns.
    pub fn apply(&mut self, event: &Event<Pod>) -> Vec<String> {
        let id = |p: &Pod| p.labels().get(names::LABEL_SESSION_ID).cloned();
        match event {
            Event::Init => {
                self.relisting = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(p) => {
                let id = id(p);
                if let Some(id) = &id {
                    self.relisting.get_or_insert_default().insert(id.clone());
                }
                id.into_iter().collect()
            }
            Event::InitDone => {
                let fresh = self.relisting.take().unwrap_or_default();
                let vanished = self.known.difference(&fresh).cloned().collect();
                self.known = fresh;
                vanished
            }
            Event::Apply(p) => {
                let id = id(p);
                if let Some(id) = &id {
                    self.known.insert(id.clone());
                }
                id.into_iter().collect()
            }
            Event::Delete(p) => {
                let id = id(p);
                if let Some(id) = &id {
                    self.known.remove(id);
                }
                id.into_iter().collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, PodStatus,
    };
    use std::collections::BTreeMap;

    fn pod_with(state: ContainerState, phase: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![
                    ContainerStatus {
                        name: "ambient-mcp".into(),
                        state: Some(ContainerState {
                            running: Some(ContainerStateRunning::default()),
                            ..ContainerState::default()
                        }),
                        ..ContainerStatus::default()
                    },
                    ContainerStatus {
                        name: names::RUNNER_CONTAINER.into(),
                        state: Some(state),
                        ..ContainerStatus::default()
                    },
                ]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn pod_status_mapping() {
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        };
        assert_eq!(
            observe_pod(&pod_with(running, "Running")),
            Observation::Running
        );
        let exited = |code, reason: Option<&str>| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: reason.map(Into::into),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        // The runner decides even while sidecars still run.
        assert_eq!(
            observe_pod(&pod_with(exited(0, None), "Running")),
            Observation::Exited(0)
        );
        assert_eq!(
            observe_pod(&pod_with(exited(3, Some("Error")), "Running")),
            Observation::Exited(3)
        );
        assert_eq!(
            observe_pod(&pod_with(exited(137, Some("OOMKilled")), "Running")),
            Observation::Failed("OOMKilled".into())
        );
        for reason in FAILING_WAIT_REASONS {
            let waiting = ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: None,
                }),
                ..ContainerState::default()
            };
            assert_eq!(
                observe_pod(&pod_with(waiting, "Pending")),
                Observation::Failed(format!("container ambient-code-runner: {reason}"))
            );
        }
        let creating = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..ContainerState::default()
        };
        assert_eq!(
            observe_pod(&pod_with(creating, "Pending")),
            Observation::Starting
        );
        assert_eq!(observe_pod(&Pod::default()), Observation::Starting);
        let mut deleting = Pod::default();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(observe_pod(&deleting), Observation::Terminating);
    }

    /// A pod whose runner runs beside `sidecar` (and, optionally, `init`).
    fn pod_beside(sidecar: ContainerStatus, init: Option<ContainerStatus>) -> Pod {
        let mut pod = pod_with(
            ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..ContainerState::default()
            },
            "Running",
        );
        if let Some(status) = &mut pod.status {
            status
                .container_statuses
                .get_or_insert_default()
                .push(sidecar);
            status.init_container_statuses = init.map(|i| vec![i]);
        }
        pod
    }

    fn container(name: &str, waiting: Option<&str>, restarts: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            restart_count: restarts,
            state: Some(ContainerState {
                waiting: waiting.map(|r| ContainerStateWaiting {
                    reason: Some(r.into()),
                    message: None,
                }),
                running: waiting.is_none().then(ContainerStateRunning::default),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn any_broken_container_fails_the_session_as_the_reference() {
        for reason in BROKEN_CONTAINER_REASONS {
            assert_eq!(
                observe_pod(&pod_beside(container("github-mcp", Some(reason), 0), None)),
                Observation::Failed(format!("container github-mcp: {reason}"))
            );
            let init = container("init-workspace", Some(reason), 0);
            assert_eq!(
                observe_pod(&pod_beside(container("ambient-mcp", None, 0), Some(init))),
                Observation::Failed(format!("container init-workspace: {reason}"))
            );
        }
        assert_eq!(
            observe_pod(&pod_beside(
                container("ambient-mcp", None, MAX_RESTARTS),
                None
            )),
            Observation::Failed("container ambient-mcp restarted 5 times".into())
        );
        // Below the reference's thresholds the session runs: 4 restarts, a
        // sidecar still being created, an init container's restarts.
        for fine in [
            pod_beside(container("ambient-mcp", None, MAX_RESTARTS - 1), None),
            pod_beside(container("ambient-mcp", Some("ContainerCreating"), 0), None),
            pod_beside(
                container("ambient-mcp", None, 0),
                Some(container("init-workspace", None, MAX_RESTARTS)),
            ),
        ] {
            assert_eq!(observe_pod(&fine), Observation::Running);
        }
    }

    fn session_pod(id: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.labels = Some(BTreeMap::from([(
            names::LABEL_SESSION_ID.to_owned(),
            id.to_owned(),
        )]));
        p
    }

    #[test]
    fn a_pod_missing_from_a_relist_is_reported() {
        let mut seen = PodSessions::default();
        assert!(seen.apply(&Event::Init).is_empty());
        assert_eq!(seen.apply(&Event::InitApply(session_pod("a"))), vec!["a"]);
        assert_eq!(seen.apply(&Event::InitApply(session_pod("b"))), vec!["b"]);
        assert!(seen.apply(&Event::InitDone).is_empty());
        assert_eq!(seen.apply(&Event::Apply(session_pod("c"))), vec!["c"]);
        // The watch broke (410 Gone); b and c vanished meanwhile.
        seen.apply(&Event::Init);
        seen.apply(&Event::InitApply(session_pod("a")));
        let mut vanished = seen.apply(&Event::InitDone);
        vanished.sort();
        assert_eq!(vanished, vec!["b", "c"]);
        assert_eq!(seen.apply(&Event::Delete(session_pod("a"))), vec!["a"]);
        seen.apply(&Event::Init);
        assert!(seen.apply(&Event::InitDone).is_empty());
    }
}
