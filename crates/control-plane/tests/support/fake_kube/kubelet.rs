//! A kubelet stand-in: moves a pod the control plane created through the
//! states a node reports, per container, writing the pod's `status` as
//! the kubelet does (through the status subresource's rules: the spec is
//! never touched), so every change reaches the control plane through its
//! pod watch.
//!
//! It follows the pod's `restartPolicy`: under `Never` (the control
//! plane's runner pods) a container that ended stays terminated and the
//! pod's phase is `Succeeded` or `Failed` once every container ended; under
//! `Always`/`OnFailure` an ended container is restarted (`restartCount`
//! grows, `lastState` keeps the end) and a crashing one waits in
//! `CrashLoopBackOff`.
//!
//! Not modelled: probes and readiness gates, init containers (their
//! statuses can still be set with `set_pod_status`), timing (back-off
//! delays are a state, not a wait), node pressure evictions.

use serde_json::{Value, json};

use super::FakeKube;

/// One container's state, as the kubelet reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Container {
    /// Waiting: `ContainerCreating` (pulled, being created).
    Creating,
    /// Waiting: `ErrImagePull`, then `ImagePullBackOff`.
    ImagePullBackOff,
    Running,
    /// Ended with this exit code (`Completed` for 0, `Error` otherwise).
    Exited(i32),
    /// Killed by the kernel's OOM killer (exit code 137).
    OomKilled,
    /// Restarted after crashing this many times, now backing off.
    CrashLoopBackOff(i32),
}

/// Drives one pod; see the module doc.
pub struct Kubelet {
    fake: FakeKube,
    ns: String,
    pod: String,
}

const STARTED: &str = "2026-01-01T00:00:01Z";

fn terminated(code: i32, reason: &str) -> Value {
    json!({"terminated": {"exitCode": code, "reason": reason,
        "startedAt": STARTED, "finishedAt": "2026-01-01T00:00:02Z"}})
}

impl Kubelet {
    /// The pod is scheduled: `Pending`, `PodScheduled`, every container
    /// `ContainerCreating`.
    pub fn schedule(&self) -> bool {
        let names = self.container_names();
        self.set_all(
            &names
                .iter()
                .map(|n| (n.clone(), Container::Creating))
                .collect::<Vec<_>>(),
        )
    }

    /// Every container runs.
    pub fn run_all(&self) -> bool {
        let names = self.container_names();
        self.set_all(
            &names
                .iter()
                .map(|n| (n.clone(), Container::Running))
                .collect::<Vec<_>>(),
        )
    }

    /// Sets one container's state (the others keep theirs).
    pub fn set(&self, container: &str, state: Container) -> bool {
        let mut states = self.current_states();
        match states.iter_mut().find(|(n, _)| n == container) {
            Some(slot) => slot.1 = state,
            None => return false,
        }
        self.set_all(&states)
    }

