//! Our Record-Route entries, both ways: what an entry carries (the side it
//! faces, the trunk, the signature of [`super::route_sig`]) when we insert it,
//! and what an in-dialog request's Route entries tell us when they come back —
//! where the request goes next, or that an entry with our marker was forged.
//! Pure: unit-tested below with real messages.

use super::route_sig::{RR_SIG, RouteKey};
use crate::{
    config::Transport,
    sip::{Message, headers::NameAddr, uri::SipUri},
};

/// Marker parameter in our Record-Route URIs; its value names the side the
/// entry faces (`up` = upstream/carrier, `tr` = trunk).
pub const RR_MARK: &str = "vsip";
/// Trunk identity carried in our Record-Route, so in-dialog requests towards
/// the trunk use its TLS settings.
pub const RR_TRUNK: &str = "vt";

/// The two sides of every call through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Upstream,
    Trunk,
}

impl Side {
    pub fn token(self) -> &'static str {
        match self {
            Side::Upstream => "up",
            Side::Trunk => "tr",
        }
    }

    /// The other side.
    pub fn far(self) -> Side {
        match self {
            Side::Upstream => Side::Trunk,
            Side::Trunk => Side::Upstream,
        }
    }
}

/// Where an in-dialog request goes after our Route entries are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub towards: Side,
    pub trunk_sid: Option<String>,
}

/// A Route entry with our marker but not our signature.
#[derive(Debug, PartialEq, Eq)]
pub struct Forged;

/// The value of one of our Record-Route headers.
pub fn record_route(
    host: &str,
    port: u16,
    transport: Transport,
    side: Side,
    trunk_sid: &str,
    signature: &str,
) -> String {
    format!(
        "<sip:{host}:{port};transport={};lr;{RR_MARK}={};{RR_TRUNK}={};{RR_SIG}={signature}>",
        transport.uri_param(),
        side.token(),
        rr_escape(trunk_sid),
    )
}

/// Removes the Route entries that name this proxy; returns where the request
/// goes next, None when the request is not routed through us, or [`Forged`]
/// when an entry with our marker does not carry our signature for this call.
pub fn pop_own_routes(msg: &mut Message, key: &RouteKey) -> Result<Option<RouteInfo>, Forged> {
    let mut info: Option<RouteInfo> = None;
    let call_id = msg.call_id().map(|c| c.into_owned()).unwrap_or_default();
    while let Some(top) = msg.values("route").into_iter().next() {
        let Some(uri) = NameAddr::parse(&top)
            .ok()
            .and_then(|n| SipUri::parse(&n.uri).ok())
        else {
            break;
        };
        let Some(Some(side)) = uri.param(RR_MARK) else {
            break;
        };
        let sig = uri.param(RR_SIG).flatten().unwrap_or_default();
        let trunk_sid = uri.param(RR_TRUNK).flatten().map(rr_unescape);
        if !key.verify(
            side,
            trunk_sid.as_deref().unwrap_or_default(),
            &call_id,
            sig,
        ) {
            return Err(Forged);
        }
        let side = if side == Side::Trunk.token() {
            Side::Trunk
        } else {
            Side::Upstream
        };
        msg.remove_first_value("route");
        info = Some(RouteInfo {
            // The last of our entries popped faces the side the request goes to.
            towards: side,
            trunk_sid,
        });
        if msg.header("route").is_none() {
            break;
        }
    }
    Ok(info)
}

/// Trunk SIDs are tokens in practice; anything else is hex-escaped to stay a URI param.
fn rr_escape(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        s.to_owned()
    } else {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }
}

fn rr_unescape(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes: Vec<u8> = s
        .split('%')
        .filter(|p| !p.is_empty())
        .filter_map(|p| u8::from_str_radix(p.get(..2).unwrap_or(p), 16).ok())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bye(routes: &[String]) -> Message {
        let mut s = String::from("BYE sip:+911234567890@10.0.0.9:5070 SIP/2.0\r\n");
        for r in routes {
            s.push_str(&format!("Route: {r}\r\n"));
        }
        s.push_str(
            "Via: SIP/2.0/TCP 10.0.0.9;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
             To: <sip:b@y>;tag=2\r\nCall-ID: call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        );
        Message::parse(s.as_bytes()).expect("parses")
    }

    fn ours(key: &RouteKey, side: Side, sid: &str, call_id: &str) -> String {
        record_route(
            "192.0.2.1",
            5060,
            Transport::Tcp,
            side,
            sid,
            &key.sign(side.token(), sid, call_id),
        )
    }

    #[test]
    fn our_entries_are_popped_and_the_last_names_the_next_side() {
        let key = RouteKey::random();
        let mut msg = bye(&[
            ours(&key, Side::Upstream, "TS1", "call-1"),
            ours(&key, Side::Trunk, "TS1", "call-1"),
            "<sip:next.example;lr>".into(),
        ]);
        let info = pop_own_routes(&mut msg, &key).expect("signed");
        assert_eq!(
            info,
            Some(RouteInfo {
                towards: Side::Trunk,
                trunk_sid: Some("TS1".into())
            })
        );
        assert_eq!(msg.values("route"), ["<sip:next.example;lr>"]);
    }

    #[test]
    fn forged_or_foreign_entries() {
        let key = RouteKey::random();
        // Signed for another call: forged.
        let mut msg = bye(&[ours(&key, Side::Trunk, "TS1", "call-2")]);
        assert_eq!(pop_own_routes(&mut msg, &key), Err(Forged));
        // Signed by another key: forged.
        let mut msg = bye(&[ours(&RouteKey::random(), Side::Trunk, "TS1", "call-1")]);
        assert_eq!(pop_own_routes(&mut msg, &key), Err(Forged));
        // Not ours at all: left alone.
        let mut msg = bye(&["<sip:other.example;lr>".into()]);
        assert_eq!(pop_own_routes(&mut msg, &key), Ok(None));
        assert_eq!(msg.values("route").len(), 1);
    }

    #[test]
    fn odd_trunk_sids_survive_the_round_trip() {
        let key = RouteKey::random();
        let sid = "ns/with space;x";
        let mut msg = bye(&[ours(&key, Side::Upstream, sid, "call-1")]);
        let info = pop_own_routes(&mut msg, &key).expect("signed");
        assert_eq!(info.and_then(|i| i.trunk_sid).as_deref(), Some(sid));
    }
}
