//! [`Server`]: the proxy's state, built complete in [`Server::new`], and the
//! [`Handler`] the transport hands every framed message to. Handling is thin:
//! parse, classify ([`super::classify`]), then answer, relay (a task), start a
//! call (a task), or deliver a response to its client transaction.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Weak},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tracing::{debug, info};

use super::{
    args::ConfigOverrides,
    call::{CallContext, spawn_call, spawn_relay},
    classify::{Disposition, Peer, classify, missing_mandatory, plan},
    drain::Drain,
    local::{Listeners, Local},
    outcome::{ALLOW, Refusal},
    quota::FleetQuota,
    route_sig::RouteKey,
    routes::{Routes, SourceIndex},
    stamp,
    tls::ListenerTls,
    transport::{ConnHandle, Connections, Handler},
    txn::{ServerEvent, Transactions, server_key},
};
use crate::{
    config::Transport,
    dns::Resolver,
    sip::{Message, Method, framer::FrameError},
    telemetry::metrics::ProxyMetrics,
};

/// What [`Server::new`] needs besides the routes, DNS and metrics.
pub struct Settings {
    /// This replica's name (pod name): the quota ownership key.
    pub instance: String,
    /// Addresses the listeners are bound to.
    pub listeners: Listeners,
    /// Signs our Record-Route entries.
    pub route_key: RouteKey,
    /// Command-line settings applied to every configuration loaded.
    pub overrides: ConfigOverrides,
}

pub struct Server {
    calls: Arc<CallContext>,
    sources: ArcSwap<SourceIndex>,
    listener_tls: Arc<ListenerTls>,
    /// Set once trunk sources have been resolved the first time.
    source_ready: tokio::sync::watch::Sender<bool>,
    overrides: ConfigOverrides,
}

