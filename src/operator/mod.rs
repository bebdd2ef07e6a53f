//! The control plane: `vsip operator` reconciles `VirtualSipTrunk` resources into a proxy
//! fleet and reports status (brief §3, §7).
//!
//! - [`crdgen`] — the CRD from the Rust types (`vsip crdgen`).
//! - [`render`] — trunks + Secrets → the proxies' configuration (pure).
//! - [`status`] — observations → a trunk's status (pure).
//! - [`fleet`] — the Deployment, Service, PDB, RBAC and config Secret the operator owns.
//! - [`controller`] — `Context`, `reconcile`, the renderer task.
//! - [`metrics`] — `vsip_operator_*`.
//! - [`events`] — Kubernetes Events on condition transitions.
//!
//! Leader election: every replica serves `/healthz`, `/readyz` and `/metrics`; only the
//! holder of the `vsip-operator` Lease reconciles. Losing the Lease stops the process (a fresh
//! start is the safe way back to standby); SIGTERM drains reconciles and releases the Lease.
//!
//! Ownership: `--owner-deployment` (set by the chart to the operator's own Deployment) makes
//! that Deployment the owner of the fleet objects, the config Secret and the leader Lease, so
//! `helm uninstall` leaves nothing behind (garbage collection; docs/operations.md, Uninstall).

pub mod controller;
pub mod crdgen;
mod error;
pub mod events;
pub mod fleet;
pub mod metrics;
pub mod render;
pub mod status;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use futures::{FutureExt, future::BoxFuture};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::{Notify, watch};

pub use error::{Error, Result};

use crate::config::{DEFAULT_HEADER_PREFIX, DnsConfig, TransportPorts};
use controller::{Context, RenderedState, SecretCache};
use fleet::{FleetApplier, FleetSettings};

/// The one field manager of every write (server-side apply) the operator makes.
pub const FIELD_MANAGER: &str = "vsip-operator";

/// Command-line arguments of `vsip operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Namespaces to watch for trunks (comma-separated or repeated); all namespaces when empty.
    #[arg(long, value_delimiter = ',', env = "VSIP_NAMESPACES")]
    pub namespaces: Vec<String>,
    /// Namespace of the proxy fleet, its configuration Secret and the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vsip-system")]
    pub fleet_namespace: String,
    /// Admin HTTP: /metrics, /healthz, /readyz.
    #[arg(long, default_value = "0.0.0.0:9091")]
    pub metrics_addr: SocketAddr,
    /// Container image of the proxies.
    #[arg(long, env = "VSIP_PROXY_IMAGE")]
    pub proxy_image: String,
    /// imagePullPolicy of the proxies.
    #[arg(long)]
    pub proxy_image_pull_policy: Option<PullPolicy>,
    #[arg(long, default_value_t = 2)]
    pub proxy_replicas: i32,
    /// Type of the proxies' Service.
    #[arg(long, default_value = "ClusterIP")]
    pub service_type: ServiceType,
    /// Where trunk-originated calls go, e.g. `sip:carrier.example.net:5060;transport=tcp`.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Host the proxies stamp in From / P-Asserted-Identity.
    #[arg(long, default_value = "pstn.example.net")]
    pub signaling_domain: String,
    #[arg(long, default_value = DEFAULT_HEADER_PREFIX)]
    pub header_prefix: String,
    /// `kubernetes.io/tls` Secret (fleet namespace) of the proxies' TLS listener; no TLS
    /// listener without it.
    #[arg(long)]
    pub listener_cert_secret: Option<String>,
    /// Resolver(s) the operator uses for `DnsResolved` (`ip:port`); system resolver when empty.
    #[arg(long = "dns-nameserver")]
    pub dns_nameservers: Vec<SocketAddr>,
    /// Boxed: keeps `vsip`'s subcommand enum small (clippy::large_enum_variant).
    #[command(flatten)]
    pub leadership: Box<LeadershipArgs>,
    #[command(flatten)]
    pub exposure: Box<ExposureArgs>,
}

