//! The running configuration compiled for the hot path: number → trunk,
//! per-trunk TLS client configs, and per-trunk runtime state (quota, hold-downs)
//! that survives reloads.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context, anyhow};

use super::{cpm::CpmLimiter, tls, transport::DialTls};
use crate::{
    config::{ProxyConfig, TlsMaterial, TrunkConfig},
    sip::uri::SipUri,
};

/// State of a trunk that must outlive a config swap.
#[derive(Debug)]
pub struct TrunkState {
    pub cpm: CpmLimiter,
    hold_down: Mutex<HashMap<SocketAddr, Instant>>,
}

impl TrunkState {
    fn new(limit: u32) -> Self {
        Self {
            cpm: CpmLimiter::new(limit),
            hold_down: Mutex::new(HashMap::new()),
        }
    }

    pub fn hold(&self, addr: SocketAddr, until: Instant) {
        if let Ok(mut m) = self.hold_down.lock() {
            m.insert(addr, until);
        }
    }

    pub fn release(&self, addr: SocketAddr) {
        if let Ok(mut m) = self.hold_down.lock() {
            m.remove(&addr);
        }
    }

    pub fn is_held(&self, addr: SocketAddr, now: Instant) -> bool {
        let Ok(mut m) = self.hold_down.lock() else {
            return false;
        };
        match m.get(&addr) {
            Some(until) if *until > now => true,
            Some(_) => {
                m.remove(&addr);
                false
            }
            None => false,
        }
    }
}

pub struct Trunk {
    pub cfg: TrunkConfig,
    pub state: Arc<TrunkState>,
    pub tls: Option<DialTls>,
    /// Pre-rendered header lines stamped on every delivered INVITE.
    pub extra_headers: Vec<(String, String)>,
}

impl Trunk {
    pub fn name(&self) -> &str {
        &self.cfg.name
    }
}

#[derive(Clone, Debug)]
pub struct Upstream {
    /// Client TLS settings when the upstream is dialled over TLS (system roots).
    pub tls: Option<DialTls>,
    pub uri: SipUri,
    pub host: String,
    pub port: u16,
    pub transport: crate::config::Transport,
}

pub struct Routes {
    /// The configuration this was compiled from, without its trunks (`trunks`
    /// below holds each trunk's config, once).
    pub config: Arc<ProxyConfig>,
    pub trunks: Vec<Arc<Trunk>>,
    pub by_number: HashMap<String, usize>,
    pub by_name: HashMap<String, usize>,
    pub by_sid: HashMap<String, usize>,
    pub upstream: Option<Upstream>,
}

impl Routes {
    pub fn empty() -> Self {
        Self {
            config: Arc::new(ProxyConfig::default()),
            trunks: Vec::new(),
            by_number: HashMap::new(),
            by_name: HashMap::new(),
            by_sid: HashMap::new(),
            upstream: None,
        }
    }

    /// Builds routes; `previous` hands over quota and hold-down state by trunk name.
    ///
    /// The trunk configs are moved into [`Trunk::cfg`], not copied: `config.trunks`
    /// of the compiled [`Routes::config`] is empty (with 10,000 trunks each copy of
    /// the trunk list costs several MB). Trunks with the same TLS material share
    /// one client config.
    pub fn compile(mut config: ProxyConfig, previous: &Routes) -> anyhow::Result<Self> {
        let configs = std::mem::take(&mut config.trunks);
        let mut trunks = Vec::with_capacity(configs.len());
        let mut by_number =
            HashMap::with_capacity(configs.iter().map(|t| t.spec.numbers.len()).sum());
        let mut by_name = HashMap::with_capacity(configs.len());
        let mut by_sid = HashMap::with_capacity(configs.len());
        let mut client_configs: HashMap<Option<TlsMaterial>, Arc<rustls::ClientConfig>> =
            HashMap::new();
        for (i, t) in configs.into_iter().enumerate() {
            let state = match previous
                .by_name
                .get(&t.name)
                .and_then(|&j| previous.trunks.get(j))
            {
                Some(old) => {
                    old.state.cpm.set_limit(t.spec.calls_per_minute);
                    old.state.clone()
                }
                None => Arc::new(TrunkState::new(t.spec.calls_per_minute)),
            };
            let tls = match t.spec.transport {
                crate::config::Transport::Tls => {
                    let config = match client_configs.get(&t.tls_material) {
                        Some(c) => c.clone(),
                        None => {
                            let c = tls::client_config(t.tls_material.as_ref())
                                .with_context(|| format!("trunk {}: TLS", t.name))?;
                            client_configs.insert(t.tls_material.clone(), c.clone());
                            c
                        }
                    };
                    Some(DialTls {
                        config,
                        server_name: t.spec.tls_server_name().to_owned(),
                    })
                }
                crate::config::Transport::Tcp => None,
            };
            for n in &t.spec.numbers {
                by_number.insert(n.clone(), i);
            }
            by_name.insert(t.name.clone(), i);
            by_sid.insert(t.trunk_sid.clone(), i);
            let extra_headers = t
                .spec
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            trunks.push(Arc::new(Trunk {
                cfg: t,
                state,
                tls,
                extra_headers,
            }));
        }
        let upstream = match &config.upstream {
            Some(u) => Some(parse_upstream(u)?),
            None => None,
        };
        Ok(Self {
            config: Arc::new(config),
            trunks,
            by_number,
            by_name,
            by_sid,
            upstream,
        })
    }

    pub fn trunk_for_number(&self, number: &str) -> Option<&Arc<Trunk>> {
        self.by_number.get(number).and_then(|&i| self.trunks.get(i))
    }

    pub fn trunk_by_sid(&self, sid: &str) -> Option<&Arc<Trunk>> {
        self.by_sid.get(sid).and_then(|&i| self.trunks.get(i))
    }
}

pub fn parse_upstream(u: &str) -> anyhow::Result<Upstream> {
    let uri = SipUri::parse(u).map_err(|e| anyhow!("upstream {u:?}: {e}"))?;
    let transport = match (uri.scheme.as_str(), uri.transport().as_deref()) {
        ("sips", _) | (_, Some("tls")) => crate::config::Transport::Tls,
        _ => crate::config::Transport::Tcp,
    };
    let port = uri.port.unwrap_or(match transport {
        crate::config::Transport::Tls => 5061,
        crate::config::Transport::Tcp => 5060,
    });
    let host = uri
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = match transport {
        crate::config::Transport::Tls => Some(DialTls {
            config: tls::client_config(None)?,
            server_name: host.clone(),
        }),
        crate::config::Transport::Tcp => None,
    };
    Ok(Upstream {
        tls,
        host,
        port,
        transport,
        uri,
    })
}

/// Which trunk a source address belongs to (addresses its FQDN resolves to),
/// and which addresses are trusted as upstream.
#[derive(Default)]
pub struct SourceIndex {
    pub trunks_by_ip: HashMap<IpAddr, Vec<String>>,
    pub upstream_ips: Vec<IpAddr>,
}
