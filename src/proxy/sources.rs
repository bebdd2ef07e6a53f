//! The source index: which trunk a call comes from, by its source address.
//! Trunk FQDNs are re-resolved as their answers expire, only due names are
//! looked up, and the index is rebuilt only when an address changed.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use smallvec::SmallVec;

use super::{
    routes::{self, Routes, SourceIndex},
    server::Server,
};
use crate::config::IpFamily;

const SOURCE_TICK: Duration = Duration::from_millis(500);
/// A trunk's addresses are not re-queried more often than this.
const SOURCE_REFRESH_FLOOR: Duration = Duration::from_secs(1);
const SOURCE_RETRY: Duration = Duration::from_secs(10);

/// A refresh pass with at least this many lookups is followed by [`crate::heap::trim`]
/// once [`TRIM_DELAY`] has passed (its assembled answers and negative answers
/// have expired and been swept by then).
const TRIM_AFTER_LOOKUPS: usize = 1000;
const TRIM_DELAY: Duration = Duration::from_secs(8);

/// What the source refresher knows of one trunk.
#[derive(Clone, Default)]
struct SourceState {
    /// When to look the FQDN up again; `None`: now.
    due: Option<Instant>,
    /// The addresses last resolved (kept through a DNS hiccup).
    /// Inline for up to two (most FQDNs): one allocation fewer per trunk, made
    /// in the middle of the start-up burst of lookups.
    addrs: SmallVec<[IpAddr; 2]>,
}

/// Re-resolves trunk FQDNs as their answers expire, to recognise calls from
/// trunks. Only due names are looked up; the index is rebuilt only on change.
/// State is kept per trunk, in the order of `routes.trunks` (no per-name maps:
/// with 10,000 trunks each map of names costs about a megabyte).
pub async fn source_refresher(server: Arc<Server>) {
    let mut state: Vec<SourceState> = Vec::new();
    let mut upstream_ips: Vec<IpAddr> = Vec::new();
    let mut routes_seen: Option<Arc<Routes>> = None;
    // After a large burst of lookups, freed memory is handed back once its
    // short-lived answers have expired.
    let mut trim_at: Option<Instant> = None;
    loop {
        let routes = server.routes().load_full();
        let reloaded = !routes_seen
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &routes));
        if reloaded {
            // Carry state over by trunk name: trunks that left the configuration
            // are forgotten, new ones are due now.
            let old = std::mem::take(&mut state);
            state = routes
                .trunks
                .iter()
                .map(|t| {
                    routes_seen
                        .as_ref()
                        .and_then(|seen| seen.index_of(t.name()))
                        .and_then(|j| old.get(j))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            routes_seen = Some(routes.clone());
        }
        let now = Instant::now();
        let todo: Vec<(usize, Arc<routes::Trunk>)> = routes
            .trunks
            .iter()
            .enumerate()
            .filter(|(i, _)| state[*i].due.is_none_or(|d| d <= now))
            .map(|(i, t)| (i, t.clone()))
            .collect();
        if todo.len() >= TRIM_AFTER_LOOKUPS {
            trim_at = Some(now + TRIM_DELAY);
        }
        let resolver = server.resolver().clone();
        let mut lookups = futures::stream::iter(todo)
            .map(move |(i, t)| {
                let resolver = resolver.clone();
                async move {
                    let r = resolver
                        .refresh(&t.cfg.spec.fqdn, &t.cfg.spec.ip_families)
                        .await;
                    (i, r)
                }
            })
            .buffer_unordered(32);
        let mut changed = reloaded;
        while let Some((i, r)) = lookups.next().await {
            let s = &mut state[i];
            match r {
                Ok(r) => {
                    s.due = Some(r.expires.max(Instant::now() + SOURCE_REFRESH_FLOOR));
                    if *s.addrs != *r.addrs {
                        s.addrs = SmallVec::from_slice(&r.addrs);
                        changed = true;
                    }
                }
                // Keep the last known addresses through a DNS hiccup.
                Err(_) => s.due = Some(Instant::now() + SOURCE_RETRY),
            }
        }
        drop(lookups);
        if let Some(up) = &routes.upstream {
            let ips = match up.host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => server
                    .resolver()
                    .resolve(&up.host, &[IpFamily::IPv4, IpFamily::IPv6])
                    .await
                    .map(|r| r.addrs.clone())
                    .unwrap_or_else(|_| upstream_ips.clone()),
            };
            if ips != upstream_ips {
                upstream_ips = ips;
                changed = true;
            }
        } else if !upstream_ips.is_empty() {
            upstream_ips.clear();
            changed = true;
        }
        if changed {
            let sources = SourceIndex::new(
                routes.clone(),
                state.iter().map(|s| &*s.addrs),
                upstream_ips.clone(),
            );
            server.sources().store(Arc::new(sources));
            let _ = server.source_ready().send(true);
        }
        // Answers that expired since the last pass leave the DNS cache now, not
        // at the next burst of lookups.
        server.resolver().purge_expired();
        if trim_at.is_some_and(|t| t <= Instant::now()) {
            trim_at = None;
            crate::heap::trim();
        }
        tokio::time::sleep(SOURCE_TICK).await;
    }
}
