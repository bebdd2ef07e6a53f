//! The renderer: one task that turns every accepted trunk into the proxies'
//! configuration Secret. It waits for a request (a reconcile that saw
//! something new, a deleted trunk caught by the trunk-set fingerprint every
//! 2 s, or a minute without a render), debounces a burst into one render —
//! O(n log n) — writes the Secret only when the content hash (`revision`)
//! changed, and requeues the trunks whose `Programmed` view changed. Between
//! renders it polls the proxies' heartbeats (a read of the local cache) and
//! requeues only the trunks some proxy moved on or off.
//!
//! [`Renderer`] owns that loop's state; each step is a method.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use super::{
    controller::Context,
    error::Error,
    fleet::{FleetApplier, FleetSettings, config_secret},
    hash::fnv1a_128,
    render::{self, SecretKey, trunk_key},
    rollout::RenderedState,
    scopes::{Requeuers, Shutdown, requeue},
    status::CONDITION_TYPES,
};
use crate::{
    config::{ProxyConfig, VirtualSipTrunk},
    wire::config_secret as wire_secret,
};

/// How often the proxies' running revisions are compared (heartbeat Leases are watched, so
/// this is a read of the local cache): the last step of a change reaching `Programmed`.
const LIVE_POLL: Duration = Duration::from_millis(250);
/// The trunk-set fingerprint (deletions) is checked every this many polls (2 s).
const FINGERPRINT_EVERY: u32 = 8;
/// A render happens at least this often, requested or not.
const RENDER_AT_LEAST_EVERY: Duration = Duration::from_secs(60);
/// One render for a burst of changes.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// Pause after a failed render before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The fleet objects are re-applied this often even when unchanged (someone may have edited them).
const REASSERT_FLEET: Duration = Duration::from_secs(600);
/// Least time between two [`crate::heap::trim`] calls of the renderer.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Reads the configuration the proxies currently have (so a restart does not flap
/// `Programmed`, and an unchanged render is not written again).
pub async fn read_current_config(client: &Client, fleet: &FleetSettings) -> Option<ProxyConfig> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &fleet.namespace);
    let secret = api.get_opt(wire_secret::NAME).await.ok()??;
    wire_secret::decode(&secret.data?).ok()
}

pub struct Renderer {
    ctx: Arc<Context>,
    rendered_tx: watch::Sender<Arc<RenderedState>>,
    requeuers: Requeuers,
    applier: FleetApplier,
    /// The last render failed: render again (after a pause) without waiting for a request.
    retry: bool,
    last_render: Instant,
    last_fingerprint: Option<u128>,
    last_fleet_assert: Instant,
    last_trim: Instant,
    /// A render freed memory that has not been handed back yet.
    trim_due: bool,
    /// Revisions the live proxies ran at the last poll.
    last_live: Vec<String>,
    /// Polls since start (the fingerprint is checked every [`FINGERPRINT_EVERY`]).
    tick: u32,
}

impl Renderer {
    pub fn new(
        ctx: Arc<Context>,
        rendered_tx: watch::Sender<Arc<RenderedState>>,
        requeuers: Requeuers,
        applier: FleetApplier,
    ) -> Self {
        let now = Instant::now();
        Self {
            ctx,
            rendered_tx,
            requeuers,
            applier,
            retry: false,
            last_render: now,
            last_fingerprint: None,
            last_fleet_assert: now,
            last_trim: now,
            trim_due: false,
            last_live: Vec::new(),
            tick: 0,
        }
    }

