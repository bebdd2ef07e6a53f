//! SIP message layer: a small, strict, zero-panic parser for SIP over
//! TCP/TLS (see `docs/design/sip-parsing.md` for why we do not use rsip).
//!
//! - [`message`]: start line, headers (kept byte for byte), body, editing
//! - [`framer`]: stream framing by Content-Length, CRLF keep-alives
//! - [`uri`]: sip/sips/tel URIs, escapes preserved
//! - [`headers`]: Via, name-addr, CSeq, comma lists
//! - [`sdp`]: audio codec inspection of offers, and the [`Codec`]s a trunk allows
//! - [`method`], [`names`], [`error`]: request methods, header names (compact
//!   forms), the layer's one error type; `head` (private): the raw header-block
//!   scans the framer runs before parsing
//!
//! A leaf: nothing here imports another module of the crate (tests/layers.rs).

pub mod error;
pub mod framer;
mod head;
pub mod headers;
pub mod message;
pub mod method;
pub mod names;
pub mod sdp;
mod text;
pub mod uri;

pub use error::ParseError;
pub use framer::{Frame, FrameError, Framer};
pub use headers::{CSeq, NameAddr, Via, split_list};
pub use message::{Header, Message, StartLine};
pub use method::Method;
pub use names::canonical_name;
pub use sdp::Codec;
pub use uri::{SipUri, parse_target_uri};
