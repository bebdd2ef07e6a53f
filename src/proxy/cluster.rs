//! Cluster mode: the configuration comes from the Secret the operator renders,
//! watched through the API server (no kubelet volume delay), and each replica
//! heartbeats a Lease naming the configuration revision it runs, so the
//! operator can tell when every live proxy is programmed.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::Secret},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{reload::apply_config, server::Server};
use crate::{
    config::ProxyConfig,
    wire::{
        config_secret::{self, SecretRef, WireError},
        heartbeat::{self, Heartbeat},
    },
};

/// What a replica reports in its heartbeat: the revision it runs and the
/// Secret it came from (the Lease is owned by that Secret, so removing the
/// fleet removes the heartbeats too).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Running {
    pub revision: String,
    pub secret_uid: Option<String>,
}

fn config_of(secret: &Secret) -> Result<ProxyConfig, WireError> {
    let empty = std::collections::BTreeMap::new();
    config_secret::decode(secret.data.as_ref().unwrap_or(&empty))
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
    server: Arc<Server>,
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
                let result = config_of(&s).map_err(anyhow::Error::from).and_then(|c| {
                    let rev = c.revision.clone().unwrap_or_default();
                    apply_config(&server, c).map(|()| rev)
                });
                match result {
                    Ok(rev) => {
                        if running.borrow().revision != rev {
                            server.metrics().reload(true);
                            info!(revision = %rev, "configuration applied from the API server");
                        }
                        running.send_replace(Running {
                            revision: rev,
                            secret_uid: s.metadata.uid.clone(),
                        });
                    }
                    Err(e) => {
                        server.metrics().reload(false);
                        error!(error = %e, "configuration refused; keeping the last good one");
                    }
                }
            }
            Ok(None) => return,
            Err(e) => warn!(error = %e, "watching the configuration Secret"),
        }
    }
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
    let name = heartbeat::lease_name(&pod);
    let params = PatchParams::apply(heartbeat::FIELD_MANAGER).force();
    loop {
        let Running {
            revision,
            secret_uid,
        } = running.borrow_and_update().clone();
        let lease = Heartbeat {
            pod: &pod,
            revision: &revision,
            quota_endpoint: quota_endpoint.as_deref(),
            secret: &secret,
            secret_uid: secret_uid.as_deref(),
        }
        .lease(Timestamp::now());
        if let Err(e) = api.patch(&name, &params, &Patch::Apply(&lease)).await {
            warn!(error = %e, lease = %name, "heartbeat failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(heartbeat::PERIOD) => {}
            _ = running.changed() => {}
        }
    }
}

/// On a graceful stop the heartbeat goes at once, so peers take over this
/// replica's quota ownership without waiting for the Lease to expire.
pub async fn remove_heartbeat(client: Client, namespace: &str, pod: &str) {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let name = heartbeat::lease_name(pod);
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
