//! The cache: one entry per name, holding per family a ready answer or the
//! query in flight (so concurrent calls share one query), plus the assembled
//! answers of recent calls (the fast path: one read lock, one map lookup, one
//! `Arc` clone). Kept small: a large configuration caches one entry per trunk
//! FQDN. Expired content is swept at most every [`SWEEP_INTERVAL`].

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock, RwLockWriteGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    error::DnsError,
    lookup::{Gather, Resolution, family_index},
    query::{FamilyAnswer, SharedAnswer},
};
use crate::config::IpFamily;

/// Expired answers and assembled results are dropped at most this often (on a cache miss, or
/// when the resolver's owner asks), so memory follows what is live.
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

pub(super) struct Cache {
    map: RwLock<HashMap<Box<str>, Entry>>,
    /// When the next sweep is due; only touched with the map's write lock held.
    next_sweep: Mutex<Instant>,
    /// Bumped whenever the cache is dropped; results started before are not cached.
    epoch: AtomicU64,
}

/// One cached name.
#[derive(Default)]
struct Entry {
    /// Index 0: IPv4 (A), 1: IPv6 (AAAA).
    slots: [Slot; 2],
    /// Usually one (a name is mostly asked for with one family combination); allocated exactly.
    assembled: Vec<Assembled>,
}

#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    Ready(Arc<FamilyAnswer>),
    /// Boxed: a query is in flight only briefly, and this keeps every cached slot two words.
    InFlight(Box<InFlight>),
}

struct InFlight {
    id: u64,
    started: Instant,
    fut: SharedAnswer,
}

struct Assembled {
    combo: u8,
    valid_until: Instant,
    result: Result<Arc<Resolution>, DnsError>,
}

impl Cache {
    pub fn new(now: Instant) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            next_sweep: Mutex::new(now + SWEEP_INTERVAL),
            epoch: AtomicU64::new(0),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Box<str>, Entry>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The fast path: an assembled answer for this family combination that is still valid.
    pub fn assembled(
        &self,
        key: &str,
        combo: u8,
        now: Instant,
    ) -> Option<Result<Arc<Resolution>, DnsError>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let entry = map.get(key)?;
        let a = entry
            .assembled
            .iter()
            .find(|a| a.combo == combo && now < a.valid_until)?;
        Some(a.result.clone())
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// For each requested family: the ready answer, else the query in flight to
    /// join, else a query started with `start(family)` → (id, future). One
    /// write lock for all of it, so two calls never start the same query.
    pub fn gather(
        &self,
        key: &str,
        fams: &[Option<IpFamily>; 2],
        now: Instant,
        mut start: impl FnMut(IpFamily) -> (u64, SharedAnswer),
    ) -> Gather {
        let mut gather = Gather::default();
        let mut map = self.write();
        self.maybe_sweep(&mut map, now);
        let entry = match map.get_mut(key) {
            Some(e) => e,
            None => map.entry(key.into()).or_default(),
        };
        for (pos, fam) in fams.iter().enumerate() {
            let Some(fam) = *fam else { continue };
            let slot = &mut entry.slots[family_index(fam)];
            match slot {
                Slot::Ready(a) if now < a.cache_until => {
                    gather.answered(pos, a.clone());
                    continue;
                }
                Slot::InFlight(f) => {
                    gather.wait_for(pos, f.started, f.fut.clone());
                    continue;
                }
                _ => {}
            }
            gather.queried = true;
            let (id, fut) = start(fam);
            gather.wait_for(pos, now, fut.clone());
            *slot = Slot::InFlight(Box::new(InFlight {
                id,
                started: now,
                fut,
            }));
        }
        gather
    }

    /// Lands the answer of query `id` in its slot (unless the slot moved on:
    /// the cache was dropped, or another query replaced it).
    pub fn settle(&self, key: &str, fam: IpFamily, id: u64, answer: &Arc<FamilyAnswer>) {
        let mut map = self.write();
        if let Some(entry) = map.get_mut(key) {
            let slot = &mut entry.slots[family_index(fam)];
            if matches!(slot, Slot::InFlight(f) if f.id == id) {
                *slot = if Instant::now() < answer.cache_until {
                    Slot::Ready(answer.clone())
                } else {
                    Slot::Empty
                };
            }
        }
    }

    /// Keeps a call's assembled answer for the calls after it, unless the
    /// cache was dropped since the call started (`epoch`).
    pub fn keep_assembled(
        &self,
        key: &str,
        combo: u8,
        epoch: u64,
        valid_until: Instant,
        result: &Result<Arc<Resolution>, DnsError>,
        now: Instant,
    ) {
        if self.epoch() != epoch {
            return;
        }
        let mut map = self.write();
        if self.epoch() == epoch
            && let Some(entry) = map.get_mut(key)
        {
            entry
                .assembled
                .retain(|a| a.combo != combo && now < a.valid_until);
            entry.assembled.reserve_exact(1);
            entry.assembled.push(Assembled {
                combo,
                valid_until,
                result: result.clone(),
            });
        }
    }

    /// Drops expired answers now, if a sweep is due.
    pub fn purge_expired(&self, now: Instant) {
        let due = *self.next_sweep.lock().unwrap_or_else(|p| p.into_inner());
        if now < due {
            return;
        }
        let mut map = self.write();
        self.maybe_sweep(&mut map, now);
    }

    /// Drops every cached answer (queries in flight complete but are not cached).
    pub fn clear(&self) {
        let mut map = self.write();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.clear();
    }

    /// Sweeps when [`SWEEP_INTERVAL`] has passed since the last sweep.
    fn maybe_sweep(&self, map: &mut HashMap<Box<str>, Entry>, now: Instant) {
        let mut next = self.next_sweep.lock().unwrap_or_else(|p| p.into_inner());
        if now >= *next {
            sweep(map, now);
            *next = now + SWEEP_INTERVAL;
        }
    }
}

/// Drops expired answers and assembled results, and names left with nothing fresh and nothing
/// in flight; gives back table space when most of it is unused.
fn sweep(map: &mut HashMap<Box<str>, Entry>, now: Instant) {
    map.retain(|_, e| {
        e.assembled.retain(|a| now < a.valid_until);
        if e.assembled.is_empty() {
            e.assembled = Vec::new();
        }
        for slot in &mut e.slots {
            if matches!(slot, Slot::Ready(a) if now >= a.cache_until) {
                *slot = Slot::Empty;
            }
        }
        e.slots.iter().any(|s| !matches!(s, Slot::Empty))
    });
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}
