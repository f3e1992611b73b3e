//! Connection fairness: a per-client-IP cap on open connections, checked at
//! accept time below the global cap, so that one pod cannot hold every slot
//! with idle connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::limit::client_key;

/// Open connections per client address (IPv6 by /64, like the rate limit).
#[derive(Debug)]
pub struct ConnectionTable {
    per_ip: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of a client; gives its slot back on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    table: Arc<ConnectionTable>,
    key: IpAddr,
}

impl ConnectionTable {
    /// A table allowing `per_ip` (at least 1) open connections per client.
    pub fn new(per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip: per_ip.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip`, or `None` when that client
    /// already holds its share.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.per_ip {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            table: self.clone(),
            key,
        })
    }

    /// Open connections of `ip`'s client.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&client_key(ip)).copied().unwrap_or(0)
    }

    /// Clients with at least one open connection.
    pub fn clients(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn cap_per_client_and_slots_come_back() {
        let table = ConnectionTable::new(2);
        let a1 = table.try_open(ip("10.0.0.1"));
        let a2 = table.try_open(ip("10.0.0.1"));
        assert!(a1.is_some() && a2.is_some());
        assert!(table.try_open(ip("10.0.0.1")).is_none());
        // Another client is not affected.
        let b = table.try_open(ip("10.0.0.2"));
        assert!(b.is_some());
        // The same /64 is one client.
        let v6 = table.try_open(ip("2001:db8::1"));
        let v6b = table.try_open(ip("2001:db8::2"));
        assert!(v6.is_some() && v6b.is_some());
        assert!(table.try_open(ip("2001:db8::3")).is_none());
        drop(a1);
        assert_eq!(table.open(ip("10.0.0.1")), 1);
        assert!(table.try_open(ip("10.0.0.1")).is_some());
        drop((a2, b, v6, v6b));
        assert_eq!(table.clients(), 0, "empty entries are removed");
    }
}
