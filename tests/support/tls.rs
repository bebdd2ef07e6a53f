//! Real TLS peers built on tokio-rustls. The Debian SIPp build has no TLS
//! transport (`sipp -h` lists no `-t l1`), so the TLS SBC (optionally
//! requiring a client certificate: mTLS) and the TLS caller are small SIP
//! user agents written here: real TLS, real sockets.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig, crypto::ring::default_provider,
    server::WebPkiClientVerifier,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

use super::{
    rt,
    sip::{self, Conn, Msg},
};

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM")
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("key PEM")
}

fn roots(ca_pem: &str) -> RootCertStore {
    let mut r = RootCertStore::empty();
    for c in certs(ca_pem) {
        r.add(c).expect("add CA");
    }
    r
}

pub fn server_config(cert_pem: &str, key_pem: &str, client_ca_pem: Option<&str>) -> ServerConfig {
    let provider = Arc::new(default_provider());
    let b = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match client_ca_pem {
        Some(ca) => b.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)), provider)
                .build()
                .unwrap(),
        ),
        None => b.with_no_client_auth(),
    };
    b.with_single_cert(certs(cert_pem), key(key_pem))
        .expect("server cert")
}

pub fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> ClientConfig {
    let b = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    match client {
        Some((c, k)) => b.with_client_auth_cert(certs(c), key(k)).unwrap(),
        None => b.with_no_client_auth(),
    }
}

/// TLS connect from `local_ip` (any port) to `addr`, verifying `server_name`.
pub async fn connect(
    local_ip: IpAddr,
    addr: SocketAddr,
    server_name: &str,
    config: ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.bind(SocketAddr::new(local_ip, 0))?;
    let tcp = tokio::time::timeout(Duration::from_secs(5), sock.connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    let name = ServerName::try_from(server_name.to_owned()).map_err(std::io::Error::other)?;
    tokio::time::timeout(
        Duration::from_secs(5),
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timeout"))?
}

/// The end-entity certificate (DER) a TLS server at `addr` presents.
pub fn peer_certificate(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
) -> Result<Vec<u8>, String> {
    rt().block_on(async {
        let s = connect(
            super::LOCALHOST,
            addr,
            server_name,
            client_config(ca_pem, None),
        )
        .await
        .map_err(|e| e.to_string())?;
        let (_, conn) = s.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| "no peer certificate".to_owned())
    })
}

/// What a [`TlsUas`] observed.
#[derive(Default)]
pub struct UasLog {
    /// Every request received (INVITE, ACK, BYE, ...).
    pub requests: Mutex<Vec<Msg>>,
    pub handshakes_ok: AtomicUsize,
    pub handshakes_failed: AtomicUsize,
    /// Handshakes in which the client presented a certificate.
    pub client_certs: AtomicUsize,
}

impl UasLog {
    pub fn count(&self, method: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.method() == Some(method))
            .count()
    }
    pub fn first(&self, method: &str) -> Option<Msg> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.method() == Some(method))
            .cloned()
    }
}

/// A TLS SBC: answers INVITE 100/180/200 (Record-Route copied, SDP answer),
/// ACK silently, BYE/other requests 200. With `client_ca_pem` it REQUIRES a
/// client certificate issued by that CA (mTLS).
pub struct TlsUas {
    pub addr: SocketAddr,
    pub log: Arc<UasLog>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUas {
    pub fn start(
        addr: SocketAddr,
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: Option<&str>,
    ) -> TlsUas {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(cert_pem, key_pem, client_ca_pem)));
        let listener = rt()
            .block_on(TcpListener::bind(addr))
            .expect("bind TLS UAS");
        let log = Arc::new(UasLog::default());
        let l2 = log.clone();
        let task = rt().spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    break;
                };
                let acceptor = acceptor.clone();
                let log = l2.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(_) => {
                            log.handshakes_failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    log.handshakes_ok.fetch_add(1, Ordering::SeqCst);
                    if tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty())
                    {
                        log.client_certs.fetch_add(1, Ordering::SeqCst);
                    }
                    serve_uas(Conn::new(tls), addr, &log).await;
                });
            }
        });
        TlsUas { addr, log, task }
    }
}

impl Drop for TlsUas {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_uas<S>(mut conn: Conn<S>, local: SocketAddr, log: &UasLog)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let contact = format!("<sip:sbc@{}:{};transport=tls>", local.ip(), local.port());
    while let Some(req) = conn.recv(Duration::from_secs(60)).await {
        let Some(method) = req.method().map(str::to_owned) else {
            continue; // a response (e.g. to nothing we sent): ignore
        };
        log.requests.lock().unwrap().push(req.clone());
        let tag = "tlsuas1";
        match method.as_str() {
            "INVITE" => {
                let _ = conn.send(&sip::response(&req, 100, "Trying", None)).await;
                let mut ringing = sip::response(&req, 180, "Ringing", Some(tag));
                ringing.headers.insert(
                    ringing.headers.len() - 1,
                    ("Contact".into(), contact.clone()),
                );
                let _ = conn.send(&ringing).await;
                let mut ok = sip::response(&req, 200, "OK", Some(tag));
                ok.headers
                    .insert(ok.headers.len() - 1, ("Contact".into(), contact.clone()));
                let sdp = "v=0\r\no=sbc 2 2 IN IP4 127.0.0.1\r\ns=tls-sbc\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
                let ok = sip::with_body(ok, "application/sdp", sdp.as_bytes());
                let _ = conn.send(&ok).await;
            }
            "ACK" => {}
            _ => {
                let _ = conn.send(&sip::response(&req, 200, "OK", None)).await;
            }
        }
    }
}
