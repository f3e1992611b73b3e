//! ambient-token-server against ambient-devserver, over real sockets: the
//! session check asks the devserver's gRPC `GetSession`, the OIDC provider
//! uses the devserver's `/oidc/token`, and the client is the shared
//! `TokenExchanger` every sidecar uses.

use std::time::{Duration, Instant, SystemTime};

use ambient_protocol::exchange::{encrypt_v1, encrypt_v2};
use ambient_protocol::exchanger::{ExchangeError, ExchangerConfig, TokenExchanger};
use ambient_protocol::keys::PublicKey;
use integration_tests::{Daemon, Spec, TempDir};
use serde_json::{Value, json};

const API_TOKEN: &str = "it-static-api-token-7c1d";
const OIDC_ID: &str = "control-plane";
const OIDC_SECRET: &str = "it-oidc-client-secret-42ab";

fn devserver(oidc: bool) -> Daemon {
    let mut spec = Spec::new("ambient-devserver")
        .args([
            "--in-memory",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("AMBIENT_DEVSERVER_TOKEN", API_TOKEN)
        .listener("grpc")
        .listener("http");
    if oidc {
        spec = spec
            .args(["--oidc-client-id", OIDC_ID])
            .env("AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET", OIDC_SECRET);
    }
    Daemon::start(spec)
}

/// Starts the token server with a freshly generated key; returns it and the
/// public key.
fn token_server(tmp: &TempDir, grpc: &str, provider_args: Vec<String>) -> (Daemon, PublicKey) {
    let key = tmp.path().join("token-key.pem");
    let key = key.to_string_lossy().into_owned();
    let daemon = Daemon::start(
        Spec::new("ambient-token-server")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--key-file",
                &key,
                "--generate-key",
                "--api-server-grpc",
                grpc,
                "--session-cache-ms",
                "500",
                "--log-level",
                "trace",
            ])
            .args(provider_args)
            .listener("token server"),
    );
    let pem = std::fs::read_to_string(&key).unwrap_or_else(|e| panic!("key file: {e}"));
    let public = ambient_protocol::keys::PrivateKey::from_pem(&pem)
        .unwrap_or_else(|e| panic!("key: {e}"))
        .public_key()
        .clone();
    (daemon, public)
}

fn exchanger(url: &str, key: &PublicKey, session_id: &str) -> TokenExchanger {
    let mut cfg = ExchangerConfig::new(url, key.clone(), session_id);
    // One attempt per fetch: the test looks at each answer.
    cfg.retry_waits = Vec::new();
    TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("exchanger: {e}"))
}

struct Rest {
    base: String,
    http: reqwest::Client,
}

impl Rest {
    fn new(dev: &Daemon) -> Rest {
        Rest {
            base: format!("http://{}/api/ambient/v1", dev.addr("http")),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_else(|e| panic!("client: {e}")),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(API_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn create_session(&self, name: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/sessions",
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, 201, "create session: {body}");
        body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {body}"))
            .to_owned()
    }
}

/// Stops the daemon with SIGTERM, waits for its last log line, and checks
/// that none of `secrets` appears anywhere in its complete output.
fn stop_and_check_logs(daemon: &mut Daemon, secrets: &[&str]) -> String {
    let exit = daemon.terminate(Duration::from_secs(15));
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "exit after SIGTERM");
    // The pipe readers finish shortly after the exit: wait for the last line.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon.logs().contains("token server stopped") {
        assert!(
            Instant::now() < deadline,
            "no final log line:\n{}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = daemon.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "not at full verbosity"
    );
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !logs.contains(secret),
            "a secret ({} bytes) is in the logs",
            secret.len()
        );
        assert!(
            !logs.contains(&secret[..secret.len().min(24)]),
            "a secret prefix is in the logs"
        );
    }
    logs
}

