//! RFC 4475 ("SIP Torture Test Messages") run against our parser.
//!
//! The messages are typed from RFC 4475 §3 (line ends are CRLF on the wire;
//! we write `\n` and convert). Where the RFC uses its `<repeat>`/`<hex>`
//! notation (longreq, mpart01) the message is rebuilt programmatically from
//! that notation; those reconstructions are marked and are not byte-identical
//! to the RFC's tar archive. Content-Length values of the typed messages were
//! checked against the typed bodies (150/152/154 as in the RFC).
//!
//! Valid messages must parse, pass `validate()`, re-serialise byte for byte
//! and frame correctly over a stream. Invalid messages must be rejected by
//! `Message::parse` or by `Message::validate` (which the proxy runs before
//! acting, answering 400) — never by a panic.

use bytes::Bytes;
use vsip::sip::framer::{Frame, Framer};
use vsip::sip::headers::{CSeq, NameAddr, Via};
use vsip::sip::message::{Message, Method, ParseError};
use vsip::sip::uri::SipUri;

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn sdp(o: &str, c: &str) -> String {
    format!(
        "v=0\no=mhandley 29739 7272939 IN IP4 {o}\ns=-\nc=IN IP4 {c}\nt=0 0\n\
         m=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n"
    )
}

/// Parses, validates, checks byte-for-byte re-serialisation and stream framing.
fn valid(raw: &[u8]) -> Message {
    let m = Message::parse(raw).unwrap_or_else(|e| panic!("parse failed: {e}"));
    m.validate()
        .unwrap_or_else(|e| panic!("validate failed: {e}"));
    let out = m.to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&raw[..out.len()]),
        "re-serialisation differs"
    );
    assert_eq!(&out[..], &raw[..out.len()]);
    if m.content_length().is_some() {
        let mut f = Framer::new(64 * 1024);
        f.buffer_mut().extend_from_slice(raw);
        match f.next_frame() {
            Ok(Some(Frame::Message(b))) => assert_eq!(&b[..], &out[..]),
            other => panic!("framing failed: {other:?}"),
        }
    }
    m
}

/// Must fail to parse, or parse and fail validation.
fn invalid(raw: &[u8]) -> ParseError {
    match Message::parse(raw) {
        Err(e) => e,
        Ok(m) => match m.validate() {
            Err(e) => e,
            Ok(()) => panic!("accepted an invalid message"),
        },
    }
}

/// Must parse (a 400 can be built from it) but fail validation.
fn parses_but_invalid(raw: &[u8]) -> ParseError {
    let m = Message::parse(raw).unwrap_or_else(|e| panic!("should parse, got {e}"));
    // the proxy can still answer it
    let resp = Message::response_to(&m, 400, "Bad Request");
    assert!(Message::parse(&resp.to_bytes()).is_ok());
    m.validate().expect_err("validate should fail")
}

// ---------------------------------------------------------------- 3.1.1 valid

