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

    let id = dev.started_session("proj-a", "lifecycle").await;
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
    let failing = dev.started_session(ns, "failing").await;
    wait_phase(&dev, &failing, "Creating").await;
    kube.set_runner_state(ns, &pod_name(&failing), exited(2));
    wait_phase(&dev, &failing, "Failed").await;

    // Stopping → pod deleted → Stopped
    let stopped = dev.started_session(ns, "stopped").await;
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
    let deleted = dev.started_session(ns, "deleted").await;
    wait_phase(&dev, &deleted, "Creating").await;
    let (code, _) = dev
        .call(Method::DELETE, &format!("/sessions/{deleted}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    let selector = format!("ambient-code.io/session-id={deleted}");
    eventually(
        "deleted session's objects removed",
        Duration::from_secs(30),
        || async {
            ["pods", "services", "serviceaccounts", "secrets"]
                .iter()
                .all(|p| kube.names(p, &selector).is_empty())
        },
    )
    .await;
    assert!(
        kube.get("namespaces", "", ns).is_some(),
        "the namespace must be kept"
    );
    // The other sessions' objects are untouched.
    assert!(kube.get("pods", ns, &pod_name(&failing)).is_some());
}
