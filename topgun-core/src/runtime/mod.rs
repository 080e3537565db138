//! Executing a plan through Docker: [`create`] and [`create_until`].
//!
//! Order: refuse a taken name and check images, ports and subnet (nothing
//! exists yet); create the network; make the nodes (volumes, container,
//! files) in start order while the first ones start: one at a time up to
//! the agents, then a few agents at a time. Then
//! the plan's phases, each as soon as the phases it depends on have started
//! or are ready: etcd member 0, the others once it serves its peers, until
//! topgun-etcd says `Healthy`; the load balancer once the first phase has
//! started; server-0 once etcd is healthy; the other servers once server-0
//! is up; the agents once those run and the load balancer routes to
//! server-0. Every gate passes, then `/readyz` answers through the published
//! API port and haproxy routes to every server; the kubeconfig is read,
//! rewritten and checked.
//!
//! On any failure, timeout or cancellation everything the run created is
//! removed, found by its run label, unless the spec says `no_rollback`.

mod api_wait;
mod etcd;
pub(crate) mod logs;
pub(crate) mod nodes;
pub(crate) mod prepare;
mod schedule;
pub(crate) mod start;

pub(crate) use api_wait::{Backends, wait_api_backends};
use schedule::{Schedule, Step};

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::CreateContainerOptions;
use futures_util::future::try_join_all;
use futures_util::stream::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::Warning;
use crate::docker::{self as dockerx, Removal};
use crate::kubeconfig::{self, KubeconfigYaml};
use crate::plan::{
    self, ClusterPlan, Gate, KUBECONFIG_PATH, NodePlan, Phase, PhaseGate, PhaseKind, PlanContext,
    StartOrder,
};
use crate::progress::{Event, Progress, emit};
use crate::spec::{ClusterSpec, Role, Subnet};
use crate::{Error, Result, api, archive, labels};

/// Where to merge the new cluster's kubeconfig entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeTarget {
    /// The kubeconfig's files, as kubectl reads them (see
    /// [`kubeconfig::default_files`] and [`kubeconfig::merge_into`]).
    pub files: Vec<PathBuf>,
    /// Make the new context the current one.
    pub switch_context: bool,
}

/// How to run a create.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Receives progress events.
    pub progress: Option<Progress>,
    /// Merge the kubeconfig into this file before reporting success.
    pub merge_kubeconfig: Option<MergeTarget>,
}

impl CreateOptions {
    /// No progress, no kubeconfig merge.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends progress events to `progress`.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Merges the kubeconfig into the file `path`, optionally switching
    /// context.
    pub fn merge_kubeconfig(self, path: PathBuf, switch_context: bool) -> Self {
        self.merge_kubeconfig_files(vec![path], switch_context)
    }

    /// Merges the kubeconfig into the kubeconfig made of `files` (as
    /// `$KUBECONFIG` lists them), as kubectl would write it.
    pub fn merge_kubeconfig_files(mut self, files: Vec<PathBuf>, switch_context: bool) -> Self {
        self.merge_kubeconfig = Some(MergeTarget {
            files,
            switch_context,
        });
        self
    }
}

/// A node of a created cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedNode {
    /// The container name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The address on the cluster network.
    pub ip: IpAddr,
}

/// A created cluster.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Created {
    /// The cluster name.
    pub name: String,
    /// The run id on every resource.
    pub run_id: String,
    /// The API URL clients use (`https://<api host>:<port>`).
    pub server: String,
    /// The host port the API is published on.
    pub api_port: u16,
    /// The nodes, in start order.
    pub nodes: Vec<CreatedNode>,
    /// The network's subnet.
    pub subnet: Subnet,
    /// The kubeconfig (cluster, context and user `topgun-<name>`).
    #[serde(skip)]
    pub kubeconfig: KubeconfigYaml,
    /// The file it was merged into, if any.
    pub kubeconfig_path: Option<PathBuf>,
    /// How long each phase took.
    #[serde(serialize_with = "ser_phases")]
    pub phases: Vec<(PhaseKind, Duration)>,
    /// How long the whole create took.
    #[serde(serialize_with = "ser_ms", rename = "elapsed_ms")]
    pub elapsed: Duration,
    /// Things the user should know.
    pub warnings: Vec<Warning>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn ser_phases<S: serde::Serializer>(
    p: &[(PhaseKind, Duration)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(Serialize)]
    struct Row {
        phase: PhaseKind,
        elapsed_ms: u64,
    }
    let mut seq = s.serialize_seq(Some(p.len()))?;
    for (phase, d) in p {
        seq.serialize_element(&Row {
            phase: *phase,
            elapsed_ms: d.as_millis() as u64,
        })?;
    }
    seq.end()
}

