//! Forwarding to the API server: the control plane's bearer instead of the
//! caller's, only an allow-list of request headers forwarded, hop-by-hop
//! headers of answers dropped, the project header set, bodies
//! bounded, event streams relayed as they come and cut when the caller's
//! session ends.

use std::future::Future;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;

use super::refuse;
use super::scope::Narrow;
use crate::upstream::Upstream;

/// Largest request body forwarded.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Largest response body relayed (event streams excepted), and read when a
/// list is narrowed or an object looked up.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;
/// The header naming the caller's project (wire.md §2).
pub const PROJECT_HEADER: &str = "x-ambient-project";

/// Headers never forwarded either way: hop-by-hop ones (RFC 9110 §7.6.1),
/// and those the gateway sets itself.
fn dropped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
            | "cookie"
            | "set-cookie"
            | "content-length"
            | PROJECT_HEADER
    )
}

/// The headers of `from` that may cross the gateway: not [`dropped`], and
/// not named by its `Connection` header (RFC 9110 §7.6.1).
fn crossing(from: &HeaderMap) -> HeaderMap {
    let named: Vec<&str> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut out = HeaderMap::with_capacity(from.len() + 2);
    for (name, value) in from {
        if !dropped(name) && !named.iter().any(|n| n.eq_ignore_ascii_case(name.as_str())) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The request headers a caller's call carries upstream: what its content
/// and the answer it wants are (ambient-mcp's client, the credential
/// entrypoint and the reference runner send no other the API reads). The
/// rest — `X-Forwarded-For`, `X-Real-IP`, `Forwarded`, tracing or
/// impersonation headers a proxy or the API might trust — stays behind.
const REQUEST_HEADERS: &[&str] = &["accept", "content-type", "last-event-id"];

/// The headers of a caller's request forwarded upstream.
fn forwarded_request(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(REQUEST_HEADERS.len() + 2);
    for (name, value) in from {
        if REQUEST_HEADERS.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// `200` with a JSON body.
pub fn json(v: &Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// What a lookup found.
#[derive(Debug)]
pub enum Answer {
    /// A JSON object (a `2xx` answer).
    Object(Value),
    /// The API's refusal, relayed as is.
    Refused(Response),
    /// The API could not be asked (a `502` to relay).
    Failed(Response),
}

/// One upstream call with the control plane's identity.
pub async fn send(
    up: &Upstream,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
    project: &str,
) -> Result<reqwest::Response, Response> {
    let token = up.bearer().await.map_err(|e| {
        tracing::error!(error = %e, "gateway: no control-plane token");
        refuse::error(StatusCode::BAD_GATEWAY, "the gateway has no API identity")
    })?;
    let mut out = forwarded_request(headers);
    if let Ok(v) = HeaderValue::from_str(project) {
        out.insert(HeaderName::from_static(PROJECT_HEADER), v);
    }
    let mut req = up
        .http
        .request(method, format!("{}{path_and_query}", up.rest_base))
        .headers(out)
        .bearer_auth(token.expose());
    if !body.is_empty() {
        req = req.body(body);
    }
    let resp = req.send().await.map_err(|e| {
        tracing::warn!(error = %e.without_url(), "gateway: API call failed");
        refuse::error(StatusCode::BAD_GATEWAY, "the API server is unreachable")
    })?;
    if resp.status() == StatusCode::UNAUTHORIZED {
        // The control plane's identity was refused: not the caller's token.
        tracing::error!("gateway: the API refused the control plane's token");
        return Err(refuse::error(
            StatusCode::BAD_GATEWAY,
            "the API refused the gateway's identity",
        ));
    }
    Ok(resp)
}

/// Reads a body up to [`MAX_RESPONSE_BODY`].
pub async fn read(mut resp: reqwest::Response) -> Result<Vec<u8>, Response> {
    let too_large = || refuse::error(StatusCode::BAD_GATEWAY, "the API answer is too large");
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BODY as u64)
    {
        return Err(too_large());
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) if out.len() + c.len() > MAX_RESPONSE_BODY => return Err(too_large()),
            Ok(Some(c)) => out.extend_from_slice(&c),
            Ok(None) => return Ok(out),
            Err(_) => {
                return Err(refuse::error(
                    StatusCode::BAD_GATEWAY,
                    "the API answer was cut",
                ));
            }
        }
    }
}

/// The response head of `resp`, minus dropped headers.
fn head(resp: &reqwest::Response) -> (StatusCode, HeaderMap) {
    (resp.status(), crossing(resp.headers()))
}

/// Relays `resp` as is, streaming; an event stream ends when `ended`
/// resolves, any other body is cut past [`MAX_RESPONSE_BODY`].
pub fn relay(
    resp: reqwest::Response,
    ended: impl Future<Output = ()> + Send + 'static,
) -> Response {
    let (status, mut headers) = head(&resp);
    let events = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if let Some(n) = resp.content_length() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let chunks = futures::stream::unfold(Some((resp, 0usize)), move |state| async move {
        let (mut resp, seen) = state?;
        match resp.chunk().await {
            Ok(Some(c)) if !events && seen + c.len() > MAX_RESPONSE_BODY => {
                Some((Err("the API answer is too large".into()), None))
            }
            Ok(Some(c)) => {
                let seen = seen + c.len();
                Some((Ok(c), Some((resp, seen))))
            }
            Ok(None) => None,
            Err(e) => Some((
                Err(Box::<dyn std::error::Error + Send + Sync>::from(
                    e.without_url(),
                )),
                None,
            )),
        }
    });
    let body = if events {
        Body::from_stream(chunks.take_until(Box::pin(ended)))
    } else {
        Body::from_stream(chunks)
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// A JSON list answer keeping only the items whose `narrow.key` is
/// `project`, its `total` and `size` those of the kept items when
/// `narrow.recount` says so or items were dropped.
pub async fn narrowed(resp: reqwest::Response, narrow: Narrow, project: &str) -> Response {
    let key = narrow.key;
    let (status, headers) = head(&resp);
    let bytes = match read(resp).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !status.is_success() {
        let mut out = Response::new(Body::from(bytes));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        return out;
    }
    let Ok(mut list) = serde_json::from_slice::<Value>(&bytes) else {
        return refuse::error(
            StatusCode::BAD_GATEWAY,
            "the API answered a list that is not JSON",
        );
    };
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else {
        return refuse::error(
            StatusCode::BAD_GATEWAY,
            "the API answered a list without items",
        );
    };
    let before = items.len();
    items.retain(|i| i.get(key).and_then(Value::as_str) == Some(project));
    let kept = items.len();
    if narrow.recount || kept != before {
        list["size"] = Value::from(kept);
        list["total"] = Value::from(kept);
    }
    json(&list)
}

/// `GET path` upstream for a scope check.
pub async fn lookup(up: &Upstream, path: &str, project: &str) -> Answer {
    let resp = match send(
        up,
        Method::GET,
        path,
        &HeaderMap::new(),
        Bytes::new(),
        project,
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return Answer::Failed(r),
    };
    let (status, headers) = head(&resp);
    let bytes = match read(resp).await {
        Ok(b) => b,
        Err(r) => return Answer::Failed(r),
    };
    if !status.is_success() {
        let mut out = Response::new(Body::from(bytes));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        return Answer::Refused(out);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v.is_object() => Answer::Object(v),
        _ => Answer::Failed(refuse::error(
            StatusCode::BAD_GATEWAY,
            "the API answered an object that is not JSON",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_own_headers_do_not_cross() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer session-token"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-ambient-project", "other"),
            ("cookie", "c=1"),
            ("accept", "text/event-stream"),
            ("last-event-id", "7"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = crossing(&h);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "last-event-id"]);
    }

    #[test]
    fn only_allowed_request_headers_go_upstream() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer session-token"),
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("impersonate-user", "admin"),
            ("x-ambient-project", "other"),
            ("accept", "text/event-stream"),
            ("content-type", "application/json"),
            ("last-event-id", "7"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = forwarded_request(&h);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "content-type", "last-event-id"]);
    }
}
