//! TLS: towards the SBC (server verification against the trunk's CA, SNI /
//! name match, mTLS with the proxy's client certificate), on the proxy's own
//! TLS listener (trunks identified by their client certificate, which must
//! come from the trusted CA; certificate hot reload). Certificates are
//! generated per test with rcgen. The Debian SIPp has no TLS, so the TLS
//! peers are small SIP agents on two stacks: tokio-rustls
//! (`tests/support/tls.rs`) and OpenSSL through Python's `ssl` module
//! (`tests/support/tls_peer.py`), the latter with TLS 1.2 and 1.3 pinned;
//! carrier and upstream stay SIPp over TCP.

mod support;

use std::{net::SocketAddr, sync::atomic::Ordering, time::Duration};

use support::{
    pki::Ca,
    pytls::{PyTlsUas, TlsVersion, py_tls_call},
    sip::*,
    tls::TlsUas,
    *,
};

const TRUNK: &str = "acme/acme-tls";
const PROXY_NAME: &str = "proxy.vsip-test.example";

struct TlsLab {
    _dns: Dns,
    proxy: ProxyProcess,
    sbc: TlsUas,
    _dir: tempfile::TempDir,
}

/// TLS SBC at 127.0.0.2 presenting a cert for `sbc_names`, issued by `ca`;
/// `require_client_ca`: the SBC demands a client cert from that CA. The
/// trunk trusts `ca` (tlsMaterial.caFile) and, with `client`, presents it.
fn tls_lab(
    ca: &Ca,
    sbc_names: &[&str],
    require_client_ca: Option<&Ca>,
    client: Option<&pki::Leaf>,
) -> TlsLab {
    require_sipp();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&[lo(2)]);
    let leaf = ca.issue(sbc_names);
    let sbc = TlsUas::start(
        SocketAddr::new(lo(2), port),
        &leaf.cert_pem,
        &leaf.key_pem,
        require_client_ca.map(|c| c.cert_pem.as_str()),
    );
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let ca_file = ca.write(dir.path(), "sbc-ca");
    let mut conf = ProxyConf::new(&dns);
    let mut t = TrunkConf::tls(TRUNK, FQDN, port, &[NUMBER]);
    t.trunk_sid = "TSacmetls01".into();
    t.ca_file = Some(ca_file);
    if let Some(c) = client {
        let (cert, key) = c.write(dir.path(), "proxy-client");
        t.client_cert_file = Some(cert);
        t.client_key_file = Some(key);
    }
    conf.trunks.push(t);
    let proxy = ProxyProcess::start(conf);
    TlsLab {
        _dns: dns,
        proxy,
        sbc,
        _dir: dir,
    }
}