/// The plan a create of `spec` would execute now, with the same checks and
/// choices (images present, name and ports free, a free subnet, host ports,
/// certificates), but nothing created: Docker is only read.
pub(crate) async fn plan_only(docker: &Docker, spec: &ClusterSpec) -> Result<ClusterPlan> {
    spec.validate()?;
    let (spec, mut prepared) = resolve(docker, spec).await?;
    pinned_plan(docker, &spec, &mut prepared.ctx).await
}

/// What a create checks and chooses before anything exists, for a valid
/// `spec`: the API placed on the engine's host (a remote engine), the
/// registries resolved (the created one's port and image, the used ones
/// found), then [`prepare::prepare`] (images, name, ports, subnet, token,
/// certificates). Returns the spec as placed and pinned.
async fn resolve(docker: &Docker, spec: &ClusterSpec) -> Result<(ClusterSpec, prepare::Prepared)> {
    let (placed, api_name) = match crate::engine::place_api(spec)? {
        Some((placed, name)) => (placed, Some(name)),
        None => (spec.clone(), None),
    };
    let spec = crate::registry::pin(docker, &placed)
        .await?
        .unwrap_or(placed);
    let mut prepared = prepare::prepare(docker, &spec).await?;
    prepared.ctx.api_name = api_name;
    Ok((spec, prepared))
}

/// The plan of `spec` with every published port pinned: free host ports
/// are picked the first time (`ctx.host_ports` keeps them for every later
/// plan of this create).
pub(crate) async fn pinned_plan(
    docker: &Docker,
    spec: &ClusterSpec,
    ctx: &mut PlanContext,
) -> Result<ClusterPlan> {
    let plan = plan::plan(spec, ctx)?;
    let open = plan.open_ports();
    if open.is_empty() || !ctx.host_ports.is_empty() {
        return Ok(plan);
    }
    ctx.host_ports = crate::docker::free_ports(docker, &open).await?;
    plan::plan(spec, ctx)
}

