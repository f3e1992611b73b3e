//! The access matrix: {gRPC, REST} × {get, list, push, watch, update,
//! delete, credential token} × {own session, another session of the same
//! project, a session of another project, a delivered credential, one not
//! delivered}, through the gateway in front of the real devserver.
//!
//! gRPC: only the own-session cells of the allowed RPCs succeed. REST: calls
//! are confined to the session's project (the ambient-mcp tools act on the
//! project's sessions), status updates to the own session, deletes to
//! never-started sessions, credentials to the delivered ones.

mod support;

use ambient_protocol::v1::GetProjectRequest;
use ambient_protocol::v1::project_service_client::ProjectServiceClient;
use ambient_protocol::v1::{
    DeleteSessionRequest, GetSessionRequest, ListSessionsRequest, PushSessionMessageRequest,
    UpdateSessionRequest, UpdateSessionStatusRequest, WatchSessionMessagesRequest,
    WatchSessionsRequest,
};
use reqwest::Method;
use serde_json::{Value, json};
use support::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_cells() {
    let w = World::start().await;
    let mut c = w.grpc().await;
    let cases = [(&w.own, true), (&w.sibling, false), (&w.foreign, false)];
    for (id, allowed) in cases {
        let who = if allowed { "own" } else { "other" };
        let r = c
            .get_session(authed(GetSessionRequest { id: id.clone() }, OWN_TOKEN))
            .await;
        check(r.map(|_| ()), allowed, &format!("GetSession {who}"));
        let r = c
            .push_session_message(authed(
                PushSessionMessageRequest {
                    session_id: id.clone(),
                    event_type: "assistant".into(),
                    payload: "hi".into(),
                },
                OWN_TOKEN,
            ))
            .await;
        check(r.map(|_| ()), allowed, &format!("PushSessionMessage {who}"));
        let r = c
            .watch_session_messages(authed(
                WatchSessionMessagesRequest {
                    session_id: id.clone(),
                    after_seq: 0,
                },
                OWN_TOKEN,
            ))
            .await;
        match r {
            Ok(resp) => {
                assert!(allowed, "WatchSessionMessages {who} must be refused");
                let mut stream = resp.into_inner();
                let first = stream.message().await.unwrap_or_else(|e| panic!("{e}"));
                let first = first.unwrap_or_else(|| panic!("the watch ended before replaying"));
                assert_eq!(first.session_id, *id);
            }
            Err(e) => {
                assert!(!allowed, "WatchSessionMessages {who}: {e}");
                assert_eq!(e.code(), Code::PermissionDenied, "{e}");
            }
        }
        let r = c
            .update_session_status(authed(
                UpdateSessionStatusRequest {
                    id: id.clone(),
                    phase: Some("Running".into()),
                    ..Default::default()
                },
                OWN_TOKEN,
            ))
            .await;
        check(
            r.map(|_| ()),
            allowed,
            &format!("UpdateSessionStatus {who}"),
        );
        // Never allowed, not even on the own session.
        let r = c
            .update_session(authed(
                UpdateSessionRequest {
                    id: id.clone(),
                    labels: Some("{}".into()),
                    ..Default::default()
                },
                OWN_TOKEN,
            ))
            .await;
        check(r.map(|_| ()), false, &format!("UpdateSession {who}"));
        let r = c
            .delete_session(authed(DeleteSessionRequest { id: id.clone() }, OWN_TOKEN))
            .await;
        check(r.map(|_| ()), false, &format!("DeleteSession {who}"));
    }
    let r = c
        .list_sessions(authed(ListSessionsRequest { page: 1, size: 10 }, OWN_TOKEN))
        .await;
    check(r.map(|_| ()), false, "ListSessions");
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", w.gateway))
        .unwrap_or_else(|e| panic!("{e}"))
        .connect_lazy();
    let r = ProjectServiceClient::new(ch)
        .get_project(authed(
            GetProjectRequest {
                id: OWN_PROJECT.into(),
            },
            OWN_TOKEN,
        ))
        .await;
    check(r.map(|_| ()), false, "ProjectService/GetProject");
    // Session pushes went upstream as the control plane, not as the session.
    let msgs = w
        .api
        .ok(
            ADMIN_TOKEN,
            Method::GET,
            &format!("/sessions/{}/messages", w.own),
            None,
        )
        .await;
    assert!(msgs.as_array().is_some_and(|a| !a.is_empty()), "{msgs}");
    // A token that is not a session token, and none at all.
    let r = c
        .get_session(authed(GetSessionRequest { id: w.own.clone() }, CP_TOKEN))
        .await;
    assert_eq!(r.err().map(|e| e.code()), Some(Code::Unauthenticated));
    let r = c
        .get_session(tonic::Request::new(GetSessionRequest { id: w.own.clone() }))
        .await;
    assert_eq!(r.err().map(|e| e.code()), Some(Code::Unauthenticated));
}

