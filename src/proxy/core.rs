//! Routing: what to do with each message that arrives on a connection.
//!
//! Requests are classified (initial INVITE, CANCEL, ACK, in-dialog by our
//! Record-Route, or refused) and handed to a call or relay task; responses are
//! matched to the client transaction named by our Via branch.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{
    call,
    quota::FleetQuota,
    route_sig::{RR_SIG, RouteKey},
    routes::{Routes, SourceIndex, Trunk},
    stamp,
    tls::ListenerTls,
    transport::{ConnHandle, Connections},
};
use crate::{
    config::Transport,
    dns::Resolver,
    sip::{Message, Method, framer::FrameError, headers::NameAddr, uri::SipUri},
    telemetry::metrics::ProxyMetrics,
};

/// Marker parameter in our Record-Route URIs; its value names the side the
/// entry faces (`up` = upstream/carrier, `tr` = trunk).
pub const RR_MARK: &str = "vsip";
/// Trunk identity carried in our Record-Route, so in-dialog requests towards
/// the trunk use its TLS settings.
pub const RR_TRUNK: &str = "vt";

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
}

#[derive(Debug)]
pub enum ServerEvent {
    Cancel,
}

/// Open transactions: ours (client side, keyed by our branch) and pending
/// INVITEs we received (server side, keyed by the sender's branch).
#[derive(Default)]
pub struct Transactions {
    client: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
    server: Mutex<HashMap<String, mpsc::UnboundedSender<ServerEvent>>>,
}

impl Transactions {
    pub fn add_client(&self, branch: String, tx: mpsc::UnboundedSender<Message>) {
        if let Ok(mut m) = self.client.lock() {
            m.insert(branch, tx);
        }
    }
    pub fn remove_client(&self, branch: &str) {
        if let Ok(mut m) = self.client.lock() {
            m.remove(branch);
        }
    }
    fn client(&self, branch: &str) -> Option<mpsc::UnboundedSender<Message>> {
        self.client.lock().ok()?.get(branch).cloned()
    }
    /// False when a transaction with that key exists already (a retransmission).
    pub fn add_server(&self, key: String, tx: mpsc::UnboundedSender<ServerEvent>) -> bool {
        let Ok(mut m) = self.server.lock() else {
            return false;
        };
        if m.contains_key(&key) {
            return false;
        }
        m.insert(key, tx);
        true
    }
    pub fn remove_server(&self, key: &str) {
        if let Ok(mut m) = self.server.lock() {
            m.remove(key);
        }
    }
    fn server(&self, key: &str) -> Option<mpsc::UnboundedSender<ServerEvent>> {
        self.server.lock().ok()?.get(key).cloned()
    }
    pub fn counts(&self) -> (usize, usize) {
        (
            self.client.lock().map(|m| m.len()).unwrap_or(0),
            self.server.lock().map(|m| m.len()).unwrap_or(0),
        )
    }
}

/// Addresses our listeners are bound to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listeners {
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

pub struct Core {
    pub routes: ArcSwap<Routes>,
    pub sources: ArcSwap<SourceIndex>,
    pub conns: Connections,
    pub txns: Transactions,
    pub resolver: Resolver,
    pub metrics: ProxyMetrics,
    pub listener_tls: ListenerTls,
    pub listeners: Listeners,
    /// Set once trunk sources have been resolved the first time.
    pub source_ready: tokio::sync::watch::Sender<bool>,
    /// Calls-per-minute admission, shared with the other live proxies.
    pub quota: FleetQuota,
    /// Command-line settings applied to every configuration loaded.
    pub overrides: super::ConfigOverrides,
    /// Signs our Record-Route entries; in-dialog requests must carry one that verifies.
    pub route_key: RouteKey,
    branch_prefix: String,
    seq: AtomicU64,
}

/// The server transaction key of a request: the sender's top Via branch.
pub fn server_key(msg: &Message) -> Option<String> {
    let via = msg.top_via()?;
    Some(format!("{}|{}", via.branch()?, via.host))
}

