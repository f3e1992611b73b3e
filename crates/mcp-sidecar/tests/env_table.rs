//! Every variable of ambient-mcp, read as the reference reads its own:
//! empty is unset (`MCP_TRANSPORT=""` is stdio, `MCP_BIND_ADDR=""` the
//! default address), and the exchange protocol from its one name or the
//! older alias.
//!
//! Alone in its own test binary because it changes the process environment.
#![allow(unsafe_code)]

use ambient_daemon::env_rules::table::{Row, check, text, value};
use ambient_mcp::config::Config;

const ROWS: &[Row] = &[
    value("MCP_TRANSPORT", "sse"),
    value("MCP_BIND_ADDR", "127.0.0.1:9000"),
    value("AMBIENT_API_URL", "http://api:8000"),
    text("AMBIENT_CP_TOKEN_URL"),
    text("AMBIENT_CP_TOKEN_PUBLIC_KEY"),
    text("SESSION_ID"),
    text("AMBIENT_TOKEN"),
    value("AMBIENT_CP_TOKEN_PROTOCOL", "v1"),
    text("AMBIENT_SESSION_KEY_FILE"),
    value("MCP_ALLOWED_HOSTS", "mcp.local"),
    value("MCP_ALLOWED_PEERS", "10.0.0.0/8"),
    text("SSL_CERT_FILE"),
    value("MCP_MAX_SUBSCRIPTIONS", "3"),
    value("LOG_FORMAT", "json"),
    value("LOG_LEVEL", "debug"),
];

#[test]
fn every_variable_reads_empty_as_unset() {
    // SAFETY: the only test of this binary: no other thread touches the environment.
    let failures = unsafe { check::<Config>(&["ambient-mcp"], ROWS) };
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
