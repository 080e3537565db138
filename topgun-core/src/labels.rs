//! The Docker labels topgun puts on every resource it creates. They are the
//! only state topgun keeps: `list`, `status`, `delete` and rollback rebuild
//! everything from them. Labels never hold secrets.

/// The cluster name (as given, mixed case kept).
pub(crate) const CLUSTER: &str = "dev.topgun.cluster";
/// The id of the `create` run that made the resource; rollback finds by it.
pub(crate) const RUN: &str = "dev.topgun.run";
/// `server`, `agent`, `etcd`, `loadbalancer`, or `network` for the network.
pub(crate) const ROLE: &str = "dev.topgun.role";
/// The node's index within its role.
pub(crate) const INDEX: &str = "dev.topgun.index";
/// The version of topgun that made the resource.
pub(crate) const VERSION: &str = "dev.topgun.version";
/// The host address the API is published on (containers only).
pub(crate) const API_HOST: &str = "dev.topgun.api-host";
/// The Docker engine the cluster was created through: its URL (e.g.
/// `ssh://jbl@alien.io`) or `context:NAME`.
pub(crate) const ENGINE: &str = "dev.topgun.engine";
/// The host name the kubeconfig's server uses when it is not the API host
/// address (a remote engine host's name, as the user gave it; containers
/// only).
pub(crate) const API_NAME: &str = "dev.topgun.api-name";
/// `embedded`, `etcd` or `external` (containers only).
pub(crate) const DATASTORE: &str = "dev.topgun.datastore";
/// The cluster network's name (containers only).
pub(crate) const NETWORK: &str = "dev.topgun.network";
/// The node's hostname, lowercased (containers only).
pub(crate) const HOSTNAME: &str = "dev.topgun.hostname";

/// The name of the registry a container or volume belongs to (registries
/// only; see `registry`).
pub(crate) const REGISTRY: &str = "dev.topgun.registry";

/// The role label value of the network.
pub(crate) const ROLE_NETWORK: &str = "network";
/// The role label value of the cluster's images volume.
pub(crate) const ROLE_IMAGES: &str = "images";

/// A Docker label filter `KEY=VALUE`.
pub(crate) fn filter(key: &str, value: &str) -> String {
    format!("{key}={value}")
}
