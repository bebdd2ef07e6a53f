//! Inbound calls (upstream/carrier → trunk SBC) through a real `vsip proxy`:
//! SIPp as carrier (UAC) and as SBC (UAS), Knot resolving the trunk FQDN, assertions on the INVITE exactly as the SBC received it
//! (SIPp's message trace) against the seed's sample and header table.

mod support;

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use support::{sip::*, *};

/// SBC on 127.0.0.2:port, FQDN → 127.0.0.2, proxy with one trunk.
fn lab(tweak: impl FnOnce(&mut TrunkConf)) -> (Dns, ProxyProcess, u16) {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let proxy = inbound_proxy(&dns, port, tweak);
    (dns, proxy, port)
}

#[test]
fn invite_at_sbc_matches_seed_sample_and_header_table() {
    let (_dns, proxy, port) = lab(|t| {
        t.headers = vec![("X-Customer-Tag".into(), "acme-blr".into())];
    });
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    let uac = Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    let sbc = sbc.wait();
    sbc.assert_all_ok(1);

    let sent = uac.sent();
    let sent_invite = Msg::text(sent.iter().find(|m| m.starts_with("INVITE")).unwrap());
    let inv = only_request(&sbc, "INVITE");
    let ctx = format!(
        "INVITE at SBC:\n{}",
        String::from_utf8_lossy(&inv.to_bytes())
    );

    // Request-URI: sip:<number>@<fqdn>:<port>;transport=tcp (seed sample).
    assert_eq!(
        inv.request_uri().unwrap(),
        format!("sip:{NUMBER}@{FQDN}:{port};transport=tcp"),
        "{ctx}"
    );
    // Every mandatory header of the seed's table.
    for h in [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Type",
        "Content-Length",
        "Max-Forwards",
        "X-Exotel-CallSid",
        "X-Exotel-LegSid",
        "X-Exotel-TrunkSid",
        "P-Asserted-Identity",
    ] {
        assert!(
            inv.header(h).is_some_and(|v| !v.is_empty()),
            "mandatory header {h} missing\n{ctx}"
        );
    }
    // Via: the proxy's own Via on top (TCP towards the SBC), carrier's below.
    let vias = inv.header_values("via");
    assert!(vias.len() >= 2, "proxy Via + carrier Via expected\n{ctx}");
    assert!(vias[0].starts_with("SIP/2.0/TCP "), "{ctx}");
    assert!(
        param(&vias[0], "branch").is_some_and(|b| b.starts_with("z9hG4bK")),
        "RFC 3261 branch on the proxy's Via\n{ctx}"
    );
    assert_eq!(
        vias[1],
        sent_invite.header("via").unwrap(),
        "carrier's Via kept below the proxy's\n{ctx}"
    );
    // To: the number at the FQDN.
    let to = uri_of(inv.header("to").unwrap());
    assert_eq!(uri_user(&to), NUMBER, "{ctx}");
    assert_eq!(uri_host(&to), FQDN, "{ctx}");
    assert!(param(inv.header("to").unwrap(), "tag").is_none(), "{ctx}");
    // From / PAI: the caller at the signalling domain; From keeps its tag.
    let from = inv.header("from").unwrap();
    assert_eq!(uri_user(&uri_of(from)), CALLER, "{ctx}");
    assert_eq!(uri_host(&uri_of(from)), SIGNALING_DOMAIN, "{ctx}");
    assert_eq!(
        param(from, "tag"),
        param(sent_invite.header("from").unwrap(), "tag"),
        "From tag must survive (dialog identity)\n{ctx}"
    );
    let pai = uri_of(inv.header("p-asserted-identity").unwrap());
    assert_eq!(uri_user(&pai), CALLER, "{ctx}");
    assert_eq!(uri_host(&pai), SIGNALING_DOMAIN, "{ctx}");
    assert_eq!(inv.header("p-early-media"), Some("supported"), "{ctx}");
    // Dialog identifiers and loop control.
    assert_eq!(inv.call_id(), sent_invite.call_id(), "{ctx}");
    assert_eq!(inv.header("cseq"), Some("102 INVITE"), "{ctx}");
    assert_eq!(inv.header("max-forwards"), Some("69"), "{ctx}");
    // Correlation headers.
    let call_sid = inv.header("x-exotel-callsid").unwrap();
    let leg_sid = inv.header("x-exotel-legsid").unwrap();
    assert_ne!(call_sid, leg_sid, "{ctx}");
    assert_eq!(inv.header("x-exotel-trunksid"), Some("TSacme0001"), "{ctx}");
    assert_eq!(inv.header("x-customer-tag"), Some("acme-blr"), "{ctx}");
    // Two Record-Route entries (one per side), each loose-routing.
    let rr = inv.header_values("record-route");
    assert_eq!(rr.len(), 2, "two Record-Route entries expected\n{ctx}");
    for r in &rr {
        assert!(
            has_param(&uri_of(r), "lr"),
            "Record-Route {r} lacks lr\n{ctx}"
        );
    }
    // SDP: byte-identical, and the length says so.
    assert_eq!(inv.header("content-type"), Some("application/sdp"), "{ctx}");
    assert_eq!(
        String::from_utf8_lossy(&inv.body),
        String::from_utf8_lossy(&sent_invite.body),
        "SDP must pass untouched\n{ctx}"
    );
    assert_eq!(
        inv.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        inv.body.len(),
        "{ctx}"
    );

    // The 200 the carrier got carries both Record-Route entries back, and the
    // proxy's Via is gone from it.
    let ok = uac
        .received_responses(200)
        .into_iter()
        .find(|m| m.cseq_method() == "INVITE")
        .expect("200 to INVITE at carrier");
    assert_eq!(ok.header_values("record-route").len(), 2, "{ok:?}");
    assert_eq!(ok.header_values("via").len(), 1, "{ok:?}");
    // The SBC's answer reaches the carrier intact: To tag and SDP answer.
    let sbc_ok = sbc
        .sent()
        .into_iter()
        .map(|m| Msg::text(&m))
        .find(|m| m.status() == Some(200) && m.cseq_method() == "INVITE")
        .unwrap();
    assert_eq!(
        param(ok.header("to").unwrap(), "tag"),
        param(sbc_ok.header("to").unwrap(), "tag"),
        "{ok:?}"
    );
    assert_eq!(ok.body, sbc_ok.body, "SDP answer must pass untouched");
    assert_eq!(only_request(&sbc, "ACK").call_id(), inv.call_id());
    // The BYE reached the SBC along the route set, addressed to its Contact.
    let bye = only_request(&sbc, "BYE");
    assert!(
        bye.request_uri().unwrap().starts_with("sip:sbc@127.0.0.2"),
        "BYE Request-URI should be the SBC's Contact: {bye:?}"
    );

    // Observability: the call is counted, DNS looked up, logs correlate.
    let m = proxy.metrics();
    assert!(
        metric_sum(
            &m,
            "vsip_calls_total",
            &[("trunk", "acme/acme-mumbai"), ("direction", "inbound")]
        ) >= 1.0,
        "vsip_calls_total for the inbound call:\n{m}"
    );
    assert!(metric_sum(&m, "vsip_dns_lookups_total", &[]) >= 1.0, "{m}");
    assert!(
        metric_sum(&m, "vsip_dns_lookup_duration_seconds_count", &[]) >= 1.0,
        "{m}"
    );
    assert_eq!(proxy.get("/healthz").0, 200);
    assert_eq!(proxy.get("/readyz").0, 200);
    assert!(
        metric_sum(
            &m,
            "vsip_call_setup_duration_seconds_count",
            &[("trunk", "acme/acme-mumbai")]
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(metric_sum(&m, "vsip_routes_trunks", &[]), 1.0, "{m}");
}

#[test]
fn call_log_lines_carry_call_id_and_call_sid() {
    // Brief §6: one JSON object a line, every call-related line carrying
    // call_sid and call_id (the seed: "always capture X-Exotel-CallSid +
    // Call-ID").
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let inv = only_request(&sbc.wait(), "INVITE");
    let call_sid = inv.header("x-exotel-callsid").expect("CallSid");
    // The call's last line (the proxy logs after it answered) is there.
    let logs = wait_for(Duration::from_secs(10), "the call's log line", || {
        let logs = proxy.logs();
        logs.lines()
            .any(|l| l.contains("call setup finished") && l.contains(inv.call_id()))
            .then_some(logs)
    });
    for l in logs.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "log line is not one JSON object: {l}"
        );
    }
    let call_lines: Vec<&str> = logs
        .lines()
        .filter(|l| {
            l.contains(inv.call_id()) || l.contains(call_sid) || l.contains("\"direction\"")
        })
        .collect();
    assert!(
        !call_lines.is_empty(),
        "no call-related log line at all:\n{logs}"
    );
    for l in &call_lines {
        assert!(
            l.contains(inv.call_id())
                && l.contains(call_sid)
                && l.contains("call_id")
                && l.contains("call_sid"),
            "call-related log line without call_id={} / call_sid={call_sid}: {l}",
            inv.call_id()
        );
    }
}

