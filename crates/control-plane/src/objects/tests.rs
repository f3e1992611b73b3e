//! Builder tests; [`reference`] holds the facts taken from the reference's
//! pods (wire.md §4–§5).

mod reference;

use super::*;
use ambient_protocol::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Container, EnvVar};

pub(crate) fn config() -> PodConfig {
    PodConfig {
        platform_mode: PlatformMode::Standard,
        mpp_config_namespace: None,
        control_plane_namespace: "ambient-code".into(),
        installation: "ambient-code".into(),
        runner_image: "runner:1".into(),
        runner_image_namespace: None,
        backend_api_url: "http://api.ambient-code.svc:8000".into(),
        sidecar_api_url: "http://api.ambient-code.svc:8000".into(),
        grpc_url: "api.ambient-code.svc:9000".into(),
        grpc_use_tls: false,
        runner_log_level: "debug".into(),
        token_url: Some("http://cp.ambient-code.svc:8080/token".into()),
        mcp_image: Some("mcp:1".into()),
        credential_images: CredentialImages {
            github: Some("gh:1".into()),
            gitlab: Some("gl:1".into()),
            jira: Some("jira:1".into()),
            kubeconfig: Some("k8s:1".into()),
            google: Some("google:1".into()),
        },
        http_proxy: None,
        https_proxy: Some("http://proxy:3128".into()),
        no_proxy: None,
        image_pull_secret: Some("pull".into()),
        anthropic_api_key: Some(Secret::new("sk-ant-SECRET-VALUE")),
        vertex: None,
        runner_resources: Resources::runner(),
        mcp_resources: Resources::mcp(),
        credential_resources: Resources::credential(),
        session_keys: false,
    }
}

