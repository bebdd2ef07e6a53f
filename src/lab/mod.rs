//! `vsip lab-dns`: a small authoritative DNS server for labs, demos and tests.
//!
//! Serves A, AAAA and CNAME records from a YAML file (re-read when it changes) or, in-process,
//! from [`LabDns::set_records`]. UDP and TCP on the same port. Exact-name match
//! (case-insensitive); CNAMEs inside its own data are followed (the answer carries the CNAME and
//! the target's records); NODATA (NOERROR, empty answer, SOA in authority) when the name exists
//! with other types; NXDOMAIN when the name is unknown; AA set; TTLs as configured. A record may
//! instead carry an action: `servfail` (answer SERVFAIL) or `drop` (never answer), to exercise
//! failure paths.
//!
//! ```yaml
//! records:
//!   - { name: sip.acme.example, type: A, value: 127.0.0.1, ttl: 30 }
//!   - { name: sip.acme.example, type: AAAA, value: "::1", ttl: 30 }
//!   - { name: alias.acme.example, type: CNAME, value: sip.acme.example, ttl: 30 }
//!   - { name: broken.acme.example, type: AAAA, action: servfail }   # or action: drop
//! ```

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, SOA},
    },
};
use serde::Deserialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    task::JoinHandle,
};

/// TTL (and SOA minimum) of negative answers, in seconds.
pub const NEGATIVE_TTL: u32 = 1;
/// How often `lab-dns` checks the records file for changes.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// CNAME hops followed before giving up (loops).
const MAX_CNAME_HOPS: usize = 8;
/// Largest TCP message accepted.
const MAX_TCP_MESSAGE: usize = 65_535;

/// `vsip lab-dns` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LabDnsArgs {
    /// Address to serve on, UDP and TCP (port 0 picks one; the address is logged).
    #[arg(long, default_value = "127.0.0.1:5353")]
    pub listen: SocketAddr,
    /// YAML file with the records; re-read when it changes.
    #[arg(long)]
    pub records: PathBuf,
}

/// A record type the lab server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum LabType {
    A,
    AAAA,
    CNAME,
}

/// What [`LabRecord::servfail`] and [`LabRecord::drop`] accept: a [`LabType`] or its name
/// (`"A"`, `"AAAA"`, `"CNAME"`, any case).
pub trait IntoLabType {
    fn into_lab_type(self) -> LabType;
}

impl IntoLabType for LabType {
    fn into_lab_type(self) -> LabType {
        self
    }
}

/// # Panics
/// On a name other than A, AAAA or CNAME (a test helper's programming error).
impl<S: AsRef<str>> IntoLabType for S {
    fn into_lab_type(self) -> LabType {
        let name = self.as_ref();
        match LabType::from_name(name) {
            Some(t) => t,
            None => panic!("lab DNS record type {name:?}: expected A, AAAA or CNAME"),
        }
    }
}

impl LabType {
    /// `"A"`, `"AAAA"`, `"CNAME"` (any case).
    pub fn from_name(name: &str) -> Option<LabType> {
        match name.trim().to_ascii_uppercase().as_str() {
            "A" => Some(LabType::A),
            "AAAA" => Some(LabType::AAAA),
            "CNAME" => Some(LabType::CNAME),
            _ => None,
        }
    }

    fn matches(self, t: RecordType) -> bool {
        matches!(
            (self, t),
            (LabType::A, RecordType::A)
                | (LabType::AAAA, RecordType::AAAA)
                | (LabType::CNAME, RecordType::CNAME)
        )
    }
}

/// What a record holds or does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Target name, lower-case, without a trailing dot.
    Cname(String),
    /// Queries for this name and type get SERVFAIL.
    ServFail(LabType),
    /// Queries for this name and type are never answered.
    Drop(LabType),
}

/// One entry of the lab's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabRecord {
    /// Lower-case, without a trailing dot.
    pub name: String,
    pub data: LabData,
    pub ttl: u32,
}