#[test]
fn tls_to_sbc_with_certificate_from_the_trunk_ca() {
    let ca = Ca::new("acme SBC CA");
    let lab = tls_lab(&ca, &[FQDN], None, None);
    Sipp::uac("uac_call.xml", lab.proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    let inv = lab.sbc.log.first("INVITE").expect("INVITE over TLS");
    let port = lab.sbc.addr.port();
    assert_eq!(
        inv.request_uri().unwrap(),
        format!("sip:{NUMBER}@{FQDN}:{port};transport=tls"),
        "{inv:?}"
    );
    assert!(
        inv.header_values("via")[0].starts_with("SIP/2.0/TLS "),
        "{inv:?}"
    );
    assert_eq!(inv.header("x-exotel-trunksid"), Some("TSacmetls01"));
    assert_eq!(lab.sbc.log.count("ACK"), 1);
    assert_eq!(lab.sbc.log.count("BYE"), 1);
    assert_eq!(
        lab.proxy
            .counter("vsip_tls_handshake_failures_total", &[("trunk", TRUNK)]),
        0.0
    );
}

#[test]
fn sbc_certificate_for_another_name_is_refused_and_counted() {
    let ca = Ca::new("acme SBC CA");
    let lab = tls_lab(&ca, &["other.vsip-test.example"], None, None);
    Sipp::uac("uac_expect_status.xml", lab.proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert_eq!(
        lab.sbc.log.count("INVITE"),
        0,
        "no SIP over an unverified TLS session"
    );
    let failures = lab
        .proxy
        .counter("vsip_tls_handshake_failures_total", &[("trunk", TRUNK)]);
    assert!(failures >= 1.0, "{}", lab.proxy.metrics());
}

#[test]
fn sbc_certificate_from_an_untrusted_ca_is_refused() {
    let trusted = Ca::new("acme SBC CA");
    let rogue = Ca::new("rogue CA");
    // The SBC's cert names the FQDN but comes from a CA the trunk does not trust.
    require_sipp();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&[lo(2)]);
    let leaf = rogue.issue(&[FQDN]);
    let sbc = TlsUas::start(
        SocketAddr::new(lo(2), port),
        &leaf.cert_pem,
        &leaf.key_pem,
        None,
    );
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut conf = ProxyConf::new(&dns);
    let mut t = TrunkConf::tls(TRUNK, FQDN, port, &[NUMBER]);
    t.ca_file = Some(trusted.write(dir.path(), "ca"));
    conf.trunks.push(t);
    let proxy = ProxyProcess::start(conf);
    Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert_eq!(sbc.log.count("INVITE"), 0);
    assert!(proxy.counter("vsip_tls_handshake_failures_total", &[("trunk", TRUNK)]) >= 1.0);
}

#[test]
fn mtls_proxy_presents_its_client_certificate_to_the_sbc() {
    let ca = Ca::new("acme SBC CA");
    let client_ca = Ca::new("vsip client CA");
    let client = client_ca.issue(&["vsip-proxy.vsip-test.example"]);
    let lab = tls_lab(&ca, &[FQDN], Some(&client_ca), Some(&client));
    Sipp::uac("uac_call.xml", lab.proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert!(lab.sbc.log.client_certs.load(Ordering::SeqCst) >= 1);
    assert_eq!(lab.sbc.log.count("INVITE"), 1);

    // Without the client certificate the SBC refuses the handshake: 503.
    let lab = tls_lab(&ca, &[FQDN], Some(&client_ca), None);
    Sipp::uac("uac_expect_status.xml", lab.proxy.sip_addr())
        .subst("__EXPECTED__", "503")
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert_eq!(lab.sbc.log.count("INVITE"), 0);
}

/// A proxy with a TLS listener (server cert for PROXY_NAME from
/// `listener_ca`) that verifies client certs against `client_ca`; the trunk
/// FQDN resolves to 127.0.0.9 (NOT where callers connect from); the upstream
/// is a SIPp UAS at 127.0.0.4.
struct ListenerLab {
    listener_ca: Ca,
    client_ca: Ca,
    proxy: ProxyProcess,
    upstream: SippRun,
    _dns: Dns,
    _dir: tempfile::TempDir,
}

impl ListenerLab {
    fn start() -> ListenerLab {
        require_sipp();
        let dir = tempfile::tempdir().unwrap();
        let listener_ca = Ca::new("vsip listener CA");
        let client_ca = Ca::new("customer client CA");
        let dns = Dns::start(vec![a(FQDN, lo(9), 30)]);
        let up_port = free_port_on(&[lo(4)]);
        let upstream = Sipp::uas("uas_rfc3261.xml", lo(4), up_port).spawn();
        let (cert, key) = listener_ca
            .issue(&[PROXY_NAME])
            .write(dir.path(), "listener");
        let mut conf = ProxyConf::new(&dns);
        conf.tls = Some(SocketAddr::new(LOCALHOST, free_port()));
        conf.tls_cert = Some((cert, key));
        conf.client_ca_file = Some(client_ca.write(dir.path(), "client-ca"));
        conf.upstream = Some(format!(
            "sip:{};transport=tcp",
            SocketAddr::new(lo(4), up_port)
        ));
        let mut t = TrunkConf::tls(TRUNK, FQDN, 5061, &[NUMBER]);
        t.trunk_sid = "TSacmetls01".into();
        conf.trunks.push(t);
        ListenerLab {
            listener_ca,
            client_ca,
            proxy: ProxyProcess::start(conf),
            upstream,
            _dns: dns,
            _dir: dir,
        }
    }
}

fn tls_call(proxy: &ProxyProcess, listener_ca: &Ca, client: Option<&pki::Leaf>) -> CallOutcome {
    let addr = proxy.conf.tls.unwrap();
    let cfg = tls::client_config(
        &listener_ca.cert_pem,
        client.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
    );
    rt().block_on(async {
        let s = tls::connect(LOCALHOST, addr, PROXY_NAME, cfg)
            .await
            .expect("TLS to the proxy listener");
        let local = s.get_ref().0.local_addr().unwrap();
        let mut c = Conn::new(s);
        call(
            &mut c,
            local,
            &format!(
                "sip:+14155550100@{PROXY_NAME}:{};transport=tls",
                addr.port()
            ),
            &[],
            "TLS",
            Duration::from_secs(10),
        )
        .await
    })
}

#[test]
fn trunk_calling_over_tls_with_a_client_cert_naming_its_fqdn_is_outbound() {
    let lab = ListenerLab::start();
    let trunk_cert = lab.client_ca.issue(&[FQDN]);
    let out = tls_call(&lab.proxy, &lab.listener_ca, Some(&trunk_cert));
    assert_eq!(out.final_status, Some(200), "{out:?}");
    assert_eq!(out.bye_status, Some(200), "{out:?}");
    let up = lab.upstream.wait();
    up.assert_all_ok(1);
    let inv = only_request(&up, "INVITE");
    assert_eq!(
        inv.header("x-exotel-trunksid"),
        Some("TSacmetls01"),
        "{inv:?}"
    );
    assert!(
        inv.has("x-exotel-callsid") && inv.has("x-exotel-legsid"),
        "{inv:?}"
    );
    assert!(
        lab.proxy.counter(
            "vsip_calls_total",
            &[("trunk", TRUNK), ("direction", "outbound")]
        ) >= 1.0,
        "{}",
        lab.proxy.metrics()
    );
}

#[test]
fn tls_caller_with_a_certificate_for_another_name_is_403() {
    let lab = ListenerLab::start();
    let stranger = lab.client_ca.issue(&["stranger.vsip-test.example"]);
    let out = tls_call(&lab.proxy, &lab.listener_ca, Some(&stranger));
    assert_eq!(out.final_status, Some(403), "{out:?}");
    let up = lab.upstream.stop();
    assert!(up.received().is_empty(), "{}", up.summary());
}

#[test]
fn tls_listener_certificate_is_hot_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("vsip listener CA");
    let dns = Dns::start(vec![]);
    let first = ca.issue(&[PROXY_NAME]);
    let (cert, key) = first.write(dir.path(), "listener");
    let mut conf = ProxyConf::new(&dns);
    conf.tls = Some(SocketAddr::new(LOCALHOST, free_port()));
    conf.tls_cert = Some((cert.clone(), key.clone()));
    let proxy = ProxyProcess::start(conf);
    let addr = proxy.conf.tls.unwrap();
    assert_eq!(
        tls::peer_certificate(addr, PROXY_NAME, &ca.cert_pem).expect("handshake"),
        first.der()
    );
    // Replace both files (key first, then cert: each an atomic rename).
    let second = ca.issue(&[PROXY_NAME, "proxy2.vsip-test.example"]);
    let tmp = dir.path().join("new");
    std::fs::create_dir(&tmp).unwrap();
    let (c2, k2) = second.write(&tmp, "listener");
    std::fs::rename(&k2, &key).unwrap();
    std::fs::rename(&c2, &cert).unwrap();
    wait_for(
        Duration::from_secs(20),
        "new handshakes to present the new certificate",
        || {
            (tls::peer_certificate(addr, PROXY_NAME, &ca.cert_pem).ok()? == second.der())
                .then_some(())
        },
    );
    assert!(proxy.get("/readyz").0 == 200);
}

#[test]
fn tls_server_name_overrides_the_fqdn_for_verification() {
    // The SBC's certificate names sbc-cert.acme.example, not the FQDN; the
    // trunk says tls.serverName: sbc-cert.acme.example → verified, call ok.
    require_sipp();
    let ca = Ca::new("acme SBC CA");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&[lo(2)]);
    let leaf = ca.issue(&["sbc-cert.acme.example"]);
    let sbc = TlsUas::start(
        SocketAddr::new(lo(2), port),
        &leaf.cert_pem,
        &leaf.key_pem,
        None,
    );
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut conf = ProxyConf::new(&dns);
    let mut t = TrunkConf::tls(TRUNK, FQDN, port, &[NUMBER]);
    t.ca_file = Some(ca.write(dir.path(), "ca"));
    t.server_name = Some("sbc-cert.acme.example".into());
    conf.trunks.push(t);
    let proxy = ProxyProcess::start(conf);
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    assert_eq!(sbc.log.count("INVITE"), 1);
}

