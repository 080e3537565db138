//! Clusters after create, rebuilt from Docker labels alone (no local state
//! file): [`list`], [`status`], [`kubeconfig`] and [`delete`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use futures_util::future::join_all;
use serde::Serialize;
use topgun_etcd::{Checker, ClientConfig, ClientTls, ClusterHealth, MemberStatus};
use topgun_tls::KeyPem;

use crate::api::{self, BackendState};
use crate::docker::host_port;
use crate::docker::{self as dockerx, Removal};
use crate::kubeconfig::{self, KubeconfigYaml};
use crate::plan::{API_PORT, ETCD_CLIENT_DIR, KUBECONFIG_PATH, LB_STATS_PORT};
use crate::spec::Role;
use crate::{Error, Result, archive, labels};

/// How many nodes of a role exist and run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Running.
    pub running: u32,
    /// In total (running or not).
    pub total: u32,
}

/// One cluster as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClusterSummary {
    /// The cluster name.
    pub name: String,
    /// `running`, `stopped` (no node runs), `partly running`, or
    /// `leftovers` (a network or volumes, no node).
    pub state: &'static str,
    /// k3s servers.
    pub servers: Count,
    /// k3s agents.
    pub agents: Count,
    /// etcd members.
    pub etcd: Count,
    /// Whether it has a load balancer (and whether it runs).
    pub loadbalancer: Option<bool>,
    /// `embedded`, `etcd` or `external` (`None` for leftovers without nodes).
    pub datastore: Option<String>,
    /// The API URL, when the container publishing it runs.
    pub server: Option<String>,
    /// Whether the network exists.
    pub network: bool,
    /// Labelled volumes.
    pub volumes: u32,
}

fn label<'a>(labels: &'a Option<HashMap<String, String>>, key: &str) -> Option<&'a str> {
    labels.as_ref()?.get(key).map(String::as_str)
}

fn role_of(c: &Option<HashMap<String, String>>) -> Option<Role> {
    label(c, labels::ROLE).and_then(Role::from_label)
}

fn index_of(c: &Option<HashMap<String, String>>) -> u32 {
    label(c, labels::INDEX)
        .and_then(|i| i.parse().ok())
        .unwrap_or_default()
}

fn dial_host(api_host: Option<&str>) -> IpAddr {
    let host: IpAddr = api_host
        .and_then(|h| h.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    crate::spec::ApiEndpoint { host, port: None }.dial_host()
}

/// The container that publishes the API: the load balancer, else server-0.
fn api_container(containers: &[ContainerSummary]) -> Option<&ContainerSummary> {
    containers
        .iter()
        .find(|c| role_of(&c.labels) == Some(Role::LoadBalancer))
        .or_else(|| {
            containers
                .iter()
                .find(|c| role_of(&c.labels) == Some(Role::Server) && index_of(&c.labels) == 0)
        })
}

fn summary_api_url(c: &ContainerSummary) -> Option<String> {
    let port = c
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.private_port == API_PORT && p.public_port.is_some())?
        .public_port?;
    Some(crate::kubeconfig::server_url(
        dial_host(label(&c.labels, labels::API_HOST)),
        port,
    ))
}

