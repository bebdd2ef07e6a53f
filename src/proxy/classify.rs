//! The decisions about a request, as pure functions: what kind of request it
//! is ([`classify`]), where a new call goes ([`plan`]), and where an in-dialog
//! request goes next ([`next_hop`]). No I/O and no shared state: the routes,
//! the source index and the peer come in, a decision goes out; unit-tested
//! below with real messages and compiled routes.

use std::{net::IpAddr, sync::Arc};

use super::{
    outcome::Refusal,
    route_set::{Forged, RouteInfo, Side, pop_own_routes},
    route_sig::RouteKey,
    routes::{Routes, SourceIndex, Trunk},
    tls::DialTls,
};
use crate::{
    config::Transport,
    sip::{Message, Method, headers::NameAddr, uri::SipUri},
};

/// What to do with a request.
#[derive(Debug)]
pub enum Disposition {
    /// In-dialog: relay it towards the side our Route entry named.
    Relay(RouteInfo),
    /// An ACK for our own (or a hop-by-hop acknowledged) non-2xx answer: it ends here.
    Absorb,
    /// A CANCEL: for the pending INVITE it names.
    Cancel,
    /// A new call.
    InitialInvite,
    /// OPTIONS outside a dialog: we answer it.
    Options,
    /// Refused (an ACK gets no answer, whatever the reason).
    Refuse(Refusal),
}

/// Classifies a request. Our own Route entries are removed from `msg` when
/// they verify (the relay sends it on without them).
pub fn classify(msg: &mut Message, key: &RouteKey) -> Disposition {
    let Some(method) = msg.method().cloned() else {
        return Disposition::Refuse(Refusal::BadRequest);
    };
    if method == Method::Ack {
        // ACK for a 2xx travels the route set; ACK for our own non-2xx answers
        // (and for relayed non-2xx: we ACK those hop by hop) ends here.
        return match pop_own_routes(msg, key) {
            Ok(Some(route)) => Disposition::Relay(route),
            Ok(None) => Disposition::Absorb,
            Err(Forged) => Disposition::Refuse(Refusal::ForgedRoute),
        };
    }
    if msg.max_forwards() == Some(0) {
        return Disposition::Refuse(Refusal::TooManyHops);
    }
    if method == Method::Cancel {
        return Disposition::Cancel;
    }
    match pop_own_routes(msg, key) {
        Ok(Some(route)) => return Disposition::Relay(route),
        Ok(None) => {}
        Err(Forged) => return Disposition::Refuse(Refusal::ForgedRoute),
    }
    let has_to_tag = msg
        .header_value("to")
        .and_then(|t| NameAddr::parse(&t).ok())
        .is_some_and(|n| n.tag().is_some());
    if has_to_tag {
        return Disposition::Refuse(Refusal::NoTransaction);
    }
    match method {
        Method::Invite => Disposition::InitialInvite,
        Method::Options => Disposition::Options,
        _ => Disposition::Refuse(Refusal::NotAllowed),
    }
}

/// Where a new call goes.
pub enum Plan {
    /// Carrier → trunk: the dialled number is the trunk's.
    Inbound(Arc<Trunk>),
    /// Trunk → carrier: the caller is the trunk.
    Outbound(Arc<Trunk>),
    /// Neither.
    Refuse(Refusal),
}

impl Plan {
    /// The `direction` label of `vsip_calls_total`.
    pub fn direction(&self) -> &'static str {
        match self {
            Plan::Inbound(_) => "inbound",
            Plan::Outbound(_) => "outbound",
            Plan::Refuse(Refusal::NoTrunk) => "inbound",
            Plan::Refuse(_) => "outbound",
        }
    }
}

/// Who sent a request: its address and the DNS names of its verified client
/// certificate (mTLS), if any.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    pub ip: IpAddr,
    pub names: &'a [String],
}

