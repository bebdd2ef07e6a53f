//! Failover across the addresses a trunk FQDN resolves to, and the DNS
//! answers behind them (Knot, Debian's authoritative server, whose zone the
//! tests change mid-run; our lab server where a failure must be injected).
//! Each "SBC IP" is a distinct 127.0.0.x loopback address with the same port
//! (DNS gives one port per trunk). Misbehaving addresses:
//! - refused: nothing listens on 127.0.0.2:port → connect gets RST at once;
//! - silent: [`SilentListener`] accepts and reads but never answers
//!   (exercises `responseTimeout`);
//! - blackholed: [`BlackholeListener`], a backlog-0 listener whose accept
//!   queue we fill ourselves, so Linux drops further SYNs and `connect()`
//!   hangs (exercises `connectTimeout`).
//!
//! Promises about time are checked between bounds taken from the configured
//! values and the times measured around each call ([`probe_switch`]).

mod support;

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use support::{sip::*, *};

const TRUNK: &str = "acme/acme-mumbai";
/// Room for a loaded machine on top of a promised time.
const SLACK: Duration = Duration::from_secs(10);

/// One call placed from Rust over plain TCP (measures INVITE → final).
fn timed_call(proxy: &ProxyProcess) -> CallOutcome {
    call_from(LOCALHOST, proxy.sip_addr(), NUMBER)
}

fn failovers(proxy: &ProxyProcess) -> f64 {
    proxy.counter("vsip_failovers_total", &[("trunk", TRUNK)])
}

/// Places a call and says which of `sbcs` (SIPp servers) received its INVITE.
fn call_reaches(proxy: &ProxyProcess, sbcs: &[&SippRun]) -> Option<usize> {
    let before: Vec<usize> = sbcs.iter().map(|s| s.count_received("INVITE")).collect();
    let out = timed_call(proxy);
    assert_eq!(out.final_status, Some(200), "{out:?}");
    // The SBC answered, so its log has the INVITE (SIPp writes it per message).
    wait_for(
        Duration::from_secs(10),
        "the SBC's INVITE in its log",
        || {
            sbcs.iter()
                .zip(&before)
                .position(|(s, b)| s.count_received("INVITE") > *b)
                .map(Some)
        },
    )
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
    // Refused once, then held down (30 s): the other four calls skip it.
    assert_eq!(
        proxy.counter(
            "vsip_failovers_total",
            &[("trunk", TRUNK), ("reason", "connect")]
        ),
        1.0,
        "{}",
        proxy.metrics()
    );
}

#[test]
fn silent_first_address_times_out_then_is_held_down() {
    require_sipp();
    let response_timeout = Duration::from_millis(1500);
    let hold_down = Duration::from_secs(3);
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let silent = SilentListener::start(SocketAddr::new(lo(2), port));
    let proxy = inbound_proxy(&dns, port, |t| {
        t.response_timeout = "1500ms".into();
        t.hold_down = "3s".into();
    });
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(50).spawn();

    let started = Instant::now();
    let first = timed_call(&proxy);
    let ended = Instant::now();
    assert_eq!(first.final_status, Some(200), "{first:?}");
    assert_eq!(first.bye_status, Some(200), "{first:?}");
    assert!(
        first.setup >= response_timeout,
        "first call must wait responseTimeout on the silent SBC: {:?}",
        first.setup
    );
    assert!(silent.received() > 0, "INVITE reached the silent SBC");
    let after_first = failovers(&proxy);
    assert_eq!(after_first, 1.0, "{}", proxy.metrics());

    // Held down from the moment the response timed out: skipped by every call
    // until holdDown has passed, tried again (and timed out again) after it.
    let held_from = started + response_timeout;
    let seen = probe_switch(
        "the silent address tried again after its hold-down",
        held_from + hold_down,
        ended + hold_down,
        Duration::from_millis(200),
        || {
            let before = silent.received();
            let out = timed_call(&proxy);
            assert_eq!(out.final_status, Some(200), "{out:?}");
            (silent.received() > before, out.setup)
        },
        |(tried, _)| *tried,
    );
    let retry = seen.last().unwrap();
    assert!(retry.value.1 >= response_timeout, "{retry:?}");
    assert_eq!(failovers(&proxy), 2.0, "{}", proxy.metrics());
    let sbc = sbc.stop();
    assert_eq!(
        sbc.received_requests("INVITE").len(),
        1 + seen.len(),
        "{}",
        sbc.summary()
    );
}

