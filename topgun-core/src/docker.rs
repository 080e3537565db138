//! Connecting to Docker, and the few calls every part of topgun makes:
//! listing, inspecting and removing resources by label.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary, Network, Volume};
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions,
};
use futures_util::future::join_all;

use crate::{Error, Result};

/// The socket Docker listens on when nothing else is selected.
pub(crate) const DEFAULT_DOCKER_HOST: &str = crate::engine::DEFAULT_SOCKET;

/// The engine URL topgun talks to ([`crate::engine::current`]), or the
/// default socket when the selection is invalid (connecting then says why).
pub(crate) fn docker_host() -> String {
    crate::engine::current()
        .map(|e| e.url)
        .unwrap_or_else(|_| DEFAULT_DOCKER_HOST.to_owned())
}

/// Whether the Docker daemon runs on this machine (a unix socket), so that
/// host ports can be probed locally.
pub(crate) fn docker_is_local() -> bool {
    crate::engine::current().is_ok_and(|e| e.is_local())
}

/// Connects to the engine selected as the docker CLI selects it (flags,
/// `DOCKER_HOST`, `DOCKER_CONTEXT`, the current context, the local socket;
/// see [`crate::Engine`]) and negotiates the API version (the engine may be
/// older than bollard, e.g. Docker 20.10 speaks API 1.41). Fails with an
/// error naming the endpoint and the layer that failed.
pub async fn connect() -> Result<Docker> {
    crate::engine::connect(&crate::engine::current()?).await
}

/// Connects to the daemon at `host` (`unix:///path`, `tcp://host:port` or
/// `http://host:port`) and negotiates the API version.
pub(crate) async fn connect_to(host: &str) -> Result<Docker> {
    let unreachable = |source: bollard::errors::Error| Error::DockerUnreachable {
        host: host.to_owned(),
        reason: describe_connect_error(&source),
        source,
    };
    let docker = Docker::connect_with_host(host).map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

pub(crate) fn describe_connect_error(e: &bollard::errors::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Label filters for list calls: every `KEY=VALUE` must match.
pub(crate) fn label_filters(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        pairs
            .iter()
            .map(|(k, v)| crate::labels::filter(k, v))
            .collect(),
    )])
}

/// A filter for resources that carry the label `key` (any value).
pub(crate) fn has_label(key: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![key.to_owned()])])
}

/// Containers, running or not, matching `filters`.
pub(crate) async fn containers(
    docker: &Docker,
    filters: HashMap<String, Vec<String>>,
) -> Result<Vec<ContainerSummary>> {
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| Error::docker("list containers", e))
}

/// Networks matching `filters`.
pub(crate) async fn networks(
    docker: &Docker,
    filters: HashMap<String, Vec<String>>,
) -> Result<Vec<Network>> {
    docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| Error::docker("list networks", e))
}

/// Volumes matching `filters`.
pub(crate) async fn volumes(
    docker: &Docker,
    filters: HashMap<String, Vec<String>>,
) -> Result<Vec<Volume>> {
    Ok(docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| Error::docker("list volumes", e))?
        .volumes
        .unwrap_or_default())
}

/// Inspects a container.
pub(crate) async fn inspect(docker: &Docker, name: &str) -> Result<ContainerInspectResponse> {
    docker
        .inspect_container(name, None)
        .await
        .map_err(|e| Error::docker(format!("inspect container {name}"), e))
}

/// The first container name of a summary, without the leading `/`.
pub(crate) fn summary_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_owned())
        .or_else(|| c.id.clone())
        .unwrap_or_default()
}

/// What a delete or rollback removed and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removal {
    /// Removed containers.
    pub containers: Vec<String>,
    /// Removed networks.
    pub networks: Vec<String>,
    /// Removed volumes.
    pub volumes: Vec<String>,
    /// What could not be removed, with why.
    pub failed: Vec<String>,
}

impl Removal {
    /// How many resources were removed.
    pub fn count(&self) -> usize {
        self.containers.len() + self.networks.len() + self.volumes.len()
    }

