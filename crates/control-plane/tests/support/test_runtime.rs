//! A scripted `SessionRuntime` for in-process reconcile tests: it records
//! every call, can hang a provision (a stuck Kubernetes call) and run a
//! hook while provisioning (something happening meanwhile).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ambient_control_plane::objects::SessionObjects;
use ambient_control_plane::runtime::{
    BoxFuture, GroupBinding, Observation, RuntimeError, SessionRuntime,
};

type Hook = Box<dyn FnOnce(&str) + Send>;

#[derive(Default)]
struct State {
    /// session ID → namespace of its pod.
    pods: BTreeMap<String, String>,
    observations: HashMap<String, Observation>,
    calls: Vec<String>,
    hang_provisions: u32,
    on_provision: Vec<Hook>,
    orphans: Vec<String>,
    projects: Vec<String>,
    access: BTreeMap<String, Vec<GroupBinding>>,
    /// session ID → the re-provision count its objects remember.
    reprovisions: HashMap<String, u32>,
}

#[derive(Default)]
pub struct TestRuntime {
    state: Mutex<State>,
}

impl TestRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call, as `verb id`, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// True when `call` (e.g. `provision s1`) was made.
    pub fn called(&self, call: &str) -> bool {
        self.lock().calls.iter().any(|c| c == call)
    }

    /// The next `n` provisions never finish.
    pub fn hang_provisions(&self, n: u32) {
        self.lock().hang_provisions += n;
    }

    /// Runs `hook(session_id)` during the next provision.
    pub fn on_provision(&self, hook: impl FnOnce(&str) + Send + 'static) {
        self.lock().on_provision.push(Box::new(hook));
    }

    /// What the runtime reports for a session's runner.
    pub fn set_observation(&self, id: &str, o: Observation) {
        self.lock().observations.insert(id.into(), o);
    }

    /// A pod exists for `id` in `ns` (e.g. left from before a restart).
    pub fn add_pod(&self, id: &str, ns: &str) {
        self.lock().pods.insert(id.into(), ns.into());
    }

    /// The re-provision count the session's objects remember (as left by
    /// an earlier control plane).
    pub fn set_reprovisions(&self, id: &str, n: u32) {
        self.lock().reprovisions.insert(id.into(), n);
    }

    /// The re-provision count the session's objects remember now.
    pub fn reprovisions_of(&self, id: &str) -> Option<u32> {
        self.lock().reprovisions.get(id).copied()
    }

    pub fn has_pod(&self, id: &str) -> bool {
        self.lock().pods.contains_key(id)
    }

    /// Projects that have namespaces or group access in the runtime.
    pub fn add_project_objects(&self, id: &str, access: Vec<GroupBinding>) {
        let mut s = self.lock();
        s.projects.push(id.into());
        s.access.insert(id.into(), access);
    }

    /// The group access of a project now.
    pub fn access(&self, id: &str) -> Vec<GroupBinding> {
        self.lock().access.get(id).cloned().unwrap_or_default()
    }

    fn record(&self, call: String) {
        self.lock().calls.push(call);
    }
}

fn session_id(o: &SessionObjects) -> String {
    o.pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("ambient-code.io/session-id"))
        .cloned()
        .unwrap_or_default()
}

impl SessionRuntime for TestRuntime {
    fn provision<'a>(&'a self, o: &'a SessionObjects) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let id = session_id(o);
            self.record(format!("provision {id}"));
            let (hang, hooks) = {
                let mut s = self.lock();
                let hang = s.hang_provisions > 0;
                if hang {
                    s.hang_provisions -= 1;
                }
                (hang, std::mem::take(&mut s.on_provision))
            };
            if hang {
                std::future::pending::<()>().await;
            }
            for h in hooks {
                h(&id);
            }
            let n = o
                .service_account
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("ambient-code.io/reprovisions"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut s = self.lock();
            s.reprovisions.insert(id.clone(), n);
            s.pods.insert(id, o.namespace_name.clone());
            Ok(())
        })
    }

    fn observe<'a>(
        &'a self,
        id: &'a str,
        _ns: &'a str,
    ) -> BoxFuture<'a, Result<Observation, RuntimeError>> {
        let s = self.lock();
        let o = match (s.observations.get(id), s.pods.contains_key(id)) {
            (Some(o), true) => o.clone(),
            (_, true) => Observation::Starting,
            (_, false) => Observation::Absent,
        };
        Box::pin(async move { Ok(o) })
    }

    fn reprovisions<'a>(
        &'a self,
        id: &'a str,
        _ns: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>> {
        let n = self.lock().reprovisions.get(id).copied().unwrap_or(0);
        Box::pin(async move { Ok(n) })
    }

    fn stop<'a>(&'a self, id: &'a str, _ns: &'a str) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        self.record(format!("stop {id}"));
        self.lock().pods.remove(id);
        Box::pin(async { Ok(true) })
    }

    fn cleanup<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.record(format!("cleanup {id}"));
        self.lock().pods.remove(id);
        Box::pin(async { Ok(()) })
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        let s = self.lock();
        let mut ids: Vec<String> = s.pods.keys().cloned().collect();
        ids.extend(s.orphans.iter().cloned());
        Box::pin(async move { Ok(ids) })
    }

    fn projects(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        let ids = self.lock().projects.clone();
        Box::pin(async move { Ok(ids) })
    }

    fn remove_project<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.record(format!("remove_project {id}"));
        Box::pin(async { Ok(()) })
    }

    fn sync_group_access<'a>(
        &'a self,
        id: &'a str,
        bindings: &'a [GroupBinding],
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.record(format!("access {id} {}", bindings.len()));
        self.lock().access.insert(id.into(), bindings.to_vec());
        Box::pin(async { Ok(()) })
    }

    fn caller<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: std::net::SocketAddr,
        _: std::net::SocketAddr,
    ) -> BoxFuture<'a, Result<ambient_control_plane::runtime::Caller, RuntimeError>> {
        Box::pin(async { Ok(ambient_control_plane::runtime::Caller::NotYet) })
    }

    fn pod_facts<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<ambient_control_plane::runtime::PodFacts>, RuntimeError>> {
        Box::pin(async { Ok(None) })
    }

    fn watch(&self, _changed: tokio::sync::mpsc::UnboundedSender<String>) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}
