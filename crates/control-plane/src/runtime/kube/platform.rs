//! The platform objects of a session namespace (wire.md §4): the runner
//! image-puller grant in `RUNNER_IMAGE_NAMESPACE` and the copy of the Vertex
//! key Secret, kept in sync with its source.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;

use super::{KubeRuntime, classify, delete_if_present};
use crate::names;
use crate::objects::SecretCopy;
use crate::runtime::RuntimeError;

impl KubeRuntime {
    /// Applies `copy` with the data its source holds now.
    pub(super) async fn apply_secret_copy(&self, copy: &SecretCopy) -> Result<(), RuntimeError> {
        if copy.secret.metadata.namespace.as_deref() == Some(copy.from_namespace.as_str()) {
            // The session namespace holds the source itself: nothing to copy.
            return Ok(());
        }
        let source: Api<Secret> = Api::namespaced(self.client.clone(), &copy.from_namespace);
        let Some(src) = source.get_opt(&copy.from_name).await.map_err(classify)? else {
            return Err(RuntimeError::Transient(format!(
                "Secret {}/{} to copy does not exist",
                copy.from_namespace, copy.from_name
            )));
        };
        let mut secret = copy.secret.clone();
        secret.data = Some(src.data.unwrap_or_default());
        let ns = secret.namespace().unwrap_or_default();
        self.apply(
            &Api::<Secret>::namespaced(self.client.clone(), &ns),
            &secret,
        )
        .await
        .map(|_| ())
    }

    /// Applies the image-puller grant of a session namespace.
    pub(super) async fn apply_image_puller(&self, rb: &RoleBinding) -> Result<(), RuntimeError> {
        let ns = rb.namespace().unwrap_or_default();
        self.apply(
            &Api::<RoleBinding>::namespaced(self.client.clone(), &ns),
            rb,
        )
        .await
        .map(|_| ())
    }

    /// Deletes the project's image-puller grants.
    pub(super) async fn remove_image_pullers(&self, project_id: &str) -> Result<(), RuntimeError> {
        let selector = format!(
            "{},{}=true,{}={project_id}",
            names::managed_selector(&self.installation),
            names::LABEL_IMAGE_PULLER,
            names::LABEL_PROJECT_ID,
        );
        for rb in self.list_labelled::<RoleBinding>(&selector).await? {
            let api: Api<RoleBinding> =
                Api::namespaced(self.client.clone(), &rb.namespace().unwrap_or_default());
            delete_if_present(&api, &rb.name_any(), &DeleteParams::background()).await?;
        }
        Ok(())
    }

    /// Follows the Vertex key Secret (by name: a watch of that one Secret
    /// in its namespace) and re-copies it into every namespace of ours
    /// holding a copy whenever it changes (pods see the new files: Secret
    /// volumes are refreshed by the kubelet). Runs until dropped.
    pub(super) async fn sync_vertex_copies(&self) {
        let Some((from_ns, from_name)) = self.vertex_source.clone() else {
            return std::future::pending().await;
        };
        let source: Api<Secret> = Api::namespaced(self.client.clone(), &from_ns);
        let config = watcher::Config::default().fields(&format!("metadata.name={from_name}"));
        let mut stream = std::pin::pin!(
            watcher::watcher(source, config)
                .default_backoff()
                .applied_objects()
        );
        while let Some(event) = stream.next().await {
            let src = match event {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "Vertex Secret watch error");
                    continue;
                }
            };
            if src.name_any() != from_name {
                continue;
            }
            if let Err(e) = self.recopy(&src, &from_ns, &from_name).await {
                tracing::warn!(error = %e, "cannot refresh the Vertex Secret copies; next change or provisioning retries");
            }
        }
    }

    /// Refreshes the copies of `src`: in each namespace of ours of a known
    /// project ([`KubeRuntime::owned_namespaces`]) that holds one (made when
    /// a session there was provisioned), read by name. Never a Secret list:
    /// a look-alike elsewhere, whatever its labels, is never written.
    async fn recopy(
        &self,
        src: &Secret,
        from_ns: &str,
        from_name: &str,
    ) -> Result<(), RuntimeError> {
        let from = format!("{from_ns}/{from_name}");
        let mut failed = None;
        for ns in self.owned_namespaces().await? {
            if ns == from_ns {
                continue;
            }
            if let Err(e) = self.refresh_copy(src, &ns, from_name, &from).await {
                tracing::warn!(namespace = %ns, error = %e, "cannot refresh the Vertex Secret copy");
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Rewrites the copy `from_name` in `ns` with `src`'s data, if there is
    /// one and it differs.
    async fn refresh_copy(
        &self,
        src: &Secret,
        ns: &str,
        from_name: &str,
        from: &str,
    ) -> Result<(), RuntimeError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let Some(copy) = api.get_opt(from_name).await.map_err(classify)? else {
            return Ok(());
        };
        if copy
            .annotations()
            .get(names::ANNOTATION_COPIED_FROM)
            .map(String::as_str)
            != Some(from)
            || copy.data == src.data
        {
            return Ok(());
        }
        let fresh = Secret {
            metadata: kube::api::ObjectMeta {
                name: copy.metadata.name.clone(),
                namespace: copy.metadata.namespace.clone(),
                labels: copy.metadata.labels.clone(),
                annotations: Some(BTreeMap::from([(
                    names::ANNOTATION_COPIED_FROM.to_owned(),
                    from.to_owned(),
                )])),
                ..Default::default()
            },
            type_: copy.type_.clone(),
            data: src.data.clone(),
            ..Secret::default()
        };
        self.apply(&api, &fresh).await?;
        tracing::info!(namespace = %ns, "Vertex Secret copy refreshed");
        Ok(())
    }
}