#[test]
fn callsid_kept_when_carrier_sent_one_else_generated_per_call() {
    let (_dns, proxy, port) = lab(|_| {});
    // Carrier already stamped a CallSid: kept; a new LegSid is added.
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_callsid.xml", proxy.sip_addr())
        .service(NUMBER)
        .key("callsid", "CAcarrier0000000001")
        .run()
        .assert_all_ok(1);
    let sbc = sbc.wait();
    let inv = only_request(&sbc, "INVITE");
    assert_eq!(
        inv.header_lines("x-exotel-callsid"),
        vec!["CAcarrier0000000001"],
        "{inv:?}"
    );
    let leg = inv.header("x-exotel-legsid").expect("LegSid");
    assert!(!leg.is_empty() && leg != "CAcarrier0000000001", "{inv:?}");

    // None sent: one generated per call, all distinct; LegSids distinct too.
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(3).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(3)
        .rate(10.0)
        .run()
        .assert_all_ok(3);
    let sbc = sbc.wait();
    let invites = sbc.received_requests("INVITE");
    assert_eq!(invites.len(), 3, "{}", sbc.summary());
    let calls: HashSet<_> = invites
        .iter()
        .map(|m| {
            m.header("x-exotel-callsid")
                .expect("generated CallSid")
                .to_owned()
        })
        .collect();
    let legs: HashSet<_> = invites
        .iter()
        .map(|m| m.header("x-exotel-legsid").expect("LegSid").to_owned())
        .collect();
    assert_eq!(calls.len(), 3, "CallSid must be unique per call: {calls:?}");
    assert_eq!(legs.len(), 3, "LegSid must be unique per leg: {legs:?}");
    assert!(calls.iter().all(|c| !c.is_empty()));
}

