//! The header block of a message as raw bytes: where it ends, its physical
//! lines, and its Content-Length — what the stream framer needs before a
//! message is parsed, and what the parser itself builds on.

use super::{
    error::ParseError,
    names::names_equal,
    text::{is_wsp, parse_digits, snippet, trim_wsp},
};

/// Index just past the empty line that ends the header block (CRLF CRLF, or
/// leniently LF LF), searching from `from`.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let off = buf.get(i..)?.iter().position(|&b| b == b'\n')?;
        let nl = i + off;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
}

/// Physical lines of `buf` as (content_start, content_end, next_line_start);
/// the terminator is CRLF or LF.
pub(crate) fn lines(buf: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let start = pos;
        let rest = buf.get(start..)?;
        let (end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(off) => {
                let nl = start + off;
                let end = if nl > start && buf.get(nl - 1) == Some(&b'\r') {
                    nl - 1
                } else {
                    nl
                };
                (end, nl + 1)
            }
            None => (buf.len(), buf.len()),
        };
        pos = next;
        Some((start, end, next))
    })
}

/// Parses a Content-Length value: `1*DIGIT`.
pub(crate) fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    parse_digits(v)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| ParseError::ContentLength(format!("{:?} is not a number", snippet(v))))
}

/// Content-Length from a raw header block without fully parsing it (used by
/// the stream framer). `Ok(None)` when absent.
pub(crate) fn scan_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    let mut current: Option<Vec<u8>> = None;
    let finish = |v: Option<Vec<u8>>, found: &mut Option<usize>| -> Result<(), ParseError> {
        if let Some(v) = v {
            let s = String::from_utf8_lossy(&v);
            let n = parse_content_length(trim_wsp(&s))?;
            if found.is_some_and(|f| f != n) {
                return Err(ParseError::ContentLength(
                    "conflicting Content-Length values".into(),
                ));
            }
            *found = Some(n);
        }
        Ok(())
    };
    for (i, (s, e, _)) in lines(head).enumerate() {
        let line = head.get(s..e).unwrap_or(&[]);
        if i == 0 {
            continue;
        }
        if line.first().is_some_and(|&b| is_wsp(b)) {
            if let Some(v) = current.as_mut() {
                v.push(b' ');
                v.extend_from_slice(line);
            }
            continue;
        }
        finish(current.take(), &mut found)?;
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(line.get(..colon).unwrap_or(&[]));
            if names_equal(trim_wsp(&name), "content-length") {
                current = Some(line.get(colon + 1..).unwrap_or(&[]).to_vec());
            }
        }
    }
    finish(current.take(), &mut found)?;
    Ok(found)
}
