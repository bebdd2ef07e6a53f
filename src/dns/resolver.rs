//! [`Resolver`]: the one entry point. A call's resolution goes in named steps
//! — normalise the request, the assembled fast path, gather the family answers
//! (cached, joined or queried), settle (wait with grace), assemble, keep for
//! the next calls, count — each a few lines here or a method of
//! [`super::cache`] / [`super::lookup`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use arc_swap::ArcSwap;
use futures::{FutureExt, future::BoxFuture};
use prometheus::Registry;

use super::{
    cache::Cache,
    error::DnsError,
    lookup::{Resolution, assemble, family_combo, normalize},
    metrics::Metrics,
    query::{Backend, FamilyAnswer, SharedAnswer, build_backend, query},
};
use crate::config::{DnsConfig, IpFamily};

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
    cache: Cache,
    next_id: AtomicU64,
    metrics: Metrics,
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
                cache: Cache::new(Instant::now()),
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

    /// Drops expired answers now (at most once per sweep interval, 2 s). Lookups sweep by
    /// themselves on a miss; a caller that resolves many names in bursts (the proxy's source
    /// refresher) calls this between bursts so expired answers do not sit in memory.
    pub fn purge_expired(&self) {
        self.inner.cache.purge_expired(Instant::now());
    }

    /// Drops every cached answer (queries in flight complete but are not cached).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
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
        let cache = &self.inner.cache;
        let metrics = &self.inner.metrics;
        let key = normalize(fqdn);
        let (fams, combo) = family_combo(families);
        if combo == 0 {
            return Err(DnsError::NoAddresses(key.into_owned()));
        }
        let now = Instant::now();
        if let Some(hit) = cache.assembled(&key, combo, now) {
            metrics.cache_hit.inc();
            return hit;
        }
        if key.is_empty() || key.len() > 253 {
            let e = DnsError::Other(format!("{fqdn:?}: not a valid domain name"));
            metrics.count(&Err::<(), _>(e.clone()));
            return Err(e);
        }
        let epoch = cache.epoch();
        let mut gather = cache.gather(&key, &fams, now, |fam| self.spawn_query(&key, fam));
        let (queried, waited) = (gather.queried, gather.waits());
        let complete = gather.settle().await;

        let now = Instant::now();
        let (result, valid_until) = assemble(&key, &fams, &gather.answers, now);
        // Kept only when every family answered and all are cacheable.
        if keep_assembled && complete && valid_until > now {
            cache.keep_assembled(&key, combo, epoch, valid_until, &result, now);
        }
        if queried || waited {
            metrics.count(&result);
        } else {
            // Everything came from the per-family cache: no query was needed.
            metrics.cache_hit.inc();
        }
        result
    }

    /// Starts the query for (fqdn, family) in its own task, so a caller that
    /// stops waiting does not cancel it for the others; the answer lands in
    /// the cache.
    fn spawn_query(&self, key: &str, fam: IpFamily) -> (u64, SharedAnswer) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        let key: Box<str> = key.into();
        let task = tokio::spawn(async move {
            let backend = inner.backend.load_full();
            let answer = Arc::new(query(&backend, &inner.metrics, &key, fam).await);
            inner.cache.settle(&key, fam, id, &answer);
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
        (id, fut.shared())
    }
}
