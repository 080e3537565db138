//! Connecting to Docker, and the few calls every part of topgun makes:
//! listing, inspecting and removing resources by label.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};

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

/// The host port published for `port/tcp` in an inspect response.
pub(crate) fn host_port(
    info: &bollard::models::ContainerInspectResponse,
    port: u16,
) -> Option<u16> {
    info.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&format!("{port}/tcp"))?
        .as_ref()?
        .iter()
        .find_map(|b| b.host_port.as_deref()?.parse().ok())
}

/// Creates the volume `name` from `body`. A name that exists already is
/// refused: Docker returns the existing volume instead of an error, so a
/// volume that comes back without this run's label was not made by it, and
/// topgun never adopts a volume it did not make.
pub(crate) async fn create_volume(
    docker: &Docker,
    name: &str,
    body: bollard::models::VolumeCreateRequest,
) -> Result<()> {
    let run = |l: &HashMap<String, String>| l.get(crate::labels::RUN).cloned();
    let wanted = body.labels.as_ref().and_then(run);
    let made = docker
        .create_volume(body)
        .await
        .map_err(|e| Error::docker(format!("create volume {name}"), e))?;
    if run(&made.labels).is_none() || run(&made.labels) != wanted {
        return Err(Error::invalid(
            format!("volume {name}"),
            "exists already, and topgun does not adopt volumes it did not make",
            format!("remove it (`docker volume rm {name}`) or pick another cluster name"),
        ));
    }
    Ok(())
}

/// A free host port for each of `hosts` (the host addresses of ports to
/// publish), so that every published port is pinned at create. When Docker
/// runs here, the kernel picks them (all sockets held until every port is
/// picked, so none repeats); on a remote engine, random ports of 20000-29999
/// that no container publishes.
pub(crate) async fn free_ports(docker: &Docker, hosts: &[IpAddr]) -> Result<Vec<u16>> {
    if docker_is_local() {
        let mut held = Vec::new();
        for ip in hosts {
            let listener = TcpListener::bind((*ip, 0)).map_err(|e| {
                Error::invalid(
                    format!("host address {ip}"),
                    format!("cannot be bound here: {e}"),
                    "publish on 127.0.0.1, on one of this host's addresses, or on 0.0.0.0",
                )
            })?;
            held.push(listener);
        }
        return held
            .iter()
            .map(|l| {
                l.local_addr()
                    .map(|a| a.port())
                    .map_err(|e| Error::io("cannot read a bound port of", "a socket", e))
            })
            .collect();
    }
    let taken: std::collections::HashSet<u16> = containers(docker, HashMap::new())
        .await?
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| p.public_port)
        .collect();
    let mut ports = Vec::new();
    while ports.len() < hosts.len() {
        let port = 20000 + rand::random::<u16>() % 10000;
        if !taken.contains(&port) && !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}
