//! `SessionRuntime`: what the reconciler needs from wherever sessions run.
//! [`kube::KubeRuntime`] is production (pods on Kubernetes);
//! [`log::LogRuntime`] (test mode) only logs what it would do;
//! [`process::ProcessRuntime`] runs a session's containers as local processes.

pub mod kube;
pub mod log;
pub mod process;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::pin::Pin;

use ambient_protocol::env;
use k8s_openapi::api::core::v1::Pod;

use crate::objects::{ProjectObjects, SessionObjects};

/// A boxed, sendable future (the runtime is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the runtime sees of a session's runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Nothing runs for the session.
    Absent,
    /// Created, runner not running yet.
    Starting,
    /// The runner container is running.
    Running,
    /// The runner container exited with this code (sidecars may still run).
    Exited(i32),
    /// The runner cannot run (e.g. `ImagePullBackOff`, `OOMKilled`).
    Failed(String),
    /// Being deleted.
    Terminating,
}

/// What the session gateway needs to know of a session's current pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodFacts {
    /// Names the pod: its generation, picked by the control plane when it
    /// created the pod (`crate::names::ANNOTATION_GENERATION` on
    /// Kubernetes, UID for a pod without it; the pod's request time in the
    /// process runtime), so a replaced pod's tokens and session key file
    /// can be told apart.
    pub generation: String,
    /// The credentials delivered to the pod (the `CREDENTIAL_IDS` of its
    /// containers): the only ones its session may fetch.
    pub credentials: BTreeSet<String>,
}

impl PodFacts {
    /// The facts of `pod`, named by `generation`.
    pub fn of(pod: &Pod, generation: String) -> PodFacts {
        PodFacts {
            generation,
            credentials: delivered_credentials(pod),
        }
    }
}

/// The credential IDs a pod's containers were given (`CREDENTIAL_IDS`, a
/// JSON object provider → ID, wire.md §5).
pub fn delivered_credentials(pod: &Pod) -> BTreeSet<String> {
    let Some(spec) = &pod.spec else {
        return BTreeSet::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.env.iter().flatten())
        .filter(|e| e.name == env::CREDENTIAL_IDS)
        .filter_map(|e| e.value.as_deref())
        .filter_map(|v| serde_json::from_str::<std::collections::BTreeMap<String, String>>(v).ok())
        .flat_map(|ids| ids.into_values())
        .filter(|id| !id.is_empty())
        .collect()
}

/// Whether a connection comes from a session's current pod (wire.md §3:
/// an exchange is bound to the caller's pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// From the session's current pod.
    Member(PodFacts),
    /// The session has no pod that could call yet (not created, no IP yet,
    /// or the runtime has not synced): the client retries.
    NotYet,
    /// Not from the session's pod.
    Stranger,
}

/// A runtime call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// Worth retrying with backoff (conflicts, throttling, server errors, timeouts).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (invalid object); the session fails.
    #[error("{0}")]
    Permanent(String),
}

/// Access a group gets to a project namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Admin,
    Edit,
    View,
}

impl Role {
    /// `admin` or `edit` (any case); anything else is `view`, as the reference.
    pub fn parse(s: &str) -> Role {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Role::Admin,
            "edit" => Role::Edit,
            _ => Role::View,
        }
    }

    /// The role's name (in the RoleBinding's name).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Edit => "edit",
            Role::View => "view",
        }
    }

    /// The ClusterRole bound (wire.md §4).
    pub fn cluster_role(self) -> &'static str {
        match self {
            Role::Admin => "ambient-project-admin",
            Role::Edit => "ambient-project-edit",
            Role::View => "ambient-project-view",
        }
    }
}

/// One group's access to a project.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupBinding {
    pub group: String,
    pub role: Role,
}

/// Where sessions run. Every method is idempotent.
pub trait SessionRuntime: Send + Sync + 'static {
    /// Creates or updates every object of a session.
    fn provision<'a>(
        &'a self,
        objects: &'a SessionObjects,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// What runs for a session now.
    fn observe<'a>(
        &'a self,
        session_id: &'a str,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Observation, RuntimeError>>;

    /// How many times the session's vanished pod was re-provisioned since
    /// the session last started: the `ambient-code.io/reprovisions`
    /// annotation of its ServiceAccount (which provisioning writes), so the
    /// count survives a restart or a failover of the control plane. 0 when
    /// the session has no objects.
    fn reprovisions<'a>(
        &'a self,
        session_id: &'a str,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>>;

    /// Stops a session's runner; `Ok(true)` once nothing runs any more.
    fn stop<'a>(
        &'a self,
        session_id: &'a str,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<bool, RuntimeError>>;

    /// Removes every object of a deleted session (never its namespace).
    fn cleanup<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// IDs of the sessions that have objects (to find orphans).
    fn sessions(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>>;

    /// IDs of the projects that have a namespace or group access of ours
    /// (to find projects and settings deleted while we were down).
    fn projects(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>>;

    /// Creates a project's objects and keeps them converged (its
    /// namespace, runner Secret, project-manager Role and binding, the
    /// creator's admin binding, ProjectSettings). Only in a namespace of
    /// ours: one that is not is a permanent error. Runtimes without
    /// namespaces have nothing to do.
    fn provision_project<'a>(
        &'a self,
        objects: &'a ProjectObjects,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let _ = objects;
        Box::pin(async { Ok(()) })
    }

    /// Removes what a deleted project owned (its namespace, when we manage it).
    fn remove_project<'a>(&'a self, project_id: &'a str)
    -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Makes the project's group access exactly `bindings` (prunes the rest).
    fn sync_group_access<'a>(
        &'a self,
        project_id: &'a str,
        bindings: &'a [GroupBinding],
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Whether the TCP connection from `peer` to our listener at `local`
    /// comes from session `session_id`'s current pod. Its place is computed
    /// from `project_id` (the namespace the control plane gives the
    /// project's sessions), never taken from what the session says (its
    /// `kube_namespace` is writable through the API).
    fn caller<'a>(
        &'a self,
        session_id: &'a str,
        project_id: &'a str,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> BoxFuture<'a, Result<Caller, RuntimeError>>;

    /// The facts of session `session_id`'s current pod (placed by
    /// `project_id`, as [`SessionRuntime::caller`]); `None` without one.
    fn pod_facts<'a>(
        &'a self,
        session_id: &'a str,
        project_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodFacts>, RuntimeError>>;

    /// Rewrites the session key file of every session pod with `roots`'
    /// current root (after a root rotation, while the previous root still
    /// verifies); how many were rewritten. Runtimes without key files: 0.
    fn rewrite_session_keys<'a>(
        &'a self,
        roots: &'a ambient_protocol::exchange::v3::RootKeys,
    ) -> BoxFuture<'a, Result<usize, RuntimeError>> {
        let _ = roots;
        Box::pin(async { Ok(0) })
    }

    /// Runs until dropped, sending the ID of every session whose runtime
    /// state changed (the reconciler enqueues it).
    fn watch(&self, changed: tokio::sync::mpsc::UnboundedSender<String>) -> BoxFuture<'_, ()>;
}
