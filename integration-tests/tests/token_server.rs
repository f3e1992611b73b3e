//! ambient-token-server against ambient-devserver, over real sockets: the
//! session check asks the devserver's gRPC `GetSession`, the OIDC provider
//! uses the devserver's `/oidc/token`, and the client is the shared
//! `TokenExchanger` every sidecar uses. By default a session gets a session
//! token (a JWT naming it and its project, signed with the server's signing
//! key); `--session-identity platform` hands out the server's own token.

use std::time::{Duration, Instant, SystemTime};

use ambient_protocol::exchange::{encrypt_v1, encrypt_v2};
use ambient_protocol::exchanger::{ExchangeError, ExchangerConfig, TokenExchanger};
use ambient_protocol::keys::PublicKey;
use ambient_session_gateway::token::MAX_LIFETIME;
use ambient_session_gateway::{KeyRing, SessionTokens, SigningKey};
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

/// The signing key file of [`token_server`] in `tmp`.
fn signing_key_file(tmp: &TempDir) -> std::path::PathBuf {
    tmp.path().join("signing-key.pem")
}

/// Session tokens: a fresh signing key in `tmp` (see [`signing_key_file`]).
fn session_token_args(tmp: &TempDir) -> Vec<String> {
    vec![
        "--signing-key-file".into(),
        signing_key_file(tmp).to_string_lossy().into_owned(),
        "--generate-signing-key".into(),
    ]
}

