//! Connections: accepting (TCP, TLS), dialing (with connect timeout, TLS
//! verification against the trunk's name), stream framing, and one writer task
//! per connection so a slow peer never blocks the routing path.
//!
//! [`Transport`] owns every open connection and knows nothing of SIP routing:
//! each framed message (or framing error) goes to a [`Handler`], the one trait
//! the layer above implements (pingora's listener knows only its `ServerApp`
//! the same way). It holds the handler weakly: the handler owns the transport.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use prometheus::IntGauge;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tracing::{debug, info, warn};

use super::tls::{DialTls, ListenerTls, certificate_names};
use crate::{
    config::Transport,
    sip::framer::{Frame, FrameError, Framer},
};

pub type ConnId = u64;

/// Largest SIP message accepted; beyond it the peer gets 513.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// A message started but not finished within this time closes the connection.
const PARTIAL_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no traffic at all for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Messages queued towards one peer before it is considered stuck.
const WRITE_QUEUE: usize = 4096;
/// Protects file descriptors from connection floods.
const MAX_CONNECTIONS: usize = 20_000;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct ConnHandle {
    pub id: ConnId,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
    /// DNS names in the peer's verified client certificate (mTLS), if any.
    pub peer_names: Arc<Vec<String>>,
    tx: mpsc::Sender<Bytes>,
}

impl ConnHandle {
    /// Queues bytes for the peer; false when the connection is gone or stuck.
    pub fn send(&self, bytes: Bytes) -> bool {
        self.tx.try_send(bytes).is_ok()
    }
}

type PeerKey = (SocketAddr, Transport, Option<String>);

/// What the layer above does with what arrives on a connection.
pub trait Handler: Send + Sync + 'static {
    /// One complete message (not parsed yet).
    fn on_frame(&self, bytes: Bytes, conn: &ConnHandle);
    /// The stream cannot be framed; the connection closes after this.
    fn on_frame_error(&self, e: FrameError, conn: &ConnHandle);
}

/// Every open connection, accepted or dialed.
pub struct Connections {
    handler: Weak<dyn Handler>,
    /// `vsip_connections`.
    open: IntGauge,
    next: AtomicU64,
    by_id: RwLock<HashMap<ConnId, ConnHandle>>,
    by_peer: RwLock<HashMap<PeerKey, ConnId>>,
    dialing: Mutex<HashMap<PeerKey, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("TLS handshake with {0} ({1}): {2}")]
    Tls(SocketAddr, String, String),
    #[error("too many connections")]
    Limit,
}

impl Connections {
    /// `handler` receives what arrives; `open` counts open connections.
    pub fn new(handler: Weak<dyn Handler>, open: IntGauge) -> Self {
        Self {
            handler,
            open,
            next: AtomicU64::new(0),
            by_id: RwLock::default(),
            by_peer: RwLock::default(),
            dialing: Mutex::default(),
        }
    }

