//! Which namespaces are this installation's: the only ones it runs sessions
//! in, binds groups in, copies the Vertex key into or deletes. Never a
//! reserved one ([`names::reserved_namespace`]: its own, the MPP config
//! namespace, `default`, `kube-*`, `openshift*`). Otherwise, in standard
//! mode, a namespace carrying our `managed-by` label and this installation's
//! label (we create it so; one that exists without them is never adopted);
//! in MPP mode, the namespace of a TenantNamespace carrying them (we ask
//! for it so; one someone else made is never adopted), and not older than
//! that TenantNamespace (a namespace that was there before was not made
//! for it). The Vertex key copies are refreshed only in these namespaces,
//! and only for projects the API knows ([`KubeRuntime::owned_namespaces`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};

use super::{KubeRuntime, classify};
use crate::config::PlatformMode;
use crate::names;
use crate::objects::{namespace_object, tenant_namespace_for};
use crate::runtime::RuntimeError;

impl KubeRuntime {
    /// A permanent error when `ns` is reserved, whatever its labels.
    pub(super) fn refuse_reserved(&self, ns: &str) -> Result<(), RuntimeError> {
        let mpp_config = self.mpp_config_namespace.as_deref();
        match names::reserved_namespace(ns, &self.control_plane_namespace, mpp_config) {
            Some(why) => Err(RuntimeError::Permanent(format!(
                "namespace {ns} is {why}: refusing to use it"
            ))),
            None => Ok(()),
        }
    }

    /// True when `labels` carry our `managed-by` label and this
    /// installation's ID.
    pub(super) fn carries_our_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(names::LABEL_MANAGED_BY).map(String::as_str) == Some(names::MANAGED_BY)
            && labels.get(names::LABEL_INSTALLATION) == Some(&self.installation)
    }

    /// Why an existing object (`what`) is not ours, as a permanent error.
    pub(super) fn not_ours(&self, what: &str) -> RuntimeError {
        RuntimeError::Permanent(format!(
            "{what} was not created by this installation: it is not managed by {} \
             with {}={}; refusing to adopt it",
            names::MANAGED_BY,
            names::LABEL_INSTALLATION,
            self.installation
        ))
    }

    /// True when `project_id` is in the API's project cache.
    pub(super) fn knows_project(&self, project_id: &str) -> bool {
        self.projects
            .as_ref()
            .is_some_and(|p| p.get(project_id).is_some())
    }

    /// Applies the namespace `ns` (standard mode). One that exists without
    /// our labels is someone else's: never adopted (a permanent error); one
    /// being deleted is waited for (it refuses new objects).
    pub(super) async fn ensure_owned_namespace(&self, ns: &Namespace) -> Result<(), RuntimeError> {
        let name = ns.name_any();
        self.refuse_reserved(&name)?;
        let api: Api<Namespace> = Api::all(self.client.clone());
        if let Some(existing) = api.get_opt(&name).await.map_err(classify)? {
            if !self.carries_our_labels(existing.labels()) {
                return Err(self.not_ours(&format!("namespace {name}")));
            }
            if existing.metadata.deletion_timestamp.is_some() {
                return Err(RuntimeError::Transient(format!(
                    "namespace {name} is terminating"
                )));
            }
        }
        self.apply(&api, ns).await.map(|_| ())
    }

    /// Makes the namespace of `project_id` exist and be ours (standard: we
    /// apply it; MPP: we ask for it and wait until it is `Active`).
    pub(super) async fn ensure_project_namespace(
        &self,
        project_id: &str,
    ) -> Result<(), RuntimeError> {
        let ns = names::namespace(self.mode, project_id);
        match self.mode {
            PlatformMode::Standard => {
                let wanted = namespace_object(&ns, project_id, &self.installation);
                self.ensure_owned_namespace(&wanted).await
            }
            PlatformMode::Mpp => {
                let tn = tenant_namespace_for(
                    &self.installation,
                    self.mpp_config_namespace.as_deref(),
                    project_id,
                );
                self.ensure_tenant_namespace(&tn, &ns).await
            }
        }
    }

    /// True when the namespace of `project_id` exists and is ours (nothing
    /// is created or changed).
    pub(super) async fn project_namespace_is_ours(
        &self,
        project_id: &str,
    ) -> Result<bool, RuntimeError> {
        let ns = names::namespace(self.mode, project_id);
        if self.refuse_reserved(&ns).is_err() {
            return Ok(false);
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let Some(existing) = namespaces.get_opt(&ns).await.map_err(classify)? else {
            return Ok(false);
        };
        Ok(match self.mode {
            PlatformMode::Standard => self.carries_our_labels(existing.labels()),
            PlatformMode::Mpp => match self.our_tenant_namespace(project_id).await? {
                Some(tn) => !predates(&existing, &tn),
                None => false,
            },
        })
    }

    /// The project's TenantNamespace when it exists and is ours.
    async fn our_tenant_namespace(
        &self,
        project_id: &str,
    ) -> Result<Option<DynamicObject>, RuntimeError> {
        let Some(api) = self.tenant_api() else {
            return Ok(None);
        };
        let name = names::tenant_namespace_name(project_id);
        let tn = api.get_opt(&name).await.map_err(classify)?;
        Ok(tn.filter(|t| self.carries_our_labels(t.labels())))
    }

    /// The namespaces the Vertex key copies may be in: ours (see the module
    /// docs), each the namespace of a project the API knows, found from our
    /// namespaces (standard) or TenantNamespaces (MPP) by label, never from
    /// the Secrets themselves.
    pub(super) async fn owned_namespaces(&self) -> Result<Vec<String>, RuntimeError> {
        let selector = names::managed_selector(&self.installation);
        let projects: Vec<(String, String)> = match self.mode {
            PlatformMode::Standard => self
                .list_labelled::<Namespace>(&selector)
                .await?
                .into_iter()
                .filter(|n| n.metadata.deletion_timestamp.is_none())
                .filter_map(|n| {
                    Some((
                        n.labels().get(names::LABEL_PROJECT_ID)?.clone(),
                        n.name_any(),
                    ))
                })
                .collect(),
            PlatformMode::Mpp => {
                let Some(api) = self.tenant_api() else {
                    return Ok(Vec::new());
                };
                let list = api
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(classify)?;
                list.items
                    .into_iter()
                    .filter_map(|t| {
                        Some((
                            t.labels().get(names::LABEL_PROJECT_ID)?.clone(),
                            t.name_any(),
                        ))
                    })
                    .collect()
            }
        };
        let mut owned = Vec::new();
        for (project, name) in projects {
            let ns = names::namespace(self.mode, &project);
            let expected = match self.mode {
                PlatformMode::Standard => ns.clone(),
                PlatformMode::Mpp => names::tenant_namespace_name(&project),
            };
            if name != expected
                || self.refuse_reserved(&ns).is_err()
                || !self.knows_project(&project)
            {
                continue;
            }
            if self.mode == PlatformMode::Mpp && !self.project_namespace_is_ours(&project).await? {
                continue;
            }
            owned.push(ns);
        }
        Ok(owned)
    }
}

/// True when namespace `ns` was created before TenantNamespace `tn`: it was
/// not made for it.
pub(super) fn predates(ns: &Namespace, tn: &DynamicObject) -> bool {
    let created = |t: &Option<Time>| t.as_ref().map(|t| t.0);
    match (
        created(&ns.metadata.creation_timestamp),
        created(&tn.metadata.creation_timestamp),
    ) {
        (Some(ns), Some(tn)) => ns < tn,
        _ => false,
    }
}
