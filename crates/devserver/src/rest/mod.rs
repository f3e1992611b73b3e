//! The REST subset under `/api/ambient/v1` (wire.md §2), plus `POST
//! /oidc/token` and `GET /healthz`.
//!
//! Bodies are read as bytes (at most [`MAX_BODY`]) and decoded here, so every
//! failure — oversized, not JSON, a field of the wrong type — answers with the
//! error body of wire.md §2 and changes nothing. Unknown JSON fields are
//! ignored. Error reasons never echo request values.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::service::{API_PREFIX, Api, ListQuery, is_safe_value};

mod access;
mod projects;
mod sessions;

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
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
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

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// `page`, `size`, `search`, `orderBy` of a list call (and the session
/// list's `project_id`; other parameters such as `fields` are ignored).
#[derive(Debug, Deserialize)]
struct ListParams {
    page: Option<i64>,
    size: Option<i64>,
    search: Option<String>,
    #[serde(rename = "orderBy")]
    order_by: Option<String>,
    project_id: Option<String>,
}

impl ListParams {
    fn list_query(&self) -> ListQuery {
        ListQuery {
            page: self.page,
            size: self.size,
            search: self.search.clone(),
            order_by: self.order_by.clone(),
        }
    }
}

/// The header the reference SDKs send with the caller's project.
pub const PROJECT_HEADER: &str = "x-ambient-project";

/// The project a call is scoped to: `?project_id=`, else the
/// `X-Ambient-Project` header; a value that is not a plain name is refused.
fn project_scope(param: Option<&str>, headers: &HeaderMap) -> Result<Option<String>> {
    let value = match param {
        Some(p) => Some(p),
        None => match headers.get(PROJECT_HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                RestError::bad_request("X-Ambient-Project is not a valid project ID")
            })?),
        },
    };
    match value {
        None => Ok(None),
        Some(v) if is_safe_value(v) => Ok(Some(v.to_owned())),
        Some(_) => Err(RestError::bad_request(
            "the project scope must match ^[a-zA-Z0-9_.@:-]+$",
        )),
    }
}

type ListQ = std::result::Result<Query<ListParams>, QueryRejection>;
type RawBody = std::result::Result<Bytes, BytesRejection>;

// ----- plumbing --------------------------------------------------------------

/// Lets a request through when its bearer token is accepted, with the
/// token's [`crate::service::Caller`] as a request extension.
async fn require_bearer(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match auth.caller(header) {
        Some(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        None => RestError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token")
            .into_response(),
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
    let v1 = sessions::routes()
        .merge(projects::routes())
        .merge(access::routes())
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
