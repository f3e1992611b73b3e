//! `ambient-control-plane render` over the real binary: the YAML stream parses
//! as Kubernetes objects, round-trips through the k8s-openapi types, and never
//! prints a secret.

mod support;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use support::render::{kinds, public_key_file, render, write, yaml_docs};

fn roundtrip<K: serde::de::DeserializeOwned + serde::Serialize>(doc: &serde_json::Value) {
    let typed: K = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"));
    let mut back = serde_json::to_value(&typed).unwrap_or_else(|e| panic!("{e}"));
    if let (Some(b), Some(d)) = (back.as_object_mut(), doc.as_object()) {
        b.insert("apiVersion".into(), d["apiVersion"].clone());
        b.insert("kind".into(), d["kind"].clone());
    }
    assert_eq!(&back, doc, "round trip changed the object");
}

#[test]
fn render_prints_parseable_kubernetes_yaml() {
    let dir = std::env::temp_dir().join(format!("cp-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let session = write(
        &dir,
        "s.json",
        r#"{"id":"SessA0001","kind":"Session","name":"demo","project_id":"ProjX","prompt":"hi",
            "environment_variables":"{\"JIRA_READ_ONLY_MODE\":\"true\"}","phase":"Pending",
            "created_at":"2026-01-01T00:00:00Z"}"#,
    );
    let project = write(&dir, "p.json", r#"{"id":"ProjX","name":"project-x"}"#);
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
            ("CP_TOKEN_URL", "http://cp.ambient-code.svc:8080/token"),
            ("MCP_IMAGE", "mcp:1"),
            ("GITHUB_MCP_IMAGE", "gh:1"),
            ("JIRA_MCP_IMAGE", "jira:1"),
            ("ANTHROPIC_API_KEY", "sk-ant-TOPSECRET"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("TOPSECRET"), "secret printed");

    let docs = yaml_docs(&stdout);
    assert_eq!(
        kinds(&docs),
        vec![
            "Namespace",
            "NetworkPolicy",
            "ServiceAccount",
            "Secret",
            "Pod",
            "Service"
        ]
    );
    for doc in &docs {
        match doc["kind"].as_str().unwrap_or("") {
            "Namespace" => roundtrip::<Namespace>(doc),
            "NetworkPolicy" => roundtrip::<NetworkPolicy>(doc),
            "ServiceAccount" => roundtrip::<ServiceAccount>(doc),
            "Secret" => roundtrip::<Secret>(doc),
            "Pod" => roundtrip::<Pod>(doc),
            "Service" => roundtrip::<Service>(doc),
            other => panic!("unexpected kind {other}"),
        }
    }
    let pod: Pod = serde_json::from_value(docs[4].clone()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = pod
        .spec
        .map(|s| s.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        vec![
            "ambient-code-runner",
            "ambient-mcp",
            "credential-github",
            "credential-jira"
        ]
    );
    assert_eq!(pod.metadata.namespace.as_deref(), Some("projx"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn render_refuses_bad_input_with_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("cp-render-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let no_project = write(&dir, "s.json", r#"{"id":"S1","name":"x"}"#);
    let not_json = write(&dir, "n.json", "{nope");
    let bad_creds = write(&dir, "c.json", r#"{"dropbox":"x"}"#);
    let ok_session = write(
        &dir,
        "ok.json",
        r#"{"id":"S1","name":"x","project_id":"p"}"#,
    );
    for args in [
        vec!["--session-file", no_project.as_str()],
        vec!["--session-file", not_json.as_str()],
        vec!["--session-file", "/nonexistent/s.json"],
        vec![
            "--session-file",
            ok_session.as_str(),
            "--credentials-file",
            bad_creds.as_str(),
        ],
    ] {
        let out = render(&args, &[]);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(out.stdout.is_empty());
    }
    std::fs::remove_dir_all(&dir).ok();
}
