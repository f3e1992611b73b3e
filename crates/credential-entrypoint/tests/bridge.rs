//! The MCP bridge (`--serve-mcp`) against the real devserver and token
//! server on loopback, with a raw MCP client (`integration_tests::mcp`) so
//! every message on the wire can be checked:
//!
//! - what MCP carries besides tool calls crosses the bridge both ways:
//!   progress (under the caller's own token), logging, `resources/updated`,
//!   `list_changed`, `cancelled`, `completion/complete`,
//!   `resources/subscribe`/`unsubscribe`, `logging/setLevel`, and the
//!   child's own requests (roots, sampling) with their cancellation;
//! - `POST /refresh` and SIGHUP re-fetch the credential now, at most once
//!   per 30 s (429 + `Retry-After`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::mcp::{Kind, McpClient};
use serde_json::{Value, json};
use support::{Entrypoint, TEST_SERVER, World};

/// The server messages (notifications and requests) that arrive within
/// `wait`, until `enough` says so.
async fn notes_until(
    client: &McpClient,
    wait: Duration,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    while !enough(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_note(left).await {
            Some(n) => seen.push(n),
            None => break,
        }
    }
    seen
}

fn of<'a>(notes: &'a [Value], method: &str) -> Vec<&'a Value> {
    notes.iter().filter(|n| n["method"] == method).collect()
}

