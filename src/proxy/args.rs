//! `vsip proxy`'s command line, and the settings of it that win over every
//! configuration loaded.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use crate::config::ProxyConfig;

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
