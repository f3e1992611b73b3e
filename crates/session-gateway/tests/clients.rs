//! Our clients through the gateway, the way they call: ambient-mcp (the real
//! binary, its tools over Streamable HTTP) and the credential entrypoint's
//! fetch (its library, with a token exchanged from a stand-in exchange that
//! answers the session token).

mod support;

use std::sync::Arc;

use ambient_protocol::exchanger::{ExchangerConfig, TokenExchanger};
use ambient_protocol::keys::PrivateKey;
use ambient_protocol::provider::Provider;
use credential_entrypoint::fetch::CredentialSource;
use integration_tests::mcp::{Kind, McpClient};
use integration_tests::{Daemon, Spec};
use serde_json::{Value, json};
use support::*;

/// Calls a tool: Ok(result JSON) or Err(the tool error object).
async fn tool(mcp: &McpClient, name: &str, args: Value) -> Result<Value, Value> {
    let resp = mcp
        .request("tools/call", json!({"name": name, "arguments": args}))
        .await;
    let result = &resp["result"];
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let parsed: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}: {resp}"));
    if result["isError"] == json!(true) {
        Err(parsed)
    } else {
        Ok(parsed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambient_mcp_tools_work_through_the_gateway() {
    let w = World::start().await;
    let sidecar = Daemon::start(
        Spec::new("ambient-mcp")
            .args(["--transport", "http", "--bind", "127.0.0.1:0"])
            .args(["--api-url", &format!("http://{}", w.gateway)])
            .env("AMBIENT_TOKEN", OWN_TOKEN)
            .listener("mcp"),
    );
    let mcp = McpClient::connect(Kind::Streamable, sidecar.addr("mcp")).await;
    let own = tool(&mcp, "get_session", json!({"session_id": w.own})).await;
    assert_eq!(
        own.as_ref().map(|s| s["id"].clone()).ok(),
        Some(json!(w.own)),
        "{own:?}"
    );
    let listed = tool(&mcp, "list_sessions", json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = listed.to_string();
    assert!(
        text.contains(&w.own) && text.contains(&w.sibling),
        "{listed}"
    );
    assert!(
        !text.contains(&w.foreign),
        "a session of another project was listed: {listed}"
    );
    let pushed = tool(
        &mcp,
        "push_message",
        json!({"session_id": w.own, "text": "through the gateway"}),
    )
    .await;
    assert!(pushed.is_ok(), "{pushed:?}");
    let project = tool(&mcp, "get_project", json!({"project_id": OWN_PROJECT})).await;
    assert!(project.is_ok(), "{project:?}");
    let created = tool(
        &mcp,
        "create_session",
        json!({"project_id": OWN_PROJECT, "prompt": "child work"}),
    )
    .await;
    let created = created.unwrap_or_else(|e| panic!("create_session: {e}"));
    let child = w
        .api
        .ok(
            ADMIN_TOKEN,
            reqwest::Method::GET,
            &format!("/sessions/{}", s(&created["id"])),
            None,
        )
        .await;
    assert_eq!(child["created_by_user_id"], "cp", "{child}");
    // Another project's session and project are refused.
    assert!(
        tool(&mcp, "get_session", json!({"session_id": w.foreign}))
            .await
            .is_err()
    );
    assert!(
        tool(&mcp, "get_project", json!({"project_id": OTHER_PROJECT}))
            .await
            .is_err()
    );
    let refused = tool(
        &mcp,
        "create_session",
        json!({"project_id": OTHER_PROJECT, "prompt": "x"}),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
}

/// A stand-in exchange: any request gets the session token.
async fn exchange() -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/token",
        axum::routing::get(|| async { axum::Json(json!({"token": OWN_TOKEN})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_entrypoint_fetches_only_delivered_credentials() {
    let w = World::start().await;
    let key = PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let cfg = ExchangerConfig::new(
        format!("http://{}/token", exchange().await),
        key.public_key().clone(),
        w.own.clone(),
    );
    let exchanger = Arc::new(TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}")));
    let api = url::Url::parse(&format!("http://{}", w.gateway)).unwrap_or_else(|e| panic!("{e}"));
    let source = CredentialSource::new(&api, &w.delivered, Provider::Github)
        .unwrap_or_else(|e| panic!("{e}"));
    let cred = source
        .fetch(&exchanger)
        .await
        .unwrap_or_else(|e| panic!("delivered: {e}"));
    assert_eq!(
        cred.0.get("token").and_then(Value::as_str),
        Some(DELIVERED_SECRET)
    );
    assert_eq!(
        cred.0.get("name").and_then(Value::as_str),
        Some("delivered"),
        "metadata merged"
    );
    let source = CredentialSource::new(&api, &w.undelivered, Provider::Github)
        .unwrap_or_else(|e| panic!("{e}"));
    let err = source
        .fetch(&exchanger)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("403"),
        "an undelivered credential must be refused: {err}"
    );
}

/// ambient-runner-client's library through the gateway: it pushes its own
/// session's messages (not another's), and `wait` sees its session end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_client_pushes_and_sees_its_session_end() {
    use ambient_protocol::phase::Phase;
    use ambient_runner_client::session::{End, wait_terminal};
    use ambient_runner_client::{Api, SessionMessages, TokenSource};

    let w = World::start().await;
    let tokens = TokenSource::fixed(ambient_protocol::Secret::new(OWN_TOKEN));
    let api =
        Api::new(&w.gateway.to_string(), false, None, tokens).unwrap_or_else(|e| panic!("{e}"));
    let pushed = SessionMessages::new(api.clone(), w.own.clone())
        .push("assistant", "via the gateway")
        .await
        .unwrap_or_else(|e| panic!("push: {e}"));
    assert_eq!(pushed.session_id, w.own);
    let other = SessionMessages::new(api.clone(), w.sibling.clone())
        .push("assistant", "not mine")
        .await;
    assert!(other.is_err(), "pushing to another session must be refused");

    // The session completes upstream (the control plane's caches have not
    // caught up yet, so the token is still admitted).
    let path = format!("/sessions/{}/status", w.own);
    let done = json!({"phase": "Completed"});
    w.api
        .ok(ADMIN_TOKEN, reqwest::Method::PATCH, &path, Some(done))
        .await;
    let end = wait_terminal(&api, &w.own).await;
    assert!(
        matches!(end, Ok(End::Phase(Phase::Completed))),
        "wait must report the end: {end:?}"
    );
}
