//! `watch_session_messages` / `unwatch_session_messages` (daemons.md).
//!
//! A subscription follows the API's message SSE stream of one session from
//! `after_seq` (reconnecting after the last seq seen) and polls the
//! session's phase, because the API stream never ends by itself. When the
//! session reaches a terminal phase, the messages not yet delivered are
//! read once more as a list, and the subscription ends with a terminal
//! notification.
//!
//! Delivery: if the call carries a `progressToken`, the call stays open and
//! every message is a `notifications/progress` for it (`progress` = seq,
//! `message` = the message JSON; the first one, `progress` = `after_seq`,
//! carries the subscription ID); it returns when the session ends, the
//! subscription is cancelled, or the client cancels the request. Without a
//! token the call returns `{subscription_id, session_id}` at once and every
//! message goes out as a logging notification (`session-messages`).
//!
//! Subscription IDs are random and belong to one MCP session: another
//! session can neither see nor cancel them. All of a session's
//! subscriptions stop when it closes (its [`Subscriptions`] is dropped).
//!
//! MCP's logging notifications are deprecated by SEP-2577 in the newest
//! protocol revision, but daemons.md specifies them for watches without a
//! progress token (the clients of this sidecar speak older revisions).
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ambient_protocol::phase::Phase;
use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::{Peer, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ApiError, segment};
use crate::projection::{self, MESSAGE};
use crate::tools::{Args, ToolError, ToolResult, sessions};

/// How often a watched session's phase is read.
pub const PHASE_POLL: Duration = Duration::from_secs(1);
/// Pause before reconnecting a broken message stream.
const RECONNECT: Duration = Duration::from_millis(500);
/// Logger name of message notifications.
pub const LOGGER: &str = "session-messages";

/// The subscriptions of one MCP session.
#[derive(Debug)]
pub struct Subscriptions {
    active: Mutex<HashMap<String, CancellationToken>>,
    max: usize,
    /// Cancelled when the MCP session's handler goes away.
    root: CancellationToken,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

impl Subscriptions {
    /// At most `max` at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            active: Mutex::new(HashMap::new()),
            max,
            root: CancellationToken::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self) -> Result<(String, CancellationToken), ToolError> {
        let mut active = self.lock();
        if active.len() >= self.max {
            return Err(ToolError::new(
                "TOO_MANY_SUBSCRIPTIONS",
                format!("this MCP session already has {} subscriptions", self.max),
            ));
        }
        let id = format!("sub_{}", ambient_mcp_http::legacy_sse::random_id());
        let token = self.root.child_token();
        active.insert(id.clone(), token.clone());
        Ok((id, token))
    }

