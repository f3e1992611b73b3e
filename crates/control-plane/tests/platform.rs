//! The platform around a session, over the real binary and devserver with a
//! FAKE Kubernetes API (tests/support/fake_kube): MPP TenantNamespaces, the
//! Vertex key copy, test mode, and startup with a reference deployment's env.

mod support;

use std::time::Duration;

use integration_tests::{Daemon, Spec, TempDir};
use reqwest::Method;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn mpp_sessions_wait_for_their_tenant_namespace_which_goes_with_the_project() {
    let kube = FakeKube::start().await;
    kube.put(
        "namespaces",
        "",
        json!({"metadata": {"name": "ambient-code--config"}}),
    );
    let dev = DevServer::start();
    let dir = TempDir::new("cp-mpp");
    // The reference's env: no MPP_CONFIG_NAMESPACE (its default applies).
    let env = [("AMBIENT_API_TOKEN", TOKEN), ("PLATFORM_MODE", "mpp")];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);

    let pid = dev.project("tenant-a").await;
    let ns = format!("ambient-code--{pid}");
    let sid = dev.new_session(&pid, "in-mpp").await;
    eventually(
        "TenantNamespace applied",
        Duration::from_secs(30),
        || async {
            kube.get("tenantnamespaces", "ambient-code--config", &pid)
                .is_some()
        },
    )
    .await;
    let tn = kube
        .get("tenantnamespaces", "ambient-code--config", &pid)
        .unwrap_or_default();
    assert_eq!(tn["kind"], "TenantNamespace");
    assert_eq!(
        tn["metadata"]["labels"]["tenant.paas.redhat.com/tenant"],
        "ambient-code"
    );
    assert_eq!(
        tn["spec"],
        json!({"network": {"security-zone": "internal"}, "type": "runtime"})
    );
    // No namespace of ours: the platform makes it. The control plane looks
    // for it (and finds none) before anything else could have happened.
    eventually(
        "the control plane looks for the namespace",
        Duration::from_secs(30),
        || async {
            kube.requests().iter().any(|r| {
                r.method == "GET" && r.plural == "namespaces" && r.name == ns && r.status == 404
            })
        },
    )
    .await;
    assert!(kube.get("namespaces", "", &ns).is_none());
    assert_eq!(
        dev.phase(&sid).await,
        "",
        "provisioned before the namespace exists"
    );

    // The platform's operator creates the namespace; once Active the session runs.
    kube.put(
        "namespaces",
        "",
        json!({"metadata": {"name": ns}, "status": {"phase": "Active"}}),
    );
    wait_phase(&dev, &sid, "Creating").await;
    let pod = kube
        .get("pods", &ns, &pod_name(&sid))
        .unwrap_or_else(|| panic!("no pod in {ns}"));
    let gh_env = pod["spec"]["containers"][0]["env"].clone();
    assert!(gh_env.to_string().contains(&format!("\"value\":\"{ns}\"")));

    // The project goes (after its session): so does its TenantNamespace.
    let (code, _) = dev
        .call(Method::DELETE, &format!("/sessions/{sid}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    let (code, _) = dev
        .call(Method::DELETE, &format!("/projects/{pid}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    eventually(
        "TenantNamespace deleted",
        Duration::from_secs(30),
        || async {
            kube.get("tenantnamespaces", "ambient-code--config", &pid)
                .is_none()
        },
    )
    .await;
    drop(cp);
}

#[tokio::test(flavor = "multi_thread")]
async fn vertex_keys_are_copied_mounted_and_kept_in_sync() {
    let kube = FakeKube::start().await;
    let key = |v: &str| {
        json!({"metadata": {"name": "ambient-vertex", "namespace": "ambient-code"},
               "type": "Opaque", "data": {"ambient-code-key.json": v}})
    };
    kube.put("secrets", "ambient-code", key("a2V5LTE="));
    let dev = DevServer::start();
    let dir = TempDir::new("cp-vertex");
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("USE_VERTEX", "1"),
        ("ANTHROPIC_VERTEX_PROJECT_ID", "gcp-1"),
    ];
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);

    let pid = dev.project("vertex-p").await;
    let sid = dev.new_session(&pid, "on-vertex").await;
    wait_phase(&dev, &sid, "Creating").await;
    let copy = kube
        .get("secrets", &pid, "ambient-vertex")
        .unwrap_or_else(|| panic!("no copy"));
    assert_eq!(copy["data"]["ambient-code-key.json"], "a2V5LTE=");
    assert_eq!(
        copy["metadata"]["annotations"]["ambient-code.io/copied-from"],
        "ambient-code/ambient-vertex"
    );
    let pod = kube
        .get("pods", &pid, &pod_name(&sid))
        .unwrap_or_else(|| panic!("no pod"));
    let runner = &pod["spec"]["containers"][0];
    assert!(runner["volumeMounts"].as_array().is_some_and(|m| {
        m.iter()
            .any(|m| m["name"] == "vertex" && m["mountPath"] == "/app/vertex")
    }));
    let env_text = runner["env"].to_string();
    for want in [
        r#"{"name":"USE_VERTEX","value":"1"}"#,
        r#"{"name":"CLOUD_ML_REGION","value":"global"}"#,
        r#"{"name":"ANTHROPIC_VERTEX_PROJECT_ID","value":"gcp-1"}"#,
    ] {
        assert!(env_text.contains(want), "{want} not in {env_text}");
    }

    // The key rotates: the copy follows.
    kube.put("secrets", "ambient-code", key("a2V5LTI="));
    eventually("copy refreshed", Duration::from_secs(30), || async {
        kube.get("secrets", &pid, "ambient-vertex")
            .is_some_and(|c| c["data"]["ambient-code-key.json"] == "a2V5LTI=")
    })
    .await;
}

