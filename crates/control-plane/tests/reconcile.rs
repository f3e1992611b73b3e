//! The control plane over real sockets: the real binary, the real devserver,
//! and a FAKE Kubernetes API (tests/support/fake_kube.rs — not a cluster).

mod support;

use std::time::Duration;

use integration_tests::TempDir;
use reqwest::Method;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn session_lifecycle_creating_running_completed() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-lifecycle");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);

    let id = dev.new_session("proj-a", "lifecycle").await;
    wait_phase(&dev, &id, "Creating").await;
    let ns = "proj-a";
    assert!(
        kube.get("namespaces", "", ns).is_some(),
        "namespace applied"
    );
    assert!(
        kube.get("networkpolicies", ns, "allow-ambient-api-server")
            .is_some()
    );
    let sa = kube
        .get("serviceaccounts", ns, &format!("session-{}-sa", safe(&id)))
        .unwrap_or_else(|| panic!("no service account"));
    let pod = kube
        .get("pods", ns, &pod_name(&id))
        .unwrap_or_else(|| panic!("no pod"));
    assert!(
        kube.get("services", ns, &format!("session-{}", safe(&id)))
            .is_some()
    );
    assert_eq!(
        pod["metadata"]["ownerReferences"][0]["uid"],
        sa["metadata"]["uid"]
    );
    assert_eq!(dev.session(&id).await["kube_namespace"], ns);

    // The runner runs → Running (with start_time).
    assert!(kube.set_runner_state(ns, &pod_name(&id), running()));
    wait_phase(&dev, &id, "Running").await;
    assert!(dev.session(&id).await["start_time"].is_string());

    // The runner exits 0 → Completed, even though sidecars still run.
    assert!(kube.set_runner_state(ns, &pod_name(&id), exited(0)));
    wait_phase(&dev, &id, "Completed").await;
    assert!(dev.session(&id).await["completion_time"].is_string());

    assert!(
        !cp.logs().contains("NEVER-PRINTED"),
        "a secret reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_failure_stop_and_delete() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-stop");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let ns = "proj-b";

    // non-zero exit → Failed
    let failing = dev.new_session(ns, "failing").await;
    wait_phase(&dev, &failing, "Creating").await;
    kube.set_runner_state(ns, &pod_name(&failing), exited(2));
    wait_phase(&dev, &failing, "Failed").await;

    // Stopping → pod deleted → Stopped
    let stopped = dev.new_session(ns, "stopped").await;
    wait_phase(&dev, &stopped, "Creating").await;
    kube.set_runner_state(ns, &pod_name(&stopped), running());
    wait_phase(&dev, &stopped, "Running").await;
    let (code, _) = dev
        .call(Method::POST, &format!("/sessions/{stopped}/stop"), None)
        .await;
    assert_eq!(code, 200);
    wait_phase(&dev, &stopped, "Stopped").await;
    assert!(kube.get("pods", ns, &pod_name(&stopped)).is_none());

    // delete → its objects go, the namespace stays
    let deleted = dev.new_session(ns, "deleted").await;
    wait_phase(&dev, &deleted, "Creating").await;
    let (code, _) = dev
        .call(Method::DELETE, &format!("/sessions/{deleted}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    wait_cleaned(&kube, &deleted, "deleted session's objects removed").await;
    assert!(
        kube.get("namespaces", "", ns).is_some(),
        "the namespace must be kept"
    );
    // The other sessions' objects are untouched.
    assert!(kube.get("pods", ns, &pod_name(&failing)).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_errors_on_one_session_are_retried_without_blocking_others() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-faults");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    // Every pod request in proj-faulty fails three times: 409, 429, 500.
    kube.fail_next_in("pods", "proj-faulty", &[409, 429, 500]);
    let faulty = dev.new_session("proj-faulty", "faulty").await;
    let healthy = dev.new_session("proj-ok", "healthy").await;
    wait_phase(&dev, &healthy, "Creating").await;
    wait_phase(&dev, &faulty, "Creating").await;
    assert!(
        kube.get("pods", "proj-faulty", &pod_name(&faulty))
            .is_some()
    );
    let failed: Vec<u16> = kube
        .requests()
        .iter()
        .filter(|r| r.plural == "pods" && r.namespace == "proj-faulty" && r.status >= 400)
        .map(|r| r.status)
        .collect();
    assert_eq!(
        failed,
        vec![409, 429, 500],
        "each injected failure was met and retried"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_server_restart_mid_watch_converges() {
    let kube = FakeKube::start().await;
    let data = TempDir::new("devserver-data");
    let dev = DevServer::start_with(Some(data), None);
    let ports = (
        dev.daemon.addr("grpc").port(),
        dev.daemon.addr("http").port(),
    );
    let dir = TempDir::new("cp-api-restart");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);

    let doomed = dev.new_session("proj-r", "doomed").await;
    wait_phase(&dev, &doomed, "Creating").await;

    // Kill the API server mid-watch; the token server keeps serving meanwhile.
    let DevServer {
        mut daemon, data, ..
    } = dev;
    daemon.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let health = format!("http://{}/healthz", cp.addr("health"));
    assert_eq!(
        reqwest::get(&health)
            .await
            .map(|r| r.status().as_u16())
            .ok(),
        Some(200)
    );

    // Back on the same address and data; change things before the control plane is back.
    let dev = DevServer::start_with(data, Some(ports));
    let born = dev.new_session("proj-r", "born").await;
    let (code, _) = dev
        .call(Method::DELETE, &format!("/sessions/{doomed}"), None)
        .await;
    assert!(code == 200 || code == 204);

    wait_phase(&dev, &born, "Creating").await;
    let selector = format!("ambient-code.io/session-id={doomed}");
    eventually(
        "the session deleted meanwhile is cleaned up",
        Duration::from_secs(30),
        || async {
            kube.names("pods", &selector).is_empty()
                && kube.names("serviceaccounts", &selector).is_empty()
        },
    )
    .await;
    assert!(
        cp.logs().contains("watch"),
        "the control plane noticed the broken watch"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_restart_applies_nothing_twice_and_leaks_nothing() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-restart");
    let mut cp = control_plane(&dev, &kube, &dir, "cp-a", false);

    let kept = dev.new_session("proj-s", "kept").await;
    let gone = dev.new_session("proj-s", "gone").await;
    wait_phase(&dev, &kept, "Creating").await;
    wait_phase(&dev, &gone, "Creating").await;

    // SIGTERM: a graceful stop with exit 0.
    let status = cp.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful exit 0: {status:?}\n{}",
        cp.logs()
    );

    // While it is down: one session deleted, one created.
    let (code, _) = dev
        .call(Method::DELETE, &format!("/sessions/{gone}"), None)
        .await;
    assert!(code == 200 || code == 204);
    let born = dev.new_session("proj-s", "born").await;

    let first_logs = cp.logs();
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    wait_phase(&dev, &born, "Creating").await;
    wait_cleaned(
        &kube,
        &gone,
        "the session deleted while we were down is cleaned",
    )
    .await;
    // The kept session's pod was created exactly once.
    let creates = kube
        .requests()
        .iter()
        .filter(|r| r.plural == "pods" && r.name == pod_name(&kept) && !r.existed && r.status < 300)
        .count();
    let log: Vec<String> = kube
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}/{} existed={} {}",
                r.method, r.plural, r.namespace, r.name, r.existed, r.status
            )
        })
        .collect();
    assert_eq!(creates, 1, "{log:#?}\n{first_logs}\n{}", cp.logs());
    assert_eq!(dev.phase(&kept).await, "Creating");
}

