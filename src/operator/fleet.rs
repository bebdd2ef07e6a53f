//! The proxy fleet the operator owns (brief §7): Deployment, Service, PodDisruptionBudget,
//! ServiceAccount, Role, RoleBinding and the rendered configuration Secret.
//!
//! Builders are pure (unit-tested); [`FleetApplier`] writes them with server-side apply under
//! one field manager, and only when their content changed since the last write.
//!
//! Ownership: with `--owner-deployment` (the chart sets it to the operator's own Deployment)
//! every fleet object carries an ownerReference to that Deployment, so deleting it
//! (`helm uninstall`) lets the garbage collector delete the whole fleet. Without it (an
//! operator run by hand) the objects are unowned and stay until deleted.

use std::{collections::BTreeMap, collections::HashMap, net::SocketAddr, path::PathBuf};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
            ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource, SecurityContext,
            Service, ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
            VolumeMount,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{Error, FIELD_MANAGER, render::fnv1a_128};
use crate::config::{CertificateFiles, ProxyConfig, Transport, TransportPorts};

/// The Secret holding the rendered configuration, and its key.
pub const CONFIG_SECRET: &str = "vsip-proxy-config";
pub const CONFIG_KEY: &str = "config.yaml";
/// Annotation on the config Secret naming the revision it holds.
pub const REVISION_ANNOTATION: &str = "vsip.io/revision";
/// Name of the Deployment, Service, PDB, ServiceAccount, Role and RoleBinding.
pub const PROXY_NAME: &str = "vsip-proxy";

pub const SIP_TCP_PORT: u16 = 5070;
pub const SIP_TLS_SERVICE_PORT: u16 = 443;
pub const SIP_TLS_CONTAINER_PORT: u16 = 5061;
pub const ADMIN_PORT: u16 = 9090;
const LISTENER_CERT_DIR: &str = "/etc/vsip/listener";

/// Fleet settings (Helm values → operator flags).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetSettings {
    pub namespace: String,
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub replicas: i32,
    pub service_type: String,
    pub upstream: Option<String>,
    pub signaling_domain: String,
    pub header_prefix: String,
    /// `kubernetes.io/tls` Secret in the fleet namespace for the proxies' TLS listener.
    pub listener_cert_secret: Option<String>,
    /// Resolvers the proxies use (rendered into their configuration).
    pub dns: crate::config::DnsConfig,
    /// Owner of every fleet object (the operator's Deployment, same namespace); `None` =
    /// unowned objects.
    pub owner: Option<OwnerReference>,
    /// Where carriers and SBCs reach the fleet.
    pub exposure: Exposure,
}

/// Where carriers and SBCs reach the proxies: the address and ports rendered into the
/// proxies' Via and Record-Route (in-dialog requests come back there), and the Service's
/// node ports when they are fixed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposure {
    /// Host or IP in Via and Record-Route; `None` = the pod's own address.
    pub advertise_host: Option<String>,
    /// Ports in Via and Record-Route, per transport; unset = the container's.
    pub advertise_ports: TransportPorts,
    /// Node ports of a NodePort or LoadBalancer Service; unset = allocated by Kubernetes.
    pub node_ports: TransportPorts,
}

impl FleetSettings {
    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self {
            namespace: "vsip-system".into(),
            image: "ghcr.io/example/vsip:test".into(),
            image_pull_policy: None,
            replicas: 2,
            service_type: "ClusterIP".into(),
            upstream: Some("sip:carrier.example.net:5060;transport=tcp".into()),
            signaling_domain: "pstn.example.net".into(),
            header_prefix: crate::config::DEFAULT_HEADER_PREFIX.into(),
            listener_cert_secret: None,
            dns: Default::default(),
            owner: None,
            exposure: Exposure::default(),
        }
    }

    pub fn sip_tcp_listen(&self) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], SIP_TCP_PORT))
    }
    pub fn sip_tls_listen(&self) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], SIP_TLS_CONTAINER_PORT))
    }
    pub fn admin_listen(&self) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], ADMIN_PORT))
    }
    /// Where the listener certificate Secret is mounted in the proxy pods.
    pub fn listener_certificate_files(&self) -> Option<CertificateFiles> {
        self.listener_cert_secret
            .as_ref()
            .map(|_| CertificateFiles {
                cert_file: PathBuf::from(format!("{LISTENER_CERT_DIR}/tls.crt")),
                key_file: PathBuf::from(format!("{LISTENER_CERT_DIR}/tls.key")),
            })
    }
}

