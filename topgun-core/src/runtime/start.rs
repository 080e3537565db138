//! Day 2: stopping and starting clusters and nodes that exist.
//!
//! [`stop`] goes in reverse dependency order: agents, the load balancer,
//! servers, etcd last, each with a stop timeout suited to its role (k3s,
//! haproxy and etcd all exit on SIGTERM). [`start`] follows the order and
//! readiness gates of [`plan::start_phases`]: etcd until healthy, the
//! servers, the load balancer, the agents, then `/readyz` through the
//! published API port with the kubeconfig's own credentials. Both skip nodes
//! that are already where they should be, so they are idempotent and work on
//! partly stopped clusters. Readiness counts only log lines written since the
//! container's current start.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{StartContainerOptions, StopContainerOptions};
use futures_util::future::try_join_all;
use serde::Serialize;
use tokio::time::Instant;

use crate::lifecycle::{self, NodeStatus};
use crate::plan::{self, Gate, PhaseGate, PhaseKind};
use crate::progress::{Event, Progress, emit};
use crate::spec::{Role, Timeouts};
use crate::{Error, Result, api, kubeconfig};

use super::logs;

/// How to stop or start.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LifecycleOptions {
    /// Receives progress events.
    pub progress: Option<Progress>,
    /// How long each phase of a start may take; `None`: the defaults.
    pub timeouts: Option<Timeouts>,
}

impl LifecycleOptions {
    /// No progress, default timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends progress events to `progress`.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Bounds every phase of a start by `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeouts = Some(Timeouts::all(timeout));
        self
    }
}

/// What a stop or start did to one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeChange {
    /// The container name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// `stopped`, `started`, or `unchanged` when it already was where it
    /// should be.
    pub action: &'static str,
}

/// What a stop or start of a cluster did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Changed {
    /// The cluster.
    pub name: String,
    /// Every node, in the order they were handled.
    pub nodes: Vec<NodeChange>,
    /// The API URL, after a start.
    pub server: Option<String>,
    /// How long it took.
    #[serde(serialize_with = "ser_ms", rename = "elapsed_ms")]
    pub elapsed: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// How long a node of `role` gets to exit on SIGTERM before it is killed.
fn stop_timeout(role: Role) -> i32 {
    match role {
        // k3s stops its containers and the kubelet; the stand-in at once.
        Role::Server | Role::Agent => 10,
        Role::LoadBalancer => 2,
        // A leader stopped last tries to hand over for up to ~7 s.
        Role::Etcd => 10,
    }
}

fn is_running(n: &NodeStatus) -> bool {
    matches!(n.state.as_str(), "running" | "restarting")
}

/// Stop order: agents, the load balancer, servers, etcd last.
fn stop_rank(role: Role) -> u8 {
    match role {
        Role::Agent => 0,
        Role::LoadBalancer => 1,
        Role::Server => 2,
        Role::Etcd => 3,
    }
}

/// Stops every node of cluster `name`, in reverse dependency order.
pub(crate) async fn stop(
    docker: &Docker,
    name: &str,
    options: &LifecycleOptions,
) -> Result<Changed> {
    let started = Instant::now();
    let nodes = lifecycle::nodes(docker, name).await?;
    let changes = stop_nodes_in_order(docker, &nodes, options).await?;
    Ok(Changed {
        name: name.to_owned(),
        nodes: changes,
        server: None,
        elapsed: started.elapsed(),
    })
}

/// Stops the given nodes (of one cluster), in reverse dependency order.
pub(crate) async fn stop_nodes_in_order<'a>(
    docker: &Docker,
    nodes: &'a [NodeStatus],
    options: &LifecycleOptions,
) -> Result<Vec<NodeChange>> {
    let mut changes = Vec::new();
    for rank in 0..4 {
        let group: Vec<&NodeStatus> = nodes.iter().filter(|n| stop_rank(n.role) == rank).collect();
        if group.is_empty() {
            continue;
        }
        let stop_one = |n: &'a NodeStatus| async move {
            if !is_running(n) {
                return Ok(NodeChange {
                    name: n.name.clone(),
                    role: n.role,
                    action: "unchanged",
                });
            }
            docker
                .stop_container(
                    &n.name,
                    Some(StopContainerOptions {
                        t: Some(stop_timeout(n.role)),
                        signal: None,
                    }),
                )
                .await
                .or_else(|e| match e {
                    // 304: already stopped.
                    bollard::errors::Error::DockerResponseServerError {
                        status_code: 304, ..
                    } => Ok(()),
                    e => Err(Error::docker(format!("stop container {}", n.name), e)),
                })?;
            emit(
                &options.progress,
                Event::NodeStopped {
                    node: n.name.clone(),
                },
            );
            Ok::<_, Error>(NodeChange {
                name: n.name.clone(),
                role: n.role,
                action: "stopped",
            })
        };
        if rank == stop_rank(Role::Etcd) {
            // One member at a time: each hands leadership over in well
            // under a second, while members stopped together wait ~7 s
            // for a peer to take it.
            for n in group {
                changes.push(stop_one(n).await?);
            }
        } else {
            changes.extend(try_join_all(group.into_iter().map(stop_one)).await?);
        }
    }
    Ok(changes)
}

