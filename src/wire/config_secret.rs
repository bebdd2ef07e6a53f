//! The rendered configuration Secret: what the operator writes and every proxy
//! reads (cluster mode, `vsip proxy --kube-config-secret NAMESPACE/NAME`).
//!
//! `data` holds exactly one key: [`KEY`] (the YAML, so `kubectl get secret … |
//! base64 -d` shows it to a person) or, above [`GZIP_THRESHOLD`], [`GZ_KEY`]
//! (the same YAML gzip-compressed: a Secret holds at most 1 MiB and the YAML
//! costs ~330 bytes per trunk; 10,000 trunks ≈ 3.3 MB plain, ≈ 270 KiB
//! compressed). A decoder refuses anything else with a reason.

use std::{collections::BTreeMap, fmt, io::Read as _, str::FromStr};

use k8s_openapi::ByteString;

use crate::config::{ConfigError, ProxyConfig};

/// Name of the Secret in the fleet namespace.
pub const NAME: &str = "vsip-proxy-config";
/// Key of the plain YAML document.
pub const KEY: &str = "config.yaml";
/// Key of the gzip-compressed document (large configurations).
pub const GZ_KEY: &str = "config.yaml.gz";
/// Annotation on the Secret naming the configuration revision it holds.
pub const REVISION_ANNOTATION: &str = "vsip.io/revision";
/// Above this size the YAML is stored compressed ([`GZ_KEY`]), at or below it plain
/// ([`KEY`]); the threshold leaves room below the 1 MiB limit either way (the room left is
/// for TLS material, which compresses less).
pub const GZIP_THRESHOLD: usize = 512 * 1024;
/// Largest configuration a proxy accepts once decompressed (a guard against a runaway Secret).
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Why a Secret's data is not a configuration.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("secret has neither {KEY} nor {GZ_KEY}")]
    NoConfig,
    #[error("secret has both {KEY} and {GZ_KEY}; expected exactly one")]
    BothKeys,
    #[error("{GZ_KEY} is not valid gzip")]
    Gzip(#[source] std::io::Error),
    #[error("{GZ_KEY} decompresses to more than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("the configuration in the secret is not UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// The `data` of the Secret for `config`: exactly one key, [`KEY`] or [`GZ_KEY`].
pub fn encode(config: &ProxyConfig) -> BTreeMap<String, ByteString> {
    let yaml = config.to_yaml();
    if yaml.len() > GZIP_THRESHOLD {
        BTreeMap::from([(GZ_KEY.into(), ByteString(gzip(yaml.as_bytes())))])
    } else {
        BTreeMap::from([(KEY.into(), ByteString(yaml.into_bytes()))])
    }
}

/// The configuration a Secret's data holds, parsed and validated.
pub fn decode(data: &BTreeMap<String, ByteString>) -> Result<ProxyConfig, WireError> {
    Ok(ProxyConfig::from_yaml(&text(data)?)?)
}

/// The configuration document in a Secret's data: [`KEY`] as is, or [`GZ_KEY`]
/// decompressed (at most [`MAX_BYTES`]).
pub fn text(data: &BTreeMap<String, ByteString>) -> Result<String, WireError> {
    let bytes = match (data.get(KEY), data.get(GZ_KEY)) {
        (Some(plain), None) => plain.0.clone(),
        (None, Some(gz)) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&gz.0[..])
                .take(MAX_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(WireError::Gzip)?;
            if out.len() as u64 > MAX_BYTES {
                return Err(WireError::TooLarge);
            }
            out
        }
        (None, None) => return Err(WireError::NoConfig),
        (Some(_), Some(_)) => return Err(WireError::BothKeys),
    };
    String::from_utf8(bytes).map_err(|_| WireError::NotUtf8)
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

/// Where a proxy reads its configuration: `NAMESPACE/NAME`, the value of
/// `--kube-config-secret` that the operator renders into the proxies' Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl SecretRef {
    /// The fleet's Secret ([`NAME`]) in `namespace`.
    pub fn fleet(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: NAME.to_owned(),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("--kube-config-secret must be NAMESPACE/NAME, got {0:?}")]
pub struct BadSecretRef(String);

impl FromStr for SecretRef {
    type Err = BadSecretRef;
    fn from_str(s: &str) -> Result<Self, BadSecretRef> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| BadSecretRef(s.into()))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrunkConfig;

    /// A configuration of `n` trunks with two numbers each.
    fn config(n: usize) -> ProxyConfig {
        let trunks = (0..n)
            .map(|i| {
                serde_json::from_value::<TrunkConfig>(serde_json::json!({
                    "name": format!("ns{}/t{i}", i % 50),
                    "trunkSid": format!("TS{i:032x}"),
                    "generation": 1,
                    "fqdn": format!("sip{i}.example.com"),
                    "numbers": [format!("+9180{i:08}"), format!("+9181{i:08}")],
                }))
                .expect("trunk")
            })
            .collect();
        let mut config = ProxyConfig::from_yaml(
            "listen: { tcp: 0.0.0.0:5070 }\nsignalingDomain: pstn.example.net\n",
        )
        .expect("base");
        config.trunks = trunks;
        config
    }

    /// The error with its causes, as a log line shows it.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut source = e.source();
        while let Some(c) = source {
            s.push_str(&format!(": {c}"));
            source = c.source();
        }
        s
    }

    #[test]
    fn small_configuration_is_stored_plain() {
        let c = config(10);
        let data = encode(&c);
        assert_eq!(data.keys().collect::<Vec<_>>(), [KEY]);
        assert_eq!(data[KEY].0, c.to_yaml().into_bytes());
        assert_eq!(decode(&data).expect("decodes"), c);
    }

    #[test]
    fn unreadable_secret_data_is_refused_with_a_reason() {
        let err = |data: BTreeMap<String, ByteString>| chain(&decode(&data).expect_err("refused"));
        assert_eq!(
            err(BTreeMap::new()),
            "secret has neither config.yaml nor config.yaml.gz"
        );
        let yaml = ProxyConfig::default().to_yaml();
        let both = BTreeMap::from([
            (KEY.into(), ByteString(yaml.clone().into_bytes())),
            (GZ_KEY.into(), ByteString(gzip(yaml.as_bytes()))),
        ]);
        assert!(err(both).contains("both config.yaml and config.yaml.gz"));
        // Truncated gzip (a corrupt write) and something that is not gzip at all.
        let gz = gzip(yaml.as_bytes());
        let truncated = BTreeMap::from([(GZ_KEY.into(), ByteString(gz[..gz.len() / 2].to_vec()))]);
        let e = err(truncated);
        assert!(e.starts_with("config.yaml.gz is not valid gzip: "), "{e}");
        let not_gzip = BTreeMap::from([(GZ_KEY.into(), ByteString(yaml.into_bytes()))]);
        assert!(err(not_gzip).starts_with("config.yaml.gz is not valid gzip"));
        let not_utf8 = BTreeMap::from([(GZ_KEY.into(), ByteString(gzip(&[0xff, 0xfe])))]);
        assert!(err(not_utf8).contains("not UTF-8"));
        // A well-formed gzip of a bad document: the proxy's own validation message.
        let bad_yaml = config(1).to_yaml().replace("sip0.example.com", "10.1.2.3");
        let bad = BTreeMap::from([(GZ_KEY.into(), ByteString(gzip(bad_yaml.as_bytes())))]);
        let e = err(bad);
        assert!(e.contains("fqdn") && e.contains("10.1.2.3"), "{e}");
    }

    #[test]
    fn secret_ref_round_trips_as_the_proxy_argument() {
        let r = SecretRef::fleet("vsip-system");
        assert_eq!(r.to_string(), "vsip-system/vsip-proxy-config");
        assert_eq!(r.to_string().parse::<SecretRef>().expect("parses"), r);
        let e = "no-slash".parse::<SecretRef>().expect_err("refused");
        assert_eq!(
            e.to_string(),
            "--kube-config-secret must be NAMESPACE/NAME, got \"no-slash\""
        );
    }
}
