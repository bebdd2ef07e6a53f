//! Calls-per-minute quota: at most `callsPerMinute` initial INVITEs per trunk
//! in any rolling 60 s; the excess gets 503 with Retry-After. Driven at a
//! high rate (300 calls at 25 cps ≈ 12 s) so the whole burst sits inside one
//! minute and the test stays short.

mod support;

use std::time::Duration;

use support::sip::Conn;

use support::*;

const TRUNK: &str = "acme/acme-mumbai";

#[test]
fn burst_of_300_calls_gets_exactly_200_through_and_100_throttled() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let proxy = inbound_proxy(&dns, port, |t| t.calls_per_minute = Some(200));
    // Room for more than 200 so an over-delivery would show in its log.
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port)
        .calls(300)
        .timeout(Duration::from_secs(60))
        .spawn();
    let uac = Sipp::uac("uac_cpm.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(300)
        .rate(25.0)
        .limit(50)
        .pause_ms(0)
        .timeout(Duration::from_secs(50))
        .run();
    // Every call ends as scripted: answered (200) or throttled (503 + ACK).
    uac.assert_all_ok(300);
    let sbc = sbc.stop();
    let delivered = sbc.received_requests("INVITE").len();
    assert_eq!(
        delivered,
        200,
        "INVITEs delivered to the SBC\n{}",
        sbc.summary()
    );
    let throttled: Vec<_> = uac
        .received_responses(503)
        .into_iter()
        .filter(|m| m.cseq_method() == "INVITE")
        .collect();
    assert_eq!(
        throttled.len(),
        100,
        "503s at the carrier\n{}",
        uac.summary()
    );
    // Retry-After: the seconds until the oldest admission leaves the 60 s
    // window, rounded up. The oldest is the first call, admitted between its
    // INVITE leaving SIPp and its 200 arriving; a refusal happened between
    // that call's INVITE and its 503. Both ends are measured on SIPp's clock.
    let sent = uac.sent_timed();
    let received = uac.received_timed();
    let (first_sent, first) = sent
        .iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .expect("an INVITE");
    let first_ok = received
        .iter()
        .find(|(_, m)| m.status() == Some(200) && m.call_id() == first.call_id())
        .map(|(t, _)| *t)
        .expect("the first call answered");
    let window = 60.0;
    let mut shown = Vec::new();
    for (t_503, m) in received
        .iter()
        .filter(|(_, m)| m.status() == Some(503) && m.cseq_method() == "INVITE")
    {
        let ra = m
            .header("retry-after")
            .unwrap_or_else(|| panic!("503 without Retry-After: {m:?}"));
        let secs: f64 = ra
            .split([';', ' ', '('])
            .next()
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("Retry-After not delta-seconds: {ra:?}"))
            as f64;
        let t_invite = sent
            .iter()
            .find(|(_, s)| s.method() == Some("INVITE") && s.call_id() == m.call_id())
            .map(|(t, _)| *t)
            .expect("the refused call's INVITE");
        // ceil(window - (refused - admitted)), for the extremes of both instants.
        let low = window - (t_503 - first_sent);
        let high = (window - (t_invite - first_ok)).ceil();
        assert!(
            secs >= low.ceil() - 0.001 && secs <= high + 0.001,
            "Retry-After {secs}s, expected between {low:.3}s and {high}s (60 s after the first \
             admission, {:.3}s..{:.3}s into the burst, refused {:.3}s..{:.3}s into it)",
            0.0,
            first_ok - first_sent,
            t_invite - first_sent,
            t_503 - first_sent
        );
        shown.push(secs as u64);
    }
    shown.dedup();
    eprintln!("Retry-After values seen: {shown:?}");
    let answered = uac
        .received_responses(200)
        .into_iter()
        .filter(|m| m.cseq_method() == "INVITE")
        .count();
    assert_eq!(answered, 200);
    assert_eq!(
        proxy.counter("vsip_cpm_throttled_total", &[("trunk", TRUNK)]),
        100.0,
        "{}",
        proxy.metrics()
    );
}

