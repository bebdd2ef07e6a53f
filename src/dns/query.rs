//! One A or AAAA query sent to the nameservers (hickory), and what its
//! answer may be cached for: the records' TTLs clamped to `maxTtl`, a negative
//! answer for its SOA minimum (at most [`NEGATIVE_TTL_CAP`]), an error for
//! [`ERROR_TTL`].

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::{BoxFuture, Shared};

use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig},
    net::{DnsError as HickoryDnsError, NetError, runtime::TokioRuntimeProvider},
    proto::{
        op::ResponseCode,
        rr::{Name, RData, RecordType},
    },
};
use smallvec::SmallVec;

use super::{error::DnsError, metrics::Metrics};
use crate::config::{DnsConfig, IpFamily};

/// Negative answers (NXDOMAIN, NODATA) are cached at most this long.
pub const NEGATIVE_TTL_CAP: Duration = Duration::from_secs(5);
/// Errors (timeout, SERVFAIL, network) are cached at most this long.
pub const ERROR_TTL: Duration = Duration::from_secs(1);
/// Negative answers without an SOA are cached this long.
const NEGATIVE_TTL_NO_SOA: Duration = Duration::from_secs(1);

/// The hickory resolver and the configuration it was built from (swapped whole
/// on a reload).
pub(super) struct Backend {
    pub hickory: TokioResolver,
    pub cfg: DnsConfig,
}

/// A query in flight, awaited by every call that needs its answer.
pub(super) type SharedAnswer = Shared<BoxFuture<'static, Arc<FamilyAnswer>>>;

/// The outcome of one A or AAAA query.
#[derive(Debug)]
pub(super) struct FamilyAnswer {
    /// Until when the cache may serve it (== fetch time when not cacheable).
    pub cache_until: Instant,
    pub result: Result<FamilyRecords, DnsError>,
}

#[derive(Debug)]
pub(super) struct FamilyRecords {
    /// Address and the instant its (clamped) TTL runs out.
    /// Inline for one address (most names): one allocation fewer per cached
    /// answer, made in the middle of a burst of lookups.
    pub addrs: SmallVec<[(IpAddr, Instant); 1]>,
    pub via_cname: bool,
    /// min over the answer (address and CNAME records) of min(TTL, maxTtl), from fetch time.
    pub expires: Instant,
}

fn record_type(f: IpFamily) -> RecordType {
    match f {
        IpFamily::IPv4 => RecordType::A,
        IpFamily::IPv6 => RecordType::AAAA,
    }
}

pub(super) fn build_backend(cfg: &DnsConfig) -> Result<Backend, DnsError> {
    let mut builder = if cfg.nameservers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| DnsError::Other(format!("reading the system DNS configuration: {e}")))?
    } else {
        let servers = cfg
            .nameservers
            .iter()
            .map(|sa| {
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut b = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        );
        b.options_mut().use_hosts_file = ResolveHosts::Never;
        b
    };
    let opts = builder.options_mut();
    // Our cache, not hickory's: it must never serve past TTL and we need the TTLs.
    opts.cache_size = 0;
    opts.timeout = cfg.timeout.get();
    opts.attempts = 2;
    opts.preserve_intermediates = true;
    let hickory = builder
        .build()
        .map_err(|e| DnsError::Other(format!("building the DNS resolver: {e}")))?;
    Ok(Backend {
        hickory,
        cfg: cfg.clone(),
    })
}

