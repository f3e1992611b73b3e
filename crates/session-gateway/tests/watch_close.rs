//! Open watches (gRPC WatchSessionMessages, REST SSE) close when the
//! session reaches a terminal phase or its pod is replaced, driven by the
//! control plane's session facts: within 2 s, no polling.

mod support;

use std::time::Duration;

use ambient_protocol::v1::WatchSessionMessagesRequest;
use reqwest::Method;
use serde_json::json;
use support::*;

/// Upper bound for a watch to close (the requirement, not a wait).
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

async fn seed(w: &World, id: &str) {
    let msg = json!({"payload": "first", "event_type": "user"});
    w.api
        .ok(
            ADMIN_TOKEN,
            Method::POST,
            &format!("/sessions/{id}/messages"),
            Some(msg),
        )
        .await;
}

/// An SSE response that has delivered its first event.
async fn open_sse(w: &World, id: &str, token: &str) -> reqwest::Response {
    let mut resp = reqwest::Client::new()
        .get(format!("{}/sessions/{id}/messages", w.gw.base))
        .bearer_auth(token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains("data:") {
        let chunk = resp
            .chunk()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the stream ended before its first event"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    resp
}

/// Reads `resp` to its end; panics past [`CLOSE_WITHIN`].
async fn sse_closes(mut resp: reqwest::Response) {
    tokio::time::timeout(CLOSE_WITHIN, async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await
    .unwrap_or_else(|_| panic!("the SSE stream stayed open"));
}

async fn watch(
    w: &World,
    id: &str,
    token: &str,
) -> tonic::Streaming<ambient_protocol::v1::SessionMessage> {
    let mut c = w.grpc().await;
    let mut stream = c
        .watch_session_messages(authed(
            WatchSessionMessagesRequest {
                session_id: id.to_owned(),
                after_seq: 0,
            },
            token,
        ))
        .await
        .unwrap_or_else(|e| panic!("watch: {e}"))
        .into_inner();
    let first = stream.message().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(first.is_some(), "the watch ended before its first message");
    stream
}

async fn grpc_closes(mut stream: tonic::Streaming<ambient_protocol::v1::SessionMessage>) {
    let end = tokio::time::timeout(CLOSE_WITHIN, stream.message())
        .await
        .unwrap_or_else(|_| panic!("the gRPC watch stayed open"));
    assert!(
        matches!(end, Ok(None)),
        "the watch must end cleanly: {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_close_when_the_session_ends() {
    let w = World::start().await;
    seed(&w, &w.own).await;
    let grpc = watch(&w, &w.own, OWN_TOKEN).await;
    let sse = open_sse(&w, &w.own, OWN_TOKEN).await;
    // Another session's change closes nothing of ours.
    w.facts.set(&w.sibling, OWN_PROJECT, false, Some(GEN));
    w.facts.set(&w.own, OWN_PROJECT, false, Some(GEN));
    grpc_closes(grpc).await;
    sse_closes(sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_close_when_the_pod_is_replaced() {
    let w = World::start().await;
    seed(&w, &w.own).await;
    let grpc = watch(&w, &w.own, OWN_TOKEN).await;
    let sse = open_sse(&w, &w.own, OWN_TOKEN).await;
    w.facts.set(&w.own, OWN_PROJECT, true, Some("pod-uid-2"));
    grpc_closes(grpc).await;
    sse_closes(sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sessions_end_leaves_the_watch_open() {
    let w = World::start().await;
    seed(&w, &w.own).await;
    let mut grpc = watch(&w, &w.own, OWN_TOKEN).await;
    w.facts.set(&w.sibling, OWN_PROJECT, false, Some(GEN));
    // Positive signal first: a message pushed after the change arrives.
    seed(&w, &w.own).await;
    let next = grpc.message().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.map(|m| m.payload).as_deref(), Some("first"));
}

/// The lifecycle watch of a session that ends delivers the end before it
/// closes. The control plane's facts (which close the watch) and the
/// upstream event race; a client such as `ambient-runner-client wait` must
/// still see the terminal phase, not a closed stream and then `401`. Here
/// the upstream change precedes the watch, so no upstream event can carry
/// it: only the gateway's last word can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_watch_delivers_the_end_before_closing() {
    use ambient_protocol::v1::WatchSessionsRequest;
    let w = World::start().await;
    let status = json!({"phase": "Completed"});
    let path = format!("/sessions/{}/status", w.own);
    w.api
        .ok(ADMIN_TOKEN, Method::PATCH, &path, Some(status))
        .await;
    let mut c = w.grpc().await;
    let mut events = c
        .watch_sessions(authed(WatchSessionsRequest {}, OWN_TOKEN))
        .await
        .unwrap_or_else(|e| panic!("WatchSessions: {e}"))
        .into_inner();
    // The control plane's caches catch up.
    w.facts.set(&w.own, OWN_PROJECT, false, Some(GEN));
    let seen_end = tokio::time::timeout(CLOSE_WITHIN, async {
        let mut seen = false;
        while let Ok(Some(ev)) = events.message().await {
            assert_eq!(ev.resource_id, w.own);
            seen |= ev.session.and_then(|s| s.phase).as_deref() == Some("Completed");
        }
        seen
    })
    .await
    .unwrap_or_else(|_| panic!("the session watch stayed open"));
    assert!(
        seen_end,
        "the watch closed without delivering the terminal phase"
    );
}
