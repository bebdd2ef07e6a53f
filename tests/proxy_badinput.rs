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

/// What the proxy did with bytes sent on a fresh connection: everything it
/// wrote back, and when (since the first byte was sent) it closed the
/// connection, if it did before `deadline`.
struct Reaction {
    bytes: Vec<u8>,
    closed_after: Option<Duration>,
}

impl Reaction {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
    /// The first SIP message written back.
    fn answer(&self) -> Option<Msg> {
        Msg::parse(&self.bytes)
    }
}

/// Sends `bytes` (reading meanwhile, so an answer followed by a close is
/// not lost to a reset) and watches the connection until the proxy closes
/// it or `deadline` passes.
fn react(addr: SocketAddr, bytes: &[u8], deadline: Duration) -> Reaction {
    let mut s = TcpStream::connect(addr).unwrap();
    let reader = s.try_clone().unwrap();
    let started = Instant::now();
    let watcher = std::thread::spawn(move || watch(reader, started, deadline));
    // The proxy may close while we are still writing (oversize): ignore.
    for chunk in bytes.chunks(4096) {
        if s.write_all(chunk).is_err() {
            break;
        }
    }
    watcher.join().unwrap()
}

/// Reads `s` until EOF/reset (closed) or until `deadline` after `started`.
fn watch(mut s: TcpStream, started: Instant, deadline: Duration) -> Reaction {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Reaction {
                bytes: got,
                closed_after: None,
            };
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    Reaction {
        bytes: got,
        closed_after: Some(started.elapsed()),
    }
}

/// How long the proxy waits for the rest of a started message (README:
/// "a half-sent message is dropped after 10 s").
const PARTIAL_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Room for a loaded machine on top of a promised time.
const SLACK: Duration = Duration::from_secs(10);
/// Deadline for things the proxy does at once (answer, close).
const PROMPTLY: Duration = Duration::from_secs(10);

#[test]
fn malformed_messages_get_400_or_the_connection_closed() {
    let (_dns, proxy, _) = lab();
    // Unframeable and without the headers a response needs: closed, unanswered.
    let unanswerable: [&[u8]; 3] = [
        b"INVITE\r\n\r\n",
        b"INVITE sip:+911234567890@x SIP/2.0\r\nVia SIP/2.0/TCP 1.2.3.4\r\nno colon here\r\n\r\n",
        b"\x00\x01\x02\xff\xfe garbage \r\n\r\n",
    ];
    for raw in unanswerable {
        let r = react(proxy.sip_addr(), raw, PROMPTLY);
        assert!(
            r.closed_after.is_some() && r.bytes.is_empty(),
            "{:?}: expected a close without an answer, got {:?} (closed: {:?})",
            String::from_utf8_lossy(raw),
            r.text(),
            r.closed_after
        );
    }
    // Unframeable (Content-Length is not a number) but every header a
    // response needs is there: 400, then the close (framing is lost).
    let bad_length = b"INVITE sip:+911234567890@x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKx\r\nCall-ID: a@b\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:+911234567890@x>\r\nContent-Length: abc\r\n\r\n";
    let r = react(proxy.sip_addr(), bad_length, PROMPTLY);
    let m = r
        .answer()
        .unwrap_or_else(|| panic!("no answer to Content-Length: abc; got {:?}", r.text()));
    assert_eq!(m.status(), Some(400), "{m:?}");
    assert_eq!(m.header("call-id"), Some("a@b"), "{m:?}");
    assert!(r.closed_after.is_some(), "the connection stays open");
    assert_eq!(
        proxy.counter(
            "vsip_bad_messages_total",
            &[("reason", "bad_content_length")]
        ),
        1.0
    );
    assert!(proxy.get("/healthz").0 == 200);
}

