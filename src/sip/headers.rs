//! Typed views of the header fields a proxy has to understand:
//! Via, name-addr (From/To/Contact/Route/Record-Route), CSeq, and the
//! comma-list splitter.

use std::fmt;

use super::error::ParseError;
use super::method::Method;
use super::text::{
    Cursor, find_param, is_token_char, parse_digits, parse_params, quote, quoted_end, snippet,
    take_host, trim_wsp, unquote, write_params,
};

/// One Via value (RFC 3261 §20.42): `SIP/2.0/TCP host[:port];params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Normalised sent-protocol, e.g. `SIP/2.0/TCP` (no internal spaces).
    pub protocol: String,
    /// Transport, uppercased, e.g. `TCP`.
    pub transport: String,
    /// Host as written; IPv6 stays in `[brackets]`.
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parses a single Via value (split a header with [`split_list`] first).
    /// Linear whitespace is allowed around `/`, `:`, `;` and `=`.
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let err = |d: &str| ParseError::invalid("Via", format!("{d} in {:?}", snippet(s)));
        let mut c = Cursor::new(s);
        c.skip_ws();
        let name = c.take_while(is_token_char);
        c.skip_ws();
        if name.is_empty() || !c.eat(b'/') {
            return Err(err("bad sent-protocol"));
        }
        c.skip_ws();
        let version = c.take_while(is_token_char);
        c.skip_ws();
        if version.is_empty() || !c.eat(b'/') {
            return Err(err("bad sent-protocol"));
        }
        c.skip_ws();
        let transport = c.take_while(is_token_char);
        if transport.is_empty() {
            return Err(err("missing transport"));
        }
        if !c.skip_ws() {
            return Err(err("missing sent-by"));
        }
        let host = take_host(&mut c).ok_or_else(|| err("bad host"))?;
        if !super::text::valid_host(host) {
            return Err(err("bad host"));
        }
        c.skip_ws();
        let port = if c.eat(b':') {
            c.skip_ws();
            let p = c.take_while(|b| b.is_ascii_digit());
            Some(
                parse_digits(p)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| err("bad port"))?,
            )
        } else {
            None
        };
        let params = parse_params(&mut c, "Via")?;
        let transport = transport.to_ascii_uppercase();
        let via = Via {
            protocol: format!("{name}/{version}/{transport}"),
            transport,
            host: host.to_string(),
            port,
            params,
        };
        if let Some(Some(rp)) = via.param("rport")
            && parse_digits(rp)
                .and_then(|n| u16::try_from(n).ok())
                .is_none()
        {
            return Err(err("bad rport"));
        }
        Ok(via)
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// `None`: absent; `Some(None)`: present without value.
    pub fn param(&self, n: &str) -> Option<Option<&str>> {
        find_param(&self.params, n)
    }

    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: bare `;rport`; `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport")
            .map(|v| v.and_then(|p| p.parse::<u16>().ok()))
    }

    /// Sets (or replaces) a parameter, keeping its position if present.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)
    }
}

/// `[display-name] <uri> *(;param)` or a bare `addr-spec *(;param)`
/// (From, To, Contact, Route, Record-Route, P-Asserted-Identity…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name without quotes, quoted-pairs resolved.
    pub display: Option<String>,
    /// The URI exactly as written (escapes preserved).
    pub uri: String,
    /// Header parameters (after the URI); values raw.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        let err = |d: &str| ParseError::invalid("name-addr", format!("{d} in {:?}", snippet(s)));
        let s = trim_wsp(s);
        let mut c = Cursor::new(s);
        let has_angle = {
            // is there a '<' outside a quoted string?
            let b = s.as_bytes();
            let mut i = 0;
            let mut found = false;
            while let Some(&x) = b.get(i) {
                match x {
                    b'"' => match quoted_end(b.get(i..).unwrap_or(&[])) {
                        Some(n) => i += n,
                        None => return Err(err("unterminated quoted string")),
                    },
                    b'<' => {
                        found = true;
                        break;
                    }
                    _ => i += 1,
                }
            }
            found
        };
        if has_angle {
            let display = if c.peek() == Some(b'"') {
                let q = c
                    .take_quoted()
                    .ok_or_else(|| err("unterminated quoted string"))?;
                c.skip_ws();
                Some(unquote(q))
            } else {
                let words = c.take_until(b'<').ok_or_else(|| err("missing <"))?;
                let words: Vec<&str> = words.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
                // Tokens only, but unquoted non-ASCII (UTF-8) names are
                // tolerated: real UAs send them, and they cannot be confused
                // with delimiters. ASCII specials (`,` `"` `@`…) are not.
                let word_ok = |w: &str| w.bytes().all(|b| !b.is_ascii() || is_token_char(b));
                if let Some(bad) = words.iter().find(|w| !word_ok(w)) {
                    return Err(err(&format!(
                        "display name {:?} must be a quoted string",
                        snippet(bad)
                    )));
                }
                (!words.is_empty()).then(|| words.join(" "))
            };
            if !c.eat(b'<') {
                return Err(err("text between display name and <"));
            }
            let uri = c.take_until(b'>').ok_or_else(|| err("missing >"))?;
            c.eat(b'>');
            check_uri(uri).map_err(&err)?;
            let params = parse_params(&mut c, "name-addr")?;
            Ok(NameAddr {
                display,
                uri: uri.to_string(),
                params,
            })
        } else {
            let uri = trim_wsp(c.take_until(b';').unwrap_or(s));
            check_uri(uri).map_err(&err)?;
            if uri.contains(['?', ',']) {
                return Err(err("an addr-spec with `?` or `,` must be enclosed in <>"));
            }
            c = Cursor::new(s.get(s.find(';').unwrap_or(s.len())..).unwrap_or(""));
            let params = parse_params(&mut c, "name-addr")?;
            Ok(NameAddr {
                display: None,
                uri: uri.to_string(),
                params,
            })
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    pub fn param(&self, n: &str) -> Option<Option<&str>> {
        find_param(&self.params, n)
    }

    /// Sets (or replaces) a header parameter such as `tag`.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

/// A URI inside a header: `scheme:` followed by non-space characters.
fn check_uri(uri: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err("URI without scheme");
    };
    let mut sb = scheme.bytes();
    let scheme_ok = sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        && sb.all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    if !scheme_ok || rest.is_empty() {
        return Err("bad URI");
    }
    if uri
        .bytes()
        .any(|b| b <= 0x20 || b == 0x7f || b == b'<' || b == b'"')
    {
        return Err("whitespace or invalid character inside URI");
    }
    Ok(())
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{} ", quote(d))?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// `CSeq: 1*DIGIT LWS Method`; the number must be below 2^31.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let err = || ParseError::invalid("CSeq", format!("{:?}", snippet(s)));
        let mut c = Cursor::new(s);
        c.skip_ws();
        let num = c.take_while(|b| b.is_ascii_digit());
        let seq = parse_digits(num)
            .filter(|&n| n < (1 << 31))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(err)?;
        if !c.skip_ws() {
            return Err(err());
        }
        let method = c.take_while(is_token_char);
        c.skip_ws();
        if method.is_empty() || !c.at_end() {
            return Err(err());
        }
        Ok(CSeq {
            seq,
            method: Method::parse(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Splits a header value at commas that are outside quoted strings and
/// `<…>`; items are trimmed and empty items dropped.
pub fn split_list(value: &str) -> Vec<&str> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut angle = false;
    fn push<'a>(value: &'a str, from: usize, to: usize, out: &mut Vec<&'a str>) {
        if let Some(item) = value.get(from..to) {
            let item = trim_wsp(item);
            if !item.is_empty() {
                out.push(item);
            }
        }
    }
    while let Some(&x) = b.get(i) {
        match x {
            b'"' => {
                // an unterminated quote swallows the rest
                i += quoted_end(b.get(i..).unwrap_or(&[])).unwrap_or(b.len() - i);
                continue;
            }
            b'<' => angle = true,
            b'>' => angle = false,
            b',' if !angle => {
                push(value, start, i, &mut out);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(value, start, b.len(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_basic_and_ipv6() {
        let v = Via::parse(
            "SIP/2.0/tcp [2001:db8::1]:5070;branch=z9hG4bK77;rport;received=2001:db8::9",
        )
        .unwrap();
        assert_eq!(v.protocol, "SIP/2.0/TCP");
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bK77"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("2001:db8::9"));
        assert_eq!(v.param("BRANCH"), Some(Some("z9hG4bK77")));
        assert_eq!(v.param("maddr"), None);
        assert_eq!(
            v.to_string(),
            "SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK77;rport;received=2001:db8::9"
        );
        let v = Via::parse("SIP/2.0/UDP 1.2.3.4;rport=5062").unwrap();
        assert_eq!(v.rport(), Some(Some(5062)));
        assert_eq!(v.port, None);
    }

    #[test]
    fn via_lws() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skdjuw").unwrap();
        assert_eq!(v.protocol, "SIP/2.0/UDP");
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(v.host, "spindle.example.com");
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn via_rejects() {
        for bad in [
            "",
            "SIP/2.0/TCP",
            "SIP/2.0/TCP ",
            "SIP/2.0 host",
            "SIP/2.0/TCP host:99999",
            "SIP/2.0/TCP host:",
            "SIP/2.0/TCP [2001:db8::1",
            "SIP/2.0/TCP host;;",
            "SIP/2.0/TCP host;branch=",
            "SIP/2.0/TCP host;rport=abc",
            "SIP/2.0/TCP host junk",
            ";;",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n =
            NameAddr::parse("\"Doe, John\" <sip:john@example.com;transport=tcp>;tag=abc").unwrap();
        assert_eq!(n.display.as_deref(), Some("Doe, John"));
        assert_eq!(n.uri, "sip:john@example.com;transport=tcp");
        assert_eq!(n.tag(), Some("abc"));
        assert_eq!(
            n.to_string(),
            "\"Doe, John\" <sip:john@example.com;transport=tcp>;tag=abc"
        );
        let n = NameAddr::parse("sip:john@example.com;tag=abc").unwrap();
        assert_eq!(n.uri, "sip:john@example.com");
        assert_eq!(n.tag(), Some("abc"));
        assert_eq!(n.to_string(), "<sip:john@example.com>;tag=abc");
        let n = NameAddr::parse("José Núñez <sip:j@example.com>").unwrap();
        assert_eq!(n.display.as_deref(), Some("José Núñez"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("<sip:[2001:db8::1]:5070;lr>").unwrap();
        assert_eq!(n.uri, "sip:[2001:db8::1]:5070;lr");
        assert_eq!(n.param("lr"), None);
        let n = NameAddr::parse(r#""J Rosenberg \\\"" <sip:jdrosen@example.com> ; tag = 98asjd8"#)
            .unwrap();
        assert_eq!(n.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(n.tag(), Some("98asjd8"));
        let mut n = NameAddr::parse("<tel:+15551234567>").unwrap();
        n.set_param("tag", Some("x"));
        assert_eq!(n.to_string(), "<tel:+15551234567>;tag=x");
    }

    #[test]
    fn name_addr_rejects() {
        for bad in [
            "",
            "\"unterminated <sip:a@b>",
            "Bell, Alexander <sip:a@b>",
            "< sip:a@b >",
            "<sip:a@b",
            "<sip:a@b>;;",
            "sip:a@b?Route=x",
            "nouri",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse("0009\t INVITE").unwrap();
        assert_eq!(c.seq, 9);
        assert_eq!(c.method, Method::Invite);
        assert_eq!(c.to_string(), "9 INVITE");
        for bad in [
            "",
            "1",
            "INVITE",
            "1INVITE",
            "-1 INVITE",
            "2147483648 INVITE",
            "1 INVITE x",
            "36893488147419103232 INVITE",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(CSeq::parse("2147483647 ACK").unwrap().seq, 2147483647);
    }

    #[test]
    fn split() {
        assert_eq!(
            split_list(r#" "a, b" <sip:x,y@h>;p=1 , <sip:z> ,, "#),
            vec![r#""a, b" <sip:x,y@h>;p=1"#, "<sip:z>"]
        );
        assert_eq!(
            split_list("SIP/2.0/TCP a;branch=1,SIP/2.0/TCP b"),
            vec!["SIP/2.0/TCP a;branch=1", "SIP/2.0/TCP b"]
        );
        assert_eq!(split_list("\"unterminated, x"), vec!["\"unterminated, x"]);
        assert!(split_list("").is_empty());
        assert_eq!(split_list(";;,;,,"), vec![";;", ";"]);
    }
}
