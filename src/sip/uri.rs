//! SIP/SIPS/TEL URIs (RFC 3261 §19.1, RFC 3966). Escapes are preserved
//! exactly as received and never re-encoded, so `sip:b%20ob@example.com`
//! serialises back unchanged.

use std::fmt;
use std::net::IpAddr;

use super::error::ParseError;
use super::text::{find_param, snippet, valid_host};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// Lowercased: `sip`, `sips` or `tel`.
    pub scheme: String,
    /// Raw user part, escapes preserved. Always `None` for `tel:`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host as written; IPv6 in `[brackets]`. For `tel:` the
    /// telephone-subscriber (e.g. `+15551234567`).
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters; names and values raw.
    pub params: Vec<(String, Option<String>)>,
    /// Raw `?headers` part without the `?`.
    pub headers: Option<String>,
}

fn err(s: &str, d: &str) -> ParseError {
    ParseError::invalid("URI", format!("{d} in {:?}", snippet(s)))
}

/// Every `%` must introduce two hex digits.
fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&x) = b.get(i) {
        if x == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

fn user_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || b"&=+$,;?/".contains(&b)
}

fn password_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || b"&=+$,".contains(&b)
}

fn param_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || b"[]/:&+$".contains(&b)
}

fn header_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || b"[]/?:+$=&".contains(&b)
}

fn parse_uri_params(
    s: &str,
    part: Option<&str>,
) -> Result<Vec<(String, Option<String>)>, ParseError> {
    let mut params = Vec::new();
    let Some(part) = part else {
        return Ok(params);
    };
    for p in part.split(';') {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if n.is_empty() || !n.bytes().all(param_char) || !escapes_ok(n) {
            return Err(err(s, "bad URI parameter name"));
        }
        if let Some(v) = v
            && (v.is_empty() || !v.bytes().all(param_char) || !escapes_ok(v))
        {
            return Err(err(s, "bad URI parameter value"));
        }
        params.push((n.to_string(), v.map(str::to_string)));
    }
    Ok(params)
}

impl SipUri {
    pub fn parse(s: &str) -> Result<SipUri, ParseError> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| err(s, "missing scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "sip" | "sips" => Self::parse_sip(s, scheme, rest),
            "tel" => Self::parse_tel(s, rest),
            _ => Err(err(s, "unsupported scheme")),
        }
    }

    fn parse_sip(s: &str, scheme: String, rest: &str) -> Result<SipUri, ParseError> {
        // '@' may only appear as the userinfo delimiter.
        let (userinfo, rest) = match rest.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pw) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u, None),
                };
                if user.is_empty() || !user.bytes().all(user_char) || !escapes_ok(user) {
                    return Err(err(s, "bad user part"));
                }
                if let Some(pw) = pw
                    && (!pw.bytes().all(password_char) || !escapes_ok(pw))
                {
                    return Err(err(s, "bad password"));
                }
                (Some(user.to_string()), pw.map(str::to_string))
            }
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => {
                if h.is_empty() || !h.bytes().all(header_char) || !escapes_ok(h) {
                    return Err(err(s, "bad URI headers"));
                }
                (r, Some(h.to_string()))
            }
            None => (rest, None),
        };
        let (hostport, params) = match rest.split_once(';') {
            Some((hp, p)) => (hp, Some(p)),
            None => (rest, None),
        };
        let (host, port) = split_hostport(hostport).ok_or_else(|| err(s, "bad host or port"))?;
        if !valid_host(host) {
            return Err(err(s, "bad host"));
        }
        let params = parse_uri_params(s, params)?;
        Ok(SipUri {
            scheme,
            user,
            password,
            host: host.to_string(),
            port,
            params,
            headers,
        })
    }

    fn parse_tel(s: &str, rest: &str) -> Result<SipUri, ParseError> {
        let (number, params) = match rest.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (rest, None),
        };
        let ok = |b: u8| b.is_ascii_hexdigit() || b"+-.()*#".contains(&b);
        if number.is_empty() || !number.bytes().all(ok) {
            return Err(err(s, "bad telephone number"));
        }
        Ok(SipUri {
            scheme: "tel".into(),
            user: None,
            password: None,
            host: number.to_string(),
            port: None,
            params: parse_uri_params(s, params)?,
            headers: None,
        })
    }

    /// `None`: absent; `Some(None)`: present without value. Case-insensitive name.
    pub fn param(&self, n: &str) -> Option<Option<&str>> {
        find_param(&self.params, n)
    }

    /// The `transport` parameter, lowercased.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(str::to_ascii_lowercase)
    }

    /// The host as an IP address when it is a literal (IPv6 brackets removed).
    pub fn host_ip(&self) -> Option<IpAddr> {
        let h = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        h.parse().ok()
    }

    /// The user part with `%XX` escapes decoded (lossy on invalid UTF-8),
    /// e.g. for matching a dialled number.
    pub fn user_decoded(&self) -> Option<String> {
        self.user.as_deref().map(percent_decode)
    }
}

