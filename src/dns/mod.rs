//! Per-call FQDN resolution with a TTL-bounded cache (brief §5: "the proxy resolves the FQDN on
//! every call (a cache may hold answers, never beyond their TTL)").
//!
//! - A and AAAA are queried per requested [`IpFamily`], concurrently, each with its own cache
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

use std::{
    borrow::Cow,
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use futures::{
    FutureExt, StreamExt,
    future::{BoxFuture, Shared},
    stream::FuturesUnordered,
};
use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig},
    net::{DnsError as HickoryDnsError, NetError, runtime::TokioRuntimeProvider},
    proto::{
        op::ResponseCode,
        rr::{Name, RData, RecordType},
    },
};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use smallvec::SmallVec;

use crate::config::{DnsConfig, IpFamily, ResolvedAddress};

/// Negative answers (NXDOMAIN, NODATA) are cached at most this long.
pub const NEGATIVE_TTL_CAP: Duration = Duration::from_secs(5);
/// Errors (timeout, SERVFAIL, network) are cached at most this long.
pub const ERROR_TTL: Duration = Duration::from_secs(1);
/// Negative answers without an SOA are cached this long.
const NEGATIVE_TTL_NO_SOA: Duration = Duration::from_secs(1);
/// Once a family has addresses, how long a caller still waits for the other families.
pub const FAMILY_GRACE: Duration = Duration::from_millis(250);
/// An assembled [`Resolution`] is reused for at most this long (keeps `ttl_seconds` fresh).
const ASSEMBLED_MAX_AGE: Duration = Duration::from_secs(1);
/// Expired answers and assembled results are dropped at most this often (on a cache miss, or
/// when [`Resolver::purge_expired`] is called), so memory follows what is live.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

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

#[derive(Debug, Clone, thiserror::Error)]
pub enum DnsError {
    #[error("{0}: no such domain (NXDOMAIN)")]
    NxDomain(String),
    #[error("{0}: no A/AAAA records for the requested IP families")]
    NoAddresses(String),
    #[error("{0}: DNS lookup timed out")]
    Timeout(String),
    #[error("{0}")]
    Other(String),
}

impl DnsError {
    fn metric_label(&self) -> &'static str {
        match self {
            DnsError::NxDomain(_) => "nxdomain",
            DnsError::NoAddresses(_) => "no_addresses",
            DnsError::Timeout(_) => "timeout",
            DnsError::Other(_) => "error",
        }
    }
    /// Which error wins when no family has addresses: the most telling one.
    fn rank(&self) -> u8 {
        match self {
            DnsError::NxDomain(_) => 3,
            DnsError::Timeout(_) => 2,
            DnsError::Other(_) => 1,
            DnsError::NoAddresses(_) => 0,
        }
    }
}

/// Per-call FQDN resolver with a TTL-bounded, coalescing cache. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = self.inner.backend.load();
        f.debug_struct("Resolver")
            .field("nameservers", &backend.cfg.nameservers)
            .field("max_ttl", &backend.cfg.max_ttl)
            .field("timeout", &backend.cfg.timeout)
            .finish()
    }
}

struct Inner {
    backend: ArcSwap<Backend>,
    cache: RwLock<HashMap<Box<str>, Entry>>,
    /// When the next sweep of the cache is due; only touched with the cache's write lock held.
    next_sweep: Mutex<Instant>,
    /// Bumped whenever the cache is dropped; results started before are not cached.
    epoch: AtomicU64,
    next_id: AtomicU64,
    metrics: Metrics,
}

struct Backend {
    hickory: TokioResolver,
    cfg: DnsConfig,
}

/// One cached name. Kept small: a large configuration caches one per trunk FQDN.
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

type SharedAnswer = Shared<BoxFuture<'static, Arc<FamilyAnswer>>>;

struct Assembled {
    combo: u8,
    valid_until: Instant,
    result: Result<Arc<Resolution>, DnsError>,
}

/// The outcome of one A or AAAA query.
#[derive(Debug)]
struct FamilyAnswer {
    /// Until when the cache may serve it (== fetch time when not cacheable).
    cache_until: Instant,
    result: Result<FamilyRecords, DnsError>,
}

