//! Outbound calls (trunk SBC → upstream carrier): a call is recognised by its
//! source address being one the trunk FQDN resolves to. The SIPp caller is
//! bound with `-i` to 127.0.0.1 (in DNS) or 127.0.0.3 (not in DNS).

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use support::{sip::*, *};

const TRUNK: &str = "acme/acme-mumbai";
const DIALLED: &str = "+14155550100";
/// How often the proxy's source refresher looks for expired answers (0.5 s),
/// with room for a loaded machine.
const REFRESH_TICK: Duration = Duration::from_secs(2);

fn outbound_lab() -> (Dns, ProxyProcess, SippRun) {
    require_sipp();
    let up_port = free_port_on(&[lo(4)]);
    let upstream = Sipp::uas("uas_rfc3261.xml", lo(4), up_port).spawn();
    // The trunk's FQDN resolves to the address its SBC calls from.
    let dns = Dns::start(vec![a(FQDN, lo(1), 30)]);
    let mut conf = ProxyConf::new(&dns);
    conf.upstream = Some(format!(
        "sip:{};transport=tcp",
        SocketAddr::new(lo(4), up_port)
    ));
    let mut t = TrunkConf::tcp(TRUNK, FQDN, 5070, &[NUMBER]);
    t.trunk_sid = "TSacme0001".into();
    conf.trunks.push(t);
    let proxy = ProxyProcess::start(conf);
    (dns, proxy, upstream)
}

#[test]
fn call_from_an_address_of_the_fqdn_reaches_upstream_with_correlation_headers() {
    let (_dns, proxy, upstream) = outbound_lab();
    let uac = Sipp::uac("uac_call.xml", proxy.sip_addr())
        .local_ip(lo(1))
        .service(DIALLED)
        .run();
    uac.assert_all_ok(1);
    let up = upstream.wait();
    up.assert_all_ok(1);
    let sent = uac.sent();
    let sent_invite = Msg::text(sent.iter().find(|m| m.starts_with("INVITE")).unwrap());
    let inv = only_request(&up, "INVITE");
    let ctx = format!("INVITE at upstream: {inv:#?}");
    assert_eq!(uri_user(inv.request_uri().unwrap()), DIALLED, "{ctx}");
    assert_eq!(inv.header("x-exotel-trunksid"), Some("TSacme0001"), "{ctx}");
    let call_sid = inv.header("x-exotel-callsid").expect("CallSid");
    let leg_sid = inv.header("x-exotel-legsid").expect("LegSid");
    assert!(
        !call_sid.is_empty() && !leg_sid.is_empty() && call_sid != leg_sid,
        "{ctx}"
    );
    assert_eq!(inv.header("max-forwards"), Some("69"), "{ctx}");
    assert_eq!(inv.call_id(), sent_invite.call_id(), "{ctx}");
    let vias = inv.header_values("via");
    assert_eq!(vias.len(), 2, "{ctx}");
    assert_eq!(vias[1], sent_invite.header("via").unwrap(), "{ctx}");
    let rr = inv.header_values("record-route");
    assert_eq!(rr.len(), 2, "{ctx}");
    assert!(rr.iter().all(|r| has_param(&uri_of(r), "lr")), "{ctx}");
    assert_eq!(inv.body, sent_invite.body, "SDP untouched\n{ctx}");
    // The in-dialog BYE reached upstream too.
    assert_eq!(up.received_requests("BYE").len(), 1);
    assert!(
        proxy.counter(
            "vsip_calls_total",
            &[("trunk", TRUNK), ("direction", "outbound")]
        ) >= 1.0,
        "{}",
        proxy.metrics()
    );
}

#[test]
fn call_from_any_other_address_is_403() {
    let (_dns, proxy, upstream) = outbound_lab();
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .local_ip(lo(3))
        .subst("__EXPECTED__", "403")
        .service(DIALLED)
        .run()
        .assert_all_ok(1);
    let up = upstream.stop();
    assert!(up.received().is_empty(), "{}", up.summary());
}

