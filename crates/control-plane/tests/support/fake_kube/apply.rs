//! PATCH: server-side apply and merge/strategic patches (merging and field
//! ownership in `ssa`), the status subresource's split (a main-resource
//! write never changes `status`, a `/status` write changes nothing else),
//! and the immutable Pod spec.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::addressing::{Target, status};
use super::{FakeKube, ObjKey, admission, ssa};

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

/// The part of an object a write may change: `status` for the status
/// subresource, everything else for the main resource. `next` gets the
/// other part from `current`.
pub(super) fn keep_other_part(current: Option<&Value>, next: &mut Value, status_only: bool) {
    let current_status = current.and_then(|c| c.get("status")).cloned();
    if status_only {
        let status = next.get("status").cloned();
        if let Some(c) = current {
            *next = c.clone();
        }
        match status {
            Some(st) => next["status"] = st,
            None => {
                if let Some(m) = next.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        return;
    }
    match current_status {
        Some(st) => next["status"] = st,
        None => {
            if let Some(m) = next.as_object_mut() {
                m.remove("status");
            }
        }
    }
}

/// The manager of a write: `fieldManager`, as the API server requires for
/// apply (kube-rs always sends one) and defaults for updates.
pub(super) fn manager_of(q: &HashMap<String, String>, headers: &HeaderMap) -> String {
    q.get("fieldManager").cloned().unwrap_or_else(|| {
        headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .unwrap_or("unknown")
            .to_owned()
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
    let apply = content_type.starts_with("application/apply-patch");
    let keyed = apply || content_type.starts_with("application/strategic-merge-patch");
    if !apply && !keyed && !content_type.starts_with("application/merge-patch") {
        return status(
            415,
            "UnsupportedMediaType",
            &format!("the fake does not take {content_type:?} patches"),
        );
    }
    if apply && !q.contains_key("fieldManager") {
        return status(
            400,
            "BadRequest",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        );
    }
    let manager = manager_of(q, headers);
    let force = q.get("force").is_some_and(|f| f == "true");
    let status_only = t.subresource.as_deref() == Some("status");
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
    if !existed && (!apply || status_only) {
        drop(s);
        return status(404, "NotFound", &format!("{} {name:?} not found", t.plural));
    }
    // A resourceVersion in the patch is a precondition, as on a real server.
    if let (Some(want), Some(obj)) = (patch.pointer("/metadata/resourceVersion"), &existing)
        && Some(want) != obj.pointer("/metadata/resourceVersion")
    {
        drop(s);
        return status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                t.plural
            ),
        );
    }
    let mut owners = s.owners.get(&key).cloned().unwrap_or_default();
    let mut merged = if apply && !status_only {
        match ssa::apply(
            &t.plural,
            existing.as_ref(),
            &patch,
            &manager,
            force,
            &mut owners,
        ) {
            Ok(obj) => obj,
            Err(conflicts) => {
                drop(s);
                let list: Vec<String> = conflicts
                    .iter()
                    .map(|c| format!("conflict with {:?}: {}", c.manager, c.field))
                    .collect();
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Apply failed with {} conflict(s): {}",
                        list.len(),
                        list.join("; ")
                    ),
                );
            }
        }
    } else {
        let mut next = existing.clone().unwrap_or_default();
        ssa::merge(&t.plural, &mut next, &patch, keyed, !apply);
        next
    };
    keep_other_part(existing.as_ref(), &mut merged, status_only);
    if let Some(refused) = immutable_pod_spec(&key, existing.as_ref(), &merged) {
        drop(s);
        return refused;
    }
    if let Some(refused) = admission::admit(&mut s, &key, existing.as_ref(), &mut merged) {
        drop(s);
        return refused;
    }
    if !apply || status_only {
        ssa::record_update(&t.plural, existing.as_ref(), &merged, &manager, &mut owners);
    }
    let obj = fake.stamp(&mut s, merged, &key, existed);
    s.objects.insert(key.clone(), obj.clone());
    s.owners.insert(key, owners);
    drop(s);
    fake.emit(
        &t.plural,
        if existed { "MODIFIED" } else { "ADDED" },
        obj.clone(),
    );
    fake.delete_when_finalized(&(t.plural.clone(), ns.to_owned(), name.to_owned()));
    let code = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (code, axum::Json(obj)).into_response()
}
