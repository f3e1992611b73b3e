//! Exchange v3 (issue 26) through a real server on loopback: the round trip
//! to a session token without a private-key operation per refresh, every
//! refusal (with the reference's bodies, the reason only in the log), the
//! generation check against the caller binding, root rotation through the
//! shared [`V3Roots`], and `require_v3`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::v3::{RootKey, RootKeys, SessionKeyFile};
use ambient_protocol::exchange::{TokenResponse, encrypt_v1, encrypt_v2};
use ambient_token_server::{
    Binding, BoxFuture, CallerBinding, Config, DirectoryError, Hooks, Outcome, RunningServer,
    TokenServer, V3Roots,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;

const INSTALLATION: &str = "install-test-1";

fn root() -> RootKey {
    RootKey::generate().unwrap_or_else(|e| panic!("{e}"))
}

fn roots(keys: &[&RootKey]) -> RootKeys {
    RootKeys::new(INSTALLATION, keys.iter().map(|k| (*k).clone()).collect())
        .unwrap_or_else(|| panic!("no root"))
}

/// A binding whose answer per session a test sets (default: bound, `gen-1`).
#[derive(Default)]
struct Generations(Mutex<HashMap<String, Binding>>);

impl Generations {
    fn set(&self, session_id: &str, binding: Binding) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(session_id.to_owned(), binding);
        }
    }
}

fn bound(generation: &str) -> Binding {
    Binding::Bound {
        generation: generation.to_owned(),
    }
}

impl CallerBinding for Generations {
    fn bind<'a>(
        &'a self,
        session_id: &'a str,
        _peer: SocketAddr,
        _local: SocketAddr,
    ) -> BoxFuture<'a, Result<Binding, DirectoryError>> {
        let answer = self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(session_id).cloned())
            .unwrap_or_else(|| bound("gen-1"));
        Box::pin(async move { Ok(answer) })
    }
}

struct Fixture {
    server: TokenServer,
    base: String,
    client: reqwest::Client,
    binding: Arc<Generations>,
    holder: V3Roots,
    clock: Arc<AtomicU64>,
    _running: RunningServer,
}

