//! Day 2: adding nodes to a cluster that exists, and deleting them.
//!
//! [`add_nodes`] checks everything before it creates anything: the cluster
//! and its record (read back from a server, there is no local state file),
//! the role and count, the image, the names. It plans the new nodes as the
//! create planned the first ones ([`plan::plan_added_nodes`]) with a run id
//! of its own, creates and starts them, waits for their readiness gates and,
//! when servers join a cluster with a load balancer, rewrites haproxy's
//! config and reloads it gracefully (SIGUSR2 to haproxy's master: the new
//! worker takes the listeners, the old one finishes its connections) until
//! haproxy checks the new servers UP. Any failure or cancellation removes
//! what this add made, by its run label, and puts the old haproxy config
//! back.
//!
//! [`delete_nodes`] checks every node first (no etcd member, no load
//! balancer, never the last server, quorum kept), then takes each server out
//! of the load balancer, stops the container, deletes the Kubernetes Node
//! object as `kubectl delete node` does, and removes the container and its
//! own volumes.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    KillContainerOptions, RemoveContainerOptions, RemoveVolumeOptions, StopContainerOptions,
};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::time::Instant;
use topgun_etcd::plan::{FileContents, PlannedFile};
use topgun_tls::KeyPem;

use super::{CreatedNode, logs};
use crate::Warning;
use crate::docker as dockerx;
use crate::lifecycle::{self, NodeStatus};
use crate::plan::{self, DATASTORE_DIR, LB_CONFIG_PATH, LB_STATS_PORT, NodePlan, PhaseKind};
use crate::progress::{Event, Progress, emit};
use crate::spec::{ClusterRecord, Datastore, EndpointKind, RECORD_PATH, Role, Timeouts};
use crate::{Error, Result, api, archive, kubeconfig, labels};

/// The most nodes one `node add` makes.
pub(crate) const MAX_ADD: u32 = 50;

/// How to add nodes.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AddNodesOptions {
    /// The k3s image the new nodes run; `None`: the image the cluster's
    /// nodes run (from the cluster record).
    pub image: Option<String>,
    /// Receives progress events.
    pub progress: Option<Progress>,
    /// How long each new node, and the load balancer, may take; `None`:
    /// the cluster's own (from its record).
    pub timeouts: Option<Timeouts>,
}

impl AddNodesOptions {
    /// The cluster's image and timeouts, no progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the new nodes on `image` instead of the cluster's k3s image.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sends progress events to `progress`.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Bounds each new node's readiness, and the load balancer's, by
    /// `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeouts = Some(Timeouts::all(timeout));
        self
    }
}

/// What a `node add` made.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Added {
    /// The cluster.
    pub cluster: String,
    /// The run id on every resource this add made.
    pub run_id: String,
    /// The role of the new nodes.
    pub role: Role,
    /// The image they run.
    pub image: String,
    /// The new nodes, by index.
    pub nodes: Vec<CreatedNode>,
    /// Whether the load balancer's config was rewritten and reloaded.
    pub loadbalancer_updated: bool,
    /// How long the add took.
    #[serde(serialize_with = "ser_ms", rename = "elapsed_ms")]
    pub elapsed: Duration,
    /// Things the user should know.
    pub warnings: Vec<Warning>,
}

/// How to delete nodes.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DeleteNodeOptions {
    /// Receives progress events.
    pub progress: Option<Progress>,
    /// How long the load balancer may take to drop a server; `None`: the
    /// default API timeout.
    pub timeouts: Option<Timeouts>,
}

impl DeleteNodeOptions {
    /// No progress, default timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends progress events to `progress`.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// What became of a deleted node's Kubernetes Node object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeObject {
    /// The API deleted it.
    Deleted,
    /// The API had no such Node.
    Absent,
    /// It could not be deleted (the API did not answer, or refused); the
    /// report's warnings say why.
    Kept,
}

/// What a `node delete` removed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct NodeDeleted {
    /// The cluster.
    pub cluster: String,
    /// The container name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The node's own volumes that were removed.
    pub volumes: Vec<String>,
    /// Whether the load balancer's config was rewritten and reloaded.
    pub loadbalancer_updated: bool,
    /// The Kubernetes Node object.
    pub node_object: NodeObject,
    /// How long the delete took.
    #[serde(serialize_with = "ser_ms", rename = "elapsed_ms")]
    pub elapsed: Duration,
    /// Things the user should know.
    pub warnings: Vec<Warning>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn is_running(n: &NodeStatus) -> bool {
    n.state == "running"
}

/// Reads the cluster record from a server, running ones first (by index).
/// Returns it with the server it came from.
async fn read_record(docker: &Docker, nodes: &[NodeStatus]) -> Result<(ClusterRecord, String)> {
    let mut servers: Vec<&NodeStatus> = nodes.iter().filter(|n| n.role == Role::Server).collect();
    servers.sort_by_key(|n| (!is_running(n), n.index));
    let mut last = None;
    for s in servers {
        match archive::read_file(docker, &s.name, RECORD_PATH).await {
            Ok(bytes) => return Ok((ClusterRecord::from_json(&bytes)?, s.name.clone())),
            Err(e) => {
                tracing::debug!(server = %s.name, error = %e, "no cluster record");
                last = Some(e);
            }
        }
    }
    Err(Error::invalid(
        format!("cluster record {RECORD_PATH}"),
        match last {
            Some(e) => format!("cannot be read from any server ({e})"),
            None => "cannot be read: the cluster has no server".to_owned(),
        },
        "a cluster made by an older topgun has none; recreate it to add nodes",
    ))
}

