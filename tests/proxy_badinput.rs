//! Hostile and broken input over raw TCP: every bad message gets the right
//! SIP answer (or the connection is closed where no answer can be formed),
//! a stalled sender does not block anyone, and a flood of garbage neither
//! crashes the proxy nor grows its memory.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use support::{sip::*, *};

fn lab() -> (Dns, ProxyProcess, u16) {
    let port = free_port_on(&[lo(2)]);
    let dns = Dns::start(vec![a(FQDN, lo(2), 30)]);
    let proxy = inbound_proxy(&dns, port, |_| {});
    (dns, proxy, port)
}

/// The answer to `bytes`, or None if the proxy closed / stayed silent.
fn answer(proxy: &ProxyProcess, bytes: &[u8]) -> Option<Msg> {
    raw_exchange(proxy.sip_addr(), bytes, Duration::from_secs(5))
}

/// True when the proxy closed the connection (EOF or reset) within `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. a 400 before the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn malformed_messages_get_400_or_the_connection_closed() {
    let (_dns, proxy, _) = lab();
    let cases: [&[u8]; 4] = [
        b"INVITE\r\n\r\n",
        b"INVITE sip:+911234567890@x SIP/2.0\r\nVia SIP/2.0/TCP 1.2.3.4\r\nno colon here\r\n\r\n",
        b"\x00\x01\x02\xff\xfe garbage \r\n\r\n",
        b"INVITE sip:+911234567890@x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKx\r\nCall-ID: a@b\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:+911234567890@x>\r\nContent-Length: abc\r\n\r\n",
    ];
    for raw in cases {
        let mut s = TcpStream::connect(proxy.sip_addr()).unwrap();
        s.write_all(raw).unwrap();
        // Either a 400 arrives, or the connection is closed.
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break false;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no 400 and no close for {:?}", String::from_utf8_lossy(raw))
                }
                Err(_) => break true,
            }
        };
        if !closed || !got.is_empty() {
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.starts_with("SIP/2.0 400"),
                "malformed {:?} answered {text:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
    assert!(proxy.get("/healthz").0 == 200);
}

