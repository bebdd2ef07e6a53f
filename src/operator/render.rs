//! Rendering the proxy configuration (brief §4) from the trunks in the cluster.
//!
//! Everything here is pure: trunks + Secret contents + fleet settings in, a [`ProxyConfig`]
//! out. The same rules decide a trunk's `Accepted` / `ResolvedRefs` conditions in the
//! reconciler ([`super::status`]), so the status never disagrees with what the proxies run.
//!
//! Cost: one pass to index numbers, one pass to build entries, one sort — O(n log n) in the
//! number of trunks (10,000 trunks render in a few milliseconds in release builds).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::fleet::FleetSettings;
use crate::{
    config::{ListenConfig, ProxyConfig, TlsMaterial, TrunkConfig, VirtualSipTrunk, check_spec},
    proxy::cluster::{CONFIG_GZ_KEY, CONFIG_KEY},
};

/// Key in a CA Secret (`tls.caSecretRef`).
pub const CA_KEY: &str = "ca.crt";
/// Keys in a `kubernetes.io/tls` Secret (`tls.clientCertificateSecretRef`).
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";

/// `(namespace, name)` of a Secret.
pub type SecretKey = (String, String);
/// The keys of one Secret that the operator reads (UTF-8 PEM), by key name.
pub type SecretData = BTreeMap<String, String>;
/// What is known about referenced Secrets: `Some` = its data, `None` = it does not exist.
/// A Secret absent from the map has not been looked up yet.
pub type SecretLookup = HashMap<SecretKey, Option<Arc<SecretData>>>;

/// `namespace/name`: the trunk's name in the proxy configuration.
pub fn trunk_key(trunk: &VirtualSipTrunk) -> String {
    format!(
        "{}/{}",
        trunk.namespace().unwrap_or_default(),
        trunk.name_any()
    )
}

/// The trunk's SID: the one already in status (generated once, kept forever), else derived
/// from the object's UID so that a re-render before the first status write agrees with it.
pub fn trunk_sid(trunk: &VirtualSipTrunk) -> String {
    if let Some(sid) = trunk.status.as_ref().and_then(|s| s.trunk_sid.clone()) {
        return sid;
    }
    let seed = trunk.uid().unwrap_or_else(|| trunk_key(trunk));
    derive_trunk_sid(&seed)
}

/// `TS` + 32 lowercase hex digits of a 128-bit FNV-1a hash of `seed`.
pub fn derive_trunk_sid(seed: &str) -> String {
    format!("TS{:032x}", fnv1a_128(seed.as_bytes()))
}

/// 128-bit FNV-1a: stable across Rust versions and processes (unlike `DefaultHasher`).
pub fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for b in bytes {
        h ^= u128::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// True when `a` is older than `b`: creation time first, then `namespace/name` so the
/// order is total and every replica of the operator agrees on it.
pub fn older(a: &VirtualSipTrunk, b: &VirtualSipTrunk) -> bool {
    // `None` (never persisted) sorts last: an object the API server stored first is older.
    // The names are only formatted on a tie (this runs for every pair sharing a number).
    match (
        a.metadata.creation_timestamp.as_ref(),
        b.metadata.creation_timestamp.as_ref(),
    ) {
        (Some(ta), Some(tb)) if ta != tb => ta < tb,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        _ => trunk_key(a) < trunk_key(b),
    }
}

/// A number claimed by `trunk` that an older trunk owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberConflict {
    pub number: String,
    /// `namespace/name` of the older trunk that keeps the number.
    pub owner: String,
}

