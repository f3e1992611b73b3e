//! The readiness line: `<name> listening on <addr>` on stdout, flushed, once
//! a listener is bound. Tests and scripts wait for it (port 0 → real port).

use std::fmt::Display;
use std::io::Write as _;

/// Prints `<name> listening on <addr>` to stdout and flushes it. A closed
/// stdout is not an error for a daemon.
pub fn announce_listening(name: &str, addr: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{name} listening on {addr}");
    let _ = out.flush();
}
