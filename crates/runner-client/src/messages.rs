//! [`SessionMessages`]: push to and watch one session's message stream.
//!
//! `push` makes one call, retried once with a fresh token after
//! `UNAUTHENTICATED` (the server refused it before doing anything, so the
//! retry cannot duplicate a message). `watch` is a [`Stream`] that outlives
//! its connections: it resumes after the last `seq` it yielded, so across
//! disconnects, server restarts and token refreshes every message comes out
//! once, in `seq` order.

use std::time::{Duration, Instant};

use ambient_protocol::Secret;
use ambient_protocol::backoff::Backoff;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_protocol::v1::{
    PushSessionMessageRequest, SessionMessage, WatchSessionMessagesRequest,
};
use futures::Stream;
use tonic::{Code, Status, Streaming};

use crate::channel::{Api, CallError, describe};
use crate::token::TokenError;

/// The event type users speak with; a runner (a service caller) may not push it.
pub const USER_EVENT_TYPE: &str = "user";

/// First and largest wait between watch reconnects.
const RECONNECT_BASE: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// A connection that lived this long counts as healthy: the backoff restarts.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// `UNAUTHENTICATED` answers in a row, each after a refresh, before giving up.
const MAX_AUTH_FAILURES: u32 = 5;

/// A push that did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    #[error(
        "event type \"user\" is refused: users speak over REST, and the API answers PERMISSION_DENIED to a runner pushing it"
    )]
    UserEventType,
    #[error("event type is empty")]
    EmptyEventType,
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Why a watch ended (it never ends on its own otherwise).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WatchError {
    #[error("watch refused: {}", describe(.0))]
    Refused(Status),
    #[error(transparent)]
    Token(TokenError),
    #[error("the API kept answering UNAUTHENTICATED after {0} token refreshes")]
    Unauthenticated(u32),
    #[error("the token is not a valid header value")]
    BadToken,
}

/// One session's messages.
#[derive(Debug, Clone)]
pub struct SessionMessages {
    api: Api,
    session_id: String,
}

impl SessionMessages {
    /// Messages of `session_id` through `api`.
    pub fn new(api: Api, session_id: impl Into<String>) -> Self {
        Self {
            api,
            session_id: session_id.into(),
        }
    }

    /// The session.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Appends a message; `user` is refused here, without a call.
    pub async fn push(
        &self,
        event_type: &str,
        payload: impl Into<String>,
    ) -> Result<SessionMessage, PushError> {
        if event_type == USER_EVENT_TYPE {
            return Err(PushError::UserEventType);
        }
        if event_type.trim().is_empty() {
            return Err(PushError::EmptyEventType);
        }
        let msg = PushSessionMessageRequest {
            session_id: self.session_id.clone(),
            event_type: event_type.to_owned(),
            payload: payload.into(),
        };
        Ok(self
            .api
            .unary(msg, |ch, req| async move {
                SessionServiceClient::new(ch)
                    .push_session_message(req)
                    .await
            })
            .await?)
    }

