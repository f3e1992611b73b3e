//! Prometheus metrics of one token server instance (no global registry: the
//! control plane may run several things in its process).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// How a `/token` request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 200.
    Ok,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 429, or 503 when the server sheds load (key operations saturated,
    /// nonce memory full).
    RateLimited,
    /// Anything else: 405, 500, 503 (session directory down, timeout).
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::RateLimited => "rate_limited",
            Outcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// The metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    decrypt: Histogram,
    in_flight: Gauge,
    key_queue: Gauge,
    refused_connections: Family<LimitLabels, Counter>,
    session_tokens_signed: Counter,
    session_token_cache_hits: Counter,
    /// RSA decryptions + session-token signatures (brought up to date from
    /// `decryptions` and the minter's count in [`Metrics::sync_session_tokens`]).
    private_key_operations: Counter,
    decryptions: AtomicU64,
    /// Serialises [`Metrics::sync_session_tokens`] (two scrapes at once
    /// would add the same difference twice).
    sync: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in their own registry, prefixed `ambient_token_server_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ambient_token_server");
        let requests = Family::<OutcomeLabels, Counter>::default();
        // 1 ms … ~4 s; RSA-4096 decryption takes a few ms.
        let decrypt = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        let in_flight = Gauge::default();
        let key_queue = Gauge::default();
        let refused_connections = Family::<LimitLabels, Counter>::default();
        registry.register(
            "requests",
            "Token requests by outcome (ok, unauthorized, forbidden, rate_limited, error)",
            requests.clone(),
        );
        registry.register_with_unit(
            "decrypt_duration",
            "Time spent in RSA-OAEP decryption of a bearer",
            Unit::Seconds,
            decrypt.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Token requests being handled",
            in_flight.clone(),
        );
        registry.register(
            "key_queue",
            "Token requests waiting for a private-key operation slot",
            key_queue.clone(),
        );
        registry.register(
            "refused_connections",
            "Connections closed at accept by a limit (global, per_ip)",
            refused_connections.clone(),
        );
        let session_tokens_signed = Counter::default();
        let session_token_cache_hits = Counter::default();
        registry.register(
            "session_tokens_signed",
            "Session tokens signed (one RSA signature each)",
            session_tokens_signed.clone(),
        );
        registry.register(
            "session_token_cache_hits",
            "Session tokens served from the per-session cache, without a signature",
            session_token_cache_hits.clone(),
        );
        let private_key_operations = Counter::default();
        registry.register(
            "private_key_operations",
            "Private-key operations: RSA decryptions of v1/v2 bearers and RSA signatures of session tokens (exchange v3 needs none)",
            private_key_operations.clone(),
        );
        for limit in ["global", "per_ip"] {
            let _ = refused_connections.get_or_create(&LimitLabels { limit });
        }
        // Make every outcome visible from the start.
        for o in [
            Outcome::Ok,
            Outcome::Unauthorized,
            Outcome::Forbidden,
            Outcome::RateLimited,
            Outcome::Error,
        ] {
            let _ = requests.get_or_create(&OutcomeLabels {
                outcome: o.as_str(),
            });
        }
        Self {
            registry,
            requests,
            decrypt,
            in_flight,
            key_queue,
            refused_connections,
            session_tokens_signed,
            session_token_cache_hits,
            private_key_operations,
            decryptions: AtomicU64::new(0),
            sync: Mutex::new(()),
        }
    }

    /// Brings the session-token counters, and the private-key operations
    /// they count in, up to the minter's totals.
    pub fn sync_session_tokens(&self, signed: u64, cache_hits: u64) {
        let _one_at_a_time = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        let decryptions = self.decryptions.load(Ordering::Relaxed);
        for (counter, total) in [
            (&self.session_tokens_signed, signed),
            (&self.session_token_cache_hits, cache_hits),
            (
                &self.private_key_operations,
                decryptions.saturating_add(signed),
            ),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Counts one finished request.
    pub fn record(&self, outcome: Outcome) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// The number of requests that ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .get()
    }

    /// Records one decryption (a private-key operation) and its duration.
    pub fn observe_decrypt(&self, took: Duration) {
        self.decryptions.fetch_add(1, Ordering::Relaxed);
        self.decrypt.observe(took.as_secs_f64());
    }

    /// Private-key operations counted up to the last sync (scrape).
    pub fn private_key_operations(&self) -> u64 {
        self.private_key_operations.get()
    }

    /// Marks a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Marks a request waiting for a key operation until the guard drops.
    pub fn waiting_for_key(&self) -> InFlight {
        self.key_queue.inc();
        InFlight(self.key_queue.clone())
    }

    /// Requests waiting for a key operation now.
    pub fn key_queue(&self) -> i64 {
        self.key_queue.get()
    }

    /// Counts a connection closed at accept by `limit` (`global`, `per_ip`).
    pub fn connection_refused(&self, limit: &'static str) {
        self.refused_connections
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// Connections closed at accept by `limit`.
    pub fn connections_refused(&self, limit: &'static str) -> u64 {
        self.refused_connections
            .get_or_create(&LimitLabels { limit })
            .get()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Decrements its gauge (in flight, key queue) on drop.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