#[test]
fn callee_hangs_up_bye_follows_record_route_to_carrier() {
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_bye.xml", lo(2), port).spawn();
    let uac = Sipp::uac("uac_wait_bye.xml", proxy.sip_addr())
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    let sbc = sbc.wait();
    sbc.assert_all_ok(1);
    // The SBC's BYE carried the route set (both proxy entries, as Route).
    let sent_bye = sbc
        .sent()
        .into_iter()
        .map(|m| Msg::text(&m))
        .find(|m| m.method() == Some("BYE"))
        .unwrap();
    assert_eq!(sent_bye.header_values("route").len(), 2, "{sent_bye:?}");
    // At the carrier: addressed to its Contact, the proxy's Via on top, and
    // the proxy's own Route entries consumed.
    let bye = only_request(&uac, "BYE");
    assert!(
        bye.request_uri()
            .unwrap()
            .starts_with(&format!("sip:{CALLER}@127.0.0.1")),
        "{bye:?}"
    );
    assert_eq!(bye.header_values("via").len(), 2, "{bye:?}");
    assert!(bye.header_values("route").is_empty(), "{bye:?}");
    assert_eq!(bye.header("max-forwards"), Some("69"), "{bye:?}");
}

#[test]
fn cancel_before_answer_reaches_sbc_and_caller_gets_487() {
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_ringing_no_answer.xml", lo(2), port).spawn();
    let uac = Sipp::uac("uac_cancel.xml", proxy.sip_addr())
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    let sbc = sbc.wait();
    sbc.assert_all_ok(1);
    let inv = only_request(&sbc, "INVITE");
    let cancel = only_request(&sbc, "CANCEL");
    // RFC 3261 §16.10: the CANCEL matches the forwarded INVITE's branch.
    assert_eq!(
        param(&cancel.header_values("via")[0], "branch"),
        param(&inv.header_values("via")[0], "branch"),
        "CANCEL must match the INVITE client transaction\nINVITE {inv:?}\nCANCEL {cancel:?}"
    );
    assert_eq!(cancel.request_uri(), inv.request_uri());
    // The 487 reached the caller.
    assert_eq!(uac.received_responses(487).len(), 1, "{}", uac.summary());
}

