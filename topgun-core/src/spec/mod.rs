//! What the user asks for: [`ClusterSpec`], built with
//! [`ClusterSpec::builder`] or read from YAML with [`ClusterSpec::from_yaml`].
//!
//! Every value is validated here, before any Docker resource exists.

pub mod datastore;
pub mod filter;
pub mod name;
pub mod record;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use topgun_tls::San;

pub use datastore::{Datastore, DatastoreEndpoint, EndpointKind, EtcdDatastore, ExternalDatastore};
pub use filter::{
    EnvVar, Filtered, FilteredValue, K3sArg, NodeCounts, NodeFilter, PortMapping, Protocol, Role,
    VolumeMount,
};
pub use name::{ClusterName, MAX_NAME_LEN, Token};
pub use record::{ClusterRecord, RECORD_PATH};

use crate::{Error, Result};

/// The most k3s servers a cluster may have (static IPs are reserved for them).
pub const MAX_SERVERS: u32 = 99;
/// The most agents a cluster may have.
pub const MAX_AGENTS: u32 = 120;
/// The most etcd members a cluster may have.
pub const MAX_ETCD_MEMBERS: u32 = 9;

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
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// Where the Kubernetes API is published: `[HOST:]PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// The host address; 127.0.0.1 unless given (never 0.0.0.0 by default).
    pub host: IpAddr,
    /// The host port; `None` picks a free one.
    pub port: Option<u16>,
}

impl Default for ApiEndpoint {
    fn default() -> Self {
        ApiEndpoint {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
        }
    }
}

impl ApiEndpoint {
    /// Parses `[HOST:]PORT`, `HOST:` (a free port on HOST) or
    /// `[IPV6]:[PORT]`. A bare host is refused: it reads like a port was
    /// forgotten.
    pub fn parse(s: &str) -> Result<Self> {
        let no_port = |h: &str| {
            Error::invalid(
                format!("API address {s:?}"),
                "has a host but no port",
                format!("write `{h}:6443` for a port, or `{h}:` to get a free one"),
            )
        };
        let bad_host = |h: &str| {
            Error::invalid(
                format!("API address {s:?}"),
                format!("has the host {h:?}, which is not an IP address"),
                "give an IP address of this host, e.g. 127.0.0.1 or 192.168.1.28",
            )
        };
        if let Some(inner) = s.strip_prefix('[') {
            let (host, port) = inner.split_once(']').ok_or_else(|| bad_host(s))?;
            let host: IpAddr = host.parse().map_err(|_| bad_host(host))?;
            let port = match port.strip_prefix(':') {
                Some("") => None,
                Some(p) => Some(filter::parse_port("API port", p)?),
                None if port.is_empty() => return Err(no_port(&format!("[{host}]"))),
                None => return Err(bad_host(s)),
            };
            return Ok(ApiEndpoint { host, port });
        }
        if !s.contains(':') {
            if s.chars().all(|c| c.is_ascii_digit()) {
                return Ok(ApiEndpoint {
                    port: Some(filter::parse_port("API port", s)?),
                    ..Default::default()
                });
            }
            let _: IpAddr = s.parse().map_err(|_| bad_host(s))?;
            return Err(no_port(s));
        }
        if s.parse::<IpAddr>().is_ok() {
            // A bare IPv6 address.
            return Err(no_port(&format!("[{s}]")));
        }
        let (host, port) = s.rsplit_once(':').expect("contains ':'");
        let host = host.parse().map_err(|_| bad_host(host))?;
        let port = if port.is_empty() {
            None
        } else {
            Some(filter::parse_port("API port", port)?)
        };
        Ok(ApiEndpoint { host, port })
    }

    /// The host clients should dial: the API host, or 127.0.0.1 when the API
    /// is bound to every address.
    pub fn dial_host(&self) -> IpAddr {
        if self.host.is_unspecified() {
            match self.host {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            }
        } else {
            self.host
        }
    }
}