/// One real A or AAAA query, bounded by the configured timeout.
pub(super) async fn query(
    backend: &Backend,
    metrics: &Metrics,
    key: &str,
    fam: IpFamily,
) -> FamilyAnswer {
    let started = Instant::now();
    let max_ttl = backend.cfg.max_ttl.get();
    let timeout = backend.cfg.timeout.get();
    let rtype = record_type(fam);
    let name = match Name::from_ascii(format!("{key}.")) {
        Ok(n) => n,
        Err(e) => {
            return FamilyAnswer {
                cache_until: started,
                result: Err(DnsError::Other(format!(
                    "{key}: not a valid domain name: {e}"
                ))),
            };
        }
    };
    let outcome = tokio::time::timeout(timeout, backend.hickory.lookup(name, rtype)).await;
    metrics.duration.observe(started.elapsed().as_secs_f64());

    let answer = match outcome {
        Err(_) => FamilyAnswer {
            cache_until: started + ERROR_TTL,
            result: Err(DnsError::Timeout(key.to_owned())),
        },
        Ok(Ok(lookup)) => {
            let mut addrs = Vec::new();
            let mut via_cname = false;
            // The CNAME chain bounds every address behind it.
            let mut chain_ttl = max_ttl;
            for r in lookup.answers() {
                let ttl = Duration::from_secs(u64::from(r.ttl)).min(max_ttl);
                match (&r.data, fam) {
                    (RData::A(a), IpFamily::IPv4) => addrs.push((IpAddr::V4(a.0), ttl)),
                    (RData::AAAA(a), IpFamily::IPv6) => addrs.push((IpAddr::V6(a.0), ttl)),
                    (RData::CNAME(_), _) => {
                        via_cname = true;
                        chain_ttl = chain_ttl.min(ttl);
                    }
                    _ => {}
                }
            }
            if addrs.is_empty() {
                // NODATA behind a CNAME (or an odd answer): a brief negative entry.
                FamilyAnswer {
                    cache_until: started + chain_ttl.min(NEGATIVE_TTL_NO_SOA),
                    result: Ok(FamilyRecords {
                        addrs: SmallVec::new(),
                        via_cname,
                        expires: started,
                    }),
                }
            } else {
                let addrs: SmallVec<[(IpAddr, Instant); 1]> = addrs
                    .into_iter()
                    .map(|(ip, ttl)| (ip, started + ttl.min(chain_ttl)))
                    .collect();
                let expires = addrs.iter().map(|a| a.1).min().unwrap_or(started);
                FamilyAnswer {
                    cache_until: expires,
                    result: Ok(FamilyRecords {
                        addrs,
                        via_cname,
                        expires,
                    }),
                }
            }
        }
        Ok(Err(e)) => classify(key, e, started),
    };

    match &answer.result {
        Err(e @ DnsError::NoAddresses(_)) => {
            tracing::debug!(fqdn = key, family = ?fam, error = %e, "DNS lookup: no records")
        }
        Ok(r) if r.addrs.is_empty() => {
            tracing::debug!(fqdn = key, family = ?fam, "DNS lookup: no records")
        }
        Err(e) => tracing::warn!(fqdn = key, family = ?fam, error = %e, "DNS lookup failed"),
        Ok(_) => {}
    }
    answer
}

fn classify(key: &str, e: NetError, started: Instant) -> FamilyAnswer {
    match e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => {
            let ttl = match nr.negative_ttl {
                Some(t) => Duration::from_secs(u64::from(t)).min(NEGATIVE_TTL_CAP),
                None => NEGATIVE_TTL_NO_SOA,
            };
            let result = if nr.response_code == ResponseCode::NXDomain {
                Err(DnsError::NxDomain(key.to_owned()))
            } else {
                // NODATA: no records of this family. The common case for AAAA, so
                // kept without an error text (assembly names it if it matters).
                Ok(FamilyRecords {
                    addrs: SmallVec::new(),
                    via_cname: false,
                    expires: started,
                })
            };
            FamilyAnswer {
                cache_until: started + ttl,
                result,
            }
        }
        NetError::Timeout => FamilyAnswer {
            cache_until: started + ERROR_TTL,
            result: Err(DnsError::Timeout(key.to_owned())),
        },
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => FamilyAnswer {
            cache_until: started + ERROR_TTL,
            result: Err(DnsError::Other(format!(
                "{key}: nameserver answered {code}"
            ))),
        },
        other => FamilyAnswer {
            cache_until: started + ERROR_TTL,
            result: Err(DnsError::Other(format!("{key}: {other}"))),
        },
    }
}
