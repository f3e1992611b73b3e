//! `KubeRuntime`: sessions as pods on Kubernetes.
//!
//! Typed `k8s-openapi` objects applied with server-side apply (field manager
//! `ambient-control-plane`); Pod, Service and Secret owned by the session's
//! ServiceAccount; pod status followed by a reflector on managed pods (no
//! polling): observations come from its store (a miss is confirmed by a
//! GET, so a pod just created is never taken for a vanished one), and a pod
//! that vanished while the watch was down (a 410 Gone relist) is reported
//! at once; deletes by label, never a namespace we do not manage.
//! Group access ([`access`]), MPP TenantNamespaces ([`tenant`]) and the
//! image-puller grant and Vertex key copy ([`platform`]) live in submodules.

mod access;
mod platform;
mod tenant;

pub use access::{LABEL_GROUP_ACCESS, group_role_binding, role_binding_name};
pub use tenant::ACTIVE_WAIT;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BoxFuture, GroupBinding, Observation, RuntimeError, SessionRuntime};
use crate::config::PlatformMode;
use crate::names;
use crate::objects::SessionObjects;

/// Waiting reasons that mean the runner will not start.
pub const FAILING_WAIT_REASONS: [&str; 4] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
];

/// Sessions as pods.
#[derive(Clone)]
pub struct KubeRuntime {
    client: Client,
    mode: PlatformMode,
    /// Every list, watch and delete is scoped to this installation's label.
    installation: String,
    /// Where MPP TenantNamespaces are (mpp mode).
    mpp_config_namespace: Option<String>,
    /// The Vertex key Secret whose copies are kept in sync: (namespace, name).
    vertex_source: Option<(String, String)>,
    /// The managed pods, once the reflector of [`SessionRuntime::watch`]
    /// has listed them.
    pods: Arc<Mutex<Option<reflector::Store<Pod>>>>,
}

impl std::fmt::Debug for KubeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRuntime")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Maps a Kubernetes error to retry-or-give-up.
pub fn classify(e: kube::Error) -> RuntimeError {
    match &e {
        kube::Error::Api(s) if s.code == 400 || s.code == 422 => RuntimeError::Permanent(format!(
            "kubernetes refused the object: {} ({})",
            s.message, s.code
        )),
        kube::Error::Api(s) => {
            RuntimeError::Transient(format!("kubernetes answered {}: {}", s.code, s.message))
        }
        other => RuntimeError::Transient(format!("kubernetes request failed: {other}")),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Deletes `name`; `Ok(false)` when it was already gone.
async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<bool, RuntimeError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(classify(e)),
    }
}

impl KubeRuntime {
    pub fn new(client: Client, mode: PlatformMode, installation: &str) -> Self {
        Self {
            client,
            mode,
            installation: installation.to_owned(),
            mpp_config_namespace: None,
            vertex_source: None,
            pods: Arc::default(),
        }
    }

    /// With what it needs of the pod configuration: the MPP config
    /// namespace and the Vertex key Secret to keep copies of in sync.
    pub fn configured(mut self, cfg: &crate::objects::PodConfig) -> Self {
        self.mpp_config_namespace = cfg.mpp_config_namespace.clone();
        self.vertex_source = cfg
            .vertex
            .as_ref()
            .map(|v| (v.secret_namespace.clone(), v.secret_name.clone()));
        self
    }

    fn pod_store(&self) -> Option<reflector::Store<Pod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_pod_store(&self, store: Option<reflector::Store<Pod>>) {
        *self.pods.lock().unwrap_or_else(|p| p.into_inner()) = store;
    }

    fn apply_params() -> PatchParams {
        PatchParams::apply(names::FIELD_MANAGER).force()
    }