#[test]
fn blackholed_first_address_fails_over_after_connect_timeout() {
    require_sipp();
    let connect_timeout = Duration::from_secs(3);
    let response_timeout = Duration::from_secs(8);
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let _hole = BlackholeListener::start(SocketAddr::new(lo(2), port));
    let proxy = inbound_proxy(&dns, port, |t| {
        t.connect_timeout = "3s".into();
        t.response_timeout = "8s".into();
    });
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(2).spawn();
    let first = timed_call(&proxy);
    assert_eq!(first.final_status, Some(200), "{first:?}");
    assert!(
        first.setup >= connect_timeout && first.setup < response_timeout,
        "connectTimeout ({connect_timeout:?}), not responseTimeout ({response_timeout:?}), should decide: {:?}",
        first.setup
    );
    assert_eq!(
        proxy.counter(
            "vsip_failovers_total",
            &[("trunk", TRUNK), ("reason", "connect_timeout")]
        ),
        1.0,
        "{}",
        proxy.metrics()
    );
    // Held down: the second call does not dial the black hole again.
    let second = timed_call(&proxy);
    assert_eq!(second.final_status, Some(200), "{second:?}");
    assert!(second.setup < connect_timeout, "{:?}", second.setup);
    assert_eq!(failovers(&proxy), 1.0, "{}", proxy.metrics());
    sbc.wait().assert_all_ok(2);
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
        assert_eq!(
            proxy.counter(
                "vsip_failovers_total",
                &[("trunk", TRUNK), ("reason", &code.to_string())]
            ),
            1.0,
            "{code}: {}",
            proxy.metrics()
        );
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
    // Both addresses refuse connections: no answer to relay, the proxy's own 503.
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let uac = Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    let m = &uac.received_responses(503)[0];
    assert!(
        m.header("reason")
            .is_some_and(|r| r.contains("no reachable address")),
        "{m:?}"
    );
    assert_eq!(failovers(&proxy), 2.0, "{}", proxy.metrics());
}

/// The To tag a SIPp UAS (`[pid]SIPpTag01[call_number]`) put in its answers.
fn tagged_by(m: &Msg, sbc_pid: u32) -> bool {
    m.header("to")
        .and_then(|t| param(t, "tag"))
        .is_some_and(|tag| tag.starts_with(&format!("{sbc_pid}SIPpTag01")))
}

#[test]
fn every_address_answering_503_relays_the_last_real_answer() {
    require_sipp();
    // Two SBCs overloaded: the caller gets the second one's 503 (its To tag),
    // not the first one's and not one of the proxy's own.
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let first = Sipp::uas("uas_503.xml", lo(2), port).spawn();
    let second = Sipp::uas("uas_503.xml", lo(3), port).spawn();
    let (first_pid, second_pid) = (first.pid(), second.pid());
    let uac = Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    first.wait().assert_all_ok(1);
    second.wait().assert_all_ok(1);
    let m = &uac.received_responses(503)[0];
    assert!(
        tagged_by(m, second_pid),
        "the last SBC's 503 (pid {second_pid}, the first was {first_pid}): {m:?}"
    );
    assert!(!m.has("reason"), "the proxy's own 503: {m:?}");
    // Relayed as an answer to the caller's request: its From and To, the SBC's tag.
    let sent = uac
        .sent()
        .into_iter()
        .map(|t| Msg::text(&t))
        .find(|m| m.method() == Some("INVITE"))
        .unwrap();
    assert_eq!(m.header("from"), sent.header("from"), "{m:?}");
    assert_eq!(
        m.header("to").map(uri_of),
        sent.header("to").map(uri_of),
        "{m:?}"
    );
    assert_eq!(failovers(&proxy), 2.0, "{}", proxy.metrics());

    // The last real answer, even when a refused address comes after it.
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let only = Sipp::uas("uas_504.xml", lo(2), port).spawn();
    let only_pid = only.pid();
    let uac = Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "504")
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    only.wait().assert_all_ok(1);
    let m = &uac.received_responses(504)[0];
    assert!(tagged_by(m, only_pid), "{m:?}");
    assert_eq!(failovers(&proxy), 2.0, "{}", proxy.metrics());
}

#[test]
fn held_down_addresses_are_tried_last_and_still_tried_when_all_are_held_down() {
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let proxy = inbound_proxy(&dns, port, |t| t.hold_down = "300s".into());
    // 1. Both addresses refuse: 503, both held down for 300 s.
    assert_eq!(timed_call(&proxy).final_status, Some(503));
    assert_eq!(failovers(&proxy), 2.0, "{}", proxy.metrics());
    // 2. Every address is held down and the second is back: still tried, in
    //    DNS order (the first refuses again), rather than refused for 300 s.
    let second = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(10).spawn();
    let out = timed_call(&proxy);
    assert_eq!(out.final_status, Some(200), "{out:?}");
    assert_eq!(failovers(&proxy), 3.0, "{}", proxy.metrics());
    // 3. The first is back too, but still held down; the second answered and
    //    is not: the second goes first, the first is not even asked.
    let first = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(10).spawn();
    assert_eq!(call_reaches(&proxy, &[&first, &second]), Some(1));
    assert_eq!(failovers(&proxy), 3.0, "{}", proxy.metrics());
    let (first, second) = (first.stop(), second.stop());
    assert!(first.received().is_empty(), "{}", first.summary());
    assert_eq!(second.received_requests("INVITE").len(), 2);
}

