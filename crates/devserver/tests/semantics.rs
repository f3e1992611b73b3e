//! The reference API server's semantics, over real sockets: project IDs are
//! names, project scope from `X-Ambient-Project`, PATCH replaces labels,
//! the tree-search language and `orderBy` on every resource, roles and role
//! bindings, inboxes, session phase transitions and status round trips.

mod common;

use common::{Rest, assert_error_body, guard, s};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `GET path` with query parameters.
async fn list(rest: &Rest, path: &str, params: &[(&str, &str)]) -> (StatusCode, Value) {
    rest.send(rest.request(Method::GET, path).query(params))
        .await
}

/// The `key` of every item of a list answer.
fn column(v: &Value, key: &str) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|i| match &i[key] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect()
}

async fn search(rest: &Rest, path: &str, q: &str) -> Vec<String> {
    let (st, v) = list(rest, path, &[("search", q)]).await;
    assert_eq!(st, StatusCode::OK, "search {q:?} on {path}: {v}");
    column(&v, "name")
}

#[tokio::test]
async fn project_ids_are_validated_unique_names() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    for bad in [
        "", "a", "A-team", "1st", "-x", "x-", "team_x", "team x", "tëam", "ab/c",
    ] {
        let (st, body) = rest.post("projects", json!({"name": bad})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "name {bad:?} accepted: {body}");
        assert_error_body(&body);
    }
    let long = format!("a{}", "b".repeat(63));
    let (st, _) = rest.post("projects", json!({"name": long})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "64 characters");
    let (st, p) = rest.post("projects", json!({"name": &long[..63]})).await;
    assert_eq!(st, StatusCode::CREATED, "63 characters: {p}");

    let (st, p) = rest
        .post(
            "projects",
            json!({"name": "team-x", "description": "first"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!(p["id"], "team-x");
    assert_eq!(p["href"], "/api/ambient/v1/projects/team-x");
    let (st, body) = rest
        .post(
            "projects",
            json!({"name": "team-x", "description": "second"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_error_body(&body);
    let (_, got) = rest.get("projects/team-x").await;
    assert_eq!(got["description"], "first", "the duplicate changed nothing");
    let (st, _) = rest
        .patch("projects/team-x", json!({"name": "team-y"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "the ID cannot be renamed");
    let (st, _) = rest
        .patch(
            "projects/team-x",
            json!({"name": "team-x", "description": "d"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, all) = rest.get("projects").await;
    assert_eq!(all["total"], 2);

    // The creator's owner binding, as on the reference.
    let (_, roles) = list(&rest, "roles", &[("search", "name = 'project:owner'")]).await;
    let owner_role = s(&roles["items"][0], "id").to_owned();
    let (_, b) = list(
        &rest,
        "role_bindings",
        &[("search", "scope = 'project' and project_id = 'team-x'")],
    )
    .await;
    assert_eq!(b["total"], 1, "{b}");
    assert_eq!(b["items"][0]["role_id"], owner_role.as_str());
    assert_eq!(b["items"][0]["user_id"], "dev");
}

#[tokio::test]
async fn project_scope_comes_from_the_query_or_the_sdk_header() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let create = |header: Option<&str>, query: Option<&str>, body: Value| {
        let mut rb = rest.request(Method::POST, "sessions").json(&body);
        if let Some(h) = header {
            rb = rb.header("X-Ambient-Project", h);
        }
        if let Some(q) = query {
            rb = rb.query(&[("project_id", q)]);
        }
        rest.send(rb)
    };
    let (st, a) = create(Some("alpha"), None, json!({"name": "a1"})).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(a["project_id"], "alpha", "the header scopes a create");
    let (_, b) = create(
        Some("alpha"),
        None,
        json!({"name": "b1", "project_id": "beta"}),
    )
    .await;
    assert_eq!(b["project_id"], "beta", "an explicit project_id wins");
    let (_, b2) = create(Some("alpha"), Some("beta"), json!({"name": "b2"})).await;
    assert_eq!(
        b2["project_id"], "beta",
        "?project_id= wins over the header"
    );
    let (_, n) = create(None, None, json!({"name": "none"})).await;
    assert!(n.get("project_id").is_none(), "{n}");

    let scoped = |header: Option<&str>, query: Option<&str>| {
        let mut rb = rest.request(Method::GET, "sessions");
        if let Some(h) = header {
            rb = rb.header("X-Ambient-Project", h);
        }
        if let Some(q) = query {
            rb = rb.query(&[("project_id", q)]);
        }
        rest.send(rb)
    };
    let (_, v) = scoped(Some("alpha"), None).await;
    assert_eq!(column(&v, "name"), ["a1"]);
    let (_, v) = scoped(Some("alpha"), Some("beta")).await;
    assert_eq!(column(&v, "name"), ["b1", "b2"]);
    let (_, v) = scoped(None, None).await;
    assert_eq!(v["total"], 4);
    // The scope and a search both apply.
    let rb = rest
        .request(Method::GET, "sessions")
        .header("X-Ambient-Project", "beta")
        .query(&[("search", "name = 'b2' or name = 'a1'")]);
    let (_, v) = rest.send(rb).await;
    assert_eq!(column(&v, "name"), ["b2"]);

    for bad in ["a b", "x'y", "p;q", ""] {
        let (st, body) = scoped(Some(bad), None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "header {bad:?}: {body}");
        assert_error_body(&body);
        let (st, _) = scoped(None, Some(bad)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "query {bad:?}");
        let (st, _) = create(Some(bad), None, json!({"name": "no"})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "create with header {bad:?}");
    }
    let (_, v) = scoped(None, None).await;
    assert_eq!(v["total"], 4, "refused creates created nothing");
}

/// GET, merge locally (an empty value deletes a key), PATCH the whole
/// object back: the wire.md §2 client flow.
async fn get_merge_patch(rest: &Rest, path: &str, field: &str, changes: Value) -> Value {
    let (_, current) = rest.get(path).await;
    let mut obj: serde_json::Map<String, Value> =
        serde_json::from_str(current[field].as_str().unwrap_or("{}"))
            .unwrap_or_else(|e| panic!("{field} of {path}: {e}"));
    for (k, v) in changes.as_object().cloned().unwrap_or_default() {
        if v.as_str() == Some("") {
            obj.remove(&k);
        } else {
            obj.insert(k, v);
        }
    }
    let (st, patched) = rest
        .patch(path, json!({ field: Value::Object(obj).to_string() }))
        .await;
    assert_eq!(st, StatusCode::OK, "{patched}");
    let (_, after) = rest.get(path).await;
    after
}

#[tokio::test]
async fn a_label_removed_by_get_merge_patch_is_gone_on_every_resource() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let both =
        json!({"labels": "{\"a\":\"1\",\"b\":\"2\"}", "annotations": "{\"x\":\"1\",\"y\":\"2\"}"});
    let with = |mut v: Value, extra: Value| {
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    let session = rest
        .create_session(with(json!({"name": "s"}), both.clone()))
        .await;
    let (_, _) = rest
        .post("projects", with(json!({"name": "lab"}), both.clone()))
        .await;
    let (_, agent) = rest
        .post(
            "projects/lab/agents",
            with(json!({"name": "ag"}), both.clone()),
        )
        .await;
    let (_, cred) = rest
        .post(
            "credentials",
            with(
                json!({"name": "c", "provider": "github", "token": "t"}),
                both,
            ),
        )
        .await;
    for path in [
        format!("sessions/{}", s(&session, "id")),
        "projects/lab".to_owned(),
        format!("projects/lab/agents/{}", s(&agent, "id")),
        format!("credentials/{}", s(&cred, "id")),
    ] {
        let after = get_merge_patch(&rest, &path, "labels", json!({"a": "", "c": "3"})).await;
        assert_eq!(after["labels"], "{\"b\":\"2\",\"c\":\"3\"}", "{path}");
        let after = get_merge_patch(&rest, &path, "annotations", json!({"y": ""})).await;
        assert_eq!(after["annotations"], "{\"x\":\"1\"}", "{path}");
        assert_eq!(
            after["labels"], "{\"b\":\"2\",\"c\":\"3\"}",
            "{path}: untouched"
        );
    }
}

#[tokio::test]
async fn search_operators_precedence_and_injection_on_sessions() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    for (name, project, timeout) in [
        ("a1", "p1", 10),
        ("a2", "p1", 20),
        ("b1", "p2", 30),
        ("b2", "p2", 40),
        ("c1", "p3", 50),
    ] {
        rest.create_session(json!({"name": name, "project_id": project, "timeout": timeout}))
            .await;
    }
    for (q, want) in [
        ("name = 'a1'", vec!["a1"]),
        ("name != 'a1'", vec!["a2", "b1", "b2", "c1"]),
        ("name <> 'a1' and project_id = 'p1'", vec!["a2"]),
        ("name like 'b%'", vec!["b1", "b2"]),
        ("name like '_1'", vec!["a1", "b1", "c1"]),
        ("name not like 'b%'", vec!["a1", "a2", "c1"]),
        ("name in ('a1', 'c1', 'zz')", vec!["a1", "c1"]),
        ("name not in ('a1', 'c1')", vec!["a2", "b1", "b2"]),
        ("not project_id = 'p1'", vec!["b1", "b2", "c1"]),
        ("timeout = 30", vec!["b1"]),
        ("timeout = '30'", vec!["b1"]),
        // `and` binds tighter than `or` ...
        (
            "project_id = 'p3' or project_id = 'p1' and name = 'a2'",
            vec!["a2", "c1"],
        ),
        // ... and parentheses regroup.
        (
            "(project_id = 'p3' or project_id = 'p1') and name = 'a2'",
            vec!["a2"],
        ),
        ("not (project_id = 'p1' or project_id = 'p2')", vec!["c1"]),
        ("created_by_user_id = 'dev' and name = 'c1'", vec!["c1"]),
        ("phase = ''", vec!["a1", "a2", "b1", "b2", "c1"]),
        ("agent_id != ''", vec![]),
        // Injection attempts are plain values.
        ("name = 'x'' or ''1''=''1'", vec![]),
        ("name = 'a1'' --'", vec![]),
    ] {
        assert_eq!(search(&rest, "sessions", q).await, want, "{q}");
    }
    for bad in [
        "name = 'a1'); DROP TABLE resources; --",
        "name = 'a1' or 1=1",
        "name = 'a1' union select 1",
        "idx = '{}'",
        "body = 'x'",
        "json_extract(idx, '$.name') = 'a1'",
        "name in ()",
        "(name = 'a1'",
        "name = 'a1' and or name = 'b1'",
    ] {
        let (st, body) = list(&rest, "sessions", &[("search", bad)]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad:?} accepted: {body}");
        assert_error_body(&body);
    }
    let (_, v) = rest.get("sessions").await;
    assert_eq!(v["total"], 5, "nothing was dropped");
}

#[tokio::test]
async fn order_by_sorts_by_any_column() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    for (name, timeout) in [("m", 5), ("z", 100), ("a", 20), ("k", 20)] {
        rest.create_session(json!({"name": name, "timeout": timeout}))
            .await;
    }
    for (order, want) in [
        ("", vec!["m", "z", "a", "k"]),
        ("name", vec!["a", "k", "m", "z"]),
        ("name desc", vec!["z", "m", "k", "a"]),
        ("timeout desc, name asc", vec!["z", "a", "k", "m"]),
        ("timeout asc, name desc", vec!["m", "k", "a", "z"]),
        ("created_at desc", vec!["k", "a", "z", "m"]),
    ] {
        let (st, v) = list(&rest, "sessions", &[("orderBy", order)]).await;
        assert_eq!(st, StatusCode::OK, "{order}: {v}");
        assert_eq!(column(&v, "name"), want, "orderBy {order:?}");
    }
    let (_, v) = list(
        &rest,
        "sessions",
        &[("orderBy", "name desc"), ("page", "2"), ("size", "3")],
    )
    .await;
    assert_eq!(column(&v, "name"), ["a"], "pages follow the order");
    for bad in ["token", "name sideways", "name; drop", "name,,timeout"] {
        let (st, body) = list(&rest, "sessions", &[("orderBy", bad)]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "orderBy {bad:?}: {body}");
        assert_error_body(&body);
    }
    // Other resources too.
    for name in ["pb", "pc", "pa"] {
        rest.post("projects", json!({"name": name})).await;
    }
    let (_, v) = list(&rest, "projects", &[("orderBy", "name")]).await;
    assert_eq!(column(&v, "name"), ["pa", "pb", "pc"]);
}

#[tokio::test]
async fn every_resource_is_searchable_on_its_columns() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    rest.post("projects", json!({"name": "one", "description": "first"}))
        .await;
    rest.post("projects", json!({"name": "two"})).await;
    rest.patch("projects/two", json!({"status": "Ready"})).await;
    assert_eq!(
        search(&rest, "projects", "description = 'first'").await,
        ["one"]
    );
    assert_eq!(search(&rest, "projects", "status != ''").await, ["two"]);

    rest.post(
        "projects/one/agents",
        json!({"name": "x", "llm_model": "m1"}),
    )
    .await;
    rest.post(
        "projects/one/agents",
        json!({"name": "y", "llm_max_tokens": 10}),
    )
    .await;
    rest.post(
        "projects/two/agents",
        json!({"name": "z", "llm_model": "m1"}),
    )
    .await;
    assert_eq!(
        search(&rest, "projects/one/agents", "llm_model = 'm1'").await,
        ["x"]
    );
    assert_eq!(
        search(&rest, "projects/one/agents", "llm_max_tokens = 10").await,
        ["y"]
    );
    assert_eq!(
        search(&rest, "projects/one/agents", "owner_user_id = 'dev'").await,
        ["x", "y"]
    );

    for (name, provider) in [("gh", "github"), ("jr", "jira"), ("odd", "acme")] {
        rest.post(
            "credentials",
            json!({"name": name, "provider": provider, "token": "t"}),
        )
        .await;
    }
    assert_eq!(
        search(&rest, "credentials", "provider in ('jira', 'acme')").await,
        ["jr", "odd"]
    );
    let (st, _) = list(&rest, "credentials", &[("search", "token = 't'")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "the token is not a column");

    assert_eq!(
        search(
            &rest,
            "roles",
            "built_in = true and name like 'credential:%'"
        )
        .await,
        [
            "credential:owner",
            "credential:token-reader",
            "credential:viewer"
        ]
    );

    let (st, ps) = rest
        .post(
            "project_settings",
            json!({"project_id": "one", "group_access": "[]"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ps}");
    assert_eq!(ps["kind"], "ProjectSettings");
    let (_, v) = list(
        &rest,
        "project_settings",
        &[("search", "project_id = 'one'")],
    )
    .await;
    assert_eq!(column(&v, "id"), [s(&ps, "id")]);
    let (st, patched) = rest
        .patch(
            &format!("project_settings/{}", s(&ps, "id")),
            json!({"repositories": "[\"r\"]"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(patched["repositories"], "[\"r\"]");
    assert_eq!(patched["group_access"], "[]");
    let (_, v) = list(
        &rest,
        "project_settings",
        &[("search", "repositories like '%r%'")],
    )
    .await;
    assert_eq!(v["total"], 1);
    let (st, _) = rest
        .delete(&format!("project_settings/{}", s(&ps, "id")))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = rest
        .post("project_settings", json!({"group_access": "[]"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "project_id is required");
}

#[tokio::test]
async fn roles_are_seeded_and_role_bindings_searchable_by_every_field() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let (st, roles) = rest.get("roles").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(roles["kind"], "RoleList");
    let names = column(&roles, "name");
    for builtin in [
        "credential:owner",
        "credential:token-reader",
        "credential:viewer",
        "project:owner",
    ] {
        assert!(
            names.iter().any(|n| n == builtin),
            "{builtin} missing: {names:?}"
        );
    }
    let (st, r) = rest
        .post("roles", json!({"name": "custom", "permissions": "[\"x\"]"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(
        (&r["built_in"], &r["kind"]),
        (&json!(false), &json!("Role"))
    );
    let (st, got) = rest.get(&format!("roles/{}", s(&r, "id"))).await;
    assert_eq!((st, &got), (StatusCode::OK, &r));
    let (st, _) = rest.post("roles", json!({"name": "custom"})).await;
    assert_eq!(st, StatusCode::CONFLICT);

    // Creating a credential also binds its creator as owner.
    let (_, cred) = rest
        .post(
            "credentials",
            json!({"name": "gh", "provider": "github", "token": "t"}),
        )
        .await;
    let cid = s(&cred, "id").to_owned();
    let (_, owners) = list(
        &rest,
        "role_bindings",
        &[("search", &format!("credential_id = '{cid}'"))],
    )
    .await;
    assert_eq!(owners["total"], 1, "{owners}");
    assert_eq!(owners["items"][0]["user_id"], "dev");
    assert_eq!(owners["items"][0]["scope"], "credential");

    let full = json!({
        "role_id": "credential:viewer", "scope": "credential", "user_id": "u1",
        "project_id": "p1", "agent_id": "a1", "session_id": "s1", "credential_id": "c1",
    });
    let (st, b) = rest.post("role_bindings", full.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["kind"], "RoleBinding");
    let (st, bare) = rest
        .post("role_bindings", json!({"role_id": "r", "scope": "global"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    for key in [
        "user_id",
        "project_id",
        "agent_id",
        "session_id",
        "credential_id",
    ] {
        assert!(bare.get(key).is_none(), "{key} is nullable: {bare}");
    }
    let bid = s(&b, "id").to_owned();
    for (field, value) in full.as_object().cloned().unwrap_or_default() {
        let q = format!("{field} = '{}'", value.as_str().unwrap_or_default());
        let (st, v) = list(&rest, "role_bindings", &[("search", &q)]).await;
        assert_eq!(st, StatusCode::OK, "{q}");
        let ids = column(&v, "id");
        assert!(ids.contains(&bid), "{q}: {ids:?}");
        if field != "scope" {
            // Every other value is unique to this binding.
            assert_eq!(ids, [bid.as_str()], "{q}");
        }
    }
    let (_, v) = list(
        &rest,
        "role_bindings",
        &[("search", "scope = 'global' and user_id = ''")],
    )
    .await;
    assert_eq!(column(&v, "id"), [s(&bare, "id")]);

    for bad in [
        json!({"scope": "global"}),
        json!({"role_id": "r"}),
        json!({"role_id": "r", "scope": "galaxy"}),
    ] {
        let (st, body) = rest.post("role_bindings", bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (st, p) = rest
        .patch(&format!("role_bindings/{bid}"), json!({"session_id": "s2"}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (&p["session_id"], &p["user_id"]),
        (&json!("s2"), &json!("u1"))
    );
    let (st, _) = rest
        .patch(&format!("role_bindings/{bid}"), json!({"scope": "galaxy"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = rest.delete(&format!("role_bindings/{bid}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = rest.get(&format!("role_bindings/{bid}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn agent_inbox_over_rest_and_grpc() {
    use ambient_protocol::v1::WatchInboxMessagesRequest;
    use ambient_protocol::v1::inbox_service_client::InboxServiceClient;

    let d = common::start(&[]);
    let rest = Rest::new(&d);
    rest.post("projects", json!({"name": "home"})).await;
    rest.post("projects", json!({"name": "away"})).await;
    let (_, agent) = rest
        .post("projects/home/agents", json!({"name": "a"}))
        .await;
    let aid = s(&agent, "id").to_owned();
    let inbox = format!("projects/home/agents/{aid}/inbox");

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", d.addr("grpc")))
        .unwrap_or_else(|e| panic!("{e}"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut client =
        InboxServiceClient::with_interceptor(channel, common::Bearer(Some(common::TOKEN.into())));
    let mut watch = client
        .watch_inbox_messages(WatchInboxMessagesRequest {
            agent_id: aid.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();

    let (st, m1) = rest
        .post(&inbox, json!({"body": "first", "from_name": "boss"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m1}");
    assert_eq!(
        (&m1["read"], &m1["kind"]),
        (&json!(false), &json!("InboxMessage"))
    );
    let (_, m2) = rest.post(&inbox, json!({"body": "second"})).await;
    let (st, _) = rest.post(&inbox, json!({"from_name": "x"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "body is required");

    for want in ["first", "second"] {
        let m = guard("inbox message", watch.message())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("inbox watch ended"));
        assert_eq!(
            (m.body.as_str(), m.agent_id.as_str(), m.read),
            (want, aid.as_str(), Some(false))
        );
    }

    let (st, read) = rest
        .patch(&format!("{inbox}/{}", s(&m1, "id")), json!({"read": true}))
        .await;
    assert_eq!(st, StatusCode::OK, "{read}");
    assert_eq!(read["read"], true);
    let (st, v) = rest.get(&inbox).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["kind"], "InboxMessageList");
    assert_eq!(column(&v, "body"), ["second", "first"], "unread first");
    assert_eq!(v["items"][0]["id"], m2["id"]);

    // Another project's path: 403, nothing stored.
    let other = format!("projects/away/agents/{aid}/inbox");
    let (st, body) = rest.post(&other, json!({"body": "sneaky"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_error_body(&body);
    let (st, _) = rest.get(&other).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = rest
        .post("projects/home/agents/nope/inbox", json!({"body": "x"}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = rest.get(&inbox).await;
    assert_eq!(v["total"], 2);
}

#[tokio::test]
async fn start_and_stop_follow_the_phase_table_over_rest() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let session = rest.create_session(json!({"name": "p"})).await;
    let id = s(&session, "id").to_owned();
    let set_phase = |phase: &'static str| {
        let rest = rest.clone();
        let path = format!("sessions/{id}/status");
        async move {
            let (st, body) = rest.patch(&path, json!({ "phase": phase })).await;
            assert_eq!(st, StatusCode::OK, "{body}");
        }
    };
    // (phase, start allowed, stop allowed)
    for (phase, start, stop) in [
        ("Pending", false, true),
        ("Creating", false, true),
        ("Running", false, true),
        ("Stopping", false, false),
        ("Stopped", true, false),
        ("Completed", true, false),
        ("Failed", true, false),
    ] {
        set_phase(phase).await;
        let (st, body) = rest.post_empty(&format!("sessions/{id}/start")).await;
        if start {
            assert_eq!(
                (st, &body["phase"]),
                (StatusCode::OK, &json!("Pending")),
                "start from {phase}"
            );
            set_phase(phase).await;
        } else {
            assert_eq!(st, StatusCode::CONFLICT, "start from {phase}: {body}");
            assert_error_body(&body);
            let (_, now) = rest.get(&format!("sessions/{id}")).await;
            assert_eq!(now["phase"], phase, "a refused start changed the phase");
        }
        let (st, body) = rest.post_empty(&format!("sessions/{id}/stop")).await;
        if stop {
            assert_eq!(
                (st, &body["phase"]),
                (StatusCode::OK, &json!("Stopping")),
                "stop from {phase}"
            );
        } else {
            assert_eq!(st, StatusCode::CONFLICT, "stop from {phase}: {body}");
            assert_error_body(&body);
            let (_, now) = rest.get(&format!("sessions/{id}")).await;
            assert_eq!(now["phase"], phase, "a refused stop changed the phase");
        }
    }
    // The reference MCP sends the body `null` to /start.
    set_phase("Failed").await;
    let (st, body) = rest
        .raw(
            Method::POST,
            &format!("sessions/{id}/start"),
            b"null".to_vec(),
        )
        .await;
    assert_eq!((st, &body["phase"]), (StatusCode::OK, &json!("Pending")));
}

#[tokio::test]
async fn every_status_field_round_trips_over_rest_and_grpc() {
    use ambient_protocol::v1::{GetSessionRequest, UpdateSessionStatusRequest};

    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let session = rest.create_session(json!({"name": "st"})).await;
    let id = s(&session, "id").to_owned();
    let status = json!({
        "phase": "Running",
        "start_time": "2025-01-02T03:04:05Z",
        "completion_time": "2025-01-02T04:05:06.5Z",
        "sdk_session_id": "sdk-1",
        "sdk_restart_count": 2,
        "conditions": "[{\"type\":\"Ready\",\"status\":\"True\"}]",
        "reconciled_repos": "[{\"url\":\"r\"}]",
        "reconciled_workflow": "{\"id\":\"w\"}",
        "kube_cr_uid": "uid-1",
        "kube_namespace": "ns-1",
    });
    let (st, body) = rest
        .patch(&format!("sessions/{id}/status"), status.clone())
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (_, got) = rest.get(&format!("sessions/{id}")).await;
    for (k, v) in status.as_object().cloned().unwrap_or_default() {
        let want = if k == "completion_time" {
            json!("2025-01-02T04:05:06.500Z")
        } else {
            v
        };
        assert_eq!(got[&k], want, "{k} over REST");
    }
    let mut c = common::sessions(&d).await;
    let g = c
        .get_session(GetSessionRequest { id: id.clone() })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(g.conditions.as_deref(), status["conditions"].as_str());
    assert_eq!(
        g.reconciled_repos.as_deref(),
        status["reconciled_repos"].as_str()
    );
    assert_eq!(
        g.reconciled_workflow.as_deref(),
        status["reconciled_workflow"].as_str()
    );
    assert_eq!(g.kube_cr_uid.as_deref(), Some("uid-1"));
    assert_eq!(g.sdk_session_id.as_deref(), Some("sdk-1"));
    // And back: gRPC writes, REST reads.
    let u = c
        .update_session_status(UpdateSessionStatusRequest {
            id: id.clone(),
            conditions: Some("[]".into()),
            kube_cr_uid: Some("uid-2".into()),
            sdk_session_id: Some("sdk-2".into()),
            reconciled_repos: Some("[]".into()),
            reconciled_workflow: Some("{}".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(u.phase.as_deref(), Some("Running"), "unset fields are kept");
    let (_, got) = rest.get(&format!("sessions/{id}")).await;
    for (k, v) in [
        ("conditions", "[]"),
        ("kube_cr_uid", "uid-2"),
        ("sdk_session_id", "sdk-2"),
        ("reconciled_repos", "[]"),
        ("reconciled_workflow", "{}"),
        ("kube_namespace", "ns-1"),
    ] {
        assert_eq!(got[k], v, "{k} after the gRPC update");
    }
}
