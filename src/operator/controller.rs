//! The reconciler: one `Controller` per watched scope (all namespaces, or each namespace of
//! `--namespaces`), a shared [`Context`], and the renderer task that turns the accepted trunks
//! into the proxies' configuration Secret.
//!
//! - A trunk reconcile observes (spec rules, number conflicts, referenced Secrets, DNS, whether
//!   the rendered configuration holds its generation), writes status by server-side apply when
//!   it changed, records Events on condition transitions, and nudges the renderer.
//! - The renderer (debounced) renders every trunk at once — O(n log n) — writes the Secret
//!   only when the content hash (`revision`) changed, then requeues the trunks whose
//!   `Programmed` view changed.
//! - Referenced Secrets are watched by metadata only (cheap, no Secret data cached for
//!   unrelated Secrets); their data is read on demand and cached until they change.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, channel::mpsc, future::BoxFuture};
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::Secret},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        controller::{self, Action, Controller},
        events::{Event as KubeEvent, EventType},
        reflector::{self, ObjectRef, Store},
        watcher::{self, watcher},
    },
};
use tokio::sync::{Notify, watch};

use super::{
    Error, FIELD_MANAGER,
    fleet::{self, CONFIG_SECRET, FleetApplier, FleetSettings},
    metrics::Metrics,
    render::{
        self, CA_KEY, Exclusion, Refs, SecretData, SecretKey, SecretLookup, TLS_CERT_KEY,
        TLS_KEY_KEY, trunk_key,
    },
    status::{self, CONDITION_TYPES, DnsObservation, Observations, ProgrammedObservation},
};
use crate::{
    config::{ProxyConfig, VirtualSipTrunk},
    dns::{DnsError, Resolver},
};

/// Label and annotation of the proxies' heartbeat Leases (see `crate::proxy::cluster`).
pub use crate::proxy::cluster::{
    HEARTBEAT_LABEL, REVISION_ANNOTATION as HEARTBEAT_REVISION_ANNOTATION,
};

/// What the proxies were last given.
#[derive(Clone, Debug, Default)]
pub struct RenderedState {
    /// `None` until the first render (or the Secret found at startup).
    pub revision: Option<String>,
    /// The trunks of `revision`: their generation, and since which revision it is held.
    pub generations: Arc<HashMap<String, Held>>,
    pub excluded: HashMap<String, Exclusion>,
    /// Recent revisions with their sequence numbers (newest last), so that a proxy still
    /// running an older revision can be judged: it holds a trunk's current generation
    /// exactly when its revision's number is at least that trunk's [`Held::since`].
    /// (One map per kept revision instead cost ~0.7 MB each with 10,000 trunks.)
    pub history: Vec<(String, u64)>,
}

/// A trunk's generation in the current revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub generation: i64,
    /// Number of the first revision of the unbroken run of revisions, up to the
    /// current one, that all hold this generation.
    pub since: u64,
}

/// How often the proxies' running revisions are compared (heartbeat Leases are watched, so
/// this is a read of the local cache): the last step of a change reaching `Programmed`.
const LIVE_POLL: Duration = Duration::from_millis(250);
/// The trunk-set fingerprint (deletions) is checked every this many polls (2 s).
const FINGERPRINT_EVERY: u32 = 8;

/// Revisions kept in [`RenderedState::history`].
const HISTORY: usize = 32;

impl RenderedState {
    /// Trunks whose current generation some live proxy does not run yet: the only
    /// trunks whose `Programmed` can change when the proxies' revisions move.
    pub fn behind(&self, live: &[String]) -> HashSet<String> {
        let mut out = HashSet::new();
        for rev in live {
            match self.sequence_of(rev) {
                Some(seq) => out.extend(
                    self.generations
                        .iter()
                        .filter(|(_, h)| h.since > seq)
                        .map(|(k, _)| k.clone()),
                ),
                // A revision older than the history: everything counts as behind.
                None => return self.generations.keys().cloned().collect(),
            }
        }
        out
    }