/// Every cluster topgun made on this engine, rebuilt from labels. Clusters
/// that are only leftovers (a network or volumes) are listed too.
pub(crate) async fn list(docker: &Docker) -> Result<Vec<ClusterSummary>> {
    let filter = dockerx::has_label(labels::CLUSTER);
    let (containers, networks, volumes) = tokio::try_join!(
        dockerx::containers(docker, filter.clone()),
        dockerx::networks(docker, filter.clone()),
        dockerx::volumes(docker, filter),
    )?;
    let mut by_name: BTreeMap<String, ClusterSummary> = BTreeMap::new();
    let entry = |map: &mut BTreeMap<String, ClusterSummary>, name: &str| {
        map.entry(name.to_owned())
            .or_insert_with(|| ClusterSummary {
                name: name.to_owned(),
                state: "leftovers",
                servers: Count::default(),
                agents: Count::default(),
                etcd: Count::default(),
                loadbalancer: None,
                datastore: None,
                server: None,
                network: false,
                volumes: 0,
            })
            .name
            .clone()
    };
    let mut grouped: BTreeMap<String, Vec<ContainerSummary>> = BTreeMap::new();
    for c in containers {
        if let Some(name) = label(&c.labels, labels::CLUSTER) {
            entry(&mut by_name, name);
            grouped.entry(name.to_owned()).or_default().push(c);
        }
    }
    for n in networks {
        if let Some(name) = label(&n.labels, labels::CLUSTER) {
            let key = entry(&mut by_name, name);
            by_name.get_mut(&key).expect("inserted").network = true;
        }
    }
    for v in volumes {
        let l = Some(v.labels.clone());
        if let Some(name) = label(&l, labels::CLUSTER) {
            let key = entry(&mut by_name, name);
            by_name.get_mut(&key).expect("inserted").volumes += 1;
        }
    }
    for (name, containers) in &grouped {
        let s = by_name.get_mut(name).expect("inserted");
        for c in containers {
            let running = c
                .state
                .as_ref()
                .is_some_and(|st| st.to_string() == "running");
            let count = match role_of(&c.labels) {
                Some(Role::Server) => &mut s.servers,
                Some(Role::Agent) => &mut s.agents,
                Some(Role::Etcd) => &mut s.etcd,
                Some(Role::LoadBalancer) => {
                    s.loadbalancer = Some(running || s.loadbalancer == Some(true));
                    continue;
                }
                None => continue,
            };
            count.total += 1;
            count.running += u32::from(running);
            if s.datastore.is_none() {
                s.datastore = label(&c.labels, labels::DATASTORE).map(str::to_owned);
            }
        }
        s.server = api_container(containers).and_then(summary_api_url);
        let total = s.servers.total + s.agents.total + s.etcd.total;
        let running = s.servers.running + s.agents.running + s.etcd.running;
        let lb_runs = s.loadbalancer.unwrap_or(false);
        s.state = if total == 0 && s.loadbalancer.is_none() {
            "leftovers"
        } else if running == total && s.loadbalancer.is_none_or(|r| r) {
            "running"
        } else if running == 0 && !lb_runs {
            "stopped"
        } else {
            "partly running"
        };
    }
    Ok(by_name.into_values().collect())
}

/// The containers of cluster `name`, or [`Error::ClusterNotFound`].
async fn cluster_containers(docker: &Docker, name: &str) -> Result<Vec<ContainerSummary>> {
    let containers =
        dockerx::containers(docker, dockerx::label_filters(&[(labels::CLUSTER, name)])).await?;
    if containers.is_empty() {
        return Err(Error::ClusterNotFound {
            name: name.to_owned(),
        });
    }
    Ok(containers)
}

/// One node as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// The container name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The index within the role.
    pub index: u32,
    /// Docker's state: `running`, `exited`, `restarting`, ...
    pub state: String,
    /// The address on the cluster network.
    pub ip: Option<String>,
    /// How often Docker restarted it.
    pub restarts: i64,
    /// The image it runs.
    pub image: String,
}

/// The etcd part of a status.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdStatus {
    /// The verdict (`None` when it could not be checked).
    pub health: Option<ClusterHealth>,
    /// The container of the leader, when one answered as leader.
    pub leader: Option<String>,
    /// The member containers, in member order.
    pub names: Vec<String>,
    /// Every member's status, in member order.
    pub members: Vec<MemberStatus>,
    /// Why the check could not be made.
    pub error: Option<String>,
}

/// The API part of a status.
#[derive(Debug, Clone, Serialize)]
pub struct ApiStatus {
    /// The API URL (`https://<api host>:<port>`).
    pub server: Option<String>,
    /// The host clients dial.
    pub host: Option<IpAddr>,
    /// The published host port.
    pub port: Option<u16>,
    /// Whether `/readyz` answered ok.
    pub ready: bool,
    /// The answer or the error.
    pub detail: String,
    /// Whether the API certificate covers the kubeconfig's host, as kubectl
    /// would check it (`None` when not checked).
    pub host_covered: Option<bool>,
    /// Why it is not covered, and the fix.
    pub coverage_detail: Option<String>,
}

/// How the merged kubeconfig entry compares with the live cluster.
#[derive(Debug, Clone, Serialize)]
pub struct KubeconfigStatus {
    /// The file that was read.
    pub path: PathBuf,
    /// Whether it has the entry `topgun-<name>`.
    pub merged: bool,
    /// The entry's server URL.
    pub server: Option<String>,
    /// The live server URL (from the published API port).
    pub live_server: Option<String>,
    /// Whether the entry's CA is the cluster's.
    pub ca_matches: Option<bool>,
    /// What differs and how to fix it (`None`: no drift).
    pub drift: Option<String>,
}

