//! Fleet-wide quota between two proxy cores over real HTTP on loopback: the
//! non-owner leases token batches from the owner's admin endpoint, the owner's
//! log bounds the fleet, and an unreachable owner means a local share.
//! (The two-process proof on a real control plane is e2e/fleet-cpm-check.sh.)

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use vsip::{
    config::ProxyConfig,
    dns::Resolver,
    proxy::{
        ConfigOverrides,
        local::Listeners,
        quota::{
            client, grant,
            peers::{Peer, PeerSet},
        },
        route_sig::RouteKey,
        routes::Routes,
        server::{Server, Settings},
        tls::ListenerTls,
    },
    telemetry::metrics::ProxyMetrics,
};

const SID: &str = "TS00000000000000000000000000quota";
const QUOTA: u32 = 40;

fn core(name: &str) -> (Arc<Server>, prometheus::Registry) {
    let yaml = format!(
        "listen: {{ tcp: 127.0.0.1:0 }}\n\
         signalingDomain: pstn.example.net\n\
         trunks:\n  - name: acme/quota\n    trunkSid: {SID}\n    fqdn: sip.acme.example\n    \
         transport: TCP\n    numbers: [\"+911234567890\"]\n    callsPerMinute: {QUOTA}\n"
    );
    let config = ProxyConfig::from_yaml(&yaml).expect("test config parses");
    let registry = prometheus::Registry::new();
    let metrics = ProxyMetrics::new(&registry);
    let resolver = Resolver::new(&config.dns, &registry).expect("resolver");
    let tls = ListenerTls::new(&config.listen).expect("no TLS listener");
    let routes = Routes::compile(config, &Routes::empty()).expect("routes compile");
    let listeners = Listeners {
        tcp: None,
        tls: None,
    };
    let settings = Settings {
        instance: name.to_owned(),
        listeners,
        route_key: RouteKey::random(),
        overrides: ConfigOverrides::default(),
    };
    (
        Server::new(routes, resolver, metrics, tls, settings),
        registry,
    )
}

async fn serve_grants(core: Arc<Server>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, grant::router(core)).await;
    });
    (addr, task)
}

/// Two pod names such that the first owns SID.
fn names() -> (String, String) {
    for i in 0..100 {
        let (a, b) = (format!("proxy-{i}a"), format!("proxy-{i}b"));
        let set = PeerSet {
            me: a.clone(),
            peers: vec![
                Peer {
                    name: a.clone(),
                    endpoint: String::new(),
                },
                Peer {
                    name: b.clone(),
                    endpoint: String::new(),
                },
            ],
        };
        if set.owner(SID).map(|p| p.name.as_str()) == Some(a.as_str()) {
            return (a, b);
        }
    }
    unreachable!("one of 100 pairs has the first name as owner")
}

fn pair(me: &str, owner: &str, owner_endpoint: &str, other: &str) -> PeerSet {
    let mut peers = vec![
        Peer {
            name: owner.to_owned(),
            endpoint: owner_endpoint.to_owned(),
        },
        Peer {
            name: other.to_owned(),
            endpoint: "http://127.0.0.1:9".to_owned(),
        },
    ];
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    PeerSet {
        me: me.to_owned(),
        peers,
    }
}

fn metric(reg: &prometheus::Registry, name: &str, label: Option<&str>) -> u64 {
    reg.gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| label.is_none_or(|l| m.get_label().iter().any(|p| p.value() == l)))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test]