/// A proxy with a TLS listener (server cert for PROXY_NAME from
/// `listener_ca`, no client CA) whose trunk's SBC is a SIPp UAS at
/// 127.0.0.2 over TCP; the carrier is the upstream host, 127.0.0.1.
struct CarrierTlsLab {
    listener_ca: Ca,
    proxy: ProxyProcess,
    sbc: SippRun,
    sbc_port: u16,
    _dns: Dns,
    _dir: tempfile::TempDir,
}

impl CarrierTlsLab {
    fn start() -> CarrierTlsLab {
        require_sipp();
        let dir = tempfile::tempdir().unwrap();
        let listener_ca = Ca::new("vsip listener CA");
        let (cert, key) = listener_ca
            .issue(&[PROXY_NAME])
            .write(dir.path(), "listener");
        let sbc_port = free_port_on(&[lo(2)]);
        let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
        let mut conf = ProxyConf::new(&dns);
        conf.tls = Some(SocketAddr::new(LOCALHOST, free_port()));
        conf.tls_cert = Some((cert, key));
        conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
        let mut t = TrunkConf::tcp(TRUNK, FQDN, sbc_port, &[NUMBER]);
        t.trunk_sid = "TSacme0001".into();
        conf.trunks.push(t);
        let proxy = ProxyProcess::start(conf);
        let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), sbc_port).spawn();
        CarrierTlsLab {
            listener_ca,
            proxy,
            sbc,
            sbc_port,
            _dns: dns,
            _dir: dir,
        }
    }
}

