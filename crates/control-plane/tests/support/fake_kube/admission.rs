//! Admission, as the API server runs it on every create and update through
//! the API (objects a test `put`s directly skip it):
//!
//! - **validation** (422 `Invalid`, worded like the API server): object
//!   names (RFC 1123 labels for namespaces and services, subdomains
//!   otherwise), label keys and values;
//! - **defaults** the control plane may read back: a pod's `restartPolicy`,
//!   `dnsPolicy`, `terminationGracePeriodSeconds`, `schedulerName`, its
//!   containers' `imagePullPolicy` and termination message fields, and
//!   `status.phase: Pending` on create; a Service's `type`,
//!   `sessionAffinity`, port `protocol` and `targetPort`; a Secret's `type`;
//!   a namespace's `kubernetes.io/metadata.name` label;
//! - **PodSecurity** `restricted` (the cluster default here; a namespace's
//!   `pod-security.kubernetes.io/enforce` label overrides it): a pod that
//!   violates it is 403 `Forbidden` "violates PodSecurity";
//! - **injected denials** ([`FakeKube::deny_next`]): a webhook's 403 for the
//!   next writes of a kind, as the API server words one.
//!
//! Not modelled: the rest of the validation of each kind's schema, quota,
//! LimitRanges, the `baseline` level's own rules (checked as `restricted`
//! minus the user and seccomp rules), mutating webhooks.

use std::collections::VecDeque;

use axum::response::Response;
use serde_json::{Value, json};

use super::addressing::status;
use super::{FakeKube, ObjKey, StoreState};

/// A webhook's denial for the next writes of a kind.
#[derive(Debug, Clone)]
pub struct Denial {
    pub webhook: String,
    pub message: String,
}

impl FakeKube {
    /// The next `count` creates or updates of `plural` objects are denied by
    /// an admission webhook named `webhook`, with `message` as its reason.
    pub fn deny_next(&self, plural: &str, count: usize, webhook: &str, message: &str) {
        let mut s = self.lock();
        let queue = s.denials.entry(plural.to_owned()).or_default();
        for _ in 0..count {
            queue.push_back(Denial {
                webhook: webhook.to_owned(),
                message: message.to_owned(),
            });
        }
    }
}

fn is_label_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|part| is_label_name(part, 63))
}

