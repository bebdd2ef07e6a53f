//! Black-box harness for the proxy integration tests (`tests/proxy_*.rs`).
//!
//! Everything here drives REAL parts: the `vsip` binary as a child process,
//! SIPp (Debian `sip-tester`) as carrier and SBC, a DNS server whose records
//! a test changes (Knot from Debian, or our lab server for failures no
//! standard server produces), TLS with certificates generated per test
//! (rcgen) with peers on rustls and on OpenSSL (Python's `ssl`), and plain
//! sockets. Nothing is mocked.
//!
//! Each test file does `mod support;`; not every file uses every helper.
#![allow(dead_code)]

pub mod knot;
pub mod pki;
pub mod pytls;
pub mod sip;
pub mod tls;

use std::{
    collections::HashSet,
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

// ---------------------------------------------------------------------------
// Runtime, ports, addresses
// ---------------------------------------------------------------------------

/// One multi-threaded tokio runtime per test binary, for the in-process parts
/// (lab DNS server, TLS SIP peers, silent listeners). Tests themselves are
/// plain synchronous `#[test]`s that block freely.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("support-rt")
            .build()
            .expect("tokio runtime")
    })
}

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `127.0.0.N`: on Linux every 127/8 address is a loopback address, so each
/// stands for a distinct "SBC IP" without any setup.
pub fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// A port that is free for TCP and UDP on 127.0.0.1 right now and that this
/// test binary has not handed out before.
pub fn free_port() -> u16 {
    free_port_on(&[LOCALHOST])
}

