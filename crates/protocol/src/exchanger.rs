//! [`TokenExchanger`]: the shared client of the token exchange (wire.md §3).
//!
//! Every sidecar and runner gets its API token through one of these: per
//! attempt it proves the session's key with a fresh v3 `Ambient-HMAC` header
//! when its session key file (`AMBIENT_SESSION_KEY_FILE`) is there — read
//! again each attempt, as the control plane rewrites it when it rotates its
//! root — or else encrypts a fresh v2 (or v1) bearer; it makes up to three attempts
//! (waiting 1 s, then 2 s), ignores `*_PROXY`, follows no redirect, refreshes
//! in the background every 5 minutes or at 80 % of the token's lifetime when
//! `expires_at` says sooner — but never more often than every 10 s, whatever
//! `expires_at` says — tells subscribers about each fresh token, and
//! refreshes at once after [`TokenExchanger::invalidate`] (an API 401).
//! Response bodies are read with a 64 KiB limit while they stream.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::Url;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::exchange::v3::{KeyFileError, SessionKeyFile};
use crate::exchange::{self, EncryptError, Protocol, TokenResponse};
use crate::keys::PublicKey;
use crate::secret::Secret;
use crate::url_policy::{self, UrlError};

/// Largest token response body we read.
pub const MAX_BODY: usize = 64 * 1024;
/// Shortest time between two scheduled refreshes, whatever `expires_at` says.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of a [`TokenExchanger`]; [`ExchangerConfig::new`] gives the
/// wire.md defaults.
#[derive(Debug, Clone)]
pub struct ExchangerConfig {
    pub token_url: String,
    pub public_key: PublicKey,
    pub session_id: String,
    /// The v1/v2 form, used when no session key file is there.
    pub protocol: Protocol,
    /// The session's v3 key file (`AMBIENT_SESSION_KEY_FILE`): while it
    /// exists, every attempt uses exchange v3 with the key it holds then; a
    /// file that exists but cannot be read or parsed is an error (never a
    /// silent fall back to v2).
    pub session_key_file: Option<PathBuf>,
    /// Waits between attempts; attempts = waits + 1.
    pub retry_waits: Vec<Duration>,
    pub request_timeout: Duration,
    pub refresh_interval: Duration,
    /// Fraction of the `expires_at` lifetime after which to refresh
    /// (greater than 0, at most 1).
    pub refresh_at_fraction: f64,
    /// Floor of the refresh schedule (a server announcing a near expiry
    /// must not make us hammer it).
    pub min_refresh_interval: Duration,
}

impl ExchangerConfig {
    /// Defaults: v2, 3 attempts (1 s / 2 s waits), 10 s per request, refresh
    /// every 5 min or at 80 % of the lifetime.
    pub fn new(
        token_url: impl Into<String>,
        public_key: PublicKey,
        session_id: impl Into<String>,
    ) -> Self {
        Self {
            token_url: token_url.into(),
            public_key,
            session_id: session_id.into(),
            protocol: Protocol::V2,
            session_key_file: None,
            retry_waits: vec![Duration::from_secs(1), Duration::from_secs(2)],
            request_timeout: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(300),
            refresh_at_fraction: 0.8,
            min_refresh_interval: MIN_REFRESH_INTERVAL,
        }
    }
}

/// A token obtained from the exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub token: Secret,
    pub expires_at: Option<SystemTime>,
    pub fetched_at: SystemTime,
    /// Increases with every token this exchanger publishes.
    pub generation: u64,
}