    /// Waits for requests (debounced), renders, writes, requeues; also keeps the fleet
    /// objects applied and the `vsip_operator_trunks` gauge current. Returns on shutdown.
    pub async fn run(mut self, shutdown: Shutdown) {
        if !self.wait_for_caches(&shutdown).await {
            return;
        }
        self.last_live = self.ctx.live_revisions();
        loop {
            if !self.retry && !self.wait_for_work(&shutdown).await {
                return;
            }
            self.last_fingerprint = Some(trunk_set_fingerprint(&self.ctx.all_trunks()));
            self.last_render = Instant::now();
            tokio::time::sleep(DEBOUNCE).await;
            if self.last_fleet_assert.elapsed() > REASSERT_FLEET {
                self.applier.forget();
                self.last_fleet_assert = Instant::now();
            }
            self.retry = match self.render_once().await {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "rendering the proxy configuration failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER) => {},
                        _ = shutdown.clone() => return,
                    }
                    true
                }
            };
            update_trunk_gauge(&self.ctx);
            // A render of many trunks allocates and frees tens of MB (the config, its
            // YAML, gzip, the patch body): give that back once things settle.
            self.trim_due = true;
        }
    }

    /// Waits until every scope's trunk cache has listed once; false on shutdown.
    async fn wait_for_caches(&self, shutdown: &Shutdown) -> bool {
        tracing::debug!(
            scopes = self.ctx.stores.len(),
            "renderer waiting for trunk caches"
        );
        for s in &self.ctx.stores {
            // Re-poll: the readiness signal wakes only its most recent poller, and the controller
            // itself waits on the same store.
            loop {
                tokio::select! {
                    r = tokio::time::timeout(Duration::from_millis(500), s.wait_until_ready()) => match r {
                        Ok(Ok(())) => break,
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "trunk cache failed; renderer stopped");
                            return false;
                        }
                        Err(_) => continue,
                    },
                    _ = shutdown.clone() => return false,
                }
            }
        }
        tracing::info!(trunks = self.ctx.all_trunks().len(), "trunk caches ready");
        true
    }

    /// Until a render is due: a request from a reconcile, or a poll that finds one
    /// needed. False on shutdown.
    async fn wait_for_work(&mut self, shutdown: &Shutdown) -> bool {
        loop {
            tokio::select! {
                _ = self.ctx.render_requests.notified() => return true,
                _ = tokio::time::sleep(LIVE_POLL) => if self.poll() {
                    return true;
                },
                _ = shutdown.clone() => return false,
            }
        }
    }

    /// One [`LIVE_POLL`] tick: hand memory back when due, requeue the trunks whose
    /// `Programmed` the proxies' moves changed, and every 2 s check the trunk set
    /// (deleted trunks trigger no reconcile). True when a render is due.
    fn poll(&mut self) -> bool {
        self.tick = self.tick.wrapping_add(1);
        if self.trim_due && self.last_trim.elapsed() >= TRIM_EVERY {
            crate::heap::trim();
            self.last_trim = Instant::now();
            self.trim_due = false;
        }
        self.requeue_lagging();
        if !self.tick.is_multiple_of(FINGERPRINT_EVERY) {
            return false;
        }
        let fp = Some(trunk_set_fingerprint(&self.ctx.all_trunks()));
        fp != self.last_fingerprint || self.last_render.elapsed() > RENDER_AT_LEAST_EVERY
    }

    /// Proxies moved to another revision: requeue only the trunks whose Programmed can
    /// change (all of them when proxies appear or vanish).
    fn requeue_lagging(&mut self) {
        let live = self.ctx.live_revisions();
        if live == self.last_live {
            return;
        }
        let state = self.ctx.rendered.borrow().clone();
        if live.is_empty() != self.last_live.is_empty() {
            for t in self.ctx.all_trunks() {
                requeue(&self.requeuers, &trunk_key(&t));
            }
        } else {
            let before = state.behind(&self.last_live);
            let after = state.behind(&live);
            for key in before.symmetric_difference(&after) {
                requeue(&self.requeuers, key);
            }
        }
        self.last_live = live;
    }

    /// Renders every trunk, writes the Secret when the revision changed, and
    /// requeues the trunks whose view changed.
    async fn render_once(&mut self) -> Result<(), Error> {
        let Renderer {
            ctx,
            rendered_tx,
            requeuers,
            applier,
            ..
        } = self;
        applier.apply_all(&ctx.fleet).await?;
        let trunks = ctx.all_trunks();
        let keys: HashSet<SecretKey> = trunks
            .iter()
            .flat_map(|t| render::referenced_secrets(t))
            .collect();
        // Read Secrets not cached yet (startup, rotation), a few at a time.
        let cached = ctx.secrets.snapshot(keys.iter());
        let missing: Vec<&SecretKey> = keys.iter().filter(|k| !cached.contains_key(*k)).collect();
        for chunk in missing.chunks(16) {
            let reads = chunk.iter().map(|k| ctx.secrets.get(&ctx.client, k));
            for r in futures::future::join_all(reads).await {
                r?;
            }
        }
        let lookup = ctx.secrets.snapshot(keys.iter());
        let start = Instant::now();
        let rendered = render::render(&trunks, &lookup, &ctx.fleet);
        ctx.metrics
            .render_duration
            .observe(start.elapsed().as_secs_f64());
        let previous = ctx.rendered.borrow().clone();
        if previous.revision != rendered.config.revision {
            let secret = config_secret(&rendered.config, &ctx.fleet);
            applier.apply(&secret).await?;
            ctx.metrics.config_writes.inc();
            tracing::info!(
                revision = ?rendered.config.revision,
                trunks = rendered.config.trunks.len(),
                excluded = rendered.excluded.len(),
                "proxy configuration written"
            );
        }
        let state = Arc::new(previous.next(
            rendered.config.revision.clone(),
            rendered.generations,
            rendered.excluded,
        ));
        // Requeue trunks whose view changed.
        let mut changed: HashSet<&String> = HashSet::new();
        for k in state.generations.keys().chain(previous.generations.keys()) {
            if state.generations.get(k) != previous.generations.get(k) {
                changed.insert(k);
            }
        }
        for k in state.excluded.keys().chain(previous.excluded.keys()) {
            if state.excluded.get(k) != previous.excluded.get(k) {
                changed.insert(k);
            }
        }
        let changed: Vec<String> = changed.into_iter().cloned().collect();
        rendered_tx.send_replace(state);
        for k in &changed {
            requeue(requeuers, k);
        }
        Ok(())
    }
}

/// Order-independent fingerprint of which trunks exist at which generation.
fn trunk_set_fingerprint(trunks: &[Arc<VirtualSipTrunk>]) -> u128 {
    trunks.iter().fold(trunks.len() as u128, |acc, t| {
        let id = format!(
            "{}|{}|{:?}",
            trunk_key(t),
            t.uid().unwrap_or_default(),
            t.metadata.generation
        );
        acc.wrapping_add(fnv1a_128(id.as_bytes()))
    })
}

fn update_trunk_gauge(ctx: &Context) {
    let mut counts: HashMap<(&str, String), i64> = HashMap::new();
    let trunks = ctx.all_trunks();
    for t in &trunks {
        for c in CONDITION_TYPES {
            let s = t
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|x| x.type_ == c))
                .map(|x| x.status.clone())
                .unwrap_or_else(|| "Unknown".into());
            *counts.entry((c, s)).or_default() += 1;
        }
    }
    ctx.metrics.trunks.reset();
    for ((c, s), n) in counts {
        ctx.metrics
            .trunks
            .with_label_values(&[c, s.as_str()])
            .set(n);
    }
}
