//! Shaping messages: responses the proxy generates itself, and the headers it
//! stamps on requests it forwards (brief §5, the seed's sample INVITE).

use std::fmt::Write as _;

use bytes::Bytes;
use rand::Rng;

use crate::sip::{Header, Message, headers::NameAddr, uri::SipUri};

/// 32 lowercase hex characters, the shape of a CallSid.
pub fn new_sid() -> String {
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}

/// A short random token for tags and branches.
pub fn new_token() -> String {
    let v: u64 = rand::rng().random();
    format!("{v:016x}")
}

pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Unsupported URI Scheme",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

/// A response to `req` built by the proxy (RFC 3261 §8.2.6, via
/// [`Message::response_to`]). `to_tag` is added to `To` when the request had
/// none (every final response needs one); `extra` headers go before the body headers.
pub fn response(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
) -> Bytes {
    let mut resp = Message::response_to(req, code, reason);
    if code > 100
        && let Some(tag) = to_tag
        && let Some(to) = resp.header_value("to").map(|t| t.into_owned())
        && !NameAddr::parse(&to)
            .map(|n| n.tag().is_some())
            .unwrap_or(true)
    {
        resp.set_header("To", &format!("{to};tag={tag}"));
    }
    for (k, v) in extra {
        put_header(&mut resp, k, v);
    }
    put_header(&mut resp, "Server", "vsip");
    Bytes::from(resp.to_bytes())
}

/// A response to a message that could not be parsed: the headers it needs are
/// pulled out of the raw text. `None` when there is not enough to answer.
pub fn response_to_raw(raw: &[u8], code: u16, reason: &str) -> Option<Bytes> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let start = lines.next()?;
    // Never answer a response.
    if start.starts_with("SIP/") || !start.contains("SIP/2.0") {
        return None;
    }
    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match crate::sip::canonical_name(name.trim()).as_ref() {
            "via" => vias.push(value),
            "from" => from = Some(value),
            "to" => to = Some(value),
            "call-id" => call_id = Some(value),
            "cseq" => cseq = Some(value),
            _ => {}
        }
    }
    if vias.is_empty() || from.is_none() || to.is_none() || call_id.is_none() || cseq.is_none() {
        return None;
    }
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in vias {
        let _ = write!(out, "Via: {v}\r\n");
    }
    let to = to.unwrap_or_default();
    let tag = if to.contains("tag=") {
        String::new()
    } else {
        format!(";tag={}", new_token())
    };
    let _ = write!(
        out,
        "From: {}\r\nTo: {to}{tag}\r\nCall-ID: {}\r\nCSeq: {}\r\nServer: vsip\r\nContent-Length: 0\r\n\r\n",
        from.unwrap_or_default(),
        call_id.unwrap_or_default(),
        cseq.unwrap_or_default()
    );
    Some(Bytes::from(out))
}

/// Replaces the host of a name-addr header's URI (keeps display name, user, params).
pub fn with_uri_host(value: &str, host: &str, port: Option<u16>) -> Option<String> {
    let mut na = NameAddr::parse(value).ok()?;
    let mut uri = SipUri::parse(&na.uri).ok()?;
    uri.host = host.to_owned();
    uri.port = port;
    na.uri = uri.to_string();
    Some(na.to_string())
}

/// User part of a name-addr header's URI (the caller's number in From).
pub fn uri_user(value: &str) -> Option<String> {
    let na = NameAddr::parse(value).ok()?;
    SipUri::parse(&na.uri).ok()?.user
}

/// The number a Request-URI dials: its user part without parameters.
pub fn dialled_number(request_uri: &str) -> Option<String> {
    if let Some(rest) = request_uri.strip_prefix("tel:") {
        return Some(rest.split(';').next().unwrap_or(rest).to_owned());
    }
    let uri = SipUri::parse(request_uri).ok()?;
    let user = uri.user?;
    Some(user.split(';').next().unwrap_or(&user).to_owned())
}

/// Decrements Max-Forwards (or sets 70 when absent).
pub fn decrement_max_forwards(msg: &mut Message) {
    let next = msg
        .max_forwards()
        .map(|m| m.saturating_sub(1))
        .unwrap_or(70);
    put_header(msg, "Max-Forwards", &next.to_string());
}

/// Sets a header: replaced in place when present, else placed before the
/// body headers (Content-Type / Content-Length) as in the seed's sample.
pub fn put_header(msg: &mut Message, name: &str, value: &str) {
    if msg.header(name).is_some() {
        msg.set_header(name, value);
        return;
    }
    let at = msg
        .headers
        .iter()
        .position(|h| h.is("content-type") || h.is("content-length"))
        .unwrap_or(msg.headers.len());
    msg.headers.insert(at, Header::new(name, value));
}
/// Hop-by-hop ACK for a non-2xx final answer to a request we forwarded.
pub fn ack_for(req: &Message, resp: &Message) -> Bytes {
    build_cancel_or_ack(req, "ACK", resp.header_value("to").as_deref())
}

pub fn cancel_for(req: &Message) -> Bytes {
    build_cancel_or_ack(req, "CANCEL", None)
}

fn build_cancel_or_ack(req: &Message, method: &str, to: Option<&str>) -> Bytes {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        "{method} {} SIP/2.0\r\n",
        req.request_uri().unwrap_or("sip:invalid")
    );
    if let Some(via) = req.values("via").into_iter().next() {
        let _ = write!(s, "Via: {via}\r\n");
    }
    for r in req.values("route") {
        let _ = write!(s, "Route: {r}\r\n");
    }
    if let Some(from) = req.header_value("from") {
        let _ = write!(s, "From: {from}\r\n");
    }
    match to {
        Some(to) => {
            let _ = write!(s, "To: {to}\r\n");
        }
        None => {
            if let Some(to) = req.header_value("to") {
                let _ = write!(s, "To: {to}\r\n");
            }
        }
    }
    if let Some(cid) = req.call_id() {
        let _ = write!(s, "Call-ID: {cid}\r\n");
    }
    let seq = req.cseq().map(|c| c.seq).unwrap_or(1);
    let _ = write!(
        s,
        "CSeq: {seq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Bytes::from(s)
}