/// The declared volumes of `image`, or [`Error::ImageMissing`].
async fn image_volumes(docker: &Docker, image: &str) -> Result<Vec<String>> {
    match docker.inspect_image(image).await {
        Ok(info) => Ok(info.config.and_then(|c| c.volumes).unwrap_or_default()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(Error::ImageMissing {
            image: image.to_owned(),
        }),
        Err(e) => Err(Error::docker(format!("inspect image {image}"), e)),
    }
}

/// Reads a file from `container`; `None` when it is not there.
async fn read_optional(docker: &Docker, container: &str, path: &str) -> Result<Option<Vec<u8>>> {
    match archive::read_file(docker, container, path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adds `count` nodes of `role` (server or agent) to cluster `cluster`. See
/// [`add_nodes_until`] for an add that can be cancelled.
pub(crate) async fn add_nodes(
    docker: &Docker,
    cluster: &str,
    role: Role,
    count: u32,
    options: &AddNodesOptions,
) -> Result<Added> {
    add_nodes_until(
        docker,
        cluster,
        role,
        count,
        options,
        std::future::pending::<()>(),
    )
    .await
}

/// Adds `count` nodes of `role` to cluster `cluster`, or stops when `cancel`
/// completes and returns [`Error::Cancelled`].
///
/// Everything is checked before anything is created: the cluster exists and
/// has a record, the role is `server` or `agent`, `count` is 1 to
/// [`MAX_ADD`], the image is on the engine ([`Error::ImageMissing`]), and a
/// server is not added to a single-server cluster on SQLite. The new nodes
/// take the indices after the highest existing one. On failure or
/// cancellation everything this add made is removed (by its run label) and
/// the load balancer gets its old config back; the existing nodes are not
/// touched. Do not drop the returned future to cancel: that skips the
/// rollback.
pub(crate) async fn add_nodes_until<F>(
    docker: &Docker,
    cluster: &str,
    role: Role,
    count: u32,
    options: &AddNodesOptions,
    cancel: F,
) -> Result<Added>
where
    F: Future<Output = ()>,
{
    let started = Instant::now();
    // One change of a cluster at a time on this host: a delete of the
    // cluster that races this add waits for its rollback, and two adds do
    // not pick the same indices.
    let _lock = crate::lock::ClusterLock::for_create(&dockerx::docker_host(), cluster)?;
    tokio::pin!(cancel);
    let prepared = tokio::select! {
        r = prepare_add(docker, cluster, role, count, options) => r?,
        () = &mut cancel => return Err(Error::Cancelled),
    };
    let run_id = prepared.ctx_run_id.clone();
    tracing::debug!(%cluster, %run_id, %role, count, "adding nodes");
    let mut lb_touched = false;
    let result = tokio::select! {
        r = execute_add(docker, &prepared, options, &mut lb_touched) => r,
        () = &mut cancel => Err(Error::Cancelled),
    };
    let error = match result {
        Ok(()) => {
            return Ok(Added {
                cluster: cluster.to_owned(),
                run_id,
                role,
                image: prepared.image.clone(),
                nodes: prepared
                    .added
                    .nodes
                    .iter()
                    .map(|n| CreatedNode {
                        name: n.name.clone(),
                        role: n.role,
                        ip: IpAddr::V4(n.ip),
                    })
                    .collect(),
                loadbalancer_updated: prepared.lb_change.is_some(),
                elapsed: started.elapsed(),
                warnings: prepared.warnings.clone(),
            });
        }
        Err(e) => e,
    };
    emit(
        &options.progress,
        Event::RollingBack {
            reason: error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        },
    );
    let mut leftovers = Vec::new();
    if lb_touched && let Some(change) = &prepared.lb_change {
        // The old config first, so haproxy stops routing to the new servers
        // before they go.
        if let Err(e) = write_lb_config(docker, change, &change.old, prepared.timeouts.api).await {
            leftovers.push(format!(
                "the old config of {} (it still lists the new servers): {e}",
                change.lb
            ));
        }
    }
    match super::rollback(docker, &run_id).await {
        Ok(removal) => {
            leftovers.extend(removal.failed.iter().cloned());
            emit(
                &options.progress,
                Event::Removed {
                    count: removal.count(),
                },
            );
        }
        Err(e) => leftovers.push(e.to_string()),
    }
    // New nodes that registered before the failure leave Node objects.
    let hostnames: Vec<&str> = prepared
        .added
        .nodes
        .iter()
        .map(|n| n.hostname.as_str())
        .collect();
    match api_access(docker, cluster).await {
        Ok((server, addr, creds)) => {
            for h in hostnames {
                match api::delete_node(addr.ip(), addr.port(), &creds, h).await {
                    Ok((200 | 202 | 404, _)) => {}
                    Ok((status, _)) => leftovers.push(format!(
                        "the Kubernetes Node {h} (the API at {server} answered HTTP {status}; `kubectl delete node {h}`)"
                    )),
                    Err(e) => tracing::warn!(
                        "cannot delete the Kubernetes Node {h} of a removed node, if it \
                         registered: the API at {server} does not answer: {e}"
                    ),
                }
            }
        }
        Err(reason) => tracing::warn!(
            "cannot delete Kubernetes Node objects the removed nodes may have registered: \
             {reason}"
        ),
    }
    if leftovers.is_empty() {
        Err(error)
    } else {
        Err(Error::AddRollbackIncomplete {
            cause: Box::new(error),
            leftovers,
        })
    }
}

/// A change of the load balancer's config.
struct LbChange {
    /// The load balancer's container.
    lb: String,
    /// Whether it runs (a stopped one reads the new config when it starts).
    running: bool,
    /// The config it has now.
    old: String,
    /// The config it gets.
    new: String,
    /// Hostnames that haproxy must list once it has reloaded.
    present: Vec<String>,
    /// Hostnames that must be gone once it has reloaded.
    absent: Vec<String>,
    /// Hostnames that haproxy must check UP as API backends.
    up: Vec<String>,
}

/// Everything an add checked and planned before creating anything.
struct PreparedAdd {
    cluster: String,
    ctx_run_id: String,
    image: String,
    added: plan::AddedNodes,
    timeouts: Timeouts,
    /// New servers join k3s's embedded etcd one at a time.
    one_at_a_time: bool,
    lb_change: Option<LbChange>,
    warnings: Vec<Warning>,
}

async fn prepare_add(
    docker: &Docker,
    cluster: &str,
    role: Role,
    count: u32,
    options: &AddNodesOptions,
) -> Result<PreparedAdd> {
    if !matches!(role, Role::Server | Role::Agent) {
        return Err(Error::invalid(
            format!("node role {role}"),
            "cannot be added: etcd members and the load balancer are made with the cluster",
            "use --role server or --role agent",
        ));
    }
    if count == 0 || count > MAX_ADD {
        return Err(Error::invalid(
            format!("node count {count}"),
            format!("must be from 1 to {MAX_ADD}"),
            if count == 0 {
                "add at least one node".to_owned()
            } else {
                format!("add at most {MAX_ADD} nodes at a time")
            },
        ));
    }
    let nodes = lifecycle::nodes(docker, cluster).await?;
    let (record, source) = read_record(docker, &nodes).await?;
    let (created_servers, _) = record.created_counts();
    let existing = k3s_indices(&nodes);
    let next = |r: Role| index_bound(&existing, r);
    let first = next(role);
    let indices: Vec<u32> = (first..first + count).collect();
    let (max, what) = match role {
        Role::Server => (crate::spec::MAX_SERVERS, "servers"),
        _ => (crate::spec::MAX_AGENTS, "agents"),
    };
    if first + count > max {
        return Err(Error::invalid(
            format!("{role} indices {first}-{}", first + count - 1),
            format!("go beyond the {max} {what} a cluster may have (each has a static address)"),
            "add fewer nodes",
        ));
    }
    let (servers, agents) = match role {
        Role::Server => (first + count, next(Role::Agent)),
        _ => (next(Role::Server), first + count),
    };
    let spec = record.spec(servers.max(1), agents)?;
    if role == Role::Server {
        match &spec.datastore {
            Datastore::Embedded if created_servers == 1 => {
                return Err(Error::invalid(
                    format!("server for cluster {cluster:?}"),
                    "cannot be added: the cluster was created with one server on k3s's embedded \
                     datastore, which is then SQLite, kept by that server alone; no other server \
                     can join it",
                    "create the cluster with --servers 2 or more (k3s's embedded etcd) or \
                     --datastore etcd to add servers later; agents can be added to any cluster",
                ));
            }
            Datastore::External(ext) if ext.endpoint.kind() == EndpointKind::Sqlite => {
                return Err(Error::invalid(
                    format!("server for cluster {cluster:?}"),
                    "cannot be added: its datastore is SQLite, kept by one server alone",
                    "agents can be added to any cluster",
                ));
            }
            _ => {}
        }
    }
    spec.validate()?;
    let mut images = record.images.clone();
    if let Some(image) = &options.image {
        images.k3s = image.clone();
    }
    let image = images.k3s.clone();
    let declared = image_volumes(docker, &image).await?;
    let timeouts = options.timeouts.unwrap_or(spec.timeouts);

    // What the new nodes reach: the load balancer, else server-0.
    let lb = nodes.iter().find(|n| n.role == Role::LoadBalancer);
    if spec.loadbalancer.enabled && lb.is_none() {
        return Err(Error::invalid(
            format!("cluster {cluster:?}"),
            "has lost its load balancer, through which new nodes join",
            format!("recreate the cluster (`topgun delete {cluster}`)"),
        ));
    }
    if !spec.loadbalancer.enabled && !nodes.iter().any(|n| n.role == Role::Server && n.index == 0) {
        return Err(Error::invalid(
            format!("cluster {cluster:?}"),
            "has no server-0, through which new nodes join when there is no load balancer",
            format!("recreate the cluster (`topgun delete {cluster}`)"),
        ));
    }
    let images_volume = plan::images_volume_name(cluster);
    if docker.inspect_volume(&images_volume).await.is_err() {
        return Err(Error::invalid(
            format!("cluster {cluster:?}"),
            format!("has no images volume {images_volume}, which every k3s node mounts"),
            "a cluster made by an older topgun has none; recreate it to add nodes",
        ));
    }

    let subnet = record.subnet()?;
    let mut ctx = plan::PlanContext::new(
        hex::encode(rand::random::<[u8; 8]>()),
        record.token()?,
        subnet,
        images,
    );
    ctx.privileged = record.privileged;
    ctx.image_volumes.insert(image.clone(), declared);
    // Certificates to plan with only: servers get the datastore files read
    // back from an existing server.
    ctx.control_host = crate::engine::control_host();
    ctx.engine = crate::engine::current().ok().map(|e| e.label());
    ctx.etcd_pki = super::prepare::etcd_pki(&spec, &subnet, ctx.control_host)?;
    if role == Role::Server {
        match &spec.datastore {
            Datastore::Etcd(_) => {
                let throwaway = plan::plan_added_nodes(&spec, &ctx, &existing, role, &indices)?;
                let wanted: Vec<PlannedFile> = throwaway.nodes[0]
                    .files
                    .iter()
                    .filter(|f| f.path.starts_with(DATASTORE_DIR))
                    .cloned()
                    .collect();
                let mut read_back = Vec::new();
                for f in wanted {
                    let bytes = archive::read_file(docker, &source, &f.path).await?;
                    let text = String::from_utf8(bytes).map_err(|_| {
                        Error::invalid(
                            format!("datastore file {} of {source}", f.path),
                            "is not text",
                            "",
                        )
                    })?;
                    read_back.push(PlannedFile {
                        path: f.path,
                        mode: f.mode,
                        contents: if f.contents.is_secret() {
                            FileContents::Secret(KeyPem::new(text))
                        } else {
                            FileContents::Public(text)
                        },
                    });
                }
                ctx.datastore_files = Some(read_back);
            }
            Datastore::External(_) => {
                let read = |file: &'static str| {
                    let path = format!("{DATASTORE_DIR}/{file}");
                    let source = source.clone();
                    async move {
                        let bytes = read_optional(docker, &source, &path).await?;
                        bytes
                            .map(|b| {
                                String::from_utf8(b).map_err(|_| {
                                    Error::invalid(
                                        format!("datastore file {path} of {source}"),
                                        "is not text",
                                        "",
                                    )
                                })
                            })
                            .transpose()
                    }
                };
                let (ca, cert, key) =
                    tokio::try_join!(read("ca.crt"), read("client.crt"), read("client.key"))?;
                ctx.external_tls = plan::ExternalTls {
                    ca,
                    cert,
                    key: key.map(KeyPem::new),
                };
            }
            Datastore::Embedded => {}
        }
    }
    let mut added = plan::plan_added_nodes(&spec, &ctx, &existing, role, &indices)?;
    let open = added.open_ports();
    if !open.is_empty() {
        ctx.host_ports = crate::docker::free_ports(docker, &open).await?;
        added = plan::plan_added_nodes(&spec, &ctx, &existing, role, &indices)?;
    }
    // The names must be free: leftovers of an earlier node are never adopted.
    for node in &added.nodes {
        match docker.inspect_container(&node.name, None).await {
            Ok(_) => {
                return Err(Error::invalid(
                    format!("node {}", node.name),
                    "exists already",
                    format!("delete it first (`topgun node delete {}`)", node.name),
                ));
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(Error::docker(format!("inspect container {}", node.name), e)),
        }
        for v in &node.volumes {
            if docker.inspect_volume(&v.name).await.is_ok() {
                return Err(Error::invalid(
                    format!("volume {}", v.name),
                    "exists already, and topgun does not adopt volumes it did not make",
                    format!("remove it (`docker volume rm {}`)", v.name),
                ));
            }
        }
    }

    let mut warnings: Vec<Warning> = Vec::new();
    let lb_change = match (lb, &added.haproxy_config) {
        (Some(lb), Some(new)) => {
            let old = archive::read_file(docker, &lb.name, LB_CONFIG_PATH).await?;
            let old = String::from_utf8_lossy(&old).into_owned();
            if old == *new {
                None
            } else {
                let new_hosts: Vec<String> =
                    added.nodes.iter().map(|n| n.hostname.clone()).collect();
                if !is_running(lb) {
                    warnings.push(Warning::LoadBalancerNotRunning {
                        name: lb.name.clone(),
                    });
                }
                Some(LbChange {
                    lb: lb.name.clone(),
                    running: is_running(lb),
                    old,
                    new: new.clone(),
                    present: new_hosts.clone(),
                    absent: Vec::new(),
                    up: if role == Role::Server {
                        new_hosts
                    } else {
                        Vec::new()
                    },
                })
            }
        }
        _ => None,
    };
    Ok(PreparedAdd {
        cluster: cluster.to_owned(),
        ctx_run_id: ctx.run_id.clone(),
        image,
        added,
        timeouts,
        one_at_a_time: role == Role::Server && matches!(spec.datastore, Datastore::Embedded),
        lb_change,
        warnings,
    })
}

async fn execute_add<'a>(
    docker: &'a Docker,
    prepared: &'a PreparedAdd,
    options: &'a AddNodesOptions,
    lb_touched: &mut bool,
) -> Result<()> {
    let nodes = &prepared.added.nodes;
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let kind = if nodes.first().is_some_and(|n| n.role == Role::Server) {
        PhaseKind::Servers
    } else {
        PhaseKind::Agents
    };
    let t = Instant::now();
    emit(
        &options.progress,
        Event::PhaseStarted {
            phase: kind,
            nodes: names,
        },
    );
    // Made one at a time (made together, they slow each other down), each
    // started as soon as it is made while the next is made; the gates are
    // awaited meanwhile, so a node that fails is seen at once. Servers
    // joining k3s's embedded etcd go one at a time: etcd takes one new
    // (learner) member at a time.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&NodePlan>();
    let start_and_wait = |node: &'a NodePlan| async move {
        docker
            .start_container(&node.name, None)
            .await
            .map_err(|e| super::start_error(node, e))?;
        tracing::debug!(node = %node.name, "started");
        wait_gate(docker, node, &prepared.timeouts, t, options).await
    };
    let make = async move {
        for node in nodes {
            super::create_node(docker, &prepared.cluster, node).await?;
            tracing::debug!(node = %node.name, "made");
            if prepared.one_at_a_time {
                start_and_wait(node).await?;
            } else {
                let _ = tx.send(node);
            }
        }
        Ok::<(), Error>(())
    };
    let wait = async {
        let mut gates = FuturesUnordered::new();
        let mut open = true;
        while open || !gates.is_empty() {
            tokio::select! {
                node = rx.recv(), if open => match node {
                    Some(node) => gates.push(start_and_wait(node)),
                    None => open = false,
                },
                Some(r) = gates.next(), if !gates.is_empty() => r?,
            }
        }
        Ok::<(), Error>(())
    };
    tokio::try_join!(make, wait)?;
    emit(
        &options.progress,
        Event::PhaseDone {
            phase: kind,
            elapsed: t.elapsed(),
        },
    );
    if let Some(change) = &prepared.lb_change {
        let t = Instant::now();
        emit(
            &options.progress,
            Event::PhaseStarted {
                phase: PhaseKind::LoadBalancer,
                nodes: vec![change.lb.clone()],
            },
        );
        *lb_touched = true;
        write_lb_config(docker, change, &change.new, prepared.timeouts.api).await?;
        emit(
            &options.progress,
            Event::PhaseDone {
                phase: PhaseKind::LoadBalancer,
                elapsed: t.elapsed(),
            },
        );
    }
    Ok(())
}

/// Waits until a new node passes its readiness gate.
async fn wait_gate(
    docker: &Docker,
    node: &NodePlan,
    timeouts: &Timeouts,
    phase_started: Instant,
    options: &AddNodesOptions,
) -> Result<()> {
    let (line, timeout) = match node.role {
        Role::Server => (plan::SERVER_READY, timeouts.server),
        _ => (plan::AGENT_READY, timeouts.agent),
    };
    logs::wait_for_line(
        docker,
        &node.name,
        Some(line),
        Instant::now() + timeout,
        timeout,
    )
    .await?;
    emit(
        &options.progress,
        Event::NodeReady {
            node: node.name.clone(),
            elapsed: phase_started.elapsed(),
        },
    );
    Ok(())
}

/// Writes `config` into the load balancer and, when it runs, reloads
/// haproxy gracefully and waits until its stats page shows the change
/// (hostnames listed or gone, new API backends checked UP).
async fn write_lb_config(
    docker: &Docker,
    change: &LbChange,
    config: &str,
    timeout: Duration,
) -> Result<()> {
    let file = PlannedFile {
        path: LB_CONFIG_PATH.to_owned(),
        mode: 0o644,
        contents: FileContents::Public(config.to_owned()),
    };
    archive::upload(docker, &change.lb, std::slice::from_ref(&file), &[]).await?;
    if !change.running {
        return Ok(());
    }
    reload_haproxy(docker, &change.lb).await?;
    // Restoring the old config: the new servers must be gone from it.
    let restoring = config == change.old;
    let (present, absent, up): (&[String], &[String], &[String]) = if restoring {
        (&change.absent, &change.present, &[])
    } else {
        (&change.present, &change.absent, &change.up)
    };
    wait_lb(docker, &change.lb, present, absent, up, timeout).await
}

/// Reloads haproxy without dropping established connections: SIGUSR2 to
/// its master (PID 1, `haproxy -W`) starts a new worker on the new config;
/// the old worker stops accepting and finishes its connections. A config
/// the new worker refuses leaves the old worker serving.
async fn reload_haproxy(docker: &Docker, lb: &str) -> Result<()> {
    tracing::debug!(%lb, "reloading haproxy");
    docker
        .kill_container(
            lb,
            Some(KillContainerOptions {
                signal: "SIGUSR2".to_owned(),
            }),
        )
        .await
        .map_err(|e| Error::docker(format!("reload haproxy in {lb} (SIGUSR2)"), e))
}

/// Polls haproxy's stats page until every hostname of `present` is listed,
/// none of `absent` is, and each of `up` is an API backend UP by a passed
/// check.
async fn wait_lb(
    docker: &Docker,
    lb: &str,
    present: &[String],
    absent: &[String],
    up: &[String],
    timeout: Duration,
) -> Result<()> {
    let port = lifecycle::published_port(docker, lb, LB_STATS_PORT).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let last = match api::haproxy_backends(port).await {
            Ok(rows) => {
                let listed: BTreeSet<&str> = rows.iter().map(|r| r.server.as_str()).collect();
                let mut waiting: Vec<String> = Vec::new();
                for h in present {
                    if !listed.contains(h.as_str()) {
                        waiting.push(format!("{h} not listed yet"));
                    }
                }
                for h in absent {
                    if listed.contains(h.as_str()) {
                        waiting.push(format!("{h} still listed"));
                    }
                }
                for h in up {
                    let row = rows
                        .iter()
                        .find(|r| r.backend == plan::loadbalancer::API_BACKEND && r.server == *h);
                    match row {
                        Some(r) if r.checked_up() => {}
                        Some(r) => waiting.push(format!("{h} is {} ({})", r.status, r.check)),
                        None => {}
                    }
                }
                if waiting.is_empty() {
                    return Ok(());
                }
                waiting.join(", ")
            }
            Err(e) => format!("its stats page does not answer: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                node: lb.to_owned(),
                waiting_for: format!("haproxy did not take up its new config: {last}"),
                after: timeout,
                last_logs: logs::last_lines(docker, lb, logs::TAIL_LINES).await,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes one node (a container name) of any cluster; see
/// [`delete_nodes`].
pub(crate) async fn delete_node(
    docker: &Docker,
    node: &str,
    options: &DeleteNodeOptions,
) -> Result<NodeDeleted> {
    let mut deleted = delete_nodes(docker, &[node.to_owned()], options).await?;
    Ok(deleted.remove(0))
}

/// Deletes nodes (container names, of any clusters), one at a time in the
/// order given, after checking all of them: an etcd member or the load
/// balancer is refused (etcd membership and the load balancer are not
/// per-node operations; `topgun delete` removes a whole cluster), so is the
/// last server of a cluster, server-0 of a cluster without a load balancer
/// (it publishes the API), and a server whose removal would leave k3s's
/// embedded etcd without a quorum of running servers.
///
/// A server leaves the load balancer first (new config, graceful reload);
/// then the container is stopped, its Kubernetes Node object is deleted
/// through the API as `kubectl delete node` does (an API that does not
/// answer is a warning, not a failure), and the container and its own
/// volumes are removed. The cluster's shared images volume stays.
pub(crate) async fn delete_nodes(
    docker: &Docker,
    names: &[String],
    options: &DeleteNodeOptions,
) -> Result<Vec<NodeDeleted>> {
    let mut unique: Vec<String> = Vec::new();
    for n in names {
        if !unique.contains(n) {
            unique.push(n.clone());
        }
    }
    let found = lifecycle::find_nodes(docker, &unique).await?;
    // One change of a cluster at a time on this host (see add_nodes_until).
    let mut locks = Vec::new();
    let mut locked: Vec<&str> = Vec::new();
    for (cluster, _) in &found {
        if !locked.contains(&cluster.as_str()) {
            locks.push(crate::lock::ClusterLock::for_create(
                &dockerx::docker_host(),
                cluster,
            )?);
            locked.push(cluster);
        }
    }
    // Check every deletion, in order, against what the earlier ones leave.
    let mut clusters: HashMap<String, (Option<String>, Vec<NodeStatus>)> = HashMap::new();
    for (cluster, node) in &found {
        if !clusters.contains_key(cluster) {
            let nodes = lifecycle::nodes(docker, cluster).await?;
            let datastore = cluster_datastore(docker, cluster).await?;
            clusters.insert(cluster.clone(), (datastore, nodes));
        }
        let (datastore, left) = clusters.get_mut(cluster).expect("inserted");
        check_delete(cluster, datastore.as_deref(), node, left)?;
        left.retain(|n| n.name != node.name);
    }
    let timeouts = options.timeouts.unwrap_or_default();
    let mut states: HashMap<String, ClusterState> = HashMap::new();
    let mut deleted: Vec<NodeDeleted> = Vec::new();
    for (cluster, node) in &found {
        // With k3s's embedded etcd, k3s removes a server's etcd member when
        // its Node is deleted; while one may remain, the quorum checked
        // above no longer holds.
        let kept = deleted.iter().find(|d| {
            d.cluster == *cluster && d.role == Role::Server && d.node_object == NodeObject::Kept
        });
        if let (Some(kept), Role::Server) = (kept, node.role)
            && clusters.get(cluster).and_then(|c| c.0.as_deref()) == Some("embedded")
        {
            return Err(stopped_after(
                &deleted,
                Error::invalid(
                    format!("node {}", node.name),
                    format!(
                        "was not deleted: the Kubernetes Node of {} could not be deleted, so its \
                         member of k3s's embedded etcd may remain, and deleting another server \
                         could lose the quorum",
                        kept.name
                    ),
                    format!(
                        "delete that Node (`kubectl delete node {}`), then this server again",
                        kept.name.to_lowercase()
                    ),
                ),
            ));
        }
        if !states.contains_key(cluster) {
            states.insert(
                cluster.clone(),
                ClusterState {
                    nodes: lifecycle::nodes(docker, cluster).await?,
                    record: None,
                    api: None,
                },
            );
        }
        let state = states.get_mut(cluster).expect("inserted");
        match delete_one(docker, cluster, node, state, &timeouts, options).await {
            Ok(d) => deleted.push(d),
            Err(e) => return Err(stopped_after(&deleted, e)),
        }
        state.nodes.retain(|n| n.name != node.name);
    }
    Ok(deleted)
}

/// `error`, after telling (through `tracing`) which nodes were deleted
/// before it.
fn stopped_after(deleted: &[NodeDeleted], error: Error) -> Error {
    if !deleted.is_empty() {
        let names: Vec<&str> = deleted.iter().map(|d| d.name.as_str()).collect();
        tracing::warn!("deleted before the failure: {}", names.join(", "));
    }
    error
}

/// What the deletes from one cluster share: its nodes as they are now, and
/// what is read once (the record, the API's address and credentials).
struct ClusterState {
    nodes: Vec<NodeStatus>,
    record: Option<ClusterRecord>,
    api: Option<
        std::result::Result<(String, std::net::SocketAddr, kubeconfig::Credentials), String>,
    >,
}

/// Refuses deleting `node` from a cluster whose nodes are `nodes`.
fn check_delete(
    cluster: &str,
    datastore: Option<&str>,
    node: &NodeStatus,
    nodes: &[NodeStatus],
) -> Result<()> {
    let what = || format!("node {}", node.name);
    let whole = format!("`topgun delete {cluster}` removes the whole cluster");
    match node.role {
        Role::Etcd => {
            return Err(Error::invalid(
                what(),
                "is an etcd member: etcd membership is not changed node by node (every member's \
                 certificate and every server's datastore endpoints name all members)",
                whole,
            ));
        }
        Role::LoadBalancer => {
            return Err(Error::invalid(
                what(),
                "is the load balancer, which carries the API and the nodes' connections to the \
                 servers",
                whole,
            ));
        }
        Role::Agent => return Ok(()),
        Role::Server => {}
    }
    let servers: Vec<&NodeStatus> = nodes.iter().filter(|n| n.role == Role::Server).collect();
    if servers.len() <= 1 {
        return Err(Error::invalid(
            what(),
            format!("is the last server of cluster {cluster:?}; a cluster needs one"),
            whole,
        ));
    }
    let has_lb = nodes.iter().any(|n| n.role == Role::LoadBalancer);
    if !has_lb && node.index == 0 {
        return Err(Error::invalid(
            what(),
            "publishes the API of a cluster without a load balancer, and the nodes join through it",
            format!("delete other servers, or {whole}"),
        ));
    }
    if datastore == Some("embedded") {
        let members = servers.len();
        let quorum = members / 2 + 1;
        let running_after = servers
            .iter()
            .filter(|s| s.name != node.name && is_running(s))
            .count();
        if running_after < quorum {
            return Err(Error::invalid(
                what(),
                format!(
                    "would leave {running_after} running server(s) of the {members} members of \
                     k3s's embedded etcd, which needs {quorum} for a quorum"
                ),
                "start the stopped servers first (`topgun node start`), or add a server \
                 (`topgun node add --role server`) before deleting this one",
            ));
        }
    }
    Ok(())
}

/// The datastore label of a cluster's nodes (`embedded`, `etcd` or
/// `external`).
async fn cluster_datastore(docker: &Docker, cluster: &str) -> Result<Option<String>> {
    let containers = dockerx::containers(
        docker,
        dockerx::label_filters(&[(labels::CLUSTER, cluster)]),
    )
    .await?;
    Ok(containers
        .iter()
        .find_map(|c| c.labels.as_ref()?.get(labels::DATASTORE).cloned()))
}

/// Deletes one checked node.
async fn delete_one(
    docker: &Docker,
    cluster: &str,
    node: &NodeStatus,
    state: &mut ClusterState,
    timeouts: &Timeouts,
    options: &DeleteNodeOptions,
) -> Result<NodeDeleted> {
    let started = Instant::now();
    let mut warnings: Vec<Warning> = Vec::new();
    let info = dockerx::inspect(docker, &node.name).await?;
    let hostname = info
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(labels::HOSTNAME).cloned())
        .unwrap_or_else(|| node.name.to_lowercase());
    let mounted: Vec<String> = info
        .mounts
        .iter()
        .flatten()
        .filter_map(|m| m.name.clone())
        .collect();

    // Out of the load balancer first.
    let mut loadbalancer_updated = false;
    let lb = state
        .nodes
        .iter()
        .find(|n| n.role == Role::LoadBalancer)
        .cloned();
    if let Some(lb) = &lb {
        match lb_without(docker, state, node, lb).await {
            Ok(None) => {}
            Ok(Some((old, new))) => {
                let change = LbChange {
                    lb: lb.name.clone(),
                    running: is_running(lb),
                    old,
                    new,
                    present: Vec::new(),
                    absent: vec![hostname.clone()],
                    up: Vec::new(),
                };
                let t = Instant::now();
                emit(
                    &options.progress,
                    Event::PhaseStarted {
                        phase: PhaseKind::LoadBalancer,
                        nodes: vec![lb.name.clone()],
                    },
                );
                write_lb_config(docker, &change, &change.new, timeouts.api).await?;
                loadbalancer_updated = true;
                emit(
                    &options.progress,
                    Event::PhaseDone {
                        phase: PhaseKind::LoadBalancer,
                        elapsed: t.elapsed(),
                    },
                );
                if !change.running {
                    warnings.push(Warning::LoadBalancerNotRunning {
                        name: lb.name.clone(),
                    });
                }
            }
            Err(e) if node.role == Role::Server => return Err(e),
            Err(e) => warnings.push(Warning::LoadBalancerConfigKept {
                reason: e.to_string(),
            }),
        }
    }

    // Stopped, so that nothing registers the Node again.
    if is_running(node) || node.state == "restarting" {
        docker
            .stop_container(
                &node.name,
                Some(StopContainerOptions {
                    t: Some(10),
                    signal: None,
                }),
            )
            .await
            .or_else(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 304 | 404,
                    ..
                } => Ok(()),
                e => Err(Error::docker(format!("stop container {}", node.name), e)),
            })?;
        emit(
            &options.progress,
            Event::NodeStopped {
                node: node.name.clone(),
            },
        );
    }

    let node_object = match delete_node_object(docker, cluster, state, &hostname).await {
        Ok(o) => o,
        Err(reason) => {
            warnings.push(Warning::NodeObjectKept {
                node: hostname.to_string(),
                reason: reason.to_string(),
            });
            NodeObject::Kept
        }
    };

    // The container, then its own volumes: labelled with this cluster and
    // named after it (never the cluster's shared images volume).
    docker
        .remove_container(
            &node.name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                link: false,
            }),
        )
        .await
        .or_else(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => Ok(()),
            e => Err(Error::docker(format!("remove container {}", node.name), e)),
        })?;
    let prefix = format!("{}-", node.name);
    let owned: Vec<String> = dockerx::volumes(
        docker,
        dockerx::label_filters(&[(labels::CLUSTER, cluster)]),
    )
    .await?
    .into_iter()
    .map(|v| v.name)
    .filter(|v| v.starts_with(&prefix) && mounted.contains(v))
    .collect();
    let mut volumes = Vec::new();
    let mut failed = Vec::new();
    for v in owned {
        match docker
            .remove_volume(&v, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(()) => volumes.push(v),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => failed.push(format!("volume {v}: {e}")),
        }
    }
    if !failed.is_empty() {
        return Err(Error::RemoveIncomplete { leftovers: failed });
    }
    emit(
        &options.progress,
        Event::Removed {
            count: 1 + volumes.len(),
        },
    );
    Ok(NodeDeleted {
        cluster: cluster.to_owned(),
        name: node.name.clone(),
        role: node.role,
        volumes,
        loadbalancer_updated,
        node_object,
        elapsed: started.elapsed(),
        warnings,
    })
}