/// `HOST:PORT`, or `HOST:` for a free port: the form
/// [`ApiEndpoint::parse`] reads.
impl fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            IpAddr::V6(h) => write!(f, "[{h}]:")?,
            IpAddr::V4(h) => write!(f, "{h}:")?,
        }
        match self.port {
            Some(p) => write!(f, "{p}"),
            None => Ok(()),
        }
    }
}

impl FromStr for ApiEndpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ApiEndpoint::parse(s)
    }
}

impl<'de> Deserialize<'de> for ApiEndpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ApiEndpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port or \"HOST:PORT\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<ApiEndpoint, E> {
                ApiEndpoint::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ApiEndpoint, E> {
                ApiEndpoint::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<ApiEndpoint, E> {
                ApiEndpoint::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of SANs, validated by topgun-tls. In YAML a list of strings or one
/// comma-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SanList(pub Vec<San>);

impl SanList {
    /// Parses one `--tls-san` value (a comma-separated list).
    pub fn parse(s: &str) -> Result<Vec<San>> {
        Ok(topgun_tls::parse_san_list(s)?)
    }
}

impl<'de> Deserialize<'de> for SanList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SanList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of names or addresses")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<SanList, E> {
                SanList::parse(v).map(SanList).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<SanList, A::Error> {
                let mut out = Vec::new();
                while let Some(SanItem(item)) = seq.next_element()? {
                    out.extend(item);
                }
                Ok(SanList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One item of a SAN list, parsed where it stands so errors name its line.
struct SanItem(Vec<San>);

impl<'de> Deserialize<'de> for SanItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        de_parsed(d, |s| SanList::parse(s).map(SanItem))
    }
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

/// The cluster network: a user-defined bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct NetworkSpec {
    /// The IPv4 subnet (prefix at most /24); `None` picks one that no Docker
    /// network uses.
    #[serde(default)]
    pub subnet: Option<Subnet>,
}

/// An IPv4 subnet such as `172.28.5.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(into = "String")]
pub struct Subnet {
    /// The network address.
    pub base: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `A.B.C.D/N` with `N` from 8 to 24 and no host bits set.
    pub fn parse(s: &str) -> Result<Self> {
        let what = || format!("subnet {s:?}");
        let (ip, prefix) = s.split_once('/').ok_or_else(|| {
            Error::invalid(what(), "has no prefix length", "write e.g. 172.28.5.0/24")
        })?;
        let base: Ipv4Addr = ip.parse().map_err(|_| {
            Error::invalid(what(), "is not an IPv4 network", "write e.g. 172.28.5.0/24")
        })?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=24).contains(p))
            .ok_or_else(|| {
                Error::invalid(
                    what(),
                    "needs a prefix from /8 to /24",
                    "write e.g. 172.28.5.0/24",
                )
            })?;
        let subnet = Subnet { base, prefix };
        let reserved = [
            ("127.0.0.0/8", "loopback"),
            ("169.254.0.0/16", "link-local"),
            ("224.0.0.0/4", "multicast"),
            ("240.0.0.0/4", "reserved"),
            ("0.0.0.0/8", "\"this network\""),
        ];
        for (range, kind) in reserved {
            let (ip, len) = range.split_once('/').expect("a CIDR");
            let other = Subnet {
                base: ip.parse().expect("an address"),
                prefix: len.parse().expect("a prefix"),
            };
            if subnet.overlaps(&other) {
                return Err(Error::invalid(
                    what(),
                    format!("overlaps the {kind} range {range}, which a bridge network cannot use"),
                    "use a private range such as 172.28.5.0/24, or leave it out to get a free one",
                ));
            }
        }
        if subnet.network() != base {
            return Err(Error::invalid(
                what(),
                "has host bits set",
                format!("write {}/{prefix}", subnet.network()),
            ));
        }
        Ok(subnet)
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) & self.mask())
    }

    /// The address `offset` past the network address.
    pub fn host(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + offset)
    }

    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask().min(other.mask()); // the shorter prefix
        (u32::from(self.base) & mask) == (u32::from(other.base) & mask)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Subnet::parse(s)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        de_parsed(d, Subnet::parse)
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

