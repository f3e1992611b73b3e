//! Issue 27: the Kubernetes permissions are checked at startup. With a
//! verb of rbac.yaml not granted (the reference's ClusterRole has no
//! namespace `delete`), one log line names the verb, the resource and what
//! needs it, and `/readyz` stays false; granting it makes the same process
//! ready (the check is repeated). The FAKE Kubernetes API answers the
//! SelfSubjectAccessReviews from its rules.

mod support;

use std::time::Duration;

use integration_tests::TempDir;
use support::*;

async fn readyz(cp: &integration_tests::Daemon) -> u16 {
    let url = format!("http://{}/readyz", cp.addr("health"));
    reqwest::get(&url)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_permission_keeps_readyz_false_until_granted() {
    let kube = FakeKube::start().await;
    kube.revoke("delete", "", "namespaces");
    let dev = DevServer::start();
    let dir = TempDir::new("cp-permissions");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let missing = |l: &str| l.contains("missing Kubernetes permission");
    eventually(
        "the missing permission logged",
        Duration::from_secs(30),
        || async { cp.logs().lines().any(missing) },
    )
    .await;
    let lines: Vec<String> = cp
        .logs()
        .lines()
        .filter(|l| missing(l))
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for part in [
        "verb=delete",
        "resource=namespaces",
        "scope=cluster",
        "needed_for=",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    // Checked again (not ready meanwhile), and logged once, not at each check.
    let reviews = kube.reviews();
    eventually("a second check", Duration::from_secs(30), || async {
        kube.reviews() > reviews + 1
    })
    .await;
    assert_eq!(readyz(&cp).await, 503);
    assert_eq!(cp.logs().lines().filter(|l| missing(l)).count(), 1);

    kube.restore_rbac();
    eventually("ready once granted", Duration::from_secs(30), || async {
        readyz(&cp).await == 200
    })
    .await;
    assert!(
        cp.logs()
            .contains("every Kubernetes permission of rbac.yaml is granted")
    );
}

/// Everything granted: ready, and nothing reported missing.
#[tokio::test(flavor = "multi_thread")]
async fn with_every_permission_it_is_ready() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-permissions-all");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    eventually("ready", Duration::from_secs(30), || async {
        readyz(&cp).await == 200
    })
    .await;
    assert!(!cp.logs().contains("missing Kubernetes permission"));
    assert!(kube.denied().is_empty(), "{:?}", kube.denied());
}
