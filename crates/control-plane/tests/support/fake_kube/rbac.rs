//! The fake authorises every request against `crates/control-plane/rbac.yaml`
//! (the rules the chart grants, nothing more), as the real API server
//! would with the chart installed: the `cluster` rules everywhere, the
//! `namespace` rules in the control plane's namespace only. A request they
//! do not allow is answered 403 Forbidden and recorded, so a code path that
//! needs a call the list lacks (a cluster-wide `list secrets`, say) fails
//! its test.
//!
//! As Kubernetes does: `resourceNames` never allow `create`, and allow
//! `list`/`watch` only with a `metadata.name=<name>` field selector;
//! server-side apply of an object that does not exist needs `create` too;
//! a subresource is the resource `<plural>/<subresource>` (`pods/status`);
//! writing a RoleBinding that grants a ClusterRole needs `bind` on that
//! ClusterRole (the escalation check; the control plane never holds every
//! right of the roles it grants).
//!
//! Every allowed (group, resource, verb) is recorded
//! (`integration_tests::record_kube_access`): `cargo xtask test` compares
//! what the whole suite used with rbac.yaml, both ways.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::response::Response;
use serde_json::Value;

use super::addressing::{Target, status};
use super::{FakeKube, Request};

/// The control plane's namespace in every test (its kubeconfig default).
pub const CONTROL_PLANE_NAMESPACE: &str = "ambient-code";

/// One rule of rbac.yaml.
#[derive(Debug, Clone)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    verbs: Vec<String>,
}

/// What a request asks to do.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verb: &'a str,
    pub group: &'a str,
    pub plural: &'a str,
    /// "" at the cluster scope.
    pub namespace: &'a str,
    /// The object's name ("" for list/watch/create without one).
    pub name: &'a str,
    /// `metadata.name` of a list/watch's field selector, if any.
    pub field_name: Option<&'a str>,
}

impl Access<'_> {
    /// As the API server words a refusal.
    pub fn describe(&self) -> String {
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        format!(
            "{} {:?} is forbidden: User \"system:serviceaccount:{CONTROL_PLANE_NAMESPACE}:ambient-control-plane\" cannot {} resource {:?} in API group {:?} {scope}",
            self.plural, self.name, self.verb, self.plural, self.group
        )
    }
}

