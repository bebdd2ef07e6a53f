//! What can go wrong resolving a trunk's FQDN, as a call, a log line and a
//! metric see it.

/// Why a name gave no address. The text names the FQDN, so a log line or a
/// status message is complete on its own.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DnsError {
    #[error("{0}: no such domain (NXDOMAIN)")]
    NxDomain(String),
    #[error("{0}: no A/AAAA records for the requested IP families")]
    NoAddresses(String),
    #[error("{0}: DNS lookup timed out")]
    Timeout(String),
    #[error("{0}")]
    Other(String),
}

impl DnsError {
    /// The `result` label of `vsip_dns_lookups_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DnsError::NxDomain(_) => "nxdomain",
            DnsError::NoAddresses(_) => "no_addresses",
            DnsError::Timeout(_) => "timeout",
            DnsError::Other(_) => "error",
        }
    }

    /// Which error wins when no family has addresses: the most telling one.
    pub(super) fn rank(&self) -> u8 {
        match self {
            DnsError::NxDomain(_) => 3,
            DnsError::Timeout(_) => 2,
            DnsError::Other(_) => 1,
            DnsError::NoAddresses(_) => 0,
        }
    }
}
