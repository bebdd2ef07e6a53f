//! Stream framing for SIP over TCP/TLS (RFC 3261 §18.3): a message is the
//! header block up to the first empty line plus exactly Content-Length body
//! bytes. CRLFCRLF between messages is a keep-alive ping (RFC 5626 §4.4.1);
//! a lone CRLF (a pong, or stray padding) is skipped.
//!
//! The framer only finds message boundaries; it does not validate headers,
//! so a message with a malformed header still comes out whole and the proxy
//! can answer it with `400` without losing the stream.

use bytes::{Bytes, BytesMut};

use super::{
    error::ParseError,
    head::{find_head_end, scan_content_length},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete message (header block + body).
    Message(Bytes),
    /// A bare CRLFCRLF ping; the caller answers with a single CRLF.
    KeepAlive,
}

/// Framing failures. After any of them the stream is unusable (the framer
/// keeps failing); `head` is the header block so the caller can still build
/// a `400`/`513` response before closing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `head`: the header block, or its complete lines when its end was not seen.
    #[error("message exceeds the maximum size")]
    Oversize { head: Option<Bytes> },
    #[error("message on a stream transport without Content-Length")]
    MissingContentLength { head: Bytes },
    #[error("invalid Content-Length")]
    BadContentLength { head: Bytes },
    #[error("malformed stream: {0}")]
    Malformed(String),
}

pub struct Framer {
    buf: BytesMut,
    max: usize,
    /// Bytes of `buf` already searched for the end of the header block.
    scanned: usize,
    failed: bool,
}

impl Framer {
    /// `max_message`: largest accepted message (header block + body), bytes.
    pub fn new(max_message: usize) -> Self {
        Framer {
            buf: BytesMut::with_capacity(max_message.clamp(1024, 64 * 1024)),
            max: max_message,
            scanned: 0,
            failed: false,
        }
    }

