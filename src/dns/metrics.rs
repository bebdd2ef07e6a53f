//! `vsip_dns_lookups_total{result}` and `vsip_dns_lookup_duration_seconds`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use super::error::DnsError;

pub(super) struct Metrics {
    pub cache_hit: IntCounter,
    ok: IntCounter,
    lookups: IntCounterVec,
    /// Per A/AAAA query actually sent (cache misses).
    pub duration: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Metrics, DnsError> {
        let lookups = IntCounterVec::new(
            Opts::new(
                "vsip_dns_lookups_total",
                "FQDN resolutions by result (cache_hit, ok, nxdomain, no_addresses, timeout, error)",
            ),
            &["result"],
        )
        .map_err(metric_err)?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "vsip_dns_lookup_duration_seconds",
                "Duration of DNS queries actually sent (cache misses), per A/AAAA query",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .map_err(metric_err)?;
        registry
            .register(Box::new(lookups.clone()))
            .map_err(metric_err)?;
        registry
            .register(Box::new(duration.clone()))
            .map_err(metric_err)?;
        // Pre-create every series so they show (as 0) before the first call.
        for label in ["nxdomain", "no_addresses", "timeout", "error"] {
            lookups.with_label_values(&[label]);
        }
        Ok(Metrics {
            cache_hit: lookups.with_label_values(&["cache_hit"]),
            ok: lookups.with_label_values(&["ok"]),
            lookups,
            duration,
        })
    }

    /// Counts one resolution that needed (or waited for) a query.
    pub fn count<T>(&self, result: &Result<T, DnsError>) {
        match result {
            Ok(_) => self.ok.inc(),
            Err(e) => self.lookups.with_label_values(&[e.metric_label()]).inc(),
        }
    }
}

fn metric_err(e: prometheus::Error) -> DnsError {
    DnsError::Other(format!("registering DNS metrics: {e}"))
}
