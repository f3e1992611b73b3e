//! The fake Kubernetes API's own rules (tests/support/fake_kube), checked
//! over HTTP as a client sees them: where the control plane's tests rely on
//! the fake being as strict as a real API server, this proves it is.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::FakeKube;

async fn call(
    kube: &FakeKube,
    method: Method,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = reqwest::Client::new().request(method, format!("http://{}{path}", kube.addr));
    if let Some(b) = body {
        rb = rb.header("content-type", content_type).body(b.to_string());
    }
    let resp = rb.send().await.unwrap_or_else(|e| panic!("{e}"));
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

const APPLY: &str = "application/apply-patch+yaml";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": containers}})
}

fn lease(spec: Value) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "ambient-control-plane"}, "spec": spec})
}

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/ambient-code/leases/ambient-control-plane";

#[tokio::test(flavor = "multi_thread")]
async fn apply_removes_what_a_manager_stopped_sending_and_merges_lists_by_key() {
    let kube = FakeKube::start_for_tests_of_the_fake().await;
    let secret = "/api/v1/namespaces/ambient-code/secrets/ambient-vertex";
    let q = "?fieldManager=a&force=true";
    let body = |data: Value| {
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ambient-vertex", "labels": {"x": "1", "y": "2"}}, "data": data})
    };
    let (code, _) = call(
        &kube,
        Method::PATCH,
        &format!("{secret}{q}"),
        APPLY,
        Some(body(json!({"k1": "YQ==", "k2": "Yg=="}))),
    )
    .await;
    assert_eq!(code, 201);
    let (code, got) = call(
        &kube,
        Method::PATCH,
        &format!("{secret}{q}"),
        APPLY,
        Some(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "ambient-vertex", "labels": {"x": "1"}}, "data": {"k1": "Yw=="}})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["data"], json!({"k1": "Yw=="}), "{got}");
    assert_eq!(got["metadata"]["labels"], json!({"x": "1"}), "{got}");
    // Defaults: the Secret's type.
    assert_eq!(got["type"], "Opaque");

    // Containers merge by name, env by name.
    let pods = "/api/v1/namespaces/ambient-code/pods/p?fieldManager=a";
    let sc = json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
    let (code, got) = call(&kube, Method::PATCH, pods, APPLY, Some(pod(json!([
        {"name": "a", "image": "i:1", "securityContext": sc, "env": [{"name": "E1", "value": "1"}]},
        {"name": "b", "image": "i:1", "securityContext": sc},
    ])))).await;
    assert_eq!(code, 201, "{got}");
    assert_eq!(got["spec"]["restartPolicy"], "Always", "defaults");
    assert_eq!(
        got["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(got["status"]["phase"], "Pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_released_by_a_strategic_patch_is_free_for_another_managers_apply() {
    let kube = FakeKube::start_for_tests_of_the_fake().await;
    let hold = |who: &str| lease(json!({"holderIdentity": who, "leaseDurationSeconds": 15}));
    let (code, _) = call(
        &kube,
        Method::PATCH,
        &format!("{LEASE}?fieldManager=cp-a"),
        APPLY,
        Some(hold("a")),
    )
    .await;
    assert_eq!(code, 201);
    // Another manager's apply conflicts while the field is a's ...
    let (code, body) = call(
        &kube,
        Method::PATCH,
        &format!("{LEASE}?fieldManager=cp-b"),
        APPLY,
        Some(hold("b")),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    // ... until a releases it with nulls (an update: no owner for what is gone).
    let release = lease(json!({"holderIdentity": null, "leaseDurationSeconds": null}));
    let (code, _) = call(
        &kube,
        Method::PATCH,
        &format!("{LEASE}?fieldManager=cp-a"),
        STRATEGIC,
        Some(release),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = call(
        &kube,
        Method::PATCH,
        &format!("{LEASE}?fieldManager=cp-b"),
        APPLY,
        Some(hold("b")),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["holderIdentity"], "b");
    // A strategic patch takes the fields it changes: b's apply of the
    // duration then conflicts with that update's manager.
    let renew = lease(json!({"leaseDurationSeconds": 30}));
    let (code, _) = call(
        &kube,
        Method::PATCH,
        &format!("{LEASE}?fieldManager=cp-c"),
        STRATEGIC,
        Some(renew),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = call(
        &kube,
        Method::PATCH,
        &format!("{LEASE}?fieldManager=cp-b"),
        APPLY,
        Some(hold("b")),
    )
    .await;
    assert_eq!(code, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_subresource_and_the_main_resource_write_their_own_parts() {
    let kube = FakeKube::start_for_tests_of_the_fake().await;
    kube.put("namespaces", "", json!({"metadata": {"name": "tn"}}));
    let path = "/apis/tenant.paas.redhat.com/v1alpha1/namespaces/tn/tenantnamespaces/t";
    kube.put(
        "tenantnamespaces",
        "tn",
        json!({"metadata": {"name": "t"}, "spec": {"a": 1}, "status": {"s": 1}}),
    );
    let (code, got) = call(
        &kube,
        Method::PATCH,
        path,
        "application/merge-patch+json",
        Some(json!({"spec": {"a": 2}, "status": {"s": 2}})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(
        (got["spec"]["a"].clone(), got["status"]["s"].clone()),
        (json!(2), json!(1))
    );
    let (code, got) = call(
        &kube,
        Method::PATCH,
        &format!("{path}/status"),
        "application/merge-patch+json",
        Some(json!({"spec": {"a": 3}, "status": {"s": 3}})),
    )
    .await;
    // The control plane holds no right on tenantnamespaces/status.
    assert_eq!(code, 403, "{got}");
    assert!(
        kube.denied()
            .iter()
            .any(|d| d.contains("tenantnamespaces/status")),
        "{:?}",
        kube.denied()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_validates_names_and_labels_and_enforces_restricted_pods() {
    let kube = FakeKube::start_for_tests_of_the_fake().await;
    let ns = |name: &str, labels: Value| {
        json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}})
    };
    let apply = |name: &str| format!("/api/v1/namespaces/{name}?fieldManager=a");
    let (code, _) = call(
        &kube,
        Method::PATCH,
        &apply("Bad_Name"),
        APPLY,
        Some(ns("Bad_Name", json!({}))),
    )
    .await;
    assert_eq!(code, 422);
    let (code, _) = call(
        &kube,
        Method::PATCH,
        &apply("ok"),
        APPLY,
        Some(ns("ok", json!({"bad key!": "v"}))),
    )
    .await;
    assert_eq!(code, 422);
    let (code, _) = call(
        &kube,
        Method::PATCH,
        &apply("ok"),
        APPLY,
        Some(ns("ok", json!({"k": "x".repeat(64)}))),
    )
    .await;
    assert_eq!(code, 422);
    let (code, got) = call(
        &kube,
        Method::PATCH,
        &apply("ok"),
        APPLY,
        Some(ns("ok", json!({"k": "v"}))),
    )
    .await;
    assert_eq!(code, 201, "{got}");
    assert_eq!(
        got["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "ok"
    );
    // A pod that is not `restricted`: 403 naming the rules it breaks.
    let (code, got) = call(
        &kube,
        Method::PATCH,
        "/api/v1/namespaces/ok/pods/p?fieldManager=a",
        APPLY,
        Some(pod(json!([{"name": "c", "image": "i"}]))),
    )
    .await;
    assert_eq!(code, 403, "{got}");
    let msg = got["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("violates PodSecurity") && msg.contains("runAsNonRoot"),
        "{msg}"
    );
    // An injected webhook denial.
    kube.deny_next("namespaces", 1, "policy.example.com", "no");
    let (code, got) = call(
        &kube,
        Method::PATCH,
        &apply("ok2"),
        APPLY,
        Some(ns("ok2", json!({}))),
    )
    .await;
    assert_eq!(code, 403);
    assert!(
        got["message"]
            .as_str()
            .unwrap_or_default()
            .contains("denied the request"),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_expire_their_continue_tokens_and_refuse_unknown_selectors() {
    let kube = FakeKube::start_for_tests_of_the_fake().await;
    for i in 0..5 {
        kube.put(
            "namespaces",
            "",
            json!({"metadata": {"name": format!("n{i}"), "labels": {"k": "v"}}}),
        );
    }
    let list = |q: &str| format!("/api/v1/namespaces?labelSelector=k%3Dv{q}");
    let (code, page) = call(&kube, Method::GET, &list("&limit=2"), "", None).await;
    assert_eq!(code, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["metadata"]["remainingItemCount"], 3);
    let token = page["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (code, next) = call(
        &kube,
        Method::GET,
        &list(&format!("&limit=2&continue={token}")),
        "",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(next["items"][0]["metadata"]["name"], "n2");
    let token = next["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    kube.put("namespaces", "", json!({"metadata": {"name": "n9"}}));
    kube.compact();
    let (code, _) = call(
        &kube,
        Method::GET,
        &list(&format!("&limit=2&continue={token}")),
        "",
        None,
    )
    .await;
    assert_eq!(code, 410, "an expired continue token");
    for bad in ["k%3D%3D%3Dv", "k+in+v", "a%2Cb%3D%3F"] {
        let (code, _) = call(
            &kube,
            Method::GET,
            &format!("/api/v1/namespaces?labelSelector={bad}"),
            "",
            None,
        )
        .await;
        assert_eq!(code, 400, "{bad}");
    }
    let (code, _) = call(
        &kube,
        Method::GET,
        "/api/v1/namespaces?fieldSelector=status.phase%3DActive",
        "",
        None,
    )
    .await;
    assert_eq!(code, 400, "an unsupported field selector");
    let (code, got) = call(
        &kube,
        Method::GET,
        "/api/v1/namespaces?labelSelector=k+in+(v,w),!gone",
        "",
        None,
    )
    .await;
    assert_eq!(
        (code, got["items"].as_array().map(Vec::len)),
        (200, Some(5)),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_follows_finalizers_propagation_and_grace() {
    let kube = FakeKube::start_for_tests_of_the_fake().await;
    kube.put(
        "serviceaccounts",
        "ambient-code",
        json!({"metadata": {"name": "owner"}}),
    );
    let uid = kube
        .get("serviceaccounts", "ambient-code", "owner")
        .map(|o| o["metadata"]["uid"].clone())
        .unwrap_or_default();
    let owned = |name: &str| {
        json!({"metadata": {"name": name,
        "ownerReferences": [{"apiVersion": "v1", "kind": "ServiceAccount", "name": "owner", "uid": uid}]}})
    };
    kube.put("pods", "ambient-code", owned("dep"));
    // Orphan: the dependent stays, without its reference.
    let sa = "/api/v1/namespaces/ambient-code/serviceaccounts/owner";
    let (code, _) = call(
        &kube,
        Method::DELETE,
        sa,
        "application/json",
        Some(json!({"propagationPolicy": "Orphan"})),
    )
    .await;
    assert_eq!(code, 200);
    let dep = kube.get("pods", "ambient-code", "dep").unwrap_or_default();
    assert_eq!(dep["metadata"]["ownerReferences"], json!([]), "{dep}");

    // Finalizers hold an object until a write removes them.
    kube.put(
        "serviceaccounts",
        "ambient-code",
        json!({"metadata": {"name": "held", "finalizers": ["x/y"]}}),
    );
    let held = "/api/v1/namespaces/ambient-code/serviceaccounts/held";
    let (code, got) = call(&kube, Method::DELETE, held, "", None).await;
    assert_eq!(code, 200);
    assert!(got["metadata"]["deletionTimestamp"].is_string(), "{got}");
    assert!(
        kube.get("serviceaccounts", "ambient-code", "held")
            .is_some()
    );
    let (code, _) = call(
        &kube,
        Method::PATCH,
        &format!("{held}?fieldManager=f"),
        "application/merge-patch+json",
        Some(json!({"metadata": {"finalizers": null}})),
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        kube.get("serviceaccounts", "ambient-code", "held")
            .is_none()
    );
}
