//! Which peers an MCP listener serves: loopback always, others only when
//! listed (addresses or CIDR blocks). A `Host` header is whatever the
//! client writes, so the peer address is what keeps a listener bound beyond
//! loopback from serving the network.

use std::net::IpAddr;
use std::str::FromStr;

/// Peers admitted besides loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedPeers {
    nets: Vec<(IpAddr, u8)>,
}

/// An entry of the allow-list that is not an address or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block (e.g. 10.0.0.5, 10.0.0.0/8, fd00::/8)")]
pub struct PeerError(String);

impl AllowedPeers {
    /// Loopback only.
    pub fn loopback() -> Self {
        Self::default()
    }

    /// Loopback and these entries (blank ones skipped).
    pub fn new<I, S>(entries: I) -> Result<Self, PeerError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if !entry.is_empty() {
                nets.push(parse_net(entry).ok_or_else(|| PeerError(entry.to_owned()))?);
            }
        }
        Ok(Self { nets })
    }

    /// Whether `peer` is served.
    pub fn admits(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        peer.is_loopback() || self.nets.iter().any(|&(net, len)| contains(net, len, peer))
    }
}

impl FromStr for AllowedPeers {
    type Err = PeerError;

    /// A comma-separated list.
    fn from_str(list: &str) -> Result<Self, PeerError> {
        Self::new(list.split(','))
    }
}

fn parse_net(entry: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = match entry.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (entry, None),
    };
    let ip = IpAddr::from_str(ip).ok()?.to_canonical();
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(len) => len.parse::<u8>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((ip, len))
}

fn contains(net: IpAddr, len: u8, peer: IpAddr) -> bool {
    match (net, peer) {
        (IpAddr::V4(n), IpAddr::V4(p)) => prefix_eq(&n.octets(), &p.octets(), len),
        (IpAddr::V6(n), IpAddr::V6(p)) => prefix_eq(&n.octets(), &p.octets(), len),
        _ => false,
    }
}

/// The first `len` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let (whole, rest) = (usize::from(len / 8), len % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn loopback_only_by_default() {
        let p = AllowedPeers::loopback();
        for ok in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(p.admits(ip(ok)), "{ok}");
        }
        for bad in [
            "192.0.2.2",
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "fd00::2",
            "0.0.0.0",
        ] {
            assert!(!p.admits(ip(bad)), "{bad}");
        }
    }

    #[test]
    fn listed_addresses_and_blocks() {
        let p: AllowedPeers = "10.0.0.0/8, 192.0.2.7,fd00::/8,172.16.0.0/12"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        for ok in [
            "10.1.2.3",
            "192.0.2.7",
            "fd00::2",
            "::ffff:10.0.0.1",
            "172.31.255.1",
        ] {
            assert!(p.admits(ip(ok)), "{ok}");
        }
        for bad in ["11.0.0.1", "192.0.2.8", "fe80::1", "172.32.0.1"] {
            assert!(!p.admits(ip(bad)), "{bad}");
        }
        assert!(AllowedPeers::new(["0.0.0.0/0"]).is_ok_and(|p| p.admits(ip("8.8.8.8"))));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "host.example",
            "10.0.0.0/x",
            "*",
        ] {
            assert!(AllowedPeers::new([bad]).is_err(), "{bad}");
        }
        assert_eq!(AllowedPeers::new(["", " "]), Ok(AllowedPeers::loopback()));
    }
}