#[test]
fn source_recognition_follows_dns_changes() {
    // The SBC moves from 127.0.0.1 to 127.0.0.3: once the cached answer's TTL
    // ran out the new address is recognised, and the old one refused.
    require_sipp();
    let ttl = Duration::from_secs(2);
    let up_port = free_port_on(&[lo(4)]);
    let upstream = Sipp::uas("uas_rfc3261.xml", lo(4), up_port)
        .calls(100)
        .spawn();
    let dns = Dns::start(vec![a(FQDN, lo(1), 2)]);
    let mut conf = ProxyConf::new(&dns);
    conf.upstream = Some(format!(
        "sip:{};transport=tcp",
        SocketAddr::new(lo(4), up_port)
    ));
    conf.trunks
        .push(TrunkConf::tcp(TRUNK, FQDN, 5070, &[NUMBER]));
    let proxy = ProxyProcess::start(conf);
    let first = call_from(lo(1), proxy.sip_addr(), DIALLED);
    assert_eq!(first.final_status, Some(200), "{first:?}");
    let changing = Instant::now();
    dns.set(vec![a(FQDN, lo(3), 2)]);
    let changed = Instant::now();
    // The old answer may have been fetched just before the change; the
    // refresher looks again when it expires, on its next tick.
    let seen = probe_switch(
        "calls from the SBC's new address",
        changing,
        changed + ttl + REFRESH_TICK,
        Duration::from_millis(200),
        || call_from(lo(3), proxy.sip_addr(), DIALLED).final_status,
        |s| *s == Some(200),
    );
    assert!(
        seen.iter().all(|s| matches!(s.value, Some(200 | 403))),
        "{seen:?}"
    );
    assert_eq!(
        call_from(lo(1), proxy.sip_addr(), DIALLED).final_status,
        Some(403),
        "the old address is a stranger now"
    );
    let up = upstream.stop();
    assert_eq!(up.received_requests("INVITE").len(), 2, "{}", up.summary());
}

#[test]
fn upstream_hangs_up_and_the_bye_reaches_the_trunk() {
    require_sipp();
    let up_port = free_port_on(&[lo(4)]);
    let upstream = Sipp::uas("uas_bye.xml", lo(4), up_port).spawn();
    let dns = Dns::start(vec![a(FQDN, lo(1), 30)]);
    let mut conf = ProxyConf::new(&dns);
    conf.upstream = Some(format!(
        "sip:{};transport=tcp",
        SocketAddr::new(lo(4), up_port)
    ));
    conf.trunks
        .push(TrunkConf::tcp(TRUNK, FQDN, 5070, &[NUMBER]));
    let proxy = ProxyProcess::start(conf);
    let uac = Sipp::uac("uac_wait_bye.xml", proxy.sip_addr())
        .local_ip(lo(1))
        .service(DIALLED)
        .run();
    uac.assert_all_ok(1);
    upstream.wait().assert_all_ok(1);
    let bye = only_request(&uac, "BYE");
    assert!(bye.header_values("route").is_empty(), "{bye:?}");
}

#[test]
fn trunk_cancels_before_upstream_answers() {
    require_sipp();
    let up_port = free_port_on(&[lo(4)]);
    let upstream = Sipp::uas("uas_ringing_no_answer.xml", lo(4), up_port).spawn();
    let dns = Dns::start(vec![a(FQDN, lo(1), 30)]);
    let mut conf = ProxyConf::new(&dns);
    conf.upstream = Some(format!(
        "sip:{};transport=tcp",
        SocketAddr::new(lo(4), up_port)
    ));
    conf.trunks
        .push(TrunkConf::tcp(TRUNK, FQDN, 5070, &[NUMBER]));
    let proxy = ProxyProcess::start(conf);
    Sipp::uac("uac_cancel.xml", proxy.sip_addr())
        .local_ip(lo(1))
        .service(DIALLED)
        .run()
        .assert_all_ok(1);
    upstream.wait().assert_all_ok(1);
}
