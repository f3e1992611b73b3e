//! What the standalone server's session gateway knows of sessions (issue 25
//! item 5): it has no informer and no pods, so it asks the API server.
//!
//! - A session (project, live) comes from the session directory (gRPC
//!   `GetSession`): every exchange's answer is remembered, and a session the
//!   gateway asks about that is unknown or older than the refresh interval is
//!   looked up again in the background; the gateway's lookup itself never
//!   waits on the network.
//! - Its generation is the one every token of this server carries
//!   ([`UNBOUND_GENERATION`]): the standalone server binds no pod.
//! - Its delivered credentials are the `credential_id`s of its `scope =
//!   'credential'` role bindings (the `credential:token-reader` grants the
//!   control plane makes for a session, wire.md §2), read over REST with this
//!   server's identity, remembered and refreshed the same way.
//!
//! A change (project, liveness, credentials, or the session gone) is
//! announced, so the gateway closes the session's watches that no longer hold.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambient_protocol::Secret;
use ambient_session_gateway::{SessionFacts, SessionState, UpstreamAuth};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::binding::UNBOUND_GENERATION;
use crate::directory::{DirectoryError, SessionDirectory, SessionRecord};
use crate::{BoxFuture, TokenProvider};

/// Changed session IDs buffered before a slow gateway subscriber lags.
const CHANGES: usize = 1024;

/// Remembered sessions at most (an answer past it evicts the oldest).
const CAPACITY: usize = 65_536;

/// A remembered answer and when it was read.
#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    read: Instant,
}

/// The sessions and credential grants the gateway asks about. Cheap to share.
pub struct ApiFacts {
    directory: Arc<dyn SessionDirectory>,
    grants: Grants,
    refresh: Duration,
    sessions: Mutex<HashMap<String, Entry<Option<SessionRecord>>>>,
    credentials: Mutex<HashMap<String, Entry<BTreeSet<String>>>>,
    /// (what, session) being read in the background.
    reading: Mutex<BTreeSet<(&'static str, String)>>,
    changes: broadcast::Sender<String>,
}

impl std::fmt::Debug for ApiFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiFacts")
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl ApiFacts {
    /// Facts from `directory` (sessions) and the REST API at `api_url`
    /// (credential grants, read with `provider`'s token), re-read when older
    /// than `refresh`.
    pub fn new(
        directory: Arc<dyn SessionDirectory>,
        api_url: &reqwest::Url,
        http: reqwest::Client,
        provider: Arc<dyn TokenProvider>,
        refresh: Duration,
    ) -> Arc<Self> {
        let root = api_url.as_str().trim_end_matches('/');
        Arc::new(Self {
            directory,
            grants: Grants {
                url: format!("{root}/api/ambient/v1/role_bindings"),
                http,
                provider,
            },
            refresh,
            sessions: Mutex::default(),
            credentials: Mutex::default(),
            reading: Mutex::default(),
            changes: broadcast::channel(CHANGES).0,
        })
    }

    /// The session directory the exchange uses: `directory`, each answer
    /// remembered here.
    pub fn directory(self: &Arc<Self>) -> Arc<dyn SessionDirectory> {
        Arc::new(Remembering(self.clone()))
    }

    fn remember_session(&self, id: &str, record: Option<SessionRecord>) {
        self.remember(&self.sessions, id, record);
    }

    fn remember_credentials(&self, id: &str, credentials: BTreeSet<String>) {
        self.remember(&self.credentials, id, credentials);
    }

    /// Records `value` for `id` in `map` (bounded), announcing a change.
    fn remember<T: PartialEq>(&self, map: &Mutex<HashMap<String, Entry<T>>>, id: &str, value: T) {
        let changed = {
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            bound(&mut map);
            let changed = map.get(id).is_some_and(|old| old.value != value);
            map.insert(
                id.to_owned(),
                Entry {
                    value,
                    read: Instant::now(),
                },
            );
            changed
        };
        if changed {
            let _ = self.changes.send(id.to_owned());
        }
    }

    /// Starts reading `what` of session `id` in the background, once at a time.
    fn read_in_background(self: &Arc<Self>, what: &'static str, id: &str) {
        let key = (what, id.to_owned());
        if !self
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let this = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            return;
        };
        runtime.spawn(async move {
            let id = key.1.clone();
            if what == "session" {
                match this.directory.lookup(&id).await {
                    Ok(record) => this.remember_session(&id, record),
                    Err(e) => tracing::debug!(session = %id, error = %e, "cannot read the session"),
                }
            } else {
                match this.grants.of(&id).await {
                    Ok(credentials) => this.remember_credentials(&id, credentials),
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "cannot read the session's credential grants")
                    }
                }
            }
            this.reading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }
}

