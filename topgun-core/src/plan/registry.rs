//! Pure: a registry's container (name, labels, volume, port, restart
//! policy), the steps that attach registries to a cluster network, and the
//! `registries.yaml` every k3s node of a cluster gets.

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use serde::Serialize;

use super::VolumePlan;
use crate::labels;
use crate::registry::spec::{RegistriesConfig, RegistriesSpec, RegistryName};
use crate::{Error, Result};

/// The port the registry listens on inside its container (plain HTTP).
pub(crate) const REGISTRY_PORT: u16 = 5000;
/// Where the registry keeps its data (a named volume).
pub(crate) const DATA_DIR: &str = "/var/lib/registry";
/// The registry image unless `TOPGUN_REGISTRY_IMAGE` or the spec says
/// otherwise.
pub(crate) const DEFAULT_REGISTRY_IMAGE: &str = "docker.io/library/registry:2";
/// The variable that overrides [`DEFAULT_REGISTRY_IMAGE`].
pub(crate) const ENV_IMAGE: &str = "TOPGUN_REGISTRY_IMAGE";
/// Where k3s reads its registry configuration.
pub(crate) const REGISTRIES_PATH: &str = "/etc/rancher/k3s/registries.yaml";
/// The role label value of registry containers and volumes.
pub(crate) const ROLE_REGISTRY: &str = "registry";

/// The container name of registry `name`.
pub(crate) fn container_name(name: &RegistryName) -> String {
    format!("topgun-registry-{name}")
}

/// The data volume name of registry `name`.
pub(crate) fn volume_name(name: &RegistryName) -> String {
    format!("topgun-registry-{name}-data")
}

/// The image a registry runs: the spec's, else `env(TOPGUN_REGISTRY_IMAGE)`,
/// else [`DEFAULT_REGISTRY_IMAGE`].
pub(crate) fn image(spec_image: Option<&str>, env: impl Fn(&str) -> Option<String>) -> String {
    spec_image
        .map(str::to_owned)
        .or_else(|| env(ENV_IMAGE).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_REGISTRY_IMAGE.to_owned())
}

/// A registry container to make: its data volume first, then itself.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RegistryContainer {
    /// The container name.
    pub name: String,
    /// Its data volume.
    pub volume: VolumePlan,
    /// The full create request.
    pub body: ContainerCreateBody,
}

/// The labels of a registry's container and volume: `base` (run, version,
/// engine, and the cluster when a cluster's create makes it) with the
/// registry's name and role.
pub(crate) fn registry_labels(
    name: &RegistryName,
    mut base: HashMap<String, String>,
) -> HashMap<String, String> {
    base.insert(labels::REGISTRY.to_owned(), name.to_string());
    base.insert(labels::ROLE.to_owned(), ROLE_REGISTRY.to_owned());
    base
}

