//! `vsip::dns::Resolver` over real sockets against Knot (Debian), an authoritative server nobody
//! here wrote, whose zone the tests change mid-run: family order, the cache (the old answer
//! until the TTL, never after it), maxTtl, NXDOMAIN / NODATA and their negative caching, CNAME,
//! truncation falling back to TCP, a config reload. Failures no standard server produces on
//! purpose (SERVFAIL for one type, a query left unanswered, a slow server) come from our lab
//! server (`vsip::lab::LabDns`). And `vsip lab-dns`, the binary, reloading its file.

mod support;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use support::{
    Seen, assert_switch,
    knot::{Knot, KnotRecord},
};
use vsip::{
    config::{DnsConfig, Duration as CfgDuration, IpFamily},
    dns::{DnsError, FAMILY_GRACE, NEGATIVE_TTL_CAP, Resolution, Resolver},
    lab::{LabDns, LabRecord, LabType},
};

use IpFamily::{IPv4, IPv6};

const V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const V4B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const V6: Ipv6Addr = Ipv6Addr::LOCALHOST;
const SIP: &str = "sip.acme.vsip-test.example";
/// Room for a loaded machine on top of a promised time.
const SLACK: Duration = Duration::from_secs(5);

fn cfg(ns: SocketAddr, max_ttl: Duration, timeout: Duration) -> DnsConfig {
    DnsConfig {
        nameservers: vec![ns],
        max_ttl: CfgDuration(max_ttl),
        timeout: CfgDuration(timeout),
    }
}

fn addr(name: &str, ip: impl Into<IpAddr>, ttl: u32) -> KnotRecord {
    KnotRecord::Addr(name.to_owned(), ip.into(), ttl)
}

fn dual(name: &str, ttl: u32) -> Vec<KnotRecord> {
    vec![
        addr(name, V4, ttl),
        addr(name, V4B, ttl),
        addr(name, V6, ttl),
    ]
}

/// A resolver with its own metrics registry.
struct Client {
    resolver: Resolver,
    registry: prometheus::Registry,
}

impl Client {
    fn new(ns: SocketAddr, max_ttl: Duration, timeout: Duration) -> Client {
        let registry = prometheus::Registry::new();
        let resolver = Resolver::new(&cfg(ns, max_ttl, timeout), &registry).unwrap();
        Client { resolver, registry }
    }

    fn to(ns: SocketAddr) -> Client {
        Client::new(ns, Duration::from_secs(60), Duration::from_secs(2))
    }

    fn lookups(&self, result: &str) -> u64 {
        for mf in self.registry.gather() {
            if mf.name() != "vsip_dns_lookups_total" {
                continue;
            }
            for m in mf.get_metric() {
                if m.get_label()
                    .iter()
                    .any(|l| l.name() == "result" && l.value() == result)
                {
                    return m.get_counter().get_value() as u64;
                }
            }
        }
        0
    }

    fn query_durations(&self) -> u64 {
        self.registry
            .gather()
            .iter()
            .find(|mf| mf.name() == "vsip_dns_lookup_duration_seconds")
            .map(|mf| mf.get_metric()[0].get_histogram().get_sample_count())
            .unwrap_or(0)
    }

    async fn resolve(&self, name: &str, fams: &[IpFamily]) -> Result<Arc<Resolution>, DnsError> {
        self.resolver.resolve(name, fams).await
    }

    /// One resolution, timed.
    async fn seen(&self, name: &str, fams: &[IpFamily]) -> Seen<Result<Vec<IpAddr>, DnsError>> {
        let start = Instant::now();
        let value = self.resolve(name, fams).await.map(|r| r.addrs.clone());
        Seen {
            start,
            end: Instant::now(),
            value,
        }
    }

