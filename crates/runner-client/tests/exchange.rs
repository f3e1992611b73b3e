//! The exchange path against the real ambient-devserver and
//! ambient-token-server: the token server hands out OIDC tokens the
//! devserver issued; restarting the devserver forgets them (revokes every
//! token in use), and the runner client refreshes and carries on.

mod support;

use std::time::Duration;

use ambient_protocol::exchange::Protocol;
use ambient_protocol::keys::{PrivateKey, PublicKey};
use ambient_runner_client::config::TokenConfig;
use ambient_runner_client::{Api, CallError, PushError, SessionMessages, TokenSource};
use futures::StreamExt as _;
use integration_tests::{Daemon, Spec, TempDir};
use support::*;

const OIDC_ID: &str = "control-plane";
const OIDC_SECRET: &str = "runner-client-oidc-secret-77aa";
/// Long enough that neither expiry nor the client's scheduled refresh (every
/// 5 min) can stand in for the refresh after `UNAUTHENTICATED` under test.
const OIDC_TTL: &str = "3600";

fn token_server(tmp: &TempDir, dev: &DevServer) -> (Daemon, PublicKey) {
    let key = tmp.path().join("token-key.pem");
    let secret = tmp.path().join("oidc-secret");
    std::fs::write(&secret, OIDC_SECRET).unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(
        Spec::new("ambient-token-server")
            .args(["--listen", "127.0.0.1:0", "--generate-key", "--key-file"])
            .arg(key.display().to_string())
            .args([
                "--oidc-token-url".to_owned(),
                format!("http://{}/oidc/token", dev.http()),
            ])
            // The devserver's OIDC endpoint is plain http on loopback.
            .arg("--allow-insecure-oidc")
            .args(["--oidc-client-id", OIDC_ID, "--oidc-client-secret-file"])
            .arg(secret.display().to_string())
            .args(["--api-server-grpc".to_owned(), dev.grpc()])
            // No answer cache: every exchange asks the devserver, so the
            // token server notices the revocation and fetches a new OIDC token.
            .args(["--session-cache-ms", "0"])
            // This test is about the client refreshing a revoked platform
            // token; session tokens and the gateway are tested elsewhere.
            .args(["--session-identity", "platform"])
            .listener("token server"),
    );
    let pem = std::fs::read_to_string(&key).unwrap_or_else(|e| panic!("key: {e}"));
    let public = PrivateKey::from_pem(&pem)
        .unwrap_or_else(|e| panic!("key: {e}"))
        .public_key()
        .clone();
    (daemon, public)
}

fn exchange_source(url: &str, key: &PublicKey, session: &str) -> TokenSource {
    TokenSource::from_config(&TokenConfig::Exchange {
        url: url.to_owned(),
        public_key: key.clone(),
        session_id: session.to_owned(),
        protocol: Protocol::V2,
        session_key_file: None,
    })
    .unwrap_or_else(|e| panic!("token source: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_token_mid_watch_is_refreshed_and_the_watch_continues() {
    let mut dev = tokio::task::block_in_place(|| {
        DevServer::start_with_env(
            &["--oidc-client-id", OIDC_ID, "--oidc-token-ttl", OIDC_TTL],
            &[("AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET", OIDC_SECRET)],
        )
    });
    let tmp = TempDir::new("rc-exchange");
    let (ts, public) = tokio::task::block_in_place(|| token_server(&tmp, &dev));
    let token_url = format!("http://{}/token", ts.addr("token server"));
    let admin = api(&dev.grpc(), TOKEN);
    let id = new_session(&admin, "exchange").await;

    // The CLI's `token` prints an exchanged token the API accepts.
    let out = run_client(
        &["token"],
        &[
            ("AMBIENT_CP_TOKEN_URL", token_url.as_str()),
            ("AMBIENT_CP_TOKEN_PUBLIC_KEY", public.to_pem().as_str()),
            ("SESSION_ID", id.as_str()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = json_lines(&String::from_utf8_lossy(&out.stdout)).remove(0);
    assert_eq!(line["source"], "exchange");
    assert!(line["expires_at"].is_string(), "{line}");
    let printed = line["token"].as_str().unwrap_or_default().to_owned();
    SessionMessages::new(api(&dev.grpc(), &printed), &id)
        .push("assistant", "with the printed token")
        .await
        .unwrap_or_else(|e| panic!("the printed token works: {e}"));

    // A watching runner and a pushing runner, each with its own exchange.
    let watch_tokens = exchange_source(&token_url, &public, &id);
    let first = watch_tokens.start().await.unwrap_or_else(|e| panic!("{e}"));
    let watch_api =
        Api::new(&dev.grpc(), false, None, watch_tokens.clone()).unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn({
        let stream = SessionMessages::new(watch_api, &id).watch(0);
        async move {
            let mut stream = Box::pin(stream);
            while let Some(item) = stream.next().await {
                if tx.send(item).is_err() {
                    return;
                }
            }
        }
    });
    let push_tokens = exchange_source(&token_url, &public, &id);
    let pusher_first = push_tokens.token().await.unwrap_or_else(|e| panic!("{e}"));
    let pusher = SessionMessages::new(
        Api::new(&dev.grpc(), false, None, push_tokens.clone()).unwrap_or_else(|e| panic!("{e}")),
        &id,
    );
    let mut expected = vec!["with the printed token".to_owned()];
    for i in 0..3 {
        let p = format!("before-{i}");
        pusher
            .push("assistant", p.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        expected.push(p);
    }
    let mut got = receive(&mut rx, expected.len()).await;

    // Revoke: the restarted devserver knows none of the tokens it issued.
    tokio::task::block_in_place(|| dev.restart(true));
    let stale = SessionMessages::new(api(&dev.grpc(), first.value.expose()), &id);
    match stale.push("assistant", "with a revoked token").await {
        Err(PushError::Call(e @ CallError::Rejected(_))) => {
            assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}")
        }
        other => panic!("the old token must be refused: {other:?}"),
    }

    // The pusher's next push meets UNAUTHENTICATED, refreshes, retries once.
    for i in 0..3 {
        let p = format!("after-{i}");
        pusher
            .push("assistant", p.clone())
            .await
            .unwrap_or_else(|e| panic!("push after revocation: {e}"));
        expected.push(p);
    }
    let pusher_now = push_tokens.token().await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(pusher_now.value, pusher_first.value, "the pusher refreshed");

    got.extend(receive(&mut rx, expected.len() - got.len()).await);
    let payloads: Vec<String> = got.iter().map(|m| m.1.clone()).collect();
    assert_eq!(payloads, expected, "every message once, in order");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    let now = watch_tokens.token().await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(now.value, first.value, "the watcher refreshed");
    watcher.abort();
    watch_tokens.stop().await;
    drop(ts);
}

async fn receive(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<
        Result<ambient_protocol::v1::SessionMessage, ambient_runner_client::WatchError>,
    >,
    n: usize,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(Ok(m))) => out.push((m.seq, m.payload)),
            other => panic!("watch: {other:?} after {out:?}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn token_url_without_key_or_session_is_a_clear_config_error() {
    let out = run_client(
        &["token"],
        &[("AMBIENT_CP_TOKEN_URL", "http://127.0.0.1:1/token")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("AMBIENT_CP_TOKEN_PUBLIC_KEY"), "{err}");

    let key = PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let pem = key.public_key().to_pem();
    let out = run_client(
        &["token"],
        &[
            ("AMBIENT_CP_TOKEN_URL", "http://127.0.0.1:1/token"),
            ("AMBIENT_CP_TOKEN_PUBLIC_KEY", pem.as_str()),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SESSION_ID"), "{err}");
}
