//! Rule 6 of the exchange: the API token handed out.
//!
//! A [`TokenProvider`] gives the token (and its expiry when known):
//! [`StaticToken`] for a fixed token, [`OidcClientCredentials`] for an OIDC
//! client-credentials grant cached until 30 s before expiry.

use std::time::{Duration, SystemTime};

use ambient_protocol::Secret;
use ambient_protocol::exchanger::{BodyError, read_limited};

use crate::BoxFuture;

/// An API token and, when the provider knows it, its expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    pub token: Secret,
    pub expires_at: Option<SystemTime>,
}

/// The provider could not produce a token. Never carries a token, a secret or
/// a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("token endpoint request failed: {0}")]
    Transport(String),
    #[error("token endpoint answered HTTP {status} ({body_len} byte body)")]
    Status { status: u16, body_len: usize },
    #[error("token endpoint response is not the expected JSON ({body_len} byte body)")]
    BadBody { body_len: usize },
    #[error("no API token configured")]
    Empty,
}

/// Source of the API token the exchange hands out.
pub trait TokenProvider: Send + Sync + 'static {
    /// The current token (fetching or refreshing it when needed).
    fn token(&self) -> BoxFuture<'_, Result<IssuedToken, ProviderError>>;

    /// Forgets a cached token (e.g. after the API answered 401), so the next
    /// [`TokenProvider::token`] fetches a fresh one.
    fn invalidate(&self) {}
}

/// A fixed API token without a known expiry.
#[derive(Debug, Clone)]
pub struct StaticToken(Secret);

impl StaticToken {
    /// A provider always giving `token`.
    pub fn new(token: Secret) -> Self {
        Self(token)
    }
}

impl TokenProvider for StaticToken {
    fn token(&self) -> BoxFuture<'_, Result<IssuedToken, ProviderError>> {
        let result = if self.0.is_empty() {
            Err(ProviderError::Empty)
        } else {
            Ok(IssuedToken {
                token: self.0.clone(),
                expires_at: None,
            })
        };
        Box::pin(async move { result })
    }
}

/// Refresh a cached OIDC token this long before it expires.
pub const OIDC_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// How long a token without `expires_in` is reused (its expiry stays unknown).
pub const OIDC_DEFAULT_REUSE: Duration = Duration::from_secs(300);
/// Longest lifetime taken from `expires_in` (a larger value, up to
/// `u64::MAX`, is capped rather than overflowing the clock).
pub const OIDC_MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest token endpoint response read (refused while streaming).
const MAX_BODY: usize = 64 * 1024;

/// OIDC client-credentials grant (form POST `grant_type=client_credentials`,
/// `client_id`, `client_secret`), cached until 30 s before expiry; one fetch
/// at a time.
#[derive(Debug)]
pub struct OidcClientCredentials {
    token_url: String,
    client_id: String,
    client_secret: Secret,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    token: IssuedToken,
    /// When to fetch again.
    refresh_at: SystemTime,
}

