//! What this proxy writes about itself: the host and port it advertises per
//! transport, its Via (with a branch id only it issues) and its signed
//! Record-Route entries.

use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
};

use super::{
    route_set::{self, Side},
    route_sig::RouteKey,
    stamp,
    transport::ConnHandle,
};
use crate::config::{ProxyConfig, Transport};

/// Addresses our listeners are bound to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listeners {
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

pub struct Local {
    listeners: Listeners,
    /// Signs our Record-Route entries; in-dialog requests must carry one that verifies.
    route_key: RouteKey,
    branch_prefix: String,
    seq: AtomicU64,
}

impl Local {
    pub fn new(listeners: Listeners, route_key: RouteKey) -> Self {
        Self {
            listeners,
            route_key,
            branch_prefix: format!("z9hG4bK-vs{}", &stamp::new_token()[..8]),
            seq: AtomicU64::new(1),
        }
    }

    pub fn listeners(&self) -> Listeners {
        self.listeners
    }

    pub fn route_key(&self) -> &RouteKey {
        &self.route_key
    }

    pub fn new_branch(&self) -> String {
        format!(
            "{}-{:x}",
            self.branch_prefix,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn is_our_branch(&self, branch: &str) -> bool {
        branch.starts_with(&self.branch_prefix)
    }

    /// Host:port we advertise on a connection's side for `transport`: the
    /// configuration's `advertise` / `advertisePorts`, else the listener's address.
    pub fn advertised(
        &self,
        config: &ProxyConfig,
        conn: &ConnHandle,
        transport: Transport,
    ) -> (String, u16) {
        let listener = match transport {
            Transport::Tls => self.listeners.tls.or(self.listeners.tcp),
            Transport::Tcp => self.listeners.tcp.or(self.listeners.tls),
        };
        let port = config
            .advertise_ports
            .get(transport)
            .unwrap_or_else(|| listener.map(|l| l.port()).unwrap_or(conn.local.port()));
        let host = match &config.advertise {
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
        config: &ProxyConfig,
        conn: &ConnHandle,
        side: Side,
        transport: Transport,
        trunk_sid: &str,
        call_id: &str,
    ) -> String {
        let t = self.listener_transport(transport);
        let (host, port) = self.advertised(config, conn, t);
        let signature = self.route_key.sign(side.token(), trunk_sid, call_id);
        route_set::record_route(&host, port, t, side, trunk_sid, &signature)
    }

    pub fn via(&self, config: &ProxyConfig, conn: &ConnHandle, branch: &str) -> String {
        let (host, port) = self.advertised(config, conn, conn.transport);
        format!(
            "SIP/2.0/{} {host}:{port};branch={branch};rport",
            conn.transport.via_token()
        )
    }
}

pub fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