async fn fixture(config: Config, holder: V3Roots) -> Fixture {
    let binding = Arc::new(Generations::default());
    let clock = Arc::new(AtomicU64::new(now_secs()));
    let read = clock.clone();
    let hooks = Hooks {
        binding: binding.clone(),
        clock: Arc::new(move || {
            SystemTime::UNIX_EPOCH + Duration::from_secs(read.load(Ordering::SeqCst))
        }),
    };
    let server = TokenServer::with_hooks(
        key_set(&[&keys().0]),
        directory(),
        tokens_identity(),
        config,
        hooks,
    )
    .with_v3_roots(holder.clone());
    let running = server
        .clone()
        .bind(
            "127.0.0.1:0"
                .parse()
                .unwrap_or_else(|e| panic!("addr: {e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    Fixture {
        base: format!("http://{}", running.local_addr()),
        server,
        client: http_client(),
        binding,
        holder,
        clock,
        _running: running,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Fixture {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.clock.load(Ordering::SeqCst))
    }

    /// The key file of `session_id` at `generation` under the current root.
    fn key_file(&self, session_id: &str, generation: &str) -> SessionKeyFile {
        self.holder
            .get()
            .unwrap_or_else(|| panic!("no roots"))
            .key_file(session_id, generation)
    }

    /// A fresh `Authorization` value of `file` at the server's time.
    fn header(&self, file: &SessionKeyFile) -> String {
        file.authorization("GET", "/token", self.now())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn get(&self, auth: Option<&str>) -> (u16, String) {
        let mut req = self.client.get(format!("{}/token", self.base));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    async fn metric(&self, name: &str) -> Option<u64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
    }
}

fn token_of(body: &str) -> String {
    let parsed: TokenResponse =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a token response: {e}"));
    parsed.token.expose().to_owned()
}

const PK_OPS: &str = "ambient_token_server_private_key_operations_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_refresh_gets_the_session_token_without_a_private_key_operation() {
    let f = fixture(config(), V3Roots::new(Some(roots(&[&root()])))).await;
    let jwks = served_jwks(&f.client, &f.base).await;
    let file = f.key_file(LIVE, "gen-1");

    let (status, body) = f.get(Some(&f.header(&file))).await;
    assert_eq!(status, 200, "{body}");
    let first = token_of(&body);
    let claims = verify_under(&jwks, &first).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (claims.sid.as_str(), claims.generation.as_str()),
        (LIVE, "gen-1")
    );
    assert_eq!(claims.project, project_of(LIVE));
    // The first token of a session is signed (one RSA signature) ...
    assert_eq!(f.metric(PK_OPS).await, Some(1));
    // ... the refreshes are two HMACs and a cache hit.
    for _ in 0..20 {
        let (status, body) = f.get(Some(&f.header(&file))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(token_of(&body), first);
    }
    assert_eq!(f.metric(PK_OPS).await, Some(1));
    assert_eq!(f.server.private_key_operations(), 1);

    // A v1 exchange costs a decryption (and reuses the cached token).
    let v1 = encrypt_v1(keys().0.public_key(), LIVE).unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = f.get(Some(&format!("Bearer {v1}"))).await;
    assert_eq!(status, 200);
    assert_eq!(f.metric(PK_OPS).await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v3_refusal_says_only_its_status() {
    let logs = capture_logs();
    let current = root();
    let f = fixture(config(), V3Roots::new(Some(roots(&[&current])))).await;
    let good = f.key_file(LIVE, "gen-1");

    // Wrong key: the right names, another key (as a key file that was
    // derived under another root but claims this root's kid).
    let other_root = root();
    let forged = {
        let theirs = SessionKeyFile::derive(&other_root, INSTALLATION, LIVE, "gen-1");
        let json: serde_json::Value =
            serde_json::from_str(theirs.to_json().expose()).unwrap_or_else(|e| panic!("{e}"));
        let mut json = json;
        json["kid"] = current.kid().into();
        SessionKeyFile::parse(json.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    };
    // Unknown kid: a key file of a root the server does not hold.
    let unknown = SessionKeyFile::derive(&other_root, INSTALLATION, LIVE, "gen-1");
    // Another installation's key for the same session.
    let elsewhere = SessionKeyFile::derive(&current, "install-other", LIVE, "gen-1");
    // A replay: the same header twice (the first is accepted).
    let replayed = f.header(&good);
    assert_eq!(f.get(Some(&replayed)).await.0, 200);
    // Another session's ID with this session's key: the MAC names the sid.
    let swapped = f
        .header(&good)
        .replace(&format!("sid={LIVE},"), &format!("sid={STOPPING},"));
    // A stale and a future timestamp.
    let stale = good
        .authorization("GET", "/token", f.now() - Duration::from_secs(61))
        .unwrap_or_else(|e| panic!("{e}"));
    let future = good
        .authorization("GET", "/token", f.now() + Duration::from_secs(61))
        .unwrap_or_else(|e| panic!("{e}"));
    // The MAC of another method.
    let post = good
        .authorization("POST", "/token", f.now())
        .unwrap_or_else(|e| panic!("{e}"));
    // A terminal session with a valid key.
    let stopped = f.key_file(STOPPED, "gen-1");
    let unauthorized: Vec<(&str, String)> = vec![
        ("wrong key", f.header(&forged)),
        ("unknown kid", f.header(&unknown)),
        ("other installation", f.header(&elsewhere)),
        ("replay", replayed),
        ("other session's id", swapped),
        ("stale ts", stale),
        ("future ts", future),
        ("MAC of POST", post),
        ("scheme only", "Ambient-HMAC".into()),
        ("empty params", "Ambient-HMAC ".into()),
        ("garbage", "Ambient-HMAC kid=,sid=,gen=".into()),
        (
            "lowercase scheme",
            f.header(&good).replacen("Ambient-HMAC", "ambient-hmac", 1),
        ),
    ];
    let before = f.server.metrics().count(Outcome::Unauthorized);
    for (name, auth) in &unauthorized {
        let (status, body) = f.get(Some(auth)).await;
        assert_eq!((status, body.as_str()), (401, "unauthorized\n"), "{name}");
    }
    assert_eq!(
        f.server.metrics().count(Outcome::Unauthorized) - before,
        unauthorized.len() as u64
    );
    let (status, body) = f.get(Some(&f.header(&stopped))).await;
    assert_eq!(
        (status, body.as_str()),
        (403, "forbidden\n"),
        "terminal session"
    );

    let text = logs.text();
    for reason in [
        "bad_mac",
        "unknown_key_id",
        "replayed_nonce",
        "stale_iat",
        "future_iat",
        "malformed_v3",
        "session_not_live",
    ] {
        assert!(text.contains(reason), "{reason} is logged");
    }
    // No key material in the log: neither a root nor a session key.
    for secret in [
        current.to_base64().expose().to_owned(),
        other_root.to_base64().expose().to_owned(),
        key_of(&good),
        key_of(&forged),
    ] {
        assert!(!text.contains(&secret), "a key reached the log");
    }
    assert_eq!(f.server.private_key_operations(), 1, "the one token signed");
}

/// The base64 key of a key file.
fn key_of(file: &SessionKeyFile) -> String {
    let json: serde_json::Value =
        serde_json::from_str(file.to_json().expose()).unwrap_or_else(|e| panic!("{e}"));
    let key = json["key"].as_str().unwrap_or_default().to_owned();
    assert_eq!(STANDARD.decode(&key).map(|k| k.len()).ok(), Some(32));
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_an_old_pod_generation_or_another_pod_is_refused() {
    let f = fixture(config(), V3Roots::new(Some(roots(&[&root()])))).await;
    let old = f.key_file(LIVE, "gen-1");
    assert_eq!(f.get(Some(&f.header(&old))).await.0, 200);

    // The session's pod was replaced: its key names the old generation.
    f.binding.set(LIVE, bound("gen-2"));
    let (status, body) = f.get(Some(&f.header(&old))).await;
    assert_eq!((status, body.as_str()), (403, "forbidden\n"));
    let new = f.key_file(LIVE, "gen-2");
    let (status, body) = f.get(Some(&f.header(&new))).await;
    assert_eq!(status, 200, "{body}");
    let jwks = served_jwks(&f.client, &f.base).await;
    let claims = verify_under(&jwks, &token_of(&body)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims.generation, "gen-2");

    // Another session's process holds a valid key of its own session, but
    // connects from where the binding says it is not that session's pod.
    f.binding.set(
        PENDING,
        Binding::Refused {
            reason: "not the pod of this session".into(),
        },
    );
    let theirs = f.key_file(PENDING, "gen-1");
    let (status, body) = f.get(Some(&f.header(&theirs))).await;
    assert_eq!((status, body.as_str()), (403, "forbidden\n"));
    f.binding.set(PENDING, Binding::NotYet);
    assert_eq!(f.get(Some(&f.header(&theirs))).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_through_the_shared_holder_applies_to_the_next_request() {
    let f = fixture(config(), V3Roots::default()).await;
    let first = root();
    let file = SessionKeyFile::derive(&first, INSTALLATION, LIVE, "gen-1");
    // No roots yet: v3 refused.
    let (status, body) = f.get(Some(&f.header(&file))).await;
    assert_eq!((status, body.as_str()), (401, "unauthorized\n"));

    f.holder.replace(roots(&[&first]));
    assert_eq!(f.get(Some(&f.header(&file))).await.0, 200);
    // The embedder's clone is the server's.
    assert_eq!(
        f.server
            .v3_roots()
            .get()
            .map(|r| r.current().kid().to_owned()),
        Some(first.kid().to_owned())
    );

    // Rotate: a new current root, the old one kept for a token lifetime.
    let second = root();
    f.holder.replace(roots(&[&second, &first]));
    assert_eq!(f.get(Some(&f.header(&file))).await.0, 200, "old root kept");
    let renewed = f.key_file(LIVE, "gen-1");
    assert_eq!(renewed.kid(), second.kid());
    assert_eq!(f.get(Some(&f.header(&renewed))).await.0, 200);
    // The old root dropped: its key files stop working.
    f.holder.replace(roots(&[&second]));
    assert_eq!(f.get(Some(&f.header(&file))).await.0, 401);
    assert_eq!(f.get(Some(&f.header(&renewed))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_v3_refuses_v1_and_v2_before_decrypting() {
    let f = fixture(
        Config {
            require_v3: true,
            ..config()
        },
        V3Roots::new(Some(roots(&[&root()]))),
    )
    .await;
    let pk = keys().0.public_key();
    let v1 = encrypt_v1(pk, LIVE).unwrap_or_else(|e| panic!("{e}"));
    let v2 = encrypt_v2(pk, LIVE, f.now()).unwrap_or_else(|e| panic!("{e}"));
    for (name, auth) in [
        ("v1", Some(format!("Bearer {v1}"))),
        ("v2", Some(format!("Bearer {v2}"))),
        ("garbage bearer", Some("Bearer !!!".to_owned())),
        ("none", None),
    ] {
        let (status, body) = f.get(auth.as_deref()).await;
        assert_eq!((status, body.as_str()), (401, "unauthorized\n"), "{name}");
    }
    assert_eq!(f.server.private_key_operations(), 0, "nothing decrypted");
    let file = f.key_file(LIVE, "gen-1");
    assert_eq!(f.get(Some(&f.header(&file))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_still_work_beside_v3() {
    let f = fixture(config(), V3Roots::new(Some(roots(&[&root()])))).await;
    let pk = keys().0.public_key();
    let v1 = encrypt_v1(pk, LIVE).unwrap_or_else(|e| panic!("{e}"));
    let v2 = encrypt_v2(pk, LIVE, f.now()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.get(Some(&format!("Bearer {v1}"))).await.0, 200);
    assert_eq!(f.get(Some(&format!("Bearer {v2}"))).await.0, 200);
    let file = f.key_file(LIVE, "gen-1");
    assert_eq!(f.get(Some(&f.header(&file))).await.0, 200);
    // The v1/v2 refusals have the reference's bodies too.
    let (status, body) = f.get(Some("Bearer !!!")).await;
    assert_eq!((status, body.as_str()), (401, "unauthorized\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_nonce_memory_fails_closed_for_v3() {
    let f = fixture(
        Config {
            nonce_capacity: 1,
            ..config()
        },
        V3Roots::new(Some(roots(&[&root()]))),
    )
    .await;
    let file = f.key_file(LIVE, "gen-1");
    assert_eq!(f.get(Some(&f.header(&file))).await.0, 200);
    let (status, _) = f.get(Some(&f.header(&file))).await;
    assert_eq!(status, 503, "nonce memory full: refused, not forgotten");
    // Once the window has passed, the memory frees up.
    f.clock.fetch_add(121, Ordering::SeqCst);
    assert_eq!(f.get(Some(&f.header(&file))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_requests_cannot_fill_the_nonce_memory_v3_relies_on() {
    // Anyone with the public key can send v2 requests; v3 nonces are only
    // added behind a valid MAC and are remembered apart.
    let f = fixture(
        Config {
            nonce_capacity: 1,
            ..config()
        },
        V3Roots::new(Some(roots(&[&root()]))),
    )
    .await;
    let pk = keys().0.public_key();
    let v2 = encrypt_v2(pk, LIVE, f.now()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.get(Some(&format!("Bearer {v2}"))).await.0, 200);
    let v2 = encrypt_v2(pk, LIVE, f.now()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.get(Some(&format!("Bearer {v2}"))).await.0,
        503,
        "the v2 memory is full"
    );
    let file = f.key_file(LIVE, "gen-1");
    assert_eq!(
        f.get(Some(&f.header(&file))).await.0,
        200,
        "v3 is unaffected"
    );
}
