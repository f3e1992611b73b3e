//! The demo runner's parts, shared with the end-to-end tests:
//!
//! - [`sse`]: a minimal MCP client over the legacy SSE transport (`GET
//!   <url>/sse`, then JSON-RPC POSTed to the announced endpoint, answers on
//!   the stream), the transport runners use for every sidecar;
//! - [`proof`]: how a runner shows that a credential arrived without
//!   printing it (a short SHA-256 fingerprint);
//! - [`runner`]: what `ambient-demo-runner` does;
//! - [`probe`]: what `ambient-session-probe` does (an agent trying calls it
//!   must not be able to make, for the access tests).

pub mod probe;
pub mod proof;
pub mod runner;
pub mod sse;
