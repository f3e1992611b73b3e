//! A project's objects in its namespace (`objects::project`), applied only
//! in a namespace of ours ([`super::ownership`]): a reserved namespace, or
//! one that exists without our labels, is refused before anything is
//! written, so a project named after someone else's namespace gets nothing
//! there — in particular no admin binding for whoever its annotation names.
//!
//! The creator's admin binding is made once: while a creator binding of
//! ours exists in the namespace, a changed `ambient-code.io/created-by`
//! annotation (which anyone who may edit the project through the API may
//! write, a session's agent included) binds no one else; it is logged.

use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, PostParams};

use super::{KubeRuntime, classify, is_not_found};
use crate::names;
use crate::objects::ServiceAccountRef;
use crate::objects::project::{ProjectObjects, project_settings_resource};
use crate::runtime::RuntimeError;

/// Where a pod finds its ServiceAccount token.
const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

impl KubeRuntime {
    /// Applies every object of a project (see the module docs).
    pub(super) async fn apply_project(&self, o: &ProjectObjects) -> Result<(), RuntimeError> {
        let ns = o.namespace_name.as_str();
        self.refuse_reserved(ns)?;
        match (&o.namespace, &o.tenant_namespace) {
            (_, Some(tn)) => self.ensure_tenant_namespace(tn, ns).await?,
            (Some(n), None) => self.ensure_owned_namespace(n).await?,
            (None, None) => {
                return Err(RuntimeError::Permanent(format!(
                    "no namespace to provision for project {}",
                    o.project_id
                )));
            }
        }
        self.ensure_runner_secrets(&o.runner_secrets).await?;
        let c = &self.client;
        self.apply(&Api::<Role>::namespaced(c.clone(), ns), &o.manager_role)
            .await?;
        self.apply(
            &Api::<RoleBinding>::namespaced(c.clone(), ns),
            &o.manager_binding,
        )
        .await?;
        self.converge_creator(o).await?;
        self.apply_settings(&o.settings).await
    }

    /// Creates `ambient-runner-secrets` when absent; an existing one is
    /// its users' (they put their keys there) and never rewritten.
    async fn ensure_runner_secrets(&self, secret: &Secret) -> Result<(), RuntimeError> {
        let ns = secret.namespace().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        if api
            .get_opt(&secret.name_any())
            .await
            .map_err(classify)?
            .is_some()
        {
            return Ok(());
        }
        match api.create(&PostParams::default(), secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// The creator's admin binding: applied when it is the only creator
    /// binding of ours there or there is none yet; never a second one.
    async fn converge_creator(&self, o: &ProjectObjects) -> Result<(), RuntimeError> {
        let Some(wanted) = &o.creator_binding else {
            return Ok(());
        };
        let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &o.namespace_name);
        let selector = format!(
            "{},{}=true",
            names::managed_selector(&self.installation),
            names::LABEL_CREATOR_ADMIN
        );
        let existing: Vec<String> = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(classify)?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        let rb = match wanted {
            Ok(rb) => rb,
            Err(why) => {
                if existing.is_empty() {
                    tracing::warn!(project = %o.project_id, reason = %why,
                        "the project's created-by annotation names no one the control plane binds");
                }
                return Ok(());
            }
        };
        let name = rb.name_any();
        if existing.is_empty() || existing.contains(&name) {
            return self.apply(&api, rb).await.map(|_| ());
        }
        tracing::warn!(project = %o.project_id, kept = ?existing, refused = %name,
            "the project's created-by annotation changed: its first creator keeps the admin binding, no one else is bound");
        Ok(())
    }

    /// Applies the ProjectSettings object; without its CRD (404 on the
    /// resource, the namespace exists) it is skipped with a warning.
    async fn apply_settings(&self, settings: &DynamicObject) -> Result<(), RuntimeError> {
        let ns = settings.namespace().unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &ns, &project_settings_resource());
        let params = kube::api::PatchParams::apply(names::FIELD_MANAGER).force();
        match api
            .patch(
                &settings.name_any(),
                &params,
                &kube::api::Patch::Apply(settings),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => {
                tracing::warn!(namespace = %ns,
                    "no ProjectSettings resource (vteam.ambient-code/v1alpha1) on this cluster: not created");
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }
}

/// The control plane's own ServiceAccount: the `sub` of the pod's token
/// (`system:serviceaccount:<ns>:<name>`), else the reference's name in
/// `namespace` (outside a cluster, or a token that does not say).
pub fn own_service_account(namespace: &str) -> ServiceAccountRef {
    own_service_account_from(Path::new(IN_CLUSTER_TOKEN)).unwrap_or_else(|| ServiceAccountRef {
        namespace: namespace.to_owned(),
        name: names::CONTROL_PLANE_SERVICE_ACCOUNT.to_owned(),
    })
}

fn own_service_account_from(token_file: &Path) -> Option<ServiceAccountRef> {
    use base64::Engine as _;
    let token = std::fs::read_to_string(token_file).ok()?;
    let payload = token.trim().split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    let sub = claims.get("sub")?.as_str()?;
    let (ns, name) = sub
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')?;
    (names::is_dns_label(ns) && names::is_dns_subdomain(name)).then(|| ServiceAccountRef {
        namespace: ns.to_owned(),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn the_own_service_account_comes_from_the_token() {
        let dir = std::env::temp_dir().join(format!("cp-own-sa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("token");
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = |sub: &str| {
            format!(
                "{}.{}.sig",
                enc(r#"{"alg":"RS256"}"#),
                enc(&format!(r#"{{"sub":"{sub}"}}"#))
            )
        };
        std::fs::write(&file, token("system:serviceaccount:acp:my-cp"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            own_service_account_from(&file),
            Some(ServiceAccountRef {
                namespace: "acp".into(),
                name: "my-cp".into()
            })
        );
        std::fs::write(&file, token("alice")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(own_service_account_from(&file), None);
        assert_eq!(own_service_account_from(&dir.join("absent")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
