//! Leader election and the embedded token server, over real sockets, with a
//! FAKE Kubernetes API (tests/support/fake_kube.rs — not a cluster).

mod support;

use std::time::Duration;

use ambient_protocol::keys::PublicKey;
use integration_tests::TempDir;
use reqwest::Method;
use support::exchange::*;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn embedded_token_server_knows_the_informers_sessions() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-tokens");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let key = published_key(&kube);
    let token_addr = cp.addr("token server");

    let ns = &dev.project("proj-t").await;
    let id = dev.new_session(ns, "tokens").await;
    wait_phase(&dev, &id, "Creating").await;
    // Bound to the caller's pod: not running yet, then at another address,
    // refused; from the pod's own address, a session token for it.
    let (code, body) = exchange(token_addr, &key, &id).await;
    assert_eq!(code, 403, "a pod that is not running got a token: {body}");
    run_pod_at(&kube, ns, &id, "10.1.2.3");
    wait_phase(&dev, &id, "Running").await;
    let (code, body) = exchange(token_addr, &key, &id).await;
    assert_eq!(
        code, 403,
        "a caller that is not the pod got a token: {body}"
    );
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    let (code, body) = exchange(token_addr, &key, &id).await;
    assert_eq!(code, 200, "{body}");
    let token = body["token"].as_str().unwrap_or_default();
    assert_ne!(
        token, TOKEN,
        "the exchange handed out the control plane's token"
    );
    let claims = claims(token);
    assert_eq!(claims["sid"], id.as_str(), "{claims}");
    assert_eq!(claims["project"], ns.as_str(), "{claims}");
    assert_eq!(claims["sub"], format!("ambient-session-{id}"), "{claims}");
    let pod = kube.get("pods", ns, &pod_name(&id)).unwrap_or_default();
    // The pod's generation: the control plane's name for it, picked when it
    // created the pod (its session key file is derived for it).
    let generation = &pod["metadata"]["annotations"]["ambient-code.io/generation"];
    assert!(generation.is_string(), "{pod}");
    assert_eq!(&claims["gen"], generation, "{claims}");
    // v1 too, by default (reference runners and sidecars speak it).
    let (code, body) = exchange_v1(token_addr, &key, &id).await;
    assert_eq!(code, 200, "{body}");

    let (code, _) = exchange(token_addr, &key, "no-such-session-0001").await;
    assert_eq!(code, 403);

    // Stopped sessions lose their token.
    let (code, _) = dev
        .call(Method::POST, &format!("/sessions/{id}/stop"), None)
        .await;
    assert_eq!(code, 200);
    wait_phase(&dev, &id, "Stopped").await;
    let (code, _) = exchange(token_addr, &key, &id).await;
    assert_eq!(code, 403);

    // The published key reaches the pods, and the MCP sidecar is configured.
    let id2 = dev.new_session(ns, "with-mcp").await;
    wait_phase(&dev, &id2, "Creating").await;
    let pod = kube.get("pods", ns, &pod_name(&id2)).unwrap_or_default();
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(containers.iter().any(|c| c["name"] == "ambient-mcp"));
    let runner_env = containers[0]["env"].as_array().cloned().unwrap_or_default();
    let pem = runner_env
        .iter()
        .find(|e| e["name"] == "AMBIENT_CP_TOKEN_PUBLIC_KEY")
        .and_then(|e| e["value"].as_str())
        .unwrap_or_default();
    assert_eq!(PublicKey::from_pem(pem).ok(), Some(key));
    assert!(!cp.logs().contains(TOKEN), "the API token reached the logs");
}