/// Plans a new call from the dialled `number` and the peer.
///
/// Precedence: a known trunk source calls out, unless it is also a trusted
/// upstream source dialling one of our numbers (labs put both on one host).
/// Without an upstream configured every source counts as upstream.
pub fn plan(routes: &Routes, sources: &SourceIndex, peer: Peer<'_>, number: Option<&str>) -> Plan {
    let inbound = number.and_then(|n| routes.trunk_for_number(n)).cloned();
    let from_trunk = trunk_for_source(routes, sources, peer);
    let from_upstream = routes.upstream.is_none() || sources.upstream_ips.contains(&peer.ip);
    match (from_trunk, inbound) {
        (Some(_), Some(t)) if from_upstream => Plan::Inbound(t),
        (Some(src), _) => Plan::Outbound(src),
        (None, Some(t)) if from_upstream => Plan::Inbound(t),
        (None, None) if from_upstream => Plan::Refuse(Refusal::NoTrunk),
        (None, _) => Plan::Refuse(Refusal::UnknownSource),
    }
}

/// The trunk a peer belongs to: its mTLS client certificate names the trunk's
/// FQDN, or its source address is one the FQDN resolves to.
fn trunk_for_source(routes: &Routes, sources: &SourceIndex, peer: Peer<'_>) -> Option<Arc<Trunk>> {
    if !peer.names.is_empty()
        && let Some(t) = routes
            .trunks
            .iter()
            .find(|t| peer.names.iter().any(|n| n == &t.cfg.spec.fqdn))
    {
        return Some(t.clone());
    }
    sources.trunk_for(&peer.ip, routes)
}

/// How to secure the connection to an in-dialog next hop.
#[derive(Debug)]
pub enum HopTls {
    /// Plain TCP.
    None,
    /// Towards the trunk: the trunk's own TLS settings (CA, client certificate, name).
    Trunk(Option<DialTls>),
    /// Elsewhere over TLS: the system roots, verifying the next hop's host name.
    System,
}

/// Where an in-dialog request goes: the next Route entry (loose routing) or
/// the Request-URI.
#[derive(Debug)]
pub struct NextHop {
    /// Host as written (brackets of an IPv6 literal removed).
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    pub tls: HopTls,
}

/// The next hop of an in-dialog request whose route named `towards`, with the
/// trunk of that route (when known).
pub fn next_hop(msg: &Message, towards: Side, trunk: Option<&Trunk>) -> Result<NextHop, Refusal> {
    let next = msg
        .values("route")
        .into_iter()
        .next()
        .and_then(|r| NameAddr::parse(&r).ok().map(|n| n.uri))
        .or_else(|| msg.request_uri().map(str::to_owned));
    let Some(uri) = next.and_then(|u| SipUri::parse(&u).ok()) else {
        return Err(Refusal::BadNextHop);
    };
    let towards_trunk = towards == Side::Trunk;
    let transport = match (uri.scheme.as_str(), uri.transport().as_deref()) {
        ("sips", _) | (_, Some("tls")) => Transport::Tls,
        (_, Some(_)) => Transport::Tcp,
        _ => match (trunk, towards_trunk) {
            (Some(t), true) => t.cfg.spec.transport,
            _ => Transport::Tcp,
        },
    };
    let port = uri.port.unwrap_or(match transport {
        Transport::Tls => 5061,
        Transport::Tcp => 5060,
    });
    let host = uri
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = match (transport, trunk, towards_trunk) {
        (Transport::Tcp, ..) => HopTls::None,
        (Transport::Tls, Some(t), true) => HopTls::Trunk(t.tls.clone()),
        (Transport::Tls, ..) => HopTls::System,
    };
    Ok(NextHop {
        host,
        port,
        transport,
        tls,
    })
}

