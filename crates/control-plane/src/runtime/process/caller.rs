//! Which session a loopback connection comes from (wire.md §3: an exchange
//! is bound to the caller's pod; here, the peer socket must belong to a
//! process of the claimed session).
//!
//! The connection's client end is found in `/proc/net/tcp` and `tcp6` (the
//! entry whose local address is the peer and whose remote address is our
//! listener), which gives its socket inode; the session holds the socket
//! when one of its processes (the members of the `setsid` sessions its
//! shims lead) has that inode among its open files. Nothing else is
//! trusted: not the claimed ID, not an environment variable.
//!
//! A process that made itself non-dumpable (our sidecars do, so other
//! processes of the same user cannot read their memory) hides its open
//! files from every process without `CAP_SYS_PTRACE`. Such a socket cannot
//! be attributed, and an unattributed caller is refused: binding never
//! fails open. [`can_read_hidden_files`] tells, once at startup, whether
//! this process can attribute them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// What the open files of a session's processes say about a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A process of the session has it open.
    Session,
    /// None of the session's processes has it open, and all could be read.
    Nobody,
    /// Not found, and some of the session's processes hide their files.
    Hidden,
}

/// The inode of the client socket of the TCP connection `peer` → `local`,
/// read from the tables under `proc_net` (`/proc/net` or `/proc/self/net`).
pub fn client_socket_inode(proc_net: &Path, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(proc_net.join(table)).ok()?;
        find_inode(&text, peer, local)
    })
}

/// The inode of the entry of a `/proc/net/tcp{,6}` table whose local end
/// is `peer` and remote end is `local`.
pub fn find_inode(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    let (peer, local) = (canonical(peer), canonical(local));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (ours, theirs) = (
            parse_endpoint(fields.get(1)?)?,
            parse_endpoint(fields.get(2)?)?,
        );
        if ours != peer || theirs != local {
            return None;
        }
        fields.get(9)?.parse().ok().filter(|inode| *inode != 0)
    })
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of an IPv4
/// client) compare as the IPv4 address they carry.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6): each 32-bit word as the
/// kernel prints it, the native value of network-order bytes.
fn parse_endpoint(raw: &str) -> Option<SocketAddr> {
    let (addr, port) = raw.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

/// Whether one of `pids` has socket `inode` open.
pub fn holder(pids: &[i32], inode: u64) -> Holder {
    let wanted = format!("socket:[{inode}]");
    let mut hidden = false;
    for pid in pids {
        let entries = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(entries) => entries,
            // Gone meanwhile: it holds nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {
                hidden = true;
                continue;
            }
        };
        for entry in entries.flatten() {
            if std::fs::read_link(entry.path())
                .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            {
                return Holder::Session;
            }
        }
    }
    if hidden {
        Holder::Hidden
    } else {
        Holder::Nobody
    }
}

/// Whether this process may read the open files of processes that made
/// themselves non-dumpable: root, or `CAP_SYS_PTRACE` in its effective set.
pub fn can_read_hidden_files() -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn finds_the_client_end_not_the_server_end() {
        // 127.0.0.1:50000 → 127.0.0.1:8080: the client's entry is line 1.
        let inode = find_inode(TABLE, addr("127.0.0.1:50000"), addr("127.0.0.1:8080"));
        assert_eq!(inode, Some(2222));
        assert_eq!(
            find_inode(TABLE, addr("127.0.0.1:50001"), addr("127.0.0.1:8080")),
            None
        );
    }

    #[test]
    fn mapped_ipv6_addresses_match_ipv4_entries() {
        let inode = find_inode(
            TABLE,
            addr("[::ffff:127.0.0.1]:50000"),
            addr("[::ffff:127.0.0.1]:8080"),
        );
        assert_eq!(inode, Some(2222));
    }

    #[test]
    fn parses_ipv6_entries() {
        // ::1 is three zero words then 0x01000000 read natively (LE) → 00000001? The
        // kernel prints each word's native value; build the line the same way.
        let word = |b: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(b));
        let loopback = format!(
            "{}{}{}{}",
            word([0; 4]),
            word([0; 4]),
            word([0; 4]),
            word([0, 0, 0, 1])
        );
        let table = format!(
            "header\n   0: {loopback}:C350 {loopback}:1F90 01 00000000:00000000 00:00000000 00000000 0 0 4444 1\n"
        );
        assert_eq!(
            find_inode(&table, addr("[::1]:50000"), addr("[::1]:8080")),
            Some(4444)
        );
    }

    #[test]
    fn a_live_connection_is_attributed_to_its_process_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let client =
            std::net::TcpStream::connect(listener.local_addr().unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        let (_server, peer) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        let local = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let inode = client_socket_inode(Path::new("/proc/net"), peer, local)
            .unwrap_or_else(|| panic!("no entry for {peer} → {local}"));
        let me = std::process::id() as i32;
        assert_eq!(holder(&[me], inode), Holder::Session);
        // PID 1 is not us and does not hold our socket (readable or not).
        assert_ne!(holder(&[1], inode), Holder::Session);
        assert_eq!(holder(&[], inode), Holder::Nobody);
        drop(client);
    }
}
