//! One call's answer: the families it asks for, the family answers it
//! collects (waiting for the slower family only [`FAMILY_GRACE`] once one has
//! addresses), and the [`Resolution`] assembled from them.

use std::{
    borrow::Cow,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, stream::FuturesUnordered};

use super::{
    error::DnsError,
    query::{FamilyAnswer, SharedAnswer},
};
use crate::config::{IpFamily, ResolvedAddress};

/// Once a family has addresses, how long a caller still waits for the other families.
pub const FAMILY_GRACE: Duration = Duration::from_millis(250);
/// An assembled [`Resolution`] is reused for at most this long (keeps `ttl_seconds` fresh).
pub(super) const ASSEMBLED_MAX_AGE: Duration = Duration::from_secs(1);

/// The answer to one `resolve` call.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The name resolved, lower-case, without a trailing dot.
    pub fqdn: String,
    /// Families in the requested order, records in answer order.
    pub addrs: Vec<IpAddr>,
    /// Per address of `addrs`: what remained of its cache lifetime (min(TTL, maxTtl))
    /// at lookup time, in whole seconds. See [`Resolution::records`].
    pub ttls: Box<[u32]>,
    /// The answer came through a CNAME (the seed's best practice warns against it).
    pub via_cname: bool,
    /// Min over the families that contributed addresses of min(record TTL, maxTtl).
    pub expires: Instant,
}

impl Resolution {
    /// The addresses as the trunk status reports them. Built on demand: the
    /// proxy caches a resolution per trunk FQDN and never reads these.
    pub fn records(&self) -> Vec<ResolvedAddress> {
        self.addrs
            .iter()
            .zip(self.ttls.iter())
            .map(|(ip, &ttl_seconds)| ResolvedAddress {
                address: ip.to_string(),
                family: match ip {
                    IpAddr::V4(_) => IpFamily::IPv4,
                    IpAddr::V6(_) => IpFamily::IPv6,
                },
                ttl_seconds,
            })
            .collect()
    }
}

/// Index of a family's cache slot: 0 IPv4 (A), 1 IPv6 (AAAA).
pub(super) fn family_index(f: IpFamily) -> usize {
    match f {
        IpFamily::IPv4 => 0,
        IpFamily::IPv6 => 1,
    }
}

/// The requested families, deduplicated, in order, and a small code for the combination.
pub(super) fn family_combo(families: &[IpFamily]) -> ([Option<IpFamily>; 2], u8) {
    let mut out = [None, None];
    let mut n = 0;
    let mut combo = 0u8;
    for &f in families {
        if out[..n].contains(&Some(f)) {
            continue;
        }
        out[n] = Some(f);
        combo = combo * 3 + family_index(f) as u8 + 1;
        n += 1;
        if n == 2 {
            break;
        }
    }
    (out, combo)
}

/// Lower-case, without a trailing dot; borrows when already normal.
pub(super) fn normalize(fqdn: &str) -> Cow<'_, str> {
    let trimmed = fqdn.strip_suffix('.').unwrap_or(fqdn);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// What one call has of its families: answers in hand, queries to wait for.
/// Positions follow the requested order ([`family_combo`]).
#[derive(Default)]
pub(super) struct Gather {
    pub answers: [Option<Arc<FamilyAnswer>>; 2],
    pending: FuturesUnordered<Tagged>,
    /// When each pending query started (the grace runs from the latest).
    started: [Option<Instant>; 2],
    /// A query was sent for this call (not only joined).
    pub queried: bool,
}

impl Gather {
    pub fn answered(&mut self, pos: usize, answer: Arc<FamilyAnswer>) {
        self.answers[pos] = Some(answer);
    }

    /// Waits for the query of `pos` (started at `started`, by this call or another).
    pub fn wait_for(&mut self, pos: usize, started: Instant, fut: SharedAnswer) {
        self.started[pos] = Some(started);
        self.pending.push(Tagged { pos, fut });
    }

    /// Whether anything had to be waited for (the answer is not a pure cache hit).
    pub fn waits(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Waits for every family, but once one has addresses only [`FAMILY_GRACE`]
    /// past the start of the latest pending query (each query ends by itself
    /// within the DNS timeout). True when every family answered.
    pub async fn settle(&mut self) -> bool {
        let has_addrs = |a: &FamilyAnswer| matches!(&a.result, Ok(r) if !r.addrs.is_empty());
        let grace_from = |started: &[Option<Instant>; 2]| {
            started.iter().flatten().max().map(|s| *s + FAMILY_GRACE)
        };
        // A family already answered from the cache counts as "has addresses" too.
        let mut grace_until = if self.answers.iter().flatten().any(|a| has_addrs(a)) {
            grace_from(&self.started)
        } else {
            None
        };
        while !self.pending.is_empty() {
            let next = match grace_until {
                None => self.pending.next().await,
                Some(until) => {
                    match tokio::time::timeout_at(until.into(), self.pending.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    }
                }
            };
            let Some((pos, answer)) = next else { break };
            self.started[pos] = None;
            let answered = has_addrs(&answer);
            self.answers[pos] = Some(answer);
            if answered && grace_until.is_none() {
                grace_until = grace_from(&self.started);
            }
        }
        let complete = self.pending.is_empty();
        // Stop polling what is left; the queries run on in their own tasks.
        self.pending = FuturesUnordered::new();
        complete
    }
}

/// A shared query's answer tagged with the position it fills.
struct Tagged {
    pos: usize,
    fut: SharedAnswer,
}

impl Future for Tagged {
    type Output = (usize, Arc<FamilyAnswer>);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let pos = self.pos;
        self.fut.poll_unpin(cx).map(|a| (pos, a))
    }
}

