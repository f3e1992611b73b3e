//! The credential fetch of wire.md §5: `GET …/credentials/{id}/token`
//! (fatal unless 200), then `GET …/credentials/{id}` (metadata, non-fatal),
//! each with the exchanged bearer, 10 s, and a 1 MiB limit enforced while
//! the body streams in. The token response is merged with the metadata,
//! which fills only missing keys. On a 401 the exchanged token is
//! invalidated and the call retried once with a fresh one.

use std::time::Duration;

use ambient_protocol::TokenExchanger;
use ambient_protocol::exchanger::ExchangeError;
use ambient_protocol::provider::Provider;
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};

/// Largest response body read.
pub const MAX_BODY: usize = 1024 * 1024;
/// Timeout of each request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed fetch. Shows statuses and sizes, never a body or a token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("token exchange failed: {0}")]
    Exchange(#[from] ExchangeError),
    #[error("{what} request failed: {detail}")]
    Transport { what: &'static str, detail: String },
    #[error("{what} answered HTTP {status} ({body_len} byte body)")]
    Status {
        what: &'static str,
        status: u16,
        body_len: usize,
    },
    #[error("{what} body exceeds {MAX_BODY} bytes")]
    TooLarge { what: &'static str },
    #[error("{what} body is not a JSON object ({body_len} bytes)")]
    NotJson { what: &'static str, body_len: usize },
    #[error("credential is for provider {found:?}, this sidecar serves {expected}")]
    WrongProvider { expected: Provider, found: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A credential as fetched: the token response merged with the metadata.
/// Holds secrets: never printed.
#[derive(Clone, PartialEq)]
pub struct Credential(pub Map<String, Value>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credential {
    /// A non-empty string field.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Fetches one credential from the API.
#[derive(Debug, Clone)]
pub struct CredentialSource {
    http: reqwest::Client,
    token_url: Url,
    meta_url: Url,
    provider: Provider,
}

impl CredentialSource {
    /// `api` must already have passed the cluster-local rule; `id` must be
    /// a validated credential ID.
    pub fn new(api: &Url, id: &str, provider: Provider) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            // A proxy or a redirect would take the bearer off the checked host.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        let meta_url = endpoint(api, &["api", "ambient", "v1", "credentials", id]);
        let token_url = endpoint(api, &["api", "ambient", "v1", "credentials", id, "token"]);
        Ok(Self {
            http,
            token_url,
            meta_url,
            provider,
        })
    }

    /// Fetches the credential: token (fatal), metadata (logged, non-fatal).
    pub async fn fetch(&self, exchanger: &TokenExchanger) -> Result<Credential, FetchError> {
        let mut merged = self
            .get_json(exchanger, &self.token_url, "credential token")
            .await?;
        if let Some(found) = merged.get("provider").and_then(Value::as_str)
            && !found.is_empty()
            && found != self.provider.as_str()
        {
            return Err(FetchError::WrongProvider {
                expected: self.provider,
                found: found.to_owned(),
            });
        }
        match self
            .get_json(exchanger, &self.meta_url, "credential metadata")
            .await
        {
            Ok(meta) => {
                for (k, v) in meta {
                    merged.entry(k).or_insert(v);
                }
            }
            Err(e) => tracing::warn!(error = %e, "credential metadata unavailable (non-fatal)"),
        }
        Ok(Credential(merged))
    }

    /// One GET with the exchanged bearer; on 401, one retry with a fresh token.
    async fn get_json(
        &self,
        exchanger: &TokenExchanger,
        url: &Url,
        what: &'static str,
    ) -> Result<Map<String, Value>, FetchError> {
        let mut retried = false;
        loop {
            let token = exchanger.token().await?;
            let response = self
                .http
                .get(url.clone())
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| transport(what, e))?;
            let status = response.status();
            let body = read_limited(response, what).await?;
            if status == StatusCode::UNAUTHORIZED && !retried {
                exchanger.invalidate();
                retried = true;
                continue;
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status {
                    what,
                    status: status.as_u16(),
                    body_len: body.len(),
                });
            }
            return match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(FetchError::NotJson {
                    what,
                    body_len: body.len(),
                }),
            };
        }
    }
}

/// Reads a body, refusing it as soon as it passes [`MAX_BODY`].
async fn read_limited(
    mut response: reqwest::Response,
    what: &'static str,
) -> Result<Vec<u8>, FetchError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(FetchError::TooLarge { what });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(what, e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::TooLarge { what });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// reqwest's error text with its cause chain, without the URL.
fn transport(what: &'static str, e: reqwest::Error) -> FetchError {
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    FetchError::Transport { what, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path_and_drop_query() {
        let base =
            Url::parse("http://api.ns.svc:8000/prefix/?x=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            endpoint(
                &base,
                &["api", "ambient", "v1", "credentials", "c1", "token"]
            )
            .as_str(),
            "http://api.ns.svc:8000/prefix/api/ambient/v1/credentials/c1/token"
        );
        let bare = Url::parse("http://localhost:8000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            endpoint(&bare, &["api", "x"]).as_str(),
            "http://localhost:8000/api/x"
        );
    }

    #[test]
    fn debug_shows_keys_not_values() {
        let mut m = Map::new();
        m.insert("token".into(), Value::String("s3cr3t-value".into()));
        let text = format!("{:?}", Credential(m));
        assert!(text.contains("token") && !text.contains("s3cr3t"), "{text}");
    }
}
