//! Shared types: the trunk spec (the CRD) and the proxy configuration file.
//! Both the operator and the proxy use exactly these definitions.

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
pub use validate::{FieldError, MAX_CALLS_PER_MINUTE, check_e164, check_fqdn, check_spec};
