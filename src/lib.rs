//! vsip: Kubernetes-native, FQDN-based virtual SIP trunking.
//!
//! - [`config`]: the shared shapes (trunk spec / CRD, proxy configuration file)
//! - [`wire`]: the operator⇄proxy contract (configuration Secret, heartbeat Leases)
//! - [`sip`]: message parsing and stream framing
//! - [`dns`]: per-call FQDN resolution with a TTL-bounded cache
//! - [`proxy`]: the data plane (listeners, routing, forwarding, quota)
//! - [`operator`]: the control plane (kube-rs controller)
//! - [`admin`], [`telemetry`]: HTTP admin endpoints, metrics and logs
//! - [`lab`]: a small authoritative DNS server for labs, demos and tests
//! - [`heap`]: handing freed memory back after large one-off jobs

pub mod admin;
pub mod config;
pub mod dns;
pub mod heap;
pub mod lab;
pub mod operator;
pub mod proxy;
pub mod sip;
pub mod telemetry;
pub mod wire;