    pub fn get(&self, id: ConnId) -> Option<ConnHandle> {
        self.by_id.read().ok()?.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_id.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An open connection to `peer` over `transport` (any SNI for accepted ones).
    pub fn find(
        &self,
        peer: SocketAddr,
        transport: Transport,
        sni: Option<&str>,
    ) -> Option<ConnHandle> {
        let id = {
            let map = self.by_peer.read().ok()?;
            map.get(&(peer, transport, sni.map(str::to_owned)))
                .or_else(|| map.get(&(peer, transport, None)))
                .copied()?
        };
        self.get(id)
    }

    fn register(&self, handle: &ConnHandle, sni: Option<String>) {
        if let Ok(mut m) = self.by_id.write() {
            m.insert(handle.id, handle.clone());
        }
        if let Ok(mut m) = self.by_peer.write() {
            m.insert((handle.peer, handle.transport, sni), handle.id);
        }
    }

    fn unregister(&self, handle: &ConnHandle) {
        if let Ok(mut m) = self.by_id.write() {
            m.remove(&handle.id);
        }
        if let Ok(mut m) = self.by_peer.write() {
            m.retain(|_, id| *id != handle.id);
        }
    }

    /// A handle for a new connection, and the receiving end of its write queue.
    fn new_handle(
        &self,
        peer: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        peer_names: Vec<String>,
    ) -> (ConnHandle, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let handle = ConnHandle {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            peer,
            local,
            transport,
            peer_names: Arc::new(peer_names),
            tx,
        };
        (handle, rx)
    }

    /// Sends bytes back to where a request came from: its connection, or another
    /// open connection to the same peer if that one closed meanwhile.
    pub fn send_back(&self, origin: &ConnHandle, bytes: Bytes) -> bool {
        if origin.send(bytes.clone()) {
            return true;
        }
        match self.find(origin.peer, origin.transport, None) {
            Some(c) => c.send(bytes),
            None => false,
        }
    }

    /// Accept loop for the plain TCP listener.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        accept_loop(self, listener, |t, stream, peer, local| {
            t.run_connection(stream, peer, local, Transport::Tcp, Vec::new())
        })
        .await;
    }

    /// Accept loop for the TLS listener; the acceptor is read per connection so a
    /// reloaded certificate applies to the next handshake.
    pub async fn serve_tls(self: Arc<Self>, listener: TcpListener, tls: Arc<ListenerTls>) {
        accept_loop(self, listener, move |t, stream, peer, local| {
            let tls = tls.clone();
            async move {
                let Some(acceptor) = tls.acceptor() else {
                    return;
                };
                let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS accept failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS accept timed out");
                        return;
                    }
                };
                let names = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(certificate_names)
                    .unwrap_or_default();
                t.run_connection(tls, peer, local, Transport::Tls, names)
                    .await;
            }
        })
        .await;
    }

    /// Returns an open connection to `peer`, dialing it if needed.
    pub async fn dial(
        self: &Arc<Self>,
        peer: SocketAddr,
        transport: Transport,
        tls: Option<&DialTls>,
        timeout: Duration,
    ) -> Result<ConnHandle, DialError> {
        let sni = tls.map(|t| t.server_name.clone());
        if let Some(c) = self.find(peer, transport, sni.as_deref()) {
            return Ok(c);
        }
        // One dial per peer at a time: concurrent calls share the new connection.
        let key: PeerKey = (peer, transport, sni.clone());
        let gate = {
            let mut dialing = self.dialing.lock().map_err(|_| DialError::Limit)?;
            dialing.entry(key.clone()).or_default().clone()
        };
        let _guard = gate.lock().await;
        let result = self.dial_locked(peer, transport, tls, timeout, sni).await;
        if let Ok(mut dialing) = self.dialing.lock() {
            dialing.remove(&key);
        }
        result
    }
}

