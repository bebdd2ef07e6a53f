//! Feeds arbitrary bytes through the stream framer (in chunks whose sizes
//! come from the input) and every framed message through the parser, the
//! validator, the typed header views, the editing API and re-serialisation.
//! Any panic is a bug. Invariants checked:
//! - a parsed message re-serialises to bytes that parse to the same message;
//! - framer output is bounded by the configured maximum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsip::sip::framer::{Frame, Framer};
use vsip::sip::headers::{CSeq, NameAddr, Via, split_list};
use vsip::sip::message::{Message, ParseError};
use vsip::sip::uri::SipUri;

const MAX: usize = 4096;

fn exercise(m: &Message) {
    let _ = m.validate();
    let _ = (
        m.call_id(),
        m.cseq(),
        m.top_via(),
        m.max_forwards(),
        m.content_length(),
    );
    for n in ["via", "route", "record-route", "contact", "from", "to"] {
        for v in m.values(n) {
            let _ = Via::parse(&v).map(|v| (v.branch().map(str::len), v.rport(), v.to_string()));
            if let Ok(na) = NameAddr::parse(&v) {
                let _ = na.to_string();
                if let Ok(u) = SipUri::parse(&na.uri) {
                    // Display never re-escapes: it reproduces the input
                    let s = u.to_string();
                    let again = SipUri::parse(&s).expect("re-parse of displayed URI");
                    assert_eq!(again, u);
                    let _ = (u.transport(), u.host_ip(), u.user_decoded());
                }
            }
            let _ = split_list(&v);
        }
    }
    if let Some(c) = m.header_value("cseq") {
        let _ = CSeq::parse(&c);
    }
    if let Some(u) = m.request_uri() {
        let _ = SipUri::parse(u);
    }
    let _ = vsip::sip::sdp::audio_offers(&m.body);

    // round trip
    let bytes = m.to_bytes();
    let re = Message::parse(&bytes).expect("re-parse of serialised message");
    assert_eq!(&re.start, &m.start);
    assert_eq!(re.headers.len(), m.headers.len());
    assert_eq!(re.body, m.body);

    // editing as the proxy does it
    let mut e = m.clone();
    let _ = e.remove_first_value("via");
    e.push_front(vsip::sip::message::Header::new(
        "Via",
        "SIP/2.0/TCP proxy;branch=z9hG4bKf",
    ));
    e.set_header("Max-Forwards", "69");
    e.set_body(bytes::Bytes::from_static(b"x"));
    let out = e.to_bytes();
    match Message::parse(&out) {
        Ok(re) => assert_eq!(&re.body[..], b"x"),
        // edits may add headers or join a folded list into one long line
        Err(ParseError::TooManyHeaders(_) | ParseError::LineTooLong(_)) => {}
        Err(err) => panic!("edited message does not re-parse: {err}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // whole input as one datagram-style message
    if let Ok(m) = Message::parse(data) {
        exercise(&m);
    }
    // and as a stream, chunked by the first byte
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut f = Framer::new(MAX);
    for chunk in data.chunks(step) {
        f.buffer_mut().extend_from_slice(chunk);
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(b))) => {
                    assert!(b.len() <= MAX);
                    if let Ok(m) = Message::parse(&b) {
                        exercise(&m);
                    }
                }
                Ok(Some(Frame::KeepAlive)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(f.buffered() <= MAX + step);
    }
});