/// A tool's text result as JSON.
fn tool_json(resp: &Value) -> Value {
    assert!(resp.get("error").is_none(), "{resp}");
    let text = resp["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

async fn report(client: &McpClient) -> Value {
    tool_json(
        &client
            .request("tools/call", json!({"name": "report", "arguments": {}}))
            .await,
    )
}

/// A world and an entrypoint serving MCP for a github credential; the
/// credential's ID.
async fn bridge(tag: &str, extra: &[&str]) -> (World, Entrypoint, std::net::SocketAddr, String) {
    let w = World::start(tag).await;
    let id = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_bridge_1"}))
        .await;
    let mut args = vec!["--serve-mcp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    args.push(TEST_SERVER);
    let reports = w.tmp.path().join("reports");
    let mut ep = Entrypoint::start(&args, &w.sidecar_env("github", &id), &reports);
    let addr = ep
        .listening("mcp")
        .await
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    (w, ep, addr, id)
}

async fn forwards_both_ways(kind: Kind) {
    let (_w, _ep, addr, _) = bridge("ce-bridge-fwd", &[]).await;
    let client = McpClient::connect(kind, addr).await;
    let caps = &client.init_result()["capabilities"];
    assert!(caps.get("logging").is_some(), "{caps}");
    assert_eq!(caps["resources"]["subscribe"], true, "{caps}");

    // Runner → child requests besides tools.
    let level = client
        .request("logging/setLevel", json!({"level": "debug"}))
        .await;
    assert!(level.get("error").is_none(), "{level}");
    let sub = client
        .request("resources/subscribe", json!({"uri": "test://r1"}))
        .await;
    assert!(sub.get("error").is_none(), "{sub}");
    let done = client
        .request(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "a", "value": "b"}}),
        )
        .await;
    assert_eq!(
        done["result"]["completion"]["values"],
        json!(["beta"]),
        "{done}"
    );
    let r = report(&client).await;
    assert_eq!(r["mcp"]["level"], "debug", "{r}");
    assert_eq!(r["mcp"]["subscriptions"], json!(["test://r1"]), "{r}");

    // Child → runner notifications, progress under the runner's own token.
    let answer = client
        .request(
            "tools/call",
            json!({"name": "notify", "arguments": {}, "_meta": {"progressToken": "runner-tok-7"}}),
        )
        .await;
    assert!(tool_json(&answer)["sent"].as_u64() > Some(5), "{answer}");
    let notes = notes_until(&client, Duration::from_secs(10), |n| {
        of(n, "notifications/progress").len() == 2
            && of(n, "notifications/prompts/list_changed").len() == 1
    })
    .await;
    let progress = of(&notes, "notifications/progress");
    assert_eq!(progress.len(), 2, "{notes:?}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["params"]["progressToken"], "runner-tok-7", "{p}");
        assert_eq!(
            p["params"]["progress"].as_f64(),
            Some(i as f64 + 1.0),
            "{p}"
        );
    }
    let log = of(&notes, "notifications/message");
    assert_eq!(log.len(), 1, "{notes:?}");
    assert_eq!(log[0]["params"]["level"], "warning");
    assert_eq!(log[0]["params"]["data"]["note"], "hello");
    let updated = of(&notes, "notifications/resources/updated");
    assert_eq!(updated.len(), 1, "{notes:?}");
    assert_eq!(updated[0]["params"]["uri"], "test://r1");
    for list in ["resources", "tools", "prompts"] {
        let method = format!("notifications/{list}/list_changed");
        assert_eq!(of(&notes, &method).len(), 1, "{method}: {notes:?}");
    }

    // Runner cancels a call in flight → the child is told.
    let id = client.next_id();
    let waiting = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            client
                .request_as(id, "tools/call", json!({"name": "wait", "arguments": {}}))
                .await
        })
    };
    // The call has reached the child (its report lists it) before it is
    // cancelled.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = report(&client).await;
        if r["mcp"]["waiting"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the wait call never reached the child: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .notify(
            "notifications/cancelled",
            json!({"requestId": id, "reason": "no longer needed"}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let cancelled = loop {
        let r = report(&client).await;
        let c = r["mcp"]["cancelled"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !c.is_empty() || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        cancelled.len(),
        1,
        "the child never heard of the cancellation"
    );
    assert!(!waiting.is_finished(), "a cancelled request got an answer");
    waiting.abort();

    // The child's own requests reach the runner, and come back.
    let id = client.next_id();
    let asking = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            client
                .request_as(
                    id,
                    "tools/call",
                    json!({"name": "ask_roots", "arguments": {}}),
                )
                .await
        })
    };
    let notes = notes_until(&client, Duration::from_secs(10), |n| {
        !of(n, "roots/list").is_empty()
    })
    .await;
    let ask = of(&notes, "roots/list");
    assert_eq!(ask.len(), 1, "{notes:?}");
    client
        .respond(
            &ask[0]["id"],
            json!({"roots": [{"uri": "file:///workspace", "name": "ws"}]}),
        )
        .await;
    let answered = asking.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        tool_json(&answered)["roots"][0]["uri"],
        "file:///workspace",
        "{answered}"
    );

    // ... and the child's cancellation of its own request too.
    let answer = client
        .request(
            "tools/call",
            json!({"name": "ask_then_cancel", "arguments": {}}),
        )
        .await;
    assert_eq!(tool_json(&answer)["asked_and_cancelled"], true);
    let notes = notes_until(&client, Duration::from_secs(10), |n| {
        !of(n, "notifications/cancelled").is_empty()
    })
    .await;
    let sample = of(&notes, "sampling/createMessage");
    let cancel = of(&notes, "notifications/cancelled");
    assert_eq!(sample.len(), 1, "{notes:?}");
    assert_eq!(cancel.len(), 1, "{notes:?}");
    assert_eq!(
        cancel[0]["params"]["requestId"], sample[0]["id"],
        "{notes:?}"
    );

    // Unsubscribe reaches the child.
    let unsub = client
        .request("resources/unsubscribe", json!({"uri": "test://r1"}))
        .await;
    assert!(unsub.get("error").is_none(), "{unsub}");
    assert_eq!(report(&client).await["mcp"]["subscriptions"], json!([]));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_both_ways_over_legacy_sse() {
    forwards_both_ways(Kind::LegacySse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_both_ways_over_streamable_http() {
    forwards_both_ways(Kind::Streamable).await;
}

/// Progress the child sends before its answer reaches the runner before
/// the answer, all of it and in order: rmcp hands the answer to the
/// transport by another channel than notifications, so without the bridge
/// holding the answer back the last progress could arrive after it (on
/// Streamable HTTP on the session's other stream, so out of order too).
async fn progress_arrives_before_the_answer(kind: Kind) {
    const N: u64 = 200;
    let (_w, mut ep, addr, _) = bridge("ce-bridge-order", &[]).await;
    let client = McpClient::connect(kind, addr).await;
    for round in 0..3 {
        let token = format!("order-{round}");
        let answer = client
            .request(
                "tools/call",
                json!({"name": "notify", "arguments": {"progress": N}, "_meta": {"progressToken": token}}),
            )
            .await;
        assert!(tool_json(&answer)["sent"].as_u64() > Some(N), "{answer}");
        // Whatever arrived by the time the answer did.
        let notes = notes_until(&client, Duration::ZERO, |_| false).await;
        let progress: Vec<f64> = of(&notes, "notifications/progress")
            .iter()
            .filter(|p| p["params"]["progressToken"] == json!(token))
            .filter_map(|p| p["params"]["progress"].as_f64())
            .collect();
        let expected: Vec<f64> = (1..=N).map(|n| n as f64).collect();
        let first_wrong = progress.iter().zip(&expected).position(|(a, b)| a != b);
        let around =
            first_wrong.map(|i| &progress[i.saturating_sub(3)..(i + 5).min(progress.len())]);
        assert_eq!(
            progress,
            expected,
            "round {round}: {} of {N}, first out of order at {first_wrong:?}: {around:?}",
            progress.len()
        );
    }
    client.close().await;
    ep.signal("TERM");
    assert_eq!(ep.exit().await.code(), Some(0), "{}", ep.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_arrives_before_the_answer_over_legacy_sse() {
    progress_arrives_before_the_answer(Kind::LegacySse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_arrives_before_the_answer_over_streamable_http() {
    progress_arrives_before_the_answer(Kind::Streamable).await;
}

async fn post_refresh(addr: std::net::SocketAddr) -> (u16, Option<u64>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/refresh"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /refresh: {e}"));
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

fn token_of(report: &Value) -> Option<&str> {
    report["env"]["GITHUB_TOKEN"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_refresh_applies_a_rotation_now_at_most_once_per_window() {
    let (w, mut ep, addr, id) = bridge("ce-bridge-refresh", &["--refresh-interval", "3600"]).await;
    let client = McpClient::connect(Kind::LegacySse, addr).await;
    assert_eq!(token_of(&report(&client).await), Some("ghp_bridge_1"));

    // Nothing changed: refreshed, unchanged.
    assert_eq!(post_refresh(addr).await.2, json!({"changed": false}));
    // Inside the window: 429 with Retry-After, and nothing is fetched.
    w.rotate(&id, "ghp_bridge_2").await;
    let (status, retry, body) = post_refresh(addr).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some_and(|s| (1..=30).contains(&s)), "{retry:?}");
    assert_eq!(token_of(&report(&client).await), Some("ghp_bridge_1"));
    // GET is not a refresh.
    let get = reqwest::get(format!("http://{addr}/refresh"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(get, 405);
    // A foreign Host (DNS rebinding) is refused like on the MCP routes.
    let foreign = reqwest::Client::new()
        .post(format!("http://{addr}/refresh"))
        .header("Host", "evil.example.com")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(foreign, 403);

    ep.signal("TERM");
    assert_eq!(ep.exit().await.code(), Some(0), "{}", ep.stderr());
    assert!(!ep.stderr().contains("ghp_bridge"), "{}", ep.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_refresh_delivers_a_rotated_credential_to_the_open_session() {
    let (w, mut ep, addr, id) = bridge("ce-bridge-refresh2", &["--refresh-interval", "3600"]).await;
    let client = McpClient::connect(Kind::Streamable, addr).await;
    let first = report(&client).await;
    assert_eq!(token_of(&first), Some("ghp_bridge_1"));
    w.rotate(&id, "ghp_bridge_2").await;
    let (status, _, body) = post_refresh(addr).await;
    assert_eq!((status, body), (200, json!({"changed": true})));
    // The session's next call runs on a new child with the new credential.
    let second = report(&client).await;
    assert_eq!(token_of(&second), Some("ghp_bridge_2"));
    assert_ne!(second["pid"], first["pid"]);
    ep.signal("TERM");
    assert_eq!(ep.exit().await.code(), Some(0), "{}", ep.stderr());
    assert!(!ep.stderr().contains("ghp_bridge"), "{}", ep.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refreshes_now_and_shares_the_window() {
    let (w, mut ep, addr, id) = bridge("ce-bridge-hup", &["--refresh-interval", "3600"]).await;
    let client = McpClient::connect(Kind::LegacySse, addr).await;
    assert_eq!(token_of(&report(&client).await), Some("ghp_bridge_1"));
    w.rotate(&id, "ghp_bridge_2").await;
    ep.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = report(&client).await;
        if token_of(&r) == Some("ghp_bridge_2") {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not refresh: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The window is shared with POST /refresh.
    let (status, retry, _) = post_refresh(addr).await;
    assert_eq!(status, 429);
    assert!(retry.is_some());
    // A second SIGHUP inside the window changes nothing.
    w.rotate(&id, "ghp_bridge_3").await;
    let skipped = |ep: &Entrypoint| ep.stderr().matches("a refresh ran recently").count();
    let before = skipped(&ep);
    ep.signal("HUP");
    // The entrypoint's own word that it skipped this refresh, then the
    // token is checked unchanged.
    let deadline = Instant::now() + Duration::from_secs(20);
    while skipped(&ep) == before {
        assert!(Instant::now() < deadline, "{}", ep.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(token_of(&report(&client).await), Some("ghp_bridge_2"));
    ep.signal("TERM");
    assert_eq!(ep.exit().await.code(), Some(0), "{}", ep.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refreshes_a_supervised_child_now() {
    let w = World::start("ce-hup").await;
    let id = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_hup_1"}))
        .await;
    let reports = w.tmp.path().join("reports");
    let mut ep = Entrypoint::start(
        &["--refresh-interval", "3600", TEST_SERVER],
        &w.sidecar_env("github", &id),
        &reports,
    );
    ep.report().await;
    w.rotate(&id, "ghp_hup_2").await;
    ep.signal("HUP");
    ep.report_where("the token after SIGHUP", |r| {
        token_of(r) == Some("ghp_hup_2")
    })
    .await;
    ep.signal("TERM");
    assert_eq!(ep.exit().await.code(), Some(0), "{}", ep.stderr());
}
