//! `KubeRuntime`: sessions as pods on Kubernetes.
//!
//! Typed `k8s-openapi` objects applied with server-side apply (field manager
//! `ambient-control-plane`); Pod, Service and Secret owned by the session's
//! ServiceAccount; pod status followed by a reflector on managed pods (no
//! polling): observations come from its store (a miss is confirmed by a
//! GET, so a pod just created is never taken for a vanished one), and a pod
//! that vanished while the watch was down (a 410 Gone relist) is reported
//! at once; deletes by label, never a namespace we do not manage.
//! Which namespaces are ours ([`ownership`]), the pod watch and what a pod
//! says ([`pods`]), group access ([`access`]), MPP TenantNamespaces
//! ([`tenant`]), the image-puller grant and Vertex key copy ([`platform`]),
//! a project's own objects ([`project`])
//! and which pod a connection comes from ([`caller`]) live in submodules.

mod access;
pub mod caller;
mod ownership;
mod platform;
mod pods;
mod project;
mod session_key;
mod tenant;

pub use access::{LABEL_GROUP_ACCESS, group_role_binding, role_binding_name};
pub use pods::{
    BROKEN_CONTAINER_REASONS, FAILING_WAIT_REASONS, MAX_RESTARTS, PodSessions, observe_pod,
};
pub use project::own_service_account;
pub use tenant::ACTIVE_WAIT;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use ambient_protocol::v1::{Project, Session};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BoxFuture, Caller, GroupBinding, Observation, PodFacts, RuntimeError, SessionRuntime};
use crate::config::PlatformMode;
use crate::informer::Store;
use crate::names;
use crate::objects::{ProjectObjects, SessionObjects};
use crate::session_keys::{self, V3Roots};

/// Sessions as pods.
#[derive(Clone)]
pub struct KubeRuntime {
    client: Client,
    mode: PlatformMode,
    /// Every list, watch and delete is scoped to this installation's label.
    installation: String,
    /// Where MPP TenantNamespaces are (mpp mode).
    mpp_config_namespace: Option<String>,
    /// The control plane's own namespace (never used for sessions).
    control_plane_namespace: String,
    /// The API's projects (the informer cache): the Vertex key is copied
    /// only into namespaces of projects it holds.
    projects: Option<Arc<Store<Project>>>,
    /// The API's sessions (the informer cache): a session key is written
    /// only for a session of the project its pod's namespace belongs to.
    sessions: Option<Arc<Store<Session>>>,
    /// The Vertex key Secret whose copies are kept in sync: (namespace, name).
    vertex_source: Option<(String, String)>,
    /// The managed pods, once the reflector of [`SessionRuntime::watch`]
    /// has listed them.
    pods: Arc<Mutex<Option<reflector::Store<Pod>>>>,
    /// The exchange-v3 roots session key files are derived from.
    session_keys: Option<V3Roots>,
}

impl std::fmt::Debug for KubeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRuntime")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Maps a Kubernetes error to retry-or-give-up. A 403 is one of three:
/// admission refused the object (a webhook's denial, PodSecurity): the
/// same object is refused again, so give up with the reason; RBAC lacks a
/// permission (`... cannot <verb> resource ...`): say which, and retry (an
/// administrator may grant it); anything else (a terminating namespace, a
/// quota): retry.
pub fn classify(e: kube::Error) -> RuntimeError {
    match &e {
        kube::Error::Api(s) if s.code == 400 || s.code == 422 => RuntimeError::Permanent(format!(
            "kubernetes refused the object: {} ({})",
            s.message, s.code
        )),
        kube::Error::Api(s) if s.code == 403 && is_admission_denial(&s.message) => {
            RuntimeError::Permanent(format!(
                "kubernetes admission refused the object: {}",
                s.message
            ))
        }
        kube::Error::Api(s) if s.code == 403 && s.message.contains(" cannot ") => {
            RuntimeError::Transient(format!(
                "the control plane lacks a permission (rbac.yaml lists what it needs): {}",
                s.message
            ))
        }
        kube::Error::Api(s) => {
            RuntimeError::Transient(format!("kubernetes answered {}: {}", s.code, s.message))
        }
        other => RuntimeError::Transient(format!("kubernetes request failed: {other}")),
    }
}

