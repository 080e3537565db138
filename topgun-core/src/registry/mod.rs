//! Local image registries: [`Registry`] (`topgun registry create|list|
//! delete`), and the registries of a cluster (`--registry-create`,
//! `--registry-use`, `--registry-config`).
//!
//! A registry is a container `topgun-registry-NAME` running the registry
//! image (`registry:2` unless `TOPGUN_REGISTRY_IMAGE` says otherwise) with
//! its data on a named volume `topgun-registry-NAME-data`, port 5000
//! published on 127.0.0.1 (by default) at a pinned host port, restarted
//! unless stopped. Both carry `dev.topgun.registry=NAME` and the run label,
//! not the cluster label: a registry outlives clusters. One a cluster's
//! create makes carries that cluster's label too, so that the create's
//! rollback and `topgun delete CLUSTER` remove it.
//!
//! A cluster reaches each of its registries on its network under the alias
//! `NAME` (the registry is connected before any node starts), and every k3s
//! node gets `/etc/rancher/k3s/registries.yaml` (see
//! [`crate::plan::registry::registries_yaml`]). Deleting a cluster only disconnects the
//! registries it used; it never removes them.

pub(crate) mod spec;

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};

use bollard::Docker;
use bollard::models::{
    ContainerInspectResponse, ContainerSummary, EndpointSettings, NetworkConnectRequest,
    NetworkDisconnectRequest,
};
use bollard::query_parameters::CreateContainerOptions;
use serde::Serialize;

use crate::docker::{self as dockerx, Removal, docker_is_local};
use crate::plan::registry::{self as plan, REGISTRY_PORT, RegistryContainer, RegistryStep};
use crate::spec::ClusterSpec;
use crate::{Error, Result, labels};
pub use spec::{RegistriesConfig, RegistriesSpec, RegistryName, RegistryRef, RegistrySpec};

/// A registry on a Docker engine, by name. It holds no other state: every
/// call asks Docker (by labels).
#[derive(Debug, Clone)]
pub struct Registry {
    docker: Docker,
    name: RegistryName,
}

/// A registry as Docker shows it (`topgun registry list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RegistryInfo {
    /// Its name: its DNS alias on cluster networks.
    pub name: String,
    /// The container.
    pub container: String,
    /// The image it runs.
    pub image: String,
    /// Docker's state of the container (`running`, `exited`, ...).
    pub state: String,
    /// The host address its port is published on.
    pub host: Option<String>,
    /// The host port (`docker push HOST:PORT/...`).
    pub port: Option<u16>,
    /// The cluster whose create made it (and whose delete removes it).
    pub cluster: Option<String>,
    /// The clusters whose networks it is connected to.
    pub clusters: Vec<String>,
}

/// What [`Registry::delete`] did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct RegistryDeleted {
    /// The registry's name.
    pub name: String,
    /// The clusters it was disconnected from (`--force`).
    pub disconnected: Vec<String>,
    /// The Docker resources removed (nothing when it did not exist).
    pub removed: Removal,
}

fn not_found(name: &RegistryName) -> Error {
    Error::invalid(
        format!("registry {name}"),
        "does not exist on this Docker engine",
        format!(
            "`topgun registry list` shows the registries; `topgun registry create {name}` makes \
             it"
        ),
    )
}

fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

/// The container of registry `name`, if any.
async fn find(docker: &Docker, name: &RegistryName) -> Result<Option<ContainerSummary>> {
    let found = dockerx::containers(
        docker,
        dockerx::label_filters(&[(labels::REGISTRY, name.as_str())]),
    )
    .await?;
    Ok(found.into_iter().next())
}

/// The host address and port a registry container publishes 5000 on.
fn published(info: &ContainerInspectResponse) -> Option<(String, u16)> {
    let binding = info
        .host_config
        .as_ref()?
        .port_bindings
        .as_ref()?
        .get(&format!("{REGISTRY_PORT}/tcp"))?
        .as_ref()?
        .first()?;
    Some((
        binding.host_ip.clone().unwrap_or_default(),
        binding.host_port.as_deref()?.parse().ok()?,
    ))
}

/// Cluster networks by name → their cluster.
async fn cluster_networks(docker: &Docker) -> Result<HashMap<String, String>> {
    Ok(
        dockerx::networks(docker, dockerx::has_label(labels::CLUSTER))
            .await?
            .into_iter()
            .filter_map(|n| {
                let cluster = n.labels.as_ref()?.get(labels::CLUSTER)?.clone();
                Some((n.name?, cluster))
            })
            .collect(),
    )
}