/// Decodes `%XX` escapes; malformed escapes are kept literally.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&x) = b.get(i) {
        if x == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(x);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host[:port]`, host possibly a bracketed IPv6 reference.
fn split_hostport(hp: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if hp.starts_with('[') {
        let end = hp.find(']')?;
        let host = hp.get(..=end)?;
        let after = hp.get(end + 1..)?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match hp.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(p.parse::<u16>().ok()?)
        }
    };
    Some((host, port))
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        super::text::write_params(f, &self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// A `sip:`/`sips:` URI with a host, usable as a forwarding target (e.g. the
/// `upstream` in the proxy configuration).
pub fn parse_target_uri(s: &str) -> Result<SipUri, ParseError> {
    let u = SipUri::parse(s)?;
    if u.scheme != "sip" && u.scheme != "sips" {
        return Err(err(s, "a target must be a sip: or sips: URI"));
    }
    if u.headers.is_some() {
        return Err(err(s, "a target URI must not carry ?headers"));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips() {
        for s in [
            "sip:b%20ob@example.com",
            "sip:+15551234567@sbc.example.com:5061;transport=tls",
            "sips:alice:secret@[2001:db8::1]:5070;lr;maddr=10.0.0.1?subject=x%20y&priority=urgent",
            "sip:example.com",
            "sip:sips%3Auser%40example.com@example.net",
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
            "sip:user;par=u%40example.net@example.com",
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
            "tel:+1-555-123-4567;phone-context=example.com",
        ] {
            let u = SipUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(u.to_string(), s);
        }
    }

    #[test]
    fn fields() {
        let u = SipUri::parse("SIP:b%20ob@[2001:db8::1]:5070;Transport=TCP").unwrap();
        assert_eq!(u.scheme, "sip");
        assert_eq!(u.user.as_deref(), Some("b%20ob"));
        assert_eq!(u.user_decoded().as_deref(), Some("b ob"));
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.host_ip(), Some("2001:db8::1".parse().unwrap()));
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.host_ip(), None);
        let u = SipUri::parse("sip:10.1.2.3;lr").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.host_ip(), Some("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "sip:",
            "sip:@host",
            "sip:user@",
            "sip:user@host:",
            "sip:user@host:70000",
            "sip:user@[::1",
            "sip:user@[::1]x",
            "sip:us er@host",
            "sip:user@host;",
            "sip:user@host;a=",
            "sip:user@host?",
            "sip:bad%zzescape@host",
            "http://example.com",
            "<sip:a@b>",
            "tel:",
        ] {
            assert!(SipUri::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn target() {
        let u = parse_target_uri("sip:upstream.example.com:5060;transport=tcp").unwrap();
        assert_eq!(u.host, "upstream.example.com");
        assert!(parse_target_uri("tel:+1555").is_err());
        assert!(parse_target_uri("sip:x@h?subject=1").is_err());
        assert!(parse_target_uri("upstream.example.com").is_err());
    }
}