#[test]
fn in_dialog_requests_do_not_count_against_the_quota() {
    // Quota 3: three calls each with a re-INVITE, ACKs and a BYE all pass;
    // only the fourth initial INVITE is refused.
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let proxy = inbound_proxy(&dns, port, |t| t.calls_per_minute = Some(3));
    let sbc = Sipp::uas("uas_reinvite.xml", lo(2), port).calls(3).spawn();
    Sipp::uac("uac_reinvite.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(3)
        .rate(10.0)
        .run()
        .assert_all_ok(3);
    sbc.wait().assert_all_ok(3);
    assert_throttled(proxy.sip_addr(), LOCALHOST, NUMBER);
    assert_eq!(
        proxy.counter("vsip_cpm_throttled_total", &[("trunk", TRUNK)]),
        1.0
    );
}

#[test]
fn quota_counts_both_directions() {
    // Quota 2 shared by inbound and outbound: one call each way passes, the
    // third new call (either way) is refused.
    require_sipp();
    let sbc_port = free_port_on(&[lo(2)]);
    let up_port = free_port_on(&[lo(4)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut conf = ProxyConf::new(&dns);
    // The carrier is 127.0.0.4: its UAS takes outbound calls there, and its
    // UAC calls in from there.
    conf.upstream = Some(format!("sip:127.0.0.4:{up_port};transport=tcp"));
    let mut t = TrunkConf::tcp(TRUNK, FQDN, sbc_port, &[NUMBER]);
    t.calls_per_minute = Some(2);
    conf.trunks.push(t);
    let proxy = ProxyProcess::start(conf);

    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), sbc_port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .local_ip(lo(4))
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    sbc.wait().assert_all_ok(1);

    let upstream = Sipp::uas("uas_rfc3261.xml", lo(4), up_port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .local_ip(lo(2))
        .service("+14155550100")
        .run()
        .assert_all_ok(1);
    upstream.wait().assert_all_ok(1);

    for (from, number) in [(lo(2), "+14155550100"), (lo(4), NUMBER)] {
        assert_throttled(proxy.sip_addr(), from, number);
    }
    assert_eq!(
        proxy.counter("vsip_cpm_throttled_total", &[("trunk", TRUNK)]),
        2.0
    );
}

#[test]
fn retransmitted_invite_is_not_a_new_call() {
    // Quota 1. The same INVITE sent twice back to back (a retransmission:
    // same branch, same Call-ID/CSeq) is one call: the SBC sees one INVITE
    // and the carrier gets one 200. A different INVITE is then throttled.
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let proxy = inbound_proxy(&dns, port, |t| t.calls_per_minute = Some(1));
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(2).spawn();
    let addr = proxy.sip_addr();
    let invite = raw_invite(addr, NUMBER, &[], &[]);
    let finals = rt().block_on(async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = Conn::new(s);
        c.send_raw(&invite).await.unwrap();
        c.send_raw(&invite).await.unwrap();
        let mut finals = Vec::new();
        while let Some(m) = c.recv(Duration::from_secs(2)).await {
            if m.status().unwrap_or(0) >= 200 {
                finals.push(m.status().unwrap());
            }
        }
        finals
    });
    assert_eq!(finals, vec![200], "one final answer for one call");
    let second = raw_invite(addr, NUMBER, &[], &[]);
    let code = rt().block_on(async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = Conn::new(s);
        c.send_raw(&second).await.unwrap();
        while let Some(m) = c.recv(Duration::from_secs(5)).await {
            if m.status().unwrap_or(0) >= 200 {
                return m.status();
            }
        }
        None
    });
    assert_eq!(
        code,
        Some(503),
        "the second new call exceeds the quota of 1"
    );
    let sbc = sbc.stop();
    assert_eq!(
        sbc.received_requests("INVITE").len(),
        1,
        "{}",
        sbc.summary()
    );
    assert_eq!(
        proxy.counter("vsip_cpm_throttled_total", &[("trunk", TRUNK)]),
        1.0
    );
}

#[test]
fn quota_is_per_trunk() {
    // Two trunks with 5 CPM each: 8 calls to acme → 5 through, 3 throttled;
    // 3 calls to globex meanwhile all go through.
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let globex_fqdn = "sip.globex.vsip-test.example";
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(globex_fqdn, lo(3), 30)]);
    let mut conf = ProxyConf::new(&dns);
    conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
    let mut acme = TrunkConf::tcp(TRUNK, FQDN, port, &[NUMBER]);
    acme.calls_per_minute = Some(5);
    let mut globex = TrunkConf::tcp("globex/main", globex_fqdn, port, &["+912233445566"]);
    globex.calls_per_minute = Some(5);
    conf.trunks = vec![acme, globex];
    let proxy = ProxyProcess::start(conf);
    let acme_sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(8).spawn();
    let globex_sbc = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(3).spawn();
    let acme_calls = Sipp::uac("uac_cpm.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(8)
        .rate(20.0)
        .pause_ms(0)
        .spawn();
    let globex_calls = Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service("+912233445566")
        .calls(3)
        .rate(20.0)
        .pause_ms(0)
        .spawn();
    let acme_calls = acme_calls.wait();
    acme_calls.assert_all_ok(8);
    globex_calls.wait().assert_all_ok(3);
    let acme_sbc = acme_sbc.stop();
    assert_eq!(
        acme_sbc.received_requests("INVITE").len(),
        5,
        "{}",
        acme_sbc.summary()
    );
    assert_eq!(acme_calls.received_responses(503).len(), 3);
    assert_eq!(globex_sbc.wait().received_requests("INVITE").len(), 3);
    assert_eq!(
        proxy.counter("vsip_cpm_throttled_total", &[("trunk", TRUNK)]),
        3.0
    );
    assert_eq!(
        proxy.counter("vsip_cpm_throttled_total", &[("trunk", "globex/main")]),
        0.0
    );
}
