//! Every variable of the control plane, read as the reference reads its
//! own (`envOrDefault`): empty is unset, `AMBIENT_GRPC_USE_TLS` and our
//! booleans are true only for `true`, `USE_VERTEX` for `1` or `true`.
//!
//! Alone in its own test binary because it changes the process environment.
#![allow(unsafe_code)]

use ambient_daemon::env_rules::table::{Row, boolean, check, text, value};
use ambient_protocol::env::{is_one_or_true, is_true};

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    config: ambient_control_plane::config::Config,
}

const ROWS: &[Row] = &[
    value("AMBIENT_API_SERVER_URL", "http://api:8000"),
    text("AMBIENT_API_TOKEN"),
    text("AMBIENT_API_TOKEN_FILE"),
    value("OIDC_TOKEN_URL", "https://sso.example/token"),
    boolean("OIDC_ALLOW_INSECURE", is_true),
    text("OIDC_CLIENT_ID"),
    text("OIDC_CLIENT_SECRET"),
    text("OIDC_CLIENT_SECRET_FILE"),
    value("AMBIENT_GRPC_SERVER_ADDR", "api:9000"),
    boolean("AMBIENT_GRPC_USE_TLS", is_true),
    text("AMBIENT_GRPC_CA_CERT_FILE"),
    value("LOG_LEVEL", "debug"),
    value("LOG_FORMAT", "json"),
    text("KUBECONFIG"),
    value("CP_KUBE_REQUEST_TIMEOUT", "5"),
    value("MODE", "test"),
    value("RECONCILERS", "tally"),
    value("PLATFORM_MODE", "mpp"),
    value("MPP_CONFIG_NAMESPACE", "tenants"),
    text("PROJECT_KUBE_TOKEN_FILE"),
    text("RUNNER_IMAGE_NAMESPACE"),
    text("GRPC_SERVICE_ACCOUNT"),
    text("CP_RUNTIME_NAMESPACE"),
    text("CP_INSTALLATION_ID"),
    text("NAMESPACE"),
    value("RUNNER_IMAGE", "runner:1"),
    text("BACKEND_API_URL"),
    text("MCP_IMAGE"),
    text("MCP_API_SERVER_URL"),
    text("GITHUB_MCP_IMAGE"),
    text("JIRA_MCP_IMAGE"),
    text("K8S_MCP_IMAGE"),
    text("GOOGLE_MCP_IMAGE"),
    text("GITLAB_MCP_IMAGE"),
    value("RUNNER_LOG_LEVEL", "debug"),
    value("CP_TOKEN_LISTEN_ADDR", ":9090"),
    boolean("CP_TOKEN_REQUIRE_V2", is_true),
    boolean("CP_TOKEN_REQUIRE_V3", is_true),
    text("CP_TOKEN_URL"),
    text("HTTP_PROXY"),
    text("HTTPS_PROXY"),
    text("NO_PROXY"),
    text("IMAGE_PULL_SECRET"),
    text("ANTHROPIC_API_KEY"),
    boolean("USE_VERTEX", is_one_or_true),
    value("CLOUD_ML_REGION", "us-east5"),
    text("ANTHROPIC_VERTEX_PROJECT_ID"),
    value("GOOGLE_APPLICATION_CREDENTIALS", "/k/key.json"),
    value("VERTEX_SECRET_NAME", "vx"),
    value("VERTEX_SECRET_NAMESPACE", "vx-ns"),
    value("RUNNER_CPU_REQUEST", "1"),
    value("RUNNER_MEMORY_REQUEST", "2Gi"),
    value("RUNNER_CPU_LIMIT", "3"),
    value("RUNNER_MEMORY_LIMIT", "8Gi"),
    text("SIDECAR_CPU_REQUEST"),
    text("SIDECAR_MEMORY_REQUEST"),
    text("SIDECAR_CPU_LIMIT"),
    text("SIDECAR_MEMORY_LIMIT"),
    value("CP_WORKERS", "8"),
    value("CP_RESYNC_SECONDS", "60"),
    value("CP_HEALTH_LISTEN_ADDR", ":9091"),
    boolean("CP_LEADER_ELECTION", is_true),
    value("CP_LEASE_NAME", "other"),
    text("POD_NAME"),
    value("CP_RUNTIME", "process"),
    text("CP_STATE_DIR"),
    text("CP_RUNNER_COMMAND"),
    text("CP_MCP_COMMAND"),
    text("CP_CREDENTIAL_ENTRYPOINT"),
    text("CP_CREDENTIAL_COMMANDS"),
    text("CP_CREDENTIAL_REFRESH_SECONDS"),
    boolean("CP_STOP_SESSIONS_ON_EXIT", is_true),
    text("CP_POD_SERVICE_CA_FILE"),
    text("CP_VERTEX_KEY_FILE"),
    value("CP_SESSION_IDENTITY", "platform"),
    value("CP_GATEWAY_LISTEN_ADDR", ":9092"),
    text("CP_GATEWAY_URL"),
    value("CP_SESSION_KEY_ROTATION_HOURS", "12"),
    text("CP_SESSION_KEY_ROTATION_SECONDS"),
    value("CP_SESSION_KEY_RELOAD_SECONDS", "30"),
    text("CP_SERVICE_CA_FILE"),
];

#[test]
fn every_variable_reads_empty_as_unset_and_booleans_as_the_reference() {
    // SAFETY: the only test of this binary: no other thread touches the environment.
    let failures = unsafe { check::<Cli>(&["ambient-control-plane"], ROWS) };
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
