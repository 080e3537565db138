//! What the user asks for: [`ClusterSpec`], built with
//! [`ClusterSpec::builder`] or read from YAML with [`ClusterSpec::from_yaml`].
//!
//! Every value is validated here, before any Docker resource exists.

mod api;
mod builder;
pub(crate) mod datastore;
pub(crate) mod filter;
mod k3d;
pub(crate) mod name;
mod network;
pub(crate) mod record;
mod timeouts;
mod warning;
mod yaml;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

pub use api::{ApiEndpoint, SanList};
pub use builder::ClusterSpecBuilder;
pub use datastore::{Datastore, DatastoreEndpoint, EndpointKind, EtcdDatastore, ExternalDatastore};
pub use filter::{
    EnvVar, Filtered, FilteredValue, K3sArg, NodeCounts, NodeFilter, PortMapping, Protocol, Role,
    VolumeMount,
};
pub use name::{ClusterName, Token};
pub use network::{NetworkSpec, Subnet};
#[cfg_attr(not(feature = "testing"), allow(unused_imports, unreachable_pub))]
pub use record::ClusterRecord;
pub(crate) use record::RECORD_PATH;
pub use timeouts::Timeouts;
#[cfg_attr(not(feature = "testing"), allow(unused_imports, unreachable_pub))]
pub use timeouts::parse_duration;
pub use warning::Warning;
pub(crate) use yaml::MAX_CONFIG_BYTES;
pub(crate) use yaml::check_yaml_shape;
use yaml::yaml_message;

use crate::{Error, Result};

/// The most k3s servers a cluster may have (static IPs are reserved for them).
pub(crate) const MAX_SERVERS: u32 = 99;
/// The most agents a cluster may have.
pub(crate) const MAX_AGENTS: u32 = 120;

/// A whole cluster, as asked for.
///
/// Field names in YAML are the kebab-case forms of the CLI flags:
///
/// ```yaml
/// name: demo
/// servers: 3
/// agents: 2
/// datastore:
///   etcd: {members: 3}
/// api-port: 127.0.0.1:6550
/// tls-san: [192.168.1.28, k3s.example.com]
/// k3s-args: ["--disable=traefik@server:*"]
/// env: ["HTTP_PROXY=http://proxy:3128@all"]
/// ports: ["8080:80@loadbalancer"]
/// timeouts: {server: 3m}
/// kubeconfig: {switch-context: true}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// The cluster name.
    #[serde(default = "ClusterName::unset")]
    pub name: ClusterName,
    /// How many k3s servers (at least 1).
    #[serde(default = "one")]
    pub servers: u32,
    /// How many k3s agents.
    #[serde(default)]
    pub agents: u32,
    /// The k3s image; `None` means `TOPGUN_K3S_IMAGE` or the default.
    #[serde(default)]
    pub image: Option<String>,
    /// Where the servers keep their state.
    #[serde(default)]
    pub datastore: Datastore,
    /// Where the Kubernetes API is published on the host.
    #[serde(default, rename = "api-port")]
    pub api: ApiEndpoint,
    /// Extra names for the API certificate; the API host and the load
    /// balancer's name are added automatically.
    #[serde(default)]
    pub tls_san: SanList,
    /// The cluster token; random (256 bits) when absent.
    #[serde(default)]
    pub token: Option<Token>,
    /// Extra k3s arguments, default filter `server:*`.
    #[serde(default)]
    pub k3s_args: Vec<Filtered<K3sArg>>,
    /// Extra environment variables, default filter `all`.
    #[serde(default)]
    pub env: Vec<Filtered<EnvVar>>,
    /// Bind mounts, default filter `all`.
    #[serde(default)]
    pub volumes: Vec<Filtered<VolumeMount>>,
    /// Published ports, default filter `loadbalancer` (or `server:0` without one).
    #[serde(default)]
    pub ports: Vec<Filtered<PortMapping>>,
    /// The load balancer.
    #[serde(default)]
    pub loadbalancer: LoadBalancerSpec,
    /// The cluster network.
    #[serde(default)]
    pub network: NetworkSpec,
    /// How long each phase may take.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Keep what was created when a create fails (for debugging).
    #[serde(default)]
    pub no_rollback: bool,
    /// Run k3s nodes with Docker's init process (`--init`), as k3d does.
    #[serde(default = "yes")]
    pub init: bool,
    /// The cgroup namespace mode of k3s nodes; `None` is Docker's default.
    #[serde(default)]
    pub cgroupns: Option<CgroupnsMode>,
    /// Run k3s nodes privileged (k3s needs it). `None`: `TOPGUN_PRIVILEGED`
    /// if set, else unprivileged only when the k3s image declares it needs
    /// no privileges (label `dev.topgun.privileged=false`), else privileged.
    #[serde(default)]
    pub privileged: Option<bool>,
    /// What `topgun create` does with the kubeconfig; `--no-kubeconfig` and
    /// `--switch-context` override it.
    #[serde(default)]
    pub kubeconfig: KubeconfigSpec,
    /// Registries to create or use, and the user's own `registries.yaml`.
    #[serde(default)]
    pub registries: crate::registry::RegistriesSpec,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// The load balancer: haproxy, with active TCP health checks of every
