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

    /// Admits one call at `now`, or says how long until a slot frees up.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(()); // a poisoned lock must not stop calls
        };
        while let Some(&oldest) = inner.admitted.front() {
            if now.saturating_duration_since(oldest) >= WINDOW {
                inner.admitted.pop_front();
            } else {
                break;
            }
        }
        if (inner.admitted.len() as u64) < u64::from(inner.limit) {
            inner.admitted.push_back(now);
            Ok(())
        } else {
            let oldest = inner.admitted.front().copied().unwrap_or(now);
            Err((oldest + WINDOW).saturating_duration_since(now))
        }
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
}
