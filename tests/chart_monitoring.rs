//! The Grafana dashboard and the alert rules (config/monitoring/, the chart's
//! files/prometheus-rules.yaml) use only metric names that exist: every `vsip_*` name they
//! mention is defined in the source (src/telemetry/metrics.rs, src/dns/mod.rs,
//! src/operator/metrics.rs) — histograms with their `_bucket`/`_sum`/`_count` series — and
//! the proxy names are checked against a real `vsip proxy`'s `/metrics` after real traffic
//! (a call that fails over and ends in 503, a throttled call, a bad message, a bad reload).

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use support::*;

/// Where metric names are defined, and whether they belong to the proxy.
const SOURCES: &[(&str, bool)] = &[
    ("src/telemetry/metrics.rs", true),
    ("src/dns/mod.rs", true),
    ("src/operator/metrics.rs", false),
];

/// Files whose `vsip_*` names must exist.
const USERS: &[&str] = &[
    "config/monitoring/grafana-dashboard.json",
    "config/monitoring/prometheusrule.yaml",
    "charts/vsip-operator/files/prometheus-rules.yaml",
];

fn read(rel: &str) -> String {
    let p = manifest_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// `vsip_…` identifiers in a text.
fn names_in(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(pos) = text[i..].find("vsip_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        if boundary && end > start + 5 {
            out.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

/// Metric definitions in the source: name → (is histogram, is proxy metric). A name is a
/// string literal `"vsip_…"`; a histogram's literal follows `HistogramOpts::new(`.
fn defined() -> BTreeMap<String, (bool, bool)> {
    let mut out = BTreeMap::new();
    for (file, proxy) in SOURCES {
        let text = read(file);
        let mut rest = text.as_str();
        let mut offset = 0;
        while let Some(pos) = rest.find("\"vsip_") {
            let start = offset + pos + 1;
            let len = text[start..].find('"').expect("closing quote");
            let name = &text[start..start + len];
            let before = &text[start.saturating_sub(120)..start];
            let histogram = before
                .rfind("HistogramOpts::new(")
                .is_some_and(|h| !before[h..].contains(')'));
            if name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                out.insert(name.to_owned(), (histogram, *proxy));
            }
            offset = start + len + 1;
            rest = &text[offset..];
        }
    }
    out
}

/// Every series name a definition produces.
fn series(defs: &BTreeMap<String, (bool, bool)>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, (histogram, _)) in defs {
        if *histogram {
            for s in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{s}"));
            }
        } else {
            out.insert(name.clone());
        }
    }
    out
}

#[test]
fn source_definitions_are_found() {
    let defs = defined();
    // The brief's contract names (§6) must be among them, with the right kind.
    for (name, histogram) in [
        ("vsip_calls_total", false),
        ("vsip_cpm_throttled_total", false),
        ("vsip_failovers_total", false),
        ("vsip_dns_lookups_total", false),
        ("vsip_dns_lookup_duration_seconds", true),
        ("vsip_call_setup_duration_seconds", true),
        ("vsip_routes_trunks", false),
        ("vsip_config_reloads_total", false),
        ("vsip_operator_reconcile_total", false),
    ] {
        assert_eq!(
            defs.get(name).map(|d| d.0),
            Some(histogram),
            "{name} not defined as expected in {SOURCES:?}; found {defs:?}"
        );
    }
}

#[test]
fn dashboard_and_rules_use_only_defined_metrics() {
    let known = series(&defined());
    let mut used_anywhere = BTreeSet::new();
    for file in USERS {
        let used = names_in(&read(file));
        assert!(!used.is_empty(), "{file} uses no vsip_* metric");
        let unknown: Vec<_> = used.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metric names that no source defines: {unknown:?}\nknown: {known:?}"
        );
        used_anywhere.extend(used);
    }
    // The dashboard covers what the brief asks for.
    let dash = names_in(&read("config/monitoring/grafana-dashboard.json"));
    for needed in [
        "vsip_calls_total",
        "vsip_cpm_throttled_total",
        "vsip_failovers_total",
        "vsip_dns_lookups_total",
        "vsip_dns_lookup_duration_seconds_bucket",
        "vsip_call_setup_duration_seconds_bucket",
        "vsip_config_reloads_total",
        "vsip_routes_trunks",
        "vsip_operator_reconcile_total",
        "vsip_operator_trunks",
    ] {
        assert!(dash.contains(needed), "dashboard lacks {needed}");
    }
    assert!(used_anywhere.len() >= 10);
}

#[test]
fn dashboard_is_valid_json_with_unique_panel_ids() {
    let v: serde_json::Value =
        serde_json::from_str(&read("config/monitoring/grafana-dashboard.json")).expect("JSON");
    let panels = v["panels"].as_array().expect("panels");
    let ids: Vec<_> = panels
        .iter()
        .map(|p| p["id"].as_u64().expect("id"))
        .collect();
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate panel ids");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let e = t["expr"].as_str().expect("expr");
            assert_eq!(
                e.matches('(').count(),
                e.matches(')').count(),
                "unbalanced parentheses in {e}"
            );
        }
    }
}

