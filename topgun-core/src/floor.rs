//! The floor for create benchmarks: the time to create and start the very
//! containers a create would (same plan, same bodies, files and volumes)
//! directly through the Docker API, all at once, with no ordering and no
//! readiness gates. `cargo xtask bench` compares `topgun create` with it.

use std::time::{Duration, Instant};

use bollard::Docker;
use futures_util::future::try_join_all;

use crate::spec::ClusterSpec;
use crate::{Error, Result, plan, runtime};

/// What [`floor`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Floor {
    /// From the first Docker call to the last container started.
    pub create_and_start: Duration,
    /// Removing everything again (not part of the floor).
    pub remove: Duration,
}

/// Creates (network, volumes, containers, files) and starts every container
/// of `spec` at once, measures it, and removes it all (by run label). The
/// spec's name must be free.
pub async fn floor(docker: &Docker, spec: &ClusterSpec) -> Result<Floor> {
    spec.validate()?;
    let prepared = runtime::prepare::prepare(docker, spec).await?;
    let plan = plan::plan(spec, &prepared.ctx)?;
    let started = Instant::now();
    let made = async {
        docker
            .create_network(plan.network.body.clone())
            .await
            .map_err(|e| Error::docker("create network", e))?;
        try_join_all(plan.nodes.iter().map(|node| async move {
            runtime::create_node(docker, spec.name.as_str(), node).await?;
            docker
                .start_container(&node.name, None)
                .await
                .map_err(|e| Error::docker("start container", e))
        }))
        .await
    }
    .await;
    let create_and_start = started.elapsed();
    let removing = Instant::now();
    let removed = runtime::rollback(docker, &plan.run_id).await;
    let remove = removing.elapsed();
    made?;
    removed?;
    Ok(Floor {
        create_and_start,
        remove,
    })
}