    /// Read socket data into this buffer, then call [`Framer::next_frame`]
    /// until it returns `Ok(None)`.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more data is needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.failed {
            return Err(FrameError::Malformed(
                "stream already failed framing".into(),
            ));
        }
        let r = self.next_inner();
        if r.is_err() {
            self.failed = true;
            self.buf.clear();
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Frame>, FrameError> {
        // Keep-alives and stray line ends before a message.
        loop {
            match (self.buf.first(), self.buf.get(1)) {
                (Some(b'\r'), Some(b'\n')) => {
                    match (self.buf.get(2), self.buf.get(3)) {
                        (Some(b'\r'), Some(b'\n')) => {
                            let _ = self.buf.split_to(4);
                            self.scanned = 0;
                            return Ok(Some(Frame::KeepAlive));
                        }
                        (None, _) | (Some(b'\r'), None) => return Ok(None),
                        _ => {
                            // lone CRLF (pong): skip
                            let _ = self.buf.split_to(2);
                            self.scanned = 0;
                        }
                    }
                }
                (Some(b'\r'), None) => return Ok(None),
                (Some(b'\n'), _) => {
                    let _ = self.buf.split_to(1);
                    self.scanned = 0;
                }
                _ => break,
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let limit = self.buf.len().min(self.max.saturating_add(1));
        let window = self.buf.get(..limit).unwrap_or(&[]);
        let Some(head_end) = find_head_end(window, self.scanned.saturating_sub(3)) else {
            if self.buf.len() > self.max {
                // The complete header lines seen so far: enough for a 513 when
                // Via, From, To, Call-ID and CSeq came before the padding.
                let head = window
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map(|nl| Bytes::copy_from_slice(&window[..=nl]));
                return Err(FrameError::Oversize { head });
            }
            self.scanned = self.buf.len();
            return Ok(None);
        };
        let head = Bytes::copy_from_slice(self.buf.get(..head_end).unwrap_or(&[]));
        if head_end > self.max {
            return Err(FrameError::Oversize { head: Some(head) });
        }
        let len = match scan_content_length(&head) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(FrameError::MissingContentLength { head }),
            Err(ParseError::ContentLength(_)) => return Err(FrameError::BadContentLength { head }),
            Err(e) => return Err(FrameError::Malformed(e.to_string())),
        };
        let total = match head_end.checked_add(len) {
            Some(t) if t <= self.max => t,
            _ => return Err(FrameError::Oversize { head: Some(head) }),
        };
        if self.buf.len() < total {
            self.scanned = head_end; // keep the found position; cheap rescan
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let msg = self.buf.split_to(total).freeze();
        self.scanned = 0;
        Ok(Some(Frame::Message(msg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    const M1: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 3\r\n\r\nabc";
    const M2: &[u8] = b"BYE sip:a@b SIP/2.0\r\nl: 0\r\n\r\n";

    fn feed(f: &mut Framer, data: &[u8]) -> Vec<Frame> {
        f.buffer_mut().extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(fr) = f.next_frame().unwrap() {
            out.push(fr);
        }
        out
    }

    #[test]
    fn pipelined_and_keepalives() {
        let mut f = Framer::new(4096);
        let mut data = b"\r\n\r\n".to_vec();
        data.extend_from_slice(M1);
        data.extend_from_slice(b"\r\n\r\n");
        data.extend_from_slice(M2);
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(M1);
        let frames = feed(&mut f, &data);
        assert_eq!(
            frames,
            vec![
                Frame::KeepAlive,
                Frame::Message(Bytes::from_static(M1)),
                Frame::KeepAlive,
                Frame::Message(Bytes::from_static(M2)),
                Frame::Message(Bytes::from_static(M1)),
            ]
        );
        assert_eq!(f.buffered(), 0);
        let m = Message::parse(match &frames[1] {
            Frame::Message(b) => b,
            _ => unreachable!(),
        })
        .unwrap();
        assert_eq!(&m.body[..], b"abc");
    }

    #[test]
    fn split_at_every_byte() {
        let mut data = M1.to_vec();
        data.extend_from_slice(b"\r\n\r\n");
        data.extend_from_slice(M2);
        for cut in 0..=data.len() {
            let mut f = Framer::new(4096);
            let mut frames = feed(&mut f, &data[..cut]);
            frames.extend(feed(&mut f, &data[cut..]));
            assert_eq!(frames.len(), 3, "cut at {cut}");
            assert_eq!(frames[0], Frame::Message(Bytes::from_static(M1)));
            assert_eq!(frames[2], Frame::Message(Bytes::from_static(M2)));
        }
        // one byte at a time
        let mut f = Framer::new(4096);
        let mut frames = Vec::new();
        for b in &data {
            frames.extend(feed(&mut f, std::slice::from_ref(b)));
        }
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn oversize_without_end_of_headers_carries_the_complete_lines() {
        let mut f = Framer::new(64);
        f.buffer_mut()
            .extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        f.buffer_mut().extend_from_slice(&[b'X'; 64]);
        assert_eq!(
            f.next_frame(),
            Err(FrameError::Oversize {
                head: Some(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\n"))
            })
        );
        assert!(f.next_frame().is_err(), "stays failed");
        // Not one complete line: nothing to answer with.
        let mut f = Framer::new(64);
        f.buffer_mut().extend_from_slice(&[b'X'; 65]);
        assert_eq!(f.next_frame(), Err(FrameError::Oversize { head: None }));
    }

    #[test]
    fn oversize_content_length_carries_head() {
        let mut f = Framer::new(100);
        f.buffer_mut()
            .extend_from_slice(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        match f.next_frame() {
            Err(FrameError::Oversize { head: Some(h) }) => assert!(h.ends_with(b"\r\n\r\n")),
            other => panic!("{other:?}"),
        }
        let mut f = Framer::new(100);
        f.buffer_mut().extend_from_slice(
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
        );
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::BadContentLength { .. })
        ));
    }

    #[test]
    fn missing_and_bad_content_length() {
        let mut f = Framer::new(4096);
        f.buffer_mut()
            .extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        match f.next_frame() {
            Err(FrameError::MissingContentLength { head }) => assert!(head.starts_with(b"OPTIONS")),
            other => panic!("{other:?}"),
        }
        for cl in ["-1", "abc", "", "1 2"] {
            let mut f = Framer::new(4096);
            f.buffer_mut().extend_from_slice(
                format!("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: {cl}\r\n\r\n").as_bytes(),
            );
            assert!(
                matches!(f.next_frame(), Err(FrameError::BadContentLength { .. })),
                "{cl:?}"
            );
        }
        let mut f = Framer::new(4096);
        f.buffer_mut()
            .extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nxx");
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::BadContentLength { .. })
        ));
    }

    #[test]
    fn folded_content_length_and_compact() {
        let mut f = Framer::new(4096);
        let frames = feed(
            &mut f,
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nxyOPTIONS sip:a@b SIP/2.0\r\nL : 0\r\n\r\n",
        );
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn exact_max_is_accepted() {
        let mut f = Framer::new(M1.len());
        assert_eq!(
            feed(&mut f, M1),
            vec![Frame::Message(Bytes::from_static(M1))]
        );
        let mut f = Framer::new(M1.len() - 1);
        f.buffer_mut().extend_from_slice(M1);
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::Oversize { head: Some(_) })
        ));
    }
}