pub(crate) fn session() -> Session {
    Session {
        metadata: Some(ObjectReference {
            id: "2ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop".into(),
            kind: "Session".into(),
            ..ObjectReference::default()
        }),
        name: "fix the build".into(),
        prompt: Some("please fix it".into()),
        project_id: Some("Proj1".into()),
        llm_model: Some("claude".into()),
        llm_temperature: Some(0.5),
        llm_max_tokens: Some(1000),
        timeout: Some(300),
        repos: Some(r#"[{"url":"https://example.com/r.git"}]"#.into()),
        environment_variables: Some(
            r#"{"FOO":"bar","SESSION_ID":"spoofed","JIRA_READ_ONLY_MODE":"true"}"#.into(),
        ),
        agent_id: Some("agent-7".into()),
        ..Session::default()
    }
}

pub(crate) const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n";

pub(crate) fn all_credentials() -> BTreeMap<Provider, String> {
    Provider::ALL
        .iter()
        .map(|p| (*p, format!("cred-{p}")))
        .collect()
}

pub(crate) fn build_with(
    cfg: &PodConfig,
    key: Option<&str>,
    creds: &BTreeMap<Provider, String>,
) -> SessionObjects {
    build_session(cfg, &session(), key, creds, &PromptSources::default())
}

pub(crate) fn build_session(
    cfg: &PodConfig,
    s: &Session,
    key: Option<&str>,
    creds: &BTreeMap<Provider, String>,
    prompt: &PromptSources,
) -> SessionObjects {
    build(
        cfg,
        SessionInput {
            session: s,
            project: None,
            public_key_pem: key,
            credentials: creds,
            prompt,
            last_seq: None,
        },
        Some("uid-sa-1"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn containers(o: &SessionObjects) -> &[Container] {
    o.pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
}

pub(crate) fn env_of<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.as_ref()?.iter().find(|e| e.name == name)
}

pub(crate) fn value_of<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    env_of(c, name)?.value.as_deref()
}

#[test]
fn names_labels_and_ports_follow_the_wire() {
    let o = build_with(&config(), Some(KEY), &BTreeMap::new());
    let safe = "2abcdefghijklmnopqrstuvwxyzabcdefghijklm";
    assert_eq!(o.namespace_name, "proj1");
    assert_eq!(
        o.pod.metadata.name.as_deref(),
        Some(format!("session-{safe}-runner").as_str())
    );
    assert_eq!(
        o.service_account.metadata.name.as_deref(),
        Some(format!("session-{safe}-sa").as_str())
    );
    assert_eq!(
        o.service.metadata.name.as_deref(),
        Some(format!("session-{safe}").as_str())
    );
    assert_eq!(
        o.network_policy.metadata.name.as_deref(),
        Some("allow-ambient-api-server")
    );
    for meta in [
        &o.pod.metadata,
        &o.service.metadata,
        &o.service_account.metadata,
    ] {
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("ambient-code.io/session-id").map(String::as_str),
            Some("2ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop")
        );
        assert_eq!(
            labels.get("ambient-code.io/project-id").map(String::as_str),
            Some("Proj1")
        );
        assert_eq!(
            labels.get("ambient-code.io/managed").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            labels.get("ambient-code.io/managed-by").map(String::as_str),
            Some("ambient-control-plane")
        );
        assert_eq!(meta.namespace.as_deref(), Some("proj1"));
    }
    let ann = o.pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("ambient-code.io/session-name").map(String::as_str),
        Some("fix the build")
    );
    assert!(ann.contains_key("ambient-code.io/session-id"));
    let ns_labels = o
        .namespace
        .as_ref()
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    assert_eq!(
        ns_labels.get("ambient-code.io/managed").map(String::as_str),
        Some("true")
    );

    let svc = o.service.spec.clone().unwrap_or_default();
    assert_eq!(svc.type_.as_deref(), Some("ClusterIP"));
    let port = svc.ports.unwrap_or_default().remove(0);
    assert_eq!((port.name.as_deref(), port.port), (Some("agui"), 8001));

    let np = o.network_policy.spec.clone().unwrap_or_default();
    let rule = np.ingress.unwrap_or_default().remove(0);
    assert_eq!(
        rule.ports.unwrap_or_default()[0].port,
        Some(IntOrString::Int(8001))
    );
    let from = rule.from.unwrap_or_default().remove(0);
    assert_eq!(
        from.namespace_selector
            .and_then(|s| s.match_labels)
            .unwrap_or_default()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("ambient-code")
    );

    let spec = o.pod.spec.clone().unwrap_or_default();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.termination_grace_period_seconds, Some(60));
    assert_eq!(spec.automount_service_account_token, Some(true));
    assert_eq!(spec.service_account_name, o.service_account.metadata.name);
    let volumes = spec.volumes.unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v.name == "workspace" && v.empty_dir.is_some())
    );
    let ca = volumes
        .iter()
        .find(|v| v.name == "service-ca")
        .and_then(|v| v.config_map.clone())
        .unwrap_or_default();
    assert_eq!(
        (ca.name.as_str(), ca.optional),
        ("openshift-service-ca.crt", Some(true))
    );
    let runner = &spec.containers[0];
    assert_eq!(runner.name, "ambient-code-runner");
    assert_eq!(
        runner.ports.clone().unwrap_or_default()[0].container_port,
        8001
    );
    let mounts = runner.volume_mounts.clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "workspace" && m.mount_path == "/workspace")
    );
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == "/etc/pki/ca-trust/extracted/pem/service-ca.crt")
    );
}

#[test]
fn mpp_mode_names_the_namespace_and_does_not_create_it() {
    let mut cfg = config();
    cfg.platform_mode = PlatformMode::Mpp;
    cfg.mpp_config_namespace = Some("mpp-config".into());
    let o = build_with(&cfg, Some(KEY), &all_credentials());
    assert_eq!(o.namespace_name, "ambient-code--proj1");
    assert!(o.namespace.is_none());
    let gh = containers(&o)
        .iter()
        .find(|c| c.name == "credential-github")
        .cloned()
        .unwrap_or_default();
    assert_eq!(value_of(&gh, "PLATFORM_MODE"), Some("mpp"));
    assert_eq!(value_of(&gh, "MPP_CONFIG_NAMESPACE"), Some("mpp-config"));
}