/// Starts every node of cluster `name` that does not run, in the order and
/// with the readiness gates of [`plan::start_phases`], then waits until
/// `/readyz` answers through the published API port.
pub(crate) async fn start(
    docker: &Docker,
    name: &str,
    options: &LifecycleOptions,
) -> Result<Changed> {
    let started = Instant::now();
    let nodes = lifecycle::nodes(docker, name).await?;
    let changes = start_nodes_in_order(docker, name, &nodes, options).await?;
    let server = wait_api(docker, name, options).await?;
    Ok(Changed {
        name: name.to_owned(),
        nodes: changes,
        server: Some(server),
        elapsed: started.elapsed(),
    })
}

/// Starts the given nodes (of one cluster) that do not run, phase by phase.
pub(crate) async fn start_nodes_in_order(
    docker: &Docker,
    cluster: &str,
    nodes: &[NodeStatus],
    options: &LifecycleOptions,
) -> Result<Vec<NodeChange>> {
    let timeouts = options.timeouts.unwrap_or_default();
    let phases = plan::start_phases(
        &nodes
            .iter()
            .map(|n| (n.name.clone(), n.role, n.index))
            .collect::<Vec<_>>(),
        &timeouts,
    );
    let mut changes = Vec::new();
    for phase in &phases {
        let members: Vec<&NodeStatus> = phase
            .nodes
            .iter()
            .filter_map(|name| nodes.iter().find(|n| &n.name == name))
            .collect();
        let to_start: Vec<&NodeStatus> =
            members.iter().copied().filter(|n| !is_running(n)).collect();
        for n in members.iter().filter(|n| is_running(n)) {
            changes.push(NodeChange {
                name: n.name.clone(),
                role: n.role,
                action: "unchanged",
            });
        }
        if to_start.is_empty() {
            continue;
        }
        let t = Instant::now();
        emit(
            &options.progress,
            Event::PhaseStarted {
                phase: phase.kind,
                nodes: to_start.iter().map(|n| n.name.clone()).collect(),
            },
        );
        try_join_all(
            to_start
                .iter()
                .map(|n| start_one(docker, n, &timeouts, t, options)),
        )
        .await?;
        if let PhaseGate::EtcdHealthy { .. } = phase.ready {
            wait_etcd(docker, cluster, timeouts.etcd).await?;
        }
        emit(
            &options.progress,
            Event::PhaseDone {
                phase: phase.kind,
                elapsed: t.elapsed(),
            },
        );
        changes.extend(to_start.iter().map(|n| NodeChange {
            name: n.name.clone(),
            role: n.role,
            action: "started",
        }));
    }
    Ok(changes)
}

/// Starts one node and waits for its gate, counting only what it logs from
/// this start on.
async fn start_one(
    docker: &Docker,
    node: &NodeStatus,
    timeouts: &Timeouts,
    phase_started: Instant,
    options: &LifecycleOptions,
) -> Result<()> {
    // Read before the start: lines after the previous run's end are this
    // run's.
    let since = logs::finished_at(docker, &node.name).await?;
    docker
        .start_container(&node.name, None::<StartContainerOptions>)
        .await
        .or_else(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            } => Ok(()),
            e => Err(Error::docker(format!("start container {}", node.name), e)),
        })?;
    let (gate, timeout) = match node.role {
        Role::Server => (
            Gate::LogLine(plan::SERVER_READY.to_owned()),
            timeouts.server,
        ),
        Role::Agent => (Gate::LogLine(plan::AGENT_READY.to_owned()), timeouts.agent),
        Role::Etcd => (Gate::LogLine(plan::ETCD_SERVING.to_owned()), timeouts.etcd),
        Role::LoadBalancer => (Gate::LoadBalancer, timeouts.api),
    };
    match gate {
        Gate::LogLine(line) => {
            logs::wait_for_line_since(
                docker,
                &node.name,
                Some(&line),
                since,
                Instant::now() + timeout,
                timeout,
            )
            .await?;
        }
        _ => {
            let port = lifecycle::published_port(docker, &node.name, plan::LB_STATS_PORT).await?;
            super::wait_api_backends(port, Instant::now() + timeout, super::Backends::Any)
                .await
                .map_err(|reason| Error::Timeout {
                    node: node.name.clone(),
                    waiting_for: format!("haproxy marks no API backend UP: {reason}"),
                    after: timeout,
                    last_logs: Vec::new(),
                })?;
        }
    }
    emit(
        &options.progress,
        Event::NodeReady {
            node: node.name.clone(),
            elapsed: phase_started.elapsed(),
        },
    );
    Ok(())
}