    /// The number of revision `rev` (the newest, should a configuration come back).
    fn sequence_of(&self, rev: &str) -> Option<u64> {
        self.history
            .iter()
            .rev()
            .find(|(r, _)| r == rev)
            .map(|&(_, seq)| seq)
    }

    /// The state after rendering `revision` holding `generations`: a trunk keeps its
    /// [`Held::since`] while its generation stays, and starts a new run otherwise.
    pub fn next(
        &self,
        revision: Option<String>,
        generations: HashMap<String, i64>,
        excluded: HashMap<String, Exclusion>,
    ) -> RenderedState {
        let mut history = self.history.clone();
        let last = history.last().map(|&(_, seq)| seq);
        let seq = match (&revision, history.last()) {
            (Some(rev), Some((r, seq))) if r == rev => *seq,
            (Some(rev), _) => {
                let seq = last.map_or(0, |s| s + 1);
                history.push((rev.clone(), seq));
                if history.len() > HISTORY {
                    history.remove(0);
                }
                seq
            }
            (None, _) => last.unwrap_or(0),
        };
        let generations = generations
            .into_iter()
            .map(|(k, generation)| {
                let since = match self.generations.get(&k) {
                    Some(h) if h.generation == generation => h.since,
                    _ => seq,
                };
                (k, Held { generation, since })
            })
            .collect();
        RenderedState {
            revision,
            generations: Arc::new(generations),
            excluded,
            history,
        }
    }

    /// The state of a configuration read back from the Secret (operator restart).
    pub fn from_config(config: &ProxyConfig) -> Self {
        let generations = config
            .trunks
            .iter()
            .filter_map(|t| {
                let generation = t.generation?;
                Some((
                    t.name.clone(),
                    Held {
                        generation,
                        since: 0,
                    },
                ))
            })
            .collect();
        Self {
            revision: config.revision.clone(),
            history: config.revision.iter().map(|r| (r.clone(), 0)).collect(),
            generations: Arc::new(generations),
            excluded: HashMap::new(),
        }
    }

    /// `Programmed`: every live proxy (heartbeat Leases) runs a revision that holds this
    /// generation. With no live proxy nothing routes calls, so nothing is Programmed: Ready
    /// must mean that calls route.
    pub fn programmed_by_proxies(
        &self,
        key: &str,
        generation: Option<i64>,
        live: &[String],
    ) -> ProgrammedObservation {
        let interim = self.programmed(key, generation);
        if !matches!(interim, ProgrammedObservation::InConfig { .. }) {
            return interim;
        }
        if live.is_empty() {
            return ProgrammedObservation::Excluded {
                reason: "NoLiveProxies",
                message: "the configuration holds this generation, but no proxy has reported \
                          running it (heartbeat Leases vsip-proxy-*)"
                    .into(),
            };
        }
        let held = self.generations.get(key);
        let behind = live
            .iter()
            .filter(|rev| {
                let seq = self.sequence_of(rev);
                !held.is_some_and(|h| Some(h.generation) == generation && seq >= Some(h.since))
            })
            .count();
        if behind == 0 {
            // No revision names or proxy counts here: they change with every other
            // trunk's edit or a scale event, and a message that changes rewrites every
            // trunk's status each time.
            ProgrammedObservation::InConfig {
                revision: "every live proxy".into(),
            }
        } else {
            ProgrammedObservation::Excluded {
                reason: "ProxiesBehind",
                message: format!(
                    "{behind} of {} live proxies do not run generation {} yet",
                    live.len(),
                    generation.unwrap_or_default()
                ),
            }
        }
    }

