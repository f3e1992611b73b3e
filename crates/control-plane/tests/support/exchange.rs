//! The token exchange, seen from a session pod: the keypair Secret's
//! public key, the exchange, and the session token it hands out.

use std::time::SystemTime;

use ambient_protocol::exchange::{encrypt_v1, encrypt_v2};
use ambient_protocol::keys::PublicKey;
use base64::Engine as _;

use super::{FakeKube, pod_name};

/// The token-exchange public key of the keypair Secret.
pub fn published_key(kube: &FakeKube) -> PublicKey {
    let secret = kube
        .get("secrets", "ambient-code", "ambient-cp-token-keypair")
        .unwrap_or_else(|| panic!("no keypair Secret"));
    let b64 = secret["data"]["public.pem"].as_str().unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("{e}"));
    PublicKey::from_pem(&String::from_utf8_lossy(&pem)).unwrap_or_else(|e| panic!("{e}"))
}

/// Exchanges a v2 bearer for `session` at the token server `addr`.
pub async fn exchange(
    addr: std::net::SocketAddr,
    key: &PublicKey,
    session: &str,
) -> (u16, serde_json::Value) {
    let bearer = encrypt_v2(key, session, SystemTime::now()).unwrap_or_else(|e| panic!("{e}"));
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/token"))
        .header("authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// The claims of a JWT, unverified (the gateway's tests verify them).
pub fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// Makes the session's pod Running at `ip` (the kubelet's part).
pub fn run_pod_at(kube: &FakeKube, ns: &str, session: &str, ip: &str) {
    let status = serde_json::json!({
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "containerStatuses": [{
            "name": "ambient-code-runner", "ready": true, "restartCount": 0,
            "image": "runner", "imageID": "", "state": {"running": {}}
        }]
    });
    assert!(
        kube.set_pod_status(ns, &pod_name(session), status),
        "no pod for {session}"
    );
}

/// The header of a JWT, unverified.
pub fn header(token: &str) -> serde_json::Value {
    let raw = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// [`exchange`] with the v1 plaintext (a bare session ID).
pub async fn exchange_v1(
    addr: std::net::SocketAddr,
    key: &PublicKey,
    session: &str,
) -> (u16, serde_json::Value) {
    let bearer = encrypt_v1(key, session).unwrap_or_else(|e| panic!("{e}"));
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/token"))
        .header("authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}
