//! `vsip::dns::Resolver` against the lab DNS server (`vsip::lab::LabDns`), over real sockets:
//! family order, TTL-bounded caching, maxTtl, partial failures, NXDOMAIN, CNAME, coalescing,
//! TCP fallback on truncation, config reload; and `vsip lab-dns` (the binary) reloading its file.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use vsip::{
    config::{DnsConfig, Duration as CfgDuration, IpFamily},
    dns::{DnsError, Resolution, Resolver},
    lab::{LabDns, LabRecord, LabType},
};

use IpFamily::{IPv4, IPv6};

const V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const V4B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const V6: Ipv6Addr = Ipv6Addr::LOCALHOST;

fn cfg(ns: SocketAddr, max_ttl: Duration, timeout: Duration) -> DnsConfig {
    DnsConfig {
        nameservers: vec![ns],
        max_ttl: CfgDuration(max_ttl),
        timeout: CfgDuration(timeout),
    }
}

struct Lab {
    dns: LabDns,
    resolver: Resolver,
    registry: prometheus::Registry,
}

async fn lab_with(records: Vec<LabRecord>, max_ttl: Duration, timeout: Duration) -> Lab {
    let dns = LabDns::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    dns.set_records(records);
    let registry = prometheus::Registry::new();
    let resolver = Resolver::new(&cfg(dns.addr(), max_ttl, timeout), &registry).unwrap();
    Lab {
        dns,
        resolver,
        registry,
    }
}

async fn lab(records: Vec<LabRecord>) -> Lab {
    lab_with(records, Duration::from_secs(60), Duration::from_secs(2)).await
}

impl Lab {
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
}

fn ips(r: &Resolution) -> Vec<IpAddr> {
    r.addrs.clone()
}

