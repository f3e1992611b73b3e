//! MPP mode (wire.md §4): a project's namespace is asked of the platform
//! with a `TenantNamespace` in `MPP_CONFIG_NAMESPACE`; sessions wait until
//! the namespace it yields is `Active`. Only a TenantNamespace of ours, and
//! a namespace not older than it, is used (`ownership`). Project delete deletes the
//! TenantNamespace (the platform then removes the namespace).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch};

use super::ownership::predates;
use super::{KubeRuntime, classify, delete_if_present, is_not_found};
use crate::names;
use crate::objects::tenant_namespace_resource;
use crate::runtime::RuntimeError;

/// How long one provisioning waits for the namespace; after that the
/// session is re-queued (with backoff) and waits again.
pub const ACTIVE_WAIT: Duration = Duration::from_secs(60);
/// Between two looks at the namespace.
const ACTIVE_POLL: Duration = Duration::from_secs(1);

impl KubeRuntime {
    pub(super) fn tenant_api(&self) -> Option<Api<DynamicObject>> {
        let ns = self.mpp_config_namespace.as_deref()?;
        Some(Api::namespaced_with(
            self.client.clone(),
            ns,
            &tenant_namespace_resource(),
        ))
    }

    /// Applies the TenantNamespace `tn` (unless it exists and is ours; one
    /// that exists without our labels is someone else's: refused), then
    /// waits (up to [`ACTIVE_WAIT`]) until namespace `ns` is `Active`. A
    /// namespace older than the TenantNamespace was not made for it: refused.
    pub(super) async fn ensure_tenant_namespace(
        &self,
        tn: &DynamicObject,
        ns: &str,
    ) -> Result<(), RuntimeError> {
        self.refuse_reserved(ns)?;
        let tn_ns = tn.namespace().unwrap_or_default();
        let api = Api::<DynamicObject>::namespaced_with(
            self.client.clone(),
            &tn_ns,
            &tenant_namespace_resource(),
        );
        let ours = match api.get_opt(&tn.name_any()).await.map_err(classify)? {
            Some(existing) if !self.carries_our_labels(existing.labels()) => {
                return Err(self.not_ours(&format!(
                    "TenantNamespace {tn_ns}/{} (of namespace {ns})",
                    tn.name_any()
                )));
            }
            Some(existing) => existing,
            None => api
                .patch(&tn.name_any(), &Self::apply_params(), &Patch::Apply(tn))
                .await
                .map_err(classify)?,
        };
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let deadline = Instant::now() + ACTIVE_WAIT;
        loop {
            if let Some(n) = namespaces.get_opt(ns).await.map_err(classify)? {
                if predates(&n, &ours) {
                    return Err(RuntimeError::Permanent(format!(
                        "namespace {ns} existed before its TenantNamespace {tn_ns}/{}: it was not \
                         made for this installation; refusing to use it",
                        tn.name_any()
                    )));
                }
                let active = n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active")
                    && n.metadata.deletion_timestamp.is_none();
                if active {
                    tracing::debug!(namespace = %ns, "MPP namespace is Active");
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Transient(format!(
                    "namespace {ns} is not Active yet (TenantNamespace {} applied)",
                    tn.name_any()
                )));
            }
            tokio::time::sleep(ACTIVE_POLL).await;
        }
    }

    /// Deletes the project's TenantNamespace when it is ours (our
    /// managed-by and installation labels): never one someone else made.
    pub(super) async fn remove_tenant_namespace(
        &self,
        project_id: &str,
    ) -> Result<(), RuntimeError> {
        let Some(api) = self.tenant_api() else {
            return Ok(());
        };
        let name = names::tenant_namespace_name(project_id);
        let existing = match api.get_opt(&name).await {
            Ok(t) => t,
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(classify(e)),
        };
        let Some(tn) = existing else {
            return Ok(());
        };
        if !self.carries_our_labels(tn.labels()) {
            tracing::warn!(tenant_namespace = %name, "project deleted but its TenantNamespace is not ours; keeping it");
            return Ok(());
        }
        delete_if_present(&api, &name, &DeleteParams::background()).await?;
        tracing::info!(tenant_namespace = %name, "TenantNamespace deleted");
        Ok(())
    }

    /// Projects with a TenantNamespace of this installation.
    pub(super) async fn tenant_projects(&self) -> Result<BTreeSet<String>, RuntimeError> {
        let Some(api) = self.tenant_api() else {
            return Ok(BTreeSet::new());
        };
        let selector = names::managed_selector(&self.installation);
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l.items,
            // No TenantNamespace CRD (yet): none of ours.
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(classify(e)),
        };
        Ok(list
            .iter()
            .filter_map(|t| t.labels().get(names::LABEL_PROJECT_ID).cloned())
            .collect())
    }
}
