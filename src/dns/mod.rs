//! Per-call FQDN resolution with a TTL-bounded cache (brief §5: "the proxy resolves the FQDN on
//! every call (a cache may hold answers, never beyond their TTL)").
//!
//! - A and AAAA are queried per requested [`IpFamily`](crate::config::IpFamily), concurrently, each with its own cache
//!   slot keyed by (fqdn, family). A slot holds an answer until `min(TTL, maxTtl)` has passed
//!   (a TTL of 0 is never cached), a negative answer (NXDOMAIN / NODATA) for at most
//!   [`NEGATIVE_TTL_CAP`] (per the SOA minimum), and an error for at most [`ERROR_TTL`].
//! - Concurrent lookups of the same (fqdn, family) share one query in flight. The query runs in
//!   its own task, so a caller that stops waiting does not cancel it for the others.
//! - Any family with addresses wins: a failing AAAA (timeout, SERVFAIL, NODATA) never fails a
//!   call that has A records, and vice versa. Once one family has addresses, a caller waits at
//!   most [`FAMILY_GRACE`] (from the start of each still-pending query) for the other families.
//! - The cached path takes one read lock, one map lookup and one `Arc` clone: the assembled
//!   [`Resolution`] is itself cached (for at most one second, so `ttl_seconds` stays accurate).
//! - hickory's own response cache is disabled (`cache_size = 0`); ours needs the TTLs anyway.
//!
//! Files, the hickory way (each names its siblings directly, never this facade):
//!
//! | file | concern |
//! |---|---|
//! | `resolver.rs` | [`Resolver`]: the entry point, a call's resolution in named steps |
//! | `lookup.rs` | one call: requested families, waiting with grace, assembling a [`Resolution`] |
//! | `cache.rs` | per-name answers, queries in flight, assembled answers, sweeping |
//! | `query.rs` | one A/AAAA query through hickory and how long its answer may be kept |
//! | `error.rs` | [`DnsError`] and its metric label |
//! | `metrics.rs` | `vsip_dns_lookups_total`, `vsip_dns_lookup_duration_seconds` |

mod cache;
mod error;
mod lookup;
mod metrics;
mod query;
mod resolver;

pub use error::DnsError;
pub use lookup::{FAMILY_GRACE, Resolution};
pub use query::{ERROR_TTL, NEGATIVE_TTL_CAP};
pub use resolver::Resolver;
