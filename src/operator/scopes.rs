//! The watched scopes: one kube-runtime `Controller` per scope (all
//! namespaces, or each namespace of `--namespaces`), each with its trunk
//! cache, a metadata-only watch of the Secrets its trunks reference, and a
//! channel the renderer uses to ask for a trunk to be reconciled again.

use std::sync::Arc;

use futures::{StreamExt, channel::mpsc, future::BoxFuture};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        controller::{self, Controller},
        reflector::{self, ObjectRef, Store},
        watcher::{self, watcher},
    },
};
use tokio::sync::Notify;

use super::{
    controller::{Context, error_policy, reconcile},
    render,
    secrets::SecretCache,
};
use crate::config::VirtualSipTrunk;

/// Resolves when the controllers and the renderer must stop (SIGTERM, or leadership lost).
pub type Shutdown = futures::future::Shared<BoxFuture<'static, ()>>;

/// What the operator never reads of a cached trunk. `managedFields` is most of
/// a server-side-applied object (a field tree per manager) and kubectl's
/// client-side apply copies the whole object into an annotation: with 10,000
/// trunks in the cache that was tens of MB.
pub fn strip_unused_metadata(trunk: &mut VirtualSipTrunk) {
    trunk.metadata.managed_fields = None;
    if let Some(a) = trunk.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED_ANNOTATION);
    }
}

const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One watched scope: `None` = all namespaces.
pub struct Scope {
    pub namespace: Option<String>,
    controller: Controller<VirtualSipTrunk>,
    requeue: mpsc::UnboundedSender<ObjectRef<VirtualSipTrunk>>,
}

/// Builds the controllers (their stores are needed to build the [`Context`]).
pub fn scopes(
    client: &Client,
    namespaces: &[String],
    secrets: Arc<SecretCache>,
    render_requests: Arc<Notify>,
) -> Vec<Scope> {
    let list: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    list.into_iter()
        .map(|namespace| {
            let (trunks, secret_api): (Api<VirtualSipTrunk>, Api<PartialObjectMeta<Secret>>) =
                match &namespace {
                    Some(ns) => (
                        Api::namespaced(client.clone(), ns),
                        Api::namespaced(client.clone(), ns),
                    ),
                    None => (Api::all(client.clone()), Api::all(client.clone())),
                };
            let (store, writer) = reflector::store();
            let trunk_events = reflector::reflector(
                writer,
                watcher(trunks, watcher::Config::default().any_semantic())
                    .modify(strip_unused_metadata),
            )
            .applied_objects();
            let controller = Controller::for_stream(trunk_events, store)
                .with_config(controller::Config::default().concurrency(16));
            let store = controller.store();
            let (tx, rx) = mpsc::unbounded();
            // Metadata only: a Secret's data is read when a trunk references it.
            let secret_events = watcher(secret_api, watcher::Config::default())
                .default_backoff()
                .touched_objects();
            let cache = secrets.clone();
            let notify = render_requests.clone();
            let controller = controller
                .watches_stream(secret_events, move |secret| {
                    let ns = secret.namespace().unwrap_or_default();
                    let name = secret.name_any();
                    let key = (ns.clone(), name.clone());
                    if cache.invalidate(&key) {
                        notify.notify_one();
                    }
                    store
                        .state()
                        .into_iter()
                        .filter(|t| {
                            t.namespace().as_deref() == Some(ns.as_str())
                                && render::referenced_secrets(t).iter().any(|k| k.1 == name)
                        })
                        .map(|t| ObjectRef::from_obj(&*t))
                        .collect::<Vec<_>>()
                })
                .reconcile_on(rx);
            Scope {
                namespace,
                controller,
                requeue: tx,
            }
        })
        .collect()
}

impl Scope {
    pub fn store(&self) -> Store<VirtualSipTrunk> {
        self.controller.store()
    }
}

/// Runs the controllers until `shutdown` resolves (each drains its in-flight reconciles).
pub fn run_controllers(
    scopes: Vec<Scope>,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) -> Vec<BoxFuture<'static, ()>> {
    scopes
        .into_iter()
        .map(|scope| {
            let ctx = ctx.clone();
            let notify = ctx.render_requests.clone();
            let run = scope
                .controller
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile, error_policy, ctx)
                .for_each(move |res| {
                    match res {
                        Ok((obj, _)) => tracing::debug!(trunk = %obj, "reconciled"),
                        // A trunk that disappeared: its entry must leave the configuration.
                        Err(controller::Error::ObjectNotFound(obj)) => {
                            tracing::debug!(trunk = %obj, "trunk gone");
                            notify.notify_one();
                        }
                        Err(e) => tracing::debug!(error = %e, "controller"),
                    }
                    futures::future::ready(())
                });
            futures::FutureExt::boxed(run)
        })
        .collect()
}

/// Where to send "reconcile this trunk again" for each scope.
pub type Requeuers = Vec<(
    Option<String>,
    mpsc::UnboundedSender<ObjectRef<VirtualSipTrunk>>,
)>;

pub fn requeuers(scopes: &[Scope]) -> Requeuers {
    scopes
        .iter()
        .map(|s| (s.namespace.clone(), s.requeue.clone()))
        .collect()
}

pub(super) fn requeue(requeuers: &Requeuers, key: &str) {
    let Some((ns, name)) = key.split_once('/') else {
        return;
    };
    let obj = ObjectRef::<VirtualSipTrunk>::new(name).within(ns);
    for (scope, tx) in requeuers {
        if scope.as_deref().is_none_or(|s| s == ns) {
            let _ = tx.unbounded_send(obj.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_trunks_drop_managed_fields_and_the_last_applied_copy() {
        use kube::api::ObjectMeta;
        let mut t = VirtualSipTrunk::new(
            "t",
            serde_json::from_value(serde_json::json!({
                "fqdn": "sbc.example.com", "numbers": ["+14155550100"]
            }))
            .expect("spec"),
        );
        t.metadata = ObjectMeta {
            name: Some("t".into()),
            annotations: Some(
                [
                    (LAST_APPLIED_ANNOTATION.to_owned(), "{...}".to_owned()),
                    ("team".to_owned(), "voice".to_owned()),
                ]
                .into(),
            ),
            managed_fields: Some(vec![Default::default()]),
            ..Default::default()
        };
        strip_unused_metadata(&mut t);
        assert!(t.metadata.managed_fields.is_none());
        assert_eq!(
            t.annotations().keys().collect::<Vec<_>>(),
            ["team"],
            "only kubectl's copy goes"
        );
        assert_eq!(t.spec.fqdn, "sbc.example.com");
    }
}