/// Whether a cluster runs: `running`, `stopped` (no node runs) or
/// `partly running`.
fn cluster_state(nodes: &[NodeStatus]) -> &'static str {
    let running = nodes.iter().filter(|n| n.state == "running").count();
    if running == nodes.len() {
        "running"
    } else if running == 0 && !nodes.iter().any(|n| n.state == "restarting") {
        "stopped"
    } else {
        "partly running"
    }
}

/// A cluster's health, from Docker, haproxy, etcd and the API.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// The cluster name.
    pub name: String,
    /// `running`, `stopped` (no node runs) or `partly running`.
    pub state: &'static str,
    /// `embedded`, `etcd` or `external`.
    pub datastore: Option<String>,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
    /// The load balancer's backends as haproxy sees them (`None` without a
    /// load balancer).
    pub loadbalancer: Option<Vec<BackendState>>,
    /// Why the backends could not be read.
    pub loadbalancer_error: Option<String>,
    /// etcd's verdict (`None` unless topgun runs etcd).
    pub etcd: Option<EtcdStatus>,
    /// The API.
    pub api: ApiStatus,
    /// The merged kubeconfig entry against the live cluster (`None` when
    /// no kubeconfig path is known).
    pub kubeconfig: Option<KubeconfigStatus>,
    /// Whether everything is well: nodes running, backends up, etcd healthy,
    /// API ready and covered, and a merged kubeconfig entry (if any) that
    /// matches the live cluster.
    pub healthy: bool,
}

fn node_status(
    c: &ContainerSummary,
    info: Option<&ContainerInspectResponse>,
) -> Option<NodeStatus> {
    let role = role_of(&c.labels)?;
    let network = label(&c.labels, labels::NETWORK);
    let ip = info
        .and_then(|i| i.network_settings.as_ref())
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| {
            network
                .and_then(|net| n.get(net))
                .or_else(|| n.values().next())
        })
        .and_then(|e| {
            e.ip_address
                .clone()
                .filter(|ip| !ip.is_empty())
                .or_else(|| e.ipam_config.as_ref()?.ipv4_address.clone())
        });
    Some(NodeStatus {
        name: dockerx::summary_name(c),
        role,
        index: index_of(&c.labels),
        state: c
            .state
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".to_owned()),
        ip,
        restarts: info.and_then(|i| i.restart_count).unwrap_or_default(),
        image: c.image.clone().unwrap_or_default(),
    })
}

/// A cluster as Docker shows it: its containers, their inspect responses
/// and the nodes they are.
struct ClusterView {
    name: String,
    containers: Vec<ContainerSummary>,
    infos: HashMap<String, ContainerInspectResponse>,
    nodes: Vec<NodeStatus>,
}

impl ClusterView {
    async fn load(docker: &Docker, name: &str) -> Result<Self> {
        let containers = cluster_containers(docker, name).await?;
        let infos = join_all(containers.iter().map(|c| {
            let id = c.id.clone().unwrap_or_default();
            async move { dockerx::inspect(docker, &id).await.ok() }
        }))
        .await;
        let mut nodes: Vec<NodeStatus> = containers
            .iter()
            .zip(&infos)
            .filter_map(|(c, i)| node_status(c, i.as_ref()))
            .collect();
        nodes.sort_by_key(|n| (role_rank(n.role), n.index));
        let infos = containers
            .iter()
            .zip(infos)
            .filter_map(|(c, i)| Some((dockerx::summary_name(c), i?)))
            .collect();
        Ok(ClusterView {
            name: name.to_owned(),
            containers,
            infos,
            nodes,
        })
    }

    fn info(&self, container: &str) -> Option<&ContainerInspectResponse> {
        self.infos.get(container)
    }
}

/// The nodes of cluster `name` (role, state, IP, image), etcd first, then
/// servers, the load balancer and agents, each by index;
/// [`Error::ClusterNotFound`] when it has none.
pub(crate) async fn nodes(docker: &Docker, name: &str) -> Result<Vec<NodeStatus>> {
    Ok(ClusterView::load(docker, name).await?.nodes)
}

