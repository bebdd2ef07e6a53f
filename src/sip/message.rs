//! SIP messages (RFC 3261 §7): start line, header fields, body.
//!
//! Parsing is strict about structure (start line, header syntax,
//! Content-Length) and lazy about header contents: each header keeps its
//! original bytes (including line folding) so that headers the proxy does not
//! touch are forwarded byte for byte. Typed views (Via, CSeq, name-addr) are
//! parsed on demand; [`Message::validate`] runs the semantic checks a proxy
//! needs before acting on a message (and lets it answer `400` when they fail,
//! since the message itself could still be parsed).

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

pub use super::{error::ParseError, method::Method};
use super::{
    head::{find_head_end, lines, parse_content_length},
    headers::{CSeq, NameAddr, Via, split_list},
    names::names_equal,
    text::{is_token, is_token_char, is_wsp, parse_digits, snippet, trim_wsp},
    uri::SipUri,
};

/// Maximum number of header fields in one message.
pub const MAX_HEADERS: usize = 256;
/// Maximum length of one physical line (start line or header line), bytes.
pub const MAX_LINE: usize = 16 * 1024;
/// Maximum length of one header field including its continuation lines.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// Request-Line or Status-Line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        uri: String,
        version: String,
    },
    Response {
        version: String,
        code: u16,
        reason: String,
    },
}

impl fmt::Display for StartLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartLine::Request {
                method,
                uri,
                version,
            } => write!(f, "{method} {uri} {version}"),
            StartLine::Response {
                version,
                code,
                reason,
            } => write!(f, "{version} {code} {reason}"),
        }
    }
}

pub const SIP_VERSION: &str = "SIP/2.0";

impl StartLine {
    fn parse(line: &[u8]) -> Result<StartLine, ParseError> {
        if line.starts_with(b"SIP/") {
            return Self::parse_status(line);
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| ParseError::StartLine("request line is not valid UTF-8".into()))?;
        let mut parts = line.split(' ');
        let (Some(method), Some(uri), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::StartLine(format!(
                "expected `Method SP Request-URI SP SIP-Version`, got {:?}",
                snippet(line)
            )));
        };
        if !is_token(method) {
            return Err(ParseError::StartLine(format!(
                "invalid method {:?}",
                snippet(method)
            )));
        }
        if !valid_request_uri(uri) {
            return Err(ParseError::StartLine(format!(
                "invalid Request-URI {:?}",
                snippet(uri)
            )));
        }
        if version != SIP_VERSION {
            return Err(ParseError::Version(snippet(version)));
        }
        Ok(StartLine::Request {
            method: Method::parse(method),
            uri: uri.to_string(),
            version: version.to_string(),
        })
    }

    fn parse_status(line: &[u8]) -> Result<StartLine, ParseError> {
        let sp = line.iter().position(|&b| b == b' ');
        let (version, rest) = match sp {
            Some(i) => (
                line.get(..i).unwrap_or(&[]),
                line.get(i + 1..).unwrap_or(&[]),
            ),
            None => (line, &[][..]),
        };
        if version != SIP_VERSION.as_bytes() {
            return Err(ParseError::Version(snippet(&String::from_utf8_lossy(
                version,
            ))));
        }
        let (code, reason) = match rest.iter().position(|&b| b == b' ') {
            Some(i) => (
                rest.get(..i).unwrap_or(&[]),
                rest.get(i + 1..).unwrap_or(&[]),
            ),
            None => (rest, &[][..]),
        };
        let code_str = String::from_utf8_lossy(code);
        let valid = code.len() == 3 && code.iter().all(u8::is_ascii_digit);
        let n: u16 = if valid {
            code_str.parse().unwrap_or(0)
        } else {
            0
        };
        if !(100..=699).contains(&n) {
            return Err(ParseError::StatusCode(snippet(&code_str)));
        }
        if reason.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
            return Err(ParseError::StartLine(
                "control character in reason phrase".into(),
            ));
        }
        Ok(StartLine::Response {
            version: SIP_VERSION.to_string(),
            code: n,
            reason: String::from_utf8_lossy(reason).into_owned(),
        })
    }
}

/// `scheme ":" 1*(non-space, non-control)`; scheme = ALPHA *(ALPHA/DIGIT/+/-/.)
fn valid_request_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut sb = scheme.bytes();
    sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        && sb.all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b > 0x20 && b != 0x7f && b != b'<' && b != b'>' && b != b'"')
}