/// Sends a few exchanges with bearers the test keeps (accepted, replayed,
/// for an unknown session) so their ciphertexts can be looked for in the logs.
async fn exchanges_with_known_bearers(url: &str, key: &PublicKey, live: &str) -> Vec<String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let now = SystemTime::now();
    let bearers = vec![
        encrypt_v2(key, live, now).unwrap_or_else(|e| panic!("{e}")),
        encrypt_v2(key, "no-such-session-1111", now).unwrap_or_else(|e| panic!("{e}")),
        encrypt_v1(key, live).unwrap_or_else(|e| panic!("{e}")),
    ];
    let mut sent = Vec::new();
    for b in bearers.iter().chain([&bearers[0]]) {
        let status = http
            .get(url)
            .header("authorization", format!("Bearer {b}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status()
            .as_u16();
        sent.push(status);
    }
    assert_eq!(
        sent,
        vec![200, 403, 200, 401],
        "accepted, unknown, v1, replayed"
    );
    bearers
}

fn status_of(e: &ExchangeError) -> Option<u16> {
    match e {
        ExchangeError::Status { status, .. } => Some(*status),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_session_gets_a_token_and_loses_it_once_stopped() {
    let dev = devserver(false);
    let tmp = TempDir::new("token-server-it");
    let token_file = tmp.path().join("api-token");
    std::fs::write(&token_file, format!("{API_TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    let grpc = dev.addr("grpc").to_string();
    let (mut ts, public) = token_server(
        &tmp,
        &grpc,
        vec![
            "--api-token-file".into(),
            token_file.to_string_lossy().into_owned(),
        ],
    );
    let url = format!("http://{}/token", ts.addr("token server"));
    let rest = Rest::new(&dev);

    let id = rest.create_session("token-server-it").await;
    let (status, body) = rest
        .call(
            reqwest::Method::POST,
            &format!("/sessions/{id}/start"),
            None,
        )
        .await;
    assert_eq!((status, body["phase"].as_str()), (200, Some("Pending")));

    // A live (Pending) session gets the token.
    let client = exchanger(&url, &public, &id);
    let (token, expires_at) = client
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("live session refused: {e}\n{}", ts.logs()));
    assert_eq!(token.expose(), API_TOKEN);
    assert_eq!(expires_at, None);

    // A session the API server does not know is refused.
    let stranger = exchanger(&url, &public, "no-such-session-0000");
    let refused = stranger.fetch().await.err();
    assert_eq!(refused.as_ref().and_then(status_of), Some(403));

    let bearers = exchanges_with_known_bearers(&url, &public, &id).await;

    // Stopping is not terminal (wire.md §3): the session keeps its token.
    let (status, body) = rest
        .call(reqwest::Method::POST, &format!("/sessions/{id}/stop"), None)
        .await;
    assert_eq!((status, body["phase"].as_str()), (200, Some("Stopping")));
    let (token, _) = client
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("stopping session refused: {e}"));
    assert_eq!(token.expose(), API_TOKEN);
    // Stopped: the same client is refused (once the short cache lapses).
    let (status, _) = rest
        .call(
            reqwest::Method::PATCH,
            &format!("/sessions/{id}/status"),
            Some(json!({ "phase": "Stopped" })),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.fetch().await {
            Err(e) if status_of(&e) == Some(403) => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("stopped session still served: {other:?}"),
        }
    }

    let mut secrets = vec![API_TOKEN];
    secrets.extend(bearers.iter().map(String::as_str));
    let logs = stop_and_check_logs(&mut ts, &secrets);
    assert!(logs.contains(&id), "accepted session ID is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_mode_hands_out_the_devserver_issued_token_with_expiry() {
    let dev = devserver(true);
    let tmp = TempDir::new("token-server-oidc-it");
    let secret_file = tmp.path().join("oidc-secret");
    std::fs::write(&secret_file, format!("{OIDC_SECRET}\n")).unwrap_or_else(|e| panic!("{e}"));
    let grpc = dev.addr("grpc").to_string();
    let (mut ts, public) = token_server(
        &tmp,
        &grpc,
        vec![
            // The devserver's IdP speaks plain http on loopback.
            "--allow-insecure-oidc".into(),
            "--oidc-token-url".into(),
            format!("http://{}/oidc/token", dev.addr("http")),
            "--oidc-client-id".into(),
            OIDC_ID.into(),
            "--oidc-client-secret-file".into(),
            secret_file.to_string_lossy().into_owned(),
        ],
    );
    let url = format!("http://{}/token", ts.addr("token server"));
    let rest = Rest::new(&dev);
    let id = rest.create_session("token-server-oidc-it").await;

    // The session check itself authenticates to gRPC with the OIDC token.
    let client = exchanger(&url, &public, &id);
    let before = SystemTime::now();
    let (token, expires_at) = client
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("exchange failed: {e}\n{}", ts.logs()));
    assert_ne!(token.expose(), API_TOKEN);
    integration_tests::register_secret(token.expose());
    let expires_at = expires_at.unwrap_or_else(|| panic!("no expires_at"));
    assert!(expires_at > before, "expiry in the past");
    assert!(
        expires_at <= before + Duration::from_secs(301),
        "expiry beyond the devserver's 300 s lifetime"
    );

    // It is the devserver's token: the API accepts it.
    let resp = rest
        .http
        .get(format!("{}/sessions/{id}", rest.base))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);

    // Cached: the next exchange hands out the same token.
    let (again, _) = client.fetch().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.expose(), token.expose());

    let bearers = exchanges_with_known_bearers(&url, &public, &id).await;
    let mut secrets = vec![token.expose(), OIDC_SECRET, API_TOKEN];
    secrets.extend(bearers.iter().map(String::as_str));
    stop_and_check_logs(&mut ts, &secrets);
}