/// A verifier of the session tokens signed with the key of `tmp`.
fn verifier(tmp: &TempDir) -> SessionTokens {
    let pem = std::fs::read_to_string(signing_key_file(tmp)).unwrap_or_else(|e| panic!("{e}"));
    let key = SigningKey::from_pem(&pem).unwrap_or_else(|e| panic!("signing key: {e}"));
    SessionTokens::new(KeyRing::new(key), MAX_LIFETIME).unwrap_or_else(|e| panic!("{e}"))
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

    /// Creates session `name` in `project` (created first when new): a
    /// session token names its project, so a project-less session gets none.
    async fn create_session(&self, project: &str, name: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/projects",
                Some(json!({ "name": project })),
            )
            .await;
        assert!(status == 201 || status == 409, "create project: {body}");
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/sessions",
                Some(json!({ "name": name, "project_id": project })),
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
    let mut args = session_token_args(&tmp);
    args.extend([
        "--api-token-file".into(),
        token_file.to_string_lossy().into_owned(),
    ]);
    let (mut ts, public) = token_server(&tmp, &grpc, args);
    let url = format!("http://{}/token", ts.addr("token server"));
    let rest = Rest::new(&dev);
    let verifier = verifier(&tmp);

    let id = rest.create_session("alpha", "token-server-it").await;
    let (status, body) = rest
        .call(
            reqwest::Method::POST,
            &format!("/sessions/{id}/start"),
            None,
        )
        .await;
    assert_eq!((status, body["phase"].as_str()), (200, Some("Pending")));

    // A live (Pending) session gets a session token: signed with the
    // signing key, naming the session and its project, expiring within the
    // session-token lifetime; never the server's own token.
    let client = exchanger(&url, &public, &id);
    let before = SystemTime::now();
    let (token, expires_at) = client
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("live session refused: {e}\n{}", ts.logs()));
    assert_ne!(token.expose(), API_TOKEN);
    integration_tests::register_secret(token.expose());
    let claims = verifier
        .verify_at(token.expose(), SystemTime::now())
        .unwrap_or_else(|e| panic!("not a session token of the signing key: {e:?}"));
    assert_eq!(
        (claims.session_id.as_str(), claims.project.as_str()),
        (id.as_str(), "alpha")
    );
    let expires_at = expires_at.unwrap_or_else(|| panic!("a session token without expires_at"));
    assert!(expires_at > before && expires_at <= before + MAX_LIFETIME + Duration::from_secs(1));

    // A session without a project gets no token (none could confine it).
    let (status, body) = rest
        .call(
            reqwest::Method::POST,
            "/sessions",
            Some(json!({ "name": "loose" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let loose = exchanger(&url, &public, body["id"].as_str().unwrap_or_default());
    assert_eq!(
        loose.fetch().await.err().as_ref().and_then(status_of),
        Some(403)
    );

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
    let (again, _) = client
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("stopping session refused: {e}"));
    assert_eq!(
        verifier
            .verify_at(again.expose(), SystemTime::now())
            .map(|c| c.session_id),
        Ok(id.clone())
    );
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

    let mut secrets = vec![API_TOKEN, token.expose()];
    secrets.extend(bearers.iter().map(String::as_str));
    let logs = stop_and_check_logs(&mut ts, &secrets);
    assert!(logs.contains(&id), "accepted session ID is logged");
}

/// `--session-identity platform` with an OIDC provider: the session gets
/// this server's own (devserver-issued, expiring) token, as the reference's
/// control plane hands out.
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
            "--session-identity".into(),
            "platform".into(),
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
    let id = rest.create_session("alpha", "token-server-oidc-it").await;

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

/// The standalone session gateway (`--gateway-listen`): a session token from
/// this server reaches its own session and the credentials granted to it,
/// and nothing of another project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_confines_a_session_token_to_its_session() {
    let dev = devserver(false);
    let tmp = TempDir::new("token-server-gateway-it");
    let token_file = tmp.path().join("api-token");
    std::fs::write(&token_file, format!("{API_TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    let grpc = dev.addr("grpc").to_string();
    let mut args = session_token_args(&tmp);
    args.extend([
        "--api-token-file".into(),
        token_file.to_string_lossy().into_owned(),
        "--gateway-listen".into(),
        "127.0.0.1:0".into(),
        "--api-server-url".into(),
        format!("http://{}", dev.addr("http")),
    ]);
    let key = tmp.path().join("token-key.pem");
    let mut ts = Daemon::start(
        Spec::new("ambient-token-server")
            .args(["--listen", "127.0.0.1:0", "--generate-key", "--key-file"])
            .arg(key.to_string_lossy())
            .args(["--api-server-grpc", &grpc, "--log-level", "trace"])
            .args(args)
            .listener("token server")
            .listener("session gateway"),
    );
    let public = ambient_protocol::keys::PrivateKey::from_pem(
        &std::fs::read_to_string(&key).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .public_key()
    .clone();
    let rest = Rest::new(&dev);
    let own = rest.create_session("alpha", "own").await;
    let other = rest.create_session("beta", "other").await;
    let granted = credential(&rest, "granted").await;
    let not_granted = credential(&rest, "not-granted").await;
    let (status, body) = rest
        .call(
            reqwest::Method::POST,
            "/role_bindings",
            Some(json!({
                "role_id": "credential:token-reader",
                "scope": "credential",
                "credential_id": granted,
                "user_id": "standalone-it",
                "session_id": own,
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let url = format!("http://{}/token", ts.addr("token server"));
    let (token, _) = exchanger(&url, &public, &own)
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("exchange refused: {e}\n{}", ts.logs()));
    integration_tests::register_secret(token.expose());
    let gateway = format!("http://{}/api/ambient/v1", ts.addr("session gateway"));
    let get = |path: String| {
        let (http, token) = (rest.http.clone(), token.expose().to_owned());
        let url = format!("{gateway}{path}");
        async move {
            let resp = http.get(url).bearer_auth(token).send().await;
            let resp = resp.unwrap_or_else(|e| panic!("{path}: {e}"));
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Its own session, through the gateway (the exchange told it the facts).
    let (status, body) = get(format!("/sessions/{own}")).await;
    assert_eq!(
        (status, body["id"].as_str()),
        (200, Some(own.as_str())),
        "{body}"
    );
    // Another project's session: refused, named in the log with the route.
    let (status, body) = get(format!("/sessions/{other}")).await;
    assert_eq!(status, 403, "{body}");
    // Nor another project, and the project list holds its own only.
    let (status, _) = get("/projects/beta".into()).await;
    assert_eq!(status, 403);
    let (status, body) = get("/projects".into()).await;
    let names: Vec<&str> = body["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!((status, names), (200, vec!["alpha"]), "{body}");

    // The credential granted to it (read in the background): its token;
    // another one: refused.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(format!("/credentials/{granted}/token")).await;
        if status == 200 {
            assert_eq!(body["token"].as_str(), Some("tok-granted"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "granted credential refused: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = get(format!("/credentials/{not_granted}/token")).await;
    assert_eq!(status, 403);

    // The server's own token is not a session token: the gateway refuses it.
    let resp = rest
        .http
        .get(format!("{gateway}/sessions/{own}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 401);

    // The session ends: the gateway learns it in the background and refuses
    // its token (401: it no longer proves a live session).
    let (status, _) = rest
        .call(
            reqwest::Method::PATCH,
            &format!("/sessions/{own}/status"),
            Some(json!({ "phase": "Stopped" })),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match get(format!("/sessions/{own}")).await {
            (401, _) => break,
            (200, _) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("an ended session's token still served: {other:?}"),
        }
    }

    let logs = stop_and_check_logs(&mut ts, &[API_TOKEN, token.expose(), "tok-granted"]);
    assert!(logs.contains("session gateway"), "{logs}");
}

/// Creates a credential whose token is `tok-<name>`; its ID.
async fn credential(rest: &Rest, name: &str) -> String {
    let (status, body) = rest
        .call(
            reqwest::Method::POST,
            "/credentials",
            Some(json!({"name": name, "provider": "github", "token": format!("tok-{name}")})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap_or_default().to_owned()
}