/// One header field. Parsed headers keep their original bytes (including
/// line folding) and are re-emitted unchanged; headers created with
/// [`Header::new`] are rendered as `Name: value`.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// The whole field without its final line terminator.
    raw: Bytes,
    /// `raw[..name_end]` is the name as written.
    name_end: usize,
    /// `raw[value_start..]` is the (still folded) value.
    value_start: usize,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Header({:?})", String::from_utf8_lossy(&self.raw))
    }
}

impl Header {
    /// Builds a header. Characters that would break the framing are
    /// neutralised: a name is reduced to token characters, CR/LF in the value
    /// become spaces (no header injection through values).
    pub fn new(name: &str, value: &str) -> Header {
        let name: String = name
            .bytes()
            .filter(|&b| is_token_char(b))
            .map(char::from)
            .collect();
        let value = value.replace(['\r', '\n'], " ");
        let raw = format!("{name}: {value}");
        Header {
            name_end: name.len(),
            value_start: name.len() + 1,
            raw: Bytes::from(raw),
        }
    }

    /// The name as written, e.g. `v` or `Via`.
    pub fn name(&self) -> &str {
        self.raw
            .get(..self.name_end)
            .and_then(|n| std::str::from_utf8(n).ok())
            .unwrap_or("")
    }

    /// Case-insensitive name comparison; compact forms match their full name.
    pub fn is(&self, canonical: &str) -> bool {
        names_equal(self.name(), canonical)
    }

    /// The value, unfolded (CRLF + whitespace → single SP) and trimmed.
    /// Invalid UTF-8 is replaced (U+FFFD); use [`Header::raw`] for the bytes.
    pub fn value(&self) -> Cow<'_, str> {
        let v = self.raw.get(self.value_start..).unwrap_or(&[]);
        if !v.iter().any(|&b| b == b'\r' || b == b'\n') {
            return match String::from_utf8_lossy(v) {
                Cow::Borrowed(s) => Cow::Borrowed(trim_wsp(s)),
                Cow::Owned(s) => Cow::Owned(trim_wsp(&s).to_string()),
            };
        }
        let mut out: Vec<u8> = Vec::with_capacity(v.len());
        let mut i = 0;
        while let Some(&b) = v.get(i) {
            if b == b'\r' || b == b'\n' {
                while out.last().is_some_and(|&b| is_wsp(b)) {
                    out.pop();
                }
                while v
                    .get(i)
                    .is_some_and(|&b| b == b'\r' || b == b'\n' || is_wsp(b))
                {
                    i += 1;
                }
                out.push(b' ');
            } else {
                out.push(b);
                i += 1;
            }
        }
        Cow::Owned(trim_wsp(&String::from_utf8_lossy(&out)).to_string())
    }

    /// The field exactly as it will be written (without the final CRLF).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}

/// A parsed SIP request or response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

impl Message {
    /// Parses one complete message. Leading CRLFs are skipped. With a
    /// Content-Length the body is exactly that many bytes (fewer is an error,
    /// extra bytes are ignored as RFC 3261 §18.3 requires for datagrams);
    /// without one the body is the rest of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        let mut start = 0;
        loop {
            match (buf.get(start), buf.get(start + 1)) {
                (Some(b'\r'), Some(b'\n')) => start += 2,
                (Some(b'\n'), _) => start += 1,
                _ => break,
            }
        }
        let buf = buf.get(start..).unwrap_or(&[]);
        if buf.is_empty() {
            return Err(ParseError::Empty);
        }
        let body_start = find_head_end(buf, 0).ok_or(ParseError::Incomplete)?;
        let head = Bytes::copy_from_slice(buf.get(..body_start).unwrap_or(&[]));

