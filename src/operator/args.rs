//! `vsip operator`'s command line, and the fleet settings it becomes.

use std::net::SocketAddr;

use super::fleet::{Exposure, FleetSettings};
use crate::config::{DEFAULT_HEADER_PREFIX, DnsConfig, TransportPorts};

/// Command-line arguments of `vsip operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Namespaces to watch for trunks (comma-separated or repeated); all namespaces when empty.
    #[arg(long, value_delimiter = ',', env = "VSIP_NAMESPACES")]
    pub namespaces: Vec<String>,
    /// Namespace of the proxy fleet, its configuration Secret and the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vsip-system")]
    pub fleet_namespace: String,
    /// Admin HTTP: /metrics, /healthz, /readyz.
    #[arg(long, default_value = "0.0.0.0:9091")]
    pub metrics_addr: SocketAddr,
    /// Container image of the proxies.
    #[arg(long, env = "VSIP_PROXY_IMAGE")]
    pub proxy_image: String,
    /// imagePullPolicy of the proxies.
    #[arg(long)]
    pub proxy_image_pull_policy: Option<PullPolicy>,
    #[arg(long, default_value_t = 2)]
    pub proxy_replicas: i32,
    /// Type of the proxies' Service.
    #[arg(long, default_value = "ClusterIP")]
    pub service_type: ServiceType,
    /// Where trunk-originated calls go, e.g. `sip:carrier.example.net:5060;transport=tcp`.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Host the proxies stamp in From / P-Asserted-Identity.
    #[arg(long, default_value = "pstn.example.net")]
    pub signaling_domain: String,
    #[arg(long, default_value = DEFAULT_HEADER_PREFIX)]
    pub header_prefix: String,
    /// `kubernetes.io/tls` Secret (fleet namespace) of the proxies' TLS listener; no TLS
    /// listener without it.
    #[arg(long)]
    pub listener_cert_secret: Option<String>,
    /// Resolver(s) the operator uses for `DnsResolved` (`ip:port`); system resolver when empty.
    #[arg(long = "dns-nameserver")]
    pub dns_nameservers: Vec<SocketAddr>,
    /// Boxed: keeps `vsip`'s subcommand enum small (clippy::large_enum_variant).
    #[command(flatten)]
    pub leadership: Box<LeadershipArgs>,
    #[command(flatten)]
    pub exposure: Box<ExposureArgs>,
}

/// Where carriers and SBCs reach the fleet: what the proxies advertise in Via and
/// Record-Route (in-dialog requests are sent there), and the Service's fixed node ports.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExposureArgs {
    /// Host or IP the proxies put in Via and Record-Route: an address carriers and SBCs
    /// reach (the Service's external address, a node's address). Default: the pod's address.
    #[arg(long)]
    pub advertise_host: Option<String>,
    /// Port advertised for SIP over TCP (e.g. the Service's node port). Default: 5070.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub advertise_tcp_port: Option<u16>,
    /// Port advertised for SIP over TLS (e.g. the Service's node port). Default: 5061.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub advertise_tls_port: Option<u16>,
    /// Node port of the Service's SIP TCP port (NodePort, LoadBalancer). Default: allocated.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub service_node_port_tcp: Option<u16>,
    /// Node port of the Service's SIP TLS port (NodePort, LoadBalancer). Default: allocated.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub service_node_port_tls: Option<u16>,
}

impl ExposureArgs {
    pub fn exposure(&self) -> Exposure {
        Exposure {
            advertise_host: self.advertise_host.clone(),
            advertise_ports: TransportPorts {
                tcp: self.advertise_tcp_port,
                tls: self.advertise_tls_port,
            },
            node_ports: TransportPorts {
                tcp: self.service_node_port_tcp,
                tls: self.service_node_port_tls,
            },
        }
    }
}

/// Leader election, and the owner of what the operator writes in the fleet namespace.
#[derive(clap::Args, Debug, Clone)]
pub struct LeadershipArgs {
    /// Name of the leader-election Lease (fleet namespace).
    #[arg(long, default_value = "vsip-operator")]
    pub leader_lease: String,
    /// Run without leader election (a single replica, tests).
    #[arg(long)]
    pub no_leader_election: bool,
    /// The operator's own Deployment (fleet namespace). Every fleet object and the leader
    /// Lease get an ownerReference to it, so deleting it (`helm uninstall`) garbage-collects
    /// them. Without it the objects are unowned (an operator run by hand).
    #[arg(long, env = "VSIP_OWNER_DEPLOYMENT")]
    pub owner_deployment: Option<String>,
}

/// Type of the proxies' Service.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    #[value(name = "ClusterIP")]
    ClusterIp,
    #[value(name = "NodePort")]
    NodePort,
    #[value(name = "LoadBalancer")]
    LoadBalancer,
}

/// `imagePullPolicy` of the proxies.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    #[value(name = "Always")]
    Always,
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    #[value(name = "Never")]
    Never,
}

impl OperatorArgs {
    pub fn fleet(&self) -> FleetSettings {
        FleetSettings {
            namespace: self.fleet_namespace.clone(),
            image: self.proxy_image.clone(),
            image_pull_policy: self.proxy_image_pull_policy.map(|p| {
                match p {
                    PullPolicy::Always => "Always",
                    PullPolicy::IfNotPresent => "IfNotPresent",
                    PullPolicy::Never => "Never",
                }
                .to_owned()
            }),
            replicas: self.proxy_replicas,
            service_type: match self.service_type {
                ServiceType::ClusterIp => "ClusterIP",
                ServiceType::NodePort => "NodePort",
                ServiceType::LoadBalancer => "LoadBalancer",
            }
            .to_owned(),
            upstream: self.upstream.clone(),
            signaling_domain: self.signaling_domain.clone(),
            header_prefix: self.header_prefix.clone(),
            listener_cert_secret: self.listener_cert_secret.clone(),
            // The proxies use the same resolvers, with the default maxTtl (60 s).
            dns: DnsConfig {
                nameservers: self.dns_nameservers.clone(),
                ..DnsConfig::default()
            },
            // Filled in by `run` from the API (`--owner-deployment`).
            owner: None,
            exposure: self.exposure.exposure(),
        }
    }
}
