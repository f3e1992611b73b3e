//! Issue 27: the project reconciler. A project the API knows gets its
//! namespace, `ambient-runner-secrets`, the project-manager Role and
//! RoleBinding, its creator's admin RoleBinding and its ProjectSettings,
//! kept converged and removed with it; never in a namespace that is not
//! ours, and never an admin binding for whoever rewrites the annotation
//! later. Also the network policy shared with other control planes. The
//! real binary and devserver with the FAKE Kubernetes API.

mod support;

use std::time::Duration;

use integration_tests::{Daemon, TempDir};
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// A control plane that resyncs every second (drift is found by resync).
fn start(dev: &DevServer, kube: &FakeKube, dir: &TempDir) -> Daemon {
    let env = [("AMBIENT_API_TOKEN", TOKEN), ("CP_RESYNC_SECONDS", "1")];
    control_plane_with(dev, kube, dir, "cp-a", false, &env)
}

/// Creates project `name` whose creator annotation says `creator`.
async fn project_by(dev: &DevServer, name: &str, creator: &str) -> String {
    let annotations = json!({"ambient-code.io/created-by": creator}).to_string();
    let (code, p) = dev
        .call(
            Method::POST,
            "/projects",
            Some(json!({"name": name, "annotations": annotations})),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    p["id"].as_str().unwrap_or_default().to_owned()
}

/// Waits until `plural` `ns/name` exists.
async fn exists(kube: &FakeKube, plural: &str, ns: &str, name: &str) -> Value {
    eventually(&format!("{plural} {ns}/{name}"), LIMIT, || async {
        kube.get(plural, ns, name).is_some()
    })
    .await;
    kube.get(plural, ns, name).unwrap_or_default()
}

/// Waits for a control-plane log line containing every one of `parts`.
async fn logged(cp: &Daemon, parts: &[&str]) {
    eventually(&format!("a log line with {parts:?}"), LIMIT, || async {
        cp.logs()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    })
    .await;
}

/// What a namespace holds of the kinds the project reconciler writes.
fn written_in(kube: &FakeKube, ns: &str) -> Vec<String> {
    ["secrets", "roles", "rolebindings", "projectsettings"]
        .iter()
        .flat_map(|p| kube.names(p, ""))
        .filter(|n| n.starts_with(&format!("{ns}/")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_gets_its_objects_kept_and_removed_with_it() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-projects");
    let _cp = start(&dev, &kube, &dir);
    let pid = project_by(&dev, "payments", "alice").await;
    let (code, s) = dev
        .call(
            Method::POST,
            "/project_settings",
            Some(json!({"project_id": pid,
                "group_access": r#"[{"groupName":"devs","role":"Edit"}]"#,
                "repositories": r#"[{"url":"https://git.example/p.git","branch":"main"}]"#})),
        )
        .await;
    assert_eq!(code, 201, "{s}");

    // Created with the project: no session needed.
    let ns = exists(&kube, "namespaces", "", &pid).await;
    assert_eq!(
        ns["metadata"]["labels"]["ambient-code.io/managed-by"],
        "ambient-control-plane"
    );
    let secret = exists(&kube, "secrets", &pid, "ambient-runner-secrets").await;
    assert_eq!(secret["stringData"]["ANTHROPIC_API_KEY"], "");
    let role = exists(
        &kube,
        "roles",
        &pid,
        "ambient-control-plane-project-manager",
    )
    .await;
    assert!(role["rules"].as_array().is_some_and(|r| !r.is_empty()));
    let rb = exists(
        &kube,
        "rolebindings",
        &pid,
        "ambient-control-plane-project-manager",
    )
    .await;
    assert_eq!(rb["roleRef"]["kind"], "Role");
    assert_eq!(rb["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(rb["subjects"][0]["namespace"], "ambient-code");
    let admin = exists(&kube, "rolebindings", &pid, "ambient-admin-alice").await;
    assert_eq!(admin["roleRef"]["name"], "ambient-project-admin");
    assert_eq!(admin["subjects"][0]["kind"], "User");
    assert_eq!(admin["subjects"][0]["name"], "alice");
    exists(&kube, "rolebindings", &pid, "devs-edit").await;
    eventually("ProjectSettings from the API's settings", LIMIT, || async {
        kube.get("projectsettings", &pid, "projectsettings")
            .is_some_and(|o| {
                o["spec"]["groupAccess"] == json!([{"groupName": "devs", "role": "edit"}])
                    && o["spec"]["repositories"][0]["url"] == "https://git.example/p.git"
            })
    })
    .await;

    // Drift: what goes is put back; the users' Secret is never rewritten.
    kube.put(
        "secrets",
        &pid,
        json!({"metadata": {"name": "ambient-runner-secrets"},
               "stringData": {"ANTHROPIC_API_KEY": "sk-users-own"}}),
    );
    for (plural, name) in [
        ("roles", "ambient-control-plane-project-manager"),
        ("rolebindings", "ambient-control-plane-project-manager"),
        ("rolebindings", "ambient-admin-alice"),
        ("projectsettings", "projectsettings"),
    ] {
        assert!(kube.delete_object(plural, &pid, name), "{plural}/{name}");
    }
    for (plural, name) in [
        ("roles", "ambient-control-plane-project-manager"),
        ("rolebindings", "ambient-control-plane-project-manager"),
        ("rolebindings", "ambient-admin-alice"),
        ("projectsettings", "projectsettings"),
    ] {
        exists(&kube, plural, &pid, name).await;
    }
    assert_eq!(
        kube.get("secrets", &pid, "ambient-runner-secrets")
            .map(|s| s["stringData"]["ANTHROPIC_API_KEY"].clone()),
        Some(json!("sk-users-own"))
    );

    // Deleted with the project.
    let (code, _) = dev
        .call(Method::DELETE, &format!("/projects/{pid}"), None)
        .await;
    assert!(code == 204 || code == 200, "{code}");
    eventually(
        "the project's namespace and objects gone",
        LIMIT,
        || async {
            kube.get("namespaces", "", &pid).is_none() && written_in(&kube, &pid).is_empty()
        },
    )
    .await;
    assert!(kube.denied().is_empty(), "{:?}", kube.denied());
}

/// The cannot cells: a project named after a namespace that is not ours,
/// or a reserved one, gets nothing there — no admin binding for the
/// creator it claims.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_or_reserved_namespace_gets_nothing() {
    let kube = FakeKube::start().await;
    kube.put(
        "namespaces",
        "",
        json!({"metadata": {"name": "billing", "labels": {"team": "billing"}}}),
    );
    let dev = DevServer::start();
    let dir = TempDir::new("cp-projects-foreign");
    let cp = start(&dev, &kube, &dir);
    let foreign = project_by(&dev, "billing", "mallory").await;
    let reserved = project_by(&dev, "default", "mallory").await;
    for pid in [&foreign, &reserved] {
        logged(&cp, &["project objects refused", &format!("project={pid}")]).await;
    }
    for ns in ["billing", "default"] {
        assert!(
            written_in(&kube, ns).is_empty(),
            "{ns}: {:?}",
            written_in(&kube, ns)
        );
    }
    let billing = kube.get("namespaces", "", "billing").unwrap_or_default();
    assert_eq!(billing["metadata"]["labels"], json!({"team": "billing"}));
}

/// Anyone who may edit a project through the API (a session's agent
/// included, through the gateway) can rewrite its annotations: the first
/// creator keeps the admin binding and no one else is bound; a system
/// identity is never bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_creator_annotation_binds_no_one_else() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-projects-creator");
    let cp = start(&dev, &kube, &dir);
    let pid = project_by(&dev, "ledger", "alice").await;
    exists(&kube, "rolebindings", &pid, "ambient-admin-alice").await;
    let annotations = json!({"ambient-code.io/created-by": "mallory"}).to_string();
    let (code, p) = dev
        .call(
            Method::PATCH,
            &format!("/projects/{pid}"),
            Some(json!({"annotations": annotations})),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    logged(
        &cp,
        &["created-by annotation changed", &format!("project={pid}")],
    )
    .await;
    assert!(
        kube.get("rolebindings", &pid, "ambient-admin-mallory")
            .is_none()
    );
    assert!(
        kube.get("rolebindings", &pid, "ambient-admin-alice")
            .is_some()
    );

    let anon = project_by(&dev, "open-door", "system:anonymous").await;
    logged(&cp, &["names no one", &format!("project={anon}")]).await;
    exists(
        &kube,
        "roles",
        &anon,
        "ambient-control-plane-project-manager",
    )
    .await;
    let admins: Vec<String> = kube
        .names("rolebindings", "")
        .into_iter()
        .filter(|n| n.starts_with(&format!("{anon}/ambient-admin-")))
        .collect();
    assert!(admins.is_empty(), "{admins:?}");
}

/// The reference merges control-plane namespaces into one policy: a peer
/// another control plane put in the `from` list stays when ours is added.
/// (Before, server-side apply replaced the list with ours alone.)
#[tokio::test(flavor = "multi_thread")]
async fn the_network_policy_keeps_other_control_planes() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-projects-netpol");
    let _cp = start(&dev, &kube, &dir);
    let pid = dev.project("shared").await;
    exists(&kube, "namespaces", "", &pid).await;
    let other = json!({"namespaceSelector": {"matchLabels":
        {"kubernetes.io/metadata.name": "other-control-plane"}}});
    kube.put(
        "networkpolicies",
        &pid,
        json!({"metadata": {"name": "allow-ambient-api-server"},
               "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [other.clone()],
                                     "ports": [{"protocol": "TCP", "port": 8001}]}]}}),
    );
    let sid = dev.new_session(&pid, "s").await;
    wait_phase(&dev, &sid, "Creating").await;
    let np = kube
        .get("networkpolicies", &pid, "allow-ambient-api-server")
        .unwrap_or_default();
    let from = np["spec"]["ingress"][0]["from"].clone();
    let ours = json!({"namespaceSelector": {"matchLabels":
        {"kubernetes.io/metadata.name": "ambient-code"}}});
    assert_eq!(from, json!([other, ours]), "{np}");
}
