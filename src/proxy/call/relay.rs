//! One task per in-dialog request (ACK, BYE, re-INVITE, UPDATE, INFO, …)
//! relayed along the route set, and its responses back. Every failure is a
//! [`Refusal`] answered in one place — unless the request is an ACK, which
//! gets no answer.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use tracing::{Instrument, info_span, warn};

use super::{context::CallContext, invite::TIMER_C};
use crate::{
    config::IpFamily,
    proxy::{
        classify::{HopTls, next_hop},
        outcome::Refusal,
        route_set::RouteInfo,
        stamp::{self, ack_for},
        tls::{self, DialTls},
        transport::ConnHandle,
    },
    sip::{Header, Message, Method},
};

/// Non-INVITE transaction timeout (64 × T1).
const NON_INVITE_TIMEOUT: Duration = Duration::from_secs(32);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the relay of an in-dialog request whose route named `route`.
pub fn spawn_relay(ctx: Arc<CallContext>, msg: Message, origin: ConnHandle, route: RouteInfo) {
    let prefix = ctx.routes.load().config.header_prefix.clone();
    let call_id = msg.call_id().map(|c| c.into_owned()).unwrap_or_default();
    let call_sid = msg
        .header_value(&format!("{prefix}CallSid"))
        .map(|c| c.into_owned())
        .unwrap_or_default();
    let span = info_span!("dialog", call_sid = %call_sid, call_id = %call_id);
    tokio::spawn(
        async move {
            let mut msg = msg;
            let is_ack = msg.method() == Some(&Method::Ack);
            if let Err(refusal) = relay(&ctx, &mut msg, &origin, route).await
                && !is_ack
            {
                ctx.refuse(&msg, &origin, None, &refusal);
            }
        }
        .instrument(span),
    );
}

/// Relays `msg`; on an error it is left as received (our Via removed again),
/// so the answer to it is built from what the sender sent.
async fn relay(
    ctx: &CallContext,
    msg: &mut Message,
    origin: &ConnHandle,
    route: RouteInfo,
) -> Result<(), Refusal> {
    let Some(method) = msg.method().cloned() else {
        return Ok(());
    };
    ctx.metrics
        .dialog_requests
        .with_label_values(&[method.as_str()])
        .inc();
    let routes = ctx.routes.load_full();
    let trunk = route
        .trunk_sid
        .as_deref()
        .and_then(|s| routes.trunk_by_sid(s))
        .cloned();
    let hop = next_hop(msg, route.towards, trunk.as_deref())?;
    let ip = match hop.host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match ctx
            .resolver
            .resolve(&hop.host, &[IpFamily::IPv4, IpFamily::IPv6])
            .await
        {
            Ok(r) => *r.addrs.first().ok_or(Refusal::NextHopUnresolved)?,
            Err(e) => {
                warn!(host = %hop.host, error = %e, "in-dialog next hop did not resolve");
                return Err(Refusal::NextHopUnresolved);
            }
        },
    };
    let tls = match hop.tls {
        HopTls::None => None,
        HopTls::Trunk(t) => t,
        HopTls::System => tls::client_config(None).ok().map(|config| DialTls {
            config,
            server_name: hop.host.clone(),
        }),
    };
    let connect_timeout = trunk
        .as_ref()
        .map(|t| t.cfg.spec.failover.connect_timeout.get())
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let conn = ctx
        .conns
        .dial(
            SocketAddr::new(ip, hop.port),
            hop.transport,
            tls.as_ref(),
            connect_timeout,
        )
        .await
        .map_err(|e| {
            warn!(method = method.as_str(), error = %e, "in-dialog next hop unreachable");
            Refusal::NextHopUnreachable
        })?;
    stamp::decrement_max_forwards(msg);
    let branch = ctx.local.new_branch();
    msg.push_front(Header::new("Via", &ctx.via(&conn, &branch)));
    if method == Method::Ack {
        conn.send(Bytes::from(msg.to_bytes()));
        return Ok(());
    }
    let mut client = ctx.txns.open_client(branch);
    if !conn.send(Bytes::from(msg.to_bytes())) {
        msg.remove_first_value("via");
        return Err(Refusal::NextHopUnreachable);
    }
    let limit = if method == Method::Invite {
        TIMER_C
    } else {
        NON_INVITE_TIMEOUT
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            resp = client.recv() => {
                let Some(mut resp) = resp else { return Ok(()) };
                if resp.cseq().map(|c| c.method).as_ref() != Some(&method) {
                    continue;
                }
                let code = resp.status().unwrap_or(0);
                if code == 100 {
                    continue;
                }
                if code >= 300 && method == Method::Invite {
                    conn.send(ack_for(msg, &resp));
                }
                resp.remove_first_value("via");
                ctx.send_back(origin, Bytes::from(resp.to_bytes()));
                if code >= 200 {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                msg.remove_first_value("via");
                return Err(Refusal::NoAnswer);
            }
        }
    }
}
