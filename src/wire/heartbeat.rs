//! The heartbeat Lease: each proxy keeps `vsip-proxy-<pod>` renewed in the
//! fleet namespace, naming the configuration revision it runs and where its
//! peers ask it for quota tokens. The operator reads the live ones to decide
//! `Programmed`; the proxies read them to know who shares the fleet's quotas.
//!
//! [`Heartbeat::lease`] is what a proxy writes (server-side apply);
//! [`Beat::read`] is how both readers decode a Lease, and [`Beat::live_at`] the
//! one rule for "still alive".

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp,
};

use super::config_secret::SecretRef;

/// Label every heartbeat Lease carries (value `true`).
pub const LABEL: &str = "vsip.io/proxy-heartbeat";
/// Label selector of the heartbeat Leases.
pub const SELECTOR: &str = "vsip.io/proxy-heartbeat=true";
/// Annotation carrying the configuration revision a proxy runs.
pub const REVISION_ANNOTATION: &str = "vsip.io/config-revision";
/// Annotation carrying where peers ask this proxy for quota tokens (`http://ip:port`).
pub const QUOTA_ENDPOINT_ANNOTATION: &str = "vsip.io/quota-endpoint";
/// How often a proxy renews its Lease (and at once when its revision changes).
pub const PERIOD: Duration = Duration::from_secs(5);
/// `leaseDurationSeconds`: a Lease not renewed for this long is dead.
pub const LEASE_SECONDS: i32 = 15;
/// Heartbeat Lease names are this prefix and the pod name.
pub const LEASE_PREFIX: &str = "vsip-proxy-";
/// The field manager of a proxy's writes to its Lease.
pub const FIELD_MANAGER: &str = "vsip-proxy";

pub fn lease_name(pod: &str) -> String {
    format!("{LEASE_PREFIX}{pod}")
}

/// What a proxy reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat<'a> {
    pub pod: &'a str,
    pub revision: &'a str,
    pub quota_endpoint: Option<&'a str>,
    /// The configuration Secret the proxy runs from, and its UID: the Lease is
    /// owned by it, so removing the fleet removes the heartbeats too.
    pub secret: &'a SecretRef,
    pub secret_uid: Option<&'a str>,
}

impl Heartbeat<'_> {
    /// The Lease to apply, renewed at `now`.
    pub fn lease(&self, now: Timestamp) -> serde_json::Value {
        let mut annotations = serde_json::Map::new();
        annotations.insert(REVISION_ANNOTATION.into(), self.revision.into());
        if let Some(e) = self.quota_endpoint {
            annotations.insert(QUOTA_ENDPOINT_ANNOTATION.into(), e.into());
        }
        let owners = match self.secret_uid {
            Some(uid) => serde_json::json!([{
                "apiVersion": "v1",
                "kind": "Secret",
                "name": self.secret.name,
                "uid": uid,
            }]),
            None => serde_json::json!([]),
        };
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": lease_name(self.pod),
                "labels": { LABEL: "true", "app.kubernetes.io/name": "vsip", "app.kubernetes.io/component": "proxy" },
                "annotations": annotations,
                "ownerReferences": owners,
            },
            "spec": {
                "holderIdentity": self.pod,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": MicroTime(now),
            }
        })
    }
}

/// A heartbeat as read back from a Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beat<'a> {
    pub pod: &'a str,
    pub revision: Option<&'a str>,
    pub quota_endpoint: Option<&'a str>,
    /// Unix milliseconds until which the Lease holds (renewal + duration).
    pub expires_ms: i64,
}

impl<'a> Beat<'a> {
    /// `None` for a Lease without holder, renewal time or duration.
    pub fn read(lease: &'a Lease) -> Option<Self> {
        let spec = lease.spec.as_ref()?;
        let pod = spec.holder_identity.as_deref()?;
        let renewed = spec.renew_time.as_ref()?.0.as_millisecond();
        let duration = i64::from(spec.lease_duration_seconds?) * 1000;
        let annotation = |key: &str| {
            lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(String::as_str)
        };
        Some(Self {
            pod,
            revision: annotation(REVISION_ANNOTATION),
            quota_endpoint: annotation(QUOTA_ENDPOINT_ANNOTATION),
            expires_ms: renewed + duration,
        })
    }

    /// Renewed within its duration at `now_ms` (Unix milliseconds).
    pub fn live_at(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_proxy_writes_reads_back() {
        let secret = SecretRef::fleet("vsip-system");
        let now = Timestamp::from_millisecond(1_800_000_000_000).expect("time");
        let hb = Heartbeat {
            pod: "vsip-proxy-abc",
            revision: "r1",
            quota_endpoint: Some("http://10.0.0.1:9090"),
            secret: &secret,
            secret_uid: Some("uid-1"),
        };
        let lease: Lease = serde_json::from_value(hb.lease(now)).expect("a Lease");
        assert_eq!(
            lease.metadata.name.as_deref(),
            Some("vsip-proxy-vsip-proxy-abc")
        );
        assert_eq!(
            lease.metadata.labels.as_ref().and_then(|l| l.get(LABEL)),
            Some(&"true".to_owned())
        );
        assert_eq!(
            lease.metadata.owner_references.as_ref().map(|o| &o[0].name),
            Some(&secret.name)
        );
        let beat = Beat::read(&lease).expect("readable");
        assert_eq!(
            beat,
            Beat {
                pod: "vsip-proxy-abc",
                revision: Some("r1"),
                quota_endpoint: Some("http://10.0.0.1:9090"),
                expires_ms: 1_800_000_000_000 + 15_000,
            }
        );
        assert!(beat.live_at(1_800_000_014_999));
        assert!(!beat.live_at(1_800_000_015_000));
    }

    #[test]
    fn selector_names_the_label() {
        assert_eq!(SELECTOR, format!("{LABEL}=true"));
    }

    #[test]
    fn a_lease_without_renewal_is_no_heartbeat() {
        let lease = Lease {
            spec: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(Beat::read(&lease), None);
    }
}