    /// The interim `Programmed` rule: the rendered Secret holds this generation of the trunk.
    /// (Once proxies report their running revision through heartbeat Leases, this becomes
    /// "every live proxy runs a revision holding this generation".)
    pub fn programmed(&self, key: &str, generation: Option<i64>) -> ProgrammedObservation {
        if let (Some(rev), Some(h)) = (&self.revision, self.generations.get(key))
            && Some(h.generation) == generation
        {
            return ProgrammedObservation::InConfig {
                revision: rev.clone(),
            };
        }
        match self.excluded.get(key) {
            Some(Exclusion::InvalidSpec(m)) => ProgrammedObservation::Excluded {
                reason: "InvalidSpec",
                message: format!("left out of the proxy configuration: {m}"),
            },
            Some(Exclusion::NumberConflict(_)) => ProgrammedObservation::Excluded {
                reason: "NotAccepted",
                message: "left out of the proxy configuration: number conflict".into(),
            },
            Some(Exclusion::RefsNotResolved(m)) => ProgrammedObservation::Excluded {
                reason: "RefsNotResolved",
                message: format!("left out of the proxy configuration: {m}"),
            },
            None => ProgrammedObservation::Pending,
        }
    }
}

/// Data of referenced Secrets, read on demand, dropped when the Secret changes.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<SecretKey, Option<Arc<SecretData>>>>,
}