/// Plans registry `name`'s container: `image` on the default bridge,
/// `DATA_DIR` on its labelled named volume, port 5000 published on
/// `host:port`, restarted unless stopped, the image's own command.
pub(crate) fn registry_container(
    name: &RegistryName,
    image: &str,
    host: IpAddr,
    port: u16,
    labels: HashMap<String, String>,
) -> RegistryContainer {
    let volume = volume_name(name);
    let key = format!("{REGISTRY_PORT}/tcp");
    RegistryContainer {
        name: container_name(name),
        volume: VolumePlan {
            name: volume.clone(),
            body: VolumeCreateRequest {
                name: Some(volume.clone()),
                driver: Some("local".to_owned()),
                labels: Some(labels.clone()),
                ..Default::default()
            },
        },
        body: ContainerCreateBody {
            image: Some(image.to_owned()),
            labels: Some(labels.clone()),
            exposed_ports: Some(vec![key.clone()]),
            host_config: Some(HostConfig {
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                mounts: Some(vec![Mount {
                    target: Some(DATA_DIR.to_owned()),
                    source: Some(volume),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                port_bindings: Some(HashMap::from([(
                    key,
                    Some(vec![PortBinding {
                        host_ip: Some(host.to_string()),
                        host_port: Some(port.to_string()),
                    }]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// A registry attached to a cluster network before any node starts: made
/// and started first when the cluster's create makes it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RegistryStep {
    /// The registry's name, its DNS alias on the network.
    pub name: String,
    /// Its container.
    pub container: String,
    /// The cluster network it is connected to.
    pub network: String,
    /// Its host port (mirrors name it).
    pub host_port: u16,
    /// The container to make first, when this create makes the registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create: Option<RegistryContainer>,
}

/// The registry steps of a cluster: the created registry (labelled with
/// `labels`: the cluster's run and name) and the used ones, each connected
/// to `network`. Every port must be pinned.
pub(crate) fn steps(
    spec: &RegistriesSpec,
    network: &str,
    labels: HashMap<String, String>,
) -> Result<Vec<RegistryStep>> {
    let pinned = spec.pinned()?;
    Ok(pinned
        .into_iter()
        .map(|(name, host_port)| {
            let create = spec.create.as_ref().filter(|c| c.name == name).map(|c| {
                registry_container(
                    &name,
                    c.image.as_deref().unwrap_or(DEFAULT_REGISTRY_IMAGE),
                    c.host,
                    host_port,
                    registry_labels(&name, labels.clone()),
                )
            });
            RegistryStep {
                name: name.to_string(),
                container: container_name(&name),
                network: network.to_owned(),
                host_port,
                create,
            }
        })
        .collect())
}

/// The `registries.yaml` of a cluster's k3s nodes, or `None` when it has
/// no registries: for each registry mirrors of `NAME:PORT` and
/// `localhost:PORT` (what `docker push` on the host and a pod's image name
/// it) to `http://NAME:5000` on the cluster network, merged into the user's
/// own file, whose entries win on the same host.
pub(crate) fn registries_yaml(spec: &RegistriesSpec) -> Result<Option<String>> {
    if spec.is_empty() {
        return Ok(None);
    }
    let pinned = spec.pinned()?;
    let mut generated: Vec<(String, String)> = Vec::new();
    for (name, port) in &pinned {
        let endpoint = format!("http://{name}:{REGISTRY_PORT}");
        generated.push((format!("{name}:{port}"), endpoint.clone()));
        generated.push((format!("localhost:{port}"), endpoint));
    }
    Ok(Some(merge(&generated, spec.config.as_ref())?))
}

/// `generated` mirrors (host, endpoint) merged into `user`'s file.
fn merge(generated: &[(String, String)], user: Option<&RegistriesConfig>) -> Result<String> {
    use serde_norway::{Mapping, Value};
    let mut root = match user.map(RegistriesConfig::expose) {
        Some(text) if !text.trim().is_empty() => {
            serde_norway::from_str::<Value>(text).map_err(|_| {
                Error::bug("the registries config", "a checked config no longer parses")
            })?
        }
        _ => Value::Mapping(Mapping::new()),
    };
    let Value::Mapping(root_map) = &mut root else {
        return Err(Error::bug(
            "the registries config",
            "a checked config is not a map",
        ));
    };
    let mirrors = root_map
        .entry(Value::from("mirrors"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if mirrors.is_null() {
        *mirrors = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(mirrors) = mirrors else {
        return Err(Error::bug(
            "the registries config",
            "a checked config's mirrors are not a map",
        ));
    };
    for (host, endpoint) in generated {
        let key = Value::from(host.as_str());
        if !mirrors.contains_key(&key) {
            let mut entry = Mapping::new();
            entry.insert(
                Value::from("endpoint"),
                Value::Sequence(vec![Value::from(endpoint.as_str())]),
            );
            mirrors.insert(key, Value::Mapping(entry));
        }
    }
    let body = serde_norway::to_string(&root)
        .map_err(|_| Error::bug("the registries config", "it does not serialise"))?;
    Ok(format!(
        "# Written by topgun: mirrors of the topgun registries this cluster uses, merged into\n\
         # the registries config given (whose entries win). k3s reads it at start.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::registry::spec::{RegistryRef, RegistrySpec};

    fn spec(config: Option<&str>) -> RegistriesSpec {
        RegistriesSpec {
            create: Some(RegistrySpec::parse("registry.localhost:5001").unwrap()),
            uses: vec![RegistryRef::parse("shared.localhost:5002").unwrap()],
            config: config.map(|c| RegistriesConfig::parse(c, Path::new("r.yaml")).unwrap()),
        }
    }

    #[test]
    fn mirrors_for_each_registry_and_the_users_entries_win() {
        let text = registries_yaml(&spec(Some(
            "mirrors:\n  localhost:5002:\n    endpoint: [\"http://elsewhere:5000\"]\n  docker.io:\n    endpoint: [\"https://mirror.example\"]\n\
             configs:\n  mirror.example:\n    auth: {username: u, password: pw}\n",
        )))
        .unwrap()
        .unwrap();
        let parsed: serde_norway::Value = serde_norway::from_str(&text).expect("the file is YAML");
        let endpoint = |host: &str| {
            parsed["mirrors"][host]["endpoint"][0]
                .as_str()
                .map(str::to_owned)
        };
        assert_eq!(
            endpoint("registry.localhost:5001").as_deref(),
            Some("http://registry.localhost:5000")
        );
        assert_eq!(
            endpoint("localhost:5001").as_deref(),
            Some("http://registry.localhost:5000")
        );
        assert_eq!(
            endpoint("shared.localhost:5002").as_deref(),
            Some("http://shared.localhost:5000")
        );
        // The user's entry for the same host wins.
        assert_eq!(
            endpoint("localhost:5002").as_deref(),
            Some("http://elsewhere:5000")
        );
        assert_eq!(
            endpoint("docker.io").as_deref(),
            Some("https://mirror.example")
        );
        assert_eq!(
            parsed["configs"]["mirror.example"]["auth"]["password"].as_str(),
            Some("pw")
        );
        assert_eq!(registries_yaml(&RegistriesSpec::default()).unwrap(), None);
    }

    #[test]
    fn an_unpinned_port_is_a_bug() {
        let mut s = spec(None);
        s.uses.push(RegistryRef::parse("open").unwrap());
        assert_eq!(
            registries_yaml(&s).unwrap_err().kind(),
            crate::ErrorKind::Bug
        );
    }
}
