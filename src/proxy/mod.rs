//! `vsip proxy`: the data plane.
//!
//! Layers, each with one job: [`transport`] (listeners, dialing, framing),
//! [`core`] (classification and transaction matching), [`call`] (per-call
//! admission, DNS, failover, relaying), [`stamp`] (message shaping),
//! [`routes`] (the compiled config, swapped atomically), [`cpm`], [`tls`].

pub mod call;
pub mod cluster;
pub mod core;
pub mod cpm;
pub mod quota;
pub mod route_sig;
pub mod routes;
pub mod stamp;
pub mod tls;
pub mod transport;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, anyhow};
use futures::StreamExt;
use smallvec::SmallVec;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use self::{
    core::{Core, Listeners},
    routes::{Routes, SourceIndex},
};
use crate::{
    admin,
    config::{IpFamily, ProxyConfig},
    dns::Resolver,
    telemetry::{self, metrics::ProxyMetrics},
    wire::config_secret::SecretRef,
};

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Configuration file (brief §4); reloaded when it changes.
    #[arg(long, short = 'c', env = "VSIP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Cluster mode: read the rendered configuration from this Secret
    /// (`namespace/name`, key `config.yaml`) through the API server.
    #[arg(long, env = "VSIP_CONFIG_SECRET")]
    pub kube_config_secret: Option<String>,
    /// Log level when RUST_LOG is not set.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Overrides `listen.tcp` of every configuration loaded (several
    /// replicas on one host, or a debugging session beside the fleet).
    #[arg(long, env = "VSIP_LISTEN_TCP")]
    pub listen_tcp: Option<SocketAddr>,
    /// Overrides `listen.tls` of every configuration loaded.
    #[arg(long, env = "VSIP_LISTEN_TLS")]
    pub listen_tls: Option<SocketAddr>,
    /// Overrides `admin` of every configuration loaded.
    #[arg(long, env = "VSIP_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// Address the other proxies reach this one's admin listener at for quota
    /// tokens (cluster mode). Defaults to the admin address when it is a
    /// concrete IP, else 127.0.0.1.
    #[arg(long, env = "POD_IP")]
    pub peer_address: Option<IpAddr>,
    /// File whose bytes key the signatures of our Record-Route entries. Give
    /// every proxy that may receive another's in-dialog requests (and one proxy
    /// across restarts) the same file; without it a random per-process key is
    /// used and calls set up before a restart cannot be ended through it.
    #[arg(long, env = "VSIP_ROUTE_KEY_FILE")]
    pub route_key_file: Option<PathBuf>,
}

/// Command-line settings that win over every configuration loaded, so a
/// reload never moves a listener the operator of this process pinned.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConfigOverrides {
    pub listen_tcp: Option<SocketAddr>,
    pub listen_tls: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

impl ConfigOverrides {
    pub fn apply(&self, config: &mut ProxyConfig) {
        if let Some(a) = self.listen_tcp {
            config.listen.tcp = Some(a);
        }
        if let Some(a) = self.listen_tls {
            config.listen.tls = Some(a);
        }
        if let Some(a) = self.admin {
            config.admin = Some(a);
        }
    }
}

enum ConfigSource {
    File(PathBuf),
    Secret(kube::Client, SecretRef),
}

const SOURCE_TICK: Duration = Duration::from_millis(500);
/// A trunk's addresses are not re-queried more often than this.
const SOURCE_REFRESH_FLOOR: Duration = Duration::from_secs(1);
const SOURCE_RETRY: Duration = Duration::from_secs(10);

/// How often the config file's modification time is checked.
const CONFIG_POLL: Duration = Duration::from_millis(500);

pub fn check_config(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match ProxyConfig::from_yaml(&text) {
        Ok(c) => {
            Routes::compile(c.clone(), &Routes::empty())?;
            println!("{}: ok ({} trunks)", path.display(), c.trunks.len());
            Ok(())
        }
        Err(e) => {
            for err in &e.errors {
                match err.line {
                    Some(l) => eprintln!("{}:{l}: {}", path.display(), err.message),
                    None => eprintln!("{}: {}", path.display(), err.message),
                }
            }
            Err(anyhow!("{} is not a valid configuration", path.display()))
        }
    }
}

