//! Rewriting the session key files of running pods after a root rotation
//! (exchange v3): each managed pod's key, derived for its generation under
//! the current root, is merged into its session's Secret; the kubelet
//! refreshes the directory mount in the running containers.

use ambient_protocol::exchange::v3::RootKeys;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::{KubeRuntime, classify, is_not_found};
use crate::names;
use crate::runtime::RuntimeError;

/// Whether `pod` mounts the session key file.
fn mounts_session_key(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.name == names::SESSION_KEY_VOLUME)
}

impl KubeRuntime {
    /// Labels can be set by anyone who may create pods: a key is written only
    /// for a pod named as its session's pod, in the namespace of a project
    /// this installation knows, labelled with that project.
    fn is_session_pod_of_ours(&self, pod: &Pod, session_id: &str, namespace: &str) -> bool {
        let Some(project) = pod.labels().get(names::LABEL_PROJECT_ID) else {
            return false;
        };
        let known = self
            .projects
            .as_ref()
            .is_none_or(|p| p.get(project).is_some());
        known
            && pod.name_any() == names::pod_name(session_id)
            && namespace == names::namespace(self.mode, project)
    }

    pub(super) async fn rewrite_keys(&self, roots: &RootKeys) -> Result<usize, RuntimeError> {
        let pods: Vec<Pod> = self
            .list_labelled(&names::managed_selector(&self.installation))
            .await?;
        let mut rewritten = 0;
        let mut failed = None;
        for pod in pods
            .iter()
            .filter(|p| mounts_session_key(p) && p.metadata.deletion_timestamp.is_none())
        {
            let Some(id) = pod.labels().get(names::LABEL_SESSION_ID) else {
                continue;
            };
            let ns = pod.namespace().unwrap_or_default();
            if !self.is_session_pod_of_ours(pod, id, &ns) {
                tracing::warn!(session = %id, namespace = %ns, pod = %pod.name_any(),
                    "a pod with our labels outside its session's place: no key written for it");
                continue;
            }
            let key = roots.key_file(id, &names::pod_generation(pod)).to_json();
            let value =
                serde_json::to_value(k8s_openapi::ByteString(key.expose().as_bytes().to_vec()))
                    .map_err(|e| {
                        RuntimeError::Permanent(format!("cannot encode a key file: {e}"))
                    })?;
            let patch = serde_json::json!({ "data": { names::SESSION_KEY_FILE: value } });
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
            match secrets
                .patch(
                    &names::secret_name(id),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => rewritten += 1,
                // The session is going away with its Secret.
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::warn!(session = %id, namespace = %ns, error = %e,
                        "cannot rewrite the session key file");
                    failed = Some(classify(e));
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(rewritten),
        }
    }
}
