//! Cluster mode: the configuration comes from the Secret the operator renders,
//! watched through the API server (no kubelet volume delay), and each replica
//! heartbeats a Lease naming the configuration revision it runs, so the
//! operator can tell when every live proxy is programmed.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, anyhow};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::Secret},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{apply_config, core::Core};
use crate::config::ProxyConfig;

/// Key of the rendered configuration inside the Secret.
pub const CONFIG_KEY: &str = "config.yaml";
/// The same document gzip-compressed: the operator uses it for large configurations (a
/// Secret holds at most 1 MiB). The Secret carries one of the two keys.
pub const CONFIG_GZ_KEY: &str = "config.yaml.gz";
/// Largest configuration accepted once decompressed (a guard against a runaway Secret).
pub const CONFIG_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Label the operator selects heartbeat Leases by.
pub const HEARTBEAT_LABEL: &str = "vsip.io/proxy-heartbeat";
/// Annotation carrying the configuration revision a proxy runs.
pub const REVISION_ANNOTATION: &str = "vsip.io/config-revision";
/// Annotation carrying where peers ask this proxy for quota tokens.
pub const QUOTA_ENDPOINT_ANNOTATION: &str = "vsip.io/quota-endpoint";
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);
pub const HEARTBEAT_LEASE_SECONDS: i32 = 15;

/// What a replica reports in its heartbeat: the revision it runs and the
/// Secret it came from (the Lease is owned by that Secret, so removing the
/// fleet removes the heartbeats too).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Running {
    pub revision: String,
    pub secret_uid: Option<String>,
}

#[derive(Clone, Debug)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for SecretRef {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (namespace, name) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("--kube-config-secret must be NAMESPACE/NAME, got {s:?}"))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

fn config_of(secret: &Secret) -> anyhow::Result<ProxyConfig> {
    let empty = std::collections::BTreeMap::new();
    let text = config_text(secret.data.as_ref().unwrap_or(&empty))?;
    ProxyConfig::from_yaml(&text).map_err(|e| anyhow!("{e}"))
}

/// The configuration document in a Secret's data: `config.yaml` as is, or `config.yaml.gz`
/// decompressed. Exactly one of the two must be present.
pub fn config_text(
    data: &std::collections::BTreeMap<String, k8s_openapi::ByteString>,
) -> anyhow::Result<String> {
    use std::io::Read as _;
    let bytes = match (data.get(CONFIG_KEY), data.get(CONFIG_GZ_KEY)) {
        (Some(plain), None) => plain.0.clone(),
        (None, Some(gz)) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&gz.0[..])
                .take(CONFIG_MAX_BYTES + 1)
                .read_to_end(&mut out)
                .with_context(|| format!("{CONFIG_GZ_KEY} is not valid gzip"))?;
            if out.len() as u64 > CONFIG_MAX_BYTES {
                return Err(anyhow!(
                    "{CONFIG_GZ_KEY} decompresses to more than {CONFIG_MAX_BYTES} bytes"
                ));
            }
            out
        }
        (None, None) => {
            return Err(anyhow!(
                "secret has neither {CONFIG_KEY} nor {CONFIG_GZ_KEY}"
            ));
        }
        (Some(_), Some(_)) => {
            return Err(anyhow!(
                "secret has both {CONFIG_KEY} and {CONFIG_GZ_KEY}; expected exactly one"
            ));
        }
    };
    String::from_utf8(bytes).map_err(|_| anyhow!("the configuration in the secret is not UTF-8"))
}

