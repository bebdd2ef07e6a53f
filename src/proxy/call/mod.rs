//! Calls: one task per INVITE transaction ([`invite`]: admission, DNS,
//! failover over the targets, CANCEL) and one per relayed in-dialog request
//! ([`relay`]). Both work through a [`CallContext`], never the whole server.
//!
//! | file | concern |
//! |---|---|
//! | `context.rs` | [`CallContext`]: what a call task may use |
//! | `admission.rs` | the gates a new call passes (drain, suspension, codecs, quota) |
//! | `invite.rs` | the INVITE transaction: delivery, failover, CANCEL, the call record |
//! | `relay.rs` | in-dialog requests along the route set |

pub mod admission;
pub mod context;
pub mod invite;
pub mod relay;

pub use context::CallContext;
pub use invite::spawn_call;
pub use relay::spawn_relay;
