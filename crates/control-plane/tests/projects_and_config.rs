//! Projects, project settings, health endpoints and configuration errors over
//! the real binary, with a FAKE Kubernetes API (tests/support/fake_kube.rs).

mod support;

use std::process::Command;
use std::time::Duration;

use ambient_protocol::v1::project_settings_service_client::ProjectSettingsServiceClient;
use ambient_protocol::v1::{CreateProjectSettingsRequest, UpdateProjectSettingsRequest};
use integration_tests::TempDir;
use reqwest::Method;
use serde_json::json;
use support::*;
use tonic::Request;

fn authed<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    if let Ok(v) = format!("Bearer {TOKEN}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn group_access_is_reconciled_and_pruned_and_project_delete_removes_its_namespace() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-projects");
    let cp = control_plane(&dev, &kube, &dir, "cp-a", false);

    let (code, project) = dev
        .call(Method::POST, "/projects", Some(json!({"name": "team-x"})))
        .await;
    assert_eq!(code, 201, "{project}");
    let pid = project["id"].as_str().unwrap_or_default().to_owned();
    let ns = pid.to_lowercase();
    let session = dev.new_session(&pid, "in-project").await;
    wait_phase(&dev, &session, "Creating").await;
    assert!(kube.get("namespaces", "", &ns).is_some());

    let mut settings = ProjectSettingsServiceClient::connect(format!("http://{}", dev.grpc()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let created = settings
        .create_project_settings(authed(CreateProjectSettingsRequest {
            project_id: pid.clone(),
            group_access: Some(
                r#"[{"groupName":"devs","role":"edit"},{"groupName":"ops","role":"admin"}]"#.into(),
            ),
            repositories: None,
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let selector = "ambient-code.io/group-access=true";
    eventually(
        "two group RoleBindings",
        Duration::from_secs(30),
        || async { kube.names("rolebindings", selector).len() == 2 },
    )
    .await;
    let rb = kube
        .get("rolebindings", &ns, "devs-edit")
        .unwrap_or_else(|| panic!("no devs binding: {:?}", kube.names("rolebindings", "")));
    assert_eq!(rb["roleRef"]["name"], "ambient-project-edit");
    assert_eq!(rb["subjects"][0]["kind"], "Group");
    assert_eq!(rb["subjects"][0]["name"], "devs");

    // ops removed → its binding is pruned.
    let id = created.metadata.map(|m| m.id).unwrap_or_default();
    settings
        .update_project_settings(authed(UpdateProjectSettingsRequest {
            id,
            group_access: Some(r#"[{"groupName":"devs","role":"edit"}]"#.into()),
            ..UpdateProjectSettingsRequest::default()
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("ops binding pruned", Duration::from_secs(30), || async {
        kube.names("rolebindings", selector) == vec![format!("{ns}/devs-edit")]
    })
    .await;

    // Deleting the project keeps its namespace while a session still runs in
    // it, and removes it once the session is gone.
    let (code, _) = dev
        .call(Method::DELETE, &format!("/projects/{pid}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    // The control plane's own word that it handled the deletion and kept
    // the namespace; only then is the namespace's presence meaningful.
    eventually(
        "the project deletion handled",
        Duration::from_secs(30),
        || async {
            cp.logs()
                .contains("keeping its namespace while sessions still run")
        },
    )
    .await;
    assert!(
        kube.get("namespaces", "", &ns).is_some(),
        "removed under a live session"
    );
    assert!(kube.get("pods", &ns, &pod_name(&session)).is_some());
    let (code, _) = dev
        .call(Method::DELETE, &format!("/sessions/{session}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    let removed = || async { kube.get("namespaces", "", &ns).is_none() };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !removed().await && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log: Vec<String> = kube
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}/{} {}",
                r.method, r.plural, r.namespace, r.name, r.status
            )
        })
        .collect();
    assert!(
        removed().await,
        "project namespace not removed; logs:\n{}\n{log:#?}",
        cp.logs()
    );

    // Health and metrics.
    let base = format!("http://{}", cp.addr("health"));
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let r = reqwest::get(url).await.unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let (code, metrics) = get("/metrics").await;
    assert_eq!(code, 200);
    for name in [
        "ambient_control_plane_queue_depth",
        "ambient_control_plane_reconciles_total",
        "ambient_control_plane_reconcile_duration_seconds",
        "ambient_control_plane_watch_reconnects_total",
        "ambient_control_plane_phase_writes_total{phase=\"Creating\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
}

fn run_cp(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ambient-control-plane"));
    cmd.env_clear().args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn bad_auth_settings_stop_startup_with_one_line() {
    for (envs, needle) in [
        (vec![], "AMBIENT_API_TOKEN"),
        (
            vec![("AMBIENT_API_TOKEN", "t"), ("OIDC_CLIENT_ID", "i")],
            "OIDC_CLIENT_SECRET",
        ),
        (vec![("OIDC_CLIENT_ID", "i")], "OIDC_CLIENT_SECRET"),
        (
            vec![
                ("OIDC_CLIENT_ID", "i"),
                ("OIDC_CLIENT_SECRET", "s3cr3t-value"),
                ("OIDC_TOKEN_URL", "http://sso.example.com/token"),
            ],
            "OIDC_TOKEN_URL",
        ),
        (
            vec![("AMBIENT_API_TOKEN", "t"), ("RUNNER_MEMORY_LIMIT", "4GB")],
            "RUNNER_MEMORY_LIMIT",
        ),
        (vec![("AMBIENT_API_TOKEN", "t"), ("MODE", "prod")], "prod"),
        (
            vec![
                ("AMBIENT_API_TOKEN", "t"),
                ("CP_TOKEN_LISTEN_ADDR", "nonsense"),
            ],
            "CP_TOKEN_LISTEN_ADDR",
        ),
    ] {
        let out = run_cp(&[], &envs);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{envs:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
        assert!(!stderr.contains("s3cr3t-value"));
    }
}

#[test]
fn a_secret_value_on_the_command_line_is_refused_without_being_printed() {
    for (flag, env) in [
        ("--api-token", "AMBIENT_API_TOKEN"),
        ("--oidc-client-secret", "OIDC_CLIENT_SECRET"),
        ("--anthropic-api-key", "ANTHROPIC_API_KEY"),
    ] {
        let out = run_cp(&[flag, "argv-SECRET-value"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(env), "{stderr}");
        assert!(!stderr.contains("argv-SECRET-value"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    // From the environment the same values pass the refusal: startup goes
    // on to the next check (here a bad listen address) and stops there.
    let out = run_cp(
        &[],
        &[
            ("AMBIENT_API_TOKEN", "env-SECRET-value"),
            ("OIDC_CLIENT_ID", "cp"),
            ("OIDC_CLIENT_SECRET", "env-SECRET-value"),
            ("ANTHROPIC_API_KEY", "env-SECRET-value"),
            ("CP_TOKEN_LISTEN_ADDR", "nonsense"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CP_TOKEN_LISTEN_ADDR"), "{stderr}");
    assert!(!stderr.contains("command line"), "{stderr}");
    assert!(!stderr.contains("env-SECRET-value"), "{stderr}");
}

#[test]
fn help_documents_env_vars_and_hides_secret_values() {
    let out = run_cp(
        &["--help"],
        &[
            ("AMBIENT_API_TOKEN", "tok-VISIBLE?"),
            ("OIDC_CLIENT_SECRET", "oidc-VISIBLE?"),
            ("ANTHROPIC_API_KEY", "sk-VISIBLE?"),
        ],
    );
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for env in [
        "AMBIENT_API_SERVER_URL",
        "AMBIENT_API_TOKEN",
        "OIDC_TOKEN_URL",
        "AMBIENT_GRPC_SERVER_ADDR",
        "PLATFORM_MODE",
        "CP_RUNTIME_NAMESPACE",
        "RUNNER_IMAGE",
        "MCP_IMAGE",
        "GITHUB_MCP_IMAGE",
        "CP_TOKEN_LISTEN_ADDR",
        "CP_TOKEN_URL",
        "CP_TOKEN_REQUIRE_V2",
        "CP_TOKEN_REQUIRE_V3",
        "IMAGE_PULL_SECRET",
        "ANTHROPIC_API_KEY",
        "USE_VERTEX",
        "KUBECONFIG",
        "CP_INSTALLATION_ID",
        "MODE",
        "RECONCILERS",
        "MPP_CONFIG_NAMESPACE",
        "PROJECT_KUBE_TOKEN_FILE",
        "RUNNER_IMAGE_NAMESPACE",
        "GRPC_SERVICE_ACCOUNT",
        "VERTEX_SECRET_NAME",
        "VERTEX_SECRET_NAMESPACE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLOUD_ML_REGION",
        "ANTHROPIC_VERTEX_PROJECT_ID",
        "CP_RUNTIME",
        "CP_STATE_DIR",
        "CP_RUNNER_COMMAND",
        "CP_MCP_COMMAND",
        "CP_CREDENTIAL_ENTRYPOINT",
        "CP_CREDENTIAL_COMMANDS",
        "CP_CREDENTIAL_REFRESH_SECONDS",
        "CP_STOP_SESSIONS_ON_EXIT",
    ] {
        assert!(help.contains(env), "{env} missing from --help");
    }
    assert!(
        !help.contains("VISIBLE"),
        "a secret value is printed by --help"
    );
    let options = help_options(&help);
    assert!(options.len() > 60, "too few options parsed: {options:?}");
    let without: Vec<&str> = options
        .iter()
        .filter(|(flag, _)| !matches!(flag.as_str(), "--help" | "--version"))
        .filter(|(_, text)| !text.contains("[env: "))
        .map(|(flag, _)| flag.as_str())
        .collect();
    assert_eq!(
        without,
        Vec::<&str>::new(),
        "flags without their env var in --help"
    );
}

/// The options `--help` lists: each long flag with the text below it.
fn help_options(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    let mut open = false;
    for line in help.lines() {
        let text = line.trim_start();
        let indent = line.len() - text.len();
        if text.is_empty() {
            continue;
        }
        if indent == 0 {
            // A section heading ("Options:", "Commands:") ends the entry.
            open = false;
        } else if indent <= 6 && text.starts_with('-') {
            let flag = text
                .split([',', ' '])
                .find(|w| w.starts_with("--"))
                .unwrap_or(text);
            options.push((flag.to_owned(), String::new()));
            open = true;
        } else if open && let Some((_, body)) = options.last_mut() {
            body.push_str(text);
            body.push('\n');
        }
    }
    options
}

#[test]
fn the_help_parser_sees_a_flag_without_its_env_var() {
    let help = "Usage: x\n\nOptions:\n      --a <A>\n          A.\n          \n          [env: A=]\n\n  -b, --bee\n          Bee.\n\n  -h, --help\n          Print help\n";
    let options = help_options(help);
    let flags: Vec<&str> = options.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(flags, ["--a", "--bee", "--help"]);
    assert!(options[0].1.contains("[env: A=]"));
    assert!(!options[1].1.contains("[env: "));
}
