//! Who shares the fleet's quotas: the live proxies, found through their
//! heartbeat Leases, and which of them owns each trunk's quota log.
//!
//! Ownership is a rendezvous hash of (trunk SID, pod name): every replica
//! computes the same owner from the same live set, and a replica joining or
//! leaving moves only the trunks it wins or loses.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, reflector, watcher},
};
use tracing::{info, warn};

use crate::wire::heartbeat::{self, Beat};

/// The live set is recomputed at least this often (Leases expire silently).
const RECOMPUTE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// `http://ip:port` of the peer's admin listener.
    pub endpoint: String,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PeerSet {
    pub me: String,
    /// Sorted by name; always contains `me`.
    pub peers: Vec<Peer>,
}

impl PeerSet {
    pub fn alone(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            peers: vec![Peer {
                name: me.to_owned(),
                endpoint: String::new(),
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The rendezvous-hash winner for `key`.
    pub fn owner(&self, key: &str) -> Option<&Peer> {
        self.peers
            .iter()
            .max_by_key(|p| (weight(key, &p.name), p.name.as_str()))
    }

    pub fn is_me(&self, peer: &Peer) -> bool {
        peer.name == self.me
    }

    /// Live peers from heartbeat Leases at `now_ms` (Unix milliseconds).
    pub fn from_leases<'a>(
        me: &str,
        my_endpoint: &str,
        leases: impl IntoIterator<Item = &'a Lease>,
        now_ms: i64,
    ) -> Self {
        let mut peers: Vec<Peer> = leases
            .into_iter()
            .filter_map(|l| {
                let beat = Beat::read(l)?;
                if !beat.live_at(now_ms) || beat.pod == me {
                    return None;
                }
                // A proxy without a quota endpoint cannot be asked for tokens.
                Some(Peer {
                    name: beat.pod.to_owned(),
                    endpoint: beat.quota_endpoint?.to_owned(),
                })
            })
            .collect();
        peers.push(Peer {
            name: me.to_owned(),
            endpoint: my_endpoint.to_owned(),
        });
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers.dedup_by(|a, b| a.name == b.name);
        Self {
            me: me.to_owned(),
            peers,
        }
    }
}

/// A fixed, version-independent hash (FNV-1a, then a splitmix64 finish):
/// replicas of different builds must agree on owners during a rollout.
fn weight(key: &str, peer: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0xff]).chain(peer.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Keeps `target` equal to the live peer set; flips `ready` after the first
/// full list of Leases.
pub async fn watch(
    client: Client,
    namespace: String,
    me: String,
    my_endpoint: String,
    target: Arc<ArcSwap<PeerSet>>,
    ready: tokio::sync::watch::Sender<bool>,
    on_change: impl Fn(&PeerSet),
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let (store, writer) = reflector::store::<Lease>();
    let cfg = watcher::Config::default().labels(heartbeat::SELECTOR);
    let mut events = reflector(writer, watcher(api, cfg))
        .default_backoff()
        .boxed();
    let mut tick = tokio::time::interval(RECOMPUTE);
    let mut listed = false;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "watching proxy heartbeat Leases"),
                None => return,
            },
            _ = tick.tick() => {}
        }
        if listed {
            let leases = store.state();
            let now = Timestamp::now().as_millisecond();
            let set = PeerSet::from_leases(&me, &my_endpoint, leases.iter().map(|l| &**l), now);
            if **target.load() != set {
                info!(
                    peers = ?set.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                    "quota peers changed"
                );
                on_change(&set);
                target.store(Arc::new(set));
            }
            ready.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{
        api::coordination::v1::LeaseSpec,
        apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    };

    fn lease(name: &str, renewed_ms: i64, endpoint: Option<&str>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(format!("vsip-proxy-{name}")),
                annotations: endpoint.map(|e| {
                    [(
                        heartbeat::QUOTA_ENDPOINT_ANNOTATION.to_owned(),
                        e.to_owned(),
                    )]
                    .into_iter()
                    .collect()
                }),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.to_owned()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    Timestamp::from_millisecond(renewed_ms).expect("valid time"),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn live_set_drops_expired_and_endpointless_leases_and_keeps_me() {
        let now = 1_800_000_000_000;
        let leases = [
            lease("b", now - 1_000, Some("http://10.0.0.2:9090")),
            lease("c", now - 16_000, Some("http://10.0.0.3:9090")),
            lease("d", now - 1_000, None),
            lease("a", now - 20_000, Some("http://stale")),
        ];
        let set = PeerSet::from_leases("a", "http://10.0.0.1:9090", leases.iter(), now);
        let names: Vec<&str> = set.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(set.peers[0].endpoint, "http://10.0.0.1:9090");
    }

    #[test]
    fn every_replica_agrees_and_owners_spread() {
        let now = 1_800_000_000_000;
        let leases: Vec<Lease> = ["p0", "p1", "p2"]
            .iter()
            .map(|n| lease(n, now, Some("http://x")))
            .collect();
        let views: Vec<PeerSet> = ["p0", "p1", "p2"]
            .iter()
            .map(|me| PeerSet::from_leases(me, "http://x", leases.iter(), now))
            .collect();
        let mut per_owner = std::collections::HashMap::new();
        for i in 0..3000 {
            let key = format!("TK{i:030}");
            let owners: Vec<&str> = views
                .iter()
                .map(|v| v.owner(&key).map(|p| p.name.as_str()).unwrap_or(""))
                .collect();
            assert!(owners.iter().all(|o| *o == owners[0]), "{key}: {owners:?}");
            *per_owner.entry(owners[0].to_owned()).or_insert(0) += 1;
        }
        // Roughly a third each.
        assert!(
            per_owner.values().all(|n| (800..1200).contains(n)),
            "{per_owner:?}"
        );
    }

    #[test]
    fn a_leaving_peer_moves_only_its_own_trunks() {
        let now = 1_800_000_000_000;
        let three: Vec<Lease> = ["p0", "p1", "p2"]
            .iter()
            .map(|n| lease(n, now, Some("http://x")))
            .collect();
        let before = PeerSet::from_leases("p0", "http://x", three.iter(), now);
        let after = PeerSet::from_leases("p0", "http://x", three[..2].iter(), now);
        for i in 0..1000 {
            let key = format!("TK{i}");
            let b = before.owner(&key).map(|p| p.name.clone());
            let a = after.owner(&key).map(|p| p.name.clone());
            if b.as_deref() != Some("p2") {
                assert_eq!(a, b, "{key} moved although its owner stayed");
            }
        }
    }
}