/// A label value or a key's name part: 63 at most, alphanumerics with
/// `-`, `_`, `.` inside.
fn is_qualified_part(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn invalid(kind: &str, name: &str, field: &str, value: &str, why: &str) -> Response {
    status(
        422,
        "Invalid",
        &format!("{kind} {name:?} is invalid: {field}: Invalid value: {value:?}: {why}"),
    )
}

/// 422 for a name or label the API server refuses.
fn validate(key: &ObjKey, obj: &Value) -> Option<Response> {
    let (kind, _) = super::addressing::kind_of(&key.0);
    let name = &key.2;
    let label_named = matches!(key.0.as_str(), "namespaces" | "services");
    let name_ok = if label_named {
        is_label_name(name, 63)
    } else if key.0 == "rolebindings" || key.0 == "clusterroles" {
        !name.is_empty() && !name.contains('/') && name != "." && name != ".."
    } else {
        is_subdomain(name) && !name.is_empty()
    };
    if !name_ok {
        let why = if label_named {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        };
        return Some(invalid(kind, name, "metadata.name", name, why));
    }
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    for (k, v) in labels.into_iter().flatten() {
        let (prefix, part) = k
            .rsplit_once('/')
            .map_or((None, k.as_str()), |(p, n)| (Some(p), n));
        if prefix.is_some_and(|p| !is_subdomain(p)) || !is_qualified_part(part, false) {
            return Some(invalid(
                kind,
                name,
                "metadata.labels",
                k,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
        let value = v.as_str().unwrap_or("\u{0}");
        if !is_qualified_part(value, true) {
            return Some(invalid(
                kind,
                name,
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
    }
    None
}

fn default_field(obj: &mut Value, field: &str, value: Value) {
    if obj.get(field).is_none_or(Value::is_null)
        && let Some(m) = obj.as_object_mut()
    {
        m.insert(field.to_owned(), value);
    }
}

/// The defaults the API server fills in (only where absent).
fn fill_defaults(key: &ObjKey, obj: &mut Value, creating: bool) {
    match key.0.as_str() {
        "pods" => {
            let spec = &mut obj["spec"];
            default_field(spec, "restartPolicy", json!("Always"));
            default_field(spec, "dnsPolicy", json!("ClusterFirst"));
            default_field(spec, "terminationGracePeriodSeconds", json!(30));
            default_field(spec, "schedulerName", json!("default-scheduler"));
            default_field(spec, "securityContext", json!({}));
            for list in ["initContainers", "containers"] {
                for c in spec[list].as_array_mut().into_iter().flatten() {
                    let image = c["image"].as_str().unwrap_or("").to_owned();
                    let tag = image.rsplit('/').next().unwrap_or("");
                    let latest =
                        !tag.contains(':') && !image.contains('@') || tag.ends_with(":latest");
                    let policy = if latest { "Always" } else { "IfNotPresent" };
                    default_field(c, "imagePullPolicy", json!(policy));
                    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
                    default_field(c, "terminationMessagePolicy", json!("File"));
                }
            }
            if creating {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        "services" => {
            let spec = &mut obj["spec"];
            default_field(spec, "type", json!("ClusterIP"));
            default_field(spec, "sessionAffinity", json!("None"));
            for p in spec["ports"].as_array_mut().into_iter().flatten() {
                default_field(p, "protocol", json!("TCP"));
                let port = p["port"].clone();
                default_field(p, "targetPort", port);
            }
        }
        "secrets" => default_field(obj, "type", json!("Opaque")),
        "namespaces" => {
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(key.2);
            if creating {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        _ => {}
    }
}

/// What `restricted` finds wrong with a pod (empty: it passes).
pub fn restricted_violations(pod: &Value) -> Vec<String> {
    let spec = &pod["spec"];
    let mut out = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[host] == json!(true) {
            out.push(format!("host namespaces ({host}=true)"));
        }
    }
    let pod_sc = &spec["securityContext"];
    for v in spec["volumes"].as_array().into_iter().flatten() {
        if v.get("hostPath").is_some() {
            out.push(format!("hostPath volumes (volume {:?})", v["name"]));
        }
    }
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|l| spec[l].as_array().cloned().unwrap_or_default());
    for c in containers {
        let name = c["name"].as_str().unwrap_or("").to_owned();
        let sc = &c["securityContext"];
        if sc["privileged"] == json!(true) {
            out.push(format!(
                "privileged (container {name:?} must not set securityContext.privileged=true)"
            ));
        }
        if sc["allowPrivilegeEscalation"] != json!(false) {
            out.push(format!("allowPrivilegeEscalation != false (container {name:?} must set securityContext.allowPrivilegeEscalation=false)"));
        }
        let drops = sc.pointer("/capabilities/drop").and_then(Value::as_array);
        if !drops.is_some_and(|d| d.iter().any(|x| x == "ALL")) {
            out.push(format!("unrestricted capabilities (container {name:?} must set securityContext.capabilities.drop=[\"ALL\"])"));
        }
        let adds = sc.pointer("/capabilities/add").and_then(Value::as_array);
        if adds.is_some_and(|a| a.iter().any(|x| x != "NET_BIND_SERVICE")) {
            out.push(format!("unrestricted capabilities (container {name:?} must not add capabilities beyond NET_BIND_SERVICE)"));
        }
        let non_root = sc
            .get("runAsNonRoot")
            .or_else(|| pod_sc.get("runAsNonRoot"));
        if non_root != Some(&json!(true)) {
            out.push(format!("runAsNonRoot != true (container {name:?} or the pod must set securityContext.runAsNonRoot=true)"));
        }
        if sc.get("runAsUser").or_else(|| pod_sc.get("runAsUser")) == Some(&json!(0)) {
            out.push(format!("runAsUser=0 (container {name:?})"));
        }
        let seccomp = sc
            .pointer("/seccompProfile/type")
            .or_else(|| pod_sc.pointer("/seccompProfile/type"));
        if !seccomp.is_some_and(|t| t == "RuntimeDefault" || t == "Localhost") {
            out.push(format!("seccompProfile (container {name:?} or the pod must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"));
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if p.get("hostPort")
                .and_then(Value::as_u64)
                .is_some_and(|h| h != 0)
            {
                out.push(format!("hostPort (container {name:?})"));
            }
        }
    }
    out
}

/// Runs admission on a create (`current` None) or an update of `key` to
/// `obj` (defaults filled in place). `Some` is the refusal.
pub(super) fn admit(
    s: &mut StoreState,
    key: &ObjKey,
    current: Option<&Value>,
    obj: &mut Value,
) -> Option<Response> {
    if let Some(d) = s.denials.get_mut(&key.0).and_then(VecDeque::pop_front) {
        return Some(status(
            403,
            "Forbidden",
            &format!(
                "admission webhook {:?} denied the request: {}",
                d.webhook, d.message
            ),
        ));
    }
    if let Some(refused) = validate(key, obj) {
        return Some(refused);
    }
    fill_defaults(key, obj, current.is_none());
    if key.0 == "pods" && current.is_none() {
        let level = s
            .objects
            .get(&("namespaces".to_owned(), String::new(), key.1.clone()))
            .and_then(|n| {
                n.pointer("/metadata/labels/pod-security.kubernetes.io~1enforce")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| s.pod_security_default.clone());
        if level != "privileged" {
            let mut violations = restricted_violations(obj);
            if level == "baseline" {
                violations.retain(|v| {
                    v.starts_with("host")
                        || v.starts_with("privileged")
                        || v.starts_with("hostPort")
                });
            }
            if !violations.is_empty() {
                return Some(status(
                    403,
                    "Forbidden",
                    &format!(
                        "pods {:?} is forbidden: violates PodSecurity \"{level}:latest\": {}",
                        key.2,
                        violations.join(", ")
                    ),
                ));
            }
        }
    }
    None
}