/// Accepts connections and hands each to `serve` in its own task; the one
/// place that enforces the connection limit.
async fn accept_loop<F, Fut>(conns: Arc<Connections>, listener: TcpListener, serve: F)
where
    F: Fn(Arc<Connections>, TcpStream, SocketAddr, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if conns.len() >= MAX_CONNECTIONS {
                    warn!(%peer, "connection limit reached; refusing");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(peer);
                tokio::spawn(serve(conns.clone(), stream, peer, local));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Connections {
    async fn dial_locked(
        self: &Arc<Self>,
        peer: SocketAddr,
        transport: Transport,
        tls: Option<&DialTls>,
        timeout: Duration,
        sni: Option<String>,
    ) -> Result<ConnHandle, DialError> {
        if let Some(c) = self.find(peer, transport, sni.as_deref()) {
            return Ok(c);
        }
        if self.len() >= MAX_CONNECTIONS {
            return Err(DialError::Limit);
        }
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(peer)).await {
            Err(_) => return Err(DialError::Timeout(peer)),
            Ok(Err(e)) => return Err(DialError::Connect(peer, e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .map_err(|e| DialError::Connect(peer, e))?;
        let (handle, rx) = self.new_handle(peer, local, transport, Vec::new());
        match (transport, tls) {
            (Transport::Tls, Some(t)) => {
                let name = ServerName::try_from(t.server_name.clone())
                    .map_err(|e| DialError::Tls(peer, t.server_name.clone(), e.to_string()))?;
                let connector = tokio_rustls::TlsConnector::from(t.config.clone());
                let tls_stream =
                    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
                        Err(_) => return Err(DialError::Timeout(peer)),
                        Ok(Err(e)) => {
                            return Err(DialError::Tls(peer, t.server_name.clone(), e.to_string()));
                        }
                        Ok(Ok(s)) => s,
                    };
                self.start(tls_stream, &handle, sni, rx);
            }
            _ => self.start(stream, &handle, sni, rx),
        }
        Ok(handle)
    }

    /// Registers a dialed connection and drives it in its own task.
    fn start<S>(
        self: &Arc<Self>,
        stream: S,
        handle: &ConnHandle,
        sni: Option<String>,
        rx: mpsc::Receiver<Bytes>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.register(handle, sni);
        let conns = self.clone();
        let h = handle.clone();
        tokio::spawn(async move { conns.drive(stream, h, rx).await });
    }

    async fn run_connection<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        peer_names: Vec<String>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (handle, rx) = self.new_handle(peer, local, transport, peer_names);
        self.register(&handle, None);
        self.drive(stream, handle, rx).await;
    }

    /// Runs one connection until either side closes it.
    async fn drive<S>(&self, stream: S, handle: ConnHandle, rx: mpsc::Receiver<Bytes>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.open.inc();
        let (reader, writer) = tokio::io::split(stream);
        let closing = Arc::new(tokio::sync::Notify::new());
        let mut writer_task = tokio::spawn(write_loop(writer, rx, closing.clone()));
        // Upgraded once per connection: the handler outlives every connection
        // unless the whole proxy is being dropped.
        if let Some(handler) = self.handler.upgrade() {
            read_loop(&*handler, reader, &handle).await;
        }
        self.unregister(&handle);
        // Let queued answers (e.g. a 400 or 513 sent just before closing) go out.
        closing.notify_one();
        if tokio::time::timeout(Duration::from_secs(2), &mut writer_task)
            .await
            .is_err()
        {
            writer_task.abort();
        }
        self.open.dec();
        debug!(peer = %handle.peer, "connection closed");
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<Bytes>,
    closing: Arc<tokio::sync::Notify>,
) {
    let mut batch = Vec::with_capacity(64);
    loop {
        let closing_now = tokio::select! {
            n = rx.recv_many(&mut batch, 64) => {
                if n == 0 {
                    break;
                }
                false
            }
            _ = closing.notified() => {
                while let Ok(b) = rx.try_recv() {
                    batch.push(b);
                }
                true
            }
        };
        for chunk in batch.drain(..) {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() || closing_now {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(handler: &dyn Handler, mut reader: R, conn: &ConnHandle) {
    let mut framer = Framer::new(MAX_MESSAGE);
    // When the message now buffered began: it must be complete 10 s later,
    // however slowly its bytes trickle in.
    let mut partial_since: Option<tokio::time::Instant> = None;
    loop {
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    partial_since = None;
                    handler.on_frame(bytes, conn);
                }
                Ok(Some(Frame::KeepAlive)) => {
                    conn.send(Bytes::from_static(b"\r\n"));
                }
                Ok(None) => break,
                Err(e) => {
                    handler.on_frame_error(e, conn);
                    // Framing is lost: the stream cannot be resynchronised.
                    return;
                }
            }
        }
        let now = tokio::time::Instant::now();
        let deadline = if framer.buffered() > 0 {
            *partial_since.get_or_insert(now) + PARTIAL_MESSAGE_TIMEOUT
        } else {
            partial_since = None;
            now + IDLE_TIMEOUT
        };
        let buf = framer.buffer_mut();
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        match tokio::time::timeout_at(deadline, reader.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                info!(peer = %conn.peer, "closing connection: no complete message in time");
                return;
            }
        }
    }
}

impl From<&FrameError> for &'static str {
    fn from(e: &FrameError) -> Self {
        match e {
            FrameError::Oversize { .. } => "oversize",
            FrameError::MissingContentLength { .. } => "missing_content_length",
            FrameError::BadContentLength { .. } => "bad_content_length",
            FrameError::Malformed(_) => "malformed",
        }
    }
}
