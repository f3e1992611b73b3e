//! Issue 24 item 2: which namespaces the control plane uses. In both
//! platform modes only one this installation created (standard: carrying
//! our managed-by and installation labels; mpp: the namespace of a
//! TenantNamespace we made, not older than it); never the control plane's
//! own, `MPP_CONFIG_NAMESPACE`, `default`, `kube-*` or `openshift*`. A
//! session there fails with a condition saying why; group access there is
//! refused. The real binary and devserver with the FAKE Kubernetes API.

mod support;

use std::time::Duration;

use ambient_protocol::v1::CreateProjectSettingsRequest;
use ambient_protocol::v1::project_settings_service_client::ProjectSettingsServiceClient;
use integration_tests::{Daemon, TempDir};
use serde_json::json;
use support::*;
use tonic::Request;

const MPP_CONFIG: &str = "ambient-code--config";

fn mpp_env() -> [(&'static str, &'static str); 2] {
    [("AMBIENT_API_TOKEN", TOKEN), ("PLATFORM_MODE", "mpp")]
}

/// The platform's namespaces of an MPP cluster (Active, the tenant's label).
fn platform_namespace(kube: &FakeKube, name: &str, created: &str) {
    kube.put(
        "namespaces",
        "",
        json!({"metadata": {"name": name, "creationTimestamp": created,
                "labels": {"tenant.paas.redhat.com/tenant": "ambient-code"}},
               "status": {"phase": "Active"}}),
    );
}

