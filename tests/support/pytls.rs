//! TLS peers on OpenSSL (Python's `ssl` module, `tls_peer.py`): a second TLS
//! stack beside the rustls peers of `tls.rs`, so the proxy's rustls is tested
//! against something it does not share code with, in both directions and
//! with the TLS version pinned (1.2 or 1.3).

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread,
    time::Duration,
};

use serde_json::Value;

use super::{pki, sip::Msg, wait_for};

/// A TLS protocol version, pinned on the OpenSSL side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 2] = [TlsVersion::V1_2, TlsVersion::V1_3];

    fn arg(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }

    /// As OpenSSL names the negotiated version (`SSLSocket.version()`).
    pub fn openssl_name(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "TLSv1.2",
            TlsVersion::V1_3 => "TLSv1.3",
        }
    }
}

fn script() -> PathBuf {
    super::manifest_dir().join("tests/support/tls_peer.py")
}

/// Fails the test loudly when python3 with `ssl` is missing.
pub fn require_python_ssl() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECK.get_or_init(|| {
        match Command::new("python3")
            .args(["-c", "import ssl; print(ssl.OPENSSL_VERSION)"])
            .output()
        {
            Ok(o) if o.status.success() => Ok(()),
            other => Err(format!(
                "python3 with its ssl module is required for the OpenSSL TLS peer \
                 ({other:?}); scripts/install-deps.sh installs python3"
            )),
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Every JSON event a peer printed, collected by a thread.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Value>>>);

impl Events {
    fn collect(child: &mut Child) -> Events {
        let events = Events::default();
        let out = child.stdout.take().expect("peer stdout");
        let sink = events.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"event": "garbage", "text": line}));
                sink.0.lock().unwrap().push(v);
            }
        });
        events
    }

    pub fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    /// Every event of this kind.
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// A TLS SBC on OpenSSL. With `client_ca`, it requires a client certificate
/// from that CA. Killed on drop.
pub struct PyTlsUas {
    pub addr: SocketAddr,
    pub events: Events,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PyTlsUas {
    pub fn start(
        addr: SocketAddr,
        leaf: &pki::Leaf,
        client_ca: Option<&pki::Ca>,
        version: TlsVersion,
    ) -> PyTlsUas {
        require_python_ssl();
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = leaf.write(dir.path(), "sbc");
        let mut cmd = Command::new("python3");
        cmd.arg(script())
            .arg("uas")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--tls", version.arg()]);
        if let Some(ca) = client_ca {
            cmd.arg("--client-ca")
                .arg(ca.write(dir.path(), "client-ca"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3 tls_peer.py uas");
        let events = Events::collect(&mut child);
        let mut uas = PyTlsUas {
            addr,
            events,
            child,
            _dir: dir,
        };
        wait_for(Duration::from_secs(20), "the OpenSSL SBC to listen", || {
            if let Ok(Some(st)) = uas.child.try_wait() {
                panic!(
                    "tls_peer.py uas exited ({st}): {}",
                    stderr_of(&mut uas.child)
                );
            }
            (!uas.events.of("listening").is_empty()).then_some(())
        });
        uas
    }

    /// Requests received, parsed.
    pub fn requests(&self, method: &str) -> Vec<Msg> {
        self.events
            .of("request")
            .iter()
            .filter(|e| e["method"] == method)
            .map(|e| Msg::text(e["text"].as_str().unwrap_or_default()))
            .collect()
    }

    /// Successful handshakes: (negotiated version, DNS names in the client's certificate).
    pub fn handshakes(&self) -> Vec<(String, Vec<String>)> {
        self.events
            .of("handshake")
            .iter()
            .map(|e| {
                (
                    e["version"].as_str().unwrap_or_default().to_owned(),
                    e["peer_names"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|n| n.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    pub fn failed_handshakes(&self) -> usize {
        self.events.of("handshake_failed").len()
    }
}

impl Drop for PyTlsUas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- OpenSSL SBC events ----\n{:#?}", self.events.all());
        }
    }
}

/// What an OpenSSL caller's one call produced.
#[derive(Debug)]
pub struct PyCall {
    pub events: Vec<Value>,
    /// Negotiated version, when the handshake completed.
    pub version: Option<String>,
    pub final_status: Option<u16>,
    pub bye_status: Option<u16>,
    pub stderr: String,
}

impl PyCall {
    pub fn responses(&self) -> Vec<Msg> {
        self.events
            .iter()
            .filter(|e| e["event"] == "response")
            .map(|e| Msg::text(e["text"].as_str().unwrap_or_default()))
            .collect()
    }

    /// The call went through over `version`: answered 200, hung up with 200.
    pub fn assert_completed(&self, version: TlsVersion) {
        assert_eq!(
            self.version.as_deref(),
            Some(version.openssl_name()),
            "{self:?}"
        );
        assert_eq!(self.final_status, Some(200), "{self:?}");
        assert_eq!(self.bye_status, Some(200), "{self:?}");
    }

    pub fn handshake_failed(&self) -> bool {
        self.events.iter().any(|e| e["event"] == "handshake_failed")
    }
}

/// One call from an OpenSSL caller bound to `local_ip` to the proxy's TLS
/// listener at `proxy`, verifying `server_name` against `ca`, presenting
/// `client` when given.
pub fn py_tls_call(
    local_ip: IpAddr,
    proxy: SocketAddr,
    server_name: &str,
    ca: &pki::Ca,
    client: Option<&pki::Leaf>,
    version: TlsVersion,
    number: &str,
) -> PyCall {
    require_python_ssl();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .arg("uac")
        .arg("--connect")
        .arg(proxy.to_string())
        .args(["--server-name", server_name])
        .arg("--ca")
        .arg(ca.write(dir.path(), "ca"))
        .args(["--bind", &local_ip.to_string()])
        .args(["--tls", version.arg()])
        .args(["--number", number]);
    if let Some(c) = client {
        let (cert, key) = c.write(dir.path(), "client");
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run python3 tls_peer.py uac");
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let done = events
        .iter()
        .find(|e| e["event"] == "done")
        .cloned()
        .unwrap_or_default();
    let status = |v: &Value| v.as_u64().map(|c| c as u16);
    PyCall {
        version: events
            .iter()
            .find(|e| e["event"] == "handshake")
            .and_then(|e| e["version"].as_str().map(str::to_owned)),
        final_status: status(&done["final"]),
        bye_status: status(&done["bye"]),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        events,
    }
}