#[test]
fn carrier_calling_in_over_the_tls_listener_reaches_the_sbc() {
    // Inbound over TLS: the carrier (upstream host 127.0.0.1) connects to the
    // proxy's TLS listener without a client certificate; the call goes to
    // the trunk's SBC over TCP and completes over the same TLS connection.
    let lab = CarrierTlsLab::start();
    let addr = lab.proxy.conf.tls.unwrap();
    let out = rt().block_on(async {
        let s = tls::connect(
            LOCALHOST,
            addr,
            PROXY_NAME,
            tls::client_config(&lab.listener_ca.cert_pem, None),
        )
        .await
        .expect("TLS to the proxy listener");
        let local = s.get_ref().0.local_addr().unwrap();
        let mut c = Conn::new(s);
        call(
            &mut c,
            local,
            &format!("sip:{NUMBER}@{PROXY_NAME}:{};transport=tls", addr.port()),
            &[],
            "TLS",
            Duration::from_secs(10),
        )
        .await
    });
    assert_eq!(out.final_status, Some(200), "{out:?}");
    assert_eq!(out.bye_status, Some(200), "{out:?}");
    let sbc_port = lab.sbc_port;
    let sbc = lab.sbc.wait();
    sbc.assert_all_ok(1);
    let inv = only_request(&sbc, "INVITE");
    assert_eq!(
        inv.request_uri().unwrap(),
        format!("sip:{NUMBER}@{FQDN}:{sbc_port};transport=tcp")
    );
    assert_eq!(inv.header("x-exotel-trunksid"), Some("TSacme0001"));
    // The carrier-facing Record-Route says TLS.
    let ok = out
        .responses
        .iter()
        .find(|m| m.status() == Some(200))
        .unwrap();
    assert!(
        ok.header_values("record-route")
            .iter()
            .any(|r| r.to_ascii_lowercase().contains("transport=tls") || r.starts_with("<sips:")),
        "a Record-Route entry facing the TLS carrier: {ok:?}"
    );
}

// ---------------------------------------------------------------------------
// The same promises against OpenSSL (Python's `ssl`): a TLS stack that shares
// no code with the proxy's rustls, TLS 1.2 and 1.3 pinned on its side.
// ---------------------------------------------------------------------------

