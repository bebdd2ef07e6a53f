//! [`CallContext`]: the part of the proxy a call or relay task works with —
//! the routes (swapped on reload), the connections, the open transactions,
//! DNS, the quota, our own address and ids, the drain state and the metrics.
//! Built once with the proxy; each task holds an `Arc` of it, never the
//! server itself.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::{
    dns::Resolver,
    proxy::{
        drain::Drain,
        local::Local,
        outcome::Refusal,
        quota::FleetQuota,
        route_set::Side,
        routes::Routes,
        stamp,
        transport::{ConnHandle, Connections},
        txn::Transactions,
    },
    sip::Message,
    telemetry::metrics::ProxyMetrics,
};

pub struct CallContext {
    pub(in crate::proxy) routes: Arc<ArcSwap<Routes>>,
    pub(in crate::proxy) conns: Arc<Connections>,
    pub(in crate::proxy) txns: Arc<Transactions>,
    pub(in crate::proxy) resolver: Resolver,
    pub(in crate::proxy) metrics: ProxyMetrics,
    pub(in crate::proxy) quota: Arc<FleetQuota>,
    pub(in crate::proxy) local: Local,
    pub(in crate::proxy) drain: Drain,
}

impl CallContext {
    /// Our Via for a request sent on `conn`.
    pub fn via(&self, conn: &ConnHandle, branch: &str) -> String {
        let routes = self.routes.load();
        self.local.via(&routes.config, conn, branch)
    }

    /// Our Record-Route entry facing `side` on `conn`.
    pub fn record_route(
        &self,
        conn: &ConnHandle,
        side: Side,
        transport: crate::config::Transport,
        trunk_sid: &str,
        call_id: &str,
    ) -> String {
        let routes = self.routes.load();
        self.local
            .record_route(&routes.config, conn, side, transport, trunk_sid, call_id)
    }

    /// Sends bytes back to where a request came from.
    pub fn send_back(&self, origin: &ConnHandle, bytes: Bytes) -> bool {
        self.conns.send_back(origin, bytes)
    }

    /// Answers `req` with `refusal`; `to_tag` is the call's, else a fresh one.
    pub fn refuse(
        &self,
        req: &Message,
        conn: &ConnHandle,
        to_tag: Option<&str>,
        refusal: &Refusal,
    ) {
        let bytes = match to_tag {
            Some(tag) => refusal.response(req, Some(tag)),
            None => refusal.response(req, Some(&stamp::new_token())),
        };
        self.send_back(conn, bytes);
    }

    /// Answers `req` with a status that is not a refusal (100, 200 to OPTIONS or CANCEL).
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
}
