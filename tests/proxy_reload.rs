//! Configuration reloads: the proxy re-reads its file when it changes,
//! without dropping calls; a bad file keeps the last good configuration
//! (metric + log, `/readyz` stays 200); `vsip check-config` names the line.

mod support;

use std::{net::SocketAddr, time::Duration};

use support::*;

fn reload_errors(p: &ProxyProcess) -> f64 {
    p.counter("vsip_config_reloads_total", &[("result", "error")])
}

#[test]
fn reloads_under_sipp_load_drop_no_call() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut proxy = inbound_proxy(&dns, port, |_| {});
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port)
        .calls(60)
        .timeout(Duration::from_secs(60))
        .spawn();
    // 60 calls at 10 cps, each ~300 ms long: calls are in flight during every
    // reload.
    let uac = Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(60)
        .rate(10.0)
        .pause_ms(300)
        .timeout(Duration::from_secs(50))
        .spawn();
    for i in 0..4 {
        // Reload while calls flow: after every tenth call reached the SBC.
        wait_for(Duration::from_secs(30), "calls to reach the SBC", || {
            (sbc.count_received("INVITE") >= 10 * (i + 1)).then_some(())
        });
        let mut conf = proxy.conf.clone();
        // A different config each time: a new trunk, changed headers.
        conf.trunks.truncate(1);
        conf.trunks[0].headers = vec![("X-Reload".into(), format!("gen{i}"))];
        let mut extra = TrunkConf::tcp(
            &format!("other/trunk-{i}"),
            "sip.other.vsip-test.example",
            5070,
            &["+912200000000"],
        );
        extra.trunk_sid = format!("TSother{i}");
        conf.trunks.push(extra);
        proxy.reload(conf);
    }
    let uac = uac.wait();
    uac.assert_all_ok(60);
    sbc.wait().assert_all_ok(60);
    assert!(proxy.good_reloads() >= 4.0);
    assert_eq!(reload_errors(&proxy), 0.0);
    assert_eq!(
        proxy.counter("vsip_routes_trunks", &[]),
        2.0,
        "{}",
        proxy.metrics()
    );
}

#[test]
fn reload_applies_new_numbers_and_headers() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut proxy = inbound_proxy(&dns, port, |_| {});
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "404")
        .service("+918000000001")
        .run()
        .assert_all_ok(1);
    let mut conf = proxy.conf.clone();
    conf.trunks[0].numbers.push("+918000000001".into());
    conf.trunks[0].headers = vec![("X-Tenant".into(), "acme".into())];
    proxy.reload(conf);
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service("+918000000001")
        .run()
        .assert_all_ok(1);
    let sbc = sbc.wait();
    let inv = only_request(&sbc, "INVITE");
    assert_eq!(inv.header("x-tenant"), Some("acme"), "{inv:?}");
}

#[test]
fn bad_reload_keeps_last_good_config_and_stays_ready() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    let before = reload_errors(&proxy);
    // Syntactically broken YAML, then a semantically invalid one.
    let good = proxy.conf.to_yaml();
    proxy.write_config_text(&format!("{good}\n  - this: [is not\n"));
    wait_for(
        Duration::from_secs(15),
        "reload error to be counted",
        || (reload_errors(&proxy) > before).then_some(()),
    );
    let after_first = reload_errors(&proxy);
    proxy.write_config_text(&good.replace(FQDN, "10.1.2.3"));
    wait_for(
        Duration::from_secs(15),
        "second reload error to be counted",
        || (reload_errors(&proxy) > after_first).then_some(()),
    );
    assert_eq!(
        proxy.get("/readyz").0,
        200,
        "readiness must survive a bad reload"
    );
    // The last good config still routes.
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    sbc.wait().assert_all_ok(1);
    // And says why.
    let logs = proxy.logs();
    assert!(
        logs.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("line ")
                && (l.contains("refused") || l.contains("reload") || l.contains("error"))
        }),
        "the rejected reload should be logged with its line and reason:\n{}",
        tail(&logs, 30)
    );
}

/// `line N: reason` (the brief's form) or the compiler-style `FILE:N: reason`.
fn names_line(out: &str, n: usize) -> bool {
    out.contains(&format!("line {n}:")) || out.contains(&format!(":{n}: "))
}

