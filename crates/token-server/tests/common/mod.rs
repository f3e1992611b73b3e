//! Shared helpers of the token-server tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use ambient_protocol::Secret;
use ambient_protocol::exchange::KeySet;
use ambient_protocol::keys::PrivateKey;
use ambient_session_gateway::token::{
    Claims, DEFAULT_LIFETIME, KeyRing, Refusal, SigningKey, VerifyingKey, jwt,
};
use ambient_token_server::{
    BoxFuture, Config, DirectoryError, Identity, IssuedToken, ProviderError, RateLimit,
    RunningServer, SessionDirectory, SessionRecord, SessionTokens, StaticDirectory, TokenProvider,
    TokenServer,
};

/// The API token every test server hands out.
pub const API_TOKEN: &str = "api-token-9f8e7d6c5b4a-DO-NOT-LOG";

/// Two RSA-4096 keys, generated once per test binary: (current, other).
pub fn keys() -> &'static (PrivateKey, PrivateKey) {
    static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let gen_key = || PrivateKey::generate().unwrap_or_else(|e| panic!("keygen: {e}"));
        (gen_key(), gen_key())
    })
}

/// An RSA-2048 session-token signing key, generated once per test binary.
pub fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap_or_else(|e| panic!("keygen: {e}")))
}

/// A fresh minter (own cache and counters) signing with [`signing_key`].
pub fn session_tokens() -> Arc<SessionTokens> {
    let ring = KeyRing::new(signing_key().clone());
    Arc::new(SessionTokens::new(ring, DEFAULT_LIFETIME).unwrap_or_else(|e| panic!("{e}")))
}

/// The session-token identity (the default).
pub fn tokens_identity() -> Identity {
    Identity::SessionTokens(session_tokens())
}

/// The platform identity handing out [`API_TOKEN`].
pub fn platform() -> Identity {
    Identity::Platform(static_provider())
}

pub fn key_set(keys: &[&PrivateKey]) -> KeySet {
    KeySet::new(keys.iter().map(|k| (*k).clone()).collect())
        .unwrap_or_else(|| panic!("empty key set"))
}

/// Sessions known to the test directory.
pub const LIVE: &str = "session-running-0001";
pub const PENDING: &str = "session-pending-0002";
pub const EMPTY_PHASE: &str = "session-new-00000003";
pub const CREATING: &str = "session-creating-004";
pub const STOPPING: &str = "session-stopping-005";
pub const STOPPED: &str = "session-stopped-0006";
pub const COMPLETED: &str = "session-complete-007";
pub const FAILED: &str = "session-failed-00008";
pub const UNKNOWN: &str = "session-unknown-0009";

/// The project of every session of [`directory`]: `project-of-<id>`.
pub fn project_of(session_id: &str) -> String {
    format!("project-of-{session_id}")
}

pub fn directory() -> Arc<StaticDirectory> {
    let d = StaticDirectory::new();
    for (id, phase) in [
        (LIVE, "Running"),
        (PENDING, "Pending"),
        (EMPTY_PHASE, ""),
        (CREATING, "Creating"),
        (STOPPING, "Stopping"),
        (STOPPED, "Stopped"),
        (COMPLETED, "Completed"),
        (FAILED, "Failed"),
    ] {
        d.set(id, project_of(id), phase);
    }
    Arc::new(d)
}

/// A provider with a fixed token and, optionally, an expiry.
#[derive(Debug)]
pub struct FixedProvider {
    pub token: Option<String>,
    pub expires_at: Option<SystemTime>,
}

impl TokenProvider for FixedProvider {
    fn token(&self) -> BoxFuture<'_, Result<IssuedToken, ProviderError>> {
        let r = match &self.token {
            Some(t) => Ok(IssuedToken {
                token: Secret::new(t.clone()),
                expires_at: self.expires_at,
            }),
            None => Err(ProviderError::Transport("IdP is down".into())),
        };
        Box::pin(async move { r })
    }
}

/// A directory that is down, or not ready yet.
#[derive(Debug, Default)]
pub struct ToggleDirectory {
    pub ready: AtomicBool,
    pub up: AtomicBool,
}

impl SessionDirectory for ToggleDirectory {
    fn lookup<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, DirectoryError>> {
        let up = self.up.load(Ordering::SeqCst);
        Box::pin(async move {
            if up {
                Ok(Some(SessionRecord {
                    project: project_of(id),
                    live: true,
                }))
            } else {
                Err(DirectoryError::Unavailable("api server down".into()))
            }
        })
    }
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Test config: no rate limit unless asked.
pub fn config() -> Config {
    Config {
        rate_limit: RateLimit {
            per_second: 0.0,
            burst: 0,
            ..RateLimit::default()
        },
        ..Config::default()
    }
}

pub async fn start(
    keys: KeySet,
    dir: Arc<dyn SessionDirectory>,
    identity: Identity,
    config: Config,
) -> (TokenServer, RunningServer) {
    let server = TokenServer::new(keys, dir, identity, config);
    let running = server
        .clone()
        .bind(
            "127.0.0.1:0"
                .parse()
                .unwrap_or_else(|e| panic!("addr: {e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    (server, running)
}

pub fn static_provider() -> Arc<FixedProvider> {
    Arc::new(FixedProvider {
        token: Some(API_TOKEN.into()),
        expires_at: None,
    })
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"))
}

/// A `MakeWriter` collecting every log line of the process.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// Installs (once per test binary) a global TRACE subscriber writing into
/// the returned buffer.
pub fn capture_logs() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            // Also into the suite's logs: the leak scan reads this server's
            // output like a daemon's, for the secrets it was handed.
            integration_tests::register_secret(API_TOKEN);
            let writer = integration_tests::TeeLog::new("token-server", capture.clone());
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .unwrap_or_else(|e| panic!("subscriber: {e}"));
            capture
        })
        .clone()
}

/// The keys of the server's `/.well-known/jwks.json` (checking its content
/// type), each parsed from its JWK alone.
pub async fn served_jwks(client: &reqwest::Client, base: &str) -> Vec<VerifyingKey> {
    let resp = client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("jwks: {e}"));
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let jwks: serde_json::Value = resp.json().await.unwrap_or_else(|e| panic!("jwks: {e}"));
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    assert!(!keys.is_empty(), "empty JWKS");
    keys.iter()
        .map(|k| {
            let key = VerifyingKey::from_jwk(k).unwrap_or_else(|e| panic!("jwk: {e}"));
            assert_eq!(k["kid"].as_str(), Some(key.kid()), "kid is the thumbprint");
            assert_eq!(k["alg"], "RS256");
            key
        })
        .collect()
}

/// The claims of `token` if it verifies under one of `keys` now.
pub fn verify_under(keys: &[VerifyingKey], token: &str) -> Result<Claims, Refusal> {
    verify_under_at(keys, token, SystemTime::now())
}

/// The claims of `token` if it verifies under one of `keys` at `now`.
pub fn verify_under_at(
    keys: &[VerifyingKey],
    token: &str,
    now: SystemTime,
) -> Result<Claims, Refusal> {
    jwt::decode(token, |kid| keys.iter().find(|k| k.kid() == kid), now)
}
