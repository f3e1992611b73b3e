//! Group access to a project namespace (wire.md §4): one RoleBinding per
//! `group_access` entry, binding ClusterRole `ambient-project-<role>`;
//! bindings of removed entries are pruned (ours). Only in a namespace of
//! ours (`ownership`): a reserved or adopted one is refused.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};

use super::{KubeRuntime, classify, delete_if_present, is_not_found};
use crate::names;
use crate::runtime::{GroupBinding, RuntimeError};

/// Marks the RoleBindings of group access (pruned when no longer wanted).
pub const LABEL_GROUP_ACCESS: &str = "ambient-code.io/group-access";

/// `<groupName>-<role>` as the reference names it, when that is a valid
/// object name; otherwise the group made a DNS label.
pub fn role_binding_name(b: &GroupBinding) -> String {
    let plain = format!("{}-{}", b.group, b.role.as_str());
    if names::is_dns_subdomain(&plain) {
        return plain;
    }
    let mut group = names::dns_label(&b.group);
    group.truncate(63 - b.role.as_str().len() - 1);
    format!("{}-{}", group.trim_end_matches('-'), b.role.as_str())
}

/// The RoleBinding giving `b.group` its role in namespace `ns`.
pub fn group_role_binding(
    ns: &str,
    project_id: &str,
    installation: &str,
    b: &GroupBinding,
) -> RoleBinding {
    let mut labels = names::namespace_labels(project_id, installation);
    labels.insert(LABEL_GROUP_ACCESS.into(), "true".into());
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(role_binding_name(b)),
            namespace: Some(ns.into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: b.role.cluster_role().into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: b.group.clone(),
            namespace: None,
        }]),
    }
}

impl KubeRuntime {
    /// Makes the project's group RoleBindings exactly `bindings`.
    pub(super) async fn sync_access(
        &self,
        project_id: &str,
        bindings: &[GroupBinding],
    ) -> Result<(), RuntimeError> {
        let ns = names::namespace(self.mode, project_id);
        let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &ns);
        // Only ever in a namespace of ours (never adopted, never reserved);
        // one that is not ours has no binding of ours to prune.
        if !bindings.is_empty() {
            self.ensure_project_namespace(project_id).await?;
        } else if !self.project_namespace_is_ours(project_id).await? {
            return Ok(());
        }
        let mut wanted = BTreeSet::new();
        for b in bindings {
            let rb = group_role_binding(&ns, project_id, &self.installation, b);
            self.apply(&api, &rb).await?;
            wanted.insert(rb.name_any());
        }
        let selector = format!(
            "{},{LABEL_GROUP_ACCESS}=true",
            names::managed_selector(&self.installation)
        );
        let existing = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l.items,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(classify(e)),
        };
        for rb in existing {
            let name = rb.name_any();
            if !wanted.contains(&name) {
                delete_if_present(&api, &name, &DeleteParams::default()).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Role;

    #[test]
    fn binding_names_and_cluster_roles_follow_the_wire() {
        let b = |group: &str, role| GroupBinding {
            group: group.into(),
            role,
        };
        assert_eq!(role_binding_name(&b("devs", Role::Edit)), "devs-edit");
        assert_eq!(
            role_binding_name(&b("Team A/Admins", Role::Admin)),
            "team-a-admins-admin"
        );
        let long = "g".repeat(80);
        assert!(names::is_dns_label(&role_binding_name(&b(
            &long,
            Role::View
        ))));
        let rb = group_role_binding("ns", "p", "inst", &b("ops", Role::Admin));
        assert_eq!(rb.role_ref.name, "ambient-project-admin");
        assert_eq!(rb.role_ref.kind, "ClusterRole");
        assert_eq!(
            rb.subjects.as_deref().map(|s| s[0].name.as_str()),
            Some("ops")
        );
        assert_eq!(
            group_role_binding("ns", "p", "inst", &b("x", Role::View))
                .role_ref
                .name,
            "ambient-project-view"
        );
    }
}