/// A port free for TCP and UDP on every one of `ips` (so a test can put
/// several "SBCs" on 127.0.0.x with the same port, as DNS gives one port).
/// Drawn below the kernel's ephemeral range (32768+), so the proxy's and
/// SIPp's outgoing connections cannot grab it between probe and bind.
pub fn free_port_on(ips: &[IpAddr]) -> u16 {
    for _ in 0..2000 {
        let port: u16 = rand::random_range(12_000..32_000);
        let all_free = ips.iter().all(|ip| {
            TcpListener::bind((*ip, port)).is_ok() && UdpSocket::bind((*ip, port)).is_ok()
        });
        if !all_free {
            continue;
        }
        if handed_out().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free port found on {ips:?}");
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn scenario(name: &str) -> PathBuf {
    let p = manifest_dir().join("tests/scenarios").join(name);
    assert!(p.exists(), "missing scenario {}", p.display());
    p
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Promises about time: "not before T1, and by T2"
// ---------------------------------------------------------------------------

/// One probe of a state that is promised to change at a known time (a DNS
/// answer at the end of its TTL, a held-down address at the end of its
/// hold-down): when the probe started and ended, and what it saw.
#[derive(Debug)]
pub struct Seen<T> {
    pub start: Instant,
    pub end: Instant,
    pub value: T,
}

/// Checks probes in time order against a promise "the state changes not
/// before `not_before`, and by `by`": no probe that ENDED before `not_before`
/// saw the change (it cannot have looked later than that), and the change was
/// seen at the latest by the first probe that STARTED after `by`. The bounds
/// come from the configured values (a TTL, a hold-down) and the times a test
/// measured around the events, so a slow machine widens what is observed but
/// never makes a right behaviour fail.
pub fn assert_switch<T: std::fmt::Debug>(
    what: &str,
    seen: &[Seen<T>],
    not_before: Instant,
    by: Instant,
    changed: impl Fn(&T) -> bool,
) {
    // Times are shown from the first probe.
    let t0 = seen.first().map_or(not_before, |s| s.start);
    let show = || {
        seen.iter()
            .map(|s| {
                format!(
                    "  {:>8.3}s..{:>8.3}s {:?}",
                    s.start.saturating_duration_since(t0).as_secs_f64(),
                    s.end.saturating_duration_since(t0).as_secs_f64(),
                    s.value
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let bounds = format!(
        "not before {:.3}s, by {:.3}s (from the first probe)",
        not_before.saturating_duration_since(t0).as_secs_f64(),
        by.saturating_duration_since(t0).as_secs_f64()
    );
    if let Some(early) = seen
        .iter()
        .find(|s| s.end < not_before && changed(&s.value))
    {
        panic!(
            "{what}: changed too early ({early:?}); promised {bounds}; probes:\n{}",
            show()
        );
    }
    let first_changed = seen.iter().position(|s| changed(&s.value));
    let first_after = seen.iter().position(|s| s.start > by);
    match (first_changed, first_after) {
        (Some(c), Some(a)) if c <= a => {}
        (Some(_), None) => {}
        _ => panic!(
            "{what}: not changed in time; promised {bounds}; probes:\n{}",
            show()
        ),
    }
}

/// Probes every `interval` until a probe sees the change or a probe that
/// started after `by` has ended; then [`assert_switch`]. Returns the probes.
pub fn probe_switch<T: std::fmt::Debug>(
    what: &str,
    not_before: Instant,
    by: Instant,
    interval: Duration,
    mut probe: impl FnMut() -> T,
    changed: impl Fn(&T) -> bool,
) -> Vec<Seen<T>> {
    let mut seen = Vec::new();
    loop {
        let start = Instant::now();
        let value = probe();
        let end = Instant::now();
        let done = changed(&value) || start > by;
        seen.push(Seen { start, end, value });
        if done {
            break;
        }
        thread::sleep(interval);
    }
    assert_switch(what, &seen, not_before, by, changed);
    seen
}

// ---------------------------------------------------------------------------
// SIPp presence
// ---------------------------------------------------------------------------

/// Fails the test loudly when SIPp is missing: CI installs `sip-tester`, and a
/// silently skipped wire test would prove nothing.
pub fn require_sipp() {
    static CHECK: OnceLock<Result<String, String>> = OnceLock::new();
    let r = CHECK.get_or_init(|| match Command::new("sipp").arg("-v").output() {
        Ok(o) => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        Err(e) => Err(format!(
            "SIPp is required for the proxy integration tests but `sipp -v` failed: {e}. \
             Install the Debian package `sip-tester` (scripts/install-deps.sh does)."
        )),
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------

pub use vsip::lab::LabRecord;

/// A DNS record as the tests state it; served by whichever server runs.
#[derive(Clone, Debug)]
pub enum Rec {
    Addr(String, IpAddr, u32),
    Cname(String, String, u32),
    /// SERVFAIL for (name, "A" | "AAAA") (lab server only).
    ServFail(String, &'static str),
    /// No answer at all for (name, "A" | "AAAA") (lab server only).
    Drop(String, &'static str),
}

pub fn a(name: &str, ip: IpAddr, ttl: u32) -> Rec {
    assert!(ip.is_ipv4(), "A record needs an IPv4 address, got {ip}");
    Rec::Addr(name.to_owned(), ip, ttl)
}

pub fn aaaa(name: &str, ip: std::net::Ipv6Addr, ttl: u32) -> Rec {
    Rec::Addr(name.to_owned(), IpAddr::V6(ip), ttl)
}

pub fn cname(name: &str, target: &str, ttl: u32) -> Rec {
    Rec::Cname(name.to_owned(), target.to_owned(), ttl)
}

pub fn servfail(name: &str, rtype: &'static str) -> Rec {
    Rec::ServFail(name.to_owned(), rtype)
}

pub fn dns_drop(name: &str, rtype: &'static str) -> Rec {
    Rec::Drop(name.to_owned(), rtype)
}

impl Rec {
    fn lab(&self) -> LabRecord {
        match self {
            Rec::Addr(n, ip, ttl) => vsip::lab::address_record(n, *ip, *ttl),
            Rec::Cname(n, t, ttl) => LabRecord::cname(n, t, *ttl),
            Rec::ServFail(n, t) => LabRecord::servfail(n, t),
            Rec::Drop(n, t) => LabRecord::drop(n, t),
        }
    }
    fn knot(&self) -> knot::KnotRecord {
        match self {
            Rec::Addr(n, ip, ttl) => knot::KnotRecord::Addr(n.clone(), *ip, *ttl),
            Rec::Cname(n, t, ttl) => knot::KnotRecord::Cname(n.clone(), t.clone(), *ttl),
            Rec::ServFail(..) | Rec::Drop(..) => panic!(
                "{self:?}: a standard server fails on purpose for no one; use Dns::lab for it"
            ),
        }
    }
}

/// A real DNS server on a free loopback port whose records the test
/// changes: Knot ([`Dns::start`]), which nobody here wrote, for answers
/// and their TTLs; our own lab server ([`Dns::lab`], `vsip::lab::LabDns`)
/// where a test needs a failure no standard server produces on purpose
/// (SERVFAIL for one type, a query left unanswered).
pub enum Dns {
    Knot(knot::Knot),
    Lab(vsip::lab::LabDns),
}

impl Dns {
    /// Knot serving `records` (every name under [`knot::ZONE`]).
    pub fn start(records: Vec<Rec>) -> Dns {
        let recs: Vec<_> = records.iter().map(Rec::knot).collect();
        Dns::Knot(knot::Knot::start(&recs))
    }

    /// The lab server (`vsip lab-dns`'s engine, in-process) serving `records`.
    pub fn lab(records: Vec<Rec>) -> Dns {
        // Port 0: the server binds a free port itself (no probe/bind race).
        let addr = SocketAddr::new(LOCALHOST, 0);
        let server = rt()
            .block_on(vsip::lab::LabDns::start(addr))
            .expect("start lab DNS");
        server.set_records(records.iter().map(Rec::lab).collect());
        Dns::Lab(server)
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Dns::Knot(s) => s.addr(),
            Dns::Lab(s) => s.addr(),
        }
    }

    /// Replaces every record the server answers with; returns once the
    /// server answers with the new ones.
    pub fn set(&self, records: Vec<Rec>) {
        match self {
            Dns::Knot(s) => s.set(&records.iter().map(Rec::knot).collect::<Vec<_>>()),
            Dns::Lab(s) => s.set_records(records.iter().map(Rec::lab).collect()),
        }
    }
}

// ---------------------------------------------------------------------------
// Proxy configuration
// ---------------------------------------------------------------------------

/// One trunk of the proxy config file (brief §4, `TrunkConfig` fields).
#[derive(Clone, Debug)]
pub struct TrunkConf {
    pub name: String,
    pub trunk_sid: String,
    pub fqdn: String,
    pub transport: &'static str,
    pub port: u16,
    pub ip_families: Vec<&'static str>,
    pub numbers: Vec<String>,
    pub calls_per_minute: Option<u32>,
    pub codecs: Option<Vec<&'static str>>,
    pub server_name: Option<String>,
    pub connect_timeout: String,
    pub response_timeout: String,
    pub hold_down: String,
    pub headers: Vec<(String, String)>,
    pub suspended: bool,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl TrunkConf {
    pub fn tcp(name: &str, fqdn: &str, port: u16, numbers: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            trunk_sid: format!("TS{}", name.replace(['/', '-', '.'], "")),
            fqdn: fqdn.to_owned(),
            transport: "TCP",
            port,
            ip_families: vec!["IPv4", "IPv6"],
            numbers: numbers.iter().map(|s| s.to_string()).collect(),
            calls_per_minute: None,
            codecs: None,
            server_name: None,
            connect_timeout: "1s".into(),
            response_timeout: "2s".into(),
            hold_down: "30s".into(),
            headers: Vec::new(),
            suspended: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }

    pub fn tls(name: &str, fqdn: &str, port: u16, numbers: &[&str]) -> Self {
        Self {
            transport: "TLS",
            ..Self::tcp(name, fqdn, port, numbers)
        }
    }

    fn yaml(&self, out: &mut String) {
        use std::fmt::Write as _;
        let q = yaml_str;
        let _ = writeln!(out, "  - name: {}", q(&self.name));
        let _ = writeln!(out, "    trunkSid: {}", q(&self.trunk_sid));
        let _ = writeln!(out, "    fqdn: {}", q(&self.fqdn));
        let _ = writeln!(out, "    transport: {}", self.transport);
        let _ = writeln!(out, "    port: {}", self.port);
        let fams: Vec<_> = self.ip_families.to_vec();
        let _ = writeln!(out, "    ipFamilies: [{}]", fams.join(", "));
        let nums: Vec<_> = self.numbers.iter().map(|n| q(n)).collect();
        let _ = writeln!(out, "    numbers: [{}]", nums.join(", "));
        if let Some(cpm) = self.calls_per_minute {
            let _ = writeln!(out, "    callsPerMinute: {cpm}");
        }
        if let Some(c) = &self.codecs {
            let _ = writeln!(out, "    codecs: [{}]", c.join(", "));
        }
        if let Some(sn) = &self.server_name {
            let _ = writeln!(out, "    tls:\n      serverName: {}", q(sn));
        }
        let _ = writeln!(
            out,
            "    failover:\n      connectTimeout: {}\n      responseTimeout: {}\n      holdDown: {}",
            self.connect_timeout, self.response_timeout, self.hold_down
        );
        if !self.headers.is_empty() {
            let _ = writeln!(out, "    headers:");
            for (k, v) in &self.headers {
                let _ = writeln!(out, "      {}: {}", q(k), q(v));
            }
        }
        if self.suspended {
            let _ = writeln!(out, "    suspended: true");
        }
        if self.ca_file.is_some() || self.client_cert_file.is_some() {
            let _ = writeln!(out, "    tlsMaterial:");
            if let Some(p) = &self.ca_file {
                let _ = writeln!(out, "      caFile: {}", q(&p.display().to_string()));
            }
            if let Some(p) = &self.client_cert_file {
                let _ = writeln!(out, "      clientCertFile: {}", q(&p.display().to_string()));
            }
            if let Some(p) = &self.client_key_file {
                let _ = writeln!(out, "      clientKeyFile: {}", q(&p.display().to_string()));
            }
        }
    }
}

/// The whole proxy config file. Ports are chosen free by [`ProxyConf::new`].
#[derive(Clone, Debug)]
pub struct ProxyConf {
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    pub client_ca_file: Option<PathBuf>,
    pub admin: SocketAddr,
    pub upstream: Option<String>,
    pub signaling_domain: String,
    pub advertise: Option<String>,
    /// `advertisePorts.tcp`
    pub advertise_tcp_port: Option<u16>,
    pub header_prefix: Option<String>,
    pub nameservers: Vec<SocketAddr>,
    pub max_ttl: String,
    pub dns_timeout: String,
    pub trunks: Vec<TrunkConf>,
}

pub const SIGNALING_DOMAIN: &str = "pstn.vsip-test.example";

impl ProxyConf {
    pub fn new(dns: &Dns) -> Self {
        Self {
            tcp: Some(SocketAddr::new(LOCALHOST, free_port())),
            tls: None,
            tls_cert: None,
            client_ca_file: None,
            admin: SocketAddr::new(LOCALHOST, free_port()),
            upstream: None,
            signaling_domain: SIGNALING_DOMAIN.to_owned(),
            advertise: None,
            advertise_tcp_port: None,
            header_prefix: None,
            nameservers: vec![dns.addr()],
            max_ttl: "60s".into(),
            dns_timeout: "2s".into(),
            trunks: Vec::new(),
        }
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.tcp.expect("config has no TCP listener")
    }

    pub fn to_yaml(&self) -> String {
        use std::fmt::Write as _;
        let q = yaml_str;
        let mut out = String::new();
        out.push_str("listen:\n");
        if let Some(a) = self.tcp {
            let _ = writeln!(out, "  tcp: {a}");
        }
        if let Some(a) = self.tls {
            let _ = writeln!(out, "  tls: {a}");
        }
        if let Some((c, k)) = &self.tls_cert {
            let _ = writeln!(
                out,
                "  tlsCertificate:\n    certFile: {}\n    keyFile: {}",
                q(&c.display().to_string()),
                q(&k.display().to_string())
            );
        }
        if let Some(p) = &self.client_ca_file {
            let _ = writeln!(out, "  clientCaFile: {}", q(&p.display().to_string()));
        }
        let _ = writeln!(out, "admin: {}", self.admin);
        if let Some(u) = &self.upstream {
            let _ = writeln!(out, "upstream: {}", q(u));
        }
        let _ = writeln!(out, "signalingDomain: {}", q(&self.signaling_domain));
        if let Some(a) = &self.advertise {
            let _ = writeln!(out, "advertise: {}", q(a));
        }
        if let Some(p) = self.advertise_tcp_port {
            let _ = writeln!(out, "advertisePorts:\n  tcp: {p}");
        }
        if let Some(p) = &self.header_prefix {
            let _ = writeln!(out, "headerPrefix: {}", q(p));
        }
        out.push_str("dns:\n  nameservers:\n");
        for ns in &self.nameservers {
            let _ = writeln!(out, "    - {}", q(&ns.to_string()));
        }
        let _ = writeln!(out, "  maxTtl: {}", self.max_ttl);
        let _ = writeln!(out, "  timeout: {}", self.dns_timeout);
        if self.trunks.is_empty() {
            out.push_str("trunks: []\n");
        } else {
            out.push_str("trunks:\n");
            for t in &self.trunks {
                t.yaml(&mut out);
            }
        }
        out
    }
}

fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---------------------------------------------------------------------------
// The proxy process
// ---------------------------------------------------------------------------

pub fn vsip_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vsip")
}

/// `vsip proxy --config FILE` as a child process: config in a tempdir, stdout
/// (JSON logs) and stderr captured, killed on drop.
pub struct ProxyProcess {
    pub conf: ProxyConf,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Child,
    logs: Arc<Mutex<String>>,
}

impl ProxyProcess {
    pub fn start(conf: ProxyConf) -> ProxyProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("proxy.yaml");
        std::fs::write(&config_path, conf.to_yaml()).expect("write config");
        let mut child = Command::new(vsip_bin())
            .arg("proxy")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vsip proxy");
        let logs = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        ] {
            let logs = logs.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let mut p = ProxyProcess {
            conf,
            dir,
            config_path,
            child,
            logs,
        };
        p.wait_ready(Duration::from_secs(20));
        p
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "vsip proxy exited early ({status}) with config:\n{}\nlogs:\n{}",
                    self.conf.to_yaml(),
                    self.logs()
                );
            }
            if let Ok((200, _)) = http_get(self.conf.admin, "/readyz") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "vsip proxy not ready within {timeout:?}; config:\n{}\nlogs:\n{}",
                    self.conf.to_yaml(),
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.conf.sip_addr()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.conf.admin, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "/metrics answered {code}: {body}");
        body
    }

    /// Sum of every sample of `name` whose labels include all of `labels`
    /// (0 when there is none yet: Prometheus counters may appear lazily).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// Writes a new config atomically (write + rename, as a Kubernetes volume
    /// update does) and returns without waiting.
    pub fn write_config_text(&self, text: &str) {
        let tmp = self.dir.path().join(".proxy.yaml.tmp");
        std::fs::write(&tmp, text).expect("write tmp config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config");
    }

    /// Rewrites the config and waits until the proxy reports a reload with
    /// `result` other than `error` (`vsip_config_reloads_total`).
    pub fn reload(&mut self, conf: ProxyConf) {
        let before = self.good_reloads();
        self.conf = conf;
        let text = self.conf.to_yaml();
        self.write_config_text(&text);
        let logs = self.logs.clone();
        wait_for(
            Duration::from_secs(15),
            "a successful config reload",
            || (self.good_reloads() > before).then_some(()),
        );
        drop(logs);
    }

    pub fn good_reloads(&self) -> f64 {
        let m = self.metrics();
        metric_samples(&m, "vsip_config_reloads_total")
            .into_iter()
            .filter(|(l, _)| {
                l.iter()
                    .any(|(k, v)| k == "result" && v != "error" && v != "failure")
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Resident set size from /proc/PID/status, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- vsip proxy logs (pid {}) ----\n{}",
                self.child.id(),
                tail(&self.logs(), 150)
            );
        }
    }
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs `vsip check-config FILE`: (exit success, stdout + stderr).
pub fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(vsip_bin())
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run vsip check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------
// Tiny HTTP client and Prometheus text parsing
// ---------------------------------------------------------------------------

/// `GET path` over a plain std TcpStream: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer: {text:?}")))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Every sample of metric `name`: (labels, value).
pub fn metric_samples(text: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some(end) = r.rfind('}') else { continue };
            (parse_labels(&r[..end]), r[end + 1..].trim())
        } else if rest.starts_with(' ') {
            (Vec::new(), rest.trim())
        } else {
            continue; // a longer name with this prefix
        };
        let value = value.split_whitespace().next().unwrap_or("");
        if let Ok(v) = value.parse::<f64>() {
            out.push((labels, v));
        }
    }
    out
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(after) = after.strip_prefix('"') else {
            break;
        };
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.push((key, val));
        rest = &after[end..];
    }
    out
}

pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_samples(text, name)
        .into_iter()
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| v)
        .sum()
}

// ---------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------

/// Builder for one SIPp process. UAC (`Sipp::uac`) or UAS (`Sipp::uas`), TCP
/// with one socket (`-t t1`) by default, message/stat/error traces in a
/// tempdir, `-timeout`/`-timeout_error` always set and a hard kill after that
/// from Rust, so nothing hangs.
pub struct Sipp {
    scenario: PathBuf,
    remote: Option<SocketAddr>,
    local_ip: IpAddr,
    local_port: Option<u16>,
    transport: &'static str,
    service: Option<String>,
    calls: u32,
    rate: Option<f64>,
    limit: Option<u32>,
    pause_ms: u64,
    timeout: Duration,
    keys: Vec<(String, String)>,
    subst: Vec<(String, String)>,
    extra: Vec<String>,
}

/// What a finished SIPp run produced.
#[derive(Debug, Clone)]
pub struct SippResult {
    /// Exit code (0: every call succeeded; 1: some failed; None: killed).
    pub status: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    /// `-trace_msg` log: every message sent and received.
    pub messages: String,
    /// `-trace_err` log: unexpected messages.
    pub errors: String,
    /// SIPp's final screen (stdout + stderr).
    pub screen: String,
}

impl SippResult {
    /// Received messages, in order, each as its raw text.
    pub fn received(&self) -> Vec<String> {
        split_trace(&self.messages, "received")
    }
    pub fn sent(&self) -> Vec<String> {
        split_trace(&self.messages, "sent")
    }
    /// Received messages with the time SIPp logged them (see [`split_trace_timed`]).
    pub fn received_timed(&self) -> Vec<(f64, sip::Msg)> {
        timed_msgs(&self.messages, "received")
    }
    /// Sent messages with the time SIPp logged them.
    pub fn sent_timed(&self) -> Vec<(f64, sip::Msg)> {
        timed_msgs(&self.messages, "sent")
    }
    /// Received requests with this method.
    pub fn received_requests(&self, method: &str) -> Vec<sip::Msg> {
        self.received()
            .iter()
            .filter_map(|m| sip::Msg::parse(m.as_bytes()))
            .filter(|m| m.method() == Some(method))
            .collect()
    }
    /// Received responses with this status.
    pub fn received_responses(&self, code: u16) -> Vec<sip::Msg> {
        self.received()
            .iter()
            .filter_map(|m| sip::Msg::parse(m.as_bytes()))
            .filter(|m| m.status() == Some(code))
            .collect()
    }
    pub fn summary(&self) -> String {
        format!(
            "status={:?} successful={} failed={}\n--- errors ---\n{}\n--- screen (tail) ---\n{}\n--- messages (tail) ---\n{}",
            self.status,
            self.successful,
            self.failed,
            tail(&self.errors, 40),
            tail(&self.screen, 25),
            tail(&self.messages, 80)
        )
    }
    pub fn assert_all_ok(&self, calls: u64) {
        assert!(
            self.status == Some(0) && self.successful == calls && self.failed == 0,
            "expected {calls} successful SIPp calls\n{}",
            self.summary()
        );
    }
}

/// Splits a SIPp `-trace_msg` log into the message texts of one direction.
pub fn split_trace(log: &str, direction: &str) -> Vec<String> {
    split_trace_timed(log, direction)
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

/// Like [`split_trace`], with the time SIPp logged each message at, in
/// seconds (from the Unix epoch, SIPp's local time read as UTC: only
/// differences between them mean anything).
pub fn split_trace_timed(log: &str, direction: &str) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    for block in log.split("\n-----------------------------------------------") {
        let mut lines = block.lines();
        // first line: " date time" (or the dashes of the first block, then them)
        let Some(stamp) = lines.next().and_then(trace_time) else {
            continue;
        };
        let Some(kind) = lines.next() else { continue };
        if !kind.contains(&format!("message {direction}")) {
            continue;
        }
        let body: Vec<&str> = lines.collect();
        // Lines are rejoined with CRLF; trailing CRLFs beyond Content-Length
        // are harmless (the parser cuts the body at Content-Length).
        let text = body.join("\r\n") + "\r\n\r\n";
        let text = text.trim_start_matches(['\r', '\n']).to_owned();
        if !text.trim().is_empty() {
            out.push((stamp, text));
        }
    }
    out
}

/// `... 2026-11-29 23:26:26.609633` → seconds.
fn trace_time(line: &str) -> Option<f64> {
    let mut it = line.split_whitespace().rev();
    let time = it.next()?;
    let date = it.next()?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

fn timed_msgs(log: &str, direction: &str) -> Vec<(f64, sip::Msg)> {
    split_trace_timed(log, direction)
        .into_iter()
        .filter_map(|(t, m)| Some((t, sip::Msg::parse(m.as_bytes())?)))
        .collect()
}

impl Sipp {
    fn new(scenario_name: &str) -> Self {
        require_sipp();
        Self {
            scenario: scenario(scenario_name),
            remote: None,
            local_ip: LOCALHOST,
            local_port: None,
            transport: "t1",
            service: None,
            calls: 1,
            rate: None,
            limit: None,
            pause_ms: 100,
            timeout: Duration::from_secs(30),
            keys: Vec::new(),
            subst: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// A SIPp client placing calls to `remote`.
    pub fn uac(scenario_name: &str, remote: SocketAddr) -> Self {
        let mut s = Self::new(scenario_name);
        s.remote = Some(remote);
        s
    }

    /// A SIPp server listening on `ip:port`.
    pub fn uas(scenario_name: &str, ip: IpAddr, port: u16) -> Self {
        let mut s = Self::new(scenario_name);
        s.local_ip = ip;
        s.local_port = Some(port);
        s
    }

    /// `-t`: `t1` (one TCP connection, default) or `tn` (one per call).
    /// (The Debian SIPp build has no TLS transport: see `tls.rs`.)
    pub fn transport(mut self, t: &'static str) -> Self {
        self.transport = t;
        self
    }
    pub fn local_ip(mut self, ip: IpAddr) -> Self {
        self.local_ip = ip;
        self
    }
    pub fn local_port(mut self, port: u16) -> Self {
        self.local_port = Some(port);
        self
    }
    /// `-s`: the user part of the Request-URI (the dialled number).
    pub fn service(mut self, number: &str) -> Self {
        self.service = Some(number.to_owned());
        self
    }
    /// `-m`: calls to place (UAC) or to take before exiting (UAS).
    pub fn calls(mut self, n: u32) -> Self {
        self.calls = n;
        self
    }
    /// `-r` calls per second.
    pub fn rate(mut self, cps: f64) -> Self {
        self.rate = Some(cps);
        self
    }
    /// `-l` simultaneous calls.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }
    /// `-d`: length of `<pause/>`.
    pub fn pause_ms(mut self, ms: u64) -> Self {
        self.pause_ms = ms;
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// `-key NAME VALUE` (used as `[NAME]` in a scenario).
    pub fn key(mut self, k: &str, v: &str) -> Self {
        self.keys.push((k.into(), v.into()));
        self
    }
    /// Replaces `from` with `to` in the scenario text before running
    /// (`uac_expect_status.xml` carries `__EXPECTED__`).
    pub fn subst(mut self, from: &str, to: &str) -> Self {
        self.subst.push((from.into(), to.into()));
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.into());
        self
    }

    pub fn spawn(self) -> SippRun {
        let dir = tempfile::tempdir().expect("tempdir");
        let scenario = if self.subst.is_empty() {
            self.scenario.clone()
        } else {
            let mut text = std::fs::read_to_string(&self.scenario).unwrap();
            for (f, t) in &self.subst {
                assert!(
                    text.contains(f.as_str()),
                    "{f:?} not in {}",
                    self.scenario.display()
                );
                text = text.replace(f, t);
            }
            let p = dir.path().join(self.scenario.file_name().unwrap());
            std::fs::write(&p, text).unwrap();
            p
        };
        let msg = dir.path().join("messages.log");
        let stat = dir.path().join("stat.csv");
        let err = dir.path().join("errors.log");
        let screen = dir.path().join("screen.txt");
        let local_port = self
            .local_port
            .unwrap_or_else(|| free_port_on(&[self.local_ip]));
        let mut cmd = Command::new("sipp");
        if let Some(r) = self.remote {
            cmd.arg(r.to_string());
        }
        cmd.arg("-sf").arg(&scenario);
        cmd.args(["-t", self.transport]);
        if self.transport.ends_with('n') {
            // One socket per call: stay under the open-files limit.
            cmd.args(["-max_socket", "1000"]);
        }
        cmd.arg("-i").arg(self.local_ip.to_string());
        cmd.arg("-p").arg(local_port.to_string());
        cmd.arg("-m").arg(self.calls.to_string());
        if let Some(s) = &self.service {
            cmd.arg("-s").arg(s);
        }
        if let Some(r) = self.rate {
            cmd.arg("-r").arg(format!("{r}"));
        }
        if let Some(l) = self.limit {
            cmd.arg("-l").arg(l.to_string());
        }
        cmd.arg("-d").arg(self.pause_ms.to_string());
        for (k, v) in &self.keys {
            cmd.arg("-key").arg(k).arg(v);
        }
        cmd.arg("-nostdin");
        cmd.arg("-trace_msg").arg("-message_file").arg(&msg);
        cmd.arg("-trace_stat").arg("-stf").arg(&stat);
        cmd.arg("-trace_err").arg("-error_file").arg(&err);
        cmd.arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)));
        cmd.arg("-timeout_error");
        cmd.args(&self.extra);
        let out = std::fs::File::create(&screen).unwrap();
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn sipp");
        let run = SippRun {
            child: Some(child),
            dir,
            kill_at: Instant::now() + self.timeout + Duration::from_secs(15),
            local: SocketAddr::new(self.local_ip, local_port),
            msg,
            stat,
            err,
            screen,
        };
        if self.remote.is_none() {
            // A server: wait until it listens.
            let addr = run.local;
            wait_for(Duration::from_secs(10), "SIPp UAS to listen", || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(|_| ())
            });
        }
        run
    }

    /// Spawns and waits for the end.
    pub fn run(self) -> SippResult {
        self.spawn().wait()
    }
}

/// A running SIPp process. Killed on drop if still running.
pub struct SippRun {
    child: Option<Child>,
    dir: tempfile::TempDir,
    kill_at: Instant,
    pub local: SocketAddr,
    msg: PathBuf,
    stat: PathBuf,
    err: PathBuf,
    screen: PathBuf,
}

impl SippRun {
    pub fn addr(&self) -> SocketAddr {
        self.local
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The message log as written so far (SIPp flushes per message).
    pub fn messages_so_far(&self) -> String {
        std::fs::read_to_string(&self.msg).unwrap_or_default()
    }

    /// Number of received requests of `method` so far.
    pub fn count_received(&self, method: &str) -> usize {
        split_trace(&self.messages_so_far(), "received")
            .iter()
            .filter(|m| m.starts_with(&format!("{method} ")))
            .count()
    }

    /// Waits for SIPp to exit by itself (hard kill at the deadline).
    pub fn wait(mut self) -> SippResult {
        let mut child = self.child.take().unwrap();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st.code(),
                Ok(None) if Instant::now() > self.kill_at => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break None,
            }
        };
        self.collect(status)
    }

    /// Ends a server that would otherwise wait for more calls: SIGTERM (SIPp
    /// then writes its stats), a hard kill if it lingers.
    pub fn stop(mut self) -> SippResult {
        let mut child = self.child.take().unwrap();
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let status = child.wait().ok().and_then(|s| s.code());
        self.collect(status)
    }

    fn collect(&self, status: Option<i32>) -> SippResult {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let stat = read(&self.stat);
        let (successful, failed) = parse_stat(&stat);
        SippResult {
            status,
            successful,
            failed,
            messages: read(&self.msg),
            errors: read(&self.err),
            screen: read(&self.screen),
        }
    }
}

impl Drop for SippRun {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = &self.dir;
    }
}

