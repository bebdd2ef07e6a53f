//! The proxy configuration file (brief §4): what `vsip proxy --config` reads and
//! what the operator renders into the fleet's Secret. One shape, both modes.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{Duration, FieldError, Transport, VirtualSipTrunkSpec, check_spec};

pub const DEFAULT_HEADER_PREFIX: &str = "X-Exotel-";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default)]
    pub listen: ListenConfig,
    /// `/metrics`, `/healthz`, `/readyz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// Where trunk-originated calls go, e.g. `sip:carrier.example.net:5060;transport=tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Host stamped in From and P-Asserted-Identity.
    pub signaling_domain: String,
    /// Host (or IP) this proxy puts in Via and Record-Route; default: the socket's local address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Ports this proxy puts in Via and Record-Route, per transport; default: the listener's.
    /// Behind a Service that maps ports (a NodePort, a load balancer's 443 → 5061) carriers
    /// and SBCs reach the proxy on the mapped port, not on the container's.
    #[serde(default, skip_serializing_if = "TransportPorts::is_empty")]
    pub advertise_ports: TransportPorts,
    #[serde(default = "default_header_prefix")]
    pub header_prefix: String,
    #[serde(default)]
    pub dns: DnsConfig,
    /// Identity of this configuration (the operator sets a content hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default)]
    pub trunks: Vec<TrunkConfig>,
}

/// What an empty document's fields default to (`signalingDomain` empty), no trunks.
impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            admin: None,
            upstream: None,
            signaling_domain: String::new(),
            advertise: None,
            advertise_ports: TransportPorts::default(),
            header_prefix: default_header_prefix(),
            dns: DnsConfig::default(),
            revision: None,
            trunks: Vec::new(),
        }
    }
}

/// A port per SIP transport (`advertisePorts`; `None` = the listener's port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportPorts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<u16>,
}

impl TransportPorts {
    pub fn is_empty(&self) -> bool {
        self.tcp.is_none() && self.tls.is_none()
    }

    /// The port to advertise for `transport`, if one is configured.
    pub fn get(&self, transport: Transport) -> Option<u16> {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SocketAddr>,
    /// Server certificate of the TLS listener; reloaded when the files change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificate: Option<CertificateFiles>,
    /// CA bundle that verifies trunks' client certificates (mTLS); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsConfig {
    /// `ip:port` of recursive resolvers; empty means the system resolver.
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    /// Answers are never cached longer than this, whatever their TTL.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: Duration,
    /// Per-query timeout.
    #[serde(default = "default_dns_timeout")]
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            max_ttl: default_max_ttl(),
            timeout: default_dns_timeout(),
        }
    }
}

/// One trunk as the proxy sees it: identity + the CRD spec, flattened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrunkConfig {
    /// `namespace/name` in cluster mode; any unique name standalone.
    pub name: String,
    pub trunk_sid: String,
    /// `metadata.generation` of the trunk this entry was rendered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(flatten)]
    pub spec: VirtualSipTrunkSpec,
    /// TLS material: files (standalone) or inline PEM (rendered by the operator
    /// from the Secrets the spec references). Boxed: most trunks have none, and
    /// the proxy keeps one of these per trunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_material: Option<Box<TlsMaterial>>,
}

#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_pem: Option<String>,
}

// Keys never reach logs.
impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_file", &self.ca_file)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn default_header_prefix() -> String {
    DEFAULT_HEADER_PREFIX.to_owned()
}
fn default_max_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_dns_timeout() -> Duration {
    Duration::from_secs(2)
}

