//! Small lexical helpers shared by the SIP parsers (RFC 3261 §25.1).
//!
//! Everything here works on byte offsets of ASCII delimiters and slices with
//! `str::get`, so no input can make it panic.

use super::error::ParseError;

/// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn trim_wsp(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Characters allowed in a `gen-value` that is not a quoted string: token,
/// host (incl. IPv6 references and bare IPv6 for `received`).
pub(crate) fn is_value_char(b: u8) -> bool {
    is_token_char(b) || b == b':' || b == b'[' || b == b']'
}

/// Shortens untrusted text for error messages.
pub(crate) fn snippet(s: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Given bytes starting with `"`, the index just past the closing quote,
/// honouring `\` quoted-pairs. `None` when unterminated.
pub(crate) fn quoted_end(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

/// The content of a quoted string (with quotes) with quoted-pairs resolved.
pub(crate) fn unquote(s: &str) -> String {
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes `s` as a SIP quoted-string, escaping `"`, `\` and control
/// characters; CR and LF (which cannot be escaped) become spaces.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() && c != '\t' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A cursor over a header value. Positions always sit on char boundaries
/// because it only stops at ASCII delimiters; slicing uses `get` anyway.
pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Skips spaces and tabs; true if any were skipped.
    pub(crate) fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_wsp) {
            self.pos += 1;
        }
        self.pos > start
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes ASCII bytes matching `f`.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii() && f(b)) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    /// Consumes a quoted string (returned with its quotes).
    pub(crate) fn take_quoted(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let end = quoted_end(rest.as_bytes())?;
        let q = rest.get(..end)?;
        self.pos += end;
        Some(q)
    }

    /// Consumes up to (not including) the first ASCII byte `b`; `None` if absent.
    pub(crate) fn take_until(&mut self, b: u8) -> Option<&'a str> {
        let rest = self.rest();
        let i = rest.bytes().position(|x| x == b)?;
        let out = rest.get(..i)?;
        self.pos += i;
        Some(out)
    }
}

/// Parses `*( SWS ";" SWS name [ SWS "=" SWS value ] )` up to the end of the
/// cursor (trailing whitespace allowed). Values are kept raw (quoted strings
/// keep their quotes).
pub(crate) fn parse_params(
    c: &mut Cursor<'_>,
    what: &'static str,
) -> Result<Vec<(String, Option<String>)>, ParseError> {
    let mut params = Vec::new();
    loop {
        c.skip_ws();
        if c.at_end() {
            return Ok(params);
        }
        if !c.eat(b';') {
            return Err(ParseError::invalid(
                what,
                format!("unexpected text {:?}", snippet(c.rest())),
            ));
        }
        c.skip_ws();
        let name = c.take_while(is_token_char);
        if name.is_empty() {
            return Err(ParseError::invalid(what, "empty parameter name"));
        }
        c.skip_ws();
        if c.eat(b'=') {
            c.skip_ws();
            let value = if c.peek() == Some(b'"') {
                c.take_quoted().ok_or_else(|| {
                    ParseError::invalid(what, format!("unterminated quoted value for {name}"))
                })?
            } else {
                c.take_while(is_value_char)
            };
            if value.is_empty() {
                return Err(ParseError::invalid(
                    what,
                    format!("parameter {name} has an empty value"),
                ));
            }
            params.push((name.to_string(), Some(value.to_string())));
        } else {
            params.push((name.to_string(), None));
        }
    }
}

/// Case-insensitive parameter lookup.
pub(crate) fn find_param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

pub(crate) fn write_params(
    f: &mut std::fmt::Formatter<'_>,
    params: &[(String, Option<String>)],
) -> std::fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

/// Parses `1*DIGIT` strictly (no sign, no spaces) into a u64.
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok()
}

/// Validates a host: `[IPv6]`, IPv4 or a hostname (letters, digits, `-`,
/// `.`, and leniently `_`).
pub(crate) fn valid_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Reads a host (bracketed IPv6 or name/IPv4) at the cursor.
pub(crate) fn take_host<'a>(c: &mut Cursor<'a>) -> Option<&'a str> {
    let rest = c.rest();
    if rest.starts_with('[') {
        let end = rest.find(']')?;
        let h = rest.get(..=end)?;
        c.pos += end + 1;
        return Some(h);
    }
    let h = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if h.is_empty() { None } else { Some(h) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_roundtrip() {
        assert_eq!(quoted_end(br#""a\"b" rest"#), Some(6));
        assert_eq!(quoted_end(br#""unterminated"#), None);
        assert_eq!(quoted_end(br#""ends in backslash\"#), None);
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn params() {
        let mut c = Cursor::new(" ; tag = 1 ;lr; q=\"x;y\"  ");
        let p = parse_params(&mut c, "test").unwrap();
        assert_eq!(
            p,
            vec![
                ("tag".into(), Some("1".into())),
                ("lr".into(), None),
                ("q".into(), Some("\"x;y\"".into()))
            ]
        );
        assert!(parse_params(&mut Cursor::new(";;"), "t").is_err());
        assert!(parse_params(&mut Cursor::new(";a="), "t").is_err());
        assert!(parse_params(&mut Cursor::new(";a=\"x"), "t").is_err());
    }

    #[test]
    fn hosts() {
        assert!(valid_host("[2001:db8::1]"));
        assert!(!valid_host("[2001:db8::1"));
        assert!(!valid_host("[zz]"));
        assert!(valid_host("sbc.example.com"));
        assert!(!valid_host("a b"));
        assert!(!valid_host(""));
    }
}
