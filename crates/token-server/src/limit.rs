//! Per-client-IP token buckets (429 with `Retry-After`).
//!
//! Each client address gets a bucket of `burst` tokens refilled at `rate`
//! per second; a request takes one. IPv6 clients are keyed by their /64, so
//! one host cannot dodge the limit by cycling addresses. Memory is bounded:
//! when the table is full, buckets that have refilled completely (idle
//! clients) are dropped; if that frees too little, the least recently seen
//! sixteenth of the clients is evicted (never the whole table: a client
//! being limited stays limited while others come and go).

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

/// Slowest non-zero rate accepted (one request per 1000 s).
pub const MIN_RATE: f64 = 0.001;
/// Fastest rate accepted.
pub const MAX_RATE: f64 = 1_000_000.0;

impl RateLimit {
    /// Refuses rates that are not numbers, negative, or so slow that the
    /// `Retry-After` arithmetic would overflow (0 turns the limit off).
    pub fn validate(&self) -> Result<(), &'static str> {
        let r = self.per_second;
        if !r.is_finite() || r < 0.0 || (r > 0.0 && r < MIN_RATE) || r > MAX_RATE {
            return Err("the rate must be 0 (off) or between 0.001 and 1000000 per second");
        }
        if self.max_clients == 0 {
            return Err("max_clients must be at least 1");
        }
        Ok(())
    }
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
        let max = self.cfg.max_clients.max(1);
        if buckets.len() >= max && !buckets.contains_key(&key) {
            make_room(&mut buckets, max, now, rate, burst);
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
            let wait = Duration::try_from_secs_f64((1.0 - bucket.tokens) / rate);
            Err(wait.unwrap_or(MAX_WAIT).min(MAX_WAIT))
        }
    }

    /// Number of tracked clients.
    pub fn clients(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// Longest wait a 429 announces.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Frees room in a full table: drops buckets that have refilled (idle
/// clients); if fewer than a sixteenth of `max` went, evicts the least
/// recently seen until that much is free. Amortised O(log n) per insert.
fn make_room(
    buckets: &mut HashMap<IpAddr, Bucket>,
    max: usize,
    now: Instant,
    rate: f64,
    burst: f64,
) {
    buckets
        .retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
    let target = max - (max / 16).max(1);
    if buckets.len() <= target {
        return;
    }
    let mut seen: Vec<Instant> = buckets.values().map(|b| b.at).collect();
    let evict = buckets.len() - target;
    let (_, cutoff, _) = seen.select_nth_unstable(evict - 1);
    let cutoff = *cutoff;
    let mut left = evict;
    buckets.retain(|_, b| {
        if left > 0 && b.at <= cutoff {
            left -= 1;
            false
        } else {
            true
        }
    });
}

/// IPv4 (and IPv4-mapped) addresses as they are; IPv6 by /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
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
    fn a_full_table_evicts_the_oldest_not_everyone() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 2,
            max_clients: 32,
        });
        let t0 = Instant::now();
        // The limited client is seen last; 31 others are older.
        for i in 0..31u8 {
            assert!(l.check(IpAddr::from([10, 0, 1, i]), t0).is_ok());
        }
        let hog = ip("10.0.0.1");
        let t1 = t0 + Duration::from_millis(10);
        assert!(l.check(hog, t1).is_ok() && l.check(hog, t1).is_ok());
        assert!(l.check(hog, t1).is_err());
        assert_eq!(l.clients(), 32);
        // New clients arrive while everyone is still active: the oldest go,
        // the hog's empty bucket stays, so it stays limited.
        for i in 0..100u8 {
            let t = t1 + Duration::from_millis(10 + u64::from(i));
            assert!(l.check(IpAddr::from([10, 0, 2, i]), t).is_ok());
            assert!(l.clients() <= 32);
            assert!(
                l.check(hog, t).is_err(),
                "hog forgotten after {i} new clients"
            );
        }
    }

    #[test]
    fn settings_that_would_overflow_are_refused() {
        let with = |per_second| RateLimit {
            per_second,
            ..RateLimit::default()
        };
        assert!(with(10.0).validate().is_ok());
        assert!(with(0.0).validate().is_ok());
        for bad in [1e-300, f64::NAN, f64::INFINITY, -1.0, 1e12] {
            assert!(with(bad).validate().is_err(), "{bad}");
        }
        // Even unvalidated, a tiny rate yields a bounded wait, not a panic.
        let l = RateLimiter::new(RateLimit {
            per_second: 1e-300,
            burst: 1,
            max_clients: 4,
        });
        let t0 = Instant::now();
        assert!(l.check(ip("10.0.0.1"), t0).is_ok());
        assert_eq!(l.check(ip("10.0.0.1"), t0), Err(MAX_WAIT));
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
