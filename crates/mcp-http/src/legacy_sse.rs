//! The legacy SSE transport (MCP 2024-11-05), which rmcp no longer ships,
//! as a thin adapter over rmcp's [`Transport`] trait:
//!
//! - `GET /sse` starts an MCP session with a fresh handler and answers an
//!   event stream; its first event is `endpoint` with the **relative** URL
//!   `/message?sessionId=<id>` (a client resolves it against the URL it
//!   used, so the sidecar never has to know its own address), then every
//!   server message as a `message` event;
//! - `POST /message?sessionId=<id>` hands one JSON-RPC message to that
//!   session and answers `202 Accepted`; the reply goes out on the stream.
//!   An unknown session is `404`, a body that is not a JSON-RPC message `400`.
//!
//! The session ends when the client drops the stream (the handler is then
//! dropped, cancelling whatever it runs) or at shutdown. A new stream
//! beyond the shared session cap ([`Capacity`]) is `503`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rmcp::ServerHandler;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage, serve_server};
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backlog::Backlog;
use crate::capacity::Capacity;

/// Messages buffered per direction per session.
const CHANNEL: usize = 64;

/// The stream of a session is gone.
#[derive(Debug, thiserror::Error)]
#[error("the SSE stream of this MCP session is closed")]
pub struct StreamClosed;

/// rmcp's view of one legacy SSE session: what the client POSTs comes in,
/// what the server sends goes out on the event stream.
///
/// A message is queued when rmcp calls `send`, not when rmcp's send task
/// first runs: rmcp calls `send` in the order it means, but runs each send
/// in a task of its own, and sends waiting for room in a full queue were
/// seen overtaking each other (progress 184 before 122). The future
/// returned waits while more than [`CHANNEL`] are queued: the
/// back-pressure that a bounded queue gave, with the order kept.
#[derive(Debug)]
struct ChannelTransport {
    outgoing: mpsc::UnboundedSender<ServerJsonRpcMessage>,
    queued: Arc<Backlog>,
    incoming: mpsc::Receiver<ClientJsonRpcMessage>,
}

impl Transport<RoleServer> for ChannelTransport {
    type Error = StreamClosed;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        // Counted before it is queued: the stream may take it at once.
        self.queued.add();
        let sent = self.outgoing.send(item);
        if sent.is_err() {
            self.queued.done();
        }
        let (queued, outgoing) = (self.queued.clone(), self.outgoing.clone());
        async move {
            sent.map_err(|_| StreamClosed)?;
            tokio::select! {
                () = queued.at_most(CHANNEL) => Ok(()),
                () = outgoing.closed() => Err(StreamClosed),
            }
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        Ok(())
    }
}

type Sessions = Arc<Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>>;

/// The legacy SSE endpoints for handlers made by one factory.
pub struct LegacySse<S> {
    factory: Arc<dyn Fn() -> S + Send + Sync>,
    sessions: Sessions,
    keep_alive: Duration,
    capacity: Arc<Capacity<S>>,
    shutdown: CancellationToken,
}

impl<S> std::fmt::Debug for LegacySse<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySse")
            .field("keep_alive", &self.keep_alive)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<S> Clone for LegacySse<S> {
    fn clone(&self) -> Self {
        Self {
            factory: self.factory.clone(),
            sessions: self.sessions.clone(),
            keep_alive: self.keep_alive,
            capacity: self.capacity.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// Removes a session from the table when its stream is dropped, and stops
/// its MCP service.
struct SessionGuard {
    id: String,
    sessions: Sessions,
    stop: CancellationToken,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        lock(&self.sessions).remove(&self.id);
    }
}

fn lock(
    sessions: &Sessions,
) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>> {
    sessions.lock().unwrap_or_else(|p| p.into_inner())
}

/// A random session ID: 128 bits, hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG failing is not something to serve through.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        std::process::abort();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, serde::Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

impl<S> LegacySse<S>
where
    S: ServerHandler + Send + 'static,
{
    /// Endpoints whose sessions use handlers from `factory`, counted in
    /// `capacity` (which the other transport may share).
    pub fn new(
        factory: impl Fn() -> S + Send + Sync + 'static,
        capacity: Arc<Capacity<S>>,
        keep_alive: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            factory: Arc::new(factory),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            keep_alive,
            capacity,
            shutdown,
        }
    }

    /// `GET /sse` and `POST /message`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/sse", get(open::<S>))
            .route("/message", post(deliver::<S>))
            .with_state(self)
    }

    /// Number of open sessions.
    pub fn open_sessions(&self) -> usize {
        lock(&self.sessions).len()
    }
}

async fn open<S>(State(sse): State<LegacySse<S>>) -> Response
where
    S: ServerHandler + Send + 'static,
{
    let id = random_id();
    let (to_server, incoming) = mpsc::channel(CHANNEL);
    let (outgoing, mut to_client) = mpsc::unbounded_channel();
    let queued = Arc::new(Backlog::default());
    let Some(handler) = sse.capacity.admit(|| (sse.factory)()) else {
        tracing::warn!("refused a new MCP session: too many open");
        return crate::too_many_sessions();
    };
    lock(&sse.sessions).insert(id.clone(), to_server);
    let stop = sse.shutdown.child_token();
    let guard = SessionGuard {
        id: id.clone(),
        sessions: sse.sessions.clone(),
        stop: stop.clone(),
    };
    let transport = ChannelTransport {
        outgoing,
        queued: queued.clone(),
        incoming,
    };
    let service_stop = stop.clone();
    let session = id.clone();
    tokio::spawn(async move {
        tokio::select! {
            served = serve_server(handler, transport) => match served {
                Ok(running) => {
                    let ct = running.cancellation_token();
                    tokio::select! {
                        _ = running.waiting() => {}
                        () = service_stop.cancelled() => ct.cancel(),
                    }
                }
                Err(e) => tracing::debug!(session, error = %e, "MCP session ended before initialisation"),
            },
            () = service_stop.cancelled() => {}
        }
    });
    tracing::debug!(session = id, "legacy SSE session opened");
    let endpoint = format!("/message?sessionId={id}");
    let events = async_stream::stream! {
        let _guard = guard;
        yield Ok::<Event, Infallible>(Event::default().event("endpoint").data(endpoint));
        loop {
            let message = tokio::select! {
                m = to_client.recv() => m,
                () = stop.cancelled() => None,
            };
            let Some(message) = message else { break };
            queued.done();
            match serde_json::to_string(&message) {
                Ok(json) => yield Ok(Event::default().event("message").data(json)),
                Err(e) => tracing::warn!(error = %e, "cannot encode an MCP message"),
            }
        }
    };
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(sse.keep_alive))
        .into_response()
}

async fn deliver<S>(
    State(sse): State<LegacySse<S>>,
    Query(query): Query<SessionQuery>,
    body: Bytes,
) -> Response
where
    S: ServerHandler + Send + 'static,
{
    let Some(id) = query.session_id else {
        return (StatusCode::BAD_REQUEST, "sessionId is required").into_response();
    };
    let Some(sender) = lock(&sse.sessions).get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "unknown MCP session").into_response();
    };
    let message: ClientJsonRpcMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a JSON-RPC message: {e}"),
            )
                .into_response();
        }
    };
    match sender.send(message).await {
        Ok(()) => (StatusCode::ACCEPTED, "Accepted").into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "unknown MCP session").into_response(),
    }
}
