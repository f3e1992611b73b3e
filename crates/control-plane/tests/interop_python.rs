//! `render` checked by an independent implementation: every object of a
//! session with two credentials, Vertex on, in MPP mode, validated strictly
//! (unknown fields are errors) against the Kubernetes schemas by PyPI's
//! `kubernetes-validate`, in the interop virtualenv of `cargo xtask test`
//! (its interpreter is passed in `AMBIENT_TEST_PYTHON`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

mod support;

use support::render::{kinds, public_key_file, render, write, yaml_docs};

fn python() -> String {
    std::env::var("AMBIENT_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("AMBIENT_TEST_PYTHON is not set: run the interop tests through `cargo xtask test`")
    })
}

/// Validates every document of stdin strictly; custom kinds only by shape.
const VALIDATE: &str = r#"
import sys, yaml, kubernetes_validate
bad = 0
for doc in yaml.safe_load_all(sys.stdin):
    if not doc:
        continue
    kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
    if doc.get("apiVersion") == "tenant.paas.redhat.com/v1alpha1":
        if doc.get("spec", {}).get("type") != "runtime":
            print(f"{kind} {name}: no runtime spec"); bad += 1
        continue
    for version in ("1.27.0", "1.33.0"):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            print(f"{kind} {name} ({version}): {e.message} at {list(e.path)}"); bad += 1
    print(f"valid: {kind} {name}")
sys.exit(1 if bad else 0)
"#;

#[test]
fn rendered_objects_pass_strict_kubernetes_schemas_and_share_no_sidecar_volume() {
    let dir = std::env::temp_dir().join(format!("cp-interop-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let session = write(
        &dir,
        "s.json",
        r#"{"id":"SessZ0001","kind":"Session","name":"demo","project_id":"team-z","prompt":"hi",
            "repo_url":"https://github.com/o/r","llm_temperature":0.7,"start_time":"2026-01-01T00:00:00Z",
            "environment_variables":"{\"JIRA_READ_ONLY_MODE\":\"false\"}","phase":"Pending"}"#,
    );
    let project = write(
        &dir,
        "p.json",
        r#"{"id":"team-z","name":"team-z","prompt":"rules"}"#,
    );
    let creds = write(&dir, "c.json", r#"{"github":"cred-1","jira":"cred-2"}"#);
    let key_file = public_key_file(&dir);
    let out = render(
        &[
            "--session-file",
            &session,
            "--project-file",
            &project,
            "--public-key-file",
            &key_file,
            "--credentials-file",
            &creds,
        ],
        &[
            ("PLATFORM_MODE", "mpp"),
            ("USE_VERTEX", "1"),
            ("ANTHROPIC_VERTEX_PROJECT_ID", "gcp-1"),
            ("RUNNER_IMAGE_NAMESPACE", "ambient-images"),
            ("CP_TOKEN_URL", "http://cp.ambient-code.svc:8080/token"),
            ("MCP_IMAGE", "quay.io/x/mcp:1"),
            ("GITHUB_MCP_IMAGE", "quay.io/x/gh:1"),
            ("JIRA_MCP_IMAGE", "localhost/jira:dev"),
            ("ANTHROPIC_API_KEY", "sk-ant-TOPSECRET"),
            ("HTTPS_PROXY", "http://proxy:3128"),
        ],
    );
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!yaml.contains("TOPSECRET"));

    let docs = yaml_docs(&yaml);
    assert_eq!(
        kinds(&docs),
        [
            "TenantNamespace",
            "RoleBinding",
            "Secret",
            "NetworkPolicy",
            "ServiceAccount",
            "Secret",
            "Pod",
            "Service"
        ]
    );
    let pod = docs
        .iter()
        .find(|d| d["kind"] == "Pod")
        .unwrap_or_else(|| panic!("no pod"));
    for owned in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Pod" | "Service")))
    {
        let owner = &owned["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ServiceAccount", "{owned}");
        assert_eq!(owner["uid"], ambient_control_plane::render::PLACEHOLDER_UID);
    }
    // No volume is mounted by two sidecars (the service CA is read-only, one file).
    let mut mounted_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
    {
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            mounted_by
                .entry(m["name"].as_str().unwrap_or("").to_owned())
                .or_default()
                .push(c["name"].as_str().unwrap_or("").to_owned());
        }
    }
    for (volume, containers) in &mounted_by {
        if volume != "service-ca" {
            assert_eq!(containers.len(), 1, "{volume} shared by {containers:?}");
        }
    }
    assert!(mounted_by.contains_key("cred-tmp-github") && mounted_by.contains_key("cred-tmp-jira"));

    let mut child = Command::new(python())
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start python: {e}"));
    child
        .stdin
        .take()
        .map(|mut s| s.write_all(yaml.as_bytes()))
        .transpose()
        .unwrap_or_else(|e| panic!("{e}"));
    let result = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let report = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "strict validation failed:\n{report}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(report.matches("valid: ").count(), 7, "{report}");
    std::fs::remove_dir_all(&dir).ok();
}
