//! Which credentials a session gets (wire.md §2), end to end: role bindings,
//! roles and credentials created over REST on the real devserver, the real
//! control plane, and a FAKE Kubernetes API (tests/support/fake_kube).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::TempDir;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

const IDENTITY: &str = "svc-control-plane";

async fn post(dev: &DevServer, path: &str, body: Value) -> Value {
    let (code, v) = dev.call(Method::POST, path, Some(body)).await;
    assert_eq!(code, 201, "POST {path}: {v}");
    v
}

async fn credential(dev: &DevServer, name: &str, provider: &str) -> String {
    let c = post(
        dev,
        "/credentials",
        json!({"name": name, "provider": provider, "token": format!("tok-{name}")}),
    )
    .await;
    c["id"].as_str().unwrap_or_default().to_owned()
}

/// An injection binding as `acpctl credential bind` makes it (role by name).
async fn bind(dev: &DevServer, cred: &str, project: Option<&str>, agent: Option<&str>) {
    post(
        dev,
        "/role_bindings",
        json!({"role_id": "credential:viewer", "scope": "credential", "credential_id": cred,
               "project_id": project, "agent_id": agent}),
    )
    .await;
}

async fn bindings_of(dev: &DevServer, session: &str) -> Vec<Value> {
    let search = format!("session_id = '{session}'");
    let url = format!("/role_bindings?search={}", search.replace(' ', "%20"));
    let (code, v) = dev.call(Method::GET, &url, None).await;
    assert_eq!(code, 200, "{v}");
    v["items"].as_array().cloned().unwrap_or_default()
}

fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_come_from_role_binding_tiers_and_grants_follow_the_session() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-credentials");

    let project = post(
        &dev,
        "/projects",
        json!({"name": "cred-p", "prompt": "project rules"}),
    )
    .await;
    let pid = project["id"].as_str().unwrap_or_default().to_owned();
    let agent = post(
        &dev,
        &format!("/projects/{pid}/agents"),
        json!({"project_id": pid, "name": "reviewer", "prompt": "you review"}),
    )
    .await;
    let aid = agent["id"].as_str().unwrap_or_default().to_owned();
    post(
        &dev,
        &format!("/projects/{pid}/agents/{aid}/inbox"),
        json!({"body": "look at PR 7"}),
    )
    .await;

    // Global: github and jira. Project: two githubs (the earlier wins).
    // Agent: google, and a github that overrides the project's.
    let gh_global = credential(&dev, "gh-global", "github").await;
    let jira_global = credential(&dev, "jira-global", "jira").await;
    let gh_early = credential(&dev, "gh-early", "github").await;
    let gh_late = credential(&dev, "gh-late", "github").await;
    let google_agent = credential(&dev, "google-agent", "google").await;
    let gh_agent = credential(&dev, "gh-agent", "github").await;
    let other_project = credential(&dev, "gh-other", "github").await;
    // No sidecar image for gitlab: resolved, not delivered, reported.
    let gitlab = credential(&dev, "gitlab-proj", "gitlab").await;
    bind(&dev, &gitlab, Some(&pid), None).await;
    bind(&dev, &gh_global, None, None).await;
    bind(&dev, &jira_global, None, None).await;
    bind(&dev, &gh_early, Some(&pid), None).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    bind(&dev, &gh_late, Some(&pid), None).await;
    bind(&dev, &google_agent, Some(&pid), Some(&aid)).await;
    bind(&dev, &gh_agent, Some(&pid), Some(&aid)).await;
    bind(&dev, &other_project, Some("someone-else"), None).await;

    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("GRPC_SERVICE_ACCOUNT", IDENTITY),
        ("GITHUB_MCP_IMAGE", "gh:1"),
        ("JIRA_MCP_IMAGE", "jira:1"),
        ("GOOGLE_MCP_IMAGE", "google:1"),
    ];
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);

    // A session of the agent: agent > project > global.
    let with_agent = post(
        &dev,
        "/sessions",
        json!({"name": "agent-session", "project_id": pid, "agent_id": aid, "prompt": "go"}),
    )
    .await;
    let sid = with_agent["id"].as_str().unwrap_or_default().to_owned();
    wait_phase(&dev, &sid, "Creating").await;
    let pod = kube
        .get("pods", &pid, &pod_name(&sid))
        .unwrap_or_else(|| panic!("no pod"));
    let runner = env_of(container(&pod, "ambient-code-runner"));
    let urls: Value = serde_json::from_str(&runner["CREDENTIAL_MCP_URLS"]).unwrap_or_default();
    assert_eq!(
        urls,
        json!({"github": "http://localhost:8091", "jira": "http://localhost:8092",
               "google": "http://localhost:8094"})
    );
    let ids = |name: &str| env_of(container(&pod, name))["CREDENTIAL_IDS"].clone();
    assert_eq!(
        ids("credential-github"),
        json!({"github": gh_agent}).to_string()
    );
    assert_eq!(
        ids("credential-jira"),
        json!({"jira": jira_global}).to_string()
    );
    assert_eq!(
        ids("credential-google"),
        json!({"google": google_agent}).to_string()
    );
    assert_eq!(
        runner["INITIAL_PROMPT"],
        "project rules\n\nyou review\n\nlook at PR 7\n\ngo"
    );

    // Its token-reader grants: one per delivered credential, for our identity.
    let (_, roles) = dev
        .call(
            Method::GET,
            "/roles?search=name%20%3D%20%27credential%3Atoken-reader%27",
            None,
        )
        .await;
    let reader = roles["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let grants = bindings_of(&dev, &sid).await;
    let mut granted: Vec<&str> = grants
        .iter()
        .map(|b| {
            assert_eq!(b["user_id"], IDENTITY);
            assert_eq!(b["role_id"], reader.as_str());
            assert_eq!(b["scope"], "credential");
            b["credential_id"].as_str().unwrap_or_default()
        })
        .collect();
    granted.sort_unstable();
    let mut want = vec![
        gh_agent.as_str(),
        jira_global.as_str(),
        google_agent.as_str(),
    ];
    want.sort_unstable();
    assert_eq!(granted, want);

    // A session without the agent: project > global; the agent's do not count,
    // nor do other projects', nor the first session's grants.
    let plain = dev.new_session(&pid, "project-session").await;
    wait_phase(&dev, &plain, "Creating").await;
    let pod2 = kube
        .get("pods", &pid, &pod_name(&plain))
        .unwrap_or_else(|| panic!("no pod"));
    let ids2 = |name: &str| env_of(container(&pod2, name))["CREDENTIAL_IDS"].clone();
    assert_eq!(
        ids2("credential-github"),
        json!({"github": gh_early}).to_string()
    );
    assert_eq!(
        ids2("credential-jira"),
        json!({"jira": jira_global}).to_string()
    );
    assert!(
        pod2["spec"]["containers"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["name"] != "credential-google"))
    );
    assert_eq!(bindings_of(&dev, &plain).await.len(), 2);
    let conditions = dev.session(&plain).await["conditions"].clone();
    let conditions = conditions.as_str().unwrap_or_default();
    assert!(
        conditions.contains("CredentialsDelivered") && conditions.contains("gitlab"),
        "{conditions}"
    );

    // Stop → Stopped: the grants go. Delete: the other session's go too.
    let (code, _) = dev
        .call(Method::POST, &format!("/sessions/{sid}/stop"), None)
        .await;
    assert_eq!(code, 200);
    wait_phase(&dev, &sid, "Stopped").await;
    eventually(
        "grants revoked on stop",
        Duration::from_secs(30),
        || async { bindings_of(&dev, &sid).await.is_empty() },
    )
    .await;
    let (code, _) = dev
        .call(Method::DELETE, &format!("/sessions/{plain}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    eventually(
        "grants revoked on delete",
        Duration::from_secs(30),
        || async { bindings_of(&dev, &plain).await.is_empty() },
    )
    .await;
    // The injection bindings themselves are untouched.
    let (_, all) = dev
        .call(
            Method::GET,
            "/role_bindings?search=role_id%20%3D%20%27credential%3Aviewer%27",
            None,
        )
        .await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(8));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_credential_lookup_is_retried_not_skipped() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-credentials-retry");
    let pid = dev.project("retry-p").await;
    let gh = credential(&dev, "gh", "github").await;
    bind(&dev, &gh, Some(&pid), None).await;
    // The control plane's REST side points at a port nobody listens on
    // first: no session may start without its credentials.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let dead_url = format!(
        "http://{}",
        dead.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    drop(dead);
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("GITHUB_MCP_IMAGE", "gh:1"),
        ("AMBIENT_API_SERVER_URL", dead_url.as_str()),
    ];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);
    let sid = dev.new_session(&pid, "needs-creds").await;
    // The control plane's own signal that it tried and failed: its log.
    eventually("a failed reconcile", Duration::from_secs(30), || async {
        cp.logs().contains("reconcile failed")
    })
    .await;
    assert_eq!(dev.phase(&sid).await, "", "started without its credentials");
    assert!(kube.get("pods", &pid, &pod_name(&sid)).is_none());
    assert!(
        cp.logs().contains("reconcile failed"),
        "no retry logged:\n{}",
        cp.logs()
    );
}
