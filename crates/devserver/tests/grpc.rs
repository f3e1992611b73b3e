//! gRPC `ambient.v1` against the real binary: CRUD, pagination, status,
//! watches (including changes made over REST), auth.

mod common;

use ambient_protocol::v1::{
    CreateProjectRequest, CreateProjectSettingsRequest, CreateSessionRequest, DeleteProjectRequest,
    DeleteSessionRequest, EventType, GetProjectRequest, GetSessionRequest,
    ListProjectSettingsRequest, ListSessionsRequest, PushSessionMessageRequest,
    UpdateProjectRequest, UpdateProjectSettingsRequest, UpdateSessionRequest,
    UpdateSessionStatusRequest, WatchProjectSettingsRequest, WatchProjectsRequest,
    WatchSessionMessagesRequest, WatchSessionsRequest,
};
use common::{Rest, guard, s};
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;

fn create(name: &str) -> CreateSessionRequest {
    CreateSessionRequest {
        name: name.into(),
        project_id: Some("proj-a".into()),
        labels: Some(r#"{"b":"2","a":"1"}"#.into()),
        llm_temperature: Some(0.25),
        ..Default::default()
    }
}

#[tokio::test]
async fn session_crud_pagination_and_status() {
    let d = common::start(&[]);
    let mut c = common::sessions(&d).await;

    let created = c
        .create_session(create("one"))
        .await
        .unwrap_or_else(|e| panic!("create: {e}"))
        .into_inner();
    let meta = created.metadata.clone().unwrap_or_default();
    assert_eq!(meta.kind, "Session");
    assert_eq!(meta.href, format!("/api/ambient/v1/sessions/{}", meta.id));
    assert!(meta.id.len() >= 20);
    assert!(
        meta.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert!(meta.created_at.is_some() && meta.updated_at.is_some());
    assert_eq!(created.phase, None, "a new session has an empty phase");
    assert_eq!(created.labels.as_deref(), Some(r#"{"a":"1","b":"2"}"#));
    assert_eq!(created.llm_temperature, Some(0.25));

    let got = c
        .get_session(GetSessionRequest {
            id: meta.id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .into_inner();
    assert_eq!(got, created);

    // Empty name refused.
    let err = c
        .create_session(CreateSessionRequest::default())
        .await
        .err()
        .unwrap_or_else(|| panic!("empty name accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);

    // Pagination: 7 sessions, pages of 3.
    for i in 2..=7 {
        c.create_session(create(&format!("s{i}")))
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let r = c
            .list_sessions(ListSessionsRequest { page, size: 3 })
            .await
            .unwrap_or_else(|e| panic!("list: {e}"))
            .into_inner();
        let m = r.metadata.unwrap_or_default();
        assert_eq!((m.page, m.total), (page, 7));
        assert_eq!(m.size as usize, r.items.len());
        assert_eq!(r.items.len(), if page < 3 { 3 } else { 1 });
        seen.extend(r.items.into_iter().map(|s| s.name));
    }
    assert_eq!(seen, ["one", "s2", "s3", "s4", "s5", "s6", "s7"]);
    let all = c
        .list_sessions(ListSessionsRequest { page: 0, size: 0 })
        .await
        .unwrap_or_else(|e| panic!("list: {e}"))
        .into_inner();
    assert_eq!(
        all.items.len(),
        7,
        "page 0 / size 0 mean first page, default size"
    );

    // Update: labels replaced wholesale, other fields untouched.
    let updated = c
        .update_session(UpdateSessionRequest {
            id: meta.id.clone(),
            llm_model: Some("claude".into()),
            labels: Some(r#"{"c":"3"}"#.into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("update: {e}"))
        .into_inner();
    assert_eq!(updated.llm_model.as_deref(), Some("claude"));
    assert_eq!(updated.labels.as_deref(), Some(r#"{"c":"3"}"#));
    assert_eq!(updated.created_by_user_id.as_deref(), Some("dev"));
    assert_eq!(updated.name, "one");
    assert_eq!(updated.project_id.as_deref(), Some("proj-a"));

    // Status.
    let start = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 0,
    };
    let st = c
        .update_session_status(UpdateSessionStatusRequest {
            id: meta.id.clone(),
            phase: Some("Running".into()),
            start_time: Some(start),
            kube_namespace: Some("proj-a".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("status: {e}"))
        .into_inner();
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.start_time, Some(start));
    assert_eq!(st.kube_namespace.as_deref(), Some("proj-a"));
    for bad in [
        UpdateSessionStatusRequest {
            id: meta.id.clone(),
            phase: Some("Exploded".into()),
            ..Default::default()
        },
        UpdateSessionStatusRequest {
            id: meta.id.clone(),
            ..Default::default()
        },
    ] {
        let err = c
            .update_session_status(bad)
            .await
            .err()
            .unwrap_or_else(|| panic!("bad status accepted"));
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    let still = c
        .get_session(GetSessionRequest {
            id: meta.id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .into_inner();
    assert_eq!(still, st, "refused updates changed nothing");

    // Delete.
    c.delete_session(DeleteSessionRequest {
        id: meta.id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("delete: {e}"));
    let err = c
        .get_session(GetSessionRequest {
            id: meta.id.clone(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("deleted session still there"));
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .delete_session(DeleteSessionRequest { id: meta.id })
        .await
        .err()
        .unwrap_or_else(|| panic!("double delete accepted"));
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn session_watch_sees_rest_and_grpc_changes() {
    let d = common::start(&[]);
    let mut c = common::sessions(&d).await;
    let rest = Rest::new(&d);

    // A session that exists before the watch opens: not replayed.
    rest.create_session(json!({"name": "before"})).await;

    let mut watch = c
        .watch_sessions(WatchSessionsRequest {})
        .await
        .unwrap_or_else(|e| panic!("watch: {e}"))
        .into_inner();

    let made = rest
        .create_session(json!({"name": "rest-made", "project_id": "p"}))
        .await;
    let id = s(&made, "id").to_owned();
    let (st, _) = rest.post_empty(&format!("sessions/{id}/start")).await;
    assert_eq!(st, StatusCode::OK);
    let grpc_made = c
        .create_session(create("grpc-made"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let (st, _) = rest.delete(&format!("sessions/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    let mut got = Vec::new();
    for _ in 0..4 {
        let ev = guard("watch event", watch.message())
            .await
            .unwrap_or_else(|e| panic!("watch: {e}"))
            .unwrap_or_else(|| panic!("watch ended"));
        let kind = ev.r#type();
        assert_eq!(
            ev.session.is_none(),
            kind == EventType::Deleted,
            "only a DELETED event lacks the object"
        );
        let session = ev.session.unwrap_or_default();
        got.push((kind, ev.resource_id, session.name, session.phase));
    }
    let grpc_id = grpc_made.metadata.unwrap_or_default().id;
    assert_eq!(
        got,
        vec![
            (EventType::Created, id.clone(), "rest-made".into(), None),
            (
                EventType::Updated,
                id.clone(),
                "rest-made".into(),
                Some("Pending".into())
            ),
            (EventType::Created, grpc_id, "grpc-made".into(), None),
            (EventType::Deleted, id, String::new(), None),
        ]
    );
}

#[tokio::test]
async fn messages_cross_wires() {
    let d = common::start(&[]);
    let mut c = common::sessions(&d).await;
    let rest = Rest::new(&d);
    let session = rest
        .create_session(json!({"name": "m", "prompt": "hello there"}))
        .await;
    let id = s(&session, "id").to_owned();

    // The prompt is the first `user` message.
    let mut watch = c
        .watch_session_messages(WatchSessionMessagesRequest {
            session_id: id.clone(),
            after_seq: 0,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let first = guard("message", watch.message())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("ended"));
    assert_eq!(
        (first.seq, first.event_type.as_str(), first.payload.as_str()),
        (1, "user", "hello there")
    );

    // REST push → gRPC watch; gRPC push → REST list.
    let (st, m) = rest
        .post(
            &format!("sessions/{id}/messages"),
            json!({"event_type": "user", "payload": "from rest"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    assert_eq!(m["seq"], 2);
    let live = guard("message", watch.message())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("ended"));
    assert_eq!((live.seq, live.payload.as_str()), (2, "from rest"));

    let pushed = c
        .push_session_message(PushSessionMessageRequest {
            session_id: id.clone(),
            event_type: "assistant".into(),
            payload: "from grpc".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(pushed.seq, 3);
    let (st, list) = rest.get(&format!("sessions/{id}/messages")).await;
    assert_eq!(st, StatusCode::OK);
    let seqs: Vec<i64> = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let (_, after) = rest
        .get(&format!("sessions/{id}/messages?after_seq=2"))
        .await;
    assert_eq!(after[0]["payload"], "from grpc");
    assert_eq!(after.as_array().map(Vec::len), Some(1));

    // Deleting the session ends its message watch, after what was pending.
    let (st, _) = rest.delete(&format!("sessions/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let pending = guard("message", watch.message())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("ended before the pending message"));
    assert_eq!(pending.seq, 3);
    let end = guard("end of watch", watch.message())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(end.is_none(), "watch of a deleted session kept going");
    let (st, _) = rest.get(&format!("sessions/{id}/messages")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Unknown session.
    let err = c
        .push_session_message(PushSessionMessageRequest {
            session_id: "nope".into(),
            event_type: "assistant".into(),
            payload: "x".into(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("push to unknown session accepted"));
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .watch_session_messages(WatchSessionMessagesRequest {
            session_id: "nope".into(),
            after_seq: 0,
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("watch of unknown session accepted"));
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn projects_and_settings_over_grpc_and_rest() {
    let d = common::start(&[]);
    let mut p = common::projects(&d).await;
    let mut ps = common::settings(&d).await;
    let rest = Rest::new(&d);

    let mut pw = p
        .watch_projects(WatchProjectsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let mut sw = ps
        .watch_project_settings(WatchProjectSettingsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();

    let project = p
        .create_project(CreateProjectRequest {
            name: "alpha".into(),
            description: Some("first".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let pid = project.metadata.clone().unwrap_or_default().id;
    assert_eq!(pid, "alpha", "a project's ID is its name");

    // REST sees the gRPC-made project and patches it; the gRPC watch sees both.
    let (st, body) = rest.get(&format!("projects/{pid}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["kind"], "Project");
    assert_eq!(body["description"], "first");
    let (st, body) = rest
        .patch(
            &format!("projects/{pid}"),
            json!({"description": "second", "prompt": "be nice"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["prompt"], "be nice");
    let got = p
        .get_project(GetProjectRequest { id: pid.clone() })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(got.description.as_deref(), Some("second"));
    let upd = p
        .update_project(UpdateProjectRequest {
            id: pid.clone(),
            status: Some("Active".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(upd.status.as_deref(), Some("Active"));
    let (_, body) = rest.get(&format!("projects/{pid}")).await;
    assert_eq!(
        body["prompt"], "be nice",
        "gRPC update keeps the REST-only prompt"
    );

    for expected in [EventType::Created, EventType::Updated, EventType::Updated] {
        let ev = guard("project event", pw.message())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("ended"));
        assert_eq!(
            (ev.r#type(), ev.resource_id.as_str()),
            (expected, pid.as_str())
        );
    }

    // Settings.
    let settings = ps
        .create_project_settings(CreateProjectSettingsRequest {
            project_id: pid.clone(),
            group_access: Some(r#"[{"groupName":"devs","role":"edit"}]"#.into()),
            repositories: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let sid = settings.metadata.clone().unwrap_or_default().id;
    assert_eq!(
        settings.metadata.unwrap_or_default().kind,
        "ProjectSettings"
    );
    ps.update_project_settings(UpdateProjectSettingsRequest {
        id: sid.clone(),
        repositories: Some("[]".into()),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let list = ps
        .list_project_settings(ListProjectSettingsRequest { page: 1, size: 10 })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(list.metadata.unwrap_or_default().total, 1);
    assert_eq!(list.items[0].repositories.as_deref(), Some("[]"));
    for expected in [EventType::Created, EventType::Updated] {
        let ev = guard("settings event", sw.message())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("ended"));
        assert_eq!(
            (ev.r#type(), ev.resource_id.as_str()),
            (expected, sid.as_str())
        );
    }

    p.delete_project(DeleteProjectRequest { id: pid.clone() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ev = guard("project event", pw.message())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("ended"));
    assert_eq!(ev.r#type(), EventType::Deleted);
    assert_eq!(ev.resource_id, pid);
    assert!(ev.project.is_none(), "a DELETED event carries only the ID");
    let (st, body) = rest.get(&format!("projects/{pid}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    common::assert_error_body(&body);
}

#[tokio::test]
async fn grpc_needs_a_valid_bearer() {
    let d = common::start(&[]);
    for token in [None, Some("wrong-token"), Some("")] {
        let mut c = common::sessions_with(&d, token).await;
        let err = c
            .list_sessions(ListSessionsRequest { page: 1, size: 1 })
            .await
            .err()
            .unwrap_or_else(|| panic!("token {token:?} accepted"));
        assert_eq!(err.code(), Code::Unauthenticated, "token {token:?}");
        let err = c
            .watch_sessions(WatchSessionsRequest {})
            .await
            .err()
            .unwrap_or_else(|| panic!("watch with token {token:?} accepted"));
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let mut ok = common::sessions(&d).await;
    ok.list_sessions(ListSessionsRequest { page: 1, size: 1 })
        .await
        .unwrap_or_else(|e| panic!("valid token refused: {e}"));
}

#[tokio::test]
async fn a_service_may_not_push_user_messages() {
    let d = common::start(&[]);
    let mut c = common::sessions(&d).await;
    let rest = Rest::new(&d);
    let session = rest.create_session(json!({"name": "m"})).await;
    let id = s(&session, "id").to_owned();
    let err = c
        .push_session_message(PushSessionMessageRequest {
            session_id: id.clone(),
            event_type: "user".into(),
            payload: "pretending to be the user".into(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("a user push over gRPC was accepted"));
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .push_session_message(PushSessionMessageRequest {
            session_id: id.clone(),
            event_type: String::new(),
            payload: "no type".into(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("a push without event type was accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    let (_, msgs) = rest.get(&format!("sessions/{id}/messages")).await;
    assert_eq!(msgs, json!([]), "refused pushes stored nothing");
    let ok = c
        .push_session_message(PushSessionMessageRequest {
            session_id: id,
            event_type: "assistant".into(),
            payload: "hi".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!((ok.seq, ok.event_type.as_str()), (1, "assistant"));
}

#[tokio::test]
async fn settings_deletion_event_carries_only_the_id() {
    let d = common::start(&[]);
    let mut ps = common::settings(&d).await;
    let mut sw = ps
        .watch_project_settings(WatchProjectSettingsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let created = ps
        .create_project_settings(CreateProjectSettingsRequest {
            project_id: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let sid = created.metadata.unwrap_or_default().id;
    ps.delete_project_settings(ambient_protocol::v1::DeleteProjectSettingsRequest {
        id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut events = Vec::new();
    for _ in 0..2 {
        let ev = guard("settings event", sw.message())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("ended"));
        events.push((ev.r#type(), ev.resource_id, ev.project_settings.is_some()));
    }
    assert_eq!(
        events,
        [
            (EventType::Created, sid.clone(), true),
            (EventType::Deleted, sid, false)
        ]
    );
}