impl ApiToken {
    /// True once `expires_at` has passed.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// A failed exchange. Shows statuses and sizes, never a body or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error("invalid token URL: {0}")]
    Url(#[from] UrlError),
    #[error("token server answered HTTP {status} ({body_len} byte body)")]
    Status { status: u16, body_len: usize },
    #[error("token request failed: {0}")]
    Transport(String),
    #[error("token response is not the expected JSON ({body_len} byte body)")]
    BadBody { body_len: usize },
    #[error("token response has no token")]
    MissingToken,
    #[error("cannot build the exchange request: {0}")]
    Encrypt(#[from] EncryptError),
    #[error("session key file {path}: {error}")]
    KeyFile { path: String, error: KeyFileError },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The shared token-exchange client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TokenExchanger {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: ExchangerConfig,
    url: Url,
    http: reqwest::Client,
    tx: watch::Sender<Option<ApiToken>>,
    kick: Notify,
    stale: AtomicBool,
    generation: AtomicU64,
    refresh_lock: Mutex<()>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl TokenExchanger {
    /// Validates the configuration; makes no request yet.
    pub fn new(cfg: ExchangerConfig) -> Result<Self, ExchangeError> {
        let url = url_policy::token_url(&cfg.token_url)?;
        if !(cfg.refresh_at_fraction > 0.0 && cfg.refresh_at_fraction <= 1.0) {
            return Err(ExchangeError::Client(
                "refresh_at_fraction must be in (0, 1]".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout)
            .build()
            .map_err(|e| ExchangeError::Client(e.to_string()))?;
        let (tx, _) = watch::channel(None);
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                url,
                http,
                tx,
                kick: Notify::new(),
                stale: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                refresh_lock: Mutex::new(()),
                task: std::sync::Mutex::new(None),
            }),
        })
    }

    /// Fetches a first token, then keeps refreshing in the background until
    /// [`TokenExchanger::stop`]. Fails if the first fetch fails.
    pub async fn start(&self) -> Result<ApiToken, ExchangeError> {
        let first = self.refresh().await?;
        let this = self.clone();
        let handle = tokio::spawn(async move { this.refresh_loop().await });
        if let Some(old) = self.lock_task().replace(handle) {
            old.abort();
        }
        Ok(first)
    }

    /// Stops the background refresh. Subscribers keep the last token.
    pub async fn stop(&self) {
        let handle = self.lock_task().take();
        if let Some(handle) = handle {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// The last published token, if any.
    pub fn current(&self) -> Option<ApiToken> {
        self.inner.tx.borrow().clone()
    }

    /// A receiver that sees every fresh token.
    pub fn subscribe(&self) -> watch::Receiver<Option<ApiToken>> {
        self.inner.tx.subscribe()
    }

    /// A usable token: the current one unless it is missing, expired or
    /// invalidated, else a fresh one (one fetch shared by concurrent callers).
    pub async fn token(&self) -> Result<Secret, ExchangeError> {
        let seen = self.current();
        if let Some(t) = &seen
            && !self.inner.stale.load(Ordering::Acquire)
            && !t.is_expired(SystemTime::now())
        {
            return Ok(t.token.clone());
        }
        let seen_gen = seen.map_or(0, |t| t.generation);
        self.refresh_after(seen_gen).await.map(|t| t.token)
    }

    /// Marks the current token as rejected (an API 401): the next
    /// [`TokenExchanger::token`] fetches a fresh one, and the background loop
    /// refreshes at once.
    pub fn invalidate(&self) {
        self.inner.stale.store(true, Ordering::Release);
        self.inner.kick.notify_one();
    }

    /// Fetches and publishes a fresh token now.
    pub async fn refresh(&self) -> Result<ApiToken, ExchangeError> {
        let seen_gen = self.inner.generation.load(Ordering::Acquire);
        self.refresh_after(seen_gen).await
    }

    /// Refreshes unless someone else published a newer token than `seen_gen`
    /// while we waited for the lock.
    async fn refresh_after(&self, seen_gen: u64) -> Result<ApiToken, ExchangeError> {
        let _guard = self.inner.refresh_lock.lock().await;
        if let Some(t) = self.current()
            && t.generation > seen_gen
            && !self.inner.stale.load(Ordering::Acquire)
        {
            return Ok(t);
        }
        let (token, expires_at) = self.fetch().await?;
        // Not stale any more *before* the new generation is visible: whoever
        // sees the new generation also sees that nothing is left to do.
        self.inner.stale.store(false, Ordering::Release);
        let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let fresh = ApiToken {
            token,
            expires_at,
            fetched_at: SystemTime::now(),
            generation,
        };
        self.inner.tx.send_replace(Some(fresh.clone()));
        Ok(fresh)
    }

    /// One fetch: up to `retry_waits.len() + 1` attempts, each with a fresh
    /// ciphertext. Does not publish.
    pub async fn fetch(&self) -> Result<(Secret, Option<SystemTime>), ExchangeError> {
        let waits = &self.inner.cfg.retry_waits;
        let mut attempt = 0;
        loop {
            match self.attempt().await {
                Ok(t) => return Ok(t),
                Err(
                    e @ (ExchangeError::Encrypt(_)
                    | ExchangeError::Url(_)
                    | ExchangeError::KeyFile { .. }),
                ) => return Err(e),
                Err(e) => {
                    let Some(wait) = waits.get(attempt) else {
                        return Err(e);
                    };
                    tracing::debug!(attempt = attempt + 1, error = %e, "token exchange attempt failed");
                    attempt += 1;
                    tokio::time::sleep(*wait).await;
                }
            }
        }
    }

    /// The `Authorization` value of one attempt: v3 while the session key
    /// file exists, else a fresh v2 (or v1) bearer.
    pub fn authorization(&self) -> Result<String, ExchangeError> {
        let cfg = &self.inner.cfg;
        if let Some(file) = self.session_key()? {
            return Ok(file.authorization("GET", self.inner.url.path(), SystemTime::now())?);
        }
        let bearer = exchange::encrypt(&cfg.public_key, cfg.protocol, &cfg.session_id)?;
        Ok(format!("Bearer {bearer}"))
    }

    /// The session key file as it is now: `None` when none is configured
    /// or the file does not exist; an error when it exists but cannot be
    /// read, is not a v3 key file or is another session's.
    fn session_key(&self) -> Result<Option<SessionKeyFile>, ExchangeError> {
        let Some(path) =
            (self.inner.cfg.session_key_file.as_ref()).filter(|p| !p.as_os_str().is_empty())
        else {
            return Ok(None);
        };
        let bad = |error| ExchangeError::KeyFile {
            path: path.display().to_string(),
            error,
        };
        let content = match std::fs::read(path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(KeyFileError::Read(e.kind().to_string()))),
        };
        let file = SessionKeyFile::parse(&content).map_err(bad)?;
        if file.session_id() != self.inner.cfg.session_id {
            return Err(bad(KeyFileError::Malformed("it is another session's key")));
        }
        Ok(Some(file))
    }

    async fn attempt(&self) -> Result<(Secret, Option<SystemTime>), ExchangeError> {
        let authorization = self.authorization()?;
        let response = self
            .inner
            .http
            .get(self.inner.url.clone())
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| ExchangeError::Transport(transport_text(e)))?;
        let status = response.status();
        let body = read_limited(response, MAX_BODY)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(read) => ExchangeError::BadBody { body_len: read },
                BodyError::Transport(e) => ExchangeError::Transport(transport_text(e)),
            })?;
        if !status.is_success() {
            return Err(ExchangeError::Status {
                status: status.as_u16(),
                body_len: body.len(),
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            if e.is_data()
                && !body.is_empty()
                && serde_json::from_slice::<serde_json::Value>(&body).is_ok()
            {
                ExchangeError::MissingToken
            } else {
                ExchangeError::BadBody {
                    body_len: body.len(),
                }
            }
        })?;
        if parsed.token.is_empty() {
            return Err(ExchangeError::MissingToken);
        }
        let expires_at = parsed.expires_at.as_deref().and_then(parse_rfc3339);
        Ok((parsed.token, expires_at))
    }

    async fn refresh_loop(&self) {
        let mut failures = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut retry_in: Option<Duration> = None;
        loop {
            let delay = retry_in.unwrap_or_else(|| self.next_refresh_delay(SystemTime::now()));
            let kicked = tokio::select! {
                () = tokio::time::sleep(delay) => false,
                () = self.inner.kick.notified() => true,
            };
            let result = if kicked {
                // Read the generation before the flag: if someone refreshed
                // since the kick (e.g. `token()` after the same 401), there
                // is nothing left to do.
                let seen = self.inner.generation.load(Ordering::Acquire);
                if !self.inner.stale.load(Ordering::Acquire) {
                    continue;
                }
                self.refresh_after(seen).await
            } else {
                self.refresh().await
            };
            match result {
                Ok(_) => {
                    failures.reset();
                    retry_in = None;
                }
                Err(e) => {
                    let wait = failures.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "token refresh failed; keeping the last token");
                    retry_in = Some(wait);
                }
            }
        }
    }

