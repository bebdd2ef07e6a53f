//! What the proxy answers itself, as a type: every refusal or failure it
//! reports to a caller is a [`Refusal`] that knows its status code, its extra
//! headers and a stable label for logs and metrics, and is turned into bytes
//! in one place ([`Refusal::response`]). A call ends in an [`Outcome`]: a final
//! answer relayed from the far side, or a refusal of ours.

use std::time::Duration;

use bytes::Bytes;

use super::stamp;
use crate::sip::{Codec, Message};

/// Methods we answer `Allow` with.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK";
/// `Reason` of a 403 for a Route entry we did not sign.
pub const FORGED_ROUTE_REASON: &str = "SIP;cause=403;text=\"Route not issued by this proxy\"";

/// A request refused, or a call failed, with the answer the proxy gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    // Before any call exists.
    /// `Max-Forwards: 0`.
    TooManyHops,
    /// A Route entry with our marker but not our signature.
    ForgedRoute,
    /// CANCEL or in-dialog request matching nothing of ours.
    NoTransaction,
    /// A method we do not handle outside a dialog.
    NotAllowed,
    /// An INVITE we cannot track (no Via branch).
    BadRequest,
    // Admission.
    /// Inbound: no trunk has the dialled number.
    NoTrunk,
    /// Not from a known trunk nor from a trusted upstream.
    UnknownSource,
    /// The trunk is suspended.
    Suspended,
    /// The offer has none of the trunk's codecs.
    NoCodec { allowed: Vec<Codec> },
    /// The trunk's calls-per-minute quota is spent until `retry_after`.
    Quota { retry_after: Duration },
    /// This proxy is draining: new calls go to another replica.
    Draining { retry_after: Duration },
    // Routing.
    /// The trunk's FQDN did not resolve.
    DnsFailed,
    /// A trunk-originated call, and no upstream is configured.
    NoUpstream,
    /// The upstream's name did not resolve.
    UpstreamDnsFailed,
    /// No address answered usefully (and none gave a real answer to relay).
    Unreachable,
    /// The caller cancelled (our 487 when the callee did not send its own).
    Cancelled,
    /// Ringing for longer than Timer C.
    RingTimeout,
    // In-dialog relay.
    /// Neither a Route entry nor the Request-URI names a usable next hop.
    BadNextHop,
    /// The next hop's name did not resolve.
    NextHopUnresolved,
    /// The next hop could not be reached, or the request not sent.
    NextHopUnreachable,
    /// The next hop sent no final answer in time.
    NoAnswer,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::TooManyHops => 483,
            Refusal::ForgedRoute | Refusal::UnknownSource => 403,
            Refusal::NoTransaction => 481,
            Refusal::NotAllowed => 405,
            Refusal::BadRequest | Refusal::BadNextHop => 400,
            Refusal::NoTrunk => 404,
            Refusal::NoCodec { .. } => 488,
            Refusal::Cancelled => 487,
            Refusal::RingTimeout | Refusal::NoAnswer => 408,
            Refusal::Suspended
            | Refusal::Quota { .. }
            | Refusal::Draining { .. }
            | Refusal::DnsFailed
            | Refusal::NoUpstream
            | Refusal::UpstreamDnsFailed
            | Refusal::Unreachable
            | Refusal::NextHopUnresolved
            | Refusal::NextHopUnreachable => 503,
        }
    }

    /// A stable name for logs and metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::TooManyHops => "too_many_hops",
            Refusal::ForgedRoute => "forged_route",
            Refusal::NoTransaction => "no_transaction",
            Refusal::NotAllowed => "method_not_allowed",
            Refusal::BadRequest => "bad_request",
            Refusal::NoTrunk => "no_trunk",
            Refusal::UnknownSource => "unknown_source",
            Refusal::Suspended => "suspended",
            Refusal::NoCodec { .. } => "no_codec",
            Refusal::Quota { .. } => "cpm_quota",
            Refusal::Draining { .. } => "draining",
            Refusal::DnsFailed => "dns_failed",
            Refusal::NoUpstream => "no_upstream",
            Refusal::UpstreamDnsFailed => "upstream_dns_failed",
            Refusal::Unreachable => "unreachable",
            Refusal::Cancelled => "cancelled",
            Refusal::RingTimeout => "ring_timeout",
            Refusal::BadNextHop => "bad_next_hop",
            Refusal::NextHopUnresolved => "next_hop_unresolved",
            Refusal::NextHopUnreachable => "next_hop_unreachable",
            Refusal::NoAnswer => "no_answer",
        }
    }

    /// `Retry-After` in whole seconds (rounded up, at least 1), for the refusals that carry one.
    pub fn retry_after(&self) -> Option<String> {
        match self {
            Refusal::Quota { retry_after } | Refusal::Draining { retry_after } => {
                Some(retry_after_secs(*retry_after))
            }
            _ => None,
        }
    }

    /// Calls `f` with the headers the answer carries beyond the usual ones.
    pub fn with_headers<R>(&self, f: impl FnOnce(&[(&str, &str)]) -> R) -> R {
        match self {
            Refusal::ForgedRoute => f(&[("Reason", FORGED_ROUTE_REASON)]),
            Refusal::NotAllowed => f(&[("Allow", ALLOW)]),
            Refusal::Suspended => f(&[("Reason", "SIP;cause=503;text=\"trunk suspended\"")]),
            Refusal::NoCodec { allowed } => {
                let names: Vec<&str> = allowed.iter().map(|c| c.encoding_name()).collect();
                let warning = format!("304 vsip \"allowed codecs: {}\"", names.join(", "));
                f(&[("Warning", &warning)])
            }
            Refusal::Quota { retry_after } => {
                let secs = retry_after_secs(*retry_after);
                f(&[
                    ("Retry-After", &secs),
                    ("Reason", "SIP;cause=503;text=\"CPM quota\""),
                ])
            }
            Refusal::Draining { retry_after } => {
                let secs = retry_after_secs(*retry_after);
                f(&[
                    ("Retry-After", &secs),
                    ("Reason", "SIP;cause=503;text=\"draining\""),
                ])
            }
            Refusal::DnsFailed => f(&[("Reason", "SIP;cause=503;text=\"DNS resolution failed\"")]),
            Refusal::Unreachable => f(&[("Reason", "SIP;cause=503;text=\"no reachable address\"")]),
            _ => f(&[]),
        }
    }

    /// The answer to `req`: status, reason phrase, our headers; `to_tag` is added
    /// to a `To` without one.
    pub fn response(&self, req: &Message, to_tag: Option<&str>) -> Bytes {
        let code = self.status();
        self.with_headers(|extra| {
            stamp::response(req, code, stamp::reason_phrase(code), to_tag, extra)
        })
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
fn retry_after_secs(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1).to_string()
}