/// Issue 29 item 1: a key the source Secret no longer holds leaves every
/// copy (server-side apply removes what its manager stopped sending). On
/// the old fake, which deep-merged applies, the removed key stayed in the
/// copy and this test failed; a real API server removes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_removed_from_the_vertex_secret_leaves_its_copies() {
    let kube = FakeKube::start().await;
    let secret = |data: serde_json::Value| {
        json!({"metadata": {"name": "ambient-vertex", "namespace": "ambient-code"},
               "type": "Opaque", "data": data})
    };
    kube.put(
        "secrets",
        "ambient-code",
        secret(json!({"ambient-code-key.json": "a2V5LTE=", "retired.json": "b2xkLWtleQ=="})),
    );
    let dev = DevServer::start();
    let dir = TempDir::new("cp-vertex-removed");
    let env = [("AMBIENT_API_TOKEN", TOKEN), ("USE_VERTEX", "1")];
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);
    let pid = dev.project("vertex-removed").await;
    let sid = dev.new_session(&pid, "on-vertex").await;
    wait_phase(&dev, &sid, "Creating").await;
    let data = |kube: &FakeKube| {
        kube.get("secrets", &pid, "ambient-vertex")
            .map(|c| c["data"].clone())
    };
    assert_eq!(
        data(&kube),
        Some(json!({"ambient-code-key.json": "a2V5LTE=", "retired.json": "b2xkLWtleQ=="}))
    );
    kube.put(
        "secrets",
        "ambient-code",
        secret(json!({"ambient-code-key.json": "a2V5LTI="})),
    );
    eventually("copy refreshed", Duration::from_secs(30), || async {
        data(&kube).is_some_and(|d| d["ambient-code-key.json"] == "a2V5LTI=")
    })
    .await;
    assert_eq!(
        data(&kube),
        Some(json!({"ambient-code-key.json": "a2V5LTI="})),
        "the retired key stayed in the copy"
    );
}

/// Issue 24 item 1: the key is written only into namespaces this
/// installation created for a project the API knows. A Secret that looks
/// like a copy (our labels, name and `copied-from` annotation) in a
/// namespace we did not create, or in a namespace labelled as ours but not
/// the namespace of the project it names, never receives it.
#[tokio::test(flavor = "multi_thread")]
async fn the_vertex_key_never_reaches_a_look_alike_outside_our_namespaces() {
    let kube = FakeKube::start().await;
    let key = |v: &str| {
        json!({"metadata": {"name": "ambient-vertex", "namespace": "ambient-code"},
               "type": "Opaque", "data": {"ambient-code-key.json": v}})
    };
    kube.put("secrets", "ambient-code", key("a2V5LTE="));
    let dev = DevServer::start();
    let pid = dev.project("vertex-owner").await;
    let ours = json!({"ambient-code.io/managed": "true",
        "ambient-code.io/managed-by": "ambient-control-plane",
        "ambient-code.io/installation": "ambient-code",
        "ambient-code.io/project-id": pid});
    kube.put(
        "namespaces",
        "",
        json!({"metadata": {"name": "someone-else"}}),
    );
    kube.put(
        "namespaces",
        "",
        json!({"metadata": {"name": "decoy", "labels": ours}}),
    );
    let bait = |ns: &str| {
        json!({"metadata": {"name": "ambient-vertex", "namespace": ns, "labels": ours,
                "annotations": {"ambient-code.io/copied-from": "ambient-code/ambient-vertex"}},
               "type": "Opaque", "data": {"ambient-code-key.json": "YmFpdA=="}})
    };
    for ns in ["someone-else", "decoy"] {
        kube.put("secrets", ns, bait(ns));
    }
    let dir = TempDir::new("cp-vertex-bait");
    let env = [("AMBIENT_API_TOKEN", TOKEN), ("USE_VERTEX", "1")];
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);
    let sid = dev.new_session(&pid, "on-vertex").await;
    wait_phase(&dev, &sid, "Creating").await;

    // The key rotates: our copy follows (the positive signal), the
    // look-alikes keep what they held.
    kube.put("secrets", "ambient-code", key("a2V5LTI="));
    eventually("copy refreshed", Duration::from_secs(30), || async {
        kube.get("secrets", &pid, "ambient-vertex")
            .is_some_and(|c| c["data"]["ambient-code-key.json"] == "a2V5LTI=")
    })
    .await;
    for ns in ["someone-else", "decoy"] {
        let held = kube
            .get("secrets", ns, "ambient-vertex")
            .map(|s| s["data"]["ambient-code-key.json"].clone());
        assert_eq!(held, Some(json!("YmFpdA==")), "the key reached {ns}");
    }
    assert!(kube.denied().is_empty(), "{:?}", kube.denied());
}