#[derive(Debug)]
struct FamilyRecords {
    /// Address and the instant its (clamped) TTL runs out.
    /// Inline for one address (most names): one allocation fewer per cached
    /// answer, made in the middle of a burst of lookups.
    addrs: SmallVec<[(IpAddr, Instant); 1]>,
    via_cname: bool,
    /// min over the answer (address and CNAME records) of min(TTL, maxTtl), from fetch time.
    expires: Instant,
}

struct Metrics {
    cache_hit: IntCounter,
    ok: IntCounter,
    lookups: IntCounterVec,
    duration: Histogram,
}

impl Metrics {
    fn new(registry: &Registry) -> Result<Metrics, DnsError> {
        let lookups = IntCounterVec::new(
            Opts::new(
                "vsip_dns_lookups_total",
                "FQDN resolutions by result (cache_hit, ok, nxdomain, no_addresses, timeout, error)",
            ),
            &["result"],
        )
        .map_err(metric_err)?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "vsip_dns_lookup_duration_seconds",
                "Duration of DNS queries actually sent (cache misses), per A/AAAA query",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .map_err(metric_err)?;
        registry
            .register(Box::new(lookups.clone()))
            .map_err(metric_err)?;
        registry
            .register(Box::new(duration.clone()))
            .map_err(metric_err)?;
        // Pre-create every series so they show (as 0) before the first call.
        for label in ["nxdomain", "no_addresses", "timeout", "error"] {
            lookups.with_label_values(&[label]);
        }
        Ok(Metrics {
            cache_hit: lookups.with_label_values(&["cache_hit"]),
            ok: lookups.with_label_values(&["ok"]),
            lookups,
            duration,
        })
    }

    fn count(&self, result: &Result<Arc<Resolution>, DnsError>) {
        match result {
            Ok(_) => self.ok.inc(),
            Err(e) => self.lookups.with_label_values(&[e.metric_label()]).inc(),
        }
    }
}

fn metric_err(e: prometheus::Error) -> DnsError {
    DnsError::Other(format!("registering DNS metrics: {e}"))
}

fn family_index(f: IpFamily) -> usize {
    match f {
        IpFamily::IPv4 => 0,
        IpFamily::IPv6 => 1,
    }
}

fn record_type(f: IpFamily) -> RecordType {
    match f {
        IpFamily::IPv4 => RecordType::A,
        IpFamily::IPv6 => RecordType::AAAA,
    }
}