impl SecretCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, Option<Arc<SecretData>>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Secret's data (`None`: it does not exist), from cache or the API server.
    pub async fn get(
        &self,
        client: &Client,
        key: &SecretKey,
    ) -> Result<Option<Arc<SecretData>>, kube::Error> {
        let cached = self.lock().get(key).cloned();
        if let Some(v) = cached {
            return Ok(v);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &key.0);
        let data = api.get_opt(&key.1).await?.map(|s| {
            let mut data = SecretData::new();
            for (k, v) in s.data.unwrap_or_default() {
                if [CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY].contains(&k.as_str())
                    && let Ok(text) = String::from_utf8(v.0)
                {
                    data.insert(k, text);
                }
            }
            Arc::new(data)
        });
        self.lock().insert(key.clone(), data.clone());
        Ok(data)
    }

    /// Forgets a Secret (it changed); true when it was cached.
    pub fn invalidate(&self, key: &SecretKey) -> bool {
        self.lock().remove(key).is_some()
    }

    /// What is cached for `keys`.
    pub fn snapshot<'a>(&self, keys: impl IntoIterator<Item = &'a SecretKey>) -> SecretLookup {
        let entries = self.lock();
        keys.into_iter()
            .filter_map(|k| entries.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

/// Shared by every reconcile and the renderer.
pub struct Context {
    pub client: Client,
    pub fleet: FleetSettings,
    pub resolver: Resolver,
    pub metrics: Metrics,
    pub recorder: super::events::EventPublisher,
    pub stores: Vec<Store<VirtualSipTrunk>>,
    pub secrets: Arc<SecretCache>,
    pub rendered: watch::Receiver<Arc<RenderedState>>,
    pub render_requests: Arc<Notify>,
    /// Proxies' heartbeat Leases (fleet namespace).
    pub leases: Store<Lease>,
}

impl Context {
    /// Revisions run by live proxies (heartbeat Lease renewed within its duration), sorted.
    pub fn live_revisions(&self) -> Vec<String> {
        let now = Timestamp::now();
        let mut revs: Vec<String> = self
            .leases
            .state()
            .iter()
            .filter(|l| {
                let Some(spec) = &l.spec else { return false };
                let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds)
                else {
                    return false;
                };
                renew.0.as_second() + i64::from(secs) >= now.as_second()
            })
            .filter_map(|l| l.annotations().get(HEARTBEAT_REVISION_ANNOTATION).cloned())
            .collect();
        revs.sort();
        revs
    }

    /// Every trunk in every watched scope.
    pub fn all_trunks(&self) -> Vec<Arc<VirtualSipTrunk>> {
        let mut all = Vec::new();
        for s in &self.stores {
            all.extend(s.state());
        }
        all
    }
}

fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn dns_observation(
    result: Result<Arc<crate::dns::Resolution>, DnsError>,
) -> (DnsObservation, Duration) {
    match result {
        Ok(r) => {
            let left = r.expires.saturating_duration_since(Instant::now());
            (
                DnsObservation::Resolved {
                    records: r.records(),
                    via_cname: r.via_cname,
                },
                left.clamp(Duration::from_secs(5), Duration::from_secs(300)),
            )
        }
        Err(e) => {
            let reason = match e {
                DnsError::NxDomain(_) => "NXDomain",
                DnsError::NoAddresses(_) => "NoAddresses",
                DnsError::Timeout(_) => "Timeout",
                DnsError::Other(_) => "LookupFailed",
            };
            (
                DnsObservation::Failed {
                    reason,
                    message: e.to_string(),
                },
                Duration::from_secs(30),
            )
        }
    }
}

/// Reconciles one trunk: observe, write status if it changed, record transitions.
pub async fn reconcile(trunk: Arc<VirtualSipTrunk>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_timer();
    let result = reconcile_inner(&trunk, &ctx).await;
    timer.done(match &result {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    });
    result
}

async fn reconcile_inner(trunk: &VirtualSipTrunk, ctx: &Context) -> Result<Action, Error> {
    let key = trunk_key(trunk);
    let ns = trunk
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(key.clone()))?;
    if trunk.metadata.deletion_timestamp.is_some() {
        ctx.render_requests.notify_one();
        return Ok(Action::await_change());
    }
    let all = ctx.all_trunks();
    let conflicts = render::conflicts_for(trunk, &all);
    drop(all);
    let spec_errors = render::spec_errors(trunk);

    let mut lookup = SecretLookup::new();
    for k in render::referenced_secrets(trunk) {
        let data = ctx.secrets.get(&ctx.client, &k).await?;
        lookup.insert(k, data);
    }
    let refs = render::resolve_refs(trunk, &lookup);

    let (dns, dns_requeue) = if render::spec_errors(trunk).contains("spec.fqdn") {
        (
            DnsObservation::Failed {
                reason: "InvalidName",
                message: "fqdn is not a valid DNS name".into(),
            },
            Duration::from_secs(300),
        )
    } else {
        dns_observation(
            ctx.resolver
                .resolve(&trunk.spec.fqdn, &trunk.spec.ip_families)
                .await,
        )
    };

    let rendered = ctx.rendered.borrow().clone();
    let programmed =
        rendered.programmed_by_proxies(&key, trunk.metadata.generation, &ctx.live_revisions());
    // The renderer works from the same inputs; make sure it has seen this generation.
    let in_step = match (&programmed, &refs) {
        (ProgrammedObservation::InConfig { .. }, Refs::Resolved(_)) => true,
        (ProgrammedObservation::Excluded { .. }, _) => {
            // Excluded for a reason that still holds?
            !conflicts.is_empty() || !spec_errors.is_empty() || matches!(refs, Refs::Broken(_))
        }
        _ => false,
    };
    if !in_step {
        ctx.render_requests.notify_one();
    }

    let obs = Observations {
        generation: trunk.metadata.generation,
        trunk_sid: render::trunk_sid(trunk),
        fqdn: trunk.spec.fqdn.clone(),
        ip_families: trunk.spec.ip_families.clone(),
        suspended: trunk.spec.suspended,
        spec_errors,
        conflicts,
        refs,
        dns,
        programmed,
    };
    let old = trunk.status.as_ref();
    let new = status::desired_status(&obs, old, &now_rfc3339());
    if status::status_changed(old, &new) {
        let api: Api<VirtualSipTrunk> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": "vsip.io/v1alpha1",
            "kind": "VirtualSipTrunk",
            "status": new,
        });
        api.patch_status(
            &trunk.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        tracing::info!(trunk = %key, generation = ?trunk.metadata.generation, "status updated");
        publish_transitions(ctx, trunk, old, &new).await;
    }
    let requeue = if in_step {
        dns_requeue
    } else {
        dns_requeue.min(Duration::from_secs(10))
    };
    Ok(Action::requeue(requeue))
}