#[test]
fn runner_env_follows_the_wire() {
    let o = build_with(&config(), Some(KEY), &all_credentials());
    let runner = &containers(&o)[0];
    let want = [
        ("SESSION_ID", "2ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"),
        ("AGENTIC_SESSION_NAME", "fix the build"),
        ("AGENTIC_SESSION_NAMESPACE", "proj1"),
        ("PROJECT_NAME", "Proj1"),
        ("AGENT_ID", "agent-7"),
        ("WORKSPACE_PATH", "/workspace"),
        ("ARTIFACTS_DIR", "artifacts"),
        ("AGUI_PORT", "8001"),
        ("USE_AGUI", "true"),
        ("USE_VERTEX", "0"),
        ("CLAUDE_CODE_USE_VERTEX", "0"),
        (
            "AMBIENT_GRPC_CA_CERT_FILE",
            "/etc/pki/ca-trust/extracted/pem/service-ca.crt",
        ),
        (
            "SSL_CERT_FILE",
            "/etc/pki/ca-trust/extracted/pem/service-ca.crt",
        ),
        (
            "REQUESTS_CA_BUNDLE",
            "/etc/pki/ca-trust/extracted/pem/service-ca.crt",
        ),
        ("LOG_LEVEL", "debug"),
        ("BACKEND_API_URL", "http://api.ambient-code.svc:8000"),
        (
            "AMBIENT_CP_TOKEN_URL",
            "http://cp.ambient-code.svc:8080/token",
        ),
        ("AMBIENT_CP_TOKEN_PUBLIC_KEY", KEY),
        ("AMBIENT_GRPC_URL", "api.ambient-code.svc:9000"),
        ("AMBIENT_GRPC_ENABLED", "true"),
        ("AMBIENT_GRPC_USE_TLS", "false"),
        ("AMBIENT_MCP_URL", "http://localhost:8090"),
        ("CREDENTIAL_SIDECAR_MODE", "true"),
        ("INITIAL_PROMPT", "please fix it"),
        ("LLM_MODEL", "claude"),
        ("LLM_TEMPERATURE", "0.5"),
        ("LLM_MAX_TOKENS", "1000"),
        ("TIMEOUT", "300"),
        ("REPOS_JSON", r#"[{"url":"https://example.com/r.git"}]"#),
        ("HTTPS_PROXY", "http://proxy:3128"),
        ("FOO", "bar"),
    ];
    for (name, value) in want {
        assert_eq!(value_of(runner, name), Some(value), "{name}");
    }
    // The user's environment cannot override ours, and each name appears once.
    let names: Vec<&str> = runner
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names.iter().filter(|n| **n == "SESSION_ID").count(), 1);
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    // IS_RESUME only when resuming; no CREDENTIAL_IDS when sidecars run.
    assert!(value_of(runner, "IS_RESUME").is_none());
    assert!(value_of(runner, "CREDENTIAL_IDS").is_none());
    let urls: serde_json::Value =
        serde_json::from_str(value_of(runner, "CREDENTIAL_MCP_URLS").unwrap_or("{}"))
            .unwrap_or_default();
    // No path: the runner appends `/sse`.
    assert_eq!(urls["github"], "http://localhost:8091");
    assert_eq!(urls["gitlab"], "http://localhost:8095");
    assert!(urls.get("vertex").is_none());
}

