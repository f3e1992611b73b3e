//! The objects of a project (the reference's project and project-settings
//! reconcilers): its namespace (or, in mpp mode, the TenantNamespace asking
//! for it), the `ambient-runner-secrets` Secret, the Role and RoleBinding
//! `ambient-control-plane-project-manager`, the creator's admin RoleBinding
//! `ambient-admin-<subject>` (from the project's `ambient-code.io/created-by`
//! annotation) and the `ProjectSettings` object from the API's settings.
//! Pure functions: the `KubeRuntime` applies them, `render` prints them.

use std::collections::BTreeMap;

use ambient_protocol::v1::{Project, ProjectSettings};
use k8s_openapi::api::core::v1::{Namespace, Secret as KubeSecret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use super::{PodConfig, namespace_object, tenant_namespace};
use crate::config::PlatformMode;
use crate::names;

/// Who the project-manager RoleBinding binds: the control plane's
/// ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

/// Every object of one project, in apply order.
#[derive(Debug, Clone)]
pub struct ProjectObjects {
    pub project_id: String,
    pub namespace_name: String,
    /// Standard mode: the namespace to create.
    pub namespace: Option<Namespace>,
    /// MPP mode: the TenantNamespace asking the platform for it.
    pub tenant_namespace: Option<DynamicObject>,
    /// Created empty when absent, never overwritten (its users fill it in).
    pub runner_secrets: KubeSecret,
    pub manager_role: Role,
    pub manager_binding: RoleBinding,
    /// The creator's admin binding, from the project's annotation as it is
    /// now; the runtime keeps the first one made (see `runtime::kube`).
    /// `Err` says why the annotation names nobody we bind.
    pub creator_binding: Option<Result<RoleBinding, String>>,
    pub settings: DynamicObject,
}

/// The `vteam.ambient-code/v1alpha1` `ProjectSettings` resource.
pub fn project_settings_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            names::PROJECT_SETTINGS_GROUP,
            names::PROJECT_SETTINGS_VERSION,
            names::PROJECT_SETTINGS_KIND,
        ),
        names::PROJECT_SETTINGS_PLURAL,
    )
}

/// The ID of `project` ("" when it has none).
pub fn project_id(project: &Project) -> &str {
    project
        .metadata
        .as_ref()
        .map(|m| m.id.as_str())
        .unwrap_or_default()
}

/// The objects of `project`, with `settings` (the API's, if any), the
/// project-manager binding naming `manager`.
pub fn build_project(
    cfg: &PodConfig,
    project: &Project,
    settings: Option<&ProjectSettings>,
    manager: &ServiceAccountRef,
) -> ProjectObjects {
    let id = project_id(project);
    let ns = names::namespace(cfg.platform_mode, id);
    let labels = names::namespace_labels(id, &cfg.installation);
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.clone()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let mut runner_secrets = KubeSecret {
        metadata: meta(names::RUNNER_SECRETS),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            ambient_protocol::env::ANTHROPIC_API_KEY.to_owned(),
            String::new(),
        )])),
        ..KubeSecret::default()
    };
    runner_secrets.metadata.annotations = Some(BTreeMap::from([(
        "ambient-code.io/runner-secret".to_owned(),
        "true".to_owned(),
    )]));
    let manager_role = Role {
        metadata: meta(names::PROJECT_MANAGER),
        rules: Some(manager_rules()),
    };
    let manager_binding = RoleBinding {
        metadata: meta(names::PROJECT_MANAGER),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: names::PROJECT_MANAGER.into(),
        },
        subjects: Some(vec![Subject {
            api_group: None,
            kind: "ServiceAccount".into(),
            name: manager.name.clone(),
            namespace: Some(manager.namespace.clone()),
        }]),
    };
    let creator = created_by(project);
    let creator_binding = creator
        .as_deref()
        .map(|c| creator_binding(&ns, id, &cfg.installation, c));
    let mut settings_obj =
        DynamicObject::new(names::PROJECT_SETTINGS_NAME, &project_settings_resource())
            .data(json!({"spec": settings_spec(settings)}));
    settings_obj.metadata.namespace = Some(ns.clone());
    settings_obj.metadata.labels = Some(labels);
    ProjectObjects {
        project_id: id.to_owned(),
        namespace: (cfg.platform_mode == PlatformMode::Standard)
            .then(|| namespace_object(&ns, id, &cfg.installation)),
        tenant_namespace: (cfg.platform_mode == PlatformMode::Mpp)
            .then(|| tenant_namespace(cfg, id)),
        namespace_name: ns,
        runner_secrets,
        manager_role,
        manager_binding,
        creator_binding,
        settings: settings_obj,
    }
}

