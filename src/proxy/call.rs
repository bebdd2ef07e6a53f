//! One task per INVITE transaction (admission, DNS, failover over addresses,
//! CANCEL) and one per relayed in-dialog request.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{
    core::{Core, ServerEvent, Side, secs_until},
    routes::{Trunk, TrunkState},
    stamp,
    transport::{ConnHandle, DialError, DialTls, dial},
};
use crate::{
    config::{IpFamily, Transport},
    sip::{Header, Message, Method, headers::NameAddr, sdp, uri::SipUri},
};

/// RFC 3261 Timer C: a proxy gives up on a ringing branch after this long.
const TIMER_C: Duration = Duration::from_secs(180);
/// How long a cancelled branch may take to answer 487 before we answer for it.
const CANCEL_GRACE: Duration = Duration::from_secs(4);
/// Non-INVITE transaction timeout (64 × T1).
const NON_INVITE_TIMEOUT: Duration = Duration::from_secs(32);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub enum Plan {
    Inbound(Arc<Trunk>),
    Outbound(Arc<Trunk>),
    Reject(u16, &'static str),
}

/// Where an in-dialog request goes after our Route entries are removed.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub towards: Side,
    pub trunk_sid: Option<String>,
}

pub fn spawn_call(
    core: Arc<Core>,
    msg: Message,
    origin: ConnHandle,
    plan: Plan,
    key: String,
    events: mpsc::UnboundedReceiver<ServerEvent>,
) {
    let prefix = core.routes.load().config.header_prefix.clone();
    let call_id = msg.call_id().map(|c| c.into_owned()).unwrap_or_default();
    let call_sid = msg
        .header_value(&format!("{prefix}CallSid"))
        .map(|c| c.into_owned())
        .unwrap_or_else(stamp::new_sid);
    let span = info_span!("call", call_sid = %call_sid, call_id = %call_id);
    tokio::spawn(
        async move {
            core.metrics.inflight_calls.inc();
            let mut call = Call {
                core: core.clone(),
                started: Instant::now(),
                to_tag: stamp::new_token(),
                msg,
                origin,
                call_sid,
                events,
                cancelled: false,
            };
            let (trunk_label, direction, code) = call.run(plan).await;
            core.txns.remove_server(&key);
            core.metrics.inflight_calls.dec();
            core.metrics
                .calls
                .with_label_values(&[&trunk_label, direction, &code.to_string()])
                .inc();
            if !trunk_label.is_empty() {
                core.metrics
                    .call_setup
                    .with_label_values(&[&trunk_label])
                    .observe(call.started.elapsed().as_secs_f64());
            }
            info!(trunk = %trunk_label, direction, status = code, "call setup finished");
        }
        .instrument(span),
    );
}

struct Call {
    core: Arc<Core>,
    started: Instant,
    to_tag: String,
    msg: Message,
    origin: ConnHandle,
    call_sid: String,
    events: mpsc::UnboundedReceiver<ServerEvent>,
    cancelled: bool,
}

/// A target address plus how to reach it.
struct Target {
    addr: SocketAddr,
    transport: Transport,
    tls: Option<DialTls>,
}

enum Attempt {
    /// A final answer was relayed (or generated); the call is done.
    Done(u16),
    /// Try the next address; keep the answer that made us move on, if any.
    Next(Option<Message>),
}

impl Call {
    async fn run(&mut self, plan: Plan) -> (String, &'static str, u16) {
        match plan {
            Plan::Reject(code, direction) => {
                let number = self
                    .msg
                    .request_uri()
                    .and_then(stamp::dialled_number)
                    .unwrap_or_default();
                info!(
                    number,
                    code, "call refused: no trunk for this number or source"
                );
                self.answer(code, &[]);
                (String::new(), direction, code)
            }
            Plan::Inbound(trunk) => {
                let code = self.inbound(&trunk).await;
                (trunk.name().to_owned(), "inbound", code)
            }
            Plan::Outbound(trunk) => {
                let code = self.outbound(&trunk).await;
                (trunk.name().to_owned(), "outbound", code)
            }
        }
    }

