//! `vsip proxy`: the data plane.
//!
//! Layers, each with one job, dependencies pointing down the table (a file
//! uses the ones below it, never one above; tests/layers.rs fails on a cycle):
//!
//! | file | concern |
//! |---|---|
//! | `run.rs` | start-up: first configuration, listeners, background tasks, shutdown |
//! | `args.rs`, `reload.rs`, `sources.rs`, `cluster.rs` | command line; file reloads and `check-config`; the source index refresher; cluster mode (config Secret, heartbeat) |
//! | [`server`] | [`server::Server`], built complete once: the state, and the [`transport::Handler`] that dispatches each message |
//! | [`call`] | call tasks through a narrow [`call::CallContext`]: admission, INVITE transaction and failover, in-dialog relay |
//! | [`classify`], [`targets`], [`outcome`], [`record`] | pure decisions (request kind, call plan, next hop; target order), typed refusals that know their answer, the per-call record |
//! | [`transport`] | connections: accept, dial, framing, writers; knows only the `Handler` trait |
//! | [`routes`], [`txn`], [`local`], [`route_set`], [`drain`], [`quota`] | compiled configuration; open transactions (drop guards); our Via/Record-Route; route entries; drain state; fleet CPM quota |
//! | [`stamp`], [`tls`], [`route_sig`], [`cpm`] | message shaping, TLS configs, signatures, the sliding CPM log |

mod args;
pub mod call;
pub mod classify;
mod cluster;
pub mod cpm;
pub mod drain;
pub mod local;
pub mod outcome;
pub mod quota;
pub mod record;
mod reload;
pub mod route_set;
pub mod route_sig;
pub mod routes;
mod run;
pub mod server;
mod sources;
pub mod stamp;
pub mod targets;
pub mod tls;
pub mod transport;
pub mod txn;

pub use args::{ConfigOverrides, ProxyArgs};
pub use reload::{apply_config, check_config};
pub use run::run;
