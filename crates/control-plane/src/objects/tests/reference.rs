//! The reference's pod and environment facts (wire.md §4–§5), one test per
//! fact a drop-in must keep.

use super::*;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn find<'a>(o: &'a SessionObjects, name: &str) -> &'a Container {
    containers(o)
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volumes(o: &SessionObjects) -> Vec<k8s_openapi::api::core::v1::Volume> {
    o.pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
}

fn mounts(c: &Container) -> Vec<(String, String)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect()
}

#[test]
fn credential_sidecars_need_the_token_url_and_the_key_else_ids_go_to_the_runner() {
    let creds = BTreeMap::from([
        (Provider::Github, "gh-1".to_owned()),
        (Provider::Jira, "jira-1".to_owned()),
    ]);
    let mut no_url = config();
    no_url.token_url = None;
    for (cfg, key) in [(no_url, Some(KEY)), (config(), None)] {
        let o = build_with(&cfg, key, &creds);
        assert_eq!(containers(&o).len(), 1, "only the runner");
        let runner = &containers(&o)[0];
        assert_eq!(
            value_of(runner, "CREDENTIAL_IDS"),
            Some(r#"{"github":"gh-1","jira":"jira-1"}"#)
        );
        assert!(value_of(runner, "CREDENTIAL_MCP_URLS").is_none());
        assert!(value_of(runner, "CREDENTIAL_SIDECAR_MODE").is_none());
        assert_eq!(delivered_credentials(&cfg, key, &creds), creds);
    }
    // With both, sidecars; only providers with an image are delivered.
    let mut cfg = config();
    cfg.credential_images.jira = None;
    let delivered = delivered_credentials(&cfg, Some(KEY), &creds);
    assert_eq!(
        delivered,
        BTreeMap::from([(Provider::Github, "gh-1".to_owned())])
    );
}

#[test]
fn each_sidecar_has_its_own_tmp_and_the_service_ca_and_ssl_cert_file() {
    let o = build_with(&config(), Some(KEY), &all_credentials());
    let ca = "/etc/pki/ca-trust/extracted/pem/service-ca.crt";
    let mut tmp_volumes = Vec::new();
    for c in containers(&o).iter().skip(1) {
        assert_eq!(value_of(c, "SSL_CERT_FILE"), Some(ca), "{}", c.name);
        assert_eq!(
            value_of(c, "HTTPS_PROXY"),
            Some("http://proxy:3128"),
            "{}",
            c.name
        );
        let m = mounts(c);
        assert!(m.contains(&("service-ca".into(), ca.into())), "{}", c.name);
        let tmp: Vec<&String> = m
            .iter()
            .filter(|(_, p)| p == "/tmp")
            .map(|(n, _)| n)
            .collect();
        assert_eq!(tmp.len(), 1, "{}", c.name);
        tmp_volumes.push(tmp[0].clone());
    }
    // No volume is shared between sidecars.
    let mut unique = tmp_volumes.clone();
    unique.dedup();
    assert_eq!(unique.len(), tmp_volumes.len());
    let all_mounts: Vec<String> = containers(&o)
        .iter()
        .skip(1)
        .flat_map(|c| mounts(c).into_iter().map(|(n, _)| n))
        .filter(|n| n != "service-ca")
        .collect();
    let mut dedup = all_mounts.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), all_mounts.len(), "{all_mounts:?}");
    let gh_tmp = volumes(&o)
        .into_iter()
        .find(|v| v.name == "cred-tmp-github")
        .and_then(|v| v.empty_dir)
        .and_then(|e| e.size_limit)
        .map(|q| q.0);
    assert_eq!(gh_tmp.as_deref(), Some("10Mi"));
    assert_eq!(
        mounts(find(&o, "credential-github"))
            .iter()
            .find(|(_, p)| p == "/tmp")
            .map(|(n, _)| n.as_str()),
        Some("cred-tmp-github")
    );
}