    fn answer(&self, code: u16, extra: &[(&str, &str)]) {
        let bytes = stamp::response(
            &self.msg,
            code,
            stamp::reason_phrase(code),
            Some(&self.to_tag),
            extra,
        );
        self.core.send_back(&self.origin, bytes);
    }

    /// Relays a response to the caller: our Via removed, and From/To as the
    /// caller sent them (we rewrote their hosts towards the trunk; the To tag
    /// the callee chose is kept).
    fn relay_back(&self, mut resp: Message) {
        resp.remove_first_value("via");
        if let Some(from) = self.msg.header_value("from") {
            resp.set_header("From", &from);
        }
        if let Some(to) = self.msg.header_value("to") {
            let tag = resp
                .header_value("to")
                .and_then(|t| NameAddr::parse(&t).ok())
                .and_then(|n| n.tag().map(str::to_owned));
            match tag {
                Some(tag) => resp.set_header("To", &format!("{to};tag={tag}")),
                None => resp.set_header("To", &to),
            }
        }
        self.core
            .send_back(&self.origin, Bytes::from(resp.to_bytes()));
    }

    /// Suspension, codec policy and quota, in that order (refusals do not use quota).
    async fn admit(&self, trunk: &Trunk) -> Result<(), u16> {
        if trunk.cfg.spec.suspended {
            info!(trunk = trunk.name(), "trunk suspended");
            self.answer(503, &[("Reason", "SIP;cause=503;text=\"trunk suspended\"")]);
            return Err(503);
        }
        if !self.msg.body.is_empty() && !sdp::offers_any(&self.msg.body, &trunk.cfg.spec.codecs) {
            info!(trunk = trunk.name(), "offer has no allowed codec");
            let allowed: Vec<&str> = trunk
                .cfg
                .spec
                .codecs
                .iter()
                .map(|c| c.encoding_name())
                .collect();
            let warning = format!("304 vsip \"allowed codecs: {}\"", allowed.join(", "));
            self.answer(488, &[("Warning", &warning)]);
            return Err(488);
        }
        if let Err(wait) = self.core.quota.admit(trunk).await {
            self.core
                .metrics
                .cpm_throttled
                .with_label_values(&[trunk.name()])
                .inc();
            let secs = secs_until(wait).max(1).to_string();
            info!(trunk = trunk.name(), retry_after = %secs, "calls-per-minute quota reached");
            self.answer(
                503,
                &[
                    ("Retry-After", &secs),
                    ("Reason", "SIP;cause=503;text=\"CPM quota\""),
                ],
            );
            return Err(503);
        }
        Ok(())
    }