/// Number conflicts of one trunk against all trunks (linear scan; used by the reconciler).
pub fn conflicts_for(trunk: &VirtualSipTrunk, all: &[Arc<VirtualSipTrunk>]) -> Vec<NumberConflict> {
    if trunk.spec.numbers.is_empty() {
        return Vec::new();
    }
    let mine: HashMap<&str, ()> = trunk
        .spec
        .numbers
        .iter()
        .map(|n| (n.as_str(), ()))
        .collect();
    let me = trunk_key(trunk);
    // For each of my numbers, the oldest other trunk claiming it (if older than me).
    let mut owners: BTreeMap<&str, &VirtualSipTrunk> = BTreeMap::new();
    for other in all {
        // Cheap test first: with 10,000 trunks this runs 10,000 times per reconcile, and
        // almost no trunk shares a number (formatting names for each was most of the
        // operator's CPU).
        if !other
            .spec
            .numbers
            .iter()
            .any(|n| mine.contains_key(n.as_str()))
            || !older(other, trunk)
            || trunk_key(other) == me
        {
            continue;
        }
        for n in &other.spec.numbers {
            if let Some((number, ())) = mine.get_key_value(n.as_str()) {
                let slot = owners.entry(number).or_insert(other);
                if older(other, slot) {
                    *slot = other;
                }
            }
        }
    }
    owners
        .into_iter()
        .map(|(number, owner)| NumberConflict {
            number: number.to_owned(),
            owner: trunk_key(owner),
        })
        .collect()
}

/// For every number, the index (in `trunks`) of the oldest trunk claiming it. O(total numbers).
pub fn number_owners(trunks: &[Arc<VirtualSipTrunk>]) -> HashMap<&str, usize> {
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for (i, t) in trunks.iter().enumerate() {
        for n in &t.spec.numbers {
            owners
                .entry(n.as_str())
                .and_modify(|cur| {
                    if older(t, &trunks[*cur]) {
                        *cur = i;
                    }
                })
                .or_insert(i);
        }
    }
    owners
}

/// The outcome of looking up the Secrets a trunk references.
#[derive(Clone, Debug, PartialEq)]
pub enum Refs {
    /// Everything referenced exists and has its keys; the material to inline (if any).
    Resolved(Option<TlsMaterial>),
    /// Something is missing; one readable line per problem.
    Broken(Vec<String>),
    /// A referenced Secret has not been looked up yet.
    Unknown(Vec<SecretKey>),
}

/// The Secrets a trunk references, in its own namespace.
pub fn referenced_secrets(trunk: &VirtualSipTrunk) -> Vec<SecretKey> {
    let ns = trunk.namespace().unwrap_or_default();
    let mut out = Vec::new();
    if let Some(tls) = &trunk.spec.tls {
        for r in [&tls.ca_secret_ref, &tls.client_certificate_secret_ref]
            .into_iter()
            .flatten()
        {
            out.push((ns.clone(), r.name.clone()));
        }
    }
    out
}

/// Looks up the trunk's Secrets and copies the PEM material it needs.
pub fn resolve_refs(trunk: &VirtualSipTrunk, secrets: &SecretLookup) -> Refs {
    let Some(tls) = &trunk.spec.tls else {
        return Refs::Resolved(None);
    };
    let ns = trunk.namespace().unwrap_or_default();
    let mut material = TlsMaterial::default();
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    let mut get = |name: &str, keys: &[&str], what: &str| -> Vec<Option<String>> {
        let key = (ns.clone(), name.to_owned());
        match secrets.get(&key) {
            None => {
                unknown.push(key);
                vec![None; keys.len()]
            }
            Some(None) => {
                problems.push(format!("{what} Secret {ns}/{name} not found"));
                vec![None; keys.len()]
            }
            Some(Some(data)) => keys
                .iter()
                .map(|k| {
                    let v = data.get(*k).filter(|v| !v.trim().is_empty()).cloned();
                    if v.is_none() {
                        problems.push(format!("{what} Secret {ns}/{name} has no key {k:?}"));
                    }
                    v
                })
                .collect(),
        }
    };
    if let Some(r) = &tls.ca_secret_ref {
        let mut v = get(&r.name, &[CA_KEY], "CA");
        material.ca_pem = v.pop().flatten();
    }
    if let Some(r) = &tls.client_certificate_secret_ref {
        let mut v = get(&r.name, &[TLS_CERT_KEY, TLS_KEY_KEY], "client certificate");
        material.client_key_pem = v.pop().flatten();
        material.client_cert_pem = v.pop().flatten();
    }
    if !problems.is_empty() {
        Refs::Broken(problems)
    } else if !unknown.is_empty() {
        Refs::Unknown(unknown)
    } else if material == TlsMaterial::default() {
        Refs::Resolved(None)
    } else {
        Refs::Resolved(Some(material))
    }
}