/// Why a config document was refused: every problem, each with its line.
#[derive(Debug, thiserror::Error)]
#[error("{}", render_errors(.errors))]
pub struct ConfigError {
    pub errors: Vec<LocatedError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedError {
    pub line: Option<usize>,
    pub message: String,
}

fn render_errors(errors: &[LocatedError]) -> String {
    errors
        .iter()
        .map(|e| match e.line {
            Some(l) => format!("line {l}: {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConfigError {
    fn one(line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![LocatedError {
                line,
                message: message.into(),
            }],
        }
    }
}

impl ProxyConfig {
    /// Parses and validates a YAML document. Errors carry 1-based line numbers.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let mut config: ProxyConfig = serde_yaml::from_str(text).map_err(|e| {
            // serde_yaml appends "at line X column Y"; the line is reported separately.
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            let line = e.location().map(|l| refine_line(text, l.line(), &msg));
            ConfigError::one(line, msg)
        })?;
        // The list grew by doubling while parsing; a large one is kept for the
        // process's life.
        config.trunks.shrink_to_fit();
        let mut errors = Vec::new();
        // `flatten` swallows unknown trunk keys; catch typos by comparing what was
        // written with what was understood, one trunk at a time (a value tree of a
        // whole 10,000-trunk document costs tens of MB).
        for path in unknown_key_paths(text, &config) {
            errors.push(LocatedError {
                line: locate(text, &path),
                message: format!("{path}: unknown field"),
            });
        }
        for field in config.semantic_errors() {
            errors.push(LocatedError {
                line: locate(text, &field.path),
                message: field.to_string(),
            });
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { errors })
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    fn semantic_errors(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.listen.tls.is_some() && self.listen.tls_certificate.is_none() {
            errors.push(FieldError {
                path: "listen.tlsCertificate".into(),
                message: "is required when listen.tls is set".into(),
            });
        }
        if let Some(up) = &self.upstream
            && let Err(e) = crate::sip::uri::parse_target_uri(up)
        {
            errors.push(FieldError {
                path: "upstream".into(),
                message: format!("{up:?} is not a usable SIP URI: {e}"),
            });
        }
        for (name, port) in [
            ("tcp", self.advertise_ports.tcp),
            ("tls", self.advertise_ports.tls),
        ] {
            if port == Some(0) {
                errors.push(FieldError {
                    path: format!("advertisePorts.{name}"),
                    message: "must be a port number (1-65535)".into(),
                });
            }
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut sids: HashMap<&str, usize> = HashMap::new();
        let mut numbers: HashMap<&str, usize> = HashMap::new();
        for (i, t) in self.trunks.iter().enumerate() {
            let prefix = format!("trunks[{i}].");
            if t.name.is_empty() {
                errors.push(FieldError {
                    path: format!("{prefix}name"),
                    message: "must not be empty".into(),
                });
            }
            if let Some(j) = names.insert(&t.name, i) {
                errors.push(FieldError {
                    path: format!("{prefix}name"),
                    message: format!("{:?} is already used by trunks[{j}]", t.name),
                });
            }
            if let Some(j) = sids.insert(&t.trunk_sid, i) {
                errors.push(FieldError {
                    path: format!("{prefix}trunkSid"),
                    message: format!("{:?} is already used by trunks[{j}]", t.trunk_sid),
                });
            }
            for (k, n) in t.spec.numbers.iter().enumerate() {
                if let Some(j) = numbers.insert(n, i)
                    && j != i
                {
                    errors.push(FieldError {
                        path: format!("{prefix}numbers[{k}]"),
                        message: format!("{n} already belongs to trunks[{j}]"),
                    });
                }
            }
            errors.extend(check_spec(&t.spec, &prefix));
        }
        errors
    }
}

/// Inside a flattened trunk serde_yaml reports the trunk's first line; when the
/// message quotes the offending value, point at the line that holds it.
fn refine_line(text: &str, reported: usize, message: &str) -> usize {
    let Some(value) = message.split('`').nth(1).filter(|v| !v.is_empty()) else {
        return reported;
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = reported.saturating_sub(1);
    let indent = |l: &str| l.len() - l.trim_start().len();
    let Some(first) = lines.get(start) else {
        return reported;
    };
    let base = indent(first);
    for (n, line) in lines.iter().enumerate().skip(start) {
        if n > start
            && !line.trim().is_empty()
            && (indent(line) < base || line.trim_start().starts_with("- ") && indent(line) == base)
        {
            break;
        }
        if line.split_once(':').is_some_and(|(_, v)| v.contains(value)) {
            return n + 1;
        }
    }
    reported
}

/// Paths of keys in `text` that `config` (parsed from it) does not have. The
/// document is streamed against what was understood: the understood value of
/// the top level without its trunks, then of each trunk in turn.
fn unknown_key_paths(text: &str, config: &ProxyConfig) -> Vec<String> {
    let head = ProxyConfig {
        listen: config.listen.clone(),
        admin: config.admin,
        upstream: config.upstream.clone(),
        signaling_domain: config.signaling_domain.clone(),
        advertise: config.advertise.clone(),
        advertise_ports: config.advertise_ports,
        header_prefix: config.header_prefix.clone(),
        dns: config.dns.clone(),
        revision: config.revision.clone(),
        trunks: Vec::new(),
    };
    let Ok(head) = serde_yaml::to_value(&head) else {
        return Vec::new();
    };
    let found = std::cell::RefCell::new(Vec::new());
    let walk = KeyWalk {
        expect: Expect::Top(&head, &config.trunks),
        path: String::new(),
        found: &found,
    };
    use serde::de::DeserializeSeed;
    // The document already parsed once; a failure here only skips the check.
    let _ = walk.deserialize(serde_yaml::Deserializer::from_str(text));
    found.into_inner()
}

/// What a part of the document is compared with.
#[derive(Clone, Copy)]
enum Expect<'a> {
    /// The top level: its understood value (trunks aside) and the trunks.
    Top(&'a serde_yaml::Value, &'a [TrunkConfig]),
    /// The `trunks` sequence: each item against its trunk's understood value.
    Trunks(&'a [TrunkConfig]),
    Value(&'a serde_yaml::Value),
    /// Nothing to compare with (scalars, or a shape that was not understood).
    Nothing,
}

/// Walks the document as it is parsed, reporting keys absent from what was understood.
struct KeyWalk<'a, 'f> {
    expect: Expect<'a>,
    path: String,
    found: &'f std::cell::RefCell<Vec<String>>,
}

impl<'a, 'f> KeyWalk<'a, 'f> {
    fn child(&self, expect: Expect<'a>, path: String) -> Self {
        KeyWalk {
            expect,
            path,
            found: self.found,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyWalk<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.expect {
            Expect::Nothing => d.deserialize_ignored_any(serde::de::IgnoredAny).map(|_| ()),
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> serde::de::Visitor<'de> for KeyWalk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde_yaml::Value;
        let (understood, trunks) = match self.expect {
            Expect::Top(Value::Mapping(m), trunks) => (Some(m), Some(trunks)),
            Expect::Value(Value::Mapping(m)) => (Some(m), None),
            _ => (None, None),
        };
        let Some(understood) = understood else {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            return Ok(());
        };
        while let Some(k) = map.next_key::<Value>()? {
            let key = k
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{k:?}"));
            let child = if self.path.is_empty() {
                key
            } else {
                format!("{}.{key}", self.path)
            };
            match (trunks, understood.get(&k)) {
                (Some(trunks), _) if k.as_str() == Some("trunks") => {
                    map.next_value_seed(self.child(Expect::Trunks(trunks), child))?
                }
                (_, Some(uv)) => map.next_value_seed(self.child(Expect::Value(uv), child))?,
                (_, None) => {
                    // A key written as null/empty may legitimately vanish.
                    if !map.next_value::<Value>()?.is_null() {
                        self.found.borrow_mut().push(child);
                    }
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let path = format!("{}[{i}]", self.path);
            let expect = match self.expect {
                Expect::Trunks(trunks) => match trunks.get(i).map(serde_yaml::to_value) {
                    Some(Ok(v)) => {
                        // Owned per trunk: compared, then dropped.
                        let walk = KeyWalk {
                            expect: Expect::Value(&v),
                            path,
                            found: self.found,
                        };
                        match seq.next_element_seed(walk)? {
                            Some(()) => {
                                i += 1;
                                continue;
                            }
                            None => return Ok(()),
                        }
                    }
                    _ => Expect::Nothing,
                },
                Expect::Value(serde_yaml::Value::Sequence(u)) => {
                    u.get(i).map_or(Expect::Nothing, Expect::Value)
                }
                _ => Expect::Nothing,
            };
            if seq.next_element_seed(self.child(expect, path))?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess;
        let (_, variant) = data.variant::<serde::de::IgnoredAny>()?;
        variant
            .newtype_variant::<serde::de::IgnoredAny>()
            .map(|_| ())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }
}

/// Best-effort line of a dotted path such as `trunks[2].numbers[0]`: walks the
/// document's indentation, which is enough for block-style YAML.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0usize;
    let mut min_indent: Option<usize> = None;
    let mut found = None;
    for segment in path.split('.') {
        let (key, indices) = split_indices(segment);
        let key = key.trim_matches('"');
        let mut hit = None;
        for (n, line) in lines.iter().enumerate().skip(start) {
            let indent = line.len() - line.trim_start().len();
            if let Some(min) = min_indent
                && n > start
                && indent < min
                && !line.trim().is_empty()
            {
                break;
            }
            let body = line.trim_start().trim_start_matches("- ");
            if body.starts_with(&format!("{key}:")) || body.starts_with(&format!("\"{key}\":")) {
                hit = Some(n);
                break;
            }
        }
        let Some(mut n) = hit else { break };
        for idx in indices {
            // The idx-th sequence item after line n.
            let mut seen = 0usize;
            let mut item = None;
            for (m, line) in lines.iter().enumerate().skip(n + 1) {
                if line.trim_start().starts_with('-') {
                    if seen == idx {
                        item = Some(m);
                        break;
                    }
                    seen += 1;
                }
            }
            match item {
                Some(m) => n = m,
                None => break,
            }
        }
        found = Some(n + 1);
        start = n;
        min_indent = Some(lines[n].len() - lines[n].trim_start().len());
    }
    found
}

fn split_indices(segment: &str) -> (&str, Vec<usize>) {
    let key_end = segment.find('[').unwrap_or(segment.len());
    let indices = segment[key_end..]
        .split(['[', ']'])
        .filter_map(|s| s.parse().ok())
        .collect();
    (&segment[..key_end], indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen:
  tcp: 127.0.0.1:5070
signalingDomain: pstn.example.net
upstream: sip:127.0.0.1:5060;transport=tcp
trunks:
  - name: acme/mumbai
    trunkSid: TS1
    fqdn: sip.acme.example
    numbers: ["+911234567890"]
"#;

    #[test]
    fn parses_with_defaults() {
        let c = ProxyConfig::from_yaml(GOOD).expect("valid");
        let t = &c.trunks[0];
        assert_eq!(t.spec.calls_per_minute, 200);
        assert_eq!(t.spec.effective_port(), 5070);
        assert_eq!(c.header_prefix, "X-Exotel-");
        assert_eq!(c.dns.max_ttl, Duration::from_secs(60));
    }

    #[test]
    fn advertise_ports_per_transport() {
        let c = ProxyConfig::from_yaml(&GOOD.replace(
            "signalingDomain:",
            "advertise: 192.0.2.2\nadvertisePorts: { tcp: 30570, tls: 30443 }\nsignalingDomain:",
        ))
        .expect("valid");
        assert_eq!(c.advertise.as_deref(), Some("192.0.2.2"));
        assert_eq!(c.advertise_ports.get(Transport::Tcp), Some(30570));
        assert_eq!(c.advertise_ports.get(Transport::Tls), Some(30443));
        // Round trip (the operator renders it, the proxy reads it); absent = not written.
        assert_eq!(ProxyConfig::from_yaml(&c.to_yaml()).expect("valid"), c);
        let plain = ProxyConfig::from_yaml(GOOD).expect("valid");
        assert!(plain.advertise_ports.is_empty());
        assert!(!plain.to_yaml().contains("advertisePorts"));
    }

    #[test]
    fn bad_advertise_ports_are_refused_with_their_path() {
        let zero = GOOD.replace(
            "signalingDomain:",
            "advertisePorts: { tcp: 0 }\nsignalingDomain:",
        );
        let e = ProxyConfig::from_yaml(&zero).unwrap_err();
        assert!(e.to_string().contains("advertisePorts.tcp"), "{e}");
        let typo = GOOD.replace(
            "signalingDomain:",
            "advertisePorts: { udp: 5060 }\nsignalingDomain:",
        );
        let e = ProxyConfig::from_yaml(&typo).unwrap_err();
        assert!(e.to_string().contains("udp"), "{e}");
    }

    #[test]
    fn unknown_trunk_field_names_its_line() {
        let bad = GOOD.replace("    numbers:", "    numbrs:");
        let e = ProxyConfig::from_yaml(&bad).unwrap_err();
        assert_eq!(e.errors.len(), 1, "{e}");
        assert_eq!(e.errors[0].line, Some(10), "{e}");
        assert!(
            e.errors[0]
                .message
                .contains("trunks[0].numbrs: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_found_in_every_trunk_and_nested_maps() {
        let two = format!(
            "{GOOD}  - name: acme/delhi\n    trunkSid: TS2\n    fqdn: sip2.acme.example\n    \
             port:\n    failover:\n      holdDwn: 5s\n    codecz: [PCMA]\n"
        );
        let e = ProxyConfig::from_yaml(&two).unwrap_err();
        let messages: Vec<&str> = e.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "trunks[1].failover.holdDwn: unknown field",
                "trunks[1].codecz: unknown field"
            ],
            "{e}"
        );
        assert_eq!(e.errors[0].line, Some(16), "{e}");
        // A key written empty may vanish from what was understood (`port:` above).
        let ok = format!("{GOOD}    port:\n");
        ProxyConfig::from_yaml(&ok).expect("empty key accepted");
    }

    #[test]
    fn type_error_names_its_line() {
        let bad = GOOD.replace("    trunkSid: TS1", "    trunkSid: TS1\n    port: 99999");
        let e = ProxyConfig::from_yaml(&bad).unwrap_err();
        assert_eq!(e.errors[0].line, Some(9), "{e}");
        assert!(e.to_string().contains("99999"), "{e}");
    }

    #[test]
    fn semantic_error_names_its_line() {
        let bad = GOOD.replace("sip.acme.example", "10.1.2.3");
        let e = ProxyConfig::from_yaml(&bad).unwrap_err();
        assert_eq!(e.errors[0].line, Some(9), "{e}");
        assert!(e.to_string().contains("IP address"), "{e}");
    }

    #[test]
    fn render_round_trips() {
        let c = ProxyConfig::from_yaml(GOOD).expect("valid");
        let again = ProxyConfig::from_yaml(&c.to_yaml()).expect("rendered config parses");
        assert_eq!(c, again);
    }
}
