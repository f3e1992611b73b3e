//! ambient-mcp against the real ambient-devserver, over real sockets and
//! both HTTP transports: every tool's happy path and main error, label and
//! annotation deletion through the client-side merge, refused search
//! values, and the Host check.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::mcp::{Kind, Tools as _, connect};
use support::{
    API_TOKEN, Rest, assert_no_secret, assert_object, devserver, object_field, s, sidecar_static,
};

async fn tools_roundtrip(kind: Kind) {
    let dev = devserver(&[API_TOKEN], None, None);
    let http = dev.addr("http");
    let rest = Rest::new(http, API_TOKEN);
    let mut mcp = sidecar_static(&format!("http://{http}"), API_TOKEN);
    let client = connect(kind, mcp.addr("mcp")).await;

    // tools/list: the 16 tools.
    let list = client.request("tools/list", json!({})).await;
    let names: Vec<String> = list["result"]["tools"]
        .as_array()
        .map(|t| t.iter().map(|t| s(&t["name"])).collect())
        .unwrap_or_default();
    assert_eq!(names.len(), 16, "{names:?}");

    // Projects.
    let project = rest.project("mcp-tools").await;
    let listed = client.ok("list_projects", json!({})).await;
    assert!(
        listed["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|p| p["id"] == project.as_str())),
        "{listed}"
    );
    let got = client
        .ok("get_project", json!({"project_id": project}))
        .await;
    assert_eq!(got["name"], "mcp-tools");
    assert_eq!(
        client
            .err_code("get_project", json!({"project_id": "no-such-project"}))
            .await,
        "PROJECT_NOT_FOUND"
    );
    let p = client
        .ok(
            "patch_project_annotations",
            json!({"project_id": project, "annotations": {"a.io/x": "1", "a.io/y": "2"}}),
        )
        .await;
    assert_eq!(
        object_field(&p["annotations"]),
        json!({"a.io/x": "1", "a.io/y": "2"})
    );
    client
        .ok(
            "patch_project_annotations",
            json!({"project_id": project, "annotations": {"a.io/x": ""}}),
        )
        .await;
    let stored = rest.get(&format!("/projects/{project}")).await;
    assert_object(&stored["annotations"], json!({"a.io/y": "2"}));

    // Agents.
    let agent = client
        .ok(
            "create_agent",
            json!({"project_id": project, "name": "reviewer", "prompt": "review code"}),
        )
        .await;
    let agent_id = s(&agent["id"]);
    assert_eq!(agent["project_id"], project.as_str());
    let by_name = client
        .ok(
            "get_agent",
            json!({"project_id": project, "agent_id": "reviewer"}),
        )
        .await;
    assert_eq!(by_name["id"], agent_id.as_str());
    assert_eq!(
        client
            .err_code(
                "get_agent",
                json!({"project_id": project, "agent_id": "nobody"}),
            )
            .await,
        "AGENT_NOT_FOUND"
    );
    let agents = client
        .ok(
            "list_agents",
            json!({"project_id": project, "search": "name like 'rev%'"}),
        )
        .await;
    assert_eq!(
        agents["items"].as_array().map(Vec::len),
        Some(1),
        "{agents}"
    );
    assert_eq!(
        client
            .err_code(
                "list_agents",
                json!({"project_id": project, "search": "name = 'x' or '1'='1' --"}),
            )
            .await,
        "INVALID_SEARCH_VALUE"
    );
    let updated = client.ok(
            "update_agent",
            json!({"project_id": project, "agent_id": agent_id, "prompt": "review carefully", "labels": {"team": "core", "tier": "1"}}),
        ).await;
    assert_eq!(updated["prompt"], "review carefully");
    assert_eq!(
        object_field(&updated["labels"]),
        json!({"team": "core", "tier": "1"})
    );
    client
        .ok(
            "update_agent",
            json!({"project_id": project, "agent_id": agent_id, "labels": {"tier": ""}}),
        )
        .await;
    assert_eq!(
        client
            .err_code(
                "update_agent",
                json!({"project_id": project, "agent_id": agent_id}),
            )
            .await,
        "INVALID_REQUEST"
    );
    client.ok("patch_agent_annotations", json!({"project_id": project, "agent_id": "reviewer", "annotations": {"k": "v", "gone": "x"}})).await;
    client
        .ok(
            "patch_agent_annotations",
            json!({"project_id": project, "agent_id": agent_id, "annotations": {"gone": ""}}),
        )
        .await;
    let stored = rest
        .get(&format!("/projects/{project}/agents/{agent_id}"))
        .await;
    assert_object(&stored["labels"], json!({"team": "core"}));
    assert_object(&stored["annotations"], json!({"k": "v"}));

    // Sessions: create without a name (one is made from the prompt) and start.
    let created = client
        .ok(
            "create_session",
            json!({"project_id": project, "prompt": "Fix the flaky login test!"}),
        )
        .await;
    let sid = s(&created["id"]);
    assert_eq!(created["name"], "fix-the-flaky-login-test");
    assert_eq!(created["phase"], "Pending");
    let got = client.ok("get_session", json!({"session_id": sid})).await;
    assert_eq!(got["project_id"], project.as_str());
    assert!(got.get("kube_cr_uid").is_none(), "projection: {got}");
    assert_eq!(
        client
            .err_code("get_session", json!({"session_id": "missing-session"}))
            .await,
        "SESSION_NOT_FOUND"
    );
    assert_eq!(
        client.err_code("get_session", json!({})).await,
        "INVALID_REQUEST"
    );
    let listed = client
        .ok(
            "list_sessions",
            json!({"project_id": project, "phase": "Pending", "size": 500}),
        )
        .await;
    assert!(
        listed["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|x| x["id"] == sid.as_str())),
        "{listed}"
    );
    assert_eq!(
        client
            .err_code("list_sessions", json!({"project_id": "p' or '1'='1"}))
            .await,
        "INVALID_SEARCH_VALUE"
    );

    // Labels and annotations: merge, and deletion with an empty value.
    client
        .ok(
            "patch_session_labels",
            json!({"session_id": sid, "labels": {"env": "dev", "owner": "me"}}),
        )
        .await;
    let l = client
        .ok(
            "patch_session_labels",
            json!({"session_id": sid, "labels": {"owner": "", "tier": "gold"}}),
        )
        .await;
    assert_object(&l["labels"], json!({"env": "dev", "tier": "gold"}));
    let stored = rest.get(&format!("/sessions/{sid}")).await;
    assert_object(&stored["labels"], json!({"env": "dev", "tier": "gold"}));
    client
        .ok(
            "patch_session_annotations",
            json!({"session_id": sid, "annotations": {"x.io/a": "1", "x.io/b": "2"}}),
        )
        .await;
    client
        .ok(
            "patch_session_annotations",
            json!({"session_id": sid, "annotations": {"x.io/a": ""}}),
        )
        .await;
    let stored = rest.get(&format!("/sessions/{sid}")).await;
    assert_object(&stored["annotations"], json!({"x.io/b": "2"}));
    assert_eq!(
        client
            .err_code(
                "patch_session_annotations",
                json!({"session_id": sid, "annotations": {"big": "x".repeat(4097)}}),
            )
            .await,
        "ANNOTATION_VALUE_TOO_LARGE"
    );
    assert_eq!(
        client
            .err_code(
                "patch_session_labels",
                json!({"session_id": "missing", "labels": {"a": "b"}}),
            )
            .await,
        "SESSION_NOT_FOUND"
    );

    // push_message: plain, with a mention (one child per distinct agent;
    // e-mail addresses are not mentions), and an unresolved mention.
    let plain = client
        .ok(
            "push_message",
            json!({"session_id": sid, "text": "mail a@b.com please"}),
        )
        .await;
    assert_eq!(plain["message"]["payload"], "mail a@b.com please");
    assert_eq!(plain["delegated_session"], Value::Null);
    let delegated = client
        .ok(
            "push_message",
            json!({"session_id": sid, "text": "@reviewer look at PR 7 @reviewer"}),
        )
        .await;
    let child = &delegated["delegated_session"];
    assert_eq!(child["agent_id"], agent_id.as_str(), "{delegated}");
    assert_eq!(child["parent_session_id"], sid.as_str());
    assert_eq!(child["prompt"], "look at PR 7");
    assert!(
        delegated.get("delegated_sessions").is_none(),
        "one distinct mention: {delegated}"
    );
    let before = rest.get(&format!("/sessions/{sid}/messages")).await;
    assert_eq!(
        client
            .err_code(
                "push_message",
                json!({"session_id": sid, "text": "@ghost hi"}),
            )
            .await,
        "MENTION_NOT_RESOLVED"
    );
    let after = rest.get(&format!("/sessions/{sid}/messages")).await;
    assert_eq!(before, after, "a refused push writes nothing");
    rest.set_phase(&sid, "Completed").await;
    assert_eq!(
        client
            .err_code("push_message", json!({"session_id": sid, "text": "late"}))
            .await,
        "SESSION_NOT_RUNNING"
    );

    // Unknown tool: a protocol error, not a crash.
    let unknown = client
        .request("tools/call", json!({"name": "nope", "arguments": {}}))
        .await;
    assert!(unknown.get("error").is_some(), "{unknown}");

    client.close().await;
    let status = mcp.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM → exit 0; logs:\n{}",
        mcp.logs()
    );
    assert_no_secret(&mcp.logs(), &[API_TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_over_streamable_http() {
    tools_roundtrip(Kind::Streamable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_over_legacy_sse() {
    tools_roundtrip(Kind::LegacySse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_endpoint_and_unknown_sessions() {
    let dev = devserver(&[API_TOKEN], None, None);
    let mcp = sidecar_static(&format!("http://{}", dev.addr("http")), API_TOKEN);
    let base = format!("http://{}", mcp.addr("mcp"));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/message?sessionId=0123456789abcdef"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 404);
    // A foreign Host (DNS rebinding) or Origin is refused on every route.
    for path in ["/sse", "/mcp"] {
        let r = http
            .get(format!("{base}{path}"))
            .header("Host", "evil.example")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), 403, "{path}");
        let r = http
            .get(format!("{base}{path}"))
            .header("Origin", "http://evil.example")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), 403, "{path}");
    }
}

/// A session whose start fails stays (as the reference leaves it: it can be
/// started again), and the tool's error names it. Against a fake API that
/// creates, refuses the start, and records every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_start_fails_is_left_and_the_error_names_it() {
    use std::sync::{Arc, Mutex};

    use axum::http::StatusCode;
    use axum::routing::post;

    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = calls.clone();
    let app = axum::Router::new()
        .route(
            "/api/ambient/v1/sessions",
            post(|| async {
                let s = json!({"id": "sess-left", "kind": "Session", "name": "x",
                    "project_id": "p1"});
                (StatusCode::CREATED, axum::Json(s))
            }),
        )
        .route(
            "/api/ambient/v1/sessions/{id}/start",
            post(|| async {
                let e = json!({"kind": "Error", "code": "409", "reason": "cannot start now"});
                (StatusCode::CONFLICT, axum::Json(e))
            }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let seen = seen.clone();
                async move {
                    if let Ok(mut c) = seen.lock() {
                        c.push(format!("{} {}", req.method(), req.uri().path()));
                    }
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mcp = sidecar_static(&format!("http://{addr}"), API_TOKEN);
    let client = connect(Kind::Streamable, mcp.addr("mcp")).await;
    let err = client
        .call(
            "create_session",
            json!({"project_id": "p1", "prompt": "do it"}),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("create_session succeeded"));
    assert_eq!(err["code"], "START_FAILED", "{err}");
    let reason = s(&err["reason"]);
    assert!(reason.contains("sess-left"), "{reason}");
    let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(
        calls,
        vec![
            "POST /api/ambient/v1/sessions".to_owned(),
            "POST /api/ambient/v1/sessions/sess-left/start".to_owned()
        ],
        "nothing but the create and the start"
    );
}
