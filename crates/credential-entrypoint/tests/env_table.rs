//! Every variable of the credential entrypoint, read as the reference reads
//! its own: empty is unset (`PLATFORM_MODE=""` is standard), and the
//! exchange protocol from its one name or the older `AMBIENT_EXCHANGE_PROTOCOL`.
//!
//! Alone in its own test binary because it changes the process environment.
#![allow(unsafe_code)]

use ambient_daemon::env_rules::table::{Row, check, text, value};
use credential_entrypoint::cli::Cli;

const ROWS: &[Row] = &[
    text("SESSION_ID"),
    text("CREDENTIAL_PROVIDER"),
    text("CREDENTIAL_IDS"),
    text("AMBIENT_API_URL"),
    value("CREDENTIAL_ALLOW_HOSTS", "api.example"),
    text("AMBIENT_CP_TOKEN_URL"),
    text("AMBIENT_CP_TOKEN_PUBLIC_KEY"),
    value("AMBIENT_CP_TOKEN_PROTOCOL", "v1"),
    text("AMBIENT_SESSION_KEY_FILE"),
    value("PLATFORM_MODE", "mpp"),
    value("AMBIENT_CREDENTIAL_REFRESH_SECONDS", "5"),
    value("CREDENTIAL_ON_ROTATE", "ignore"),
    value("CREDENTIAL_GRACE_PERIOD_SECONDS", "3"),
    value("CREDENTIAL_KUBECONFIG_PATH", "/k/config"),
    value("CREDENTIAL_MPP_CONFIG_PATH", "/k/mpp.toml"),
    text("CREDENTIAL_FILES_DIR"),
    value("CREDENTIAL_SERVE_MCP", "127.0.0.1:9000"),
    value("CREDENTIAL_MCP_ALLOWED_PEERS", "10.0.0.0/8"),
    value("CREDENTIAL_MCP_MAX_SESSIONS", "3"),
    value("CREDENTIAL_MCP_IDLE_SECONDS", "7"),
    value("LOG_FORMAT", "json"),
    value("LOG_LEVEL", "debug"),
];

#[test]
fn every_variable_reads_empty_as_unset() {
    // SAFETY: the only test of this binary: no other thread touches the environment.
    let failures = unsafe { check::<Cli>(&["credential-entrypoint"], ROWS) };
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
