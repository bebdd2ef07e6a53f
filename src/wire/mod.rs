//! The contract between the operator and the proxies, in one place both import.
//!
//! The two processes share no memory and may run different builds during a
//! rollout; what they agree on is written here once:
//!
//! - [`config_secret`]: the Secret the operator renders the proxies'
//!   configuration into — its name, its keys (`config.yaml`, or
//!   `config.yaml.gz` above 512 KiB), the revision annotation, how it is
//!   encoded and decoded, and the `namespace/name` argument that points a proxy
//!   at it.
//! - [`heartbeat`]: the Lease each proxy renews — name, label, annotations
//!   (running revision, quota endpoint), period and duration — written by the
//!   proxy, read by the operator (`Programmed`) and by the other proxies (who
//!   shares the fleet's quotas).
//!
//! The proxy→operator report channel of `docs/design/fleet-state.md` (B: the
//! `Report` a proxy serves, its `vsip.io/report-seq` heartbeat annotation)
//! lands here too, as `wire::report`, so both sides read one definition. Layer: above `config` (it carries a
//! [`ProxyConfig`](crate::config::ProxyConfig)), below `dns`, `proxy` and
//! `operator`; it knows Kubernetes object shapes but never talks to an API
//! server.

pub mod config_secret;
pub mod heartbeat;
