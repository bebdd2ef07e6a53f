//! Evidence for docs/design/sip-parsing.md: the inputs rsip 0.4.0 mishandles,
//! each asserted against rsip itself next to our parser handling the same
//! bytes. If a future rsip release fixes one of these, the matching
//! assertion fails and the decision should be revisited.

use rsip::prelude::*;
use vsip::sip::framer::{Frame, Framer};
use vsip::sip::headers::Via;
use vsip::sip::message::Message;
use vsip::sip::uri::SipUri;

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

const IPV6: &str = "INVITE sip:+15551234567@sbc.example.com SIP/2.0
Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK-v6
Max-Forwards: 70
From: <sip:alice@example.com>;tag=1
To: <sip:+15551234567@sbc.example.com>
Call-ID: v6@example.com
CSeq: 1 INVITE
Contact: <sip:alice@[2001:db8::1]:5070;transport=tcp>
Content-Length: 0

";

#[test]
fn ipv6_via_and_contact() {
    let raw = crlf(IPV6);
    // rsip accepts the message, but typed Via and Contact both fail
    // (measured: ParseError("invalid digit found in string") - the port
    // parser splits `[2001:db8::1]:5070` at the first colon).
    let m = rsip::SipMessage::try_from(raw.as_str()).expect("rsip tokenizes the message");
    let via = m.via_header().expect("untyped Via").typed();
    let contact = m.contact_header().expect("untyped Contact").typed();
    eprintln!("rsip 0.4.0 typed Via: {via:?}");
    eprintln!("rsip 0.4.0 typed Contact: {contact:?}");
    assert!(via.is_err(), "rsip now parses an IPv6 Via");
    assert!(contact.is_err(), "rsip now parses an IPv6 Contact");

    let m = Message::parse(raw.as_bytes()).unwrap();
    let via = m.top_via().unwrap();
    assert_eq!(via.host, "[2001:db8::1]");
    assert_eq!(via.port, Some(5070));
    let c = vsip::sip::headers::NameAddr::parse(&m.values("contact")[0]).unwrap();
    let u = SipUri::parse(&c.uri).unwrap();
    assert_eq!(u.host_ip(), Some("2001:db8::1".parse().unwrap()));
    assert_eq!(u.port, Some(5070));
}

#[test]
fn compact_header_names() {
    let raw = crlf(
        "OPTIONS sip:a@example.com SIP/2.0
v: SIP/2.0/TCP h.example.com;branch=z9hG4bK1
f: <sip:b@example.com>;tag=2
t: <sip:a@example.com>
i: compact@h
CSeq: 1 OPTIONS
m: <sip:b@h.example.com>
l: 0

",
    );
    let m = rsip::SipMessage::try_from(raw.as_str()).expect("rsip parses the message");
    // compact names land in Header::Other, so the typed accessors find nothing
    assert!(m.via_header().is_err());
    assert!(m.from_header().is_err());
    assert!(m.to_header().is_err());
    assert!(m.call_id_header().is_err());
    assert!(m.contact_header().is_err());
    assert!(
        m.headers()
            .iter()
            .any(|h| matches!(h, rsip::Header::Other(n, _) if n == "v"))
    );

    let ours = Message::parse(raw.as_bytes()).unwrap();
    assert_eq!(ours.top_via().unwrap().host, "h.example.com");
    assert_eq!(ours.call_id().as_deref(), Some("compact@h"));
    assert!(ours.header("from").is_some() && ours.header("to").is_some());
    assert_eq!(ours.content_length(), Some(0));
    ours.validate().unwrap();
}

#[test]
fn folded_header_line() {
    let raw = crlf(
        "OPTIONS sip:a@example.com SIP/2.0
Via: SIP/2.0/TCP h.example.com
 ;branch=z9hG4bK1
From: <sip:b@example.com>;tag=2
To: <sip:a@example.com>
Call-ID: fold@h
CSeq: 1 OPTIONS
Subject: a folded
  subject
Content-Length: 0

",
    );
    let r = rsip::SipMessage::try_from(raw.as_str());
    eprintln!("rsip 0.4.0 on a folded header: {:?}", r.as_ref().err());
    assert!(r.is_err());

    let m = Message::parse(raw.as_bytes()).unwrap();
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK1"));
    assert_eq!(
        m.header_value("subject").as_deref(),
        Some("a folded subject")
    );
    // and the folded bytes are forwarded untouched
    assert_eq!(m.to_bytes(), raw.as_bytes());
}

#[test]
fn content_length_ignored_pipelined_messages_merge() {
    let one = crlf(
        "OPTIONS sip:a@example.com SIP/2.0
Via: SIP/2.0/TCP h;branch=z9hG4bK1
From: <sip:b@e>;tag=2
To: <sip:a@e>
Call-ID: p1@h
CSeq: 1 OPTIONS
Content-Length: 5

hello",
    );
    let two = crlf(
        "OPTIONS sip:a@example.com SIP/2.0
Via: SIP/2.0/TCP h;branch=z9hG4bK2
From: <sip:b@e>;tag=2
To: <sip:a@e>
Call-ID: p2@h
CSeq: 2 OPTIONS
Content-Length: 0

",
    );
    let both = format!("{one}{two}");
    let m = rsip::SipMessage::try_from(both.as_str()).expect("rsip parses");
    // the second message became part of the first one's body
    assert_eq!(m.body().len(), 5 + two.len());
    assert!(String::from_utf8_lossy(m.body()).contains("Call-ID: p2@h"));

    let ours = Message::parse(both.as_bytes()).unwrap();
    assert_eq!(&ours.body[..], b"hello");
    let mut f = Framer::new(4096);
    f.buffer_mut().extend_from_slice(both.as_bytes());
    assert_eq!(
        f.next_frame().unwrap(),
        Some(Frame::Message(one.clone().into()))
    );
    assert_eq!(
        f.next_frame().unwrap(),
        Some(Frame::Message(two.clone().into()))
    );
}

#[test]
fn percent_encoded_uri_roundtrip() {
    // rsip itself: parse + Display of the URI
    let rsip_uri = rsip::Uri::try_from("sip:b%20ob@example.com");
    let rsip_out = rsip_uri.as_ref().map(|u| u.to_string());
    // ours: byte for byte
    let ours = SipUri::parse("sip:b%20ob@example.com").unwrap();
    assert_eq!(ours.to_string(), "sip:b%20ob@example.com");
    assert_eq!(ours.user_decoded().as_deref(), Some("b ob"));
    // Measured: rsip 0.4.0 itself round-trips this URI correctly. The
    // re-escaping (`%20` -> `%2520`) was observed in rsipstack 0.7.x, which is
    // not a dependency here; see docs/design/sip-parsing.md.
    assert_eq!(rsip_out.ok().as_deref(), Some("sip:b%20ob@example.com"));
    let _ = Via::parse("SIP/2.0/TCP h").unwrap();
}