/// Creates the cluster `spec` describes, or stops when `cancel` completes
/// (wire SIGINT/SIGTERM to it) and returns [`Error::Cancelled`].
///
/// Everything is validated and checked before any Docker resource exists.
/// On failure, timeout or cancellation, every resource of this run is
/// removed (found by its run label), unless `spec.no_rollback` is set. Do not
/// drop the returned future to cancel: that skips the rollback.
pub(crate) async fn create_until<F>(
    docker: &Docker,
    spec: &ClusterSpec,
    options: &CreateOptions,
    cancel: F,
) -> Result<Created>
where
    F: Future<Output = ()>,
{
    spec.validate()?;
    // Held until the create has succeeded or rolled back (see `lock`).
    let _lock = crate::lock::ClusterLock::for_create(&dockerx::docker_host(), spec.name.as_str())?;
    tokio::pin!(cancel);
    // Still nothing exists.
    let (spec, prepared) = tokio::select! {
        r = resolve(docker, spec) => r?,
        () = &mut cancel => return Err(Error::Cancelled),
    };
    let spec = &spec;
    let run_id = prepared.ctx.run_id.clone();
    tracing::debug!(cluster = %spec.name, %run_id, subnet = %prepared.ctx.subnet, "creating");
    let mut run = Run {
        docker,
        spec,
        options,
        ctx: prepared.ctx,
        used: prepared.used,
        auto_subnet: prepared.auto_subnet,
        timings: Default::default(),
        in_progress: Default::default(),
        made: tokio::sync::watch::Sender::new(0),
    };
    let total = spec.timeouts.total;
    let deadline = async {
        match total {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let in_progress = run.in_progress.clone();
    let result = tokio::select! {
        r = run.execute() => r,
        () = &mut cancel => Err(Error::Cancelled),
        () = deadline => {
            let waiting = in_progress.lock().expect("not poisoned").clone();
            let phases: Vec<String> = waiting
                .iter()
                .map(|(p, nodes)| match nodes.is_empty() {
                    true => p.describe().to_owned(),
                    false => format!("{} ({})", p.describe(), nodes.join(", ")),
                })
                .collect();
            // The first node still awaited is the one to look at.
            let first = waiting.iter().find_map(|(_, nodes)| nodes.first().cloned());
            let last_logs = match &first {
                Some(node) => logs::last_lines(docker, node, logs::TAIL_LINES).await,
                None => Vec::new(),
            };
            Err(Error::Timeout {
                node: first.unwrap_or_else(|| format!("cluster {}", spec.name)),
                waiting_for: format!(
                    "the whole create is bounded by the timeout given, and it was still waiting \
                     for: {}",
                    if phases.is_empty() { "preparation".to_owned() } else { phases.join(", ") }
                ),
                after: total.unwrap_or_default(),
                last_logs,
            })
        }
    };
    let error = match result {
        Ok(created) => return Ok(created),
        Err(e) => e,
    };
    if spec.no_rollback {
        emit(
            &options.progress,
            Event::Warning {
                message: format!(
                    "no rollback: the resources of this run are kept (label {}={run_id}); remove them with \
                     `topgun delete {}`",
                    labels::RUN,
                    spec.name
                ),
            },
        );
        return Err(error);
    }
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
    if !spec.registries.is_empty() {
        // The network goes only once no registry is attached to it.
        crate::registry::detach_all(docker, spec.name.as_str()).await;
    }
    match rollback(docker, &run_id).await {
        Ok(removal) if removal.failed.is_empty() => {
            emit(
                &options.progress,
                Event::Removed {
                    count: removal.count(),
                },
            );
            Err(error)
        }
        Ok(removal) => Err(Error::RollbackIncomplete {
            cause: Box::new(error),
            name: spec.name.to_string(),
            leftovers: removal.failed,
        }),
        Err(e) => Err(Error::RollbackIncomplete {
            cause: Box::new(error),
            name: spec.name.to_string(),
            leftovers: vec![e.to_string()],
        }),
    }
}

/// Removes every resource of a run, found by its run label.
pub(crate) async fn rollback(docker: &Docker, run_id: &str) -> Result<Removal> {
    dockerx::remove_by_labels(
        docker,
        dockerx::label_filters(&[(labels::RUN, run_id)]),
        Duration::from_millis(250),
    )
    .await
}

/// How many agents are made (volumes, container, files) at once: a bound on
/// the engine's work in flight (it is CPU-bound there), not the node count.
/// Measured in docs/performance.md; the gain at 50 agents is within this
/// machine's noise, and making the nodes before the agents together too
/// slowed small clusters.
const AGENTS_MADE_AT_ONCE: usize = 3;

/// A phase started and not yet done, with its containers.
type Waiting = (PhaseKind, Vec<String>);

struct Run<'a> {
    docker: &'a Docker,
    spec: &'a ClusterSpec,
    options: &'a CreateOptions,
    ctx: PlanContext,
    used: Vec<Subnet>,
    auto_subnet: bool,
    timings: std::sync::Mutex<Vec<(PhaseKind, Duration)>>,
    /// The phases started and not yet done (for a timeout's message).
    in_progress: std::sync::Arc<std::sync::Mutex<Vec<Waiting>>>,
    /// How many nodes exist, counted in plan order.
    made: tokio::sync::watch::Sender<usize>,
}

impl Run<'_> {
    fn emit(&self, event: Event) {
        emit(&self.options.progress, event);
    }

    fn phase_started(&self, phase: PhaseKind, nodes: &[String]) -> Instant {
        self.in_progress
            .lock()
            .expect("not poisoned")
            .push((phase, nodes.to_vec()));
        self.emit(Event::PhaseStarted {
            phase,
            nodes: nodes.to_vec(),
        });
        Instant::now()
    }

    fn phase_done(&self, phase: PhaseKind, started: Instant) {
        self.in_progress
            .lock()
            .expect("not poisoned")
            .retain(|(p, _)| *p != phase);
        let elapsed = started.elapsed();
        self.timings
            .lock()
            .expect("not poisoned")
            .push((phase, elapsed));
        self.emit(Event::PhaseDone { phase, elapsed });
    }

    async fn execute(&mut self) -> Result<Created> {
        let started = Instant::now();
        let t = self.phase_started(PhaseKind::Prepare, &[]);
        let plan = self.create_network().await?;
        crate::registry::attach(self.docker, &plan.registries).await?;
        for message in &plan.warnings {
            self.emit(Event::Warning {
                message: message.to_string(),
            });
        }
        // Nodes are made in start order while the first ones start. Those
        // before the agents (etcd, the load balancer, the servers: the
        // critical path) one at a time, as made together they slow those
        // starts down; the agents up to `AGENTS_MADE_AT_ONCE` at a time, a
        // bound on what the engine takes at once, not the node count. A
        // start waits only for its own node. A phase starts once the phases
        // it depends on have started or are ready.
        let this = &*self;
        let plan = &plan;
        let mut schedule = Schedule::default();
        schedule.push(async move {
            let mut making = futures_util::stream::FuturesOrdered::new();
            let mut nodes = plan.nodes.iter().peekable();
            loop {
                while let Some(next) = nodes.peek() {
                    let at_once = match next.role {
                        Role::Agent => AGENTS_MADE_AT_ONCE,
                        _ => 1,
                    };
                    if making.len() >= at_once {
                        break;
                    }
                    making.push_back(this.make(next));
                    nodes.next();
                }
                let Some(node) = making.next().await else {
                    break;
                };
                let node = node?;
                tracing::debug!(node = %node.name, "made");
                this.made.send_modify(|n| *n += 1);
            }
            this.phase_done(PhaseKind::Prepare, t);
            Ok(Step::Made)
        });
        let mut waiting: Vec<&Phase> = plan.phases.iter().collect();
        loop {
            let (startable, rest): (Vec<&Phase>, Vec<&Phase>) =
                waiting.into_iter().partition(|p| schedule.can_start(p));
            waiting = rest;
            for phase in startable {
                let t = this.phase_started(phase.kind, &phase.nodes);
                schedule.push(async move {
                    this.start_phase(plan, phase).await?;
                    Ok(Step::Started(phase, t))
                });
            }
            let Some(step) = schedule.pending.next().await else {
                break;
            };
            match step? {
                Step::Made => {}
                Step::Started(phase, t) => {
                    schedule.started.push(phase.kind);
                    schedule.push(async move {
                        match &phase.ready {
                            PhaseGate::EachNode => {
                                try_join_all(
                                    phase.nodes.iter().map(|n| this.wait_gate(node(plan, n), t)),
                                )
                                .await?;
                            }
                            PhaseGate::EtcdHealthy { line, wait } => {
                                this.etcd_healthy(plan, phase, line, *wait, t).await?;
                            }
                        }
                        this.phase_done(phase.kind, t);
                        Ok(Step::Ready(phase.kind))
                    });
                }
                Step::Ready(kind) => schedule.ready.push(kind),
            }
        }
        if let Some(phase) = waiting.first() {
            return Err(Error::bug(
                "the plan",
                format!("phase {:?} waits for phases that never come", phase.kind),
            ));
        }
        drop(schedule);
        self.timings
            .lock()
            .expect("not poisoned")
            .sort_by_key(|(kind, _)| *kind);

        let t = self.phase_started(PhaseKind::Api, std::slice::from_ref(&plan.api.container));
        let api_port = self
            .published_port(&plan.api.container, plan::API_PORT)
            .await?;
        let server = crate::kubeconfig::kubeconfig_server(
            plan.api.name.as_deref(),
            plan.api.dial_host,
            api_port,
        );
        let k3s_yaml =
            archive::read_file(self.docker, &plan.api.kubeconfig_from, KUBECONFIG_PATH).await?;
        let k3s_yaml = String::from_utf8(k3s_yaml)
            .map_err(|e| crate::kubeconfig::not_text(KUBECONFIG_PATH, e))?;
        let kubeconfig = kubeconfig::rewrite(&k3s_yaml, &plan.name, &server)?;
        let creds = kubeconfig::credentials(&kubeconfig)?;
        let timeout = self.spec.timeouts.api;
        let deadline = Instant::now() + timeout;
        if let Err(e) = api::wait_ready(plan.api.dial_host, api_port, &creds, deadline).await {
            return Err(self.explain_api_failure(plan, e, timeout).await);
        }
        // The load balancer routes to every server before create reports
        // success: a server that came up after haproxy first checked it is
        // marked down for a moment.
        if let Some(lb) = plan.nodes.iter().find(|n| n.role == Role::LoadBalancer) {
            let port = self.published_port(&lb.name, plan::LB_STATS_PORT).await?;
            if let Err(down) = wait_api_backends(port, deadline, Backends::All).await {
                return Err(Error::Timeout {
                    node: lb.name.clone(),
                    waiting_for: format!("haproxy does not mark every server UP: {down}"),
                    after: timeout,
                    last_logs: logs::last_lines(self.docker, &lb.name, logs::TAIL_LINES).await,
                });
            }
        }
        self.phase_done(PhaseKind::Api, t);

        let t = self.phase_started(PhaseKind::Kubeconfig, &[]);
        let parsed = topgun_tls::kubeconfig::Kubeconfig::from_yaml(kubeconfig.expose())?;
        let check = topgun_tls::check_kubeconfig(&parsed, None, None).await?;
        if !check.ok {
            let problems: Vec<String> =
                check.problems().iter().map(|p| p.message.clone()).collect();
            return Err(Error::Api {
                url: server,
                reason: format!(
                    "the kubeconfig does not pass topgun's check: {}",
                    problems.join("; ")
                ),
                source: None,
            });
        }
        let mut kubeconfig_path = None;
        if let Some(target) = &self.options.merge_kubeconfig {
            kubeconfig_path = Some(kubeconfig::merge_into(
                &target.files,
                &kubeconfig,
                target.switch_context,
            )?);
        }
        self.phase_done(PhaseKind::Kubeconfig, t);

        Ok(Created {
            name: plan.name.clone(),
            run_id: plan.run_id.clone(),
            server,
            api_port,
            nodes: plan
                .nodes
                .iter()
                .map(|n| CreatedNode {
                    name: n.name.clone(),
                    role: n.role,
                    ip: IpAddr::V4(n.ip),
                })
                .collect(),
            subnet: plan.network.subnet,
            kubeconfig,
            kubeconfig_path,
            phases: std::mem::take(&mut *self.timings.lock().expect("not poisoned")),
            elapsed: started.elapsed(),
            warnings: plan.warnings.clone(),
        })
    }

    /// Plans and creates the network; when topgun picked the subnet and
    /// another network took it meanwhile, picks another and plans again.
    async fn create_network(&mut self) -> Result<ClusterPlan> {
        for _ in 0..8 {
            let plan = pinned_plan(self.docker, self.spec, &mut self.ctx).await?;
            match self.docker.create_network(plan.network.body.clone()).await {
                Ok(_) => {
                    create_volumes(self.docker, &plan.shared_volumes).await?;
                    return Ok(plan);
                }
                Err(e) if self.auto_subnet && e.to_string().contains("overlaps") => {
                    tracing::debug!(subnet = %self.ctx.subnet, "subnet taken meanwhile; picking another");
                    self.used.push(self.ctx.subnet);
                    self.ctx.subnet = prepare::pick_subnet(&self.used, rand::random::<u32>())?;
                    self.ctx.etcd_pki =
                        prepare::etcd_pki(self.spec, &self.ctx.subnet, self.ctx.control_host)?;
                }
                Err(e) => {
                    return Err(Error::docker(
                        format!("create network {}", plan.network.name),
                        e,
                    ));
                }
            }
        }
        Err(Error::NoFreeSubnet {
            searched: "172.28.0.0/14 (other creates kept taking the subnets picked)".to_owned(),
        })
    }

    /// Creates a node's volumes, then its container, then uploads its files.
    async fn create_node(&self, node: &NodePlan) -> Result<()> {
        create_node(self.docker, self.spec.name.as_str(), node).await
    }

    /// [`Run::create_node`], returning the node.
    async fn make<'n>(&self, node: &'n NodePlan) -> Result<&'n NodePlan> {
        self.create_node(node).await.map(|()| node)
    }

    /// Starts `node` once it has been made.
    async fn start(&self, plan: &ClusterPlan, node: &NodePlan) -> Result<()> {
        let index = plan
            .nodes
            .iter()
            .position(|n| n.name == node.name)
            .expect("a planned node");
        // Made nodes are counted in plan order; the sender lives in `self`.
        let _ = self.made.subscribe().wait_for(|made| *made > index).await;
        tracing::debug!(node = %node.name, "starting");
        self.docker
            .start_container(&node.name, None)
            .await
            .map_err(|e| start_error(node, e))?;
        tracing::debug!(node = %node.name, "started");
        Ok(())
    }

    /// Waits until `node` passes its readiness gate.
    async fn wait_gate(&self, node: &NodePlan, phase_started: Instant) -> Result<()> {
        match &node.gate {
            Gate::LogLine(line) => {
                let timeout = match node.role {
                    Role::Agent => self.spec.timeouts.agent,
                    _ => self.spec.timeouts.server,
                };
                logs::wait_for_line(
                    self.docker,
                    &node.name,
                    Some(line),
                    Instant::now() + timeout,
                    timeout,
                )
                .await?;
            }
            Gate::LoadBalancer => {
                // It starts before the servers are up, so it may wait for
                // etcd and server-0 too; their own gates fail first.
                let timeout = self.spec.timeouts.server + self.spec.timeouts.etcd;
                let deadline = Instant::now() + timeout;
                let port = self.published_port(&node.name, plan::LB_STATS_PORT).await?;
                let exit = logs::wait_for_line(
                    self.docker,
                    &node.name,
                    None,
                    deadline + Duration::from_secs(5),
                    timeout,
                );
                tokio::select! {
                    r = wait_api_backends(port, deadline, Backends::Any) => if let Err(reason) = r {
                        return Err(Error::Timeout {
                            node: node.name.clone(),
                            waiting_for: format!("haproxy marks no API backend UP: {reason}"),
                            after: timeout,
                            last_logs: logs::last_lines(self.docker, &node.name, logs::TAIL_LINES).await,
                        });
                    },
                    r = exit => r?,
                }
            }
            Gate::EtcdHealthy => {
                let info = dockerx::inspect(self.docker, &node.name).await?;
                if info.state.and_then(|s| s.running) != Some(true) {
                    return Err(Error::NodeFailed {
                        node: node.name.clone(),
                        reason: logs::exit_reason(self.docker, &node.name).await,
                        last_logs: logs::last_lines(self.docker, &node.name, logs::TAIL_LINES)
                            .await,
                    });
                }
            }
        }
        self.emit(Event::NodeReady {
            node: node.name.clone(),
            elapsed: phase_started.elapsed(),
        });
        Ok(())
    }

    /// Starts the nodes of `phase` in its [`StartOrder`].
    async fn start_phase(&self, plan: &ClusterPlan, phase: &Phase) -> Result<()> {
        let nodes: Vec<&NodePlan> = phase.nodes.iter().map(|n| node(plan, n)).collect();
        match &phase.start {
            StartOrder::Together => {
                try_join_all(nodes.iter().map(|n| self.start(plan, n))).await?;
            }
            StartOrder::FirstThenRest { line, wait } => {
                let Some((first, others)) = nodes.split_first() else {
                    return Ok(());
                };
                self.start(plan, first).await?;
                // A line that never comes (another version) only delays
                // the others; a node that exits fails the phase.
                let timeout = self.spec.timeouts.for_role(first.role);
                match logs::wait_for_line(
                    self.docker,
                    &first.name,
                    Some(line),
                    Instant::now() + *wait,
                    timeout,
                )
                .await
                {
                    Ok(()) => tracing::debug!(node = %first.name, %line, "logged"),
                    Err(Error::Timeout { .. }) => {}
                    Err(e) => return Err(e),
                }
                try_join_all(others.iter().map(|n| self.start(plan, n))).await?;
            }
        }
        Ok(())
    }

    /// The host port Docker published `port/tcp` of `container` on.
    async fn published_port(&self, container: &str, port: u16) -> Result<u16> {
        let info = dockerx::inspect(self.docker, container).await?;
        dockerx::host_port(&info, port).ok_or_else(|| Error::NodeFailed {
            node: container.to_owned(),
            reason: format!("it has no published host port for {port}/tcp"),
            last_logs: Vec::new(),
        })
    }
}

