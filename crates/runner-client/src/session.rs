//! The end of a session: [`wait_terminal`] resolves once the session reaches
//! `Stopped`, `Completed` or `Failed`, or is deleted.
//!
//! The message stream never ends with its session (wire.md §2), so a watcher
//! that should stop with the session learns the phase here: `WatchSessions`
//! opened first, then one `GetSession` (so no change falls between the two),
//! then the session's events; after a disconnect, the same again with
//! backoff. A `DELETED` event is matched on `resource_id` alone (the
//! reference leaves its `session` unset).

use std::time::Duration;

use ambient_protocol::backoff::Backoff;
use ambient_protocol::phase::Phase;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_protocol::v1::{EventType, GetSessionRequest, Session, WatchSessionsRequest};
use tonic::Code;

use crate::channel::{Api, CallError};

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It reached this terminal phase.
    Phase(Phase),
    /// It was deleted (or never existed).
    Deleted,
}

/// Waits until `session_id` is terminal or gone. Transient failures are
/// retried with backoff; an answer the API will repeat (permission denied,
/// a token that cannot be refreshed) is returned.
pub async fn wait_terminal(api: &Api, session_id: &str) -> Result<End, CallError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match watch_once(api, session_id).await {
            Ok(Some(end)) => return Ok(end),
            Ok(None) => backoff.reset(),
            Err(e) if is_permanent(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(session = %session_id, error = %e, "session phase watch interrupted")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One watch: `Some(end)` when the session ended, `None` when the stream did.
async fn watch_once(api: &Api, session_id: &str) -> Result<Option<End>, CallError> {
    let mut events = api
        .open_stream(WatchSessionsRequest {}, |ch, req| async move {
            SessionServiceClient::new(ch).watch_sessions(req).await
        })
        .await?;
    let get = GetSessionRequest {
        id: session_id.to_owned(),
    };
    match api
        .unary(get, |ch, req| async move {
            SessionServiceClient::new(ch).get_session(req).await
        })
        .await
    {
        Ok(s) => {
            if let Some(end) = terminal(&s) {
                return Ok(Some(end));
            }
        }
        Err(e) if e.code() == Some(Code::NotFound) => return Ok(Some(End::Deleted)),
        Err(e) => return Err(e),
    }
    while let Some(ev) = events.message().await.map_err(CallError::Status)? {
        let id = ev
            .session
            .as_ref()
            .and_then(|s| s.metadata.as_ref())
            .map_or(ev.resource_id.as_str(), |m| m.id.as_str());
        if id != session_id && ev.resource_id != session_id {
            continue;
        }
        if ev.r#type == EventType::Deleted as i32 {
            return Ok(Some(End::Deleted));
        }
        if let Some(end) = ev.session.as_ref().and_then(terminal) {
            return Ok(Some(end));
        }
    }
    Ok(None)
}

fn terminal(s: &Session) -> Option<End> {
    Phase::of_session(s.phase.as_deref())
        .ok()
        .filter(|p| p.is_terminal())
        .map(End::Phase)
}

fn is_permanent(e: &CallError) -> bool {
    match e {
        CallError::Status(s) => matches!(
            s.code(),
            Code::PermissionDenied
                | Code::Unauthenticated
                | Code::InvalidArgument
                | Code::Unimplemented
        ),
        CallError::Token(crate::token::TokenError::CannotRefresh(_))
        | CallError::Rejected(_)
        | CallError::BadToken => true,
        CallError::Token(_) | CallError::Endpoint(_) => false,
    }
}