/// Finds nodes by container name, with the cluster each belongs to. A name
/// that is no topgun node is an error; when it is a bare node name
/// (`server-0`), the error lists the clusters that have such a node.
pub(crate) async fn find_nodes(
    docker: &Docker,
    names: &[String],
) -> Result<Vec<(String, NodeStatus)>> {
    let containers = dockerx::containers(docker, dockerx::has_label(labels::CLUSTER)).await?;
    let mut found = Vec::new();
    for name in names {
        let hit = containers
            .iter()
            .find(|c| dockerx::summary_name(c) == *name && role_of(&c.labels).is_some());
        let Some(c) = hit else {
            let suffix = format!("-{name}");
            let mut clusters: Vec<String> = containers
                .iter()
                .filter(|c| dockerx::summary_name(c).ends_with(&suffix))
                .filter_map(|c| label(&c.labels, labels::CLUSTER).map(str::to_owned))
                .collect();
            clusters.sort();
            clusters.dedup();
            let fix = if clusters.is_empty() {
                "node names are container names such as topgun-<cluster>-agent-0; `topgun node list CLUSTER` shows them"
                    .to_owned()
            } else {
                format!(
                    "node names are container names: did you mean {}?",
                    clusters
                        .iter()
                        .map(|c| format!("topgun-{c}-{name}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            };
            return Err(Error::invalid(
                format!("node {name:?}"),
                "is not a topgun node",
                fix,
            ));
        };
        let cluster = label(&c.labels, labels::CLUSTER)
            .unwrap_or_default()
            .to_owned();
        let info = dockerx::inspect(docker, name).await.ok();
        if let Some(node) = node_status(c, info.as_ref()) {
            found.push((cluster, node));
        }
    }
    Ok(found)
}

/// The host port `container` publishes `port/tcp` on, while it runs.
pub(crate) async fn published_port(docker: &Docker, container: &str, port: u16) -> Result<u16> {
    let info = dockerx::inspect(docker, container).await?;
    host_port(&info, port).ok_or_else(|| Error::NodeFailed {
        node: container.to_owned(),
        reason: format!("it has no published host port for {port}/tcp (is it running?)"),
        last_logs: Vec::new(),
    })
}

/// The status of cluster `name`: nodes (role, state, IP, restarts), the
/// load balancer's backends, etcd's verdict (with topgun's client
/// certificate, read back from an etcd member), API readiness, and whether
/// the API certificate covers the kubeconfig's host.
pub(crate) async fn status(docker: &Docker, name: &str) -> Result<ClusterStatus> {
    status_with(
        docker,
        name,
        &kubeconfig::default_files().unwrap_or_default(),
    )
    .await
}

/// [`status`], comparing the entry merged into the kubeconfig made of
/// `kubeconfig_files` (none: not checked) with the live cluster.
pub(crate) async fn status_with(
    docker: &Docker,
    name: &str,
    kubeconfig_files: &[PathBuf],
) -> Result<ClusterStatus> {
    let view = ClusterView::load(docker, name).await?;
    let nodes = view.nodes.clone();
    let datastore = view
        .containers
        .iter()
        .find_map(|c| label(&c.labels, labels::DATASTORE))
        .map(str::to_owned);
    let state = cluster_state(&nodes);
    if state == "stopped" {
        // Nothing answers: a stopped cluster is stopped, not broken.
        return Ok(ClusterStatus {
            name: name.to_owned(),
            state,
            datastore,
            nodes,
            loadbalancer: None,
            loadbalancer_error: None,
            etcd: None,
            api: ApiStatus {
                server: None,
                host: None,
                port: None,
                ready: false,
                detail: format!("the cluster is stopped; `topgun start {name}` starts it"),
                host_covered: None,
                coverage_detail: None,
            },
            kubeconfig: None,
            healthy: false,
        });
    }

    let lb = nodes.iter().find(|n| n.role == Role::LoadBalancer);
    let (loadbalancer, loadbalancer_error) = match lb {
        None => (None, None),
        Some(lb) => match view
            .info(&lb.name)
            .and_then(|i| host_port(i, LB_STATS_PORT))
        {
            None => (
                Some(Vec::new()),
                Some(format!("{} is not running", lb.name)),
            ),
            Some(port) => match api::haproxy_backends(port).await {
                Ok(b) => (
                    Some(
                        b.into_iter()
                            .filter(|b| b.backend == crate::plan::loadbalancer::API_BACKEND)
                            .collect(),
                    ),
                    None,
                ),
                Err(e) => (Some(Vec::new()), Some(e.to_string())),
            },
        },
    };

    let etcd_nodes: Vec<&NodeStatus> = nodes.iter().filter(|n| n.role == Role::Etcd).collect();
    let etcd = if etcd_nodes.is_empty() {
        None
    } else {
        Some(etcd_status(docker, &etcd_nodes, &view).await)
    };

    let (api, live) = api_status(docker, &view).await;
    let kubeconfig = (!kubeconfig_files.is_empty())
        .then(|| kubeconfig_status(kubeconfig_files, name, &api, live.as_ref()));

    let healthy = nodes.iter().all(|n| n.state == "running")
        && kubeconfig.as_ref().is_none_or(|k| k.drift.is_none())
        && loadbalancer_error.is_none()
        && loadbalancer
            .as_ref()
            .is_none_or(|b| !b.is_empty() && b.iter().all(|b| b.checked_up()))
        && etcd
            .as_ref()
            .is_none_or(|e| e.health.as_ref().is_some_and(|h| h.is_healthy()))
        && api.ready
        && api.host_covered == Some(true);
    Ok(ClusterStatus {
        name: name.to_owned(),
        state,
        datastore,
        nodes,
        loadbalancer,
        loadbalancer_error,
        etcd,
        api,
        kubeconfig,
        healthy,
    })
}

/// Compares the entry merged into `path` with the live server URL and CA.
fn kubeconfig_status(
    files: &[PathBuf],
    name: &str,
    api: &ApiStatus,
    live: Option<&KubeconfigYaml>,
) -> KubeconfigStatus {
    let mut status = KubeconfigStatus {
        path: files.first().cloned().unwrap_or_default(),
        merged: false,
        server: None,
        live_server: api.server.clone(),
        ca_matches: None,
        drift: None,
    };
    let entry = match kubeconfig::merged_entry(files, name) {
        Ok(Some(entry)) => entry,
        Ok(None) => return status,
        Err(e) => {
            status.drift = Some(format!("cannot read it: {e}"));
            return status;
        }
    };
    status.merged = true;
    let (path, server, ca) = entry;
    status.path = path;
    let live_ca = live.and_then(|k| kubeconfig::ca_data_of(k).ok());
    status.ca_matches = live_ca.as_ref().map(|live| *live == ca);
    let mut problems = Vec::new();
    if let Some(live_server) = &api.server
        && *live_server != server
    {
        problems.push(format!(
            "its server is {server}, but the cluster's API is at {live_server}"
        ));
    }
    if status.ca_matches == Some(false) {
        problems.push("its CA is not the cluster's (the cluster was recreated?)".to_owned());
    }
    status.server = Some(server);
    if !problems.is_empty() {
        status.drift = Some(format!(
            "the kubeconfig entry {} in {} does not match the cluster: {}; fix it with `topgun kubeconfig merge {name}`",
            kubeconfig::entry_name(name),
            status.path.display(),
            problems.join("; ")
        ));
    }
    status
}

fn role_rank(r: Role) -> u8 {
    match r {
        Role::Etcd => 0,
        Role::Server => 1,
        Role::LoadBalancer => 2,
        Role::Agent => 3,
    }
}

/// topgun's etcd client certificate, read back from any etcd member.
async fn etcd_client_tls(docker: &Docker, members: &[&NodeStatus]) -> Result<ClientTls> {
    let mut last = None;
    for m in members {
        let read = |file: &'static str| {
            let path = format!("{ETCD_CLIENT_DIR}/{file}");
            async move {
                let bytes = archive::read_file(docker, &m.name, &path).await?;
                String::from_utf8(bytes).map_err(|e| Error::Io {
                    action: "cannot use the etcd client file",
                    path: path.into(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
                })
            }
        };
        match tokio::try_join!(read("ca.crt"), read("client.crt"), read("client.key")) {
            Ok((ca, cert, key)) => {
                return Ok(ClientTls::from_pem(ca, Some((cert, KeyPem::new(key)))));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(Error::ClusterNotFound {
        name: "etcd".to_owned(),
    }))
}

/// How to reach a cluster's etcd members from this host.
#[derive(Debug, Clone)]
pub struct EtcdAccess {
    /// Every member, in order: its container name and, when it runs, its
    /// client endpoint (`https://127.0.0.1:<published port>`).
    pub members: Vec<(String, Option<String>)>,
    /// Each member's container state, in member order (`running`, or e.g.
    /// `exited with code 137 (killed)`).
    pub states: Vec<String>,
    /// topgun's client certificate and the etcd CA, read back from a member
    /// (no local state file).
    pub tls: ClientTls,
}

impl EtcdAccess {
    /// The endpoints of the running members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().filter_map(|(_, e)| e.clone()).collect()
    }

    /// One status round over every member (stopped ones count as
    /// unreachable) and topgun-etcd's verdict on it.
    pub async fn health(&self) -> Result<(ClusterHealth, Vec<MemberStatus>)> {
        let endpoints = self.endpoints();
        let answered = if endpoints.is_empty() {
            Vec::new()
        } else {
            Checker::connect(&endpoints, &ClientConfig::with_tls(self.tls.clone()))
                .await?
                .statuses()
                .await
        };
        let mut answered = answered.into_iter();
        let statuses: Vec<MemberStatus> = self
            .members
            .iter()
            .zip(
                self.states
                    .iter()
                    .map(String::as_str)
                    .chain(std::iter::repeat("stopped")),
            )
            .map(|((name, endpoint), state)| match endpoint {
                Some(_) => answered.next().expect("one status per endpoint"),
                None => MemberStatus::unreachable(
                    name.clone(),
                    format!("its container is not running: {state}"),
                ),
            })
            .collect();
        Ok((topgun_etcd::assess(&statuses), statuses))
    }
}

/// How to reach the etcd members of cluster `name` (for `topgun etcd status
/// NAME`); [`Error::ClusterNotFound`] when the cluster has none.
pub(crate) async fn etcd_access(docker: &Docker, name: &str) -> Result<EtcdAccess> {
    let view = ClusterView::load(docker, name).await?;
    let members: Vec<&NodeStatus> = view.nodes.iter().filter(|n| n.role == Role::Etcd).collect();
    if members.is_empty() {
        return Err(Error::invalid(
            format!("cluster {name:?}"),
            "has no etcd members (its datastore is not topgun's etcd)",
            "",
        ));
    }
    etcd_access_of(docker, &members, &view).await
}

async fn etcd_access_of(
    docker: &Docker,
    members: &[&NodeStatus],
    view: &ClusterView,
) -> Result<EtcdAccess> {
    let tls = etcd_client_tls(docker, members).await?;
    let states = members
        .iter()
        .map(|m| {
            let code = view
                .info(&m.name)
                .and_then(|i| i.state.as_ref()?.exit_code)
                .filter(|_| m.state == "exited");
            match code {
                Some(code) => format!(
                    "{} with code {code}{}",
                    m.state,
                    match code {
                        137 => " (killed)",
                        143 => " (terminated)",
                        _ => "",
                    }
                ),
                None => m.state.clone(),
            }
        })
        .collect();
    let members = members
        .iter()
        .map(|m| {
            // Only the client port is published.
            let port = view.info(&m.name).and_then(|i| {
                i.network_settings
                    .as_ref()?
                    .ports
                    .as_ref()?
                    .values()
                    .flatten()
                    .flatten()
                    .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
            });
            let endpoint = port
                .filter(|_| m.state == "running")
                .map(|p| crate::kubeconfig::server_url(crate::engine::control_host(), p));
            (m.name.clone(), endpoint)
        })
        .collect();
    Ok(EtcdAccess {
        members,
        states,
        tls,
    })
}

async fn etcd_status(docker: &Docker, members: &[&NodeStatus], view: &ClusterView) -> EtcdStatus {
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let failed = |error: String| EtcdStatus {
        health: None,
        leader: None,
        names: names.clone(),
        members: Vec::new(),
        error: Some(error),
    };
    let access = match etcd_access_of(docker, members, view).await {
        Ok(a) => a,
        Err(e) => return failed(format!("cannot read topgun's etcd client certificate: {e}")),
    };
    match access.health().await {
        Ok((health, statuses)) => EtcdStatus {
            health: Some(health),
            leader: statuses
                .iter()
                .zip(&names)
                .find(|(s, _)| s.is_leader())
                .map(|(_, n)| n.clone()),
            names,
            members: statuses,
            error: None,
        },
        Err(e) => failed(e.to_string()),
    }
}

/// The API's status, and the live kubeconfig when it could be read.
async fn api_status(docker: &Docker, view: &ClusterView) -> (ApiStatus, Option<KubeconfigYaml>) {
    let server = api_container(&view.containers).and_then(summary_api_url);
    let addr = server
        .as_deref()
        .and_then(|s| s.strip_prefix("https://")?.parse::<SocketAddr>().ok());
    let mut status = ApiStatus {
        server,
        host: addr.map(|a| a.ip()),
        port: addr.map(|a| a.port()),
        ready: false,
        detail: String::new(),
        host_covered: None,
        coverage_detail: None,
    };
    let kubeconfig = match read_kubeconfig(docker, view).await {
        Ok(k) => k,
        Err(e) => {
            status.detail = e.to_string();
            return (status, None);
        }
    };
    let (host, port) = match status
        .server
        .as_deref()
        .and_then(|s| s.strip_prefix("https://")?.parse::<SocketAddr>().ok())
    {
        Some(addr) => (addr.ip(), addr.port()),
        None => {
            status.detail = "the API is not published (its container is not running)".to_owned();
            return (status, Some(kubeconfig));
        }
    };
    let (ready, coverage) = tokio::join!(
        async {
            let creds = kubeconfig::credentials(&kubeconfig)?;
            Ok::<_, Error>(api::readyz(host, port, &creds).await)
        },
        async {
            let parsed = topgun_tls::kubeconfig::Kubeconfig::from_yaml(kubeconfig.expose())?;
            Ok::<_, Error>(topgun_tls::check_kubeconfig(&parsed, None, None).await?)
        }
    );
    match ready {
        Ok(Ok((200, body))) => {
            status.ready = true;
            status.detail = body.trim().to_owned();
        }
        Ok(Ok((code, body))) => {
            status.detail = format!("HTTP {code}: {}", body.lines().last().unwrap_or_default())
        }
        Ok(Err(e)) => status.detail = e.to_string(),
        Err(e) => status.detail = e.to_string(),
    }
    match coverage {
        Ok(check) => {
            status.host_covered = Some(check.covered);
            if !check.covered {
                status.coverage_detail = Some(match check.diagnosis() {
                    Some(d) => format!("{d:?}"),
                    None => format!("{} is not covered", check.host()),
                });
            }
        }
        Err(e) => status.coverage_detail = Some(e.to_string()),
    }
    (status, Some(kubeconfig))
}

async fn read_kubeconfig(docker: &Docker, view: &ClusterView) -> Result<KubeconfigYaml> {
    let name = view.name.as_str();
    let api = api_container(&view.containers).ok_or_else(|| Error::ClusterNotFound {
        name: name.to_owned(),
    })?;
    let api_name = dockerx::summary_name(api);
    let port = view
        .info(&api_name)
        .and_then(|i| host_port(i, API_PORT))
        .ok_or_else(|| Error::Api {
            url: api_name.clone(),
            reason: "the API is not published: the container is not running".to_owned(),
            source: None,
        })?;
    let server = crate::kubeconfig::kubeconfig_server(
        label(&api.labels, labels::API_NAME),
        dial_host(label(&api.labels, labels::API_HOST)),
        port,
    );
    // Prefer running servers, server-0 first.
    let mut servers: Vec<&NodeStatus> = view
        .nodes
        .iter()
        .filter(|n| n.role == Role::Server)
        .collect();
    servers.sort_by_key(|n| (n.state != "running", n.index));
    let mut last = None;
    for s in servers {
        match archive::read_file(docker, &s.name, KUBECONFIG_PATH).await {
            Ok(bytes) => {
                let text = String::from_utf8(bytes)
                    .map_err(|e| kubeconfig::not_text(KUBECONFIG_PATH, e))?;
                return kubeconfig::rewrite(&text, name, &server);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::kubeconfig(
            format!("cluster {name}"),
            crate::error::KubeconfigProblem::NoServer,
        )
    }))
}

/// The kubeconfig of cluster `name`: read from a server through the archive
/// API, server rewritten to the published API, entries named
/// `topgun-<name>`.
pub(crate) async fn kubeconfig(docker: &Docker, name: &str) -> Result<KubeconfigYaml> {
    let view = ClusterView::load(docker, name).await?;
    read_kubeconfig(docker, &view).await
}

/// The CA data of cluster `name`'s kubeconfig, read from any server (a
/// stopped one too); `None` when no server has one.
async fn cluster_ca(docker: &Docker, name: &str) -> Option<String> {
    let containers = dockerx::containers(
        docker,
        dockerx::label_filters(&[(labels::CLUSTER, name), (labels::ROLE, "server")]),
    )
    .await
    .ok()?;
    for c in &containers {
        if let Ok(bytes) =
            archive::read_file(docker, &dockerx::summary_name(c), KUBECONFIG_PATH).await
            && let Ok(text) = String::from_utf8(bytes)
            && let Ok(ca) = kubeconfig::ca_data_of(&KubeconfigYaml::new(text))
            && !ca.is_empty()
        {
            return Some(ca);
        }
    }
    None
}

/// What to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeleteTarget {
    /// One cluster.
    Name(String),
    /// Every cluster topgun made on this engine.
    All,
}

/// How to delete.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DeleteOptions {
    /// The kubeconfig to remove entries from; `None` is the default path
    /// (`$KUBECONFIG`'s first path or `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Leave kubeconfig entries alone.
    pub keep_kubeconfig: bool,
}

impl DeleteOptions {
    /// Removes the cluster's entries from the default kubeconfig.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes the entries from `path` instead.
    pub fn kubeconfig(mut self, path: PathBuf) -> Self {
        self.kubeconfig = Some(path);
        self
    }

    /// Leaves kubeconfig entries alone.
    pub fn keep_kubeconfig(mut self, keep: bool) -> Self {
        self.keep_kubeconfig = keep;
        self
    }
}

/// What a delete removed.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Deleted {
    /// The clusters found.
    pub clusters: Vec<String>,
    /// The Docker resources removed.
    pub removed: Removal,
    /// The clusters whose kubeconfig entries were removed.
    pub kubeconfig_entries: Vec<String>,
    /// The kubeconfig file that was edited.
    pub kubeconfig_path: Option<PathBuf>,
}

/// Deletes a cluster (or all) by labels: containers (stopped ones too),
/// volumes, networks, and the kubeconfig entries topgun merged. Registries
/// it only used are disconnected from its network, never removed. Works on
/// half-made clusters; deleting what does not exist is a successful no-op.
pub(crate) async fn delete(
    docker: &Docker,
    target: &DeleteTarget,
    options: &DeleteOptions,
) -> Result<Deleted> {
    let (filters, names) = match target {
        DeleteTarget::Name(name) => (
            dockerx::label_filters(&[(labels::CLUSTER, name)]),
            vec![name.clone()],
        ),
        DeleteTarget::All => {
            let names: Vec<String> = list(docker).await?.into_iter().map(|c| c.name).collect();
            (dockerx::has_label(labels::CLUSTER), names)
        }
    };
    // Each cluster's CA, read before its nodes go: only kubeconfig entries
    // topgun marked with it are removed.
    let mut cas = Vec::new();
    if !options.keep_kubeconfig {
        for n in &names {
            if let Some(ca) = cluster_ca(docker, n).await {
                cas.push((n.clone(), ca));
            }
        }
    }
    // Registries a cluster only used stay: they are disconnected, so that
    // the network can go (one its create made carries its label and goes).
    for n in &names {
        crate::registry::detach_used(docker, n).await?;
    }
    // One cluster: one pass now, and the passes until nothing is left after
    // the lock below (a create in flight is waited for there).
    let mut removed = match target {
        DeleteTarget::Name(_) => dockerx::remove_once(docker, &filters).await?,
        DeleteTarget::All => {
            dockerx::remove_by_labels(docker, filters.clone(), std::time::Duration::ZERO).await?
        }
    };
    if let DeleteTarget::Name(name) = target {
        // A create of this name may be in flight: what was just removed
        // makes it fail and roll back; wait for it to exit, then look again.
        let _lock = crate::lock::ClusterLock::for_delete(
            &dockerx::docker_host(),
            name,
            std::time::Duration::from_secs(600),
        )
        .await?;
        crate::registry::detach_used(docker, name).await?;
        let again = dockerx::remove_by_labels(docker, filters, std::time::Duration::ZERO).await?;
        removed.absorb(again);
    }
    if !removed.failed.is_empty() {
        return Err(Error::RemoveIncomplete {
            leftovers: removed.failed,
        });
    }
    let mut deleted = Deleted {
        clusters: Vec::new(),
        removed,
        kubeconfig_entries: Vec::new(),
        kubeconfig_path: None,
    };
    if !options.keep_kubeconfig {
        let files = match &options.kubeconfig {
            Some(p) => vec![p.clone()],
            None => kubeconfig::default_files().unwrap_or_default(),
        };
        for (n, ca) in &cas {
            let changed = kubeconfig::remove_from(&files, n, ca)?;
            if let Some(first) = changed.first() {
                deleted.kubeconfig_entries.push(n.clone());
                deleted.kubeconfig_path.get_or_insert_with(|| first.clone());
            }
        }
    }
    deleted.clusters = match target {
        DeleteTarget::Name(n)
            if deleted.removed.count() > 0 || !deleted.kubeconfig_entries.is_empty() =>
        {
            vec![n.clone()]
        }
        DeleteTarget::Name(_) => Vec::new(),
        DeleteTarget::All => names,
    };
    Ok(deleted)
}
