//! `watch_session_messages` over real sockets: messages pushed to the
//! devserver arrive in order as progress notifications (call with a
//! progressToken) or logging notifications (without), then a terminal
//! notification once the session has ended; unwatch stops delivery; two
//! MCP sessions cannot see or cancel each other's subscriptions.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::mcp::{Kind, McpClient, Tools as _, connect};
use support::{API_TOKEN, Rest, devserver, s, sidecar_static};

/// The first `n` notifications that `pick` accepts (each waited for up to 15 s).
async fn collect(
    client: &McpClient,
    n: usize,
    pick: impl Fn(&Value) -> Option<Value>,
) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let note = client
            .next_note(Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("only {} notifications: {got:?}", got.len()));
        got.extend(pick(&note));
    }
    got
}

/// The progress notifications of token `token`, until `n` arrived.
async fn progress(client: &McpClient, token: &str, n: usize) -> Vec<Value> {
    collect(client, n, |note| {
        (note["method"] == "notifications/progress" && note["params"]["progressToken"] == token)
            .then(|| note["params"].clone())
    })
    .await
}

/// The logging notifications of subscription `sub`, until `n` arrived.
async fn logged(client: &McpClient, sub: &str, n: usize) -> Vec<Value> {
    collect(client, n, |note| {
        let params = &note["params"];
        let ours =
            note["method"] == "notifications/message" && params["data"]["subscription_id"] == sub;
        ours.then(|| {
            assert_eq!(params["logger"], "session-messages");
            assert_eq!(params["level"], "info");
            params["data"].clone()
        })
    })
    .await
}

