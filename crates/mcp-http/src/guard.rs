//! The check in front of every MCP route:
//!
//! - the **peer address**: loopback, or one of the allow-list
//!   ([`AllowedPeers`]); a listener bound beyond loopback serves nobody else;
//! - `Host` / `Origin`: a browser page that rebinds its DNS name to
//!   127.0.0.1 sends its own name as `Host` (and its origin as `Origin`), so
//!   only the names the sidecar is really reached by are admitted. Loopback
//!   names by default. Any client that is not a browser writes these
//!   headers as it likes, hence the peer check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use crate::peers::AllowedPeers;

/// Host names (optionally `host:port`) admitted in `Host` and `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    any: bool,
    names: Vec<String>,
}

impl AllowedHosts {
    /// `localhost`, `127.0.0.1`, `::1`.
    pub fn loopback() -> Self {
        Self::new(["localhost", "127.0.0.1", "::1"])
    }

    /// These names; `*` admits every host (for a sidecar deliberately
    /// exposed behind something else that checks).
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut any = false;
        let mut list = Vec::new();
        for name in names {
            let name = name.as_ref().trim().to_ascii_lowercase();
            if name == "*" {
                any = true;
            } else if !name.is_empty() {
                list.push(name.trim_start_matches('[').replace(']', ""));
            }
        }
        Self { any, names: list }
    }

    /// True when an authority (`host`, `host:port`, `[v6]:port`) is admitted.
    pub fn admits(&self, authority: &str) -> bool {
        if self.any {
            return true;
        }
        let authority = authority.trim().to_ascii_lowercase();
        let (host, port) = split_authority(&authority);
        self.names.iter().any(|allowed| match port {
            Some(port) => *allowed == host || *allowed == format!("{host}:{port}"),
            None => *allowed == host,
        })
    }
}

/// `host[:port]` → (host without brackets, port).
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has more than one colon and no port.
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (authority, None),
    }
}

/// The authority of an `Origin` value (`scheme://host[:port]`); `None` for
/// `null` or anything unparsable.
fn origin_authority(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

fn refused(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

/// Why a request's headers are refused, if they are.
pub fn refusal(allowed: &AllowedHosts, headers: &HeaderMap) -> Option<&'static str> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !allowed.admits(host) {
        return Some("Host not allowed");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let admitted = origin
            .to_str()
            .ok()
            .and_then(origin_authority)
            .is_some_and(|a| allowed.admits(a));
        if !admitted {
            return Some("Origin not allowed");
        }
    }
    None
}

/// Who may call: the peer addresses and the `Host`/`Origin` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub hosts: AllowedHosts,
    pub peers: AllowedPeers,
}

impl Default for Guard {
    /// Loopback peers, loopback names.
    fn default() -> Self {
        Self {
            hosts: AllowedHosts::loopback(),
            peers: AllowedPeers::loopback(),
        }
    }
}

impl Guard {
    /// Why a request from `peer` (unknown: refused) with `headers` is
    /// refused, if it is.
    pub fn refusal(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<&'static str> {
        match peer {
            Some(peer) if self.peers.admits(peer.ip()) => refusal(&self.hosts, headers),
            _ => Some("peer address not allowed"),
        }
    }
}

/// Middleware: 403 unless the peer, `Host` (and `Origin`, when sent) are
/// admitted. The peer comes from axum's `ConnectInfo` ([`crate::serve`]).
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match guard.refusal(peer, request.headers()) {
        Some(why) => {
            tracing::debug!(why, ?peer, "request refused");
            refused(why)
        }
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(
                header::HOST,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        if let Some(v) = origin {
            h.insert(
                header::ORIGIN,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    #[test]
    fn loopback_by_default() {
        let a = AllowedHosts::loopback();
        for ok in [
            "localhost",
            "localhost:8090",
            "127.0.0.1:8090",
            "[::1]:8090",
            "LOCALHOST",
        ] {
            assert_eq!(refusal(&a, &headers(Some(ok), None)), None, "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8090",
            "127.0.0.1.nip.io",
            "",
            "localhost.evil",
        ] {
            assert!(refusal(&a, &headers(Some(bad), None)).is_some(), "{bad}");
        }
        assert!(refusal(&a, &headers(None, None)).is_some());
    }

    #[test]
    fn origin_must_be_admitted_when_sent() {
        let a = AllowedHosts::loopback();
        let host = Some("127.0.0.1:8090");
        assert_eq!(
            refusal(&a, &headers(host, Some("http://localhost:3000"))),
            None
        );
        for bad in [
            "http://evil.example",
            "null",
            "http://localhost@evil.example",
            "garbage",
        ] {
            assert!(refusal(&a, &headers(host, Some(bad))).is_some(), "{bad}");
        }
    }

    #[test]
    fn the_peer_is_checked_whatever_the_headers_say() {
        let guard = Guard::default();
        let local = headers(Some("localhost"), None);
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(guard.refusal(peer("127.0.0.1:5000"), &local), None);
        assert_eq!(guard.refusal(peer("[::1]:5000"), &local), None);
        // The case: a listener on 0.0.0.0, `Host: localhost`, a
        // caller from the network.
        for outside in ["192.0.2.2:5000", "[fd00::2]:5000", "[::ffff:10.0.0.1]:1"] {
            assert!(guard.refusal(peer(outside), &local).is_some(), "{outside}");
        }
        assert!(guard.refusal(None, &local).is_some(), "unknown peer");
        // Listed peers still need an admitted Host.
        let listed = Guard {
            peers: AllowedPeers::new(["192.0.2.0/24"]).unwrap_or_else(|e| panic!("{e}")),
            ..Guard::default()
        };
        assert_eq!(listed.refusal(peer("192.0.2.2:5000"), &local), None);
        let evil = headers(Some("evil.example"), None);
        assert!(listed.refusal(peer("192.0.2.2:5000"), &evil).is_some());
    }

    #[test]
    fn configured_names_and_ports() {
        let a = AllowedHosts::new(["mcp.svc:8090", "sidecar"]);
        assert!(a.admits("mcp.svc:8090"));
        assert!(!a.admits("mcp.svc:9999"));
        assert!(a.admits("sidecar:1"));
        assert!(!a.admits("localhost"));
        assert!(AllowedHosts::new(["*"]).admits("anything:1"));
    }
}
