//! Target selection: the addresses a call is delivered to, in the order they
//! are tried. A function of what DNS answered and of what the proxy learned
//! about each address (hold-downs after failures); SRV records and active
//! health checks (issue "Carrier-grade routing") feed the same function.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use super::{
    routes::{Trunk, TrunkState, Upstream},
    tls::DialTls,
};
use crate::config::Transport;

/// An address plus how to reach it.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub tls: Option<DialTls>,
}

/// A trunk's targets: its resolved addresses on its port, addresses not held
/// down first (in DNS order), held-down ones last.
pub fn trunk_targets(trunk: &Trunk, addrs: &[IpAddr], now: Instant) -> Vec<Target> {
    let spec = &trunk.cfg.spec;
    let port = spec.effective_port();
    order_by_hold_down(
        &trunk.state,
        addrs.iter().map(|ip| SocketAddr::new(*ip, port)),
        now,
    )
    .into_iter()
    .map(|addr| Target {
        addr,
        transport: spec.transport,
        tls: trunk.tls.clone(),
    })
    .collect()
}

/// The upstream's targets, in DNS order.
pub fn upstream_targets(up: &Upstream, addrs: Vec<IpAddr>) -> Vec<Target> {
    addrs
        .into_iter()
        .map(|ip| Target {
            addr: SocketAddr::new(ip, up.port),
            transport: up.transport,
            tls: up.tls.clone(),
        })
        .collect()
}

/// Non-held addresses first, in DNS order; held-down ones last, still tried
/// when nothing else is left (an outage of every address must not lock out
/// recovery for the whole hold-down).
pub fn order_by_hold_down(
    state: &TrunkState,
    addrs: impl Iterator<Item = SocketAddr>,
    now: Instant,
) -> Vec<SocketAddr> {
    let (mut ok, held): (Vec<_>, Vec<_>) = addrs.partition(|a| !state.is_held(*a, now));
    ok.extend(held);
    ok
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn a(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 5070))
    }

    #[test]
    fn held_down_addresses_go_last_in_their_order_and_come_back_when_released_or_expired() {
        let state = TrunkState::new(200);
        let now = Instant::now();
        let dns = [a(1), a(2), a(3), a(4)];
        assert_eq!(
            order_by_hold_down(&state, dns.into_iter(), now),
            dns.to_vec()
        );
        state.hold(a(1), now + Duration::from_secs(30));
        state.hold(a(3), now + Duration::from_secs(30));
        assert_eq!(
            order_by_hold_down(&state, dns.into_iter(), now),
            [a(2), a(4), a(1), a(3)]
        );
        // All held: all still tried.
        state.hold(a(2), now + Duration::from_secs(30));
        state.hold(a(4), now + Duration::from_secs(30));
        assert_eq!(order_by_hold_down(&state, dns.into_iter(), now).len(), 4);
        // Released after an answer, expired after the hold-down.
        state.release(a(1));
        let later = now + Duration::from_secs(31);
        assert_eq!(order_by_hold_down(&state, dns.into_iter(), now)[0], a(1));
        assert_eq!(
            order_by_hold_down(&state, dns.into_iter(), later),
            dns.to_vec()
        );
    }
}
