//! A small, strict-enough SIP message model for assertions, and a minimal
//! SIP user agent over any byte stream (plain TCP or TLS) for the cases SIPp
//! cannot cover (the Debian SIPp build has no TLS).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A parsed SIP message: start line, headers in order (names as written),
/// body bytes (exactly Content-Length of them when that header is present).
#[derive(Clone, Debug)]
pub struct Msg {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Compact header forms (RFC 3261 §7.3.3 and friends).
fn long_name(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    match n.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "k" => "supported",
        "s" => "subject",
        "e" => "content-encoding",
        _ => return n,
    }
    .to_owned()
}

impl Msg {
    pub fn parse(raw: &[u8]) -> Option<Msg> {
        let split = find(raw, b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| find(raw, b"\n\n").map(|i| (i, 2)))?;
        let head = std::str::from_utf8(&raw[..split.0]).ok()?;
        let mut body = raw[split.0 + split.1..].to_vec();
        let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
        let start = lines.next()?.to_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // folded continuation
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            let (n, v) = line.split_once(':')?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let m = Msg {
            start,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = m
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            body.truncate(len);
        }
        Some(Msg { body, ..m })
    }

    pub fn text(s: &str) -> Msg {
        Msg::parse(s.as_bytes()).unwrap_or_else(|| panic!("not a SIP message: {s:?}"))
    }

    /// `INVITE` for a request, None for a response.
    pub fn method(&self) -> Option<&str> {
        if self.start.starts_with("SIP/2.0") {
            None
        } else {
            self.start.split_whitespace().next()
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        self.method()?;
        self.start.split_whitespace().nth(1)
    }

    pub fn status(&self) -> Option<u16> {
        let mut it = self.start.split_whitespace();
        if it.next()? != "SIP/2.0" {
            return None;
        }
        it.next()?.parse().ok()
    }

    /// First value of a header (compact forms understood, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let want = long_name(name);
        self.headers
            .iter()
            .find(|(n, _)| long_name(n) == want)
            .map(|(_, v)| v.as_str())
    }

    /// Every header line with this name, in order.
    pub fn header_lines(&self, name: &str) -> Vec<&str> {
        let want = long_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| long_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every value of a comma-listable header (Via, Route, Record-Route),
    /// whether written on one line or many.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.header_lines(name)
            .into_iter()
            .flat_map(split_commas)
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn call_id(&self) -> &str {
        self.header("call-id").unwrap_or("")
    }

    /// CSeq method, e.g. `INVITE` of `102 INVITE`.
    pub fn cseq_method(&self) -> &str {
        self.header("cseq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("")
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.start.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Splits a header value on commas that are not inside `<...>` or quotes.
pub fn split_commas(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_owned());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// The URI inside a name-addr (`"x" <sip:a@b>;tag=1` → `sip:a@b`) or a bare
/// addr-spec (parameters after `;` belong to the header then, not the URI).
pub fn uri_of(v: &str) -> String {
    if let (Some(s), Some(e)) = (v.find('<'), v.find('>')) {
        v[s + 1..e].to_owned()
    } else {
        v.split(';').next().unwrap_or(v).trim().to_owned()
    }
}

/// Host part of a SIP URI (`sip:+91@host:5070;transport=tcp` → `host`).
pub fn uri_host(uri: &str) -> String {
    let rest = uri.trim_start_matches("sips:").trim_start_matches("sip:");
    let rest = rest.split(';').next().unwrap_or(rest);
    let hostport = rest.rsplit('@').next().unwrap_or(rest);
    if let Some(r) = hostport.strip_prefix('[') {
        return r.split(']').next().unwrap_or("").to_owned();
    }
    hostport.split(':').next().unwrap_or("").to_owned()
}

/// User part of a SIP URI.
pub fn uri_user(uri: &str) -> String {
    let rest = uri.trim_start_matches("sips:").trim_start_matches("sip:");
    match rest.split_once('@') {
        Some((u, _)) => u.to_owned(),
        None => String::new(),
    }
}

/// Value of a `;name=value` parameter in a header value or URI.
pub fn param<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    v.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then_some(val.trim())
    })
}

pub fn has_param(v: &str, name: &str) -> bool {
    v.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(name)
    })
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