async fn publish_transitions(
    ctx: &Context,
    trunk: &VirtualSipTrunk,
    old: Option<&crate::config::VirtualSipTrunkStatus>,
    new: &crate::config::VirtualSipTrunkStatus,
) {
    let reference = trunk.object_ref(&());
    for (c, before) in status::transitions(old, new) {
        // Ready summarises the others; its own event is the one people look for.
        let ev = KubeEvent {
            type_: if c.status == "False" {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: c.reason.clone(),
            note: Some(
                format!(
                    "{} {} -> {}: {}",
                    c.type_,
                    before.as_deref().unwrap_or("none"),
                    c.status,
                    c.message
                )
                .chars()
                .take(1000)
                .collect(),
            ),
            action: c.type_.clone(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            tracing::warn!(trunk = %trunk_key(trunk), error = %e, "could not record event");
        }
    }
}

/// Retry soon on errors; one bad trunk never blocks others (each has its own backoff).
pub fn error_policy(trunk: Arc<VirtualSipTrunk>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(trunk = %trunk_key(&trunk), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// What the operator never reads of a cached trunk. `managedFields` is most of
/// a server-side-applied object (a field tree per manager) and kubectl's
/// client-side apply copies the whole object into an annotation: with 10,000
/// trunks in the cache that was tens of MB.
pub fn strip_unused_metadata(trunk: &mut VirtualSipTrunk) {
    trunk.metadata.managed_fields = None;
    if let Some(a) = trunk.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED_ANNOTATION);
    }
}

const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One watched scope: `None` = all namespaces.
pub struct Scope {
    pub namespace: Option<String>,
    controller: Controller<VirtualSipTrunk>,
    requeue: mpsc::UnboundedSender<ObjectRef<VirtualSipTrunk>>,
}

/// Builds the controllers (their stores are needed to build the [`Context`]).
pub fn scopes(
    client: &Client,
    namespaces: &[String],
    secrets: Arc<SecretCache>,
    render_requests: Arc<Notify>,
) -> Vec<Scope> {
    let list: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    list.into_iter()
        .map(|namespace| {
            let (trunks, secret_api): (Api<VirtualSipTrunk>, Api<PartialObjectMeta<Secret>>) =
                match &namespace {
                    Some(ns) => (
                        Api::namespaced(client.clone(), ns),
                        Api::namespaced(client.clone(), ns),
                    ),
                    None => (Api::all(client.clone()), Api::all(client.clone())),
                };
            let (store, writer) = reflector::store();
            let trunk_events = reflector::reflector(
                writer,
                watcher(trunks, watcher::Config::default().any_semantic())
                    .modify(strip_unused_metadata),
            )
            .applied_objects();
            let controller = Controller::for_stream(trunk_events, store)
                .with_config(controller::Config::default().concurrency(16));
            let store = controller.store();
            let (tx, rx) = mpsc::unbounded();
            // Metadata only: a Secret's data is read when a trunk references it.
            let secret_events = watcher(secret_api, watcher::Config::default())
                .default_backoff()
                .touched_objects();
            let cache = secrets.clone();
            let notify = render_requests.clone();
            let controller = controller
                .watches_stream(secret_events, move |secret| {
                    let ns = secret.namespace().unwrap_or_default();
                    let name = secret.name_any();
                    let key = (ns.clone(), name.clone());
                    if cache.invalidate(&key) {
                        notify.notify_one();
                    }
                    store
                        .state()
                        .into_iter()
                        .filter(|t| {
                            t.namespace().as_deref() == Some(ns.as_str())
                                && render::referenced_secrets(t).iter().any(|k| k.1 == name)
                        })
                        .map(|t| ObjectRef::from_obj(&*t))
                        .collect::<Vec<_>>()
                })
                .reconcile_on(rx);
            Scope {
                namespace,
                controller,
                requeue: tx,
            }
        })
        .collect()
}

impl Scope {
    pub fn store(&self) -> Store<VirtualSipTrunk> {
        self.controller.store()
    }
}

/// Runs the controllers until `shutdown` resolves (each drains its in-flight reconciles).
pub fn run_controllers(
    scopes: Vec<Scope>,
    ctx: Arc<Context>,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) -> Vec<BoxFuture<'static, ()>> {
    scopes
        .into_iter()
        .map(|scope| {
            let ctx = ctx.clone();
            let notify = ctx.render_requests.clone();
            let run = scope
                .controller
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile, error_policy, ctx)
                .for_each(move |res| {
                    match res {
                        Ok((obj, _)) => tracing::debug!(trunk = %obj, "reconciled"),
                        // A trunk that disappeared: its entry must leave the configuration.
                        Err(controller::Error::ObjectNotFound(obj)) => {
                            tracing::debug!(trunk = %obj, "trunk gone");
                            notify.notify_one();
                        }
                        Err(e) => tracing::debug!(error = %e, "controller"),
                    }
                    futures::future::ready(())
                });
            futures::FutureExt::boxed(run)
        })
        .collect()
}

