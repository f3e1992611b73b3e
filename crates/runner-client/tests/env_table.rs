//! Every variable of the runner client, read as the reference runner reads
//! its own: empty is unset, `AMBIENT_GRPC_USE_TLS` true for `1`, `true` or
//! `yes` in any case and false otherwise, and the exchange protocol from
//! its one name or the older alias.
//!
//! Alone in its own test binary because it changes the process environment.
#![allow(unsafe_code)]

use ambient_daemon::env_rules::table::{Row, boolean, check, text, value};
use ambient_protocol::env::is_truthy;
use ambient_runner_client::cli::Cli;

const ROWS: &[Row] = &[
    value("AMBIENT_GRPC_URL", "api:9000"),
    boolean("AMBIENT_GRPC_USE_TLS", is_truthy),
    text("AMBIENT_GRPC_CA_CERT_FILE"),
    value("AMBIENT_SERVICE_CA_FILE", "/ca/service-ca.crt"),
    text("AMBIENT_CP_TOKEN_URL"),
    text("AMBIENT_CP_TOKEN_PUBLIC_KEY"),
    value("AMBIENT_CP_TOKEN_PROTOCOL", "v1"),
    text("AMBIENT_SESSION_KEY_FILE"),
    text("SESSION_ID"),
    value("BOT_TOKEN_FILE", "/b/token"),
    text("BOT_TOKEN"),
    value("LOG_LEVEL", "debug"),
    value("LOG_FORMAT", "json"),
    text("RESUME_AFTER_SEQ"),
];

#[test]
fn every_variable_reads_empty_as_unset_and_use_tls_as_the_reference_runner() {
    // SAFETY: the only test of this binary: no other thread touches the environment.
    let failures = unsafe { check::<Cli>(&["ambient-runner-client", "watch"], ROWS) };
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