#[test]
fn cancel_before_any_response_is_sent_on_once_the_sbc_answers_provisionally() {
    // The carrier cancels right after its INVITE; the SBC says nothing for
    // 2 s, then rings. RFC 3261 §9.1: the proxy answers the CANCEL at once but
    // cancels downstream only after that provisional answer (the SBC's
    // scenario fails on a CANCEL during its silence).
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_late_provisional.xml", lo(2), port).spawn();
    let uac = Sipp::uac("uac_cancel_at_once.xml", proxy.sip_addr())
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    let sbc = sbc.wait();
    sbc.assert_all_ok(1);
    // The CANCEL left the carrier before any answer reached it, and was
    // answered before the SBC had said anything (one clock: this machine's).
    let received = uac.received_timed();
    let sent = uac.sent_timed();
    let cancel_sent = sent
        .iter()
        .find(|(_, m)| m.method() == Some("CANCEL"))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(
        received.first().is_some_and(|(t, _)| *t >= cancel_sent),
        "{}",
        uac.summary()
    );
    let cancel_ok = received
        .iter()
        .find(|(_, m)| m.status() == Some(200) && m.cseq_method() == "CANCEL")
        .map(|(t, _)| *t)
        .expect("200 to the CANCEL");
    let ringing = sbc
        .sent_timed()
        .into_iter()
        .find(|(_, m)| m.status() == Some(180))
        .map(|(t, _)| t)
        .unwrap();
    assert!(
        cancel_ok < ringing,
        "the CANCEL was answered {:.3}s after the SBC's first response",
        cancel_ok - ringing
    );
    let inv = only_request(&sbc, "INVITE");
    let cancel = only_request(&sbc, "CANCEL");
    assert_eq!(
        param(&cancel.header_values("via")[0], "branch"),
        param(&inv.header_values("via")[0], "branch"),
        "CANCEL must match the INVITE client transaction"
    );
    assert_eq!(uac.received_responses(487).len(), 1, "{}", uac.summary());
    assert_eq!(
        proxy.counter("vsip_calls_total", &[("result", "487")]),
        1.0,
        "{}",
        proxy.metrics()
    );
}

#[test]
fn cancel_before_any_response_from_a_silent_sbc_ends_in_487_without_a_cancel_downstream() {
    // The SBC never answers: there is no provisional answer to cancel after,
    // so no CANCEL goes downstream (RFC 3261 §9.1); the carrier still gets
    // its 200 for the CANCEL and a 487.
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let silent = SilentListener::start(SocketAddr::new(lo(2), port));
    let proxy = inbound_proxy(&dns, port, |t| t.response_timeout = "30s".into());
    let uac = Sipp::uac("uac_cancel_at_once.xml", proxy.sip_addr())
        .service(NUMBER)
        .run();
    uac.assert_all_ok(1);
    assert_eq!(uac.received_responses(487).len(), 1, "{}", uac.summary());
    let text = silent.text();
    assert_eq!(text.matches("INVITE sip:").count(), 1, "{text}");
    assert!(!text.contains("CANCEL sip:"), "{text}");
}

