//! Calls-per-minute quota: at most `limit` admissions in ANY rolling 60 s.
//!
//! A sliding log (one timestamp per admitted call) gives the exact rolling
//! window the contract asks for; a fixed-window counter would admit up to 2×
//! the quota across a window edge. Memory is bounded by the quota itself.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct CpmLimiter {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: u32,
    admitted: VecDeque<Instant>,
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some(&oldest) = self.admitted.front() {
            if now.saturating_duration_since(oldest) >= WINDOW {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
    }
}

impl CpmLimiter {
    pub fn new(limit: u32) -> Self {
        Self {
            inner: Mutex::new(Inner {
                limit,
                admitted: VecDeque::new(),
            }),
        }
    }

    /// A reload may change the quota; admissions already made still count.
    pub fn set_limit(&self, limit: u32) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.limit = limit;
        }
    }

    pub fn limit(&self) -> u32 {
        self.inner.lock().map(|i| i.limit).unwrap_or(0)
    }

    /// Admits one call at `now`, or says how long until a slot frees up.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        self.take(now, 1, None).map(|_| ())
    }

    /// Admits one call against a smaller local share of the quota (the
    /// fallback when the trunk's quota owner cannot be reached).
    pub fn try_acquire_within(&self, now: Instant, share: u32) -> Result<(), Duration> {
        self.take(now, 1, Some(share)).map(|_| ())
    }

    /// Grants up to `want` admissions at once (a token batch for a peer);
    /// every granted one is stamped now, so an unused token is lost capacity,
    /// never an extra call.
    pub fn try_acquire_n(&self, now: Instant, want: u32) -> Result<u32, Duration> {
        self.take(now, want, None)
    }

    /// Records an admission decided elsewhere (a token leased from the quota
    /// owner), so this log stays the history of every call this process let
    /// through: if it becomes the owner it starts from that, not from zero.
    pub fn record(&self, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.expire(now);
        // Bounded even if an owner hand-over lets more through than the quota.
        let cap = (inner.limit as usize).saturating_mul(2).max(1);
        while inner.admitted.len() >= cap {
            inner.admitted.pop_front();
        }
        inner.admitted.push_back(now);
    }

    fn take(&self, now: Instant, want: u32, share: Option<u32>) -> Result<u32, Duration> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(want); // a poisoned lock must not stop calls
        };
        inner.expire(now);
        let limit = share.map_or(inner.limit, |s| s.min(inner.limit));
        let used = inner.admitted.len() as u64;
        let free = u64::from(limit).saturating_sub(used);
        if free == 0 {
            // The slot that frees first is the oldest one above the limit.
            let excess = (used - u64::from(limit)) as usize;
            let oldest = inner.admitted.get(excess).copied().unwrap_or(now);
            return Err((oldest + WINDOW).saturating_duration_since(now));
        }
        let granted = free.min(u64::from(want)) as u32;
        for _ in 0..granted {
            inner.admitted.push_back(now);
        }
        Ok(granted)
    }

    /// Admissions inside the current window.
    pub fn in_window(&self, now: Instant) -> usize {
        self.inner
            .lock()
            .map(|i| {
                i.admitted
                    .iter()
                    .filter(|t| now.saturating_duration_since(**t) < WINDOW)
                    .count()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rolling_window() {
        let l = CpmLimiter::new(3);
        let t0 = Instant::now();
        assert!(l.try_acquire(t0).is_ok());
        assert!(l.try_acquire(t0 + Duration::from_secs(10)).is_ok());
        assert!(l.try_acquire(t0 + Duration::from_secs(20)).is_ok());
        let wait = l.try_acquire(t0 + Duration::from_secs(30)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
        // The first admission leaves the window at t0+60.
        assert!(l.try_acquire(t0 + Duration::from_secs(59)).is_err());
        assert!(l.try_acquire(t0 + Duration::from_secs(60)).is_ok());
        assert!(l.try_acquire(t0 + Duration::from_secs(61)).is_err());
    }

    #[test]
    fn no_double_quota_across_window_edges() {
        let l = CpmLimiter::new(200);
        let t0 = Instant::now();
        let mut admitted = 0;
        // 1 attempt every 100 ms for 3 minutes: at most 200 in any 60 s.
        let mut log = Vec::new();
        for i in 0..1800u64 {
            let t = t0 + Duration::from_millis(100 * i);
            if l.try_acquire(t).is_ok() {
                admitted += 1;
                log.push(t);
            }
        }
        for (i, t) in log.iter().enumerate() {
            let in_window = log[i..].iter().take_while(|u| **u < *t + WINDOW).count();
            assert!(in_window <= 200);
        }
        assert_eq!(admitted, 600);
    }

    #[test]
    fn lowering_the_limit_applies_at_once() {
        let l = CpmLimiter::new(5);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.try_acquire(t0).is_ok());
        }
        l.set_limit(2);
        assert!(l.try_acquire(t0).is_err());
    }

    #[test]
    fn batches_are_partial_at_the_edge_and_stamped_at_grant() {
        let l = CpmLimiter::new(10);
        let t0 = Instant::now();
        assert_eq!(l.try_acquire_n(t0, 4), Ok(4));
        assert_eq!(l.try_acquire_n(t0, 4), Ok(4));
        assert_eq!(l.try_acquire_n(t0, 4), Ok(2));
        assert!(l.try_acquire_n(t0, 4).is_err());
        assert!(l.try_acquire(t0 + Duration::from_secs(59)).is_err());
        assert_eq!(l.try_acquire_n(t0 + WINDOW, 4), Ok(4));
    }

    #[test]
    fn fallback_share_counts_everything_already_admitted() {
        let l = CpmLimiter::new(10);
        let t0 = Instant::now();
        for _ in 0..4 {
            l.record(t0);
        }
        assert!(l.try_acquire_within(t0, 5).is_ok());
        let wait = l.try_acquire_within(t0, 5).unwrap_err();
        assert_eq!(wait, WINDOW);
        // The full quota still has room.
        assert!(l.try_acquire(t0).is_ok());
    }

    #[test]
    fn recorded_admissions_are_bounded() {
        let l = CpmLimiter::new(3);
        let t0 = Instant::now();
        for _ in 0..100 {
            l.record(t0);
        }
        assert_eq!(l.in_window(t0), 6);
        assert!(l.try_acquire(t0).is_err());
    }
}
