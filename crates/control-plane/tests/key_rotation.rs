//! Rotation of the session tokens' signing keys across two replicas, with a
//! FAKE Kubernetes API (tests/support/fake_kube — not a cluster) and a
//! rotation period of seconds.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use integration_tests::{Daemon, TempDir};
use support::exchange::*;
use support::*;

/// The signing-key index of the keypair Secret.
fn signing_index(kube: &FakeKube) -> serde_json::Value {
    let secret = kube
        .get("secrets", "ambient-code", "ambient-cp-token-keypair")
        .unwrap_or_default();
    let raw = secret["data"]["session-signing.json"]
        .as_str()
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// The kids of the JWKS a replica's token server publishes.
async fn jwks_kids(cp: &Daemon) -> HashSet<String> {
    let url = format!("http://{}/.well-known/jwks.json", cp.addr("token server"));
    let jwks: serde_json::Value = match reqwest::get(url).await {
        Ok(resp) => resp.json().await.unwrap_or_default(),
        Err(_) => return HashSet::new(),
    };
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

/// The `kid` of a token exchanged at `cp` for `session` (None: refused).
async fn signing_kid(
    cp: &Daemon,
    key: &ambient_protocol::keys::PublicKey,
    id: &str,
) -> Option<(String, String)> {
    let (code, body) = exchange(cp.addr("token server"), key, id).await;
    let token = body["token"].as_str().filter(|_| code == 200)?.to_owned();
    let kid = header(&token)["kid"].as_str()?.to_owned();
    Some((kid, token))
}

/// The session gateway's address, from the replica's log.
fn gateway_addr(cp: &Daemon) -> SocketAddr {
    cp.logs()
        .lines()
        .find_map(|l| l.split_once("session gateway listening on "))
        .and_then(|(_, addr)| addr.trim().parse().ok())
        .unwrap_or_else(|| panic!("no session gateway address in:\n{}", cp.logs()))
}

/// The status the gateway answers `token` with for the session's own object.
async fn gateway_status(cp: &Daemon, token: &str, id: &str) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "http://{}/api/ambient/v1/sessions/{id}",
            gateway_addr(cp)
        ))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_published_before_they_sign_and_retired_keys_verify_until_expiry() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-rotation");
    // A step every 10 s; every replica reads the Secret every second.
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("CP_SESSION_KEY_ROTATION_SECONDS", "20"),
        ("CP_SESSION_KEY_RELOAD_SECONDS", "1"),
    ];
    let a = control_plane_with(&dev, &kube, &dir, "cp-a", true, &env);
    let b = control_plane_with(&dev, &kube, &dir, "cp-b", true, &env);
    let ns = &dev.project("proj-rot").await;
    let id = dev.new_session(ns, "rotation").await;
    wait_phase(&dev, &id, "Creating").await;
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    let key = published_key(&kube);

    eventually("a session token", Duration::from_secs(30), || async {
        signing_kid(&a, &key, &id).await.is_some()
    })
    .await;
    let (old_kid, old_token) = signing_kid(&a, &key, &id).await.unwrap_or_default();

    // Until both replicas sign with a new key: a kid that signs must have
    // been seen as `next` in the Secret and in both replicas' JWKS first.
    let mut published: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let new_kid = loop {
        assert!(
            Instant::now() < deadline,
            "the replicas never switched keys"
        );
        if let Some(next) = signing_index(&kube)["next"].as_str()
            && jwks_kids(&a).await.contains(next)
            && jwks_kids(&b).await.contains(next)
        {
            published.insert(next.to_owned());
        }
        let mut kids = Vec::new();
        for cp in [&a, &b] {
            if let Some((kid, _)) = signing_kid(cp, &key, &id).await {
                assert!(
                    kid == old_kid || published.contains(&kid),
                    "a token was signed with {kid} before the key was published everywhere"
                );
                kids.push(kid);
            }
        }
        if kids.len() == 2 && kids[0] == kids[1] && kids[0] != old_kid {
            break kids[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The Secret says so, and keeps the old key until its tokens expire.
    let index = signing_index(&kube);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    assert_eq!(index["current"], new_kid.as_str(), "{index}");
    let retired = index["retired"].as_array().cloned().unwrap_or_default();
    let old_entry = retired
        .iter()
        .find(|r| r["kid"] == old_kid.as_str())
        .unwrap_or_else(|| panic!("the old key is not retired: {index}"));
    let exp = claims(&old_token)["exp"].as_u64().unwrap_or_default();
    assert!(
        old_entry["until"].as_u64().unwrap_or_default() > exp,
        "the old key is retired before its token expires: {index}"
    );
    assert!(exp > now, "the old token has expired already");
    for cp in [&a, &b] {
        assert!(
            jwks_kids(cp).await.contains(&old_kid),
            "old key unpublished"
        );
        assert!(
            jwks_kids(cp).await.contains(&new_kid),
            "new key unpublished"
        );
        // The gateway still takes the old key's token; not a made-up one.
        assert_eq!(gateway_status(cp, &old_token, &id).await, 200);
        let forged = format!("{}x", old_token);
        assert_eq!(gateway_status(cp, &forged, &id).await, 401);
    }
    let logs = a.logs() + &b.logs();
    assert!(
        logs.contains("published the next session signing key")
            && logs.contains("rotated the session signing key"),
        "{logs}"
    );
}