#[test]
fn wsinv() {
    let raw = crlf(
        &(String::from(
            r#"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

"#,
        ) + &sdp("192.0.2.3", "192.0.2.4")),
    );
    let m = valid(&raw);
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.body.len(), 150);
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(
        m.cseq(),
        Some(CSeq {
            seq: 9,
            method: Method::Invite
        })
    );
    let to = NameAddr::parse(&m.header_value("to").unwrap()).unwrap();
    assert_eq!(to.uri, "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = NameAddr::parse(&m.header_value("from").unwrap()).unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    let vias: Vec<Via> = m
        .values("via")
        .iter()
        .map(|v| Via::parse(v).unwrap())
        .collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (vias[0].host.as_str(), vias[0].transport.as_str()),
        ("192.0.2.2", "UDP")
    );
    assert_eq!(vias[1].host, "spindle.example.com");
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].host, "192.168.255.111");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(m.header_value("subject").as_deref(), Some(""));
    assert_eq!(
        m.header_value("NewFangledHeader").as_deref(),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        m.header_value("UnknownHeaderWithUnusualValue").as_deref(),
        Some(";;,,;;,;")
    );
    let contact = NameAddr::parse(&m.values("contact")[0]).unwrap();
    assert_eq!(contact.display.as_deref(), Some(r#"Quoted string """#));
    assert_eq!(contact.param("newparam"), Some(Some("newvalue")));
    assert_eq!(contact.param("secondparam"), Some(None));
    assert_eq!(contact.param("q"), Some(Some("0.33")));
    assert_eq!(m.content_length(), Some(150));
    // the proxy pops the top Via; only that header is rebuilt
    let mut m2 = m.clone();
    assert_eq!(
        m2.remove_first_value("via").as_deref(),
        Some("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw")
    );
    let out = String::from_utf8(m2.to_bytes()).unwrap();
    assert!(out.contains("v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch"));
}

#[test]
fn intmeth() {
    let raw = crlf(concat!(
        "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\n",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\n",
        "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\n",
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com> ;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.\n",
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\n",
        "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\n",
        "Max-Forwards: 255\n",
        "extensionHeader-!.%*+_`'~: \u{feff}\u{5927}\u{505c}\u{96fb}\n",
        "Content-Length: 0\n",
        "\n",
    ));
    let m = valid(&raw);
    assert_eq!(
        m.method(),
        Some(&Method::Other(
            "!interesting-Method0123456789_*+`.%indeed'~".into()
        ))
    );
    let ruri = SipUri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(
        ruri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        ruri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(ruri.host, "example.com");
    assert_eq!(ruri.to_string(), m.request_uri().unwrap());
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let to = NameAddr::parse(&m.header_value("to").unwrap()).unwrap();
    assert_eq!(to.display.as_deref(), Some("BEL:\x07 NUL:\x00 DEL:\x7F"));
    let from = NameAddr::parse(&m.header_value("from").unwrap()).unwrap();
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        m.call_id().as_deref(),
        Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(m.max_forwards(), Some(255));
    assert!(m.header("extensionHeader-!.%*+_`'~").is_some());
}

#[test]
fn esc01() {
    let raw = crlf(
        &(String::from(
            r#"INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 150

"#,
        ) + &sdp("192.0.2.1", "192.0.2.1")),
    );
    let m = valid(&raw);
    let ruri = SipUri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(ruri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(
        ruri.user_decoded().as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(
        ruri.to_string(),
        "sip:sips%3Auser%40example.com@example.net"
    );
    let from = NameAddr::parse(&m.header_value("f").unwrap()).unwrap();
    let u = SipUri::parse(&from.uri).unwrap();
    assert_eq!(u.to_string(), "sip:I%20have%20spaces@example.net");
    let c = NameAddr::parse(&m.values("m")[0]).unwrap();
    let cu = SipUri::parse(&c.uri).unwrap();
    assert_eq!(cu.param("%6C%72"), Some(None));
    assert_eq!(cu.to_string(), c.uri);
    assert_eq!(
        m.header_value("content-type").as_deref(),
        Some("application/sdp")
    );
    assert_eq!(
        m.call_id().as_deref(),
        Some("esc01.239409asdfakjkn23onasd0-3234")
    );
}

#[test]
fn escnull() {
    let raw = crlf(
        r#"REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

"#,
    );
    let m = valid(&raw);
    let contacts = m.values("contact");
    assert_eq!(contacts.len(), 2);
    let u = SipUri::parse(&NameAddr::parse(&contacts[1]).unwrap().uri).unwrap();
    assert_eq!(u.user.as_deref(), Some("%00%00"));
    assert_eq!(u.user_decoded().as_deref(), Some("\0\0"));
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn esc02() {
    let raw = crlf(
        r#"RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209323
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

"#,
    );
    let m = valid(&raw);
    // % is not an escape in a method or a header name
    assert_eq!(m.method(), Some(&Method::Other("RE%47IST%45R".into())));
    assert_ne!(m.method(), Some(&Method::Register));
    assert_eq!(m.values("contact").len(), 2);
    assert!(m.header("C%6Fntact").is_some());
    let to = NameAddr::parse(&m.header_value("to").unwrap()).unwrap();
    assert_eq!(to.display.as_deref(), Some("%Z%45"));
}

#[test]
fn lwsdisp() {
    let raw = crlf(
        r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

"#,
    );
    let m = valid(&raw);
    let from = NameAddr::parse(&m.header_value("from").unwrap()).unwrap();
    assert_eq!(from.display.as_deref(), Some("caller"));
    assert_eq!(from.uri, "sip:caller@example.com");
    assert_eq!(from.tag(), Some("323"));
}

/// Reconstructed from the RFC's `<repeat>` notation.
#[test]
fn longreq() {
    let r = |s: &str, n: usize| s.repeat(n);
    let mut msg = String::from("INVITE sip:user@example.com SIP/2.0\n");
    msg += &format!(
        "To: \"I have a user name of {} proportion\"<sip:user@example.com:6000;unknownparam1=very{}value;longparam{}=shortvalue;very{}ParameterNameWithNoValue>\n",
        r("extreme", 10),
        r("long", 20),
        r("name", 25),
        r("long", 25)
    );
    msg += &format!(
        "F: sip:{}@example.net;tag=12{}424;unknownheaderparam{}=unknowheaderparam{};unknownValuelessparam{}\n",
        r("amazinglylongcallername", 5),
        r("982", 50),
        r("name", 20),
        r("value", 15),
        r("name", 10)
    );
    msg += &format!("Call-ID: longreq.one{}longcallid\n", r("really", 20));
    msg += "CSeq: 3882340 INVITE\n";
    msg += &format!(
        "Unknown-{}-Name: unknown-{}-value; unknown-{}-parameter-name = unknown-{}-parameter-value\n",
        r("Long", 20),
        r("long", 20),
        r("long", 20),
        r("long", 20)
    );
    msg += "Via: SIP/2.0/TCP sip33.example.com\n";
    for i in (1..=32).rev() {
        let name = ["v", "V", "Via", "ViA"][i % 4];
        msg += &format!("{name}: SIP/2.0/TCP sip{i}.example.com\n");
    }
    msg += "Max-Forwards: 70\n";
    msg += &format!(
        "Contact: <sip:amazinglylongcallername{}@host5.example.net>\n",
        r("amazinglylongcallername", 5)
    );
    msg += "Content-Type: application/sdp\nl: 150\n\n";
    msg += &sdp("192.0.2.1", "192.0.2.1");
    let raw = crlf(&msg);
    let m = valid(&raw);
    assert_eq!(m.values("via").len(), 33);
    assert_eq!(m.top_via().unwrap().host, "sip33.example.com");
    let to = NameAddr::parse(&m.header_value("to").unwrap()).unwrap();
    assert!(to.display.unwrap().contains("extremeextreme"));
    let from = NameAddr::parse(&m.header_value("from").unwrap()).unwrap();
    assert_eq!(from.tag().unwrap().len(), 2 + 150 + 3);
    assert_eq!(m.body.len(), 150);
}

#[test]
fn dblreq() {
    // The trailing INVITE is noise after a complete REGISTER (datagram
    // semantics); over a stream the same bytes are two messages.
    let register = r#"REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0

"#;
    let invite = String::from(
        r#"INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 152

"#,
    ) + &sdp("192.0.2.15", "192.0.2.15");
    let raw = crlf(&format!("{register}\n{invite}"));
    let m = valid(&raw);
    assert_eq!(m.method(), Some(&Method::Register));
    assert!(m.body.is_empty());
    assert!(!String::from_utf8_lossy(&m.to_bytes()).contains("INVITE"));
    // stream: REGISTER, (CRLF skipped), INVITE
    let mut f = Framer::new(4096);
    f.buffer_mut().extend_from_slice(&raw);
    let mut frames = Vec::new();
    while let Some(fr) = f.next_frame().unwrap() {
        frames.push(fr);
    }
    assert_eq!(frames.len(), 2);
    let Frame::Message(second) = &frames[1] else {
        panic!("{frames:?}")
    };
    let inv = valid(second);
    assert_eq!(inv.method(), Some(&Method::Invite));
    assert_eq!(inv.body.len(), 152);
}

#[test]
fn semiuri() {
    let raw = crlf(
        r#"OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

"#,
    );
    let m = valid(&raw);
    let u = SipUri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(u.host, "example.com");
    assert!(u.params.is_empty());
    assert_eq!(m.values("accept").len(), 6);
}

#[test]
fn transports() {
    let raw = crlf(
        r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

"#,
    );
    let m = valid(&raw);
    let t: Vec<String> = m
        .values("via")
        .iter()
        .map(|v| Via::parse(v).unwrap().transport)
        .collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(
        m.call_id().as_deref(),
        Some("transports.kijh4akdnaqjkwendsasfdj")
    );
}

/// Reconstructed: the RFC's S/MIME signature bytes are not reproduced, but
/// the structure is (multipart/signed, a binary part containing NUL and
/// high bytes, Content-Length counting octets).
#[test]
fn mpart01() {
    let mut body: Vec<u8> = Vec::new();
    body.extend_from_slice(
        b"------=_NextPart_000_0001_01C5BE1B.B4F0C5B0\r\nContent-Type: text/plain\r\n\
Content-Transfer-Encoding: binary\r\n\r\nKumiko-chan, ohayo!\r\n\r\n\
------=_NextPart_000_0001_01C5BE1B.B4F0C5B0\r\n\
Content-Type: application/pkcs7-signature; name=smime.p7s\r\n\
Content-Transfer-Encoding: binary\r\nContent-Disposition: attachment; filename=smime.p7s\r\n\r\n",
    );
    body.extend_from_slice(&[
        0x30, 0x82, 0x01, 0x52, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
        0xa0, 0x82, 0x01, 0x43, 0x30, 0x00, 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0xff, 0xfe, 0x80,
    ]);
    body.extend_from_slice(b"\r\n------=_NextPart_000_0001_01C5BE1B.B4F0C5B0--\r\n");
    let head = format!(
        "MESSAGE sip:kumiko@example.org SIP/2.0\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\n\
Max-Forwards: 70\n\
Route: <sip:127.0.0.1:5080>\n\
Identity-Info: <http://127.0.0.1:5080/identity.cer>;alg=rsa-sha1\n\
Contact: <sip:fluffy@127.0.0.1:5070>\n\
To: <sip:kumiko@example.org>\n\
From: <sip:fluffy@example.com>;tag=2fb0dcc9\n\
Call-ID: 3d9485ad0c49859b@Q02OTk4NThlNTY0\n\
CSeq: 1 MESSAGE\n\
Accept: application/sdp, application/pkcs7-mime, multipart/signed, text/plain, message/cpim\n\
Content-Type: multipart/signed;boundary=\"----=_NextPart_000_0001_01C5BE1B.B4F0C5B0\";micalg=sha1;protocol=\"application/pkcs7-signature\"\n\
Content-Length: {}\n\n",
        body.len()
    );
    let mut raw = crlf(&head);
    raw.extend_from_slice(&body);
    let m = valid(&raw);
    assert_eq!(&m.body[..], &body[..]);
    assert_eq!(m.method(), Some(&Method::Message));
    // split at every byte boundary of the binary part still frames the same
    for cut in raw.len() - 60..raw.len() {
        let mut f = Framer::new(8192);
        f.buffer_mut().extend_from_slice(&raw[..cut]);
        assert!(f.next_frame().unwrap().is_none());
        f.buffer_mut().extend_from_slice(&raw[cut..]);
        assert_eq!(
            f.next_frame().unwrap(),
            Some(Frame::Message(Bytes::from(raw.clone())))
        );
    }
}

#[test]
fn unreason() {
    let raw = crlf(
        &(String::from(
            "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}\n",
        ) + r#"Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

"# + &sdp("192.0.2.198", "192.0.2.198")),
    );
    let m = valid(&raw);
    assert_eq!(m.status(), Some(200));
    assert!(!m.is_request());
    assert_eq!(m.body.len(), 154);
}

#[test]
fn noreason() {
    let raw = crlf(concat!(
        "SIP/2.0 100 \n",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n",
        "Call-ID: noreason.asndj203insdf99223ndf\n",
        "CSeq: 35 INVITE\n",
        "From: <sip:user@example.com>;tag=39ansfi3\n",
        "To: <sip:user@example.edu>;tag=902jndnke3\n",
        "Content-Length: 0\n",
        "Contact: <sip:user@host105.example.com>\n",
        "\n",
    ));
    let m = valid(&raw);
    assert_eq!(m.status(), Some(100));
}

// ---------------------------------------------- 3.3 valid-syntax semantics

#[test]
fn unknown_schemes_parse() {
    // unkscm / novelsc: a proxy answers 416 but the message is well formed
    for ruri in [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
    ] {
        let raw = crlf(&format!(
            "OPTIONS {ruri} SIP/2.0\nTo: sip:user@example.com\nFrom: sip:caller@example.net;tag=384\n\
Max-Forwards: 3\nCall-ID: unkscm.nasdfasser0q239nwsdfasdkl34\nCSeq: 3923423 OPTIONS\n\
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\nContent-Length: 0\n\n"
        ));
        let m = valid(&raw);
        assert!(SipUri::parse(m.request_uri().unwrap()).is_err());
    }
}

#[test]
fn zero_max_forwards_and_2543_via() {
    // zeromf: valid, the proxy answers 483; inv2543: no branch parameter
    let raw = crlf(
        "OPTIONS sip:user@example.com SIP/2.0\nCall-ID: zeromf.3l3lkf@example.net\nCSeq: 39234321 OPTIONS\n\
From: <sip:caller@example.net>;tag=2934932\nTo: <sip:user@example.com>\nMax-Forwards: 0\n\
Via: SIP/2.0/UDP 192.0.2.8\nl: 0\n\n",
    );
    let m = valid(&raw);
    assert_eq!(m.max_forwards(), Some(0));
    assert_eq!(m.top_via().unwrap().branch(), None);
}

// -------------------------------------------------------------- 3.1.2 invalid

const BAD_SDP_HEAD: &str = "Content-Type: application/sdp\n";

#[test]
fn badinv01() {
    let raw = crlf(
        &(String::from(
            r#"INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: 152
Content-Type: application/sdp

"#,
        ) + &sdp("192.0.2.15", "192.0.2.15")),
    );
    let e = parses_but_invalid(&raw);
    assert!(matches!(e, ParseError::Invalid { .. }), "{e}");
}

#[test]
fn clerr() {
    let raw = crlf(
        &(String::from(
            r#"INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

"#,
        ) + &sdp("192.0.2.155", "192.0.2.155")),
    );
    assert!(matches!(
        invalid(&raw),
        ParseError::Truncated { expected: 9999, .. }
    ));
    // over a stream the framer waits for the rest, bounded by the max size
    let mut f = Framer::new(4096);
    f.buffer_mut().extend_from_slice(&raw);
    assert!(matches!(
        f.next_frame(),
        Err(vsip::sip::FrameError::Oversize { head: Some(_) })
    ));
    let mut f = Framer::new(64 * 1024);
    f.buffer_mut().extend_from_slice(&raw);
    assert_eq!(f.next_frame(), Ok(None));
}

#[test]
fn ncl() {
    let raw = crlf(
        &(String::from(
            r#"INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

"#,
        ) + &sdp("192.0.2.53", "192.0.2.53")),
    );
    assert!(matches!(invalid(&raw), ParseError::ContentLength(_)));
    let mut f = Framer::new(4096);
    f.buffer_mut().extend_from_slice(&raw);
    assert!(matches!(
        f.next_frame(),
        Err(vsip::sip::FrameError::BadContentLength { .. })
    ));
}

#[test]
fn scalar02() {
    let raw = crlf(&format!(
        "REGISTER sip:example.com SIP/2.0\n\
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\n\
To: <sip:user@example.com>\n\
From: <sip:user@example.com>;tag=239232jh3\n\
CSeq: 36893488147419103232 REGISTER\n\
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\n\
Max-Forwards: 300\n\
Expires: 1{}\n\
Contact: <sip:user@host129.example.com>\n  ;expires=280297596632815\n\
Content-Length: 0\n\n",
        "0".repeat(100)
    ));
    let e = parses_but_invalid(&raw);
    assert!(matches!(e, ParseError::Invalid { what: "CSeq", .. }), "{e}");
}

#[test]
fn scalarlg() {
    let raw = crlf(
        r#"SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

"#,
    );
    let e = parses_but_invalid(&raw);
    assert!(matches!(e, ParseError::Invalid { what: "CSeq", .. }), "{e}");
}

#[test]
fn quotbal() {
    let raw = crlf(
        &(String::from(
            r#"INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 152

"#,
        ) + &sdp("192.0.2.15", "192.0.2.15")),
    );
    let e = parses_but_invalid(&raw);
    assert!(
        matches!(
            e,
            ParseError::Invalid {
                what: "name-addr",
                ..
            }
        ),
        "{e}"
    );
}

fn sdp_request(start: &str, extra: &str) -> Vec<u8> {
    let body = sdp("192.0.2.1", "192.0.2.1");
    crlf(&format!(
        "{start}\nTo: sip:user@example.com\nFrom: sip:caller@example.net;tag=39291\nMax-Forwards: 23\n\
Call-ID: torture.1@192.0.2.5\nCSeq: 1 INVITE\nVia: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKkdjuw\n\
Contact: <sip:caller@host5.example.net>\n{extra}{BAD_SDP_HEAD}Content-Length: {}\n\n{body}",
        body.len() + body.matches('\n').count()
    ))
}

#[test]
fn sdp_request_helper_is_valid() {
    valid(&sdp_request("INVITE sip:user@example.com SIP/2.0", ""));
}

#[test]
fn ltgtruri() {
    let e = invalid(&sdp_request("INVITE <sip:user@example.com> SIP/2.0", ""));
    assert!(matches!(e, ParseError::StartLine(_)), "{e}");
}

#[test]
fn lwsruri() {
    let e = invalid(&sdp_request("INVITE sip:user@example.com; lr SIP/2.0", ""));
    assert!(matches!(e, ParseError::StartLine(_)), "{e}");
}

#[test]
fn lwsstart() {
    let e = invalid(&sdp_request("INVITE  sip:user@example.com  SIP/2.0", ""));
    assert!(matches!(e, ParseError::StartLine(_)), "{e}");
}

#[test]
fn trws() {
    let raw = crlf(concat!(
        "OPTIONS sip:remote-target@example.com SIP/2.0  \n",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093\n",
        "To: <sip:remote-target@example.com>\n",
        "From: <sip:local-resource@example.com>;tag=329429089\n",
        "Call-ID: trws.oicu34958239neffasdhr2345r\n",
        "Accept: application/sdp\n",
        "CSeq: 238923 OPTIONS\n",
        "Max-Forwards: 70\n",
        "Content-Length: 0\n",
        "\n",
    ));
    let e = invalid(&raw);
    assert!(
        matches!(e, ParseError::StartLine(_) | ParseError::Version(_)),
        "{e}"
    );
}

#[test]
fn escruri() {
    let e = parses_but_invalid(&sdp_request(
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
        "",
    ));
    assert!(
        matches!(
            e,
            ParseError::Invalid {
                what: "Request-URI",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn baddate() {
    let e = parses_but_invalid(&sdp_request(
        "INVITE sip:user@example.com SIP/2.0",
        "Date: Fri, 01 Jan 2010 16:00:00 EST\n",
    ));
    assert!(matches!(e, ParseError::Invalid { what: "Date", .. }), "{e}");
}

#[test]
fn regbadct() {
    let raw = crlf(
        r#"REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0

"#,
    );
    let e = parses_but_invalid(&raw);
    assert!(
        matches!(
            e,
            ParseError::Invalid {
                what: "name-addr",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn badaspec() {
    let raw = crlf(
        r#"OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

"#,
    );
    let e = parses_but_invalid(&raw);
    assert!(
        matches!(
            e,
            ParseError::Invalid {
                what: "name-addr",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn baddn() {
    let raw = crlf(
        r#"OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0

"#,
    );
    let e = parses_but_invalid(&raw);
    assert!(
        matches!(
            e,
            ParseError::Invalid {
                what: "name-addr",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn badvers() {
    let raw = crlf(
        r#"OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

"#,
    );
    assert!(matches!(invalid(&raw), ParseError::Version(_)));
}

#[test]
fn mismatch01() {
    let raw = crlf(
        r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0

"#,
    );
    let e = parses_but_invalid(&raw);
    assert!(matches!(e, ParseError::Invalid { what: "CSeq", .. }), "{e}");
}

#[test]
fn mismatch02() {
    let raw = crlf(
        r#"NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
l: 0

"#,
    );
    let e = parses_but_invalid(&raw);
    assert!(matches!(e, ParseError::Invalid { what: "CSeq", .. }), "{e}");
}

#[test]
fn bigcode() {
    let raw = crlf(
        r#"SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

"#,
    );
    assert!(matches!(invalid(&raw), ParseError::StatusCode(_)));
}

// ------------------------------------------------ 3.3 transaction-layer bad

#[test]
fn insuf() {
    let raw = crlf(
        &(String::from(
            r#"INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 152

"#,
        ) + &sdp("192.0.2.95", "192.0.2.95")),
    );
    let e = parses_but_invalid(&raw);
    assert!(matches!(e, ParseError::MissingHeader(_)), "{e}");
}

#[test]
fn multi01() {
    let raw = crlf(
        r#"INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: 0
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5

"#,
    );
    let e = parses_but_invalid(&raw);
    assert!(matches!(e, ParseError::DuplicateHeader(_)), "{e}");
}

#[test]
fn mcl01() {
    let raw = crlf(
        r#"OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
"#,
    );
    assert!(matches!(invalid(&raw), ParseError::ContentLength(_)));
    let mut f = Framer::new(4096);
    f.buffer_mut().extend_from_slice(&raw);
    assert!(f.next_frame().is_err());
}

// ------------------------------------------- the rsip failures (see evidence)

#[test]
fn rsip_failing_inputs_work_here() {
    // IPv6 in Via and Contact
    let raw = crlf(
        "INVITE sip:+15551234567@sbc.example.com SIP/2.0\n\
Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK-v6\n\
Max-Forwards: 70\nFrom: <sip:alice@example.com>;tag=1\nTo: <sip:+15551234567@sbc.example.com>\n\
Call-ID: v6@example.com\nCSeq: 1 INVITE\nContact: <sip:alice@[2001:db8::1]:5070;transport=tcp>\n\
Content-Length: 0\n\n",
    );
    let m = valid(&raw);
    let via = m.top_via().unwrap();
    assert_eq!((via.host.as_str(), via.port), ("[2001:db8::1]", Some(5070)));
    let c = SipUri::parse(&NameAddr::parse(&m.values("contact")[0]).unwrap().uri).unwrap();
    assert_eq!(c.host_ip(), Some("2001:db8::1".parse().unwrap()));
    // compact forms
    let raw = crlf(
        "OPTIONS sip:a@example.com SIP/2.0\nv: SIP/2.0/TCP h.example.com;branch=z9hG4bK1\n\
f: <sip:b@example.com>;tag=2\nt: <sip:a@example.com>\ni: compact@h\nCSeq: 1 OPTIONS\n\
m: <sip:b@h.example.com>\nl: 0\n\n",
    );
    let m = valid(&raw);
    assert_eq!(m.call_id().as_deref(), Some("compact@h"));
    assert_eq!(m.header("from").unwrap().name(), "f");
    assert_eq!(m.content_length(), Some(0));
    // folded header line
    let raw = crlf(
        "OPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/TCP h.example.com\n ;branch=z9hG4bK1\n\
From: <sip:b@example.com>;tag=2\nTo: <sip:a@example.com>\nCall-ID: fold@h\nCSeq: 1 OPTIONS\n\
Subject: a folded\n  subject\nContent-Length: 0\n\n",
    );
    let m = valid(&raw);
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK1"));
    assert_eq!(
        m.header_value("subject").as_deref(),
        Some("a folded subject")
    );
    // two pipelined messages: Content-Length separates them
    let one = crlf(
        "OPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\nFrom: <sip:b@e>;tag=2\n\
To: <sip:a@e>\nCall-ID: p1@h\nCSeq: 1 OPTIONS\nContent-Length: 5\n\nhello",
    );
    let two = crlf(
        "OPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\nFrom: <sip:b@e>;tag=2\n\
To: <sip:a@e>\nCall-ID: p2@h\nCSeq: 2 OPTIONS\nContent-Length: 0\n\n",
    );
    let both = [one.clone(), two.clone()].concat();
    let m = Message::parse(&both).unwrap();
    assert_eq!(&m.body[..], b"hello");
    let mut f = Framer::new(4096);
    f.buffer_mut().extend_from_slice(&both);
    assert_eq!(
        f.next_frame().unwrap(),
        Some(Frame::Message(Bytes::from(one)))
    );
    assert_eq!(
        f.next_frame().unwrap(),
        Some(Frame::Message(Bytes::from(two)))
    );
    // percent-encoded user survives re-serialisation
    let u = SipUri::parse("sip:b%20ob@example.com").unwrap();
    assert_eq!(u.to_string(), "sip:b%20ob@example.com");
    let mut m = Message::parse(&crlf(
        "INVITE sip:b%20ob@example.com SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\n\
From: <sip:b@e>;tag=2\nTo: <sip:b%20ob@example.com>\nCall-ID: pe@h\nCSeq: 1 INVITE\nl: 0\n\n",
    ))
    .unwrap();
    m.set_request_uri(SipUri::parse(m.request_uri().unwrap()).unwrap().to_string());
    let out = String::from_utf8(m.to_bytes()).unwrap();
    assert!(out.starts_with("INVITE sip:b%20ob@example.com SIP/2.0\r\n"));
    assert!(out.contains("To: <sip:b%20ob@example.com>\r\n"));
    assert!(!out.contains("%25"));
}