#[test]
fn reinvite_within_the_dialog_follows_the_route_set() {
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_reinvite.xml", lo(2), port).spawn();
    Sipp::uac("uac_reinvite.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let sbc = sbc.wait();
    sbc.assert_all_ok(1);
    let invites = sbc.received_requests("INVITE");
    assert_eq!(invites.len(), 2, "{}", sbc.summary());
    let re = &invites[1];
    assert_eq!(re.header("cseq"), Some("2 INVITE"), "{re:?}");
    assert!(
        param(re.header("to").unwrap(), "tag").is_some(),
        "in-dialog: {re:?}"
    );
    assert!(
        re.request_uri().unwrap().starts_with("sip:sbc@127.0.0.2"),
        "re-INVITE goes to the SBC's Contact: {re:?}"
    );
    assert!(
        String::from_utf8_lossy(&re.body).contains("a=sendonly"),
        "{re:?}"
    );
    assert_eq!(sbc.received_requests("ACK").len(), 2);
}

#[test]
fn unknown_number_is_404_and_nothing_reaches_the_sbc() {
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "404")
        .service("+919999999999")
        .run()
        .assert_all_ok(1);
    let sbc = sbc.stop();
    assert!(sbc.received().is_empty(), "{}", sbc.summary());
}

#[test]
fn suspended_trunk_is_503_and_nothing_reaches_the_sbc() {
    let (_dns, proxy, port) = lab(|t| t.suspended = true);
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let sbc = sbc.stop();
    assert!(sbc.received().is_empty(), "{}", sbc.summary());
}

#[test]
fn offer_without_g711_is_488() {
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_codec_g729.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let sbc = sbc.stop();
    assert!(sbc.received().is_empty(), "{}", sbc.summary());
}

#[test]
fn trunk_codec_list_is_enforced() {
    // The trunk takes only PCMU; an offer of PCMA alone is refused with 488,
    // an offer with PCMU passes.
    let (_dns, proxy, port) = lab(|t| t.codecs = Some(vec!["PCMU"]));
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    let pcma_only = "m=audio [media_port] RTP/AVP 8 101\n      a=rtpmap:8 PCMA/8000\n      a=rtpmap:101 telephone-event/8000\n";
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "488")
        .subst(
            "m=audio [media_port] RTP/AVP 8 0 101\n      a=rtpmap:8 PCMA/8000\n      a=rtpmap:0 PCMU/8000\n      a=rtpmap:101 telephone-event/8000\n",
            pcma_only,
        )
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let sbc = sbc.wait();
    assert_eq!(
        sbc.received_requests("INVITE").len(),
        1,
        "{}",
        sbc.summary()
    );
}

/// Sends a raw INVITE (G.711) and returns the INVITE the SBC received.
fn via_raw_invite(drop: &[&str], extra: &[(&str, &str)]) -> Msg {
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    let addr: SocketAddr = proxy.sip_addr();
    let invite = raw_invite(addr, NUMBER, drop, extra);
    // Read responses until the final one; the 200 proves delivery.
    let final_code = rt().block_on(async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = Conn::new(s);
        c.send_raw(&invite).await.unwrap();
        while let Some(m) = c.recv(Duration::from_secs(10)).await {
            if m.status().unwrap_or(0) >= 200 {
                return m.status();
            }
        }
        None
    });
    assert_eq!(final_code, Some(200));
    let sbc = sbc.stop();
    only_request(&sbc, "INVITE")
}

#[test]
fn max_forwards_added_as_70_when_absent_and_decremented_when_present() {
    let inv = via_raw_invite(&["Max-Forwards"], &[]);
    assert_eq!(inv.header("max-forwards"), Some("70"), "{inv:?}");
    let inv = via_raw_invite(&["Max-Forwards"], &[("Max-Forwards", "5")]);
    assert_eq!(inv.header("max-forwards"), Some("4"), "{inv:?}");
}

#[test]
fn fifty_concurrent_calls_all_complete() {
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(50).spawn();
    // 50 calls started within ~1 s, each held 1.5 s: all up at once.
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(50)
        .rate(50.0)
        .limit(60)
        .pause_ms(1500)
        .run()
        .assert_all_ok(50);
    sbc.wait().assert_all_ok(50);
    let m = proxy.metrics();
    assert!(
        metric_sum(&m, "vsip_calls_total", &[("trunk", "acme/acme-mumbai")]) >= 50.0,
        "{m}"
    );
}