/// server's 6443. On by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct LoadBalancerSpec {
    /// Whether to run one.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The haproxy image; `None` means `TOPGUN_LB_IMAGE` or the default.
    #[serde(default)]
    pub image: Option<String>,
}

impl Default for LoadBalancerSpec {
    fn default() -> Self {
        LoadBalancerSpec {
            enabled: true,
            image: None,
        }
    }
}

/// What `topgun create` does with the new cluster's kubeconfig entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct KubeconfigSpec {
    /// Merge it into `$KUBECONFIG` or `~/.kube/config` (default: yes).
    #[serde(default = "yes")]
    pub merge: bool,
    /// Make it the current context (default: no).
    #[serde(default)]
    pub switch_context: bool,
}

impl Default for KubeconfigSpec {
    fn default() -> Self {
        KubeconfigSpec {
            merge: true,
            switch_context: false,
        }
    }
}

/// The cgroup namespace mode of k3s node containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupnsMode {
    /// A private cgroup namespace.
    Private,
    /// The host's cgroup namespace.
    Host,
}

/// Deserializes a string and parses it inside the visitor, so that
/// serde_norway attaches the line and column of that very value to errors.
pub(crate) fn de_parsed<'de, D, T>(
    d: D,
    parse: fn(&str) -> Result<T>,
) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T>(fn(&str) -> Result<T>);
    impl<T> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V(parse))
}

fn check_image(what: &str, image: &str) -> Result<()> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            format!("{what} image {image:?}"),
            "is not an image reference",
            "write e.g. rancher/k3s:v1.31.5-k3s1",
        ));
    }
    Ok(())
}

impl ClusterSpec {
    /// A builder for a cluster named `name`; all else defaults (1 server, no
    /// agents, embedded datastore, load balancer on, API on 127.0.0.1 at a
    /// free port).
    pub fn builder(name: &str) -> ClusterSpecBuilder {
        ClusterSpecBuilder::new(name)
    }

    /// A spec with every default and the given name, not yet validated:
    /// set fields, then call [`ClusterSpec::validate`] (the builder does both).
    pub fn new(name: ClusterName) -> Self {
        let mut spec = ClusterSpecBuilder::new("x").spec;
        spec.name = name;
        spec
    }