async fn info_of(
    docker: &Docker,
    c: &ContainerSummary,
    networks: &HashMap<String, String>,
) -> Result<RegistryInfo> {
    let container = dockerx::summary_name(c);
    let inspected = dockerx::inspect(docker, &container).await?;
    let (host, port) = match published(&inspected) {
        Some((h, p)) => (Some(h), Some(p)),
        None => (None, None),
    };
    let mut clusters: Vec<String> = inspected
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .into_iter()
        .flat_map(|n| n.keys())
        .filter_map(|net| networks.get(net).cloned())
        .collect();
    clusters.sort();
    Ok(RegistryInfo {
        name: label(c, labels::REGISTRY).unwrap_or_default().to_owned(),
        container,
        image: c.image.clone().unwrap_or_default(),
        state: c
            .state
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        host,
        port,
        cluster: label(c, labels::CLUSTER).map(str::to_owned),
        clusters,
    })
}

impl Registry {
    /// Creates the registry `spec` describes and starts it. Everything is
    /// checked first (name free, image present, a given port free); on a
    /// failure, whatever was made is removed.
    pub async fn create(docker: Docker, spec: &RegistrySpec) -> Result<Registry> {
        spec.validate()?;
        let image = plan::image(spec.image.as_deref(), |k| std::env::var(k).ok());
        let port = check_new(&docker, &spec.name, spec.host, spec.port, &image).await?;
        let run_id = hex::encode(rand::random::<[u8; 8]>());
        let container = plan::registry_container(
            &spec.name,
            &image,
            spec.host,
            port,
            plan::registry_labels(&spec.name, base_labels(&run_id)),
        );
        if let Err(e) = make(&docker, &container).await {
            let _ = dockerx::remove_by_labels(
                &docker,
                dockerx::label_filters(&[(labels::RUN, &run_id)]),
                std::time::Duration::from_millis(100),
            )
            .await;
            return Err(e);
        }
        Ok(Registry {
            docker,
            name: spec.name.clone(),
        })
    }

    /// A handle on the existing registry `name`; an error when there is
    /// none.
    pub async fn open(docker: Docker, name: &str) -> Result<Registry> {
        let name = RegistryName::new(name)?;
        if find(&docker, &name).await?.is_none() {
            return Err(not_found(&name));
        }
        Ok(Registry { docker, name })
    }

    /// A handle on registry `name` without asking Docker whether it exists.
    pub fn named(docker: Docker, name: RegistryName) -> Registry {
        Registry { docker, name }
    }

