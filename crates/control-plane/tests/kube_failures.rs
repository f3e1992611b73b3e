//! What a real Kubernetes API does that a kind fake would not: watch gaps
//! with compacted history (410 Gone), namespaces that are not ours, faults
//! on the apply path. The real binary and devserver, with the FAKE
//! Kubernetes API of tests/support/fake_kube (not a cluster).

mod support;

use std::time::Duration;

use integration_tests::TempDir;
use serde_json::json;
use support::*;

/// Item 9: a pod that vanished while the pod watch was down, its delete
/// event compacted away (the watch comes back with 410 Gone and relists),
/// is noticed at once — not at the next resync — and re-provisioned.
#[tokio::test(flavor = "multi_thread")]
async fn a_pod_vanished_during_a_watch_gap_is_noticed_on_relist() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-watch-gap");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let ns = &dev.project("proj-gap").await;
    let id = dev.new_session(ns, "gap").await;
    wait_phase(&dev, &id, "Creating").await;
    let uid = |kube: &FakeKube| {
        kube.get("pods", ns, &pod_name(&id))
            .map(|p| p["metadata"]["uid"].clone())
    };
    let first = uid(&kube);
    assert!(first.is_some());

    // The pod watch breaks and cannot come back for a while; meanwhile the
    // pod goes and the event log is compacted past its delete.
    kube.fail_next_verb("WATCH", "pods", &[500, 500, 500]);
    kube.break_watches();
    assert!(kube.delete_object("pods", ns, &pod_name(&id)));
    kube.compact();

    eventually(
        "the vanished pod is re-provisioned",
        Duration::from_secs(30),
        || async { uid(&kube).is_some_and(|u| Some(&u) != first.as_ref()) },
    )
    .await;
    assert_eq!(dev.phase(&id).await, "Creating");
    assert!(cp.logs().contains("re-provisioning once"), "{}", cp.logs());
}

/// Item 5: a namespace that exists without our `managed-by` label is
/// never adopted (nor relabelled): the session fails with a reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_we_do_not_own_is_never_adopted() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-not-ours");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    // Someone else's namespace exists before the project named after it
    // (created after it, the project reconciler makes it ours at once, and
    // this put would race it).
    kube.put(
        "namespaces",
        "",
        json!({"metadata": {"name": "theirs", "labels": {"team": "someone-else"}}}),
    );
    let ns = dev.project("theirs").await;
    assert_eq!(ns, "theirs");
    let id = dev.new_session(&ns, "intruder").await;
    wait_phase(&dev, &id, "Failed").await;
    let conditions = dev.session(&id).await["conditions"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(conditions.contains("not managed by"), "{conditions}");
    let labels = kube
        .get("namespaces", "", &ns)
        .map(|n| n["metadata"]["labels"].clone())
        .unwrap_or_default();
    assert_eq!(
        labels,
        json!({"team": "someone-else"}),
        "namespace relabelled"
    );
    assert!(kube.get("pods", &ns, &pod_name(&id)).is_none());
}

/// Faults on the apply path itself (not only GETs) are retried.
#[tokio::test(flavor = "multi_thread")]
async fn apply_faults_are_retried() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-apply-faults");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    kube.fail_next_verb("APPLY", "serviceaccounts", &[409, 429, 500, 504]);
    let ns = dev.project("proj-apply").await;
    let id = dev.new_session(&ns, "retried").await;
    wait_phase(&dev, &id, "Creating").await;
    let failed: Vec<u16> = kube
        .requests()
        .iter()
        .filter(|r| r.method == "APPLY" && r.plural == "serviceaccounts" && r.status >= 400)
        .map(|r| r.status)
        .collect();
    assert_eq!(failed, vec![409, 429, 500, 504]);
    assert!(kube.get("pods", &ns, &pod_name(&id)).is_some());
}

/// Item 8: two installations in one cluster never touch each other's
/// sessions: the second one's orphan sweep and pod watch do not see the
/// first one's objects (before installation labels, it deleted them as
/// orphans of sessions its API did not know).
#[tokio::test(flavor = "multi_thread")]
async fn two_installations_in_one_cluster_leave_each_other_alone() {
    let kube = FakeKube::start().await;
    let dev_a = DevServer::start();
    let dir = TempDir::new("cp-installations");
    let alpha = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("CP_INSTALLATION_ID", "alpha"),
    ];
    let _cp_a = control_plane_with(&dev_a, &kube, &dir, "cp-a", false, &alpha);
    let ns_a = dev_a.project("team-a").await;
    let id_a = dev_a.new_session(&ns_a, "alpha-session").await;
    wait_phase(&dev_a, &id_a, "Creating").await;
    let pod = kube
        .get("pods", &ns_a, &pod_name(&id_a))
        .unwrap_or_else(|| panic!("no pod"));
    assert_eq!(
        pod["metadata"]["labels"]["ambient-code.io/installation"],
        "alpha"
    );

    // A second installation with its own API server, in the same cluster.
    let dev_b = DevServer::start();
    let dir_b = TempDir::new("cp-installations-b");
    let beta = [("AMBIENT_API_TOKEN", TOKEN), ("CP_INSTALLATION_ID", "beta")];
    let cp_b = control_plane_with(&dev_b, &kube, &dir_b, "cp-b", false, &beta);
    let ns_b = dev_b.project("team-b").await;
    let id_b = dev_b.new_session(&ns_b, "beta-session").await;
    wait_phase(&dev_b, &id_b, "Creating").await;
    // Beta's orphan sweep has run (its log says so) and found nothing of
    // alpha's to clean.
    eventually("beta's orphan sweep", Duration::from_secs(30), || async {
        cp_b.logs().contains("orphan sweep done")
    })
    .await;
    assert!(
        !cp_b.logs().contains(&format!("session={id_a}")),
        "beta took up alpha's session:\n{}",
        cp_b.logs()
    );
    let after = kube.get("pods", &ns_a, &pod_name(&id_a));
    assert_eq!(
        after.map(|p| p["metadata"]["uid"].clone()),
        Some(pod["metadata"]["uid"].clone()),
        "the other installation deleted alpha's pod"
    );
    let sa = format!("session-{}-sa", safe(&id_a));
    assert!(kube.get("serviceaccounts", &ns_a, &sa).is_some());
}