#[test]
fn a_session_cannot_name_credentials_or_platform_settings_in_its_environment() {
    // Sidecars serve the credentials, so the platform sets no
    // CREDENTIAL_IDS: a user's must not appear in its place (the gateway
    // would take it for a delivered credential).
    let mut s = session();
    s.environment_variables = Some(
        r#"{"CREDENTIAL_IDS":"{\"jira\":\"someone-elses\"}","AMBIENT_SESSION_KEY_FILE":"/x","FOO":"bar"}"#
            .into(),
    );
    let creds = BTreeMap::from([(Provider::Github, "cred-github".to_owned())]);
    let o = build_session(&config(), &s, Some(KEY), &creds, &PromptSources::default());
    let runner = &containers(&o)[0];
    assert_eq!(value_of(runner, "CREDENTIAL_IDS"), None);
    assert_eq!(value_of(runner, "AMBIENT_SESSION_KEY_FILE"), None);
    assert_eq!(value_of(runner, "FOO"), Some("bar"));
    let delivered = crate::runtime::delivered_credentials(&o.pod);
    assert_eq!(
        delivered.into_iter().collect::<Vec<_>>(),
        ["cred-github".to_owned()]
    );
}

#[test]
fn grpc_tls_is_told_and_the_service_ca_is_always_named() {
    let mut cfg = config();
    cfg.grpc_use_tls = true;
    let o = build_with(&cfg, Some(KEY), &BTreeMap::new());
    let runner = &containers(&o)[0];
    assert_eq!(value_of(runner, "AMBIENT_GRPC_USE_TLS"), Some("true"));
    assert_eq!(
        value_of(runner, "AMBIENT_GRPC_CA_CERT_FILE"),
        Some("/etc/pki/ca-trust/extracted/pem/service-ca.crt")
    );
}

#[test]
fn every_container_has_a_restricted_security_context() {
    let o = build_with(&config(), Some(KEY), &all_credentials());
    assert!(containers(&o).len() > 2);
    for c in containers(&o) {
        let sc = c.security_context.clone().unwrap_or_default();
        assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(
            sc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_owned()]),
            "{}",
            c.name
        );
        assert_eq!(
            sc.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault"),
            "{}",
            c.name
        );
        let sidecar = c.name != "ambient-code-runner";
        assert_eq!(sc.read_only_root_filesystem, Some(sidecar), "{}", c.name);
        assert!(
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_some_and(|l| l.contains_key("memory"))
        );
    }
}

#[test]
fn no_secret_is_a_literal_env_value() {
    let o = build_with(&config(), Some(KEY), &all_credentials());
    for c in containers(&o) {
        for e in c.env.iter().flatten() {
            assert!(
                !e.value.as_deref().unwrap_or("").contains("SECRET-VALUE"),
                "{} in {}",
                e.name,
                c.name
            );
        }
    }
    let runner = &containers(&o)[0];
    let key = env_of(runner, "ANTHROPIC_API_KEY")
        .cloned()
        .unwrap_or_default();
    assert!(key.value.is_none());
    let sel = key
        .value_from
        .and_then(|f| f.secret_key_ref)
        .unwrap_or_default();
    assert_eq!(
        sel.name,
        o.secret
            .as_ref()
            .and_then(|s| s.metadata.name.clone())
            .unwrap_or_default()
    );
    assert_eq!(sel.key, "ANTHROPIC_API_KEY");
    // Without a key there is no Secret and no reference.
    let mut cfg = config();
    cfg.anthropic_api_key = None;
    let o = build_with(&cfg, Some(KEY), &BTreeMap::new());
    assert!(o.secret.is_none());
    assert!(env_of(&containers(&o)[0], "ANTHROPIC_API_KEY").is_none());
}

