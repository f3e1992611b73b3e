//! The REST client of `/api/ambient/v1` (wire.md §2): JSON in and out, a
//! 30 s timeout per call (as the reference), bodies read up to a limit, and
//! on `401` one immediate token refresh and retry.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url, header};
use serde_json::Value;

use crate::credentials::Credentials;

/// Timeout of one API call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// A message stream that says nothing for this long is reconnected (the
/// API sends a keep-alive every 30 s).
pub const STREAM_IDLE: Duration = Duration::from_secs(75);

/// A failed API call. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status.
    #[error("HTTP {status}: {reason}")]
    Status { status: StatusCode, reason: String },
    /// No token could be obtained.
    #[error("cannot obtain an API token: {0}")]
    Token(String),
    /// The request did not complete.
    #[error("API request failed: {0}")]
    Transport(String),
    /// The body is larger than [`MAX_BODY`].
    #[error("API response larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body is not the JSON expected.
    #[error("API response is not valid JSON: {0}")]
    BadBody(String),
}

impl ApiError {
    /// The HTTP status, for an API refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    base: Url,
    http: reqwest::Client,
    credentials: Credentials,
}

/// A transport failure with its causes (reqwest names the URL, never a header).
fn transport(e: &reqwest::Error) -> ApiError {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::Transport(msg)
}

/// Builds the HTTP client: system roots plus `ca_file`, the process's
/// proxy settings (`*_PROXY`). One client serves calls and message streams:
/// one connection pool, and the system root store loaded and held once (it
/// is parsed per client). A stream is cut after [`STREAM_IDLE`] of silence;
/// a call carries its own [`CALL_TIMEOUT`].
fn client(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let extra = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read SSL_CERT_FILE {}: {e}", path.display()))?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("SSL_CERT_FILE {}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    reqwest::Client::builder()
        .tls_certs_merge(extra)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(STREAM_IDLE)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl Api {
    /// A client of the REST API at `base` (`…/api/ambient/v1/`).
    pub fn new(base: Url, credentials: Credentials, ca_file: Option<&Path>) -> Result<Api, String> {
        Ok(Api {
            base,
            http: client(ca_file)?,
            credentials,
        })
    }

    /// The URL of `path` (segments already escaped) under the base.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ApiError> {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ApiError::Transport(format!("bad path: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// `GET path?query`.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        self.call(Method::GET, path, query, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.call(Method::PATCH, path, &[], Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.call(Method::DELETE, path, &[], None).await
    }

    /// One call, retried once with a fresh token after a 401.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = self.url(path, query)?;
        let response = self
            .send_authorized(&self.http, |c| {
                let mut req = c
                    .request(method.clone(), url.clone())
                    .timeout(CALL_TIMEOUT)
                    .header(header::ACCEPT, "application/json");
                if let Some(body) = body {
                    req = req.json(body);
                }
                req
            })
            .await?;
        let status = response.status();
        let bytes = read_limited(response).await?;
        if !status.is_success() {
            return Err(ApiError::Status {
                status,
                reason: error_reason(&bytes),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadBody(e.to_string()))
    }

    /// Opens the SSE message stream of a session after `after_seq`.
    pub async fn message_stream(
        &self,
        session_id: &str,
        after_seq: i64,
    ) -> Result<reqwest::Response, ApiError> {
        let url = self.url(
            &format!("sessions/{}/messages", segment(session_id)),
            &[("after_seq", after_seq.to_string())],
        )?;
        let response = self
            .send_authorized(&self.http, |c| {
                c.get(url.clone())
                    .header(header::ACCEPT, "text/event-stream")
                    .header("Last-Event-ID", after_seq.to_string())
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = read_limited(response).await.unwrap_or_default();
            return Err(ApiError::Status {
                status,
                reason: error_reason(&bytes),
            });
        }
        Ok(response)
    }

    /// Sends with the current token; after a 401, once more with a fresh one.
    async fn send_authorized(
        &self,
        client: &reqwest::Client,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let mut retried = false;
        loop {
            let token = self
                .credentials
                .token()
                .await
                .map_err(|e| ApiError::Token(e.to_string()))?;
            let response = build(client)
                .bearer_auth(token.expose())
                .send()
                .await
                .map_err(|e| transport(&e))?;
            if response.status() == StatusCode::UNAUTHORIZED
                && !retried
                && self.credentials.rejected()
            {
                tracing::info!("API answered 401: refreshing the token and retrying once");
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }
}

/// Reads a body up to [`MAX_BODY`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(ApiError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `reason` of an error body (JSON `{"reason": …}` or plain text), cut short.
pub fn error_reason(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        return "(no body)".to_owned();
    }
    text.chars().take(300).collect()
}

/// One escaped path segment.
pub fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("abc-1_2.x"), "abc-1_2.x");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn an_unreadable_ca_file_is_a_clear_error() {
        let base = Url::parse("http://api/api/ambient/v1/").unwrap_or_else(|e| panic!("{e}"));
        let creds = Credentials::Static(ambient_protocol::Secret::new("t"));
        let missing = Path::new("/nonexistent/service-ca.crt");
        let err = Api::new(base.clone(), creds.clone(), Some(missing)).err();
        assert!(err.is_some_and(|e| e.contains("SSL_CERT_FILE")));
        let dir = std::env::temp_dir().join(format!("mcp-ca-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let garbage = dir.join("ca.pem");
        let _ = std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        assert!(Api::new(base, creds, Some(&garbage)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reasons_from_json_or_text() {
        assert_eq!(error_reason(br#"{"kind":"Error","reason":"nope"}"#), "nope");
        assert_eq!(error_reason(b"plain refusal\n"), "plain refusal");
        assert_eq!(error_reason(b""), "(no body)");
    }
}