fn norm_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl LabRecord {
    pub fn a(name: &str, ip: Ipv4Addr, ttl: u32) -> LabRecord {
        LabRecord {
            name: norm_name(name),
            data: LabData::A(ip),
            ttl,
        }
    }
    pub fn aaaa(name: &str, ip: Ipv6Addr, ttl: u32) -> LabRecord {
        LabRecord {
            name: norm_name(name),
            data: LabData::Aaaa(ip),
            ttl,
        }
    }
    pub fn cname(name: &str, target: &str, ttl: u32) -> LabRecord {
        LabRecord {
            name: norm_name(name),
            data: LabData::Cname(norm_name(target)),
            ttl,
        }
    }
    pub fn servfail(name: &str, rtype: impl IntoLabType) -> LabRecord {
        LabRecord {
            name: norm_name(name),
            data: LabData::ServFail(rtype.into_lab_type()),
            ttl: 0,
        }
    }
    pub fn drop(name: &str, rtype: impl IntoLabType) -> LabRecord {
        LabRecord {
            name: norm_name(name),
            data: LabData::Drop(rtype.into_lab_type()),
            ttl: 0,
        }
    }

    /// The record type it answers (or fails) for.
    pub fn rtype(&self) -> LabType {
        match &self.data {
            LabData::A(_) => LabType::A,
            LabData::Aaaa(_) => LabType::AAAA,
            LabData::Cname(_) => LabType::CNAME,
            LabData::ServFail(t) | LabData::Drop(t) => *t,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsFile {
    #[serde(default)]
    records: Vec<RecordSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordSpec {
    name: String,
    #[serde(rename = "type")]
    rtype: LabType,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    action: Option<Action>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Servfail,
    Drop,
}

/// Default TTL of a record without `ttl`.
pub const DEFAULT_TTL: u32 = 30;

/// Parses the records file format (see the module docs).
pub fn parse_records(yaml: &str) -> anyhow::Result<Vec<LabRecord>> {
    let file: RecordsFile = serde_norway::from_str(yaml).context("invalid records file")?;
    let mut out = Vec::with_capacity(file.records.len());
    for (i, spec) in file.records.into_iter().enumerate() {
        let at = || format!("record {} ({} {:?})", i + 1, spec.name, spec.rtype);
        let name = norm_name(&spec.name);
        if name.is_empty() || Name::from_ascii(format!("{name}.")).is_err() {
            bail!("{}: invalid name", at());
        }
        let ttl = spec.ttl.unwrap_or(DEFAULT_TTL);
        let data = match (spec.action, spec.value.as_deref()) {
            (Some(_), Some(_)) => bail!("{}: give either value or action, not both", at()),
            (Some(Action::Servfail), None) => LabData::ServFail(spec.rtype),
            (Some(Action::Drop), None) => LabData::Drop(spec.rtype),
            (None, None) => bail!("{}: missing value", at()),
            (None, Some(v)) => match spec.rtype {
                LabType::A => LabData::A(
                    v.trim()
                        .parse()
                        .with_context(|| format!("{}: {v:?} is not an IPv4 address", at()))?,
                ),
                LabType::AAAA => LabData::Aaaa(
                    v.trim()
                        .parse()
                        .with_context(|| format!("{}: {v:?} is not an IPv6 address", at()))?,
                ),
                LabType::CNAME => {
                    let target = norm_name(v);
                    if target.is_empty() || Name::from_ascii(format!("{target}.")).is_err() {
                        bail!("{}: {v:?} is not a domain name", at());
                    }
                    LabData::Cname(target)
                }
            },
        };
        let ttl = if matches!(data, LabData::ServFail(_) | LabData::Drop(_)) {
            0
        } else {
            ttl
        };
        out.push(LabRecord { name, data, ttl });
    }
    Ok(out)
}

struct Shared {
    records: ArcSwap<Vec<LabRecord>>,
    queries: AtomicU64,
    /// Answer delay in microseconds (simulates a slow nameserver).
    delay_us: AtomicU64,
}

impl Shared {
    fn new(records: Vec<LabRecord>) -> Shared {
        Shared {
            records: ArcSwap::from_pointee(records),
            queries: AtomicU64::new(0),
            delay_us: AtomicU64::new(0),
        }
    }
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }
}

/// An in-process lab DNS server; stops when dropped.
pub struct LabDns {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LabDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl LabDns {
    /// Binds UDP and TCP on `listen` (port 0: one free port for both) and starts serving (no
    /// records yet: every name is NXDOMAIN).
    pub async fn start(listen: SocketAddr) -> anyhow::Result<LabDns> {
        let (udp, tcp) = bind_pair(listen).await?;
        let addr = udp.local_addr()?;
        let shared = Arc::new(Shared::new(Vec::new()));
        let udp = Arc::new(udp);
        let tasks = vec![
            tokio::spawn(serve_udp(udp, shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared.clone())),
        ];
        Ok(LabDns {
            addr,
            shared,
            tasks,
        })
    }

    /// Where it serves (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the records; the next query sees them.
    pub fn set_records(&self, records: Vec<LabRecord>) {
        self.shared.records.store(Arc::new(records));
    }

    /// Every answer is sent this much later (UDP and TCP); zero by default.
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(us, Ordering::Relaxed);
    }

    /// Queries received so far (UDP and TCP, including dropped ones).
    pub fn queries(&self) -> u64 {
        self.shared.queries.load(Ordering::SeqCst)
    }
}

async fn bind_pair(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    if listen.port() != 0 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding UDP {listen}"))?;
        let tcp = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding TCP {listen}"))?;
        return Ok((udp, tcp));
    }
    let mut last_err = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding UDP {listen}"))?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "no port free for both UDP and TCP on {}: {:?}",
        listen.ip(),
        last_err
    ))
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP-induced errors (e.g. connection refused) are per-packet: keep serving.
                tracing::debug!(error = %e, "lab-dns: UDP receive error");
                continue;
            }
        };
        let Some(response) = handle(&buf[..n], &shared, Transport::Udp) else {
            continue;
        };
        let delay = shared.delay();
        if delay.is_zero() {
            if let Err(e) = socket.send_to(&response, peer).await {
                tracing::debug!(error = %e, %peer, "lab-dns: UDP send error");
            }
        } else {
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(e) = socket.send_to(&response, peer).await {
                    tracing::debug!(error = %e, %peer, "lab-dns: UDP send error");
                }
            });
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_tcp_conn(stream, shared.clone()));
            }
            Err(e) => {
                tracing::debug!(error = %e, "lab-dns: TCP accept error");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_tcp_conn(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_TCP_MESSAGE];
    loop {
        let len = match tokio::time::timeout(Duration::from_secs(30), stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        if len == 0 || len > buf.len() {
            return;
        }
        if stream.read_exact(&mut buf[..len]).await.is_err() {
            return;
        }
        let Some(response) = handle(&buf[..len], &shared, Transport::Tcp) else {
            continue;
        };
        let delay = shared.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Ok(rlen) = u16::try_from(response.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(response.len() + 2);
        out.extend_from_slice(&rlen.to_be_bytes());
        out.extend_from_slice(&response);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// Answers one request; `None` means send nothing (unparseable or `drop`).
fn handle(packet: &[u8], shared: &Shared, transport: Transport) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    shared.queries.fetch_add(1, Ordering::SeqCst);
    let records = shared.records.load();
    let response = answer(&request, &records)?;
    let bytes = response.to_vec().ok()?;
    if transport == Transport::Udp && bytes.len() > usize::from(request.max_payload()) {
        let mut truncated = response.truncate();
        truncated.metadata.id = request.metadata.id;
        return truncated.to_vec().ok();
    }
    Some(bytes)
}

/// Builds the response to `request` from `records`; `None` when a `drop` rule applies.
pub fn answer(request: &Message, records: &[LabRecord]) -> Option<Message> {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = false;
    response.metadata.authoritative = true;
    response.add_queries(request.queries.iter().cloned());

    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        response.metadata.authoritative = false;
        return Some(response);
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        response.metadata.authoritative = false;
        return Some(response);
    };
    if query.query_class() != DNSClass::IN {
        response.metadata.response_code = ResponseCode::Refused;
        response.metadata.authoritative = false;
        return Some(response);
    }
    let qtype = query.query_type();
    let mut owner = query.name().clone();
    let mut key = norm_name(&owner.to_ascii());

    for _ in 0..=MAX_CNAME_HOPS {
        let at_name: Vec<&LabRecord> = records.iter().filter(|r| r.name == key).collect();
        // Failure rules for this name and type come first.
        for r in &at_name {
            match &r.data {
                LabData::Drop(t) if t.matches(qtype) => return None,
                LabData::ServFail(t) if t.matches(qtype) => {
                    response.metadata.response_code = ResponseCode::ServFail;
                    response.metadata.authoritative = false;
                    response.answers.clear();
                    return Some(response);
                }
                _ => {}
            }
        }
        if at_name.is_empty() {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(soa_for(&key));
            return Some(response);
        }
        let mut found = false;
        for r in &at_name {
            let rdata = match (&r.data, qtype) {
                (LabData::A(ip), RecordType::A | RecordType::ANY) => RData::A(A(*ip)),
                (LabData::Aaaa(ip), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(*ip)),
                (LabData::Cname(t), RecordType::CNAME | RecordType::ANY) => {
                    RData::CNAME(CNAME(Name::from_ascii(format!("{t}.")).ok()?))
                }
                _ => continue,
            };
            found = true;
            response.add_answer(Record::from_rdata(owner.clone(), r.ttl, rdata));
        }
        if found {
            return Some(response);
        }
        // Follow a CNAME (the first one; a name with a CNAME should have nothing else).
        let cname = at_name.iter().find_map(|r| match &r.data {
            LabData::Cname(t) => Some((t.clone(), r.ttl)),
            _ => None,
        });
        match cname {
            Some((target, ttl)) => {
                let target_name = Name::from_ascii(format!("{target}.")).ok()?;
                response.add_answer(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::CNAME(CNAME(target_name.clone())),
                ));
                owner = target_name;
                key = target;
            }
            None => {
                // NODATA: the name exists with other types.
                response.add_authority(soa_for(&key));
                return Some(response);
            }
        }
    }
    // A CNAME loop or an overlong chain.
    response.metadata.response_code = ResponseCode::ServFail;
    response.metadata.authoritative = false;
    response.answers.clear();
    Some(response)
}

/// A synthetic SOA for negative answers: the zone is the name's last two labels.
fn soa_for(key: &str) -> Record {
    let labels: Vec<&str> = key.split('.').collect();
    let zone = if labels.len() >= 2 {
        labels[labels.len() - 2..].join(".")
    } else {
        key.to_owned()
    };
    let zone_name = Name::from_ascii(format!("{zone}.")).unwrap_or_else(|_| Name::root());
    let mname = Name::from_ascii("lab-dns.invalid.").unwrap_or_else(|_| Name::root());
    let rname = Name::from_ascii("hostmaster.lab-dns.invalid.").unwrap_or_else(|_| Name::root());
    Record::from_rdata(
        zone_name,
        NEGATIVE_TTL,
        RData::SOA(SOA::new(mname, rname, 1, 3600, 600, 86400, NEGATIVE_TTL)),
    )
}

/// What a records file looked like when last read.
#[derive(PartialEq, Eq, Clone, Copy)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

fn load_file(path: &Path) -> anyhow::Result<(Vec<LabRecord>, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let records = parse_records(&text).with_context(|| format!("in {}", path.display()))?;
    Ok((records, text))
}

/// `vsip lab-dns`: serve the records file until interrupted, re-reading it when it changes.
pub async fn run(args: LabDnsArgs) -> anyhow::Result<()> {
    crate::telemetry::init_logging("info");
    let (records, mut last_text) = load_file(&args.records)?;
    let mut last_stamp = stamp(&args.records);
    let server = LabDns::start(args.listen).await?;
    tracing::info!(
        addr = %server.addr(),
        records = records.len(),
        file = %args.records.display(),
        "lab-dns listening"
    );
    server.set_records(records);

    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("lab-dns stopping");
                return Ok(());
            }
        }
        let now_stamp = stamp(&args.records);
        if now_stamp == last_stamp {
            continue;
        }
        last_stamp = now_stamp;
        match load_file(&args.records) {
            Ok((records, text)) => {
                if text == last_text {
                    continue;
                }
                last_text = text;
                tracing::info!(records = records.len(), "lab-dns: records reloaded");
                server.set_records(records);
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "lab-dns: keeping the last good records"
                );
            }
        }
    }
}

