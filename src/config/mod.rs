//! Shared types: the trunk spec (the CRD) and the proxy configuration file.
//! Both the operator and the proxy use exactly these definitions.
//!
//! Layer: above `sip` (a trunk's allowed [`Codec`]s are `sip::sdp`'s), below
//! everything else. This file is the facade; the files behind it name each
//! other directly (`super::trunk::…`), never through it.

mod duration;
mod proxy;
mod trunk;
mod validate;

pub use duration::{DURATION_PATTERN, Duration, ParseDurationError};
pub use proxy::{
    CertificateFiles, ConfigError, DEFAULT_HEADER_PREFIX, DnsConfig, ListenConfig, LocatedError,
    ProxyConfig, TlsMaterial, TransportPorts, TrunkConfig, locate,
};
pub use trunk::*;
pub use validate::{FieldError, check_e164, check_fqdn, check_spec};
