//! The fake's routes: one handler that authorises a request (rbac.yaml),
//! applies injected faults, then serves GET, LIST, WATCH, POST, PUT, PATCH
//! (apply or merge) and DELETE, recording each request once (here, with
//! its answer's status; a refused or faulted one where it is refused).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::addressing::{Target, parse_path, query, reason_for, status};
use super::apply::{immutable_pod_spec, keep_other_part, manager_of, patch};
use super::{FakeKube, HANG, Request, admission, deletion, lists, ssa, watch};

pub(super) async fn handle(
    State(fake): State<FakeKube>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(t) = parse_path(uri.path()) else {
        return status(
            404,
            "NotFound",
            &format!("the fake has no route {}", uri.path()),
        );
    };
    let q = query(&uri);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    fake.lock().bearers.push((t.plural.clone(), bearer));
    let ns = t.namespace.clone().unwrap_or_default();
    let verb = match (&method, &t.name) {
        (&Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => "WATCH",
        (&Method::GET, None) => "LIST",
        (&Method::GET, Some(_)) => "GET",
        (&Method::PATCH, _)
            if headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/apply-patch")) =>
        {
            "APPLY"
        }
        (m, _) => m.as_str(),
    };
    if let Some(refused) = fake.authorize(verb, &t, &ns, &q, &body) {
        return refused;
    }
    if let Some(code) = fake.take_verb_fault(verb, &t.plural) {
        fake.record(Request {
            method: verb.to_owned(),
            plural: t.plural.clone(),
            namespace: ns.clone(),
            name: t.name.clone().unwrap_or_default(),
            existed: false,
            status: code,
        });
        if code == HANG {
            std::future::pending::<()>().await;
        }
        return status(code, reason_for(code), "injected failure");
    }
    if let Some(name) = &t.name
        && let Some(code) = fake
            .take_fault(&t.plural, name)
            .or_else(|| fake.take_fault(&t.plural, &format!("ns:{ns}")))
    {
        fake.record(Request {
            method: method.to_string(),
            plural: t.plural.clone(),
            namespace: ns.clone(),
            name: name.clone(),
            existed: false,
            status: code,
        });
        return status(code, reason_for(code), "injected failure");
    }
    if t.plural == "selfsubjectaccessreviews" && method == Method::POST {
        let review = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
        let rbac = fake.lock().rbac.clone();
        fake.record(Request {
            method: verb.to_owned(),
            plural: t.plural.clone(),
            namespace: ns,
            name: String::new(),
            existed: false,
            status: 201,
        });
        return (StatusCode::CREATED, axum::Json(rbac.review(&review))).into_response();
    }
    let name = match &t.name {
        Some(n) => n.clone(),
        None if method == Method::POST => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|o| o.pointer("/metadata/name")?.as_str().map(str::to_owned))
            .unwrap_or_default(),
        None => String::new(),
    };
    let existed = !name.is_empty() && fake.get(&t.plural, &ns, &name).is_some();
    let answer = serve(&fake, method.clone(), verb, &t, &ns, &q, &headers, &body);
    fake.record(Request {
        method: verb.to_owned(),
        plural: t.plural.clone(),
        namespace: ns,
        name,
        existed,
        status: answer.status().as_u16(),
    });
    answer
}

/// The answer to a request that passed authorisation and faults.
#[allow(clippy::too_many_arguments)]
fn serve(
    fake: &FakeKube,
    method: Method,
    verb: &str,
    t: &Target,
    ns: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let ns = ns.to_owned();
    match (method, t.name.clone()) {
        (Method::GET, None) => {
            if verb == "WATCH" {
                watch::watch(fake, t, q)
            } else {
                lists::list(fake, t, q)
            }
        }
        (Method::GET, Some(name)) => match fake.get(&t.plural, &ns, &name) {
            Some(o) => axum::Json(o).into_response(),
            None => status(404, "NotFound", &format!("{} {name:?} not found", t.plural)),
        },
        (Method::POST, None) => {
            let Ok(obj) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let key = (t.plural.clone(), ns.clone(), name.clone());
            if let Some(refused) = fake.refuse_in(&ns) {
                return refused;
            }
            let mut s = fake.lock();
            if s.objects.contains_key(&key) {
                drop(s);
                return status(409, "AlreadyExists", &format!("{name} already exists"));
            }
            let mut obj = obj;
            keep_other_part(None, &mut obj, false);
            if let Some(refused) = admission::admit(&mut s, &key, None, &mut obj) {
                drop(s);
                return refused;
            }
            let mut owners = ssa::Owners::new();
            ssa::record_update(&t.plural, None, &obj, &manager_of(q, headers), &mut owners);
            let obj = fake.stamp(&mut s, obj, &key, false);
            s.objects.insert(key.clone(), obj.clone());
            s.owners.insert(key, owners);
            drop(s);
            fake.emit(&t.plural, "ADDED", obj.clone());
            (StatusCode::CREATED, axum::Json(obj)).into_response()
        }
        (Method::PUT, Some(name)) => {
            let Ok(obj) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let key = (t.plural.clone(), ns.clone(), name.clone());
            let mut s = fake.lock();
            let Some(current) = s.objects.get(&key).cloned() else {
                drop(s);
                return status(404, "NotFound", "not found");
            };
            let want_rv = obj.pointer("/metadata/resourceVersion").cloned();
            if want_rv.is_some() && want_rv != current.pointer("/metadata/resourceVersion").cloned()
            {
                drop(s);
                return status(409, "Conflict", "the object has been modified");
            }
            let mut obj = obj;
            let status_only = t.subresource.as_deref() == Some("status");
            keep_other_part(Some(&current), &mut obj, status_only);
            if let Some(refused) = immutable_pod_spec(&key, Some(&current), &obj) {
                drop(s);
                return refused;
            }
            if let Some(refused) = admission::admit(&mut s, &key, Some(&current), &mut obj) {
                drop(s);
                return refused;
            }
            obj["metadata"]["uid"] = current["metadata"]["uid"].clone();
            let mut owners = s.owners.get(&key).cloned().unwrap_or_default();
            let manager = manager_of(q, headers);
            ssa::record_update(&t.plural, Some(&current), &obj, &manager, &mut owners);
            let obj = fake.stamp(&mut s, obj, &key, true);
            s.objects.insert(key.clone(), obj.clone());
            s.owners.insert(key, owners);
            drop(s);
            fake.emit(&t.plural, "MODIFIED", obj.clone());
            fake.delete_when_finalized(&(t.plural.clone(), ns.clone(), name.clone()));
            axum::Json(obj).into_response()
        }
        (Method::PATCH, Some(name)) => patch(fake, t, &ns, &name, q, headers, body),
        (Method::DELETE, Some(name)) => {
            let key = (t.plural.clone(), ns.clone(), name.clone());
            let opts = deletion::DeleteOptions::parse(body, q);
            let removed = fake.delete_by_client(&key, &opts);
            match removed {
                Some(o) => axum::Json(o).into_response(),
                None => status(404, "NotFound", "not found"),
            }
        }
        _ => status(405, "MethodNotAllowed", "not supported by the fake"),
    }
}
