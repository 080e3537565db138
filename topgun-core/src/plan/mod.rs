//! The pure plan: a validated [`ClusterSpec`] plus the values the runtime
//! resolved ([`PlanContext`]: run id, token, subnet, images, certificates)
//! become an ordered [`ClusterPlan`]: the network, volumes, files and full
//! Docker container bodies, and the start phases with their readiness gates.
//!
//! Nothing here talks to Docker, reads files or draws random numbers, so the
//! plan is snapshot-tested.

pub(crate) mod loadbalancer;
pub(crate) mod registry;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig,
    HostConfigCgroupnsModeEnum, Ipam, IpamConfig, Mount, MountType, MountVolumeOptions,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use serde::Serialize;
use topgun_etcd::plan::{EtcdPki, FileContents, PlannedFile};
use topgun_etcd::{EtcdClusterSpec, EtcdPlan};
use topgun_tls::{KeyPem, San};

use crate::images::ImageSet;
use crate::labels;
use crate::spec::{
    CgroupnsMode, ClusterRecord, ClusterSpec, Datastore, EndpointKind, EtcdDatastore, NodeFilter,
    Protocol, RECORD_PATH, Role, Subnet, Timeouts, Token, Warning,
};
use crate::{Error, Result};

/// Where k3s writes its kubeconfig (`K3S_KUBECONFIG_OUTPUT`), read back
/// through the archive API.
pub(crate) const KUBECONFIG_PATH: &str = "/output/kubeconfig.yaml";
/// The API port inside servers and the load balancer.
pub(crate) const API_PORT: u16 = 6443;
/// The haproxy stats port inside the load balancer.
pub(crate) const LB_STATS_PORT: u16 = 8404;
/// Where the load balancer's config goes (the official haproxy image's path).
pub(crate) const LB_CONFIG_PATH: &str = "/usr/local/etc/haproxy/haproxy.cfg";
/// Where datastore TLS files go in servers.
pub(crate) const DATASTORE_DIR: &str = "/etc/topgun/datastore";
/// Where topgun's own etcd client certificate goes in etcd members, for
/// `status` to read back (no local state file).
pub(crate) const ETCD_CLIENT_DIR: &str = "/etc/topgun/etcd-client";
/// Volumes the k3s image declares (and that topgun always mounts, labelled).
pub(crate) const K3S_VOLUMES: &[&str] = &[
    "/var/lib/kubelet",
    "/var/lib/rancher/k3s",
    "/var/lib/cni",
    "/var/log",
];
/// Where k3s imports image tarballs from when it starts (the air-gap path);
/// every k3s node mounts the cluster's images volume here.
pub(crate) const IMAGES_DIR: &str = "/var/lib/rancher/k3s/agent/images";
/// The log line of a ready server.
pub(crate) const SERVER_READY: &str = "k3s is up and running";
/// The log line of an etcd member that serves clients.
pub(crate) const ETCD_SERVING: &str = "serving client traffic";
/// The log line of an etcd member that has passed its bootstrap check and
/// serves its peers.
pub(crate) const ETCD_PEER_SERVING: &str = "serving peer traffic";
/// The log line of a ready agent.
pub(crate) const AGENT_READY: &str = "Successfully registered node";

/// Values the runtime resolves before planning; fixed values make the plan
/// reproducible.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub(crate) struct PlanContext {
    /// The id of this create run, put on every resource as a label.
    pub run_id: String,
    /// The cluster token.
    pub token: Token,
    /// The network's subnet.
    pub subnet: Subnet,
    /// The images.
    pub images: ImageSet,
    /// Volumes each image declares (from `docker image inspect`); topgun
    /// mounts a labelled named volume on each so no anonymous volume appears.
    pub image_volumes: BTreeMap<String, Vec<String>>,
    /// The etcd certificates (for `Datastore::Etcd`).
    pub etcd_pki: Option<EtcdPki>,
    /// The contents of an external datastore's TLS files.
    pub external_tls: ExternalTls,
    /// Whether k3s nodes run privileged (see
    /// [`crate::images::resolve_privileged`]).
    pub privileged: bool,
    /// Free host ports for the published ports the spec leaves open, taken
    /// in plan order, so that every port is pinned and Docker publishes the
    /// same one after a restart. Plan once without them to learn how many
    /// are needed ([`ClusterPlan::open_ports`]).
    pub host_ports: Vec<u16>,
    /// The datastore files servers get, when they are read back from an
    /// existing server (adding a node) rather than generated.
    pub datastore_files: Option<Vec<PlannedFile>>,
    /// The engine host's address, where the ports topgun dials itself (etcd
    /// client ports, haproxy's stats) are published: 127.0.0.1 for a local
    /// engine ([`crate::engine::control_host`]).
    pub control_host: IpAddr,
    /// The engine the cluster lives on, recorded in the
    /// [`labels::ENGINE`] label ([`crate::engine::Engine::label`]).
    pub engine: Option<String>,
    /// The host name the kubeconfig's server uses when it is not the API
    /// address (the name of a remote engine host, as the user gave it).
    pub api_name: Option<String>,
}

impl PlanContext {
    /// A context with the given values and nothing else (no etcd
    /// certificates, no external TLS files, no declared volumes).
    pub(crate) fn new(
        run_id: impl Into<String>,
        token: Token,
        subnet: Subnet,
        images: ImageSet,
    ) -> Self {
        PlanContext {
            run_id: run_id.into(),
            token,
            subnet,
            images,
            image_volumes: BTreeMap::new(),
            etcd_pki: None,
            external_tls: ExternalTls::default(),
            privileged: true,
            host_ports: Vec::new(),
            datastore_files: None,
            control_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            engine: None,
            api_name: None,
        }
    }
}

/// The contents of an external datastore's TLS files.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExternalTls {
    /// The CA certificate, PEM.
    pub ca: Option<String>,
    /// The client certificate, PEM.
    pub cert: Option<String>,
    /// The client key, PEM.
    pub key: Option<KeyPem>,
}