/// WatchSessions forwards only the own session's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_watch_sessions_sees_only_its_own_session() {
    let w = World::start().await;
    let mut c = w.grpc().await;
    let mut events = c
        .watch_sessions(authed(WatchSessionsRequest {}, OWN_TOKEN))
        .await
        .unwrap_or_else(|e| panic!("WatchSessions: {e}"))
        .into_inner();
    // Positive signal first: the watch is live once a change of the own
    // session comes through (a change made before upstream subscribed is
    // not replayed, so poke until one arrives).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    for i in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch never delivered"
        );
        let labels = format!("{{\"ready\":\"{i}\"}}");
        w.api
            .ok(
                ADMIN_TOKEN,
                Method::PATCH,
                &format!("/sessions/{}", w.own),
                Some(json!({"labels": labels})),
            )
            .await;
        let poll = std::time::Duration::from_millis(200);
        if let Ok(ev) = tokio::time::timeout(poll, events.message()).await {
            let ev = ev
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("the watch ended"));
            assert_eq!(ev.resource_id, w.own);
            break;
        }
    }
    // Then change the others, then the own session: every event up to the
    // own one must be the own session's.
    for id in [&w.sibling, &w.foreign, &w.own] {
        w.api
            .ok(
                ADMIN_TOKEN,
                Method::PATCH,
                &format!("/sessions/{id}"),
                Some(json!({"labels": "{\"k\":\"v\"}"})),
            )
            .await;
    }
    loop {
        let ev = events
            .message()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the watch ended"));
        assert_eq!(
            ev.resource_id, w.own,
            "an event of another session was forwarded"
        );
        if ev
            .session
            .as_ref()
            .and_then(|s| s.labels.as_deref())
            .is_some_and(|l| l.contains("\"k\""))
        {
            break;
        }
    }
}

fn check<E: std::fmt::Display + HasCode>(r: Result<(), E>, allowed: bool, what: &str) {
    match r {
        Ok(()) => assert!(allowed, "{what} must be refused"),
        Err(e) => {
            assert!(!allowed, "{what}: {e}");
            assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e}");
        }
    }
}

trait HasCode {
    fn code(&self) -> Code;
}

impl HasCode for tonic::Status {
    fn code(&self) -> Code {
        tonic::Status::code(self)
    }
}