/// Lab records for an IP: A for IPv4, AAAA for IPv6.
pub fn address_record(name: &str, ip: IpAddr, ttl: u32) -> LabRecord {
    match ip {
        IpAddr::V4(v4) => LabRecord::a(name, v4, ttl),
        IpAddr::V6(v6) => LabRecord::aaaa(name, v6, ttl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(records: &[LabRecord], name: &str, t: RecordType) -> Option<Message> {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        answer(&q, records)
    }

    fn data() -> Vec<LabRecord> {
        parse_records(
            r#"
records:
  - { name: sip.acme.example, type: A, value: 127.0.0.1, ttl: 30 }
  - { name: sip.acme.example, type: AAAA, value: "::1", ttl: 20 }
  - { name: alias.acme.example, type: CNAME, value: sip.acme.example, ttl: 10 }
  - { name: broken.acme.example, type: AAAA, action: servfail }
  - { name: broken.acme.example, type: A, value: 10.0.0.1 }
  - { name: silent.acme.example, type: AAAA, action: drop }
  - { name: loop1.acme.example, type: CNAME, value: loop2.acme.example }
  - { name: loop2.acme.example, type: CNAME, value: loop1.acme.example }
"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_the_documented_shape() {
        let d = data();
        assert_eq!(
            d[0],
            LabRecord::a("sip.acme.example", Ipv4Addr::LOCALHOST, 30)
        );
        assert_eq!(
            d[1],
            LabRecord::aaaa("SIP.acme.example.", Ipv6Addr::LOCALHOST, 20)
        );
        assert_eq!(
            d[3],
            LabRecord::servfail("broken.acme.example", LabType::AAAA)
        );
        assert_eq!(d[4].ttl, DEFAULT_TTL);
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        for bad in [
            "records: [{ name: a.example, type: A, value: not-an-ip }]",
            "records: [{ name: a.example, type: AAAA, value: 1.2.3.4 }]",
            "records: [{ name: a.example, type: A }]",
            "records: [{ name: a.example, type: MX, value: x }]",
            "records: [{ name: a.example, type: A, value: 1.2.3.4, action: drop }]",
            "records: [{ name: a.example, type: A, value: 1.2.3.4, colour: red }]",
            "records: {",
        ] {
            let err = parse_records(bad).unwrap_err();
            assert!(!format!("{err:#}").is_empty(), "{bad}");
        }
    }

    #[test]
    fn answers_a_case_insensitively_and_authoritatively() {
        let r = ask(&data(), "SIP.Acme.Example.", RecordType::A).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].ttl, 30);
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn follows_cnames() {
        let r = ask(&data(), "alias.acme.example.", RecordType::AAAA).unwrap();
        assert_eq!(r.answers.len(), 2);
        assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(r.answers[0].ttl, 10);
        assert_eq!(r.answers[1].data, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)));
        let r = ask(&data(), "alias.acme.example.", RecordType::CNAME).unwrap();
        assert_eq!(r.answers.len(), 1);
    }

    #[test]
    fn nodata_nxdomain_servfail_drop_loop() {
        let r = ask(&data(), "broken.acme.example.", RecordType::AAAA).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        let r = ask(&data(), "broken.acme.example.", RecordType::A).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert!(ask(&data(), "silent.acme.example.", RecordType::AAAA).is_none());
        // NODATA: the name exists with other types.
        let r = ask(&data(), "silent.acme.example.", RecordType::A).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
        let r = ask(&data(), "nope.acme.example.", RecordType::A).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
        let r = ask(&data(), "loop1.acme.example.", RecordType::A).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn garbage_never_panics() {
        let shared = Shared::new(data());
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let _ = handle(&junk, &shared, Transport::Udp);
        }
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("sip.acme.example.").unwrap(),
            RecordType::A,
        ));
        let bytes = q.to_vec().unwrap();
        for cut in 0..bytes.len() {
            let _ = handle(&bytes[..cut], &shared, Transport::Tcp);
        }
        assert!(handle(&bytes, &shared, Transport::Udp).is_some());
    }
}
