//! Rewriting the session key files of running pods after a root rotation
//! (exchange v3): each managed pod's key, derived for its generation under
//! the current root, is merged into its session's Secret; the kubelet
//! refreshes the directory mount in the running containers.

use ambient_protocol::exchange::v3::{RootKeys, SessionKeyFile};
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

/// What became of one pod's key file in a rewrite pass.
enum Outcome {
    Rewritten,
    /// Nothing to do: already under the current root, the Secret gone or
    /// holding another pod's key (a newer generation's, written by its
    /// provisioning).
    Unchanged,
}

impl KubeRuntime {
    /// Labels can be set by anyone who may create pods: a key is written only
    /// for a pod named as its session's pod, in the namespace of the
    /// session's project as the API says (never the pod's own label alone),
    /// a project this installation knows.
    fn is_session_pod_of_ours(&self, pod: &Pod, session_id: &str, namespace: &str) -> bool {
        let Some(project) = pod.labels().get(names::LABEL_PROJECT_ID) else {
            return false;
        };
        let known = self
            .projects
            .as_ref()
            .is_none_or(|p| p.get(project).is_some());
        let sessions_project = self
            .sessions
            .as_ref()
            .and_then(|s| s.get(session_id))
            .and_then(|s| s.project_id);
        known
            && sessions_project.as_deref() == Some(project.as_str())
            && pod.name_any() == names::pod_name(session_id)
            && namespace == names::namespace(self.mode, project)
    }

    /// Every live session pod's key file rewritten under the current root:
    /// how many were. A Secret is written only when it holds this pod's
    /// generation under an older root, and only if unchanged since read
    /// (its resourceVersion: a pod provisioned meanwhile keeps its key). A
    /// refusal that retrying cannot mend (an immutable Secret, an invalid
    /// object) is logged and skipped; any other failure fails the pass,
    /// which is tried again.
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
            match self.rewrite_key(roots, pod, id, &ns).await {
                Ok(Outcome::Rewritten) => rewritten += 1,
                Ok(Outcome::Unchanged) => {}
                Err(RuntimeError::Permanent(e)) => {
                    tracing::warn!(session = %id, namespace = %ns, error = %e,
                        "cannot rewrite the session key file, and retrying will not help");
                }
                Err(e) => {
                    tracing::warn!(session = %id, namespace = %ns, error = %e,
                        "cannot rewrite the session key file");
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(rewritten),
        }
    }

    async fn rewrite_key(
        &self,
        roots: &RootKeys,
        pod: &Pod,
        id: &str,
        ns: &str,
    ) -> Result<Outcome, RuntimeError> {
        let generation = names::pod_generation(pod);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let name = names::secret_name(id);
        let Some(secret) = secrets.get_opt(&name).await.map_err(classify)? else {
            // The session is going away with its Secret.
            return Ok(Outcome::Unchanged);
        };
        let held = secret
            .data
            .as_ref()
            .and_then(|d| d.get(names::SESSION_KEY_FILE))
            .and_then(|v| SessionKeyFile::parse(&v.0).ok());
        match held {
            Some(f) if f.generation() != generation => return Ok(Outcome::Unchanged),
            Some(f) if f.kid() == roots.current().kid() => return Ok(Outcome::Unchanged),
            _ => {}
        }
        let key = roots.key_file(id, &generation).to_json();
        let value = serde_json::to_value(k8s_openapi::ByteString(key.expose().as_bytes().to_vec()))
            .map_err(|e| RuntimeError::Permanent(format!("cannot encode a key file: {e}")))?;
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": secret.resource_version() },
            "data": { names::SESSION_KEY_FILE: value },
        });
        match secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(Outcome::Rewritten),
            Err(e) if is_not_found(&e) => Ok(Outcome::Unchanged),
            Err(e) => Err(classify(e)),
        }
    }
}