    /// Resolves every 50 ms until the answer is `want` or a lookup started after `by`.
    async fn until(
        &self,
        name: &str,
        fams: &[IpFamily],
        by: Instant,
        want: &[IpAddr],
    ) -> Vec<Seen<Result<Vec<IpAddr>, DnsError>>> {
        let mut seen = Vec::new();
        loop {
            let s = self.seen(name, fams).await;
            let done = s.value.as_deref().is_ok_and(|a| a == want) || s.start > by;
            seen.push(s);
            if done {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn lab(records: Vec<LabRecord>, timeout: Duration) -> (LabDns, Client) {
    let dns = LabDns::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    dns.set_records(records);
    let client = Client::new(dns.addr(), Duration::from_secs(60), timeout);
    (dns, client)
}

fn ips(r: &Resolution) -> Vec<IpAddr> {
    r.addrs.clone()
}

/// A, AAAA queries the server received (its readiness probes are SOA queries).
fn address_queries(k: &Knot) -> u64 {
    k.queries_of("A") + k.queries_of("AAAA")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_in_requested_order_records_in_answer_order() {
    let knot = Knot::start(&dual(SIP, 30));
    let c = Client::to(knot.addr());
    let before = Instant::now();
    let r = c.resolve(SIP, &[IPv4, IPv6]).await.unwrap();
    let after = Instant::now();
    assert_eq!(
        ips(&r),
        vec![IpAddr::V4(V4), IpAddr::V4(V4B), IpAddr::V6(V6)]
    );
    assert_eq!(r.fqdn, SIP);
    assert!(!r.via_cname);
    assert_eq!(r.records().len(), 3);
    assert_eq!(r.records()[0].address, "127.0.0.1");
    assert_eq!(r.records()[0].family, IPv4);
    assert_eq!(r.records()[2].address, "::1");
    assert_eq!(r.records()[2].family, IPv6);
    // A fresh answer keeps its whole TTL, counted from the lookup.
    assert!(
        r.records().iter().all(|a| a.ttl_seconds == 30),
        "{:?}",
        r.records()
    );
    let ttl = Duration::from_secs(30);
    assert!(
        r.expires >= before + ttl && r.expires <= after + ttl,
        "expires {:?} after the lookup started",
        r.expires - before
    );

    let r = c
        .resolve("SIP.Acme.Vsip-Test.Example.", &[IPv6, IPv4])
        .await
        .unwrap();
    assert_eq!(
        ips(&r),
        vec![IpAddr::V6(V6), IpAddr::V4(V4), IpAddr::V4(V4B)]
    );
    let r = c.resolve(SIP, &[IPv6]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V6(V6)]);
    let r = c.resolve(SIP, &[IPv4]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4), IpAddr::V4(V4B)]);
    // One A and one AAAA query served every combination.
    assert_eq!((knot.queries_of("A"), knot.queries_of("AAAA")), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_within_ttl() {
    let knot = Knot::start(&dual(SIP, 30));
    let c = Client::to(knot.addr());
    let a = c.resolve(SIP, &[IPv4]).await.unwrap();
    assert_eq!(c.lookups("ok"), 1);
    assert_eq!(c.lookups("cache_hit"), 0);
    let b = c.resolve(SIP, &[IPv4]).await.unwrap();
    let d = c.resolve(SIP, &[IPv4]).await.unwrap();
    assert_eq!(ips(&a), ips(&b));
    assert_eq!(ips(&b), ips(&d));
    assert_eq!(address_queries(&knot), 1, "the server saw one query");
    assert_eq!(c.lookups("cache_hit"), 2);
    assert_eq!(c.lookups("ok"), 1);
    assert_eq!(c.query_durations(), 1, "histogram counts real queries only");
}

/// The record changes right after the first lookup: the old answer until its TTL ran out (a
/// cache hit, the server sees no query), the new one from then on, never the old one after.
async fn follows_a_change(max_ttl: Duration, record_ttl: u32, effective: Duration) {
    let knot = Knot::start(&[addr(SIP, V4, record_ttl)]);
    let c = Client::new(knot.addr(), max_ttl, Duration::from_secs(2));
    let first = c.seen(SIP, &[IPv4]).await;
    assert_eq!(first.value.as_deref().unwrap(), [IpAddr::V4(V4)]);
    knot.set(&[addr(SIP, V4B, record_ttl)]);
    let changed = Instant::now();
    let by = (first.end + effective).max(changed);
    let mut seen = vec![first];
    seen.extend(c.until(SIP, &[IPv4], by, &[IpAddr::V4(V4B)]).await);
    for s in &seen {
        assert!(s.value.is_ok(), "{s:?}");
    }
    assert_switch(
        &format!("the answer after a change (TTL {effective:?})"),
        &seen,
        seen[0].start + effective,
        by,
        |v| v.as_deref().is_ok_and(|a| a == [IpAddr::V4(V4B)]),
    );
    // Every lookup before the expiry was answered from the cache.
    assert_eq!(knot.queries_of("A"), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_record_old_answer_until_ttl_then_new() {
    follows_a_change(Duration::from_secs(60), 2, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ttl_clamps_long_ttls() {
    follows_a_change(Duration::from_secs(2), 300, Duration::from_secs(2)).await;
    let knot = Knot::start(&[addr(SIP, V4, 300)]);
    let c = Client::new(knot.addr(), Duration::from_secs(2), Duration::from_secs(2));
    let r = c.resolve(SIP, &[IPv4]).await.unwrap();
    assert_eq!(r.records()[0].ttl_seconds, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_is_not_cached() {
    let knot = Knot::start(&[addr(SIP, V4, 0)]);
    let c = Client::to(knot.addr());
    c.resolve(SIP, &[IPv4]).await.unwrap();
    c.resolve(SIP, &[IPv4]).await.unwrap();
    assert_eq!(knot.queries_of("A"), 2);
    assert_eq!(c.lookups("cache_hit"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_servfail_with_a_present_is_not_an_error() {
    let recs = vec![
        LabRecord::a("sip.acme.example", V4, 30),
        LabRecord::servfail("sip.acme.example", LabType::AAAA),
    ];
    let (dns, c) = lab(recs, Duration::from_secs(2)).await;
    let r = c.resolve("sip.acme.example", &[IPv6, IPv4]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);
    // And the other way round: A fails, AAAA answers.
    dns.set_records(vec![
        LabRecord::servfail("v6.acme.example", "A"),
        LabRecord::aaaa("v6.acme.example", V6, 30),
    ]);
    let r = c.resolve("v6.acme.example", &[IPv4, IPv6]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V6(V6)]);
    // AAAA only: the failure is the answer.
    let err = c.resolve("sip.acme.example", &[IPv6]).await.unwrap_err();
    assert!(matches!(err, DnsError::Other(_)), "{err:?}");
    assert!(err.to_string().contains("sip.acme.example"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_dropped_with_a_present_answers_within_the_timeout() {
    // The AAAA query is never answered: the configured timeout is what the caller would
    // wait if the unanswered family held the call.
    let timeout = Duration::from_secs(3);
    let recs = vec![
        LabRecord::a("sip.acme.example", V4, 30),
        LabRecord::drop("sip.acme.example", LabType::AAAA),
    ];
    let (dns, c) = lab(recs, timeout).await;
    let first = c.seen("sip.acme.example", &[IPv6, IPv4]).await;
    assert_eq!(first.value.as_deref().unwrap(), [IpAddr::V4(V4)]);
    let took = first.end - first.start;
    assert!(
        took < timeout,
        "A answered, AAAA silent: the caller waited {took:?}, the DNS timeout ({timeout:?})"
    );
    assert!(
        took >= FAMILY_GRACE,
        "no grace for the AAAA answer: {took:?}"
    );
    // The AAAA query still runs in the background; a second call starts no query of its own
    // and does not wait for it either.
    let second = c.seen("sip.acme.example", &[IPv6, IPv4]).await;
    assert_eq!(second.value.as_deref().unwrap(), [IpAddr::V4(V4)]);
    assert!(second.end - second.start < timeout, "{second:?}");
    assert_eq!(dns.queries(), 2, "one A and one AAAA query");
    // AAAA only: the pending query's timeout, which started with the first call.
    let err = c.resolve("sip.acme.example", &[IPv6]).await.unwrap_err();
    let at = Instant::now();
    assert!(matches!(err, DnsError::Timeout(_)), "{err:?}");
    assert!(
        at >= first.start + timeout && at <= first.end + timeout + SLACK,
        "timed out {:?} after the query started (timeout {timeout:?})",
        at - first.start
    );
    assert!(c.lookups("timeout") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata() {
    let v4only = "v4only.acme.vsip-test.example";
    let knot = Knot::start(&[addr(v4only, V4, 30)]);
    let c = Client::to(knot.addr());
    let nope = "nope.acme.vsip-test.example";
    let err = c.resolve(nope, &[IPv4, IPv6]).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::NxDomain(n) if n == nope),
        "{err:?}"
    );
    assert!(err.to_string().contains("NXDOMAIN"), "{err}");
    assert_eq!(c.lookups("nxdomain"), 1);
    let err = c.resolve(v4only, &[IPv6]).await.unwrap_err();
    assert!(matches!(err, DnsError::NoAddresses(_)), "{err:?}");
    assert_eq!(c.lookups("no_addresses"), 1);
    assert_eq!(
        knot.stats().get("mod-stats.response-code[NXDOMAIN]"),
        Some(&2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_are_cached_for_the_soa_minimum() {
    // RFC 2308: a negative answer lives min(SOA TTL, SOA minimum) = 3 s here.
    let neg = Duration::from_secs(3);
    let knot = Knot::start_with(&[], 3);
    let c = Client::to(knot.addr());
    let name = "new.acme.vsip-test.example";
    let mut seen = Vec::new();
    for _ in 0..3 {
        let s = c.seen(name, &[IPv4]).await;
        assert!(matches!(s.value, Err(DnsError::NxDomain(_))), "{s:?}");
        seen.push(s);
    }
    assert!(
        seen[2].end < seen[0].start + neg,
        "three lookups took longer than the negative TTL: {seen:?}"
    );
    assert_eq!(knot.queries_of("A"), 1, "the NXDOMAIN was cached");
    knot.set(&[addr(name, V4, 30)]);
    let changed = Instant::now();
    let by = (seen[0].end + neg.min(NEGATIVE_TTL_CAP)).max(changed);
    seen.extend(c.until(name, &[IPv4], by, &[IpAddr::V4(V4)]).await);
    assert_switch(
        "a name that appeared after an NXDOMAIN",
        &seen,
        seen[0].start + neg,
        by,
        |v| v.is_ok(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_sets_via_cname_and_bounds_the_ttl() {
    let alias = "alias.acme.vsip-test.example";
    let knot = Knot::start(&[
        KnotRecord::Cname(alias.into(), SIP.into(), 5),
        addr(SIP, V4, 30),
        addr(SIP, V6, 30),
    ]);
    let c = Client::to(knot.addr());
    let r = c.resolve(alias, &[IPv4, IPv6]).await.unwrap();
    assert!(r.via_cname);
    assert_eq!(ips(&r), vec![IpAddr::V4(V4), IpAddr::V6(V6)]);
    assert!(
        r.records().iter().all(|a| a.ttl_seconds <= 5),
        "{:?}",
        r.records()
    );
    let r = c.resolve(SIP, &[IPv4]).await.unwrap();
    assert!(!r.via_cname);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_are_coalesced() {
    // TTL 0: nothing is cached, so only coalescing can explain a single query.
    let (dns, c) = lab(
        vec![LabRecord::a("sip.acme.example", V4, 0)],
        Duration::from_secs(2),
    )
    .await;
    // A slow nameserver: every call below starts while the query is in flight.
    dns.set_delay(Duration::from_millis(300));
    let calls = (0..100).map(|_| c.resolve("sip.acme.example", &[IPv4]));
    let results = futures::future::join_all(calls).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.addrs == [IpAddr::V4(V4)]))
    );
    assert_eq!(dns.queries(), 1);

    // Same through spawned tasks on the multi-threaded runtime.
    let (dns, c) = lab(
        vec![
            LabRecord::a("sip.acme.example", V4, 30),
            LabRecord::drop("slow.acme.example", "AAAA"),
        ],
        Duration::from_millis(500),
    )
    .await;
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let r = c.resolver.clone();
            tokio::spawn(async move { r.resolve("sip.acme.example", &[IPv4]).await })
        })
        .collect();
    for h in handles {
        assert!(h.await.unwrap().is_ok());
    }
    assert_eq!(dns.queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_only_name() {
    let v6 = "v6.acme.vsip-test.example";
    let knot = Knot::start(&[addr(v6, V6, 30)]);
    let c = Client::to(knot.addr());
    let r = c.resolve(v6, &[IPv4, IPv6]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V6(V6)]);
    assert_eq!(r.records()[0].family, IPv6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_fall_back_to_tcp() {
    let big = "big.acme.vsip-test.example";
    let recs: Vec<KnotRecord> = (1..=150u8)
        .map(|i| addr(big, Ipv4Addr::new(10, 0, 1, i), 30))
        .collect();
    let knot = Knot::start(&recs);
    assert_eq!(knot.tcp_queries(), 0);
    let c = Client::to(knot.addr());
    let r = c.resolve(big, &[IPv4]).await.unwrap();
    assert_eq!(r.addrs.len(), 150);
    // Knot answers A records in its own (canonical) order.
    let mut got = r.addrs.clone();
    got.sort();
    let want: Vec<IpAddr> = (1..=150u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)))
        .collect();
    assert_eq!(got, want);
    // 150 A records do not fit a UDP answer: Knot set TC, the resolver asked again over TCP.
    assert_eq!(knot.queries_of("A"), 2, "{:?}", knot.stats());
    assert_eq!(knot.tcp_queries(), 1, "{:?}", knot.stats());
    assert!(
        knot.stats()
            .get("mod-stats.response-bytes[reply]")
            .is_some_and(|b| *b > 2000),
        "{:?}",
        knot.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_config_switches_nameservers() {
    let knot = Knot::start(&[addr(SIP, V4, 300)]);
    let other = Knot::start(&[addr(SIP, V4B, 300)]);
    let c = Client::to(knot.addr());
    let r = c.resolve(SIP, &[IPv4]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);
    c.resolver.update_config(&cfg(
        other.addr(),
        Duration::from_secs(60),
        Duration::from_secs(2),
    ));
    let r = c.resolve(SIP, &[IPv4]).await.unwrap();
    assert_eq!(
        ips(&r),
        vec![IpAddr::V4(V4B)],
        "new nameservers: the cache was dropped"
    );
    assert_eq!(other.queries_of("A"), 1);
    // A smaller maxTtl applies at once, too.
    c.resolver.update_config(&cfg(
        other.addr(),
        Duration::from_secs(1),
        Duration::from_secs(2),
    ));
    let r = c.resolve(SIP, &[IPv4]).await.unwrap();
    assert_eq!(r.records()[0].ttl_seconds, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_register_once_per_registry() {
    let registry = prometheus::Registry::new();
    let c = cfg(
        "127.0.0.1:53".parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    Resolver::new(&c, &registry).unwrap();
    let err = Resolver::new(&c, &registry).unwrap_err();
    assert!(err.to_string().contains("metrics"), "{err}");
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert!(names.contains(&"vsip_dns_lookups_total".to_owned()));
}

// --- `vsip lab-dns`, the binary -------------------------------------------------------------

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `file` contains `text` (a log line), for at most `within`.
async fn log_shows(file: &std::path::Path, text: &str, within: Duration) {
    let until = Instant::now() + within;
    while !std::fs::read_to_string(file)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < until,
            "no {text:?} in the log within {within:?}:\n{}",
            std::fs::read_to_string(file).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_dns_binary_serves_and_reloads_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.yaml");
    let log = dir.path().join("lab-dns.log");
    std::fs::write(
        &file,
        "records:\n  - { name: sip.acme.example, type: A, value: 127.0.0.1, ttl: 1 }\n",
    )
    .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], support::free_port()).into();
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vsip"))
        .args(["lab-dns", "--listen", &addr.to_string(), "--records"])
        .arg(&file)
        .env("VSIP_LOG_FORMAT", "text")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let _child = Kill(child);
    log_shows(&log, "lab-dns listening", Duration::from_secs(20)).await;
    // A fresh resolver (empty cache) each time: what the server answers now.
    let ask = || async {
        Client::new(addr, Duration::from_secs(60), Duration::from_millis(500))
            .resolve("sip.acme.example", &[IPv4, IPv6])
            .await
    };
    assert_eq!(ips(&ask().await.unwrap()), vec![IpAddr::V4(V4)]);

    // Change the file: the server reloads it.
    std::fs::write(
        &file,
        "records:\n  - { name: sip.acme.example, type: A, value: 127.0.0.2, ttl: 1 }\n  - { name: sip.acme.example, type: AAAA, value: \"::1\", ttl: 1 }\n",
    )
    .unwrap();
    log_shows(&log, "records reloaded", Duration::from_secs(20)).await;
    let want = vec![IpAddr::V4(V4B), IpAddr::V6(V6)];
    assert_eq!(ips(&ask().await.unwrap()), want);

    // A bad file is refused (logged) and the last good records stay.
    std::fs::write(
        &file,
        "records: [{ name: sip.acme.example, type: A, value: nope }]\n",
    )
    .unwrap();
    log_shows(
        &log,
        "keeping the last good records",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(ips(&ask().await.unwrap()), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_resolver_reads_the_hosts_file() {
    // No nameservers configured: /etc/resolv.conf and /etc/hosts, like the platform. A
    // machine without them cannot run this test: that is a failure, not a skip.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(
        hosts.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some("127.0.0.1") && f.any(|n| n == "localhost")
        }),
        "this test needs `127.0.0.1 localhost` in /etc/hosts:\n{hosts}"
    );
    assert!(
        std::path::Path::new("/etc/resolv.conf").exists(),
        "this test needs /etc/resolv.conf"
    );
    let registry = prometheus::Registry::new();
    let resolver = Resolver::new(&DnsConfig::default(), &registry).unwrap();
    let r = resolver.resolve("localhost", &[IPv4]).await.unwrap();
    assert!(r.addrs.contains(&IpAddr::V4(V4)), "{r:?}");
    assert!(
        r.records()[0].ttl_seconds <= 60,
        "clamped by the default maxTtl"
    );
}
