//! Where an MCP listener binds. The reference's `MCP_BIND_ADDR=:8090` form
//! (a port alone) means **loopback**: every container of a pod shares it, and
//! the runner reaches its sidecars at `http://localhost:<port>`. Nothing
//! outside the pod needs an MCP sidecar, so an address beyond loopback is
//! honoured only when written out, with a warning naming the risk.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// A parsed listen address and how it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub addr: SocketAddr,
    /// Written as `:PORT` (and so made loopback).
    pub port_only: bool,
}

/// A listen address that is neither `:PORT` nor `IP:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not :PORT or IP:PORT")]
pub struct ListenError(String);

impl FromStr for ListenAddr {
    type Err = ListenError;

    fn from_str(raw: &str) -> Result<Self, ListenError> {
        let raw = raw.trim();
        let bad = || ListenError(raw.to_owned());
        if let Some(port) = raw.strip_prefix(':') {
            let port: u16 = port.parse().map_err(|_| bad())?;
            return Ok(ListenAddr {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                port_only: true,
            });
        }
        let addr: SocketAddr = raw.parse().map_err(|_| bad())?;
        Ok(ListenAddr {
            addr,
            port_only: false,
        })
    }
}

impl ListenAddr {
    /// Whether the address is reachable beyond this host's loopback.
    pub fn beyond_loopback(&self) -> bool {
        !self.addr.ip().to_canonical().is_loopback()
    }

    /// Logs, once at startup, what the address means: `:PORT` made loopback
    /// (info), or an address beyond loopback (a warning naming the risk).
    pub fn log_meaning(&self, setting: &str) {
        let addr = self.addr;
        if self.port_only {
            tracing::info!(
                "{setting}=:{port} means {addr} (loopback: the pod's containers share it); \
                 write 0.0.0.0:{port} to listen beyond it",
                port = addr.port()
            );
        } else if self.beyond_loopback() {
            tracing::warn!(
                "{setting}={addr} listens beyond loopback: whoever reaches this address \
                 could use the MCP tools and the credential behind them; only loopback \
                 peers and the peer allow-list are served"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Option<ListenAddr> {
        raw.parse().ok()
    }

    #[test]
    fn a_port_alone_is_loopback() {
        let a = parse(":8090").unwrap_or_else(|| panic!(":8090"));
        assert_eq!(
            a.addr,
            "127.0.0.1:8090".parse().unwrap_or_else(|e| panic!("{e}"))
        );
        assert!(a.port_only && !a.beyond_loopback());
    }

    #[test]
    fn explicit_addresses_are_kept_and_judged() {
        let any = parse("0.0.0.0:8091").unwrap_or_else(|| panic!("0.0.0.0"));
        assert!(!any.port_only && any.beyond_loopback());
        assert!(!parse("127.0.0.1:0").is_some_and(|a| a.beyond_loopback()));
        assert!(!parse("[::1]:8090").is_some_and(|a| a.beyond_loopback()));
        assert!(parse("[::]:8090").is_some_and(|a| a.beyond_loopback()));
        for bad in ["", ":", ":x", ":70000", "localhost:8090", "8090", "1.2.3.4"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