/// Where carriers and SBCs reach the fleet: what the proxies advertise in Via and
/// Record-Route (in-dialog requests are sent there), and the Service's fixed node ports.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExposureArgs {
    /// Host or IP the proxies put in Via and Record-Route: an address carriers and SBCs
    /// reach (the Service's external address, a node's address). Default: the pod's address.
    #[arg(long)]
    pub advertise_host: Option<String>,
    /// Port advertised for SIP over TCP (e.g. the Service's node port). Default: 5070.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub advertise_tcp_port: Option<u16>,
    /// Port advertised for SIP over TLS (e.g. the Service's node port). Default: 5061.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub advertise_tls_port: Option<u16>,
    /// Node port of the Service's SIP TCP port (NodePort, LoadBalancer). Default: allocated.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub service_node_port_tcp: Option<u16>,
    /// Node port of the Service's SIP TLS port (NodePort, LoadBalancer). Default: allocated.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub service_node_port_tls: Option<u16>,
}

impl ExposureArgs {
    pub fn exposure(&self) -> fleet::Exposure {
        fleet::Exposure {
            advertise_host: self.advertise_host.clone(),
            advertise_ports: TransportPorts {
                tcp: self.advertise_tcp_port,
                tls: self.advertise_tls_port,
            },
            node_ports: TransportPorts {
                tcp: self.service_node_port_tcp,
                tls: self.service_node_port_tls,
            },
        }
    }
}

/// Leader election, and the owner of what the operator writes in the fleet namespace.
#[derive(clap::Args, Debug, Clone)]
pub struct LeadershipArgs {
    /// Name of the leader-election Lease (fleet namespace).
    #[arg(long, default_value = "vsip-operator")]
    pub leader_lease: String,
    /// Run without leader election (a single replica, tests).
    #[arg(long)]
    pub no_leader_election: bool,
    /// The operator's own Deployment (fleet namespace). Every fleet object and the leader
    /// Lease get an ownerReference to it, so deleting it (`helm uninstall`) garbage-collects
    /// them. Without it the objects are unowned (an operator run by hand).
    #[arg(long, env = "VSIP_OWNER_DEPLOYMENT")]
    pub owner_deployment: Option<String>,
}

/// Type of the proxies' Service.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    #[value(name = "ClusterIP")]
    ClusterIp,
    #[value(name = "NodePort")]
    NodePort,
    #[value(name = "LoadBalancer")]
    LoadBalancer,
}

/// `imagePullPolicy` of the proxies.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    #[value(name = "Always")]
    Always,
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    #[value(name = "Never")]
    Never,
}

impl OperatorArgs {
    pub fn fleet(&self) -> FleetSettings {
        FleetSettings {
            namespace: self.fleet_namespace.clone(),
            image: self.proxy_image.clone(),
            image_pull_policy: self.proxy_image_pull_policy.map(|p| {
                match p {
                    PullPolicy::Always => "Always",
                    PullPolicy::IfNotPresent => "IfNotPresent",
                    PullPolicy::Never => "Never",
                }
                .to_owned()
            }),
            replicas: self.proxy_replicas,
            service_type: match self.service_type {
                ServiceType::ClusterIp => "ClusterIP",
                ServiceType::NodePort => "NodePort",
                ServiceType::LoadBalancer => "LoadBalancer",
            }
            .to_owned(),
            upstream: self.upstream.clone(),
            signaling_domain: self.signaling_domain.clone(),
            header_prefix: self.header_prefix.clone(),
            listener_cert_secret: self.listener_cert_secret.clone(),
            // The proxies use the same resolvers, with the default maxTtl (60 s).
            dns: DnsConfig {
                nameservers: self.dns_nameservers.clone(),
                ..DnsConfig::default()
            },
            // Filled in by `run` from the API (`--owner-deployment`).
            owner: None,
            exposure: self.exposure.exposure(),
        }
    }
}

