//! The REST subset under `/api/ambient/v1` (wire.md §2), plus `POST
//! /oidc/token` and `GET /healthz`.
//!
//! Bodies are read as bytes (at most [`MAX_BODY`]) and decoded here, so every
//! failure — oversized, not JSON, a field of the wrong type — answers with the
//! error body of wire.md §2 and changes nothing. Unknown JSON fields are
//! ignored. Error reasons never echo request values.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::mapping::{
    MessageBody, ProjectBody, SessionBody, StatusBody, agent_json, credential_json, list_json,
    message_json, project_json, session_json,
};
use crate::model::{AgentFields, CredentialFields};
use crate::service::{API_PREFIX, Api, ListQuery};

/// Largest request body accepted: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// An error answer: `{"kind":"Error","id","href","code","reason","operation_id"}`.
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    reason: String,
}

impl RestError {
    /// An error with this status and reason (the reason must hold no secret).
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// The numeric error ID of the body, by status.
    fn error_id(&self) -> u16 {
        match self.status {
            StatusCode::BAD_REQUEST => 8,
            StatusCode::UNAUTHORIZED => 11,
            StatusCode::FORBIDDEN => 4,
            StatusCode::NOT_FOUND => 7,
            StatusCode::METHOD_NOT_ALLOWED => 12,
            StatusCode::CONFLICT => 6,
            StatusCode::PAYLOAD_TOO_LARGE => 13,
            StatusCode::SERVICE_UNAVAILABLE => 10,
            _ => 9,
        }
    }
}

