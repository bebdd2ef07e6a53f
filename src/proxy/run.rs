//! `vsip proxy`: reads the first configuration (a file, or the operator's
//! Secret), builds the [`Server`] complete, binds the listeners, starts the
//! background tasks (source index, reloads, heartbeat and quota peers in
//! cluster mode, admin endpoints) and runs until SIGTERM.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use super::{
    args::{ConfigOverrides, ProxyArgs},
    cluster,
    local::Listeners,
    quota,
    reload::{load_file, watch_config_file, watch_listener_certificate},
    route_sig,
    routes::Routes,
    server::{Server, Settings},
    sources::source_refresher,
    tls,
};
use crate::{
    admin,
    dns::Resolver,
    telemetry::{self, metrics::ProxyMetrics},
    wire::config_secret::SecretRef,
};

enum ConfigSource {
    File(std::path::PathBuf),
    Secret(kube::Client, SecretRef),
}

/// `vsip proxy`.
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
    metrics.reload(true);
    let route_key = match &args.route_key_file {
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
    let server = Server::new(
        routes,
        resolver,
        metrics.clone(),
        listener_tls,
        Settings {
            instance: instance.clone(),
            listeners,
            route_key,
            overrides,
        },
    );
    tokio::spawn(source_refresher(server.clone()));
    // Calls from trunks are only recognised once their FQDNs have resolved once.
    let mut source_ready = server.source_ready().subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(5), source_ready.wait_for(|r| *r)).await;
    crate::heap::trim();

    let ready = Arc::new(AtomicBool::new(true));
    if let Some(addr) = admin_addr {
        let listener = admin::bind(addr).await?;
        let state = admin::AdminState {
            registry: registry.clone(),
            ready: ready.clone(),
        };
        let router = admin::router(state).merge(quota::grant::router(server.clone()));
        tokio::spawn(async move {
            if let Err(e) = admin::serve_router(listener, router).await {
                error!(error = %e, "admin server stopped");
            }
        });
    }
    let mut cleanup = None;
    match source {
        ConfigSource::File(path) => {
            tokio::spawn(watch_config_file(server.clone(), path));
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
                server.clone(),
                client.clone(),
                secret.clone(),
                run_tx,
            ));
            if let Some(endpoint) = endpoint {
                let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
                let quota = server.quota().clone();
                tokio::spawn(quota::peers::watch(
                    client.clone(),
                    secret.namespace.clone(),
                    instance.clone(),
                    endpoint,
                    quota.peers.clone(),
                    ready_tx,
                    move |set| quota.peers_changed(set),
                ));
                // Until the peers are known every trunk would look locally owned.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), ready_rx.wait_for(|r| *r)).await;
            }
            cleanup = Some((client, secret.namespace.clone()));
        }
    }
    let conns = server.connections();
    if let Some(l) = tcp {
        tokio::spawn(conns.clone().serve_tcp(l));
    }
    if let Some(l) = tls_listener {
        tokio::spawn(conns.clone().serve_tls(l, server.listener_tls().clone()));
    }
    info!(
        tcp = ?listeners.tcp,
        tls = ?listeners.tls,
        trunks = trunk_count,
        "vsip proxy ready"
    );
    tokio::spawn(watch_listener_certificate(server.clone()));

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
