//! `TokenExchanger` against an in-test HTTP server with scripted answers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::*;
use crate::test_key;

#[derive(Clone)]
enum Answer {
    Token(&'static str, Option<Duration>),
    Status(u16, &'static str),
    Redirect(&'static str),
    Raw(&'static str),
}

#[derive(Default)]
struct Script {
    answers: StdMutex<VecDeque<Answer>>,
    fallback: StdMutex<Option<Answer>>,
    bearers: StdMutex<Vec<String>>,
}

impl Script {
    fn requests(&self) -> usize {
        self.bearers.lock().map(|b| b.len()).unwrap_or(0)
    }
    fn bearers(&self) -> Vec<String> {
        self.bearers.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

async fn serve(answers: Vec<Answer>, fallback: Option<Answer>) -> (SocketAddr, Arc<Script>) {
    let (addr, script, stop) = serve_stoppable(answers, fallback).await;
    // Never stopped: runs until the test's runtime ends.
    std::mem::forget(stop);
    (addr, script)
}

/// [`serve`], plus a sender that shuts the server down (closing idle
/// keep-alive connections too) and then refuses connections.
async fn serve_stoppable(
    answers: Vec<Answer>,
    fallback: Option<Answer>,
) -> (SocketAddr, Arc<Script>, tokio::sync::oneshot::Sender<()>) {
    let script = Arc::new(Script {
        answers: StdMutex::new(answers.into()),
        fallback: StdMutex::new(fallback),
        ..Default::default()
    });
    let s = script.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::get(move |headers: HeaderMap| {
            let s = s.clone();
            async move { answer(&s, &headers) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    (addr, script, stop)
}

/// A server on a raw socket that answers every request with `response`
/// (bytes as sent), or never answers when `response` is `None`; counts the
/// connections it accepted.
async fn serve_raw(response: Option<Vec<u8>>) -> (SocketAddr, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match response {
                    Some(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                    }
                    // Hold the connection open without a word.
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    (addr, accepted)
}

fn answer(s: &Script, headers: &HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if let Ok(mut b) = s.bearers.lock() {
        b.push(bearer);
    }
    let next = s.answers.lock().ok().and_then(|mut a| a.pop_front());
    let next = next.or_else(|| s.fallback.lock().ok().and_then(|f| f.clone()));
    match next {
        Some(Answer::Token(t, ttl)) => {
            let mut body = serde_json::json!({ "token": t });
            if let Some(ttl) = ttl {
                body["expires_at"] = format_rfc3339(SystemTime::now() + ttl).into();
            }
            axum::Json(body).into_response()
        }
        Some(Answer::Status(code, body)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
            body,
        )
            .into_response(),
        Some(Answer::Redirect(to)) => (StatusCode::FOUND, [("location", to)], "").into_response(),
        Some(Answer::Raw(body)) => ([("content-type", "application/json")], body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn config(addr: SocketAddr) -> ExchangerConfig {
    let mut cfg = ExchangerConfig::new(
        format!("http://{addr}/token"),
        test_key().public_key().clone(),
        "session-0123456789",
    );
    cfg.retry_waits = vec![Duration::from_millis(20), Duration::from_millis(40)];
    cfg
}

fn decrypts_to_v2(bearer: &str) -> bool {
    use crate::exchange::{KeySet, NonceCache, check_plaintext, decode_bearer};
    let Some(keys) = KeySet::new(vec![test_key().clone()]) else {
        return false;
    };
    let Ok(ct) = decode_bearer(Some(bearer.as_bytes())) else {
        return false;
    };
    let Ok(pt) = keys.decrypt(&ct) else {
        return false;
    };
    let nonces = NonceCache::new(16, Duration::from_secs(60));
    check_plaintext(pt.as_bytes(), SystemTime::now(), &nonces, true)
        .is_ok_and(|c| c.session_id == "session-0123456789")
}

#[test]
fn defaults_follow_the_wire_contract() {
    let cfg = ExchangerConfig::new("http://x.svc/token", test_key().public_key().clone(), "s");
    assert_eq!(
        cfg.retry_waits,
        vec![Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert_eq!(cfg.request_timeout, Duration::from_secs(10));
    assert_eq!(cfg.refresh_interval, Duration::from_secs(300));
    assert_eq!(cfg.protocol, Protocol::V2);
}

#[tokio::test]
async fn success_sends_a_v2_bearer() {
    let (addr, script) = serve(vec![Answer::Token("tok-1", None)], None).await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let t = ex.token().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.expose(), "tok-1");
    assert_eq!(script.requests(), 1);
    assert!(decrypts_to_v2(&script.bearers()[0]));
    // cached: no second request
    assert_eq!(
        ex.token()
            .await
            .ok()
            .map(|t| t.expose().to_owned())
            .as_deref(),
        Some("tok-1")
    );
    assert_eq!(script.requests(), 1);
}

#[tokio::test]
async fn recovers_after_two_503s_in_exactly_three_requests_with_default_waits() {
    let (addr, script) = serve(
        vec![
            Answer::Status(503, "busy"),
            Answer::Status(503, "busy"),
            Answer::Token("tok-3", None),
        ],
        None,
    )
    .await;
    let mut cfg = config(addr);
    cfg.retry_waits =
        ExchangerConfig::new("http://x/", test_key().public_key().clone(), "s").retry_waits;
    let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let t = ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.token.expose(), "tok-3");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "waited 1 s + 2 s"
    );
    let bearers = script.bearers();
    assert_eq!(bearers.len(), 3);
    assert!(bearers[0] != bearers[1] && bearers[1] != bearers[2] && bearers[0] != bearers[2]);
    assert!(bearers.iter().all(|b| decrypts_to_v2(b)));
}

#[tokio::test]
async fn three_500s_fail_with_status_and_length_but_not_the_body() {
    let body = "internal detail: secret-db-password";
    let (addr, script) = serve(
        vec![],
        Some(Answer::Status(500, "internal detail: secret-db-password")),
    )
    .await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let err = ex.refresh().await.err();
    assert_eq!(
        err,
        Some(ExchangeError::Status {
            status: 500,
            body_len: body.len()
        })
    );
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("500") && text.contains(&body.len().to_string()),
        "{text}"
    );
    assert!(!text.contains("secret-db-password"), "{text}");
    assert_eq!(script.requests(), 3);
}

#[tokio::test]
async fn empty_or_missing_token_field_fails() {
    for raw in [
        r#"{"token":""}"#,
        r#"{"expires_at":"2030-01-01T00:00:00Z"}"#,
        r#"{}"#,
    ] {
        let (addr, _) = serve(vec![], Some(Answer::Raw(raw))).await;
        let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ex.refresh().await.err(),
            Some(ExchangeError::MissingToken),
            "{raw}"
        );
    }
    let (addr, _) = serve(vec![], Some(Answer::Raw("not json"))).await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ex.refresh().await.err(),
        Some(ExchangeError::BadBody { body_len: 8 })
    );
}

#[tokio::test]
async fn invalidate_after_401_refetches() {
    let (addr, script) = serve(
        vec![Answer::Token("old", None), Answer::Token("new", None)],
        None,
    )
    .await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let mut rx = ex.subscribe();
    ex.start().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ex.token()
            .await
            .ok()
            .map(|t| t.expose().to_owned())
            .as_deref(),
        Some("old")
    );
    rx.borrow_and_update();
    // The API said 401: invalidate, and the next token() is a fresh one.
    ex.invalidate();
    assert_eq!(
        ex.token()
            .await
            .ok()
            .map(|t| t.expose().to_owned())
            .as_deref(),
        Some("new")
    );
    // Subscribers saw it too, and the background loop did not fetch a third
    // time for the same kick.
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .unwrap_or_else(|_| panic!("subscribers never saw the fresh token"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rx.borrow()
            .as_ref()
            .map(|t| t.token.expose().to_owned())
            .as_deref(),
        Some("new")
    );
    // Let the background loop take its turn on the kick, then stop it.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    ex.stop().await;
    assert_eq!(script.requests(), 2);
}

#[tokio::test]
async fn invalidate_alone_wakes_the_background_refresh() {
    let (addr, script) = serve(
        vec![Answer::Token("a", None)],
        Some(Answer::Token("b", None)),
    )
    .await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let mut rx = ex.subscribe();
    ex.start().await.unwrap_or_else(|e| panic!("{e}"));
    rx.borrow_and_update();
    ex.invalidate();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap_or_else(|_| panic!("no refresh after invalidate"))
        .ok();
    assert_eq!(
        rx.borrow()
            .as_ref()
            .map(|t| t.token.expose().to_owned())
            .as_deref(),
        Some("b")
    );
    assert_eq!(script.requests(), 2);
    ex.stop().await;
}

#[tokio::test]
async fn expires_at_shortens_the_refresh_interval_down_to_10_s() {
    for (ttl, low, high) in [
        // 80 % of 100 s (expires_at has sub-second precision: a little less).
        (100, Duration::from_secs(79), Duration::from_secs(80)),
        // 80 % of 3 s is 2.4 s: the 10 s floor wins.
        (3, Duration::from_secs(10), Duration::from_secs(10)),
        // Already expired: still not sooner than 10 s.
        (0, Duration::from_secs(10), Duration::from_secs(10)),
    ] {
        let (addr, _) = serve(
            vec![],
            Some(Answer::Token("t", Some(Duration::from_secs(ttl)))),
        )
        .await;
        let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
        let t = ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(t.expires_at.is_some());
        let delay = ex.next_refresh_delay(t.fetched_at);
        assert!(delay >= low && delay <= high, "ttl {ttl}: {delay:?}");
    }
}

#[tokio::test]
async fn background_refresh_happens_before_expiry() {
    let (addr, script) = serve(
        vec![],
        Some(Answer::Token("short-lived", Some(Duration::from_secs(3)))),
    )
    .await;
    let mut cfg = config(addr);
    cfg.min_refresh_interval = Duration::from_millis(500);
    let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    let first = ex.start().await.unwrap_or_else(|e| panic!("{e}"));
    let delay = ex.next_refresh_delay(first.fetched_at);
    assert!(
        delay <= Duration::from_millis(2400) && delay >= Duration::from_millis(1000),
        "{delay:?}"
    );
    let mut rx = ex.subscribe();
    rx.borrow_and_update();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .unwrap_or_else(|_| panic!("no refresh before expiry"))
        .unwrap_or_else(|e| panic!("{e}"));
    ex.stop().await;
    assert_eq!(script.requests(), 2);
}

#[test]
fn a_refresh_fraction_outside_0_1_is_refused() {
    for f in [0.0, -0.5, 1.5, f64::NAN] {
        let mut cfg =
            ExchangerConfig::new("http://x.svc/token", test_key().public_key().clone(), "s");
        cfg.refresh_at_fraction = f;
        assert!(
            matches!(TokenExchanger::new(cfg), Err(ExchangeError::Client(_))),
            "{f}"
        );
    }
}

#[tokio::test]
async fn refresh_interval_applies_without_expiry() {
    let (addr, _) = serve(vec![], Some(Answer::Token("t", None))).await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let t = ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ex.next_refresh_delay(t.fetched_at),
        Duration::from_secs(300)
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (target, target_script) = serve(vec![], Some(Answer::Token("stolen", None))).await;
    let to: &'static str = Box::leak(format!("http://{target}/token").into_boxed_str());
    let (addr, _) = serve(vec![], Some(Answer::Redirect(to))).await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        ex.refresh().await,
        Err(ExchangeError::Status { status: 302, .. })
    ));
    assert_eq!(target_script.requests(), 0);
}

#[tokio::test]
async fn a_dropping_server_is_a_transport_error_after_three_attempts() {
    // Every connection is accepted and closed without an answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let result = ex.refresh().await;
    assert!(
        matches!(result, Err(ExchangeError::Transport(_))),
        "{result:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "attempts");
    // The waits between them (20 ms, then 40 ms) were taken.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn transport_errors_do_not_echo_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(listener);
    let mut cfg = config(addr);
    cfg.token_url = format!("http://{addr}/token?key=s3cret-query");
    cfg.retry_waits = Vec::new();
    let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    let text = ex
        .refresh()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(text.contains("token request failed"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn the_request_timeout_applies() {
    let (addr, accepted) = serve_raw(None).await;
    let mut cfg = config(addr);
    cfg.retry_waits = Vec::new();
    cfg.request_timeout = Duration::from_millis(300);
    let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    let result = tokio::time::timeout(Duration::from_secs(30), ex.refresh())
        .await
        .unwrap_or_else(|_| panic!("the request timeout did not apply"));
    match result {
        Err(ExchangeError::Transport(text)) => {
            assert!(text.contains("timed out"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_last_good_token_stays_while_the_server_is_down() {
    let (addr, script, stop) = serve_stoppable(
        vec![Answer::Token("good", Some(Duration::from_secs(3600)))],
        None,
    )
    .await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let mut rx = ex.subscribe();
    let first = ex.start().await.unwrap_or_else(|e| panic!("{e}"));
    rx.borrow_and_update();
    let _ = stop.send(());
    // The server is gone: a refresh fails after its attempts...
    let failed = tokio::time::timeout(Duration::from_secs(30), ex.refresh())
        .await
        .unwrap_or_else(|_| panic!("refresh never gave up"));
    assert!(
        matches!(failed, Err(ExchangeError::Transport(_))),
        "{failed:?}"
    );
    // ...and the last good token is still the one handed out and published.
    let token = ex.token().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(token.expose(), "good");
    assert_eq!(ex.current(), Some(first));
    assert!(!rx.has_changed().unwrap_or(true));
    assert_eq!(script.requests(), 1);
    ex.stop().await;
}

/// An HTTP/1.1 200 whose JSON body (a valid token response padded to `len`
/// bytes) arrives in 16 KiB chunks without a Content-Length.
fn chunked_token_response(len: usize) -> Vec<u8> {
    let head = r#"{"token":"t","pad":""#;
    let tail = r#""}"#;
    let mut body = head.as_bytes().to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for chunk in body.chunks(16 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_while_streaming() {
    // Just under the limit: read and parsed (the pad field is ignored).
    let (addr, _) = serve_raw(Some(chunked_token_response(MAX_BODY))).await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let ok = ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.token.expose(), "t");
    // One byte over, streamed in chunks: refused.
    let (addr, _) = serve_raw(Some(chunked_token_response(MAX_BODY + 1))).await;
    let mut cfg = config(addr);
    cfg.retry_waits = Vec::new();
    let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    match ex.refresh().await {
        Err(ExchangeError::BadBody { body_len }) => assert!(body_len > MAX_BODY),
        other => panic!("{other:?}"),
    }
    // Announced with a Content-Length: refused without reading it.
    let huge: &'static str =
        Box::leak(format!(r#"{{"token":"t","pad":"{}"}}"#, "y".repeat(MAX_BODY)).into_boxed_str());
    let (addr, _) = serve(vec![], Some(Answer::Raw(huge))).await;
    let mut cfg = config(addr);
    cfg.retry_waits = Vec::new();
    let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ex.refresh().await.err(),
        Some(ExchangeError::BadBody {
            body_len: huge.len()
        })
    );
}

#[test]
fn bad_urls_are_refused_up_front() {
    let key = test_key().public_key().clone();
    for url in ["ftp://x/token", "http://u:p@x/token", "nope"] {
        assert!(matches!(
            TokenExchanger::new(ExchangerConfig::new(url, key.clone(), "session-1")),
            Err(ExchangeError::Url(_))
        ));
    }
}

#[test]
fn rfc3339_round_trip() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let s = format_rfc3339(t);
    assert_eq!(s, "2027-01-15T08:00:00Z");
    assert_eq!(parse_rfc3339(&s), Some(t));
    assert_eq!(parse_rfc3339("yesterday"), None);
}

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "exchanger-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

mod v3 {
    use super::*;
    use crate::exchange::v3::{KeyFileError, RootKey, RootKeys};
    use crate::exchange::{NonceCache, Rejection};

    const SID: &str = "session-0123456789";

    fn roots() -> RootKeys {
        let root = RootKey::generate().unwrap_or_else(|e| panic!("{e}"));
        RootKeys::new("install-1", vec![root]).unwrap_or_else(|| panic!("no root"))
    }

    fn write(path: &std::path::Path, content: &str) {
        std::fs::write(path, content).unwrap_or_else(|e| panic!("{e}"));
    }

    fn verifies(roots: &RootKeys, header: &str) -> Result<(String, String), Rejection> {
        let nonces = NonceCache::new(16, Duration::from_secs(60));
        roots
            .verify(
                Some(header.as_bytes()),
                "GET",
                "/token",
                SystemTime::now(),
                &nonces,
            )
            .map(|c| (c.session_id, c.generation))
    }

    #[tokio::test]
    async fn a_present_key_file_means_v3_an_absent_one_v2_and_a_rewrite_is_seen() {
        let dir = TempDir::new("v3");
        let path = dir.0.join("session.key");
        let (addr, script) = serve(vec![], Some(Answer::Token("tok", None))).await;
        let mut cfg = config(addr);
        cfg.session_key_file = Some(path.clone());
        let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));

        // Absent: v2.
        ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(decrypts_to_v2(&script.bearers()[0]));

        // Present: v3, with a fresh nonce per attempt.
        let first = roots();
        write(&path, first.key_file(SID, "gen-1").to_json().expose());
        ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
        ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
        let sent = script.bearers();
        assert!(sent[1].starts_with("Ambient-HMAC "), "v3 header");
        assert_ne!(sent[1], sent[2], "a fresh header per attempt");
        assert_eq!(
            verifies(&first, &sent[1]),
            Ok((SID.to_owned(), "gen-1".to_owned()))
        );
        assert!(!sent[1].contains(&key_text(&first, "gen-1")), "key sent");

        // Rewritten (root rotation, new pod generation): the next attempt
        // uses the new key.
        let second = roots();
        write(&path, second.key_file(SID, "gen-2").to_json().expose());
        ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
        let sent = script.bearers();
        assert_eq!(
            verifies(&second, &sent[3]),
            Ok((SID.to_owned(), "gen-2".to_owned()))
        );
        assert_eq!(verifies(&first, &sent[3]), Err(Rejection::UnknownKeyId));

        // Removed again: back to v2.
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
        ex.refresh().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(decrypts_to_v2(&script.bearers()[4]));
    }

    fn key_text(roots: &RootKeys, generation: &str) -> String {
        let json: serde_json::Value =
            serde_json::from_str(roots.key_file(SID, generation).to_json().expose())
                .unwrap_or_else(|e| panic!("{e}"));
        json["key"].as_str().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_malformed_or_foreign_key_file_is_a_clear_error_without_its_content() {
        let dir = TempDir::new("v3-bad");
        let path = dir.0.join("session.key");
        let (addr, script) = serve(vec![], Some(Answer::Token("tok", None))).await;
        let mut cfg = config(addr);
        cfg.session_key_file = Some(path.clone());
        let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
        let other = roots().key_file("session-of-someone-else", "gen-1");
        let cases = [
            ("not JSON", "SECRET-LOOKING-CONTENT-42".to_owned()),
            (
                "v2-shaped",
                r#"{"v":2,"sid":"SECRET-LOOKING-CONTENT-42"}"#.to_owned(),
            ),
            ("empty", String::new()),
            ("another session's", other.to_json().expose().to_owned()),
        ];
        for (name, content) in cases {
            write(&path, &content);
            let err = ex
                .refresh()
                .await
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert!(
                matches!(
                    err,
                    ExchangeError::KeyFile {
                        error: KeyFileError::Malformed(_),
                        ..
                    }
                ),
                "{name}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains("session.key"), "{name}: path named: {text}");
            assert!(
                !text.contains("SECRET-LOOKING"),
                "{name}: content echoed: {text}"
            );
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&content)
                && let Some(key) = json["key"].as_str()
            {
                assert!(!text.contains(key), "{name}: key echoed");
            }
        }
        // Not retried, nothing sent.
        assert_eq!(script.requests(), 0);

        // A directory where the file should be: unreadable, an error too.
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{e}"));
        let err = ex
            .refresh()
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(
            matches!(
                err,
                ExchangeError::KeyFile {
                    error: KeyFileError::Read(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(script.requests(), 0);
    }
}