impl From<ApiError> for RestError {
    fn from(e: ApiError) -> Self {
        let status = match &e {
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Lagged | ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(err) => {
                tracing::error!(error = %err, "storage failure");
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal storage error");
            }
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let id = self.error_id();
        let operation_id = crate::ids::new_id().unwrap_or_default();
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, reason = %self.reason, %operation_id, "request failed");
        } else {
            tracing::debug!(status = %self.status, reason = %self.reason, %operation_id, "request refused");
        }
        let body = serde_json::json!({
            "kind": "Error",
            "id": id.to_string(),
            "href": format!("{API_PREFIX}/errors/{id}"),
            "code": format!("AMBIENT-{id}"),
            "reason": self.reason,
            "operation_id": operation_id,
        });
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

type Result<T> = std::result::Result<T, RestError>;

/// Decodes a JSON body; the reason says what kind of problem and where, never the value.
fn body<T: DeserializeOwned>(raw: std::result::Result<Bytes, BytesRejection>) -> Result<T> {
    let bytes = raw.map_err(|r| {
        RestError::new(
            r.status(),
            format!("cannot read the request body: {}", r.body_text()),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Io => "unreadable",
            Category::Syntax => "not valid JSON",
            Category::Data => "a field has the wrong type or value",
            Category::Eof => "truncated or empty JSON",
        };
        RestError::bad_request(format!(
            "invalid request body: {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(t)| t)
        .map_err(|r| RestError::bad_request(format!("invalid query: {}", r.body_text())))
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// `page`, `size`, `search` of a list call.
#[derive(Debug, Deserialize)]
struct ListParams {
    page: Option<i64>,
    size: Option<i64>,
    search: Option<String>,
}

impl From<ListParams> for ListQuery {
    fn from(p: ListParams) -> Self {
        ListQuery {
            page: p.page,
            size: p.size,
            search: p.search,
        }
    }
}

type ListQ = std::result::Result<Query<ListParams>, QueryRejection>;
type RawBody = std::result::Result<Bytes, BytesRejection>;

// ----- sessions ------------------------------------------------------------

async fn sessions_list(State(api): State<Api>, q: ListQ) -> Result<Response> {
    let page = api.list_sessions(&query(q)?.into()).await?;
    Ok(ok(list_json("Session", page.map(|s| session_json(&s)))))
}

async fn sessions_create(State(api): State<Api>, raw: RawBody) -> Result<Response> {
    let mut b: SessionBody = body(raw)?;
    let agent_id = b.agent_id.take();
    let s = api.create_session(b.into_create(), agent_id).await?;
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
    Ok(StatusCode::NO_CONTENT.into_response())
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

// ----- session messages ----------------------------------------------------

#[derive(Debug, Deserialize)]
struct MessageParams {
    after_seq: Option<i64>,
}

async fn messages_post(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let b: MessageBody = body(raw)?;
    let m = api.push_message(&id, b.event_type, b.payload).await?;
    Ok(created(message_json(&m)))
}

/// JSON array of messages, or — with `Accept: text/event-stream` — an SSE
/// stream of `id: <seq>` / `data: <message JSON>` frames resuming after
/// `Last-Event-ID` (preferred) or `?after_seq=`.
async fn messages_get(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: std::result::Result<Query<MessageParams>, QueryRejection>,
) -> Result<Response> {
    let params = query(q)?;
    let wants_sse = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| RestError::bad_request("Last-Event-ID must be a message seq"))?,
        ),
    };
    let after = last_event_id.or(params.after_seq).unwrap_or(0);
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
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ----- projects ------------------------------------------------------------

async fn projects_list(State(api): State<Api>, q: ListQ) -> Result<Response> {
    let page = api.list_projects(&query(q)?.into()).await?;
    Ok(ok(list_json("Project", page.map(|p| project_json(&p)))))
}

async fn projects_create(State(api): State<Api>, raw: RawBody) -> Result<Response> {
    let mut b: ProjectBody = body(raw)?;
    let prompt = b.prompt.take();
    let p = api.create_project(b.into_create(), prompt).await?;
    Ok(created(project_json(&p)))
}

async fn project_get(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(project_json(&api.get_project(&id).await?)))
}

async fn project_patch(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let mut b: ProjectBody = body(raw)?;
    let prompt = b.prompt.take();
    let p = api.update_project(b.into_update(&id), prompt).await?;
    Ok(ok(project_json(&p)))
}

async fn project_delete(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    api.delete_project(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- agents --------------------------------------------------------------

async fn agents_list(
    State(api): State<Api>,
    Path(pid): Path<String>,
    q: ListQ,
) -> Result<Response> {
    let page = api.list_agents(&pid, &query(q)?.into()).await?;
    Ok(ok(list_json("Agent", page.map(|a| agent_json(&a)))))
}

async fn agents_create(
    State(api): State<Api>,
    Path(pid): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let f: AgentFields = body(raw)?;
    Ok(created(agent_json(&api.create_agent(&pid, f).await?)))
}

async fn agent_get(
    State(api): State<Api>,
    Path((pid, aid)): Path<(String, String)>,
) -> Result<Response> {
    Ok(ok(agent_json(&api.get_agent(&pid, &aid).await?)))
}

async fn agent_patch(
    State(api): State<Api>,
    Path((pid, aid)): Path<(String, String)>,
    raw: RawBody,
) -> Result<Response> {
    let f: AgentFields = body(raw)?;
    Ok(ok(agent_json(&api.update_agent(&pid, &aid, f).await?)))
}

async fn agent_delete(
    State(api): State<Api>,
    Path((pid, aid)): Path<(String, String)>,
) -> Result<Response> {
    api.delete_agent(&pid, &aid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- credentials ---------------------------------------------------------

async fn credentials_list(State(api): State<Api>, q: ListQ) -> Result<Response> {
    let page = api.list_credentials(&query(q)?.into()).await?;
    Ok(ok(list_json(
        "Credential",
        page.map(|c| credential_json(&c)),
    )))
}

async fn credentials_create(State(api): State<Api>, raw: RawBody) -> Result<Response> {
    let f: CredentialFields = body(raw)?;
    Ok(created(credential_json(&api.create_credential(f).await?)))
}

async fn credential_get(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(credential_json(&api.get_credential(&id).await?)))
}

async fn credential_patch(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let f: CredentialFields = body(raw)?;
    Ok(ok(credential_json(&api.update_credential(&id, f).await?)))
}

async fn credential_delete(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    api.delete_credential(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn credential_token(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    let (provider, token) = api.credential_token(&id).await?;
    let mut resp = ok(serde_json::json!({
        "credential_id": id,
        "provider": provider,
        "token": token.expose(),
    }));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

// ----- plumbing --------------------------------------------------------------

async fn require_bearer(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if auth.accepts_header(header) {
        next.run(req).await
    } else {
        RestError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token").into_response()
    }
}

async fn not_found() -> RestError {
    RestError::new(StatusCode::NOT_FOUND, "no such resource")
}

async fn method_not_allowed() -> RestError {
    RestError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this resource",
    )
}

/// The HTTP router: the REST API (bearer-protected), `POST /oidc/token` and
/// `GET /healthz`.
pub fn router(api: Api, auth: Arc<Auth>) -> Router {
    let v1 = Router::new()
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
        .route("/projects", get(projects_list).post(projects_create))
        .route(
            "/projects/{id}",
            get(project_get).patch(project_patch).delete(project_delete),
        )
        .route(
            "/projects/{pid}/agents",
            get(agents_list).post(agents_create),
        )
        .route(
            "/projects/{pid}/agents/{aid}",
            get(agent_get).patch(agent_patch).delete(agent_delete),
        )
        .route(
            "/credentials",
            get(credentials_list).post(credentials_create),
        )
        .route(
            "/credentials/{id}",
            get(credential_get)
                .patch(credential_patch)
                .delete(credential_delete),
        )
        .route("/credentials/{id}/token", get(credential_token))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
        .layer(middleware::from_fn_with_state(auth.clone(), require_bearer));
    Router::new()
        .nest(API_PREFIX, v1)
        .route("/oidc/token", post(crate::oidc::token).with_state(auth))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
}