    /// Cancels one; false if this session has no such subscription.
    pub fn cancel(&self, id: &str) -> bool {
        match self.lock().remove(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where the messages of a subscription go.
enum Delivery {
    Progress(Peer<RoleServer>, ProgressToken),
    Logging(Peer<RoleServer>, String),
}

impl Delivery {
    /// False once the client is gone.
    async fn message(&self, message: &Value) -> bool {
        let seq = seq_of(message).unwrap_or(0);
        let shown = projection::one(message, MESSAGE);
        match self {
            Delivery::Progress(peer, token) => peer
                .notify_progress(
                    ProgressNotificationParam::new(token.clone(), seq as f64)
                        .with_message(shown.to_string()),
                )
                .await
                .is_ok(),
            Delivery::Logging(peer, sub) => peer
                .notify_logging_message(
                    LoggingMessageNotificationParam::new(
                        LoggingLevel::Info,
                        json!({"subscription_id": sub, "message": shown}),
                    )
                    .with_logger(LOGGER),
                )
                .await
                .is_ok(),
        }
    }
}

/// How a subscription ended.
enum End {
    /// The session reached this terminal phase (or was deleted).
    Terminal(String),
    /// Unwatched, cancelled, or the client went away.
    Stopped,
}

fn seq_of(message: &Value) -> Option<i64> {
    match message.get("seq")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The terminal phase of a session, if it has ended (deleted counts).
async fn ended(api: &Api, session_id: &str) -> Option<String> {
    match api
        .get(&format!("sessions/{}", segment(session_id)), &[])
        .await
    {
        Ok(s) => {
            let phase = s.get("phase").and_then(Value::as_str);
            Phase::of_session(phase)
                .is_ok_and(Phase::is_terminal)
                .then(|| phase.unwrap_or_default().to_owned())
        }
        Err(ApiError::Status { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {
            Some("Deleted".to_owned())
        }
        Err(_) => None,
    }
}

/// Messages after `last` as a list (the non-streaming GET).
async fn backlog(api: &Api, session_id: &str, last: i64) -> Vec<Value> {
    let path = format!("sessions/{}/messages", segment(session_id));
    let list = match api.get(&path, &[("after_seq", last.to_string())]).await {
        Ok(Value::Array(items)) => items,
        Ok(v) => v
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the message backlog");
            Vec::new()
        }
    };
    let mut list: Vec<Value> = list
        .into_iter()
        .filter(|m| seq_of(m).is_some_and(|s| s > last))
        .collect();
    list.sort_by_key(|m| seq_of(m).unwrap_or(0));
    list
}

/// Follows a session's messages until it ends or `stop` fires.
async fn follow(
    api: &Api,
    session_id: &str,
    mut last: i64,
    stop: &CancellationToken,
    delivery: &Delivery,
) -> End {
    let mut poll = tokio::time::interval(PHASE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stream: Option<reqwest::Response> = None;
    let mut frames = ambient_protocol::sse::SseFrames::default();
    loop {
        if stream.is_none() {
            match api.message_stream(session_id, last).await {
                Ok(r) => {
                    stream = Some(r);
                    frames.clear();
                }
                Err(e) => tracing::debug!(error = %e, "message stream unavailable; retrying"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => return End::Stopped,
            _ = poll.tick() => {
                if let Some(phase) = ended(api, session_id).await {
                    for m in backlog(api, session_id, last).await {
                        if !delivery.message(&m).await {
                            return End::Stopped;
                        }
                    }
                    return End::Terminal(phase);
                }
            }
            chunk = async {
                match stream.as_mut() {
                    Some(s) => s.chunk().await,
                    None => {
                        tokio::time::sleep(RECONNECT).await;
                        Ok(None)
                    }
                }
            } => match chunk {
                Ok(Some(bytes)) => {
                    for event in frames.push(&bytes) {
                        let Ok(message) = serde_json::from_str::<Value>(&event.data) else { continue };
                        match seq_of(&message) {
                            Some(seq) if seq > last => {
                                if !delivery.message(&message).await {
                                    return End::Stopped;
                                }
                                last = seq;
                            }
                            _ => {}
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    if stream.take().is_some() {
                        tokio::time::sleep(RECONNECT).await;
                    }
                }
            },
        }
    }
}

/// What a watch needs from the call.
#[derive(Debug)]
pub struct WatchCall<'a> {
    pub api: &'a Api,
    pub subscriptions: &'a Arc<Subscriptions>,
    pub peer: Peer<RoleServer>,
    pub progress: Option<ProgressToken>,
    /// Cancelled when the client cancels the request.
    pub cancelled: CancellationToken,
}

fn terminal(sub: &str, session: &str, phase: &str) -> Value {
    json!({"subscription_id": sub, "session_id": session, "terminal": true, "phase": phase})
}

/// `watch_session_messages` on an HTTP transport.
pub async fn watch(call: WatchCall<'_>, args: &Args) -> ToolResult {
    let session_id = args.id("session_id")?;
    let after_seq = args.int("after_seq")?.unwrap_or(0);
    if after_seq < 0 {
        return Err(ToolError::invalid("after_seq must not be negative"));
    }
    sessions::fetch(call.api, &session_id).await?;
    let (sub, stop) = call.subscriptions.add()?;
    tracing::debug!(subscription = sub, session = session_id, "watch started");
    match call.progress {
        Some(token) => {
            let started = ProgressNotificationParam::new(token.clone(), after_seq as f64)
                .with_message(json!({"subscription_id": sub}).to_string());
            let _ = call.peer.notify_progress(started).await;
            let delivery = Delivery::Progress(call.peer, token);
            let end = tokio::select! {
                end = follow(call.api, &session_id, after_seq, &stop, &delivery) => end,
                () = call.cancelled.cancelled() => End::Stopped,
            };
            call.subscriptions.forget(&sub);
            Ok(match end {
                End::Terminal(phase) => terminal(&sub, &session_id, &phase),
                End::Stopped => {
                    json!({"subscription_id": sub, "session_id": session_id, "cancelled": true})
                }
            })
        }
        None => {
            let api = call.api.clone();
            let subscriptions: Weak<Subscriptions> = Arc::downgrade(call.subscriptions);
            let peer = call.peer;
            let result = json!({"subscription_id": sub, "session_id": session_id});
            tokio::spawn(async move {
                let delivery = Delivery::Logging(peer.clone(), sub.clone());
                let end = follow(&api, &session_id, after_seq, &stop, &delivery).await;
                if let End::Terminal(phase) = end {
                    let last = LoggingMessageNotificationParam::new(
                        LoggingLevel::Info,
                        terminal(&sub, &session_id, &phase),
                    )
                    .with_logger(LOGGER);
                    let _ = peer.notify_logging_message(last).await;
                }
                if let Some(subs) = subscriptions.upgrade() {
                    subs.forget(&sub);
                }
                tracing::debug!(subscription = sub, "watch ended");
            });
            Ok(result)
        }
    }
}

/// `unwatch_session_messages`.
pub fn unwatch(subscriptions: &Subscriptions, args: &Args) -> ToolResult {
    let id = args.str("subscription_id")?;
    if subscriptions.cancel(&id) {
        Ok(json!({"cancelled": true}))
    } else {
        Err(ToolError::new(
            "SUBSCRIPTION_NOT_FOUND",
            format!("no active subscription with id {id}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_bounded_and_cancelled_with_their_owner() {
        let subs = Subscriptions::new(2);
        let (a, ta) = subs.add().unwrap_or_else(|e| panic!("{e:?}"));
        let (_b, tb) = subs.add().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            subs.add().err().map(|e| e.code),
            Some("TOO_MANY_SUBSCRIPTIONS")
        );
        assert!(subs.cancel(&a) && ta.is_cancelled());
        assert!(!subs.cancel(&a));
        drop(subs);
        assert!(tb.is_cancelled());
    }
}