/// (SuccessfulCall(C), FailedCall(C)) of the last line of a `-trace_stat` CSV.
fn parse_stat(csv: &str) -> (u64, u64) {
    let lines: Vec<&str> = csv.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some(head) = lines.first() else {
        return (0, 0);
    };
    let Some(last) = lines.get(1..).and_then(|l| l.last()) else {
        return (0, 0);
    };
    let cols: Vec<&str> = head.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        cols.iter()
            .position(|c| c.trim() == name)
            .and_then(|i| vals.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("SuccessfulCall(C)"), get("FailedCall(C)"))
}

// ---------------------------------------------------------------------------
// Misbehaving network peers
// ---------------------------------------------------------------------------

/// A TCP listener that accepts connections and reads everything but never
/// answers: an SBC that went silent (for `responseTimeout`).
pub struct SilentListener {
    pub addr: SocketAddr,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    pub bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// Everything received, in order (all connections).
    pub data: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentListener {
    pub fn start(addr: SocketAddr) -> SilentListener {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncReadExt;
        let listener = rt()
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind silent listener");
        let accepted = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let data = Arc::new(Mutex::new(Vec::new()));
        let (a, b, d) = (accepted.clone(), bytes.clone(), data.clone());
        let task = rt().spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    break;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (b, d) = (b.clone(), d.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        d.lock().unwrap().extend_from_slice(&buf[..n]);
                        b.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
        SilentListener {
            addr,
            accepted,
            bytes,
            data,
            task,
        }
    }

    pub fn received(&self) -> usize {
        self.bytes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What it received, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap()).into_owned()
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address whose TCP connects hang (for `connectTimeout`): a listening
/// socket with backlog 0 that never accepts, with its accept queue filled by
/// our own connections. Linux then drops further SYNs silently, so the
/// proxy's `connect()` neither succeeds nor gets refused until it times out.
pub struct BlackholeListener {
    pub addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<std::net::TcpStream>,
}

impl BlackholeListener {
    pub fn start(addr: SocketAddr) -> BlackholeListener {
        let listener = rt().block_on(async {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(addr).unwrap();
            sock.listen(0).unwrap()
        });
        let mut fillers = Vec::new();
        // Fill the accept queue; stop when a connect no longer completes.
        for _ in 0..8 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        // Prove the trap works before relying on it.
        let probe = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
        assert!(
            probe.is_err(),
            "blackhole at {addr} still completes connections (filled {})",
            fillers.len()
        );
        BlackholeListener {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }
}

/// The first `n` lines of a text (for short panic messages).
pub fn head(s: &str, n: usize) -> String {
    s.lines().take(n).collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------------------
// Common fixtures
// ---------------------------------------------------------------------------

pub const FQDN: &str = "sip.acme.vsip-test.example";
pub const NUMBER: &str = "+911234567890";
/// The caller number the scenarios put in From.
pub const CALLER: &str = "+919876500000";

/// A one-trunk inbound lab: a proxy whose trunk (FQDN resolved by `dns`)
/// owns [`NUMBER`] on `port`, upstream = the carrier at 127.0.0.1. `tweak`
/// edits the trunk.
pub fn inbound_proxy(dns: &Dns, port: u16, tweak: impl FnOnce(&mut TrunkConf)) -> ProxyProcess {
    let mut conf = ProxyConf::new(dns);
    // The carrier: SIPp callers bind 127.0.0.1, as a real carrier calls from
    // the upstream host.
    conf.upstream = Some("sip:127.0.0.1:5060;transport=tcp".into());
    let mut t = TrunkConf::tcp("acme/acme-mumbai", FQDN, port, &[NUMBER]);
    t.trunk_sid = "TSacme0001".into();
    tweak(&mut t);
    conf.trunks.push(t);
    ProxyProcess::start(conf)
}

/// A SIPp call from `from` to `number` through `proxy` that the quota must
/// refuse: a 503 with Retry-After.
pub fn assert_throttled(proxy: SocketAddr, from: IpAddr, number: &str) {
    let r = Sipp::uac("uac_expect_status.xml", proxy)
        .local_ip(from)
        .subst("__EXPECTED__", "503")
        .service(number)
        .run();
    r.assert_all_ok(1);
    assert!(
        r.received_responses(503)[0].has("retry-after"),
        "a quota refusal without Retry-After\n{}",
        r.summary()
    );
}

/// The only request of `method` in a SIPp result, or a panic with context.
pub fn only_request(r: &SippResult, method: &str) -> sip::Msg {
    let v = r.received_requests(method);
    assert_eq!(v.len(), 1, "expected exactly one {method}\n{}", r.summary());
    v.into_iter().next().unwrap()
}

/// Raw TCP exchange: sends `bytes` (while already reading, so an early answer
/// followed by a close is not lost to a reset), returns the first SIP
/// message answered (None when the peer closed or stayed silent for `wait`).
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<sip::Msg> {
    let bytes = bytes.to_vec();
    rt().block_on(async move {
        use tokio::io::AsyncWriteExt;
        let s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            // The peer may close while we are still writing (oversize): ignore.
            for chunk in bytes.chunks(4096) {
                if w.write_all(chunk).await.is_err() {
                    break;
                }
            }
            w
        });
        let mut c = sip::Conn::new(ReadOnly(r));
        let m = c.recv(wait).await;
        writer.abort();
        m
    })
}

/// One call to `number` placed from Rust over plain TCP from `local_ip`
/// (any port) to the proxy: INVITE, final answer, ACK, and BYE if answered.
pub fn call_from(local_ip: IpAddr, proxy: SocketAddr, number: &str) -> sip::CallOutcome {
    rt().block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(local_ip, 0)).unwrap();
        let s = sock.connect(proxy).await.unwrap();
        let local = s.local_addr().unwrap();
        let mut c = sip::Conn::new(s);
        sip::call(
            &mut c,
            local,
            &format!("sip:{number}@{proxy};transport=tcp"),
            &[],
            "TCP",
            Duration::from_secs(15),
        )
        .await
    })
}

