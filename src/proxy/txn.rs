//! Open transactions: ours (client side, keyed by our Via branch; responses
//! are delivered to the task that sent the request) and the INVITEs we
//! received (server side, keyed by the sender's branch; a CANCEL reaches the
//! call task). Each is held by a guard that unregisters it when dropped, so no
//! exit path of a call or relay task can leave one behind.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;

use crate::sip::Message;

/// What the peer can do to a pending INVITE we received.
#[derive(Debug)]
pub enum ServerEvent {
    Cancel,
}

#[derive(Default)]
pub struct Transactions {
    client: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
    server: Mutex<HashMap<String, mpsc::UnboundedSender<ServerEvent>>>,
}

/// A request we sent; its responses arrive on [`ClientTxn::recv`] until dropped.
pub struct ClientTxn {
    txns: Arc<Transactions>,
    branch: String,
    rx: mpsc::UnboundedReceiver<Message>,
}

impl ClientTxn {
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

impl Drop for ClientTxn {
    fn drop(&mut self) {
        if let Ok(mut m) = self.txns.client.lock() {
            m.remove(&self.branch);
        }
    }
}

/// An INVITE we are working on; a CANCEL for it arrives on [`ServerTxn::events`].
pub struct ServerTxn {
    txns: Arc<Transactions>,
    key: String,
    pub events: mpsc::UnboundedReceiver<ServerEvent>,
}

impl Drop for ServerTxn {
    fn drop(&mut self) {
        if let Ok(mut m) = self.txns.server.lock() {
            m.remove(&self.key);
        }
    }
}

/// The server transaction key of a request: the sender's top Via branch and host.
pub fn server_key(msg: &Message) -> Option<String> {
    let via = msg.top_via()?;
    Some(format!("{}|{}", via.branch()?, via.host))
}

impl Transactions {
    /// Registers our request sent with `branch`.
    pub fn open_client(self: &Arc<Self>, branch: String) -> ClientTxn {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut m) = self.client.lock() {
            m.insert(branch.clone(), tx);
        }
        ClientTxn {
            txns: self.clone(),
            branch,
            rx,
        }
    }

    /// Registers a received INVITE; `None` when one with that key is open
    /// already (a retransmission).
    pub fn open_server(self: &Arc<Self>, key: String) -> Option<ServerTxn> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut m = self.server.lock().ok()?;
        if m.contains_key(&key) {
            return None;
        }
        m.insert(key.clone(), tx);
        drop(m);
        Some(ServerTxn {
            txns: self.clone(),
            key,
            events,
        })
    }

    /// Hands a response to the client transaction `branch`; gives it back
    /// when none is open (a late response).
    pub fn to_client(&self, branch: &str, msg: Message) -> Option<Message> {
        let tx = self.client.lock().ok().and_then(|m| m.get(branch).cloned());
        match tx {
            Some(tx) => {
                let _ = tx.send(msg);
                None
            }
            None => Some(msg),
        }
    }

    /// Where events for the server transaction `key` go, when it is open.
    pub fn server(&self, key: &str) -> Option<mpsc::UnboundedSender<ServerEvent>> {
        self.server.lock().ok()?.get(key).cloned()
    }

    /// (client, server) transactions open.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.client.lock().map(|m| m.len()).unwrap_or(0),
            self.server.lock().map(|m| m.len()).unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        Message::parse(
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK-vsx-1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("parses")
    }

    #[tokio::test]
    async fn a_client_transaction_receives_until_dropped() {
        let txns = Arc::new(Transactions::default());
        let mut t = txns.open_client("b1".into());
        assert!(txns.to_client("b1", msg()).is_none());
        assert!(t.recv().await.is_some());
        assert_eq!(txns.counts(), (1, 0));
        drop(t);
        assert_eq!(txns.counts(), (0, 0));
        assert!(txns.to_client("b1", msg()).is_some());
    }

    #[tokio::test]
    async fn a_retransmitted_invite_opens_nothing_and_cancel_reaches_the_open_one() {
        let txns = Arc::new(Transactions::default());
        let mut t = txns.open_server("k|h".into()).expect("first");
        assert!(txns.open_server("k|h".into()).is_none());
        let tx = txns.server("k|h").expect("open");
        tx.send(ServerEvent::Cancel).expect("delivered");
        assert!(matches!(t.events.recv().await, Some(ServerEvent::Cancel)));
        drop(t);
        assert!(txns.server("k|h").is_none());
        assert!(txns.open_server("k|h".into()).is_some());
    }
}