fn node<'p>(plan: &'p ClusterPlan, name: &str) -> &'p NodePlan {
    plan.nodes
        .iter()
        .find(|n| n.name == name)
        .expect("phases name planned nodes")
}

/// Creates a node's volumes, then its container, then uploads its files:
/// what a create does for every node, and what the benchmark floor does too.
pub(crate) async fn create_node(docker: &Docker, cluster: &str, node: &NodePlan) -> Result<()> {
    create_volumes(docker, &node.volumes).await?;
    let image = node.body.image.clone().unwrap_or_default();
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(node.name.clone()),
                ..Default::default()
            }),
            node.body.clone(),
        )
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ref message,
            } if message.contains("image") => Error::ImageMissing { image },
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            } => Error::ClusterExists {
                name: cluster.to_owned(),
                resources: vec![format!("container {}", node.name)],
            },
            e => Error::docker(format!("create container {}", node.name), e),
        })?;
    archive::upload(docker, &node.name, &node.files, &node.dirs).await
}

/// Creates `volumes` (see [`dockerx::create_volume`]).
pub(crate) async fn create_volumes(docker: &Docker, volumes: &[plan::VolumePlan]) -> Result<()> {
    try_join_all(
        volumes
            .iter()
            .map(|v| dockerx::create_volume(docker, &v.name, v.body.clone())),
    )
    .await?;
    Ok(())
}