/// Waits until the cluster's etcd is healthy.
async fn wait_etcd(docker: &Docker, cluster: &str, timeout: Duration) -> Result<()> {
    let access = lifecycle::etcd_access(docker, cluster).await?;
    let checker = topgun_etcd::Checker::connect(
        &access.endpoints(),
        &topgun_etcd::ClientConfig::with_tls(access.tls.clone()),
    )
    .await?;
    match checker
        .wait_healthy(std::time::Instant::now() + timeout)
        .await
    {
        Ok(_) => Ok(()),
        Err(topgun_etcd::Error::NotHealthy { last, .. }) => Err(Error::Timeout {
            node: format!("etcd of {cluster}"),
            waiting_for: format!("not healthy; last verdict: {last}"),
            after: timeout,
            last_logs: Vec::new(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Waits until `/readyz` answers ok through the published API port with the
/// kubeconfig's credentials; returns the API URL.
async fn wait_api(docker: &Docker, name: &str, options: &LifecycleOptions) -> Result<String> {
    let timeout = options.timeouts.unwrap_or_default().api;
    let t = Instant::now();
    emit(
        &options.progress,
        Event::PhaseStarted {
            phase: PhaseKind::Api,
            nodes: Vec::new(),
        },
    );
    let config = lifecycle::kubeconfig(docker, name).await?;
    let (server, addr) = kubeconfig::api_address_of(&config)?;
    let (host, port) = (addr.ip(), addr.port());
    let creds = kubeconfig::credentials(&config)?;
    api::wait_ready(host, port, &creds, Instant::now() + timeout)
        .await
        .map_err(|e| match e {
            Error::Api { url, reason, .. } => Error::Timeout {
                node: format!("the API of {name}"),
                waiting_for: format!("{url} did not answer ok: {reason}"),
                after: timeout,
                last_logs: Vec::new(),
            },
            e => e,
        })?;
    emit(
        &options.progress,
        Event::PhaseDone {
            phase: PhaseKind::Api,
            elapsed: t.elapsed(),
        },
    );
    Ok(server)
}

/// Nodes of one cluster, found by container name.
async fn resolve(docker: &Docker, names: &[String]) -> Result<Vec<(String, Vec<NodeStatus>)>> {
    let found = lifecycle::find_nodes(docker, names).await?;
    let mut by_cluster: Vec<(String, Vec<NodeStatus>)> = Vec::new();
    for (cluster, node) in found {
        match by_cluster.iter_mut().find(|(c, _)| *c == cluster) {
            Some((_, nodes)) => nodes.push(node),
            None => by_cluster.push((cluster, vec![node])),
        }
    }
    Ok(by_cluster)
}

/// Stops the named nodes (container names, of any clusters), in reverse
/// dependency order within each cluster. Stopping a stopped node succeeds.
pub(crate) async fn stop_nodes(
    docker: &Docker,
    names: &[String],
    options: &LifecycleOptions,
) -> Result<Vec<NodeChange>> {
    let mut changes = Vec::new();
    for (_, nodes) in resolve(docker, names).await? {
        changes.extend(stop_nodes_in_order(docker, &nodes, options).await?);
    }
    Ok(changes)
}

/// Starts the named nodes (container names, of any clusters) that do not
/// run, in start order within each cluster, each until its readiness gate
/// passes. Starting a running node succeeds.
pub(crate) async fn start_nodes(
    docker: &Docker,
    names: &[String],
    options: &LifecycleOptions,
) -> Result<Vec<NodeChange>> {
    let mut changes = Vec::new();
    for (cluster, nodes) in resolve(docker, names).await? {
        changes.extend(start_nodes_in_order(docker, &cluster, &nodes, options).await?);
    }
    Ok(changes)
}

/// Stops, then starts the named nodes.
pub(crate) async fn restart_nodes(
    docker: &Docker,
    names: &[String],
    options: &LifecycleOptions,
) -> Result<Vec<NodeChange>> {
    stop_nodes(docker, names, options).await?;
    start_nodes(docker, names, options).await
}
