//! The proxy's metric names are part of the contract (brief §6).

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Clone)]
pub struct ProxyMetrics {
    pub calls: IntCounterVec,
    pub cpm_throttled: IntCounterVec,
    pub failovers: IntCounterVec,
    pub call_setup: HistogramVec,
    pub routes_trunks: IntGauge,
    pub config_reloads: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub messages: IntCounterVec,
    pub bad_messages: IntCounterVec,
    pub connections: IntGauge,
    pub dialog_requests: IntCounterVec,
    pub listener_cert_reloads: IntCounter,
    pub inflight_calls: IntGauge,
    /// Fleet-wide quota: token requests to the trunk's owner, by result.
    pub cpm_peer_requests: IntCounterVec,
    /// Fleet-wide quota: token batches this proxy served as owner, by result.
    pub cpm_grants_served: IntCounterVec,
    /// Fleet-wide quota: calls decided on a local share (owner unreachable).
    pub cpm_local_fallbacks: IntCounter,
    /// Fleet-wide quota: live proxies this one counts (itself included).
    pub cpm_peers: IntGauge,
}

fn gauge(reg: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    reg.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    reg.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

impl ProxyMetrics {
    pub fn new(reg: &Registry) -> Self {
        let call_setup = HistogramVec::new(
            HistogramOpts::new(
                "vsip_call_setup_duration_seconds",
                "INVITE received to first final answer relayed",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["trunk"],
        )
        .expect("static metric definition");
        reg.register(Box::new(call_setup.clone()))
            .expect("metric registered once");
        let routes_trunks =
            IntGauge::new("vsip_routes_trunks", "Trunks in the running configuration")
                .expect("static metric definition");
        reg.register(Box::new(routes_trunks.clone()))
            .expect("metric registered once");
        let connections = IntGauge::new("vsip_connections", "Open SIP connections (TCP and TLS)")
            .expect("static metric definition");
        reg.register(Box::new(connections.clone()))
            .expect("metric registered once");
        let inflight_calls =
            IntGauge::new("vsip_inflight_calls", "INVITE transactions in progress")
                .expect("static metric definition");
        reg.register(Box::new(inflight_calls.clone()))
            .expect("metric registered once");
        let listener_cert_reloads = IntCounter::new(
            "vsip_listener_certificate_reloads_total",
            "TLS listener certificate reloads",
        )
        .expect("static metric definition");
        reg.register(Box::new(listener_cert_reloads.clone()))
            .expect("metric registered once");
        let config_reloads = counter(
            reg,
            "vsip_config_reloads_total",
            "Configuration loads by result (ok|error)",
            &["result"],
        );
        // Both results are exported from the start: a counter first seen at 1 has no
        // increase() in Prometheus, so the first refused reload would never raise
        // VsipConfigReloadFailing (e2e/monitoring-check.sh caught it).
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        Self {
            calls: counter(
                reg,
                "vsip_calls_total",
                "Calls by trunk, direction (inbound|outbound) and result (final status code)",
                &["trunk", "direction", "result"],
            ),
            cpm_throttled: counter(
                reg,
                "vsip_cpm_throttled_total",
                "Calls refused by the trunk's calls-per-minute quota",
                &["trunk"],
            ),
            failovers: counter(
                reg,
                "vsip_failovers_total",
                "Moves to the next address: connect, tls, timeout, 408, 503, 504",
                &["trunk", "reason"],
            ),
            call_setup,
            routes_trunks,
            config_reloads,
            tls_handshake_failures: counter(
                reg,
                "vsip_tls_handshake_failures_total",
                "TLS handshakes towards a trunk that failed (certificate or protocol)",
                &["trunk"],
            ),
            messages: counter(
                reg,
                "vsip_sip_messages_total",
                "SIP messages received by kind (request method or response class)",
                &["kind"],
            ),
            bad_messages: counter(
                reg,
                "vsip_bad_messages_total",
                "Messages refused as malformed, oversize or looping",
                &["reason"],
            ),
            connections,
            dialog_requests: counter(
                reg,
                "vsip_dialog_requests_total",
                "In-dialog requests relayed, by method",
                &["method"],
            ),
            listener_cert_reloads,
            inflight_calls,
            cpm_peer_requests: counter(
                reg,
                "vsip_cpm_peer_requests_total",
                "Quota token requests to a trunk's owner proxy (granted|exhausted|error)",
                &["result"],
            ),
            cpm_grants_served: counter(
                reg,
                "vsip_cpm_grants_served_total",
                "Quota token requests answered as a trunk's owner (granted|exhausted|unknown_trunk)",
                &["result"],
            ),
            cpm_local_fallbacks: {
                let c = IntCounter::new(
                    "vsip_cpm_local_fallback_total",
                    "Calls admitted or refused on a local share of the quota: owner unreachable",
                )
                .expect("static metric definition");
                reg.register(Box::new(c.clone()))
                    .expect("metric registered once");
                c
            },
            cpm_peers: gauge(
                reg,
                "vsip_cpm_peers",
                "Live proxies sharing trunk quotas, this one included",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    #[test]
    fn reload_results_are_exported_at_zero_before_any_reload() {
        let reg = Registry::new();
        let _metrics = ProxyMetrics::new(&reg);
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&reg.gather(), &mut buf)
            .expect("encode");
        let text = String::from_utf8(buf).expect("UTF-8");
        for line in [
            "vsip_config_reloads_total{result=\"error\"} 0",
            "vsip_config_reloads_total{result=\"ok\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
