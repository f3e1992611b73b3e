//! Session messages: push (who may say what), list, and the replay-then-live
//! watch.

use ambient_protocol::v1::{EventType, Session, SessionMessage};
use futures::Stream;
use tokio::sync::broadcast;

use super::{Api, required, stopped};
use crate::error::ApiError;
use crate::events::{Kind, Resource, ResourceEvent};
use crate::store::Stored;

/// Messages read from the database per replay batch.
const REPLAY_BATCH: i64 = 500;
/// The event type of what a user says.
pub const USER: &str = "user";

/// Who pushes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// A user, over REST: only `user` messages (the default event type).
    User,
    /// A service caller, over gRPC: any event type but `user`.
    Service,
}

impl Api {
    /// Appends a message to a session; its `seq` is the session's next one.
    /// Users (REST) speak only `user` messages, which is also the default;
    /// services (gRPC) push their own event types and never `user` ones.
    pub async fn push_message(
        &self,
        speaker: Speaker,
        session_id: &str,
        event_type: Option<String>,
        payload: String,
    ) -> Result<SessionMessage, ApiError> {
        let event_type = match (speaker, event_type.filter(|t| !t.is_empty())) {
            (Speaker::User, None) => USER.to_owned(),
            (Speaker::User, Some(t)) if t == USER => t,
            (Speaker::User, Some(_)) => {
                return Err(ApiError::invalid(format!(
                    "event_type must be {USER:?} (or absent)"
                )));
            }
            (Speaker::Service, Some(t)) if t == USER => {
                return Err(ApiError::Forbidden(format!(
                    "a service may not push {USER:?} messages; users speak over REST"
                )));
            }
            (Speaker::Service, t) => required("event_type", t)?,
        };
        let session_id = session_id.to_owned();
        self.store
            .write(move |tx| {
                if tx.get::<Session>(&session_id)?.is_none() {
                    return Err(ApiError::not_found(Session::KIND, session_id));
                }
                Ok(tx.append_message(&session_id, &event_type, &payload)?)
            })
            .await
    }

    /// Every message of a session with `seq > after_seq`.
    pub async fn list_messages(
        &self,
        session_id: &str,
        after_seq: i64,
    ) -> Result<Vec<SessionMessage>, ApiError> {
        let session_id = session_id.to_owned();
        self.store
            .read(move |tx| {
                if tx.get::<Session>(&session_id)?.is_none() {
                    return Err(ApiError::not_found(Session::KIND, session_id));
                }
                Ok(tx.messages_after(&session_id, after_seq, i64::MAX)?)
            })
            .await
    }

    /// The messages of a session with `seq > after_seq`, then every new one,
    /// in `seq` order with no gap and no duplicate.
    ///
    /// The hub is subscribed *before* the database is read, so a message
    /// committed after the replay read is necessarily on the live channel;
    /// live messages with `seq` at or below the last one sent are skipped. A
    /// watcher that falls behind the live buffer re-subscribes and replays
    /// from the database, so it never loses a message. The stream ends when
    /// the session is deleted and on shutdown.
    pub async fn watch_messages(
        &self,
        session_id: &str,
        after_seq: i64,
    ) -> Result<impl Stream<Item = Result<SessionMessage, ApiError>> + Send + 'static, ApiError>
    {
        enum Next {
            Message(Result<SessionMessage, broadcast::error::RecvError>),
            Change(Result<ResourceEvent, broadcast::error::RecvError>),
            Stop,
        }
        let hub = self.store.hub().clone();
        let mut live = hub.subscribe_messages();
        let mut changes = hub.subscribe_resources(Kind::Session);
        self.get_session(session_id).await?;
        let api = self.clone();
        let session_id = session_id.to_owned();
        let mut shutdown = self.shutdown.clone();
        let is_deletion = move |ev: &ResourceEvent, id: &str| {
            ev.event_type == EventType::Deleted
                && matches!(&ev.resource, Resource::Session(s) if s.id() == id)
        };
        Ok(async_stream::try_stream! {
            let mut last = after_seq;
            'resubscribe: loop {
                // Replay what is stored after `last`, in batches.
                loop {
                    let sid = session_id.clone();
                    let batch = api
                        .store
                        .read(move |tx| Ok(tx.messages_after(&sid, last, REPLAY_BATCH)?))
                        .await?;
                    let n = batch.len();
                    for m in batch {
                        last = m.seq;
                        yield m;
                    }
                    if i64::try_from(n).unwrap_or(0) < REPLAY_BATCH {
                        break;
                    }
                }
                // Then live.
                loop {
                    let next = tokio::select! {
                        r = live.recv() => Next::Message(r),
                        r = changes.recv() => Next::Change(r),
                        () = stopped(&mut shutdown) => Next::Stop,
                    };
                    match next {
                        Next::Stop
                        | Next::Message(Err(broadcast::error::RecvError::Closed))
                        | Next::Change(Err(broadcast::error::RecvError::Closed)) => break 'resubscribe,
                        Next::Message(Err(broadcast::error::RecvError::Lagged(_))) => {
                            live = hub.subscribe_messages();
                            continue 'resubscribe;
                        }
                        Next::Message(Ok(m)) => {
                            if m.session_id == session_id && m.seq > last {
                                last = m.seq;
                                yield m;
                            }
                        }
                        Next::Change(Ok(ev)) => {
                            if is_deletion(&ev, &session_id) {
                                // Messages committed before the deletion are
                                // already on the live channel: send them first.
                                while let Ok(m) = live.try_recv() {
                                    if m.session_id == session_id && m.seq > last {
                                        last = m.seq;
                                        yield m;
                                    }
                                }
                                break 'resubscribe;
                            }
                        }
                        Next::Change(Err(broadcast::error::RecvError::Lagged(_))) => {
                            changes = hub.subscribe_resources(Kind::Session);
                            let sid = session_id.clone();
                            let exists = api
                                .store
                                .read(move |tx| Ok(tx.get::<Session>(&sid)?.is_some()))
                                .await?;
                            if !exists {
                                break 'resubscribe;
                            }
                        }
                    }
                }
            }
        })
    }

    /// Every resource change from now on. A watcher that falls behind the
    /// bounded buffer gets [`ApiError::Lagged`] and the stream ends; the
    /// stream also ends on shutdown. Subscribes before returning.
    pub fn watch_resources(
        &self,
        kind: Kind,
    ) -> impl Stream<Item = Result<ResourceEvent, ApiError>> + Send + 'static {
        let mut rx = self.store.hub().subscribe_resources(kind);
        let mut shutdown = self.shutdown.clone();
        async_stream::try_stream! {
            loop {
                let next = tokio::select! {
                    r = rx.recv() => Some(r),
                    () = stopped(&mut shutdown) => None,
                };
                match next {
                    None | Some(Err(broadcast::error::RecvError::Closed)) => break,
                    Some(Err(broadcast::error::RecvError::Lagged(_))) => Err(ApiError::Lagged)?,
                    Some(Ok(event)) => yield event,
                }
            }
        }
    }
}
