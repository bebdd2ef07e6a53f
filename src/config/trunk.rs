//! The `VirtualSipTrunk` custom resource: the one definition of a trunk's shape.
//!
//! The operator serves it as a CRD; the proxy reads the very same spec from its
//! config file (flattened into [`super::TrunkConfig`]), so a trunk moves between
//! standalone and cluster mode unchanged.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::sip::sdp::Codec;

use super::duration::Duration;

/// The seed's default quota: 200 calls per minute per trunk.
pub const DEFAULT_CALLS_PER_MINUTE: u32 = 200;
pub const MAX_CALLS_PER_MINUTE: u32 = 100_000;
pub const DEFAULT_TCP_PORT: u16 = 5070;
pub const DEFAULT_TLS_PORT: u16 = 443;

#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vsip.io",
    version = "v1alpha1",
    kind = "VirtualSipTrunk",
    namespaced,
    shortname = "vst",
    category = "sip",
    status = "VirtualSipTrunkStatus",
    doc = "A virtual SIP trunk to a customer SBC reachable at a DNS name (FQDN-based trunking).",
    printcolumn = r#"{"name":"FQDN","type":"string","jsonPath":".spec.fqdn"}"#,
    printcolumn = r#"{"name":"Transport","type":"string","jsonPath":".spec.transport"}"#,
    printcolumn = r#"{"name":"CPM","type":"integer","jsonPath":".spec.callsPerMinute"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crd_schema::spec)]
pub struct VirtualSipTrunkSpec {
    /// The customer SBC's DNS name (lowercase RFC 1123). Resolved on every call.
    #[schemars(transform = crd_schema::fqdn)]
    pub fqdn: String,
    /// Signalling transport towards the SBC.
    #[serde(default)]
    pub transport: Transport,
    /// SBC port; defaults to 5070 for TCP and 443 for TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crd_schema::port)]
    pub port: Option<u16>,
    /// Which address families are used, in order of preference.
    #[serde(default = "default_ip_families")]
    #[schemars(transform = crd_schema::ip_families)]
    pub ip_families: Vec<IpFamily>,
    /// E.164 numbers delivered to this trunk.
    #[serde(default)]
    #[schemars(transform = crd_schema::numbers)]
    pub numbers: Vec<String>,
    /// Quota of new calls per rolling minute, both directions, across the fleet.
    #[serde(default = "default_cpm")]
    #[schemars(transform = crd_schema::calls_per_minute)]
    pub calls_per_minute: u32,
    /// Allowed audio codecs; an offer with none of them is answered 488.
    #[serde(default = "default_codecs")]
    #[schemars(transform = crd_schema::codecs)]
    pub codecs: Vec<Codec>,
    /// TLS settings; only with `transport: TLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Boxed: absent on most trunks, and the proxy keeps a spec per trunk.
    pub tls: Option<Box<TrunkTls>>,
    /// Failover between the addresses the FQDN resolves to.
    #[serde(default)]
    pub failover: Failover,
    /// Extra static headers stamped on calls delivered to the trunk.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crd_schema::headers)]
    pub headers: BTreeMap<String, String>,
    /// When true new calls get 503; the configuration is kept.
    #[serde(default)]
    pub suspended: bool,
}

impl VirtualSipTrunkSpec {
    /// The port to dial, applying the per-transport default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            Transport::Tcp => DEFAULT_TCP_PORT,
            Transport::Tls => DEFAULT_TLS_PORT,
        })
    }

    /// Name used for SNI and certificate verification.
    pub fn tls_server_name(&self) -> &str {
        self.tls
            .as_ref()
            .and_then(|t| t.server_name.as_deref())
            .unwrap_or(&self.fqdn)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Transport {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "TLS")]
    Tls,
}

