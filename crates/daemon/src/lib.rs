//! The scaffolding every ambient daemon binary shares: stderr logging in text
//! or JSON ([`logging`]), graceful stop on SIGTERM/SIGINT ([`signal`]), and
//! the `<name> listening on <addr>` line on stdout that tests and scripts
//! wait for ([`announce`]), and the one-line refusal of a command line that
//! does not parse ([`usage`]), the non-dumpable process of a daemon that
//! holds secrets ([`dumpable`]), the environment read as the reference
//! reads it: empty is unset, booleans by its rules ([`env_rules`]), a panic
//! report that never shows a secret from the environment ([`panic`]), and
//! the async runtime ([`runtime`]).

pub mod announce;
pub mod dumpable;
pub mod env_rules;
pub mod logging;
pub mod panic;
pub mod runtime;
pub mod signal;
pub mod tls_env;
pub mod usage;

pub use announce::announce_listening;
pub use dumpable::{make_non_dumpable, make_non_dumpable_or_exit};
pub use logging::{LogFormat, LoggingError, init_tracing};
pub use panic::install_panic_hook;
pub use runtime::{Threads, async_runtime};
pub use signal::shutdown_signal;
pub use tls_env::ignore_missing_ca_paths;
pub use usage::{exit_on_parse_error, parse_refusing_secret_args};
