//! The startup permission check: every verb of `rbac.yaml` (the list of
//! the Kubernetes calls the code makes, embedded here) is asked of the API
//! server with a `SelfSubjectAccessReview` (authorization.k8s.io/v1). Each
//! one missing is one log line naming the verb, the resource and what
//! needs it (the rule's `needs`); `/readyz` stays false, and the check is
//! repeated until everything is granted, so granting fixes it without a
//! restart. Without it a missing verb showed only as a `403` retried
//! forever, and sessions never started.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde::Deserialize;

/// The rules the chart grants, next to the code.
const RBAC_YAML: &str = include_str!("../rbac.yaml");

/// How long between two checks while something is missing.
pub const RECHECK: Duration = Duration::from_secs(3);

/// One verb on one resource (and name) that the control plane needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    /// In the control plane's own namespace (`namespace:` rules), else
    /// across the cluster.
    pub own_namespace: bool,
    pub group: String,
    pub resource: String,
    pub name: Option<String>,
    pub verb: String,
    /// What stops working without it.
    pub needs: String,
}

#[derive(Deserialize)]
struct Rule {
    #[serde(rename = "apiGroups", default)]
    groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(rename = "resourceNames", default)]
    names: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    needs: String,
}

#[derive(Deserialize)]
struct RbacList {
    #[serde(default)]
    cluster: Vec<Rule>,
    #[serde(default)]
    namespace: Vec<Rule>,
}

/// Every permission of `rbac.yaml`, one per (group, resource, name, verb).
pub fn required() -> Vec<Permission> {
    let list: RbacList = serde_yaml_ng::from_str(RBAC_YAML)
        .unwrap_or_else(|e| panic!("rbac.yaml (embedded at build time) is invalid: {e}"));
    let mut out = Vec::new();
    for (own_namespace, rules) in [(false, &list.cluster), (true, &list.namespace)] {
        for r in rules {
            let names: Vec<Option<String>> = if r.names.is_empty() {
                vec![None]
            } else {
                r.names.iter().cloned().map(Some).collect()
            };
            for group in &r.groups {
                for resource in &r.resources {
                    for name in &names {
                        for verb in &r.verbs {
                            out.push(Permission {
                                own_namespace,
                                group: group.clone(),
                                resource: resource.clone(),
                                name: name.clone(),
                                verb: verb.clone(),
                                needs: r.needs.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

impl Permission {
    fn review(&self, namespace: &str) -> SelfSubjectAccessReview {
        SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: self.own_namespace.then(|| namespace.to_owned()),
                    verb: Some(self.verb.clone()),
                    group: Some(self.group.clone()),
                    resource: Some(self.resource.clone()),
                    name: self.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        }
    }

    /// The resource as `kubectl` spells it (`networkpolicies.networking.k8s.io`).
    pub fn resource_name(&self) -> String {
        let mut s = self.resource.clone();
        if !self.group.is_empty() {
            s = format!("{s}.{}", self.group);
        }
        if let Some(n) = &self.name {
            s = format!("{s}/{n}");
        }
        s
    }

    /// Which identity makes the call: the Lease is the control plane's
    /// own; everything else goes through the project client.
    fn by_own_identity(&self) -> bool {
        self.resource == "leases"
    }
}

/// The permissions of `wanted` the API server does not grant. `own` asks
/// for the Lease, `project` for everything else (the same client unless
/// `PROJECT_KUBE_TOKEN_FILE` names a second identity).
pub async fn missing(
    own: &kube::Client,
    project: &kube::Client,
    namespace: &str,
    wanted: &[Permission],
) -> Result<Vec<Permission>, kube::Error> {
    let mut out = Vec::new();
    for p in wanted {
        let client = if p.by_own_identity() { own } else { project };
        let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
        let answer = api
            .create(&PostParams::default(), &p.review(namespace))
            .await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Checks until every permission is granted, then sets `granted` and
/// returns. Each missing permission is logged once per change of what is
/// missing (not at every check).
pub async fn check_until_granted(
    own: kube::Client,
    project: kube::Client,
    namespace: String,
    granted: Arc<AtomicBool>,
) {
    let wanted = required();
    let mut reported: Option<Vec<Permission>> = None;
    let mut failing = false;
    loop {
        match missing(&own, &project, &namespace, &wanted).await {
            Ok(absent) if absent.is_empty() => {
                granted.store(true, Ordering::SeqCst);
                tracing::info!(
                    checked = wanted.len(),
                    "every Kubernetes permission of rbac.yaml is granted"
                );
                return;
            }
            Ok(absent) => {
                failing = false;
                if reported.as_ref() != Some(&absent) {
                    for p in &absent {
                        let scope = if p.own_namespace {
                            namespace.as_str()
                        } else {
                            "cluster"
                        };
                        tracing::error!(verb = %p.verb, resource = %p.resource_name(), scope = %scope,
                            needed_for = %p.needs,
                            "missing Kubernetes permission: not ready until it is granted");
                    }
                    reported = Some(absent);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot check the Kubernetes permissions (SelfSubjectAccessReview); retrying");
                }
                failing = true;
            }
        }
        tokio::time::sleep(RECHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_of_rbac_yaml_is_checked_and_says_what_needs_it() {
        let all = required();
        assert!(
            all.iter().all(|p| !p.needs.is_empty()),
            "a rule without `needs`"
        );
        let has = |verb: &str, resource: &str, own: bool| {
            all.iter()
                .any(|p| p.verb == verb && p.resource == resource && p.own_namespace == own)
        };
        assert!(has("delete", "namespaces", false));
        assert!(has("create", "leases", true));
        assert!(has("get", "networkpolicies", false));
        let keypair = all
            .iter()
            .find(|p| p.name.as_deref() == Some("ambient-cp-token-keypair") && p.verb == "update");
        assert_eq!(
            keypair.map(Permission::resource_name).as_deref(),
            Some("secrets/ambient-cp-token-keypair")
        );
    }
}
