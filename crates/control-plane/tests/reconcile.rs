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

    let ns = &dev.project("proj-a").await;
    let id = dev.new_session(ns, "lifecycle").await;
    wait_phase(&dev, &id, "Creating").await;
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
    assert_eq!(dev.session(&id).await["kube_namespace"], ns.as_str());

    // The runner runs → Running (with start_time).
    assert!(kube.set_runner_state(ns, &pod_name(&id), running()));
    wait_phase(&dev, &id, "Running").await;
    assert!(dev.session(&id).await["start_time"].is_string());

    // The runner exits 0 → Completed, even though sidecars still run.
    assert!(kube.set_runner_state(ns, &pod_name(&id), exited(0)));
    wait_phase(&dev, &id, "Completed").await;
    assert!(dev.session(&id).await["completion_time"].is_string());
    // Once terminal, its pod goes (the sidecars would run forever); the
    // namespace and the session's other objects stay.
    eventually(
        "the completed session's pod deleted",
        Duration::from_secs(30),
        || async { kube.get("pods", ns, &pod_name(&id)).is_none() },
    )
    .await;
    assert!(kube.get("namespaces", "", ns).is_some());

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
    let ns = &dev.project("proj-b").await;

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
    // The other sessions' objects are untouched (a failed session keeps
    // its service account; only its pod went).
    let sa = format!("session-{}-sa", safe(&failing));
    assert!(kube.get("serviceaccounts", ns, &sa).is_some());
    assert!(kube.get("pods", ns, &pod_name(&failing)).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_errors_on_one_session_are_retried_without_blocking_others() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-faults");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    // Every pod request in proj-faulty fails three times: 409, 429, 500.
    let faulty_ns = &dev.project("proj-faulty").await;
    let ok_ns = &dev.project("proj-ok").await;
    kube.fail_next_in("pods", faulty_ns, &[409, 429, 500]);
    let faulty = dev.new_session(faulty_ns, "faulty").await;
    let healthy = dev.new_session(ok_ns, "healthy").await;
    wait_phase(&dev, &healthy, "Creating").await;
    wait_phase(&dev, &faulty, "Creating").await;
    assert!(kube.get("pods", faulty_ns, &pod_name(&faulty)).is_some());
    let failed: Vec<u16> = kube
        .requests()
        .iter()
        // (A GET's 404 is the pod not created yet, not a fault.)
        .filter(|r| r.plural == "pods" && &r.namespace == faulty_ns && r.status >= 400)
        .filter(|r| r.status != 404)
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

    let proj_r = dev.project("proj-r").await;
    let doomed = dev.new_session(&proj_r, "doomed").await;
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

    // While it is down for the control plane, the data changes: a second
    // API server on the same data but other ports (which the control plane
    // does not know) creates one session and deletes another. Only the
    // relist after reconnecting can deliver these changes.
    let mut aside = DevServer::start_with(data, None);
    let born = aside.new_session(&proj_r, "born").await;
    let (code, _) = aside
        .call(Method::DELETE, &format!("/sessions/{doomed}"), None)
        .await;
    assert!(code == 200 || code == 204);
    let stopped = aside.daemon.terminate(Duration::from_secs(10));
    assert!(stopped.is_some(), "the second API server did not stop");
    let data = aside.data.take();

    // Back on the control plane's address, with the changed data.
    let dev = DevServer::start_with(data, Some(ports));
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

    let proj_s = dev.project("proj-s").await;
    let kept = dev.new_session(&proj_s, "kept").await;
    let gone = dev.new_session(&proj_s, "gone").await;
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
    let born = dev.new_session(&proj_s, "born").await;

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
    let ns = &dev.project("proj-v").await;
    let id = dev.new_session(ns, "vanishing").await;
    wait_phase(&dev, &id, "Creating").await;
    let pod_uid = |kube: &FakeKube| {
        kube.get("pods", ns, &pod_name(&id))
            .map(|p| p["metadata"]["uid"].clone())
    };
    let first = pod_uid(&kube);
    // The pod vanishes (node lost): re-provisioned once.
    kube.delete_object("pods", ns, &pod_name(&id));
    eventually("pod re-provisioned", Duration::from_secs(30), || async {
        pod_uid(&kube).is_some_and(|u| Some(&u) != first.as_ref())
    })
    .await;
    // And again: now the session fails.
    kube.delete_object("pods", ns, &pod_name(&id));
    wait_phase(&dev, &id, "Failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_client_credentials_authenticate_the_control_plane() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start_oidc("cp-client", "cp-secret-XYZ", &[]);
    let dir = TempDir::new("cp-oidc");
    let token_url = format!("http://{}/oidc/token", dev.daemon.addr("http"));
    let auth = [
        ("OIDC_TOKEN_URL", token_url.as_str()),
        ("OIDC_CLIENT_ID", "cp-client"),
        ("OIDC_CLIENT_SECRET", "cp-secret-XYZ"),
        ("OIDC_ALLOW_INSECURE", "true"),
    ];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &auth);
    let ns = dev.project("proj-o").await;
    let id = dev.new_session(&ns, "oidc").await;
    wait_phase(&dev, &id, "Creating").await;
    assert!(!cp.logs().contains("cp-secret-XYZ"));
}

