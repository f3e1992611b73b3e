//! credential-entrypoint against the real ambient-devserver and
//! ambient-token-server on loopback, wrapping `credential-test-mcp-server`
//! (which reports its arguments, environment and pointed-at files).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Entrypoint, TEST_SERVER, World, env_of, mode, pgrp};

fn s(v: &[(String, String)]) -> Vec<(String, String)> {
    v.to_vec()
}

fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push(((*k).into(), (*v).into()));
    }
    env
}

/// Stops an entrypoint with SIGTERM; asserts exit 0 and no secret in its stderr.
async fn stop_cleanly(ep: &mut Entrypoint, secrets: &[&str]) {
    ep.signal("TERM");
    let status = ep.exit().await;
    let stderr = ep.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    for secret in secrets {
        assert!(!stderr.contains(secret), "secret in stderr:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_reaches_the_child() {
    let w = World::start("ce-providers").await;
    let dir = w.tmp.path().to_owned();
    let kube = dir.join("kubeconfig");
    let private = dir.join("private");
    let common = [
        "--kubeconfig-path",
        kube.to_str().unwrap_or_default(),
        "--files-dir",
        private.to_str().unwrap_or_default(),
        TEST_SERVER,
        "stdio",
    ];

    // github: token in both variables, an Enterprise host, the toolsets default.
    let id = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_sec1", "url": "https://ghe.example.com"}))
        .await;
    // A v3 key file path that does not exist: the exchange falls back to v2,
    // and the path is withheld from the child like the other exchange inputs.
    let mut github_env = w.sidecar_env("github", &id);
    github_env.push((
        "AMBIENT_SESSION_KEY_FILE".into(),
        dir.join("absent-session.key").display().to_string(),
    ));
    let mut ep = Entrypoint::start(&common, &github_env, &dir.join("r-gh"));
    let r = ep.report().await;
    assert_eq!(env_of(&r, "GITHUB_PERSONAL_ACCESS_TOKEN"), Some("ghp_sec1"));
    assert_eq!(env_of(&r, "GITHUB_TOKEN"), Some("ghp_sec1"));
    assert_eq!(env_of(&r, "GITHUB_HOST"), Some("https://ghe.example.com"));
    assert_eq!(
        env_of(&r, "GITHUB_TOOLSETS"),
        Some("repos,issues,pull_requests,code_security")
    );
    assert_eq!(r["args"], json!(["stdio"]));
    // The exchange inputs stay with the entrypoint.
    for withheld in [
        "AMBIENT_CP_TOKEN_PUBLIC_KEY",
        "AMBIENT_CP_TOKEN_URL",
        "AMBIENT_SESSION_KEY_FILE",
        "CREDENTIAL_IDS",
    ] {
        assert_eq!(env_of(&r, withheld), None, "{withheld} reached the child");
    }
    // Its own process group.
    let pid = r["pid"].as_u64().unwrap_or_default();
    assert_eq!(pgrp(pid), Some(pid));
    stop_cleanly(&mut ep, &["ghp_sec1", support::API_TOKEN]).await;

    // gitlab
    let id = w
        .credential(json!({"name": "gl", "provider": "gitlab", "token": "glpat_sec2", "url": "https://gitlab.example.com/"}))
        .await;
    let mut ep = Entrypoint::start(&common, &w.sidecar_env("gitlab", &id), &dir.join("r-gl"));
    let r = ep.report().await;
    assert_eq!(env_of(&r, "GITLAB_TOKEN"), Some("glpat_sec2"));
    assert_eq!(
        env_of(&r, "GITLAB_HOST"),
        Some("https://gitlab.example.com")
    );
    assert_eq!(
        env_of(&r, "GITLAB_API_URL"),
        Some("https://gitlab.example.com/api/v4")
    );
    stop_cleanly(&mut ep, &["glpat_sec2"]).await;

    // jira: url and email come from the metadata.
    let id = w
        .credential(json!({"name": "j", "provider": "jira", "token": "jira_sec3", "url": "https://acme.atlassian.net", "email": "dev@acme.test"}))
        .await;
    let env = with(
        w.sidecar_env("jira", &id),
        &[("JIRA_READ_ONLY_MODE", "true")],
    );
    let mut ep = Entrypoint::start(&common, &env, &dir.join("r-jira"));
    let r = ep.report().await;
    assert_eq!(env_of(&r, "JIRA_API_TOKEN"), Some("jira_sec3"));
    assert_eq!(env_of(&r, "JIRA_URL"), Some("https://acme.atlassian.net"));
    assert_eq!(env_of(&r, "JIRA_USERNAME"), Some("dev@acme.test"));
    assert_eq!(env_of(&r, "JIRA_EMAIL"), Some("dev@acme.test"));
    assert_eq!(env_of(&r, "JIRA_READ_ONLY_MODE"), Some("true"));
    stop_cleanly(&mut ep, &["jira_sec3"]).await;

    // kubeconfig: base64 decoded into a 0600 file that KUBECONFIG names.
    let yaml = "apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: kube_sec4}}]\n";
    let b64 = base64_encode(yaml);
    let id = w
        .credential(json!({"name": "k", "provider": "kubeconfig", "token": b64}))
        .await;
    let mut ep = Entrypoint::start(&common, &w.sidecar_env("kubeconfig", &id), &dir.join("r-k"));
    let r = ep.report().await;
    let kube_path = kube.to_string_lossy().into_owned();
    assert_eq!(env_of(&r, "KUBECONFIG"), Some(kube_path.as_str()));
    assert_eq!(r["files"][&kube_path].as_str(), Some(yaml));
    assert_eq!(mode(&kube), 0o600);
    stop_cleanly(&mut ep, &["kube_sec4", &b64]).await;

    // google: a service-account key goes to a 0600 file in the 0700 directory.
    let sa = r#"{"type":"service_account","client_email":"bot@p.iam","private_key":"goog_sec5"}"#;
    let id = w
        .credential(
            json!({"name": "g", "provider": "google", "token": sa, "email": "me@acme.test"}),
        )
        .await;
    let mut ep = Entrypoint::start(&common, &w.sidecar_env("google", &id), &dir.join("r-g"));
    let r = ep.report().await;
    let key = env_of(&r, "GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from);
    let key = key.unwrap_or_else(|| panic!("no GOOGLE_APPLICATION_CREDENTIALS in {r}"));
    assert!(key.starts_with(&private));
    assert_eq!(
        r["files"][key.to_string_lossy().as_ref()].as_str(),
        Some(sa)
    );
    assert_eq!((mode(&private), mode(&key)), (0o700, 0o600));
    assert_eq!(env_of(&r, "USER_GOOGLE_EMAIL"), Some("me@acme.test"));
    stop_cleanly(&mut ep, &["goog_sec5"]).await;

    // google: a plain token is an access token.
    let id = w
        .credential(json!({"name": "g2", "provider": "google", "token": "ya29.sec6"}))
        .await;
    let mut ep = Entrypoint::start(&common, &w.sidecar_env("google", &id), &dir.join("r-g2"));
    let r = ep.report().await;
    assert_eq!(env_of(&r, "GOOGLE_ACCESS_TOKEN"), Some("ya29.sec6"));
    stop_cleanly(&mut ep, &["ya29.sec6"]).await;
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_k8s_command_line_works_unchanged() {
    let w = World::start("ce-k8s").await;
    let dir = w.tmp.path().to_owned();
    // The test server stands in for kubernetes-mcp-server on PATH.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(TEST_SERVER, bin.join("kubernetes-mcp-server"))
        .unwrap_or_else(|e| panic!("{e}"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let yaml = "apiVersion: v1\nkind: Config\n# reference path\n";
    let id = w
        .credential(json!({"name": "k", "provider": "kubeconfig", "token": yaml}))
        .await;
    let reference = [
        "kubernetes-mcp-server",
        "--port",
        "8093",
        "--disable-multi-cluster",
        "--kubeconfig",
        "/tmp/.ambient_kubeconfig",
    ];
    let env = with(w.sidecar_env("kubeconfig", &id), &[("PATH", &path)]);
    let mut ep = Entrypoint::start(&reference, &env, &dir.join("r-ref"));
    let r = ep.report().await;
    assert_eq!(r["args"], json!(reference[1..]));
    assert_eq!(env_of(&r, "KUBECONFIG"), Some("/tmp/.ambient_kubeconfig"));
    assert_eq!(r["files"]["/tmp/.ambient_kubeconfig"].as_str(), Some(yaml));
    stop_cleanly(&mut ep, &[]).await;

    // MPP mode: the deny-Namespace config, `--config` right after the name.
    let mpp = dir.join("mpp.toml");
    let env = with(
        env,
        &[
            ("PLATFORM_MODE", "mpp"),
            (
                "CREDENTIAL_MPP_CONFIG_PATH",
                mpp.to_str().unwrap_or_default(),
            ),
        ],
    );
    let mut ep = Entrypoint::start(&reference, &env, &dir.join("r-mpp"));
    let r = ep.report().await;
    let mut want = vec!["--config", mpp.to_str().unwrap_or_default()];
    want.extend_from_slice(&reference[1..]);
    assert_eq!(r["args"], json!(want));
    let config = r["files"][mpp.to_string_lossy().as_ref()]
        .as_str()
        .unwrap_or_default();
    assert!(
        config.contains("[[denied_resources]]") && config.contains("kind = \"Namespace\""),
        "{config}"
    );
    assert_eq!(mode(&mpp), 0o600);
    stop_cleanly(&mut ep, &[]).await;
    let _ = std::fs::remove_file("/tmp/.ambient_kubeconfig");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reaches_the_running_child() {
    let w = World::start("ce-rotate").await;
    let dir = w.tmp.path().to_owned();
    let kube = dir.join("kubeconfig");
    let args = [
        "--refresh-interval",
        "1",
        "--grace-period",
        "5",
        "--kubeconfig-path",
        kube.to_str().unwrap_or_default(),
        TEST_SERVER,
    ];

    // Environment provider: the child is restarted with the new token.
    let id = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_old"}))
        .await;
    let mut gh = Entrypoint::start(&args, &w.sidecar_env("github", &id), &dir.join("r-gh"));
    let first = gh.report().await;
    let first_pid = first["pid"].as_u64();
    // A credential that cannot be used keeps the child on the last good one.
    w.rotate(&id, "").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !gh.stderr().contains("keeps the last good credential") {
        assert!(std::time::Instant::now() < deadline, "{}", gh.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still = support::reports(&gh.reports);
    assert_eq!(still.len(), 1, "child restarted on an unusable credential");
    assert!(gh.child.try_wait().ok().flatten().is_none());
    w.rotate(&id, "ghp_new").await;
    let second = gh
        .report_where("the new token", |r| {
            env_of(r, "GITHUB_TOKEN") == Some("ghp_new")
        })
        .await;
    assert_ne!(second["pid"].as_u64(), first_pid, "not a new child");
    // The old child got SIGTERM (graceful), not SIGKILL.
    let old = support::reports(&gh.reports)
        .into_iter()
        .find(|r| r["pid"].as_u64() == first_pid)
        .unwrap_or(Value::Null);
    assert_eq!(old["signals"]["term"], json!(1), "{old}");

    // File provider: the same child reads the new content.
    let id = w
        .credential(json!({"name": "k", "provider": "kubeconfig", "token": "kind: Config # v1\n"}))
        .await;
    let mut k = Entrypoint::start(&args, &w.sidecar_env("kubeconfig", &id), &dir.join("r-k"));
    let before = k.report().await;
    w.rotate(&id, "kind: Config # v2\n").await;
    let key = kube.to_string_lossy().into_owned();
    let after = k
        .report_where("the new kubeconfig", |r| {
            r["files"][&key].as_str() == Some("kind: Config # v2\n")
        })
        .await;
    assert_eq!(
        after["pid"], before["pid"],
        "a file rotation restarted the child"
    );
    assert_eq!(mode(&kube), 0o600);

    stop_cleanly(&mut gh, &["ghp_old", "ghp_new"]).await;
    stop_cleanly(&mut k, &[]).await;
}

/// Name, environment, extra arguments, expected stderr fragment.
type Case<'a> = (&'a str, Vec<(String, String)>, Vec<String>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_paths_exit_non_zero_and_never_start_the_child() {
    let w = World::start("ce-fail").await;
    let dir = w.tmp.path().to_owned();
    let gh = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_failsec"}))
        .await;
    let empty = w
        .credential(json!({"name": "e", "provider": "github", "token": ""}))
        .await;
    let jira = w
        .credential(json!({"name": "j", "provider": "jira", "token": "jira_failsec"}))
        .await;
    let base = w.sidecar_env("github", &gh);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        format!(
            "http://{}",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        )
    };
    let kube = w
        .credential(json!({"name": "k", "provider": "kubeconfig", "token": "kind: Config"}))
        .await;
    let no_dir = dir.join("missing-dir").join("kubeconfig");
    let without = |name: &str| -> Vec<(String, String)> {
        base.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let cases: Vec<Case> = vec![
        (
            "no session",
            without("SESSION_ID"),
            vec![],
            "session ID is required",
        ),
        (
            "no provider",
            without("CREDENTIAL_PROVIDER"),
            vec![],
            "provider is required",
        ),
        (
            "no ids",
            without("CREDENTIAL_IDS"),
            vec![],
            "credential IDs is required",
        ),
        (
            "no api url",
            without("AMBIENT_API_URL"),
            vec![],
            "API URL is required",
        ),
        (
            "no token url",
            without("AMBIENT_CP_TOKEN_URL"),
            vec![],
            "token URL is required",
        ),
        (
            "no key",
            without("AMBIENT_CP_TOKEN_PUBLIC_KEY"),
            vec![],
            "public key is required",
        ),
        (
            "bad key",
            with(s(&base), &[("AMBIENT_CP_TOKEN_PUBLIC_KEY", "garbage")]),
            vec![],
            "not a usable public key",
        ),
        (
            "unknown provider",
            with(s(&base), &[("CREDENTIAL_PROVIDER", "vertex")]),
            vec![],
            "no credential sidecar",
        ),
        (
            "id missing",
            with(s(&base), &[("CREDENTIAL_IDS", r#"{"jira":"x"}"#)]),
            vec![],
            "no credential ID for provider github",
        ),
        (
            "id malformed",
            with(s(&base), &[("CREDENTIAL_IDS", r#"{"github":"../x"}"#)]),
            vec![],
            "not of the form",
        ),
        (
            "external api",
            with(
                s(&base),
                &[("AMBIENT_API_URL", "http://api.example.com:8000")],
            ),
            vec![],
            "not cluster-local",
        ),
        (
            "confused api",
            with(s(&base), &[("AMBIENT_API_URL", "http:evil.com/://x.svc/")]),
            vec![],
            "AMBIENT_API_URL refused",
        ),
        (
            "exchange refused",
            with(s(&base), &[("SESSION_ID", "no-such-session-1234")]),
            vec![],
            "token exchange failed",
        ),
        (
            "api down",
            with(s(&base), &[("AMBIENT_API_URL", &closed)]),
            vec![],
            "credential token request failed",
        ),
        (
            "unknown credential",
            with(s(&base), &[("CREDENTIAL_IDS", r#"{"github":"nope123"}"#)]),
            vec![],
            "HTTP 404",
        ),
        (
            "unusable credential",
            w.sidecar_env("github", &empty),
            vec![],
            "has no token",
        ),
        (
            "wrong provider",
            with(
                w.sidecar_env("jira", &jira),
                &[
                    ("CREDENTIAL_PROVIDER", "github"),
                    ("CREDENTIAL_IDS", &json!({"github": jira}).to_string()),
                ],
            ),
            vec![],
            "this sidecar serves github",
        ),
        (
            "write fails",
            w.sidecar_env("kubeconfig", &kube),
            vec![
                "--kubeconfig-path".into(),
                no_dir.to_string_lossy().into_owned(),
            ],
            "cannot write",
        ),
        (
            "no command",
            s(&base),
            vec!["NO_COMMAND".into()],
            "a command to run is required",
        ),
    ];
    for (i, (name, env, extra, want)) in cases.into_iter().enumerate() {
        let reports = dir.join(format!("r-{i}"));
        let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
        if args.first() == Some(&"NO_COMMAND") {
            args.clear();
        } else {
            args.push(TEST_SERVER);
        }
        let mut ep = Entrypoint::start(&args, &env, &reports);
        let status = ep.exit().await;
        let stderr = ep.stderr();
        assert_ne!(status.code(), Some(0), "{name}: {stderr}");
        assert!(status.code().is_some(), "{name}: killed by a signal");
        assert!(stderr.contains(want), "{name}: want {want:?} in:\n{stderr}");
        assert!(
            support::reports(&reports).is_empty(),
            "{name}: the child started"
        );
        for secret in ["ghp_failsec", "jira_failsec", support::API_TOKEN] {
            assert!(
                !stderr.contains(secret),
                "{name}: secret in stderr:\n{stderr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_forwarded_and_exit_codes_propagated() {
    let w = World::start("ce-signals").await;
    let dir = w.tmp.path().to_owned();
    let id = w
        .credential(json!({"name": "gh", "provider": "github", "token": "ghp_sig"}))
        .await;
    let env = w.sidecar_env("github", &id);

    // Every SIGTERM/SIGINT reaches the child; its exit code is ours.
    let knobs = with(
        s(&env),
        &[
            ("TEST_SERVER_SIGNALS_TO_EXIT", "3"),
            ("TEST_SERVER_EXIT_CODE", "3"),
        ],
    );
    let mut ep = Entrypoint::start(&[TEST_SERVER], &knobs, &dir.join("r-fwd"));
    ep.report().await;
    ep.signal("TERM");
    ep.report_where("one SIGTERM", |r| r["signals"]["term"] == json!(1))
        .await;
    ep.signal("INT");
    ep.report_where("one SIGINT", |r| r["signals"]["int"] == json!(1))
        .await;
    ep.signal("TERM");
    let status = ep.exit().await;
    assert_eq!(status.code(), Some(3), "{}", ep.stderr());
    let last = support::reports(&ep.reports);
    assert_eq!(last[0]["signals"], json!({"term": 2, "int": 1}));

    // A child killed by a signal: 128 + signal.
    let mut ep = Entrypoint::start(&[TEST_SERVER], &env, &dir.join("r-kill"));
    let r = ep.report().await;
    support::signal(r["pid"].as_u64().unwrap_or_default() as u32, "KILL");
    assert_eq!(ep.exit().await.code(), Some(137), "{}", ep.stderr());

    // A child that exits on its own ends the entrypoint with its code.
    let knobs = with(
        s(&env),
        &[
            ("TEST_SERVER_EXIT_AFTER_MS", "300"),
            ("TEST_SERVER_EXIT_CODE", "7"),
        ],
    );
    let mut ep = Entrypoint::start(&[TEST_SERVER], &knobs, &dir.join("r-own"));
    assert_eq!(ep.exit().await.code(), Some(7), "{}", ep.stderr());
    assert_eq!(support::reports(&ep.reports).len(), 1);
}
