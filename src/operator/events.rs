//! Kubernetes Events for trunk condition transitions (`events.k8s.io/v1`).
//!
//! kube's `Recorder` keeps every event it published in the last six minutes,
//! to count repeats as a series, and scans that cache on every publish. With
//! 10,000 trunks becoming Ready that is ~60,000 cached events (tens of MB) and
//! a scan of all of them per event. A transition event is never a repeat (it
//! names the old and the new state), so here events are created, not
//! aggregated, and nothing is kept.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::events::{Event, EventType},
};

pub struct EventPublisher {
    client: Client,
    /// `reportingController`.
    controller: String,
    /// `reportingInstance` (the pod).
    instance: String,
    /// Keeps names unique when two events share a timestamp.
    seq: AtomicU64,
}

impl EventPublisher {
    pub fn new(client: Client, controller: String, instance: String) -> Self {
        Self {
            client,
            controller,
            instance,
            seq: AtomicU64::new(0),
        }
    }

    /// Creates `ev` about `regarding` in the object's namespace.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let event = self.event(ev, regarding, Timestamp::now());
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        Api::<K8sEvent>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await?;
        Ok(())
    }

    /// The Event object, in the shape kube's `Recorder` writes (without a series).
    pub fn event(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let subject = regarding.name.as_deref().unwrap_or(&self.controller);
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{subject}.{:x}-{seq:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_name_the_trunk_and_never_collide() {
        // Never connected: building an event does not talk to the API server.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
        let client = Client::try_from(config).expect("client");
        let p = EventPublisher::new(client, "vsip-operator".into(), "pod-0".into());
        let regarding = ObjectReference {
            kind: Some("VirtualSipTrunk".into()),
            name: Some("acme".into()),
            namespace: Some("tenant-a".into()),
            ..Default::default()
        };
        let ev = Event {
            type_: EventType::Warning,
            reason: "NumberConflict".into(),
            note: Some("Accepted True -> False: ...".into()),
            action: "Accepted".into(),
            secondary: None,
        };
        let now = Timestamp::now();
        let (a, b) = (p.event(&ev, &regarding, now), p.event(&ev, &regarding, now));
        let name = a.metadata.name.clone().expect("name");
        assert!(name.starts_with("acme."), "{name}");
        assert_ne!(
            a.metadata.name, b.metadata.name,
            "same instant, distinct names"
        );
        assert_eq!(a.metadata.namespace.as_deref(), Some("tenant-a"));
        assert_eq!(a.type_.as_deref(), Some("Warning"));
        assert_eq!(a.reason.as_deref(), Some("NumberConflict"));
        assert_eq!(a.reporting_controller.as_deref(), Some("vsip-operator"));
        assert_eq!(a.reporting_instance.as_deref(), Some("pod-0"));
        assert_eq!(a.regarding, Some(regarding));
        assert!(a.series.is_none());
    }
}