/// Keeps a map under [`CAPACITY`] by dropping its oldest answer.
fn bound<T>(map: &mut HashMap<String, Entry<T>>) {
    if map.len() < CAPACITY {
        return;
    }
    if let Some(oldest) = map
        .iter()
        .min_by_key(|(_, e)| e.read)
        .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

/// The gateway's facts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GatewayFacts(pub Arc<ApiFacts>);

impl SessionFacts for GatewayFacts {
    fn session(&self, id: &str) -> Option<SessionState> {
        let entry = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if entry
            .as_ref()
            .is_none_or(|e| e.read.elapsed() >= self.0.refresh)
        {
            self.0.read_in_background("session", id);
        }
        let record = entry?.value?;
        Some(SessionState {
            project: record.project,
            live: record.live,
            generation: Some(UNBOUND_GENERATION.to_owned()),
        })
    }

    fn delivered_credentials(&self, id: &str) -> BTreeSet<String> {
        let entry = self
            .0
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if entry
            .as_ref()
            .is_none_or(|e| e.read.elapsed() >= self.0.refresh)
        {
            self.0.read_in_background("credentials", id);
        }
        entry.map(|e| e.value).unwrap_or_default()
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.changes.subscribe()
    }
}

/// The session directory, each answer remembered for the gateway.
struct Remembering(Arc<ApiFacts>);

impl SessionDirectory for Remembering {
    fn lookup<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, DirectoryError>> {
        Box::pin(async move {
            let record = self.0.directory.lookup(session_id).await?;
            self.0.remember_session(session_id, record.clone());
            if record.as_ref().is_some_and(|r| r.live) {
                // The session is about to call the gateway: know its grants.
                self.0.read_in_background("credentials", session_id);
            }
            Ok(record)
        })
    }

    fn is_ready(&self) -> bool {
        self.0.directory.is_ready()
    }
}

/// The `credential:token-reader` grants of sessions, over REST.
struct Grants {
    url: String,
    http: reqwest::Client,
    provider: Arc<dyn TokenProvider>,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Grant>,
    #[serde(default)]
    total: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Grant {
    #[serde(default)]
    credential_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
}

/// Pages read at most per session (100 grants each).
const MAX_PAGES: u64 = 10;

impl Grants {
    /// The IDs of the credentials granted to session `id`.
    async fn of(&self, id: &str) -> Result<BTreeSet<String>, String> {
        if id.contains(['\'', '\\']) {
            return Err("a session ID with a quote".into());
        }
        let search = format!("scope = 'credential' and session_id = '{id}'");
        let token = self.provider.token().await.map_err(|e| e.to_string())?;
        let mut found = BTreeSet::new();
        for page in 1..=MAX_PAGES {
            let mut url = reqwest::Url::parse(&self.url).map_err(|e| e.to_string())?;
            url.query_pairs_mut()
                .append_pair("search", &search)
                .append_pair("page", &page.to_string())
                .append_pair("size", "100");
            let resp = self
                .http
                .get(url)
                .bearer_auth(token.token.expose())
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| format!("GET role_bindings: {}", e.without_url()))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("GET role_bindings answered {status}"));
            }
            let page_of: Page = resp
                .json()
                .await
                .map_err(|e| format!("GET role_bindings: {}", e.without_url()))?;
            let n = page_of.items.len() as u64;
            found.extend(
                page_of
                    .items
                    .into_iter()
                    .filter(|g| g.session_id.as_deref() == Some(id))
                    .filter_map(|g| g.credential_id.filter(|c| !c.is_empty())),
            );
            if n < 100 || page_of.total.is_some_and(|t| t <= page * 100) {
                break;
            }
        }
        Ok(found)
    }
}