/// Everything a create does, in order.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClusterPlan {
    /// The cluster name.
    pub name: String,
    /// The run id (a label on everything).
    pub run_id: String,
    /// The network.
    pub network: NetworkPlan,
    /// Volumes that several nodes mount (the images volume), created after
    /// the network.
    pub shared_volumes: Vec<VolumePlan>,
    /// Every container, in start order.
    pub nodes: Vec<NodePlan>,
    /// The start phases, in order.
    pub phases: Vec<Phase>,
    /// Where the API is published and how it is reached.
    pub api: ApiPlan,
    /// The SANs the API certificate gets from topgun (besides k3s's defaults).
    pub sans: Vec<San>,
    /// Things the user should know.
    pub warnings: Vec<Warning>,
    /// The etcd plan (certificates included), when topgun runs etcd.
    #[serde(skip)]
    pub etcd: Option<EtcdPlan>,
    /// Registries connected to the network (the created one made first)
    /// after it exists and before any node starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<registry::RegistryStep>,
}

/// The cluster network.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NetworkPlan {
    /// `topgun-<name>`.
    pub name: String,
    /// The subnet.
    pub subnet: Subnet,
    /// The create request.
    pub body: NetworkCreateRequest,
}

/// A named volume.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct VolumePlan {
    /// The volume name.
    pub name: String,
    /// The create request.
    pub body: VolumeCreateRequest,
}

/// How a node is known to be ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "line")]
pub(crate) enum Gate {
    /// A log line; `level=fatal` or the container exiting fails it.
    LogLine(String),
    /// The etcd cluster is healthy (checked for all members at once).
    EtcdHealthy,
    /// The load balancer routes the API to a server: its stats page shows
    /// an API backend UP by a passed check.
    LoadBalancer,
}

/// One container.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodePlan {
    /// The container name, e.g. `topgun-demo-server-0`.
    pub name: String,
    /// The hostname: the name lowercased (k3s uses it as the node name).
    pub hostname: String,
    /// The role.
    pub role: Role,
    /// The index within the role.
    pub index: u32,
    /// The static address on the cluster network.
    pub ip: Ipv4Addr,
    /// Its named volumes, created (labelled) before the container.
    pub volumes: Vec<VolumePlan>,
    /// Files uploaded before start (through the archive API).
    pub files: Vec<PlannedFile>,
    /// Empty directories created before start.
    pub dirs: Vec<String>,
    /// The readiness gate.
    pub gate: Gate,
    /// The full create request.
    pub body: ContainerCreateBody,
}

/// A start phase: its nodes start together once the phases it depends on
/// have started or are ready, and it is ready when all their gates pass.
/// Every gate passes before a create reports success.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Phase {
    /// What the phase is.
    pub kind: PhaseKind,
    /// The container names.
    pub nodes: Vec<String>,
    /// Phases whose containers must have started first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_started: Vec<PhaseKind>,
    /// Phases that must be ready first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_ready: Vec<PhaseKind>,
    /// How its nodes start.
    #[serde(skip_serializing_if = "StartOrder::is_together")]
    pub start: StartOrder,
    /// When it is ready.
    #[serde(skip_serializing_if = "PhaseGate::is_each_node")]
    pub ready: PhaseGate,
}

impl Phase {
    /// A phase whose nodes start together and are ready by their own gates.
    fn new(kind: PhaseKind, nodes: Vec<String>) -> Phase {
        Phase {
            kind,
            nodes,
            after_started: Vec::new(),
            after_ready: Vec::new(),
            start: StartOrder::Together,
            ready: PhaseGate::EachNode,
        }
    }
}

/// How the nodes of a phase start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(crate) enum StartOrder {
    /// All at once.
    Together,
    /// The first node alone until it logs `line` (waiting at most `wait`:
    /// another version may not log it), then the others together.
    ///
    /// etcd members start this way: started together, each member's
    /// bootstrap probe of its peers waits a full second per peer that
    /// accepts but does not answer yet; member 0 first answers them at once.
    FirstThenRest {
        /// The line that says the first node serves the others.
        line: String,
        /// How long to wait for it, at most.
        #[serde(serialize_with = "ser_ms", rename = "wait_ms")]
        wait: Duration,
    },
}

impl StartOrder {
    fn is_together(&self) -> bool {
        *self == StartOrder::Together
    }
}

/// When a phase is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(crate) enum PhaseGate {
    /// When every node passes its own [`Gate`].
    EachNode,
    /// When topgun-etcd judges the members healthy: every member answers,
    /// they agree on one leader, a quorum is up and no alarm is raised. The
    /// check begins once each member logged `line` or after `wait`, so the
    /// client does not back off from members that do not listen yet.
    EtcdHealthy {
        /// The line each member logs once it serves clients.
        line: String,
        /// How long to wait for it, at most.
        #[serde(serialize_with = "ser_ms", rename = "wait_ms")]
        wait: Duration,
    },
}

impl PhaseGate {
    fn is_each_node(&self) -> bool {
        *self == PhaseGate::EachNode
    }

    /// The etcd gate of a phase whose members may take `timeout`.
    fn etcd(timeout: Duration) -> PhaseGate {
        PhaseGate::EtcdHealthy {
            line: ETCD_SERVING.to_owned(),
            wait: timeout.min(Duration::from_secs(15)),
        }
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// The kinds of phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PhaseKind {
    /// Network, volumes, containers created and files uploaded.
    Prepare,
    /// etcd members (member 0 first), until healthy.
    Etcd,
    /// server-0 (concurrent first boots race).
    FirstServer,
    /// The load balancer.
    LoadBalancer,
    /// The other servers, in parallel.
    Servers,
    /// The agents, in parallel (they join through the load balancer).
    Agents,
    /// `/readyz` through the published API port.
    Api,
    /// The kubeconfig, read, rewritten and checked.
    Kubeconfig,
}

impl PhaseKind {
    /// A short description for progress output.
    pub fn describe(self) -> &'static str {
        match self {
            PhaseKind::Prepare => "network, volumes and containers",
            PhaseKind::Etcd => "etcd members",
            PhaseKind::FirstServer => "first server",
            PhaseKind::LoadBalancer => "load balancer",
            PhaseKind::Servers => "servers",
            PhaseKind::Agents => "agents",
            PhaseKind::Api => "API ready",
            PhaseKind::Kubeconfig => "kubeconfig",
        }
    }
}

