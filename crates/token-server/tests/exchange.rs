//! Every row of wire.md §3 (v1 and v2) against a real server on loopback,
//! answered with session tokens that verify under the JWKS the server
//! serves, plus `/healthz`, `/readyz`, `/metrics`, and a check that the
//! complete log output of the table holds no token, no ciphertext and no
//! rejected plaintext.

mod common;

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::{TokenResponse, encrypt_plaintext, encrypt_v1, encrypt_v2};
use ambient_protocol::exchanger::parse_rfc3339;
use ambient_protocol::keys::PublicKey;
use ambient_token_server::{Config, Identity, Outcome};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use common::*;

/// One request of the table.
struct Row {
    name: &'static str,
    method: reqwest::Method,
    /// Raw `Authorization` header value (None: absent).
    auth: Option<String>,
    status: u16,
    /// A plaintext the server must refuse (never to be logged).
    rejected_plaintext: Option<String>,
}

fn row(name: &'static str, auth: Option<String>, status: u16) -> Row {
    Row {
        name,
        method: reqwest::Method::GET,
        auth,
        status,
        rejected_plaintext: None,
    }
}

fn bearer(b64: &str) -> Option<String> {
    Some(format!("Bearer {b64}"))
}

fn v1(pk: &PublicKey, id: &str) -> String {
    encrypt_v1(pk, id).unwrap_or_else(|e| panic!("encrypt: {e}"))
}

fn v2_at(pk: &PublicKey, id: &str, at: SystemTime) -> String {
    encrypt_v2(pk, id, at).unwrap_or_else(|e| panic!("encrypt: {e}"))
}

fn v2(pk: &PublicKey, id: &str) -> String {
    v2_at(pk, id, SystemTime::now())
}

