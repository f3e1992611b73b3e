//! MPP mode (wire.md §4): a project's namespace is asked of the platform
//! with a `TenantNamespace` in `MPP_CONFIG_NAMESPACE`; sessions wait until
//! the namespace it yields is `Active`. Project delete deletes the
//! TenantNamespace (the platform then removes the namespace).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch};

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
    fn tenant_api(&self) -> Option<Api<DynamicObject>> {
        let ns = self.mpp_config_namespace.as_deref()?;
        Some(Api::namespaced_with(
            self.client.clone(),
            ns,
            &tenant_namespace_resource(),
        ))
    }

    /// Applies the TenantNamespace `tn`, then waits (up to [`ACTIVE_WAIT`])
    /// until namespace `ns` is `Active`.
    pub(super) async fn ensure_tenant_namespace(
        &self,
        tn: &DynamicObject,
        ns: &str,
    ) -> Result<(), RuntimeError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let active = |n: &Namespace| {
            n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active")
                && n.metadata.deletion_timestamp.is_none()
        };
        if namespaces
            .get_opt(ns)
            .await
            .map_err(classify)?
            .is_some_and(|n| active(&n))
        {
            return Ok(());
        }
        let api = Api::<DynamicObject>::namespaced_with(
            self.client.clone(),
            &tn.namespace().unwrap_or_default(),
            &tenant_namespace_resource(),
        );
        api.patch(&tn.name_any(), &Self::apply_params(), &Patch::Apply(tn))
            .await
            .map_err(classify)?;
        let deadline = Instant::now() + ACTIVE_WAIT;
        loop {
            tokio::time::sleep(ACTIVE_POLL).await;
            if namespaces
                .get_opt(ns)
                .await
                .map_err(classify)?
                .is_some_and(|n| active(&n))
            {
                tracing::info!(namespace = %ns, "MPP namespace is Active");
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Transient(format!(
                    "namespace {ns} is not Active yet (TenantNamespace {} applied)",
                    tn.name_any()
                )));
            }
        }
    }

    /// Deletes the project's TenantNamespace: ours, or one the reference
    /// made (the platform's tenant label without another installation's).
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
        let labels = tn.labels();
        let ours = labels.get(names::LABEL_INSTALLATION).map_or(
            labels
                .get("tenant.paas.redhat.com/tenant")
                .map(String::as_str)
                == Some("ambient-code"),
            |i| i == &self.installation,
        );
        if !ours {
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