/// The ownerReference to `--owner-deployment`, read from the API (its UID).
async fn owner_reference(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), namespace);
    let deployment = api
        .get(name)
        .await
        .with_context(|| format!("reading the owner Deployment {namespace}/{name}"))?;
    fleet::owner_reference(&deployment)
        .with_context(|| format!("the owner Deployment {namespace}/{name} has no UID"))
}

/// Makes the leader-election Lease owned by the operator's Deployment (creating it empty when
/// missing, as the lease manager would). Server-side apply of `metadata.ownerReferences` only,
/// under the operator's field manager: the lease manager's own writes (spec, strategic-merge
/// patches) never touch it.
async fn own_leader_lease(
    client: &Client,
    namespace: &str,
    name: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> anyhow::Result<()> {
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "namespace": namespace, "ownerReferences": [owner] },
    });
    api.patch(
        name,
        &kube::api::PatchParams::apply(FIELD_MANAGER),
        &kube::api::Patch::Apply(&patch),
    )
    .await
    .with_context(|| format!("setting the owner of the leader Lease {namespace}/{name}"))?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Retries a start-up call against the API server every 2 s until it works
/// (`Some`) or the process is told to stop (`None`).
async fn retry_until_stopped<T, F, Fut>(
    what: &str,
    terminated: &futures::future::Shared<BoxFuture<'static, ()>>,
    mut call: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    loop {
        match call().await {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "{what}: retrying in 2 s"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = terminated.clone() => return None,
        }
    }
}

