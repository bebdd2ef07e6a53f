//! Knot DNS (Debian `knot`): an authoritative server nobody here wrote, so a
//! misunderstanding of TTLs, negative answers or truncation shared by the
//! resolver and our own lab server (`vsip lab-dns`) cannot pass unnoticed.
//!
//! Each [`Knot`] is a `knotd` process on a free loopback port serving one
//! zone, [`ZONE`], from a zone file in a tempdir. [`Knot::set`] rewrites the
//! file with the next serial and runs `knotc -b zone-reload`, which returns
//! once the new zone is served: a test changes records mid-run and knows when
//! the change is live. `mod-stats` counts the queries it received, by
//! protocol (`knotc stats`), so a test can prove a cache hit or a TCP retry.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// The zone every record lives in.
pub const ZONE: &str = "vsip-test.example";

/// A record Knot serves.
#[derive(Clone, Debug)]
pub enum KnotRecord {
    Addr(String, IpAddr, u32),
    Cname(String, String, u32),
}

/// Finds a Knot program: PATH first, then /usr/sbin (not on every user's PATH).
fn program(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Fails the test loudly when Knot is missing (a skipped DNS test proves nothing).
pub fn require_knot() -> (PathBuf, PathBuf) {
    static CHECK: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    let r = CHECK.get_or_init(|| {
        let (knotd, knotc) = (program("knotd"), program("knotc"));
        match Command::new(&knotd).arg("--version").output() {
            Ok(o) if o.status.success() => Ok((knotd, knotc)),
            other => Err(format!(
                "Knot DNS is required for the DNS and failover tests but `knotd --version` failed \
                 ({other:?}). Install the Debian package `knot` (scripts/install-deps.sh does)."
            )),
        }
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn absolute(name: &str) -> String {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    assert!(
        n == ZONE || n.ends_with(&format!(".{ZONE}")),
        "Knot serves {ZONE} only; {name} is outside it"
    );
    format!("{n}.")
}

/// A running `knotd`; killed on drop.
pub struct Knot {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    knotc: PathBuf,
    child: Child,
    serial: AtomicU32,
    negative_ttl: u32,
}

impl Knot {
    /// Serves `records`; negative answers (NXDOMAIN, NODATA) carry a TTL of 1 s.
    pub fn start(records: &[KnotRecord]) -> Knot {
        Self::start_with(records, 1)
    }

    /// Serves `records`; `negative_ttl` is the SOA's TTL and minimum (RFC 2308).
    pub fn start_with(records: &[KnotRecord], negative_ttl: u32) -> Knot {
        let (knotd, knotc) = require_knot();
        let mut last = String::new();
        // A port another process took between the probe and knotd's bind: try another.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let addr = SocketAddr::new(super::LOCALHOST, super::free_port());
            let conf = dir.path().join("knot.conf");
            std::fs::write(&conf, config(dir.path(), addr)).expect("write knot.conf");
            let knot_serial = AtomicU32::new(1);
            write_zone(dir.path(), records, 1, negative_ttl);
            let log = std::fs::File::create(dir.path().join("knotd.log")).expect("knotd.log");
            let child = Command::new(&knotd)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn knotd");
            let mut knot = Knot {
                addr,
                dir,
                knotc: knotc.clone(),
                child,
                serial: knot_serial,
                negative_ttl,
            };
            if knot.wait_serving(1, Duration::from_secs(20)) {
                return knot;
            }
            last = knot.log();
        }
        panic!("knotd did not start serving {ZONE}; its log:\n{last}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces every record; returns once Knot serves the new zone.
    pub fn set(&self, records: &[KnotRecord]) {
        let serial = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        write_zone(self.dir.path(), records, serial, self.negative_ttl);
        let out = self.knotc(&["-b", "zone-reload", ZONE]);
        assert!(
            out.contains("OK"),
            "knotc zone-reload: {out}\n{}",
            self.log()
        );
        // -b waits for the reload; the SOA serial proves it took effect.
        assert_eq!(
            soa_serial(self.addr, Duration::from_secs(2)),
            Some(serial),
            "Knot still serves the old zone\n{}",
            self.log()
        );
    }

    /// Queries received so far (every protocol).
    pub fn queries(&self) -> u64 {
        self.stat("mod-stats.server-operation[query]")
    }

    /// Queries received over TCP so far.
    pub fn tcp_queries(&self) -> u64 {
        self.stat("mod-stats.request-protocol[tcp4]")
            + self.stat("mod-stats.request-protocol[tcp6]")
    }

    /// Queries received over UDP so far.
    pub fn udp_queries(&self) -> u64 {
        self.stat("mod-stats.request-protocol[udp4]")
            + self.stat("mod-stats.request-protocol[udp6]")
    }

    /// Queries of one type (`A`, `AAAA`, ...) received so far.
    pub fn queries_of(&self, rtype: &str) -> u64 {
        self.stat(&format!("mod-stats.query-type[{rtype}]"))
    }

    /// `knotc stats` as a map (counters that are still zero are absent).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.knotc(&["stats"])
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(" = ")?;
                Some((k.trim().to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }

    fn stat(&self, key: &str) -> u64 {
        self.stats().get(key).copied().unwrap_or(0)
    }

    fn knotc(&self, args: &[&str]) -> String {
        let out = Command::new(&self.knotc)
            .arg("-s")
            .arg(self.dir.path().join("knot.sock"))
            .args(args)
            .output()
            .expect("run knotc");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    /// Waits until the zone with `serial` is answered, or knotd exits.
    fn wait_serving(&mut self, serial: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if soa_serial(self.addr, Duration::from_millis(200)) == Some(serial) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- knotd log ----\n{}", super::tail(&self.log(), 30));
        }
    }
}

/// One knotd, small: one worker of each kind, everything under `dir`.
fn config(dir: &Path, addr: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"server:
    rundir: "{d}"
    listen: {ip}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "{d}/knot.sock"
database:
    storage: "{d}"
log:
  - target: stderr
    any: info
mod-stats:
  - id: counts
    request-protocol: on
    server-operation: on
    query-type: on
template:
  - id: default
    storage: "{d}"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    global-module: mod-stats/counts
zone:
  - domain: {ZONE}
"#,
        ip = addr.ip(),
        port = addr.port()
    )
}

fn write_zone(dir: &Path, records: &[KnotRecord], serial: u32, negative_ttl: u32) {
    let mut z = String::new();
    let _ = writeln!(z, "$ORIGIN {ZONE}.");
    let _ = writeln!(
        z,
        "@ {negative_ttl} IN SOA ns hostmaster {serial} 3600 600 86400 {negative_ttl}"
    );
    let _ = writeln!(z, "@ 3600 IN NS ns");
    let _ = writeln!(z, "ns 3600 IN A 127.0.0.1");
    for r in records {
        match r {
            KnotRecord::Addr(name, IpAddr::V4(ip), ttl) => {
                let _ = writeln!(z, "{} {ttl} IN A {ip}", absolute(name));
            }
            KnotRecord::Addr(name, IpAddr::V6(ip), ttl) => {
                let _ = writeln!(z, "{} {ttl} IN AAAA {ip}", absolute(name));
            }
            KnotRecord::Cname(name, target, ttl) => {
                let _ = writeln!(z, "{} {ttl} IN CNAME {}", absolute(name), absolute(target));
            }
        }
    }
    let tmp = dir.join(".zone.tmp");
    std::fs::write(&tmp, z).expect("write zone");
    std::fs::rename(&tmp, dir.join(format!("{ZONE}.zone"))).expect("rename zone");
}

/// The serial of the zone's SOA as served at `addr` over UDP, if it answers.
pub fn soa_serial(addr: SocketAddr, wait: Duration) -> Option<u32> {
    use hickory_proto::{
        op::{Message, Query},
        rr::{Name, RData, RecordType},
    };
    let mut q = Message::query();
    q.metadata.id = rand::random();
    q.add_query(Query::query(
        Name::from_ascii(format!("{ZONE}.")).ok()?,
        RecordType::SOA,
    ));
    let sock = UdpSocket::bind((super::LOCALHOST, 0)).ok()?;
    sock.set_read_timeout(Some(wait)).ok()?;
    sock.send_to(&q.to_vec().ok()?, addr).ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let m = Message::from_vec(&buf[..n]).ok()?;
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}
