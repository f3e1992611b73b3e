//! The HTTP side: routes, the exchange handler and the hardened hyper server.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ambient_protocol::exchange::{
    DEFAULT_NONCE_CAPACITY, KeySet, NonceCache, Rejection, SessionClaim, TokenResponse, V2_SKEW,
    check_plaintext, decode_bearer,
};
use ambient_protocol::exchanger::format_rfc3339;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{HeaderValue, Method, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::directory::SessionDirectory;
use crate::limit::{RateLimit, RateLimiter, retry_after_secs};
use crate::metrics::{Metrics, Outcome};
use crate::provider::TokenProvider;

/// Settings of a [`TokenServer`]. [`Config::default`] is the hardened default.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Refuse v1 (bare session ID) bearers (`--require-v2`).
    pub require_v2: bool,
    /// Largest request head (request line + headers); larger → 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Time a `/token` request may take end to end; longer → 503.
    pub request_timeout: Duration,
    /// Per-client-IP token bucket on `/token`.
    pub rate_limit: RateLimit,
    /// Concurrent RSA private-key operations, each on the blocking pool
    /// (default: twice the available cores, so that the cores stay busy with
    /// decryptions while finished ones hand over to the next; more would only
    /// add threads time-slicing the same cores).
    pub max_key_ops: usize,
    /// Requests allowed to wait for a key operation; more → 503.
    pub max_key_queue: usize,
    /// Open connections; further connections are closed at once.
    pub max_connections: usize,
    /// Bound on remembered v2 nonces (fail closed when full).
    pub nonce_capacity: usize,
    /// Time in-flight connections get to finish after shutdown is asked.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            require_v2: false,
            max_header_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            rate_limit: RateLimit::default(),
            max_key_ops: 2 * cores,
            max_key_queue: 64 * cores,
            max_connections: 4096,
            nonce_capacity: DEFAULT_NONCE_CAPACITY,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("server task failed: {0}")]
    Join(String),
}

struct Inner {
    keys: KeySet,
    nonces: NonceCache,
    directory: Arc<dyn SessionDirectory>,
    provider: Arc<dyn TokenProvider>,
    limiter: RateLimiter,
    key_ops: Arc<Semaphore>,
    key_waiting: AtomicUsize,
    metrics: Metrics,
    config: Config,
}

/// A token server: the `/token` exchange of wire.md §3 plus `/healthz`,
/// `/readyz` and `/metrics`. Cheap to clone (shared state).
#[derive(Clone)]
pub struct TokenServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("keys", &self.inner.keys.keys().len())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// A server decrypting with `keys` (current first), checking sessions
    /// with `directory` and handing out `provider`'s token.
    pub fn new(
        keys: KeySet,
        directory: Arc<dyn SessionDirectory>,
        provider: Arc<dyn TokenProvider>,
        config: Config,
    ) -> Self {
        let key_ops = Arc::new(Semaphore::new(config.max_key_ops.max(1)));
        Self {
            inner: Arc::new(Inner {
                keys,
                nonces: NonceCache::new(config.nonce_capacity, V2_SKEW),
                directory,
                provider,
                limiter: RateLimiter::new(config.rate_limit),
                key_ops,
                key_waiting: AtomicUsize::new(0),
                metrics: Metrics::new(),
                config,
            }),
        }
    }

    /// The server's metrics (also served on `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The routes as an axum [`Router`], for embedding in another server.
    /// The per-IP limit needs the peer address as a
    /// [`ConnectInfo<SocketAddr>`] request extension (as
    /// `into_make_service_with_connect_info` provides); without it requests
    /// are not rate limited. Header limits and timeouts are the serving
    /// side's: prefer [`TokenServer::serve`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/token", any(token))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.inner.clone())
    }

    /// Binds `addr` (port 0 picks a free port) and serves in a background
    /// task until [`RunningServer::shutdown`] or drop.
    pub async fn bind(self, addr: SocketAddr) -> Result<RunningServer, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        self.spawn(listener)
    }

    /// Serves `listener` in a background task until
    /// [`RunningServer::shutdown`] or drop. Needs a Tokio runtime.
    pub fn spawn(self, listener: TcpListener) -> Result<RunningServer, ServeError> {
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(RunningServer {
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// Serves `listener` with hyper until `shutdown` completes, then stops
    /// accepting, lets open connections finish their request (up to
    /// [`Config::shutdown_grace`]) and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let config = self.inner.config.clone();
        let router = self.router();
        let conn_slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let (close_tx, close_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .max_header_size(config.max_header_bytes)
            .keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = conn_slots.clone().try_acquire_owned() else {
                debug!(%peer, "connection limit reached, closing");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), req)
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let mut close_rx = close_rx.clone();
            conns.spawn(async move {
                let _slot = slot;
                tokio::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = async { let _ = close_rx.wait_for(|closing| *closing).await; } => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = close_tx.send(true);
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                open = conns.len(),
                "shutdown grace elapsed, closing remaining connections"
            );
            conns.shutdown().await;
        }
        Ok(())
    }
}

/// A server running in a background task.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl RunningServer {
    /// The bound address (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish, and waits for the end.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| ServeError::Join(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // Dropping the sender ends the serve loop (graceful, in the background).
        self.stop.take();
    }
}