/// `vsip operator`.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    crate::telemetry::init_logging("info");
    let mut fleet = args.fleet();
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let terminated: futures::future::Shared<BoxFuture<'static, ()>> =
        termination().boxed().shared();
    if let Some(name) = &args.leadership.owner_deployment {
        let Some(owner) =
            retry_until_stopped("reading the operator's Deployment", &terminated, || {
                owner_reference(&client, &fleet.namespace, name)
            })
            .await
        else {
            return Ok(());
        };
        tracing::info!(owner = %format!("Deployment/{}/{name}", fleet.namespace), uid = %owner.uid, "fleet objects are owned by the operator's Deployment");
        fleet.owner = Some(owner);
    }

    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry)?;
    let dns = DnsConfig {
        nameservers: args.dns_nameservers.clone(),
        // Long enough to see (and warn about) TTLs above 60 s; requeues follow expiry.
        max_ttl: crate::config::Duration::from_secs(300),
        ..DnsConfig::default()
    };
    let resolver = crate::dns::Resolver::new(&dns, &registry)
        .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?;

    let ready = Arc::new(AtomicBool::new(false));
    let admin = crate::admin::bind(args.metrics_addr).await?;
    let admin_state = crate::admin::AdminState {
        registry: registry.clone(),
        ready: ready.clone(),
    };
    tokio::spawn(async move {
        if let Err(e) = crate::admin::serve(admin, admin_state).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    tracing::info!(addr = %args.metrics_addr, namespaces = ?args.namespaces, fleet = %fleet.namespace, "operator starting");

    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("vsip-operator-{:016x}", rand::random::<u64>()));

    // Leader election: standby replicas are ready (serving metrics) but idle.
    let mut leadership = None;
    if !args.leadership.no_leader_election {
        if let Some(owner) = &fleet.owner {
            let owned = retry_until_stopped("owning the leader Lease", &terminated, || {
                own_leader_lease(
                    &client,
                    &fleet.namespace,
                    &args.leadership.leader_lease,
                    owner,
                )
            })
            .await;
            if owned.is_none() {
                return Ok(());
            }
        }
        // The API server may be restarting: wait for it rather than exit.
        let Some(manager) = retry_until_stopped("leader election Lease", &terminated, || async {
            LeaseManagerBuilder::new(client.clone(), &args.leadership.leader_lease)
                .with_namespace(&fleet.namespace)
                .with_identity(&identity)
                // One manager per replica: the library detects a competing
                // acquisition as a server-side-apply conflict between managers; a
                // shared name let two replicas starting together both lead.
                .with_field_manager(format!("{FIELD_MANAGER}-lease-{identity}"))
                .with_duration(15)
                .with_grace(5)
                .build()
                .await
                .map_err(anyhow::Error::from)
        })
        .await
        else {
            return Ok(());
        };
        let (mut rx, task) = manager.watch().await;
        ready.store(true, Ordering::Relaxed);
        tracing::info!(identity = %identity, lease = %args.leadership.leader_lease, "waiting for leadership");
        loop {
            if *rx.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    anyhow::bail!("leader election stopped");
                },
                _ = terminated.clone() => {
                    drop(rx);
                    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                    return Ok(());
                }
            }
        }
        tracing::info!(identity = %identity, "leading");
        leadership = Some((rx, task));
    }
    ready.store(true, Ordering::Relaxed);
    metrics.leader.set(1);

    // Lost leadership or SIGTERM: both stop the controllers.
    let (lost_tx, lost_rx) = watch::channel(false);
    let stop: futures::future::Shared<BoxFuture<'static, ()>> = {
        let terminated = terminated.clone();
        let mut lost = lost_rx.clone();
        async move {
            tokio::select! {
                _ = terminated => {},
                _ = lost.wait_for(|l| *l) => {},
            }
        }
        .boxed()
        .shared()
    };
    let leadership_watch = leadership.as_ref().map(|(rx, _)| rx.clone());
    let mut watcher_task = None;
    if let Some(mut rx) = leadership_watch {
        watcher_task = Some(tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                if !*rx.borrow() {
                    break;
                }
            }
            let _ = lost_tx.send(true);
        }));
    }

    let secrets = Arc::new(SecretCache::default());
    let render_requests = Arc::new(Notify::new());
    let scopes = controller::scopes(
        &client,
        &args.namespaces,
        secrets.clone(),
        render_requests.clone(),
    );
    let current = controller::read_current_config(&client, &fleet).await;
    let initial = current
        .as_ref()
        .map(RenderedState::from_config)
        .unwrap_or_default();
    let (rendered_tx, rendered_rx) = watch::channel(Arc::new(initial));
    // Proxies' heartbeat Leases: which revision each live replica runs.
    let (leases, lease_writer) = kube::runtime::reflector::store();
    let lease_api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), &fleet.namespace);
    let lease_stream = kube::runtime::reflector(
        lease_writer,
        kube::runtime::watcher(
            lease_api,
            kube::runtime::watcher::Config::default()
                .labels(&format!("{}=true", controller::HEARTBEAT_LABEL)),
        ),
    );
    let lease_task = tokio::spawn(async move {
        use futures::StreamExt;
        kube::runtime::WatchStreamExt::default_backoff(lease_stream)
            .for_each(|_| futures::future::ready(()))
            .await;
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        fleet: fleet.clone(),
        resolver,
        metrics: metrics.clone(),
        recorder: events::EventPublisher::new(
            client.clone(),
            FIELD_MANAGER.into(),
            identity.clone(),
        ),
        stores: scopes.iter().map(controller::Scope::store).collect(),
        secrets,
        rendered: rendered_rx,
        render_requests,
        leases,
    });
    let requeuers = controller::requeuers(&scopes);
    let renderer = tokio::spawn(controller::renderer(
        ctx.clone(),
        rendered_tx,
        requeuers,
        FleetApplier::new(client.clone(), fleet.namespace.clone()),
        stop.clone(),
    ));
    futures::future::join_all(controller::run_controllers(scopes, ctx, stop.clone())).await;
    let _ = renderer.await;
    lease_task.abort();
    metrics.leader.set(0);

    let lost = *lost_rx.borrow();
    if let Some(t) = watcher_task {
        t.abort();
        let _ = t.await;
    }
    if let Some((rx, task)) = leadership {
        // Dropping the receiver makes the lease manager release the Lease and stop.
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if lost {
        anyhow::bail!("lost the leader Lease; exiting so a fresh start can stand by");
    }
    tracing::info!("operator stopped");
    Ok(())
}
