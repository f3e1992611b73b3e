//! `ambient-mcp`: the platform-tools MCP sidecar of a session pod.
//!
//! The agent reaches the platform (sessions, agents, projects) only through
//! the 16 tools served here, authenticated with a token this process
//! exchanges and refreshes itself. Modules follow the spec's concepts:
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | flags and env (wire.md §5), validated into [`config::Settings`] |
//! | [`credentials`] | where the API token comes from: the token exchange or `AMBIENT_TOKEN` |
//! | [`api`] | the REST client: 30 s timeout, bounded bodies, one refresh-and-retry on 401 |
//! | [`search`] | the safe-value rule for everything put into a `search` |
//! | [`merge`] | client-side label/annotation merge (the API's PATCH replaces) |
//! | [`projection`] | the result shapes of the reference tools |
//! | [`mention`] | `@agent` mentions in pushed messages |
//! | [`tools`] | the 16 tools: catalog, arguments, errors, and each call |
//! | [`watch`] | `watch_session_messages`: the message stream and phase, per subscription |
//! | [`server`] | the rmcp handler, one per MCP session |
//! | [`daemon`] | wiring: token first, then stdio or the HTTP listener |

pub mod api;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod mention;
pub mod merge;
pub mod projection;
pub mod search;
pub mod server;
pub mod tools;
pub mod watch;