/// Where the API is published.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ApiPlan {
    /// The host address it is bound to.
    pub host: IpAddr,
    /// The host clients dial (never 0.0.0.0).
    pub dial_host: IpAddr,
    /// The host port; `None` lets Docker pick one (read back after start).
    pub port: Option<u16>,
    /// The container that publishes it (the load balancer, or server-0).
    pub container: String,
    /// The server whose kubeconfig topgun reads.
    pub kubeconfig_from: String,
    /// The host name the kubeconfig's server uses, when not `dial_host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ClusterPlan {
    /// Every named volume, in node order.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn volumes(&self) -> impl Iterator<Item = &VolumePlan> {
        self.nodes.iter().flat_map(|n| n.volumes.iter())
    }

    /// The node named `name`.
    #[cfg(test)]
    pub(crate) fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The host addresses of the published ports that have no host port
    /// yet, in plan order: what [`PlanContext::host_ports`] must provide.
    pub(crate) fn open_ports(&self) -> Vec<IpAddr> {
        open_ports(&self.nodes)
    }
}

/// The host addresses of `nodes`' published ports without a host port, in
/// node order.
pub(crate) fn open_ports(nodes: &[NodePlan]) -> Vec<IpAddr> {
    nodes
        .iter()
        .flat_map(|n| bindings(&n.body))
        .filter(|b| b.host_port.as_deref().is_none_or(str::is_empty))
        .filter_map(|b| b.host_ip.as_deref()?.parse().ok())
        .collect()
}

/// The port bindings of a container body, in a stable order.
fn bindings(body: &ContainerCreateBody) -> Vec<&PortBinding> {
    let Some(map) = body
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
    else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| {
        let (port, proto) = k.split_once('/').unwrap_or((k, ""));
        (port.parse::<u16>().unwrap_or(0), proto.to_owned())
    });
    keys.into_iter()
        .flat_map(|k| map[k].iter().flatten())
        .collect()
}

/// Gives each published port of `nodes` without a host port the next of
/// `ports`, in the order of [`open_ports`]. Returns how many were used.
fn pin_ports(nodes: &mut [NodePlan], ports: &[u16]) -> usize {
    let mut next = ports.iter();
    let mut used = 0;
    for node in nodes {
        let Some(map) = node
            .body
            .host_config
            .as_mut()
            .and_then(|h| h.port_bindings.as_mut())
        else {
            continue;
        };
        let mut keys: Vec<String> = map.keys().cloned().collect();
        keys.sort_by_key(|k| {
            let (port, proto) = k.split_once('/').unwrap_or((k, ""));
            (port.parse::<u16>().unwrap_or(0), proto.to_owned())
        });
        for key in keys {
            for b in map.get_mut(&key).into_iter().flatten().flatten() {
                if b.host_port.as_deref().is_none_or(str::is_empty)
                    && let Some(port) = next.next()
                {
                    b.host_port = Some(port.to_string());
                    used += 1;
                }
            }
        }
    }
    used
}

/// The host port a container body publishes `port/tcp` on, if pinned.
pub(crate) fn published_port(body: &ContainerCreateBody, port: u16) -> Option<u16> {
    body.host_config
        .as_ref()?
        .port_bindings
        .as_ref()?
        .get(&format!("{port}/tcp"))?
        .as_ref()?
        .iter()
        .find_map(|b| b.host_port.as_deref()?.parse().ok())
}

/// The phases that start an existing cluster's nodes (`topgun start`),
/// from `(container, role, index)`: etcd until healthy, then every server
/// at once (a restarted server rejoins the others; with k3s's embedded etcd
/// none can be ready alone), then the load balancer, then the agents.
pub(crate) fn start_phases(nodes: &[(String, Role, u32)], timeouts: &Timeouts) -> Vec<Phase> {
    let of = |role: Role| -> Vec<String> {
        let mut picked: Vec<&(String, Role, u32)> = nodes.iter().filter(|n| n.1 == role).collect();
        picked.sort_by_key(|n| n.2);
        picked.into_iter().map(|n| n.0.clone()).collect()
    };
    let mut phases: Vec<Phase> = Vec::new();
    for (kind, role) in [
        (PhaseKind::Etcd, Role::Etcd),
        (PhaseKind::Servers, Role::Server),
        (PhaseKind::LoadBalancer, Role::LoadBalancer),
        (PhaseKind::Agents, Role::Agent),
    ] {
        let names = of(role);
        if names.is_empty() {
            continue;
        }
        let mut phase = Phase::new(kind, names);
        phase.after_ready = phases.last().map(|p| vec![p.kind]).unwrap_or_default();
        if kind == PhaseKind::Etcd {
            phase.ready = PhaseGate::etcd(timeouts.etcd);
        }
        phases.push(phase);
    }
    phases
}

/// The etcd cluster of `spec`'s datastore `etcd`: its members, at their
/// addresses in `subnet`, with client certificates that also name
/// `control_host` (where topgun dials them). The one place both the
/// certificates (made before planning) and the plan start from.
pub(crate) fn etcd_cluster_spec(
    spec: &ClusterSpec,
    etcd: &EtcdDatastore,
    subnet: &Subnet,
    control_host: IpAddr,
) -> EtcdClusterSpec {
    EtcdClusterSpec::new(spec.name.lowercase())
        .with_members(etcd.members as usize)
        .with_addresses((0..etcd.members).map(|i| IpAddr::V4(node_ip(subnet, Role::Etcd, i))))
        .with_client_sans(extra_etcd_sans(control_host))
}

/// The name of a cluster's images volume.
pub(crate) fn images_volume_name(cluster: &str) -> String {
    format!("topgun-{cluster}-images")
}

/// The address of a node on the cluster network.
///
/// Layout of the first /24: gateway .1, load balancer .2, etcd .10-.19,
/// servers .20-.119, agents .130-.249; Docker's own allocations (for
/// containers attached later) come from .248/29.
pub(crate) fn node_ip(subnet: &Subnet, role: Role, index: u32) -> Ipv4Addr {
    let offset = match role {
        Role::LoadBalancer => 2,
        Role::Etcd => 10 + index,
        Role::Server => 20 + index,
        Role::Agent => 130 + index,
    };
    subnet.host(offset)
}

/// The container name of a node.
pub(crate) fn node_name(cluster: &str, role: Role, index: u32) -> String {
    match role {
        Role::LoadBalancer => format!("topgun-{cluster}-lb"),
        _ => format!("topgun-{cluster}-{}-{index}", role.as_str()),
    }
}

/// The network name of a cluster.
pub(crate) fn network_name(cluster: &str) -> String {
    format!("topgun-{cluster}")
}

/// Turns a spec and resolved values into a plan. The spec must be valid.
pub(crate) fn plan(spec: &ClusterSpec, ctx: &PlanContext) -> Result<ClusterPlan> {
    Planner::new(spec, ctx)?.plan()
}