    /// Reads a spec from YAML. Unknown fields are errors that name the line.
    /// `origin` names the source in messages (a path, or `<string>`). Text
    /// nested deeper than 32 levels or with aliases is refused
    /// before it is parsed.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self> {
        check_yaml_shape(text).map_err(|message| Error::Config {
            path: origin.to_owned(),
            message,
        })?;
        let spec: ClusterSpec = serde_norway::from_str(text).map_err(|e| Error::Config {
            path: origin.to_owned(),
            message: yaml_message(&e),
        })?;
        Ok(spec)
    }

    /// Reads a spec from a YAML file of at most 1 MiB: topgun's own config
    /// ([`ClusterSpec::from_yaml`]) or a k3d config
    /// ([`ClusterSpec::from_k3d_yaml`]), told apart by `apiVersion`.
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = topgun_tls::read::bounded_text(path, MAX_CONFIG_BYTES)?;
        check_yaml_shape(&text).map_err(|message| Error::Config {
            path: path.to_owned(),
            message,
        })?;
        match k3d::detect(&text, path)? {
            k3d::ConfigKind::K3d => ClusterSpec::from_k3d_yaml(&text, path),
            k3d::ConfigKind::Topgun => ClusterSpec::from_yaml(&text, path),
        }
    }

    /// Reads a k3d config file (`apiVersion: k3d.io/v1alpha5`, `kind:
    /// Simple`): every k3d field maps onto topgun's config or is refused with
    /// its line and what to do instead. [`convert_k3d`] shows the result
    /// and notes on what maps with a difference.
    pub fn from_k3d_yaml(text: &str, origin: &Path) -> Result<Self> {
        let converted = convert_k3d(text, origin)?;
        for note in &converted.notes {
            tracing::info!("{}: {note}", origin.display());
        }
        Ok(converted.spec)
    }

    /// The number of nodes of each role.
    pub fn counts(&self) -> NodeCounts {
        NodeCounts {
            servers: self.servers,
            agents: self.agents,
            etcd: match &self.datastore {
                Datastore::Etcd(e) => e.members,
                _ => 0,
            },
            loadbalancer: self.loadbalancer.enabled,
        }
    }

    /// The filter that applies to a published port without one.
    pub fn default_port_filter(&self) -> NodeFilter {
        let text = if self.loadbalancer.enabled {
            "loadbalancer"
        } else {
            "server:0"
        };
        NodeFilter::parse(text).expect("a valid built-in filter")
    }

    /// Checks everything that can be checked without Docker. Also checks that
    /// the external datastore's files are readable.
    pub fn validate(&self) -> Result<()> {
        if self.name.as_str().is_empty() {
            return Err(Error::invalid(
                "cluster spec",
                "has no name",
                "give the cluster a name (NAME, or `name:` in the config file)",
            ));
        }
        if self.servers == 0 {
            return Err(Error::invalid(
                "server count 0",
                "a cluster needs at least one server",
                "pass --servers 1 or more",
            ));
        }
        if self.servers > MAX_SERVERS {
            return Err(Error::invalid(
                format!("server count {}", self.servers),
                format!("is more than {MAX_SERVERS}"),
                "use fewer servers and more agents",
            ));
        }
        if self.agents > MAX_AGENTS {
            return Err(Error::invalid(
                format!("agent count {}", self.agents),
                format!("is more than {MAX_AGENTS}"),
                "use fewer agents",
            ));
        }
        if let Some(image) = &self.image {
            check_image("k3s", image)?;
        }
        if let Some(image) = &self.loadbalancer.image {
            check_image("load balancer", image)?;
        }
        match &self.datastore {
            Datastore::Embedded => {}
            Datastore::Etcd(etcd) => {
                // topgun-etcd owns the limit.
                if topgun_etcd::EtcdClusterSpec::check_members(etcd.members as usize).is_err() {
                    return Err(Error::invalid(
                        format!("etcd member count {}", etcd.members),
                        format!("must be from 1 to {}", topgun_etcd::MAX_MEMBERS),
                        "use 3 (or 1, 5, 7) members",
                    ));
                }
                if let Some(image) = &etcd.image {
                    check_image("etcd", image)?;
                }
            }
            Datastore::External(ext) => {
                if ext.endpoint.kind() == EndpointKind::Sqlite && self.servers > 1 {
                    return Err(Error::invalid(
                        format!("datastore endpoint {}", ext.endpoint),
                        "is SQLite, which each server keeps to itself",
                        "use the embedded datastore (the default) or etcd for several servers",
                    ));
                }
                if ext.key.is_some() != ext.cert.is_some() {
                    return Err(Error::invalid(
                        "datastore TLS files",
                        "give a certificate and a key together",
                        "pass both --datastore-certfile and --datastore-keyfile",
                    ));
                }
                for path in [&ext.ca, &ext.cert, &ext.key].into_iter().flatten() {
                    let meta =
                        std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
                    if !meta.is_file() {
                        return Err(Error::io(
                            "cannot read",
                            path,
                            std::io::ErrorKind::InvalidInput.into(),
                        ));
                    }
                    std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
                }
            }
        }
        let counts = self.counts();
        for f in &self.k3s_args {
            if let Some(filter) = &f.filter {
                filter.check(
                    &format!("k3s argument {:?}", f.value.0),
                    K3sArg::ALLOWED,
                    &counts,
                )?;
            }
        }
        for f in &self.env {
            if let Some(filter) = &f.filter {
                filter.check(
                    &format!("environment variable {}", f.value.key),
                    EnvVar::ALLOWED,
                    &counts,
                )?;
            }
        }
        for f in &self.volumes {
            if let Some(filter) = &f.filter {
                filter.check(
                    &format!("volume {:?}", f.value.target),
                    VolumeMount::ALLOWED,
                    &counts,
                )?;
            }
        }
        self.check_ports(&counts)?;
        self.registries.validate()?;
        if let (Some(reg), Some(api)) = (&self.registries.create, self.api.port)
            && reg.port == Some(api)
            && (reg.host == self.api.host
                || reg.host.is_unspecified()
                || self.api.host.is_unspecified())
        {
            return Err(Error::invalid(
                format!("registry {}:{api}", reg.name),
                format!("uses host port {api}, which the API uses"),
                "pick another port for one of them",
            ));
        }
        if let Some(subnet) = &self.network.subnet
            && subnet.prefix > 24
        {
            return Err(Error::invalid(
                format!("subnet {subnet}"),
                "is smaller than /24",
                "use a /24 or larger",
            ));
        }
        Ok(())
    }

    fn check_ports(&self, counts: &NodeCounts) -> Result<()> {
        let default = self.default_port_filter();
        let mut taken: Vec<(IpAddr, u16, Protocol, String)> = Vec::new();
        if let Some(port) = self.api.port {
            taken.push((self.api.host, port, Protocol::Tcp, "the API".to_owned()));
        }
        for f in &self.ports {
            let p = &f.value;
            let filter = f.filter.as_ref().unwrap_or(&default);
            let what = format!("port {}", describe_port(p));
            if f.filter.is_some() {
                filter.check(&what, PortMapping::ALLOWED, counts)?;
            }
            if filter.matches(Role::LoadBalancer, 0)
                && self.loadbalancer.enabled
                && p.protocol == Protocol::Udp
            {
                return Err(Error::invalid(
                    what,
                    "is UDP, which the load balancer (haproxy) does not forward",
                    "publish it on a node instead, e.g. @server:0",
                ));
            }
            if filter.matches(Role::LoadBalancer, 0)
                && self.loadbalancer.enabled
                && p.container_port == 6443
            {
                return Err(Error::invalid(
                    what,
                    "uses the load balancer's port 6443, which carries the API",
                    "publish the API with --api-port instead",
                ));
            }
            let nodes = [Role::Server, Role::Agent, Role::LoadBalancer]
                .iter()
                .map(|r| {
                    (0..counts.count(*r))
                        .filter(|i| filter.matches(*r, *i))
                        .count()
                })
                .sum::<usize>();
            if let Some(host_port) = p.host_port {
                if nodes > 1 {
                    return Err(Error::invalid(
                        what,
                        format!("would publish host port {host_port} on {nodes} nodes"),
                        "give it to one node (e.g. @server:0), or publish it on the load balancer",
                    ));
                }
                let clash = taken.iter().find(|(ip, port, proto, _)| {
                    *port == host_port
                        && *proto == p.protocol
                        && (*ip == p.host_ip || ip.is_unspecified() || p.host_ip.is_unspecified())
                });
                if let Some((_, _, _, by)) = clash {
                    return Err(Error::invalid(
                        what,
                        format!("uses host port {host_port}, which {by} already uses"),
                        "pick another host port",
                    ));
                }
                taken.push((
                    p.host_ip,
                    host_port,
                    p.protocol,
                    format!("port {}", describe_port(p)),
                ));
            }
        }
        Ok(())
    }

    /// Warnings about a valid spec that is probably not what the user wants.
    pub fn warnings(&self) -> Vec<Warning> {
        let mut out: Vec<Warning> = topgun_tls::san_warnings(&self.tls_san.0)
            .into_iter()
            .map(Warning::San)
            .collect();
        if self.api.host.is_unspecified() {
            out.push(Warning::ApiOnEveryInterface {
                host: self.api.host,
                dial_host: self.api.dial_host(),
            });
        }
        if self.servers > 1 && !self.loadbalancer.enabled {
            out.push(Warning::NoLoadBalancer);
        }
        if let Datastore::Etcd(e) = &self.datastore
            && let Ok(Some(w)) = topgun_etcd::EtcdClusterSpec::check_members(e.members as usize)
        {
            out.push(Warning::Etcd(w));
        }
        if let Datastore::External(ext) = &self.datastore
            && ext.endpoint.uses_loopback()
        {
            out.push(Warning::DatastoreOnLoopback {
                endpoint: ext.endpoint.to_string(),
            });
        }
        out
    }
}

