//! Rollout bookkeeping: what the proxies were last given ([`RenderedState`]),
//! which revision each live proxy runs (its heartbeat Lease), and from both,
//! whether a trunk's current generation is `Programmed` — every live proxy
//! runs a revision that holds it. Pure: the renderer feeds it renders, the
//! reconciler asks it about one trunk; tests drive it without a cluster.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;

use super::{
    render::Exclusion,
    status::{ProgrammedObservation, one_line},
};
use crate::{config::ProxyConfig, wire::heartbeat::Beat};

/// What the proxies were last given.
#[derive(Clone, Debug, Default)]
pub struct RenderedState {
    /// `None` until the first render (or the Secret found at startup).
    pub revision: Option<String>,
    /// The trunks of `revision`: their generation, and since which revision it is held.
    pub generations: Arc<HashMap<String, Held>>,
    pub excluded: HashMap<String, Exclusion>,
    /// Recent revisions with their sequence numbers (newest last), so that a proxy still
    /// running an older revision can be judged: it holds a trunk's current generation
    /// exactly when its revision's number is at least that trunk's [`Held::since`].
    /// (One map per kept revision instead cost ~0.7 MB each with 10,000 trunks.)
    pub history: Vec<(String, u64)>,
}

/// A trunk's generation in the current revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub generation: i64,
    /// Number of the first revision of the unbroken run of revisions, up to the
    /// current one, that all hold this generation.
    pub since: u64,
}

/// Revisions kept in [`RenderedState::history`].
const HISTORY: usize = 32;

impl RenderedState {
    /// Trunks whose current generation some live proxy does not run yet: the only
    /// trunks whose `Programmed` can change when the proxies' revisions move.
    pub fn behind(&self, live: &[String]) -> HashSet<String> {
        let mut out = HashSet::new();
        for rev in live {
            match self.sequence_of(rev) {
                Some(seq) => out.extend(
                    self.generations
                        .iter()
                        .filter(|(_, h)| h.since > seq)
                        .map(|(k, _)| k.clone()),
                ),
                // A revision older than the history: everything counts as behind.
                None => return self.generations.keys().cloned().collect(),
            }
        }
        out
    }

    /// The number of revision `rev` (the newest, should a configuration come back).
    fn sequence_of(&self, rev: &str) -> Option<u64> {
        self.history
            .iter()
            .rev()
            .find(|(r, _)| r == rev)
            .map(|&(_, seq)| seq)
    }

    /// The state after rendering `revision` holding `generations`: a trunk keeps its
    /// [`Held::since`] while its generation stays, and starts a new run otherwise.
    pub fn next(
        &self,
        revision: Option<String>,
        generations: HashMap<String, i64>,
        excluded: HashMap<String, Exclusion>,
    ) -> RenderedState {
        let mut history = self.history.clone();
        let last = history.last().map(|&(_, seq)| seq);
        let seq = match (&revision, history.last()) {
            (Some(rev), Some((r, seq))) if r == rev => *seq,
            (Some(rev), _) => {
                let seq = last.map_or(0, |s| s + 1);
                history.push((rev.clone(), seq));
                if history.len() > HISTORY {
                    history.remove(0);
                }
                seq
            }
            (None, _) => last.unwrap_or(0),
        };
        let generations = generations
            .into_iter()
            .map(|(k, generation)| {
                let since = match self.generations.get(&k) {
                    Some(h) if h.generation == generation => h.since,
                    _ => seq,
                };
                (k, Held { generation, since })
            })
            .collect();
        RenderedState {
            revision,
            generations: Arc::new(generations),
            excluded,
            history,
        }
    }

    /// The state of a configuration read back from the Secret (operator restart).
    pub fn from_config(config: &ProxyConfig) -> Self {
        let generations = config
            .trunks
            .iter()
            .filter_map(|t| {
                let generation = t.generation?;
                Some((
                    t.name.clone(),
                    Held {
                        generation,
                        since: 0,
                    },
                ))
            })
            .collect();
        Self {
            revision: config.revision.clone(),
            history: config.revision.iter().map(|r| (r.clone(), 0)).collect(),
            generations: Arc::new(generations),
            excluded: HashMap::new(),
        }
    }