// ------------------------------------------------------------------ handlers

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

async fn readyz(State(inner): State<Arc<Inner>>) -> Response {
    // Keys are loaded by construction (a KeySet is never empty).
    if inner.directory.is_ready() {
        text(StatusCode::OK, "ready")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "session directory not ready",
        )
    }
}

async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    let mut resp = Response::new(Body::from(inner.metrics.encode()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// Why a request that got past the rate limit and method check failed.
enum Failure {
    Rejected(Rejection),
    Busy,
    DirectoryDown,
    ProviderFailed,
    Internal,
}

async fn token(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let _in_flight = inner.metrics.in_flight();
    let peer: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer
        && let Err(wait) = inner.limiter.check(ip, Instant::now())
    {
        inner.metrics.record(Outcome::RateLimited);
        debug!(peer = %ip, "rate limited");
        let mut resp = text(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(wait)),
        );
        return resp;
    }
    // Rule 1, before any authentication.
    if req.method() != Method::GET {
        inner.metrics.record(Outcome::Error);
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    // The body is never read: only the head is looked at.
    let (parts, _body) = req.into_parts();
    let outcome = tokio::time::timeout(
        inner.config.request_timeout,
        exchange(&inner, &parts.headers),
    )
    .await;
    let peer_text = peer.map(|p| p.to_string()).unwrap_or_default();
    match outcome {
        Ok(Ok((claim, body))) => {
            inner.metrics.record(Outcome::Ok);
            info!(
                session_id = %claim.session_id,
                protocol = %claim.protocol,
                peer = %peer_text,
                expires_at = body.expires_at.as_deref().unwrap_or(""),
                "token issued"
            );
            axum::Json(body).into_response()
        }
        Ok(Err(Failure::Rejected(r))) => {
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let outcome = match r.status() {
                401 => Outcome::Unauthorized,
                403 => Outcome::Forbidden,
                _ => Outcome::RateLimited,
            };
            inner.metrics.record(outcome);
            debug!(reason = r.reason(), status = r.status(), peer = %peer_text, "token request refused");
            let mut resp = (status, r.to_string()).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            resp
        }
        Ok(Err(Failure::Busy)) => {
            inner.metrics.record(Outcome::RateLimited);
            warn!(peer = %peer_text, "key operations saturated, shedding a request");
            let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, "server busy");
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Ok(Err(Failure::DirectoryDown)) => {
            inner.metrics.record(Outcome::Error);
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "session directory unavailable",
            )
        }
        Ok(Err(Failure::ProviderFailed)) => {
            inner.metrics.record(Outcome::Error);
            text(StatusCode::INTERNAL_SERVER_ERROR, "token provider failed")
        }
        Ok(Err(Failure::Internal)) => {
            inner.metrics.record(Outcome::Error);
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        Err(_) => {
            inner.metrics.record(Outcome::Error);
            warn!(peer = %peer_text, "token request timed out");
            text(StatusCode::SERVICE_UNAVAILABLE, "request timed out")
        }
    }
}

/// Rules 2–7 of wire.md §3.
async fn exchange(
    inner: &Arc<Inner>,
    headers: &http::HeaderMap,
) -> Result<(SessionClaim, TokenResponse), Failure> {
    // Rules 2–3: header form and base64.
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let ciphertext = decode_bearer(auth).map_err(Failure::Rejected)?;
    // A ciphertext no key could decrypt costs nothing: refuse it before
    // queueing for a key operation.
    if !inner
        .keys
        .keys()
        .iter()
        .any(|k| k.ciphertext_len() == ciphertext.len())
    {
        return Err(Failure::Rejected(Rejection::Decrypt));
    }
    // Rule 3: decryption, bounded and off the reactor.
    let plaintext = {
        if inner.key_waiting.fetch_add(1, Ordering::AcqRel) >= inner.config.max_key_queue {
            inner.key_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Failure::Busy);
        }
        let permit = inner.key_ops.clone().acquire_owned().await;
        inner.key_waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| Failure::Internal)?;
        let worker = inner.clone();
        let (result, took) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let started = Instant::now();
            let result = worker.keys.decrypt(&ciphertext);
            (result, started.elapsed())
        })
        .await
        .map_err(|_| Failure::Internal)?;
        inner.metrics.observe_decrypt(took);
        result.map_err(Failure::Rejected)?
    };
    // Rule 4 and the v2 rules.
    let claim = check_plaintext(
        plaintext.as_bytes(),
        SystemTime::now(),
        &inner.nonces,
        inner.config.require_v2,
    )
    .map_err(Failure::Rejected)?;
    drop(plaintext);
    // Rule 5: a live session.
    match inner.directory.is_live(&claim.session_id).await {
        Ok(true) => {}
        Ok(false) => return Err(Failure::Rejected(Rejection::SessionNotLive)),
        Err(e) => {
            error!(error = %e, "session check failed");
            return Err(Failure::DirectoryDown);
        }
    }
    // Rules 6–7: the token.
    let issued = inner.provider.token().await.map_err(|e| {
        error!(error = %e, "token provider failed");
        Failure::ProviderFailed
    })?;
    Ok((
        claim,
        TokenResponse {
            token: issued.token,
            expires_at: issued.expires_at.map(format_rfc3339),
        },
    ))
}