/// The load balancer's config now and without `node`, when they differ.
async fn lb_without(
    docker: &Docker,
    state: &mut ClusterState,
    node: &NodeStatus,
    lb: &NodeStatus,
) -> Result<Option<(String, String)>> {
    let record = match state.record.take() {
        Some(r) => r,
        None => {
            // Another server's record first: this one is going.
            let others: Vec<NodeStatus> = state
                .nodes
                .iter()
                .filter(|n| n.name != node.name)
                .cloned()
                .collect();
            match read_record(docker, &others).await {
                Ok((r, _)) => r,
                Err(_) => read_record(docker, std::slice::from_ref(node)).await?.0,
            }
        }
    };
    let existing = k3s_indices(&state.nodes);
    let bound = |r: Role| index_bound(&existing, r);
    let spec = record.spec(bound(Role::Server).max(1), bound(Role::Agent));
    let subnet = record.subnet();
    state.record = Some(record);
    let Some(new) =
        plan::haproxy_config_without(&spec?, &subnet?, &existing, node.role, node.index)
    else {
        return Ok(None);
    };
    let old = archive::read_file(docker, &lb.name, LB_CONFIG_PATH).await?;
    let old = String::from_utf8_lossy(&old).into_owned();
    Ok((old != new).then_some((old, new)))
}