    async fn inbound(&mut self, trunk: &Arc<Trunk>) -> u16 {
        self.answer(100, &[]);
        if let Err(code) = self.admit(trunk).await {
            return code;
        }
        let spec = &trunk.cfg.spec;
        let resolution = match self
            .core
            .resolver
            .resolve(&spec.fqdn, &spec.ip_families)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!(trunk = trunk.name(), fqdn = %spec.fqdn, error = %e, "DNS resolution failed");
                self.answer(
                    503,
                    &[("Reason", "SIP;cause=503;text=\"DNS resolution failed\"")],
                );
                return 503;
            }
        };
        let port = spec.effective_port();
        let targets: Vec<Target> = order_by_hold_down(
            &trunk.state,
            resolution.addrs.iter().map(|ip| SocketAddr::new(*ip, port)),
        )
        .into_iter()
        .map(|addr| Target {
            addr,
            transport: spec.transport,
            tls: trunk.tls.clone(),
        })
        .collect();
        let number = self
            .msg
            .request_uri()
            .and_then(stamp::dialled_number)
            .unwrap_or_default();
        let ruri = format!(
            "sip:{number}@{}:{port};transport={}",
            spec.fqdn,
            spec.transport.uri_param()
        );
        let mut fwd = self.msg.clone();
        fwd.set_request_uri(ruri);
        let routes = self.core.routes.load();
        let domain = routes.config.signaling_domain.clone();
        if let Some(to) = fwd
            .header_value("to")
            .and_then(|t| stamp::with_uri_host(&t, &spec.fqdn, None))
        {
            fwd.set_header("To", &to);
        }
        if !domain.is_empty()
            && let Some(from) = fwd
                .header_value("from")
                .and_then(|f| stamp::with_uri_host(&f, &domain, None))
        {
            fwd.set_header("From", &from);
        }
        self.stamp(&mut fwd, trunk, &routes.config.header_prefix, &domain);
        for (k, v) in &trunk.extra_headers {
            stamp::put_header(&mut fwd, k, v);
        }
        drop(routes);
        self.deliver(fwd, targets, trunk, Side::Trunk).await
    }

    async fn outbound(&mut self, trunk: &Arc<Trunk>) -> u16 {
        self.answer(100, &[]);
        if let Err(code) = self.admit(trunk).await {
            return code;
        }
        let routes = self.core.routes.load_full();
        let Some(up) = routes.upstream.clone() else {
            warn!(
                trunk = trunk.name(),
                "no upstream configured for trunk-originated calls"
            );
            self.answer(503, &[]);
            return 503;
        };
        let addrs: Vec<IpAddr> = match up.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match self
                .core
                .resolver
                .resolve(&up.host, &[IpFamily::IPv4, IpFamily::IPv6])
                .await
            {
                Ok(r) => r.addrs.clone(),
                Err(e) => {
                    warn!(upstream = %up.host, error = %e, "upstream DNS resolution failed");
                    self.answer(503, &[]);
                    return 503;
                }
            },
        };
        let tls = up.tls.clone();
        let targets = addrs
            .into_iter()
            .map(|ip| Target {
                addr: SocketAddr::new(ip, up.port),
                transport: up.transport,
                tls: tls.clone(),
            })
            .collect();
        let mut fwd = self.msg.clone();
        let domain = routes.config.signaling_domain.clone();
        self.stamp(&mut fwd, trunk, &routes.config.header_prefix, &domain);
        self.deliver(fwd, targets, trunk, Side::Upstream).await
    }

    /// Correlation headers (brief §5).
    fn stamp(&self, fwd: &mut Message, trunk: &Trunk, prefix: &str, domain: &str) {
        stamp::decrement_max_forwards(fwd);
        stamp::put_header(fwd, &format!("{prefix}CallSid"), &self.call_sid);
        stamp::put_header(fwd, &format!("{prefix}LegSid"), &stamp::new_sid());
        stamp::put_header(fwd, &format!("{prefix}TrunkSid"), &trunk.cfg.trunk_sid);
        if fwd.header("p-asserted-identity").is_none()
            && let Some(user) = self
                .msg
                .header_value("from")
                .and_then(|f| stamp::uri_user(&f))
        {
            let host = if domain.is_empty() { "invalid" } else { domain };
            stamp::put_header(fwd, "P-Asserted-Identity", &format!("<sip:{user}@{host}>"));
        }
        stamp::put_header(fwd, "P-Early-Media", "supported");
    }

    /// Tries the targets in order until one gives a final answer that is not
    /// a reason to fail over.
    async fn deliver(
        &mut self,
        fwd: Message,
        targets: Vec<Target>,
        trunk: &Arc<Trunk>,
        towards: Side,
    ) -> u16 {
        let f = &trunk.cfg.spec.failover;
        let (connect_timeout, response_timeout, hold_down) = (
            f.connect_timeout.get(),
            f.response_timeout.get(),
            f.hold_down.get(),
        );
        let mut last: Option<Message> = None;
        if targets.is_empty() {
            warn!(trunk = trunk.name(), "FQDN resolved to no usable address");
        }
        for target in targets {
            if self.cancelled {
                break;
            }
            let conn = match dial(
                &self.core,
                target.addr,
                target.transport,
                target.tls.as_ref(),
                connect_timeout,
            )
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    let reason = match &e {
                        DialError::Timeout(_) => "connect_timeout",
                        DialError::Tls(..) => {
                            self.core
                                .metrics
                                .tls_handshake_failures
                                .with_label_values(&[trunk.name()])
                                .inc();
                            "tls"
                        }
                        _ => "connect",
                    };
                    warn!(trunk = trunk.name(), address = %target.addr, error = %e, reason, "address failed; trying the next");
                    self.core
                        .metrics
                        .failovers
                        .with_label_values(&[trunk.name(), reason])
                        .inc();
                    trunk.state.hold(target.addr, Instant::now() + hold_down);
                    continue;
                }
            };
            match self
                .attempt(&fwd, &conn, trunk, towards, response_timeout)
                .await
            {
                Attempt::Done(code) => {
                    trunk.state.release(target.addr);
                    return code;
                }
                Attempt::Next(answer) => {
                    let reason = match answer.as_ref().and_then(|m| m.status()) {
                        Some(code) => code.to_string(),
                        None => "timeout".to_owned(),
                    };
                    warn!(trunk = trunk.name(), address = %target.addr, reason = %reason, "address failed; trying the next");
                    self.core
                        .metrics
                        .failovers
                        .with_label_values(&[trunk.name(), &reason])
                        .inc();
                    trunk.state.hold(target.addr, Instant::now() + hold_down);
                    if answer.is_some() {
                        last = answer;
                    }
                }
            }
        }
        if self.cancelled {
            self.answer(487, &[]);
            return 487;
        }
        // Every address failed: the last real answer, else 503.
        match last {
            // Relayed like any answer: the caller's own From and To.
            Some(resp) => {
                let code = resp.status().unwrap_or(503);
                self.relay_back(resp);
                code
            }
            None => {
                self.answer(
                    503,
                    &[("Reason", "SIP;cause=503;text=\"no reachable address\"")],
                );
                503
            }
        }
    }

    async fn attempt(
        &mut self,
        fwd: &Message,
        conn: &ConnHandle,
        trunk: &Arc<Trunk>,
        towards: Side,
        response_timeout: Duration,
    ) -> Attempt {
        let branch = self.core.new_branch();
        let mut out = fwd.clone();
        out.push_front(Header::new("Via", &self.core.via(conn, &branch)));
        // Two Record-Route entries, one facing each side (top: the side we deliver to).
        let sid = &trunk.cfg.trunk_sid;
        let (near, far) = match towards {
            Side::Trunk => (Side::Trunk, Side::Upstream),
            Side::Upstream => (Side::Upstream, Side::Trunk),
        };
        let call_id = fwd.call_id().map(|c| c.into_owned()).unwrap_or_default();
        let far_rr =
            self.core
                .record_route(&self.origin, far, self.origin.transport, sid, &call_id);
        let near_rr = self
            .core
            .record_route(conn, near, conn.transport, sid, &call_id);
        // Ours go above any existing entries; with none, right below our Via.
        let at = out
            .headers
            .iter()
            .position(|h| h.is("record-route"))
            .unwrap_or(1.min(out.headers.len()));
        out.headers.insert(at, Header::new("Record-Route", &far_rr));
        out.headers
            .insert(at, Header::new("Record-Route", &near_rr));
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.core.txns.add_client(branch.clone(), tx);
        let result = self.exchange(&out, conn, &mut rx, response_timeout).await;
        self.core.txns.remove_client(&branch);
        result
    }

    async fn exchange(
        &mut self,
        out: &Message,
        conn: &ConnHandle,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        response_timeout: Duration,
    ) -> Attempt {
        if !conn.send(Bytes::from(out.to_bytes())) {
            return Attempt::Next(None);
        }
        let mut deadline = tokio::time::Instant::now() + response_timeout;
        let mut answered_any = false;
        let mut cancel_sent = false;
        loop {
            tokio::select! {
                resp = rx.recv() => {
                    let Some(resp) = resp else { return Attempt::Next(None) };
                    // Our CANCEL shares the INVITE's branch; its 200 ends here.
                    if resp.cseq().map(|c| c.method) != Some(Method::Invite) {
                        continue;
                    }
                    let code = resp.status().unwrap_or(0);
                    answered_any = true;
                    match code {
                        100 => deadline = tokio::time::Instant::now() + TIMER_C,
                        101..=199 => {
                            deadline = tokio::time::Instant::now() + TIMER_C;
                            self.relay_back(resp);
                        }
                        200..=299 => {
                            self.relay_back(resp);
                            return Attempt::Done(code);
                        }
                        408 | 503 | 504 if !self.cancelled => {
                            conn.send(ack_for(out, &resp));
                            return Attempt::Next(Some(resp));
                        }
                        _ => {
                            conn.send(ack_for(out, &resp));
                            self.relay_back(resp);
                            return Attempt::Done(code);
                        }
                    }
                }
                ev = self.events.recv(), if !self.cancelled => {
                    if let Some(ServerEvent::Cancel) = ev {
                        debug!("CANCEL received; cancelling the pending branch");
                        self.cancelled = true;
                        if answered_any && !cancel_sent {
                            conn.send(cancel_for(out));
                            cancel_sent = true;
                        }
                        deadline = tokio::time::Instant::now() + CANCEL_GRACE;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.cancelled {
                        self.answer(487, &[]);
                        return Attempt::Done(487);
                    }
                    if !answered_any {
                        return Attempt::Next(None);
                    }
                    // Timer C: ringing for too long.
                    conn.send(cancel_for(out));
                    self.answer(408, &[]);
                    return Attempt::Done(408);
                }
            }
            // A CANCEL that arrived before any response is sent once the branch answers.
            if self.cancelled && answered_any && !cancel_sent {
                conn.send(cancel_for(out));
                cancel_sent = true;
            }
        }
    }
}