    async fn apply<K>(&self, api: &Api<K>, obj: &K) -> Result<K, RuntimeError>
    where
        K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        api.patch(&name, &Self::apply_params(), &Patch::Apply(obj))
            .await
            .map_err(classify)
    }

    /// Every `K` (in every namespace) matching `selector`.
    async fn list_labelled<K>(&self, selector: &str) -> Result<Vec<K>, RuntimeError>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let all: Api<K> = Api::all(self.client.clone());
        let list = all
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(classify)?;
        Ok(list.items)
    }

    async fn delete_by_label<K>(&self, selector: &str) -> Result<(), RuntimeError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        for obj in self.list_labelled::<K>(selector).await? {
            let ns = obj.namespace().unwrap_or_default();
            let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
            delete_if_present(&api, &obj.name_any(), &DeleteParams::background()).await?;
        }
        Ok(())
    }

    async fn session_ids<K>(&self) -> Result<BTreeSet<String>, RuntimeError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let items = self
            .list_labelled::<K>(&names::managed_selector(&self.installation))
            .await?;
        Ok(items
            .iter()
            .filter_map(|o| o.labels().get(names::LABEL_SESSION_ID).cloned())
            .collect())
    }

    /// Applies the namespace `ns` of project `project_id` (standard mode).
    /// A namespace that exists without our `managed-by` label is someone
    /// else's: never adopted (a permanent error); one being deleted is
    /// waited for (it refuses new objects).
    async fn ensure_owned_namespace(&self, ns: &Namespace) -> Result<(), RuntimeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = ns.name_any();
        if let Some(existing) = api.get_opt(&name).await.map_err(classify)? {
            if !self.is_ours(&existing) {
                return Err(RuntimeError::Permanent(format!(
                    "namespace {name} exists and is not managed by {}; refusing to adopt it",
                    names::MANAGED_BY
                )));
            }
            if existing.metadata.deletion_timestamp.is_some() {
                return Err(RuntimeError::Transient(format!(
                    "namespace {name} is terminating"
                )));
            }
        }
        self.apply(&api, ns).await.map(|_| ())
    }

    async fn ensure_namespace(&self, objects: &SessionObjects) -> Result<(), RuntimeError> {
        if let Some(tn) = &objects.tenant_namespace {
            return self
                .ensure_tenant_namespace(tn, &objects.namespace_name)
                .await;
        }
        match &objects.namespace {
            Some(ns) => self.ensure_owned_namespace(ns).await,
            None => {
                let api: Api<Namespace> = Api::all(self.client.clone());
                match api
                    .get_opt(&objects.namespace_name)
                    .await
                    .map_err(classify)?
                {
                    Some(_) => Ok(()),
                    None => Err(RuntimeError::Transient(format!(
                        "namespace {} is not provisioned yet",
                        objects.namespace_name
                    ))),
                }
            }
        }
    }

    /// Project IDs labelled on our objects of kind `K` matching `selector`.
    async fn project_ids<K>(&self, selector: &str) -> Result<BTreeSet<String>, RuntimeError>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Ok(self
            .list_labelled::<K>(selector)
            .await?
            .iter()
            .filter_map(|o| o.labels().get(names::LABEL_PROJECT_ID).cloned())
            .collect())
    }
}

impl KubeRuntime {
    /// True when `ns` carries our `managed-by` label and this installation's
    /// ID (or none: made before installations were labelled).
    fn is_ours(&self, ns: &Namespace) -> bool {
        let labels = ns.labels();
        labels.get(names::LABEL_MANAGED_BY).map(String::as_str) == Some(names::MANAGED_BY)
            && labels
                .get(names::LABEL_INSTALLATION)
                .is_none_or(|i| i == &self.installation)
    }
}