/// How the API server words an admission refusal: a validating webhook's
/// denial, or a PodSecurity violation.
fn is_admission_denial(message: &str) -> bool {
    message.contains("denied the request") || message.contains("violates PodSecurity")
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
            control_plane_namespace: String::new(),
            projects: None,
            sessions: None,
            vertex_source: None,
            pods: Arc::default(),
            session_keys: None,
        }
    }

    /// Deriving session key files from `roots` (exchange v3).
    pub fn with_session_keys(mut self, roots: V3Roots) -> Self {
        self.session_keys = Some(roots);
        self
    }

    /// With what it needs of the pod configuration: the MPP config
    /// namespace, its own namespace and the Vertex key Secret to keep copies
    /// of in sync.
    pub fn configured(mut self, cfg: &crate::objects::PodConfig) -> Self {
        self.mpp_config_namespace = cfg.mpp_config_namespace.clone();
        self.control_plane_namespace = cfg.control_plane_namespace.clone();
        self.vertex_source = cfg
            .vertex
            .as_ref()
            .map(|v| (v.secret_namespace.clone(), v.secret_name.clone()));
        self
    }

    /// Knowing the API's projects and sessions (the informer caches):
    /// without them no project is known, no Vertex key copy is refreshed,
    /// and no session key file is rewritten.
    pub fn knowing(mut self, projects: Arc<Store<Project>>, sessions: Arc<Store<Session>>) -> Self {
        self.projects = Some(projects);
        self.sessions = Some(sessions);
        self
    }

    /// The session's pod, in the namespace of `project_id`'s sessions: from
    /// the reflector's store when it has it (only the leader runs the
    /// reflector), else read from the API.
    async fn session_pod(
        &self,
        session_id: &str,
        project_id: &str,
    ) -> Result<Option<Pod>, RuntimeError> {
        let name = names::pod_name(session_id);
        if project_id.is_empty() {
            return Ok(None);
        }
        let namespace = &names::namespace(self.mode, project_id);
        if let Some(pod) = self
            .pod_store()
            .and_then(|s| s.get(&ObjectRef::new(&name).within(namespace)))
        {
            return Ok(Some(pod.as_ref().clone()));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = pods.get_opt(&name).await.map_err(classify)?;
        // Only a pod of ours, of this installation, speaks for a session.
        Ok(pod.filter(|p| {
            p.labels().get(names::LABEL_SESSION_ID).map(String::as_str) == Some(session_id)
                && p.labels().get(names::LABEL_MANAGED_BY).map(String::as_str)
                    == Some(names::MANAGED_BY)
                && p.labels().get(names::LABEL_INSTALLATION) == Some(&self.installation)
        }))
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

    async fn ensure_namespace(&self, objects: &SessionObjects) -> Result<(), RuntimeError> {
        self.refuse_reserved(&objects.namespace_name)?;
        if let Some(tn) = &objects.tenant_namespace {
            return self
                .ensure_tenant_namespace(tn, &objects.namespace_name)
                .await;
        }
        match &objects.namespace {
            Some(ns) => self.ensure_owned_namespace(ns).await,
            // Nothing to create it from: it must exist and be ours already.
            None => {
                let api: Api<Namespace> = Api::all(self.client.clone());
                let name = &objects.namespace_name;
                match api.get_opt(name).await.map_err(classify)? {
                    Some(n) if self.carries_our_labels(n.labels()) => Ok(()),
                    Some(_) => Err(self.not_ours(&format!("namespace {name}"))),
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
            let policies = Api::<NetworkPolicy>::namespaced(c.clone(), ns);
            let existing = policies
                .get_opt(&objects.network_policy.name_any())
                .await
                .map_err(classify)?;
            let policy =
                crate::objects::merge_network_policy(&objects.network_policy, existing.as_ref());
            self.apply(&policies, &policy).await?;
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
            let pods = Api::<Pod>::namespaced(c.clone(), ns);
            let existing = pods
                .get_opt(&owned.pod.name_any())
                .await
                .map_err(classify)?;
            if owned.uses_session_key() {
                // The key file is in the Secret before the pod exists: a new
                // pod gets a fresh generation, an existing one keeps its own.
                let generation = existing
                    .as_ref()
                    .map(names::pod_generation)
                    .unwrap_or_else(names::new_generation);
                let key = self
                    .session_keys
                    .as_ref()
                    .and_then(|r| session_keys::key_file(r, owned.session_id(), &generation))
                    .ok_or_else(|| {
                        RuntimeError::Transient("no exchange-v3 root keys loaded yet".into())
                    })?;
                owned.set_session_key(&generation, &key);
            }
            if let Some(secret) = &owned.secret {
                self.apply(&Api::<Secret>::namespaced(c.clone(), ns), secret)
                    .await?;
            }
            // Pods are immutable: apply only when there is none.
            if existing.is_none() {
                self.apply(&pods, &owned.pod).await?;
            }
            self.apply(&Api::<Service>::namespaced(c.clone(), ns), &owned.service)
                .await?;
            Ok(())
        })
    }

    fn provision_project<'a>(
        &'a self,
        objects: &'a ProjectObjects,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.apply_project(objects))
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
            if let Err(e) = self.refuse_reserved(&name) {
                tracing::warn!(namespace = %name, error = %e, "project deleted; keeping its namespace");
                return Ok(());
            }
            let api: Api<Namespace> = Api::all(self.client.clone());
            let Some(ns) = api.get_opt(&name).await.map_err(classify)? else {
                return Ok(());
            };
            if !self.carries_our_labels(ns.labels()) {
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

    fn caller<'a>(
        &'a self,
        session_id: &'a str,
        project_id: &'a str,
        peer: std::net::SocketAddr,
        _local: std::net::SocketAddr,
    ) -> BoxFuture<'a, Result<Caller, RuntimeError>> {
        Box::pin(async move {
            let pod = self.session_pod(session_id, project_id).await?;
            Ok(caller::pod_caller(pod.as_ref(), session_id, peer.ip()))
        })
    }

    fn pod_facts<'a>(
        &'a self,
        session_id: &'a str,
        project_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodFacts>, RuntimeError>> {
        Box::pin(async move {
            let pod = self.session_pod(session_id, project_id).await?;
            Ok(pod.map(|p| PodFacts::of(&p, names::pod_generation(&p))))
        })
    }

    fn rewrite_session_keys<'a>(
        &'a self,
        roots: &'a ambient_protocol::exchange::v3::RootKeys,
    ) -> BoxFuture<'a, Result<usize, RuntimeError>> {
        Box::pin(self.rewrite_keys(roots))
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
