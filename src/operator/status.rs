//! A trunk's status from what the reconciler observed. Pure: observations in, status out.

use crate::config::{Condition, FieldError, IpFamily, ResolvedAddress, VirtualSipTrunkStatus};

use super::render::{NumberConflict, Refs};

pub const ACCEPTED: &str = "Accepted";
pub const RESOLVED_REFS: &str = "ResolvedRefs";
pub const DNS_RESOLVED: &str = "DnsResolved";
pub const PROGRAMMED: &str = "Programmed";
pub const READY: &str = "Ready";
/// Condition types in the order they appear in status.
pub const CONDITION_TYPES: [&str; 5] = [ACCEPTED, RESOLVED_REFS, DNS_RESOLVED, PROGRAMMED, READY];

/// The seed's best practice: "keep TTL <= 60s for rapid fail-over".
pub const MAX_RECOMMENDED_TTL: u32 = 60;

/// What DNS said about the trunk's FQDN.
#[derive(Clone, Debug, PartialEq)]
pub enum DnsObservation {
    Resolved {
        records: Vec<ResolvedAddress>,
        via_cname: bool,
    },
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// Whether the proxies run the trunk's current generation.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgrammedObservation {
    /// Interim rule (until proxies report through heartbeat Leases): the rendered config Secret
    /// contains this generation of the trunk.
    InConfig { revision: String },
    /// Left out of the configuration, with the reason shown to the user.
    Excluded {
        reason: &'static str,
        message: String,
    },
    /// Not rendered yet.
    Pending,
}

/// Everything a reconcile learned about one trunk.
#[derive(Clone, Debug)]
pub struct Observations {
    pub generation: Option<i64>,
    pub trunk_sid: String,
    pub fqdn: String,
    pub ip_families: Vec<IpFamily>,
    pub suspended: bool,
    /// `check_spec` errors (empty when valid).
    pub spec_errors: Vec<FieldError>,
    pub conflicts: Vec<NumberConflict>,
    pub refs: Refs,
    pub dns: DnsObservation,
    pub programmed: ProgrammedObservation,
}

impl Observations {
    /// Whether the renderer has seen what this reconcile saw: the trunk is in the
    /// configuration with its references resolved, or left out for a reason that
    /// still holds. When not, the reconcile asks for a render.
    pub fn renderer_in_step(&self) -> bool {
        match (&self.programmed, &self.refs) {
            (ProgrammedObservation::InConfig { .. }, Refs::Resolved(_)) => true,
            (ProgrammedObservation::Excluded { .. }, _) => {
                !self.conflicts.is_empty()
                    || !self.spec_errors.is_empty()
                    || matches!(self.refs, Refs::Broken(_))
            }
            _ => false,
        }
    }
}

/// Field errors as one line of a condition message.
pub fn one_line(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn condition(
    type_: &str,
    ok: Option<bool>,
    reason: &str,
    message: String,
    g: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        }
        .into(),
        reason: reason.into(),
        message,
        observed_generation: g,
        last_transition_time: String::new(),
    }
}

/// DNS findings against the seed's best practices.
pub fn dns_warnings(
    fqdn: &str,
    records: &[ResolvedAddress],
    via_cname: bool,
    families: &[IpFamily],
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(max) = records.iter().map(|r| r.ttl_seconds).max()
        && max > MAX_RECOMMENDED_TTL
    {
        out.push(format!(
            "TTL of {max}s is above {MAX_RECOMMENDED_TTL}s: keep TTL <= {MAX_RECOMMENDED_TTL}s so address changes and failover reach the proxies quickly"
        ));
    }
    if via_cname {
        out.push(format!(
            "{fqdn} is answered through a CNAME: point A/AAAA records at the SBC directly (one lookup per call, no extra point of failure)"
        ));
    }
    for family in families {
        if !records.iter().any(|r| r.family == *family) {
            let (rr, name) = match family {
                IpFamily::IPv4 => ("A", "IPv4"),
                IpFamily::IPv6 => ("AAAA", "IPv6"),
            };
            out.push(format!(
                "no {rr} record: {name} is in ipFamilies but {fqdn} has no {name} address"
            ));
        }
    }
    out
}

