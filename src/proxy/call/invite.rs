//! One task per INVITE transaction: admission, DNS, delivery with failover
//! over the targets, CANCEL, and the final answer to the caller. The call's
//! [`CallRecord`] is built as it goes.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{admission::admit, context::CallContext};
use crate::{
    config::IpFamily,
    proxy::{
        classify::Plan,
        outcome::{Outcome, Refusal},
        record::{Attempt, AttemptResult, CallRecord},
        route_set::Side,
        routes::Trunk,
        stamp::{self, ack_for, cancel_for},
        targets::{Target, trunk_targets, upstream_targets},
        transport::{ConnHandle, DialError},
        txn::{ClientTxn, ServerEvent, ServerTxn},
    },
    sip::{Header, Message, Method, headers::NameAddr},
};

/// RFC 3261 Timer C: a proxy gives up on a ringing branch after this long.
pub const TIMER_C: Duration = Duration::from_secs(180);
/// How long a cancelled branch may take to answer 487 before we answer for it.
const CANCEL_GRACE: Duration = Duration::from_secs(4);

/// Starts the task of a new call planned as `plan`; `txn` is its server transaction.
pub fn spawn_call(
    ctx: Arc<CallContext>,
    msg: Message,
    origin: ConnHandle,
    plan: Plan,
    txn: ServerTxn,
) {
    let prefix = ctx.routes.load().config.header_prefix.clone();
    let call_id = msg.call_id().map(|c| c.into_owned()).unwrap_or_default();
    let call_sid = msg
        .header_value(&format!("{prefix}CallSid"))
        .map(|c| c.into_owned())
        .unwrap_or_else(stamp::new_sid);
    let span = info_span!("call", call_sid = %call_sid, call_id = %call_id);
    tokio::spawn(
        async move {
            ctx.metrics.inflight_calls.inc();
            let mut call = Call {
                ctx: ctx.clone(),
                to_tag: stamp::new_token(),
                msg,
                origin,
                txn,
                cancelled: false,
                record: CallRecord::new(call_sid, call_id),
            };
            let outcome = call.run(plan).await;
            let Call { txn, record, .. } = call;
            // The server transaction closes: a retransmission now is a new INVITE.
            drop(txn);
            ctx.metrics.inflight_calls.dec();
            let code = outcome.status();
            ctx.metrics
                .calls
                .with_label_values(&[&record.trunk, record.direction, &code.to_string()])
                .inc();
            if !record.trunk.is_empty() {
                ctx.metrics
                    .call_setup
                    .with_label_values(&[&record.trunk])
                    .observe(record.started.elapsed().as_secs_f64());
            }
            info!(
                trunk = %record.trunk,
                direction = record.direction,
                status = code,
                outcome = outcome.label(),
                attempts = record.attempts.len(),
                "call setup finished"
            );
        }
        .instrument(span),
    );
}

struct Call {
    ctx: Arc<CallContext>,
    to_tag: String,
    msg: Message,
    origin: ConnHandle,
    txn: ServerTxn,
    cancelled: bool,
    record: CallRecord,
}

/// What one target did for the call.
enum Step {
    /// A final answer was relayed (or generated); the call is done.
    Done(Outcome),
    /// Try the next address; keep the answer that made us move on, if any.
    Next(Option<Message>),
}

impl Call {
    async fn run(&mut self, plan: Plan) -> Outcome {
        self.record.direction = plan.direction();
        match plan {
            Plan::Refuse(refusal) => {
                let number = self
                    .msg
                    .request_uri()
                    .and_then(stamp::dialled_number)
                    .unwrap_or_default();
                info!(
                    number,
                    code = refusal.status(),
                    "call refused: no trunk for this number or source"
                );
                self.refuse(refusal)
            }
            Plan::Inbound(trunk) => {
                self.record.trunk = trunk.name().to_owned();
                self.inbound(&trunk).await
            }
            Plan::Outbound(trunk) => {
                self.record.trunk = trunk.name().to_owned();
                self.outbound(&trunk).await
            }
        }
    }

    /// Our answer to the caller: the one place a call's refusal becomes bytes.
    fn refuse(&self, refusal: Refusal) -> Outcome {
        self.ctx
            .refuse(&self.msg, &self.origin, Some(&self.to_tag), &refusal);
        Outcome::Refused(refusal)
    }

