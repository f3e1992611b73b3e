//! Rule 5 of the exchange: is the session known and live, and in which
//! project?
//!
//! The server asks a [`SessionDirectory`]. The control plane plugs in its
//! informer cache; the standalone binary uses [`GrpcDirectory`] (asks the API
//! server's `GetSession`, caching answers briefly) or, only when told so,
//! [`NoSessionCheck`]. [`StaticDirectory`] is an in-memory map for tests and
//! tools.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ambient_protocol::phase::Phase;
use ambient_protocol::v1::GetSessionRequest;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use tonic::transport::Channel;

use crate::BoxFuture;
use crate::provider::TokenProvider;

/// The directory could not answer; the exchange fails closed (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The backing store could not be reached or answered an error.
    #[error("session directory unavailable: {0}")]
    Unavailable(String),
    /// The credentials for the backing store could not be obtained.
    #[error("session directory cannot authenticate: {0}")]
    Auth(String),
}

/// What the directory knows of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's project (empty when the directory does not know it:
    /// [`NoSessionCheck`]; session tokens then cannot be minted).
    pub project: String,
    /// Whether it may hold a token (not in a terminal phase).
    pub live: bool,
}

/// Answers whether a session may hold a token, and its project.
///
/// `lookup` is called only for session IDs that passed rules 2–4 (the
/// bearer decrypted and the ID is well-formed), at most once per request.
/// It returns `Ok(None)` for an unknown session, and a record with `live:
/// false` for a session in a terminal phase (`Stopped`, `Completed`,
/// `Failed`: [`Phase::is_terminal`]); a `Stopping` session still gets its
/// token (wire.md §3 refuses only terminal phases: its containers are
/// shutting down and may still call the API).
pub trait SessionDirectory: Send + Sync + 'static {
    /// The session `session_id`, if known.
    fn lookup<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, DirectoryError>>;

    /// Whether `session_id` names a live session.
    fn is_live<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        let record = self.lookup(session_id);
        Box::pin(async move { record.await.map(|r| r.is_some_and(|r| r.live)) })
    }

    /// Whether the directory has loaded what it needs to answer (for
    /// `/readyz`): e.g. the informer cache has synced.
    fn is_ready(&self) -> bool {
        true
    }
}

/// Whether a session in `phase` (as stored; `None`/empty means `Pending`)
/// may hold a token: any phase but a terminal one. An unknown phase string
/// may not (fail closed).
pub fn phase_is_live(phase: Option<&str>) -> bool {
    Phase::of_session(phase).is_ok_and(|p| !p.is_terminal())
}

/// No session check at all: every well-formed session ID is live, in an
/// unknown project (so it cannot serve session tokens). Only for
/// `--no-session-check` with the platform identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSessionCheck;

impl SessionDirectory for NoSessionCheck {
    fn lookup<'a>(
        &'a self,
        _session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, DirectoryError>> {
        Box::pin(async {
            Ok(Some(SessionRecord {
                project: String::new(),
                live: true,
            }))
        })
    }
}

/// An in-memory directory: session ID → (project, phase string).
#[derive(Debug, Default)]
pub struct StaticDirectory {
    sessions: RwLock<HashMap<String, (String, String)>>,
}

impl StaticDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records (or replaces) a session of `project` with its phase string
    /// (`""` = Pending).
    pub fn set(
        &self,
        session_id: impl Into<String>,
        project: impl Into<String>,
        phase: impl Into<String>,
    ) {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        map.insert(session_id.into(), (project.into(), phase.into()));
    }

    /// Forgets a session.
    pub fn remove(&self, session_id: &str) {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        map.remove(session_id);
    }
}

impl SessionDirectory for StaticDirectory {
    fn lookup<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, DirectoryError>> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        let record = map.get(session_id).map(|(project, phase)| SessionRecord {
            project: project.clone(),
            live: phase_is_live(Some(phase)),
        });
        Box::pin(async move { Ok(record) })
    }
}

/// A short-lived memory of directory answers, bounded in size.
#[derive(Debug)]
pub struct AnswerCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Option<SessionRecord>, Instant)>>,
}

impl AnswerCache {
    /// Remembers at most `capacity` answers for `ttl` each (`ttl` zero: no caching).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached answer for `session_id`, if still fresh.
    pub fn get(&self, session_id: &str, now: Instant) -> Option<Option<SessionRecord>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(session_id)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(record, _)| record.clone())
    }

    /// Remembers an answer.
    pub fn put(&self, session_id: &str, record: Option<SessionRecord>, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(session_id) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(session_id.to_owned(), (record, now));
    }

    /// Number of remembered answers (fresh or not).
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Asks the API server's gRPC `SessionService.GetSession`, authenticated with
/// the bearer the [`TokenProvider`] gives, and caches answers for a few
/// seconds. The project is the session's `project_id`. `NOT_FOUND` means
/// unknown; `UNAUTHENTICATED` invalidates the
/// provider's token and retries once.
pub struct GrpcDirectory {
    client: SessionServiceClient<Channel>,
    provider: Arc<dyn TokenProvider>,
    cache: AnswerCache,
    ready: AtomicBool,
}

impl std::fmt::Debug for GrpcDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcDirectory")
            .field("cache", &self.cache)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

/// Default time a [`GrpcDirectory`] answer is reused.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(2);
/// Default bound on cached [`GrpcDirectory`] answers.
pub const DEFAULT_CACHE_CAPACITY: usize = 65_536;