async fn non_owner_leases_batches_and_the_owner_log_bounds_the_fleet() {
    let (owner_name, other_name) = names();
    let (owner, owner_reg) = core(&owner_name);
    let (other, other_reg) = core(&other_name);
    let (addr, server) = serve_grants(owner.clone()).await;
    let endpoint = format!("http://{addr}");
    owner.quota().peers.store(Arc::new(pair(
        &owner_name,
        &owner_name,
        &endpoint,
        &other_name,
    )));
    other.quota().peers.store(Arc::new(pair(
        &other_name,
        &owner_name,
        &endpoint,
        &other_name,
    )));
    let owner_trunk = owner.routes().load().trunks[0].clone();
    let other_trunk = other.routes().load().trunks[0].clone();

    // All load on the non-owner first: it gets the whole quota, in batches.
    let mut admitted = 0;
    for _ in 0..30 {
        if other.quota().admit(&other_trunk).await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 30);
    let batches = metric(&owner_reg, "vsip_cpm_grants_served_total", Some("granted"));
    // k = max(1, 40 / (20 * 2)) = 1 would be one request per call; 40 / 40 = 1.
    assert_eq!(batches, 30, "one token per request at k = 1");
    // Then load on both: together never more than the quota. The owner's first
    // "exhausted" comes after this instant.
    let asked = Instant::now();
    let mut both = 0;
    for _ in 0..20 {
        if owner.quota().admit(&owner_trunk).await.is_ok() {
            both += 1;
        }
        if other.quota().admit(&other_trunk).await.is_ok() {
            both += 1;
        }
    }
    assert_eq!(
        admitted + both,
        QUOTA as usize,
        "the fleet admits exactly the quota"
    );
    let refused = other.quota().admit(&other_trunk).await;
    let wait = refused.expect_err("quota exhausted");
    assert!(
        wait.as_secs() >= 59,
        "retry after the oldest admission expires: {wait:?}"
    );
    // 5 rounds filled the last 10; the owner's first "exhausted" is then trusted
    // locally (for up to a second), so 16 refusals cost one request, not 16.
    assert_eq!(
        metric(
            &other_reg,
            "vsip_cpm_peer_requests_total",
            Some("exhausted")
        ),
        1
    );
    // The non-owner's own log holds what it let through: it could take over from there.
    assert!(other_trunk.state.cpm.in_window(Instant::now()) >= 30);

    // Owner gone: the non-owner falls back to quota / 2, counted against what it
    // already admitted (≥ 30 > 20), so it refuses rather than exceed the quota.
    server.abort();
    let _ = server.await;
    let (dead, _) = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        (l.local_addr().expect("addr"), drop(l))
    };
    other.quota().peers.store(Arc::new(pair(
        &other_name,
        &owner_name,
        &format!("http://{dead}"),
        &other_name,
    )));
    // Refused all along: locally while the owner's last "exhausted" is trusted
    // (EXHAUSTED_RECHECK), then on the fallback share once it asks again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&other_reg, "vsip_cpm_local_fallback_total", None) == 0 {
        assert!(
            Instant::now() < deadline,
            "never fell back to the local share"
        );
        assert!(other.quota().admit(&other_trunk).await.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        asked.elapsed() >= vsip::proxy::quota::EXHAUSTED_RECHECK,
        "asked the owner again {:?} after its \"exhausted\" (at the earliest)",
        asked.elapsed()
    );
    assert_eq!(metric(&other_reg, "vsip_cpm_local_fallback_total", None), 1);
}

#[tokio::test]
async fn batches_are_larger_with_a_larger_quota_and_tokens_are_spent_locally() {
    let (owner_name, other_name) = names();
    let (owner, owner_reg) = core(&owner_name);
    let (other, _) = core(&other_name);
    // A bigger quota on both: k = 400 / 40 = 10.
    for c in [&owner, &other] {
        c.routes().load().trunks[0].state.cpm.set_limit(400);
    }
    let (addr, _server) = serve_grants(owner.clone()).await;
    other.quota().peers.store(Arc::new(pair(
        &other_name,
        &owner_name,
        &format!("http://{addr}"),
        &other_name,
    )));
    let trunk = other.routes().load().trunks[0].clone();
    for _ in 0..25 {
        other.quota().admit(&trunk).await.expect("under quota");
    }
    let requests = metric(&owner_reg, "vsip_cpm_grants_served_total", Some("granted"));
    assert_eq!(requests, 3, "25 calls = 3 batches of 10");
    // Stamped at grant time: the owner counts 30 although 25 were used.
    let owner_trunk = owner.routes().load().trunks[0].clone();
    assert_eq!(owner_trunk.state.cpm.in_window(Instant::now()), 30);
}

#[tokio::test]
async fn grant_endpoint_refuses_garbage_and_unknown_trunks() {
    let (owner, _) = core("solo");
    let (addr, _server) = serve_grants(owner).await;
    let client = client::Client::new();
    let err = client
        .request(&format!("http://{addr}"), "TSnope", 5)
        .await
        .expect_err("unknown trunk");
    assert!(err.to_string().contains("404"), "{err}");
    // Raw garbage body: 400, not a crash.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST /quota/v1/grant HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\n{nope")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
}
