//! The API server's REST side (wire.md §2), for what its gRPC side lacks:
//! roles, role bindings, credentials, project prompts, agents and inboxes.
//! The same [`TokenProvider`] as the gRPC client gives the bearer, with one
//! refresh-and-retry on 401; every call has a deadline and a body limit.

use std::sync::Arc;
use std::time::Duration;

use ambient_protocol::exchanger::{BodyError, read_limited};
use ambient_token_server::TokenProvider;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// Deadline of one REST call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest body read from the API.
const BODY_LIMIT: usize = 4 << 20;
/// Page size of list calls.
const PAGE_SIZE: usize = 100;

/// A REST call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    #[error("API server URL: {0}")]
    Address(String),
    #[error("cannot get an API token: {0}")]
    Token(String),
    #[error("REST call {path} failed: {reason}")]
    Transport { path: String, reason: String },
    #[error("REST call {path} answered {code}")]
    Status { path: String, code: u16 },
    #[error("REST call {path}: unexpected body: {reason}")]
    Decode { path: String, reason: String },
    #[error("refusing to search for {0:?}: not a safe search value")]
    Unsafe(String),
}

impl RestError {
    /// True for a 404 answer.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RestError::Status { code: 404, .. })
    }
}

/// `value` when it may be put into a search (wire.md §2:
/// `^[a-zA-Z0-9_.@:\-]+$`); the API is never asked anything else.
pub fn search_value(value: &str) -> Result<&str, RestError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | ':' | '-');
    if !value.is_empty() && value.chars().all(ok) {
        Ok(value)
    } else {
        Err(RestError::Unsafe(value.chars().take(64).collect()))
    }
}

/// REST client of `/api/ambient/v1`.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: Url,
    provider: Arc<dyn TokenProvider>,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// A client of the API server at `api_url` (e.g. `http://api:8000`),
    /// trusting the system roots and the CA certificates of `ca_files`
    /// (PEM bundles; the OpenShift service CA).
    pub fn new(
        api_url: &str,
        provider: Arc<dyn TokenProvider>,
        ca_files: &[std::path::PathBuf],
    ) -> Result<Self, RestError> {
        let mut base = Url::parse(api_url.trim()).map_err(|e| RestError::Address(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(RestError::Address(
                "must be an http:// or https:// URL".into(),
            ));
        }
        base.path_segments_mut()
            .map_err(|()| RestError::Address("cannot be a base URL".into()))?
            .pop_if_empty()
            .extend(["api", "ambient", "v1"]);
        let mut roots = Vec::new();
        for path in ca_files {
            let pem = std::fs::read(path).map_err(|e| {
                RestError::Address(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            roots.extend(reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RestError::Address(format!("the CA file {} is not PEM: {e}", path.display()))
            })?);
        }
        let http = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RestError::Address(e.to_string()))?;
        Ok(Self {
            http,
            base,
            provider,
        })
    }

    /// The URL of `segments` below the API root (each one percent-encoded).
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, RestError> {
        let path = segments.join("/");
        let url = self.url(segments, query);
        let mut refreshed = false;
        loop {
            let token = self
                .provider
                .token()
                .await
                .map_err(|e| RestError::Token(e.to_string()))?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.token.expose())
                .header("accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| RestError::Transport {
                path: path.clone(),
                reason: e.without_url().to_string(),
            })?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                self.provider.invalidate();
                refreshed = true;
                continue;
            }
            if !status.is_success() {
                return Err(RestError::Status {
                    path,
                    code: status.as_u16(),
                });
            }
            if status == StatusCode::NO_CONTENT {
                return Ok(None);
            }
            let raw = read_limited(resp, BODY_LIMIT)
                .await
                .map_err(|e| RestError::Transport {
                    path: path.clone(),
                    reason: match e {
                        BodyError::TooLarge(n) => format!("body larger than {n} bytes"),
                        BodyError::Transport(e) => e.without_url().to_string(),
                    },
                })?;
            if raw.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| RestError::Decode {
                    path,
                    reason: e.to_string(),
                });
        }
    }

    /// `GET` one object.
    pub async fn get(&self, segments: &[&str]) -> Result<Value, RestError> {
        Ok(self
            .call(Method::GET, segments, &[], None)
            .await?
            .unwrap_or(Value::Null))
    }

    /// `POST` a JSON body; the created object.
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value, RestError> {
        Ok(self
            .call(Method::POST, segments, &[], Some(body))
            .await?
            .unwrap_or(Value::Null))
    }

    /// `DELETE`; `Ok(false)` when it was already gone.
    pub async fn delete(&self, segments: &[&str]) -> Result<bool, RestError> {
        match self.call(Method::DELETE, segments, &[], None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, page by page (`search` may be empty).
    pub async fn list_all(&self, segments: &[&str], search: &str) -> Result<Vec<Value>, RestError> {
        let size = PAGE_SIZE.to_string();
        let mut items = Vec::new();
        for page in 1usize.. {
            let page_s = page.to_string();
            let mut query = vec![("page", page_s.as_str()), ("size", size.as_str())];
            if !search.is_empty() {
                query.push(("search", search));
            }
            let body = self
                .call(Method::GET, segments, &query, None)
                .await?
                .unwrap_or(Value::Null);
            let Some(batch) = body.get("items").and_then(Value::as_array) else {
                return Err(RestError::Decode {
                    path: segments.join("/"),
                    reason: "no items array".into(),
                });
            };
            let total = body.get("total").and_then(Value::as_u64);
            let got = batch.len();
            items.extend(batch.iter().cloned());
            let done = got < PAGE_SIZE || total.is_some_and(|t| items.len() as u64 >= t);
            if done {
                break;
            }
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_values_go_into_a_search() {
        for ok in ["abc", "A-1_b.c@d:e", "2ABCdef"] {
            assert_eq!(search_value(ok), Ok(ok));
        }
        for bad in ["", "a'b", "a b", "x' or '1'='1", "a/b", "ü"] {
            assert!(search_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_encode_each_segment_below_the_api_root() {
        let rest = Rest::new(
            "http://api:8000/",
            Arc::new(ambient_token_server::StaticToken::new(
                ambient_protocol::Secret::new("t"),
            )),
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let url = rest.url(&["credentials", "a/b?c"], &[("search", "x = 'y'")]);
        assert_eq!(
            url.as_str(),
            "http://api:8000/api/ambient/v1/credentials/a%2Fb%3Fc?search=x+%3D+%27y%27"
        );
        assert!(
            Rest::new(
                "ftp://x",
                Arc::new(ambient_token_server::StaticToken::new(
                    ambient_protocol::Secret::new("t"),
                )),
                &[]
            )
            .is_err()
        );
    }
}