impl Transport {
    /// The `transport=` URI parameter value.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
    /// The Via protocol token.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

/// A reference to a Secret in the trunk's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// Name of a Secret in the trunk's namespace.
    #[schemars(transform = crd_schema::secret_name)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrunkTls {
    /// Secret with `ca.crt` used to verify the SBC; system roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
    /// `kubernetes.io/tls` Secret holding the proxy's client certificate (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_secret_ref: Option<SecretRef>,
    /// Name for SNI and verification; defaults to `fqdn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crd_schema::server_name)]
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// Per-address TCP/TLS connect timeout.
    #[serde(default = "default_connect_timeout")]
    #[schemars(transform = crd_schema::positive_duration)]
    pub connect_timeout: Duration,
    /// No response to an INVITE within this time moves to the next address.
    #[serde(default = "default_response_timeout")]
    #[schemars(transform = crd_schema::positive_duration)]
    pub response_timeout: Duration,
    /// A failed address is skipped for this long.
    #[serde(default = "default_hold_down")]
    #[schemars(transform = crd_schema::duration)]
    pub hold_down: Duration,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            connect_timeout: default_connect_timeout(),
            response_timeout: default_response_timeout(),
            hold_down: default_hold_down(),
        }
    }
}

/// Observed state, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualSipTrunkStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Stable identifier stamped as the TrunkSid header; generated once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk_sid: Option<String>,
    /// `Accepted`, `ResolvedRefs`, `DnsResolved`, `Programmed` and `Ready` (the summary).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = crd_schema::conditions)]
    pub conditions: Vec<Condition>,
    /// Addresses last resolved for `fqdn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<ResolvedAddress>,
    /// DNS findings against the seed's best practices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_warnings: Vec<String>,
}

/// A status condition in the shape of `metav1.Condition`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedAddress {
    pub address: String,
    pub family: IpFamily,
    #[schemars(transform = crd_schema::small_uint)]
    pub ttl_seconds: u32,
}

fn default_ip_families() -> Vec<IpFamily> {
    vec![IpFamily::IPv4, IpFamily::IPv6]
}
fn default_cpm() -> u32 {
    DEFAULT_CALLS_PER_MINUTE
}
fn default_codecs() -> Vec<Codec> {
    vec![Codec::PCMA, Codec::PCMU]
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(4)
}
fn default_hold_down() -> Duration {
    Duration::from_secs(30)
}

/// The parts of the CRD's OpenAPI schema that types alone cannot say: bounds, patterns,
/// list semantics and CEL rules (`x-kubernetes-validations`) with messages a person understands.
/// The API server enforces these; [`super::check_spec`] is the same rulebook in Rust.
mod crd_schema {
    use schemars::Schema;
    use serde_json::{Value, json};