#[test]
fn chart_rules_equal_the_config_monitoring_copy() {
    let chart = read("charts/vsip-operator/files/prometheus-rules.yaml");
    let config = read("config/monitoring/prometheusrule.yaml");
    let spec = config
        .split_once("\nspec:\n")
        .expect("config/monitoring/prometheusrule.yaml has spec:")
        .1;
    let dedented: String = spec
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    // The source's leading comment block describes the source and is not copied.
    let chart_body: String = chart
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        dedented.trim_end(),
        chart_body.trim_end(),
        "config/monitoring/prometheusrule.yaml spec differs from its source \
         charts/vsip-operator/files/prometheus-rules.yaml: run make rules"
    );
    let v: serde_yaml::Value = serde_yaml::from_str(&config).expect("YAML");
    let rules = v["spec"]["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect::<Vec<_>>();
    let alerts: BTreeSet<_> = rules
        .iter()
        .map(|r| r["alert"].as_str().expect("alert name").to_owned())
        .collect();
    for a in [
        "VsipTrunkUnreachable",
        "VsipHighTimeoutOrUnavailableShare",
        "VsipDnsLookupFailures",
        "VsipConfigReloadFailing",
        "VsipOperatorReconcileErrors",
    ] {
        assert!(alerts.contains(a), "missing alert {a}");
    }
    for r in &rules {
        let e = r["expr"].as_str().expect("expr");
        assert_eq!(e.matches('(').count(), e.matches(')').count(), "{e}");
        assert!(r["labels"]["severity"].as_str().is_some(), "{r:?}");
    }
}

/// Writes a request on a fresh connection from 127.0.0.1 (the upstream) and returns the
/// first final response's status line.
fn final_status(proxy: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    s.write_all(raw).expect("send");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
        if let Some(line) = got
            .split("\r\n")
            .find(|l| l.starts_with("SIP/2.0 ") && !l.starts_with("SIP/2.0 1"))
        {
            return line.to_owned();
        }
    }
    panic!("no final response within 15 s; got: {got}");
}

#[test]
fn real_proxy_exports_the_names_the_dashboard_and_rules_use() {
    // The SBC's FQDN resolves to an address where nothing listens: connect fails
    // (failover reason "connect"), every address failed → 503.
    let port = free_port_on(&[lo(9)]);
    let dns = Dns::start(vec![a(FQDN, lo(9), 30)]);
    let proxy = inbound_proxy(&dns, port, |t| t.calls_per_minute = Some(1));
    let status = final_status(
        proxy.sip_addr(),
        &raw_invite(proxy.sip_addr(), NUMBER, &[], &[]),
    );
    assert!(status.starts_with("SIP/2.0 503"), "first call: {status}");
    // The quota of 1 call per minute is used: the next call is throttled (503).
    let status = final_status(
        proxy.sip_addr(),
        &raw_invite(proxy.sip_addr(), NUMBER, &[], &[]),
    );
    assert!(status.starts_with("SIP/2.0 503"), "second call: {status}");
    // A looping request is refused (vsip_bad_messages_total{reason="max_forwards"}).
    let looping = raw_invite(
        proxy.sip_addr(),
        NUMBER,
        &["Max-Forwards"],
        &[("Max-Forwards", "0")],
    );
    let status = final_status(proxy.sip_addr(), &looping);
    assert!(
        status.starts_with("SIP/2.0 483"),
        "Max-Forwards 0: {status}"
    );
    // A bad configuration is refused (vsip_config_reloads_total{result="error"}).
    proxy.write_config_text("listen: [this is not a proxy config\n");
    wait_for(Duration::from_secs(15), "a refused reload", || {
        (proxy.counter("vsip_config_reloads_total", &[("result", "error")]) >= 1.0).then_some(())
    });

    let text = proxy.metrics();
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("vsip_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let defs = defined();
    let known = series(&defs);
    // What the proxy exports is what the source defines (so the source scan is right).
    let stray: Vec<_> = exported.difference(&known).collect();
    assert!(
        stray.is_empty(),
        "exported but not found in the source: {stray:?}"
    );
    // Every proxy name the dashboard and rules use, seen on the real /metrics.
    let proxy_series = series(
        &defs
            .iter()
            .filter(|(_, (_, p))| *p)
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    );
    let mut missing = Vec::new();
    for file in USERS {
        for name in names_in(&read(file)) {
            if !proxy_series.contains(&name) {
                continue; // operator metric: checked against the source only
            }
            // Only touched by a TLS trunk / dialogs: not part of this traffic.
            if name == "vsip_tls_handshake_failures_total" {
                assert!(known.contains(&name));
                continue;
            }
            if !exported.contains(&name) {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not on the real /metrics: {missing:?}\n/metrics:\n{}",
        tail(&text, 80)
    );
    assert!(
        metric_sum(&text, "vsip_failovers_total", &[("reason", "connect")]) >= 1.0,
        "no connect failover:\n{text}"
    );
    assert!(metric_sum(&text, "vsip_cpm_throttled_total", &[]) >= 1.0);
    assert!(
        Path::new(&manifest_dir())
            .join("config/monitoring")
            .is_dir()
    );
}