/// A Kubernetes request that never answers (a hung apply) fails after the
/// request timeout and is retried with backoff: the session gets its pod
/// without waiting for the reconcile deadline, and the other session is
/// not held up meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_kube_request_that_never_answers_is_retried() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-kube-hang");
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("CP_KUBE_REQUEST_TIMEOUT", "2"),
    ];
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);
    kube.fail_next_verb("APPLY", "pods", &[fake_kube::HANG]);
    let ns = dev.project("proj-hang").await;
    let hung = dev.new_session(&ns, "hung").await;
    eventually("the pod apply hangs", Duration::from_secs(30), || async {
        kube.requests()
            .iter()
            .any(|r| r.method == "APPLY" && r.plural == "pods" && r.status == fake_kube::HANG)
    })
    .await;
    let other = dev.new_session(&ns, "other").await;
    wait_phase(&dev, &other, "Creating").await;
    wait_phase(&dev, &hung, "Creating").await;
    assert!(kube.get("pods", &ns, &pod_name(&hung)).is_some());
}

/// SIGKILL while a reconcile is half done (namespace and service account
/// applied, the pod apply in flight), then a restart: the reconcile is
/// finished from where Kubernetes stands, every object created once.
#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_reconcile_and_restarted_creates_nothing_twice() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-kill-mid-reconcile");
    let mut cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    kube.fail_next_verb("APPLY", "pods", &[fake_kube::HANG]);
    let ns = dev.project("proj-kill").await;
    let id = dev.new_session(&ns, "half-done").await;
    eventually(
        "the pod apply is in flight",
        Duration::from_secs(30),
        || async {
            kube.requests()
                .iter()
                .any(|r| r.method == "APPLY" && r.plural == "pods" && r.status == fake_kube::HANG)
        },
    )
    .await;
    cp.kill();
    assert!(kube.get("pods", &ns, &pod_name(&id)).is_none());
    assert_ne!(dev.phase(&id).await, "Creating");

    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    wait_phase(&dev, &id, "Creating").await;
    let selector = format!("ambient-code.io/session-id={id}");
    for plural in ["pods", "serviceaccounts", "services"] {
        assert_eq!(kube.names(plural, &selector).len(), 1, "one {plural}");
        let creates = kube
            .requests()
            .iter()
            .filter(|r| r.plural == plural && r.namespace == ns && !r.existed && r.status < 300)
            .filter(|r| r.status != fake_kube::HANG && r.method != "GET" && r.method != "LIST")
            .count();
        assert_eq!(creates, 1, "{plural} created once");
    }
}

/// Issue 29 item 3: an admission webhook's 403 on the runner pod is not a
/// fault to retry: the session fails with the webhook's reason, and the pod
/// is asked for once. (Before the fix every 403 was transient: the pod was
/// applied again and again and the session stayed `Creating`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_pod_an_admission_webhook_denies_fails_the_session_with_the_reason() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-admission");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let ns = dev.project("proj-admission").await;
    kube.deny_next(
        "pods",
        50,
        "images.policy.example.com",
        "image quay.io/ambient_code/runner is not on the allow list",
    );
    let id = dev.new_session(&ns, "denied").await;
    wait_phase(&dev, &id, "Failed").await;
    let conditions = dev.session(&id).await["conditions"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        conditions.contains("denied the request") && conditions.contains("not on the allow list"),
        "{conditions}"
    );
    let denied = kube
        .requests()
        .iter()
        .filter(|r| r.plural == "pods" && r.status == 403)
        .count();
    assert_eq!(denied, 1, "the denied pod was asked for again");
    assert!(kube.get("pods", &ns, &pod_name(&id)).is_none());
}

/// A missing permission (an RBAC 403, unlike an admission denial) may be
/// granted later: it is retried, and the log says which permission.
#[test]
fn a_missing_permission_is_named_and_retried() {
    use ambient_control_plane::runtime::RuntimeError;
    use ambient_control_plane::runtime::kube::classify;
    let rbac = kube::Error::Api(
        kube::core::Status::failure(
            "pods \"x\" is forbidden: User \"system:serviceaccount:ambient-code:cp\" cannot patch resource \"pods\" in API group \"\" in the namespace \"p\"",
            "Forbidden",
        )
        .with_code(403)
        .boxed(),
    );
    match classify(rbac) {
        RuntimeError::Transient(why) => assert!(why.contains("permission"), "{why}"),
        other => panic!("an RBAC 403 is not transient: {other:?}"),
    }
}