/// This server's API identity, as the gateway presents it upstream.
pub struct ProviderAuth(pub Arc<dyn TokenProvider>);

impl std::fmt::Debug for ProviderAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderAuth(..)")
    }
}

impl UpstreamAuth for ProviderAuth {
    fn token(&self) -> BoxFuture<'_, Result<Secret, String>> {
        Box::pin(async move {
            self.0
                .token()
                .await
                .map(|t| t.token)
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StaticDirectory, StaticToken};

    fn facts(directory: Arc<StaticDirectory>, refresh: Duration) -> Arc<ApiFacts> {
        let url = reqwest::Url::parse("http://127.0.0.1:9").unwrap_or_else(|e| panic!("{e}"));
        ApiFacts::new(
            directory,
            &url,
            reqwest::Client::new(),
            Arc::new(StaticToken::new(Secret::new("t"))),
            refresh,
        )
    }

    async fn until_known(gateway: &GatewayFacts, id: &str) -> SessionState {
        for _ in 0..500 {
            if let Some(state) = gateway.session(id) {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{id} never learnt");
    }

    #[tokio::test]
    async fn an_exchange_teaches_the_gateway_and_a_miss_is_read_in_the_background() {
        let directory = Arc::new(StaticDirectory::new());
        directory.set("s1", "alpha", "Running");
        directory.set("s2", "beta", "");
        let facts = facts(directory.clone(), Duration::from_secs(3600));
        let gateway = GatewayFacts(facts.clone());

        // The exchange's answer is there at once, with the unbound generation.
        let record = facts.directory().lookup("s1").await;
        assert!(record.is_ok_and(|r| r.is_some_and(|r| r.live)));
        let state = gateway.session("s1");
        assert_eq!(
            state,
            Some(SessionState {
                project: "alpha".into(),
                live: true,
                generation: Some(UNBOUND_GENERATION.into()),
            })
        );
        // Never exchanged for: unknown now, learnt without anyone waiting.
        assert_eq!(gateway.session("s2"), None);
        assert_eq!(until_known(&gateway, "s2").await.project, "beta");
        // An unknown session stays unknown.
        assert_eq!(gateway.session("nope"), None);
    }

    #[tokio::test]
    async fn a_stale_session_is_re_read_and_its_end_announced() {
        let directory = Arc::new(StaticDirectory::new());
        directory.set("s1", "alpha", "Running");
        let facts = facts(directory.clone(), Duration::ZERO);
        let gateway = GatewayFacts(facts.clone());
        let mut changes = gateway.subscribe();
        let _ = facts.directory().lookup("s1").await;
        directory.set("s1", "alpha", "Stopped");
        // Stale at once (refresh 0): served as known, re-read behind.
        assert!(gateway.session("s1").is_some_and(|s| s.live));
        let changed = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await;
        assert_eq!(changed.ok().and_then(Result::ok).as_deref(), Some("s1"));
        assert!(gateway.session("s1").is_some_and(|s| !s.live));
    }

    #[tokio::test]
    async fn credentials_unreadable_are_none_delivered() {
        let directory = Arc::new(StaticDirectory::new());
        let gateway = GatewayFacts(facts(directory, Duration::from_secs(3600)));
        // The API is unreachable: nothing is delivered (fail closed).
        assert!(gateway.delivered_credentials("s1").is_empty());
        assert!(gateway.0.grants.of("it's").await.is_err());
    }
}