// ---------------------------------------------------------------------------
// Stream framing and a minimal UA
// ---------------------------------------------------------------------------

/// SIP over a byte stream: frames messages by Content-Length.
pub struct Conn<S> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, m: &Msg) -> std::io::Result<()> {
        self.stream.write_all(&m.to_bytes()).await?;
        self.stream.flush().await
    }

    pub async fn send_raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b).await?;
        self.stream.flush().await
    }

    /// Next message, or None on EOF / timeout.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Msg> {
        tokio::time::timeout(timeout, self.recv_inner())
            .await
            .ok()
            .flatten()
    }

    async fn recv_inner(&mut self) -> Option<Msg> {
        loop {
            // skip keep-alive CRLFs
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len = head
                    .split("\r\n")
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        (long_name(n) == "content-length").then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0usize);
                let total = end + 4 + len;
                if self.buf.len() >= total {
                    let raw: Vec<u8> = self.buf.drain(..total).collect();
                    return Msg::parse(&raw);
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Builds a response to `req` (Via, From, To, Call-ID, CSeq copied; the
/// Record-Route copied into dialog-creating responses).
pub fn response(req: &Msg, code: u16, reason: &str, to_tag: Option<&str>) -> Msg {
    let mut headers = Vec::new();
    for v in req.header_lines("via") {
        headers.push(("Via".to_owned(), v.to_owned()));
    }
    if (101..300).contains(&code) && req.method() == Some("INVITE") {
        for rr in req.header_lines("record-route") {
            headers.push(("Record-Route".to_owned(), rr.to_owned()));
        }
    }
    headers.push(("From".into(), req.header("from").unwrap_or("").into()));
    let mut to = req.header("to").unwrap_or("").to_owned();
    if let Some(tag) = to_tag
        && param(&to, "tag").is_none()
    {
        to.push_str(&format!(";tag={tag}"));
    }
    headers.push(("To".into(), to));
    headers.push(("Call-ID".into(), req.call_id().into()));
    headers.push(("CSeq".into(), req.header("cseq").unwrap_or("").into()));
    headers.push(("Content-Length".into(), "0".into()));
    Msg {
        start: format!("SIP/2.0 {code} {reason}"),
        headers,
        body: Vec::new(),
    }
}

pub fn with_body(mut m: Msg, content_type: &str, body: &[u8]) -> Msg {
    m.headers.retain(|(n, _)| long_name(n) != "content-length");
    m.headers.push(("Content-Type".into(), content_type.into()));
    m.headers
        .push(("Content-Length".into(), body.len().to_string()));
    m.body = body.to_vec();
    m
}

pub const SDP_G711: &str = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=vsip-raw\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n";

/// Everything a [`call`] saw.
#[derive(Debug, Default)]
pub struct CallOutcome {
    pub responses: Vec<Msg>,
    pub final_status: Option<u16>,
    pub bye_status: Option<u16>,
    pub setup: Duration,
}

/// Places one call over `conn` (already connected to the proxy): INVITE,
/// responses until final, then ACK + BYE along the route set when answered,
/// or the ACK for a failure. `transport` is `TCP` or `TLS` (Via token).
pub async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    local: std::net::SocketAddr,
    target_uri: &str,
    extra_headers: &[(&str, &str)],
    transport: &str,
    timeout: Duration,
) -> CallOutcome {
    let mut out = CallOutcome::default();
    let n: u64 = rand::random::<u32>() as u64;
    let call_id = format!("raw-{n}@{}", local.ip());
    let tag = format!("t{n}");
    let branch = format!("z9hG4bK-raw-{n}-1");
    let host = local.ip();
    let port = local.port();
    let tparam = transport.to_ascii_lowercase();
    let from = format!("\"+919876500000\" <sip:+919876500000@{host}>;tag={tag}");
    let to = format!("<{target_uri}>");
    let contact = format!("<sip:+919876500000@{host}:{port};transport={tparam}>");
    let mut headers: Vec<(String, String)> = vec![
        (
            "Via".into(),
            format!("SIP/2.0/{transport} {host}:{port};branch={branch}"),
        ),
        ("Max-Forwards".into(), "70".into()),
        ("From".into(), from.clone()),
        ("To".into(), to.clone()),
        ("Call-ID".into(), call_id.clone()),
        ("CSeq".into(), "1 INVITE".into()),
        ("Contact".into(), contact.clone()),
    ];
    for (k, v) in extra_headers {
        headers.push((k.to_string(), v.to_string()));
    }
    let invite = with_body(
        Msg {
            start: format!("INVITE {target_uri} SIP/2.0"),
            headers,
            body: Vec::new(),
        },
        "application/sdp",
        SDP_G711.as_bytes(),
    );
    let started = std::time::Instant::now();
    if conn.send(&invite).await.is_err() {
        return out;
    }
    let final_resp = loop {
        let Some(m) = conn.recv(timeout).await else {
            return out;
        };
        let code = m.status().unwrap_or(0);
        out.responses.push(m.clone());
        if code >= 200 {
            break m;
        }
    };
    out.setup = started.elapsed();
    let code = final_resp.status().unwrap();
    out.final_status = Some(code);
    let to_final = final_resp.header("to").unwrap_or(&to).to_owned();
    if code >= 300 {
        let ack = Msg {
            start: format!("ACK {target_uri} SIP/2.0"),
            headers: vec![
                (
                    "Via".into(),
                    format!("SIP/2.0/{transport} {host}:{port};branch={branch}"),
                ),
                ("Max-Forwards".into(), "70".into()),
                ("From".into(), from.clone()),
                ("To".into(), to_final),
                ("Call-ID".into(), call_id.clone()),
                ("CSeq".into(), "1 ACK".into()),
                ("Content-Length".into(), "0".into()),
            ],
            body: Vec::new(),
        };
        let _ = conn.send(&ack).await;
        return out;
    }
    // 2xx: route set = Record-Route reversed; remote target = Contact.
    let mut routes = final_resp.header_values("record-route");
    routes.reverse();
    let remote_target = final_resp
        .header("contact")
        .map(uri_of)
        .unwrap_or_else(|| target_uri.to_owned());
    let in_dialog = |method: &str, cseq: u32, branch: String| {
        let mut h = vec![(
            "Via".to_owned(),
            format!("SIP/2.0/{transport} {host}:{port};branch={branch}"),
        )];
        for r in &routes {
            h.push(("Route".to_owned(), r.clone()));
        }
        h.extend([
            ("Max-Forwards".to_owned(), "70".to_owned()),
            ("From".to_owned(), from.clone()),
            ("To".to_owned(), to_final.clone()),
            ("Call-ID".to_owned(), call_id.clone()),
            ("CSeq".to_owned(), format!("{cseq} {method}")),
            ("Content-Length".to_owned(), "0".to_owned()),
        ]);
        Msg {
            start: format!("{method} {remote_target} SIP/2.0"),
            headers: h,
            body: Vec::new(),
        }
    };
    let _ = conn
        .send(&in_dialog("ACK", 1, format!("z9hG4bK-raw-{n}-2")))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = conn
        .send(&in_dialog("BYE", 2, format!("z9hG4bK-raw-{n}-3")))
        .await;
    while let Some(m) = conn.recv(timeout).await {
        if m.cseq_method() == "BYE" && m.status().unwrap_or(0) >= 200 {
            out.bye_status = m.status();
            break;
        }
    }
    out
}
