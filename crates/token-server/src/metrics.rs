//! Prometheus metrics of one token server instance (no global registry: the
//! control plane may run several things in its process).

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

/// The metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    decrypt: Histogram,
    in_flight: Gauge,
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

    /// Records one decryption's duration.
    pub fn observe_decrypt(&self, took: Duration) {
        self.decrypt.observe(took.as_secs_f64());
    }

    /// Marks a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
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

/// Decrements the in-flight gauge on drop.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
