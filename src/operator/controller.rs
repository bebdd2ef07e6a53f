//! The reconciler, controller-rs style: a [`Context`] built once and shared by
//! every reconcile and the renderer, and a short [`reconcile`] that hands off
//! to its methods — observe the trunk, nudge the renderer when it lags, write
//! the status when it changed, record Events on condition transitions.
//!
//! What a reconcile observes: the spec rules, number conflicts with older
//! trunks, the referenced Secrets, DNS, and whether every live proxy runs the
//! trunk's generation ([`super::rollout`]). The status itself is a pure
//! function of those observations ([`super::status`]).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event as KubeEvent, EventType},
        reflector::Store,
    },
};
use tokio::sync::{Notify, watch};

use super::{
    error::Error,
    events::EventPublisher,
    fleet::{FIELD_MANAGER, FleetSettings},
    metrics::Metrics,
    render::{self, SecretLookup, trunk_key},
    rollout::{RenderedState, live_revisions},
    secrets::SecretCache,
    status::{self, DnsObservation, Observations},
};
use crate::{
    config::{VirtualSipTrunk, VirtualSipTrunkStatus, check_fqdn},
    dns::{DnsError, Resolution, Resolver},
};

/// Shared by every reconcile and the renderer; built once by `run`.
pub struct Context {
    pub(super) client: Client,
    pub(super) fleet: FleetSettings,
    resolver: Resolver,
    pub(super) metrics: Metrics,
    recorder: EventPublisher,
    pub(super) stores: Vec<Store<VirtualSipTrunk>>,
    pub(super) secrets: Arc<SecretCache>,
    pub(super) rendered: watch::Receiver<Arc<RenderedState>>,
    pub(super) render_requests: Arc<Notify>,
    /// Proxies' heartbeat Leases (fleet namespace).
    leases: Store<Lease>,
}

/// What [`Context::new`] is built from.
pub struct ContextParts {
    pub client: Client,
    pub fleet: FleetSettings,
    pub resolver: Resolver,
    pub metrics: Metrics,
    pub recorder: EventPublisher,
    pub stores: Vec<Store<VirtualSipTrunk>>,
    pub secrets: Arc<SecretCache>,
    pub rendered: watch::Receiver<Arc<RenderedState>>,
    pub render_requests: Arc<Notify>,
    pub leases: Store<Lease>,
}

/// Reconciles one trunk: observe, write status if it changed, record transitions.
pub async fn reconcile(trunk: Arc<VirtualSipTrunk>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_timer();
    let result = ctx.reconcile_trunk(&trunk).await;
    timer.done(match &result {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    });
    result
}

/// Retry soon on errors; one bad trunk never blocks others (each has its own backoff).
pub fn error_policy(trunk: Arc<VirtualSipTrunk>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(trunk = %trunk_key(&trunk), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

impl Context {
    pub fn new(p: ContextParts) -> Self {
        Self {
            client: p.client,
            fleet: p.fleet,
            resolver: p.resolver,
            metrics: p.metrics,
            recorder: p.recorder,
            stores: p.stores,
            secrets: p.secrets,
            rendered: p.rendered,
            render_requests: p.render_requests,
            leases: p.leases,
        }
    }

    async fn reconcile_trunk(&self, trunk: &VirtualSipTrunk) -> Result<Action, Error> {
        let ns = trunk
            .namespace()
            .ok_or_else(|| Error::MissingNamespace(trunk_key(trunk)))?;
        if trunk.metadata.deletion_timestamp.is_some() {
            self.render_requests.notify_one();
            return Ok(Action::await_change());
        }
        let (obs, dns_requeue) = self.observe(trunk).await?;
        // The renderer works from the same inputs; make sure it has seen this generation.
        let in_step = obs.renderer_in_step();
        if !in_step {
            self.render_requests.notify_one();
        }
        self.write_status(trunk, &ns, &obs).await?;
        Ok(Action::requeue(if in_step {
            dns_requeue
        } else {
            dns_requeue.min(Duration::from_secs(10))
        }))
    }

    /// Everything the status is made of, and when DNS should be looked at again.
    async fn observe(&self, trunk: &VirtualSipTrunk) -> Result<(Observations, Duration), Error> {
        let key = trunk_key(trunk);
        let all = self.all_trunks();
        let conflicts = render::conflicts_for(trunk, &all);
        drop(all);
        let mut lookup = SecretLookup::new();
        for k in render::referenced_secrets(trunk) {
            let data = self.secrets.get(&self.client, &k).await?;
            lookup.insert(k, data);
        }
        let refs = render::resolve_refs(trunk, &lookup);
        let (dns, dns_requeue) = match check_fqdn(&trunk.spec.fqdn) {
            Err(_) => (
                DnsObservation::Failed {
                    reason: "InvalidName",
                    message: "fqdn is not a valid DNS name".into(),
                },
                Duration::from_secs(300),
            ),
            Ok(()) => dns_observation(
                self.resolver
                    .resolve(&trunk.spec.fqdn, &trunk.spec.ip_families)
                    .await,
            ),
        };
        let rendered = self.rendered.borrow().clone();
        let programmed =
            rendered.programmed_by_proxies(&key, trunk.metadata.generation, &self.live_revisions());
        let obs = Observations {
            generation: trunk.metadata.generation,
            trunk_sid: render::trunk_sid(trunk),
            fqdn: trunk.spec.fqdn.clone(),
            ip_families: trunk.spec.ip_families.clone(),
            suspended: trunk.spec.suspended,
            spec_errors: render::spec_errors(trunk),
            conflicts,
            refs,
            dns,
            programmed,
        };
        Ok((obs, dns_requeue))
    }

    /// Server-side apply of the status, only when it changed; then the Events.
    async fn write_status(
        &self,
        trunk: &VirtualSipTrunk,
        ns: &str,
        obs: &Observations,
    ) -> Result<(), Error> {
        let old = trunk.status.as_ref();
        let new = status::desired_status(obs, old, &now_rfc3339());
        if !status::status_changed(old, &new) {
            return Ok(());
        }
        let api: Api<VirtualSipTrunk> = Api::namespaced(self.client.clone(), ns);
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
        tracing::info!(trunk = %trunk_key(trunk), generation = ?trunk.metadata.generation, "status updated");
        self.publish_transitions(trunk, old, &new).await;
        Ok(())
    }

    async fn publish_transitions(
        &self,
        trunk: &VirtualSipTrunk,
        old: Option<&VirtualSipTrunkStatus>,
        new: &VirtualSipTrunkStatus,
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
            if let Err(e) = self.recorder.publish(&ev, &reference).await {
                tracing::warn!(trunk = %trunk_key(trunk), error = %e, "could not record event");
            }
        }
    }

    /// Revisions run by live proxies, sorted.
    pub fn live_revisions(&self) -> Vec<String> {
        let leases = self.leases.state();
        live_revisions(
            leases.iter().map(|l| &**l),
            Timestamp::now().as_millisecond(),
        )
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

/// DNS as the status shows it, and when to look again (the answer's TTL, 5 s to 5 min;
/// 30 s after a failure).
fn dns_observation(result: Result<Arc<Resolution>, DnsError>) -> (DnsObservation, Duration) {
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