async fn conditions(dev: &DevServer, id: &str) -> String {
    dev.session(id).await["conditions"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Gives `project` the group access `admins: admin`.
async fn grant_group_access(dev: &DevServer, project: &str) {
    let mut settings = ProjectSettingsServiceClient::connect(format!("http://{}", dev.grpc()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut req = Request::new(CreateProjectSettingsRequest {
        project_id: project.into(),
        group_access: Some(r#"[{"groupName":"admins","role":"admin"}]"#.into()),
        repositories: None,
    });
    if let Ok(v) = format!("Bearer {TOKEN}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    settings
        .create_project_settings(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits for the control plane's line refusing group access to `project`.
async fn access_refused(cp: &Daemon, project: &str) {
    eventually(
        &format!("group access of {project} refused"),
        Duration::from_secs(30),
        || async {
            cp.logs().lines().any(|l| {
                l.contains("group access refused") && l.contains(&format!("project={project}"))
            })
        },
    )
    .await;
}

/// The reproduction of the issue: in mpp mode a project named `config`
/// would run in the platform's `ambient-code--config` and bind groups there.
#[tokio::test(flavor = "multi_thread")]
async fn mpp_a_project_named_config_never_uses_the_platforms_config_namespace() {
    let kube = FakeKube::start().await;
    platform_namespace(&kube, MPP_CONFIG, "2025-01-01T00:00:00Z");
    let dev = DevServer::start();
    let dir = TempDir::new("cp-mpp-config");
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &mpp_env());
    let pid = dev.project("config").await;
    assert_eq!(pid, "config");
    let sid = dev.new_session(&pid, "intruder").await;
    wait_phase(&dev, &sid, "Failed").await;
    let why = conditions(&dev, &sid).await;
    assert!(why.contains("MPP_CONFIG_NAMESPACE"), "{why}");
    grant_group_access(&dev, &pid).await;
    access_refused(&cp, &pid).await;
    for plural in ["pods", "secrets", "serviceaccounts", "rolebindings"] {
        assert!(
            kube.names(plural, "")
                .iter()
                .all(|n| !n.starts_with(&format!("{MPP_CONFIG}/"))),
            "{plural} in {MPP_CONFIG}: {:?}",
            kube.names(plural, "")
        );
    }
}

/// A namespace older than the TenantNamespace we made was not made for it.
#[tokio::test(flavor = "multi_thread")]
async fn mpp_a_namespace_older_than_its_tenant_namespace_is_refused() {
    let kube = FakeKube::start().await;
    platform_namespace(&kube, MPP_CONFIG, "2025-01-01T00:00:00Z");
    platform_namespace(&kube, "ambient-code--billing", "2025-01-01T00:00:00Z");
    let dev = DevServer::start();
    let dir = TempDir::new("cp-mpp-older");
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &mpp_env());
    let pid = dev.project("billing").await;
    let sid = dev.new_session(&pid, "intruder").await;
    wait_phase(&dev, &sid, "Failed").await;
    let why = conditions(&dev, &sid).await;
    assert!(why.contains("existed before"), "{why}");
    assert!(
        kube.names("pods", "").is_empty(),
        "{:?}",
        kube.names("pods", "")
    );
}

/// A TenantNamespace someone else made (no labels of ours) is not adopted.
#[tokio::test(flavor = "multi_thread")]
async fn mpp_a_tenant_namespace_we_did_not_create_is_refused() {
    let kube = FakeKube::start().await;
    platform_namespace(&kube, MPP_CONFIG, "2025-01-01T00:00:00Z");
    kube.put(
        "tenantnamespaces",
        MPP_CONFIG,
        json!({"metadata": {"name": "pr-test-1",
                "labels": {"tenant.paas.redhat.com/tenant": "ambient-code"}},
               "spec": {"type": "runtime"}}),
    );
    platform_namespace(&kube, "ambient-code--pr-test-1", "2026-01-01T00:00:00Z");
    let dev = DevServer::start();
    let dir = TempDir::new("cp-mpp-theirs");
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &mpp_env());
    let pid = dev.project("pr-test-1").await;
    let sid = dev.new_session(&pid, "intruder").await;
    wait_phase(&dev, &sid, "Failed").await;
    let why = conditions(&dev, &sid).await;
    assert!(why.contains("not created by this installation"), "{why}");
    let tn = kube
        .get("tenantnamespaces", MPP_CONFIG, "pr-test-1")
        .unwrap_or_default();
    assert!(
        tn["metadata"]["labels"]
            .get("ambient-code.io/managed-by")
            .is_none(),
        "relabelled: {tn}"
    );
    assert!(kube.names("pods", "").is_empty());
}

/// Standard mode: our managed-by label without this installation's label
/// is not enough (another installation's, or one labelled by hand).
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_without_our_installation_label_is_refused() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-no-installation");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    // There before the project (whose namespace is now made at once).
    kube.put(
        "namespaces",
        "",
        json!({"metadata": {"name": "half-labelled",
                "labels": {"ambient-code.io/managed-by": "ambient-control-plane"}}}),
    );
    let pid = dev.project("half-labelled").await;
    let sid = dev.new_session(&pid, "intruder").await;
    wait_phase(&dev, &sid, "Failed").await;
    let why = conditions(&dev, &sid).await;
    assert!(why.contains("not created by this installation"), "{why}");
    assert!(kube.get("pods", &pid, &pod_name(&sid)).is_none());
}

/// The cluster's and the platform's namespaces: sessions fail saying why,
/// group access is refused, and none of them is created or bound.
#[tokio::test(flavor = "multi_thread")]
async fn reserved_namespaces_get_neither_sessions_nor_group_access() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-reserved");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let cases = [
        ("ambient-code", "the control plane's own namespace"),
        ("default", "reserved by Kubernetes"),
        ("kube-tenant", "reserved by Kubernetes"),
        ("openshift-tenant", "reserved by OpenShift"),
    ];
    for (name, why) in cases {
        let pid = dev.project(name).await;
        assert_eq!(pid, name);
        let sid = dev.new_session(&pid, "intruder").await;
        wait_phase(&dev, &sid, "Failed").await;
        let said = conditions(&dev, &sid).await;
        assert!(said.contains(why), "{name}: {said}");
        grant_group_access(&dev, &pid).await;
        access_refused(&cp, &pid).await;
    }
    for (name, _) in cases {
        assert!(
            kube.names("rolebindings", "")
                .iter()
                .all(|n| !n.starts_with(&format!("{name}/"))),
            "bound in {name}: {:?}",
            kube.names("rolebindings", "")
        );
    }
    for name in ["kube-tenant", "openshift-tenant"] {
        assert!(kube.get("namespaces", "", name).is_none(), "{name} created");
    }
}