impl Core {
    pub fn new(
        routes: Routes,
        resolver: Resolver,
        metrics: ProxyMetrics,
        listener_tls: ListenerTls,
        listeners: Listeners,
        instance: &str,
    ) -> Self {
        Self {
            quota: FleetQuota::new(instance, metrics.clone()),
            overrides: super::ConfigOverrides::default(),
            route_key: RouteKey::random(),
            routes: ArcSwap::from_pointee(routes),
            sources: ArcSwap::from_pointee(SourceIndex::default()),
            conns: Connections::default(),
            txns: Transactions::default(),
            resolver,
            metrics,
            listener_tls,
            listeners,
            source_ready: tokio::sync::watch::channel(false).0,
            branch_prefix: format!("z9hG4bK-vs{}", &stamp::new_token()[..8]),
            seq: AtomicU64::new(1),
        }
    }

    pub fn new_branch(&self) -> String {
        format!(
            "{}-{:x}",
            self.branch_prefix,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn is_our_branch(&self, branch: &str) -> bool {
        branch.starts_with(&self.branch_prefix)
    }

    /// Host:port we advertise on a connection's side for `transport`.
    pub fn advertised(&self, conn: &ConnHandle, transport: Transport) -> (String, u16) {
        let routes = self.routes.load();
        let listener = match transport {
            Transport::Tls => self.listeners.tls.or(self.listeners.tcp),
            Transport::Tcp => self.listeners.tcp.or(self.listeners.tls),
        };
        let port = routes
            .config
            .advertise_ports
            .get(transport)
            .unwrap_or_else(|| listener.map(|l| l.port()).unwrap_or(conn.local.port()));
        let host = match &routes.config.advertise {
            Some(h) => h.clone(),
            None => {
                let ip = match listener {
                    Some(l) if !l.ip().is_unspecified() => l.ip(),
                    _ => conn.local.ip(),
                };
                host_literal(ip)
            }
        };
        (host, port)
    }

    /// The transport our listener offers for a side (TLS only if we have a TLS listener).
    pub fn listener_transport(&self, wanted: Transport) -> Transport {
        match wanted {
            Transport::Tls if self.listeners.tls.is_some() => Transport::Tls,
            Transport::Tls => Transport::Tcp,
            Transport::Tcp if self.listeners.tcp.is_some() => Transport::Tcp,
            Transport::Tcp => Transport::Tls,
        }
    }

    pub fn record_route(
        &self,
        conn: &ConnHandle,
        side: Side,
        transport: Transport,
        trunk_sid: &str,
        call_id: &str,
    ) -> String {
        let t = self.listener_transport(transport);
        let (host, port) = self.advertised(conn, t);
        format!(
            "<sip:{host}:{port};transport={};lr;{RR_MARK}={};{RR_TRUNK}={};{RR_SIG}={}>",
            t.uri_param(),
            side.token(),
            rr_escape(trunk_sid),
            self.route_key.sign(side.token(), trunk_sid, call_id)
        )
    }

    pub fn via(&self, conn: &ConnHandle, branch: &str) -> String {
        let (host, port) = self.advertised(conn, conn.transport);
        format!(
            "SIP/2.0/{} {host}:{port};branch={branch};rport",
            conn.transport.via_token()
        )
    }

    /// Sends bytes back to where a request came from: its connection, or another
    /// open connection to the same peer if that one closed meanwhile.
    pub fn send_back(&self, origin: &ConnHandle, bytes: Bytes) -> bool {
        if origin.send(bytes.clone()) {
            return true;
        }
        match self.conns.find(origin.peer, origin.transport, None) {
            Some(c) => c.send(bytes),
            None => false,
        }
    }

    pub fn reply(&self, req: &Message, conn: &ConnHandle, code: u16, extra: &[(&str, &str)]) {
        let bytes = stamp::response(
            req,
            code,
            stamp::reason_phrase(code),
            Some(&stamp::new_token()),
            extra,
        );
        self.send_back(conn, bytes);
    }

    pub fn on_frame(self: &Arc<Self>, bytes: Bytes, conn: &ConnHandle) {
        match Message::parse(&bytes) {
            // Parsed but semantically broken (RFC 4475: bad CSeq, duplicated
            // Call-ID, unparseable Via…): a request gets 400, a response is dropped.
            Ok(msg) if msg.is_request() && msg.validate().is_err() => {
                self.metrics
                    .bad_messages
                    .with_label_values(&["invalid"])
                    .inc();
                let error = msg
                    .validate()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                debug!(peer = %conn.peer, %error, "invalid request");
                if msg.method() != Some(&Method::Ack) {
                    // A precise reason phrase where we have one (our own words, never input).
                    let reason = msg
                        .method()
                        .and_then(|m| missing_mandatory(&msg, m))
                        .unwrap_or("Bad Request");
                    let bytes = stamp::response(&msg, 400, reason, Some(&stamp::new_token()), &[]);
                    self.send_back(conn, bytes);
                }
            }
            Ok(msg) => self.on_message(msg, conn),
            Err(e) => {
                self.metrics
                    .bad_messages
                    .with_label_values(&["malformed"])
                    .inc();
                debug!(peer = %conn.peer, error = %e, "malformed message");
                if let Some(r) = stamp::response_to_raw(&bytes, 400, "Bad Request") {
                    conn.send(r);
                }
            }
        }
    }

    pub fn on_frame_error(&self, e: FrameError, conn: &ConnHandle) {
        let reason: &'static str = (&e).into();
        self.metrics.bad_messages.with_label_values(&[reason]).inc();
        info!(peer = %conn.peer, reason, "unframeable stream; closing");
        let answer = match &e {
            FrameError::Oversize { head: Some(h) } => {
                stamp::response_to_raw(h, 513, "Message Too Large")
            }
            FrameError::MissingContentLength { head } | FrameError::BadContentLength { head } => {
                stamp::response_to_raw(head, 400, "Bad Request")
            }
            _ => None,
        };
        if let Some(r) = answer {
            conn.send(r);
        }
    }

    pub fn on_message(self: &Arc<Self>, msg: Message, conn: &ConnHandle) {
        if msg.is_request() {
            self.on_request(msg, conn);
        } else {
            self.on_response(msg, conn);
        }
    }

    fn on_request(self: &Arc<Self>, mut msg: Message, conn: &ConnHandle) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        self.metrics
            .messages
            .with_label_values(&[method.as_str()])
            .inc();
        if method == Method::Ack {
            self.on_ack(msg, conn);
            return;
        }
        if msg.max_forwards() == Some(0) {
            self.metrics
                .bad_messages
                .with_label_values(&["max_forwards"])
                .inc();
            self.reply(&msg, conn, 483, &[]);
            return;
        }
        if method == Method::Cancel {
            self.on_cancel(&msg, conn);
            return;
        }
        match self.pop_own_routes(&mut msg) {
            Ok(Some(route)) => {
                call::spawn_relay(self.clone(), msg, conn.clone(), route);
                return;
            }
            Ok(None) => {}
            Err(Forged) => {
                self.refuse_forged_route(&msg, conn);
                self.reply(&msg, conn, 403, &[("Reason", FORGED_ROUTE_REASON)]);
                return;
            }
        }
        let has_to_tag = msg
            .header_value("to")
            .and_then(|t| NameAddr::parse(&t).ok())
            .is_some_and(|n| n.tag().is_some());
        if has_to_tag {
            self.reply(&msg, conn, 481, &[]);
            return;
        }
        match method {
            Method::Invite => self.on_initial_invite(msg, conn),
            Method::Options => self.reply(&msg, conn, 200, &[("Allow", ALLOW)]),
            _ => self.reply(&msg, conn, 405, &[("Allow", ALLOW)]),
        }
    }

    fn on_initial_invite(self: &Arc<Self>, msg: Message, conn: &ConnHandle) {
        let Some(key) = server_key(&msg) else {
            self.reply(&msg, conn, 400, &[]);
            return;
        };
        let routes = self.routes.load_full();
        let number = msg.request_uri().and_then(stamp::dialled_number);
        let inbound = number
            .as_deref()
            .and_then(|n| routes.trunk_for_number(n))
            .cloned();
        let from_trunk = self.trunk_for_source(&routes, conn);
        let from_upstream =
            routes.upstream.is_none() || self.sources.load().upstream_ips.contains(&conn.peer.ip());
        // Precedence: a known trunk source calls out, unless it is also a trusted
        // upstream source dialling one of our numbers (labs put both on one host).
        let plan = match (from_trunk, inbound) {
            (Some(_), Some(t)) if from_upstream => call::Plan::Inbound(t),
            (Some(src), _) => call::Plan::Outbound(src),
            (None, Some(t)) if from_upstream => call::Plan::Inbound(t),
            (None, None) if from_upstream => call::Plan::Reject(404, "inbound"),
            (None, _) => call::Plan::Reject(403, "outbound"),
        };
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        if !self.txns.add_server(key.clone(), ev_tx) {
            // A retransmission of an INVITE we are working on.
            return;
        }
        call::spawn_call(self.clone(), msg, conn.clone(), plan, key, ev_rx);
    }

    /// The trunk a connection belongs to: its mTLS client certificate names the
    /// trunk's FQDN, or its source address is one the FQDN resolves to.
    fn trunk_for_source(&self, routes: &Routes, conn: &ConnHandle) -> Option<Arc<Trunk>> {
        if !conn.peer_names.is_empty()
            && let Some(t) = routes
                .trunks
                .iter()
                .find(|t| conn.peer_names.iter().any(|n| n == &t.cfg.spec.fqdn))
        {
            return Some(t.clone());
        }
        self.sources.load().trunk_for(&conn.peer.ip(), routes)
    }

    fn on_cancel(&self, msg: &Message, conn: &ConnHandle) {
        match server_key(msg).and_then(|k| self.txns.server(&k)) {
            Some(tx) => {
                self.reply(msg, conn, 200, &[]);
                let _ = tx.send(ServerEvent::Cancel);
            }
            None => self.reply(msg, conn, 481, &[]),
        }
    }

    fn on_ack(self: &Arc<Self>, mut msg: Message, conn: &ConnHandle) {
        // ACK for a 2xx travels the route set; ACK for our own non-2xx answers
        // (and for relayed non-2xx: we ACK those hop by hop) ends here.
        match self.pop_own_routes(&mut msg) {
            Ok(Some(route)) => call::spawn_relay(self.clone(), msg, conn.clone(), route),
            Ok(None) => {}
            // An ACK gets no answer; a forged one is dropped.
            Err(Forged) => self.refuse_forged_route(&msg, conn),
        }
    }

    fn refuse_forged_route(&self, msg: &Message, conn: &ConnHandle) {
        self.metrics
            .bad_messages
            .with_label_values(&["route_signature"])
            .inc();
        info!(
            peer = %conn.peer,
            method = msg.method().map(|m| m.as_str()).unwrap_or_default(),
            call_id = %msg.call_id().unwrap_or_default(),
            "in-dialog request with a Route entry we did not sign; refused"
        );
    }

    fn on_response(&self, msg: Message, conn: &ConnHandle) {
        let kind = match msg.status().unwrap_or(0) {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "6xx",
        };
        self.metrics.messages.with_label_values(&[kind]).inc();
        let Some(branch) = msg.top_via().and_then(|v| v.branch().map(str::to_owned)) else {
            return;
        };
        if !self.is_our_branch(&branch) {
            debug!(peer = %conn.peer, "response not for us; dropped");
            return;
        }
        match self.txns.client(&branch) {
            Some(tx) => {
                let _ = tx.send(msg);
            }
            None => self.forward_response_statelessly(msg),
        }
    }

    /// A late response (e.g. a 2xx retransmission) after its transaction ended:
    /// sent to the next Via's connection if one is open.
    fn forward_response_statelessly(&self, mut msg: Message) {
        msg.remove_first_value("via");
        let Some(via) = msg.top_via() else { return };
        let transport = if via.transport.eq_ignore_ascii_case("TLS") {
            Transport::Tls
        } else {
            Transport::Tcp
        };
        let host = via
            .received()
            .unwrap_or(&via.host)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = via.rport().flatten().or(via.port).unwrap_or(5060);
        let Ok(ip) = host.parse::<IpAddr>() else {
            return;
        };
        if let Some(c) = self.conns.find(SocketAddr::new(ip, port), transport, None) {
            c.send(Bytes::from(msg.to_bytes()));
        }
    }

    /// Removes the Route entries that name this proxy; returns where the request
    /// goes next, None when the request is not routed through us, or [`Forged`]
    /// when an entry with our marker does not carry our signature for this call.
    fn pop_own_routes(&self, msg: &mut Message) -> Result<Option<call::RouteInfo>, Forged> {
        let mut info: Option<call::RouteInfo> = None;
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
            if !self.route_key.verify(
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
            info = Some(call::RouteInfo {
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
}

/// A Route entry with our marker but not our signature.
pub struct Forged;

pub const FORGED_ROUTE_REASON: &str = "SIP;cause=403;text=\"Route not issued by this proxy\"";

pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK";

fn missing_mandatory(msg: &Message, method: &Method) -> Option<&'static str> {
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

pub fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
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

/// Seconds until an instant, for Retry-After.
pub fn secs_until(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