#[test]
fn oversize_message_gets_513() {
    let (_dns, proxy, _) = lab();
    let body = vec![b'a'; 70 * 1024];
    let head = format!(
        "INVITE sip:{NUMBER}@{} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKbig\r\nMax-Forwards: 70\r\nFrom: <sip:{CALLER}@127.0.0.1>;tag=big\r\nTo: <sip:{NUMBER}@127.0.0.1>\r\nCall-ID: big@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
        proxy.sip_addr(),
        body.len()
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(&body);
    let m = answer(&proxy, &raw).expect("an answer to an oversize message");
    assert_eq!(m.status(), Some(513), "{m:?}");

    // Oversize by headers alone (no Content-Length help): also 513 or closed,
    // never a crash.
    let mut raw = format!("INVITE sip:{NUMBER}@x SIP/2.0\r\n").into_bytes();
    while raw.len() < 70 * 1024 {
        raw.extend_from_slice(
            b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    if let Some(m) = answer(&proxy, &raw) {
        assert_eq!(m.status(), Some(513), "{m:?}");
    }
    assert!(proxy.get("/healthz").0 == 200);
}

#[test]
fn max_forwards_zero_gets_483() {
    let (_dns, proxy, _) = lab();
    let raw = raw_invite(
        proxy.sip_addr(),
        NUMBER,
        &["Max-Forwards"],
        &[("Max-Forwards", "0")],
    );
    let m = answer(&proxy, &raw).expect("answer");
    assert_eq!(m.status(), Some(483), "{m:?}");
}

#[test]
fn missing_call_id_gets_400() {
    let (_dns, proxy, _) = lab();
    let raw = raw_invite(proxy.sip_addr(), NUMBER, &["Call-ID"], &[]);
    let m = answer(&proxy, &raw).expect("answer");
    assert_eq!(m.status(), Some(400), "{m:?}");
}

#[test]
fn unknown_number_gets_404_over_raw_tcp() {
    let (_dns, proxy, _) = lab();
    let raw = raw_invite(proxy.sip_addr(), "+919999999999", &[], &[]);
    // Skip provisional answers.
    let addr = proxy.sip_addr();
    let code = rt().block_on(async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = Conn::new(s);
        c.send_raw(&raw).await.unwrap();
        while let Some(m) = c.recv(Duration::from_secs(5)).await {
            if m.status().unwrap_or(0) >= 200 {
                return m.status();
            }
        }
        None
    });
    assert_eq!(code, Some(404));
}

#[test]
fn half_sent_message_then_silence_does_not_block_other_callers() {
    require_sipp();
    let (_dns, proxy, port) = lab();
    // Several stalled senders: half an INVITE each, then nothing.
    let full = raw_invite(proxy.sip_addr(), NUMBER, &[], &[]);
    let mut stalled = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(proxy.sip_addr()).unwrap();
        s.write_all(&full[..full.len() / 2]).unwrap();
        stalled.push(s);
    }
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(3).spawn();
    let started = Instant::now();
    Sipp::uac("uac_call.xml", proxy.sip_addr())
        .service(NUMBER)
        .calls(3)
        .rate(10.0)
        .run()
        .assert_all_ok(3);
    assert!(started.elapsed() < Duration::from_secs(10));
    sbc.wait().assert_all_ok(3);
    drop(stalled);
}

#[test]
fn garbage_flood_does_not_crash_or_leak() {
    require_sipp();
    let (_dns, proxy, port) = lab();
    let addr: SocketAddr = proxy.sip_addr();
    let flood = |n: usize| {
        let payloads: [&[u8]; 5] = [
            b"GARBAGE\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nContent-Length: 999999999\r\n\r\nabc",
            b"\xde\xad\xbe\xef\x00\x00\r\n\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 9.9.9.9;branch=z9hG4bKnone\r\nCSeq: 1 INVITE\r\nCall-ID: none\r\nContent-Length: 0\r\n\r\n",
            b"INVITE sip:+911234567890@x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK",
        ];
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in (t..n).step_by(4) {
                        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                        {
                            let _ = s.write_all(payloads[i % payloads.len()]);
                            let _ = s.shutdown(std::net::Shutdown::Both);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    // Warm up (allocator, first call) and take the baseline.
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(2).spawn();
    Sipp::uac("uac_call.xml", addr)
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    flood(200);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = proxy.rss_kib();
    let started = Instant::now();
    flood(2000);
    let flood_time = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let mut proxy = proxy;
    assert!(
        proxy.alive(),
        "proxy died under garbage\n{}",
        tail(&proxy.logs(), 50)
    );
    // Still answers calls.
    Sipp::uac("uac_call.xml", addr)
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    sbc.wait().assert_all_ok(2);
    let after = proxy.rss_kib();
    let growth_mib = (after.saturating_sub(baseline)) as f64 / 1024.0;
    eprintln!(
        "garbage flood: 2000 connections in {flood_time:?}; RSS {baseline} KiB -> {after} KiB (+{growth_mib:.1} MiB)"
    );
    assert!(
        growth_mib < 20.0,
        "RSS grew by {growth_mib:.1} MiB over 2000 garbage connections (bound 20 MiB)"
    );
    // And connections are not left open: a fresh stalled connection is
    // eventually closed or at least the proxy keeps serving.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"\x00\x00\x00\r\n\r\n").unwrap();
    let _ = closed_within(&mut s, Duration::from_secs(2));
    assert!(proxy.alive());
}

#[test]
fn framed_but_malformed_requests_get_400_and_the_connection_stays_usable() {
    let (_dns, proxy, _) = lab();
    let addr = proxy.sip_addr();
    let cases = [
        raw_invite(addr, NUMBER, &["From"], &[]),
        raw_invite(addr, NUMBER, &["CSeq"], &[("CSeq", "abc INVITE")]),
        raw_invite(addr, NUMBER, &["Via"], &[]),
    ];
    let options = format!(
        "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKopt1\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=o1\r\nTo: <sip:{addr}>\r\nCall-ID: opt-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let answers = rt().block_on(async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = Conn::new(s);
        let mut out = Vec::new();
        // Via missing: no response can be routed back; everything else 400.
        for raw in &cases[..2] {
            c.send_raw(raw).await.unwrap();
            out.push(
                c.recv(Duration::from_secs(5))
                    .await
                    .and_then(|m| m.status()),
            );
        }
        // Same connection still serves a well-formed request.
        c.send_raw(options.as_bytes()).await.unwrap();
        out.push(
            c.recv(Duration::from_secs(5))
                .await
                .and_then(|m| m.status()),
        );
        out
    });
    assert_eq!(
        answers,
        vec![Some(400), Some(400), Some(200)],
        "From missing, CSeq garbage, then OPTIONS"
    );
    // No Via: 400 or close, never a crash.
    if let Some(m) = answer(&proxy, &cases[2]) {
        assert_eq!(m.status(), Some(400), "{m:?}");
    }
    assert_eq!(proxy.get("/healthz").0, 200);
}

#[test]
fn in_dialog_request_with_a_route_we_did_not_sign_is_refused_not_relayed() {
    let (_dns, proxy, _) = lab();
    // Whatever the proxy relayed here would make it an open relay.
    let victim = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let v = victim.local_addr().unwrap();
    let sip = proxy.sip_addr();
    let forged = [
        "vsip=tr;vt=TS4f1c0a77e2b94a53b1d0c6a2f1e0d9c8",
        "vsip=tr;vt=TS4f1c0a77e2b94a53b1d0c6a2f1e0d9c8;vs=0011223344556677",
        "vsip=up;vs=abcd",
    ];
    for (i, params) in forged.iter().enumerate() {
        let bye = format!(
            "BYE sip:victim@{v};transport=tcp SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-forged{i}\r\n\
             Route: <sip:{sip};transport=tcp;lr;{params}>\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n\
             Call-ID: forged-{i}@x\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let resp = answer(&proxy, bye.as_bytes()).expect("an answer to the forged BYE");
        assert_eq!(resp.status(), Some(403), "{params}: {}", resp.start);
        assert!(
            resp.header("reason")
                .is_some_and(|r| r.contains("not issued by this proxy")),
            "{:?}",
            resp.headers
        );
    }
    // A forged ACK gets no answer and goes nowhere either.
    let ack = format!(
        "ACK sip:victim@{v};transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-forged-ack\r\n\
         Route: <sip:{sip};transport=tcp;lr;vsip=tr;vt=X;vs=ffffffffffffffff>\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n\
         Call-ID: forged-ack@x\r\nCSeq: 2 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(answer(&proxy, ack.as_bytes()).is_none());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        victim.accept().is_err(),
        "the proxy connected to the forged Request-URI"
    );
    assert_eq!(
        proxy.counter("vsip_bad_messages_total", &[("reason", "route_signature")]),
        4.0
    );
}
