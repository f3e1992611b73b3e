//! The REST half of the access matrix: {get, list, push, watch, update,
//! delete, credential token} × {own session, another session of the same
//! project, a session of another project, a delivered credential, one not
//! delivered}, through the gateway in front of the real devserver.
//!
//! REST is confined to the session's project (ambient-mcp's tools act on the
//! project's sessions: get, list, push, label, create + start), status
//! updates to the own session, deletes to never-started sessions of the
//! project, credentials to the delivered ones.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::*;

/// One cell: what, the call, the status wanted.
struct Cell {
    what: String,
    method: Method,
    path: String,
    body: Option<Value>,
    accept: Option<&'static str>,
    want: u16,
}

fn cell(what: &str, method: Method, path: String, body: Option<Value>, want: u16) -> Cell {
    Cell {
        what: what.to_owned(),
        method,
        path,
        body,
        accept: None,
        want,
    }
}

fn matrix(w: &World) -> Vec<Cell> {
    let msg = json!({"payload": "hello", "event_type": "user"});
    let st = json!({"sdk_session_id": "sdk-1"});
    let labels = json!({"labels": "{\"via\":\"gateway\"}"});
    let mut cells = Vec::new();
    let sessions = [
        ("own", &w.own, true),
        ("sibling", &w.sibling, true),
        ("foreign", &w.foreign, false),
    ];
    for (who, id, in_project) in sessions {
        let project = |ok: u16| if in_project { ok } else { 403 };
        let own = |ok: u16| if who == "own" { ok } else { 403 };
        cells.push(cell(
            &format!("get {who}"),
            Method::GET,
            format!("/sessions/{id}"),
            None,
            project(200),
        ));
        cells.push(cell(
            &format!("push {who}"),
            Method::POST,
            format!("/sessions/{id}/messages"),
            Some(msg.clone()),
            project(201),
        ));
        cells.push(Cell {
            accept: Some("text/event-stream"),
            ..cell(
                &format!("watch {who}"),
                Method::GET,
                format!("/sessions/{id}/messages?after_seq=0"),
                None,
                project(200),
            )
        });
        cells.push(cell(
            &format!("messages {who}"),
            Method::GET,
            format!("/sessions/{id}/messages"),
            None,
            project(200),
        ));
        cells.push(cell(
            &format!("update status {who}"),
            Method::PATCH,
            format!("/sessions/{id}/status"),
            Some(st.clone()),
            own(200),
        ));
        cells.push(cell(
            &format!("update labels {who}"),
            Method::PATCH,
            format!("/sessions/{id}"),
            Some(labels.clone()),
            project(200),
        ));
        // No session may be deleted.
        cells.push(cell(
            &format!("delete {who}"),
            Method::DELETE,
            format!("/sessions/{id}"),
            None,
            403,
        ));
        cells.push(cell(
            &format!("stop {who}"),
            Method::POST,
            format!("/sessions/{id}/stop"),
            None,
            403,
        ));
    }
    let creds = [
        ("delivered", &w.delivered, 200),
        ("undelivered", &w.undelivered, 403),
    ];
    for (which, id, want) in creds {
        cells.push(cell(
            &format!("credential token {which}"),
            Method::GET,
            format!("/credentials/{id}/token"),
            None,
            want,
        ));
        cells.push(cell(
            &format!("credential {which}"),
            Method::GET,
            format!("/credentials/{id}"),
            None,
            want,
        ));
        let path = format!("/projects/{OWN_PROJECT}/credentials/{id}/token");
        cells.push(cell(
            &format!("project credential token {which}"),
            Method::GET,
            path,
            None,
            want,
        ));
        let path = format!("/projects/{OTHER_PROJECT}/credentials/{id}/token");
        cells.push(cell(
            &format!("other project's credential token {which}"),
            Method::GET,
            path,
            None,
            403,
        ));
    }
    cells.push(cell("list", Method::GET, "/sessions".into(), None, 200));
    cells.push(cell(
        "list another project",
        Method::GET,
        format!("/sessions?project_id={OTHER_PROJECT}"),
        None,
        403,
    ));
    cells.push(cell(
        "create in another project",
        Method::POST,
        "/sessions".into(),
        Some(json!({"name": "x", "project_id": OTHER_PROJECT})),
        403,
    ));
    cells.push(cell(
        "get own project",
        Method::GET,
        format!("/projects/{OWN_PROJECT}"),
        None,
        200,
    ));
    cells.push(cell(
        "get another project",
        Method::GET,
        format!("/projects/{OTHER_PROJECT}"),
        None,
        403,
    ));
    cells.push(cell(
        "agents of own project",
        Method::GET,
        format!("/projects/{OWN_PROJECT}/agents"),
        None,
        200,
    ));
    cells.push(cell(
        "agents of another project",
        Method::GET,
        format!("/projects/{OTHER_PROJECT}/agents"),
        None,
        403,
    ));
    for path in [
        "/credentials",
        "/role_bindings",
        "/roles",
        "/project_settings",
    ] {
        cells.push(cell(
            &format!("not allowed {path}"),
            Method::GET,
            path.into(),
            None,
            403,
        ));
    }
    let legacy = format!(
        "/../../projects/{OWN_PROJECT}/agentic-sessions/{}/credentials/github",
        w.own
    );
    // Outside the API: 404, as the API server answers (the reference runner
    // takes a 401/403 there as fatal, a 404 as "no such credential").
    cells.push(cell("legacy backend path", Method::GET, legacy, None, 404));
    cells
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_matrix() {
    let w = World::start().await;
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    for c in matrix(&w) {
        let mut req = http
            .request(c.method.clone(), format!("{}{}", w.gw.base, c.path))
            .bearer_auth(OWN_TOKEN);
        if let Some(b) = &c.body {
            req = req.json(b);
        }
        if let Some(a) = c.accept {
            req = req.header("Accept", a);
        }
        let mut resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.what));
        let got = resp.status().as_u16();
        if got != c.want {
            wrong.push(format!(
                "{}: {} {} → {got}, want {}",
                c.what, c.method, c.path, c.want
            ));
        } else if c.accept.is_some() && got == 200 {
            // An event stream: its first event arrives (replayed), unbuffered.
            let mut seen = String::new();
            while !seen.contains("data:") {
                match resp.chunk().await {
                    Ok(Some(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                    other => panic!("{}: the stream ended: {other:?}", c.what),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "cells answered wrong:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_narrowed_to_the_project() {
    let w = World::start().await;
    let list =
        w.gw.ok(OWN_TOKEN, Method::GET, "/sessions?size=100", None)
            .await;
    let ids: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| s(&i["id"]))
        .collect();
    assert!(ids.contains(&w.own) && ids.contains(&w.sibling), "{list}");
    assert!(
        !ids.contains(&w.foreign),
        "a session of another project was listed: {list}"
    );
    let (code, _) =
        w.gw.call(
            OWN_TOKEN,
            Method::GET,
            "/sessions",
            None,
            &[("X-Ambient-Project", OTHER_PROJECT)],
        )
        .await;
    assert_eq!(code, 403, "an X-Ambient-Project of another project");
    for query in ["", "?search=name%20%3D%20%27beta%27", "?page=1&size=1"] {
        let projects =
            w.gw.ok(OWN_TOKEN, Method::GET, &format!("/projects{query}"), None)
                .await;
        let names: Vec<String> = projects["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| s(&p["id"]))
            .collect();
        assert!(
            names.iter().all(|n| n == OWN_PROJECT),
            "{query}: {projects}"
        );
    }
    let projects = w.gw.ok(OWN_TOKEN, Method::GET, "/projects", None).await;
    assert_eq!(projects["items"][0]["id"], OWN_PROJECT, "{projects}");
}

/// Upstream sees the control plane, never the session's token: the
/// devserver also accepts that token (as `leak`) and records the creator.
/// No session may delete a session, not even one that never started
/// (ambient-mcp leaves a session whose start failed, as the reference does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sees_the_control_plane_and_no_session_may_be_deleted() {
    let w = World::start().await;
    let created =
        w.gw.ok(
            OWN_TOKEN,
            Method::POST,
            "/sessions",
            Some(json!({"name": "child"})),
        )
        .await;
    assert_eq!(created["project_id"], OWN_PROJECT, "{created}");
    assert_eq!(
        created["created_by_user_id"], "cp",
        "upstream saw another identity than the control plane's: {created}"
    );
    let child = s(&created["id"]);
    let (code, body) =
        w.gw.call(
            OWN_TOKEN,
            Method::DELETE,
            &format!("/sessions/{child}"),
            None,
            &[],
        )
        .await;
    assert_eq!(code, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_session_tokens_of_live_sessions_on_their_pod_are_admitted() {
    let w = World::start().await;
    let path = format!("/sessions/{}", w.own);
    let (code, body) =
        w.gw.call(OWN_TOKEN, Method::POST, &format!("{path}/stop"), None, &[])
            .await;
    assert_eq!(code, 403);
    assert_eq!(body["kind"], "Error", "wire.md §2 error shape: {body}");
    assert_eq!(body["code"], "GATEWAY-403", "{body}");
    assert_eq!(
        w.gw.call(OWN_TOKEN, Method::GET, &path, None, &[]).await.0,
        200
    );
    assert_eq!(
        w.gw.call(CP_TOKEN, Method::GET, &path, None, &[]).await.0,
        401,
        "the platform token"
    );
    assert_eq!(
        w.gw.call("", Method::GET, &path, None, &[]).await.0,
        401,
        "no token"
    );
    w.facts.set(&w.own, OWN_PROJECT, true, Some("pod-uid-2"));
    assert_eq!(
        w.gw.call(OWN_TOKEN, Method::GET, &path, None, &[]).await.0,
        401,
        "an old pod's token"
    );
    w.facts.set(&w.own, OWN_PROJECT, false, Some(GEN));
    assert_eq!(
        w.gw.call(OWN_TOKEN, Method::GET, &path, None, &[]).await.0,
        401,
        "an ended session's token"
    );
    // The sibling, still live, is unaffected.
    let sib = format!("/sessions/{}", w.sibling);
    assert_eq!(
        w.gw.call(SIBLING_TOKEN, Method::GET, &sib, None, &[])
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_and_nothing_changes() {
    let w = World::start().await;
    let path = format!("/sessions/{}/messages", w.own);
    let huge = json!({"payload": "x".repeat(2 * 1024 * 1024), "event_type": "user"});
    let (code, body) =
        w.gw.call(OWN_TOKEN, Method::POST, &path, Some(huge), &[])
            .await;
    assert_eq!(code, 413, "{body}");
    let msgs = w.api.ok(ADMIN_TOKEN, Method::GET, &path, None).await;
    assert_eq!(msgs.as_array().map(Vec::len), Some(0), "{msgs}");
}