/// How long each phase of a create may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct Timeouts {
    /// etcd members until the cluster is healthy.
    #[serde(default = "Timeouts::default_etcd", deserialize_with = "de_duration")]
    pub etcd: Duration,
    /// Each server until `k3s is up and running`.
    #[serde(default = "Timeouts::default_server", deserialize_with = "de_duration")]
    pub server: Duration,
    /// Each agent until `Successfully registered node`.
    #[serde(default = "Timeouts::default_agent", deserialize_with = "de_duration")]
    pub agent: Duration,
    /// The API through the load balancer until `/readyz` answers ok.
    #[serde(default = "Timeouts::default_api", deserialize_with = "de_duration")]
    pub api: Duration,
    /// The whole create, from its first Docker call to success; `None`:
    /// only the phases are bounded.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub total: Option<Duration>,
}

fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

impl Timeouts {
    fn default_etcd() -> Duration {
        Duration::from_secs(60)
    }
    fn default_server() -> Duration {
        Duration::from_secs(180)
    }
    fn default_agent() -> Duration {
        Duration::from_secs(120)
    }
    fn default_api() -> Duration {
        Duration::from_secs(60)
    }

    /// Every phase, and the whole create, bounded by `timeout`.
    pub fn all(timeout: Duration) -> Self {
        Timeouts {
            etcd: timeout,
            server: timeout,
            agent: timeout,
            api: timeout,
            total: Some(timeout),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            etcd: Timeouts::default_etcd(),
            server: Timeouts::default_server(),
            agent: Timeouts::default_agent(),
            api: Timeouts::default_api(),
            total: None,
        }
    }
}