    /// Time until the next scheduled refresh of the current token.
    pub fn next_refresh_delay(&self, now: SystemTime) -> Duration {
        let cfg = &self.inner.cfg;
        let Some(t) = self.current() else {
            return Duration::ZERO;
        };
        let after = |d: Duration| t.fetched_at.checked_add(d);
        let mut due = after(cfg.refresh_interval);
        if let Some(exp) = t.expires_at {
            let lifetime = exp.duration_since(t.fetched_at).unwrap_or(Duration::ZERO);
            let early = after(lifetime.mul_f64(cfg.refresh_at_fraction));
            due = match (due, early) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let floor = after(cfg.min_refresh_interval);
        let due = match (due, floor) {
            (Some(d), Some(f)) => d.max(f),
            // Beyond what a SystemTime can hold: as good as never.
            _ => return Duration::from_secs(365 * 86_400),
        };
        due.duration_since(now).unwrap_or(Duration::ZERO)
    }

    fn lock_task(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.inner.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit arrived (the count read so far).
    TooLarge(usize),
    Transport(reqwest::Error),
}

/// Reads a response body chunk by chunk, refusing it as soon as it grows past
/// `limit` bytes (or announces more): a hostile server cannot make us
/// buffer more than `limit` plus one chunk.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if let Some(announced) = response.content_length()
        && announced > limit as u64
    {
        return Err(BodyError::TooLarge(
            usize::try_from(announced).unwrap_or(usize::MAX),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(body.len() + chunk.len()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's error text without the request URL (which may carry a
/// query) and with its cause chain, which is where "connection refused"
/// lives.
fn transport_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let ts: prost_types::Timestamp = s.parse().ok()?;
    SystemTime::try_from(ts).ok()
}

/// Formats a time as RFC 3339 (UTC).
pub fn format_rfc3339(t: SystemTime) -> String {
    prost_types::Timestamp::from(t).to_string()
}

#[cfg(test)]
mod tests;
