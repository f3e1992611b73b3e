//! How a request names what it acts on: the resource path (group,
//! version, namespace, plural, name), the query, label and field
//! selectors, and the Kubernetes `Status` error body.

use std::collections::HashMap;

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(super) fn kind_of(plural: &str) -> (&'static str, &'static str) {
    match plural {
        "pods" => ("Pod", "v1"),
        "services" => ("Service", "v1"),
        "serviceaccounts" => ("ServiceAccount", "v1"),
        "secrets" => ("Secret", "v1"),
        "namespaces" => ("Namespace", "v1"),
        "configmaps" => ("ConfigMap", "v1"),
        "networkpolicies" => ("NetworkPolicy", "networking.k8s.io/v1"),
        "rolebindings" => ("RoleBinding", "rbac.authorization.k8s.io/v1"),
        "leases" => ("Lease", "coordination.k8s.io/v1"),
        "tenantnamespaces" => ("TenantNamespace", "tenant.paas.redhat.com/v1alpha1"),
        "roles" => ("Role", "rbac.authorization.k8s.io/v1"),
        "projectsettings" => ("ProjectSettings", "vteam.ambient-code/v1alpha1"),
        "selfsubjectaccessreviews" => ("SelfSubjectAccessReview", "authorization.k8s.io/v1"),
        _ => ("Unknown", "v1"),
    }
}

pub(super) fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

pub(super) fn reason_for(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// Parsed request path.
pub(super) struct Target {
    /// The API group ("" for the core group).
    pub(super) group: String,
    pub(super) plural: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    /// `status` for `.../<name>/status` (the status subresource).
    pub(super) subresource: Option<String>,
}

pub(super) fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest): (&str, &[&str]) = match *segs.first()? {
        "api" => ("", segs.get(2..)?),
        "apis" => (segs.get(1)?, segs.get(3..)?),
        _ => return None,
    };
    let group = group.to_owned();
    match rest {
        [plural] => Some(Target {
            group: group.clone(),
            plural: (*plural).into(),
            namespace: None,
            name: None,
            subresource: None,
        }),
        ["namespaces", name] => Some(Target {
            group: group.clone(),
            plural: "namespaces".into(),
            namespace: None,
            name: Some((*name).into()),
            subresource: None,
        }),
        [plural, name] => Some(Target {
            group: group.clone(),
            plural: (*plural).into(),
            namespace: None,
            name: Some((*name).into()),
            subresource: None,
        }),
        ["namespaces", name, "status"] => Some(Target {
            group: group.clone(),
            plural: "namespaces".into(),
            namespace: None,
            name: Some((*name).into()),
            subresource: Some("status".into()),
        }),
        ["namespaces", ns, plural] => Some(Target {
            group: group.clone(),
            plural: (*plural).into(),
            namespace: Some((*ns).into()),
            name: None,
            subresource: None,
        }),
        ["namespaces", ns, plural, name] => Some(Target {
            group: group.clone(),
            plural: (*plural).into(),
            namespace: Some((*ns).into()),
            name: Some((*name).into()),
            subresource: None,
        }),
        ["namespaces", ns, plural, name, "status"] => Some(Target {
            group: group.clone(),
            plural: (*plural).into(),
            namespace: Some((*ns).into()),
            name: Some((*name).into()),
            subresource: Some("status".into()),
        }),
        [plural, name, "status"] if *plural != "namespaces" => Some(Target {
            group: group.clone(),
            plural: (*plural).into(),
            namespace: None,
            name: Some((*name).into()),
            subresource: Some("status".into()),
        }),
        _ => None,
    }
}

pub(super) fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `obj` matches a field selector (see `lists`; an invalid one
/// matches nothing).
pub fn matches_fields(obj: &Value, selector: &str) -> bool {
    super::lists::FieldSelector::parse(selector).is_ok_and(|f| f.matches(obj))
}

/// Whether `obj` matches a label selector (see `lists`; an invalid one
/// matches nothing).
pub fn matches_selector(obj: &Value, selector: &str) -> bool {
    super::lists::LabelSelector::parse(selector).is_ok_and(|l| l.matches(obj))
}
