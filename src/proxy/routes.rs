//! The running configuration compiled for the hot path: number → trunk,
//! per-trunk TLS client configs, and per-trunk runtime state (quota, hold-downs)
//! that survives reloads.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context, anyhow};

use super::{
    cpm::CpmLimiter,
    tls::{self, DialTls},
};
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
    pub fn new(limit: u32) -> Self {
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
    by_number: TrunkIndex,
    by_name: TrunkIndex,
    by_sid: TrunkIndex,
    pub upstream: Option<Upstream>,
}

/// Which string of a trunk a [`TrunkIndex`] is keyed by.
#[derive(Clone, Copy)]
enum Key {
    Name,
    Sid,
    /// `spec.numbers[n]`.
    Number,
}

impl Key {
    fn of(self, trunk: &Trunk, n: u32) -> &str {
        match self {
            Key::Name => &trunk.cfg.name,
            Key::Sid => &trunk.cfg.trunk_sid,
            Key::Number => trunk
                .cfg
                .spec
                .numbers
                .get(n as usize)
                .map_or("", String::as_str),
        }
    }

    /// The key of entry `(t, n)` (trunk `t`, its number `n`).
    fn at(self, trunks: &[Arc<Trunk>], (t, n): (u32, u32)) -> &str {
        trunks.get(t as usize).map_or("", |tr| self.of(tr, n))
    }
}

/// A string → trunk index whose keys are read from the trunks themselves: a
/// map with owned keys would keep a second copy of every name, SID and number
/// (about 2 MB with 10,000 trunks). Entries are (trunk, number) positions.
struct TrunkIndex {
    key: Key,
    hasher: std::hash::RandomState,
    table: hashbrown::HashTable<(u32, u32)>,
}

impl TrunkIndex {
    fn new(key: Key, capacity: usize) -> Self {
        Self {
            key,
            hasher: std::hash::RandomState::new(),
            table: hashbrown::HashTable::with_capacity(capacity),
        }
    }

    /// Points `key(trunks[t], n)` at trunk `t`; a later entry with the same key wins.
    fn insert(&mut self, trunks: &[Arc<Trunk>], at: (u32, u32)) {
        let key = self.key.at(trunks, at);
        let hash = self.hasher.hash_one(key);
        let Self {
            key: kind,
            hasher,
            table,
        } = self;
        match table.entry(
            hash,
            |&e| kind.at(trunks, e) == key,
            |&e| hasher.hash_one(kind.at(trunks, e)),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = at,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(at);
            }
        }
    }

    fn get(&self, trunks: &[Arc<Trunk>], key: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |&e| self.key.at(trunks, e) == key)
            .map(|&(t, _)| t as usize)
    }
}

impl Routes {
    pub fn empty() -> Self {
        Self {
            config: Arc::new(ProxyConfig::default()),
            trunks: Vec::new(),
            by_number: TrunkIndex::new(Key::Number, 0),
            by_name: TrunkIndex::new(Key::Name, 0),
            by_sid: TrunkIndex::new(Key::Sid, 0),
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
        let mut by_number = TrunkIndex::new(
            Key::Number,
            configs.iter().map(|t| t.spec.numbers.len()).sum(),
        );
        let mut by_name = TrunkIndex::new(Key::Name, configs.len());
        let mut by_sid = TrunkIndex::new(Key::Sid, configs.len());
        let mut client_configs: HashMap<Option<Box<TlsMaterial>>, Arc<rustls::ClientConfig>> =
            HashMap::new();
        for (i, t) in configs.into_iter().enumerate() {
            let state = match previous.trunk_by_name(&t.name) {
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
                            let c = tls::client_config(t.tls_material.as_deref())
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
            let numbers = t.spec.numbers.len();
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
            let i = u32::try_from(i).context("more than 2^32 trunks")?;
            for n in 0..numbers {
                by_number.insert(&trunks, (i, n as u32));
            }
            by_name.insert(&trunks, (i, 0));
            by_sid.insert(&trunks, (i, 0));
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
        self.by_number
            .get(&self.trunks, number)
            .and_then(|i| self.trunks.get(i))
    }

    pub fn trunk_by_sid(&self, sid: &str) -> Option<&Arc<Trunk>> {
        self.by_sid
            .get(&self.trunks, sid)
            .and_then(|i| self.trunks.get(i))
    }

    /// Position of the trunk called `name` in [`Routes::trunks`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(&self.trunks, name)
    }

    pub fn trunk_by_name(&self, name: &str) -> Option<&Arc<Trunk>> {
        self.index_of(name).and_then(|i| self.trunks.get(i))
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
///
/// Trunks are positions in the [`Routes`] the index was built from, not names
/// (a second copy of every trunk name otherwise); after a reload, until the
/// index is rebuilt, they are looked up by name in the current routes.
#[derive(Default)]
pub struct SourceIndex {
    routes: Option<Arc<Routes>>,
    /// The first trunk per address ...
    first: HashMap<IpAddr, u32>,
    /// ... and, rarely, more trunks on the same address, in configuration order.
    more: HashMap<IpAddr, Vec<u32>>,
    pub upstream_ips: Vec<IpAddr>,
}

impl SourceIndex {
    /// `addrs` holds, per trunk of `routes` in order, the addresses its FQDN resolves to.
    pub fn new<'a>(
        routes: Arc<Routes>,
        addrs: impl Iterator<Item = &'a [IpAddr]>,
        upstream_ips: Vec<IpAddr>,
    ) -> Self {
        let mut first = HashMap::with_capacity(routes.trunks.len());
        let mut more: HashMap<IpAddr, Vec<u32>> = HashMap::new();
        for (i, ips) in (0u32..).zip(addrs) {
            for ip in ips {
                if let Some(&f) = first.get(ip) {
                    if f != i {
                        let m = more.entry(*ip).or_default();
                        if m.last() != Some(&i) {
                            m.push(i);
                        }
                    }
                } else {
                    first.insert(*ip, i);
                }
            }
        }
        first.shrink_to_fit();
        Self {
            routes: Some(routes),
            first,
            more,
            upstream_ips,
        }
    }

    /// The first trunk of `current` whose FQDN resolves to `ip`.
    pub fn trunk_for(&self, ip: &IpAddr, current: &Routes) -> Option<Arc<Trunk>> {
        let built = self.routes.as_ref()?;
        let same = std::ptr::eq(Arc::as_ptr(built), current);
        let first = self.first.get(ip)?;
        let more = self.more.get(ip).map_or(&[][..], Vec::as_slice);
        std::iter::once(first).chain(more).find_map(|&i| {
            let t = built.trunks.get(i as usize)?;
            if same {
                Some(t.clone())
            } else {
                current.trunk_by_name(t.name()).cloned()
            }
        })
    }
}
