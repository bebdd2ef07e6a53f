//! The operator's Prometheus metrics (`vsip_operator_*`).

use std::time::Instant;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub reconcile: IntCounterVec,
    pub reconcile_duration: Histogram,
    pub trunks: IntGaugeVec,
    pub render_duration: Histogram,
    pub config_writes: IntCounter,
    pub leader: prometheus::IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let reconcile = IntCounterVec::new(
            Opts::new(
                "vsip_operator_reconcile_total",
                "Trunk reconciles by result.",
            ),
            &["result"],
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "vsip_operator_reconcile_duration_seconds",
                "Duration of one trunk reconcile.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let trunks = IntGaugeVec::new(
            Opts::new(
                "vsip_operator_trunks",
                "Trunks by condition and status, as last written.",
            ),
            &["condition", "status"],
        )?;
        let render_duration = Histogram::with_opts(
            HistogramOpts::new(
                "vsip_operator_render_duration_seconds",
                "Duration of rendering the proxy configuration.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
        )?;
        let config_writes = IntCounter::new(
            "vsip_operator_config_writes_total",
            "Writes of the proxy configuration Secret (one per new revision).",
        )?;
        let leader = prometheus::IntGauge::new(
            "vsip_operator_leader",
            "1 while this replica holds the leader Lease.",
        )?;
        registry.register(Box::new(reconcile.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(trunks.clone()))?;
        registry.register(Box::new(render_duration.clone()))?;
        registry.register(Box::new(config_writes.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            reconcile,
            reconcile_duration,
            trunks,
            render_duration,
            config_writes,
            leader,
        })
    }

    /// Times one reconcile; call [`ReconcileTimer::done`] with its result label.
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl ReconcileTimer<'_> {
    pub fn done(self, result: &str) {
        self.metrics
            .reconcile_duration
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics.reconcile.with_label_values(&[result]).inc();
    }
}
