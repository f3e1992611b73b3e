//! Session message streams: replay then live with no gap and no duplicate
//! under concurrent pushes (gRPC), and SSE resumption from `Last-Event-ID` and
//! `?after_seq=` (REST).

mod common;

use ambient_protocol::v1::{PushSessionMessageRequest, WatchSessionMessagesRequest};
use common::{Rest, guard, read_sse, s};
use reqwest::{Method, StatusCode};
use serde_json::json;

const WRITERS: usize = 4;
const PER_WRITER: usize = 40;
const BEFORE: usize = 30;

#[tokio::test]
async fn replay_then_live_without_gap_or_duplicate_under_concurrent_pushes() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let session = rest.create_session(json!({"name": "busy"})).await;
    let id = s(&session, "id").to_owned();
    let mut c = common::sessions(&d).await;

    for i in 0..BEFORE {
        c.push_session_message(PushSessionMessageRequest {
            session_id: id.clone(),
            event_type: "assistant".into(),
            payload: format!("before-{i}"),
        })
        .await
        .unwrap_or_else(|e| panic!("push: {e}"));
    }
    let total = (BEFORE + WRITERS * PER_WRITER) as i64;

    // Writers run while the watches open: half push over gRPC, half over REST.
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let id = id.clone();
        let rest = rest.clone();
        let mut c = common::sessions(&d).await;
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let payload = format!("w{w}-{i}");
                if w % 2 == 0 {
                    c.push_session_message(PushSessionMessageRequest {
                        session_id: id.clone(),
                        event_type: "assistant".into(),
                        payload,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("push: {e}"));
                } else {
                    let (st, body) = rest
                        .post(
                            &format!("sessions/{id}/messages"),
                            json!({"payload": payload}),
                        )
                        .await;
                    assert_eq!(st, StatusCode::CREATED, "{body}");
                }
            }
        }));
    }

    // Watches open at different points of the replay/live boundary.
    let mut readers = Vec::new();
    for after_seq in [0_i64, 10, 25] {
        let mut c = common::sessions(&d).await;
        let id = id.clone();
        readers.push(tokio::spawn(async move {
            let mut stream = c
                .watch_session_messages(WatchSessionMessagesRequest {
                    session_id: id.clone(),
                    after_seq,
                })
                .await
                .unwrap_or_else(|e| panic!("watch: {e}"))
                .into_inner();
            let mut seqs = Vec::new();
            while seqs.last().copied().unwrap_or(after_seq) < total {
                let m = guard("message", stream.message())
                    .await
                    .unwrap_or_else(|e| panic!("watch: {e}"))
                    .unwrap_or_else(|| panic!("watch ended after {seqs:?}"));
                assert_eq!(m.session_id, id);
                seqs.push(m.seq);
            }
            (after_seq, seqs)
        }));
    }

    for w in writers {
        guard("writer", w).await.unwrap_or_else(|e| panic!("{e}"));
    }
    for r in readers {
        let (after_seq, seqs) = guard("reader", r).await.unwrap_or_else(|e| panic!("{e}"));
        let expected: Vec<i64> = (after_seq + 1..=total).collect();
        assert_eq!(
            seqs, expected,
            "watch after {after_seq}: every seq exactly once, in order"
        );
    }

    // Every payload was stored exactly once.
    let (_, all) = rest.get(&format!("sessions/{id}/messages")).await;
    let all = all.as_array().cloned().unwrap_or_default();
    assert_eq!(all.len() as i64, total);
    let mut payloads: Vec<String> = all
        .iter()
        .map(|m| m["payload"].as_str().unwrap_or_default().to_owned())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len() as i64, total);
}