    /// Every message with `seq > after_seq`, then every new one, forever:
    /// reconnects with backoff, refreshes the token on `UNAUTHENTICATED`,
    /// resumes after the last yielded `seq`, never yields a `seq` twice or
    /// out of order. Ends after yielding an error the API will keep giving
    /// (session not found, permission denied, a token that cannot be
    /// refreshed).
    pub fn watch(
        &self,
        after_seq: i64,
    ) -> impl Stream<Item = Result<SessionMessage, WatchError>> + Send + 'static {
        let this = self.clone();
        async_stream::stream! {
            let mut last = after_seq;
            let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_MAX);
            let mut auth_failures = 0u32;
            loop {
                let (opened, used) = match this.open(last).await {
                    Ok(pair) => pair,
                    Err(Opening::Fatal(e)) => {
                        yield Err(e);
                        return;
                    }
                    Err(Opening::Retry(reason)) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(session = %this.session_id, error = %reason, retry_in_ms = wait.as_millis() as u64, "cannot open the message watch");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                };
                let (ended, since) = match opened {
                    Ok(mut stream) => {
                        auth_failures = 0;
                        let since = Instant::now();
                        let ended = loop {
                            match stream.message().await {
                                Ok(Some(m)) => {
                                    backoff.reset();
                                    if m.seq > last {
                                        last = m.seq;
                                        yield Ok(m);
                                    }
                                }
                                Ok(None) => break None,
                                Err(s) => break Some(s),
                            }
                        };
                        (ended, Some(since))
                    }
                    Err(s) => (Some(s), None),
                };
                if since.is_some_and(|t| t.elapsed() >= HEALTHY_AFTER) {
                    backoff.reset();
                }
                let Some(status) = ended else {
                    tracing::info!(session = %this.session_id, last_seq = last, "message watch ended by the server; reconnecting");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                };
                match classify(&status) {
                    Class::Fatal => {
                        yield Err(WatchError::Refused(status));
                        return;
                    }
                    Class::Unauthenticated => {
                        auth_failures += 1;
                        if auth_failures > MAX_AUTH_FAILURES {
                            yield Err(WatchError::Unauthenticated(MAX_AUTH_FAILURES));
                            return;
                        }
                        tracing::info!(session = %this.session_id, "API answered UNAUTHENTICATED; refreshing the token");
                        match this.api.tokens().refresh_after_rejection(&used).await {
                            Ok(_) if auth_failures == 1 => continue,
                            Ok(_) => {}
                            Err(e @ TokenError::CannotRefresh(_)) => {
                                yield Err(WatchError::Token(e));
                                return;
                            }
                            Err(e) => tracing::warn!(error = %e, "token refresh failed"),
                        }
                    }
                    Class::Transient => {
                        tracing::warn!(session = %this.session_id, error = %describe(&status), last_seq = last, "message watch interrupted; reconnecting");
                    }
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }

    /// Opens one watch after `last`; returns the call's result and the token used.
    async fn open(
        &self,
        last: i64,
    ) -> Result<(Result<Streaming<SessionMessage>, Status>, Secret), Opening> {
        let msg = WatchSessionMessagesRequest {
            session_id: self.session_id.clone(),
            after_seq: last,
        };
        let (req, used) = self.api.request(msg).await.map_err(|e| match e {
            CallError::Token(e @ TokenError::CannotRefresh(_)) => {
                Opening::Fatal(WatchError::Token(e))
            }
            CallError::BadToken => Opening::Fatal(WatchError::BadToken),
            other => Opening::Retry(other.to_string()),
        })?;
        let opened = SessionServiceClient::new(self.api.channel())
            .watch_session_messages(req)
            .await
            .map(tonic::Response::into_inner);
        Ok((opened, used))
    }
}

enum Opening {
    Fatal(WatchError),
    Retry(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Fatal,
    Unauthenticated,
    Transient,
}

/// Answers the API will repeat are fatal; the rest are worth a reconnect.
fn classify(status: &Status) -> Class {
    match status.code() {
        Code::Unauthenticated => Class::Unauthenticated,
        Code::NotFound
        | Code::PermissionDenied
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::AlreadyExists => Class::Fatal,
        _ => Class::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenSource;

    #[test]
    fn statuses_the_api_repeats_end_the_watch() {
        assert_eq!(classify(&Status::not_found("x")), Class::Fatal);
        assert_eq!(classify(&Status::permission_denied("x")), Class::Fatal);
        assert_eq!(
            classify(&Status::unauthenticated("x")),
            Class::Unauthenticated
        );
        assert_eq!(classify(&Status::unavailable("x")), Class::Transient);
        assert_eq!(classify(&Status::internal("x")), Class::Transient);
        assert_eq!(classify(&Status::cancelled("x")), Class::Transient);
    }

    #[tokio::test]
    async fn user_and_empty_event_types_are_refused_without_a_call() {
        // Nothing listens on port 1: a call would fail differently.
        let api = Api::new(
            "127.0.0.1:1",
            false,
            None,
            TokenSource::fixed(Secret::new("t")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = SessionMessages::new(api, "session-0001");
        assert!(matches!(
            m.push("user", "hi").await,
            Err(PushError::UserEventType)
        ));
        assert!(matches!(
            m.push(" ", "hi").await,
            Err(PushError::EmptyEventType)
        ));
        assert!(matches!(
            m.push("assistant", "hi").await,
            Err(PushError::Call(CallError::Status(_)))
        ));
    }
}