/// Parses a duration: `500ms`, `90s`, `3m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            format!("duration {s:?}"),
            "is not a duration",
            "write e.g. `90s`, `3m`, `500ms` or `1h`",
        )
    };
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(Error::invalid(
            format!("duration {s:?}"),
            "is zero",
            "give a positive duration",
        ));
    }
    Ok(d)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 90s or 3m")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Duration, E> {
            parse_duration(&v.to_string()).map_err(E::custom)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
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
    /// nested deeper than [`MAX_YAML_DEPTH`] or with aliases is refused
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

    /// Reads a spec from a YAML file of at most [`MAX_CONFIG_BYTES`]; see
    /// [`ClusterSpec::from_yaml`].
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = topgun_tls::read::bounded_text(path, MAX_CONFIG_BYTES)?;
        ClusterSpec::from_yaml(&text, path)
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
                if etcd.members == 0 || etcd.members > MAX_ETCD_MEMBERS {
                    return Err(Error::invalid(
                        format!("etcd member count {}", etcd.members),
                        format!("must be from 1 to {MAX_ETCD_MEMBERS}"),
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
    pub fn warnings(&self) -> Vec<String> {
        let mut out = topgun_tls::san_warnings(&self.tls_san.0);
        if self.api.host.is_unspecified() {
            out.push(format!(
                "the API is published on {}, reachable from every network of this host; the \
                 kubeconfig uses {}",
                self.api.host,
                self.api.dial_host()
            ));
        }
        if self.servers > 1 && !self.loadbalancer.enabled {
            out.push("no load balancer: the API and agents reach server-0 only".to_owned());
        }
        if let Datastore::Etcd(e) = &self.datastore
            && e.members % 2 == 0
        {
            out.push(format!(
                "{} etcd members tolerate no more failures than {}; use an odd count",
                e.members,
                e.members - 1
            ));
        }
        if let Datastore::External(ext) = &self.datastore
            && ext.endpoint.uses_loopback()
        {
            out.push(format!(
                "the datastore endpoint {} uses a loopback address, which inside a node container \
                 is the container itself; use an address the containers can reach",
                ext.endpoint
            ));
        }
        out
    }
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

/// The YAML parser's message. serde_norway puts "at line L column C" in it;
/// make sure it is there even when an error has only a location.
/// The largest config file topgun reads.
pub const MAX_CONFIG_BYTES: u64 = topgun_tls::read::MAX_CONFIG;
/// The deepest nesting a config file may have.
pub const MAX_YAML_DEPTH: usize = 32;

/// Refuses YAML that nests deeper than [`MAX_YAML_DEPTH`] (flow brackets or
/// indentation) or uses aliases (`*name`, which can expand exponentially):
/// checked on the text, before the parser sees it.
fn check_yaml_shape(text: &str) -> std::result::Result<(), String> {
    let mut depth: usize = 0;
    let mut quote: Option<char> = None;
    for (n, line) in text.lines().enumerate() {
        let content = line.trim_start();
        if quote.is_none() && (content.starts_with('#') || content.is_empty()) {
            continue;
        }
        let indent = (line.len() - content.len()) / 2;
        if indent > MAX_YAML_DEPTH {
            return Err(format!(
                "line {}: nested deeper than {MAX_YAML_DEPTH} levels",
                n + 1
            ));
        }
        let mut prev = ' ';
        for c in content.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') if prev == ' ' => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_YAML_DEPTH {
                        return Err(format!(
                            "line {}: nested deeper than {MAX_YAML_DEPTH} levels",
                            n + 1
                        ));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                (None, '*') if prev == ' ' || prev == '[' => {
                    return Err(format!(
                        "line {}: YAML aliases (`*name`) are not accepted in a config file; write \
                         the value out",
                        n + 1
                    ));
                }
                _ => {}
            }
            prev = c;
        }
        // Plain scalars do not continue quotes across lines in config files
        // topgun reads; a stray quote ends with its line.
        if quote == Some('\'') {
            quote = None;
        }
    }
    Ok(())
}

fn yaml_message(e: &serde_norway::Error) -> String {
    // The parser quotes the value it choked on: never a key, at most a
    // short excerpt.
    let message = topgun_tls::redact::parser_message(&e.to_string());
    match e.location() {
        Some(loc) if !message.contains("line") => {
            format!("line {} column {}: {message}", loc.line(), loc.column())
        }
        _ => message,
    }
}

/// Builds a [`ClusterSpec`] in code. Methods that parse text record the first
/// error; [`ClusterSpecBuilder::build`] returns it, or validates the spec.
///
/// ```
/// use topgun_core::spec::{ClusterSpec, Datastore};
///
/// let spec = ClusterSpec::builder("demo")
///     .servers(3)
///     .agents(2)
///     .datastore(Datastore::etcd(3))
///     .api("127.0.0.1:6550")
///     .tls_san("192.168.1.28")
///     .k3s_arg("--disable=traefik@server:*")
///     .build()?;
/// assert_eq!(spec.counts().etcd, 3);
/// # Ok::<(), topgun_core::Error>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct ClusterSpecBuilder {
    spec: ClusterSpec,
    error: Option<Error>,
}

impl ClusterSpecBuilder {
    fn new(name: &str) -> Self {
        let (name, error) = match ClusterName::new(name) {
            Ok(n) => (n, None),
            Err(e) => (ClusterName::unset(), Some(e)),
        };
        ClusterSpecBuilder {
            spec: ClusterSpec {
                name,
                servers: 1,
                agents: 0,
                image: None,
                datastore: Datastore::Embedded,
                api: ApiEndpoint::default(),
                tls_san: SanList::default(),
                token: None,
                k3s_args: Vec::new(),
                env: Vec::new(),
                volumes: Vec::new(),
                ports: Vec::new(),
                loadbalancer: LoadBalancerSpec::default(),
                network: NetworkSpec::default(),
                timeouts: Timeouts::default(),
                no_rollback: false,
                init: true,
                cgroupns: None,
                privileged: None,
            },
            error,
        }
    }

