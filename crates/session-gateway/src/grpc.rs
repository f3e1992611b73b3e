//! gRPC `ambient.v1` for session pods: the [`crate::allow::GRPC`] methods of
//! `SessionService` on the token's own session, forwarded over one channel
//! with the control plane's identity; streams end when the session does.
//! Every other method of every service answers `PERMISSION_DENIED`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ambient_protocol::v1::session_service_server::{SessionService, SessionServiceServer};
use ambient_protocol::v1::{
    CreateSessionRequest, DeleteSessionRequest, DeleteSessionResponse, EventType,
    GetSessionRequest, ListSessionsRequest, ListSessionsResponse, PushSessionMessageRequest,
    Session, SessionMessage, SessionWatchEvent, UpdateSessionRequest, UpdateSessionStatusRequest,
    WatchSessionMessagesRequest, WatchSessionsRequest,
};
use futures::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

use crate::SessionIdentity;
use crate::access::{self, Refusal};
use crate::gateway::Inner;
use crate::upstream::Upstream;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC router: `SessionService`, and a refusal for every other path.
pub(crate) fn router(gw: Arc<Inner>) -> axum::Router {
    tonic::service::Routes::new(SessionServiceServer::new(Sessions { gw }))
        .into_axum_router()
        .fallback(|req: axum::extract::Request| async move {
            tracing::warn!(
                route = req.uri().path(),
                "gateway: gRPC call refused (not on the allow-list)"
            );
            Status::permission_denied("not allowed for a session token")
                .into_http::<axum::body::Body>()
        })
}

/// The first field of a status write that is the control plane's, not the
/// runner's: only `sdk_session_id`, `sdk_restart_count` and `conditions`
/// are the runner's ([`crate::allow::SESSION_STATUS`]).
fn control_plane_field(r: &UpdateSessionStatusRequest) -> Option<&'static str> {
    [
        ("phase", r.phase.is_some()),
        ("start_time", r.start_time.is_some()),
        ("completion_time", r.completion_time.is_some()),
        ("reconciled_repos", r.reconciled_repos.is_some()),
        ("reconciled_workflow", r.reconciled_workflow.is_some()),
        ("kube_cr_uid", r.kube_cr_uid.is_some()),
        ("kube_namespace", r.kube_namespace.is_some()),
    ]
    .into_iter()
    .find_map(|(name, set)| set.then_some(name))
}

struct Sessions {
    gw: Arc<Inner>,
}

/// An upstream failure as the caller sees it: the API refusing the control
/// plane's identity is the gateway's fault, not the caller's token's.
fn upstream(status: Status) -> Status {
    match status.code() {
        Code::Unauthenticated => {
            tracing::error!("gateway: the API refused the control plane's token");
            Status::unavailable("the API refused the gateway's identity")
        }
        _ => status,
    }
}

/// `msg` with the control plane's bearer.
async fn authorized<T>(up: &Upstream, msg: T) -> Result<Request<T>, Status> {
    let token = up.bearer().await.map_err(|e| {
        tracing::error!(error = %e, "gateway: no control-plane token");
        Status::unavailable("the gateway has no API identity")
    })?;
    let value: MetadataValue<_> = format!("Bearer {}", token.expose())
        .parse()
        .map_err(|_| Status::internal("the control plane's token is not a valid header"))?;
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}

/// The event a closing session watch ends with: the session as the API has
/// it now (terminal, when it ended), or its deletion. The upstream event
/// saying so may still be on its way when the control plane's caches close
/// the watch; without this a client would see the stream end and then
/// `UNAUTHENTICATED`, never the end itself.
async fn last_word(up: Upstream, id: String) -> Option<Result<SessionWatchEvent, Status>> {
    let req = authorized(&up, GetSessionRequest { id: id.clone() })
        .await
        .ok()?;
    let mut client = up.grpc.clone();
    match client.get_session(req).await {
        Ok(s) => Some(Ok(SessionWatchEvent {
            r#type: EventType::Updated as i32,
            session: Some(s.into_inner()),
            resource_id: id,
        })),
        Err(e) if e.code() == Code::NotFound => Some(Ok(SessionWatchEvent {
            r#type: EventType::Deleted as i32,
            session: None,
            resource_id: id,
        })),
        Err(_) => None,
    }
}

/// The own session's events of `events` until `ended`, then [`last_word`].
fn session_watch(
    events: impl Stream<Item = Result<SessionWatchEvent, Status>> + Send + 'static,
    ended: impl Future<Output = ()> + Send + 'static,
    up: Upstream,
    own: String,
) -> BoxStream<SessionWatchEvent> {
    struct Live<S, E> {
        events: Pin<Box<S>>,
        ended: Pin<Box<E>>,
        up: Upstream,
        own: String,
    }
    let start = Some(Box::new(Live {
        events: Box::pin(events),
        ended: Box::pin(ended),
        up,
        own,
    }));
    Box::pin(futures::stream::unfold(start, |state| async move {
        let mut live = state?;
        loop {
            tokio::select! {
                item = live.events.next() => {
                    let item = item?;
                    if let Ok(ev) = &item
                        && ev.resource_id != live.own
                        && ev
                            .session
                            .as_ref()
                            .and_then(|s| s.metadata.as_ref())
                            .is_none_or(|m| m.id != live.own)
                    {
                        continue;
                    }
                    return Some((item, Some(live)));
                }
                () = &mut live.ended => {
                    let last = last_word(live.up, live.own).await?;
                    return Some((last, None));
                }
            }
        }
    }))
}