#[test]
fn mcp_sidecar_only_with_image_token_url_and_key() {
    for image in [true, false] {
        for url in [true, false] {
            for key in [true, false] {
                let mut cfg = config();
                if !image {
                    cfg.mcp_image = None;
                }
                if !url {
                    cfg.token_url = None;
                }
                let o = build_with(&cfg, key.then_some(KEY), &BTreeMap::new());
                let mcp = containers(&o).iter().find(|c| c.name == "ambient-mcp");
                assert_eq!(
                    mcp.is_some(),
                    image && url && key,
                    "image={image} url={url} key={key}"
                );
                assert_eq!(
                    value_of(&containers(&o)[0], "AMBIENT_MCP_URL").is_some(),
                    image && url && key
                );
                if let Some(mcp) = mcp {
                    assert_eq!(
                        mcp.ports.clone().unwrap_or_default()[0].container_port,
                        8090
                    );
                    assert_eq!(value_of(mcp, "MCP_TRANSPORT"), Some("sse"));
                    assert_eq!(
                        value_of(mcp, "SESSION_ID"),
                        Some("2ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop")
                    );
                    assert_eq!(value_of(mcp, "AMBIENT_CP_TOKEN_PUBLIC_KEY"), Some(KEY));
                }
            }
        }
    }
}