/// The nodes a `node add` creates, planned as the create planned the first
/// ones, and the load balancer's config once they exist.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AddedNodes {
    /// The new nodes, by index.
    pub nodes: Vec<NodePlan>,
    /// The load balancer's haproxy config over the existing and the new
    /// nodes (`None` without a load balancer). It differs from the current
    /// one when servers are added, or agents while ports are forwarded.
    pub haproxy_config: Option<String>,
}

impl AddedNodes {
    /// The host addresses of the new nodes' published ports that have no
    /// host port yet: what [`PlanContext::host_ports`] must provide.
    pub(crate) fn open_ports(&self) -> Vec<IpAddr> {
        open_ports(&self.nodes)
    }
}

/// Plans the nodes of `role` (server or agent) at `indices` that join the
/// existing cluster `spec` describes, whose k3s nodes are `existing` (role
/// and index; etcd members and the load balancer are ignored).
///
/// `spec` is the cluster record's spec with index bounds that cover the new
/// indices ([`ClusterRecord::spec`]), `ctx` the record's token, subnet,
/// images and privileges with a fresh run id; with topgun's etcd,
/// `ctx.datastore_files` holds the datastore files read back from an
/// existing server (`ctx.etcd_pki` is then only needed to plan, and may be
/// a throwaway one). New servers join through the load balancer (or
/// server-0 without one); none initialises the embedded store.
pub(crate) fn plan_added_nodes(
    spec: &ClusterSpec,
    ctx: &PlanContext,
    existing: &[(Role, u32)],
    role: Role,
    indices: &[u32],
) -> Result<AddedNodes> {
    if !matches!(role, Role::Server | Role::Agent) {
        return Err(Error::invalid(
            format!("node role {role}"),
            "cannot be added: only servers and agents join a cluster later",
            "use --role server or --role agent",
        ));
    }
    let bound = match role {
        Role::Server => spec.servers,
        _ => spec.agents,
    };
    for &index in indices {
        if existing.contains(&(role, index)) || index >= bound {
            return Err(Error::invalid(
                format!("{role} index {index}"),
                if index >= bound {
                    format!("is beyond the spec's {bound} {role}s")
                } else {
                    "is taken by an existing node".to_owned()
                },
                "new nodes take the indices after the highest existing one",
            ));
        }
    }
    let mut planner = Planner::new(spec, ctx)?;
    planner.adding = true;
    let mut nodes = indices
        .iter()
        .map(|&i| planner.k3s_node(role, i))
        .collect::<Result<Vec<_>>>()?;
    pin_ports(&mut nodes, &ctx.host_ports);
    let mut all: Vec<(Role, u32)> = existing.to_vec();
    all.extend(indices.iter().map(|&i| (role, i)));
    Ok(AddedNodes {
        nodes,
        haproxy_config: haproxy_config_for(spec, &ctx.subnet, &all),
    })
}

/// The load balancer's haproxy config once the node `role`-`index` is
/// deleted from the cluster whose k3s nodes are `existing`: the pure
/// counterpart of `node delete` (`None` without a load balancer).
pub(crate) fn haproxy_config_without(
    spec: &ClusterSpec,
    subnet: &Subnet,
    existing: &[(Role, u32)],
    role: Role,
    index: u32,
) -> Option<String> {
    let left: Vec<(Role, u32)> = existing
        .iter()
        .copied()
        .filter(|n| *n != (role, index))
        .collect();
    haproxy_config_for(spec, subnet, &left)
}

/// The load balancer's haproxy config for a cluster whose k3s nodes are
/// `nodes` (role and index; others are ignored): the API over the servers,
/// each port the load balancer publishes over every k3s node. `None`
/// without a load balancer.
pub(crate) fn haproxy_config_for(
    spec: &ClusterSpec,
    subnet: &Subnet,
    nodes: &[(Role, u32)],
) -> Option<String> {
    if !spec.loadbalancer.enabled {
        return None;
    }
    let lower = spec.name.lowercase();
    let backends = |role: Role| -> Vec<loadbalancer::Backend> {
        let mut indices: Vec<u32> = nodes.iter().filter(|n| n.0 == role).map(|n| n.1).collect();
        indices.sort_unstable();
        indices.dedup();
        indices
            .into_iter()
            .map(|i| loadbalancer::Backend {
                name: node_name(&lower, role, i),
                ip: node_ip(subnet, role, i),
            })
            .collect()
    };
    let servers = backends(Role::Server);
    let mut all_nodes = servers.clone();
    all_nodes.extend(backends(Role::Agent));
    let default_port = spec.default_port_filter();
    let mut forwards: Vec<u16> = spec
        .ports
        .iter()
        .filter(|p| {
            p.value.protocol == Protocol::Tcp
                && p.filter
                    .as_ref()
                    .unwrap_or(&default_port)
                    .matches(Role::LoadBalancer, 0)
        })
        .map(|p| p.value.container_port)
        .collect();
    forwards.sort_unstable();
    forwards.dedup();
    Some(loadbalancer::haproxy_config(
        spec.name.as_str(),
        &servers,
        &all_nodes,
        &forwards,
    ))
}

struct Planner<'a> {
    spec: &'a ClusterSpec,
    ctx: &'a PlanContext,
    name: &'a str,
    network: String,
    etcd: Option<EtcdPlan>,
    sans: Vec<San>,
    volumes: Vec<VolumePlan>,
    warnings: Vec<Warning>,
    /// How many of `ctx.host_ports` are taken.
    ports_taken: usize,
    /// Where servers that join an embedded cluster, and agents, connect
    /// (the load balancer, else server-0).
    join_url: String,
    /// Whether this plans nodes added to a running cluster (no server
    /// initialises the embedded store).
    adding: bool,
}

/// The addresses etcd member certificates cover beyond loopback: the engine
/// host's address when topgun dials the members there.
pub(crate) fn extra_etcd_sans(control_host: IpAddr) -> Vec<IpAddr> {
    if control_host.is_loopback() && control_host == IpAddr::V4(Ipv4Addr::LOCALHOST) {
        Vec::new()
    } else {
        vec![control_host]
    }
}

