//! The floors for create benchmarks: what the Docker engine and the nodes
//! themselves cost, with none of topgun's order, gates or checks.
//! `cargo xtask bench create` compares `topgun create` and `topgun delete`
//! with them.
//!
//! - [`floor`] (the raw floor): the very containers a create would make
//!   (same plan, bodies, files, volumes, network, pinned ports) created and
//!   started directly through the Docker API, all at once, with no ordering
//!   and no readiness gates.
//! - [`boot_floor`]: the same, then waiting for each node's own readiness
//!   line (etcd's "serving client traffic", a server's "k3s is up and
//!   running", an agent's "Successfully registered node"; the load balancer
//!   counts once started), and nothing else: the cluster's own boot, with
//!   no order between the nodes.
//!
//! Both then remove everything raw: every container at once (forced), then
//! every volume at once, then the network, by the names the plan gave them
//! ([`Floor::remove`], the floor for a delete); and then, untimed, whatever
//! still carries the run label.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{RemoveContainerOptions, RemoveVolumeOptions};
use futures_util::future::{join_all, try_join_all};

use crate::plan::{ClusterPlan, Gate};
use crate::spec::{ClusterSpec, Role};
use crate::{Error, Result, plan, runtime};

/// What [`floor`] or [`boot_floor`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Floor {
    /// From the first Docker call to the last container started.
    pub create_and_start: Duration,
    /// From the first Docker call to the last node's readiness line
    /// ([`boot_floor`] only).
    pub boot: Option<Duration>,
    /// Removing every container, volume and the network, each kind all at
    /// once (the floor of a delete).
    pub remove: Duration,
}

/// The raw floor: creates (network, volumes, containers, files) and starts
/// every container of `spec` at once, measures it, and removes it all. The
/// spec's name must be free.
pub async fn floor(docker: &Docker, spec: &ClusterSpec) -> Result<Floor> {
    measure(docker, spec, false).await
}

/// The boot floor: as [`floor`], then waits for each node's own readiness
/// line, all at once, with no order between the nodes.
pub async fn boot_floor(docker: &Docker, spec: &ClusterSpec) -> Result<Floor> {
    measure(docker, spec, true).await
}

async fn measure(docker: &Docker, spec: &ClusterSpec, boot: bool) -> Result<Floor> {
    spec.validate()?;
    let prepared = runtime::prepare::prepare(docker, spec).await?;
    let mut ctx = prepared.ctx;
    // Every published port pinned, as a create pins them.
    let plan = &runtime::pinned_plan(docker, spec, &mut ctx).await?;
    let started = Instant::now();
    let made = async {
        docker
            .create_network(plan.network.body.clone())
            .await
            .map_err(|e| Error::docker("create network", e))?;
        runtime::create_volumes(docker, &plan.shared_volumes).await?;
        try_join_all(plan.nodes.iter().map(|node| async move {
            runtime::create_node(docker, spec.name.as_str(), node).await?;
            docker
                .start_container(&node.name, None)
                .await
                .map_err(|e| Error::docker("start container", e))
        }))
        .await?;
        let create_and_start = started.elapsed();
        if !boot {
            return Ok((create_and_start, None));
        }
        try_join_all(plan.nodes.iter().map(|node| ready(docker, spec, node))).await?;
        Ok::<_, Error>((create_and_start, Some(started.elapsed())))
    }
    .await;
    let removing = Instant::now();
    remove_raw(docker, plan).await;
    let remove = removing.elapsed();
    // Whatever the raw removal missed (a failure half-way) goes by label.
    let removed = runtime::rollback(docker, &plan.run_id).await;
    let (create_and_start, boot) = made?;
    removed?;
    Ok(Floor {
        create_and_start,
        boot,
        remove,
    })
}

/// Waits for `node`'s own readiness line (the load balancer counts once
/// started).
async fn ready(docker: &Docker, spec: &ClusterSpec, node: &plan::NodePlan) -> Result<()> {
    let line = match (&node.gate, node.role) {
        (Gate::LogLine(line), _) => line.as_str(),
        (_, Role::Etcd) => plan::ETCD_SERVING,
        _ => return Ok(()),
    };
    let timeout = spec.timeouts.server + spec.timeouts.etcd;
    let deadline = tokio::time::Instant::now() + timeout;
    runtime::logs::wait_for_line(docker, &node.name, Some(line), deadline, timeout).await
}

/// Removes the plan's containers (forced), then its volumes, then its
/// network, each kind all at once; errors are left to the label sweep.
async fn remove_raw(docker: &Docker, plan: &ClusterPlan) {
    join_all(plan.nodes.iter().map(|n| {
        docker.remove_container(
            &n.name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
    }))
    .await;
    join_all(
        plan.volumes()
            .chain(&plan.shared_volumes)
            .map(|v| docker.remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))),
    )
    .await;
    let _ = docker.remove_network(&plan.network.name).await;
}
