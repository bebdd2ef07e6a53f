//! Header names: compact forms (`v` = `Via`) and case-insensitive comparison,
//! shared by the parser, the framer's head scan and the proxy's header edits.

use std::borrow::Cow;

/// Compact header forms (RFC 3261 §7.3.3 and extensions).
fn expand_compact(name: &str) -> Option<&'static str> {
    let b = match name.as_bytes() {
        [b] => b.to_ascii_lowercase(),
        _ => return None,
    };
    Some(match b {
        b'v' => "via",
        b'f' => "from",
        b't' => "to",
        b'i' => "call-id",
        b'l' => "content-length",
        b'm' => "contact",
        b'c' => "content-type",
        b'k' => "supported",
        b'e' => "content-encoding",
        b's' => "subject",
        b'o' => "event",
        b'u' => "allow-events",
        b'r' => "refer-to",
        b'b' => "referred-by",
        b'x' => "session-expires",
        b'a' => "accept-contact",
        b'j' => "reject-contact",
        b'd' => "request-disposition",
        b'y' => "identity",
        _ => return None,
    })
}

/// Lowercase full header name; compact forms are expanded (`v` → `via`).
pub fn canonical_name(name: &str) -> Cow<'_, str> {
    if let Some(full) = expand_compact(name) {
        return Cow::Borrowed(full);
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

pub(crate) fn names_equal(a: &str, b: &str) -> bool {
    let a = expand_compact(a).unwrap_or(a);
    let b = expand_compact(b).unwrap_or(b);
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("v"), "via");
        assert_eq!(canonical_name("I"), "call-id");
        assert_eq!(canonical_name("Record-Route"), "record-route");
        assert_eq!(canonical_name("x-custom"), "x-custom");
        assert_eq!(canonical_name("Y"), "identity");
        assert!(names_equal("l", "Content-Length"));
        assert!(names_equal("content-length", "L"));
        assert!(!names_equal("Via", "v-ia"));
    }
}
