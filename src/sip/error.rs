//! The one error type of the SIP layer: what is wrong with a message or a
//! header value, in words a log line (or a 400's reason) can carry.

/// Errors from parsing SIP messages and header values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("header block is not terminated by an empty line")]
    Incomplete,
    #[error("malformed start line: {0}")]
    StartLine(String),
    #[error("unsupported protocol version {0:?} (only SIP/2.0)")]
    Version(String),
    #[error("invalid status code {0:?}")]
    StatusCode(String),
    #[error("malformed header line: {0}")]
    HeaderLine(String),
    #[error("too many header fields (limit {0})")]
    TooManyHeaders(usize),
    #[error("line too long (limit {0} bytes)")]
    LineTooLong(usize),
    #[error("invalid Content-Length: {0}")]
    ContentLength(String),
    #[error("body truncated: Content-Length is {expected} but only {available} bytes follow")]
    Truncated { expected: usize, available: usize },
    #[error("missing mandatory header field {0}")]
    MissingHeader(&'static str),
    #[error("header field {0} appears more than once")]
    DuplicateHeader(&'static str),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

impl ParseError {
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        ParseError::Invalid {
            what,
            detail: detail.into(),
        }
    }
}
