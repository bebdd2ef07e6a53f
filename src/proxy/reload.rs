//! Configuration in standalone mode and on reload: checking a file
//! (`vsip check-config`), loading it, applying a new configuration atomically,
//! watching the file and the listener certificate for changes.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use anyhow::{Context, anyhow};
use tracing::{error, info, warn};

use super::{routes::Routes, server::Server, tls};
use crate::config::ProxyConfig;

/// How often the config file's modification time is checked.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// `vsip check-config FILE`: every problem as `FILE:LINE: reason`.
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

pub fn load_file(path: &Path) -> anyhow::Result<ProxyConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ProxyConfig::from_yaml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Applies a new configuration atomically; calls in progress keep the routes
/// they started with.
pub fn apply_config(server: &Server, mut config: ProxyConfig) -> anyhow::Result<()> {
    server.overrides().apply(&mut config);
    let previous = server.routes().load_full();
    // Not `config.clone()`: with 10,000 trunks that is several MB per reload.
    let listen_changed = previous.config.listen != config.listen;
    let dns = config.dns.clone();
    let routes = Routes::compile(config, &previous)?;
    if listen_changed {
        warn!("listener addresses changed; a restart is needed for them to apply");
    }
    server.resolver().update_config(&dns);
    server
        .metrics()
        .routes_trunks
        .set(routes.trunks.len() as i64);
    server
        .quota()
        .retain_trunks(|sid| routes.trunk_by_sid(sid).is_some());
    server.routes().store(Arc::new(routes));
    crate::heap::trim();
    Ok(())
}

pub async fn watch_config_file(server: Arc<Server>, path: PathBuf) {
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
            .and_then(|c| apply_config(&server, c));
        match result {
            Ok(()) => {
                server.metrics().reload(true);
                let n = server.routes().load().trunks.len();
                info!(file = %path.display(), trunks = n, "configuration reloaded");
            }
            Err(e) => {
                server.metrics().reload(false);
                error!(file = %path.display(), error = %e, "configuration refused; keeping the last good one");
            }
        }
    }
}

pub async fn watch_listener_certificate(server: Arc<Server>) {
    let mut last = tls::files_stamp(&server.routes().load().config.listen);
    loop {
        tokio::time::sleep(tls::CERT_POLL).await;
        let listen = server.routes().load().config.listen.clone();
        let now = tls::files_stamp(&listen);
        if now == last {
            continue;
        }
        last = now;
        match server.listener_tls().reload(&listen) {
            Ok(()) => {
                server.metrics().listener_cert_reloads.inc();
                info!("TLS listener certificate reloaded");
            }
            Err(e) => {
                error!(error = %e, "TLS listener certificate refused; keeping the previous one")
            }
        }
    }
}
