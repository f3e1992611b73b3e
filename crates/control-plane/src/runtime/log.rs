//! `LogRuntime` (`MODE=test`, or `RECONCILERS` without `kube`): touches no
//! cluster. Every change a session would cause is logged and remembered, so
//! sessions move through their phases as if their runner were running.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{BoxFuture, GroupBinding, Observation, RuntimeError, SessionRuntime};
use crate::objects::{ProjectObjects, SessionObjects};

/// Logs what it would do; what it "runs" is kept in memory.
#[derive(Debug, Default)]
pub struct LogRuntime {
    /// session ID → namespace of the sessions it pretends to run.
    running: Mutex<BTreeMap<String, String>>,
    /// projects with group access.
    projects: Mutex<BTreeSet<String>>,
}

impl LogRuntime {
    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn projects_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.projects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

impl SessionRuntime for LogRuntime {
    fn provision<'a>(
        &'a self,
        objects: &'a SessionObjects,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let id = objects
                .pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::names::LABEL_SESSION_ID))
                .cloned()
                .unwrap_or_default();
            let containers: Vec<String> = objects
                .pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
                .collect();
            tracing::info!(
                session = %id,
                namespace = %objects.namespace_name,
                tenant_namespace = objects.tenant_namespace.as_ref().map(name_of).unwrap_or_default(),
                pod = %name_of(&objects.pod),
                containers = %containers.join(","),
                vertex_secret = objects.vertex_secret.is_some(),
                "test mode: would provision the session"
            );
            self.running().insert(id, objects.namespace_name.clone());
            Ok(())
        })
    }

    fn observe<'a>(
        &'a self,
        session_id: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<Observation, RuntimeError>> {
        let seen = if self.running().contains_key(session_id) {
            Observation::Running
        } else {
            Observation::Absent
        };
        Box::pin(async move { Ok(seen) })
    }

    fn reprovisions<'a>(
        &'a self,
        _session_id: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>> {
        Box::pin(async move { Ok(0) })
    }

    fn stop<'a>(
        &'a self,
        session_id: &'a str,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        if self.running().remove(session_id).is_some() {
            tracing::info!(session = %session_id, namespace, "test mode: would delete the session's pod");
        }
        Box::pin(async move { Ok(true) })
    }

    fn cleanup<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.running().remove(session_id);
        tracing::info!(session = %session_id, "test mode: would delete the session's objects");
        Box::pin(async move { Ok(()) })
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        let ids = self.running().keys().cloned().collect();
        Box::pin(async move { Ok(ids) })
    }

    fn projects(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        let ids = self.projects_set().iter().cloned().collect();
        Box::pin(async move { Ok(ids) })
    }

    fn provision_project<'a>(
        &'a self,
        objects: &'a ProjectObjects,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        tracing::info!(
            project = %objects.project_id,
            namespace = %objects.namespace_name,
            creator_binding = objects
                .creator_binding
                .as_ref()
                .and_then(|b| b.as_ref().ok())
                .map(name_of)
                .unwrap_or_default(),
            "test mode: would apply the project's namespace, runner Secret, project-manager Role and binding, creator binding and ProjectSettings"
        );
        Box::pin(async { Ok(()) })
    }

    fn remove_project<'a>(
        &'a self,
        project_id: &'a str,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.projects_set().remove(project_id);
        tracing::info!(project = %project_id, "test mode: would remove the project's namespace");
        Box::pin(async move { Ok(()) })
    }

    fn sync_group_access<'a>(
        &'a self,
        project_id: &'a str,
        bindings: &'a [GroupBinding],
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        if bindings.is_empty() {
            self.projects_set().remove(project_id);
        } else {
            self.projects_set().insert(project_id.to_owned());
            let wanted: Vec<String> = bindings
                .iter()
                .map(|b| format!("{}={}", b.group, b.role.cluster_role()))
                .collect();
            tracing::info!(project = %project_id, bindings = %wanted.join(","), "test mode: would bind group access");
        }
        Box::pin(async move { Ok(()) })
    }

    fn caller<'a>(
        &'a self,
        _session_id: &'a str,
        _project_id: &'a str,
        _peer: std::net::SocketAddr,
        _local: std::net::SocketAddr,
    ) -> BoxFuture<'a, Result<super::Caller, RuntimeError>> {
        // Nothing runs, so nothing can call from a session's pod.
        Box::pin(async { Ok(super::Caller::NotYet) })
    }

    fn pod_facts<'a>(
        &'a self,
        _session_id: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<super::PodFacts>, RuntimeError>> {
        Box::pin(async { Ok(None) })
    }

    fn watch(&self, _changed: tokio::sync::mpsc::UnboundedSender<String>) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}
