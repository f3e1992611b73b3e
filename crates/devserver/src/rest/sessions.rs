//! `/sessions`: CRUD scoped by project, phase transitions, status, and the
//! message endpoints (POST, JSON list, SSE).

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::{ListQ, RawBody, Result, body, created, no_content, ok, project_scope, query};
use crate::mapping::{MessageBody, SessionBody, StatusBody, list_json, message_json, session_json};
use crate::service::{Api, Caller, Speaker, USER};

/// Interval of the SSE keep-alive comment `: ping`.
pub const SSE_PING: Duration = Duration::from_secs(30);

async fn sessions_list(State(api): State<Api>, headers: HeaderMap, q: ListQ) -> Result<Response> {
    let params = query(q)?;
    let scope = project_scope(params.project_id.as_deref(), &headers)?;
    let page = api
        .list_sessions(&params.list_query(), scope.as_deref())
        .await?;
    Ok(ok(list_json("Session", page.map(|s| session_json(&s)))))
}

#[derive(Debug, Deserialize)]
struct ScopeParams {
    project_id: Option<String>,
}

async fn sessions_create(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    q: std::result::Result<Query<ScopeParams>, axum::extract::rejection::QueryRejection>,
    raw: RawBody,
) -> Result<Response> {
    let scope = project_scope(query(q)?.project_id.as_deref(), &headers)?;
    let mut b: SessionBody = body(raw)?;
    let agent_id = b.agent_id.take();
    let s = api
        .create_session(&caller, b.into_create(), scope, agent_id)
        .await?;
    Ok(created(session_json(&s)))
}

async fn session_get(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(session_json(&api.get_session(&id).await?)))
}

async fn session_patch(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let b: SessionBody = body(raw)?;
    Ok(ok(session_json(
        &api.update_session(b.into_update(&id)).await?,
    )))
}

async fn session_delete(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    api.delete_session(&id).await?;
    Ok(no_content())
}

async fn session_start(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(session_json(&api.start_session(&id).await?)))
}

async fn session_stop(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(session_json(&api.stop_session(&id).await?)))
}

async fn session_status(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let b: StatusBody = body(raw)?;
    let s = api.update_session_status(b.into_request(&id)?).await?;
    Ok(ok(session_json(&s)))
}

// ----- messages ----------------------------------------------------------------

/// `?after_seq=`, kept as text: an unparsable value is ignored.
#[derive(Debug, Deserialize)]
struct MessageParams {
    after_seq: Option<String>,
}

/// POST a `user` message. An `event_type` other than `user` is refused
/// with a plain-text 400, as the reference does on this endpoint.
async fn messages_post(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let b: MessageBody = body(raw)?;
    if b.event_type
        .as_deref()
        .is_some_and(|t| !t.is_empty() && t != USER)
    {
        return Ok((
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "event_type must be \"user\" (or absent)\n",
        )
            .into_response());
    }
    let m = api
        .push_message(Speaker::User, &id, b.event_type, b.payload)
        .await?;
    Ok(created(message_json(&m)))
}

fn parse_seq(v: Option<&str>) -> Option<i64> {
    v.and_then(|s| s.trim().parse::<i64>().ok())
}

/// JSON array of messages, or — with `Accept: text/event-stream` exactly —
/// an SSE stream of `id: <seq>` / `data: <message JSON>` frames resuming
/// after `Last-Event-ID` (preferred) or `?after_seq=`; unparsable resume
/// points are ignored. A `: ping` comment every [`SSE_PING`].
async fn messages_get(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: std::result::Result<Query<MessageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let params = query(q)?;
    let wants_sse = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.trim() == "text/event-stream"));
    let last_event_id = parse_seq(headers.get("last-event-id").and_then(|v| v.to_str().ok()));
    let after = last_event_id
        .or(parse_seq(params.after_seq.as_deref()))
        .unwrap_or(0);
    if !wants_sse {
        let messages = api.list_messages(&id, after).await?;
        return Ok(ok(Value::Array(
            messages.iter().map(message_json).collect(),
        )));
    }
    let stream = api.watch_messages(&id, after).await?;
    let frames = async_stream::stream! {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(m) => yield Ok::<_, Infallible>(
                    Event::default()
                        .id(m.seq.to_string())
                        .data(message_json(&m).to_string()),
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "message stream ended");
                    break;
                }
            }
        }
    };
    Ok(Sse::new(frames)
        .keep_alive(KeepAlive::new().interval(SSE_PING).text("ping"))
        .into_response())
}

/// The session routes.
pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/sessions", get(sessions_list).post(sessions_create))
        .route(
            "/sessions/{id}",
            get(session_get).patch(session_patch).delete(session_delete),
        )
        .route("/sessions/{id}/start", post(session_start))
        .route("/sessions/{id}/stop", post(session_stop))
        .route("/sessions/{id}/status", patch(session_status))
        .route(
            "/sessions/{id}/messages",
            get(messages_get).post(messages_post),
        )
}
