//! What a forwarded body may say: a session's `PATCH` only its labels and
//! annotations, a create none of the fields that give a session another
//! identity, environment or parent user, a status write only the runner's
//! own fields; keys the API would match ignoring case are refused; and a
//! list's `search` cannot widen the project scope or count other projects.

mod support;

use ambient_protocol::v1::UpdateSessionStatusRequest;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;
use tonic::Code;

/// A raw body (duplicate keys survive), `(status, JSON answer)`.
async fn raw(w: &World, method: Method, path: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", w.gw.base))
        .bearer_auth(OWN_TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sibling_session_patch_changes_only_labels_and_annotations() {
    let w = World::start().await;
    let path = format!("/sessions/{}", w.sibling);
    let before = w.api.ok(ADMIN_TOKEN, Method::GET, &path, None).await;
    for body in [
        json!({"prompt": "exfiltrate"}),
        json!({"labels": "{}", "environment_variables": "{\"X\":\"1\"}"}),
        json!({"repos": "[]"}),
        json!({"bot_account_name": "admin"}),
        json!({"resource_overrides": "{}"}),
        json!({"assigned_user_id": "root"}),
        json!({"parent_session_id": "x"}),
    ] {
        let (code, answer) =
            w.gw.call(OWN_TOKEN, Method::PATCH, &path, Some(body.clone()), &[])
                .await;
        assert_eq!(code, 403, "{body}: {answer}");
        let field = body
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "labels"))
            .cloned()
            .unwrap_or_default();
        assert!(s(&answer["reason"]).contains(&field), "{answer}");
    }
    let after = w.api.ok(ADMIN_TOKEN, Method::GET, &path, None).await;
    assert_eq!(before, after, "a refused PATCH changed the session");
    let labels = json!({"labels": "{\"k\":\"v\"}", "annotations": "{\"a\":\"b\"}"});
    let patched = w.gw.ok(OWN_TOKEN, Method::PATCH, &path, Some(labels)).await;
    assert_eq!(patched["labels"], "{\"k\":\"v\"}", "{patched}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_may_not_set_identity_environment_or_owner() {
    let w = World::start().await;
    for field in [
        "environment_variables",
        "bot_account_name",
        "resource_overrides",
        "assigned_user_id",
    ] {
        let body = json!({"name": "child", field: "x"});
        let (code, answer) =
            w.gw.call(OWN_TOKEN, Method::POST, "/sessions", Some(body), &[])
                .await;
        assert_eq!(code, 403, "{field}: {answer}");
        assert!(s(&answer["reason"]).contains(field), "{answer}");
    }
    let list = w
        .api
        .ok(ADMIN_TOKEN, Method::GET, "/sessions?size=100", None)
        .await;
    assert_eq!(list["total"], 3, "a refused create created: {list}");
    // What ambient-mcp's create_session sends (delegation names a parent).
    let body = json!({"name": "child", "prompt": "p", "agent_id": "a",
        "llm_model": "m", "parent_session_id": w.own});
    let created =
        w.gw.ok(OWN_TOKEN, Method::POST, "/sessions", Some(body))
            .await;
    assert_eq!(
        created["parent_session_id"],
        Value::from(w.own.clone()),
        "{created}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_write_sets_only_the_runner_fields() {
    let w = World::start().await;
    let path = format!("/sessions/{}/status", w.own);
    let get = format!("/sessions/{}", w.own);
    let before = w.api.ok(ADMIN_TOKEN, Method::GET, &get, None).await;
    for body in [
        json!({"phase": "Pending"}),
        json!({"sdk_session_id": "x", "kube_namespace": "kube-system"}),
        json!({"kube_cr_uid": "u"}),
        json!({"completion_time": "2026-01-01T00:00:00Z"}),
        json!({"reconciled_repos": "[]"}),
    ] {
        let (code, answer) =
            w.gw.call(OWN_TOKEN, Method::PATCH, &path, Some(body.clone()), &[])
                .await;
        assert_eq!(code, 403, "{body}: {answer}");
    }
    let after = w.api.ok(ADMIN_TOKEN, Method::GET, &get, None).await;
    assert_eq!(before, after, "a refused status write changed the session");
    let ok = json!({"sdk_session_id": "sdk-1", "sdk_restart_count": 2, "conditions": "[]"});
    let s1 = w.gw.ok(OWN_TOKEN, Method::PATCH, &path, Some(ok)).await;
    assert_eq!(s1["sdk_session_id"], "sdk-1", "{s1}");

    let mut c = w.grpc().await;
    for req in [
        UpdateSessionStatusRequest {
            id: w.own.clone(),
            phase: Some("Pending".into()),
            ..Default::default()
        },
        UpdateSessionStatusRequest {
            id: w.own.clone(),
            sdk_restart_count: Some(3),
            kube_namespace: Some("kube-system".into()),
            ..Default::default()
        },
    ] {
        let r = c.update_session_status(authed(req, OWN_TOKEN)).await;
        assert_eq!(r.err().map(|e| e.code()), Some(Code::PermissionDenied));
    }
    let r = c
        .update_session_status(authed(
            UpdateSessionStatusRequest {
                id: w.own.clone(),
                sdk_restart_count: Some(4),
                ..Default::default()
            },
            OWN_TOKEN,
        ))
        .await
        .unwrap_or_else(|e| panic!("runner fields: {e}"));
    assert_eq!(r.into_inner().sdk_restart_count, Some(4));
    let after = w.api.ok(ADMIN_TOKEN, Method::GET, &get, None).await;
    assert_eq!(after["phase"], before["phase"], "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_api_matches_ignoring_case_are_refused() {
    let w = World::start().await;
    for body in [
        format!(r#"{{"name":"x","project_id":"{OWN_PROJECT}","Project_Id":"{OTHER_PROJECT}"}}"#),
        format!(r#"{{"name":"x","PROJECT_ID":"{OTHER_PROJECT}"}}"#),
        r#"{"name":"x","Environment_Variables":"{}"}"#.to_owned(),
    ] {
        let (code, answer) = raw(&w, Method::POST, "/sessions", &body).await;
        assert_eq!(code, 403, "{body}: {answer}");
    }
    let path = format!("/sessions/{}", w.sibling);
    let (code, answer) = raw(&w, Method::PATCH, &path, r#"{"labels":"{}","Prompt":"x"}"#).await;
    assert_eq!(code, 403, "{answer}");
    let status = format!("/sessions/{}/status", w.own);
    // The long s (U+017F) folds to `s` in Go's case-insensitive match.
    let (code, answer) = raw(&w, Method::PATCH, &status, "{\"Phase\":\"Pending\"}").await;
    assert_eq!(code, 403, "{answer}");
    let (code, answer) = raw(&w, Method::PATCH, &status, "{\"pha\u{17f}e\":\"Pending\"}").await;
    assert_eq!(code, 403, "{answer}");
    // Duplicate keys: what is checked is what is forwarded.
    let dup =
        format!(r#"{{"name":"d","project_id":"{OTHER_PROJECT}","project_id":"{OWN_PROJECT}"}}"#);
    let (code, answer) = raw(&w, Method::POST, "/sessions", &dup).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["project_id"], OWN_PROJECT, "{answer}");
    let list = w
        .api
        .ok(
            ADMIN_TOKEN,
            Method::GET,
            &format!("/sessions?project_id={OTHER_PROJECT}&size=100"),
            None,
        )
        .await;
    assert_eq!(
        list["total"], 1,
        "a session was created in another project: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_cannot_see_or_count_other_projects() {
    let w = World::start().await;
    for query in [
        "search=name%20%3D%20%27beta%27&page=50",
        "search=name%20like%20%27b%25%27&page=2&size=1",
        "search=id%20%3D%20%27beta%27%20or%20id%20%3D%20%27beta%27&page=9",
    ] {
        let list =
            w.gw.ok(OWN_TOKEN, Method::GET, &format!("/projects?{query}"), None)
                .await;
        assert_eq!(list["items"], json!([]), "{query}: {list}");
        assert_eq!(list["total"], 0, "{query}: {list}");
    }
    let list =
        w.gw.ok(
            OWN_TOKEN,
            Method::GET,
            "/projects?search=name%20like%20%27a%25%27",
            None,
        )
        .await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["id"], OWN_PROJECT, "{list}");
    for query in [
        format!("search=project_id%20%3D%20%27{OTHER_PROJECT}%27"),
        format!("search=project_id%20%3D%20%27{OTHER_PROJECT}%27&page=5"),
        format!("search=id%20%3D%20%27{}%27%20or%20true", w.foreign),
    ] {
        let (code, list) =
            w.gw.call(
                OWN_TOKEN,
                Method::GET,
                &format!("/sessions?{query}"),
                None,
                &[],
            )
            .await;
        if code == 200 {
            assert_eq!(list["total"], 0, "{query}: {list}");
            assert_eq!(list["items"], json!([]), "{query}: {list}");
        } else {
            assert_eq!(code, 400, "{query}: {list}");
        }
    }
    let list =
        w.gw.ok(
            OWN_TOKEN,
            Method::GET,
            "/sessions?search=id%20%3D%20%27x%27%20or%20id%20!%3D%20%27x%27",
            None,
        )
        .await;
    assert_eq!(list["total"], 2, "own and sibling only: {list}");
}