#[test]
fn port_names_resources_and_pull_policy_are_the_references() {
    let o = build_with(&config(), Some(KEY), &all_credentials());
    let port_name = |c: &Container| {
        c.ports.clone().unwrap_or_default()[0]
            .name
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(port_name(find(&o, "ambient-code-runner")), "agui");
    assert_eq!(port_name(find(&o, "ambient-mcp")), "mcp-sse");
    assert_eq!(port_name(find(&o, "credential-k8s")), "cred-kubeconfig");
    assert_eq!(port_name(find(&o, "credential-gitlab")), "cred-gitlab");
    let res = |c: &Container| {
        let r = c.resources.clone().unwrap_or_default();
        let get = |m: Option<BTreeMap<String, Quantity>>, k: &str| {
            m.and_then(|m| m.get(k).map(|q| q.0.clone()))
                .unwrap_or_default()
        };
        [
            get(r.requests.clone(), "cpu"),
            get(r.requests, "memory"),
            get(r.limits.clone(), "cpu"),
            get(r.limits, "memory"),
        ]
    };
    assert_eq!(
        res(find(&o, "ambient-code-runner")),
        ["500m", "1Gi", "2000m", "4Gi"]
    );
    assert_eq!(
        res(find(&o, "ambient-mcp")),
        ["100m", "128Mi", "500m", "256Mi"]
    );
    assert_eq!(
        res(find(&o, "credential-jira")),
        ["100m", "256Mi", "500m", "512Mi"]
    );
    for c in containers(&o) {
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"), "{}", c.name);
    }
    assert_eq!(pull_policy("localhost/runner:dev"), "IfNotPresent");
    assert_eq!(pull_policy("quay.io/x/localhost/y"), "Always");
}

#[test]
fn runner_values_follow_the_reference() {
    let mut s = session();
    s.llm_temperature = Some(0.0);
    s.llm_max_tokens = Some(0);
    s.timeout = Some(0);
    s.repo_url = Some("https://github.com/o/r".into());
    s.start_time = Some(prost_types::Timestamp::default());
    s.project_id = Some("team-a".into());
    let prompt = PromptSources {
        project_prompt: Some("project rules".into()),
        agent_prompt: Some("you are the reviewer".into()),
        inbox: vec!["first note".into(), String::new(), "second note".into()],
    };
    let o = build_session(&config(), &s, Some(KEY), &BTreeMap::new(), &prompt);
    let runner = &containers(&o)[0];
    assert_eq!(value_of(runner, "PROJECT_NAME"), Some("team-a"));
    assert_eq!(value_of(runner, "IS_RESUME"), Some("true"));
    for zero in ["LLM_TEMPERATURE", "LLM_MAX_TOKENS", "TIMEOUT"] {
        assert!(value_of(runner, zero).is_none(), "{zero}");
    }
    assert_eq!(
        value_of(runner, "REPOS_JSON"),
        Some(r#"[{"url":"https://github.com/o/r"}]"#)
    );
    assert_eq!(
        value_of(runner, "INITIAL_PROMPT"),
        Some("project rules\n\nyou are the reviewer\n\nfirst note\n\nsecond note\n\nplease fix it")
    );
    for (f, want) in [
        (0.5, "0.5"),
        (1.0, "1"),
        (0.7, "0.7"),
        (100.0, "100"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (1e21, "1e+21"),
    ] {
        assert_eq!(go_float(f), want, "{f}");
    }
}

#[test]
fn vertex_copies_the_key_mounts_it_and_tells_the_runner() {
    let mut cfg = config();
    cfg.vertex = Some(VertexConfig {
        project_id: Some("gcp-proj".into()),
        region: "us-east5".into(),
        credentials_path: "/app/vertex/ambient-code-key.json".into(),
        secret_name: "ambient-vertex".into(),
        secret_namespace: "ambient-code".into(),
    });
    let o = build_with(&cfg, Some(KEY), &BTreeMap::new());
    let runner = &containers(&o)[0];
    for (name, value) in [
        ("USE_VERTEX", "1"),
        ("CLAUDE_CODE_USE_VERTEX", "1"),
        ("ANTHROPIC_VERTEX_PROJECT_ID", "gcp-proj"),
        ("CLOUD_ML_REGION", "us-east5"),
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/app/vertex/ambient-code-key.json",
        ),
        ("GCE_METADATA_HOST", "metadata.invalid"),
        ("GCE_METADATA_TIMEOUT", "1"),
    ] {
        assert_eq!(value_of(runner, name), Some(value), "{name}");
    }
    let vol = volumes(&o)
        .into_iter()
        .find(|v| v.name == "vertex")
        .and_then(|v| v.secret)
        .and_then(|s| s.secret_name);
    assert_eq!(vol.as_deref(), Some("ambient-vertex"));
    let m = runner
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "vertex")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (m.mount_path.as_str(), m.read_only),
        ("/app/vertex", Some(true))
    );
    // Only the runner mounts it.
    assert!(
        containers(&o)
            .iter()
            .skip(1)
            .all(|c| !mounts(c).iter().any(|(n, _)| n == "vertex"))
    );
    let copy = o.vertex_secret.clone().unwrap_or_else(|| panic!("no copy"));
    assert_eq!(
        (copy.from_namespace.as_str(), copy.from_name.as_str()),
        ("ambient-code", "ambient-vertex")
    );
    assert_eq!(copy.secret.metadata.namespace.as_deref(), Some("proj1"));
    assert_eq!(copy.secret.metadata.name.as_deref(), Some("ambient-vertex"));
    assert!(copy.secret.data.is_none() && copy.secret.string_data.is_none());
    // Off: no copy, no volume, and the flags say 0.
    let o = build_with(&config(), Some(KEY), &BTreeMap::new());
    assert!(o.vertex_secret.is_none());
    assert!(volumes(&o).iter().all(|v| v.name != "vertex"));
}