/// The requested families, deduplicated, in order, and a small code for the combination.
fn family_combo(families: &[IpFamily]) -> ([Option<IpFamily>; 2], u8) {
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
fn normalize(fqdn: &str) -> Cow<'_, str> {
    let trimmed = fqdn.strip_suffix('.').unwrap_or(fqdn);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

fn build_backend(cfg: &DnsConfig) -> Result<Backend, DnsError> {
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

impl Resolver {
    /// Builds a resolver for `cfg` (custom nameservers, else the system resolver) and registers
    /// `vsip_dns_lookups_total` and `vsip_dns_lookup_duration_seconds` in `registry`.
    pub fn new(cfg: &DnsConfig, registry: &Registry) -> Result<Resolver, DnsError> {
        let backend = build_backend(cfg)?;
        let metrics = Metrics::new(registry)?;
        Ok(Resolver {
            inner: Arc::new(Inner {
                backend: ArcSwap::from_pointee(backend),
                cache: RwLock::new(HashMap::new()),
                next_sweep: Mutex::new(Instant::now() + SWEEP_INTERVAL),
                epoch: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                metrics,
            }),
        })
    }

    /// Config reload: new nameservers / timeout / maxTtl apply to the next lookups. The cache is
    /// dropped when the nameservers change or maxTtl shrinks.
    pub fn update_config(&self, cfg: &DnsConfig) {
        let current = self.inner.backend.load_full();
        if current.cfg == *cfg {
            return;
        }
        let rebuild =
            current.cfg.nameservers != cfg.nameservers || current.cfg.timeout != cfg.timeout;
        let drop_cache =
            current.cfg.nameservers != cfg.nameservers || cfg.max_ttl < current.cfg.max_ttl;
        let new_backend = if rebuild {
            match build_backend(cfg) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "DNS config not applied; keeping the previous one");
                    return;
                }
            }
        } else {
            Backend {
                hickory: current.hickory.clone(),
                cfg: cfg.clone(),
            }
        };
        self.inner.backend.store(Arc::new(new_backend));
        if drop_cache {
            self.clear_cache();
        }
        tracing::info!(
            nameservers = ?cfg.nameservers,
            max_ttl = ?cfg.max_ttl.get(),
            timeout = ?cfg.timeout.get(),
            cache_dropped = drop_cache,
            "DNS config updated"
        );
    }

    /// Drops expired answers now (at most once per [`SWEEP_INTERVAL`]). Lookups sweep by
    /// themselves on a miss; a caller that resolves many names in bursts (the proxy's source
    /// refresher) calls this between bursts so expired answers do not sit in memory.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        let due = *self
            .inner
            .next_sweep
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if now < due {
            return;
        }
        let mut cache = self.inner.cache.write().unwrap_or_else(|p| p.into_inner());
        self.inner.maybe_sweep(&mut cache, now);
    }

    /// Drops every cached answer (queries in flight complete but are not cached).
    pub fn clear_cache(&self) {
        let mut cache = self.inner.cache.write().unwrap_or_else(|p| p.into_inner());
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    /// Resolves `fqdn` for `families` (in that order). Any family with addresses makes it a
    /// success; the error, when none has, is the most telling one (NXDOMAIN, timeout, other,
    /// no addresses).
    pub async fn resolve(
        &self,
        fqdn: &str,
        families: &[IpFamily],
    ) -> Result<Arc<Resolution>, DnsError> {
        self.resolve_with(fqdn, families, true).await
    }

    /// [`Resolver::resolve`] for background refreshes (the proxy's source index):
    /// the per-family answers are cached for calls to use, the assembled result
    /// is not. Kept, it would outlive its use by a second; after a refresh of
    /// 10,000 names those results leave holes among the answers that stay.
    pub async fn refresh(
        &self,
        fqdn: &str,
        families: &[IpFamily],
    ) -> Result<Arc<Resolution>, DnsError> {
        self.resolve_with(fqdn, families, false).await
    }

    async fn resolve_with(
        &self,
        fqdn: &str,
        families: &[IpFamily],
        keep_assembled: bool,
    ) -> Result<Arc<Resolution>, DnsError> {
        let key = normalize(fqdn);
        let (fams, combo) = family_combo(families);
        if combo == 0 {
            return Err(DnsError::NoAddresses(key.into_owned()));
        }
        let now = Instant::now();

        // Fast path: an assembled answer that is still valid.
        {
            let cache = self.inner.cache.read().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = cache.get(key.as_ref())
                && let Some(a) = entry
                    .assembled
                    .iter()
                    .find(|a| a.combo == combo && now < a.valid_until)
            {
                let result = a.result.clone();
                drop(cache);
                self.inner.metrics.cache_hit.inc();
                return result;
            }
        }

        if key.is_empty() || key.len() > 253 {
            let e = DnsError::Other(format!("{fqdn:?}: not a valid domain name"));
            self.inner.metrics.count(&Err(e.clone()));
            return Err(e);
        }

        let epoch = self.inner.epoch.load(Ordering::SeqCst);
        // Per family: a ready answer, or a query in flight to wait for.
        let mut answers: [Option<Arc<FamilyAnswer>>; 2] = [None, None];
        let mut pending = FuturesUnordered::new();
        let mut pending_started: [Option<Instant>; 2] = [None, None];
        let mut queried = false;
        {
            let mut cache = self.inner.cache.write().unwrap_or_else(|p| p.into_inner());
            self.inner.maybe_sweep(&mut cache, now);
            let entry = match cache.get_mut(key.as_ref()) {
                Some(e) => e,
                None => cache.entry(key.clone().into()).or_default(),
            };
            for (pos, fam) in fams.iter().enumerate() {
                let Some(fam) = *fam else { continue };
                let i = family_index(fam);
                match &entry.slots[i] {
                    Slot::Ready(a) if now < a.cache_until => {
                        answers[pos] = Some(a.clone());
                        continue;
                    }
                    Slot::InFlight(f) => {
                        pending_started[pos] = Some(f.started);
                        pending.push(tagged(pos, f.fut.clone()));
                        continue;
                    }
                    _ => {}
                }
                queried = true;
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                let fut = self.spawn_query(key.as_ref(), fam, id);
                pending_started[pos] = Some(now);
                pending.push(tagged(pos, fut.clone()));
                entry.slots[i] = Slot::InFlight(Box::new(InFlight {
                    id,
                    started: now,
                    fut,
                }));
            }
        }

        // Wait: for all families, but once one has addresses only FAMILY_GRACE past the start
        // of the latest pending query. Each query ends by itself within the timeout.
        let waited = !pending.is_empty();
        let has_addrs = |a: &FamilyAnswer| matches!(&a.result, Ok(r) if !r.addrs.is_empty());
        let grace_from = |started: &[Option<Instant>; 2]| {
            started.iter().flatten().max().map(|s| *s + FAMILY_GRACE)
        };
        // A family already answered from the cache counts as "has addresses" too.
        let mut grace_until: Option<Instant> = if answers.iter().flatten().any(|a| has_addrs(a)) {
            grace_from(&pending_started)
        } else {
            None
        };
        while !pending.is_empty() {
            let next = match grace_until {
                None => pending.next().await,
                Some(until) => match tokio::time::timeout_at(until.into(), pending.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some((pos, answer)) = next else { break };
            pending_started[pos] = None;
            let answered = has_addrs(&answer);
            answers[pos] = Some(answer);
            if answered && grace_until.is_none() {
                grace_until = grace_from(&pending_started);
            }
        }
        let complete = pending.is_empty();
        drop(pending);

        let now = Instant::now();
        let (result, valid_until) = assemble(key.as_ref(), &fams, &answers, now);
        // Cache the assembly only when every family answered and all are cacheable.
        if keep_assembled
            && complete
            && valid_until > now
            && self.inner.epoch.load(Ordering::SeqCst) == epoch
        {
            let mut cache = self.inner.cache.write().unwrap_or_else(|p| p.into_inner());
            if self.inner.epoch.load(Ordering::SeqCst) == epoch
                && let Some(entry) = cache.get_mut(key.as_ref())
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
        if queried || waited {
            self.inner.metrics.count(&result);
        } else {
            // Everything came from the per-family cache: no query was needed.
            self.inner.metrics.cache_hit.inc();
        }
        result
    }

    /// Starts the query for (fqdn, family) in its own task; the result lands in the cache.
    fn spawn_query(&self, key: &str, fam: IpFamily, id: u64) -> SharedAnswer {
        let inner = self.inner.clone();
        let key: Box<str> = key.into();
        let task = tokio::spawn(async move {
            let backend = inner.backend.load_full();
            let answer = Arc::new(query(&backend, &inner.metrics, &key, fam).await);
            let mut cache = inner.cache.write().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = cache.get_mut(&key) {
                let slot = &mut entry.slots[family_index(fam)];
                if matches!(slot, Slot::InFlight(f) if f.id == id) {
                    *slot = if Instant::now() < answer.cache_until {
                        Slot::Ready(answer.clone())
                    } else {
                        Slot::Empty
                    };
                }
            }
            answer
        });
        let fut: BoxFuture<'static, Arc<FamilyAnswer>> = Box::pin(async move {
            match task.await {
                Ok(a) => a,
                Err(e) => Arc::new(FamilyAnswer {
                    cache_until: Instant::now(),
                    result: Err(DnsError::Other(format!("DNS query task failed: {e}"))),
                }),
            }
        });
        fut.shared()
    }
}

async fn tagged(pos: usize, fut: SharedAnswer) -> (usize, Arc<FamilyAnswer>) {
    (pos, fut.await)
}

impl Inner {
    /// Sweeps the cache when [`SWEEP_INTERVAL`] has passed since the last sweep.
    fn maybe_sweep(&self, cache: &mut HashMap<Box<str>, Entry>, now: Instant) {
        let mut next = self.next_sweep.lock().unwrap_or_else(|p| p.into_inner());
        if now >= *next {
            sweep(cache, now);
            *next = now + SWEEP_INTERVAL;
        }
    }
}

/// Drops expired answers and assembled results, and names left with nothing fresh and nothing
/// in flight; gives back table space when most of it is unused.
fn sweep(cache: &mut HashMap<Box<str>, Entry>, now: Instant) {
    cache.retain(|_, e| {
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
    if cache.capacity() > 64 && cache.len() < cache.capacity() / 4 {
        cache.shrink_to_fit();
    }
}

/// Builds the call's answer from the family answers; also returns until when it may be reused.
fn assemble(
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

/// One real A or AAAA query, bounded by the configured timeout.
async fn query(backend: &Backend, metrics: &Metrics, key: &str, fam: IpFamily) -> FamilyAnswer {
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

#[cfg(test)]
mod tests {
    use super::*;

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