fn load_file(path: &Path) -> anyhow::Result<ProxyConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ProxyConfig::from_yaml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    telemetry::init_logging(&args.log_level);
    let overrides = ConfigOverrides {
        listen_tcp: args.listen_tcp,
        listen_tls: args.listen_tls,
        admin: args.admin,
    };
    let (mut config, source) = match (&args.config, &args.kube_config_secret) {
        (Some(path), None) => (load_file(path)?, ConfigSource::File(path.clone())),
        (None, Some(secret)) => {
            let secret: SecretRef = secret.parse()?;
            let client = kube::Client::try_default()
                .await
                .context("cluster mode needs Kubernetes credentials (in-cluster or KUBECONFIG)")?;
            let config = cluster::initial_config(&client, &secret).await?;
            (config, ConfigSource::Secret(client, secret))
        }
        _ => {
            return Err(anyhow!(
                "give exactly one of --config FILE or --kube-config-secret NAMESPACE/NAME"
            ));
        }
    };
    overrides.apply(&mut config);
    let instance = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let registry = prometheus::Registry::new();
    let metrics = ProxyMetrics::new(&registry);
    let resolver = Resolver::new(&config.dns, &registry).map_err(|e| anyhow!("DNS: {e}"))?;
    let listener_tls = tls::ListenerTls::new(&config.listen)?;
    // The routes own the trunks; keep only the few settings `run` still needs.
    let listen = config.listen.clone();
    let admin_addr = config.admin;
    let first_revision = config.revision.clone().unwrap_or_default();
    let trunk_count = config.trunks.len();
    let routes = Routes::compile(config, &Routes::empty())?;

    let tcp = match listen.tcp {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("TCP listener {a}"))?,
        ),
        None => None,
    };
    let tls_listener = match listen.tls {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("TLS listener {a}"))?,
        ),
        None => None,
    };
    if tcp.is_none() && tls_listener.is_none() {
        return Err(anyhow!("no listener configured (listen.tcp or listen.tls)"));
    }
    let listeners = Listeners {
        tcp: tcp.as_ref().and_then(|l| l.local_addr().ok()),
        tls: tls_listener.as_ref().and_then(|l| l.local_addr().ok()),
    };
    metrics.routes_trunks.set(routes.trunks.len() as i64);
    metrics.config_reloads.with_label_values(&["ok"]).inc();
    let mut core = Core::new(
        routes,
        resolver,
        metrics.clone(),
        listener_tls,
        listeners,
        &instance,
    );
    core.overrides = overrides;
    core.route_key = match &args.route_key_file {
        Some(path) => {
            let secret = std::fs::read(path)
                .with_context(|| format!("route key file {}", path.display()))?;
            if secret.len() < 16 {
                return Err(anyhow!(
                    "route key file {} holds {} bytes; give at least 16 random bytes",
                    path.display(),
                    secret.len()
                ));
            }
            route_sig::RouteKey::from_secret(&secret)
        }
        None => {
            info!("no --route-key-file: Record-Route signatures use a per-process key");
            route_sig::RouteKey::random()
        }
    };
    let core = Arc::new(core);
    tokio::spawn(source_refresher(core.clone()));
    // Calls from trunks are only recognised once their FQDNs have resolved once.
    let mut source_ready = core.source_ready.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(5), source_ready.wait_for(|r| *r)).await;
    crate::heap::trim();

    let ready = Arc::new(AtomicBool::new(true));
    if let Some(addr) = admin_addr {
        let listener = admin::bind(addr).await?;
        let state = admin::AdminState {
            registry: registry.clone(),
            ready: ready.clone(),
        };
        let router = admin::router(state).merge(quota::grant::router(core.clone()));
        tokio::spawn(async move {
            if let Err(e) = admin::serve_router(listener, router).await {
                error!(error = %e, "admin server stopped");
            }
        });
    }
    let mut cleanup = None;
    match source {
        ConfigSource::File(path) => {
            tokio::spawn(watch_config_file(core.clone(), path));
        }
        ConfigSource::Secret(client, secret) => {
            let (run_tx, run_rx) = tokio::sync::watch::channel(cluster::Running {
                revision: first_revision,
                secret_uid: None,
            });
            let endpoint = admin_addr.map(|a| quota_endpoint(a, args.peer_address));
            if endpoint.is_none() {
                warn!("no admin listener: this proxy cannot share trunk quotas with its peers");
            }
            tokio::spawn(cluster::heartbeat(
                client.clone(),
                secret.clone(),
                instance.clone(),
                endpoint.clone(),
                run_rx,
            ));
            tokio::spawn(cluster::watch_config(
                core.clone(),
                client.clone(),
                secret.clone(),
                run_tx,
            ));
            if let Some(endpoint) = endpoint {
                let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
                let peers_core = core.clone();
                tokio::spawn(quota::peers::watch(
                    client.clone(),
                    secret.namespace.clone(),
                    instance.clone(),
                    endpoint,
                    core.quota.peers.clone(),
                    ready_tx,
                    move |set| peers_core.quota.peers_changed(set),
                ));
                // Until the peers are known every trunk would look locally owned.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), ready_rx.wait_for(|r| *r)).await;
            }
            cleanup = Some((client, secret.namespace.clone()));
        }
    }
    if let Some(l) = tcp {
        tokio::spawn(transport::serve_tcp(core.clone(), l));
    }
    if let Some(l) = tls_listener {
        tokio::spawn(transport::serve_tls(core.clone(), l));
    }
    info!(
        tcp = ?listeners.tcp,
        tls = ?listeners.tls,
        trunks = trunk_count,
        "vsip proxy ready"
    );
    tokio::spawn(watch_listener_certificate(core.clone()));

    shutdown_signal().await;
    info!("shutting down");
    if let Some((client, namespace)) = cleanup {
        cluster::remove_heartbeat(client, &namespace, &instance).await;
    }
    Ok(())
}