/// How a call's INVITE transaction ended for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The far side's final answer, relayed (its status).
    Relayed(u16),
    /// Refused or failed here; we answered.
    Refused(Refusal),
}

impl Outcome {
    /// The status the caller received (`vsip_calls_total{status}`).
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Relayed(code) => *code,
            Outcome::Refused(r) => r.status(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Relayed(_) => "relayed",
            Outcome::Refused(r) => r.label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        Message::parse(
            b"INVITE sip:+911234567890@pstn.example SIP/2.0\r\n\
Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK-1\r\n\
From: <sip:+919876500000@pstn.example>;tag=a\r\n\
To: <sip:+911234567890@pstn.example>\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("parses")
    }

    fn answer(r: &Refusal) -> Message {
        Message::parse(&r.response(&invite(), Some("tag1"))).expect("our answer parses")
    }

    #[test]
    fn quota_says_when_to_retry_in_whole_seconds() {
        let a = answer(&Refusal::Quota {
            retry_after: Duration::from_millis(2_100),
        });
        assert_eq!(a.status(), Some(503));
        assert_eq!(a.header_value("retry-after").as_deref(), Some("3"));
        assert_eq!(
            a.header_value("reason").as_deref(),
            Some("SIP;cause=503;text=\"CPM quota\"")
        );
        // Never "Retry-After: 0".
        let a = answer(&Refusal::Quota {
            retry_after: Duration::ZERO,
        });
        assert_eq!(a.header_value("retry-after").as_deref(), Some("1"));
    }

    #[test]
    fn codec_refusal_names_the_allowed_codecs() {
        let a = answer(&Refusal::NoCodec {
            allowed: vec![Codec::PCMA, Codec::PCMU],
        });
        assert_eq!(a.status(), Some(488));
        assert_eq!(
            a.header_value("warning").as_deref(),
            Some("304 vsip \"allowed codecs: PCMA, PCMU\"")
        );
        assert!(
            a.header_value("to")
                .is_some_and(|t| t.ends_with(";tag=tag1"))
        );
    }

    #[test]
    fn every_refusal_is_a_final_error_answer_with_a_distinct_label() {
        let all = [
            Refusal::TooManyHops,
            Refusal::ForgedRoute,
            Refusal::NoTransaction,
            Refusal::NotAllowed,
            Refusal::BadRequest,
            Refusal::NoTrunk,
            Refusal::UnknownSource,
            Refusal::Suspended,
            Refusal::NoCodec { allowed: vec![] },
            Refusal::Quota {
                retry_after: Duration::from_secs(1),
            },
            Refusal::Draining {
                retry_after: Duration::from_secs(1),
            },
            Refusal::DnsFailed,
            Refusal::NoUpstream,
            Refusal::UpstreamDnsFailed,
            Refusal::Unreachable,
            Refusal::Cancelled,
            Refusal::RingTimeout,
            Refusal::BadNextHop,
            Refusal::NextHopUnresolved,
            Refusal::NextHopUnreachable,
            Refusal::NoAnswer,
        ];
        let mut labels: Vec<&str> = all.iter().map(Refusal::label).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
        for r in &all {
            let a = answer(r);
            assert_eq!(a.status(), Some(r.status()), "{r:?}");
            assert!((400..700).contains(&r.status()), "{r:?}");
            assert!(a.header_value("server").as_deref() == Some("vsip"), "{r:?}");
        }
        assert_eq!(
            answer(&Refusal::NotAllowed)
                .header_value("allow")
                .as_deref(),
            Some(ALLOW)
        );
        assert_eq!(
            answer(&Refusal::ForgedRoute)
                .header_value("reason")
                .as_deref(),
            Some(FORGED_ROUTE_REASON)
        );
    }
}