/// What a pod says about its runner.
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
    if let Some(state) = runner.and_then(|c| c.state.as_ref()) {
        if let Some(t) = &state.terminated {
            if t.reason.as_deref() == Some("OOMKilled") {
                return Observation::Failed("OOMKilled".into());
            }
            return Observation::Exited(t.exit_code);
        }
        if let Some(w) = &state.waiting
            && let Some(reason) = w
                .reason
                .as_deref()
                .filter(|r| FAILING_WAIT_REASONS.contains(r))
        {
            return Observation::Failed(reason.into());
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

impl SessionRuntime for KubeRuntime {
    fn provision<'a>(
        &'a self,
        objects: &'a SessionObjects,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let ns = objects.namespace_name.as_str();
            let c = &self.client;
            self.ensure_namespace(objects).await?;
            if let Some(rb) = &objects.image_puller {
                self.apply_image_puller(rb).await?;
            }
            self.apply(
                &Api::<NetworkPolicy>::namespaced(c.clone(), ns),
                &objects.network_policy,
            )
            .await?;
            if let Some(copy) = &objects.vertex_secret {
                self.apply_secret_copy(copy).await?;
            }
            let sa = self
                .apply(
                    &Api::<ServiceAccount>::namespaced(c.clone(), ns),
                    &objects.service_account,
                )
                .await?;
            let mut owned = objects.clone();
            if let Some(uid) = sa.metadata.uid.as_deref() {
                owned.set_owner(uid);
            }
            if let Some(secret) = &owned.secret {
                self.apply(&Api::<Secret>::namespaced(c.clone(), ns), secret)
                    .await?;
            }
            let pods = Api::<Pod>::namespaced(c.clone(), ns);
            // Pods are immutable: apply only when there is none.
            if pods
                .get_opt(&owned.pod.name_any())
                .await
                .map_err(classify)?
                .is_none()
            {
                self.apply(&pods, &owned.pod).await?;
            }
            self.apply(&Api::<Service>::namespaced(c.clone(), ns), &owned.service)
                .await?;
            Ok(())
        })
    }

    fn observe<'a>(
        &'a self,
        session_id: &'a str,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Observation, RuntimeError>> {
        Box::pin(async move {
            let name = names::pod_name(session_id);
            let cached = self
                .pod_store()
                .and_then(|s| s.get(&ObjectRef::new(&name).within(namespace)));
            if let Some(pod) = cached {
                return Ok(observe_pod(&pod));
            }
            // Not in the store: maybe just created and not watched yet.
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            Ok(match pods.get_opt(&name).await.map_err(classify)? {
                Some(pod) => observe_pod(&pod),
                None => Observation::Absent,
            })
        })
    }

    fn reprovisions<'a>(
        &'a self,
        session_id: &'a str,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>> {
        Box::pin(async move {
            let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            let sa = sas
                .get_opt(&names::service_account_name(session_id))
                .await
                .map_err(classify)?;
            Ok(sa
                .and_then(|sa| {
                    sa.annotations()
                        .get(names::ANNOTATION_REPROVISIONS)
                        .and_then(|n| n.parse().ok())
                })
                .unwrap_or(0))
        })
    }

    fn stop<'a>(
        &'a self,
        session_id: &'a str,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let name = names::pod_name(session_id);
            if !delete_if_present(&pods, &name, &DeleteParams::default()).await? {
                return Ok(true);
            }
            Ok(pods.get_opt(&name).await.map_err(classify)?.is_none())
        })
    }

    fn cleanup<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            // Pod, Service and Secret are owned by the ServiceAccount: the
            // garbage collector takes them with it (no cluster-wide Secret
            // listing needed). The pod goes first, explicitly, to stop it now.
            let selector = names::session_selector(session_id, &self.installation);
            self.delete_by_label::<Pod>(&selector).await?;
            self.delete_by_label::<ServiceAccount>(&selector).await?;
            Ok(())
        })
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            let mut ids = self.session_ids::<ServiceAccount>().await?;
            ids.extend(self.session_ids::<Pod>().await?);
            Ok(ids.into_iter().collect())
        })
    }

    fn projects(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            let managed = names::managed_selector(&self.installation);
            let mut ids = self.project_ids::<Namespace>(&managed).await?;
            let access = format!("{managed},{LABEL_GROUP_ACCESS}=true");
            ids.extend(self.project_ids::<RoleBinding>(&access).await?);
            if self.mode == PlatformMode::Mpp {
                ids.extend(self.tenant_projects().await?);
            }
            Ok(ids.into_iter().collect())
        })
    }

    fn remove_project<'a>(
        &'a self,
        project_id: &'a str,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.remove_image_pullers(project_id).await?;
            if self.mode == PlatformMode::Mpp {
                // The platform removes the namespace with its TenantNamespace.
                return self.remove_tenant_namespace(project_id).await;
            }
            let name = names::namespace(self.mode, project_id);
            let api: Api<Namespace> = Api::all(self.client.clone());
            let Some(ns) = api.get_opt(&name).await.map_err(classify)? else {
                return Ok(());
            };
            if !self.is_ours(&ns) {
                tracing::warn!(namespace = %name, "project deleted but its namespace is not ours; keeping it");
                return Ok(());
            }
            delete_if_present(&api, &name, &DeleteParams::background()).await?;
            Ok(())
        })
    }

    fn sync_group_access<'a>(
        &'a self,
        project_id: &'a str,
        bindings: &'a [GroupBinding],
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.sync_access(project_id, bindings))
    }

    fn watch(&self, changed: tokio::sync::mpsc::UnboundedSender<String>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            tokio::select! {
                () = self.watch_pods(changed) => {}
                () = self.sync_vertex_copies() => {}
            }
        })
    }
}

impl KubeRuntime {
    /// Follows the managed pods (the reflector [`SessionRuntime::observe`]
    /// reads), sending the session ID of every change.
    async fn watch_pods(&self, changed: tokio::sync::mpsc::UnboundedSender<String>) {
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
                Observation::Failed(reason.into())
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