    /// Lowercase RFC 1123 name with at least two labels (labels of at most 63 characters).
    pub const FQDN_PATTERN: &str =
        r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.?$";
    /// `+` followed by 7 to 15 digits.
    pub const E164_PATTERN: &str = r"^\+[0-9]{7,15}$";
    /// A Kubernetes object name (RFC 1123 subdomain).
    pub const OBJECT_NAME_PATTERN: &str =
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    /// A SIP header name (RFC 3261 `token`).
    pub const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9.!%*_+`'~-]+$";
    pub const MAX_NUMBERS: u64 = 10_000;
    pub const MAX_HEADERS: u64 = 32;

    fn set(s: &mut Schema, entries: Value) {
        if let Value::Object(entries) = entries {
            for (k, v) in entries {
                s.insert(k, v);
            }
        }
    }

    fn rules(s: &mut Schema, rules: Value) {
        let Value::Array(mut new) = rules else { return };
        match s.get_mut("x-kubernetes-validations") {
            Some(Value::Array(existing)) => existing.append(&mut new),
            _ => {
                s.insert("x-kubernetes-validations".into(), Value::Array(new));
            }
        }
    }

    fn dns_name(s: &mut Schema, field: &str) {
        set(
            s,
            json!({ "minLength": 1, "maxLength": 253, "pattern": FQDN_PATTERN }),
        );
        let ip_message = if field == "fqdn" {
            "fqdn must be a DNS name, not an IP address: static-IP trunks are a different product"
                .to_owned()
        } else {
            format!("{field} must be a DNS name, not an IP address")
        };
        rules(
            s,
            json!([
                {
                    "rule": "!self.matches('^[0-9.]+$') && !self.contains(':')",
                    "message": ip_message,
                },
                {
                    "rule": "self == self.lowerAscii()",
                    "message": format!("{field} must be lowercase, e.g. sip.example.com"),
                },
                {
                    "rule": "self.contains(':') || self.contains('.')",
                    "message": format!("{field} must be fully qualified (at least two labels, e.g. sip.example.com)"),
                },
                {
                    "rule": "self.matches('^[0-9.]+$') || !self.matches('[.][0-9]+[.]?$')",
                    "message": format!("{field} must not end in an all-numeric label"),
                },
            ]),
        );
    }

    /// Rules that concern more than one field.
    pub fn spec(s: &mut Schema) {
        rules(
            s,
            json!([{
                "rule": "!has(self.tls) || (has(self.transport) && self.transport == 'TLS')",
                "message": "tls is only allowed with transport: TLS",
                "fieldPath": ".tls",
                "reason": "FieldValueForbidden",
            }]),
        );
    }

    pub fn fqdn(s: &mut Schema) {
        dns_name(s, "fqdn");
    }

    pub fn server_name(s: &mut Schema) {
        dns_name(s, "tls.serverName");
    }

    pub fn port(s: &mut Schema) {
        small_uint(s);
        set(s, json!({ "minimum": 1, "maximum": 65535 }));
        rules(
            s,
            json!([{
                "rule": "self >= 1 && self <= 65535",
                "message": "port must be between 1 and 65535 (default: 5070 for TCP, 443 for TLS)",
            }]),
        );
    }

    pub fn calls_per_minute(s: &mut Schema) {
        small_uint(s);
        set(
            s,
            json!({ "minimum": 1, "maximum": super::MAX_CALLS_PER_MINUTE }),
        );
        rules(
            s,
            json!([{
                "rule": "self >= 1 && self <= 100000",
                "message": "callsPerMinute must be between 1 and 100000 (default: 200)",
            }]),
        );
    }

    pub fn ip_families(s: &mut Schema) {
        set(
            s,
            json!({ "minItems": 1, "maxItems": 2, "x-kubernetes-list-type": "set" }),
        );
    }

    pub fn codecs(s: &mut Schema) {
        set(
            s,
            json!({ "minItems": 1, "maxItems": 2, "x-kubernetes-list-type": "set" }),
        );
    }

    pub fn numbers(s: &mut Schema) {
        set(
            s,
            json!({ "maxItems": MAX_NUMBERS, "x-kubernetes-list-type": "set" }),
        );
        if let Some(items) = s
            .get_mut("items")
            .and_then(|i| <&mut Schema>::try_from(i).ok())
        {
            set(items, json!({ "maxLength": 16, "pattern": E164_PATTERN }));
            rules(
                items,
                json!([{
                    "rule": "self.matches('^[+][0-9]{7,15}$')",
                    "message": "numbers must be E.164: '+' followed by 7 to 15 digits, e.g. +911234567890",
                }]),
            );
        }
    }

    pub fn headers(s: &mut Schema) {
        set(s, json!({ "maxProperties": MAX_HEADERS }));
        if let Some(values) = s
            .get_mut("additionalProperties")
            .and_then(|i| <&mut Schema>::try_from(i).ok())
        {
            set(
                values,
                json!({ "maxLength": 1024, "pattern": r"^[^\r\n\x00]*$" }),
            );
        }
        rules(
            s,
            json!([{
                "rule": format!("self.all(k, size(k) <= 64 && k.matches('{}'))", HEADER_NAME_PATTERN.replace('\'', "\\'")),
                "message": "header names must be SIP tokens of at most 64 characters (letters, digits and -.!%*_+`'~)",
            }]),
        );
    }

    pub fn secret_name(s: &mut Schema) {
        set(
            s,
            json!({ "minLength": 1, "maxLength": 253, "pattern": OBJECT_NAME_PATTERN }),
        );
    }

    pub fn duration(s: &mut Schema) {
        set(s, json!({ "maxLength": 32 }));
        rules(
            s,
            json!([{
                "rule": "self.matches('^([0-9]+(ms|s|m|h))+$')",
                "message": "must be a duration such as 500ms, 2s, 1m30s or 1h",
            }]),
        );
    }

    /// `uint16`/`uint32` are not formats the API server knows (it warns); the bounds say it.
    pub fn small_uint(s: &mut Schema) {
        s.insert("format".into(), "int32".into());
    }

    pub fn positive_duration(s: &mut Schema) {
        duration(s);
        rules(
            s,
            json!([{
                "rule": "!self.matches('^(0+(ms|s|m|h))+$')",
                "message": "timeouts must be greater than zero",
            }]),
        );
    }

    pub fn conditions(s: &mut Schema) {
        set(
            s,
            json!({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
        );
    }
}