impl Server {
    pub fn new(
        routes: Routes,
        resolver: Resolver,
        metrics: ProxyMetrics,
        listener_tls: ListenerTls,
        settings: Settings,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Server>| {
            let handler: Weak<dyn Handler> = me.clone();
            let conns = Arc::new(Connections::new(handler, metrics.connections.clone()));
            let calls = Arc::new(CallContext {
                routes: Arc::new(ArcSwap::from_pointee(routes)),
                conns,
                txns: Arc::new(Transactions::default()),
                resolver,
                quota: Arc::new(FleetQuota::new(&settings.instance, metrics.clone())),
                metrics,
                local: Local::new(settings.listeners, settings.route_key),
                drain: Drain::default(),
            });
            Server {
                calls,
                sources: ArcSwap::from_pointee(SourceIndex::default()),
                listener_tls: Arc::new(listener_tls),
                source_ready: tokio::sync::watch::channel(false).0,
                overrides: settings.overrides,
            }
        })
    }

    pub fn routes(&self) -> &ArcSwap<Routes> {
        &self.calls.routes
    }

    pub fn sources(&self) -> &ArcSwap<SourceIndex> {
        &self.sources
    }

    pub fn resolver(&self) -> &Resolver {
        &self.calls.resolver
    }

    pub fn metrics(&self) -> &ProxyMetrics {
        &self.calls.metrics
    }

    pub fn quota(&self) -> &Arc<FleetQuota> {
        &self.calls.quota
    }

    pub fn connections(&self) -> &Arc<Connections> {
        &self.calls.conns
    }

    pub fn transactions(&self) -> &Transactions {
        &self.calls.txns
    }

    pub fn listener_tls(&self) -> &Arc<ListenerTls> {
        &self.listener_tls
    }

    pub fn listeners(&self) -> Listeners {
        self.calls.local.listeners()
    }

    pub fn source_ready(&self) -> &tokio::sync::watch::Sender<bool> {
        &self.source_ready
    }

    pub fn overrides(&self) -> &ConfigOverrides {
        &self.overrides
    }

    pub fn drain(&self) -> &Drain {
        &self.calls.drain
    }

    fn on_request(&self, mut msg: Message, conn: &ConnHandle) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        self.calls
            .metrics
            .messages
            .with_label_values(&[method.as_str()])
            .inc();
        match classify(&mut msg, self.calls.local.route_key()) {
            Disposition::Relay(route) => spawn_relay(self.calls.clone(), msg, conn.clone(), route),
            Disposition::Absorb => {}
            Disposition::Cancel => self.on_cancel(&msg, conn),
            Disposition::InitialInvite => self.on_initial_invite(msg, conn),
            Disposition::Options => self.calls.reply(&msg, conn, 200, &[("Allow", ALLOW)]),
            Disposition::Refuse(refusal) => {
                self.count_refusal(&refusal, &msg, conn);
                // An ACK gets no answer.
                if method != Method::Ack {
                    self.calls.refuse(&msg, conn, None, &refusal);
                }
            }
        }
    }

    fn count_refusal(&self, refusal: &Refusal, msg: &Message, conn: &ConnHandle) {
        let reason = match refusal {
            Refusal::TooManyHops => "max_forwards",
            Refusal::ForgedRoute => {
                info!(
                    peer = %conn.peer,
                    method = msg.method().map(|m| m.as_str()).unwrap_or_default(),
                    call_id = %msg.call_id().unwrap_or_default(),
                    "in-dialog request with a Route entry we did not sign; refused"
                );
                "route_signature"
            }
            _ => return,
        };
        self.calls
            .metrics
            .bad_messages
            .with_label_values(&[reason])
            .inc();
    }

    fn on_initial_invite(&self, msg: Message, conn: &ConnHandle) {
        let Some(key) = server_key(&msg) else {
            self.calls.refuse(&msg, conn, None, &Refusal::BadRequest);
            return;
        };
        let routes = self.calls.routes.load_full();
        let number = msg.request_uri().and_then(stamp::dialled_number);
        let peer = Peer {
            ip: conn.peer.ip(),
            names: &conn.peer_names,
        };
        let plan = plan(&routes, &self.sources.load(), peer, number.as_deref());
        // None: a retransmission of an INVITE we are working on.
        if let Some(txn) = self.calls.txns.open_server(key) {
            spawn_call(self.calls.clone(), msg, conn.clone(), plan, txn);
        }
    }

    fn on_cancel(&self, msg: &Message, conn: &ConnHandle) {
        // 200 for the CANCEL first, then the call answers its INVITE 487.
        match server_key(msg).and_then(|k| self.calls.txns.server(&k)) {
            Some(tx) => {
                self.calls.reply(msg, conn, 200, &[]);
                let _ = tx.send(ServerEvent::Cancel);
            }
            None => self.calls.refuse(msg, conn, None, &Refusal::NoTransaction),
        }
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
        self.calls.metrics.messages.with_label_values(&[kind]).inc();
        let Some(branch) = msg.top_via().and_then(|v| v.branch().map(str::to_owned)) else {
            return;
        };
        if !self.calls.local.is_our_branch(&branch) {
            debug!(peer = %conn.peer, "response not for us; dropped");
            return;
        }
        if let Some(msg) = self.calls.txns.to_client(&branch, msg) {
            self.forward_response_statelessly(msg);
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
        if let Some(c) = self
            .calls
            .conns
            .find(SocketAddr::new(ip, port), transport, None)
        {
            c.send(Bytes::from(msg.to_bytes()));
        }
    }
}

impl Handler for Server {
    fn on_frame(&self, bytes: Bytes, conn: &ConnHandle) {
        match Message::parse(&bytes) {
            // Parsed but semantically broken (RFC 4475: bad CSeq, duplicated
            // Call-ID, unparseable Via…): a request gets 400, a response is dropped.
            Ok(msg) if msg.is_request() && msg.validate().is_err() => {
                self.calls
                    .metrics
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
                    self.calls.send_back(conn, bytes);
                }
            }
            Ok(msg) if msg.is_request() => self.on_request(msg, conn),
            Ok(msg) => self.on_response(msg, conn),
            Err(e) => {
                self.calls
                    .metrics
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

    fn on_frame_error(&self, e: FrameError, conn: &ConnHandle) {
        let reason: &'static str = (&e).into();
        self.calls
            .metrics
            .bad_messages
            .with_label_values(&[reason])
            .inc();
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
}