/// Adapts a read half to the `Conn` framing (writes are refused).
pub struct ReadOnly(pub tokio::net::tcp::OwnedReadHalf);

impl tokio::io::AsyncRead for ReadOnly {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ReadOnly {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::Error::other("read-only")))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// An INVITE as a carrier would send it, as raw text (CRLF line ends), with
/// `drop` headers removed and `extra` added; SDP is G.711.
pub fn raw_invite(
    proxy: SocketAddr,
    number: &str,
    drop: &[&str],
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let n: u32 = rand::random();
    // sent-by of a carrier that is never dialled back: responses return over
    // the connection the request came in on.
    let local = SocketAddr::new(LOCALHOST, 5099);
    let mut headers: Vec<(String, String)> = vec![
        (
            "Via".into(),
            format!("SIP/2.0/TCP {local};branch=z9hG4bK-raw{n}"),
        ),
        ("Max-Forwards".into(), "70".into()),
        (
            "From".into(),
            format!("\"{CALLER}\" <sip:{CALLER}@{}>;tag=raw{n}", local.ip()),
        ),
        ("To".into(), format!("<sip:{number}@{}>", proxy.ip())),
        ("Call-ID".into(), format!("raw-{n}@{}", local.ip())),
        ("CSeq".into(), "1 INVITE".into()),
        (
            "Contact".into(),
            format!("<sip:{CALLER}@{local};transport=tcp>"),
        ),
        ("Content-Type".into(), "application/sdp".into()),
    ];
    headers.retain(|(k, _)| !drop.iter().any(|d| d.eq_ignore_ascii_case(k)));
    for (k, v) in extra {
        headers.push((k.to_string(), v.to_string()));
    }
    headers.push(("Content-Length".into(), sip::SDP_G711.len().to_string()));
    let m = sip::Msg {
        start: format!("INVITE sip:{number}@{proxy};transport=tcp SIP/2.0"),
        headers,
        body: sip::SDP_G711.as_bytes().to_vec(),
    };
    m.to_bytes()
}
