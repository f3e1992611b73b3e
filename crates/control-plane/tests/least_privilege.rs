//! Issue 24 item 3: no cluster-wide read of Secrets. The FAKE Kubernetes
//! API authorises every request against `rbac.yaml` (403 otherwise, see
//! tests/support/fake_kube/rbac.rs); a whole session lifecycle, Vertex key
//! rotation and cleanup included, must need nothing it does not grant, and
//! must never list or watch Secrets beyond the one named source Secret.

mod support;

use std::time::Duration;

use ambient_protocol::v1::CreateProjectSettingsRequest;
use ambient_protocol::v1::project_settings_service_client::ProjectSettingsServiceClient;
use integration_tests::TempDir;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;
use tonic::Request;

/// rbac.yaml itself: no `list`/`watch` on Secrets across namespaces, and
/// in the control plane's namespace only for named Secrets.
#[test]
fn rbac_yaml_grants_no_list_or_watch_of_secrets_beyond_named_ones() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let on_secrets = |scope: &str| -> Vec<Value> {
        doc[scope]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .is_some_and(|res| res.iter().any(|x| x == "secrets" || x == "*"))
            })
            .cloned()
            .collect()
    };
    let reads = |r: &Value| {
        r["verbs"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "list" || x == "watch" || x == "*"))
    };
    for rule in on_secrets("cluster") {
        assert!(!reads(&rule), "cluster-wide list/watch of Secrets: {rule}");
    }
    for rule in on_secrets("namespace") {
        let named = rule["resourceNames"]
            .as_array()
            .is_some_and(|n| !n.is_empty());
        assert!(
            !reads(&rule) || named,
            "unnamed list/watch of Secrets: {rule}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_lifecycle_needs_nothing_rbac_yaml_does_not_grant() {
    let kube = FakeKube::start().await;
    let key = |v: &str| {
        json!({"metadata": {"name": "ambient-vertex", "namespace": "ambient-code"},
               "type": "Opaque", "data": {"ambient-code-key.json": v}})
    };
    kube.put("secrets", "ambient-code", key("a2V5LTE="));
    let dev = DevServer::start();
    let dir = TempDir::new("cp-least-privilege");
    let env = [("AMBIENT_API_TOKEN", TOKEN), ("USE_VERTEX", "1")];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", true, &env);

    let pid = dev.project("least-privilege").await;
    let sid = dev.new_session(&pid, "whole-life").await;
    wait_phase(&dev, &sid, "Creating").await;
    assert!(kube.set_runner_state(&pid, &pod_name(&sid), running()));
    wait_phase(&dev, &sid, "Running").await;

    // Group access, then the key rotates: the copy follows.
    let mut settings = ProjectSettingsServiceClient::connect(format!("http://{}", dev.grpc()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut req = Request::new(CreateProjectSettingsRequest {
        project_id: pid.clone(),
        group_access: Some(r#"[{"groupName":"devs","role":"edit"}]"#.into()),
        repositories: None,
    });
    if let Ok(v) = format!("Bearer {TOKEN}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    settings
        .create_project_settings(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("group binding", Duration::from_secs(30), || async {
        kube.get("rolebindings", &pid, "devs-edit").is_some()
    })
    .await;
    kube.put("secrets", "ambient-code", key("a2V5LTI="));
    eventually("copy refreshed", Duration::from_secs(30), || async {
        kube.get("secrets", &pid, "ambient-vertex")
            .is_some_and(|c| c["data"]["ambient-code-key.json"] == "a2V5LTI=")
    })
    .await;

    // It completes, is deleted (its objects go), and so is its project.
    assert!(kube.set_runner_state(&pid, &pod_name(&sid), exited(0)));
    wait_phase(&dev, &sid, "Completed").await;
    let (code, _) = dev
        .call(Method::DELETE, &format!("/sessions/{sid}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    wait_cleaned(&kube, &sid, "the deleted session's objects removed").await;
    let (code, _) = dev
        .call(Method::DELETE, &format!("/projects/{pid}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    eventually(
        "project namespace removed",
        Duration::from_secs(30),
        || async { kube.get("namespaces", "", &pid).is_none() },
    )
    .await;

    assert!(
        kube.denied().is_empty(),
        "calls rbac.yaml does not grant:\n{}\n{}",
        kube.denied().join("\n"),
        cp.logs()
    );
    let secret_reads: Vec<String> = kube
        .requests()
        .iter()
        .filter(|r| r.plural == "secrets" && (r.method == "LIST" || r.method == "WATCH"))
        .map(|r| format!("{} secrets in {:?}", r.method, r.namespace))
        .collect();
    assert!(!secret_reads.is_empty(), "the Vertex source is not watched");
    assert!(
        secret_reads
            .iter()
            .all(|r| r.ends_with("in \"ambient-code\"")),
        "{secret_reads:?}"
    );
}

/// The fake does refuse what rbac.yaml does not grant (so the test above
/// can fail): a cluster-wide list of Secrets is 403 and recorded.
#[tokio::test(flavor = "multi_thread")]
async fn the_fake_refuses_a_cluster_wide_list_of_secrets() {
    let kube = FakeKube::start().await;
    let url = format!("http://{}/api/v1/secrets", kube.addr);
    let code = reqwest::get(&url)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or_default();
    assert_eq!(code, 403);
    assert_eq!(kube.denied().len(), 1, "{:?}", kube.denied());
    let named = format!(
        "http://{}/api/v1/namespaces/ambient-code/secrets?fieldSelector=metadata.name%3Dambient-vertex",
        kube.addr
    );
    let code = reqwest::get(&named)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or_default();
    assert_eq!(code, 200);
}
