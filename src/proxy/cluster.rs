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
/// Label the operator selects heartbeat Leases by.
pub const HEARTBEAT_LABEL: &str = "vsip.io/proxy-heartbeat";
/// Annotation carrying the configuration revision a proxy runs.
pub const REVISION_ANNOTATION: &str = "vsip.io/config-revision";
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);
pub const HEARTBEAT_LEASE_SECONDS: i32 = 15;

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
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIG_KEY))
        .ok_or_else(|| anyhow!("secret has no {CONFIG_KEY}"))?;
    let text = std::str::from_utf8(&data.0).context("config is not UTF-8")?;
    ProxyConfig::from_yaml(text).map_err(|e| anyhow!("{e}"))
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
    revision: watch::Sender<String>,
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
                        if *revision.borrow() != rev {
                            core.metrics.config_reloads.with_label_values(&["ok"]).inc();
                            info!(revision = %rev, "configuration applied from the API server");
                        }
                        revision.send_replace(rev);
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

/// Keeps `vsip-proxy-<pod>` renewed with the revision this replica runs.
pub async fn heartbeat(
    client: Client,
    namespace: String,
    pod: String,
    mut revision: watch::Receiver<String>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let name = format!("vsip-proxy-{pod}");
    let params = PatchParams::apply("vsip-proxy").force();
    loop {
        let rev = revision.borrow_and_update().clone();
        let now = MicroTime(Timestamp::now());
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "labels": { HEARTBEAT_LABEL: "true", "app.kubernetes.io/name": "vsip", "app.kubernetes.io/component": "proxy" },
                "annotations": { REVISION_ANNOTATION: rev },
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
            _ = revision.changed() => {}
        }
    }
}