#[derive(serde::Deserialize)]
struct OidcResponse {
    access_token: Secret,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl OidcClientCredentials {
    /// A provider for `token_url`; makes no request yet.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProviderError::Transport(e.to_string()))?;
        Ok(Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            http,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    async fn fetch(&self) -> Result<Cached, ProviderError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let resp = self
            .http
            .post(&self.token_url)
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| ProviderError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        let body = read_limited(resp, MAX_BODY).await.map_err(|e| match e {
            BodyError::TooLarge(read) => ProviderError::BadBody { body_len: read },
            BodyError::Transport(e) => ProviderError::Transport(e.without_url().to_string()),
        })?;
        if !status.is_success() {
            return Err(ProviderError::Status {
                status: status.as_u16(),
                body_len: body.len(),
            });
        }
        let parsed: OidcResponse =
            serde_json::from_slice(&body).map_err(|_| ProviderError::BadBody {
                body_len: body.len(),
            })?;
        if parsed.access_token.is_empty() {
            return Err(ProviderError::BadBody {
                body_len: body.len(),
            });
        }
        let (expires_at, refresh_at) = schedule(SystemTime::now(), parsed.expires_in);
        Ok(Cached {
            token: IssuedToken {
                token: parsed.access_token,
                expires_at,
            },
            refresh_at,
        })
    }
}

/// Expiry and refresh time of a token fetched at `now` with `expires_in`
/// (capped at [`OIDC_MAX_LIFETIME`]; refresh 30 s before expiry, or at once
/// when it lives shorter than that).
fn schedule(now: SystemTime, expires_in: Option<u64>) -> (Option<SystemTime>, SystemTime) {
    match expires_in {
        Some(secs) => {
            let life = Duration::from_secs(secs).min(OIDC_MAX_LIFETIME);
            let expires = now.checked_add(life).unwrap_or(now);
            let refresh = expires
                .checked_sub(OIDC_REFRESH_MARGIN)
                .filter(|r| *r > now)
                .unwrap_or(now);
            (Some(expires), refresh)
        }
        None => (None, now.checked_add(OIDC_DEFAULT_REUSE).unwrap_or(now)),
    }
}

impl TokenProvider for OidcClientCredentials {
    fn token(&self) -> BoxFuture<'_, Result<IssuedToken, ProviderError>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            if let Some(cached) = cache.as_ref()
                && SystemTime::now() < cached.refresh_at
            {
                return Ok(cached.token.clone());
            }
            let fresh = self.fetch().await?;
            let token = fresh.token.clone();
            *cache = Some(fresh);
            Ok(token)
        })
    }

    fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.try_lock() {
            *cache = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Form;
    use axum::routing::post;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Grant {
        grant_type: String,
        client_id: String,
        client_secret: String,
    }

    /// A fake OIDC token endpoint answering `expires_in` seconds.
    async fn fake_idp(expires_in: Option<u64>) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = axum::Router::new().route(
            "/token",
            post(move |Form(g): Form<Grant>| {
                let counter = counter.clone();
                async move {
                    if g.grant_type != "client_credentials"
                        || g.client_id != "cp"
                        || g.client_secret != "s3cret"
                    {
                        return (http::StatusCode::UNAUTHORIZED, "no".to_owned());
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut body = serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "Bearer"});
                    if let Some(e) = expires_in {
                        body["expires_in"] = e.into();
                    }
                    (http::StatusCode::OK, body.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/token"), calls)
    }

    #[tokio::test]
    async fn oidc_caches_until_margin_and_reports_expiry() {
        let (url, calls) = fake_idp(Some(3600)).await;
        let p = OidcClientCredentials::new(url, "cp", Secret::new("s3cret"))
            .unwrap_or_else(|e| panic!("{e}"));
        let before = SystemTime::now();
        let a = p.token().await.unwrap_or_else(|e| panic!("{e}"));
        let b = p.token().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.token.expose(), "tok-1");
        assert_eq!(a, b);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let exp = a.expires_at.unwrap_or_else(|| panic!("no expiry"));
        assert!(exp >= before + Duration::from_secs(3599));
        p.invalidate();
        let c = p.token().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.token.expose(), "tok-2");
    }

    #[tokio::test]
    async fn oidc_refetches_inside_the_margin() {
        // 20 s of life is already inside the 30 s margin: every call fetches.
        let (url, calls) = fake_idp(Some(20)).await;
        let p = OidcClientCredentials::new(url, "cp", Secret::new("s3cret"))
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = p.token().await.unwrap_or_else(|e| panic!("{e}"));
        let b = p.token().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.token.expose(), "tok-2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn oidc_without_expiry_and_errors() {
        let (url, _) = fake_idp(None).await;
        let p = OidcClientCredentials::new(url.clone(), "cp", Secret::new("s3cret"))
            .unwrap_or_else(|e| panic!("{e}"));
        let a = p.token().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.expires_at, None);

        let wrong = OidcClientCredentials::new(url, "cp", Secret::new("wrong-secret"))
            .unwrap_or_else(|e| panic!("{e}"));
        let err = wrong.token().await.err();
        assert_eq!(
            err,
            Some(ProviderError::Status {
                status: 401,
                body_len: 2
            })
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(!text.contains("wrong-secret"));
    }

    #[tokio::test]
    async fn a_huge_expires_in_is_capped_not_a_panic() {
        let (url, _) = fake_idp(Some(u64::MAX)).await;
        let p = OidcClientCredentials::new(url, "cp", Secret::new("s3cret"))
            .unwrap_or_else(|e| panic!("{e}"));
        let before = SystemTime::now();
        let t = p.token().await.unwrap_or_else(|e| panic!("{e}"));
        let exp = t.expires_at.unwrap_or_else(|| panic!("no expiry"));
        assert!(exp >= before + OIDC_MAX_LIFETIME);
        assert!(exp <= SystemTime::now() + OIDC_MAX_LIFETIME);
        // Directly, at the edge of what a SystemTime holds.
        let (exp, refresh) = schedule(SystemTime::UNIX_EPOCH, Some(u64::MAX));
        assert_eq!(exp, Some(SystemTime::UNIX_EPOCH + OIDC_MAX_LIFETIME));
        assert_eq!(
            refresh,
            SystemTime::UNIX_EPOCH + OIDC_MAX_LIFETIME - OIDC_REFRESH_MARGIN
        );
    }

    #[tokio::test]
    async fn a_response_over_64_kib_is_refused() {
        let big = "x".repeat(MAX_BODY);
        let app = axum::Router::new().route(
            "/token",
            post(move || {
                let big = big.clone();
                async move { format!(r#"{{"access_token":"t","pad":"{big}"}}"#) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let p =
            OidcClientCredentials::new(format!("http://{addr}/token"), "cp", Secret::new("s3cret"))
                .unwrap_or_else(|e| panic!("{e}"));
        match p.token().await {
            Err(ProviderError::BadBody { body_len }) => assert!(body_len > MAX_BODY),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn static_token() {
        let p = StaticToken::new(Secret::new("abc"));
        let t = p.token().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.token.expose(), t.expires_at), ("abc", None));
        let empty = StaticToken::new(Secret::new(""));
        assert_eq!(empty.token().await.err(), Some(ProviderError::Empty));
    }
}