/// An OpenSSL SBC at 127.0.0.2 with a certificate for `sbc_names` from `ca`
/// (the trunk trusts `ca`), pinned to `version`; `require_client_ca`: it
/// demands a client certificate from that CA; `client`: the trunk presents it.
fn openssl_sbc_lab(
    ca: &Ca,
    sbc_names: &[&str],
    version: TlsVersion,
    require_client_ca: Option<&Ca>,
    client: Option<&pki::Leaf>,
) -> (Dns, ProxyProcess, PyTlsUas, tempfile::TempDir) {
    require_sipp();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&[lo(2)]);
    let sbc = PyTlsUas::start(
        SocketAddr::new(lo(2), port),
        &ca.issue(sbc_names),
        require_client_ca,
        version,
    );
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let mut conf = ProxyConf::new(&dns);
    let mut t = TrunkConf::tls(TRUNK, FQDN, port, &[NUMBER]);
    t.trunk_sid = "TSacmetls01".into();
    t.ca_file = Some(ca.write(dir.path(), "sbc-ca"));
    if let Some(c) = client {
        let (cert, key) = c.write(dir.path(), "proxy-client");
        t.client_cert_file = Some(cert);
        t.client_key_file = Some(key);
    }
    conf.trunks.push(t);
    let proxy = ProxyProcess::start(conf);
    (dns, proxy, sbc, dir)
}

#[test]
fn calls_reach_an_openssl_sbc_over_tls_1_2_and_1_3() {
    for version in TlsVersion::ALL {
        let ca = Ca::new("acme SBC CA");
        let (_dns, proxy, sbc, _dir) = openssl_sbc_lab(&ca, &[FQDN], version, None, None);
        Sipp::uac("uac_call.xml", proxy.sip_addr())
            .service(NUMBER)
            .run()
            .assert_all_ok(1);
        let handshakes = sbc.handshakes();
        assert!(
            !handshakes.is_empty() && handshakes.iter().all(|(v, _)| v == version.openssl_name()),
            "{version:?}: {handshakes:?}"
        );
        let invites = sbc.requests("INVITE");
        assert_eq!(invites.len(), 1, "{version:?}");
        assert_eq!(
            invites[0].request_uri().unwrap(),
            format!("sip:{NUMBER}@{FQDN}:{};transport=tls", sbc.addr.port())
        );
        assert!(invites[0].header_values("via")[0].starts_with("SIP/2.0/TLS "));
        // ACK and BYE come back along the route set, over TLS.
        assert_eq!(sbc.requests("ACK").len(), 1, "{version:?}");
        assert_eq!(sbc.requests("BYE").len(), 1, "{version:?}");
    }
}

#[test]
fn an_openssl_sbc_certificate_for_another_name_or_from_another_ca_is_refused() {
    for version in TlsVersion::ALL {
        let ca = Ca::new("acme SBC CA");
        // Another name, the trunk's CA.
        let (_dns, proxy, sbc, _dir) =
            openssl_sbc_lab(&ca, &["other.vsip-test.example"], version, None, None);
        Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
            .subst("__EXPECTED__", "503")
            .service(NUMBER)
            .run()
            .assert_all_ok(1);
        assert!(sbc.requests("INVITE").is_empty(), "{version:?}");
        assert!(
            proxy.counter("vsip_tls_handshake_failures_total", &[("trunk", TRUNK)]) >= 1.0,
            "{}",
            proxy.metrics()
        );
        // The FQDN, but a CA the trunk does not trust.
        let rogue = Ca::new("rogue CA");
        let (_dns, proxy, sbc, _dir) = openssl_sbc_lab(&ca, &[FQDN], version, None, None);
        drop(sbc);
        let port = proxy.conf.trunks[0].port;
        let sbc = PyTlsUas::start(
            SocketAddr::new(lo(2), port),
            &rogue.issue(&[FQDN]),
            None,
            version,
        );
        Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
            .subst("__EXPECTED__", "503")
            .service(NUMBER)
            .run()
            .assert_all_ok(1);
        assert!(sbc.requests("INVITE").is_empty(), "{version:?}");
    }
}