/// Where to send "reconcile this trunk again" for each scope.
pub type Requeuers = Vec<(
    Option<String>,
    mpsc::UnboundedSender<ObjectRef<VirtualSipTrunk>>,
)>;

pub fn requeuers(scopes: &[Scope]) -> Requeuers {
    scopes
        .iter()
        .map(|s| (s.namespace.clone(), s.requeue.clone()))
        .collect()
}

fn requeue(requeuers: &Requeuers, key: &str) {
    let Some((ns, name)) = key.split_once('/') else {
        return;
    };
    let obj = ObjectRef::<VirtualSipTrunk>::new(name).within(ns);
    for (scope, tx) in requeuers {
        if scope.as_deref().is_none_or(|s| s == ns) {
            let _ = tx.unbounded_send(obj.clone());
        }
    }
}

/// Reads the configuration the proxies currently have (so a restart does not flap
/// `Programmed`, and an unchanged render is not written again).
pub async fn read_current_config(client: &Client, fleet: &FleetSettings) -> Option<ProxyConfig> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &fleet.namespace);
    let secret = api.get_opt(CONFIG_SECRET).await.ok()??;
    render::config_from_secret_data(&secret.data?).ok()
}

/// The renderer loop: waits for requests (debounced), renders, writes, requeues. Also keeps
/// the fleet objects applied and the `vsip_operator_trunks` gauge current.
pub async fn renderer(
    ctx: Arc<Context>,
    rendered_tx: watch::Sender<Arc<RenderedState>>,
    requeuers: Requeuers,
    mut applier: FleetApplier,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) {
    tracing::debug!(
        scopes = ctx.stores.len(),
        "renderer waiting for trunk caches"
    );
    for s in &ctx.stores {
        // Re-poll: the readiness signal wakes only its most recent poller, and the controller
        // itself waits on the same store.
        loop {
            tokio::select! {
                r = tokio::time::timeout(Duration::from_millis(500), s.wait_until_ready()) => match r {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "trunk cache failed; renderer stopped");
                        return;
                    }
                    Err(_) => continue,
                },
                _ = shutdown.clone() => return,
            }
        }
    }
    tracing::info!(trunks = ctx.all_trunks().len(), "trunk caches ready");
    let mut last_fleet_assert = Instant::now();
    let mut retry = false;
    let mut last_fingerprint = None;
    let mut last_render = Instant::now();
    let mut last_trim = Instant::now();
    let mut trim_due = false;
    let mut last_live = ctx.live_revisions();
    let mut tick: u32 = 0;
    loop {
        if !retry {
            // Deleted trunks trigger no reconcile: a cheap fingerprint of the trunk set
            // (checked every 2 s) catches them; requests from reconciles come through `notified`.
            loop {
                tokio::select! {
                    _ = ctx.render_requests.notified() => break,
                    _ = tokio::time::sleep(LIVE_POLL) => {
                        tick = tick.wrapping_add(1);
                        if trim_due && last_trim.elapsed() >= TRIM_EVERY {
                            crate::heap::trim();
                            last_trim = Instant::now();
                            trim_due = false;
                        }
                        // Proxies moved to another revision: requeue only the trunks whose
                        // Programmed can change (all of them when proxies appear or vanish).
                        let live = ctx.live_revisions();
                        if live != last_live {
                            let state = ctx.rendered.borrow().clone();
                            if live.is_empty() != last_live.is_empty() {
                                for t in ctx.all_trunks() {
                                    requeue(&requeuers, &trunk_key(&t));
                                }
                            } else {
                                let before = state.behind(&last_live);
                                let after = state.behind(&live);
                                for key in before.symmetric_difference(&after) {
                                    requeue(&requeuers, key);
                                }
                            }
                            last_live = live;
                        }
                        if !tick.is_multiple_of(FINGERPRINT_EVERY) {
                            continue;
                        }
                        let fp = Some(trunk_set_fingerprint(&ctx.all_trunks()));
                        if fp != last_fingerprint || last_render.elapsed() > Duration::from_secs(60) {
                            break;
                        }
                    },
                    _ = shutdown.clone() => return,
                }
            }
        }
        last_fingerprint = Some(trunk_set_fingerprint(&ctx.all_trunks()));
        last_render = Instant::now();
        // Debounce: one render for a burst of changes.
        tokio::time::sleep(Duration::from_millis(250)).await;
        if last_fleet_assert.elapsed() > Duration::from_secs(600) {
            applier.forget();
            last_fleet_assert = Instant::now();
        }
        retry = match render_once(&ctx, &rendered_tx, &requeuers, &mut applier).await {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(error = %e, "rendering the proxy configuration failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {},
                    _ = shutdown.clone() => return,
                }
                true
            }
        };
        update_trunk_gauge(&ctx);
        // A render of many trunks allocates and frees tens of MB (the config, its
        // YAML, gzip, the patch body): give that back once things settle.
        trim_due = true;
    }
}