/// Why a trunk is left out of the configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum Exclusion {
    /// The spec breaks a rule (normally refused by the API server already).
    InvalidSpec(String),
    /// A number belongs to an older trunk.
    NumberConflict(Vec<NumberConflict>),
    /// A referenced Secret or key is missing (or not looked up yet).
    RefsNotResolved(String),
}

/// A rendered configuration and what went into it.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub config: ProxyConfig,
    /// `namespace/name` → `metadata.generation` of every trunk in `config`.
    pub generations: HashMap<String, i64>,
    /// Trunks left out, and why.
    pub excluded: HashMap<String, Exclusion>,
}

/// The spec errors of a trunk as one line (empty when valid).
pub fn spec_errors(trunk: &VirtualSipTrunk) -> String {
    check_spec(&trunk.spec, "spec.")
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The proxies' configuration: every accepted trunk with its TLS material inline.
pub fn render(
    trunks: &[Arc<VirtualSipTrunk>],
    secrets: &SecretLookup,
    fleet: &FleetSettings,
) -> Rendered {
    let owners = number_owners(trunks);
    let mut entries: Vec<TrunkConfig> = Vec::with_capacity(trunks.len());
    let mut generations = HashMap::with_capacity(trunks.len());
    let mut excluded = HashMap::new();
    for (i, trunk) in trunks.iter().enumerate() {
        if trunk.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let key = trunk_key(trunk);
        let errors = spec_errors(trunk);
        if !errors.is_empty() {
            excluded.insert(key, Exclusion::InvalidSpec(errors));
            continue;
        }
        let conflicts: Vec<NumberConflict> = trunk
            .spec
            .numbers
            .iter()
            .filter_map(|n| {
                let owner = *owners.get(n.as_str())?;
                (owner != i).then(|| NumberConflict {
                    number: n.clone(),
                    owner: trunk_key(&trunks[owner]),
                })
            })
            .collect();
        if !conflicts.is_empty() {
            excluded.insert(key, Exclusion::NumberConflict(conflicts));
            continue;
        }
        let tls_material = match resolve_refs(trunk, secrets) {
            Refs::Resolved(m) => m.map(Box::new),
            Refs::Broken(problems) => {
                excluded.insert(key, Exclusion::RefsNotResolved(problems.join("; ")));
                continue;
            }
            Refs::Unknown(missing) => {
                let names: Vec<String> = missing.iter().map(|(n, s)| format!("{n}/{s}")).collect();
                excluded.insert(
                    key,
                    Exclusion::RefsNotResolved(format!("Secret {} not read yet", names.join(", "))),
                );
                continue;
            }
        };
        let generation = trunk.metadata.generation;
        if let Some(g) = generation {
            generations.insert(key.clone(), g);
        }
        entries.push(TrunkConfig {
            name: key,
            trunk_sid: trunk_sid(trunk),
            generation,
            spec: trunk.spec.clone(),
            tls_material,
        });
    }
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut config = ProxyConfig {
        listen: ListenConfig {
            tcp: Some(fleet.sip_tcp_listen()),
            tls: fleet
                .listener_cert_secret
                .as_ref()
                .map(|_| fleet.sip_tls_listen()),
            tls_certificate: fleet.listener_certificate_files(),
            client_ca_file: None,
        },
        admin: Some(fleet.admin_listen()),
        upstream: fleet.upstream.clone(),
        signaling_domain: fleet.signaling_domain.clone(),
        advertise: fleet.exposure.advertise_host.clone(),
        advertise_ports: fleet.exposure.advertise_ports,
        header_prefix: fleet.header_prefix.clone(),
        dns: fleet.dns.clone(),
        revision: None,
        trunks: entries,
    };
    config.revision = Some(revision(&config));
    Rendered {
        config,
        generations,
        excluded,
    }
}

/// Content hash of a configuration (its `revision` field excluded): `r` + 32 hex digits.
pub fn revision(config: &ProxyConfig) -> String {
    let mut hasher = Fnv128::default();
    // JSON is canonical for these types (fields in declaration order, maps sorted).
    if config.revision.is_none() {
        // What `render` hashes: no copy of 10,000 trunks needed.
        let _ = serde_json::to_writer(&mut hasher, config);
    } else {
        let unrevised = ProxyConfig {
            revision: None,
            ..config.clone()
        };
        let _ = serde_json::to_writer(&mut hasher, &unrevised);
    }
    format!("r{:032x}", hasher.0)
}

/// Above this size the rendered YAML goes into the Secret gzip-compressed
/// ([`CONFIG_GZ_KEY`]); at or below it, as plain text ([`CONFIG_KEY`]).
///
/// A Secret holds at most 1 MiB of data. The YAML costs ~330 bytes per trunk (10,000 trunks
/// ≈ 3.3 MB), so large fleets must be compressed (≈ 12× smaller: 10,000 trunks ≈ 270 KiB,
/// the room left is for TLS material, which compresses less). Small configurations stay
/// plain so that `kubectl get secret … | base64 -d` shows them to a person, as before; the
/// threshold leaves room below the limit either way.
pub const CONFIG_GZIP_THRESHOLD: usize = 512 * 1024;

/// The `data` of the rendered configuration Secret: exactly one key, [`CONFIG_KEY`] (plain
/// YAML) or, above [`CONFIG_GZIP_THRESHOLD`], [`CONFIG_GZ_KEY`] (the same YAML, gzip).
/// The proxies read either (`crate::proxy::cluster::config_text`).
pub fn config_secret_data(config: &ProxyConfig) -> BTreeMap<String, ByteString> {
    let yaml = config.to_yaml();
    if yaml.len() > CONFIG_GZIP_THRESHOLD {
        BTreeMap::from([(CONFIG_GZ_KEY.into(), ByteString(gzip(yaml.as_bytes())))])
    } else {
        BTreeMap::from([(CONFIG_KEY.into(), ByteString(yaml.into_bytes()))])
    }
}

/// The configuration held by a Secret written with [`config_secret_data`].
pub fn config_from_secret_data(data: &BTreeMap<String, ByteString>) -> anyhow::Result<ProxyConfig> {
    let text = crate::proxy::cluster::config_text(data)?;
    ProxyConfig::from_yaml(&text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// gzip at the default level (writing to a `Vec` cannot fail).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::default(),
    );
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

struct Fnv128(u128);

impl Default for Fnv128 {
    fn default() -> Self {
        Self(fnv1a_128(b""))
    }
}

impl std::io::Write for Fnv128 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        const PRIME: u128 = 0x0000000001000000000000000000013B;
        for b in buf {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{SecretRef, Transport, TrunkTls, VirtualSipTrunkSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub fn spec(fqdn: &str, numbers: &[&str]) -> VirtualSipTrunkSpec {
        serde_json::from_value(serde_json::json!({
            "fqdn": fqdn,
            "numbers": numbers,
        }))
        .expect("spec")
    }

    pub fn trunk(
        ns: &str,
        name: &str,
        created_secs: i64,
        spec: VirtualSipTrunkSpec,
    ) -> VirtualSipTrunk {
        let mut t = VirtualSipTrunk::new(name, spec);
        t.metadata.namespace = Some(ns.into());
        t.metadata.uid = Some(format!("uid-{ns}-{name}"));
        t.metadata.generation = Some(1);
        t.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created_secs).expect("ts"),
        ));
        t
    }

    fn fleet() -> FleetSettings {
        FleetSettings::for_tests()
    }

    #[test]
    fn trunk_sid_is_stable_and_well_formed() {
        let a = derive_trunk_sid("0d6f1f5e-2f0a-4a57-9bd0-6a4f3e0e5c11");
        assert_eq!(a, derive_trunk_sid("0d6f1f5e-2f0a-4a57-9bd0-6a4f3e0e5c11"));
        assert_eq!(a.len(), 34);
        assert!(a.starts_with("TS") && a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, derive_trunk_sid("another-uid"));
        // The status value wins once written.
        let mut t = trunk("a", "x", 0, spec("sip.a.example", &[]));
        t.status = Some(crate::config::VirtualSipTrunkStatus {
            trunk_sid: Some("TSkept".into()),
            ..Default::default()
        });
        assert_eq!(trunk_sid(&t), "TSkept");
    }

    #[test]
    fn older_trunk_keeps_the_number() {
        let a = Arc::new(trunk(
            "a",
            "old",
            0,
            spec("sip.a.example", &["+911234567890"]),
        ));
        let b = Arc::new(trunk(
            "b",
            "new",
            10,
            spec("sip.b.example", &["+911234567890", "+911234567891"]),
        ));
        let all = vec![b.clone(), a.clone()];
        assert!(conflicts_for(&a, &all).is_empty());
        assert_eq!(
            conflicts_for(&b, &all),
            vec![NumberConflict {
                number: "+911234567890".into(),
                owner: "a/old".into()
            }]
        );
        let r = render(&all, &SecretLookup::new(), &fleet());
        assert_eq!(r.config.trunks.len(), 1);
        assert_eq!(r.config.trunks[0].name, "a/old");
        match &r.excluded["b/new"] {
            Exclusion::NumberConflict(c) => assert_eq!(c[0].owner, "a/old"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn same_creation_time_breaks_ties_by_name() {
        let a = Arc::new(trunk(
            "ns",
            "a",
            5,
            spec("sip.a.example", &["+911234567890"]),
        ));
        let b = Arc::new(trunk(
            "ns",
            "b",
            5,
            spec("sip.b.example", &["+911234567890"]),
        ));
        let all = vec![b.clone(), a.clone()];
        assert!(conflicts_for(&a, &all).is_empty());
        assert_eq!(conflicts_for(&b, &all).len(), 1);
    }

    #[test]
    fn one_bad_trunk_does_not_block_others() {
        let good = Arc::new(trunk(
            "a",
            "good",
            0,
            spec("sip.a.example", &["+911234567890"]),
        ));
        let mut bad_spec = spec("sip.b.example", &[]);
        bad_spec.calls_per_minute = 0; // would be refused by the API server; defend anyway
        let bad = Arc::new(trunk("b", "bad", 0, bad_spec));
        let mut tls = spec("sip.c.example", &[]);
        tls.transport = Transport::Tls;
        tls.tls = Some(Box::new(TrunkTls {
            ca_secret_ref: Some(SecretRef { name: "ca".into() }),
            ..Default::default()
        }));
        let missing = Arc::new(trunk("c", "tls", 0, tls));
        let r = render(&[good, bad, missing], &SecretLookup::new(), &fleet());
        assert_eq!(r.config.trunks.len(), 1);
        assert!(matches!(r.excluded["b/bad"], Exclusion::InvalidSpec(_)));
        assert!(matches!(r.excluded["c/tls"], Exclusion::RefsNotResolved(_)));
    }

    #[test]
    fn tls_material_is_copied_from_secrets() {
        let mut s = spec("sip.c.example", &[]);
        s.transport = Transport::Tls;
        s.tls = Some(Box::new(TrunkTls {
            ca_secret_ref: Some(SecretRef { name: "ca".into() }),
            client_certificate_secret_ref: Some(SecretRef {
                name: "client".into(),
            }),
            server_name: None,
        }));
        let t = Arc::new(trunk("c", "tls", 0, s));
        let mut secrets = SecretLookup::new();
        secrets.insert(
            ("c".into(), "ca".into()),
            Some(Arc::new(BTreeMap::from([(CA_KEY.into(), "CA PEM".into())]))),
        );
        secrets.insert(
            ("c".into(), "client".into()),
            Some(Arc::new(BTreeMap::from([(
                TLS_CERT_KEY.into(),
                "CERT PEM".into(),
            )]))),
        );
        match resolve_refs(&t, &secrets) {
            Refs::Broken(p) => assert!(p[0].contains("no key \"tls.key\""), "{p:?}"),
            other => panic!("unexpected {other:?}"),
        }
        secrets.insert(
            ("c".into(), "client".into()),
            Some(Arc::new(BTreeMap::from([
                (TLS_CERT_KEY.into(), "CERT PEM".into()),
                (TLS_KEY_KEY.into(), "KEY PEM".into()),
            ]))),
        );
        let r = render(&[t], &secrets, &fleet());
        let m = r.config.trunks[0].tls_material.clone().expect("material");
        assert_eq!(m.ca_pem.as_deref(), Some("CA PEM"));
        assert_eq!(m.client_cert_pem.as_deref(), Some("CERT PEM"));
        assert_eq!(m.client_key_pem.as_deref(), Some("KEY PEM"));
        // The rendered document is one the proxy accepts.
        let yaml = r.config.to_yaml();
        let back = ProxyConfig::from_yaml(&yaml).expect("rendered config parses");
        assert_eq!(back, r.config);
    }

    #[test]
    fn revision_follows_content_only() {
        let t = Arc::new(trunk(
            "a",
            "x",
            0,
            spec("sip.a.example", &["+911234567890"]),
        ));
        let r1 = render(std::slice::from_ref(&t), &SecretLookup::new(), &fleet());
        let r2 = render(std::slice::from_ref(&t), &SecretLookup::new(), &fleet());
        assert_eq!(r1.config.revision, r2.config.revision);
        // Hashing a configuration that already carries its revision gives the same value.
        assert_eq!(Some(revision(&r1.config)), r1.config.revision);
        let mut t2 = (*t).clone();
        t2.spec.calls_per_minute = 300;
        t2.metadata.generation = Some(2);
        let r3 = render(&[Arc::new(t2)], &SecretLookup::new(), &fleet());
        assert_ne!(r1.config.revision, r3.config.revision);
        assert_eq!(r3.generations["a/x"], 2);
    }

    fn many_trunks(n: usize) -> Vec<Arc<VirtualSipTrunk>> {
        (0..n)
            .map(|i| {
                let numbers = [format!("+9180{i:08}"), format!("+9181{i:08}")];
                let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
                Arc::new(trunk(
                    &format!("ns{}", i % 50),
                    &format!("t{i}"),
                    i as i64,
                    spec(&format!("sip{i}.example.com"), &numbers),
                ))
            })
            .collect()
    }

    #[test]
    fn exposure_is_rendered_as_the_proxies_advertised_address() {
        use crate::config::{Transport, TransportPorts};
        let plain = render(&many_trunks(1), &SecretLookup::new(), &fleet());
        assert_eq!(plain.config.advertise, None);
        assert!(plain.config.advertise_ports.is_empty());
        let mut exposed = fleet();
        exposed.exposure.advertise_host = Some("192.0.2.2".into());
        exposed.exposure.advertise_ports = TransportPorts {
            tcp: Some(30570),
            tls: None,
        };
        let r = render(&many_trunks(1), &SecretLookup::new(), &exposed);
        assert_eq!(r.config.advertise.as_deref(), Some("192.0.2.2"));
        assert_eq!(r.config.advertise_ports.get(Transport::Tcp), Some(30570));
        assert_eq!(r.config.advertise_ports.get(Transport::Tls), None);
        // What the proxies read back from the Secret, and a new revision (they reload).
        let data = config_secret_data(&r.config);
        assert_eq!(config_from_secret_data(&data).expect("decodes"), r.config);
        assert_ne!(r.config.revision, plain.config.revision);
    }

    #[test]
    fn small_configuration_is_stored_plain() {
        let r = render(&many_trunks(10), &SecretLookup::new(), &fleet());
        let data = config_secret_data(&r.config);
        assert_eq!(data.keys().collect::<Vec<_>>(), [CONFIG_KEY]);
        assert_eq!(data[CONFIG_KEY].0, r.config.to_yaml().into_bytes());
        assert_eq!(config_from_secret_data(&data).expect("decodes"), r.config);
    }

    #[test]
    fn large_configuration_is_stored_gzip_and_fits_a_secret() {
        let r = render(&many_trunks(10_000), &SecretLookup::new(), &fleet());
        let yaml = r.config.to_yaml();
        assert!(yaml.len() > CONFIG_GZIP_THRESHOLD, "{} bytes", yaml.len());
        let data = config_secret_data(&r.config);
        assert_eq!(data.keys().collect::<Vec<_>>(), [CONFIG_GZ_KEY]);
        let stored = data[CONFIG_GZ_KEY].0.len();
        // A Secret's data is limited to 1 MiB.
        assert!(stored < 1024 * 1024, "{stored} bytes compressed");
        assert_eq!(config_from_secret_data(&data).expect("decodes"), r.config);
    }

    #[test]
    fn unreadable_secret_data_is_refused_with_a_reason() {
        let err = |data: BTreeMap<String, ByteString>| {
            format!("{:#}", config_from_secret_data(&data).expect_err("refused"))
        };
        assert_eq!(
            err(BTreeMap::new()),
            "secret has neither config.yaml nor config.yaml.gz"
        );
        let yaml = ProxyConfig::default().to_yaml();
        let both = BTreeMap::from([
            (CONFIG_KEY.into(), ByteString(yaml.clone().into_bytes())),
            (CONFIG_GZ_KEY.into(), ByteString(gzip(yaml.as_bytes()))),
        ]);
        assert!(err(both).contains("both config.yaml and config.yaml.gz"));
        // Truncated gzip (a corrupt write) and something that is not gzip at all.
        let gz = gzip(yaml.as_bytes());
        let truncated = BTreeMap::from([(
            CONFIG_GZ_KEY.into(),
            ByteString(gz[..gz.len() / 2].to_vec()),
        )]);
        let e = err(truncated);
        assert!(e.starts_with("config.yaml.gz is not valid gzip"), "{e}");
        let not_gzip = BTreeMap::from([(CONFIG_GZ_KEY.into(), ByteString(yaml.into_bytes()))]);
        assert!(err(not_gzip).starts_with("config.yaml.gz is not valid gzip"));
        let not_utf8 = BTreeMap::from([(CONFIG_GZ_KEY.into(), ByteString(gzip(&[0xff, 0xfe])))]);
        assert!(err(not_utf8).contains("not UTF-8"));
        // A well-formed gzip of a bad document: the proxy's own validation message.
        let good = render(&many_trunks(1), &SecretLookup::new(), &fleet()).config;
        let bad_yaml = good.to_yaml().replace("sip0.example.com", "10.1.2.3");
        let bad = BTreeMap::from([(CONFIG_GZ_KEY.into(), ByteString(gzip(bad_yaml.as_bytes())))]);
        let e = err(bad);
        assert!(e.contains("fqdn") && e.contains("10.1.2.3"), "{e}");
    }

    /// Scale behaviour, not speed (the ≤ 50 ms target is checked by `make bench-operator`,
    /// never by a timed assertion on a noisy machine): every trunk and number rendered once.
    #[test]
    fn render_of_10000_trunks() {
        let trunks: Vec<Arc<VirtualSipTrunk>> = (0..10_000)
            .map(|i| {
                let numbers = [format!("+9180{i:08}"), format!("+9181{i:08}")];
                let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
                Arc::new(trunk(
                    &format!("ns{}", i % 50),
                    &format!("t{i}"),
                    i,
                    spec(&format!("sip{i}.example.com"), &numbers),
                ))
            })
            .collect();
        let r = render(&trunks, &SecretLookup::new(), &fleet());
        assert_eq!(r.config.trunks.len(), 10_000);
        assert_eq!(
            r.config
                .trunks
                .iter()
                .map(|t| t.spec.numbers.len())
                .sum::<usize>(),
            20_000
        );
        assert!(r.excluded.is_empty());
    }
}