/// The fault table's "keeps serving tokens while the API server is down":
/// with the API server gone (and the control plane's informer failing to
/// relist, as its log says), a running session's pod still exchanges its
/// bearer for a token, from the informer's cache; an unknown session is
/// still refused.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_served_while_the_api_server_is_down() {
    let kube = FakeKube::start().await;
    let mut dev = DevServer::start();
    let dir = TempDir::new("cp-tokens-outage");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let key = published_key(&kube);
    let token_addr = cp.addr("token server");

    let ns = &dev.project("proj-outage").await;
    let id = dev.new_session(ns, "outage").await;
    wait_phase(&dev, &id, "Creating").await;
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    wait_phase(&dev, &id, "Running").await;
    let (code, body) = exchange(token_addr, &key, &id).await;
    assert_eq!(code, 200, "before the outage: {body}");

    let failures = |logs: &str| logs.matches("list/watch failed").count();
    let before = failures(&cp.logs());
    dev.daemon.kill();
    // The control plane's own signal that it is cut off: its informers
    // report failed relists.
    eventually(
        "the informer reports the API server down",
        Duration::from_secs(30),
        || async { failures(&cp.logs()) > before },
    )
    .await;
    let (code, body) = exchange(token_addr, &key, &id).await;
    assert_eq!(code, 200, "during the outage: {body}");
    assert_eq!(
        claims(body["token"].as_str().unwrap_or_default())["sid"],
        id.as_str()
    );
    let (code, _) = exchange(token_addr, &key, "no-such-session-0002").await;
    assert_eq!(
        code, 403,
        "an unknown session got a token during the outage"
    );
    let health = format!("http://{}/healthz", cp.addr("health"));
    let up = reqwest::get(&health)
        .await
        .map(|r| r.status().as_u16())
        .ok();
    assert_eq!(
        up,
        Some(200),
        "the control plane's health during the outage"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_token_require_v2_the_embedded_token_server_refuses_v1() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-require-v2");
    let auth = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("CP_TOKEN_REQUIRE_V2", "true"),
    ];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-v2", false, &auth);
    let key = published_key(&kube);
    let token_addr = cp.addr("token server");

    let ns = &dev.project("proj-v2").await;
    let id = dev.new_session(ns, "v2-only").await;
    wait_phase(&dev, &id, "Creating").await;
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    let (code, body) = exchange_v1(token_addr, &key, &id).await;
    assert_eq!(code, 401, "v1 accepted: {body}");
    let (code, body) = exchange(token_addr, &key, &id).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        claims(body["token"].as_str().unwrap_or_default())["sid"],
        id.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_one_key_and_only_the_leader_reconciles() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-ha");
    let a = control_plane(&dev, &kube, &dir, "cp-a", true);
    let b = control_plane(&dev, &kube, &dir, "cp-b", true);

    // Both serve tokens with the one keypair in the Secret, signed with the
    // one signing key (a follower reads the pod from the API).
    let ns = &dev.project("proj-ha").await;
    let id = dev.new_session(ns, "ha").await;
    wait_phase(&dev, &id, "Creating").await;
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    let key = published_key(&kube);
    let mut kids = Vec::new();
    for cp in [&a, &b] {
        let addr = cp.addr("token server");
        eventually(
            "both replicas know the session",
            Duration::from_secs(10),
            || async { exchange(addr, &key, &id).await.0 == 200 },
        )
        .await;
        let (_, body) = exchange(addr, &key, &id).await;
        let token = body["token"].as_str().unwrap_or_default().to_owned();
        kids.push(header(&token)["kid"].clone());
    }
    assert_eq!(kids[0], kids[1], "the replicas sign with different keys");
    assert!(kids[0].is_string(), "{kids:?}");

    // Exactly one leads.
    let leading = |logs: &str| logs.contains("leading: starting reconcile workers");
    eventually("one leader", Duration::from_secs(10), || async {
        leading(&a.logs()) || leading(&b.logs())
    })
    .await;
    // A whole term with both running: the leader renews the Lease (its
    // own signal that it still holds it), and only then is "the other does
    // not lead" meaningful.
    let renew_time = |kube: &FakeKube| {
        kube.get("leases", "ambient-code", "ambient-control-plane")
            .map(|l| l["spec"]["renewTime"].clone())
    };
    let first = renew_time(&kube);
    eventually("the leader renews", Duration::from_secs(30), || async {
        renew_time(&kube) != first
    })
    .await;
    assert!(
        leading(&a.logs()) != leading(&b.logs()),
        "exactly one replica reconciles"
    );
    let (mut leader, mut follower) = if leading(&a.logs()) { (a, b) } else { (b, a) };
    let holder = kube
        .get("leases", "ambient-code", "ambient-control-plane")
        .unwrap_or_default();
    assert!(holder["spec"]["holderIdentity"].is_string(), "{holder}");

    // The leader dies without releasing the Lease: the follower takes over
    // once it expires, and reconciles.
    leader.kill();
    let id2 = dev.new_session(ns, "after-failover").await;
    eventually("the follower leads", Duration::from_secs(45), || async {
        leading(&follower.logs())
    })
    .await;
    wait_phase(&dev, &id2, "Creating").await;

    // SIGTERM: exit 0, and the Lease is released rather than left to expire.
    let status = follower.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let lease = kube
        .get("leases", "ambient-code", "ambient-control-plane")
        .unwrap_or_default();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "lease not released: {lease}"
    );
}