/// `http://ip:port` of this proxy's admin listener as its peers see it.
fn quota_endpoint(admin: SocketAddr, peer_address: Option<IpAddr>) -> String {
    let ip = match peer_address {
        Some(ip) => ip,
        None if !admin.ip().is_unspecified() => admin.ip(),
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    format!("http://{}", SocketAddr::new(ip, admin.port()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Applies a new configuration atomically; calls in progress keep the routes
/// they started with.
pub fn apply_config(core: &Arc<Core>, mut config: ProxyConfig) -> anyhow::Result<()> {
    core.overrides.apply(&mut config);
    let previous = core.routes.load_full();
    // Not `config.clone()`: with 10,000 trunks that is several MB per reload.
    let listen_changed = previous.config.listen != config.listen;
    let dns = config.dns.clone();
    let routes = Routes::compile(config, &previous)?;
    if listen_changed {
        warn!("listener addresses changed; a restart is needed for them to apply");
    }
    core.resolver.update_config(&dns);
    core.metrics.routes_trunks.set(routes.trunks.len() as i64);
    core.quota
        .retain_trunks(|sid| routes.trunk_by_sid(sid).is_some());
    core.routes.store(Arc::new(routes));
    crate::heap::trim();
    Ok(())
}

async fn watch_config_file(core: Arc<Core>, path: PathBuf) {
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last: Option<SystemTime> = stamp(&path);
    // A digest, not the text: a 10,000-trunk file is megabytes kept for nothing.
    let digest = |t: &str| ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
    let mut last_digest = digest(&std::fs::read_to_string(&path).unwrap_or_default());
    loop {
        tokio::time::sleep(CONFIG_POLL).await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let now_digest = digest(&text);
        if now_digest.as_ref() == last_digest.as_ref() {
            continue;
        }
        last_digest = now_digest;
        let result = ProxyConfig::from_yaml(&text)
            .map_err(|e| anyhow!("{e}"))
            .and_then(|c| apply_config(&core, c));
        match result {
            Ok(()) => {
                core.metrics.config_reloads.with_label_values(&["ok"]).inc();
                let n = core.routes.load().trunks.len();
                info!(file = %path.display(), trunks = n, "configuration reloaded");
            }
            Err(e) => {
                core.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                error!(file = %path.display(), error = %e, "configuration refused; keeping the last good one");
            }
        }
    }
}

async fn watch_listener_certificate(core: Arc<Core>) {
    let mut last = tls::files_stamp(&core.routes.load().config.listen);
    loop {
        tokio::time::sleep(tls::CERT_POLL).await;
        let listen = core.routes.load().config.listen.clone();
        let now = tls::files_stamp(&listen);
        if now == last {
            continue;
        }
        last = now;
        match core.listener_tls.reload(&listen) {
            Ok(()) => {
                core.metrics.listener_cert_reloads.inc();
                info!("TLS listener certificate reloaded");
            }
            Err(e) => {
                error!(error = %e, "TLS listener certificate refused; keeping the previous one")
            }
        }
    }
}

/// A refresh pass with at least this many lookups is followed by [`crate::heap::trim`]
/// once [`TRIM_DELAY`] has passed (its assembled answers and negative answers
/// have expired and been swept by then).
const TRIM_AFTER_LOOKUPS: usize = 1000;
const TRIM_DELAY: Duration = Duration::from_secs(8);

/// What the source refresher knows of one trunk.
#[derive(Clone, Default)]
struct SourceState {
    /// When to look the FQDN up again; `None`: now.
    due: Option<Instant>,
    /// The addresses last resolved (kept through a DNS hiccup).
    /// Inline for up to two (most FQDNs): one allocation fewer per trunk, made
    /// in the middle of the start-up burst of lookups.
    addrs: SmallVec<[IpAddr; 2]>,
}

/// Re-resolves trunk FQDNs as their answers expire, to recognise calls from
/// trunks. Only due names are looked up; the index is rebuilt only on change.
/// State is kept per trunk, in the order of `routes.trunks` (no per-name maps:
/// with 10,000 trunks each map of names costs about a megabyte).
async fn source_refresher(core: Arc<Core>) {
    let mut state: Vec<SourceState> = Vec::new();
    let mut upstream_ips: Vec<IpAddr> = Vec::new();
    let mut routes_seen: Option<Arc<Routes>> = None;
    // After a large burst of lookups, freed memory is handed back once its
    // short-lived answers have expired.
    let mut trim_at: Option<Instant> = None;
    loop {
        let routes = core.routes.load_full();
        let reloaded = !routes_seen
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &routes));
        if reloaded {
            // Carry state over by trunk name: trunks that left the configuration
            // are forgotten, new ones are due now.
            let old = std::mem::take(&mut state);
            state = routes
                .trunks
                .iter()
                .map(|t| {
                    routes_seen
                        .as_ref()
                        .and_then(|seen| seen.index_of(t.name()))
                        .and_then(|j| old.get(j))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            routes_seen = Some(routes.clone());
        }
        let now = Instant::now();
        let todo: Vec<(usize, Arc<routes::Trunk>)> = routes
            .trunks
            .iter()
            .enumerate()
            .filter(|(i, _)| state[*i].due.is_none_or(|d| d <= now))
            .map(|(i, t)| (i, t.clone()))
            .collect();
        if todo.len() >= TRIM_AFTER_LOOKUPS {
            trim_at = Some(now + TRIM_DELAY);
        }
        let resolver = core.resolver.clone();
        let mut lookups = futures::stream::iter(todo)
            .map(move |(i, t)| {
                let resolver = resolver.clone();
                async move {
                    let r = resolver
                        .refresh(&t.cfg.spec.fqdn, &t.cfg.spec.ip_families)
                        .await;
                    (i, r)
                }
            })
            .buffer_unordered(32);
        let mut changed = reloaded;
        while let Some((i, r)) = lookups.next().await {
            let s = &mut state[i];
            match r {
                Ok(r) => {
                    s.due = Some(r.expires.max(Instant::now() + SOURCE_REFRESH_FLOOR));
                    if *s.addrs != *r.addrs {
                        s.addrs = SmallVec::from_slice(&r.addrs);
                        changed = true;
                    }
                }
                // Keep the last known addresses through a DNS hiccup.
                Err(_) => s.due = Some(Instant::now() + SOURCE_RETRY),
            }
        }
        drop(lookups);
        if let Some(up) = &routes.upstream {
            let ips = match up.host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => core
                    .resolver
                    .resolve(&up.host, &[IpFamily::IPv4, IpFamily::IPv6])
                    .await
                    .map(|r| r.addrs.clone())
                    .unwrap_or_else(|_| upstream_ips.clone()),
            };
            if ips != upstream_ips {
                upstream_ips = ips;
                changed = true;
            }
        } else if !upstream_ips.is_empty() {
            upstream_ips.clear();
            changed = true;
        }
        if changed {
            let sources = SourceIndex::new(
                routes.clone(),
                state.iter().map(|s| &*s.addrs),
                upstream_ips.clone(),
            );
            core.sources.store(Arc::new(sources));
            let _ = core.source_ready.send(true);
        }
        // Answers that expired since the last pass leave the DNS cache now, not
        // at the next burst of lookups.
        core.resolver.purge_expired();
        if trim_at.is_some_and(|t| t <= Instant::now()) {
            trim_at = None;
            crate::heap::trim();
        }
        tokio::time::sleep(SOURCE_TICK).await;
    }
}