    pub(crate) fn absorb(&mut self, other: Removal) {
        self.containers.extend(other.containers);
        self.networks.extend(other.networks);
        self.volumes.extend(other.volumes);
        self.failed = other.failed;
    }
}

/// Removes every container (running or not, killed rather than stopped, with
/// its anonymous volumes), then every volume, then every network that
/// matches `filters`. Resources that vanish meanwhile are not errors.
pub(crate) async fn remove_once(
    docker: &Docker,
    filters: &HashMap<String, Vec<String>>,
) -> Result<Removal> {
    let mut removal = Removal::default();
    let found = containers(docker, filters.clone()).await?;
    let results = join_all(found.iter().map(|c| async move {
        let name = summary_name(c);
        let id = c.id.clone().unwrap_or_else(|| name.clone());
        let r = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    link: false,
                }),
            )
            .await;
        (name, r)
    }))
    .await;
    for (name, r) in results {
        match r {
            Ok(()) => removal.containers.push(name),
            Err(e) if is_gone(&e) => {}
            Err(e) => removal.failed.push(format!("container {name}: {e}")),
        }
    }
    let found = volumes(docker, filters.clone()).await?;
    let results = join_all(found.iter().map(|v| async move {
        let r = docker
            .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
            .await;
        (v.name.clone(), r)
    }))
    .await;
    for (name, r) in results {
        match r {
            Ok(()) => removal.volumes.push(name),
            Err(e) if is_gone(&e) => {}
            Err(e) => removal.failed.push(format!("volume {name}: {e}")),
        }
    }
    let found = networks(docker, filters.clone()).await?;
    let results = join_all(found.iter().map(|n| async move {
        let name = n.name.clone().unwrap_or_default();
        let id = n.id.clone().unwrap_or_else(|| name.clone());
        let r = docker.remove_network(&id).await;
        let stale = match &r {
            Err(e) if e.to_string().contains("active endpoints") => docker
                .inspect_network(
                    &id,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
                .is_ok_and(|n| n.containers.unwrap_or_default().is_empty()),
            _ => false,
        };
        (name, r, stale)
    }))
    .await;
    for (name, r, stale) in results {
        match r {
            Ok(()) => removal.networks.push(name),
            Err(e) if is_gone(&e) => {}
            Err(e) if stale => removal.failed.push(format!(
                "network {name}: {e} (no container is attached: the Docker daemon holds a stale \
                 endpoint on it, so `docker network rm {name}` fails too until the daemon restarts)"
            )),
            Err(e) => removal.failed.push(format!("network {name}: {e}")),
        }
    }
    Ok(removal)
}

/// Removes everything matching `filters`, then looks again until a pass
/// finds nothing: a request that was in flight when a create was cancelled
/// can still create a resource after the first pass.
pub(crate) async fn remove_by_labels(
    docker: &Docker,
    filters: HashMap<String, Vec<String>>,
    settle: std::time::Duration,
) -> Result<Removal> {
    let mut total = Removal::default();
    for pass in 0..6 {
        let removal = remove_once(docker, &filters).await?;
        let found = removal.count() + removal.failed.len();
        total.absorb(removal);
        if found == 0 && (pass > 0 || settle.is_zero()) {
            break;
        }
        if !total.failed.is_empty() && pass >= 2 {
            break;
        }
        tokio::time::sleep(settle.max(std::time::Duration::from_millis(50))).await;
    }
    total.containers.sort();
    total.containers.dedup();
    Ok(total)
}

fn is_gone(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
            | bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }
            if !e.to_string().contains("in use")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_daemon_names_docker_host_and_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("unix://{}/docker.sock", dir.path().display());
        let err = connect_to(&socket).await.unwrap_err().to_string();
        assert!(err.contains(&socket), "{err}");
        assert!(err.contains("DOCKER_HOST"), "{err}");
        assert!(err.contains("unix:///var/run/docker.sock"), "{err}");
        let err = connect_to("ftp://nowhere").await.unwrap_err().to_string();
        assert!(err.contains("ftp://nowhere"), "{err}");
        // bollard's error is kept as the source; the operation failed.
        let err = connect_to(&socket).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Failed);
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.is::<bollard::errors::Error>(), "{source:?}");
    }
}
