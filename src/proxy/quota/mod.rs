//! Fleet-wide calls-per-minute quota.
//!
//! Each trunk's quota has one owner among the live proxies (rendezvous hash
//! over the heartbeat Leases, [`peers`]). The owner keeps the authoritative
//! sliding log ([`super::cpm`]); any other proxy admits calls with tokens it
//! leases from the owner in small batches ([`grant`]). A batch is stamped in
//! the owner's log when granted, so the fleet never admits more than the quota
//! while the owner lives. Alone (standalone mode, or the only live proxy)
//! every trunk is owned locally and the quota is exact.
//!
//! Error bound: docs/design/fleet-quota.md.

pub mod client;
pub mod grant;
pub mod peers;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;

use self::peers::PeerSet;
use super::routes::Trunk;
use crate::telemetry::metrics::ProxyMetrics;

/// Leased tokens not spent within this time are dropped (capacity lost,
/// never an extra call), so a proxy never sits on quota it does not use.
pub const TOKEN_TTL: Duration = Duration::from_secs(2);
/// How long a call waits for the owner before falling back to a local share.
pub const OWNER_TIMEOUT: Duration = Duration::from_millis(300);

pub struct FleetQuota {
    pub peers: Arc<ArcSwap<PeerSet>>,
    tokens: Mutex<HashMap<String, Arc<Tokens>>>,
    client: client::Client,
    metrics: ProxyMetrics,
}

/// Tokens this proxy holds for one trunk, leased from its owner.
#[derive(Default)]
struct Tokens {
    held: Mutex<Held>,
    /// One refill request in flight per trunk; other calls wait for it.
    refill: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Held {
    count: u32,
    expires: Option<Instant>,
    /// After the owner said "exhausted": refuse locally until `ask_after`
    /// (at most [`EXHAUSTED_RECHECK`]) instead of asking on every refused call.
    refused: Option<Refused>,
}

#[derive(Clone, Copy)]
struct Refused {
    ask_after: Instant,
    retry_at: Instant,
}

/// How long a proxy trusts an owner's "exhausted" before asking again.
pub const EXHAUSTED_RECHECK: Duration = Duration::from_secs(1);

impl Tokens {
    fn take(&self, now: Instant) -> bool {
        let Ok(mut h) = self.held.lock() else {
            return false;
        };
        match h.expires {
            Some(e) if e > now && h.count > 0 => {
                h.count -= 1;
                true
            }
            _ => {
                h.count = 0;
                false
            }
        }
    }

    fn put(&self, count: u32, expires: Instant) {
        if let Ok(mut h) = self.held.lock() {
            h.count = count;
            h.expires = Some(expires);
            h.refused = None;
        }
    }

    fn refuse(&self, now: Instant, wait: Duration) {
        if let Ok(mut h) = self.held.lock() {
            h.refused = Some(Refused {
                ask_after: now + wait.min(EXHAUSTED_RECHECK),
                retry_at: now + wait,
            });
        }
    }

    /// Still inside a recent "exhausted" answer: how long the caller should wait.
    fn refused(&self, now: Instant) -> Option<Duration> {
        let h = self.held.lock().ok()?;
        let r = h.refused?;
        (now < r.ask_after).then(|| r.retry_at.saturating_duration_since(now))
    }
}

/// Tokens asked for at once: small enough that little is stranded when a
/// proxy's calls stop, large enough that a busy proxy asks rarely.
pub fn batch_size(quota: u32, live: usize) -> u32 {
    let live = u32::try_from(live.max(1)).unwrap_or(u32::MAX);
    (quota / live.saturating_mul(20)).max(1)
}

impl FleetQuota {
    pub fn new(me: &str, metrics: ProxyMetrics) -> Self {
        metrics.cpm_peers.set(1);
        Self {
            peers: Arc::new(ArcSwap::from_pointee(PeerSet::alone(me))),
            tokens: Mutex::new(HashMap::new()),
            client: client::Client::new(),
            metrics,
        }
    }