/// What the control plane does in a project namespace (the namespaced part
/// of `rbac.yaml`'s cluster rules): it holds all of it already, which is
/// what lets it create this Role (Kubernetes refuses a Role granting more
/// than its creator holds).
fn manager_rules() -> Vec<PolicyRule> {
    let rule = |group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    };
    vec![
        rule(
            "",
            "pods",
            &["create", "delete", "get", "list", "patch", "watch"],
        ),
        rule("", "secrets", &["create", "get", "patch"]),
        rule(
            "",
            "serviceaccounts",
            &["create", "delete", "get", "list", "patch"],
        ),
        rule("", "services", &["create", "patch"]),
        rule(
            "networking.k8s.io",
            "networkpolicies",
            &["create", "get", "patch"],
        ),
        rule(
            "rbac.authorization.k8s.io",
            "rolebindings",
            &["create", "delete", "list", "patch"],
        ),
    ]
}

/// The project's `ambient-code.io/created-by` annotation (trimmed; `None`
/// when absent, empty or the annotations are not a JSON object).
pub fn created_by(project: &Project) -> Option<String> {
    let raw = project.annotations.as_deref()?;
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else {
        return None;
    };
    map.get(names::ANNOTATION_CREATED_BY)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `ambient-admin-<subject>`: the subject lowercased, every character but
/// `[a-z0-9-]` a `-`, trimmed of `-`, at most 40 characters (the
/// reference's name, so its bindings are recognised).
pub fn creator_binding_name(subject: &str) -> String {
    let sanitized: String = subject
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut s = sanitized.trim_matches('-').to_owned();
    s.truncate(40);
    format!("ambient-admin-{}", s.trim_end_matches('-'))
}

/// The RoleBinding of `ambient-project-admin` to the creator `subject` in
/// namespace `ns`. `system:serviceaccount:<ns>:<name>` is that
/// ServiceAccount; any other `system:` name (anonymous, nodes, the
/// control plane's own kinds) is refused, as is a name that yields no
/// object name.
pub fn creator_binding(
    ns: &str,
    project_id: &str,
    installation: &str,
    subject: &str,
) -> Result<RoleBinding, String> {
    let subject = creator_subject(subject)?;
    let name = creator_binding_name(&match &subject.namespace {
        Some(sa_ns) => format!("system:serviceaccount:{sa_ns}:{}", subject.name),
        None => subject.name.clone(),
    });
    if !names::is_dns_label(&name) {
        return Err(format!("{subject:?} yields no valid binding name"));
    }
    let mut labels = names::namespace_labels(project_id, installation);
    labels.insert(names::LABEL_ROLE.into(), "admin".into());
    labels.insert(names::LABEL_CREATOR_ADMIN.into(), "true".into());
    Ok(RoleBinding {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns.into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: crate::runtime::Role::Admin.cluster_role().into(),
        },
        subjects: Some(vec![subject]),
    })
}

fn creator_subject(raw: &str) -> Result<Subject, String> {
    if let Some(rest) = raw.strip_prefix("system:serviceaccount:") {
        return match rest.split_once(':') {
            Some((ns, name)) if names::is_dns_label(ns) && names::is_dns_subdomain(name) => {
                Ok(Subject {
                    api_group: None,
                    kind: "ServiceAccount".into(),
                    name: name.into(),
                    namespace: Some(ns.into()),
                })
            }
            _ => Err(format!("{raw:?} is not a ServiceAccount name")),
        };
    }
    if raw.to_ascii_lowercase().starts_with("system:") {
        return Err(format!(
            "{raw:?} is a system identity: only users and ServiceAccounts are bound"
        ));
    }
    Ok(Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: raw.into(),
        namespace: None,
    })
}