    /// Every registry topgun made on the engine, by name.
    pub async fn list(docker: &Docker) -> Result<Vec<RegistryInfo>> {
        let (found, networks) = tokio::try_join!(
            dockerx::containers(docker, dockerx::has_label(labels::REGISTRY)),
            cluster_networks(docker),
        )?;
        let mut out = Vec::new();
        for c in &found {
            out.push(info_of(docker, c, &networks).await?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// What Docker shows of it.
    pub async fn info(&self) -> Result<RegistryInfo> {
        let c = find(&self.docker, &self.name)
            .await?
            .ok_or_else(|| not_found(&self.name))?;
        info_of(&self.docker, &c, &cluster_networks(&self.docker).await?).await
    }

    /// Deletes the registry: its container and data volume. A registry
    /// connected to clusters' networks is refused (naming them) unless
    /// `force`, which disconnects it first. Deleting one that does not
    /// exist succeeds and removes nothing.
    pub async fn delete(&self, force: bool) -> Result<RegistryDeleted> {
        let docker = &self.docker;
        let mut deleted = RegistryDeleted {
            name: self.name.to_string(),
            ..Default::default()
        };
        if let Some(c) = find(docker, &self.name).await? {
            let networks = cluster_networks(docker).await?;
            let info = info_of(docker, &c, &networks).await?;
            if !info.clusters.is_empty() && !force {
                return Err(Error::invalid(
                    format!("registry {}", self.name),
                    format!(
                        "is connected to the network of cluster(s) {}",
                        info.clusters.join(", ")
                    ),
                    "delete those clusters first, or pass --force to disconnect it from them and \
                     delete it",
                ));
            }
            for (network, cluster) in &networks {
                if info.clusters.contains(cluster) {
                    disconnect(docker, network, &info.container).await?;
                    deleted.disconnected.push(cluster.clone());
                }
            }
            deleted.disconnected.sort();
            deleted.disconnected.dedup();
        }
        let removed = dockerx::remove_by_labels(
            docker,
            dockerx::label_filters(&[(labels::REGISTRY, self.name.as_str())]),
            std::time::Duration::ZERO,
        )
        .await?;
        if !removed.failed.is_empty() {
            return Err(Error::RemoveIncomplete {
                leftovers: removed.failed,
            });
        }
        deleted.removed = removed;
        Ok(deleted)
    }
}

/// Labels of everything one run makes: run, version, engine.
fn base_labels(run_id: &str) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (labels::RUN.to_owned(), run_id.to_owned()),
        (
            labels::VERSION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    if let Ok(engine) = crate::engine::current() {
        l.insert(labels::ENGINE.to_owned(), engine.label());
    }
    l
}

/// Checks that a new registry `name` can be made: the name is free (no
/// registry, container or volume of that name), `image` is present, and a
/// given `port` is free on `host`. Returns the host port: `port`, or a
/// free one.
async fn check_new(
    docker: &Docker,
    name: &RegistryName,
    host: IpAddr,
    port: Option<u16>,
    image: &str,
) -> Result<u16> {
    let container = plan::container_name(name);
    let volume = plan::volume_name(name);
    let (labelled, named, volumes) = tokio::try_join!(
        find(docker, name),
        dockerx::containers(
            docker,
            HashMap::from([("name".to_owned(), vec![container.clone()])])
        ),
        dockerx::volumes(
            docker,
            HashMap::from([("name".to_owned(), vec![volume.clone()])])
        ),
    )?;
    let taken = labelled.is_some()
        || named.iter().any(|c| dockerx::summary_name(c) == container)
        || volumes.iter().any(|v| v.name == volume);
    if taken {
        return Err(Error::invalid(
            format!("registry {name}"),
            format!("exists already (container {container} or volume {volume})"),
            format!(
                "use it (`--registry-use {name}`), delete it (`topgun registry delete {name}`), \
                 or pick another name"
            ),
        ));
    }
    match docker.inspect_image(image).await {
        Ok(_) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(Error::ImageMissing {
                image: image.to_owned(),
            });
        }
        Err(e) => return Err(Error::docker(format!("inspect image {image}"), e)),
    }
    match port {
        Some(port) => {
            check_port_free(docker, host, port).await?;
            Ok(port)
        }
        None => Ok(crate::docker::free_ports(docker, &[host]).await?[0]),
    }
}

/// A given host port must be free: bound by nothing here (a local
/// engine), published by no container.
async fn check_port_free(docker: &Docker, host: IpAddr, port: u16) -> Result<()> {
    if docker_is_local() {
        match TcpListener::bind((host, port)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(Error::PortInUse {
                    host: host.to_string(),
                    port,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                return Err(Error::invalid(
                    format!("host address {host}"),
                    "is not an address of this machine",
                    "publish on 127.0.0.1, on one of this host's addresses, or on 0.0.0.0",
                ));
            }
            Err(e) => {
                tracing::debug!(%host, port, error = %e, "cannot probe port; Docker will tell")
            }
        }
    }
    let published = dockerx::containers(docker, HashMap::new())
        .await?
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .any(|p| p.public_port == Some(port));
    if published {
        return Err(Error::PortInUse {
            host: host.to_string(),
            port,
        });
    }
    Ok(())
}

/// Creates a registry's volume and container, and starts it.
async fn make(docker: &Docker, c: &RegistryContainer) -> Result<()> {
    dockerx::create_volume(docker, &c.volume.name, c.volume.body.clone()).await?;
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(c.name.clone()),
                ..Default::default()
            }),
            c.body.clone(),
        )
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ref message,
            } if message.contains("image") => Error::ImageMissing {
                image: c.body.image.clone().unwrap_or_default(),
            },
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            } => Error::invalid(
                format!("registry container {}", c.name),
                "was made meanwhile by someone else",
                "use that registry (`--registry-use`), or pick another name",
            ),
            e => Error::docker(format!("create container {}", c.name), e),
        })?;
    docker.start_container(&c.name, None).await.map_err(|e| {
        let text = e.to_string();
        match published(&ContainerInspectResponse {
            host_config: c.body.host_config.clone(),
            ..Default::default()
        }) {
            Some((host, port))
                if text.contains("port is already allocated")
                    || text.contains("address already in use") =>
            {
                Error::PortInUse { host, port }
            }
            _ => Error::docker(format!("start container {}", c.name), e),
        }
    })?;
    Ok(())
}

