//! `TokenExchanger` against an in-test HTTP server with scripted answers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex as StdMutex;

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
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, script)
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
    // Subscribers saw it too, and the background loop did not fetch a third time for the same kick.
    tokio::time::timeout(Duration::from_secs(2), rx.changed())
        .await
        .ok();
    assert_eq!(
        rx.borrow()
            .as_ref()
            .map(|t| t.token.expose().to_owned())
            .as_deref(),
        Some("new")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(script.requests() <= 3, "{}", script.requests());
    ex.stop().await;
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
async fn expires_at_shortens_the_refresh_interval() {
    let (addr, script) = serve(
        vec![],
        Some(Answer::Token("short-lived", Some(Duration::from_secs(3)))),
    )
    .await;
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    let first = ex.start().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(first.expires_at.is_some());
    let delay = ex.next_refresh_delay(first.fetched_at);
    assert!(
        delay <= Duration::from_millis(2400) && delay >= Duration::from_millis(1000),
        "{delay:?}"
    );
    let mut rx = ex.subscribe();
    rx.borrow_and_update();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap_or_else(|_| panic!("no refresh before expiry"))
        .ok();
    assert_eq!(script.requests(), 2);
    ex.stop().await;
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
async fn unreachable_server_is_a_transport_error_after_three_attempts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(listener);
    let ex = TokenExchanger::new(config(addr)).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        ex.refresh().await,
        Err(ExchangeError::Transport(_))
    ));
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
