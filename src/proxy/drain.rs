//! Whether this proxy still takes new calls. Serving until told otherwise;
//! once draining, admission refuses new INVITEs (503 + Retry-After, so the
//! caller retries on another replica) while in-dialog requests and calls in
//! progress go on. The graceful stop of the issue "Production-ready on a real
//! cluster" sets it on SIGTERM; nothing sets it yet.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// What a caller refused while draining is told to wait before retrying.
pub const DRAIN_RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
}

impl Drain {
    pub fn start(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