/// The status the trunk should have, keeping transition times of unchanged conditions.
pub fn desired_status(
    obs: &Observations,
    old: Option<&VirtualSipTrunkStatus>,
    now: &str,
) -> VirtualSipTrunkStatus {
    let g = obs.generation;
    let accepted = if !obs.spec_errors.is_empty() {
        condition(
            ACCEPTED,
            Some(false),
            "InvalidSpec",
            one_line(&obs.spec_errors),
            g,
        )
    } else if !obs.conflicts.is_empty() {
        let msg = obs
            .conflicts
            .iter()
            .map(|c| {
                format!(
                    "number {} already belongs to trunk {} (older)",
                    c.number, c.owner
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        condition(
            ACCEPTED,
            Some(false),
            "NumberConflict",
            format!("{msg}; a number is delivered to one trunk only: remove it from one of them"),
            g,
        )
    } else {
        condition(
            ACCEPTED,
            Some(true),
            "Accepted",
            "the trunk is valid".into(),
            g,
        )
    };
    let refs = match &obs.refs {
        Refs::Resolved(None) => condition(
            RESOLVED_REFS,
            Some(true),
            "ResolvedRefs",
            "no Secrets referenced".into(),
            g,
        ),
        Refs::Resolved(Some(_)) => condition(
            RESOLVED_REFS,
            Some(true),
            "ResolvedRefs",
            "referenced Secrets exist and have their keys".into(),
            g,
        ),
        Refs::Broken(problems) => condition(
            RESOLVED_REFS,
            Some(false),
            "InvalidSecretRef",
            problems.join("; "),
            g,
        ),
        Refs::Unknown(_) => condition(
            RESOLVED_REFS,
            None,
            "Pending",
            "referenced Secrets not read yet".into(),
            g,
        ),
    };
    let (dns, addresses, warnings) = match &obs.dns {
        DnsObservation::Resolved { records, via_cname } => {
            let list = records
                .iter()
                .map(|r| r.address.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let c = condition(
                DNS_RESOLVED,
                Some(true),
                "Resolved",
                format!("{} resolves to {list}", obs.fqdn),
                g,
            );
            let w = dns_warnings(&obs.fqdn, records, *via_cname, &obs.ip_families);
            (c, records.clone(), w)
        }
        DnsObservation::Failed { reason, message } => {
            let w = match *reason {
                "NoAddresses" => vec![format!(
                    "{} has no address of an allowed family ({})",
                    obs.fqdn,
                    obs.ip_families
                        .iter()
                        .map(|f| format!("{f:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )],
                _ => Vec::new(),
            };
            (
                condition(DNS_RESOLVED, Some(false), reason, message.clone(), g),
                Vec::new(),
                w,
            )
        }
    };
    let programmed = match &obs.programmed {
        ProgrammedObservation::InConfig { revision } => condition(
            PROGRAMMED,
            Some(true),
            "Programmed",
            format!(
                "{revision} runs a configuration containing generation {}",
                g.unwrap_or_default()
            ),
            g,
        ),
        ProgrammedObservation::Excluded { reason, message } => {
            condition(PROGRAMMED, Some(false), reason, message.clone(), g)
        }
        ProgrammedObservation::Pending => condition(
            PROGRAMMED,
            None,
            "Pending",
            "waiting for the proxy configuration to be rendered".into(),
            g,
        ),
    };
    let parts = [&accepted, &refs, &dns, &programmed];
    let ready = if let Some(c) = parts.iter().find(|c| c.status != "True") {
        condition(
            READY,
            Some(false),
            &c.reason,
            format!("{}: {}", c.type_, c.message),
            g,
        )
    } else if obs.suspended {
        condition(
            READY,
            Some(false),
            "Suspended",
            "the trunk is suspended: new calls get 503".into(),
            g,
        )
    } else {
        condition(
            READY,
            Some(true),
            "Ready",
            "calls route to the trunk".into(),
            g,
        )
    };
    let mut conditions = vec![accepted, refs, dns, programmed, ready];
    for c in &mut conditions {
        c.last_transition_time = old
            .and_then(|o| o.conditions.iter().find(|p| p.type_ == c.type_))
            .filter(|p| p.status == c.status && !p.last_transition_time.is_empty())
            .map(|p| p.last_transition_time.clone())
            .unwrap_or_else(|| now.to_owned());
    }
    VirtualSipTrunkStatus {
        observed_generation: g,
        trunk_sid: Some(obs.trunk_sid.clone()),
        conditions,
        addresses,
        dns_warnings: warnings,
    }
}

/// Whether `new` differs from `old` in anything but the remaining TTLs (which change on every
/// lookup and are not worth a write each).
pub fn status_changed(old: Option<&VirtualSipTrunkStatus>, new: &VirtualSipTrunkStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &VirtualSipTrunkStatus| {
        let mut s = s.clone();
        for a in &mut s.addresses {
            a.ttl_seconds = 0;
        }
        s
    };
    let (mut o, n) = (strip(old), strip(new));
    // A TTL warning carries the TTL; compare it by kind only.
    let kind = |w: &String| {
        w.split(':')
            .next()
            .map(|p| p.starts_with("TTL of"))
            .unwrap_or(false)
    };
    let same_warnings = o.dns_warnings.len() == n.dns_warnings.len()
        && o.dns_warnings
            .iter()
            .zip(&n.dns_warnings)
            .all(|(a, b)| a == b || (kind(a) && kind(b)));
    if same_warnings {
        o.dns_warnings = n.dns_warnings.clone();
    }
    // DnsResolved's message lists addresses only, no TTLs, so it compares as is.
    o != n
}

/// Conditions whose status changed (for Events): `(condition, previous status)`.
pub fn transitions<'a>(
    old: Option<&VirtualSipTrunkStatus>,
    new: &'a VirtualSipTrunkStatus,
) -> Vec<(&'a Condition, Option<String>)> {
    new.conditions
        .iter()
        .filter_map(|c| {
            let before = old.and_then(|o| o.conditions.iter().find(|p| p.type_ == c.type_));
            match before {
                Some(p) if p.status == c.status && p.reason == c.reason => None,
                _ => Some((c, before.map(|p| p.status.clone()))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsMaterial;

    fn addr(a: &str, family: IpFamily, ttl: u32) -> ResolvedAddress {
        ResolvedAddress {
            address: a.into(),
            family,
            ttl_seconds: ttl,
        }
    }

    fn good() -> Observations {
        Observations {
            generation: Some(3),
            trunk_sid: "TS1".into(),
            fqdn: "sip.acme.example".into(),
            ip_families: vec![IpFamily::IPv4],
            suspended: false,
            spec_errors: Vec::new(),
            conflicts: vec![],
            refs: Refs::Resolved(None),
            dns: DnsObservation::Resolved {
                records: vec![addr("192.0.2.10", IpFamily::IPv4, 30)],
                via_cname: false,
            },
            programmed: ProgrammedObservation::InConfig {
                revision: "r1".into(),
            },
        }
    }

    fn get<'a>(s: &'a VirtualSipTrunkStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).expect(t)
    }

    #[test]
    fn the_renderer_is_in_step_when_the_trunk_is_in_or_out_for_a_standing_reason() {
        assert!(good().renderer_in_step());
        // In the configuration, but a Secret it references is not read yet.
        let unknown = Observations {
            refs: Refs::Unknown(vec![("a".into(), "ca".into())]),
            ..good()
        };
        assert!(!unknown.renderer_in_step());
        // Left out, and the reason still holds: nothing to ask.
        let invalid = Observations {
            spec_errors: vec![FieldError {
                path: "spec.fqdn".into(),
                message: "bad".into(),
            }],
            programmed: ProgrammedObservation::Excluded {
                reason: "InvalidSpec",
                message: String::new(),
            },
            ..good()
        };
        assert!(invalid.renderer_in_step());
        // Left out for a reason that went away (the spec was fixed): render again.
        let fixed = Observations {
            spec_errors: Vec::new(),
            ..invalid
        };
        assert!(!fixed.renderer_in_step());
        let pending = Observations {
            programmed: ProgrammedObservation::Pending,
            ..good()
        };
        assert!(!pending.renderer_in_step());
    }

    #[test]
    fn spec_errors_become_one_message() {
        let obs = Observations {
            spec_errors: vec![
                FieldError {
                    path: "spec.fqdn".into(),
                    message: "is an IP address".into(),
                },
                FieldError {
                    path: "spec.port".into(),
                    message: "must be between 1 and 65535".into(),
                },
            ],
            ..good()
        };
        let s = desired_status(&obs, None, "2026-01-01T00:00:00Z");
        let c = get(&s, ACCEPTED);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert_eq!(
            c.message,
            "spec.fqdn: is an IP address; spec.port: must be between 1 and 65535"
        );
    }

    #[test]
    fn all_good_is_ready() {
        let s = desired_status(&good(), None, "2026-01-01T00:00:00Z");
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.trunk_sid.as_deref(), Some("TS1"));
        for t in CONDITION_TYPES {
            assert_eq!(get(&s, t).status, "True", "{t}: {:?}", get(&s, t));
            assert_eq!(get(&s, t).observed_generation, Some(3));
        }
        assert!(s.dns_warnings.is_empty(), "{:?}", s.dns_warnings);
        assert_eq!(s.addresses.len(), 1);
    }

    #[test]
    fn number_conflict_names_the_other_trunk() {
        let mut o = good();
        o.conflicts = vec![NumberConflict {
            number: "+911234567890".into(),
            owner: "acme/mumbai".into(),
        }];
        o.programmed = ProgrammedObservation::Excluded {
            reason: "NotAccepted",
            message: "not accepted".into(),
        };
        let s = desired_status(&o, None, "t");
        let a = get(&s, ACCEPTED);
        assert_eq!(
            (a.status.as_str(), a.reason.as_str()),
            ("False", "NumberConflict")
        );
        assert!(a.message.contains("acme/mumbai") && a.message.contains("+911234567890"));
        let r = get(&s, READY);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "NumberConflict")
        );
    }

    #[test]
    fn dns_warnings_follow_the_seed() {
        let w = dns_warnings(
            "sip.acme.example",
            &[addr("192.0.2.1", IpFamily::IPv4, 300)],
            true,
            &[IpFamily::IPv4, IpFamily::IPv6],
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("TTL of 300s"));
        assert!(w[1].contains("CNAME"));
        assert!(w[2].contains("no AAAA record"));
        assert!(
            dns_warnings(
                "x.example",
                &[addr("192.0.2.1", IpFamily::IPv4, 60)],
                false,
                &[IpFamily::IPv4]
            )
            .is_empty()
        );
    }

    #[test]
    fn dns_failure_is_reported_and_blocks_ready() {
        let mut o = good();
        o.dns = DnsObservation::Failed {
            reason: "NoAddresses",
            message: "sip.acme.example: no A/AAAA records".into(),
        };
        let s = desired_status(&o, None, "t");
        assert_eq!(get(&s, DNS_RESOLVED).status, "False");
        assert_eq!(get(&s, READY).reason, "NoAddresses");
        assert!(s.dns_warnings[0].contains("no address of an allowed family"));
    }

    #[test]
    fn broken_refs_and_pending_programming() {
        let mut o = good();
        o.refs = Refs::Broken(vec!["CA Secret a/ca not found".into()]);
        o.programmed = ProgrammedObservation::Pending;
        let s = desired_status(&o, None, "t");
        let r = get(&s, RESOLVED_REFS);
        assert_eq!(
            (r.status.as_str(), r.message.as_str()),
            ("False", "CA Secret a/ca not found")
        );
        assert_eq!(get(&s, PROGRAMMED).status, "Unknown");
        let mut o = good();
        o.refs = Refs::Resolved(Some(TlsMaterial::default()));
        o.suspended = true;
        let s = desired_status(&o, None, "t");
        assert_eq!(get(&s, READY).reason, "Suspended");
    }

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let first = desired_status(&good(), None, "T1");
        let again = desired_status(&good(), Some(&first), "T2");
        assert!(
            again
                .conditions
                .iter()
                .all(|c| c.last_transition_time == "T1")
        );
        assert!(!status_changed(Some(&first), &again));
        assert!(transitions(Some(&first), &again).is_empty());

        let mut o = good();
        o.dns = DnsObservation::Resolved {
            records: vec![addr("192.0.2.10", IpFamily::IPv4, 7)],
            via_cname: false,
        };
        let ttl_only = desired_status(&o, Some(&first), "T3");
        assert!(
            !status_changed(Some(&first), &ttl_only),
            "TTL countdown is not a change"
        );

        o.programmed = ProgrammedObservation::Pending;
        let changed = desired_status(&o, Some(&first), "T4");
        assert!(status_changed(Some(&first), &changed));
        assert_eq!(get(&changed, PROGRAMMED).last_transition_time, "T4");
        assert_eq!(get(&changed, ACCEPTED).last_transition_time, "T1");
        let t: Vec<&str> = transitions(Some(&first), &changed)
            .iter()
            .map(|(c, _)| c.type_.as_str())
            .collect();
        assert_eq!(t, [PROGRAMMED, READY]);
    }
}