/// `app.kubernetes.io/*` labels of every fleet object.
pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "vsip".into()),
        ("app.kubernetes.io/component".into(), "proxy".into()),
        ("app.kubernetes.io/part-of".into(), "vsip".into()),
        ("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into()),
    ])
}

/// The proxies' pod selector.
pub fn selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "vsip".into()),
        ("app.kubernetes.io/component".into(), "proxy".into()),
    ])
}

/// The ownerReference naming the operator's Deployment as the fleet's owner: `controller`
/// (the operator manages these objects), `blockOwnerDeletion: false` (deleting the operator
/// never waits for the fleet, and setting it needs no `deployments/finalizers` permission).
/// `None` when the Deployment has no UID (not read from the API).
pub fn owner_reference(owner: &Deployment) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: owner.metadata.name.clone()?,
        uid: owner.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(false),
    })
}

fn meta(name: &str, fleet: &FleetSettings) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(fleet.namespace.clone()),
        labels: Some(labels()),
        owner_references: fleet.owner.clone().map(|o| vec![o]),
        ..Default::default()
    }
}

/// The configuration Secret for a rendered config.
pub fn config_secret(config: &ProxyConfig, fleet: &FleetSettings) -> Secret {
    let mut m = meta(CONFIG_SECRET, fleet);
    if let Some(rev) = &config.revision {
        m.annotations = Some(BTreeMap::from([(REVISION_ANNOTATION.into(), rev.clone())]));
    }
    Secret {
        metadata: m,
        type_: Some("Opaque".into()),
        // `config.yaml`, or `config.yaml.gz` when large (a Secret holds at most 1 MiB).
        data: Some(super::render::config_secret_data(config)),
        ..Default::default()
    }
}

pub fn service_account(fleet: &FleetSettings) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(PROXY_NAME, fleet),
        ..Default::default()
    }
}

/// Least privilege for the proxies: read their one config Secret; keep their heartbeat Lease
/// (create, renew, delete it on shutdown) and read their peers' (list/watch: the fleet-wide
/// CPM quota finds the live proxies through them). Lease names are per pod, so those rules
/// cannot name resources.
pub fn role(fleet: &FleetSettings) -> Role {
    Role {
        metadata: meta(PROXY_NAME, fleet),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["secrets".into()]),
                resource_names: Some(vec![CONFIG_SECRET.into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec!["coordination.k8s.io".into()]),
                resources: Some(vec!["leases".into()]),
                verbs: PROXY_LEASE_VERBS.iter().map(|v| (*v).into()).collect(),
                ..Default::default()
            },
        ]),
    }
}

/// What the proxies may do with Leases in the fleet namespace (the operator must hold all of
/// it to grant it: charts/vsip-operator/templates/rbac.yaml).
pub const PROXY_LEASE_VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

pub fn role_binding(fleet: &FleetSettings) -> RoleBinding {
    RoleBinding {
        metadata: meta(PROXY_NAME, fleet),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: PROXY_NAME.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: PROXY_NAME.into(),
            namespace: Some(fleet.namespace.clone()),
            ..Default::default()
        }]),
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Startup probe of the proxies: every 2 s, up to 150 times (5 minutes).
const STARTUP_PROBE_PERIOD: i32 = 2;
const STARTUP_PROBE_FAILURES: i32 = 150;

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