#[test]
fn one_credential_sidecar_per_provider_with_an_image() {
    let o = build_with(&config(), Some(KEY), &all_credentials());
    let ports: BTreeMap<String, i32> = containers(&o)
        .iter()
        .filter(|c| c.name.starts_with("credential-"))
        .map(|c| {
            (
                c.name.clone(),
                c.ports.clone().unwrap_or_default()[0].container_port,
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([
            ("credential-github".to_owned(), 8091),
            ("credential-jira".to_owned(), 8092),
            ("credential-k8s".to_owned(), 8093),
            ("credential-google".to_owned(), 8094),
            ("credential-gitlab".to_owned(), 8095),
        ])
    );
    let jira = containers(&o)
        .iter()
        .find(|c| c.name == "credential-jira")
        .cloned()
        .unwrap_or_default();
    assert_eq!(value_of(&jira, "CREDENTIAL_PROVIDER"), Some("jira"));
    assert_eq!(
        value_of(&jira, "CREDENTIAL_IDS"),
        Some(r#"{"jira":"cred-jira"}"#)
    );
    assert_eq!(value_of(&jira, "JIRA_READ_ONLY_MODE"), Some("true"));
    assert_eq!(value_of(&jira, "AGENTIC_SESSION_NAMESPACE"), Some("proj1"));
    // mcp-atlassian 0.23 answers 401 to every request without it.
    assert_eq!(value_of(&jira, "ALLOW_GLOBAL_CRED_FALLBACK"), Some("true"));
    let gh = containers(&o)
        .iter()
        .find(|c| c.name == "credential-github")
        .cloned()
        .unwrap_or_default();
    assert!(value_of(&gh, "JIRA_READ_ONLY_MODE").is_none());
    assert!(value_of(&gh, "ALLOW_GLOBAL_CRED_FALLBACK").is_none());
    // The sidecars' commands: the image's (entrypoint and CMD), but
    // google's CMD names workspace-mcp's real entry point.
    for c in containers(&o)
        .iter()
        .filter(|c| c.name.starts_with("credential-"))
    {
        assert!(c.command.is_none(), "{}", c.name);
        let args = c.args.clone().unwrap_or_default();
        if c.name == "credential-google" {
            assert_eq!(
                args,
                ["workspace-mcp", "--permissions", "gmail:send", "drive:full"]
            );
        } else {
            assert!(args.is_empty(), "{}: {args:?}", c.name);
        }
    }

    // Providers without an image, and unresolved providers, get no sidecar.
    let mut cfg = config();
    cfg.credential_images.google = None;
    let creds = BTreeMap::from([
        (Provider::Google, "g".to_owned()),
        (Provider::Github, "h".to_owned()),
    ]);
    let o = build_with(&cfg, Some(KEY), &creds);
    let names: Vec<&str> = containers(&o).iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["ambient-code-runner", "ambient-mcp", "credential-github"]
    );
}

#[test]
fn owner_references_point_at_the_service_account() {
    let o = build_with(&config(), Some(KEY), &BTreeMap::new());
    for meta in [&o.pod.metadata, &o.service.metadata] {
        let owner = meta.owner_references.clone().unwrap_or_default().remove(0);
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ServiceAccount", "uid-sa-1")
        );
        assert_eq!(Some(owner.name), o.service_account.metadata.name);
        // blockOwnerDeletion would need `update` on serviceaccounts/finalizers
        // under OwnerReferencesPermissionEnforcement (OpenShift); background
        // GC of the SA's dependents does not need it.
        assert_eq!(owner.block_owner_deletion, None);
    }
    assert!(o.service_account.metadata.owner_references.is_none());
}

#[test]
fn bad_sessions_are_build_errors() {
    let creds = BTreeMap::new();
    let mut s = session();
    s.project_id = None;
    let prompt = PromptSources::default();
    let input = |s: &Session| {
        build(
            &config(),
            SessionInput {
                session: s,
                project: None,
                public_key_pem: None,
                credentials: &creds,
                prompt: &prompt,
                last_seq: None,
            },
            None,
        )
        .err()
    };
    assert_eq!(input(&s), Some(BuildError::NoProject));
}

#[test]
fn environment_variables_that_are_no_json_object_are_ignored_and_reported() {
    for raw in ["[1,2]", "{not json", "\"text\""] {
        let mut s = session();
        s.environment_variables = Some(raw.into());
        let o = build_session(
            &config(),
            &s,
            Some(KEY),
            &BTreeMap::new(),
            &PromptSources::default(),
        );
        let runner = &containers(&o)[0];
        assert_eq!(
            value_of(runner, "SESSION_ID"),
            Some("2ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"),
            "{raw}"
        );
        assert!(value_of(runner, "FOO").is_none(), "{raw}");
        assert!(environment_problem(&s).is_some(), "{raw}");
    }
    let mut s = session();
    s.environment_variables = Some(r#"{"FOO":"bar"}"#.into());
    assert_eq!(environment_problem(&s), None);
    s.environment_variables = None;
    assert_eq!(environment_problem(&s), None);
}

#[test]
fn a_resumed_session_resumes_after_its_last_message() {
    let mut s = session();
    let creds = BTreeMap::new();
    let prompt = PromptSources::default();
    let runner_env = |s: &Session, last_seq| {
        let o = build(
            &config(),
            SessionInput {
                session: s,
                project: None,
                public_key_pem: Some(KEY),
                credentials: &creds,
                prompt: &prompt,
                last_seq,
            },
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let runner = containers(&o)[0].clone();
        (
            value_of(&runner, "IS_RESUME").map(str::to_owned),
            value_of(&runner, "RESUME_AFTER_SEQ").map(str::to_owned),
        )
    };
    // A first start: neither, whatever the messages.
    assert_eq!(runner_env(&s, Some(7)), (None, None));
    s.start_time = Some(prost_types::Timestamp::default());
    assert_eq!(
        runner_env(&s, Some(7)),
        (Some("true".into()), Some("7".into()))
    );
    assert_eq!(runner_env(&s, None), (Some("true".into()), None));
}

#[test]
fn the_session_key_file_reaches_the_runner_and_ambient_mcp_read_only_and_nothing_else() {
    let mut cfg = config();
    cfg.session_keys = true;
    cfg.anthropic_api_key = None;
    let o = build_with(&cfg, Some("PEM"), &all_credentials());
    assert!(o.uses_session_key());
    let spec = o.pod.spec.as_ref().unwrap_or_else(|| panic!("no spec"));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == names::SESSION_KEY_VOLUME)
        .and_then(|v| v.secret.clone())
        .unwrap_or_else(|| panic!("no key volume"));
    assert_eq!(volume.secret_name, Some(names::secret_name(o.session_id())));
    // Readable by the containers' non-root user (the kubelet writes root-owned files).
    assert_eq!(volume.default_mode, Some(0o444));
    let items = volume.items.unwrap_or_default();
    assert_eq!(items.len(), 1, "the key file alone");
    assert_eq!(items[0].key, names::SESSION_KEY_FILE);
    // The runner and ambient-mcp; never a credential sidecar (its
    // third-party child shares its user and could read the file).
    assert!(containers(&o).len() >= 3);
    for c in containers(&o) {
        if c.name != names::RUNNER_CONTAINER && c.name != names::MCP_CONTAINER {
            assert!(
                c.volume_mounts
                    .iter()
                    .flatten()
                    .all(|m| m.name != names::SESSION_KEY_VOLUME),
                "{}: a credential sidecar mounts the key",
                c.name
            );
            assert_eq!(
                value_of(c, ambient_protocol::env::AMBIENT_SESSION_KEY_FILE),
                None
            );
            continue;
        }
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == names::SESSION_KEY_VOLUME)
            .unwrap_or_else(|| panic!("{}: no key mount", c.name));
        assert_eq!(mount.read_only, Some(true), "{}", c.name);
        assert_eq!(
            mount.sub_path, None,
            "{}: a subPath mount never updates",
            c.name
        );
        assert_eq!(
            value_of(c, ambient_protocol::env::AMBIENT_SESSION_KEY_FILE),
            Some(names::session_key_path().as_str())
        );
    }
    // The Secret exists (for the key) without an API key; its content is
    // the runtime's: nothing of a key in the built objects.
    let secret = o.secret.as_ref().unwrap_or_else(|| panic!("no Secret"));
    assert!(secret.data.is_none() && secret.string_data.is_none());
    let mut keyed = o.clone();
    keyed.set_session_key("gen-1", &Secret::new("{\"v\":3}"));
    assert_eq!(
        keyed
            .pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::ANNOTATION_GENERATION))
            .map(String::as_str),
        Some("gen-1")
    );
    let data = keyed.secret.and_then(|s| s.data).unwrap_or_default();
    assert_eq!(data.keys().collect::<Vec<_>>(), [names::SESSION_KEY_FILE]);

    // Off, or without token exchange: no key file anywhere.
    for (on, key) in [(false, Some("PEM")), (true, None)] {
        cfg.session_keys = on;
        let o = build_with(&cfg, key, &all_credentials());
        assert!(!o.uses_session_key());
        assert!(
            containers(&o).iter().all(|c| {
                value_of(c, ambient_protocol::env::AMBIENT_SESSION_KEY_FILE).is_none()
            })
        );
    }
}

