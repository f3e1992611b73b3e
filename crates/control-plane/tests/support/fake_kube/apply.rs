//! Writes that merge: server-side apply (field owners, conflicts without
//! `force`) and merge/strategic patches, and the immutable Pod spec.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::addressing::{Target, status};
use super::{FakeKube, ObjKey};

pub(super) fn deep_merge(target: &mut Value, patch: &Value, delete_nulls: bool) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() && delete_nulls {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k) {
                    deep_merge(existing, v, delete_nulls);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

pub(super) fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                leaves(&format!("{prefix}/{k}"), child, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

pub(super) fn owned_leaves(patch: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(m) = patch.as_object() {
        for (k, v) in m {
            if matches!(k.as_str(), "apiVersion" | "kind" | "status") {
                continue;
            }
            if k == "metadata" {
                for sub in ["labels", "annotations"] {
                    if let Some(x) = v.get(sub) {
                        leaves(&format!("/metadata/{sub}"), x, &mut out);
                    }
                }
                continue;
            }
            leaves(&format!("/{k}"), v, &mut out);
        }
    }
    out
}

pub(super) fn immutable_pod_spec(
    key: &ObjKey,
    current: Option<&Value>,
    next: &Value,
) -> Option<Response> {
    let current = current?;
    (key.0 == "pods" && current.get("spec") != next.get("spec")).then(|| {
        status(
            422,
            "Invalid",
            &format!("Pod {:?} is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, ...", key.2),
        )
    })
}

pub(super) fn patch(
    fake: &FakeKube,
    t: &Target,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "body is not JSON");
    };
    let manager = q
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let force = q.get("force").is_some_and(|f| f == "true");
    let apply = content_type.starts_with("application/apply-patch");
    let key: ObjKey = (t.plural.clone(), ns.to_owned(), name.to_owned());
    if apply
        && fake.get(&key.0, &key.1, &key.2).is_none()
        && let Some(refused) = fake.refuse_in(ns)
    {
        return refused;
    }
    let mut s = fake.lock();
    let existing = s.objects.get(&key).cloned();
    let existed = existing.is_some();
    let leaves = owned_leaves(&patch);
    if apply
        && !force
        && let Some(current) = &existing
    {
        let owners = s.owners.get(&key).cloned().unwrap_or_default();
        for (path, value) in &leaves {
            if let Some(owner) = owners.get(path)
                && owner != &manager
                && current.pointer(path) != Some(value)
            {
                drop(s);
                return status(
                    409,
                    "Conflict",
                    &format!("Apply failed with 1 conflict: conflict with {owner:?}: {path}"),
                );
            }
        }
    }
    let merged = match existing.clone() {
        Some(mut current) => {
            deep_merge(&mut current, &patch, !apply);
            current
        }
        None if apply => patch.clone(),
        None => {
            drop(s);
            return status(404, "NotFound", "not found");
        }
    };
    if let Some(refused) = immutable_pod_spec(&key, existing.as_ref(), &merged) {
        drop(s);
        return refused;
    }
    let obj = fake.stamp(&mut s, merged, &key, existed);
    s.objects.insert(key.clone(), obj.clone());
    let owners = s.owners.entry(key).or_default();
    for (path, _) in leaves {
        owners.insert(path, manager.clone());
    }
    drop(s);
    fake.emit(
        &t.plural,
        if existed { "MODIFIED" } else { "ADDED" },
        obj.clone(),
    );
    axum::Json(obj).into_response()
}