fn raw(pk: &PublicKey, plaintext: &str) -> String {
    encrypt_plaintext(pk, plaintext.as_bytes()).unwrap_or_else(|e| panic!("encrypt: {e}"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A ciphertext whose standard base64 has `+` or `/`, re-encoded URL-safe.
fn url_safe_variant(pk: &PublicKey, id: &str) -> String {
    loop {
        let b64 = v1(pk, id);
        if b64.contains('+') || b64.contains('/') {
            let bytes = STANDARD.decode(&b64).unwrap_or_else(|e| panic!("{e}"));
            return URL_SAFE.encode(bytes);
        }
    }
}

fn refused(mut r: Row, plaintext: &str) -> Row {
    r.rejected_plaintext = Some(plaintext.to_owned());
    r
}

fn table(pk: &PublicKey, wrong: &PublicKey) -> Vec<Row> {
    let good = v1(pk, LIVE);
    let good_bytes = STANDARD.decode(&good).unwrap_or_else(|e| panic!("{e}"));
    let now = unix_now();
    let nonce = STANDARD.encode([7u8; 18]);
    let replayed = v2(pk, LIVE);
    let mut rows = vec![
        // Rule 1: method, before any authentication.
        Row {
            method: reqwest::Method::POST,
            ..row("POST with a valid bearer", bearer(&v1(pk, LIVE)), 405)
        },
        Row {
            method: reqwest::Method::PUT,
            ..row("PUT without a header", None, 405)
        },
        Row {
            method: reqwest::Method::DELETE,
            ..row("DELETE with garbage", bearer("!!!"), 405)
        },
        // Rule 2: header form.
        row("missing header", None, 401),
        row("Basic scheme", Some(format!("Basic {good}")), 401),
        row("lowercase bearer", Some(format!("bearer {good}")), 401),
        row("empty bearer", Some("Bearer ".into()), 401),
        row("scheme only", Some("Bearer".into()), 401),
        row(
            "Bearer with a double space",
            Some(format!("Bearer  {good}")),
            401,
        ),
        // Rule 3: base64 and decryption.
        row("not base64", bearer("!!!not*base64!!!"), 401),
        row("URL-safe base64", bearer(&url_safe_variant(pk, LIVE)), 401),
        row(
            "unpadded base64",
            bearer(&STANDARD_NO_PAD.encode(&good_bytes)),
            401,
        ),
        row("wrong key", bearer(&v1(wrong, LIVE)), 401),
        row(
            "truncated ciphertext",
            bearer(&STANDARD.encode(&good_bytes[..good_bytes.len() - 1])),
            401,
        ),
        row(
            "tampered ciphertext",
            bearer(&STANDARD.encode({
                let mut b = good_bytes.clone();
                b[100] ^= 0x40;
                b
            })),
            401,
        ),
        row(
            "random bytes of the right length",
            bearer(&STANDARD.encode(vec![0x5au8; good_bytes.len()])),
            401,
        ),
        // Rule 4: the session ID.
        refused(row("short ID", bearer(&v1(pk, "abc1234")), 403), "abc1234"),
        refused(
            row("ID with a space", bearer(&v1(pk, "bad id with space")), 403),
            "bad id with space",
        ),
        refused(
            row("ID with a tab", bearer(&v1(pk, "tabbed\tsession-id")), 403),
            "tabbed\tsession-id",
        ),
        refused(
            row("ID with CR LF", bearer(&v1(pk, "crlf-session-id\r\n")), 403),
            "crlf-session-id",
        ),
        refused(row("empty plaintext", bearer(&raw(pk, "")), 403), ""),
        // Rule 5: unknown or terminal session.
        refused(
            row("unknown session", bearer(&v1(pk, UNKNOWN)), 403),
            UNKNOWN,
        ),
        refused(
            row("stopped session", bearer(&v1(pk, STOPPED)), 403),
            STOPPED,
        ),
        refused(
            row("completed session", bearer(&v1(pk, COMPLETED)), 403),
            COMPLETED,
        ),
        refused(row("failed session", bearer(&v1(pk, FAILED)), 403), FAILED),
        // Rule 7: live sessions.
        row("running session", bearer(&good), 200),
        row("pending session", bearer(&v1(pk, PENDING)), 200),
        row("empty-phase session", bearer(&v1(pk, EMPTY_PHASE)), 200),
        row("creating session", bearer(&v1(pk, CREATING)), 200),
        // Stopping is not terminal: its containers may still call the API.
        row("stopping session", bearer(&v1(pk, STOPPING)), 200),
        row("v2 stopping session", bearer(&v2(pk, STOPPING)), 200),
        // v1 bearers are not replay-protected (reference protocol).
        row("v1 replayed", bearer(&good), 200),
        // v2.
        row("v2 running session", bearer(&v2(pk, LIVE)), 200),
        row("v2 pending session", bearer(&v2(pk, PENDING)), 200),
        row("v2 first use", bearer(&replayed), 200),
        row("v2 replayed nonce", bearer(&replayed), 401),
        row(
            "v2 stale iat",
            bearer(&v2_at(
                pk,
                LIVE,
                SystemTime::now() - Duration::from_secs(120),
            )),
            401,
        ),
        row(
            "v2 future iat",
            bearer(&v2_at(
                pk,
                LIVE,
                SystemTime::now() + Duration::from_secs(120),
            )),
            401,
        ),
        row(
            "v2 iat just inside the window",
            bearer(&v2_at(
                pk,
                LIVE,
                SystemTime::now() - Duration::from_secs(30),
            )),
            200,
        ),
        refused(
            row("v2 not JSON", bearer(&raw(pk, "{not json at all")), 401),
            "{not json at all",
        ),
        row(
            "v2 wrong version",
            bearer(&raw(
                pk,
                &format!(r#"{{"v":3,"sid":"{LIVE}","iat":{now},"nonce":"{nonce}"}}"#),
            )),
            401,
        ),
        row(
            "v2 short nonce",
            bearer(&raw(
                pk,
                &format!(r#"{{"v":2,"sid":"{LIVE}","iat":{now},"nonce":"AAAA"}}"#),
            )),
            401,
        ),
        row(
            "v2 missing nonce",
            bearer(&raw(
                pk,
                &format!(r#"{{"v":2,"sid":"{LIVE}","iat":{now}}}"#),
            )),
            401,
        ),
        row(
            "v2 extra field",
            bearer(&raw(
                pk,
                &format!(r#"{{"v":2,"sid":"{LIVE}","iat":{now},"nonce":"{nonce}","x":1}}"#),
            )),
            401,
        ),
        refused(row("v2 short sid", bearer(&v2(pk, "short")), 403), "short"),
        refused(
            row(
                "v2 sid with space",
                bearer(&v2(pk, "v2 sid with space")),
                403,
            ),
            "v2 sid with space",
        ),
        refused(
            row("v2 unknown session", bearer(&v2(pk, UNKNOWN)), 403),
            UNKNOWN,
        ),
        refused(
            row("v2 terminal session", bearer(&v2(pk, STOPPED)), 403),
            STOPPED,
        ),
        row("v2 wrong key", bearer(&v2(wrong, LIVE)), 401),
    ];
    // Oversized head → 431 (sent by the raw-socket path below).
    rows.push(row("oversized header", None, 431));
    rows
}

/// Sends a request with a 9 KiB header over a raw socket; returns the status.
fn oversized(addr: std::net::SocketAddr) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let filler = "x".repeat(9 * 1024);
    let req = format!("GET /token HTTP/1.1\r\nHost: t\r\nX-Filler: {filler}\r\n\r\n");
    s.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_exchange_table_and_no_secret_in_the_logs() {
    let logs = capture_logs();
    let (current, other) = keys();
    let (server, running) = start(
        key_set(&[current]),
        directory(),
        tokens_identity(),
        config(),
    )
    .await;
    let base = format!("http://{}", running.local_addr());
    let client = http_client();
    let jwks = served_jwks(&client, &base).await;
    let mut issued = Vec::new();
    let rows = table(current.public_key(), other.public_key());
    let mut bearers = Vec::new();
    let mut plaintexts = Vec::new();
    let mut expected = std::collections::HashMap::<Outcome, u64>::new();
    let mut failures = Vec::new();
    for r in &rows {
        let status = if r.status == 431 {
            oversized(running.local_addr())
        } else {
            let mut req = client.request(r.method.clone(), format!("{base}/token"));
            if let Some(a) = &r.auth {
                req = req.header("authorization", a);
                if let Some(b) = a.strip_prefix("Bearer ").filter(|b| b.len() > 16) {
                    bearers.push(b.to_owned());
                }
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", r.name));
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            if status == 200 {
                let parsed: TokenResponse = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{}: body is not a token response: {e}", r.name));
                let claims = verify_under(&jwks, parsed.token.expose())
                    .unwrap_or_else(|e| panic!("{}: token does not verify: {e}", r.name));
                assert_eq!(claims.project, project_of(&claims.sid), "{}", r.name);
                assert_eq!(claims.sub, format!("ambient-session-{}", claims.sid));
                let expires_at = SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp);
                let at = parsed.expires_at.as_deref().unwrap_or_default();
                assert_eq!(parse_rfc3339(at), Some(expires_at), "{}", r.name);
                issued.push(parsed.token.expose().to_owned());
            } else {
                assert!(
                    !body.contains(API_TOKEN) && !body.contains("eyJ"),
                    "{}: token in an error body",
                    r.name
                );
                assert!(body.len() < 100, "{}: long error body {body:?}", r.name);
            }
            status
        };
        if status != r.status {
            failures.push(format!("{}: expected {}, got {status}", r.name, r.status));
        }
        if let Some(p) = &r.rejected_plaintext {
            plaintexts.push(p.clone());
        }
        let outcome = match r.status {
            200 => Some(Outcome::Ok),
            401 => Some(Outcome::Unauthorized),
            403 => Some(Outcome::Forbidden),
            405 => Some(Outcome::Error),
            _ => None,
        };
        if let Some(o) = outcome {
            *expected.entry(o).or_default() += 1;
        }
    }
    assert!(failures.is_empty(), "rows failed:\n{}", failures.join("\n"));

    // The metrics counted every outcome.
    for (outcome, n) in &expected {
        assert_eq!(server.metrics().count(*outcome), *n, "{outcome:?}");
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    let ok_line = format!(
        "ambient_token_server_requests_total{{outcome=\"ok\"}} {}",
        expected.get(&Outcome::Ok).copied().unwrap_or(0)
    );
    assert!(metrics.contains(&ok_line), "{ok_line} not in\n{metrics}");
    assert!(metrics.contains("ambient_token_server_decrypt_duration_seconds_count"));
    assert!(metrics.contains("ambient_token_server_in_flight_requests 0"));

    running
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));

    // Nothing secret in the complete log output.
    let text = logs.text();
    assert!(
        text.contains(LIVE) && text.contains("token issued"),
        "accepted requests must log their session ID; logs:\n{text}"
    );
    assert!(!text.contains(API_TOKEN), "token in logs");
    assert!(!issued.is_empty());
    for t in &issued {
        let signature = t.rsplit('.').next().unwrap_or(t);
        assert!(!text.contains(signature), "a session token is in the logs");
    }
    for b in &bearers {
        assert!(!text.contains(b.as_str()), "a ciphertext is in the logs");
        assert!(
            !text.contains(&b[..24]),
            "a ciphertext prefix is in the logs"
        );
    }
    for p in plaintexts.iter().filter(|p| !p.is_empty()) {
        let first_line = p.lines().next().unwrap_or(p);
        assert!(
            !text.contains(first_line),
            "rejected plaintext {p:?} is in the logs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_v2_refuses_v1() {
    let (current, _) = keys();
    let (_, running) = start(
        key_set(&[current]),
        directory(),
        tokens_identity(),
        Config {
            require_v2: true,
            ..config()
        },
    )
    .await;
    let url = format!("http://{}/token", running.local_addr());
    let client = http_client();
    let pk = current.public_key();
    for (auth, status) in [(v1(pk, LIVE), 401), (v2(pk, LIVE), 200)] {
        let got = client
            .get(&url)
            .header("authorization", format!("Bearer {auth}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status()
            .as_u16();
        assert_eq!(got, status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_accepts_old_and_new_keys() {
    let (current, other) = keys();
    let (_, running) = start(
        key_set(&[current, other]),
        directory(),
        tokens_identity(),
        config(),
    )
    .await;
    let url = format!("http://{}/token", running.local_addr());
    let client = http_client();
    for pk in [current.public_key(), other.public_key()] {
        let got = client
            .get(&url)
            .header("authorization", format!("Bearer {}", v2(pk, LIVE)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status()
            .as_u16();
        assert_eq!(got, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_identity_hands_out_the_provider_token_and_its_failure_is_500_and_expiry_is_passed_on()
 {
    let (current, _) = keys();
    let pk = current.public_key();
    let client = http_client();

    let (_, down) = start(
        key_set(&[current]),
        directory(),
        Identity::Platform(Arc::new(FixedProvider {
            token: None,
            expires_at: None,
        })),
        config(),
    )
    .await;
    let resp = client
        .get(format!("http://{}/token", down.local_addr()))
        .header("authorization", format!("Bearer {}", v2(pk, LIVE)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 500);
    // An unknown session is refused before the provider is asked.
    let resp = client
        .get(format!("http://{}/token", down.local_addr()))
        .header("authorization", format!("Bearer {}", v2(pk, UNKNOWN)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 403);

    let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
    let (_, oidc) = start(
        key_set(&[current]),
        directory(),
        Identity::Platform(Arc::new(FixedProvider {
            token: Some(API_TOKEN.into()),
            expires_at: Some(expiry),
        })),
        config(),
    )
    .await;
    let body: TokenResponse = client
        .get(format!("http://{}/token", oidc.local_addr()))
        .header("authorization", format!("Bearer {}", v1(pk, LIVE)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body.token.expose(), API_TOKEN);
    let at = body.expires_at.unwrap_or_default();
    assert_eq!(parse_rfc3339(&at), Some(expiry), "{at}");
    // The platform identity has no signing keys to publish.
    let jwks = client
        .get(format!(
            "http://{}/.well-known/jwks.json",
            oidc.local_addr()
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwks.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_directory_failure() {
    let (current, _) = keys();
    let dir = Arc::new(ToggleDirectory::default());
    let (_, running) = start(
        key_set(&[current]),
        dir.clone(),
        tokens_identity(),
        config(),
    )
    .await;
    let base = format!("http://{}", running.local_addr());
    let client = http_client();
    let get = |path: &'static str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let r = client
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_owned()));
    assert_eq!(get("/readyz").await.0, 503);
    dir.ready.store(true, Ordering::SeqCst);
    assert_eq!(get("/readyz").await.0, 200);
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "# TYPE ambient_token_server_requests counter",
        "ambient_token_server_requests_total{outcome=\"rate_limited\"} 0",
        "# TYPE ambient_token_server_decrypt_duration_seconds histogram",
        "# TYPE ambient_token_server_in_flight_requests gauge",
    ] {
        assert!(metrics.contains(name), "{name} not in\n{metrics}");
    }
    assert_eq!(get("/nope").await.0, 404);

    // The directory is down: fail closed with 503; up: 200.
    let url = format!("{base}/token");
    let pk = current.public_key();
    let send = |auth: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(url)
                .header("authorization", format!("Bearer {auth}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .status()
                .as_u16()
        }
    };
    assert_eq!(send(v2(pk, LIVE)).await, 503);
    dir.up.store(true, Ordering::SeqCst);
    assert_eq!(send(v2(pk, LIVE)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_is_431_and_a_body_is_never_needed() {
    let (current, _) = keys();
    let (_, running) = start(
        key_set(&[current]),
        directory(),
        tokens_identity(),
        config(),
    )
    .await;
    let addr = running.local_addr();
    for _ in 0..5 {
        assert_eq!(oversized(addr), 431);
    }
    // A header just under the limit is served.
    let client = http_client();
    let resp = client
        .get(format!("http://{addr}/healthz"))
        .header("x-filler", "y".repeat(7 * 1024))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    // A GET announcing a large body that never comes is answered anyway.
    let pk = current.public_key();
    let auth = v2(pk, LIVE);
    let status = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let req = format!(
            "GET /token HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {auth}\r\nContent-Length: 1000000\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        head.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
}