/// Builds the call's answer from the family answers; also returns until when it may be reused.
pub(super) fn assemble(
    key: &str,
    fams: &[Option<IpFamily>; 2],
    answers: &[Option<Arc<FamilyAnswer>>; 2],
    now: Instant,
) -> (Result<Arc<Resolution>, DnsError>, Instant) {
    let mut valid_until = now + ASSEMBLED_MAX_AGE;
    let n: usize = answers
        .iter()
        .flatten()
        .map(|a| a.result.as_ref().map_or(0, |r| r.addrs.len()))
        .sum();
    let mut addrs = Vec::with_capacity(n);
    let mut ttls = Vec::with_capacity(n);
    let mut via_cname = false;
    let mut expires: Option<Instant> = None;
    let mut error: Option<DnsError> = None;
    for (pos, fam) in fams.iter().enumerate() {
        if fam.is_none() {
            continue;
        }
        let Some(answer) = &answers[pos] else {
            // Still pending: not part of this answer.
            continue;
        };
        valid_until = valid_until.min(answer.cache_until);
        match &answer.result {
            Ok(r) if !r.addrs.is_empty() => {
                for &(ip, until) in r.addrs.iter() {
                    addrs.push(ip);
                    ttls.push(ttl_secs(until.saturating_duration_since(now)));
                }
                via_cname |= r.via_cname;
                expires = Some(expires.map_or(r.expires, |e| e.min(r.expires)));
            }
            Ok(_) => {
                let e = DnsError::NoAddresses(key.to_owned());
                if error.as_ref().is_none_or(|x| e.rank() > x.rank()) {
                    error = Some(e);
                }
            }
            Err(e) => {
                if error.as_ref().is_none_or(|x| e.rank() > x.rank()) {
                    error = Some(e.clone());
                }
            }
        }
    }
    match expires {
        Some(expires) => (
            Ok(Arc::new(Resolution {
                fqdn: key.to_owned(),
                addrs,
                ttls: ttls.into(),
                via_cname,
                expires,
            })),
            valid_until,
        ),
        None => (
            Err(error.unwrap_or_else(|| DnsError::Timeout(key.to_owned()))),
            valid_until,
        ),
    }
}

/// Whole seconds, rounded up (a record with 200 ms left still has a TTL of 1).
fn ttl_secs(d: Duration) -> u32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(s).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::ERROR_TTL;

    #[test]
    fn combos_are_distinct_and_deduplicated() {
        use IpFamily::*;
        let codes: Vec<u8> = [vec![IPv4], vec![IPv6], vec![IPv4, IPv6], vec![IPv6, IPv4]]
            .iter()
            .map(|f| family_combo(f).1)
            .collect();
        let mut uniq = codes.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 4);
        assert_eq!(family_combo(&[IPv4, IPv4]).1, family_combo(&[IPv4]).1);
        assert_eq!(family_combo(&[]).1, 0);
        assert_eq!(
            family_combo(&[IPv6, IPv4, IPv6]).0,
            [Some(IPv6), Some(IPv4)]
        );
    }

    #[test]
    fn normalize_lowercases_and_strips_dot() {
        assert!(matches!(
            normalize("sip.acme.example"),
            Cow::Borrowed("sip.acme.example")
        ));
        assert_eq!(normalize("SIP.Acme.Example."), "sip.acme.example");
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(ttl_secs(Duration::from_millis(200)), 1);
        assert_eq!(ttl_secs(Duration::from_secs(30)), 30);
        assert_eq!(ttl_secs(Duration::ZERO), 0);
    }

    #[test]
    fn error_precedence() {
        let now = Instant::now();
        let fams = [Some(IpFamily::IPv4), Some(IpFamily::IPv6)];
        let ans = |r| {
            Some(Arc::new(FamilyAnswer {
                cache_until: now + ERROR_TTL,
                result: r,
            }))
        };
        let (r, _) = assemble(
            "x.example",
            &fams,
            &[
                ans(Err(DnsError::Timeout("x.example".into()))),
                ans(Err(DnsError::NoAddresses("x.example".into()))),
            ],
            now,
        );
        assert!(matches!(r, Err(DnsError::Timeout(_))));
    }
}