async fn status(w: &World, method: Method, path: &str, body: Option<Value>) -> u16 {
    w.gw.call(OWN_TOKEN, method, path, body, &[]).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_cells() {
    let w = World::start().await;
    let (own, sib, foreign) = (&w.own, &w.sibling, &w.foreign);
    let get = Method::GET;
    // get
    assert_eq!(
        status(&w, get.clone(), &format!("/sessions/{own}"), None).await,
        200
    );
    assert_eq!(
        status(&w, get.clone(), &format!("/sessions/{sib}"), None).await,
        200
    );
    assert_eq!(
        status(&w, get.clone(), &format!("/sessions/{foreign}"), None).await,
        403
    );
    // list: only the project's sessions; another project refused
    let (code, list) =
        w.gw.call(OWN_TOKEN, get.clone(), "/sessions?size=100", None, &[])
            .await;
    assert_eq!(code, 200, "{list}");
    let ids: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| s(&i["id"]))
        .collect();
    assert!(ids.contains(own) && ids.contains(sib), "{list}");
    assert!(
        !ids.contains(foreign),
        "a session of another project was listed: {list}"
    );
    assert_eq!(
        status(
            &w,
            get.clone(),
            &format!("/sessions?project_id={OTHER_PROJECT}"),
            None
        )
        .await,
        403
    );
    let (code, _) =
        w.gw.call(
            OWN_TOKEN,
            get.clone(),
            "/sessions",
            None,
            &[("X-Ambient-Project", OTHER_PROJECT)],
        )
        .await;
    assert_eq!(code, 403);
    // push (as a user, the way ambient-mcp does)
    let msg = json!({"payload": "hello", "event_type": "user"});
    for (id, want) in [(own, 201), (sib, 201), (foreign, 403)] {
        assert_eq!(
            status(
                &w,
                Method::POST,
                &format!("/sessions/{id}/messages"),
                Some(msg.clone())
            )
            .await,
            want,
            "push {id}"
        );
    }
    // watch (SSE)
    for (id, allowed) in [(own, true), (foreign, false)] {
        let resp = reqwest::Client::new()
            .get(format!("{}/sessions/{id}/messages?after_seq=0", w.gw.base))
            .bearer_auth(OWN_TOKEN)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if allowed {
            assert_eq!(resp.status(), 200);
            let mut resp = resp;
            let chunk = resp
                .chunk()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_default();
            assert!(
                String::from_utf8_lossy(&chunk).contains("data:"),
                "no event replayed"
            );
        } else {
            assert_eq!(resp.status(), 403);
        }
    }
    // update: status only on the own session; labels within the project
    let st = json!({"phase": "Running"});
    for (id, want) in [(own, 200), (sib, 403), (foreign, 403)] {
        assert_eq!(
            status(
                &w,
                Method::PATCH,
                &format!("/sessions/{id}/status"),
                Some(st.clone())
            )
            .await,
            want,
            "status {id}"
        );
    }
    let labels = json!({"labels": "{\"via\":\"gateway\"}"});
    for (id, want) in [(own, 200), (sib, 200), (foreign, 403)] {
        assert_eq!(
            status(
                &w,
                Method::PATCH,
                &format!("/sessions/{id}"),
                Some(labels.clone())
            )
            .await,
            want,
            "patch {id}"
        );
    }
    // delete: only a never-started session of the project
    for id in [own, sib, foreign] {
        assert_eq!(
            status(&w, Method::DELETE, &format!("/sessions/{id}"), None).await,
            403,
            "delete {id}"
        );
    }
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
    assert_eq!(
        status(&w, Method::DELETE, &format!("/sessions/{child}"), None).await,
        204
    );
    assert_eq!(
        status(
            &w,
            Method::POST,
            "/sessions",
            Some(json!({"name": "x", "project_id": OTHER_PROJECT}))
        )
        .await,
        403
    );
    // credentials: only the delivered one
    let (code, tok) =
        w.gw.call(
            OWN_TOKEN,
            get.clone(),
            &format!("/credentials/{}/token", w.delivered),
            None,
            &[],
        )
        .await;
    assert_eq!(code, 200, "{tok}");
    assert_eq!(tok["token"], DELIVERED_SECRET);
    assert_eq!(
        status(
            &w,
            get.clone(),
            &format!("/credentials/{}", w.delivered),
            None
        )
        .await,
        200
    );
    assert_eq!(
        status(
            &w,
            get.clone(),
            &format!("/credentials/{}/token", w.undelivered),
            None
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &w,
            get.clone(),
            &format!("/credentials/{}", w.undelivered),
            None
        )
        .await,
        403
    );
    // the reference runner's project-scoped path
    let path = format!("/projects/{OWN_PROJECT}/credentials/{}/token", w.delivered);
    assert_eq!(status(&w, get.clone(), &path, None).await, 200);
    let path = format!(
        "/projects/{OTHER_PROJECT}/credentials/{}/token",
        w.delivered
    );
    assert_eq!(status(&w, get.clone(), &path, None).await, 403);
    // projects: the own one only
    assert_eq!(
        status(&w, get.clone(), &format!("/projects/{OWN_PROJECT}"), None).await,
        200
    );
    assert_eq!(
        status(&w, get.clone(), &format!("/projects/{OTHER_PROJECT}"), None).await,
        403
    );
    let (code, projects) =
        w.gw.call(OWN_TOKEN, get.clone(), "/projects", None, &[])
            .await;
    assert_eq!(code, 200);
    let names: Vec<String> = projects["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| s(&p["id"]))
        .collect();
    assert_eq!(names, [OWN_PROJECT], "{projects}");
    // not on the allow-list
    for path in ["/credentials", "/role_bindings", "/roles"] {
        assert_eq!(status(&w, get.clone(), path, None).await, 403, "{path}");
    }
    let (code, body) =
        w.gw.call(
            OWN_TOKEN,
            Method::POST,
            &format!("/sessions/{own}/stop"),
            None,
            &[],
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(body["kind"], "Error", "wire.md §2 error shape: {body}");
    // the gateway admits only session tokens of live sessions
    assert_eq!(
        w.gw.call(
            CP_TOKEN,
            get.clone(),
            &format!("/sessions/{own}"),
            None,
            &[]
        )
        .await
        .0,
        401
    );
    assert_eq!(
        w.gw.call("", get.clone(), &format!("/sessions/{own}"), None, &[])
            .await
            .0,
        401
    );
    w.facts.set(own, OWN_PROJECT, true, Some("pod-uid-2"));
    assert_eq!(
        status(&w, get.clone(), &format!("/sessions/{own}"), None).await,
        401,
        "an old pod's token"
    );
    w.facts.set(own, OWN_PROJECT, false, Some(GEN));
    assert_eq!(
        status(&w, get.clone(), &format!("/sessions/{own}"), None).await,
        401,
        "an ended session's token"
    );
}