impl GrpcDirectory {
    /// A directory for the gRPC server at `addr` (`host:port` or a URL;
    /// TLS when `use_tls` or `https://`, trusting the system roots and
    /// `ca_file`). Connects lazily.
    pub fn new(
        addr: &str,
        use_tls: bool,
        ca_file: Option<&std::path::Path>,
        provider: Arc<dyn TokenProvider>,
        cache_ttl: Duration,
    ) -> Result<Self, DirectoryError> {
        let endpoint = ambient_protocol::grpc::endpoint(addr, use_tls, ca_file)
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?
            .timeout(Duration::from_secs(5));
        Ok(Self {
            client: SessionServiceClient::new(endpoint.connect_lazy()),
            provider,
            cache: AnswerCache::new(cache_ttl, DEFAULT_CACHE_CAPACITY),
            ready: AtomicBool::new(false),
        })
    }

    /// Asks the API server about a session that surely does not exist, to
    /// find out whether it answers at all (readiness). `Ok` once it does.
    pub async fn probe(&self) -> Result<(), DirectoryError> {
        self.ask("ambient-token-server-readiness-probe")
            .await
            .map(|_| ())
    }

    async fn ask(&self, session_id: &str) -> Result<Option<SessionRecord>, DirectoryError> {
        let mut retried = false;
        loop {
            let token = self
                .provider
                .token()
                .await
                .map_err(|e| DirectoryError::Auth(e.to_string()))?;
            let mut request = tonic::Request::new(GetSessionRequest {
                id: session_id.to_owned(),
            });
            let value = format!("Bearer {}", token.token.expose())
                .parse()
                .map_err(|_| DirectoryError::Auth("token is not a valid header value".into()))?;
            request.metadata_mut().insert("authorization", value);
            let mut client = self.client.clone();
            match client.get_session(request).await {
                Ok(resp) => {
                    self.ready.store(true, Ordering::Relaxed);
                    let session = resp.get_ref();
                    return Ok(Some(SessionRecord {
                        project: session.project_id.clone().unwrap_or_default(),
                        live: phase_is_live(session.phase.as_deref()),
                    }));
                }
                Err(status) if status.code() == tonic::Code::NotFound => {
                    self.ready.store(true, Ordering::Relaxed);
                    return Ok(None);
                }
                Err(status) if status.code() == tonic::Code::Unauthenticated && !retried => {
                    retried = true;
                    self.provider.invalidate();
                }
                Err(status) => {
                    if status.code() == tonic::Code::Unavailable {
                        self.ready.store(false, Ordering::Relaxed);
                    }
                    return Err(DirectoryError::Unavailable(format!(
                        "GetSession failed: {:?}",
                        status.code()
                    )));
                }
            }
        }
    }
}

impl SessionDirectory for GrpcDirectory {
    fn lookup<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, DirectoryError>> {
        Box::pin(async move {
            if let Some(record) = self.cache.get(session_id, Instant::now()) {
                return Ok(record);
            }
            let record = self.ask(session_id).await?;
            self.cache.put(session_id, record.clone(), Instant::now());
            Ok(record)
        })
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_phases() {
        for (phase, live) in [
            (None, true),
            (Some(""), true),
            (Some("Pending"), true),
            (Some("Creating"), true),
            (Some("Running"), true),
            (Some("Stopping"), true),
            (Some("Stopped"), false),
            (Some("Completed"), false),
            (Some("Failed"), false),
            (Some("running"), false),
            (Some("Bogus"), false),
        ] {
            assert_eq!(phase_is_live(phase), live, "{phase:?}");
        }
    }

    #[tokio::test]
    async fn static_directory_answers() {
        let dir = StaticDirectory::new();
        dir.set("session-a1", "proj-a", "Running");
        dir.set("session-b2", "proj-a", "Stopped");
        dir.set("session-c3", "proj-c", "");
        assert_eq!(
            dir.lookup("session-a1").await,
            Ok(Some(SessionRecord {
                project: "proj-a".into(),
                live: true
            }))
        );
        assert_eq!(
            dir.lookup("session-b2").await.map(|r| r.map(|r| r.live)),
            Ok(Some(false))
        );
        assert_eq!(dir.lookup("session-zz").await, Ok(None));
        assert_eq!(dir.is_live("session-a1").await, Ok(true));
        assert_eq!(dir.is_live("session-b2").await, Ok(false));
        assert_eq!(dir.is_live("session-c3").await, Ok(true));
        assert_eq!(dir.is_live("session-zz").await, Ok(false));
        dir.remove("session-a1");
        assert_eq!(dir.is_live("session-a1").await, Ok(false));
        assert_eq!(NoSessionCheck.is_live("anything").await, Ok(true));
        let unknown_project = NoSessionCheck.lookup("anything").await;
        assert_eq!(
            unknown_project.map(|r| r.map(|r| r.project)),
            Ok(Some(String::new()))
        );
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let cache = AnswerCache::new(Duration::from_secs(2), 3);
        let t0 = Instant::now();
        let rec = |live| {
            Some(SessionRecord {
                project: "p".into(),
                live,
            })
        };
        cache.put("a", rec(true), t0);
        assert_eq!(cache.get("a", t0 + Duration::from_secs(1)), Some(rec(true)));
        assert_eq!(cache.get("a", t0 + Duration::from_secs(2)), None);
        cache.put("b", None, t0);
        cache.put("c", rec(true), t0);
        // Full of expired answers: they are swept.
        let t5 = t0 + Duration::from_secs(5);
        cache.put("d", rec(true), t5);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("d", t5), Some(rec(true)));
        // Full of fresh answers: cleared rather than grown.
        cache.put("e", rec(true), t5);
        cache.put("f", rec(true), t5);
        cache.put("g", rec(true), t5);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("g", t5), Some(rec(true)));

        let off = AnswerCache::new(Duration::ZERO, 3);
        off.put("a", rec(true), t0);
        assert_eq!(off.get("a", t0), None);
    }
}