/// Deletes the Node object `hostname` through the cluster's API, with the
/// kubeconfig's credentials; `Err` with why when the API does not answer or
/// refuses.
async fn delete_node_object(
    docker: &Docker,
    cluster: &str,
    state: &mut ClusterState,
    hostname: &str,
) -> std::result::Result<NodeObject, String> {
    if state.api.is_none() {
        state.api = Some(api_access(docker, cluster).await);
    }
    let (server, addr, creds) = state.api.as_ref().expect("set").as_ref()?;
    // A load balancer that has just reloaded, or a server that has just
    // left it, may refuse a connection or two.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match api::delete_node(addr.ip(), addr.port(), creds, hostname).await {
            Ok((200 | 202, _)) => return Ok(NodeObject::Deleted),
            Ok((404, _)) => return Ok(NodeObject::Absent),
            Ok((status, body)) => {
                return Err(format!(
                    "the API at {server} answered HTTP {status} to DELETE /api/v1/nodes/{hostname}{}",
                    body.lines()
                        .next()
                        .filter(|l| !l.is_empty())
                        .map(|l| format!(": {}", l.chars().take(200).collect::<String>()))
                        .unwrap_or_default()
                ));
            }
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%server, error = %e, "API not answering; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(format!("the API at {server} does not answer: {e}")),
        }
    }
}