#[test]
fn check_config_prints_the_offending_line() {
    let dir = tempfile::tempdir().unwrap();
    let dns_addr = SocketAddr::new(LOCALHOST, 53535);
    let good = format!(
        "listen:\n  tcp: 127.0.0.1:5070\nsignalingDomain: pstn.example.net\ndns:\n  nameservers: [\"{dns_addr}\"]\ntrunks:\n  - name: acme/mumbai\n    trunkSid: TS1\n    fqdn: sip.acme.example\n    numbers: [\"+911234567890\"]\n"
    );
    let ok = dir.path().join("good.yaml");
    std::fs::write(&ok, &good).unwrap();
    let (success, out) = check_config(&ok);
    assert!(success, "a good file must pass: {out}");

    // Line 10: a typo'd key.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, good.replace("    numbers:", "    numbrs:")).unwrap();
    let (success, out) = check_config(&bad);
    assert!(!success, "typo must fail: {out}");
    assert!(
        names_line(&out, 10),
        "expected the line (10) and the reason, got: {out}"
    );
    assert!(out.contains("numbrs"), "{out}");

    // Line 9: an IP literal where an FQDN belongs.
    std::fs::write(&bad, good.replace("sip.acme.example", "10.1.2.3")).unwrap();
    let (success, out) = check_config(&bad);
    assert!(!success, "{out}");
    assert!(
        names_line(&out, 9),
        "expected the line (9) and the reason, got: {out}"
    );
}

#[test]
fn suspending_and_resuming_a_trunk_by_reload() {
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut proxy = inbound_proxy(&dns, port, |_| {});
    let mut conf = proxy.conf.clone();
    conf.trunks[0].suspended = true;
    proxy.reload(conf);
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let mut conf = proxy.conf.clone();
    conf.trunks[0].suspended = false;
    proxy.reload(conf);
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    sbc.wait().assert_all_ok(1);
    // Removing the trunk: its numbers are unknown again.
    let mut conf = proxy.conf.clone();
    conf.trunks.clear();
    proxy.reload(conf);
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "404")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert_eq!(proxy.counter("vsip_routes_trunks", &[]), 0.0);
}

/// A config that differs from `conf` (so the reload is real) but keeps its trunk.
fn changed(conf: &ProxyConf, generation: usize) -> ProxyConf {
    let mut c = conf.clone();
    c.trunks[0].headers = vec![("X-Reload".into(), format!("gen{generation}"))];
    c
}

#[test]
fn the_quota_survives_a_reload() {
    // Quota 2: two calls, a reload, and the third call in the same minute is
    // still refused: the reload neither resets nor forgets the window.
    require_sipp();
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut proxy = inbound_proxy(&dns, port, |t| t.calls_per_minute = Some(2));
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(2).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(2)
        .rate(10.0)
        .run()
        .assert_all_ok(2);
    sbc.wait().assert_all_ok(2);
    let before = proxy.good_reloads();
    let conf = changed(&proxy.conf, 1);
    proxy.reload(conf);
    assert!(proxy.good_reloads() > before);
    assert_throttled(proxy.sip_addr(), LOCALHOST, NUMBER);
    assert_eq!(
        proxy.counter("vsip_cpm_throttled_total", &[("trunk", "acme/acme-mumbai")]),
        1.0
    );
}

#[test]
fn hold_downs_survive_a_reload() {
    // The first address refuses and is held down for 300 s; after a reload
    // the next call still skips it (no new failover), the second answers.
    require_sipp();
    let port = free_port_on(&[lo(2), lo(3)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30), a(FQDN, lo(3), 30)]);
    let mut proxy = inbound_proxy(&dns, port, |t| t.hold_down = "300s".into());
    let failovers = |p: &ProxyProcess| p.counter("vsip_failovers_total", &[]);
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(3), port).calls(2).spawn();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert_eq!(failovers(&proxy), 1.0, "{}", proxy.metrics());
    let before = proxy.good_reloads();
    let conf = changed(&proxy.conf, 1);
    proxy.reload(conf);
    assert!(proxy.good_reloads() > before);
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let sbc = sbc.wait();
    sbc.assert_all_ok(2);
    // The reload applied (the new header), and the held-down address stayed skipped.
    let invites = sbc.received_requests("INVITE");
    assert_eq!(
        invites[1].header("x-reload"),
        Some("gen1"),
        "{:?}",
        invites[1]
    );
    assert_eq!(failovers(&proxy), 1.0, "{}", proxy.metrics());
}
