//! The control plane: `vsip operator` reconciles `VirtualSipTrunk` resources into a proxy
//! fleet and reports status (brief §3, §7).
//!
//! | file | concern |
//! |---|---|
//! | [`run`](run()) (`run.rs`) | leader election, building the [`controller::Context`] once, start and stop |
//! | [`args`] | the command line and the fleet settings it becomes |
//! | [`controller`] | `Context` and a short `reconcile` that hands off to its methods |
//! | [`scopes`] | one kube-runtime `Controller` per watched scope, requeue channels |
//! | [`renderer`] | the renderer task: a struct owning its loop state |
//! | [`render`] | trunks + Secrets → the proxies' configuration (pure) |
//! | [`rollout`] | what the proxies were given and run → `Programmed` (pure) |
//! | [`status`] | observations → a trunk's status (pure) |
//! | [`secrets`] | data of the Secrets trunks reference, cached until they change |
//! | [`fleet`] | the Deployment, Service, PDB, RBAC and config Secret the operator owns |
//! | [`events`], [`metrics`], [`crdgen`], [`hash`] | Events on transitions, `vsip_operator_*`, the CRD, content hashes |
//!
//! The operator⇄proxy contract (the Secret's keys, heartbeat Leases) is
//! [`crate::wire`]'s, shared with the proxy. Files name their siblings
//! directly; this facade only re-exports.

pub mod args;
pub mod controller;
pub mod crdgen;
mod error;
pub mod events;
pub mod fleet;
pub mod hash;
pub mod metrics;
pub mod render;
pub mod renderer;
pub mod rollout;
mod run;
pub mod scopes;
pub mod secrets;
pub mod status;

pub use args::{ExposureArgs, LeadershipArgs, OperatorArgs, PullPolicy, ServiceType};
pub use error::{Error, Result};
pub use fleet::FIELD_MANAGER;
pub use run::run;
