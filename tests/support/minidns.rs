//! A tiny authoritative DNS server over UDP (real sockets, real DNS wire
//! format) whose records a test changes at run time. It is the harness's
//! fallback when `VSIP_TEST_DNS=mini` is set, and a second opinion when the
//! lab server (`vsip::lab::LabDns`) is suspected: both serve the same
//! records.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Addr(IpAddr, u32),
    ServFail,
    /// No answer at all: the query is silently dropped.
    Drop,
}

#[derive(Clone, Debug)]
pub struct MiniRecord {
    pub name: String,
    /// 1 = A, 28 = AAAA
    pub qtype: u16,
    pub answer: Answer,
}

impl MiniRecord {
    pub fn addr(name: &str, ip: IpAddr, ttl: u32) -> Self {
        Self {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            qtype: if ip.is_ipv4() { 1 } else { 28 },
            answer: Answer::Addr(ip, ttl),
        }
    }
    pub fn servfail(name: &str, qtype: u16) -> Self {
        Self {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            qtype,
            answer: Answer::ServFail,
        }
    }
    pub fn drop(name: &str, qtype: u16) -> Self {
        Self {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            qtype,
            answer: Answer::Drop,
        }
    }
}

pub struct MiniDns {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<MiniRecord>>>,
    queries: Arc<Mutex<Vec<(String, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MiniDns {
    pub fn start(addr: SocketAddr, records: Vec<MiniRecord>) -> MiniDns {
        let sock = super::rt()
            .block_on(tokio::net::UdpSocket::bind(addr))
            .expect("bind mini DNS");
        let addr = sock.local_addr().expect("mini DNS address");
        let records = Arc::new(Mutex::new(records));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (records.clone(), queries.clone());
        let task = super::rt().spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    break;
                };
                if let Some(reply) = answer(&buf[..n], &r, &q) {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        });
        MiniDns {
            addr,
            records,
            queries,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_records(&self, records: Vec<MiniRecord>) {
        *self.records.lock().unwrap() = records;
    }

    /// (name, qtype) of every query received so far.
    pub fn queries(&self) -> Vec<(String, u16)> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for MiniDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(
    q: &[u8],
    records: &Mutex<Vec<MiniRecord>>,
    log: &Mutex<Vec<(String, u16)>>,
) -> Option<Vec<u8>> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // QNAME
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question_end = i + 4;
    q.get(..question_end)?;
    let name = labels.join(".");
    log.lock().unwrap().push((name.clone(), qtype));
    let recs = records.lock().unwrap().clone();
    let matching: Vec<&MiniRecord> = recs
        .iter()
        .filter(|r| r.name == name && r.qtype == qtype)
        .collect();
    if matching.iter().any(|r| r.answer == Answer::Drop) {
        return None;
    }
    let servfail = matching.iter().any(|r| r.answer == Answer::ServFail);
    let known_name = recs.iter().any(|r| r.name == name);
    let addrs: Vec<(IpAddr, u32)> = matching
        .iter()
        .filter_map(|r| match r.answer {
            Answer::Addr(ip, ttl) => Some((ip, ttl)),
            _ => None,
        })
        .collect();
    // RCODE: SERVFAIL, NXDOMAIN for unknown names, else NOERROR (maybe NODATA).
    let rcode: u16 = if servfail {
        2
    } else if !known_name {
        3
    } else {
        0
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q[0..2]); // ID
    let rd = u16::from_be_bytes([q[2], q[3]]) & 0x0100;
    let flags: u16 = 0x8000 | 0x0400 | rd | 0x0080 | rcode; // QR AA RD RA
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    let an = if rcode == 0 { addrs.len() as u16 } else { 0 };
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&q[12..question_end]);
    if rcode == 0 {
        for (ip, ttl) in addrs {
            out.extend_from_slice(&[0xc0, 0x0c]);
            out.extend_from_slice(&qtype.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            match ip {
                IpAddr::V4(v4) => {
                    out.extend_from_slice(&4u16.to_be_bytes());
                    out.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    out.extend_from_slice(&16u16.to_be_bytes());
                    out.extend_from_slice(&v6.octets());
                }
            }
        }
    }
    Some(out)
}