        let mut start_line = None;
        let mut headers: Vec<Header> = Vec::new();
        // (start, end, name_end, value_start) of the header being collected
        let mut cur: Option<(usize, usize, usize, usize)> = None;
        let push = |cur: Option<(usize, usize, usize, usize)>,
                    headers: &mut Vec<Header>|
         -> Result<(), ParseError> {
            if let Some((s, e, ne, vs)) = cur {
                if e - s > MAX_HEADER_LEN {
                    return Err(ParseError::LineTooLong(MAX_HEADER_LEN));
                }
                if headers.len() >= MAX_HEADERS {
                    return Err(ParseError::TooManyHeaders(MAX_HEADERS));
                }
                headers.push(Header {
                    raw: head.slice(s..e),
                    name_end: ne - s,
                    value_start: vs - s,
                });
            }
            Ok(())
        };
        for (s, e, _) in lines(&head) {
            let line = head.get(s..e).unwrap_or(&[]);
            if line.len() > MAX_LINE {
                return Err(ParseError::LineTooLong(MAX_LINE));
            }
            if line.contains(&b'\r') {
                return Err(ParseError::HeaderLine("bare CR inside a line".into()));
            }
            if start_line.is_none() {
                start_line = Some(StartLine::parse(line)?);
                continue;
            }
            if line.is_empty() {
                break; // end of header block
            }
            if line.first().is_some_and(|&b| is_wsp(b)) {
                match cur.as_mut() {
                    Some(c) => c.1 = e,
                    None => {
                        return Err(ParseError::HeaderLine(
                            "continuation line before the first header".into(),
                        ));
                    }
                }
                continue;
            }
            push(cur.take(), &mut headers)?;
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(ParseError::HeaderLine(format!(
                    "no colon in {:?}",
                    snippet(&String::from_utf8_lossy(line))
                )));
            };
            let raw_name = line.get(..colon).unwrap_or(&[]);
            let name_len =
                raw_name.len() - raw_name.iter().rev().take_while(|&&b| is_wsp(b)).count();
            let name = raw_name.get(..name_len).unwrap_or(&[]);
            if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
                return Err(ParseError::HeaderLine(format!(
                    "invalid header name {:?}",
                    snippet(&String::from_utf8_lossy(raw_name))
                )));
            }
            cur = Some((s, e, s + name_len, s + colon + 1));
        }
        push(cur.take(), &mut headers)?;
        let start = start_line.ok_or(ParseError::Empty)?;

        let mut msg = Message {
            start,
            headers,
            body: Bytes::new(),
        };
        let rest = buf.get(body_start..).unwrap_or(&[]);
        let mut cl: Option<usize> = None;
        for h in msg.headers_named("content-length") {
            let n = parse_content_length(&h.value())?;
            if cl.is_some_and(|c| c != n) {
                return Err(ParseError::ContentLength(
                    "conflicting Content-Length values".into(),
                ));
            }
            cl = Some(n);
        }
        msg.body = match cl {
            Some(n) => match rest.get(..n) {
                Some(b) => Bytes::copy_from_slice(b),
                None => {
                    return Err(ParseError::Truncated {
                        expected: n,
                        available: rest.len(),
                    });
                }
            },
            None => Bytes::copy_from_slice(rest),
        };
        Ok(msg)
    }

    /// Serialises: start line, headers (parsed ones byte for byte), empty
    /// line, body. Line ends are CRLF.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        out.to_vec()
    }

    fn encoded_len(&self) -> usize {
        64 + self.headers.iter().map(|h| h.raw.len() + 2).sum::<usize>() + self.body.len()
    }

    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_slice(self.start.to_string().as_bytes());
        out.put_slice(b"\r\n");
        for h in &self.headers {
            out.put_slice(&h.raw);
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// Replaces the Request-URI (no-op on responses). Whitespace and control
    /// characters are removed so the start line cannot be broken.
    pub fn set_request_uri(&mut self, new: String) {
        if let StartLine::Request { uri, .. } = &mut self.start {
            *uri = if new.bytes().any(|b| b <= 0x20 || b == 0x7f) {
                new.chars()
                    .filter(|c| !c.is_whitespace() && !c.is_control())
                    .collect()
            } else {
                new
            };
        }
    }

    /// First header with this (canonical or compact) name.
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.is(name))
    }

    pub fn header_value(&self, name: &str) -> Option<Cow<'_, str>> {
        self.header(name).map(Header::value)
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Header> + 'a {
        self.headers.iter().filter(move |h| h.is(name))
    }

    /// All comma-separated values across all headers of that name, in order.
    /// Only meaningful for list headers (Via, Route, Record-Route, Contact…).
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers_named(name)
            .flat_map(|h| {
                split_list(&h.value())
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn remove_all(&mut self, name: &str) {
        self.headers.retain(|h| !h.is(name));
    }

    /// Replaces the first header of that name (dropping later ones) in place,
    /// or appends it after the last header.
    pub fn set_header(&mut self, name: &str, value: &str) {
        let new = Header::new(name, value);
        match self.headers.iter().position(|h| h.is(name)) {
            Some(i) => {
                let mut idx = 0;
                self.headers.retain(|h| {
                    let keep = idx <= i || !h.is(name);
                    idx += 1;
                    keep
                });
                if let Some(slot) = self.headers.get_mut(i) {
                    *slot = new;
                }
            }
            None => self.headers.push(new),
        }
    }

    pub fn push_front(&mut self, h: Header) {
        self.headers.insert(0, h);
    }

    /// Inserts before the first header named `name`, else first.
    pub fn insert_before(&mut self, name: &str, h: Header) {
        let i = self.headers.iter().position(|x| x.is(name)).unwrap_or(0);
        self.headers.insert(i, h);
    }

    /// Pops the first comma-separated value of the first header of `name`
    /// (e.g. the top Via or Route). Only that header is rebuilt; it is removed
    /// when it held a single value.
    pub fn remove_first_value(&mut self, name: &str) -> Option<String> {
        loop {
            let i = self.headers.iter().position(|h| h.is(name))?;
            let h = self.headers.get(i)?;
            let value = h.value();
            let items = split_list(&value);
            let Some((first, rest)) = items.split_first() else {
                self.headers.remove(i);
                continue;
            };
            let first = first.to_string();
            if rest.is_empty() {
                self.headers.remove(i);
            } else {
                let rebuilt = Header::new(h.name(), &rest.join(", "));
                if let Some(slot) = self.headers.get_mut(i) {
                    *slot = rebuilt;
                }
            }
            return Some(first);
        }
    }

    /// Replaces the body and sets Content-Length accordingly.
    pub fn set_body(&mut self, body: Bytes) {
        let len = body.len().to_string();
        self.body = body;
        self.set_header("Content-Length", &len);
    }

    pub fn call_id(&self) -> Option<Cow<'_, str>> {
        self.header_value("call-id")
    }

    pub fn cseq(&self) -> Option<CSeq> {
        CSeq::parse(&self.header_value("cseq")?).ok()
    }

    pub fn top_via(&self) -> Option<Via> {
        let h = self.header("via")?;
        let v = h.value();
        let first = split_list(&v).into_iter().next()?;
        Via::parse(first).ok()
    }

    pub fn max_forwards(&self) -> Option<u32> {
        let v = self.header_value("max-forwards")?;
        parse_digits(&v).and_then(|n| u32::try_from(n).ok())
    }

    pub fn content_length(&self) -> Option<usize> {
        parse_content_length(&self.header_value("content-length")?).ok()
    }

    /// Builds a response to `req` (RFC 3261 §8.2.6): copies all Via headers,
    /// From, To, Call-ID and CSeq byte for byte, and adds `Content-Length: 0`.
    pub fn response_to(req: &Message, code: u16, reason: &str) -> Message {
        let headers = req
            .headers
            .iter()
            .filter(|h| {
                h.is("via") || h.is("from") || h.is("to") || h.is("call-id") || h.is("cseq")
            })
            .cloned()
            .collect();
        let mut m = Message {
            start: StartLine::Response {
                version: SIP_VERSION.to_string(),
                code,
                reason: reason.replace(['\r', '\n'], " "),
            },
            headers,
            body: Bytes::new(),
        };
        m.set_header("Content-Length", "0");
        m
    }

    /// Semantic checks a proxy needs before acting on a message; a failure
    /// means "answer 400" (requests) or "drop" (responses):
    /// mandatory headers present (Via, From, To, Call-ID, CSeq) and not
    /// duplicated when single-valued; every Via parses; From/To/Contact/Route/
    /// Record-Route are valid name-addrs; CSeq parses (< 2^31) and matches the
    /// request method; Max-Forwards is 0–255; a sip/sips Request-URI parses and
    /// carries no `?headers`; a Date header uses GMT.
    pub fn validate(&self) -> Result<(), ParseError> {
        const MANDATORY: [(&str, &str); 5] = [
            ("via", "Via"),
            ("from", "From"),
            ("to", "To"),
            ("call-id", "Call-ID"),
            ("cseq", "CSeq"),
        ];
        for (n, label) in MANDATORY {
            if self.header(n).is_none() {
                return Err(ParseError::MissingHeader(label));
            }
        }
        const SINGLE: [(&str, &str); 6] = [
            ("from", "From"),
            ("to", "To"),
            ("call-id", "Call-ID"),
            ("cseq", "CSeq"),
            ("max-forwards", "Max-Forwards"),
            ("content-length", "Content-Length"),
        ];
        for (n, label) in SINGLE {
            if self.headers_named(n).nth(1).is_some() {
                return Err(ParseError::DuplicateHeader(label));
            }
        }
        let vias = self.values("via");
        if vias.is_empty() {
            return Err(ParseError::invalid("Via", "empty"));
        }
        for v in &vias {
            Via::parse(v)?;
        }
        for n in ["from", "to"] {
            let v = self.header_value(n).unwrap_or_default();
            NameAddr::parse(&v)?;
        }
        let call_id = self.call_id().unwrap_or_default();
        if call_id.is_empty() || call_id.bytes().any(|b| b <= 0x20) {
            return Err(ParseError::invalid("Call-ID", snippet(&call_id)));
        }
        let cseq = CSeq::parse(&self.header_value("cseq").unwrap_or_default())?;
        if let Some(m) = self.method()
            && cseq.method.as_str() != m.as_str()
        {
            return Err(ParseError::invalid(
                "CSeq",
                format!("method {} does not match request method {}", cseq.method, m),
            ));
        }
        if let Some(mf) = self.header_value("max-forwards") {
            match parse_digits(&mf) {
                Some(n) if n <= 255 => {}
                _ => {
                    return Err(ParseError::invalid(
                        "Max-Forwards",
                        format!("{:?} is not 0-255", snippet(&mf)),
                    ));
                }
            }
        }
        for c in self.values("contact") {
            if c != "*" {
                NameAddr::parse(&c)?;
            }
        }
        for n in ["route", "record-route"] {
            for r in self.values(n) {
                NameAddr::parse(&r)?;
                if !r.contains('<') {
                    return Err(ParseError::invalid(
                        "Route",
                        format!("{:?} is not in <name-addr> form", snippet(&r)),
                    ));
                }
            }
        }
        if let Some(uri) = self.request_uri() {
            let scheme = uri.split(':').next().unwrap_or("");
            if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
                let u = SipUri::parse(uri)?;
                if u.headers.is_some() {
                    return Err(ParseError::invalid(
                        "Request-URI",
                        "headers (`?…`) are not allowed in a Request-URI",
                    ));
                }
            }
        }
        if let Some(d) = self.header_value("date")
            && !d.ends_with(" GMT")
        {
            return Err(ParseError::invalid("Date", "time zone must be GMT"));
        }
        Ok(())
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+15551234567@sbc.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK1, SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK2\r\n\
v: SIP/2.0/TLS edge.example.com;branch=z9hG4bK3;rport\r\n\
Max-Forwards: 70\r\n\
f: \"Doe, John\" <sip:john@example.com>;tag=a1\r\n\
t: <sip:+15551234567@sbc.example.com>\r\n\
i: call-1@example.com\r\n\
CSeq: 1 INVITE\r\n\
Subject: folded\r\n  across lines\r\n\
m: <sip:john@[2001:db8::1]:5070;transport=tcp>\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
bodyEXTRA";

    #[test]
    fn header_is_matches_compact_and_full_names() {
        assert!(Header::new("l", "0").is("Content-Length"));
        assert!(Header::new("Content-Length", "0").is("l"));
        assert!(!Header::new("Via", "x").is("v-ia"));
    }

    #[test]
    fn parses_request() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:+15551234567@sbc.example.com"));
        assert_eq!(&m.body[..], b"body");
        assert_eq!(m.content_length(), Some(4));
        assert_eq!(m.call_id().as_deref(), Some("call-1@example.com"));
        assert_eq!(m.max_forwards(), Some(70));
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.seq, cseq.method), (1, Method::Invite));
        let via = m.top_via().unwrap();
        assert_eq!(via.host, "[2001:db8::1]");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.branch(), Some("z9hG4bK1"));
        assert_eq!(m.values("via").len(), 3);
        assert_eq!(
            m.header_value("subject").as_deref(),
            Some("folded across lines")
        );
        assert_eq!(m.header("via").unwrap().name(), "Via");
        assert!(m.headers.iter().any(|h| h.name() == "v" && h.is("VIA")));
        m.validate().unwrap();
    }

    #[test]
    fn roundtrip_byte_for_byte() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        let expected = INVITE.strip_suffix("EXTRA").unwrap();
        assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), expected);
        let again = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn editing() {
        let mut m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(
            m.remove_first_value("via").as_deref(),
            Some("SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK1")
        );
        assert_eq!(
            m.header("via").unwrap().raw(),
            b"Via: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK2"
        );
        m.remove_first_value("via");
        assert_eq!(m.header("via").unwrap().name(), "v");
        m.push_front(Header::new("Via", "SIP/2.0/TCP proxy;branch=z9hG4bKp"));
        assert_eq!(m.top_via().unwrap().host, "proxy");
        m.insert_before(
            "max-forwards",
            Header::new("Record-Route", "<sip:proxy;lr>"),
        );
        let idx = |m: &Message, n: &str| m.headers.iter().position(|h| h.is(n)).unwrap();
        assert_eq!(idx(&m, "record-route") + 1, idx(&m, "max-forwards"));
        m.set_header("Max-Forwards", "69");
        assert_eq!(m.max_forwards(), Some(69));
        m.set_body(Bytes::from_static(b"hello"));
        assert_eq!(m.content_length(), Some(5));
        assert_eq!(m.headers_named("content-length").count(), 1);
        m.set_request_uri("sip:x@y;transport=tcp".into());
        let re = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(&re.body[..], b"hello");
        assert_eq!(re.request_uri(), Some("sip:x@y;transport=tcp"));
        m.remove_all("v");
        assert!(m.header("via").is_none());
        assert_eq!(m.remove_first_value("via"), None);
    }

    #[test]
    fn header_injection_is_neutralised() {
        let h = Header::new("X-A\r\n", "a\r\nInjected: 1");
        assert_eq!(h.raw(), b"X-A: a  Injected: 1");
        let mut m = Message::parse(INVITE.as_bytes()).unwrap();
        m.set_request_uri("sip:a@b SIP/2.0\r\nX: y".into());
        assert_eq!(m.request_uri(), Some("sip:a@bSIP/2.0X:y"));
    }

    #[test]
    fn response_and_reply() {
        let req = Message::parse(INVITE.as_bytes()).unwrap();
        let resp = Message::response_to(&req, 404, "Not Found");
        let re = Message::parse(&resp.to_bytes()).unwrap();
        assert_eq!(re.status(), Some(404));
        assert_eq!(re.values("via").len(), 3);
        assert_eq!(re.content_length(), Some(0));
        re.validate().unwrap();
        let noreason = Message::parse(b"SIP/2.0 100 \r\nl: 0\r\n\r\n").unwrap();
        assert_eq!(noreason.status(), Some(100));
        assert_eq!(&noreason.to_bytes()[..13], b"SIP/2.0 100 \r");
    }

    #[test]
    fn rejects() {
        let bad: &[&[u8]] = &[
            b"",
            b"\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n",
            b"INVITE sip:a@b SIP/3.0\r\n\r\n",
            b"INVITE  sip:a@b SIP/2.0\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0 \r\n\r\n",
            b"INVITE <sip:a@b> SIP/2.0\r\n\r\n",
            b"SIP/2.0 1000 Big\r\n\r\n",
            b"SIP/2.0 99 Small\r\n\r\n",
            b"SIP/2.0 2x0 X\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nNoColon\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\n folded-first: x\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort",
            b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nxx",
            b"INVITE sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n",
        ];
        for b in bad {
            assert!(
                Message::parse(b).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        let mut many = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(
            Message::parse(many.as_bytes()),
            Err(ParseError::TooManyHeaders(MAX_HEADERS))
        );
        let long = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_LINE)
        );
        assert_eq!(
            Message::parse(long.as_bytes()),
            Err(ParseError::LineTooLong(MAX_LINE))
        );
    }

    #[test]
    fn validate_catches_semantic_errors() {
        let base = |extra: &str, cseq: &str| {
            format!(
                "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                 To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: {cseq}\r\n{extra}l: 0\r\n\r\n"
            )
        };
        let ok = base("", "1 OPTIONS");
        Message::parse(ok.as_bytes()).unwrap().validate().unwrap();
        for (extra, cseq) in [
            ("", "1 INVITE"),
            ("", "2147483648 OPTIONS"),
            ("Max-Forwards: 256\r\n", "1 OPTIONS"),
            ("Call-ID: y\r\n", "1 OPTIONS"),
            ("Contact: Bad, Name <sip:x@y>\r\n", "1 OPTIONS"),
            ("Route: sip:x@y\r\n", "1 OPTIONS"),
            ("Date: Fri, 01 Jan 2010 16:00:00 EST\r\n", "1 OPTIONS"),
        ] {
            let m = Message::parse(base(extra, cseq).as_bytes()).unwrap();
            assert!(m.validate().is_err(), "{extra} {cseq}");
        }
        let m = Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n").unwrap();
        assert_eq!(m.validate(), Err(ParseError::MissingHeader("Via")));
    }
}
