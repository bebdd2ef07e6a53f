//! Failover across the addresses a trunk FQDN resolves to. Each "SBC IP" is
//! a distinct 127.0.0.x loopback address with the same port (DNS gives one
//! port per trunk). Misbehaving addresses:
//! - refused: nothing listens on 127.0.0.2:port → connect gets RST at once;
//! - silent: [`SilentListener`] accepts and reads but never answers
//!   (exercises `responseTimeout`);
//! - blackholed: [`BlackholeListener`], a backlog-0 listener whose accept
//!   queue we fill ourselves, so Linux drops further SYNs and `connect()`
//!   hangs (exercises `connectTimeout`).

mod support;

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use support::{sip::*, *};

const TRUNK: &str = "acme/acme-mumbai";

/// One call placed from Rust over plain TCP (measures INVITE → final).
fn timed_call(proxy: &ProxyProcess) -> CallOutcome {
    let addr = proxy.sip_addr();
    rt().block_on(async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = s.local_addr().unwrap();
        let mut c = Conn::new(s);
        call(
            &mut c,
            local,
            &format!("sip:{NUMBER}@{addr};transport=tcp"),
            &[],
            "TCP",
            Duration::from_secs(15),
        )
        .await
    })
}

fn failovers(proxy: &ProxyProcess) -> f64 {
    proxy.counter("vsip_failovers_total", &[("trunk", TRUNK)])
}

#[test]
fn refused_first_address_every_call_completes_on_the_second() {
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(5).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(5)
        .rate(10.0)
        .run()
        .assert_all_ok(5);
    let sbc = sbc.wait();
    sbc.assert_all_ok(5);
    assert_eq!(sbc.received_requests("INVITE").len(), 5);
    assert!(failovers(&proxy) >= 1.0, "{}", proxy.metrics());
}

#[test]
fn silent_first_address_times_out_then_is_held_down() {
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let silent = SilentListener::start(SocketAddr::new(lo(2), port));
    let proxy = inbound_proxy(&dns, port, |t| {
        t.response_timeout = "1500ms".into();
        t.hold_down = "3s".into();
    });
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(3).spawn();

    let first = timed_call(&proxy);
    assert_eq!(first.final_status, Some(200), "{first:?}");
    assert_eq!(first.bye_status, Some(200), "{first:?}");
    assert!(
        first.setup >= Duration::from_millis(1400),
        "first call must wait responseTimeout on the silent SBC: {:?}",
        first.setup
    );
    assert!(
        silent.bytes.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "INVITE reached the silent SBC"
    );
    let after_first = failovers(&proxy);
    assert!(after_first >= 1.0, "{}", proxy.metrics());

    // Held down: the second call skips the silent address entirely.
    let bytes_before = silent.bytes.load(std::sync::atomic::Ordering::SeqCst);
    let second = timed_call(&proxy);
    assert_eq!(second.final_status, Some(200), "{second:?}");
    assert!(
        second.setup < Duration::from_millis(1000),
        "second call should skip the held-down address: {:?}",
        second.setup
    );
    assert_eq!(
        silent.bytes.load(std::sync::atomic::Ordering::SeqCst),
        bytes_before,
        "nothing more sent to the held-down address"
    );
    assert_eq!(
        failovers(&proxy),
        after_first,
        "no new failover during hold-down"
    );

    // After holdDown the address is tried again (and fails over again).
    std::thread::sleep(Duration::from_millis(3200));
    let third = timed_call(&proxy);
    assert_eq!(third.final_status, Some(200), "{third:?}");
    assert!(
        third.setup >= Duration::from_millis(1400),
        "{:?}",
        third.setup
    );
    assert!(silent.bytes.load(std::sync::atomic::Ordering::SeqCst) > bytes_before);
    assert!(failovers(&proxy) > after_first);
    let sbc = sbc.wait();
    assert_eq!(sbc.received_requests("INVITE").len(), 3);
}

#[test]
fn blackholed_first_address_fails_over_after_connect_timeout() {
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let _hole = BlackholeListener::start(SocketAddr::new(lo(2), port));
    let proxy = inbound_proxy(&dns, port, |t| {
        t.connect_timeout = "1500ms".into();
        t.response_timeout = "4s".into();
    });
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(2).spawn();
    let first = timed_call(&proxy);
    assert_eq!(first.final_status, Some(200), "{first:?}");
    assert!(
        first.setup >= Duration::from_millis(1400) && first.setup < Duration::from_millis(3900),
        "connectTimeout (1.5s), not responseTimeout (4s), should decide: {:?}",
        first.setup
    );
    let second = timed_call(&proxy);
    assert_eq!(second.final_status, Some(200), "{second:?}");
    assert!(
        second.setup < Duration::from_millis(1000),
        "{:?}",
        second.setup
    );
    assert!(failovers(&proxy) >= 1.0, "{}", proxy.metrics());
    let _ = sbc.wait();
}

#[test]
fn retryable_answers_503_408_504_move_to_the_next_address() {
    require_sipp();
    for code in [503u16, 408, 504] {
        let port = free_port_on(&[lo(2), lo(3)]);
        let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
        let proxy = inbound_proxy(&dns, port, |_| {});
        let bad = Sipp::uas(&format!("uas_{code}.xml"), lo(2), port).spawn();
        let good = Sipp::uas("uas_rfc3261.xml", lo(3), port).spawn();
        let uac = Sipp::uac("uac_call.xml", proxy.sip_addr())
            .service(NUMBER)
            .run();
        uac.assert_all_ok(1);
        assert!(
            uac.received_responses(code).is_empty(),
            "the {code} must not be relayed\n{}",
            uac.summary()
        );
        let good = good.wait();
        good.assert_all_ok(1);
        // The first SBC was asked once and got the hop-by-hop ACK.
        let bad = bad.wait();
        bad.assert_all_ok(1);
        assert!(failovers(&proxy) >= 1.0, "{code}: {}", proxy.metrics());
    }
}

