//! The rules of a trunk spec, in Rust. The API server enforces the same rules
//! through the CRD schema and CEL; the proxy applies these to its config file.

use std::net::IpAddr;

use super::trunk::{MAX_CALLS_PER_MINUTE, Transport, VirtualSipTrunkSpec};

/// One broken rule, named by its field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Lowercase RFC 1123 name with at least two labels, not an IP literal.
pub fn check_fqdn(name: &str) -> Result<(), String> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{name:?} is an IP address; an FQDN trunk needs a DNS name (static-IP trunks are a different product)"
        ));
    }
    if name.is_empty() || name.len() > 253 {
        return Err("must be a DNS name of 1 to 253 characters".into());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("{name:?} is not fully qualified (needs a dot)"));
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{name:?} is not a lowercase RFC 1123 DNS name (label {label:?})"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{name:?} has an all-numeric top-level label"));
    }
    Ok(())
}

/// `+` followed by 7 to 15 digits.
pub fn check_e164(number: &str) -> Result<(), String> {
    let digits = number.strip_prefix('+').unwrap_or("");
    if (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "{number:?} is not an E.164 number ('+' followed by 7 to 15 digits)"
        ))
    }
}

/// Checks one spec; `prefix` is the path of the spec in its document.
pub fn check_spec(spec: &VirtualSipTrunkSpec, prefix: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut push = |field: &str, message: String| {
        errors.push(FieldError {
            path: format!("{prefix}{field}"),
            message,
        })
    };
    if let Err(e) = check_fqdn(&spec.fqdn) {
        push("fqdn", e);
    }
    if spec.port == Some(0) {
        push("port", "must be between 1 and 65535".into());
    }
    if spec.ip_families.is_empty() {
        push("ipFamilies", "must name at least one of IPv4, IPv6".into());
    }
    for (i, family) in spec.ip_families.iter().enumerate() {
        if spec.ip_families[..i].contains(family) {
            push(
                &format!("ipFamilies[{i}]"),
                format!("{family:?} is listed twice"),
            );
        }
    }
    for (i, number) in spec.numbers.iter().enumerate() {
        if let Err(e) = check_e164(number) {
            push(&format!("numbers[{i}]"), e);
        } else if spec.numbers[..i].contains(number) {
            push(
                &format!("numbers[{i}]"),
                format!("{number} is listed twice"),
            );
        }
    }
    if !(1..=MAX_CALLS_PER_MINUTE).contains(&spec.calls_per_minute) {
        push(
            "callsPerMinute",
            format!("must be between 1 and {MAX_CALLS_PER_MINUTE}"),
        );
    }
    if spec.codecs.is_empty() {
        push("codecs", "must allow at least one of PCMA, PCMU".into());
    }
    if spec.tls.is_some() && spec.transport != Transport::Tls {
        push("tls", "is only allowed with transport: TLS".into());
    }
    if let Some(name) = spec.tls.as_ref().and_then(|t| t.server_name.as_deref())
        && let Err(e) = check_fqdn(name)
    {
        push("tls.serverName", e);
    }
    let f = &spec.failover;
    for (field, d) in [
        ("failover.connectTimeout", f.connect_timeout),
        ("failover.responseTimeout", f.response_timeout),
    ] {
        if d.get().is_zero() {
            push(field, "must be greater than zero".into());
        }
    }
    for name in spec.headers.keys() {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
        if !token {
            push(
                &format!("headers[{name:?}]"),
                "is not a valid SIP header name".into(),
            );
        }
    }
    for (name, value) in &spec.headers {
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            push(
                &format!("headers[{name:?}]"),
                "value must not contain CR, LF or NUL".into(),
            );
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_rules() {
        assert!(check_fqdn("sip.acme.example").is_ok());
        assert!(check_fqdn("10.0.0.1").unwrap_err().contains("IP address"));
        assert!(check_fqdn("::1").unwrap_err().contains("IP address"));
        assert!(check_fqdn("Sip.Acme.example").is_err());
        assert!(check_fqdn("localhost").is_err());
        assert!(check_fqdn("-a.example").is_err());
    }

    #[test]
    fn e164_rules() {
        assert!(check_e164("+911234567890").is_ok());
        assert!(check_e164("911234567890").is_err());
        assert!(check_e164("+12345").is_err());
        assert!(check_e164("+1234567890123456").is_err());
        assert!(check_e164("+91-123456789").is_err());
    }
}