/// The API's URL, address and the kubeconfig's credentials.
async fn api_access(
    docker: &Docker,
    cluster: &str,
) -> std::result::Result<(String, std::net::SocketAddr, kubeconfig::Credentials), String> {
    let config = lifecycle::kubeconfig(docker, cluster)
        .await
        .map_err(|e| format!("cannot read the kubeconfig: {e}"))?;
    let server = kubeconfig::server_of(&config).map_err(|e| e.to_string())?;
    let addr: std::net::SocketAddr = server
        .strip_prefix("https://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("the API {server} is not https://IP:PORT"))?;
    let creds = kubeconfig::credentials(&config).map_err(|e| e.to_string())?;
    Ok((server, addr, creds))
}

/// The role and index of every server and agent among `nodes`.
fn k3s_indices(nodes: &[NodeStatus]) -> Vec<(Role, u32)> {
    nodes
        .iter()
        .filter(|n| matches!(n.role, Role::Server | Role::Agent))
        .map(|n| (n.role, n.index))
        .collect()
}

/// One past the highest index of `role` in `existing` (0 when it has none):
/// the next free index, and the bound a re-planned spec needs.
fn index_bound(existing: &[(Role, u32)], role: Role) -> u32 {
    existing
        .iter()
        .filter(|n| n.0 == role)
        .map(|n| n.1 + 1)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(role: Role, index: u32, state: &str) -> NodeStatus {
        NodeStatus {
            name: plan::node_name("c", role, index),
            role,
            index,
            state: state.to_owned(),
            ip: None,
            restarts: 0,
            image: String::new(),
        }
    }

    fn refusal(datastore: &str, target: &NodeStatus, nodes: &[NodeStatus]) -> String {
        check_delete("c", Some(datastore), target, nodes)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn deletes_that_would_break_the_cluster_are_refused() {
        let lb = node(Role::LoadBalancer, 0, "running");
        let etcd = node(Role::Etcd, 0, "running");
        let s: Vec<NodeStatus> = (0..3).map(|i| node(Role::Server, i, "running")).collect();
        let agent = node(Role::Agent, 0, "running");
        let mut all = vec![etcd.clone(), lb.clone(), agent.clone()];
        all.extend(s.iter().cloned());

        assert!(refusal("etcd", &etcd, &all).contains("etcd member"));
        assert!(refusal("etcd", &lb, &all).contains("load balancer"));
        assert!(refusal("etcd", &lb, &all).contains("topgun delete c"));
        check_delete("c", Some("etcd"), &agent, &all).unwrap();
        check_delete("c", Some("etcd"), &s[0], &all).unwrap();

        // The last server.
        let one = vec![lb.clone(), s[2].clone(), agent.clone()];
        assert!(refusal("etcd", &s[2], &one).contains("last server"));

        // Without a load balancer server-0 publishes the API.
        let no_lb: Vec<NodeStatus> = s.to_vec();
        assert!(refusal("etcd", &s[0], &no_lb).contains("publishes the API"));
        check_delete("c", Some("etcd"), &s[1], &no_lb).unwrap();

        // Embedded etcd: 3 members need 2 running.
        check_delete("c", Some("embedded"), &s[1], &all).unwrap();
        let mut one_stopped = all.clone();
        one_stopped.retain(|n| n.name != s[2].name);
        one_stopped.push(node(Role::Server, 2, "exited"));
        let err = refusal("embedded", &s[1], &one_stopped);
        assert!(err.contains("quorum"), "{err}");
        // The stopped one may go: 2 of 3 keep running.
        check_delete("c", Some("embedded"), &one_stopped[5], &one_stopped).unwrap();
        // 2 members need 2.
        let two = vec![lb, s[0].clone(), s[1].clone()];
        assert!(refusal("embedded", &s[1], &two).contains("quorum"));
        // Not with topgun's etcd: servers hold no state.
        check_delete("c", Some("etcd"), &s[1], &two).unwrap();
    }
}