/// Maps a start failure: a taken host port names the port; a refused
/// privileged container says so.
fn start_error(node: &NodePlan, e: bollard::errors::Error) -> Error {
    let message = e.to_string();
    let privileged = node.body.host_config.as_ref().and_then(|h| h.privileged) == Some(true);
    if privileged && message.contains("unable to apply caps") {
        return Error::NodeFailed {
            node: node.name.clone(),
            reason: format!(
                "this Docker engine refuses privileged containers (rootless Docker, or Docker in a \
                 restricted container), and k3s needs them; run on an engine that allows them, or \
                 for an image that needs no privileges (such as topgun's k3s stand-in) set \
                 `privileged: false` (or {}=false)",
                crate::images::ENV_PRIVILEGED
            ),
            last_logs: vec![message],
        };
    }
    if message.contains("port is already allocated") || message.contains("address already in use") {
        let fixed: Vec<(String, u16)> = node
            .body
            .host_config
            .as_ref()
            .and_then(|h| h.port_bindings.as_ref())
            .into_iter()
            .flat_map(|m| m.values())
            .flatten()
            .flatten()
            .filter_map(|b| {
                Some((
                    b.host_ip.clone().unwrap_or_default(),
                    b.host_port.as_deref()?.parse().ok()?,
                ))
            })
            .collect();
        let hit = fixed
            .iter()
            .find(|(_, p)| {
                message.contains(&format!(":{p} ")) || message.contains(&format!(":{p}:"))
            })
            .or(fixed.first());
        if let Some((host, port)) = hit {
            return Error::PortInUse {
                host: host.clone(),
                port: *port,
            };
        }
    }
    Error::docker(format!("start container {}", node.name), e)
}