#[tokio::test(flavor = "multi_thread")]
async fn vanished_pod_is_reprovisioned_once_then_failed() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-vanish");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let id = dev.new_session("proj-v", "vanishing").await;
    wait_phase(&dev, &id, "Creating").await;
    let pod_uid = |kube: &FakeKube| {
        kube.get("pods", "proj-v", &pod_name(&id))
            .map(|p| p["metadata"]["uid"].clone())
    };
    let first = pod_uid(&kube);
    // The pod vanishes (node lost): re-provisioned once.
    kube.delete_object("pods", "proj-v", &pod_name(&id));
    eventually("pod re-provisioned", Duration::from_secs(30), || async {
        pod_uid(&kube).is_some_and(|u| Some(&u) != first.as_ref())
    })
    .await;
    // And again: now the session fails.
    kube.delete_object("pods", "proj-v", &pod_name(&id));
    wait_phase(&dev, &id, "Failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_client_credentials_authenticate_the_control_plane() {
    let kube = FakeKube::start().await;
    let oidc = [
        "--oidc-client-id",
        "cp-client",
        "--oidc-client-secret",
        "cp-secret-XYZ",
    ];
    let dev = DevServer::start_full(None, None, &oidc);
    let dir = TempDir::new("cp-oidc");
    let token_url = format!("http://{}/oidc/token", dev.daemon.addr("http"));
    let auth = [
        ("OIDC_TOKEN_URL", token_url.as_str()),
        ("OIDC_CLIENT_ID", "cp-client"),
        ("OIDC_CLIENT_SECRET", "cp-secret-XYZ"),
        ("OIDC_ALLOW_INSECURE", "true"),
    ];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &auth);
    let id = dev.new_session("proj-o", "oidc").await;
    wait_phase(&dev, &id, "Creating").await;
    assert!(!cp.logs().contains("cp-secret-XYZ"));
}