impl<'a> Planner<'a> {
    fn new(spec: &'a ClusterSpec, ctx: &'a PlanContext) -> Result<Self> {
        let name = spec.name.as_str();
        let mut warnings = spec.warnings();
        let etcd = match &spec.datastore {
            Datastore::Etcd(e) => {
                let etcd_spec = etcd_cluster_spec(spec, e, &ctx.subnet, ctx.control_host)
                    .with_image(ctx.images.etcd.clone())
                    .with_token(format!("topgun-{}-{}", spec.name.lowercase(), ctx.run_id));
                let pki = ctx.etcd_pki.clone().ok_or_else(|| {
                    Error::bug(
                        "the plan context",
                        "it has no etcd certificates (EtcdPki::generate makes them)",
                    )
                })?;
                // The spec already warns about the member count.
                warnings.extend(
                    etcd_spec
                        .validate()?
                        .into_iter()
                        .filter(|w| !matches!(w, topgun_etcd::SpecWarning::EvenMembers { .. }))
                        .map(Warning::Etcd),
                );
                let plan = topgun_etcd::plan_with_pki(&etcd_spec, Some(pki))?;
                Some(plan)
            }
            _ => None,
        };
        let mut sans = Vec::new();
        if !spec.api.host.is_unspecified() {
            sans.push(San::Ip(spec.api.host));
        }
        if spec.loadbalancer.enabled {
            sans.push(San::dns(&node_name(
                &spec.name.lowercase(),
                Role::LoadBalancer,
                0,
            ))?);
        }
        for san in &spec.tls_san.0 {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        let lower = spec.name.lowercase();
        let join_role = if spec.loadbalancer.enabled {
            Role::LoadBalancer
        } else {
            Role::Server
        };
        Ok(Planner {
            spec,
            ctx,
            name,
            network: network_name(name),
            etcd,
            sans,
            volumes: Vec::new(),
            warnings,
            ports_taken: 0,
            join_url: format!("https://{}:{API_PORT}", node_name(&lower, join_role, 0)),
            adding: false,
        })
    }

    fn labels(&self, role: &str) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (labels::CLUSTER.to_owned(), self.name.to_owned()),
            (labels::RUN.to_owned(), self.ctx.run_id.clone()),
            (labels::ROLE.to_owned(), role.to_owned()),
            (
                labels::VERSION.to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
        ]);
        if let Some(engine) = &self.ctx.engine {
            labels.insert(labels::ENGINE.to_owned(), engine.clone());
        }
        labels
    }

    fn node_labels(&self, role: Role, index: u32, hostname: &str) -> HashMap<String, String> {
        let mut l = self.labels(role.as_str());
        l.insert(labels::INDEX.to_owned(), index.to_string());
        l.insert(labels::API_HOST.to_owned(), self.spec.api.host.to_string());
        if let Some(name) = &self.ctx.api_name {
            l.insert(labels::API_NAME.to_owned(), name.clone());
        }
        l.insert(
            labels::DATASTORE.to_owned(),
            self.spec.datastore.kind().to_owned(),
        );
        l.insert(labels::NETWORK.to_owned(), self.network.clone());
        l.insert(labels::HOSTNAME.to_owned(), hostname.to_owned());
        l
    }

    fn plan(mut self) -> Result<ClusterPlan> {
        let spec = self.spec;
        let counts = spec.counts();
        let mut nodes = Vec::new();
        for i in 0..counts.etcd {
            nodes.push(self.etcd_node(i)?);
        }
        for i in 0..spec.servers {
            nodes.push(self.k3s_node(Role::Server, i)?);
        }
        if spec.loadbalancer.enabled {
            nodes.push(self.lb_node()?);
        }
        for i in 0..spec.agents {
            nodes.push(self.k3s_node(Role::Agent, i)?);
        }
        let names = |role: Role, skip_first: bool| -> Vec<String> {
            nodes
                .iter()
                .filter(|n| n.role == role && !(skip_first && n.index == 0))
                .map(|n| n.name.clone())
                .collect()
        };
        // etcd must be healthy before any server starts, and server-0 up
        // before the others join it (concurrent first boots race). The load
        // balancer needs nothing: it starts once the first phase has started,
        // while the engine would otherwise idle (etcd electing a leader, or
        // server-0 booting), and is ready once it routes to a server. The
        // agents join through it once the other servers run (haproxy
        // assumes a server it has not checked yet is up; a running one
        // refuses at once, and haproxy redispatches to another).
        let etcd_timeout = spec.timeouts.etcd;
        let mut phases: Vec<Phase> = Vec::new();
        let mut push =
            |kind, nodes: Vec<String>, after_started: &[PhaseKind], after_ready: &[PhaseKind]| {
                if !nodes.is_empty() {
                    let mut phase = Phase::new(kind, nodes);
                    phase.after_started = after_started.to_vec();
                    phase.after_ready = after_ready.to_vec();
                    if kind == PhaseKind::Etcd {
                        phase.start = StartOrder::FirstThenRest {
                            line: ETCD_PEER_SERVING.to_owned(),
                            wait: etcd_timeout.min(Duration::from_secs(5)),
                        };
                        phase.ready = PhaseGate::etcd(etcd_timeout);
                    }
                    phases.push(phase);
                }
            };
        let etcd: &[PhaseKind] = if counts.etcd > 0 {
            &[PhaseKind::Etcd]
        } else {
            &[]
        };
        let lb = names(Role::LoadBalancer, false);
        let agents_after: &[PhaseKind] = if lb.is_empty() {
            &[PhaseKind::FirstServer]
        } else {
            &[PhaseKind::FirstServer, PhaseKind::LoadBalancer]
        };
        let servers = names(Role::Server, true);
        let agents_after_started: &[PhaseKind] = if servers.is_empty() {
            &[]
        } else {
            &[PhaseKind::Servers]
        };
        // Listed in the order they start.
        push(PhaseKind::Etcd, names(Role::Etcd, false), &[], &[]);
        if counts.etcd > 0 {
            push(PhaseKind::LoadBalancer, lb.clone(), etcd, &[]);
        }
        push(
            PhaseKind::FirstServer,
            vec![node_name(self.name, Role::Server, 0)],
            &[],
            etcd,
        );
        if counts.etcd == 0 {
            push(PhaseKind::LoadBalancer, lb, &[PhaseKind::FirstServer], &[]);
        }
        push(PhaseKind::Servers, servers, &[], &[PhaseKind::FirstServer]);
        push(
            PhaseKind::Agents,
            names(Role::Agent, false),
            agents_after_started,
            agents_after,
        );
        // Nodes in start order too: that is the order they are made in.
        nodes.sort_by_key(|n| phases.iter().position(|p| p.nodes.contains(&n.name)));
        self.ports_taken = pin_ports(&mut nodes, &self.ctx.host_ports);

        let api_container = if spec.loadbalancer.enabled {
            node_name(self.name, Role::LoadBalancer, 0)
        } else {
            node_name(self.name, Role::Server, 0)
        };
        let subnet = self.ctx.subnet;
        let network = NetworkPlan {
            name: self.network.clone(),
            subnet,
            body: NetworkCreateRequest {
                name: self.network.clone(),
                driver: Some("bridge".to_owned()),
                ipam: Some(Ipam {
                    driver: Some("default".to_owned()),
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet.to_string()),
                        gateway: Some(subnet.host(1).to_string()),
                        ip_range: Some(format!("{}/29", subnet.host(248))),
                        ..Default::default()
                    }]),
                    options: None,
                }),
                labels: Some(self.labels(labels::ROLE_NETWORK)),
                ..Default::default()
            },
        };
        let api_port = nodes
            .iter()
            .find(|n| n.name == api_container)
            .and_then(|n| published_port(&n.body, API_PORT));
        let shared_volumes = if spec.servers + spec.agents > 0 {
            vec![self.volume(images_volume_name(self.name), labels::ROLE_IMAGES)]
        } else {
            Vec::new()
        };
        Ok(ClusterPlan {
            name: self.name.to_owned(),
            run_id: self.ctx.run_id.clone(),
            network,
            shared_volumes,
            nodes,
            phases,
            api: ApiPlan {
                host: spec.api.host,
                dial_host: spec.api.dial_host(),
                port: spec.api.port.or(api_port),
                container: api_container,
                kubeconfig_from: node_name(self.name, Role::Server, 0),
                name: self.ctx.api_name.clone(),
            },
            sans: self.sans.clone(),
            warnings: self.warnings.clone(),
            etcd: self.etcd.take(),
            registries: registry::steps(
                &spec.registries,
                &self.network,
                self.labels(registry::ROLE_REGISTRY),
            )?,
        })
    }

    /// Named, labelled volumes for `paths` of node `name`; returns mounts.
    fn node_volumes(&mut self, name: &str, role: Role, paths: &[String]) -> Vec<Mount> {
        let mut mounts = Vec::new();
        for path in paths {
            let slug = path.trim_matches('/').replace('/', "-");
            let slug = if slug.is_empty() {
                "root".to_owned()
            } else {
                slug
            };
            let volume = format!("{name}-{slug}");
            let plan = self.volume(volume.clone(), role.as_str());
            self.volumes.push(plan);
            mounts.push(self.volume_mount(path, volume, role.as_str()));
        }
        mounts
    }

    /// A mount of the named volume `volume` at `target`. It carries the
    /// volume's labels: should the volume be gone when the container is made
    /// (a racing delete removed it), Docker creates it again from the mount,
    /// and then with the labels that let rollback and delete find it.
    fn volume_mount(&self, target: &str, volume: String, role: &str) -> Mount {
        Mount {
            target: Some(target.to_owned()),
            source: Some(volume),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                labels: Some(self.labels(role)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A labelled volume.
    fn volume(&self, name: String, role: &str) -> VolumePlan {
        VolumePlan {
            body: VolumeCreateRequest {
                name: Some(name.clone()),
                driver: Some("local".to_owned()),
                labels: Some(self.labels(role)),
                ..Default::default()
            },
            name,
        }
    }

    fn declared_volumes(&self, image: &str, always: &[&str]) -> Vec<String> {
        let mut paths: Vec<String> = always.iter().map(|s| (*s).to_owned()).collect();
        for p in self.ctx.image_volumes.get(image).into_iter().flatten() {
            let p = p.trim_end_matches('/').to_owned();
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        paths
    }

    /// User mounts, env and ports for a node, by filter.
    fn user_extras(&self, role: Role, index: u32) -> (Vec<Mount>, Vec<String>, Vec<Publish>) {
        let mut mounts = Vec::new();
        for v in &self.spec.volumes {
            if matches_default(v.filter.as_ref(), role, index) {
                mounts.push(Mount {
                    target: Some(v.value.target.clone()),
                    source: Some(v.value.source.to_string_lossy().into_owned()),
                    typ: Some(MountType::BIND),
                    read_only: Some(v.value.read_only),
                    ..Default::default()
                });
            }
        }
        let env = self
            .spec
            .env
            .iter()
            .filter(|e| matches_default(e.filter.as_ref(), role, index))
            .map(|e| format!("{}={}", e.value.key, e.value.value))
            .collect();
        let default_port = self.spec.default_port_filter();
        let ports = self
            .spec
            .ports
            .iter()
            .filter(|p| {
                p.filter
                    .as_ref()
                    .unwrap_or(&default_port)
                    .matches(role, index)
            })
            .map(|p| {
                Publish(
                    p.value.container_port,
                    p.value.protocol,
                    p.value.host_ip,
                    p.value.host_port,
                )
            })
            .collect();
        (mounts, env, ports)
    }

    fn base_body(
        &self,
        image: &str,
        node: &NodeId<'_>,
        mounts: Vec<Mount>,
        ports: Vec<Publish>,
    ) -> ContainerCreateBody {
        let mut exposed = Vec::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let NodeId {
            role,
            index,
            hostname,
            ip,
        } = *node;
        for Publish(container_port, proto, host_ip, host_port) in ports {
            let key = format!("{container_port}/{}", proto.as_str());
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(host_ip.to_string()),
                    host_port: Some(host_port.map(|p| p.to_string()).unwrap_or_default()),
                });
        }
        ContainerCreateBody {
            image: Some(image.to_owned()),
            hostname: Some(hostname.to_owned()),
            labels: Some(self.node_labels(role, index, hostname)),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(HostConfig {
                network_mode: Some(self.network.clone()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                mounts: (!mounts.is_empty()).then_some(mounts),
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.network.clone(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(ip.to_string()),
                            ..Default::default()
                        }),
                        aliases: Some(vec![hostname.to_owned()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        }
    }

    fn etcd_node(&mut self, index: u32) -> Result<NodePlan> {
        let etcd = self
            .etcd
            .as_ref()
            .expect("an etcd plan for an etcd datastore");
        let member = &etcd.members[index as usize];
        let name = node_name(self.name, Role::Etcd, index);
        let hostname = member.hostname.clone();
        let ip = node_ip(&self.ctx.subnet, Role::Etcd, index);
        let image = self.ctx.images.etcd.clone();
        let mut paths = vec![member.volume.mount.clone()];
        for p in self.declared_volumes(&image, &[]) {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        let client_port = member.ports.client;
        let args = member.args.clone();
        let mut files = member.files.clone();
        if let Some(pki) = &etcd.pki {
            files.extend([
                file(
                    format!("{ETCD_CLIENT_DIR}/ca.crt"),
                    FileContents::Public(pki.ca.cert_pem.clone()),
                ),
                file(
                    format!("{ETCD_CLIENT_DIR}/client.crt"),
                    FileContents::Public(pki.topgun_client.cert_pem.clone()),
                ),
                file(
                    format!("{ETCD_CLIENT_DIR}/client.key"),
                    FileContents::Secret(pki.topgun_client.key_pem.clone()),
                ),
            ]);
        }
        let mut mounts = self.node_volumes(&name, Role::Etcd, &paths);
        let (user_mounts, env, mut ports) = self.user_extras(Role::Etcd, index);
        mounts.extend(user_mounts);
        // The client port on the engine host's address (loopback for a
        // local engine): topgun's health checks dial it with its own client
        // certificate, which etcd requires (the member's certificate covers
        // 127.0.0.1 and that address).
        ports.push(Publish(
            client_port,
            Protocol::Tcp,
            self.ctx.control_host,
            None,
        ));
        let id = NodeId {
            role: Role::Etcd,
            index,
            hostname: &hostname,
            ip,
        };
        let mut body = self.base_body(&image, &id, mounts, ports);
        body.cmd = Some(args);
        body.env = (!env.is_empty()).then_some(env);
        Ok(NodePlan {
            name,
            hostname,
            role: Role::Etcd,
            index,
            ip,
            volumes: std::mem::take(&mut self.volumes),
            files,
            dirs: Vec::new(),
            gate: Gate::EtcdHealthy,
            body,
        })
    }

    fn k3s_node(&mut self, role: Role, index: u32) -> Result<NodePlan> {
        let spec = self.spec;
        let lower = spec.name.lowercase();
        let name = node_name(self.name, role, index);
        let hostname = node_name(&lower, role, index);
        let ip = node_ip(&self.ctx.subnet, role, index);
        let image = self.ctx.images.k3s.clone();
        let server0 = format!("https://{}:{API_PORT}", node_name(&lower, Role::Server, 0));

        let mut cmd = vec![role.as_str().to_owned()];
        let mut env = Vec::new();
        // Secrets reach k3s through its config file (mode 0600), never env
        // or argv, so `docker inspect` shows none of them.
        let mut config: Vec<(&str, String)> = vec![("token", self.ctx.token.expose().to_owned())];
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        match role {
            Role::Server => {
                for san in &self.sans {
                    cmd.push(format!("--tls-san={san}"));
                }
                env.push(format!("K3S_KUBECONFIG_OUTPUT={KUBECONFIG_PATH}"));
                env.push("K3S_KUBECONFIG_MODE=600".to_owned());
                dirs.push("/output".to_owned());
                files.push(file(
                    RECORD_PATH.to_owned(),
                    FileContents::Secret(KeyPem::new(
                        ClusterRecord::new(
                            spec,
                            &self.ctx.token,
                            self.ctx.subnet,
                            &self.ctx.images,
                            self.ctx.privileged,
                        )
                        .to_json(),
                    )),
                ));
                match &spec.datastore {
                    // Servers added later join through the load balancer,
                    // as k3s's --server expects.
                    Datastore::Embedded if spec.servers > 1 && self.adding => {
                        env.push(format!("K3S_URL={}", self.join_url));
                    }
                    Datastore::Embedded if spec.servers > 1 => {
                        if index == 0 {
                            cmd.push("--cluster-init".to_owned());
                        } else {
                            env.push(format!("K3S_URL={server0}"));
                        }
                    }
                    Datastore::Embedded => {}
                    Datastore::Etcd(_) => {
                        let etcd = self.etcd.as_ref().expect("an etcd plan");
                        match &self.ctx.datastore_files {
                            Some(read_back) => files.extend(read_back.iter().cloned()),
                            None => files.extend(etcd.datastore.k3s_files(DATASTORE_DIR)),
                        }
                        for (key, value) in etcd.datastore.k3s_env(DATASTORE_DIR) {
                            config.push((datastore_flag(&key), value));
                        }
                    }
                    Datastore::External(ext) => {
                        config.push(("datastore-endpoint", ext.endpoint.expose().to_owned()));
                        if let Some(read_back) = &self.ctx.datastore_files {
                            files.extend(read_back.iter().cloned());
                        }
                        let tls = &self.ctx.external_tls;
                        if let Some(ca) = &tls.ca {
                            let path = format!("{DATASTORE_DIR}/ca.crt");
                            files.push(file(path.clone(), FileContents::Public(ca.clone())));
                            config.push(("datastore-cafile", path));
                        }
                        if let Some(cert) = &tls.cert {
                            let path = format!("{DATASTORE_DIR}/client.crt");
                            files.push(file(path.clone(), FileContents::Public(cert.clone())));
                            config.push(("datastore-certfile", path));
                        }
                        if let Some(key) = &tls.key {
                            let path = format!("{DATASTORE_DIR}/client.key");
                            files.push(file(path.clone(), FileContents::Secret(key.clone())));
                            config.push(("datastore-keyfile", path));
                        }
                        if ext.endpoint.kind() == EndpointKind::Sqlite {
                            // One server; nothing to join.
                        }
                    }
                }
            }
            Role::Agent => env.push(format!("K3S_URL={}", self.join_url)),
            Role::Etcd | Role::LoadBalancer => unreachable!("not a k3s node"),
        }
        files.push(file(
            K3S_CONFIG_PATH.to_owned(),
            FileContents::Secret(KeyPem::new(k3s_config_yaml(&config))),
        ));
        // It may hold the user's registry passwords: 0600.
        if let Some(text) = registry::registries_yaml(&spec.registries)? {
            files.push(file(
                registry::REGISTRIES_PATH.to_owned(),
                FileContents::Secret(KeyPem::new(text)),
            ));
        }
        for arg in &spec.k3s_args {
            let filter = arg
                .filter
                .clone()
                .unwrap_or_else(|| NodeFilter::parse("server:*").expect("valid"));
            if filter.matches(role, index) {
                cmd.push(arg.value.0.clone());
            }
        }
        let paths = self.declared_volumes(&image, K3S_VOLUMES);
        let mut mounts = self.node_volumes(&name, role, &paths);
        mounts.push(self.volume_mount(
            IMAGES_DIR,
            images_volume_name(self.name),
            labels::ROLE_IMAGES,
        ));
        let (user_mounts, user_env, mut ports) = self.user_extras(role, index);
        mounts.extend(user_mounts);
        env.extend(user_env);
        if role == Role::Server && index == 0 && !spec.loadbalancer.enabled {
            ports.insert(
                0,
                Publish(API_PORT, Protocol::Tcp, spec.api.host, spec.api.port),
            );
        }
        let id = NodeId {
            role,
            index,
            hostname: &hostname,
            ip,
        };
        let mut body = self.base_body(&image, &id, mounts, ports);
        body.cmd = Some(cmd);
        body.env = Some(env);
        let host = body.host_config.as_mut().expect("set by base_body");
        host.privileged = Some(self.ctx.privileged);
        host.init = Some(spec.init);
        host.tmpfs = Some(HashMap::from([
            ("/run".to_owned(), String::new()),
            ("/var/run".to_owned(), String::new()),
        ]));
        host.cgroupns_mode = spec.cgroupns.map(|m| match m {
            CgroupnsMode::Private => HostConfigCgroupnsModeEnum::PRIVATE,
            CgroupnsMode::Host => HostConfigCgroupnsModeEnum::HOST,
        });
        let gate = Gate::LogLine(
            if role == Role::Server {
                SERVER_READY
            } else {
                AGENT_READY
            }
            .to_owned(),
        );
        Ok(NodePlan {
            name,
            hostname,
            role,
            index,
            ip,
            volumes: std::mem::take(&mut self.volumes),
            files,
            dirs,
            gate,
            body,
        })
    }

    fn lb_node(&mut self) -> Result<NodePlan> {
        let spec = self.spec;
        let lower = spec.name.lowercase();
        let name = node_name(self.name, Role::LoadBalancer, 0);
        let hostname = node_name(&lower, Role::LoadBalancer, 0);
        let ip = node_ip(&self.ctx.subnet, Role::LoadBalancer, 0);
        let image = self.ctx.images.loadbalancer.clone();
        let (user_mounts, env, user_ports) = self.user_extras(Role::LoadBalancer, 0);
        let k3s_nodes: Vec<(Role, u32)> = (0..spec.servers)
            .map(|i| (Role::Server, i))
            .chain((0..spec.agents).map(|i| (Role::Agent, i)))
            .collect();
        let config = haproxy_config_for(spec, &self.ctx.subnet, &k3s_nodes)
            .expect("a load balancer is planned only when it is enabled");
        let paths = self.declared_volumes(&image, &[]);
        let mut mounts = self.node_volumes(&name, Role::LoadBalancer, &paths);
        mounts.extend(user_mounts);
        let mut ports = vec![
            Publish(API_PORT, Protocol::Tcp, spec.api.host, spec.api.port),
            Publish(LB_STATS_PORT, Protocol::Tcp, self.ctx.control_host, None),
        ];
        ports.extend(user_ports);
        let id = NodeId {
            role: Role::LoadBalancer,
            index: 0,
            hostname: &hostname,
            ip,
        };
        let mut body = self.base_body(&image, &id, mounts, ports);
        body.cmd = Some(vec![
            "haproxy".to_owned(),
            "-W".to_owned(),
            "-db".to_owned(),
            "-f".to_owned(),
            LB_CONFIG_PATH.to_owned(),
        ]);
        body.env = (!env.is_empty()).then_some(env);
        let host = body.host_config.as_mut().expect("set by base_body");
        // The official image runs haproxy as an unprivileged user; let it
        // bind forwarded ports below 1024.
        host.sysctls = Some(HashMap::from([(
            "net.ipv4.ip_unprivileged_port_start".to_owned(),
            "0".to_owned(),
        )]));
        Ok(NodePlan {
            name,
            hostname,
            role: Role::LoadBalancer,
            index: 0,
            ip,
            volumes: std::mem::take(&mut self.volumes),
            files: vec![file(
                LB_CONFIG_PATH.to_owned(),
                FileContents::Public(config),
            )],
            dirs: Vec::new(),
            gate: Gate::LoadBalancer,
            body,
        })
    }
}

/// A port to publish: container port, protocol, host address, host port
/// (`None`: Docker picks).
struct Publish(u16, Protocol, IpAddr, Option<u16>);

/// Who a node is.
#[derive(Clone, Copy)]
struct NodeId<'a> {
    role: Role,
    index: u32,
    hostname: &'a str,
    ip: Ipv4Addr,
}

fn matches_default(filter: Option<&NodeFilter>, role: Role, index: u32) -> bool {
    match filter {
        Some(f) => f.matches(role, index),
        // The default for env and volumes: every k3s node.
        None => matches!(role, Role::Server | Role::Agent),
    }
}

/// k3s's config file, which k3s reads at start: keys are its flag names.
pub(crate) const K3S_CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";

/// The k3s flag an environment variable of topgun-etcd's datastore config
/// stands for (`K3S_DATASTORE_CAFILE` -> `datastore-cafile`).
fn datastore_flag(env: &str) -> &'static str {
    match env {
        "K3S_DATASTORE_ENDPOINT" => "datastore-endpoint",
        "K3S_DATASTORE_CAFILE" => "datastore-cafile",
        "K3S_DATASTORE_CERTFILE" => "datastore-certfile",
        "K3S_DATASTORE_KEYFILE" => "datastore-keyfile",
        other => unreachable!("topgun-etcd gives no {other}"),
    }
}

/// k3s's config file with `entries` (flag name, value), as YAML.
fn k3s_config_yaml(entries: &[(&str, String)]) -> String {
    let mut map = serde_norway::Mapping::new();
    for (key, value) in entries {
        map.insert((*key).into(), value.as_str().into());
    }
    format!(
        "# Written by topgun; k3s reads it at start (flags win over it).\n{}",
        serde_norway::to_string(&map).expect("a mapping of strings serialises")
    )
}

fn file(path: String, contents: FileContents) -> PlannedFile {
    PlannedFile {
        path,
        mode: contents.mode(),
        contents,
    }
}

#[cfg(test)]
mod tests;
