//! REST `/api/ambient/v1` against the real binary: CRUD and status codes,
//! phase transitions, search, list envelope, label replacement, agents,
//! credentials, and bad input that must change nothing.

mod common;

use common::{Rest, assert_error_body, s};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn session_crud_and_phase_transitions() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);

    let (st, body) = rest.post("sessions", json!({"prompt": "no name"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "name is required");
    assert_error_body(&body);

    let created = rest
        .create_session(json!({
            "name": "s1",
            "project_id": "proj",
            "prompt": "do it",
            "timeout": 60,
            "llm_temperature": 0.5,
            "labels": "{\"team\":\"a\",\"keep\":\"x\"}",
            "created_by_user_id": "mallory",
            "something_unknown": {"ignored": true},
        }))
        .await;
    assert_eq!(
        created["created_by_user_id"], "dev",
        "the creator is the caller, not the body"
    );
    let id = s(&created, "id").to_owned();
    assert_eq!(created["kind"], "Session");
    assert_eq!(created["href"], format!("/api/ambient/v1/sessions/{id}"));
    assert!(
        created.get("phase").is_none(),
        "created with an empty phase"
    );
    assert!(created.get("something_unknown").is_none());
    assert_eq!(created["timeout"], 60);
    assert!(
        created["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(created["created_at"], created["updated_at"]);

    let (st, got) = rest.get(&format!("sessions/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got, created);

    // The prompt is the first message.
    let (_, msgs) = rest.get(&format!("sessions/{id}/messages")).await;
    assert_eq!(msgs[0]["seq"], 1);
    assert_eq!(msgs[0]["event_type"], "user");
    assert_eq!(msgs[0]["payload"], "do it");

    // Patch: fields set, labels replaced wholesale (no server-side merge).
    let (st, patched) = rest
        .patch(
            &format!("sessions/{id}"),
            json!({"llm_model": "m1", "labels": "{\"env\":\"dev\"}", "project_id": "elsewhere"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{patched}");
    assert_eq!(patched["llm_model"], "m1");
    assert_eq!(patched["labels"], "{\"env\":\"dev\"}");
    assert_eq!(patched["name"], "s1");
    assert_eq!(patched["project_id"], "proj", "PATCH ignores project_id");

    // Phases: stop before start → 409; start → Pending; start again → 409;
    // stop → Stopping; stop again → 409; status Stopped; start again → Pending.
    let start = format!("sessions/{id}/start");
    let stop = format!("sessions/{id}/stop");
    let status = format!("sessions/{id}/status");
    let (st, body) = rest.post_empty(&stop).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_error_body(&body);
    let (st, body) = rest.post_empty(&start).await;
    assert_eq!((st, &body["phase"]), (StatusCode::OK, &json!("Pending")));
    let (st, body) = rest.post_empty(&start).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_error_body(&body);
    let (st, body) = rest
        .patch(
            &status,
            json!({"phase": "Running", "start_time": "2025-01-02T03:04:05Z"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["start_time"], "2025-01-02T03:04:05Z");
    let (st, body) = rest.post_empty(&stop).await;
    assert_eq!((st, &body["phase"]), (StatusCode::OK, &json!("Stopping")));
    let (st, _) = rest.post_empty(&stop).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = rest.post_empty(&start).await;
    assert_eq!(st, StatusCode::CONFLICT, "Stopping is not startable");
    let (st, body) = rest
        .patch(
            &status,
            json!({"phase": "Stopped", "completion_time": "2025-01-02T04:00:00+01:00", "sdk_restart_count": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["completion_time"], "2025-01-02T03:00:00Z");
    assert_eq!(body["sdk_restart_count"], 2);
    let (st, body) = rest.post_empty(&start).await;
    assert_eq!((st, &body["phase"]), (StatusCode::OK, &json!("Pending")));

    // Transitions on an unknown session are 404.
    let (st, body) = rest.post_empty("sessions/nope/start").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error_body(&body);

    // Delete.
    let (st, _) = rest.delete(&format!("sessions/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = rest.get(&format!("sessions/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error_body(&body);
    let (st, _) = rest.delete(&format!("sessions/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_envelope_pagination_and_search() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let mut ids = Vec::new();
    for (name, project) in [
        ("alpha-1", "p1"),
        ("alpha-2", "p1"),
        ("beta", "p2"),
        ("it's", "p2"),
        ("ALPHA-3", "p1"),
    ] {
        let s = rest
            .create_session(json!({"name": name, "project_id": project}))
            .await;
        ids.push(common::s(&s, "id").to_owned());
    }
    let (st, _) = rest.post_empty(&format!("sessions/{}/start", ids[1])).await;
    assert_eq!(st, StatusCode::OK);

    let (st, page) = rest.get("sessions?page=2&size=2").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(page["kind"], "SessionList");
    assert_eq!(
        (
            page["page"].clone(),
            page["size"].clone(),
            page["total"].clone()
        ),
        (json!(2), json!(2), json!(5))
    );
    assert_eq!(page["items"][0]["name"], "beta");

    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let search = |q: &str| {
        let rest = rest.clone();
        let q = q.to_owned();
        async move {
            let rb = rest
                .request(Method::GET, "sessions")
                .query(&[("search", q.as_str())]);
            rest.send(rb).await
        }
    };

    let (st, v) = search("project_id = 'p1'").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(names(&v), ["alpha-1", "alpha-2", "ALPHA-3"]);
    assert_eq!(v["total"], 3);
    let (_, v) = search("name like 'alpha%'").await;
    assert_eq!(names(&v), ["alpha-1", "alpha-2"], "like is case-sensitive");
    let (_, v) = search("project_id = 'p1' and phase = 'Pending'").await;
    assert_eq!(names(&v), ["alpha-2"]);
    let (_, v) = search("name = 'it''s'").await;
    assert_eq!(names(&v), ["it's"]);
    let (_, v) = search("name like 'alpha-_' and project_id = 'p1'").await;
    assert_eq!(names(&v), ["alpha-1", "alpha-2"]);
    let (_, v) = search("phase = 'Running'").await;
    assert_eq!(v["total"], 0);
    assert_eq!(v["items"], json!([]));
    let (_, v) = search("name = 'beta' or name = 'it''s'").await;
    assert_eq!(names(&v), ["beta", "it's"]);
    let (_, v) = search("(name = 'alpha-1')").await;
    assert_eq!(names(&v), ["alpha-1"]);

    for bad in [
        "phase = 'Exploded'",
        "phase in ('Running', 'Exploded')",
        "name = alpha",
        "token = 'x'",
        "name = 'unterminated",
        "name = 'a'; delete",
        "(name = 'a'",
        "name = 'bell\u{7}'",
    ] {
        let (st, body) = search(bad).await;
        assert_eq!(
            st,
            StatusCode::BAD_REQUEST,
            "search {bad:?} accepted: {body}"
        );
        assert_error_body(&body);
    }
    let (st, body) = rest.get("sessions?page=abc").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_error_body(&body);
}

/// `like` over REST with the glob metacharacters of the store's `GLOB`
/// (`[`, `*`, `?`) and a backslash in the values: literal characters, not
/// patterns; `%` and `_` are `like`'s own wildcards. (Only a unit test of
/// the translation pinned this before; gRPC lists have no search.)
#[tokio::test]
async fn like_treats_glob_metacharacters_literally() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let all = [
        "a[1]", "a1", "a*b", "a?b", "a%b", "a_b", "a\\b", "axb", "ab",
    ];
    for name in all {
        let s = rest
            .create_session(json!({"name": name, "project_id": "glob"}))
            .await;
        assert!(!common::s(&s, "id").is_empty(), "{name}: {s}");
    }
    let search = |q: String| {
        let rest = rest.clone();
        async move {
            let rb = rest
                .request(Method::GET, "sessions")
                .query(&[("search", q.as_str()), ("size", "100")]);
            let (st, v) = rest.send(rb).await;
            assert_eq!(st, StatusCode::OK, "{q}: {v}");
            let mut names: Vec<String> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            names.sort();
            names
        }
    };
    let three = {
        let mut v = vec!["a%b", "a*b", "a?b", "a\\b", "a_b", "axb"];
        v.sort();
        v
    };
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("name like 'a[1]'", vec!["a[1]"]),
        ("name like '%]'", vec!["a[1]"]),
        ("name like 'a*b'", vec!["a*b"]),
        ("name like 'a?b'", vec!["a?b"]),
        ("name like 'a\\b'", vec!["a\\b"]),
        ("name like 'a\\%'", vec!["a\\b"]),
        ("name like 'a%b'", {
            let mut v = three.clone();
            v.push("ab");
            v.sort();
            v
        }),
        ("name like 'a_b'", three),
        ("name not like '%[%'", {
            let mut v: Vec<&str> = all.iter().copied().filter(|n| !n.contains('[')).collect();
            v.sort();
            v
        }),
    ];
    for (q, want) in cases {
        let q = format!("project_id = 'glob' and {q}");
        assert_eq!(search(q.clone()).await, want, "{q}");
    }
}

#[tokio::test]
async fn projects_and_agents() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let (st, body) = rest.post("projects", json!({"description": "x"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_error_body(&body);
    let (st, p) = rest
        .post(
            "projects",
            json!({"name": "proj", "description": "d", "prompt": "p", "labels": "{\"a\":\"1\"}"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let pid = s(&p, "id").to_owned();
    assert_eq!(pid, "proj", "a project's ID is its name");
    assert_eq!(p["kind"], "Project");
    assert_eq!(p["prompt"], "p");
    let (st, list) = rest.get("projects").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (list["kind"].clone(), list["total"].clone()),
        (json!("ProjectList"), json!(1))
    );
    let (st, p2) = rest
        .patch(
            &format!("projects/{pid}"),
            json!({"labels": "{\"b\":\"2\"}", "status": "Ready"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(p2["labels"], "{\"b\":\"2\"}", "labels are replaced");
    assert_eq!(p2["status"], "Ready");

    let agents = format!("projects/{pid}/agents");
    let (st, body) = rest.post(&agents, json!({"prompt": "no name"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_error_body(&body);
    let (st, a1) = rest
        .post(
            &agents,
            json!({"name": "reviewer", "project_id": pid, "prompt": "review", "owner_user_id": "mallory"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a1}");
    // The path names the project; a body `project_id` does not move the agent.
    let (st, w) = rest
        .post(
            &agents,
            json!({"name": "writer", "project_id": "other", "llm_model": "m"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(w["project_id"], pid.as_str());
    assert_eq!(w["llm_model"], "m");
    let aid = s(&a1, "id").to_owned();
    assert_eq!(a1["kind"], "Agent");
    assert_eq!(a1["project_id"], pid.as_str());
    assert_eq!(a1["owner_user_id"], "dev", "the owner is the caller");
    assert_eq!(
        (
            &a1["llm_model"],
            &a1["llm_temperature"],
            &a1["llm_max_tokens"]
        ),
        (&json!("claude-sonnet-4-6"), &json!(0.7), &json!(4000)),
        "the reference's defaults"
    );
    assert_eq!(
        a1["href"],
        format!("/api/ambient/v1/projects/{pid}/agents/{aid}")
    );

    let (st, list) = rest.get(&agents).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (list["kind"].clone(), list["total"].clone()),
        (json!("AgentList"), json!(2))
    );
    let rb = rest
        .request(Method::GET, &agents)
        .query(&[("search", "name = 'writer'")]);
    let (st, list) = rest.send(rb).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["name"], "writer");
    let rb = rest
        .request(Method::GET, &agents)
        .query(&[("search", "token = 'x'")]);
    let (st, _) = rest.send(rb).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let (st, got) = rest.get(&format!("{agents}/{aid}")).await;
    assert_eq!((st, &got), (StatusCode::OK, &a1));
    let (st, patched) = rest
        .patch(
            &format!("{agents}/{aid}"),
            json!({"prompt": "review harder"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(patched["prompt"], "review harder");
    assert_eq!(patched["name"], "reviewer");
    // An agent is only reachable under its own project: 403 elsewhere.
    let (st, body) = rest.get(&format!("projects/other/agents/{aid}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_error_body(&body);
    let (st, _) = rest
        .patch(
            &format!("projects/other/agents/{aid}"),
            json!({"prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = rest.delete(&format!("projects/other/agents/{aid}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = rest.get(&format!("{agents}/nope")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, still) = rest.get(&format!("{agents}/{aid}")).await;
    assert_eq!(still["prompt"], "review harder");

    let (st, _) = rest.delete(&format!("projects/{pid}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = rest.get(&format!("projects/{pid}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn credentials_token_is_write_only() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let secret = "ghp_supersecret_value_1";
    // The reference does not validate the provider.
    let (st, body) = rest
        .post(
            "credentials",
            json!({"name": "other", "provider": "myspace", "token": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["provider"], "myspace");
    let (st, body) = rest
        .post("credentials", json!({"name": "none", "token": "x"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a provider is still required");
    assert_error_body(&body);
    let (st, c) = rest
        .post(
            "credentials",
            json!({"name": "gh", "provider": "github", "token": secret, "url": "https://github.com", "email": "a@b.c"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert!(!c.to_string().contains(secret), "create echoed the token");
    assert!(c.get("token").is_none());
    let id = s(&c, "id").to_owned();
    assert_eq!(c["kind"], "Credential");

    let (st, meta) = rest.get(&format!("credentials/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(!meta.to_string().contains(secret));
    assert_eq!(meta["provider"], "github");
    assert_eq!(meta["email"], "a@b.c");
    let (_, list) = rest.get("credentials").await;
    assert!(!list.to_string().contains(secret));

    let (st, tok) = rest.get(&format!("credentials/{id}/token")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        tok,
        json!({"credential_id": id, "provider": "github", "token": secret})
    );

    // Rotate.
    let (st, patched) = rest
        .patch(
            &format!("credentials/{id}"),
            json!({"token": "ghp_rotated"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(patched.get("token").is_none());
    let (_, tok) = rest.get(&format!("credentials/{id}/token")).await;
    assert_eq!(tok["token"], "ghp_rotated");

    let (st, body) = rest.get("credentials/nope/token").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error_body(&body);
    assert!(
        !d.logs().contains(secret) && !d.logs().contains("ghp_rotated"),
        "a credential token reached the logs"
    );
}

/// The reference runner fetches `/projects/{p}/credentials/{id}/token`:
/// every credential route is served under a project path too, the same
/// credential whatever the project segment (as the reference answers).
#[tokio::test]
async fn credential_routes_are_served_under_a_project_path_too() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let secret = "ghp_project_path_value_2";
    let (st, c) = rest
        .post(
            "projects/p1/credentials",
            json!({"name": "gh", "provider": "github", "token": secret}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let id = s(&c, "id").to_owned();
    let (st, tok) = rest
        .get(&format!("projects/p1/credentials/{id}/token"))
        .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(
        tok,
        json!({"credential_id": id, "provider": "github", "token": secret})
    );
    let (st, meta) = rest.get(&format!("projects/p1/credentials/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(meta["provider"], "github");
    assert!(!meta.to_string().contains(secret));
    let (st, list) = rest.get("projects/p1/credentials").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["kind"], "CredentialList");
    let (st, _) = rest
        .patch(
            &format!("projects/p1/credentials/{id}"),
            json!({"token": "ghp_rotated_2"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, tok) = rest.get(&format!("credentials/{id}/token")).await;
    assert_eq!(tok["token"], "ghp_rotated_2");
    let (st, body) = rest.get("projects/p1/credentials/nope/token").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error_body(&body);
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let original = rest
        .create_session(json!({"name": "keep", "timeout": 5, "labels": "{\"a\":\"1\"}"}))
        .await;
    let id = s(&original, "id").to_owned();
    let one = format!("sessions/{id}");
    let oversized = {
        let mut v = br#"{"name":"big","prompt":""#.to_vec();
        v.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 1));
        v.extend(br#""}"#);
        v
    };

    let cases: Vec<(Method, String, Vec<u8>, StatusCode)> = vec![
        (
            Method::POST,
            "sessions".into(),
            br#"{"name": 5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "sessions".into(),
            br#"{"name": "x", "timeout": "soon"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "sessions".into(),
            br#"{"name": "x", "timeout": 99999999999}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "sessions".into(),
            br#"{"name": "x", "labels": {"a": "1"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "sessions".into(),
            br#"{"name": "x", "labels": "not json"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "sessions".into(),
            br#"{"name": "x""#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "sessions".into(),
            b"[1,2]".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "sessions".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "sessions".into(),
            oversized.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::PATCH,
            one.clone(),
            br#"{"name": "changed", "timeout": "x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            one.clone(),
            br#"{"name": ""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            one.clone(),
            br#"{"name": "changed", "labels": "[]"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            one.clone(),
            oversized.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::PATCH,
            format!("{one}/status"),
            br#"{"phase": "Exploded"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            format!("{one}/status"),
            br#"{"phase": "running"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            format!("{one}/status"),
            br#"{}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            format!("{one}/status"),
            br#"{"unknown": 1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            format!("{one}/status"),
            br#"{"phase": "Running", "start_time": "yesterday"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            format!("{one}/status"),
            br#"{"phase": "Running", "sdk_restart_count": "2"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("{one}/messages"),
            br#"{"event_type": "user", "payload": {"a": 1}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("{one}/messages"),
            br#"{"event_type": 7, "payload": "x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("{one}/messages"),
            oversized,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::PUT,
            one.clone(),
            br#"{"name": "x"}"#.to_vec(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            "no-such-collection".into(),
            Vec::new(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, body, want) in cases {
        let label = format!("{method} {path} ({} bytes)", body.len());
        let (st, resp) = rest.raw(method, &path, body).await;
        assert_eq!(st, want, "{label}: {resp}");
        assert_error_body(&resp);
    }

    let (_, after) = rest.get(&one).await;
    assert_eq!(after, original, "refused requests changed the session");
    let (_, list) = rest.get("sessions").await;
    assert_eq!(list["total"], 1, "refused creates created something");
    let (_, msgs) = rest.get(&format!("{one}/messages")).await;
    assert_eq!(msgs, json!([]), "refused message posts stored something");

    // Exactly 1 MiB is accepted.
    let mut limit = br#"{"name":"edge","prompt":""#.to_vec();
    let pad = 1024 * 1024 - limit.len() - 2;
    limit.extend(std::iter::repeat_n(b'y', pad));
    limit.extend(br#""}"#);
    assert_eq!(limit.len(), 1024 * 1024);
    let (st, body) = rest.raw(Method::POST, "sessions", limit).await;
    assert_eq!(st, StatusCode::CREATED, "{}", body["reason"]);
}

#[tokio::test]
async fn rest_needs_a_valid_bearer() {
    let d = common::start(&[]);
    let paths = [
        (Method::GET, "sessions"),
        (Method::POST, "sessions"),
        (Method::GET, "projects"),
        (Method::GET, "credentials/x/token"),
        (Method::GET, "projects/p/agents"),
    ];
    for token in [None, Some("wrong-token")] {
        let rest = Rest::with_token(&d, token);
        for (method, path) in &paths {
            let (st, body) = rest
                .send(
                    rest.request(method.clone(), path)
                        .json(&json!({"name": "x"})),
                )
                .await;
            assert_eq!(
                st,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert_error_body(&body);
        }
    }
    let rest = Rest::new(&d);
    let (st, list) = rest.get("sessions").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["total"], 0, "unauthenticated creates stored nothing");
    let anonymous = Rest::with_token(&d, None);
    let (st, _) = anonymous
        .send(
            anonymous
                .request(Method::GET, "sessions")
                .header("authorization", "Basic dGVzdA=="),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
