//! The record of one call, built as the call runs: which trunk and direction,
//! the DNS answer used, every address tried with its transport and result (so
//! the reason of each failover), and how the call ended. Today it feeds the
//! "call setup finished" log line; the call records by CallSid and the HEP
//! correlation of the issue "Per-call troubleshooting" keep it.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use smallvec::SmallVec;

use super::outcome::Outcome;
use crate::{config::Transport, dns::Resolution};

/// Why an address was left for the next one, or how it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// Could not connect (`connect_timeout`, `tls`, `connect`: the failover reason label).
    NotConnected(&'static str),
    /// Sent, and no answer within `responseTimeout`.
    NoAnswer,
    /// Answered with a status that moves on to the next address (408, 503, 504).
    FailedOver(u16),
    /// Answered finally (relayed, or our own answer on its behalf).
    Final(u16),
}

impl AttemptResult {
    /// The `reason` label of `vsip_failovers_total` when the attempt failed over.
    pub fn failover_reason(&self) -> Option<String> {
        match self {
            AttemptResult::NotConnected(r) => Some((*r).to_owned()),
            AttemptResult::NoAnswer => Some("timeout".to_owned()),
            AttemptResult::FailedOver(code) => Some(code.to_string()),
            AttemptResult::Final(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Attempt {
    pub address: SocketAddr,
    pub transport: Transport,
    pub started: Instant,
    pub result: AttemptResult,
}

#[derive(Clone, Debug)]
pub struct CallRecord {
    pub call_sid: String,
    pub call_id: String,
    pub started: Instant,
    /// Trunk name (`namespace/name`); empty when the call matched no trunk.
    pub trunk: String,
    pub direction: &'static str,
    /// The answer the targets came from.
    pub dns: Option<Arc<Resolution>>,
    /// Inline for two attempts (most calls): no allocation per call.
    pub attempts: SmallVec<[Attempt; 2]>,
    pub outcome: Option<Outcome>,
}

impl CallRecord {
    pub fn new(call_sid: String, call_id: String) -> Self {
        Self {
            call_sid,
            call_id,
            started: Instant::now(),
            trunk: String::new(),
            direction: "",
            dns: None,
            attempts: SmallVec::new(),
            outcome: None,
        }
    }
}