    /// `Programmed`: every live proxy (heartbeat Leases) runs a revision that holds this
    /// generation. With no live proxy nothing routes calls, so nothing is Programmed: Ready
    /// must mean that calls route.
    pub fn programmed_by_proxies(
        &self,
        key: &str,
        generation: Option<i64>,
        live: &[String],
    ) -> ProgrammedObservation {
        let interim = self.programmed(key, generation);
        if !matches!(interim, ProgrammedObservation::InConfig { .. }) {
            return interim;
        }
        if live.is_empty() {
            return ProgrammedObservation::Excluded {
                reason: "NoLiveProxies",
                message: "the configuration holds this generation, but no proxy has reported \
                          running it (heartbeat Leases vsip-proxy-*)"
                    .into(),
            };
        }
        let held = self.generations.get(key);
        let behind = live
            .iter()
            .filter(|rev| {
                let seq = self.sequence_of(rev);
                !held.is_some_and(|h| Some(h.generation) == generation && seq >= Some(h.since))
            })
            .count();
        if behind == 0 {
            // No revision names or proxy counts here: they change with every other
            // trunk's edit or a scale event, and a message that changes rewrites every
            // trunk's status each time.
            ProgrammedObservation::InConfig {
                revision: "every live proxy".into(),
            }
        } else {
            ProgrammedObservation::Excluded {
                reason: "ProxiesBehind",
                message: format!(
                    "{behind} of {} live proxies do not run generation {} yet",
                    live.len(),
                    generation.unwrap_or_default()
                ),
            }
        }
    }

    /// The interim `Programmed` rule: the rendered Secret holds this generation of the trunk.
    /// (Once proxies report their running revision through heartbeat Leases, this becomes
    /// "every live proxy runs a revision holding this generation".)
    pub fn programmed(&self, key: &str, generation: Option<i64>) -> ProgrammedObservation {
        if let (Some(rev), Some(h)) = (&self.revision, self.generations.get(key))
            && Some(h.generation) == generation
        {
            return ProgrammedObservation::InConfig {
                revision: rev.clone(),
            };
        }
        match self.excluded.get(key) {
            Some(Exclusion::InvalidSpec(errors)) => ProgrammedObservation::Excluded {
                reason: "InvalidSpec",
                message: format!("left out of the proxy configuration: {}", one_line(errors)),
            },
            Some(Exclusion::NumberConflict(_)) => ProgrammedObservation::Excluded {
                reason: "NotAccepted",
                message: "left out of the proxy configuration: number conflict".into(),
            },
            Some(Exclusion::RefsNotResolved(m)) => ProgrammedObservation::Excluded {
                reason: "RefsNotResolved",
                message: format!("left out of the proxy configuration: {m}"),
            },
            None => ProgrammedObservation::Pending,
        }
    }
}