/// The ProjectSettings spec of the API's `settings`: `groupAccess` from its
/// group access (roles as the CRD spells them), `repositories` from its
/// repositories (entries without a `url` skipped).
pub fn settings_spec(settings: Option<&ProjectSettings>) -> Value {
    let group_access: Vec<Value> = settings
        .map(|s| crate::reconcile::group_bindings(s.group_access.as_deref().unwrap_or("")))
        .unwrap_or_default()
        .iter()
        .map(|b| json!({"groupName": b.group, "role": b.role.as_str()}))
        .collect();
    let mut spec = json!({"groupAccess": group_access});
    let repos = settings
        .and_then(|s| s.repositories.as_deref())
        .and_then(|r| serde_json::from_str::<Value>(r).ok());
    if let Some(Value::Array(items)) = repos {
        let repos: Vec<Value> = items.iter().filter_map(repository).collect();
        spec["repositories"] = Value::Array(repos);
    }
    spec
}

/// One repository as the CRD takes it: `url`, optional `branch`, and
/// `provider` only when it is one the CRD knows.
fn repository(item: &Value) -> Option<Value> {
    let url = item.get("url")?.as_str().filter(|u| !u.is_empty())?;
    let mut out = json!({"url": url});
    if let Some(b) = item
        .get("branch")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
    {
        out["branch"] = json!(b);
    }
    if let Some(p) = item
        .get("provider")
        .and_then(Value::as_str)
        .filter(|p| matches!(*p, "github" | "gitlab"))
    {
        out["provider"] = json!(p);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creator_names_follow_the_reference() {
        assert_eq!(
            creator_binding_name("Alice@Example.com"),
            "ambient-admin-alice-example-com"
        );
        assert_eq!(
            creator_binding_name("system:serviceaccount:ci:robot"),
            "ambient-admin-system-serviceaccount-ci-robot"
        );
        let long = creator_binding_name(&"a".repeat(80));
        assert_eq!(long.len(), "ambient-admin-".len() + 40);
    }

    #[test]
    fn creator_subjects_and_refusals() {
        let rb = creator_binding("p", "p", "i", "alice").unwrap_or_else(|e| panic!("{e}"));
        let s = &rb.subjects.unwrap_or_default()[0];
        assert_eq!((s.kind.as_str(), s.name.as_str()), ("User", "alice"));
        assert_eq!(rb.role_ref.name, "ambient-project-admin");
        let rb = creator_binding("p", "p", "i", "system:serviceaccount:ci:robot")
            .unwrap_or_else(|e| panic!("{e}"));
        let s = &rb.subjects.unwrap_or_default()[0];
        assert_eq!(
            (s.kind.as_str(), s.namespace.as_deref(), s.name.as_str()),
            ("ServiceAccount", Some("ci"), "robot")
        );
        for refused in [
            "system:anonymous",
            "System:Masters",
            "system:serviceaccount:bad",
            "system:serviceaccount:Bad NS:x",
            "@@@",
        ] {
            assert!(
                creator_binding("p", "p", "i", refused).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn settings_spec_from_the_api() {
        let s = ProjectSettings {
            project_id: "p".into(),
            group_access: Some(r#"[{"groupName":"devs","role":"Edit"}]"#.into()),
            repositories: Some(
                r#"[{"url":"https://g/x","branch":"main","provider":"bitbucket"},{"branch":"x"}]"#
                    .into(),
            ),
            ..ProjectSettings::default()
        };
        assert_eq!(
            settings_spec(Some(&s)),
            json!({"groupAccess": [{"groupName": "devs", "role": "edit"}],
                   "repositories": [{"url": "https://g/x", "branch": "main"}]})
        );
        assert_eq!(settings_spec(None), json!({"groupAccess": []}));
    }

    #[test]
    fn created_by_reads_the_annotation() {
        let p = |a: &str| Project {
            annotations: Some(a.into()),
            ..Project::default()
        };
        assert_eq!(
            created_by(&p(r#"{"ambient-code.io/created-by":" alice "}"#)).as_deref(),
            Some("alice")
        );
        assert_eq!(created_by(&p("not json")), None);
        assert_eq!(created_by(&p(r#"{"ambient-code.io/created-by":""}"#)), None);
    }
}