#[test]
fn oversize_message_gets_513() {
    let (_dns, proxy, _) = lab();
    let headers = format!(
        "Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKbig\r\nMax-Forwards: 70\r\nFrom: <sip:{CALLER}@127.0.0.1>;tag=big\r\nTo: <sip:{NUMBER}@127.0.0.1>\r\nCall-ID: big@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
    );
    // Oversize by its body (Content-Length says so).
    let body = vec![b'a'; 70 * 1024];
    let mut raw = format!(
        "INVITE sip:{NUMBER}@{} SIP/2.0\r\n{headers}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
        proxy.sip_addr(),
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let m = answer(&proxy, &raw).expect("an answer to an oversize message");
    assert_eq!(m.status(), Some(513), "{m:?}");

    // Oversize by its headers alone: the end of the header block is never
    // seen, but the headers a response needs came first: 513 all the same.
    let mut raw = format!("INVITE sip:{NUMBER}@x SIP/2.0\r\n{headers}").into_bytes();
    while raw.len() < 70 * 1024 {
        raw.extend_from_slice(
            b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    let r = react(proxy.sip_addr(), &raw, PROMPTLY);
    let m = r.answer().unwrap_or_else(|| {
        panic!(
            "no answer to headers-only oversize; got {:?}, closed: {:?}",
            r.text(),
            r.closed_after
        )
    });
    assert_eq!(m.status(), Some(513), "{m:?}");
    assert_eq!(m.header("call-id"), Some("big@127.0.0.1"), "{m:?}");
    assert!(r.closed_after.is_some(), "the connection stays open");

    // Oversize padding and nothing to answer with (no Via, From, ...): closed.
    let mut raw = format!("INVITE sip:{NUMBER}@x SIP/2.0\r\n").into_bytes();
    while raw.len() < 70 * 1024 {
        raw.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let r = react(proxy.sip_addr(), &raw, PROMPTLY);
    assert!(
        r.closed_after.is_some() && r.bytes.is_empty(),
        "got {:?}, closed: {:?}",
        r.text(),
        r.closed_after
    );
    assert_eq!(
        proxy.counter("vsip_bad_messages_total", &[("reason", "oversize")]),
        3.0
    );
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
fn half_sent_message_is_dropped_after_10s_without_blocking_other_callers() {
    require_sipp();
    let (_dns, proxy, port) = lab();
    let addr = proxy.sip_addr();
    // Several stalled senders: half an INVITE each, then nothing.
    let full = raw_invite(addr, NUMBER, &[], &[]);
    let stalled: Vec<_> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            let started = Instant::now();
            s.write_all(&full[..full.len() / 2]).unwrap();
            let deadline = PARTIAL_MESSAGE_TIMEOUT + SLACK;
            std::thread::spawn(move || watch(s, started, deadline))
        })
        .collect();
    // Meanwhile other callers are served, while the stalled ones still hang.
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(3).spawn();
    Sipp::uac("uac_call.xml", addr)
        .service(NUMBER)
        .calls(3)
        .rate(10.0)
        .run()
        .assert_all_ok(3);
    sbc.wait().assert_all_ok(3);
    let calls_done = proxy.counter("vsip_calls_total", &[("result", "200")]);
    assert_eq!(calls_done, 3.0, "{}", proxy.metrics());
    assert!(
        stalled.iter().all(|w| !w.is_finished()),
        "the calls were only served after the stalled connections were dropped"
    );
    for w in stalled {
        let r = w.join().unwrap();
        let after = r.closed_after.unwrap_or_else(|| {
            panic!(
                "a half-sent message was not dropped within {PARTIAL_MESSAGE_TIMEOUT:?} + {SLACK:?}"
            )
        });
        assert!(r.bytes.is_empty(), "answered {:?}", r.text());
        // Not before the promised 10 s (the proxy cannot have read the bytes
        // before we sent them), and not long after.
        assert!(
            after >= PARTIAL_MESSAGE_TIMEOUT,
            "dropped after {after:?}, before {PARTIAL_MESSAGE_TIMEOUT:?}"
        );
    }
}

#[test]
fn a_message_trickled_in_is_dropped_10s_after_it_started() {
    // One byte every 2 s: each read comes well within 10 s of the last one,
    // but the message as a whole is not complete within 10 s.
    let (_dns, proxy, _) = lab();
    let full = raw_invite(proxy.sip_addr(), NUMBER, &[], &[]);
    let mut s = TcpStream::connect(proxy.sip_addr()).unwrap();
    let started = Instant::now();
    let watcher = {
        let s = s.try_clone().unwrap();
        std::thread::spawn(move || watch(s, started, PARTIAL_MESSAGE_TIMEOUT + SLACK))
    };
    for b in &full[..full.len() / 2] {
        if s.write_all(&[*b]).is_err() || watcher.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let r = watcher.join().unwrap();
    let after = r.closed_after.unwrap_or_else(|| {
        panic!("a trickled message was not dropped within {PARTIAL_MESSAGE_TIMEOUT:?} + {SLACK:?}")
    });
    assert!(after >= PARTIAL_MESSAGE_TIMEOUT, "dropped after {after:?}");
    assert!(r.bytes.is_empty(), "answered {:?}", r.text());
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
    // Every flood connection was closed by us; the proxy's side is gone once
    // its gauge is back to the connections that carry calls.
    let settled = |what: &str, open: f64| {
        wait_for(Duration::from_secs(30), what, || {
            (proxy.counter("vsip_connections", &[]) <= open).then_some(())
        })
    };
    // Warm up (allocator, first call) and take the baseline.
    let sbc = Sipp::uas("uas_rfc3261.xml", lo(2), port).calls(2).spawn();
    Sipp::uac("uac_call.xml", addr)
        .service(NUMBER)
        .run()
        .assert_all_ok(1);
    // The SBC's connection stays open (and the caller's, until the proxy sees its close).
    let open = proxy.counter("vsip_connections", &[]);
    flood(200);
    settled("the warm-up flood's connections to close", open);
    let baseline = proxy.rss_kib();
    let started = Instant::now();
    flood(2000);
    let flood_time = started.elapsed();
    settled("the flood's connections to close", open);
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
    // A fresh garbage connection is closed (framing lost), not left open.
    let r = react(addr, b"\x00\x00\x00\r\n\r\n", PROMPTLY);
    assert!(
        r.closed_after.is_some() && r.bytes.is_empty(),
        "got {:?}, closed: {:?}",
        r.text(),
        r.closed_after
    );
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
    // No Via: the answer goes back over the connection it came on.
    let m = answer(&proxy, &cases[2]).expect("an answer to an INVITE without Via");
    assert_eq!(m.status(), Some(400), "{m:?}");
    assert!(
        m.start.contains("Via"),
        "the reason names what is wrong: {m:?}"
    );
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
    // The ACK was looked at and refused (counted) before we look at the victim.
    wait_for(PROMPTLY, "the forged ACK to be counted", || {
        (proxy.counter("vsip_bad_messages_total", &[("reason", "route_signature")]) == 4.0)
            .then_some(())
    });
    assert!(
        victim.accept().is_err(),
        "the proxy connected to the forged Request-URI"
    );
    assert_eq!(
        proxy.counter("vsip_bad_messages_total", &[("reason", "route_signature")]),
        4.0
    );
}