#[test]
fn dns_failure_gives_503() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::lab(vec![servfail(FQDN, "A"), servfail(FQDN, "AAAA")]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let uac = Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    let m = &uac.received_responses(503)[0];
    assert!(
        m.header("reason")
            .is_some_and(|r| r.contains("DNS resolution failed")),
        "{m:?}"
    );
    let metrics = proxy.metrics();
    // (The proxy's source refresher looks the name up too, so at least one.)
    assert!(
        metric_sum(&metrics, "vsip_dns_lookups_total", &[("result", "error")]) >= 1.0,
        "a SERVFAIL is a failed lookup:\n{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "vsip_dns_lookups_total", &[("result", "ok")]),
        0.0,
        "{metrics}"
    );
}

/// Calls the proxy while the trunk's FQDN moves from 127.0.0.2 to
/// 127.0.0.3: from the moment the DNS server answers with the new address,
/// the old one is used for at most `ttl` (README: "never served past the
/// record TTL"). The proxy also looks the name up in the background (to
/// recognise trunk sources), so the old answer may have been fetched at any
/// time up to the change: `ttl` after the change is the bound.
fn calls_follow_a_dns_change(
    proxy: &ProxyProcess,
    dns: &Dns,
    port: u16,
    ttl: Duration,
    record_ttl: u32,
) {
    let old = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(100).spawn();
    let new = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(100).spawn();
    assert_eq!(call_reaches(proxy, &[&old, &new]), Some(0));
    let changing = Instant::now();
    dns.set(vec![a(FQDN, lo(3), record_ttl)]);
    let changed = Instant::now();
    let seen = probe_switch(
        "calls after the FQDN moved",
        changing,
        changed + ttl,
        Duration::from_millis(200),
        || call_reaches(proxy, &[&old, &new]),
        |to| *to == Some(1),
    );
    let (old, new) = (old.stop(), new.stop());
    assert_eq!(old.received_requests("INVITE").len(), seen.len());
    assert_eq!(new.received_requests("INVITE").len(), 1);
}

#[test]
fn a_record_change_is_followed_within_the_ttl() {
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 3)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    calls_follow_a_dns_change(&proxy, &dns, port, Duration::from_secs(3), 3);
}

#[test]
fn max_ttl_caps_how_long_an_answer_is_cached() {
    // The record says 300 s, the proxy's dns.maxTtl says 3 s.
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 300)]);
    let mut conf = ProxyConf::new(&dns);
    conf.max_ttl = "3s".into();
    conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
    conf.trunks
        .push(TrunkConf::tcp(TRUNK, FQDN, port, &[NUMBER]));
    let proxy = ProxyProcess::start(conf);
    calls_follow_a_dns_change(&proxy, &dns, port, Duration::from_secs(3), 300);
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
fn unanswered_dns_query_gives_503_after_the_dns_timeout() {
    // The name server swallows the queries: the call must still end (503)
    // when the configured DNS timeout runs out, instead of hanging the carrier.
    let dns_timeout = Duration::from_secs(3);
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::lab(vec![dns_drop(FQDN, "A"), dns_drop(FQDN, "AAAA")]);
    let mut conf = ProxyConf::new(&dns);
    conf.dns_timeout = "3s".into();
    conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
    conf.trunks
        .push(TrunkConf::tcp(TRUNK, FQDN, port, &[NUMBER]));
    let proxy = ProxyProcess::start(conf);
    let out = timed_call(&proxy);
    assert_eq!(out.final_status, Some(503), "{out:?}");
    assert!(
        out.setup >= dns_timeout && out.setup <= dns_timeout + SLACK,
        "503 after {:?}; the DNS timeout is {dns_timeout:?}",
        out.setup
    );
    let last = out.responses.last().unwrap();
    assert!(
        last.header("reason")
            .is_some_and(|r| r.contains("DNS resolution failed")),
        "{last:?}"
    );
    assert!(
        proxy.counter("vsip_dns_lookups_total", &[("result", "timeout")]) >= 1.0,
        "{}",
        proxy.metrics()
    );
}
