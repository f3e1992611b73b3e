//! The gateway's own REST answers: the error shape of wire.md §2.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access::Refusal;
use crate::allow::API_PREFIX;

/// An error answer `{"kind":"Error","id","href","code","reason","operation_id"}`.
pub fn error(status: StatusCode, reason: &str) -> Response {
    let id = status.as_u16();
    let body = serde_json::json!({
        "kind": "Error",
        "id": id.to_string(),
        "href": format!("{API_PREFIX}/errors/{id}"),
        "code": format!("GATEWAY-{id}"),
        "reason": reason,
        "operation_id": "",
    });
    let mut resp = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// `401`: the bearer is not a session token of a live session.
pub fn unauthenticated(refusal: Refusal, method: &str, route: &str) -> Response {
    tracing::info!(
        method,
        route,
        reason = refusal.reason(),
        "gateway: caller not admitted"
    );
    error(StatusCode::UNAUTHORIZED, refusal.reason())
}

/// `403`, logged with the session and the route (never a token).
pub fn forbidden(session: &str, method: &str, route: &str, why: &str) -> Response {
    tracing::warn!(session, method, route, why, "gateway: call refused");
    error(
        StatusCode::FORBIDDEN,
        &format!("not allowed for a session token: {why}"),
    )
}

/// `404`: a path outside the API, which the API server would not serve
/// either; logged with the session and the route.
pub fn not_served(session: &str, method: &str, route: &str) -> Response {
    tracing::info!(session, method, route, "gateway: not an API path");
    error(StatusCode::NOT_FOUND, "not an API path")
}
