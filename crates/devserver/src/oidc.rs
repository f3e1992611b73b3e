//! `POST /oidc/token`: an OAuth 2.0 client-credentials token endpoint
//! (RFC 6749 §4.4), so the control plane's OIDC path runs against something
//! real. Client credentials come in the form body (`client_id`,
//! `client_secret`) or HTTP Basic auth; the answer is
//! `{"access_token", "token_type": "Bearer", "expires_in"}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::auth::Auth;

fn oauth_error(status: StatusCode, error: &str) -> Response {
    let mut resp = (status, axum::Json(serde_json::json!({ "error": error }))).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The token endpoint handler.
pub async fn token(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let creds = basic_credentials(&headers).or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    });
    let Some((id, secret)) = creds else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if !auth.client_matches(&id, &secret) {
        tracing::info!("OIDC token refused: unknown client or wrong secret");
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = match auth.issue(&id) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot issue an OIDC token");
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        }
    };
    tracing::debug!(client_id = %id, "OIDC token issued");
    let body = serde_json::json!({
        "access_token": token.expose(),
        "token_type": "Bearer",
        "expires_in": auth.ttl().as_secs(),
    });
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
