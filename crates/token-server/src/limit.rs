//! Per-client-IP token buckets (429 with `Retry-After`).
//!
//! Each client address gets a bucket of `burst` tokens refilled at `rate`
//! per second; a request takes one. IPv6 clients are keyed by their /64, so
//! one host cannot dodge the limit by cycling addresses. Memory is bounded:
//! when the table is full, buckets that have refilled completely (idle
//! clients) are dropped; if that frees nothing, the table is cleared.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rate-limit settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per client.
    pub per_second: f64,
    /// Bucket size: requests a client may send at once.
    pub burst: u32,
    /// Bound on tracked clients.
    pub max_clients: usize,
}

impl Default for RateLimit {
    /// 10 requests/s with a burst of 20, up to 100 000 clients tracked.
    fn default() -> Self {
        Self {
            per_second: 10.0,
            burst: 20,
            max_clients: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The per-IP limiter.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// A limiter with `cfg` (a non-positive rate or a zero burst refuses
    /// nothing: the limiter is off).
    pub fn new(cfg: RateLimit) -> Self {
        Self {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.cfg.per_second > 0.0 && self.cfg.burst > 0
    }

    /// Takes a token for `ip` at `now`; `Err(wait)` says how long until the
    /// next token (for `Retry-After`).
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let key = client_key(ip);
        let burst = f64::from(self.cfg.burst);
        let rate = self.cfg.per_second;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.cfg.max_clients.max(1) && !buckets.contains_key(&key) {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= self.cfg.max_clients.max(1) {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    /// Number of tracked clients.
    pub fn clients(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// IPv4 (and IPv4-mapped) addresses as they are; IPv6 by /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn bucket_empties_and_refills() {
        let l = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3,
            max_clients: 10,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(ip("10.0.0.1"), t0), Ok(()));
        }
        let wait = l.check(ip("10.0.0.1"), t0).err();
        assert_eq!(wait, Some(Duration::from_millis(500)));
        // Another client is unaffected.
        assert_eq!(l.check(ip("10.0.0.2"), t0), Ok(()));
        // Half a second later one token is back.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.check(ip("10.0.0.1"), t1), Ok(()));
        assert!(l.check(ip("10.0.0.1"), t1).is_err());
    }

    #[test]
    fn ipv6_by_prefix_and_mapped_v4() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 1,
            max_clients: 10,
        });
        let t0 = Instant::now();
        assert!(l.check(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.check(ip("2001:db8:1:2::ffff"), t0).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), t0).is_ok());
        assert!(l.check(ip("192.0.2.7"), t0).is_ok());
        assert!(l.check(ip("::ffff:192.0.2.7"), t0).is_err());
    }

    #[test]
    fn table_is_bounded() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 5,
            max_clients: 4,
        });
        let t0 = Instant::now();
        for i in 0..50u8 {
            let _ = l.check(IpAddr::from([10, 0, 0, i]), t0);
            assert!(l.clients() <= 4);
        }
    }

    #[test]
    fn disabled_and_retry_after() {
        let l = RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 0,
            max_clients: 1,
        });
        for _ in 0..100 {
            assert!(l.check(ip("10.0.0.1"), Instant::now()).is_ok());
        }
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