/// Issue 24 item 9: as the reference (`pod_sync.go`), any container, init
/// containers included, stuck pulling its image or restarted 5 times
/// fails the session, with a reason naming the container.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_sidecar_fails_the_session() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-broken-sidecar");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let ns = &dev.project("proj-sidecars").await;
    let runner = |state: serde_json::Value| {
        serde_json::json!({"name": "ambient-code-runner", "ready": false, "restartCount": 0,
            "image": "runner", "imageID": "", "state": state})
    };
    let waiting = |reason: &str| serde_json::json!({"waiting": {"reason": reason}});
    let cases = [
        (
            "pulling",
            serde_json::json!({"phase": "Pending", "containerStatuses": [
                runner(waiting("ContainerCreating")),
                {"name": "ambient-mcp", "ready": false, "restartCount": 0, "image": "mcp:test",
                 "imageID": "", "state": waiting("ImagePullBackOff")}]}),
            "ambient-mcp",
            "ImagePullBackOff",
        ),
        (
            "init",
            serde_json::json!({"phase": "Pending",
                "initContainerStatuses": [
                    {"name": "init-workspace", "ready": false, "restartCount": 0, "image": "x",
                     "imageID": "", "state": waiting("ErrImagePull")}],
                "containerStatuses": [runner(waiting("PodInitializing"))]}),
            "init-workspace",
            "ErrImagePull",
        ),
        (
            "restarting",
            serde_json::json!({"phase": "Running", "containerStatuses": [
                runner(running()),
                {"name": "github-mcp", "ready": true, "restartCount": 5, "image": "gh",
                 "imageID": "", "state": running()}]}),
            "github-mcp",
            "restarted 5 times",
        ),
    ];
    for (name, status, container, reason) in cases {
        let id = dev.new_session(ns, name).await;
        wait_phase(&dev, &id, "Creating").await;
        assert!(kube.set_pod_status(ns, &pod_name(&id), status));
        wait_phase(&dev, &id, "Failed").await;
        let conditions = dev.session(&id).await["conditions"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            conditions.contains(container) && conditions.contains(reason),
            "{name}: {conditions}"
        );
    }
}

/// The value of `name` in the runner container's environment of `pod`.
fn runner_env(pod: &serde_json::Value, name: &str) -> Option<String> {
    pod["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "ambient-code-runner")?["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_variables_that_are_no_json_are_ignored_reported_and_the_session_starts() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-bad-env");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);

    let ns = &dev.project("proj-env").await;
    let body = serde_json::json!({"name": "bad-env", "project_id": ns,
        "environment_variables": "{\"FOO\": not json"});
    let (code, s) = dev.call(Method::POST, "/sessions", Some(body)).await;
    assert_eq!(code, 201, "{s}");
    let id = s["id"].as_str().unwrap_or_default().to_owned();
    wait_phase(&dev, &id, "Creating").await;
    let pod = kube
        .get("pods", ns, &pod_name(&id))
        .unwrap_or_else(|| panic!("no pod"));
    assert_eq!(runner_env(&pod, "SESSION_ID").as_deref(), Some(id.as_str()));
    assert_eq!(runner_env(&pod, "FOO"), None);
    let conditions = dev.session(&id).await["conditions"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        conditions.contains("EnvironmentVariables") && conditions.contains("InvalidJSON"),
        "{conditions}"
    );
    assert!(
        cp.logs()
            .contains("environment_variables is no JSON object"),
        "a warning is logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_started_again_resumes_after_its_last_message() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-resume");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);

    let ns = &dev.project("proj-resume").await;
    let id = dev.new_session(ns, "resume").await;
    wait_phase(&dev, &id, "Creating").await;
    let first = kube
        .get("pods", ns, &pod_name(&id))
        .unwrap_or_else(|| panic!("no pod"));
    assert_eq!(runner_env(&first, "IS_RESUME"), None);
    assert_eq!(runner_env(&first, "RESUME_AFTER_SEQ"), None);
    assert!(kube.set_runner_state(ns, &pod_name(&id), running()));
    wait_phase(&dev, &id, "Running").await;
    let mut last = 0;
    for text in ["one", "two", "three"] {
        let (code, m) = dev
            .call(
                Method::POST,
                &format!("/sessions/{id}/messages"),
                Some(serde_json::json!({"payload": text})),
            )
            .await;
        assert_eq!(code, 201, "{m}");
        last = m["seq"].as_i64().unwrap_or_default();
    }
    assert!(last > 0);
    assert!(kube.set_runner_state(ns, &pod_name(&id), exited(0)));
    wait_phase(&dev, &id, "Completed").await;
    eventually(
        "the completed session's pod deleted",
        Duration::from_secs(30),
        || async { kube.get("pods", ns, &pod_name(&id)).is_none() },
    )
    .await;

    let (code, s) = dev
        .call(Method::POST, &format!("/sessions/{id}/start"), None)
        .await;
    assert_eq!(code, 200, "{s}");
    eventually(
        "the restarted session's pod",
        Duration::from_secs(30),
        || async { kube.get("pods", ns, &pod_name(&id)).is_some() },
    )
    .await;
    let again = kube
        .get("pods", ns, &pod_name(&id))
        .unwrap_or_else(|| panic!("no pod"));
    assert_eq!(runner_env(&again, "IS_RESUME").as_deref(), Some("true"));
    assert_eq!(
        runner_env(&again, "RESUME_AFTER_SEQ"),
        Some(last.to_string())
    );
}