#[tokio::test(flavor = "multi_thread")]
async fn test_mode_touches_no_cluster_and_only_logs() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-test-mode");
    let env = [("AMBIENT_API_TOKEN", TOKEN), ("MODE", "test")];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", true, &env);
    let pid = dev.project("dry-p").await;
    let sid = dev.new_session(&pid, "dry-run").await;
    wait_phase(&dev, &sid, "Running").await;
    assert!(
        kube.requests().is_empty(),
        "test mode called the cluster: {:?}",
        kube.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.plural))
            .collect::<Vec<_>>()
    );
    assert!(
        cp.logs().contains("test mode: would provision the session"),
        "{}",
        cp.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reference_deployments_env_starts() {
    // USE_VERTEX=1, no MPP_CONFIG_NAMESPACE, OIDC client credentials without
    // a URL (the reference's SSO default). Test mode: no cluster, and the SSO
    // endpoint is never reached (every request goes to a closed proxy port).
    let dev = DevServer::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let proxy = format!(
        "http://{}",
        closed.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    drop(closed);
    let cp = Daemon::start(
        Spec::new("ambient-control-plane")
            .env("MODE", "test")
            .env("OIDC_CLIENT_ID", "ambient-control-plane")
            .env("OIDC_CLIENT_SECRET", "s3cr3t-value")
            .env("USE_VERTEX", "1")
            .env("PLATFORM_MODE", "mpp")
            .env("RECONCILERS", "tally,kube")
            .env("HTTPS_PROXY", proxy.as_str())
            .env("AMBIENT_GRPC_SERVER_ADDR", dev.grpc())
            .env("AMBIENT_API_SERVER_URL", dev.http_url())
            .env("CP_TOKEN_LISTEN_ADDR", "127.0.0.1:0")
            .env("CP_GATEWAY_LISTEN_ADDR", "127.0.0.1:0")
            .env("CP_HEALTH_LISTEN_ADDR", "127.0.0.1:0")
            .env("CP_LEADER_ELECTION", "false")
            .listener("token server")
            .listener("health"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = format!("http://{}/healthz", cp.addr("health"));
    let ok = reqwest::get(health).await.map(|r| r.status().as_u16()).ok();
    assert_eq!(ok, Some(200), "{}", cp.logs());
    assert!(!cp.logs().contains("s3cr3t-value"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_kube_token_file_is_the_identity_for_namespaces_and_session_objects() {
    // As mounted (no newline: re-read as it rotates) and as written by hand.
    for content in ["project-identity-token", "project-identity-token\n"] {
        project_identity_is_used(content).await;
    }
}

async fn project_identity_is_used(content: &str) {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-project-kube");
    let token_file = dir.path().join("project-token");
    std::fs::write(&token_file, content).unwrap_or_else(|e| panic!("{e}"));
    let token_file = token_file.display().to_string();
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("PROJECT_KUBE_TOKEN_FILE", token_file.as_str()),
    ];
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", true, &env);
    let pid = dev.project("second-identity").await;
    let sid = dev.new_session(&pid, "as-project").await;
    wait_phase(&dev, &sid, "Creating").await;
    let by = |plural: &str| -> Vec<String> {
        kube.bearers()
            .into_iter()
            .filter(|(p, _)| p == plural)
            .map(|(_, b)| b)
            .collect()
    };
    for plural in ["namespaces", "pods", "serviceaccounts", "secrets"] {
        let seen = by(plural);
        assert!(!seen.is_empty(), "no {plural} request");
        assert!(
            seen.iter().all(|b| b == "project-identity-token"),
            "{plural}: {seen:?}"
        );
    }
    // The Lease stays with the control plane's own identity (none here).
    let leases = by("leases");
    assert!(!leases.is_empty());
    assert!(leases.iter().all(String::is_empty), "{leases:?}");
}
