//! Session tokens through a real server on loopback (issue 25): what the
//! exchange returns, its reuse, the caller binding, the JWKS and rotation.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::{TokenResponse, encrypt_v1};
use ambient_session_gateway::token::SigningKey;
use ambient_token_server::{
    Binding, BoxFuture, CallerBinding, DirectoryError, Hooks, Identity, NoSessionCheck,
    RunningServer, SessionDirectory, TokenServer,
};
use common::*;

/// Seconds since the epoch the server's clock reads (a test moves it).
fn clock_at(secs: &Arc<AtomicU64>) -> ambient_token_server::Clock {
    let secs = secs.clone();
    Arc::new(move || SystemTime::UNIX_EPOCH + Duration::from_secs(secs.load(Ordering::SeqCst)))
}

async fn serve(server: TokenServer) -> (RunningServer, String) {
    let running = server
        .bind(
            "127.0.0.1:0"
                .parse()
                .unwrap_or_else(|e| panic!("addr: {e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let base = format!("http://{}", running.local_addr());
    (running, base)
}

/// `GET /token` for `session_id` (v1): status and body.
async fn exchange(client: &reqwest::Client, base: &str, session_id: &str) -> (u16, String) {
    let bearer = encrypt_v1(keys().0.public_key(), session_id).unwrap_or_else(|e| panic!("{e}"));
    let resp = client
        .get(format!("{base}/token"))
        .header("authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn token_of(body: &str) -> String {
    let parsed: TokenResponse =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a token response: {e}"));
    parsed.token.expose().to_owned()
}

async fn metric(client: &reqwest::Client, base: &str, name: &str) -> Option<u64> {
    let text = client
        .get(format!("{base}/metrics"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_returns_a_session_token_reused_until_a_third_of_its_life_remains() {
    let t0 = 1_800_000_000u64;
    let now = Arc::new(AtomicU64::new(t0));
    let server = TokenServer::with_clock(
        key_set(&[&keys().0]),
        directory(),
        tokens_identity(),
        config(),
        clock_at(&now),
    );
    let (_running, base) = serve(server).await;
    let client = http_client();
    let jwks = served_jwks(&client, &base).await;
    let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);

    let (status, body) = exchange(&client, &base, LIVE).await;
    assert_eq!(status, 200, "{body}");
    let first = token_of(&body);
    let claims = verify_under_at(&jwks, &first, at(t0)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims.sid, LIVE);
    assert_eq!(claims.project, project_of(LIVE));
    assert_eq!(claims.preferred_username, format!("ambient-session-{LIVE}"));
    assert_eq!(claims.generation, "0", "every caller is bound by default");
    assert_eq!((claims.iat, claims.exp), (t0, t0 + 600));
    assert!(
        body.contains("\"expires_at\":\"2027-01-15T08:10:00Z\""),
        "{body}"
    );

    // A refresh 400 s later (200 s, a third, left) gets the same token.
    now.store(t0 + 400, Ordering::SeqCst);
    let (_, body) = exchange(&client, &base, LIVE).await;
    assert_eq!(token_of(&body), first);
    let signed = "ambient_token_server_session_tokens_signed_total";
    let hits = "ambient_token_server_session_token_cache_hits_total";
    assert_eq!(metric(&client, &base, signed).await, Some(1));
    assert_eq!(metric(&client, &base, hits).await, Some(1));

    // One second later less than a third is left: a new token.
    now.store(t0 + 401, Ordering::SeqCst);
    let (_, body) = exchange(&client, &base, LIVE).await;
    let second = token_of(&body);
    assert_ne!(second, first);
    let claims = verify_under_at(&jwks, &second, at(t0 + 401)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims.exp, t0 + 401 + 600);
    assert_eq!(metric(&client, &base, signed).await, Some(2));

    // A session in a terminal phase gets nothing signed.
    let (status, _) = exchange(&client, &base, STOPPED).await;
    assert_eq!(status, 403);
    assert_eq!(metric(&client, &base, signed).await, Some(2));
}

/// A binding answering per session, recording what it was asked.
#[derive(Default)]
struct ScriptedBinding {
    asked: Mutex<Vec<(String, SocketAddr, SocketAddr)>>,
}

const REFUSAL_REASON: &str = "peer 127.0.0.1 is not the pod of this session";

impl CallerBinding for ScriptedBinding {
    fn bind<'a>(
        &'a self,
        session_id: &'a str,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> BoxFuture<'a, Result<Binding, DirectoryError>> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push((session_id.to_owned(), peer, local));
        }
        let answer = match session_id {
            LIVE => Ok(Binding::Bound {
                generation: "gen-7".into(),
            }),
            PENDING => Ok(Binding::NotYet),
            CREATING => Ok(Binding::Refused {
                reason: REFUSAL_REASON.into(),
            }),
            _ => Err(DirectoryError::Unavailable(
                "pod reflector not synced".into(),
            )),
        };
        Box::pin(async move { answer })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_binding_decides_and_sees_both_ends_of_the_connection() {
    let logs = capture_logs();
    let binding = Arc::new(ScriptedBinding::default());
    let server = TokenServer::with_hooks(
        key_set(&[&keys().0]),
        directory(),
        tokens_identity(),
        config(),
        Hooks {
            binding: binding.clone(),
            ..Hooks::default()
        },
    );
    let (running, base) = serve(server).await;
    let client = http_client();
    let jwks = served_jwks(&client, &base).await;

    let (status, body) = exchange(&client, &base, LIVE).await;
    assert_eq!(status, 200);
    let claims = verify_under(&jwks, &token_of(&body)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims.generation, "gen-7");

    for (session, status) in [(PENDING, 403), (CREATING, 403), (STOPPING, 503)] {
        let (got, body) = exchange(&client, &base, session).await;
        assert_eq!(got, status, "{session}: {body}");
        assert!(!body.contains("127.0.0.1"), "{session}: reason in the body");
    }
    // A terminal session is refused before the binding is asked.
    assert_eq!(exchange(&client, &base, STOPPED).await.0, 403);

    let asked = binding.asked.lock().map(|a| a.clone()).unwrap_or_default();
    let sessions: Vec<&str> = asked.iter().map(|(s, ..)| s.as_str()).collect();
    assert_eq!(sessions, [LIVE, PENDING, CREATING, STOPPING]);
    for (_, peer, local) in &asked {
        assert_eq!(*local, running.local_addr());
        assert_eq!(peer.ip(), local.ip());
        assert_ne!(peer.port(), local.port());
    }
    let text = logs.text();
    assert!(text.contains(REFUSAL_REASON), "the reason is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_a_project_gets_no_session_token() {
    let tokens = session_tokens();
    let dir: Arc<dyn SessionDirectory> = Arc::new(NoSessionCheck);
    let server = TokenServer::new(
        key_set(&[&keys().0]),
        dir,
        Identity::SessionTokens(tokens.clone()),
        config(),
    );
    let (_running, base) = serve(server).await;
    let (status, body) = exchange(&http_client(), &base, "session-anything-1").await;
    assert_eq!(status, 403);
    assert_eq!(body, "forbidden\n");
    assert!(!body.contains("eyJ"), "{body}");
    assert_eq!(tokens.signatures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_publishes_the_next_key_first_and_keeps_the_old_one() {
    let tokens = session_tokens();
    let server = TokenServer::new(
        key_set(&[&keys().0]),
        directory(),
        Identity::SessionTokens(tokens.clone()),
        config(),
    );
    let (_running, base) = serve(server).await;
    let client = http_client();
    let (_, body) = exchange(&client, &base, LIVE).await;
    let old = token_of(&body);

    let next = SigningKey::generate().unwrap_or_else(|e| panic!("{e}"));
    tokens.update_ring(|r| r.set_next(next.clone()));
    let jwks = served_jwks(&client, &base).await;
    assert_eq!(jwks.len(), 2, "next key published before use");
    assert!(jwks.iter().any(|k| k.kid() == next.kid()));
    // Still signing with the current key.
    let (_, body) = exchange(&client, &base, PENDING).await;
    let claims_kid = |t: &str| {
        let header = t.split('.').next().unwrap_or_default();
        let header =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap_or_default();
        let header: serde_json::Value = serde_json::from_slice(&header).unwrap_or_default();
        header["kid"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(claims_kid(&token_of(&body)), signing_key().kid());

    assert!(tokens.update_ring(|r| r.promote_next(SystemTime::now())));
    let (_, body) = exchange(&client, &base, CREATING).await;
    let new = token_of(&body);
    assert_eq!(claims_kid(&new), next.kid());
    let jwks = served_jwks(&client, &base).await;
    assert!(verify_under(&jwks, &new).is_ok());
    assert!(verify_under(&jwks, &old).is_ok(), "old key still published");
    assert_eq!(tokens.ring().retired().len(), 1);
}