    /// Admits one new call of `trunk`, or says how long until the quota frees.
    pub async fn admit(&self, trunk: &Trunk) -> Result<(), Duration> {
        let log = &trunk.state.cpm;
        let peers = self.peers.load_full();
        let owner = match peers.owner(&trunk.cfg.trunk_sid) {
            Some(o) if !peers.is_me(o) => o.clone(),
            _ => return log.try_acquire(Instant::now()),
        };
        let tokens = self.tokens_for(&trunk.cfg.trunk_sid);
        if tokens.take(Instant::now()) {
            log.record(Instant::now());
            return Ok(());
        }
        if let Some(wait) = tokens.refused(Instant::now()) {
            return Err(wait);
        }
        let _refill = tokens.refill.lock().await;
        // Another call may have refilled (or been refused) while this one waited.
        if tokens.take(Instant::now()) {
            log.record(Instant::now());
            return Ok(());
        }
        if let Some(wait) = tokens.refused(Instant::now()) {
            return Err(wait);
        }
        let quota = log.limit();
        let want = batch_size(quota, peers.len());
        let asked = tokio::time::timeout(
            OWNER_TIMEOUT,
            self.client
                .request(&owner.endpoint, &trunk.cfg.trunk_sid, want),
        )
        .await;
        match asked {
            Ok(Ok(answer)) if answer.granted > 0 => {
                self.metrics
                    .cpm_peer_requests
                    .with_label_values(&["granted"])
                    .inc();
                let now = Instant::now();
                tokens.put(answer.granted - 1, now + TOKEN_TTL);
                log.record(now);
                Ok(())
            }
            Ok(Ok(answer)) => {
                self.metrics
                    .cpm_peer_requests
                    .with_label_values(&["exhausted"])
                    .inc();
                let wait = Duration::from_millis(answer.retry_after_ms);
                tokens.refuse(Instant::now(), wait);
                Err(wait)
            }
            Ok(Err(e)) => self.fallback(trunk, &peers, &owner.name, &e.to_string()),
            Err(_) => self.fallback(trunk, &peers, &owner.name, "timed out"),
        }
    }

    /// The owner is unreachable (killed, partitioned): admit on an equal
    /// share of the quota, counted against everything this proxy already let
    /// through, so the fleet stays under the quota until the Lease expires
    /// and ownership moves.
    fn fallback(
        &self,
        trunk: &Trunk,
        peers: &PeerSet,
        owner: &str,
        why: &str,
    ) -> Result<(), Duration> {
        self.metrics
            .cpm_peer_requests
            .with_label_values(&["error"])
            .inc();
        self.metrics.cpm_local_fallbacks.inc();
        tracing::warn!(
            trunk = trunk.name(),
            owner,
            error = why,
            "quota owner unreachable; using the local share"
        );
        let log = &trunk.state.cpm;
        let live = u32::try_from(peers.len().max(1)).unwrap_or(u32::MAX);
        log.try_acquire_within(Instant::now(), log.limit() / live)
    }

    /// The owner side of a token request ([`grant`]).
    pub fn grant(&self, trunk: &Trunk, want: u32) -> Result<u32, Duration> {
        trunk.state.cpm.try_acquire_n(Instant::now(), want)
    }

    fn tokens_for(&self, sid: &str) -> Arc<Tokens> {
        let Ok(mut map) = self.tokens.lock() else {
            return Arc::default();
        };
        map.entry(sid.to_owned()).or_default().clone()
    }

    /// Drops token state of trunks that left the configuration.
    pub fn retain_trunks(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut map) = self.tokens.lock() {
            map.retain(|sid, _| keep(sid));
        }
    }

    pub fn peers_changed(&self, set: &PeerSet) {
        self.metrics.cpm_peers.set(set.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_a_twentieth_of_each_share_and_never_zero() {
        assert_eq!(batch_size(200, 1), 10);
        assert_eq!(batch_size(200, 2), 5);
        assert_eq!(batch_size(200, 3), 3);
        assert_eq!(batch_size(10, 4), 1);
        assert_eq!(batch_size(0, 0), 1);
        assert_eq!(batch_size(10_000, 2), 250);
    }

    #[test]
    fn tokens_expire_and_are_spent_once() {
        let t = Tokens::default();
        let now = Instant::now();
        assert!(!t.take(now));
        t.put(2, now + TOKEN_TTL);
        assert!(t.take(now));
        assert!(t.take(now));
        assert!(!t.take(now));
        t.put(5, now + TOKEN_TTL);
        assert!(!t.take(now + TOKEN_TTL));
        assert!(!t.take(now));
    }

    #[test]
    fn an_exhausted_answer_is_trusted_for_a_second_at_most() {
        let t = Tokens::default();
        let now = Instant::now();
        t.refuse(now, Duration::from_secs(30));
        assert_eq!(t.refused(now), Some(Duration::from_secs(30)));
        assert_eq!(
            t.refused(now + Duration::from_millis(500)),
            Some(Duration::from_millis(29_500))
        );
        assert_eq!(t.refused(now + EXHAUSTED_RECHECK), None);
        t.refuse(now, Duration::from_millis(200));
        assert_eq!(t.refused(now + Duration::from_millis(200)), None);
        // A grant clears it.
        t.refuse(now, Duration::from_secs(30));
        t.put(3, now + TOKEN_TTL);
        assert_eq!(t.refused(now), None);
    }
}