#[test]
fn mpp_asks_for_a_tenant_namespace_in_the_config_namespace() {
    let mut cfg = config();
    cfg.platform_mode = PlatformMode::Mpp;
    cfg.mpp_config_namespace = Some("ambient-code--config".into());
    let o = build_with(&cfg, Some(KEY), &BTreeMap::new());
    let tn = o
        .tenant_namespace
        .clone()
        .unwrap_or_else(|| panic!("no TenantNamespace"));
    let v = serde_json::to_value(&tn).unwrap_or_default();
    assert_eq!(v["apiVersion"], "tenant.paas.redhat.com/v1alpha1");
    assert_eq!(v["kind"], "TenantNamespace");
    assert_eq!(v["metadata"]["name"], "proj1");
    assert_eq!(v["metadata"]["namespace"], "ambient-code--config");
    assert_eq!(
        v["metadata"]["labels"]["tenant.paas.redhat.com/namespace-type"],
        "runtime"
    );
    assert_eq!(
        v["metadata"]["labels"]["tenant.paas.redhat.com/tenant"],
        "ambient-code"
    );
    assert_eq!(
        v["spec"],
        serde_json::json!({"network": {"security-zone": "internal"}, "type": "runtime"})
    );
    assert!(
        build_with(&config(), Some(KEY), &BTreeMap::new())
            .tenant_namespace
            .is_none()
    );
}

#[test]
fn the_image_puller_grant_is_per_namespace_in_the_image_namespace() {
    let mut cfg = config();
    cfg.runner_image_namespace = Some("ambient-images".into());
    let o = build_with(&cfg, Some(KEY), &BTreeMap::new());
    let rb = o
        .image_puller
        .clone()
        .unwrap_or_else(|| panic!("no image puller"));
    assert_eq!(rb.metadata.namespace.as_deref(), Some("ambient-images"));
    assert_eq!(
        rb.metadata.name.as_deref(),
        Some("ambient-image-puller-proj1")
    );
    assert_eq!(rb.role_ref.name, "system:image-puller");
    let subject = rb.subjects.unwrap_or_default().remove(0);
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("Group", "system:serviceaccounts:proj1")
    );
    assert!(
        build_with(&config(), Some(KEY), &BTreeMap::new())
            .image_puller
            .is_none()
    );
}