#[test]
fn the_dialled_number_picks_the_trunk() {
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![
        a(FQDN, lo(2), 30),
        a("sip.globex.vsip-test.example", lo(3), 30),
    ]);
    let mut conf = ProxyConf::new(&dns);
    conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
    let mut acme = TrunkConf::tcp("acme/acme-mumbai", FQDN, port, &[NUMBER]);
    acme.trunk_sid = "TSacme".into();
    let mut globex = TrunkConf::tcp(
        "globex/main",
        "sip.globex.vsip-test.example",
        port,
        &["+912233445566", "+912233445567"],
    );
    globex.trunk_sid = "TSglobex".into();
    conf.trunks = vec![acme, globex];
    let proxy = ProxyProcess::start(conf);
    let acme_sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    let globex_sbc = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(2).spawn();
    for n in ["+912233445567", NUMBER, "+912233445566"] {
        Sipp::uac("uac_call.xml", proxy.sip_addr())
            .service(n)
            .run()
            .assert_all_ok(1);
    }
    let acme_sbc = acme_sbc.wait();
    let globex_sbc = globex_sbc.wait();
    let inv = only_request(&acme_sbc, "INVITE");
    assert_eq!(inv.header("x-exotel-trunksid"), Some("TSacme"));
    let g = globex_sbc.received_requests("INVITE");
    assert_eq!(g.len(), 2);
    for (m, n) in g.iter().zip(["+912233445567", "+912233445566"]) {
        assert_eq!(m.header("x-exotel-trunksid"), Some("TSglobex"));
        assert_eq!(
            m.request_uri().unwrap(),
            format!("sip:{n}@sip.globex.vsip-test.example:{port};transport=tcp")
        );
    }
    assert_eq!(proxy.counter("vsip_routes_trunks", &[]), 2.0);
}

#[test]
fn header_prefix_renames_the_correlation_headers() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut conf = ProxyConf::new(&dns);
    conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
    conf.header_prefix = Some("X-Acme-".into());
    let mut t = TrunkConf::tcp("acme/acme-mumbai", FQDN, port, &[NUMBER]);
    t.trunk_sid = "TSacme".into();
    conf.trunks.push(t);
    let proxy = ProxyProcess::start(conf);
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let inv = only_request(&sbc.wait(), "INVITE");
    assert_eq!(inv.header("x-acme-trunksid"), Some("TSacme"), "{inv:?}");
    assert!(
        inv.has("x-acme-callsid") && inv.has("x-acme-legsid"),
        "{inv:?}"
    );
    assert!(!inv.has("x-exotel-trunksid"), "{inv:?}");
}

#[test]
fn a_connection_per_call_carrier_is_served() {
    // SIPp -t tn: every call on its own TCP connection, closed after it.
    let (_dns, proxy, port) = lab(|_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(10).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .transport("tn")
        .service(NUMBER)
        .calls(10)
        .rate(20.0)
        .run()
        .assert_all_ok(10);
    sbc.wait().assert_all_ok(10);
}

/// What a proxy behind a Service says: the host and port carriers and SBCs reach (a node's
/// address and the NodePort here), not the pod's address and the container port.
#[test]
fn advertise_sets_the_host_and_port_in_via_and_record_route() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut conf = ProxyConf::new(&dns);
    conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
    conf.advertise = Some("sbc-edge.vsip-test.example".into());
    conf.advertise_tcp_port = Some(30570);
    conf.trunks
        .push(TrunkConf::tcp("acme/acme-mumbai", FQDN, port, &[NUMBER]));
    let proxy = ProxyProcess::start(conf);
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let inv = only_request(&sbc.wait(), "INVITE");
    let top_via = &inv.header_values("via")[0];
    assert!(
        top_via.starts_with("SIP/2.0/TCP sbc-edge.vsip-test.example:30570;"),
        "proxy Via should carry the advertised host and port: {top_via}"
    );
    let rrs = inv.header_values("record-route");
    assert_eq!(rrs.len(), 2, "{rrs:?}");
    for rr in rrs {
        assert!(
            uri_of(&rr).starts_with("sip:sbc-edge.vsip-test.example:30570;"),
            "Record-Route should carry the advertised host and port: {rr}"
        );
    }
}
