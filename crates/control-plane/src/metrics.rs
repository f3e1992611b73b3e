//! Control-plane metrics (Prometheus text on the health listener): queue
//! depth, reconcile outcomes and latency, watch reconnects, phase writes.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// Every metric of the control plane, in its own registry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    queue_depth: Gauge,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Family<KindLabels, Histogram>,
    watch_reconnects: Family<KindLabels, Counter>,
    phase_writes: Family<PhaseLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ambient_control_plane");
        let queue_depth = Gauge::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let watch_reconnects = Family::<KindLabels, Counter>::default();
        let phase_writes = Family::<PhaseLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register(
            "queue_depth",
            "Keys waiting in the work queue",
            queue_depth.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by kind and outcome (ok, error, retry)",
            reconciles.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        registry.register(
            "watch_reconnects",
            "Watch (re)connections by kind",
            watch_reconnects.clone(),
        );
        registry.register(
            "phase_writes",
            "Session phase writes by phase",
            phase_writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        // Visible (at 0) before the first reconnect.
        for kind in ["session", "project", "project_settings"] {
            let _ = watch_reconnects.get_or_create(&KindLabels { kind });
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                queue_depth,
                reconciles,
                reconcile_duration,
                watch_reconnects,
                phase_writes,
                leader,
            }),
        }
    }

    pub fn set_queue_depth(&self, depth: usize) {
        self.inner
            .queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub fn reconciled(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.inner
            .reconciles
            .get_or_create(&ReconcileLabels { kind, outcome })
            .inc();
        self.inner
            .reconcile_duration
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    pub fn watch_reconnect(&self, kind: &'static str) {
        self.inner
            .watch_reconnects
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub fn phase_written(&self, phase: &str) {
        self.inner
            .phase_writes
            .get_or_create(&PhaseLabels {
                phase: phase.to_owned(),
            })
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed() {
        let m = Metrics::new();
        m.phase_written("Running");
        m.reconciled("session", "ok", Duration::from_millis(3));
        let text = m.encode();
        for name in [
            "ambient_control_plane_queue_depth",
            "ambient_control_plane_reconciles_total{kind=\"session\",outcome=\"ok\"} 1",
            "ambient_control_plane_reconcile_duration_seconds_count{kind=\"session\"} 1",
            "ambient_control_plane_watch_reconnects_total{kind=\"session\"} 0",
            "ambient_control_plane_phase_writes_total{phase=\"Running\"} 1",
            "ambient_control_plane_leader 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