/// The rules of rbac.yaml, by scope.
#[derive(Debug, Clone)]
pub struct Rbac {
    cluster: Vec<Rule>,
    namespace: Vec<Rule>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn rules(doc: &Value, scope: &str) -> Vec<Rule> {
    doc.get(scope)
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| Rule {
                    groups: strings(r, "apiGroups"),
                    resources: strings(r, "resources"),
                    names: strings(r, "resourceNames"),
                    verbs: strings(r, "verbs"),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Rbac {
    /// The control plane's rbac.yaml.
    pub fn of_the_control_plane() -> Rbac {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        Rbac {
            cluster: rules(&doc, "cluster"),
            namespace: rules(&doc, "namespace"),
        }
    }

    /// True when some rule allows `a`.
    pub fn allows(&self, a: &Access<'_>) -> bool {
        let in_own = a.namespace == CONTROL_PLANE_NAMESPACE;
        self.cluster
            .iter()
            .chain(self.namespace.iter().filter(|_| in_own))
            .any(|r| rule_allows(r, a))
    }
}

impl Rbac {
    /// These rules without `verb` on `resource` of `group` (in every rule
    /// and scope): a cluster where that was not granted.
    pub fn without(mut self, verb: &str, group: &str, resource: &str) -> Rbac {
        for r in self.cluster.iter_mut().chain(self.namespace.iter_mut()) {
            if r.groups.iter().any(|g| g == group) && r.resources.iter().any(|x| x == resource) {
                r.verbs.retain(|v| v != verb);
            }
        }
        self
    }

    /// The answer to a SelfSubjectAccessReview (`body`), as the API server
    /// gives it: the review with `status.allowed` from these rules.
    pub fn review(&self, body: &Value) -> Value {
        let attrs = body.pointer("/spec/resourceAttributes");
        let field = |k: &str| {
            attrs
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let (verb, name) = (field("verb"), field("name"));
        let allowed = attrs.is_some()
            && self.allows(&Access {
                verb,
                group: field("group"),
                plural: field("resource"),
                namespace: field("namespace"),
                name,
                // A review of a list by name stands for the list with that
                // name's field selector.
                field_name: (matches!(verb, "list" | "watch") && !name.is_empty()).then_some(name),
            });
        let mut answer = body.clone();
        answer["status"] = serde_json::json!({"allowed": allowed});
        answer
    }
}

fn rule_allows(r: &Rule, a: &Access<'_>) -> bool {
    let has = |list: &[String], v: &str| list.iter().any(|x| x == v || x == "*");
    if !has(&r.groups, a.group) || !has(&r.resources, a.plural) || !has(&r.verbs, a.verb) {
        return false;
    }
    if r.names.is_empty() {
        return true;
    }
    match a.verb {
        "create" => false,
        "list" | "watch" => a.field_name.is_some_and(|n| has(&r.names, n)),
        _ => has(&r.names, a.name),
    }
}

/// `metadata.name` of a field selector (`metadata.name=x` or `==`).
pub fn field_name(selector: &str) -> Option<&str> {
    selector.split(',').find_map(|term| {
        term.strip_prefix("metadata.name==")
            .or_else(|| term.strip_prefix("metadata.name="))
    })
}

/// The ClusterRole a RoleBinding body grants, if it grants one.
fn granted_cluster_role(t: &Target, verb: &str, body: &Bytes) -> Option<String> {
    if t.plural != "rolebindings" || !matches!(verb, "POST" | "PUT" | "APPLY" | "PATCH") {
        return None;
    }
    let obj: Value = serde_json::from_slice(body).ok()?;
    (obj.pointer("/roleRef/kind")? == "ClusterRole")
        .then(|| obj.pointer("/roleRef/name")?.as_str().map(str::to_owned))
        .flatten()
}

impl FakeKube {
    /// 403 Forbidden (recorded) when rbac.yaml does not allow the request.
    pub(super) fn authorize(
        &self,
        verb: &str,
        t: &Target,
        ns: &str,
        q: &HashMap<String, String>,
        body: &Bytes,
    ) -> Option<Response> {
        let name = t.name.clone().unwrap_or_default();
        let field = q.get("fieldSelector").map(String::as_str).unwrap_or("");
        // RBAC names a subresource as `<resource>/<subresource>`.
        let resource = match &t.subresource {
            Some(sub) => format!("{}/{sub}", t.plural),
            None => t.plural.clone(),
        };
        let rbac_verb = match verb {
            "LIST" => "list",
            "WATCH" => "watch",
            "GET" => "get",
            "POST" => "create",
            "PUT" => "update",
            "APPLY" | "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "unknown",
        };
        let mut wanted = vec![Access {
            verb: rbac_verb,
            group: &t.group,
            plural: &resource,
            namespace: ns,
            name: &name,
            field_name: field_name(field),
        }];
        // Server-side apply creating the object is a create as well.
        if verb == "APPLY" && self.get(&t.plural, ns, &name).is_none() {
            wanted.push(Access {
                verb: "create",
                ..wanted[0].clone()
            });
        }
        let role = granted_cluster_role(t, verb, body);
        if let Some(role) = &role {
            wanted.push(Access {
                verb: "bind",
                group: "rbac.authorization.k8s.io",
                plural: "clusterroles",
                namespace: ns,
                name: role,
                field_name: None,
            });
        }
        let rbac = self.lock().rbac.clone();
        let Some(refused) = wanted.iter().find(|a| !rbac.allows(a)) else {
            let mut s = self.lock();
            for a in &wanted {
                let used = (a.group.to_owned(), a.plural.to_owned(), a.verb.to_owned());
                if s.used.insert(used) && s.records_access {
                    integration_tests::record_kube_access(&format!(
                        "{} {} {}",
                        if a.group.is_empty() { "core" } else { a.group },
                        a.plural,
                        a.verb
                    ));
                }
            }
            return None;
        };
        let refused = refused.describe();
        let mut s = self.lock();
        s.denied.push(refused.clone());
        s.requests.push(Request {
            method: verb.to_owned(),
            plural: t.plural.clone(),
            namespace: ns.to_owned(),
            name,
            existed: false,
            status: 403,
        });
        drop(s);
        Some(status(403, "Forbidden", &refused))
    }
}