/// The `kubernetes.io/metadata.name` of each `from` peer of a policy's first rule.
fn from_namespaces(np: &NetworkPolicy) -> Vec<String> {
    np.spec
        .iter()
        .flat_map(|s| s.ingress.iter().flatten())
        .take(1)
        .flat_map(|r| r.from.iter().flatten())
        .filter_map(|p| {
            p.namespace_selector
                .as_ref()?
                .match_labels
                .as_ref()?
                .get("kubernetes.io/metadata.name")
                .cloned()
        })
        .collect()
}

#[test]
fn the_network_policy_merges_control_plane_namespaces() {
    let cfg = config();
    let ours = network_policy("p", "p", &cfg);
    assert_eq!(
        from_namespaces(&merge_network_policy(&ours, None)),
        ["ambient-code"]
    );
    let mut other_cfg = config();
    other_cfg.control_plane_namespace = "other-cp".into();
    let mut existing = network_policy("p", "p", &other_cfg);
    existing.metadata.resource_version = Some("42".into());
    let merged = merge_network_policy(&ours, Some(&existing));
    assert_eq!(from_namespaces(&merged), ["other-cp", "ambient-code"]);
    assert_eq!(merged.metadata.resource_version.as_deref(), Some("42"));
    // Already there: nothing added twice.
    let again = merge_network_policy(&ours, Some(&merged));
    assert_eq!(from_namespaces(&again), ["other-cp", "ambient-code"]);
}