/// Revisions run by live proxies (heartbeat Lease renewed within its duration at
/// `now_ms`), sorted.
pub fn live_revisions<'a>(leases: impl IntoIterator<Item = &'a Lease>, now_ms: i64) -> Vec<String> {
    let mut revs: Vec<String> = leases
        .into_iter()
        .filter_map(Beat::read)
        .filter(|b| b.live_at(now_ms))
        .filter_map(|b| b.revision.map(str::to_owned))
        .collect();
    revs.sort();
    revs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gens(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn empty() -> RenderedState {
        RenderedState {
            revision: None,
            generations: Arc::default(),
            excluded: HashMap::new(),
            history: Vec::new(),
        }
    }

    fn state() -> RenderedState {
        empty()
            .next(Some("r1".into()), gens(&[("a/x", 1)]), HashMap::new())
            .next(Some("r2".into()), gens(&[("a/x", 2)]), HashMap::new())
    }

    #[test]
    fn only_trunks_a_live_proxy_lags_on_are_behind() {
        let state = empty()
            .next(
                Some("r1".into()),
                gens(&[("a/x", 1), ("a/y", 1)]),
                HashMap::new(),
            )
            .next(
                Some("r2".into()),
                gens(&[("a/x", 2), ("a/y", 1)]),
                HashMap::new(),
            );
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
        assert_eq!(state.behind(&["r1".into()]), set(&["a/x"]));
        assert_eq!(state.behind(&["r2".into()]), set(&[]));
        assert_eq!(state.behind(&["r1".into(), "r2".into()]), set(&["a/x"]));
        // A proxy on a revision older than the history lags on everything.
        assert_eq!(state.behind(&["r0".into()]), set(&["a/x", "a/y"]));
        // Moving r1 → r2 requeues a/x only, not a/y.
        let moved: Vec<_> = state
            .behind(&["r1".into()])
            .symmetric_difference(&state.behind(&["r2".into()]))
            .cloned()
            .collect();
        assert_eq!(moved, ["a/x"]);
    }

    #[test]
    fn a_trunk_left_out_and_back_is_held_only_from_its_return() {
        let state = empty()
            .next(
                Some("r1".into()),
                gens(&[("a/x", 1), ("a/y", 1)]),
                HashMap::new(),
            )
            // a/y left out (say, a Secret it references went away) ...
            .next(Some("r2".into()), gens(&[("a/x", 1)]), HashMap::new())
            // ... and back at the same generation.
            .next(
                Some("r3".into()),
                gens(&[("a/x", 1), ("a/y", 1)]),
                HashMap::new(),
            );
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
        assert_eq!(state.behind(&["r1".into()]), set(&["a/y"]));
        assert_eq!(state.behind(&["r2".into()]), set(&["a/y"]));
        assert_eq!(state.behind(&["r3".into()]), set(&[]));
        // Re-rendering the same revision changes nothing.
        let same = state.next(
            Some("r3".into()),
            gens(&[("a/x", 1), ("a/y", 1)]),
            HashMap::new(),
        );
        assert_eq!(same.history, state.history);
        assert_eq!(same.generations, state.generations);
    }

    #[test]
    fn history_is_capped() {
        let mut state = empty();
        for i in 0..(HISTORY as i64 + 10) {
            state = state.next(
                Some(format!("r{i}")),
                gens(&[("a/x", i + 1)]),
                HashMap::new(),
            );
        }
        assert_eq!(state.history.len(), HISTORY);
        // Only the newest revision holds the current generation; one older than
        // the history counts as behind too.
        let oldest = state.history[0].0.clone();
        assert_eq!(state.behind(&[oldest]).len(), 1);
        assert_eq!(state.behind(&["r0".into()]).len(), 1);
        let newest = format!("r{}", HISTORY + 9);
        assert!(state.behind(&[newest]).is_empty());
    }

    #[test]
    fn programmed_needs_every_live_proxy() {
        let s = state();
        let live = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(
            s.programmed_by_proxies("a/x", Some(2), &live(&["r2", "r2"])),
            ProgrammedObservation::InConfig { .. }
        ));
        match s.programmed_by_proxies("a/x", Some(2), &live(&["r1", "r2"])) {
            ProgrammedObservation::Excluded { reason, message } => {
                assert_eq!(reason, "ProxiesBehind");
                assert!(message.starts_with("1 of 2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // An unknown revision (older than the history) counts as behind.
        assert!(matches!(
            s.programmed_by_proxies("a/x", Some(2), &live(&["r0"])),
            ProgrammedObservation::Excluded { .. }
        ));
        // Nobody runs it while no proxy reports.
        assert!(matches!(
            s.programmed_by_proxies("a/x", Some(2), &[]),
            ProgrammedObservation::Excluded {
                reason: "NoLiveProxies",
                ..
            }
        ));
        // A generation not rendered yet is pending whatever the proxies run.
        assert_eq!(
            s.programmed_by_proxies("a/x", Some(3), &live(&["r2"])),
            ProgrammedObservation::Pending
        );
    }

    #[test]
    fn live_revisions_are_those_of_unexpired_heartbeats() {
        use crate::wire::{config_secret::SecretRef, heartbeat::Heartbeat};
        let secret = SecretRef::fleet("vsip-system");
        let lease = |pod: &str, rev: &str, renewed_ms: i64| -> Lease {
            let hb = Heartbeat {
                pod,
                revision: rev,
                quota_endpoint: None,
                secret: &secret,
                secret_uid: None,
            };
            let at = k8s_openapi::jiff::Timestamp::from_millisecond(renewed_ms).expect("time");
            serde_json::from_value(hb.lease(at)).expect("lease")
        };
        let now = 1_800_000_000_000;
        let leases = [
            lease("b", "r2", now - 1_000),
            lease("a", "r1", now - 14_000),
            lease("gone", "r0", now - 15_000),
        ];
        assert_eq!(live_revisions(&leases, now), ["r1", "r2"]);
        assert!(live_revisions(&leases, now + 20_000).is_empty());
    }
}