    fn record<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// Sets the number of servers.
    pub fn servers(mut self, n: u32) -> Self {
        self.spec.servers = n;
        self
    }

    /// Sets the number of agents.
    pub fn agents(mut self, n: u32) -> Self {
        self.spec.agents = n;
        self
    }

    /// Sets the k3s image.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.spec.image = Some(image.into());
        self
    }

    /// Sets the datastore.
    pub fn datastore(mut self, datastore: Datastore) -> Self {
        self.spec.datastore = datastore;
        self
    }

    /// Sets where the API is published, `[HOST:]PORT`.
    pub fn api(mut self, endpoint: &str) -> Self {
        if let Some(api) = self.record(ApiEndpoint::parse(endpoint)) {
            self.spec.api = api;
        }
        self
    }

    /// Adds SANs (a comma-separated list).
    pub fn tls_san(mut self, sans: &str) -> Self {
        if let Some(list) = self.record(SanList::parse(sans)) {
            self.spec.tls_san.0.extend(list);
        }
        self
    }

    /// Sets the token.
    pub fn token(mut self, token: &str) -> Self {
        self.spec.token = self.record(Token::new(token));
        self
    }

    /// Adds a k3s argument, `ARG[@FILTER]`.
    pub fn k3s_arg(mut self, arg: &str) -> Self {
        if let Some(a) = self.record(Filtered::parse(arg)) {
            self.spec.k3s_args.push(a);
        }
        self
    }

    /// Adds an environment variable, `KEY=VALUE[@FILTER]`.
    pub fn env(mut self, var: &str) -> Self {
        if let Some(v) = self.record(Filtered::parse(var)) {
            self.spec.env.push(v);
        }
        self
    }

    /// Adds a bind mount, `HOST:CONTAINER[:ro][@FILTER]`.
    pub fn volume(mut self, volume: &str) -> Self {
        if let Some(v) = self.record(Filtered::parse(volume)) {
            self.spec.volumes.push(v);
        }
        self
    }

    /// Adds a published port, `[IP:][HOST:]CONTAINER[/PROTO][@FILTER]`.
    pub fn port(mut self, port: &str) -> Self {
        if let Some(p) = self.record(Filtered::parse(port)) {
            self.spec.ports.push(p);
        }
        self
    }

    /// Turns the load balancer on or off.
    pub fn loadbalancer(mut self, enabled: bool) -> Self {
        self.spec.loadbalancer.enabled = enabled;
        self
    }

    /// Sets the load balancer image.
    pub fn loadbalancer_image(mut self, image: impl Into<String>) -> Self {
        self.spec.loadbalancer.image = Some(image.into());
        self
    }

    /// Sets the network subnet.
    pub fn subnet(mut self, subnet: &str) -> Self {
        self.spec.network.subnet = self.record(Subnet::parse(subnet));
        self
    }

    /// Sets the phase timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.spec.timeouts = timeouts;
        self
    }

    /// Keeps what was created when a create fails.
    pub fn no_rollback(mut self, no_rollback: bool) -> Self {
        self.spec.no_rollback = no_rollback;
        self
    }

    /// Runs k3s nodes with or without Docker's init process.
    pub fn init(mut self, init: bool) -> Self {
        self.spec.init = init;
        self
    }

    /// Sets the cgroup namespace mode of k3s nodes.
    pub fn cgroupns(mut self, mode: Option<CgroupnsMode>) -> Self {
        self.spec.cgroupns = mode;
        self
    }

    /// Runs k3s nodes privileged or not (`None`: decide automatically).
    pub fn privileged(mut self, privileged: Option<bool>) -> Self {
        self.spec.privileged = privileged;
        self
    }

    /// The spec, validated.
    pub fn build(self) -> Result<ClusterSpec> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.spec.validate()?;
        Ok(self.spec)
    }
}

#[cfg(test)]
mod tests;

/// A path for messages about in-memory YAML.
pub fn string_origin() -> PathBuf {
    PathBuf::from("<string>")
}