#[test]
fn busy_486_and_decline_603_are_relayed_and_not_retried() {
    require_sipp();
    for code in [486u16, 603] {
        let port = free_port_on(&[lo(2), lo(3)]);
        let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
        let proxy = inbound_proxy(&dns, port, |_| {});
        let refusing = Sipp::uas(&format!("uas_{code}.xml"), lo(2), port).spawn();
        let other = Sipp::uas("uas_rfc3261.xml", lo(3), port).spawn();
        Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
            .subst("__EXPECTED__", &code.to_string())
            .service(NUMBER)
            .run()
            .assert_all_ok(1);
        refusing.wait().assert_all_ok(1);
        let other = other.stop();
        assert!(
            other.received().is_empty(),
            "{code} must not be retried elsewhere\n{}",
            other.summary()
        );
        assert_eq!(failovers(&proxy), 0.0, "{}", proxy.metrics());
    }
}

#[test]
fn every_address_failing_gives_503() {
    require_sipp();
    // Both addresses refuse connections.
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
}

#[test]
fn dns_failure_gives_503() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![servfail(FQDN, "A"), servfail(FQDN, "AAAA")]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let m = proxy.metrics();
    let ok: f64 = metric_samples(&m, "vsip_dns_lookups_total")
        .into_iter()
        .filter(|(l, _)| {
            l.iter()
                .any(|(k, v)| k == "result" && v != "success" && v != "ok")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(ok >= 1.0, "a failed DNS lookup must be counted:\n{m}");
}

#[test]
fn a_record_change_is_followed_within_the_ttl() {
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 1)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let old = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    let new = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(2).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    // Move the FQDN; after the 1 s TTL (plus margin) calls go to the new IP.
    dns.set(vec![a(FQDN, lo(3), 1)]);
    let changed = Instant::now();
    std::thread::sleep(Duration::from_millis(1600));
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(2)
        .rate(10.0)
        .run()
        .assert_all_ok(2);
    assert!(changed.elapsed() < Duration::from_secs(10));
    let old = old.stop();
    let new = new.stop();
    assert_eq!(
        old.received_requests("INVITE").len(),
        1,
        "{}",
        old.summary()
    );
    assert_eq!(
        new.received_requests("INVITE").len(),
        2,
        "{}",
        new.summary()
    );
}

#[test]
fn aaaa_only_fqdn_is_reached_over_ipv6_loopback() {
    require_sipp();
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let port = free_port_on(&[v6]);
    let dns = Dns::start(vec![aaaa(FQDN, Ipv6Addr::LOCALHOST, 30)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", v6, port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let sbc = sbc.wait();
    sbc.assert_all_ok(1);
    let inv = only_request(&sbc, "INVITE");
    assert_eq!(
        inv.request_uri().unwrap(),
        format!("sip:{NUMBER}@{FQDN}:{port};transport=tcp")
    );
}

#[test]
fn ip_families_order_and_filter_are_respected() {
    require_sipp();
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let port = free_port_on(&[lo(2), v6]);
    let dns = Dns::start(vec![
        a(FQDN, lo(2), 30),
        aaaa(FQDN, Ipv6Addr::LOCALHOST, 30),
    ]);
    // IPv6 preferred: the call goes to ::1 although an A record exists.
    let proxy = inbound_proxy(&dns, port, |t| t.ip_families = vec!["IPv6", "IPv4"]);
    let v4_sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    let v6_sbc = Sipp::uas("uas_rfc3261.xml", v6, port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    v6_sbc.wait().assert_all_ok(1);
    assert!(v4_sbc.stop().received().is_empty());
    drop(proxy);

    // IPv4 only with an AAAA-only name: no usable address → 503.
    let dns = Dns::start(vec![aaaa(FQDN, Ipv6Addr::LOCALHOST, 30)]);
    let proxy = inbound_proxy(&dns, port, |t| t.ip_families = vec!["IPv4"]);
    let v6_sbc = Sipp::uas("uas_rfc3261.xml", v6, port).spawn();
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert!(v6_sbc.stop().received().is_empty());
}

#[test]
fn max_ttl_caps_how_long_an_answer_is_cached() {
    // The record says 300 s, the proxy's dns.maxTtl says 1 s: a change is
    // followed after ~1 s anyway.
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 300)]);
    let mut conf = ProxyConf::new(&dns);
    conf.max_ttl = "1s".into();
    conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
    conf.trunks
        .push(TrunkConf::tcp(TRUNK, FQDN, port, &[NUMBER]));
    let proxy = ProxyProcess::start(conf);
    let old = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    let new = Sipp::uas("uas_rfc3261.xml", lo(3), port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    dns.set(vec![a(FQDN, lo(3), 300)]);
    std::thread::sleep(Duration::from_millis(1700));
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert_eq!(old.stop().received_requests("INVITE").len(), 1);
    assert_eq!(new.stop().received_requests("INVITE").len(), 1);
}

#[test]
fn unanswered_dns_query_gives_503_in_bounded_time() {
    // The name server swallows the queries: the call must still end (503)
    // instead of hanging the carrier.
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![dns_drop(FQDN, "A"), dns_drop(FQDN, "AAAA")]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let started = Instant::now();
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .timeout(Duration::from_secs(20))
        .run()
        .assert_all_ok(1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}