/// Waits for the Secret to exist and hold a valid configuration.
pub async fn initial_config(client: &Client, secret: &SecretRef) -> anyhow::Result<ProxyConfig> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace);
    loop {
        match api.get_opt(&secret.name).await {
            Ok(Some(s)) => match config_of(&s) {
                Ok(c) => return Ok(c),
                Err(e) => warn!(error = %e, "rendered configuration not usable yet"),
            },
            Ok(None) => info!(secret = %secret.name, "waiting for the rendered configuration"),
            Err(e) => warn!(error = %e, "reading the rendered configuration"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Applies every new version of the Secret; a bad one keeps the last good config.
pub async fn watch_config(
    core: Arc<Core>,
    client: Client,
    secret: SecretRef,
    running: watch::Sender<Running>,
) {
    let api: Api<Secret> = Api::namespaced(client, &secret.namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", secret.name));
    let mut stream = watcher(api, cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        match stream.try_next().await {
            Ok(Some(s)) => {
                let result = config_of(&s).and_then(|c| {
                    let rev = c.revision.clone().unwrap_or_default();
                    apply_config(&core, c).map(|()| rev)
                });
                match result {
                    Ok(rev) => {
                        if running.borrow().revision != rev {
                            core.metrics.config_reloads.with_label_values(&["ok"]).inc();
                            info!(revision = %rev, "configuration applied from the API server");
                        }
                        running.send_replace(Running {
                            revision: rev,
                            secret_uid: s.metadata.uid.clone(),
                        });
                    }
                    Err(e) => {
                        core.metrics
                            .config_reloads
                            .with_label_values(&["error"])
                            .inc();
                        error!(error = %e, "configuration refused; keeping the last good one");
                    }
                }
            }
            Ok(None) => return,
            Err(e) => warn!(error = %e, "watching the configuration Secret"),
        }
    }
}

pub fn heartbeat_lease_name(pod: &str) -> String {
    format!("vsip-proxy-{pod}")
}

/// Keeps `vsip-proxy-<pod>` renewed with the revision this replica runs and
/// the endpoint its quota peers reach it at.
pub async fn heartbeat(
    client: Client,
    secret: SecretRef,
    pod: String,
    quota_endpoint: Option<String>,
    mut running: watch::Receiver<Running>,
) {
    let api: Api<Lease> = Api::namespaced(client, &secret.namespace);
    let name = heartbeat_lease_name(&pod);
    let params = PatchParams::apply("vsip-proxy").force();
    loop {
        let Running {
            revision: rev,
            secret_uid,
        } = running.borrow_and_update().clone();
        let now = MicroTime(Timestamp::now());
        let mut annotations = serde_json::Map::new();
        annotations.insert(REVISION_ANNOTATION.into(), rev.into());
        if let Some(e) = &quota_endpoint {
            annotations.insert(QUOTA_ENDPOINT_ANNOTATION.into(), e.clone().into());
        }
        let owners = match secret_uid {
            Some(uid) => serde_json::json!([{
                "apiVersion": "v1",
                "kind": "Secret",
                "name": secret.name,
                "uid": uid,
            }]),
            None => serde_json::json!([]),
        };
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "labels": { HEARTBEAT_LABEL: "true", "app.kubernetes.io/name": "vsip", "app.kubernetes.io/component": "proxy" },
                "annotations": annotations,
                "ownerReferences": owners,
            },
            "spec": {
                "holderIdentity": pod,
                "leaseDurationSeconds": HEARTBEAT_LEASE_SECONDS,
                "renewTime": now,
            }
        });
        if let Err(e) = api.patch(&name, &params, &Patch::Apply(&lease)).await {
            warn!(error = %e, lease = %name, "heartbeat failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_PERIOD) => {}
            _ = running.changed() => {}
        }
    }
}

/// On a graceful stop the heartbeat goes at once, so peers take over this
/// replica's quota ownership without waiting for the Lease to expire.
pub async fn remove_heartbeat(client: Client, namespace: &str, pod: &str) {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let name = heartbeat_lease_name(pod);
    match tokio::time::timeout(
        Duration::from_secs(2),
        api.delete(&name, &Default::default()),
    )
    .await
    {
        Ok(Ok(_)) => info!(lease = %name, "heartbeat removed"),
        Ok(Err(e)) => warn!(lease = %name, error = %e, "removing the heartbeat"),
        Err(_) => warn!(lease = %name, "removing the heartbeat timed out"),
    }
}
