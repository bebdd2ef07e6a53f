//! SIP message layer: a small, strict, zero-panic parser for SIP over
//! TCP/TLS (see `docs/design/sip-parsing.md` for why we do not use rsip).
//!
//! - [`message`]: start line, headers (kept byte for byte), body, editing
//! - [`framer`]: stream framing by Content-Length, CRLF keep-alives
//! - [`uri`]: sip/sips/tel URIs, escapes preserved
//! - [`headers`]: Via, name-addr, CSeq, comma lists
//! - [`sdp`]: audio codec inspection of offers

pub mod framer;
pub mod headers;
pub mod message;
pub mod sdp;
mod text;
pub mod uri;

pub use framer::{Frame, FrameError, Framer};
pub use headers::{CSeq, NameAddr, Via, split_list};
pub use message::{Header, Message, Method, ParseError, StartLine, canonical_name};
pub use uri::{SipUri, parse_target_uri};