/// A k3d config converted to topgun's own ([`convert_k3d`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct K3dConversion {
    /// topgun's config, as YAML text that [`ClusterSpec::from_yaml`] reads.
    /// It holds the token if the k3d file had one.
    pub yaml: String,
    /// The spec it reads as, validated.
    pub spec: ClusterSpec,
    /// What maps with a difference (e.g. the API on 127.0.0.1 where k3d
    /// would use 0.0.0.0), one sentence each.
    pub notes: Vec<String>,
}

/// Converts a k3d config file (`apiVersion: k3d.io/v1alpha5`, `kind:
/// Simple`) into topgun's own config. A k3d field topgun cannot honour is an
/// error that names it, its line and what to do instead. `origin` names the
/// source in messages.
pub fn convert_k3d(text: &str, origin: &Path) -> Result<K3dConversion> {
    check_yaml_shape(text).map_err(|message| Error::Config {
        path: origin.to_owned(),
        message,
    })?;
    if k3d::detect(text, origin)? != k3d::ConfigKind::K3d {
        return Err(Error::Config {
            path: origin.to_owned(),
            message: format!(
                "is not a k3d config: it has no `apiVersion: {}` and `kind: Simple`",
                k3d::API_VERSION
            ),
        });
    }
    let (config, notes) = k3d::convert(text, origin)?;
    let yaml = k3d::to_text(&config, origin);
    let spec = ClusterSpec::from_yaml(&yaml, origin)?;
    spec.validate()?;
    Ok(K3dConversion { yaml, spec, notes })
}

/// Reads a k3d config file of at most 1 MiB and converts it; see
/// [`convert_k3d`].
pub fn convert_k3d_file(path: &Path) -> Result<K3dConversion> {
    let text = topgun_tls::read::bounded_text(path, MAX_CONFIG_BYTES)?;
    convert_k3d(&text, path)
}

fn describe_port(p: &PortMapping) -> String {
    match p.host_port {
        Some(h) => format!(
            "{}:{h}:{}/{}",
            p.host_ip,
            p.container_port,
            p.protocol.as_str()
        ),
        None => format!("{}/{}", p.container_port, p.protocol.as_str()),
    }
}

#[cfg(test)]
mod tests;