    fn container_names(&self) -> Vec<String> {
        self.fake
            .get("pods", &self.ns, &self.pod)
            .and_then(|p| p.pointer("/spec/containers").cloned())
            .and_then(|c| c.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    }

    fn current_states(&self) -> Vec<(String, Container)> {
        let pod = self
            .fake
            .get("pods", &self.ns, &self.pod)
            .unwrap_or_default();
        self.container_names()
            .into_iter()
            .map(|name| {
                let status = pod
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["name"] == json!(name)).cloned())
                    .unwrap_or_default();
                let state = if status.pointer("/state/running").is_some() {
                    Container::Running
                } else if let Some(t) = status.pointer("/state/terminated") {
                    if t["reason"] == "OOMKilled" {
                        Container::OomKilled
                    } else {
                        Container::Exited(t["exitCode"].as_i64().unwrap_or(0) as i32)
                    }
                } else {
                    match status
                        .pointer("/state/waiting/reason")
                        .and_then(Value::as_str)
                    {
                        Some("ImagePullBackOff" | "ErrImagePull") => Container::ImagePullBackOff,
                        Some("CrashLoopBackOff") => Container::CrashLoopBackOff(
                            status["restartCount"].as_i64().unwrap_or(1) as i32,
                        ),
                        _ => Container::Creating,
                    }
                };
                (name, state)
            })
            .collect()
    }

    /// The status of one container in `state`, under `restart_policy`.
    fn container_status(&self, name: &str, state: &Container, restarts_on_end: bool) -> Value {
        let image = self
            .fake
            .get("pods", &self.ns, &self.pod)
            .and_then(|p| {
                p.pointer("/spec/containers")?
                    .as_array()?
                    .iter()
                    .find(|c| c["name"] == json!(name))
                    .map(|c| c["image"].clone())
            })
            .unwrap_or(json!(""));
        let (state_json, last, restarts, ready) = match state {
            Container::Creating => (
                json!({"waiting": {"reason": "ContainerCreating"}}),
                json!({}),
                0,
                false,
            ),
            Container::ImagePullBackOff => (
                json!({"waiting": {"reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image {image}")}}),
                json!({}),
                0,
                false,
            ),
            Container::Running => (
                json!({"running": {"startedAt": STARTED}}),
                json!({}),
                0,
                true,
            ),
            Container::CrashLoopBackOff(n) => (
                json!({"waiting": {"reason": "CrashLoopBackOff",
                    "message": format!("back-off 40s restarting failed container={name}")}}),
                terminated(1, "Error"),
                *n,
                false,
            ),
            Container::Exited(_) | Container::OomKilled if restarts_on_end => {
                let end = match state {
                    Container::OomKilled => terminated(137, "OOMKilled"),
                    Container::Exited(0) => terminated(0, "Completed"),
                    Container::Exited(c) => terminated(*c, "Error"),
                    _ => json!({}),
                };
                (json!({"running": {"startedAt": STARTED}}), end, 1, true)
            }
            Container::OomKilled => (terminated(137, "OOMKilled"), json!({}), 0, false),
            Container::Exited(code) => {
                let reason = if *code == 0 { "Completed" } else { "Error" };
                (terminated(*code, reason), json!({}), 0, false)
            }
        };
        json!({"name": name, "image": image, "imageID": "", "ready": ready,
            "started": matches!(state, Container::Running), "restartCount": restarts,
            "state": state_json, "lastState": last})
    }

    fn set_all(&self, states: &[(String, Container)]) -> bool {
        let Some(pod) = self.fake.get("pods", &self.ns, &self.pod) else {
            return false;
        };
        let policy = pod["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_owned();
        let restarts_on_end = policy != "Never";
        let statuses: Vec<Value> = states
            .iter()
            .map(|(n, s)| self.container_status(n, s, restarts_on_end))
            .collect();
        let ended = |s: &Container| matches!(s, Container::Exited(_) | Container::OomKilled);
        let all_ended = !restarts_on_end && states.iter().all(|(_, s)| ended(s));
        let all_ok = states
            .iter()
            .all(|(_, s)| matches!(s, Container::Exited(0)));
        let any_started = states
            .iter()
            .any(|(_, s)| !matches!(s, Container::Creating | Container::ImagePullBackOff));
        let phase = if all_ended && all_ok {
            "Succeeded"
        } else if all_ended {
            "Failed"
        } else if any_started {
            "Running"
        } else {
            "Pending"
        };
        let ready = states.iter().all(|(_, s)| *s == Container::Running);
        let status = json!({
            "phase": phase,
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "hostIP": "127.0.0.1",
            "qosClass": "BestEffort",
            "startTime": STARTED,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": if ready { "True" } else { "False" }},
                {"type": "Ready", "status": if ready { "True" } else { "False" }},
            ],
            "containerStatuses": statuses,
        });
        self.fake.set_pod_status(&self.ns, &self.pod, status)
    }
}

impl FakeKube {
    /// The kubelet stand-in for pod `ns/pod`.
    pub fn kubelet(&self, ns: &str, pod: &str) -> Kubelet {
        Kubelet {
            fake: self.clone(),
            ns: ns.to_owned(),
            pod: pod.to_owned(),
        }
    }
}