/// Non-held addresses first, in DNS order; held-down ones last, still tried
/// when nothing else is left (an outage of every address must not lock out
/// recovery for the whole hold-down).
fn order_by_hold_down(
    state: &TrunkState,
    addrs: impl Iterator<Item = SocketAddr>,
) -> Vec<SocketAddr> {
    let now = Instant::now();
    let (mut ok, held): (Vec<_>, Vec<_>) = addrs.partition(|a| !state.is_held(*a, now));
    ok.extend(held);
    ok
}

/// Hop-by-hop ACK for a non-2xx final answer to a request we forwarded.
fn ack_for(req: &Message, resp: &Message) -> Bytes {
    build_cancel_or_ack(req, "ACK", resp.header_value("to").as_deref())
}

fn cancel_for(req: &Message) -> Bytes {
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

/// Relays an in-dialog request (ACK, BYE, re-INVITE, UPDATE, INFO, …) along
/// the route set, and its responses back.
pub fn spawn_relay(core: Arc<Core>, msg: Message, origin: ConnHandle, route: RouteInfo) {
    let prefix = core.routes.load().config.header_prefix.clone();
    let call_id = msg.call_id().map(|c| c.into_owned()).unwrap_or_default();
    let call_sid = msg
        .header_value(&format!("{prefix}CallSid"))
        .map(|c| c.into_owned())
        .unwrap_or_default();
    let span = info_span!("dialog", call_sid = %call_sid, call_id = %call_id);
    tokio::spawn(async move { relay(core, msg, origin, route).await }.instrument(span));
}

async fn relay(core: Arc<Core>, mut msg: Message, origin: ConnHandle, route: RouteInfo) {
    let Some(method) = msg.method().cloned() else {
        return;
    };
    core.metrics
        .dialog_requests
        .with_label_values(&[method.as_str()])
        .inc();
    let is_ack = method == Method::Ack;
    let routes = core.routes.load_full();
    let trunk = route
        .trunk_sid
        .as_deref()
        .and_then(|s| routes.trunk_by_sid(s))
        .cloned();
    // Next hop: the next Route entry (loose routing) or the Request-URI.
    let next = msg
        .values("route")
        .into_iter()
        .next()
        .and_then(|r| NameAddr::parse(&r).ok().map(|n| n.uri))
        .or_else(|| msg.request_uri().map(str::to_owned));
    let Some(uri) = next.and_then(|u| SipUri::parse(&u).ok()) else {
        if !is_ack {
            core.reply(&msg, &origin, 400, &[]);
        }
        return;
    };
    let towards_trunk = route.towards == Side::Trunk;
    let transport = match (uri.scheme.as_str(), uri.transport().as_deref()) {
        ("sips", _) | (_, Some("tls")) => Transport::Tls,
        (_, Some(_)) => Transport::Tcp,
        _ => match (&trunk, towards_trunk) {
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
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match core
            .resolver
            .resolve(&host, &[IpFamily::IPv4, IpFamily::IPv6])
            .await
        {
            Ok(r) => match r.addrs.first() {
                Some(ip) => *ip,
                None => {
                    if !is_ack {
                        core.reply(&msg, &origin, 503, &[]);
                    }
                    return;
                }
            },
            Err(e) => {
                warn!(host = %host, error = %e, "in-dialog next hop did not resolve");
                if !is_ack {
                    core.reply(&msg, &origin, 503, &[]);
                }
                return;
            }
        },
    };
    let tls = match transport {
        Transport::Tls => match (&trunk, towards_trunk) {
            (Some(t), true) => t.tls.clone(),
            _ => super::tls::client_config(None).ok().map(|config| DialTls {
                config,
                server_name: host.clone(),
            }),
        },
        Transport::Tcp => None,
    };
    let connect_timeout = trunk
        .as_ref()
        .map(|t| t.cfg.spec.failover.connect_timeout.get())
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let conn = match dial(
        &core,
        SocketAddr::new(ip, port),
        transport,
        tls.as_ref(),
        connect_timeout,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            warn!(method = method.as_str(), error = %e, "in-dialog next hop unreachable");
            if !is_ack {
                core.reply(&msg, &origin, 503, &[]);
            }
            return;
        }
    };
    stamp::decrement_max_forwards(&mut msg);
    let branch = core.new_branch();
    msg.push_front(Header::new("Via", &core.via(&conn, &branch)));
    if is_ack {
        conn.send(Bytes::from(msg.to_bytes()));
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    core.txns.add_client(branch.clone(), tx);
    if conn.send(Bytes::from(msg.to_bytes())) {
        let limit = if method == Method::Invite {
            TIMER_C
        } else {
            NON_INVITE_TIMEOUT
        };
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            tokio::select! {
                resp = rx.recv() => {
                    let Some(mut resp) = resp else { break };
                    if resp.cseq().map(|c| c.method).as_ref() != Some(&method) {
                        continue;
                    }
                    let code = resp.status().unwrap_or(0);
                    if code == 100 {
                        continue;
                    }
                    if code >= 300 && method == Method::Invite {
                        conn.send(ack_for(&msg, &resp));
                    }
                    resp.remove_first_value("via");
                    core.send_back(&origin, Bytes::from(resp.to_bytes()));
                    if code >= 200 {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    core.reply(&msg_without_top_via(&msg), &origin, 408, &[]);
                    break;
                }
            }
        }
    } else {
        core.reply(&msg_without_top_via(&msg), &origin, 503, &[]);
    }
    core.txns.remove_client(&branch);
}

fn msg_without_top_via(msg: &Message) -> Message {
    let mut m = msg.clone();
    m.remove_first_value("via");
    m
}