impl Sessions {
    /// The caller, admitted, calling `method` on `session`.
    fn admit<T>(
        &self,
        req: &Request<T>,
        method: &str,
        session: &str,
    ) -> Result<SessionIdentity, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let who = access::authenticate(&*self.gw.verify, &*self.gw.facts, header).map_err(|r| {
            tracing::info!(
                method,
                reason = r.reason(),
                "gateway: gRPC caller not admitted"
            );
            Status::unauthenticated(r.reason())
        })?;
        if session != who.session_id {
            tracing::warn!(
                session = who.session_id,
                method,
                "gateway: gRPC call on another session refused"
            );
            return Err(Status::permission_denied("only the token's own session"));
        }
        Ok(who)
    }

    fn deny<T>(&self, req: &Request<T>, method: &str) -> Status {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match access::authenticate(&*self.gw.verify, &*self.gw.facts, header) {
            Ok(who) => {
                tracing::warn!(
                    session = who.session_id,
                    method,
                    "gateway: gRPC call refused (not on the allow-list)"
                );
                Status::permission_denied("not allowed for a session token")
            }
            Err(r) => Status::unauthenticated(Refusal::reason(r)),
        }
    }

    /// `msg` with the control plane's bearer.
    async fn upstream_request<T>(&self, msg: T) -> Result<Request<T>, Status> {
        authorized(&self.gw.upstream, msg).await
    }

    /// `stream`, ended when `who`'s session stops admitting its token.
    fn until_ended<T: Send + 'static>(
        &self,
        who: SessionIdentity,
        stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    ) -> BoxStream<T> {
        let ended = access::ended(self.gw.facts.clone(), who);
        Box::pin(stream.take_until(Box::pin(ended)))
    }
}

#[tonic::async_trait]
impl SessionService for Sessions {
    async fn get_session(
        &self,
        r: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        self.admit(&r, "GetSession", &r.get_ref().id)?;
        let req = self.upstream_request(r.into_inner()).await?;
        let mut up = self.gw.upstream.grpc.clone();
        up.get_session(req).await.map_err(upstream)
    }

    async fn create_session(
        &self,
        r: Request<CreateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        Err(self.deny(&r, "CreateSession"))
    }

    async fn update_session(
        &self,
        r: Request<UpdateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        Err(self.deny(&r, "UpdateSession"))
    }

    async fn update_session_status(
        &self,
        r: Request<UpdateSessionStatusRequest>,
    ) -> Result<Response<Session>, Status> {
        let who = self.admit(&r, "UpdateSessionStatus", &r.get_ref().id)?;
        if let Some(field) = control_plane_field(r.get_ref()) {
            tracing::warn!(
                session = who.session_id,
                field,
                "gateway: gRPC status write refused"
            );
            return Err(Status::permission_denied(format!(
                "a session may not set its {field}"
            )));
        }
        let req = self.upstream_request(r.into_inner()).await?;
        let mut up = self.gw.upstream.grpc.clone();
        up.update_session_status(req).await.map_err(upstream)
    }

    async fn delete_session(
        &self,
        r: Request<DeleteSessionRequest>,
    ) -> Result<Response<DeleteSessionResponse>, Status> {
        Err(self.deny(&r, "DeleteSession"))
    }

    async fn list_sessions(
        &self,
        r: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        Err(self.deny(&r, "ListSessions"))
    }

    type WatchSessionsStream = BoxStream<SessionWatchEvent>;

    async fn watch_sessions(
        &self,
        r: Request<WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        let header = r
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let who = access::authenticate(&*self.gw.verify, &*self.gw.facts, header)
            .map_err(|e| Status::unauthenticated(e.reason()))?;
        let req = self.upstream_request(r.into_inner()).await?;
        let mut up = self.gw.upstream.grpc.clone();
        let events = up.watch_sessions(req).await.map_err(upstream)?.into_inner();
        let own = who.session_id.clone();
        let ended = access::ended(self.gw.facts.clone(), who);
        Ok(Response::new(session_watch(
            events,
            ended,
            self.gw.upstream.clone(),
            own,
        )))
    }

    async fn push_session_message(
        &self,
        r: Request<PushSessionMessageRequest>,
    ) -> Result<Response<SessionMessage>, Status> {
        self.admit(&r, "PushSessionMessage", &r.get_ref().session_id)?;
        let req = self.upstream_request(r.into_inner()).await?;
        let mut up = self.gw.upstream.grpc.clone();
        up.push_session_message(req).await.map_err(upstream)
    }

    type WatchSessionMessagesStream = BoxStream<SessionMessage>;

    async fn watch_session_messages(
        &self,
        r: Request<WatchSessionMessagesRequest>,
    ) -> Result<Response<Self::WatchSessionMessagesStream>, Status> {
        let who = self.admit(&r, "WatchSessionMessages", &r.get_ref().session_id)?;
        let req = self.upstream_request(r.into_inner()).await?;
        let mut up = self.gw.upstream.grpc.clone();
        let messages = up
            .watch_session_messages(req)
            .await
            .map_err(upstream)?
            .into_inner();
        Ok(Response::new(self.until_ended(who, messages)))
    }
}