/// Least time between two [`crate::heap::trim`] calls of the renderer.
const TRIM_EVERY: Duration = Duration::from_secs(5);

async fn render_once(
    ctx: &Context,
    rendered_tx: &watch::Sender<Arc<RenderedState>>,
    requeuers: &Requeuers,
    applier: &mut FleetApplier,
) -> Result<(), Error> {
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
        let secret = fleet::config_secret(&rendered.config, &ctx.fleet);
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

/// Order-independent fingerprint of which trunks exist at which generation.
fn trunk_set_fingerprint(trunks: &[Arc<VirtualSipTrunk>]) -> u128 {
    trunks.iter().fold(trunks.len() as u128, |acc, t| {
        let id = format!(
            "{}|{}|{:?}",
            trunk_key(t),
            t.uid().unwrap_or_default(),
            t.metadata.generation
        );
        acc.wrapping_add(render::fnv1a_128(id.as_bytes()))
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

#[cfg(test)]
mod tests {

    use super::*;

    fn gens(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn empty() -> RenderedState {
        RenderedState {
            revision: None,
            generations: Arc::default(),
            excluded: HashMap::new(),
            history: Vec::new(),
        }
    }

    fn state() -> RenderedState {
        empty()
            .next(Some("r1".into()), gens(&[("a/x", 1)]), HashMap::new())
            .next(Some("r2".into()), gens(&[("a/x", 2)]), HashMap::new())
    }

    #[test]
    fn only_trunks_a_live_proxy_lags_on_are_behind() {
        let state = empty()
            .next(
                Some("r1".into()),
                gens(&[("a/x", 1), ("a/y", 1)]),
                HashMap::new(),
            )
            .next(
                Some("r2".into()),
                gens(&[("a/x", 2), ("a/y", 1)]),
                HashMap::new(),
            );
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
        assert_eq!(state.behind(&["r1".into()]), set(&["a/x"]));
        assert_eq!(state.behind(&["r2".into()]), set(&[]));
        assert_eq!(state.behind(&["r1".into(), "r2".into()]), set(&["a/x"]));
        // A proxy on a revision older than the history lags on everything.
        assert_eq!(state.behind(&["r0".into()]), set(&["a/x", "a/y"]));
        // Moving r1 → r2 requeues a/x only, not a/y.
        let moved: Vec<_> = state
            .behind(&["r1".into()])
            .symmetric_difference(&state.behind(&["r2".into()]))
            .cloned()
            .collect();
        assert_eq!(moved, ["a/x"]);
    }

    #[test]
    fn a_trunk_left_out_and_back_is_held_only_from_its_return() {
        let state = empty()
            .next(
                Some("r1".into()),
                gens(&[("a/x", 1), ("a/y", 1)]),
                HashMap::new(),
            )
            // a/y left out (say, a Secret it references went away) ...
            .next(Some("r2".into()), gens(&[("a/x", 1)]), HashMap::new())
            // ... and back at the same generation.
            .next(
                Some("r3".into()),
                gens(&[("a/x", 1), ("a/y", 1)]),
                HashMap::new(),
            );
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
        assert_eq!(state.behind(&["r1".into()]), set(&["a/y"]));
        assert_eq!(state.behind(&["r2".into()]), set(&["a/y"]));
        assert_eq!(state.behind(&["r3".into()]), set(&[]));
        // Re-rendering the same revision changes nothing.
        let same = state.next(
            Some("r3".into()),
            gens(&[("a/x", 1), ("a/y", 1)]),
            HashMap::new(),
        );
        assert_eq!(same.history, state.history);
        assert_eq!(same.generations, state.generations);
    }

    #[test]
    fn cached_trunks_drop_managed_fields_and_the_last_applied_copy() {
        use kube::api::ObjectMeta;
        let mut t = VirtualSipTrunk::new(
            "t",
            serde_json::from_value(serde_json::json!({
                "fqdn": "sbc.example.com", "numbers": ["+14155550100"]
            }))
            .expect("spec"),
        );
        t.metadata = ObjectMeta {
            name: Some("t".into()),
            annotations: Some(
                [
                    (LAST_APPLIED_ANNOTATION.to_owned(), "{...}".to_owned()),
                    ("team".to_owned(), "voice".to_owned()),
                ]
                .into(),
            ),
            managed_fields: Some(vec![Default::default()]),
            ..Default::default()
        };
        strip_unused_metadata(&mut t);
        assert!(t.metadata.managed_fields.is_none());
        assert_eq!(
            t.annotations().keys().collect::<Vec<_>>(),
            ["team"],
            "only kubectl's copy goes"
        );
        assert_eq!(t.spec.fqdn, "sbc.example.com");
    }

    #[test]
    fn history_is_capped() {
        let mut state = empty();
        for i in 0..(HISTORY as i64 + 10) {
            state = state.next(
                Some(format!("r{i}")),
                gens(&[("a/x", i + 1)]),
                HashMap::new(),
            );
        }
        assert_eq!(state.history.len(), HISTORY);
        // Only the newest revision holds the current generation; one older than
        // the history counts as behind too.
        let oldest = state.history[0].0.clone();
        assert_eq!(state.behind(&[oldest]).len(), 1);
        assert_eq!(state.behind(&["r0".into()]).len(), 1);
        let newest = format!("r{}", HISTORY + 9);
        assert!(state.behind(&[newest]).is_empty());
    }

    #[test]
    fn programmed_needs_every_live_proxy() {
        let s = state();
        let live = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(
            s.programmed_by_proxies("a/x", Some(2), &live(&["r2", "r2"])),
            ProgrammedObservation::InConfig { .. }
        ));
        match s.programmed_by_proxies("a/x", Some(2), &live(&["r1", "r2"])) {
            ProgrammedObservation::Excluded { reason, message } => {
                assert_eq!(reason, "ProxiesBehind");
                assert!(message.starts_with("1 of 2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // An unknown revision (older than the history) counts as behind.
        assert!(matches!(
            s.programmed_by_proxies("a/x", Some(2), &live(&["r0"])),
            ProgrammedObservation::Excluded { .. }
        ));
        // Nobody runs it while no proxy reports.
        assert!(matches!(
            s.programmed_by_proxies("a/x", Some(2), &[]),
            ProgrammedObservation::Excluded {
                reason: "NoLiveProxies",
                ..
            }
        ));
        // A generation not rendered yet is pending whatever the proxies run.
        assert_eq!(
            s.programmed_by_proxies("a/x", Some(3), &live(&["r2"])),
            ProgrammedObservation::Pending
        );
    }
}