#[tokio::test]
async fn sse_resumes_from_last_event_id_and_after_seq() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let session = rest
        .create_session(json!({"name": "sse", "prompt": "first"}))
        .await;
    let id = s(&session, "id").to_owned();
    for p in ["second", "third"] {
        let (st, _) = rest
            .post(
                &format!("sessions/{id}/messages"),
                json!({"event_type": "user", "payload": p}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let path = format!("sessions/{id}/messages");

    // Last-Event-ID: 1 → frames 2, 3, then live 4 (pushed over gRPC).
    let mut resp = rest
        .request(Method::GET, &path)
        .header("accept", "text/event-stream")
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    let frames = read_sse(&mut resp, 2).await;
    assert_eq!(frames[0].0, "2");
    assert_eq!(frames[0].1["payload"], "second");
    assert_eq!(frames[0].1["seq"], 2);
    assert_eq!(frames[0].1["session_id"], id.as_str());
    assert_eq!(frames[1].0, "3");
    let mut c = common::sessions(&d).await;
    c.push_session_message(PushSessionMessageRequest {
        session_id: id.clone(),
        event_type: "assistant".into(),
        payload: "fourth".into(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let live = read_sse(&mut resp, 1).await;
    assert_eq!(
        (live[0].0.as_str(), &live[0].1["payload"]),
        ("4", &json!("fourth"))
    );
    drop(resp);

    // ?after_seq=3 → frame 4 only so far.
    let mut resp = rest
        .request(Method::GET, &format!("{path}?after_seq=3"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let frames = read_sse(&mut resp, 1).await;
    assert_eq!(frames[0].0, "4");
    drop(resp);

    // Last-Event-ID wins over after_seq (it is what a reconnecting client sends).
    let mut resp = rest
        .request(Method::GET, &format!("{path}?after_seq=0"))
        .header("accept", "text/event-stream")
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let frames = read_sse(&mut resp, 2).await;
    assert_eq!((frames[0].0.as_str(), frames[1].0.as_str()), ("3", "4"));
    drop(resp);

    // Unparsable resume points are ignored (the reference does so): the
    // stream starts from the first message.
    let mut resp = rest
        .request(Method::GET, &format!("{path}?after_seq=3"))
        .header("accept", "text/event-stream")
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::OK);
    let frames = read_sse(&mut resp, 1).await;
    assert_eq!(
        frames[0].0, "4",
        "a bad Last-Event-ID falls back to after_seq"
    );
    drop(resp);
    let mut resp = rest
        .request(Method::GET, &format!("{path}?after_seq=x"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let frames = read_sse(&mut resp, 1).await;
    assert_eq!(frames[0].0, "1");
    drop(resp);
    let (st, body) = rest.get(&format!("{path}?after_seq=x")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(4));

    // Only `Accept: text/event-stream` exactly asks for a stream.
    let (st, body) = rest
        .send(
            rest.request(Method::GET, &path)
                .header("accept", "application/json, text/event-stream"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(4), "{body}");

    // Unknown sessions are JSON errors, not streams.
    let (st, body) = rest
        .send(
            rest.request(Method::GET, "sessions/nope/messages")
                .header("accept", "text/event-stream"),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    common::assert_error_body(&body);
}

#[tokio::test]
async fn message_post_defaults_to_user_and_refuses_other_types_in_plain_text() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let session = rest.create_session(json!({"name": "m"})).await;
    let path = format!("sessions/{}/messages", s(&session, "id"));

    let (st, m) = rest.post(&path, json!({"payload": "no type"})).await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    assert_eq!((&m["event_type"], &m["seq"]), (&json!("user"), &json!(1)));
    let (st, m) = rest
        .post(&path, json!({"payload": "typed", "event_type": "user"}))
        .await;
    assert_eq!((st, &m["seq"]), (StatusCode::CREATED, &json!(2)));

    for bad in ["assistant", "User", "system"] {
        let resp = rest
            .request(Method::POST, &path)
            .json(&json!({"payload": "x", "event_type": bad}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ct.starts_with("text/plain"), "{bad}: content-type {ct}");
        let text = resp.text().await.unwrap_or_default();
        assert!(text.contains("event_type"), "{bad}: {text}");
    }
    let (_, all) = rest.get(&path).await;
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(2),
        "refused posts stored nothing"
    );
}