fn port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The proxies: `vsip proxy --kube-config-secret NS/vsip-proxy-config`, restricted pod security.
pub fn deployment(fleet: &FleetSettings) -> Deployment {
    let mut ports = vec![port("sip-tcp", SIP_TCP_PORT)];
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    if let Some(secret) = &fleet.listener_cert_secret {
        ports.push(port("sip-tls", SIP_TLS_CONTAINER_PORT));
        volumes.push(Volume {
            name: "listener-cert".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "listener-cert".into(),
            mount_path: LISTENER_CERT_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    ports.push(port("admin", ADMIN_PORT));
    let container = Container {
        name: "proxy".into(),
        image: Some(fleet.image.clone()),
        image_pull_policy: fleet.image_pull_policy.clone(),
        args: Some(vec![
            "proxy".into(),
            "--kube-config-secret".into(),
            format!("{}/{CONFIG_SECRET}", fleet.namespace),
        ]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            // Where peers reach this proxy's quota endpoint (admin port).
            field_env("POD_IP", "status.podIP"),
        ]),
        ports: Some(ports),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        // The admin port opens once the first configuration is read from the API server.
        // Until then the startup probe holds the liveness probe back (up to 5 minutes)
        // instead of letting the kubelet kill a proxy that is waiting (seen on the node:
        // "Liveness probe failed: connection refused" while the config Secret was written).
        startup_probe: Some(Probe {
            failure_threshold: Some(STARTUP_PROBE_FAILURES),
            ..http_probe("/healthz", STARTUP_PROBE_PERIOD)
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("64Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("512Mi".into()),
            )])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    Deployment {
        metadata: meta(PROXY_NAME, fleet),
        spec: Some(DeploymentSpec {
            replicas: Some(fleet.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(PROXY_NAME.into()),
                    // Calls in progress get time to finish on a rollout.
                    termination_grace_period_seconds: Some(60),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        fs_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".into(),
                        when_unsatisfiable: "ScheduleAnyway".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// TCP 5070 and (with a listener certificate) TLS 443 → the container ports.
pub fn service(fleet: &FleetSettings) -> Service {
    let external = matches!(fleet.service_type.as_str(), "LoadBalancer" | "NodePort");
    // A fixed node port only where the Service has node ports (a ClusterIP refuses one).
    let node_port = |t: Transport| {
        external
            .then(|| fleet.exposure.node_ports.get(t).map(i32::from))
            .flatten()
    };
    let mut ports = vec![ServicePort {
        name: Some("sip-tcp".into()),
        port: i32::from(SIP_TCP_PORT),
        target_port: Some(IntOrString::String("sip-tcp".into())),
        protocol: Some("TCP".into()),
        node_port: node_port(Transport::Tcp),
        ..Default::default()
    }];
    if fleet.listener_cert_secret.is_some() {
        ports.push(ServicePort {
            name: Some("sip-tls".into()),
            port: i32::from(SIP_TLS_SERVICE_PORT),
            target_port: Some(IntOrString::String("sip-tls".into())),
            protocol: Some("TCP".into()),
            node_port: node_port(Transport::Tls),
            ..Default::default()
        });
    }
    Service {
        metadata: meta(PROXY_NAME, fleet),
        spec: Some(ServiceSpec {
            type_: Some(fleet.service_type.clone()),
            selector: Some(selector_labels()),
            ports: Some(ports),
            // Trunk-originated calls are recognised by their source address: keep it.
            external_traffic_policy: external.then(|| "Local".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod_disruption_budget(fleet: &FleetSettings) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(PROXY_NAME, fleet),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes fleet objects by server-side apply, skipping objects unchanged since the last write.
pub struct FleetApplier {
    client: Client,
    namespace: String,
    written: HashMap<String, u128>,
}

impl FleetApplier {
    pub fn new(client: Client, namespace: String) -> Self {
        Self {
            client,
            namespace,
            written: HashMap::new(),
        }
    }

    /// Forgets what was written, so the next [`Self::apply_all`] re-asserts every object.
    pub fn forget(&mut self) {
        self.written.clear();
    }

    /// Applies one object; returns whether it was written.
    pub async fn apply<K>(&mut self, obj: &K) -> Result<bool, Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Serialize
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let key = format!("{}/{}", K::kind(&()), name);
        let hash = fnv1a_128(&serde_json::to_vec(obj)?);
        if self.written.get(&key) == Some(&hash) {
            return Ok(false);
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?;
        self.written.insert(key, hash);
        tracing::info!(object = %format!("{}/{}/{}", K::kind(&()), self.namespace, name), "applied");
        Ok(true)
    }

    /// ServiceAccount, Role, RoleBinding, Service, PodDisruptionBudget, Deployment.
    pub async fn apply_all(&mut self, fleet: &FleetSettings) -> Result<(), Error> {
        self.apply(&service_account(fleet)).await?;
        self.apply(&role(fleet)).await?;
        self.apply(&role_binding(fleet)).await?;
        self.apply(&service(fleet)).await?;
        self.apply(&pod_disruption_budget(fleet)).await?;
        self.apply(&deployment(fleet)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_is_restricted_and_points_at_the_config_secret() {
        let mut fleet = FleetSettings::for_tests();
        fleet.listener_cert_secret = Some("listener-tls".into());
        let d = deployment(&fleet);
        let pod = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_deref().unwrap_or_default(),
            [
                "proxy",
                "--kube-config-secret",
                "vsip-system/vsip-proxy-config"
            ]
        );
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(pod.service_account_name.as_deref(), Some(PROXY_NAME));
        let names: Vec<_> = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone())
            .collect();
        assert_eq!(names, ["sip-tcp", "sip-tls", "admin"]);
        // Liveness only once started: a proxy waiting for its first configuration (the
        // admin port still closed) gets 5 minutes before the kubelet may kill it.
        let startup = c.startup_probe.as_ref().expect("startup probe");
        let get = startup.http_get.as_ref().expect("httpGet");
        assert_eq!(get.path.as_deref(), Some("/healthz"));
        assert_eq!(get.port, IntOrString::String("admin".into()));
        let patience =
            startup.period_seconds.unwrap_or(10) * startup.failure_threshold.unwrap_or(3);
        assert!(patience >= 300, "startup probe gives up after {patience}s");
    }

    #[test]
    fn service_maps_tcp_5070_and_tls_443() {
        let mut fleet = FleetSettings::for_tests();
        let plain = service(&fleet);
        assert_eq!(
            plain
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .map(Vec::len),
            Some(1)
        );
        fleet.listener_cert_secret = Some("listener-tls".into());
        fleet.service_type = "LoadBalancer".into();
        let s = service(&fleet);
        let spec = s.spec.expect("spec");
        let ports: Vec<(i32, Option<IntOrString>)> = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.port, p.target_port))
            .collect();
        assert_eq!(
            ports,
            [
                (5070, Some(IntOrString::String("sip-tcp".into()))),
                (443, Some(IntOrString::String("sip-tls".into())))
            ]
        );
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    }

    #[test]
    fn fixed_node_ports_only_where_the_service_has_node_ports() {
        let mut fleet = FleetSettings::for_tests();
        fleet.listener_cert_secret = Some("vsip-listener-tls".into());
        fleet.exposure.node_ports = TransportPorts {
            tcp: Some(30570),
            tls: Some(30443),
        };
        let node_ports = |f: &FleetSettings| -> Vec<Option<i32>> {
            let spec = service(f).spec.expect("spec");
            spec.ports
                .unwrap_or_default()
                .iter()
                .map(|p| p.node_port)
                .collect()
        };
        fleet.service_type = "NodePort".into();
        assert_eq!(node_ports(&fleet), [Some(30570), Some(30443)]);
        fleet.service_type = "LoadBalancer".into();
        assert_eq!(node_ports(&fleet), [Some(30570), Some(30443)]);
        // A ClusterIP Service has no node ports: the API server would refuse one.
        fleet.service_type = "ClusterIP".into();
        assert_eq!(node_ports(&fleet), [None, None]);
        fleet.service_type = "NodePort".into();
        fleet.exposure.node_ports = TransportPorts::default();
        assert_eq!(node_ports(&fleet), [None, None]);
    }

    #[test]
    fn role_is_least_privilege() {
        let r = role(&FleetSettings::for_tests());
        let rules = r.rules.expect("rules");
        // Secrets: only the config Secret, read-only.
        let secrets: Vec<_> = rules
            .iter()
            .filter(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..]))
            .collect();
        assert_eq!(secrets.len(), 1);
        assert_eq!(
            secrets[0].resource_names.as_deref(),
            Some(&[CONFIG_SECRET.to_string()][..])
        );
        assert_eq!(secrets[0].verbs, ["get", "list", "watch"]);
        // Leases: their heartbeats (create/renew/delete their own, list/watch the peers').
        let leases: Vec<_> = rules
            .iter()
            .filter(|r| r.resources.as_deref() == Some(&["leases".to_string()][..]))
            .collect();
        assert_eq!(leases.len(), 1);
        assert_eq!(
            leases[0].api_groups.as_deref(),
            Some(&["coordination.k8s.io".to_string()][..])
        );
        assert_eq!(
            leases[0].verbs,
            [
                "get", "list", "watch", "create", "update", "patch", "delete"
            ]
        );
        // Nothing else, no wildcard.
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|r| {
            !r.verbs.iter().any(|v| v == "*")
                && !r.resources.iter().flatten().any(|x| x == "*")
                && !r.api_groups.iter().flatten().any(|x| x == "*")
        }));
    }

    #[test]
    fn proxies_get_pod_name_namespace_and_ip_from_the_downward_api() {
        let d = deployment(&FleetSettings::for_tests());
        let c = &d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod")
            .containers[0];
        let env: Vec<(String, String)> = c
            .env
            .iter()
            .flatten()
            .map(|e| {
                let path = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .map(|f| f.field_path.clone())
                    .unwrap_or_default();
                (e.name.clone(), path)
            })
            .collect();
        assert_eq!(
            env,
            [
                ("POD_NAME".to_string(), "metadata.name".to_string()),
                (
                    "POD_NAMESPACE".to_string(),
                    "metadata.namespace".to_string()
                ),
                ("POD_IP".to_string(), "status.podIP".to_string()),
            ]
        );
    }

    fn all_metas(f: &FleetSettings) -> Vec<ObjectMeta> {
        vec![
            deployment(f).metadata,
            service(f).metadata,
            pod_disruption_budget(f).metadata,
            service_account(f).metadata,
            role(f).metadata,
            role_binding(f).metadata,
            config_secret(
                &super::super::render::render(&[], &Default::default(), f).config,
                f,
            )
            .metadata,
        ]
    }

    #[test]
    fn owned_by_the_operator_deployment_when_given() {
        let unowned = FleetSettings::for_tests();
        assert!(
            all_metas(&unowned)
                .iter()
                .all(|m| m.owner_references.is_none())
        );
        let operator = Deployment {
            metadata: ObjectMeta {
                name: Some("vsip-operator".into()),
                namespace: Some("vsip-system".into()),
                uid: Some("6a0e3d1c-0000-4000-8000-000000000001".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let owner = owner_reference(&operator).expect("owner");
        assert_eq!(owner.api_version, "apps/v1");
        assert_eq!(owner.kind, "Deployment");
        assert_eq!(owner.name, "vsip-operator");
        assert_eq!(owner.uid, "6a0e3d1c-0000-4000-8000-000000000001");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(false));
        let owned = FleetSettings {
            owner: Some(owner.clone()),
            ..FleetSettings::for_tests()
        };
        for m in all_metas(&owned) {
            assert_eq!(m.owner_references.as_deref(), Some(&[owner.clone()][..]));
        }
        // No UID (not read from the API): no reference.
        let mut unread = operator;
        unread.metadata.uid = None;
        assert!(owner_reference(&unread).is_none());
    }

    #[test]
    fn every_object_is_labelled() {
        for m in all_metas(&FleetSettings::for_tests()) {
            let l = m.labels.expect("labels");
            assert_eq!(l["app.kubernetes.io/managed-by"], FIELD_MANAGER);
            assert_eq!(m.namespace.as_deref(), Some("vsip-system"));
        }
    }
}
