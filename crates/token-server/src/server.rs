//! The hardened hyper server: connection caps (global and per client IP),
//! head limits and timeouts, graceful shutdown; the routes are `routes`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::{DEFAULT_NONCE_CAPACITY, KeySet, NonceCache, V2_SKEW};
use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{any, get};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::binding::{Addresses, CallerBinding, Unbound};
use crate::connections::ConnectionTable;
use crate::directory::SessionDirectory;
use crate::identity::Identity;
use crate::limit::{RateLimit, RateLimiter};
use crate::metrics::Metrics;
use crate::routes;
use crate::v3::V3Roots;

/// The server's idea of the current time (injectable for tests of the v2
/// `iat` window).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The injectable behaviours of a [`TokenServer`]: the clock and the caller
/// binding. [`Hooks::default`]: the system clock, [`Unbound`].
#[derive(Clone)]
pub struct Hooks {
    pub clock: Clock,
    pub binding: Arc<dyn CallerBinding>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemTime::now),
            binding: Arc::new(Unbound),
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

/// Settings of a [`TokenServer`]. [`Config::default`] is the hardened default.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Refuse v1 (bare session ID) bearers (`--require-v2`).
    pub require_v2: bool,
    /// Refuse v1 and v2 bearers (`--require-v3`): only `Ambient-HMAC`
    /// requests under the [`crate::V3Roots`] get a token (401
    /// `V3Required` otherwise, before any decryption).
    pub require_v3: bool,
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
    /// Requests allowed to wait for a key operation; more → 503, and
    /// `/readyz` says the server is saturated while the queue is full.
    pub max_key_queue: usize,
    /// Open connections; further connections are closed at once.
    pub max_connections: usize,
    /// Open connections per client IP (IPv6 by /64), below
    /// `max_connections`; further connections from that client are closed
    /// at once.
    pub max_connections_per_ip: usize,
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
            require_v3: false,
            max_header_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            rate_limit: RateLimit::default(),
            max_key_ops: 2 * cores,
            max_key_queue: 64 * cores,
            max_connections: 4096,
            max_connections_per_ip: 32,
            nonce_capacity: DEFAULT_NONCE_CAPACITY,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A setting that cannot work (or would make arithmetic overflow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token server setting {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: &'static str,
}

/// Largest timeout a [`Config`] accepts.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

impl Config {
    /// Refuses values that cannot work: zero caps, zero or absurd timeouts,
    /// a rate limit too slow to compute a `Retry-After` for.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name, reason| Err(ConfigError { name, reason });
        for (name, v) in [
            ("max_key_ops", self.max_key_ops),
            ("max_key_queue", self.max_key_queue),
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("nonce_capacity", self.nonce_capacity),
            ("max_header_bytes", self.max_header_bytes),
        ] {
            if v == 0 {
                return bad(name, "must be at least 1");
            }
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("request_timeout", self.request_timeout),
            ("shutdown_grace", self.shutdown_grace),
        ] {
            if d.is_zero() || d > MAX_TIMEOUT {
                return bad(name, "must be between 1 ms and 1 hour");
            }
        }
        self.rate_limit
            .validate()
            .or_else(|reason| bad("rate_limit", reason))
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

pub(crate) struct Inner {
    pub(crate) keys: KeySet,
    pub(crate) nonces: NonceCache,
    /// v3's own nonces: only a key holder adds one (the MAC is checked
    /// first), so whoever fills the v2 cache with the public key alone
    /// cannot make v3 refreshes fail closed.
    pub(crate) v3_nonces: NonceCache,
    pub(crate) directory: Arc<dyn SessionDirectory>,
    pub(crate) identity: Identity,
    pub(crate) binding: Arc<dyn CallerBinding>,
    /// The roots of exchange v3 (a shared holder the embedder may replace).
    pub(crate) v3_roots: RwLock<V3Roots>,
    pub(crate) limiter: RateLimiter,
    /// Concurrent private-key operations.
    pub(crate) key_ops: Arc<Semaphore>,
    /// Places in the queue for a key operation (a permit per waiter, so a
    /// dropped waiter gives its place back).
    pub(crate) key_queue: Semaphore,
    pub(crate) metrics: Metrics,
    pub(crate) config: Config,
    pub(crate) clock: Clock,
}

impl Inner {
    pub(crate) fn v3_roots(&self) -> V3Roots {
        self.v3_roots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Brings the counters kept elsewhere (the session-token minter's) into
    /// the metrics.
    pub(crate) fn sync_metrics(&self) {
        let (signed, hits) = self
            .identity
            .session_tokens()
            .map_or((0, 0), |t| (t.signatures(), t.cache_hits()));
        self.metrics.sync_session_tokens(signed, hits);
    }
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
    /// with `directory` and handing out `identity` (a session token, or the
    /// platform's token). Every caller is bound ([`Unbound`]). Zero caps in
    /// `config` count as 1 (see [`Config::validate`]).
    pub fn new(
        keys: KeySet,
        directory: Arc<dyn SessionDirectory>,
        identity: Identity,
        config: Config,
    ) -> Self {
        Self::with_hooks(keys, directory, identity, config, Hooks::default())
    }

    /// [`TokenServer::new`] with the time taken from `clock` (tests of the
    /// v2 window and token lifetimes).
    pub fn with_clock(
        keys: KeySet,
        directory: Arc<dyn SessionDirectory>,
        identity: Identity,
        config: Config,
        clock: Clock,
    ) -> Self {
        let hooks = Hooks {
            clock,
            ..Hooks::default()
        };
        Self::with_hooks(keys, directory, identity, config, hooks)
    }

    /// [`TokenServer::new`] with a clock and a caller binding of the
    /// embedder's.
    pub fn with_hooks(
        keys: KeySet,
        directory: Arc<dyn SessionDirectory>,
        identity: Identity,
        config: Config,
        hooks: Hooks,
    ) -> Self {
        let Hooks { clock, binding } = hooks;
        Self {
            inner: Arc::new(Inner {
                keys,
                nonces: NonceCache::new(config.nonce_capacity, V2_SKEW),
                v3_nonces: NonceCache::new(config.nonce_capacity, V2_SKEW),
                directory,
                identity,
                binding,
                v3_roots: RwLock::new(V3Roots::default()),
                limiter: RateLimiter::new(config.rate_limit),
                key_ops: Arc::new(Semaphore::new(config.max_key_ops.max(1))),
                key_queue: Semaphore::new(config.max_key_queue.max(1)),
                metrics: Metrics::new(),
                config,
                clock,
            }),
        }
    }

    /// Verifies exchange v3 (`Ambient-HMAC`) requests with `roots`: the
    /// holder is shared, so a [`V3Roots::replace`] by the embedder (root
    /// rotation) applies to the next request. Without it, v3 requests get
    /// 401.
    pub fn with_v3_roots(self, roots: V3Roots) -> Self {
        *self
            .inner
            .v3_roots
            .write()
            .unwrap_or_else(|p| p.into_inner()) = roots;
        self
    }

    /// The holder of the v3 roots this server verifies with.
    pub fn v3_roots(&self) -> V3Roots {
        self.inner.v3_roots()
    }

    /// Private-key operations done so far: RSA decryptions of v1/v2
    /// bearers and RSA signatures of session tokens (also on `/metrics` as
    /// `ambient_token_server_private_key_operations_total`).
    pub fn private_key_operations(&self) -> u64 {
        self.inner.sync_metrics();
        self.inner.metrics.private_key_operations()
    }

    /// The server's metrics (also served on `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// What the exchange hands out.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Private-key operations running (or handed to the blocking pool) now.
    pub fn key_ops_in_use(&self) -> usize {
        self.inner
            .config
            .max_key_ops
            .max(1)
            .saturating_sub(self.inner.key_ops.available_permits())
    }

    /// The routes as an axum [`Router`], for embedding in another server.
    /// The per-IP limit and the caller binding need the connection's
    /// addresses as a [`ConnectInfo<Addresses>`] request extension (as
    /// `into_make_service_with_connect_info::<Addresses>` provides; a
    /// `ConnectInfo<SocketAddr>` gives the peer only). Without the peer,
    /// requests are not rate limited and the binding sees `0.0.0.0:0`.
    /// Header limits and timeouts are the serving side's: prefer
    /// [`TokenServer::serve`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/token", any(routes::token))
            .route("/.well-known/jwks.json", get(routes::jwks))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(routes::readyz))
            .route("/metrics", get(routes::metrics))
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
        let per_ip = ConnectionTable::new(config.max_connections_per_ip);
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
                self.inner.metrics.connection_refused("global");
                drop(stream);
                continue;
            };
            let Some(client_slot) = per_ip.try_open(peer.ip()) else {
                debug!(%peer, "per-client connection limit reached, closing");
                self.inner.metrics.connection_refused("per_ip");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else {
                debug!(%peer, "connection gone before it was served");
                continue;
            };
            let router = router.clone();
            let addresses = Addresses { peer, local };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(ConnectInfo(addresses));
                tower::ServiceExt::oneshot(router.clone(), req)
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let mut close_rx = close_rx.clone();
            conns.spawn(async move {
                let _slots = (slot, client_slot);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert_eq!(Config::default().validate(), Ok(()));
        let cases: Vec<(&str, Config)> = vec![
            (
                "max_key_ops",
                Config {
                    max_key_ops: 0,
                    ..Config::default()
                },
            ),
            (
                "max_key_queue",
                Config {
                    max_key_queue: 0,
                    ..Config::default()
                },
            ),
            (
                "max_connections_per_ip",
                Config {
                    max_connections_per_ip: 0,
                    ..Config::default()
                },
            ),
            (
                "request_timeout",
                Config {
                    request_timeout: Duration::ZERO,
                    ..Config::default()
                },
            ),
            (
                "request_timeout",
                Config {
                    request_timeout: Duration::MAX,
                    ..Config::default()
                },
            ),
            (
                "header_read_timeout",
                Config {
                    header_read_timeout: Duration::from_secs(u64::MAX),
                    ..Config::default()
                },
            ),
            (
                "rate_limit",
                Config {
                    rate_limit: RateLimit {
                        per_second: 1e-12,
                        ..RateLimit::default()
                    },
                    ..Config::default()
                },
            ),
        ];
        for (name, config) in cases {
            assert_eq!(config.validate().err().map(|e| e.name), Some(name));
        }
    }
}