async fn watch_with_progress(kind: Kind) {
    let dev = devserver(&[API_TOKEN], None, None);
    let rest = Rest::new(dev.addr("http"), API_TOKEN);
    let mcp = sidecar_static(&format!("http://{}", dev.addr("http")), API_TOKEN);
    let client = connect(kind, mcp.addr("mcp")).await;
    let project = rest.project("watchers").await;
    let sid = rest.session(&project, "watched").await;
    let first = rest.push(&sid, "before the watch").await;

    let call = {
        let client = client.clone();
        let sid = sid.clone();
        tokio::spawn(async move {
            client
                .call_with(
                    "watch_session_messages",
                    json!({"session_id": sid, "after_seq": first}),
                    Some("w1"),
                )
                .await
        })
    };
    let start = progress(&client, "w1", 1).await;
    let sub: Value =
        serde_json::from_str(start[0]["message"].as_str().unwrap_or_default()).unwrap_or_default();
    assert!(s(&sub["subscription_id"]).starts_with("sub_"), "{start:?}");
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(rest.push(&sid, &format!("m{i}")).await);
    }
    let got = progress(&client, "w1", 5).await;
    let delivered: Vec<i64> = got
        .iter()
        .map(|p| p["progress"].as_f64().unwrap_or(-1.0) as i64)
        .collect();
    assert_eq!(delivered, seqs, "in order, none before after_seq");
    let payloads: Vec<String> = got
        .iter()
        .map(|p| {
            let m: Value =
                serde_json::from_str(p["message"].as_str().unwrap_or_default()).unwrap_or_default();
            s(&m["payload"])
        })
        .collect();
    assert_eq!(payloads, ["m0", "m1", "m2", "m3", "m4"]);

    // The session ends: the call returns with a terminal result.
    rest.set_phase(&sid, "Failed").await;
    let result = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .unwrap_or_else(|_| panic!("the watch did not end with the session"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result["terminal"], true, "{result}");
    assert_eq!(result["phase"], "Failed");
    assert_eq!(result["session_id"], sid.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_progress_over_streamable_http() {
    watch_with_progress(Kind::Streamable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_progress_over_legacy_sse() {
    watch_with_progress(Kind::LegacySse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_progress_unwatch_and_isolation() {
    let dev = devserver(&[API_TOKEN], None, None);
    let rest = Rest::new(dev.addr("http"), API_TOKEN);
    let mcp = sidecar_static(&format!("http://{}", dev.addr("http")), API_TOKEN);
    let a = connect(Kind::LegacySse, mcp.addr("mcp")).await;
    let b = connect(Kind::Streamable, mcp.addr("mcp")).await;
    let project = rest.project("logs").await;
    let s1 = rest.session(&project, "one").await;
    let s2 = rest.session(&project, "two").await;

    let w1 = a
        .ok("watch_session_messages", json!({"session_id": s1}))
        .await;
    let sub1 = s(&w1["subscription_id"]);
    let w2 = a
        .ok("watch_session_messages", json!({"session_id": s2}))
        .await;
    let sub2 = s(&w2["subscription_id"]);
    assert_ne!(sub1, sub2);

    // The other MCP session can neither cancel nor see them.
    assert_eq!(
        b.err_code("unwatch_session_messages", json!({"subscription_id": sub1}))
            .await,
        "SUBSCRIPTION_NOT_FOUND"
    );

    let p1 = rest.push(&s1, "to one").await;
    let got = logged(&a, &sub1, 1).await;
    assert_eq!(got[0]["message"]["seq"], p1, "{got:?}");
    assert_eq!(got[0]["message"]["payload"], "to one");

    // Unwatch stops delivery for that subscription only.
    let done = a
        .ok("unwatch_session_messages", json!({"subscription_id": sub1}))
        .await;
    assert_eq!(done, json!({"cancelled": true}));
    assert_eq!(
        a.err_code("unwatch_session_messages", json!({"subscription_id": sub1}))
            .await,
        "SUBSCRIPTION_NOT_FOUND"
    );
    rest.push(&s1, "after unwatch").await;
    let p2 = rest.push(&s2, "to two").await;
    let mut seen_two = false;
    while let Some(note) = a.next_note(Duration::from_secs(3)).await {
        let data = &note["params"]["data"];
        assert_ne!(
            data["subscription_id"],
            sub1.as_str(),
            "delivered after unwatch: {note}"
        );
        if data["subscription_id"] == sub2.as_str() && data["message"]["seq"] == p2 {
            seen_two = true;
            break;
        }
    }
    assert!(seen_two, "the other subscription keeps delivering");

    // Session two ends: a final terminal notification.
    rest.set_phase(&s2, "Completed").await;
    let mut terminal = None;
    while let Some(note) = a.next_note(Duration::from_secs(15)).await {
        let data = note["params"]["data"].clone();
        if data["subscription_id"] == sub2.as_str() && data["terminal"] == true {
            terminal = Some(data);
            break;
        }
    }
    let terminal = terminal.unwrap_or_else(|| panic!("no terminal notification"));
    assert_eq!(terminal["phase"], "Completed");
    assert_eq!(terminal["session_id"], s2.as_str());

    // Closing the MCP session cancels what it still watches.
    let w3 = a
        .ok("watch_session_messages", json!({"session_id": s1}))
        .await;
    let sub3 = s(&w3["subscription_id"]);
    a.close().await;
    support::eventually("the watch of a closed MCP session to end", || {
        let logs = mcp.logs();
        let ended = logs
            .lines()
            .any(|l| l.contains("watch ended") && l.contains(&sub3));
        async move { ended.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_is_refused_on_stdio() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let dev = devserver(&[API_TOKEN], None, None);
    let mut child = Command::new(integration_tests::bin_path("ambient-mcp"))
        .args(["--api-url", &format!("http://{}", dev.addr("http"))])
        .env("AMBIENT_TOKEN", API_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("stdin"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
    let lines = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"watch_session_messages","arguments":{"session_id":"x"}}}),
    ];
    for l in &lines {
        writeln!(stdin, "{l}").unwrap_or_else(|e| panic!("{e}"));
    }
    let mut reader = BufReader::new(stdout);
    let mut answer = None;
    for _ in 0..2 {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{e}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["id"] == 2 {
            answer = Some(v);
        }
    }
    drop(stdin);
    let answer = answer.unwrap_or_else(|| panic!("no answer"));
    let text = s(&answer["result"]["content"][0]["text"]);
    let err: Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(err["code"], "TRANSPORT_NOT_SUPPORTED", "{answer}");
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "stdio ends with its input: {status}");
}