#[test]
fn the_proxy_presents_its_client_certificate_to_an_openssl_sbc_requiring_mtls() {
    for version in TlsVersion::ALL {
        let ca = Ca::new("acme SBC CA");
        let client_ca = Ca::new("vsip client CA");
        let client = client_ca.issue(&["vsip-proxy.vsip-test.example"]);
        let (_dns, proxy, sbc, _dir) =
            openssl_sbc_lab(&ca, &[FQDN], version, Some(&client_ca), Some(&client));
        Sipp::uac("uac_call.xml", proxy.sip_addr())
            .service(NUMBER)
            .run()
            .assert_all_ok(1);
        let handshakes = sbc.handshakes();
        assert!(
            !handshakes.is_empty()
                && handshakes
                    .iter()
                    .all(|(v, names)| v == version.openssl_name()
                        && names == &["vsip-proxy.vsip-test.example"]),
            "{version:?}: {handshakes:?}"
        );
        assert_eq!(sbc.requests("INVITE").len(), 1);

        // Without the client certificate the SBC refuses the handshake: 503.
        let (_dns, proxy, sbc, _dir) =
            openssl_sbc_lab(&ca, &[FQDN], version, Some(&client_ca), None);
        Sipp::uac("uac_expect_status.xml", proxy.sip_addr())
            .subst("__EXPECTED__", "503")
            .service(NUMBER)
            .run()
            .assert_all_ok(1);
        assert!(sbc.requests("INVITE").is_empty(), "{version:?}");
        assert!(
            sbc.failed_handshakes() >= 1,
            "{version:?}: {:?}",
            sbc.events.all()
        );
    }
}

#[test]
fn an_openssl_carrier_calls_in_over_the_tls_listener() {
    // The carrier (the upstream host, 127.0.0.1) connects to the proxy's TLS
    // listener without a client certificate; the call reaches the SBC over TCP.
    for version in TlsVersion::ALL {
        let lab = CarrierTlsLab::start();
        let out = py_tls_call(
            LOCALHOST,
            lab.proxy.conf.tls.unwrap(),
            PROXY_NAME,
            &lab.listener_ca,
            None,
            version,
            NUMBER,
        );
        out.assert_completed(version);
        lab.sbc.wait().assert_all_ok(1);
    }
}

#[test]
fn an_openssl_trunk_with_a_client_certificate_naming_its_fqdn_calls_out() {
    for version in TlsVersion::ALL {
        let lab = ListenerLab::start();
        let out = py_tls_call(
            LOCALHOST,
            lab.proxy.conf.tls.unwrap(),
            PROXY_NAME,
            &lab.listener_ca,
            Some(&lab.client_ca.issue(&[FQDN])),
            version,
            "+14155550100",
        );
        out.assert_completed(version);
        let up = lab.upstream.wait();
        up.assert_all_ok(1);
        let inv = only_request(&up, "INVITE");
        assert_eq!(
            inv.header("x-exotel-trunksid"),
            Some("TSacmetls01"),
            "{inv:?}"
        );
    }
}

#[test]
fn a_client_certificate_naming_the_fqdn_from_an_untrusted_ca_is_refused() {
    // The certificate names the trunk's FQDN, but no CA the listener trusts
    // issued it: the handshake fails (OpenSSL and rustls callers alike) and
    // nothing reaches the upstream; a proxy that did not verify would treat
    // the caller as the trunk and call out.
    let lab = ListenerLab::start();
    let rogue = Ca::new("rogue CA");
    let forged = rogue.issue(&[FQDN]);
    for version in TlsVersion::ALL {
        let out = py_tls_call(
            LOCALHOST,
            lab.proxy.conf.tls.unwrap(),
            PROXY_NAME,
            &lab.listener_ca,
            Some(&forged),
            version,
            "+14155550100",
        );
        assert_eq!(out.final_status, None, "{version:?}: {out:?}");
        assert!(out.responses().is_empty(), "{version:?}: {out:?}");
    }
    let cfg = tls::client_config(
        &lab.listener_ca.cert_pem,
        Some((forged.cert_pem.as_str(), forged.key_pem.as_str())),
    );
    let addr = lab.proxy.conf.tls.unwrap();
    let rustls_out = rt().block_on(async {
        let Ok(s) = tls::connect(LOCALHOST, addr, PROXY_NAME, cfg).await else {
            return None;
        };
        let local = s.get_ref().0.local_addr().unwrap();
        let mut c = Conn::new(s);
        let uri = format!(
            "sip:+14155550100@{PROXY_NAME}:{};transport=tls",
            addr.port()
        );
        call(&mut c, local, &uri, &[], "TLS", Duration::from_secs(10))
            .await
            .final_status
    });
    assert_eq!(rustls_out, None);
    let up = lab.upstream.stop();
    assert!(up.received().is_empty(), "{}", up.summary());
    assert_eq!(
        lab.proxy
            .counter("vsip_calls_total", &[("direction", "outbound")]),
        0.0
    );
}