/// The cluster spec with its registries resolved, or `None` when it has
/// none to create or use: the created registry's image and host port
/// pinned (its name free, its image present, a given port free), and each
/// used registry found and its host port pinned (a registry that does not
/// exist, does not run, or listens on another port than the one given is
/// refused). Nothing is created.
pub(crate) async fn pin(docker: &Docker, spec: &ClusterSpec) -> Result<Option<ClusterSpec>> {
    let r = &spec.registries;
    if r.create.is_none() && r.uses.is_empty() {
        return Ok(None);
    }
    let mut pinned = spec.clone();
    if let Some(c) = &mut pinned.registries.create {
        let image = plan::image(c.image.as_deref(), |k| std::env::var(k).ok());
        c.port = Some(check_new(docker, &c.name, c.host, c.port, &image).await?);
        c.image = Some(image);
    }
    for u in &mut pinned.registries.uses {
        let c = find(docker, &u.name)
            .await?
            .ok_or_else(|| not_found(&u.name))?;
        let container = dockerx::summary_name(&c);
        let inspected = dockerx::inspect(docker, &container).await?;
        if inspected.state.as_ref().and_then(|s| s.running) != Some(true) {
            return Err(Error::invalid(
                format!("registry {}", u.name),
                "does not run",
                format!("start it (`docker start {container}`), then create the cluster"),
            ));
        }
        let Some((_, port)) = published(&inspected) else {
            return Err(Error::invalid(
                format!("registry {}", u.name),
                "publishes no host port",
                format!(
                    "delete it (`topgun registry delete {}`) and create it again",
                    u.name
                ),
            ));
        };
        if let Some(given) = u.port
            && given != port
        {
            return Err(Error::invalid(
                format!("registry {u}"),
                format!("is published on host port {port}, not {given}"),
                format!("write {}:{port}, or just {}", u.name, u.name),
            ));
        }
        u.port = Some(port);
    }
    Ok(Some(pinned))
}

/// Makes (and starts) the registry a cluster's create makes, and connects
/// every registry of `steps` to its cluster network under its name.
pub(crate) async fn attach(docker: &Docker, steps: &[RegistryStep]) -> Result<()> {
    for step in steps {
        if let Some(c) = &step.create {
            make(docker, c).await?;
        }
        tracing::debug!(registry = %step.name, network = %step.network, "connecting");
        docker
            .connect_network(
                &step.network,
                NetworkConnectRequest {
                    container: step.container.clone(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![step.name.clone()]),
                        ..Default::default()
                    }),
                },
            )
            .await
            .map_err(|e| {
                Error::docker(
                    format!("connect registry {} to network {}", step.name, step.network),
                    e,
                )
            })?;
    }
    Ok(())
}

async fn disconnect(docker: &Docker, network: &str, container: &str) -> Result<()> {
    match docker
        .disconnect_network(
            network,
            NetworkDisconnectRequest {
                container: container.to_owned(),
                force: Some(true),
            },
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 403,
            ..
        }) => Ok(()),
        Err(e) => Err(Error::docker(
            format!("disconnect {container} from network {network}"),
            e,
        )),
    }
}

/// Disconnects from cluster `cluster`'s network every registry the cluster
/// only uses (one its create made goes with the cluster), so that the
/// network can be removed; the registries stay.
pub(crate) async fn detach_used(docker: &Docker, cluster: &str) -> Result<()> {
    let network = crate::plan::network_name(cluster);
    let on = dockerx::containers(
        docker,
        HashMap::from([
            ("network".to_owned(), vec![network.clone()]),
            ("label".to_owned(), vec![labels::REGISTRY.to_owned()]),
        ]),
    )
    .await?;
    for c in on {
        if label(&c, labels::CLUSTER) != Some(cluster) {
            disconnect(docker, &network, &dockerx::summary_name(&c)).await?;
        }
    }
    Ok(())
}

/// [`detach_used`] before a rollback removes `cluster`'s network (the
/// registry the create made carries its run label and goes with the
/// rollback); failures are only logged (the rollback reports what stays).
pub(crate) async fn detach_all(docker: &Docker, cluster: &str) {
    if let Err(e) = detach_used(docker, cluster).await {
        tracing::debug!(error = %e, "cannot disconnect registries");
    }
}
