//! WATCH of the fake: JSON lines replaying the event log after
//! `resourceVersion`, then live events; 410 Gone (an ERROR event) when that
//! resourceVersion was compacted away; BOOKMARK events every second when
//! asked; the stream ends after `timeoutSeconds` or on `break_watches`.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{FakeKube, Target, WatchEvent, kind_of, status};

fn line(v: &Value) -> Result<Bytes, std::io::Error> {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Ok(Bytes::from(line))
}

fn respond(body: Body) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(body)
        .unwrap_or_else(|_| status(500, "InternalError", "cannot build the watch response"))
}

pub(super) fn watch(fake: &FakeKube, t: &Target, q: &HashMap<String, String>) -> Response {
    let (labels, fields) = match super::lists::selectors(q) {
        Ok(s) => (std::sync::Arc::new(s.0), std::sync::Arc::new(s.1)),
        Err(bad) => return *bad,
    };
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let rx = fake.events.subscribe();
    let (backlog, compacted, now) = {
        let s = fake.lock();
        let backlog: Vec<WatchEvent> = s.log.iter().filter(|e| e.rv > since).cloned().collect();
        (backlog, s.compacted, s.rv)
    };
    if since > 0 && since < compacted {
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
            "message": format!("too old resource version: {since} ({compacted})")}});
        return respond(Body::from_stream(futures::stream::iter([line(&gone)])));
    }
    let last = backlog.last().map_or(since.max(now), |e| e.rv);
    let plural = t.plural.clone();
    let ns = t.namespace.clone();
    let keep = move |e: &WatchEvent| {
        e.plural == plural
            && ns.as_ref().is_none_or(|want| {
                e.object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(want)
            })
            && labels.matches(&e.object)
            && fields.matches(&e.object)
    };
    let keep2 = keep.clone();
    let live = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |e| {
        let out = match e {
            Ok(e) if e.rv > last && keep2(&e) => Some(e),
            _ => None,
        };
        async move { out }
    });
    let events = futures::stream::iter(backlog.into_iter().filter(keep))
        .chain(live)
        .map(|e| json!({"type": e.kind, "object": e.object}));
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let (kind, api_version) = kind_of(&t.plural);
    let state = fake.state.clone();
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
        Duration::from_secs(1),
    ))
    .skip(1)
    .filter_map(move |_| {
        let rv = state.lock().map(|s| s.rv).unwrap_or(0);
        let mark = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
            "metadata": {"resourceVersion": rv.to_string()}}});
        async move { bookmarks.then_some(mark) }
    });
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs);
    let mut epoch = fake.epoch.subscribe();
    let ended = async move {
        tokio::select! {
            () = tokio::time::sleep(timeout) => {}
            _ = epoch.changed() => {}
        }
    };
    let stream = futures::stream::select(events, ticks)
        .take_until(Box::pin(ended))
        .map(|v| line(&v));
    respond(Body::from_stream(stream))
}