/// A precise reason phrase for a request that parsed but lacks what every
/// request needs (our own words, never input).
pub fn missing_mandatory(msg: &Message, method: &Method) -> Option<&'static str> {
    if msg.call_id().is_none_or(|c| c.trim().is_empty()) {
        return Some("Missing Call-ID");
    }
    let Some(cseq) = msg.cseq() else {
        return Some("Missing or Bad CSeq");
    };
    if &cseq.method != method {
        return Some("CSeq Method Mismatch");
    }
    if msg.header("from").is_none() {
        return Some("Missing From");
    }
    if msg.header("to").is_none() {
        return Some("Missing To");
    }
    if msg.top_via().is_none() {
        return Some("Missing or Bad Via");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::ProxyConfig, proxy::route_set};

    fn request(first_line: &str, extra: &str) -> Message {
        let method = first_line.split(' ').next().unwrap_or("INVITE");
        let text = format!(
            "{first_line}\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK-1\r\n\
             From: <sip:+919876500000@pstn.example>;tag=a\r\nTo: <sip:+911234567890@x>\r\n\
             Call-ID: c1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes()).expect("parses")
    }

    fn kind(d: &Disposition) -> String {
        match d {
            Disposition::Relay(r) => format!("relay {:?}", r.towards),
            Disposition::Absorb => "absorb".into(),
            Disposition::Cancel => "cancel".into(),
            Disposition::InitialInvite => "invite".into(),
            Disposition::Options => "options".into(),
            Disposition::Refuse(r) => format!("refuse {}", r.status()),
        }
    }

    #[test]
    fn requests_are_classified() {
        let key = RouteKey::random();
        let ours = |side: Side| {
            let rr = route_set::record_route(
                "192.0.2.1",
                5060,
                Transport::Tcp,
                side,
                "TS1",
                &key.sign(side.token(), "TS1", "c1"),
            );
            format!("Route: {rr}\r\n")
        };
        let forged = "Route: <sip:192.0.2.1:5060;lr;vsip=tr;vt=TS1;vs=0000000000000000>\r\n";
        let cases = [
            (
                "INVITE sip:+911234567890@x SIP/2.0",
                "".to_owned(),
                "invite",
            ),
            ("OPTIONS sip:x SIP/2.0", "".to_owned(), "options"),
            ("MESSAGE sip:x SIP/2.0", "".to_owned(), "refuse 405"),
            ("CANCEL sip:x SIP/2.0", "".to_owned(), "cancel"),
            ("ACK sip:x SIP/2.0", "".to_owned(), "absorb"),
            ("ACK sip:x SIP/2.0", ours(Side::Trunk), "relay Trunk"),
            ("ACK sip:x SIP/2.0", forged.to_owned(), "refuse 403"),
            ("BYE sip:x SIP/2.0", ours(Side::Upstream), "relay Upstream"),
            ("BYE sip:x SIP/2.0", forged.to_owned(), "refuse 403"),
        ];
        for (line, extra, want) in cases {
            let mut msg = request(line, &extra);
            assert_eq!(kind(&classify(&mut msg, &key)), want, "{line} {extra}");
        }
        let mut looping = request("INVITE sip:x SIP/2.0", "");
        looping.set_header("Max-Forwards", "0");
        assert_eq!(kind(&classify(&mut looping, &key)), "refuse 483");
        // In-dialog (To tag) without our route: no transaction of ours.
        let mut bye = request("BYE sip:x SIP/2.0", "");
        bye.set_header("To", "<sip:+911234567890@x>;tag=z");
        assert_eq!(kind(&classify(&mut bye, &key)), "refuse 481");
    }

    const CONFIG: &str = "listen: { tcp: 127.0.0.1:0 }\n\
        signalingDomain: pstn.example.net\n\
        upstream: sip:198.51.100.1:5060;transport=tcp\n\
        trunks:\n\
        \x20 - { name: acme/a, trunkSid: TSA, fqdn: sip.a.example, numbers: [\"+911111111111\"] }\n\
        \x20 - { name: acme/b, trunkSid: TSB, fqdn: sip.b.example, numbers: [\"+912222222222\"] }\n";

    fn routes(yaml: &str) -> (Arc<Routes>, SourceIndex) {
        let config = ProxyConfig::from_yaml(yaml).expect("config");
        let routes = Arc::new(Routes::compile(config, &Routes::empty()).expect("routes"));
        let a: [IpAddr; 1] = ["192.0.2.10".parse().expect("ip")];
        let b: [IpAddr; 1] = ["192.0.2.20".parse().expect("ip")];
        let upstream = vec!["198.51.100.1".parse().expect("ip")];
        let sources = SourceIndex::new(routes.clone(), [&a[..], &b[..]].into_iter(), upstream);
        (routes, sources)
    }

    fn planned(p: Plan) -> String {
        match p {
            Plan::Inbound(t) => format!("inbound {}", t.name()),
            Plan::Outbound(t) => format!("outbound {}", t.name()),
            Plan::Refuse(r) => format!("refuse {}", r.status()),
        }
    }

    #[test]
    fn calls_are_planned_by_number_and_source() {
        let (r, s) = routes(CONFIG);
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let names: Vec<String> = Vec::new();
        let peer = |a: &str| Peer {
            ip: ip(a),
            names: &names,
        };
        let carrier = peer("198.51.100.1");
        assert_eq!(
            planned(plan(&r, &s, carrier, Some("+912222222222"))),
            "inbound acme/b"
        );
        assert_eq!(
            planned(plan(&r, &s, carrier, Some("+919999999999"))),
            "refuse 404"
        );
        assert_eq!(
            planned(plan(&r, &s, peer("192.0.2.10"), Some("+919999999999"))),
            "outbound acme/a"
        );
        // A trunk dialling another trunk's number calls out: it is not the upstream.
        assert_eq!(
            planned(plan(&r, &s, peer("192.0.2.10"), Some("+912222222222"))),
            "outbound acme/a"
        );
        // Neither a trunk nor the upstream.
        assert_eq!(
            planned(plan(&r, &s, peer("203.0.113.5"), Some("+912222222222"))),
            "refuse 403"
        );
        assert_eq!(
            plan(&r, &s, peer("203.0.113.5"), None).direction(),
            "outbound"
        );
        // An mTLS certificate naming the trunk's FQDN identifies it whatever the address.
        let certified = vec!["sip.b.example".to_owned()];
        let p = Peer {
            ip: ip("203.0.113.5"),
            names: &certified,
        };
        assert_eq!(planned(plan(&r, &s, p, None)), "outbound acme/b");
    }

    #[test]
    fn without_an_upstream_every_source_may_call_in_and_a_trunk_that_dials_us_calls_in() {
        let yaml = CONFIG.replace("upstream: sip:198.51.100.1:5060;transport=tcp\n", "");
        let (r, s) = routes(&yaml);
        let names: Vec<String> = Vec::new();
        let lab = Peer {
            ip: "192.0.2.10".parse().expect("ip"),
            names: &names,
        };
        assert_eq!(
            planned(plan(&r, &s, lab, Some("+912222222222"))),
            "inbound acme/b"
        );
        let anyone = Peer {
            ip: "203.0.113.5".parse().expect("ip"),
            names: &names,
        };
        assert_eq!(planned(plan(&r, &s, anyone, Some("+1"))), "refuse 404");
    }

    #[test]
    fn the_next_hop_follows_route_then_request_uri() {
        let (r, _) = routes(&CONFIG.replace(
            "fqdn: sip.b.example,",
            "fqdn: sip.b.example, transport: TLS,",
        ));
        let b = r.trunk_by_sid("TSB").expect("trunk");
        let bye = request(
            "BYE sip:+1@[2001:db8::1]:5070 SIP/2.0",
            "Route: <sip:edge.example;lr;transport=tcp>\r\n",
        );
        let hop = next_hop(&bye, Side::Trunk, Some(b)).expect("hop");
        assert_eq!((hop.host.as_str(), hop.port), ("edge.example", 5060));
        assert_eq!(hop.transport, Transport::Tcp);
        assert!(matches!(hop.tls, HopTls::None));
        // No Route: the Request-URI; no transport parameter towards a TLS trunk: TLS
        // with the trunk's settings.
        let bye = request("BYE sip:+1@[2001:db8::1] SIP/2.0", "");
        let hop = next_hop(&bye, Side::Trunk, Some(b)).expect("hop");
        assert_eq!((hop.host.as_str(), hop.port), ("2001:db8::1", 5061));
        assert!(matches!(hop.tls, HopTls::Trunk(Some(_))));
        // sips towards the carrier: TLS verified against the system roots.
        let bye = request("BYE sips:carrier.example SIP/2.0", "");
        let hop = next_hop(&bye, Side::Upstream, Some(b)).expect("hop");
        assert_eq!((hop.transport, hop.port), (Transport::Tls, 5061));
        assert!(matches!(hop.tls, HopTls::System));
        // Nothing usable.
        let mut bad = request("BYE sip:x SIP/2.0", "Route: <garbage>\r\n");
        bad.set_request_uri("not a uri".into());
        assert_eq!(
            next_hop(&bad, Side::Upstream, None).map(|h| h.host),
            Err(Refusal::BadNextHop)
        );
    }
}