    fn trying(&self) {
        let bytes = stamp::response(&self.msg, 100, stamp::reason_phrase(100), None, &[]);
        self.ctx.send_back(&self.origin, bytes);
    }

    /// Admission; a refusal is logged with the trunk and answered.
    async fn admitted(&self, trunk: &Trunk) -> Result<(), Outcome> {
        match admit(&self.ctx, trunk, &self.msg.body).await {
            Ok(()) => Ok(()),
            Err(refusal) => {
                match &refusal {
                    Refusal::Suspended => info!(trunk = trunk.name(), "trunk suspended"),
                    Refusal::NoCodec { .. } => {
                        info!(trunk = trunk.name(), "offer has no allowed codec")
                    }
                    Refusal::Quota { .. } => info!(
                        trunk = trunk.name(),
                        retry_after = %refusal.retry_after().unwrap_or_default(),
                        "calls-per-minute quota reached"
                    ),
                    other => info!(
                        trunk = trunk.name(),
                        refusal = other.label(),
                        "call not admitted"
                    ),
                }
                Err(self.refuse(refusal))
            }
        }
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
        self.ctx
            .send_back(&self.origin, Bytes::from(resp.to_bytes()));
    }

    async fn inbound(&mut self, trunk: &Arc<Trunk>) -> Outcome {
        self.trying();
        if let Err(outcome) = self.admitted(trunk).await {
            return outcome;
        }
        let spec = &trunk.cfg.spec;
        let resolution = match self
            .ctx
            .resolver
            .resolve(&spec.fqdn, &spec.ip_families)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!(trunk = trunk.name(), fqdn = %spec.fqdn, error = %e, "DNS resolution failed");
                return self.refuse(Refusal::DnsFailed);
            }
        };
        let targets = trunk_targets(trunk, &resolution.addrs, Instant::now());
        self.record.dns = Some(resolution);
        let port = spec.effective_port();
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
        let routes = self.ctx.routes.load();
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

    async fn outbound(&mut self, trunk: &Arc<Trunk>) -> Outcome {
        self.trying();
        if let Err(outcome) = self.admitted(trunk).await {
            return outcome;
        }
        let routes = self.ctx.routes.load_full();
        let Some(up) = routes.upstream.clone() else {
            warn!(
                trunk = trunk.name(),
                "no upstream configured for trunk-originated calls"
            );
            return self.refuse(Refusal::NoUpstream);
        };
        let addrs: Vec<IpAddr> = match up.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match self
                .ctx
                .resolver
                .resolve(&up.host, &[IpFamily::IPv4, IpFamily::IPv6])
                .await
            {
                Ok(r) => {
                    let addrs = r.addrs.clone();
                    self.record.dns = Some(r);
                    addrs
                }
                Err(e) => {
                    warn!(upstream = %up.host, error = %e, "upstream DNS resolution failed");
                    return self.refuse(Refusal::UpstreamDnsFailed);
                }
            },
        };
        let targets = upstream_targets(&up, addrs);
        let mut fwd = self.msg.clone();
        let domain = routes.config.signaling_domain.clone();
        self.stamp(&mut fwd, trunk, &routes.config.header_prefix, &domain);
        self.deliver(fwd, targets, trunk, Side::Upstream).await
    }

    /// Correlation headers (brief §5).
    fn stamp(&self, fwd: &mut Message, trunk: &Trunk, prefix: &str, domain: &str) {
        stamp::decrement_max_forwards(fwd);
        stamp::put_header(fwd, &format!("{prefix}CallSid"), &self.record.call_sid);
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
    ) -> Outcome {
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
            let started = Instant::now();
            let (result, answer) = match self
                .ctx
                .conns
                .dial(
                    target.addr,
                    target.transport,
                    target.tls.as_ref(),
                    connect_timeout,
                )
                .await
            {
                Err(e) => {
                    let reason = match &e {
                        DialError::Timeout(_) => "connect_timeout",
                        DialError::Tls(..) => {
                            self.ctx
                                .metrics
                                .tls_handshake_failures
                                .with_label_values(&[trunk.name()])
                                .inc();
                            "tls"
                        }
                        _ => "connect",
                    };
                    warn!(trunk = trunk.name(), address = %target.addr, error = %e, reason, "address failed; trying the next");
                    (AttemptResult::NotConnected(reason), None)
                }
                Ok(conn) => match self
                    .attempt(&fwd, &conn, trunk, towards, response_timeout)
                    .await
                {
                    Step::Done(outcome) => {
                        self.record.attempts.push(Attempt {
                            address: target.addr,
                            transport: target.transport,
                            started,
                            result: AttemptResult::Final(outcome.status()),
                        });
                        trunk.state.release(target.addr);
                        return outcome;
                    }
                    Step::Next(answer) => {
                        let result = match answer.as_ref().and_then(|m| m.status()) {
                            Some(code) => AttemptResult::FailedOver(code),
                            None => AttemptResult::NoAnswer,
                        };
                        (result, answer)
                    }
                },
            };
            let reason = result.failover_reason().unwrap_or_default();
            if !matches!(result, AttemptResult::NotConnected(_)) {
                warn!(trunk = trunk.name(), address = %target.addr, reason = %reason, "address failed; trying the next");
            }
            self.ctx
                .metrics
                .failovers
                .with_label_values(&[trunk.name(), &reason])
                .inc();
            trunk.state.hold(target.addr, Instant::now() + hold_down);
            self.record.attempts.push(Attempt {
                address: target.addr,
                transport: target.transport,
                started,
                result,
            });
            if answer.is_some() {
                last = answer;
            }
        }
        if self.cancelled {
            return self.refuse(Refusal::Cancelled);
        }
        // Every address failed: the last real answer, else 503.
        match last {
            // Relayed like any answer: the caller's own From and To.
            Some(resp) => {
                let code = resp.status().unwrap_or(503);
                self.relay_back(resp);
                Outcome::Relayed(code)
            }
            None => self.refuse(Refusal::Unreachable),
        }
    }

    /// Sends the INVITE to one target, with our Via and two Record-Route entries.
    async fn attempt(
        &mut self,
        fwd: &Message,
        conn: &ConnHandle,
        trunk: &Arc<Trunk>,
        towards: Side,
        response_timeout: Duration,
    ) -> Step {
        let branch = self.ctx.local.new_branch();
        let mut out = fwd.clone();
        out.push_front(Header::new("Via", &self.ctx.via(conn, &branch)));
        // Two Record-Route entries, one facing each side (top: the side we deliver to).
        let sid = &trunk.cfg.trunk_sid;
        let call_id = fwd.call_id().map(|c| c.into_owned()).unwrap_or_default();
        let far_rr = self.ctx.record_route(
            &self.origin,
            towards.far(),
            self.origin.transport,
            sid,
            &call_id,
        );
        let near_rr = self
            .ctx
            .record_route(conn, towards, conn.transport, sid, &call_id);
        // Ours go above any existing entries; with none, right below our Via.
        let at = out
            .headers
            .iter()
            .position(|h| h.is("record-route"))
            .unwrap_or(1.min(out.headers.len()));
        out.headers.insert(at, Header::new("Record-Route", &far_rr));
        out.headers
            .insert(at, Header::new("Record-Route", &near_rr));
        let mut client = self.ctx.txns.open_client(branch);
        self.exchange(&out, conn, &mut client, response_timeout)
            .await
    }

    async fn exchange(
        &mut self,
        out: &Message,
        conn: &ConnHandle,
        client: &mut ClientTxn,
        response_timeout: Duration,
    ) -> Step {
        if !conn.send(Bytes::from(out.to_bytes())) {
            return Step::Next(None);
        }
        let mut deadline = tokio::time::Instant::now() + response_timeout;
        let mut answered_any = false;
        let mut cancel_sent = false;
        loop {
            tokio::select! {
                resp = client.recv() => {
                    let Some(resp) = resp else { return Step::Next(None) };
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
                            return Step::Done(Outcome::Relayed(code));
                        }
                        408 | 503 | 504 if !self.cancelled => {
                            conn.send(ack_for(out, &resp));
                            return Step::Next(Some(resp));
                        }
                        _ => {
                            conn.send(ack_for(out, &resp));
                            self.relay_back(resp);
                            return Step::Done(Outcome::Relayed(code));
                        }
                    }
                }
                ev = self.txn.events.recv(), if !self.cancelled => {
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
                        return Step::Done(self.refuse(Refusal::Cancelled));
                    }
                    if !answered_any {
                        return Step::Next(None);
                    }
                    // Timer C: ringing for too long.
                    conn.send(cancel_for(out));
                    return Step::Done(self.refuse(Refusal::RingTimeout));
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