fn dual(name: &str, ttl: u32) -> Vec<LabRecord> {
    vec![
        LabRecord::a(name, V4, ttl),
        LabRecord::a(name, V4B, ttl),
        LabRecord::aaaa(name, V6, ttl),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_in_requested_order_records_in_answer_order() {
    let lab = lab(dual("sip.acme.example", 30)).await;
    let r = lab
        .resolve("sip.acme.example", &[IPv4, IPv6])
        .await
        .unwrap();
    assert_eq!(
        ips(&r),
        vec![IpAddr::V4(V4), IpAddr::V4(V4B), IpAddr::V6(V6)]
    );
    assert_eq!(r.fqdn, "sip.acme.example");
    assert!(!r.via_cname);
    assert_eq!(r.records().len(), 3);
    assert_eq!(r.records()[0].address, "127.0.0.1");
    assert_eq!(r.records()[0].family, IPv4);
    assert_eq!(r.records()[2].address, "::1");
    assert_eq!(r.records()[2].family, IPv6);
    assert!(
        r.records()
            .iter()
            .all(|a| a.ttl_seconds > 25 && a.ttl_seconds <= 30)
    );
    let left = r.expires.saturating_duration_since(Instant::now());
    assert!(
        left > Duration::from_secs(25) && left <= Duration::from_secs(30),
        "{left:?}"
    );

    let r = lab
        .resolve("SIP.Acme.Example.", &[IPv6, IPv4])
        .await
        .unwrap();
    assert_eq!(
        ips(&r),
        vec![IpAddr::V6(V6), IpAddr::V4(V4), IpAddr::V4(V4B)]
    );
    let r = lab.resolve("sip.acme.example", &[IPv6]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V6(V6)]);
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4), IpAddr::V4(V4B)]);
    // One A and one AAAA query served every combination.
    assert_eq!(lab.dns.queries(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_within_ttl() {
    let lab = lab(dual("sip.acme.example", 30)).await;
    let a = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(lab.lookups("ok"), 1);
    assert_eq!(lab.lookups("cache_hit"), 0);
    let b = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    let c = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(ips(&a), ips(&b));
    assert_eq!(ips(&b), ips(&c));
    assert_eq!(lab.dns.queries(), 1, "the server saw one query");
    assert_eq!(lab.lookups("cache_hit"), 2);
    assert_eq!(lab.lookups("ok"), 1);
    assert_eq!(
        lab.query_durations(),
        1,
        "histogram counts real queries only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_record_old_answer_until_ttl_then_new() {
    let lab = lab(vec![LabRecord::a("sip.acme.example", V4, 1)]).await;
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);
    assert_eq!(r.records()[0].ttl_seconds, 1);
    lab.dns
        .set_records(vec![LabRecord::a("sip.acme.example", V4B, 1)]);
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(
        ips(&r),
        vec![IpAddr::V4(V4)],
        "within TTL: the cached answer"
    );
    assert_eq!(lab.dns.queries(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(
        ips(&r),
        vec![IpAddr::V4(V4B)],
        "past TTL: never the old answer"
    );
    assert_eq!(lab.dns.queries(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ttl_clamps_long_ttls() {
    let lab = lab_with(
        vec![LabRecord::a("sip.acme.example", V4, 300)],
        Duration::from_secs(1),
        Duration::from_secs(2),
    )
    .await;
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(r.records()[0].ttl_seconds, 1);
    assert!(r.expires <= Instant::now() + Duration::from_secs(1));
    lab.dns
        .set_records(vec![LabRecord::a("sip.acme.example", V4B, 300)]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4B)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_is_not_cached() {
    let lab = lab(vec![LabRecord::a("sip.acme.example", V4, 0)]).await;
    lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(lab.dns.queries(), 2);
    assert_eq!(lab.lookups("cache_hit"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_servfail_with_a_present_is_not_an_error() {
    let mut recs = vec![LabRecord::a("sip.acme.example", V4, 30)];
    recs.push(LabRecord::servfail("sip.acme.example", LabType::AAAA));
    let lab = lab(recs).await;
    let t = Instant::now();
    let r = lab
        .resolve("sip.acme.example", &[IPv6, IPv4])
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);
    // And the other way round: A fails, AAAA answers.
    lab.dns.set_records(vec![
        LabRecord::servfail("v6.acme.example", "A"),
        LabRecord::aaaa("v6.acme.example", V6, 30),
    ]);
    let r = lab.resolve("v6.acme.example", &[IPv4, IPv6]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V6(V6)]);
    // AAAA only: the failure is the answer.
    let err = lab.resolve("sip.acme.example", &[IPv6]).await.unwrap_err();
    assert!(matches!(err, DnsError::Other(_)), "{err:?}");
    assert!(err.to_string().contains("sip.acme.example"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_dropped_with_a_present_answers_within_the_timeout() {
    let recs = vec![
        LabRecord::a("sip.acme.example", V4, 30),
        LabRecord::drop("sip.acme.example", LabType::AAAA),
    ];
    let lab = lab_with(recs, Duration::from_secs(60), Duration::from_secs(2)).await;
    let t = Instant::now();
    let r = lab
        .resolve("sip.acme.example", &[IPv6, IPv4])
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);
    assert!(
        took < Duration::from_secs(1),
        "A answered, AAAA silent: took {took:?}"
    );
    // The AAAA query still runs in the background; a second call does not wait again.
    let t = Instant::now();
    let r = lab
        .resolve("sip.acme.example", &[IPv6, IPv4])
        .await
        .unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    // AAAA only: a timeout, bounded by the configured timeout.
    let t = Instant::now();
    let err = lab.resolve("sip.acme.example", &[IPv6]).await.unwrap_err();
    assert!(matches!(err, DnsError::Timeout(_)), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert!(lab.lookups("timeout") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata() {
    let lab = lab(vec![LabRecord::a("v4only.acme.example", V4, 30)]).await;
    let err = lab
        .resolve("nope.acme.example", &[IPv4, IPv6])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::NxDomain(n) if n == "nope.acme.example"),
        "{err:?}"
    );
    assert!(err.to_string().contains("NXDOMAIN"), "{err}");
    assert_eq!(lab.lookups("nxdomain"), 1);
    let err = lab
        .resolve("v4only.acme.example", &[IPv6])
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NoAddresses(_)), "{err:?}");
    assert_eq!(lab.lookups("no_addresses"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_are_cached_briefly() {
    // The lab's SOA minimum is 1 s.
    let lab = lab(vec![]).await;
    for _ in 0..3 {
        let err = lab.resolve("new.acme.example", &[IPv4]).await.unwrap_err();
        assert!(matches!(err, DnsError::NxDomain(_)), "{err:?}");
    }
    assert_eq!(lab.dns.queries(), 1);
    lab.dns
        .set_records(vec![LabRecord::a("new.acme.example", V4, 30)]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = lab.resolve("new.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_sets_via_cname_and_bounds_the_ttl() {
    let lab = lab(vec![
        LabRecord::cname("alias.acme.example", "sip.acme.example", 5),
        LabRecord::a("sip.acme.example", V4, 30),
        LabRecord::aaaa("sip.acme.example", V6, 30),
    ])
    .await;
    let r = lab
        .resolve("alias.acme.example", &[IPv4, IPv6])
        .await
        .unwrap();
    assert!(r.via_cname);
    assert_eq!(ips(&r), vec![IpAddr::V4(V4), IpAddr::V6(V6)]);
    assert!(
        r.records().iter().all(|a| a.ttl_seconds <= 5),
        "{:?}",
        r.records()
    );
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert!(!r.via_cname);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_are_coalesced() {
    // TTL 0: nothing is cached, so only coalescing can explain a single query.
    let lab = lab(vec![LabRecord::a("sip.acme.example", V4, 0)]).await;
    // A slow nameserver: every call below starts while the query is in flight.
    lab.dns.set_delay(Duration::from_millis(300));
    let calls = (0..100).map(|_| lab.resolve("sip.acme.example", &[IPv4]));
    let results = futures::future::join_all(calls).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.addrs == [IpAddr::V4(V4)]))
    );
    assert_eq!(lab.dns.queries(), 1);

    // Same through spawned tasks on the multi-threaded runtime.
    let lab = lab_with(
        vec![
            LabRecord::a("sip.acme.example", V4, 30),
            LabRecord::drop("slow.acme.example", "AAAA"),
        ],
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let r = lab.resolver.clone();
            tokio::spawn(async move { r.resolve("sip.acme.example", &[IPv4]).await })
        })
        .collect();
    for h in handles {
        assert!(h.await.unwrap().is_ok());
    }
    assert_eq!(lab.dns.queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_only_name() {
    let lab = lab(vec![LabRecord::aaaa("v6.acme.example", V6, 30)]).await;
    let r = lab.resolve("v6.acme.example", &[IPv4, IPv6]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V6(V6)]);
    assert_eq!(r.records()[0].family, IPv6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_fall_back_to_tcp() {
    let recs: Vec<LabRecord> = (1..=150u8)
        .map(|i| LabRecord::a("big.acme.example", Ipv4Addr::new(10, 0, 1, i), 30))
        .collect();
    let lab = lab(recs).await;
    let r = lab.resolve("big.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(r.addrs.len(), 150);
    assert_eq!(r.addrs[0], IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)));
    assert_eq!(r.addrs[149], IpAddr::V4(Ipv4Addr::new(10, 0, 1, 150)));
    assert!(lab.dns.queries() >= 2, "UDP (truncated) then TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_config_switches_nameservers() {
    let lab = lab(vec![LabRecord::a("sip.acme.example", V4, 300)]).await;
    let other = LabDns::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    other.set_records(vec![LabRecord::a("sip.acme.example", V4B, 300)]);
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);
    lab.resolver.update_config(&cfg(
        other.addr(),
        Duration::from_secs(60),
        Duration::from_secs(2),
    ));
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
    assert_eq!(
        ips(&r),
        vec![IpAddr::V4(V4B)],
        "new nameservers: the cache was dropped"
    );
    assert_eq!(other.queries(), 1);
    // A smaller maxTtl applies at once, too.
    lab.resolver.update_config(&cfg(
        other.addr(),
        Duration::from_secs(1),
        Duration::from_secs(2),
    ));
    let r = lab.resolve("sip.acme.example", &[IPv4]).await.unwrap();
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

fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Resolves until `check` holds or `within` passes; returns the last result.
async fn resolve_until(
    resolver: &Resolver,
    name: &str,
    within: Duration,
    check: impl Fn(&Result<Arc<Resolution>, DnsError>) -> bool,
) -> Result<Arc<Resolution>, DnsError> {
    let until = Instant::now() + within;
    loop {
        let r = resolver.resolve(name, &[IPv4, IPv6]).await;
        if check(&r) || Instant::now() > until {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_dns_binary_serves_and_reloads_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.yaml");
    std::fs::write(
        &file,
        "records:\n  - { name: sip.acme.example, type: A, value: 127.0.0.1, ttl: 1 }\n",
    )
    .unwrap();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(env!("CARGO_BIN_EXE_vsip"))
        .args(["lab-dns", "--listen", &addr.to_string(), "--records"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Kill(child);

    let registry = prometheus::Registry::new();
    let resolver = Resolver::new(
        &cfg(addr, Duration::from_secs(60), Duration::from_millis(500)),
        &registry,
    )
    .unwrap();
    let r = resolve_until(
        &resolver,
        "sip.acme.example",
        Duration::from_secs(10),
        |r| r.is_ok(),
    )
    .await
    .unwrap();
    assert_eq!(ips(&r), vec![IpAddr::V4(V4)]);

    // Change the file: the new answer shows once the old TTL (1 s) ran out.
    std::fs::write(
        &file,
        "records:\n  - { name: sip.acme.example, type: A, value: 127.0.0.2, ttl: 1 }\n  - { name: sip.acme.example, type: AAAA, value: \"::1\", ttl: 1 }\n",
    )
    .unwrap();
    let want = vec![IpAddr::V4(V4B), IpAddr::V6(V6)];
    let r = resolve_until(&resolver, "sip.acme.example", Duration::from_secs(5), |r| {
        r.as_ref().is_ok_and(|r| r.addrs == want)
    })
    .await;
    assert_eq!(ips(&r.unwrap()), want);

    // A bad file keeps the last good records.
    std::fs::write(
        &file,
        "records: [{ name: sip.acme.example, type: A, value: nope }]\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = resolver
        .resolve("sip.acme.example", &[IPv4, IPv6])
        .await
        .unwrap();
    assert_eq!(ips(&r), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_resolver_reads_the_hosts_file() {
    // No nameservers configured: /etc/resolv.conf and /etc/hosts, like the platform.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let has_localhost = hosts.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next() == Some("127.0.0.1") && f.any(|n| n == "localhost")
    });
    if !has_localhost || !std::path::Path::new("/etc/resolv.conf").exists() {
        eprintln!("skipped: no 127.0.0.1 localhost in /etc/hosts or no /etc/resolv.conf");
        return;
    }
    let registry = prometheus::Registry::new();
    let resolver = Resolver::new(&DnsConfig::default(), &registry).unwrap();
    let r = resolver.resolve("localhost", &[IPv4]).await.unwrap();
    assert!(r.addrs.contains(&IpAddr::V4(V4)), "{r:?}");
    assert!(
        r.records()[0].ttl_seconds <= 60,
        "clamped by the default maxTtl"
    );
}
