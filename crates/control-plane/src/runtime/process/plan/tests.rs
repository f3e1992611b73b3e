use std::collections::BTreeMap;
use std::path::PathBuf;

use ambient_protocol::provider::Provider;
use ambient_protocol::v1::{ObjectReference, Session};
use clap::Parser;

use super::*;
use crate::config::Config;
use crate::objects::{self, SessionInput};

#[derive(Parser, Debug)]
struct Probe {
    #[command(flatten)]
    config: Config,
}

const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n";

fn settings() -> ProcessSettings {
    let args = Probe::try_parse_from([
        "cp",
        "--state-dir",
        "/state",
        "--runner-command",
        "my-runner --fast",
        "--credential-refresh-seconds",
        "7",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    args.config
        .runtime
        .process()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The objects the Kubernetes runtime would apply for a session with a
/// GitHub credential, an Anthropic key and the MCP sidecar.
fn objects() -> SessionObjects {
    let cfg = Probe::try_parse_from([
        "cp",
        "--anthropic-api-key",
        "sk-test-SECRET",
        "--api-server-url",
        "http://127.0.0.1:7000",
    ])
    .unwrap_or_else(|e| panic!("{e}"))
    .config;
    let mut pod = cfg.pod_config().unwrap_or_else(|e| panic!("{e}"));
    settings().adjust(&mut pod, "http://127.0.0.1:7001/token".into());
    let session = Session {
        metadata: Some(ObjectReference {
            id: "s1".into(),
            ..ObjectReference::default()
        }),
        name: "demo".into(),
        project_id: Some("p1".into()),
        ..Session::default()
    };
    let credentials = BTreeMap::from([(Provider::Github, "c1".to_owned())]);
    objects::build(
        &pod,
        SessionInput {
            session: &session,
            project: None,
            public_key_pem: Some(KEY),
            credentials: &credentials,
            prompt: &objects::PromptSources::default(),
            last_seq: None,
        },
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn planned() -> Vec<Planned> {
    let mut next = 40_000;
    plan(
        &settings(),
        &objects(),
        |v| PathBuf::from("/state/pod/volumes").join(v),
        || {
            next += 1;
            Ok(next)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn by_role(all: &[Planned], role: Role) -> &Planned {
    all.iter()
        .find(|p| p.role == role)
        .unwrap_or_else(|| panic!("no {role:?}"))
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

#[test]
fn every_container_becomes_a_process_with_the_pod_environment_made_local() {
    let all = planned();
    assert_eq!(all.len(), 3, "runner, ambient-mcp, credential-github");
    let runner = by_role(&all, Role::Runner);
    let mcp = by_role(&all, Role::Mcp);
    let github = by_role(&all, Role::Credential(Provider::Github));

    assert_eq!(runner.argv, ["/bin/sh", "-c", "my-runner --fast"]);
    assert_eq!(runner.env["SESSION_ID"], "s1");
    // secretKeyRef, resolved from the session's Secret.
    assert_eq!(runner.env["ANTHROPIC_API_KEY"], "sk-test-SECRET");
    // /workspace is the session's work directory, and the runner runs there.
    assert_eq!(runner.env["WORKSPACE_PATH"], "/state/pod/volumes/workspace");
    assert_eq!(runner.cwd, PathBuf::from("/state/pod/volumes/workspace"));
    assert_ne!(runner.env["AGUI_PORT"], "8001");

    // The runner reaches the sidecars where they listen.
    let mcp_url = &runner.env["AMBIENT_MCP_URL"];
    assert!(mcp_url.starts_with("http://127.0.0.1:"), "{mcp_url}");
    assert_eq!(
        mcp.env["MCP_BIND_ADDR"],
        format!("127.0.0.1:{}", port_of(mcp_url))
    );
    assert_eq!(mcp.argv.len(), 1);
    let urls: BTreeMap<String, String> =
        serde_json::from_str(&runner.env["CREDENTIAL_MCP_URLS"]).unwrap_or_else(|e| panic!("{e}"));
    let gh_port = port_of(&urls["github"]);
    assert!(urls["github"].starts_with("http://127.0.0.1:"));
    assert_eq!(
        github.ports.values().copied().collect::<Vec<_>>(),
        [gh_port]
    );
    assert_eq!(
        &github.argv[..3],
        [
            settings().credential_entrypoint.display().to_string(),
            "--serve-mcp".into(),
            format!("127.0.0.1:{gh_port}")
        ]
    );
    assert_eq!(github.env["CREDENTIAL_PROVIDER"], "github");
    assert_eq!(github.env["AMBIENT_CREDENTIAL_REFRESH_SECONDS"], "7");
    assert_eq!(
        github.env["AMBIENT_CP_TOKEN_URL"],
        "http://127.0.0.1:7001/token"
    );
    // The sidecar's /tmp is its own directory, and the entrypoint writes there.
    let tmp = &github.env["TMPDIR"];
    assert!(tmp.starts_with("/state/pod/volumes/"), "{tmp}");
    assert!(github.env["CREDENTIAL_KUBECONFIG_PATH"].starts_with(tmp.as_str()));
    // The service CA is an optional ConfigMap the process runtime has no
    // content for: the variables naming it are left out.
    for p in [runner, mcp, github] {
        assert!(!p.env.contains_key("SSL_CERT_FILE"), "{}", p.name);
    }
    // The secret reaches only the runner.
    for p in [mcp, github] {
        assert!(!p.env.values().any(|v| v.contains("sk-test-SECRET")));
    }
}

#[test]
fn ports_are_replaced_only_where_they_are_ports() {
    let ports = BTreeMap::from([(8090, 5000), (80, 6000)]);
    let cases = [
        ("X", "http://localhost:8090", "http://127.0.0.1:5000"),
        (
            "X",
            "http://localhost:8090/sse",
            "http://127.0.0.1:5000/sse",
        ),
        (
            "X",
            r#"{"a":"http://localhost:80"}"#,
            r#"{"a":"http://127.0.0.1:6000"}"#,
        ),
        ("X", "http://localhost:80901", "http://localhost:80901"),
        ("X", "http://example.com:8090", "http://example.com:8090"),
        ("X", ":8090", "127.0.0.1:5000"),
        ("X", "0.0.0.0:8090", "127.0.0.1:5000"),
        ("AGUI_PORT", "80", "6000"),
        ("OTHER", "80", "80"),
    ];
    for (name, value, want) in cases {
        assert_eq!(local_ports(name, value, &ports), want, "{name}={value}");
    }
}

#[test]
fn a_container_it_cannot_run_or_a_missing_secret_fails_the_session() {
    let mut o = objects();
    if let Some(spec) = o.pod.spec.as_mut() {
        spec.containers[0].name = "something-else".into();
    }
    let err = plan(&settings(), &o, |v| PathBuf::from(v), || Ok(1)).err();
    assert_eq!(
        err,
        Some(PlanError::UnknownContainer("something-else".into()))
    );
    let mut o = objects();
    o.secret = None;
    let err = plan(&settings(), &o, |v| PathBuf::from(v), || Ok(1)).err();
    assert!(
        matches!(&err, Some(PlanError::MissingValue { name, .. }) if name == "ANTHROPIC_API_KEY"),
        "{err:?}"
    );
}

/// A container's `HOME` is its own directory in the pod, never the control
/// plane's: a runner that writes `~/.gitconfig` (the reference runner runs
/// `git config --global`) must not change the machine's user.
#[test]
fn each_container_has_a_home_of_its_own() {
    let all = planned();
    let mut homes = std::collections::BTreeSet::new();
    for p in &all {
        let home = PathBuf::from(&p.env["HOME"]);
        assert!(
            home.starts_with("/state/pod/volumes"),
            "{}: HOME {}",
            p.name,
            home.display()
        );
        assert!(p.dirs.contains(&home), "{}: HOME is not created", p.name);
        homes.insert(home);
    }
    assert_eq!(homes.len(), all.len(), "containers share a HOME");
}

/// With USE_VERTEX and the files standing for the Vertex Secret and the
/// service-CA ConfigMap, the variables naming files in those volumes point
/// at copies in the session's directory (the runner's key check finds its
/// key there); without them, they are left out.
#[test]
fn secret_and_config_map_volumes_are_files_of_the_session_when_given() {
    let here = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let here = here.display().to_string();
    let args = Probe::try_parse_from([
        "cp",
        "--state-dir",
        "/state",
        "--pod-service-ca-file",
        &here,
        "--vertex-key-file",
        &here,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let given = args
        .config
        .runtime
        .process()
        .unwrap_or_else(|e| panic!("{e}"));
    let cfg = Probe::try_parse_from(["cp", "--use-vertex", "--vertex-project-id", "proj-v"])
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let mut pod = cfg.pod_config().unwrap_or_else(|e| panic!("{e}"));
    given.adjust(&mut pod, "http://127.0.0.1:7001/token".into());
    let session = Session {
        metadata: Some(ObjectReference {
            id: "s1".into(),
            ..ObjectReference::default()
        }),
        name: "vertex".into(),
        project_id: Some("p1".into()),
        ..Session::default()
    };
    let o = objects::build(
        &pod,
        SessionInput {
            session: &session,
            project: None,
            public_key_pem: Some(KEY),
            credentials: &BTreeMap::new(),
            prompt: &objects::PromptSources::default(),
            last_seq: None,
        },
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let volumes = PathBuf::from("/state/pod/volumes");
    let plan_with = |s: &ProcessSettings| {
        plan(s, &o, |v| volumes.join(v), || Ok(40_001)).unwrap_or_else(|e| panic!("{e}"))
    };
    let all = plan_with(&given);
    let runner = by_role(&all, Role::Runner);
    let key = volumes.join("vertex").join("ambient-code-key.json");
    let ca = volumes.join("service-ca").join("service-ca.crt");
    assert_eq!(runner.env["USE_VERTEX"], "1");
    assert_eq!(
        runner.env["GOOGLE_APPLICATION_CREDENTIALS"],
        key.display().to_string()
    );
    for var in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "AMBIENT_GRPC_CA_CERT_FILE",
    ] {
        assert_eq!(runner.env[var], ca.display().to_string(), "{var}");
    }
    assert!(
        runner.files.contains(&(key, PathBuf::from(&here))),
        "{:?}",
        runner.files
    );
    assert!(
        runner.files.contains(&(ca, PathBuf::from(&here))),
        "{:?}",
        runner.files
    );

    // Not given: left out, as an absent optional source is.
    let all = plan_with(&settings());
    let runner = by_role(&all, Role::Runner);
    assert!(!runner.env.contains_key("GOOGLE_APPLICATION_CREDENTIALS"));
    assert!(!runner.env.contains_key("SSL_CERT_FILE"));
    assert!(runner.files.is_empty());
}