/// A session can write its own `kube_namespace` through the API; where its
/// pod is looked for must not follow it (a look-alike pod in a namespace a
/// tenant controls would otherwise get the session's tokens).
#[tokio::test(flavor = "multi_thread")]
async fn the_exchange_looks_for_the_pod_where_the_project_puts_it_not_where_the_session_says() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-spoofed-ns");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let key = published_key(&kube);
    let token_addr = cp.addr("token server");

    let ns = &dev.project("proj-ns").await;
    let id = dev.new_session(ns, "spoof").await;
    wait_phase(&dev, &id, "Creating").await;
    // The session's own pod is not running; a look-alike with our labels
    // runs at the caller's address in someone else's namespace, and the
    // session names that namespace as its own.
    let mut pod = kube.get("pods", ns, &pod_name(&id)).unwrap_or_default();
    pod["metadata"]["namespace"] = "someone-else".into();
    pod["metadata"]["uid"] = "look-alike".into();
    pod["status"] = serde_json::json!({"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]});
    kube.put("pods", "someone-else", pod);
    let (code, body) = dev
        .call(
            Method::PATCH,
            &format!("/sessions/{id}/status"),
            Some(serde_json::json!({"kube_namespace": "someone-else"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    eventually(
        "the informer sees the new kube_namespace",
        Duration::from_secs(10),
        || async {
            let (_, s) = dev
                .call(Method::GET, &format!("/sessions/{id}"), None)
                .await;
            s["kube_namespace"] == "someone-else"
        },
    )
    .await;
    let (code, body) = exchange(token_addr, &key, &id).await;
    assert_eq!(
        code, 403,
        "the look-alike pod got the session's token: {body}"
    );
    // Its own pod, once running at that address, does.
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    let (code, body) = exchange(token_addr, &key, &id).await;
    assert_eq!(code, 200, "{body}");
}

/// A hand-over that releases: the leader stops (SIGTERM releases the Lease
/// with a strategic patch of nulls) and the follower, once the term it saw
/// ends, acquires the free Lease by server-side apply with no conflict. On
/// the old fake, which kept the releasing manager as the owner of the
/// fields its patch removed, every apply of the follower got a 409 a real
/// API server does not send, and it never led (seen failing).
#[tokio::test(flavor = "multi_thread")]
async fn a_released_lease_is_taken_over_without_a_conflict() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-handover");
    let a = control_plane(&dev, &kube, &dir, "cp-a", true);
    let b = control_plane(&dev, &kube, &dir, "cp-b", true);
    let leading = |logs: &str| logs.contains("leading: starting reconcile workers");
    eventually("one leader", Duration::from_secs(20), || async {
        leading(&a.logs()) || leading(&b.logs())
    })
    .await;
    let (mut leader, follower, follower_id) = if leading(&a.logs()) {
        (a, b, "cp-b")
    } else {
        (b, a, "cp-a")
    };
    let holder = |kube: &FakeKube| {
        kube.get("leases", "ambient-code", "ambient-control-plane")
            .map(|l| l["spec"]["holderIdentity"].clone())
            .unwrap_or_default()
    };
    let conflicts = |kube: &FakeKube| {
        kube.requests()
            .iter()
            .filter(|r| r.plural == "leases" && r.status == 409)
            .count()
    };
    let before = conflicts(&kube);
    let status = leader.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    // Released, not left to expire: no holder until the follower applies.
    let now = holder(&kube);
    assert!(now.is_null() || now == follower_id, "{now:?}");
    eventually("the follower leads", Duration::from_secs(30), || async {
        leading(&follower.logs())
    })
    .await;
    eventually(
        "the follower holds the Lease",
        Duration::from_secs(10),
        || async { holder(&kube) == follower_id },
    )
    .await;
    assert_eq!(
        conflicts(&kube),
        before,
        "applies to the released Lease were refused"
    );
    let session = dev.project("proj-handover").await;
    let id = dev.new_session(&session, "after-handover").await;
    wait_phase(&dev, &id, "Creating").await;
}
