//! Node filters (`ARG@FILTER`) and the values they select nodes for: k3s
//! arguments, environment variables, volumes and ports.
//!
//! The grammar:
//!
//! ```text
//! filters  = filter *( ";" filter )
//! filter   = "all" | "loadbalancer" | role [ ":" selector ]
//! role     = "server" | "agent" | "etcd"   (k3d's "servers", "agents" too)
//! selector = "*" | item *( "," item )
//! item     = N | N "-" M
//! ```
//!
//! `server` alone means `server:*`; `all` means every k3s node (servers and
//! agents). A value is split from its filter at the last `@`. k3d v5's
//! filters are this grammar; k3d v4's brackets (`server[0]`) and k3d's port
//! suffixes (`:direct`, `:proxy`) are refused with the form to write.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

/// The role of a node (container) in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A k3s server.
    Server,
    /// A k3s agent.
    Agent,
    /// An etcd member.
    Etcd,
    /// The load balancer in front of the servers.
    #[serde(rename = "loadbalancer")]
    LoadBalancer,
}

impl Role {
    /// The role's name as used in labels and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
            Role::Etcd => "etcd",
            Role::LoadBalancer => "loadbalancer",
        }
    }

    /// Parses a role name as used in labels.
    pub fn from_label(s: &str) -> Option<Role> {
        match s {
            "server" => Some(Role::Server),
            "agent" => Some(Role::Agent),
            "etcd" => Some(Role::Etcd),
            "loadbalancer" => Some(Role::LoadBalancer),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many nodes of each role a cluster has; filters are checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeCounts {
    /// k3s servers.
    pub servers: u32,
    /// k3s agents.
    pub agents: u32,
    /// etcd members (0 unless the datastore is topgun's etcd).
    pub etcd: u32,
    /// Whether there is a load balancer.
    pub loadbalancer: bool,
}

impl NodeCounts {
    /// How many nodes of `role` there are.
    pub fn count(&self, role: Role) -> u32 {
        match role {
            Role::Server => self.servers,
            Role::Agent => self.agents,
            Role::Etcd => self.etcd,
            Role::LoadBalancer => u32::from(self.loadbalancer),
        }
    }
}

/// Which indices of a role a filter selects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Indices {
    All,
    Ranges(Vec<(u32, u32)>),
}

/// One `;`-separated part of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    /// Every k3s node.
    All,
    Role(Role, Indices),
}

/// A parsed node filter such as `server:*`, `agent:0,2-3` or
/// `server:0;loadbalancer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFilter {
    text: String,
    selectors: Vec<Selector>,
}

impl NodeFilter {
    /// Parses a filter (without the leading `@`).
    pub fn parse(text: &str) -> Result<Self> {
        let what = || format!("node filter {text:?}");
        let fix = "use e.g. `server:*`, `server:0`, `agent:1,2`, `agent:0-2`, `etcd:*`, \
                   `loadbalancer` or `all`, joined with ';'";
        if text.is_empty() {
            return Err(Error::invalid(what(), "is empty", fix));
        }
        let mut selectors = Vec::new();
        for part in text.split(';') {
            if let Some((role, rest)) = part.split_once('[') {
                return Err(Error::invalid(
                    what(),
                    "uses k3d v4's brackets",
                    format!(
                        "write `{role}:{}` (k3d v5's form)",
                        rest.trim_end_matches(']')
                    ),
                ));
            }
            if let Some((head, suffix)) = part.rsplit_once(':')
                && head.contains(':')
                && matches!(suffix, "direct" | "proxy")
            {
                return Err(Error::invalid(
                    what(),
                    format!("has k3d's port suffix `:{suffix}`"),
                    format!(
                        "write `{head}` to publish a port on those nodes, or `loadbalancer` to \
                         publish it on the load balancer, which forwards it to every server and \
                         agent"
                    ),
                ));
            }
            let (role, sel) = match part.split_once(':') {
                Some((role, sel)) => (role, Some(sel)),
                None => (part, None),
            };
            let role = match role {
                "all" | "loadbalancer" if sel.is_some_and(|s| s != "*") => {
                    return Err(Error::invalid(
                        what(),
                        format!("`{role}` takes no index"),
                        format!("write `{role}`"),
                    ));
                }
                "all" => {
                    selectors.push(Selector::All);
                    continue;
                }
                "server" | "servers" => Role::Server,
                "agent" | "agents" => Role::Agent,
                "etcd" => Role::Etcd,
                "loadbalancer" => Role::LoadBalancer,
                "" => return Err(Error::invalid(what(), "has an empty part", fix)),
                other => {
                    let hint = match other {
                        "lb" | "serverlb" => "write `loadbalancer`".to_owned(),
                        _ => fix.to_owned(),
                    };
                    return Err(Error::invalid(
                        what(),
                        format!("has the unknown role {other:?}"),
                        hint,
                    ));
                }
            };
            let indices = match sel {
                None | Some("*") => Indices::All,
                Some(sel) => Indices::Ranges(
                    parse_ranges(sel).map_err(|problem| Error::invalid(what(), problem, fix))?,
                ),
            };
            selectors.push(Selector::Role(role, indices));
        }
        Ok(NodeFilter {
            text: text.to_owned(),
            selectors,
        })
    }

    /// The filter as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the filter selects node `index` of `role`.
    pub fn matches(&self, role: Role, index: u32) -> bool {
        self.selectors.iter().any(|s| match s {
            Selector::All => matches!(role, Role::Server | Role::Agent),
            Selector::Role(r, indices) => {
                *r == role
                    && match indices {
                        Indices::All => true,
                        Indices::Ranges(ranges) => {
                            ranges.iter().any(|(a, b)| (*a..=*b).contains(&index))
                        }
                    }
            }
        })
    }

    /// The roles the filter can select.
    fn roles(&self) -> Vec<Role> {
        let mut roles = Vec::new();
        for s in &self.selectors {
            match s {
                Selector::All => roles.extend([Role::Server, Role::Agent]),
                Selector::Role(r, _) => roles.push(*r),
            }
        }
        roles
    }

    /// Checks the filter against the cluster's shape: every index must exist,
    /// every role must be allowed for `what`, and something must match.
    pub fn check(&self, what: &str, allowed: &[Role], counts: &NodeCounts) -> Result<()> {
        let refuse = |problem: String, fix: String| {
            Err(Error::invalid(
                format!("node filter {:?} of {what}", self.text),
                problem,
                fix,
            ))
        };
        for role in self.roles() {
            if !allowed.contains(&role) {
                let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
                return refuse(
                    format!("{role} nodes cannot take it"),
                    format!("select {} nodes", names.join(" or ")),
                );
            }
        }
        for s in &self.selectors {
            if let Selector::Role(role, Indices::Ranges(ranges)) = s {
                let count = counts.count(*role);
                for (_, hi) in ranges {
                    if *hi >= count {
                        let have = match count {
                            0 => format!("the cluster has no {role} nodes"),
                            1 => format!("the cluster has one {role} node, index 0"),
                            n => format!("the cluster has {n} {role} nodes, indices 0-{}", n - 1),
                        };
                        return refuse(
                            format!("selects {role} {hi}, but {have}"),
                            "use an index that exists".to_owned(),
                        );
                    }
                }
            }
        }
        let any = [Role::Server, Role::Agent, Role::Etcd, Role::LoadBalancer]
            .into_iter()
            .any(|role| (0..counts.count(role)).any(|i| self.matches(role, i)));
        if !any {
            return refuse(
                "matches no node of this cluster".to_owned(),
                "select nodes that exist".to_owned(),
            );
        }
        Ok(())
    }
}

impl fmt::Display for NodeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_ranges(sel: &str) -> std::result::Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    for item in sel.split(',') {
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| format!("has {s:?} where an index (0, 1, ...) or `*` belongs"))
        };
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(item)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("has the backwards range {item:?}"));
        }
        out.push((lo, hi));
    }
    Ok(out)
}

/// Whether `suffix` (the text after the last `@`) is meant as a filter: a
/// lowercase word, optionally followed by `:` and more.
fn looks_like_filter(suffix: &str) -> bool {
    // `[` too: k3d v4's `server[0]` gets its hint rather than being taken
    // as part of the value.
    let head = suffix.split([':', ';', '[']).next().unwrap_or_default();
    !head.is_empty() && head.chars().all(|c| c.is_ascii_lowercase())
}

/// A value for some nodes: `VALUE[@FILTER]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered<T> {
    /// The value.
    pub value: T,
    /// The nodes it is for; `None` means the default for the kind of value.
    pub filter: Option<NodeFilter>,
}

impl<T: FilteredValue> Filtered<T> {
    /// Parses `VALUE[@FILTER]`, splitting at the last `@`.
    pub fn parse(input: &str) -> Result<Self> {
        if input.ends_with('@') {
            return Err(Error::invalid(
                format!("{} {}", T::WHAT, T::shown(input)),
                "ends with '@' but names no nodes",
                format!(
                    "add a filter after '@' (e.g. `@{}`), or remove the '@'",
                    T::DEFAULT_FILTER_HINT
                ),
            ));
        }
        let (value, filter) = match input.rsplit_once('@') {
            Some((value, suffix)) if looks_like_filter(suffix) => {
                let filter = NodeFilter::parse(suffix).map_err(|e| match e {
                    Error::InvalidSpec { what, problem, fix } => Error::invalid(
                        format!("{what} in {} {}", T::WHAT, T::shown(input)),
                        problem,
                        format!(
                            "{fix} (if '@' is part of the value, end it with a filter, e.g. `@{}`)",
                            T::DEFAULT_FILTER_HINT
                        ),
                    ),
                    other => other,
                })?;
                (value, Some(filter))
            }
            _ => (input, None),
        };
        Ok(Filtered {
            value: T::parse_value(value)?,
            filter,
        })
    }
}

impl<'de, T: FilteredValue> Deserialize<'de> for Filtered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::spec::de_parsed(d, Filtered::parse)
    }
}

/// A kind of value that takes a node filter.
pub trait FilteredValue: Sized {
    /// What it is called in messages, e.g. `k3s argument`.
    const WHAT: &'static str;
    /// A filter to suggest in messages.
    const DEFAULT_FILTER_HINT: &'static str;
    /// The roles it can be given to.
    const ALLOWED: &'static [Role];
    /// Parses the value part.
    fn parse_value(s: &str) -> Result<Self>;

    /// `VALUE[@FILTER]` as messages quote it: the whole input by default.
    fn shown(input: &str) -> String {
        format!("{input:?}")
    }
}

/// Flags that topgun sets itself, with the option to use instead.
const RESERVED_FLAGS: &[(&str, &str)] = &[
    (
        "--cluster-init",
        "topgun sets it on server-0 of an embedded multi-server cluster",
    ),
    ("--server", "topgun sets K3S_URL itself"),
    ("--token", "use the `token` option (--token)"),
    ("--token-file", "use the `token` option (--token)"),
    ("--agent-token", "use the `token` option (--token)"),
    (
        "--datastore-endpoint",
        "use `--datastore-endpoint` of topgun itself, not a k3s argument",
    ),
    (
        "--datastore-cafile",
        "use `--datastore-cafile` of topgun itself",
    ),
    (
        "--datastore-certfile",
        "use `--datastore-certfile` of topgun itself",
    ),
    (
        "--datastore-keyfile",
        "use `--datastore-keyfile` of topgun itself",
    ),
    (
        "--https-listen-port",
        "the load balancer and health checks expect 6443",
    ),
    (
        "--write-kubeconfig",
        "topgun reads the kubeconfig through K3S_KUBECONFIG_OUTPUT",
    ),
    (
        "--node-name",
        "node names come from the hostname topgun sets",
    ),
];

/// One extra argument for the k3s command line, such as `--disable=traefik`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3sArg(pub String);

impl fmt::Display for K3sArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FilteredValue for K3sArg {
    const WHAT: &'static str = "k3s argument";
    const DEFAULT_FILTER_HINT: &'static str = "server:*";
    const ALLOWED: &'static [Role] = &[Role::Server, Role::Agent];

    fn parse_value(s: &str) -> Result<Self> {
        let what = || format!("k3s argument {s:?}");
        if s.is_empty() {
            return Err(Error::invalid(what(), "is empty", "remove it"));
        }
        let words: Vec<&str> = s.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| *w == "k3s" || *w == "server" || *w == "agent")
        {
            let rest: Vec<&str> = words
                .iter()
                .copied()
                .skip_while(|w| !w.starts_with('-'))
                .collect();
            return Err(Error::invalid(
                what(),
                "is a whole command line; topgun runs k3s itself",
                format!(
                    "pass only the flags, one per --k3s-arg, e.g. `{}`",
                    join_flag(&rest)
                ),
            ));
        }
        if words.len() > 1 {
            let fix = if words.len() == 2 && words[0].starts_with('-') {
                format!("write it as one argument: `{}={}`", words[0], words[1])
            } else {
                "pass one argument per --k3s-arg".to_owned()
            };
            return Err(Error::invalid(what(), "contains whitespace", fix));
        }
        if s != s.trim() {
            return Err(Error::invalid(
                what(),
                "has surrounding whitespace",
                format!("pass `{}`", s.trim()),
            ));
        }
        let flag = s.split('=').next().unwrap_or(s);
        if let Some((_, why)) = RESERVED_FLAGS.iter().find(|(f, _)| *f == flag) {
            return Err(Error::invalid(
                what(),
                format!("sets {flag}, which topgun manages"),
                *why,
            ));
        }
        if flag == "--tls-san" {
            return Err(Error::invalid(
                what(),
                "sets --tls-san through a k3s argument",
                "use topgun's --tls-san option: topgun validates it and adds the API host and load balancer",
            ));
        }
        Ok(K3sArg(s.to_owned()))
    }
}

fn join_flag(words: &[&str]) -> String {
    match words {
        [flag, value, ..] if !value.starts_with('-') => {
            format!("{flag}={}", value.trim_matches(|c| c == '"' || c == '\''))
        }
        [flag, ..] => (*flag).to_owned(),
        [] => "--flag=value".to_owned(),
    }
}

/// Environment variables topgun sets itself.
const RESERVED_ENV: &[&str] = &[
    "K3S_TOKEN",
    "K3S_TOKEN_FILE",
    "K3S_AGENT_TOKEN",
    "K3S_URL",
    "K3S_KUBECONFIG_OUTPUT",
    "K3S_KUBECONFIG_MODE",
    "K3S_CLUSTER_INIT",
];

/// An environment variable, `KEY=VALUE`. The value may be secret: it is never
/// logged or shown in errors.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The name.
    pub key: String,
    /// The value.
    pub value: String,
}

impl fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvVar({}=<redacted>)", self.key)
    }
}

/// `KEY=VALUE`, the form [`FilteredValue::parse_value`] reads. The value may
/// be a secret: this is for the cluster record, never for messages.
impl fmt::Display for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

impl FilteredValue for EnvVar {
    const WHAT: &'static str = "environment variable";
    const DEFAULT_FILTER_HINT: &'static str = "all";
    const ALLOWED: &'static [Role] = &[Role::Server, Role::Agent, Role::Etcd, Role::LoadBalancer];

    /// The name only: the value may be a secret (`KEY=…@FILTER`).
    fn shown(input: &str) -> String {
        let filter = input
            .rsplit_once('@')
            .map(|(_, f)| f)
            .filter(|f| looks_like_filter(f))
            .map_or(String::new(), |f| format!("@{f}"));
        match input.split_once('=') {
            Some((key, _)) => format!("{:?}", format!("{key}=…{filter}")),
            None => format!("{input:?}"),
        }
    }

    fn parse_value(s: &str) -> Result<Self> {
        let Some((key, value)) = s.split_once('=') else {
            let key = s.split_whitespace().next().unwrap_or_default();
            return Err(Error::invalid(
                format!("environment variable {key:?}"),
                "has no '='",
                "write KEY=VALUE",
            ));
        };
        let what = || format!("environment variable {key:?}");
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::invalid(
                what(),
                "is not a valid name",
                "use letters, digits and '_', not starting with a digit",
            ));
        }
        if RESERVED_ENV.contains(&key) || key.starts_with("K3S_DATASTORE_") {
            return Err(Error::invalid(
                what(),
                "is set by topgun",
                "use the matching topgun option (token, datastore) instead",
            ));
        }
        Ok(EnvVar {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// A bind mount, `HOST_PATH:CONTAINER_PATH[:ro|:rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The absolute host path.
    pub source: PathBuf,
    /// The absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// `HOST:CONTAINER[:ro]`, the form [`FilteredValue::parse_value`] reads.
impl fmt::Display for VolumeMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source.display(), self.target)?;
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

impl FilteredValue for VolumeMount {
    const WHAT: &'static str = "volume";
    const DEFAULT_FILTER_HINT: &'static str = "all";
    const ALLOWED: &'static [Role] = &[Role::Server, Role::Agent, Role::Etcd, Role::LoadBalancer];

    fn parse_value(s: &str) -> Result<Self> {
        let what = || format!("volume {s:?}");
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [src, dst] => (*src, *dst, None),
            [src, dst, mode] => (*src, *dst, Some(*mode)),
            _ => {
                return Err(Error::invalid(
                    what(),
                    "is not HOST_PATH:CONTAINER_PATH[:ro]",
                    "write e.g. `/srv/manifests:/var/lib/rancher/k3s/server/manifests:ro`",
                ));
            }
        };
        if !source.starts_with('/') {
            return Err(Error::invalid(
                what(),
                format!("has the source {source:?}, which is not an absolute host path"),
                "give an absolute path (e.g. `$PWD/dir`); topgun creates and labels node volumes itself",
            ));
        }
        if !target.starts_with('/') {
            return Err(Error::invalid(
                what(),
                format!("has the target {target:?}, which is not an absolute path"),
                "give an absolute container path",
            ));
        }
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => {
                return Err(Error::invalid(
                    what(),
                    format!("has the unknown mode {other:?}"),
                    "use `ro` or `rw`",
                ));
            }
        };
        Ok(VolumeMount {
            source: PathBuf::from(source),
            target: target.to_owned(),
            read_only,
        })
    }
}

/// A transport protocol for a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A published port, `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`. The
/// host IP defaults to 127.0.0.1; a missing host port means a free one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// The host address to bind.
    pub host_ip: IpAddr,
    /// The host port; `None` lets Docker pick a free one.
    pub host_port: Option<u16>,
    /// The port inside the container.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// Parses a port number in 1..=65535 with a clear error.
pub(crate) fn parse_port(what: &str, s: &str) -> Result<u16> {
    let what = || format!("{what} {s:?}");
    let n: u64 = s.parse().map_err(|_| {
        Error::invalid(
            what(),
            "is not a port number",
            "give a number from 1 to 65535",
        )
    })?;
    match n {
        0 => Err(Error::invalid(
            what(),
            "is port 0, which is not a port",
            "give a number from 1 to 65535, or leave the port out to get a free one",
        )),
        1..=65535 => Ok(n as u16),
        _ => Err(Error::invalid(
            what(),
            "is out of range",
            "give a number from 1 to 65535",
        )),
    }
}

/// `IP:[HOST:]CONTAINER/PROTO` (IPv6 in brackets), the form
/// [`FilteredValue::parse_value`] reads.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            IpAddr::V6(ip) => write!(f, "[{ip}]:")?,
            IpAddr::V4(ip) => write!(f, "{ip}:")?,
        }
        if let Some(port) = self.host_port {
            write!(f, "{port}")?;
        }
        write!(f, ":{}/{}", self.container_port, self.protocol.as_str())
    }
}

impl FilteredValue for PortMapping {
    const WHAT: &'static str = "port";
    const DEFAULT_FILTER_HINT: &'static str = "loadbalancer";
    const ALLOWED: &'static [Role] = &[Role::Server, Role::Agent, Role::LoadBalancer];

    fn parse_value(s: &str) -> Result<Self> {
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some((_, other)) => {
                return Err(Error::invalid(
                    format!("port {s:?}"),
                    format!("has the unknown protocol {other:?}"),
                    "use /tcp or /udp",
                ));
            }
            None => (s, Protocol::Tcp),
        };
        // An IPv6 host is written in brackets: [::1]:8080:80.
        let (host_ip, rest) = if let Some(inner) = rest.strip_prefix('[') {
            let Some((ip, after)) = inner.split_once("]:") else {
                return Err(Error::invalid(
                    format!("port {s:?}"),
                    "has an unclosed '['",
                    "write `[::1]:8080:80`",
                ));
            };
            (Some(parse_ip("port", ip)?), after)
        } else {
            (None, rest)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (host_ip, host_port, container) = match (host_ip, parts.as_slice()) {
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [ip, h, c]) => (
                Some(parse_ip("port", ip)?),
                (!h.is_empty()).then_some(*h),
                *c,
            ),
            (Some(ip), [h, c]) => (Some(ip), (!h.is_empty()).then_some(*h), *c),
            (Some(ip), [c]) => (Some(ip), None, *c),
            _ => {
                return Err(Error::invalid(
                    format!("port {s:?}"),
                    "is not [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]",
                    "write e.g. `8080:80` or `127.0.0.1:8080:80/tcp`",
                ));
            }
        };
        Ok(PortMapping {
            host_ip: host_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            host_port: host_port.map(|p| parse_port("host port", p)).transpose()?,
            container_port: parse_port("container port", container)?,
            protocol,
        })
    }
}

fn parse_ip(what: &str, s: &str) -> Result<IpAddr> {
    IpAddr::from_str(s).map_err(|_| {
        Error::invalid(
            format!("{what} host {s:?}"),
            "is not an IP address",
            "give an IPv4 or IPv6 address, e.g. 127.0.0.1",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: NodeCounts = NodeCounts {
        servers: 3,
        agents: 2,
        etcd: 3,
        loadbalancer: true,
    };

    #[test]
    fn filters_select_the_right_nodes() {
        type Case<'a> = (&'a str, &'a [(Role, u32)], &'a [(Role, u32)]);
        let cases: &[Case<'_>] = &[
            (
                "server:*",
                &[(Role::Server, 0), (Role::Server, 2)],
                &[(Role::Agent, 0)],
            ),
            ("server", &[(Role::Server, 1)], &[(Role::Etcd, 0)]),
            ("server:0", &[(Role::Server, 0)], &[(Role::Server, 1)]),
            (
                "agent:1,2",
                &[(Role::Agent, 1), (Role::Agent, 2)],
                &[(Role::Agent, 0)],
            ),
            (
                "agent:0-1",
                &[(Role::Agent, 0), (Role::Agent, 1)],
                &[(Role::Agent, 2)],
            ),
            (
                "all",
                &[(Role::Server, 0), (Role::Agent, 1)],
                &[(Role::Etcd, 0), (Role::LoadBalancer, 0)],
            ),
            (
                "loadbalancer",
                &[(Role::LoadBalancer, 0)],
                &[(Role::Server, 0)],
            ),
            ("etcd:*", &[(Role::Etcd, 2)], &[(Role::Server, 0)]),
            // k3d's plural forms.
            (
                "servers:*",
                &[(Role::Server, 0), (Role::Server, 2)],
                &[(Role::Agent, 0)],
            ),
            ("agents:1", &[(Role::Agent, 1)], &[(Role::Agent, 0)]),
            (
                "server:0;agent:*",
                &[(Role::Server, 0), (Role::Agent, 1)],
                &[(Role::Server, 1)],
            ),
        ];
        for (text, yes, no) in cases {
            let f = NodeFilter::parse(text).unwrap();
            for (role, i) in *yes {
                assert!(f.matches(*role, *i), "{text} should match {role}:{i}");
            }
            for (role, i) in *no {
                assert!(!f.matches(*role, *i), "{text} should not match {role}:{i}");
            }
        }
    }

    #[test]
    fn bad_filters_are_refused_with_the_fix() {
        let cases = [
            ("", "is empty"),
            ("servr:0", "unknown role \"servr\""),
            ("server[0]", "write `server:0` (k3d v5's form)"),
            ("agent[*]", "write `agent:*`"),
            (
                "server:0:direct",
                "write `server:0` to publish a port on those nodes",
            ),
            ("agents:*:proxy", "k3d's port suffix `:proxy`"),
            ("lb", "write `loadbalancer`"),
            ("server:x", "where an index"),
            ("server:2-1", "backwards range"),
            ("server:", "where an index"),
            ("loadbalancer:0", "takes no index"),
            ("server:0;", "empty part"),
        ];
        for (text, expected) in cases {
            let err = NodeFilter::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn filters_are_checked_against_the_cluster() {
        let check = |text: &str, allowed: &[Role]| {
            NodeFilter::parse(text)
                .unwrap()
                .check("x", allowed, &COUNTS)
        };
        let all = [Role::Server, Role::Agent, Role::Etcd, Role::LoadBalancer];
        assert!(check("server:2", &all).is_ok());
        let err = check("server:3", &all).unwrap_err().to_string();
        assert!(
            err.contains("selects server 3, but the cluster has 3 server nodes, indices 0-2"),
            "{err}"
        );
        let err = check("etcd:0", K3sArg::ALLOWED).unwrap_err().to_string();
        assert!(err.contains("etcd nodes cannot take it"), "{err}");
        let none = NodeCounts {
            agents: 0,
            ..COUNTS
        };
        let err = NodeFilter::parse("agent:*")
            .unwrap()
            .check("x", &all, &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("matches no node"), "{err}");
    }

    #[test]
    fn values_split_at_the_last_at_sign() {
        let f = Filtered::<EnvVar>::parse("EMAIL=a@b.example@server:0").unwrap();
        assert_eq!(f.value.value, "a@b.example");
        assert_eq!(f.filter.unwrap().as_str(), "server:0");
        let f = Filtered::<EnvVar>::parse("EMAIL=a@b.example").unwrap();
        assert_eq!(f.value.value, "a@b.example");
        assert!(f.filter.is_none());
        // k3d v4's brackets are a filter with a hint, not part of the value.
        let err = Filtered::<EnvVar>::parse("FOO=bar@server[0]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("write `server:0`"), "{err}");
        let err = Filtered::<K3sArg>::parse("--disable=traefik@servr:0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown role"), "{err}");
    }

    #[test]
    fn k3s_args_are_checked() {
        let ok = [
            "--disable=traefik",
            "--node-label=a=b",
            "--kubelet-arg=eviction-hard=imagefs.available<1%",
        ];
        for arg in ok {
            K3sArg::parse_value(arg).unwrap();
        }
        let cases = [
            (
                "k3s server --tls-san \"alien.io\"",
                "pass only the flags, one per --k3s-arg, e.g. `--tls-san=alien.io`",
            ),
            ("--disable traefik", "`--disable=traefik`"),
            ("--cluster-init", "which topgun manages"),
            ("--datastore-endpoint=postgres://x", "which topgun manages"),
            ("--tls-san=foo", "use topgun's --tls-san option"),
            ("", "is empty"),
        ];
        for (arg, expected) in cases {
            let err = K3sArg::parse_value(arg).unwrap_err().to_string();
            assert!(err.contains(expected), "{arg:?}: {err}");
        }
    }

    #[test]
    fn env_vars_are_checked_and_never_shown() {
        let v = EnvVar::parse_value("HTTP_PROXY=http://u:secret@proxy:3128").unwrap();
        assert!(!format!("{v:?}").contains("secret"));
        for (input, expected) in [
            ("NOVALUE", "has no '='"),
            ("1X=2", "not a valid name"),
            ("K3S_TOKEN=abc", "set by topgun"),
            ("K3S_DATASTORE_ENDPOINT=x", "set by topgun"),
        ] {
            let err = EnvVar::parse_value(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
            assert!(!err.contains("abc"));
        }
    }

    #[test]
    fn volumes_are_checked() {
        let v =
            VolumeMount::parse_value("/srv/m:/var/lib/rancher/k3s/server/manifests:ro").unwrap();
        assert!(v.read_only);
        for (input, expected) in [
            ("rel:/x", "not an absolute host path"),
            ("/a:rel", "not an absolute path"),
            ("/a:/b:rx", "unknown mode"),
            ("/a", "is not HOST_PATH:CONTAINER_PATH"),
        ] {
            let err = VolumeMount::parse_value(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn ports_are_checked() {
        let p = PortMapping::parse_value("8080:80").unwrap();
        assert_eq!(
            (
                p.host_ip.to_string().as_str(),
                p.host_port,
                p.container_port
            ),
            ("127.0.0.1", Some(8080), 80)
        );
        let p = PortMapping::parse_value("0.0.0.0:8443:443/udp").unwrap();
        assert_eq!(
            (p.host_ip.to_string().as_str(), p.protocol),
            ("0.0.0.0", Protocol::Udp)
        );
        let p = PortMapping::parse_value("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip.to_string(), "::1");
        let p = PortMapping::parse_value("80").unwrap();
        assert_eq!(p.host_port, None);
        for (input, expected) in [
            ("0:80", "port 0"),
            ("8080:70000", "out of range"),
            ("8080:http", "not a port number"),
            ("80/sctp", "unknown protocol"),
            ("a.b:1:2", "not an IP address"),
            ("1:2:3:4", "is not [HOST_IP:]"),
        ] {
            let err = PortMapping::parse_value(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    /// Found by `tests/fuzz.rs` (core::Filtered::parse(secrets)): errors
    /// quoted the whole `VALUE@FILTER`, so a key pasted as a value was shown,
    /// and so was an environment value (which may be a secret) before a
    /// filter that does not parse.
    #[test]
    fn fuzz_regression_errors_show_no_keys_and_no_env_values() {
        let key = "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n";
        for input in [
            key.to_owned(),
            format!("{key}@ro"),
            format!("--x={key}@server:9"),
        ] {
            for m in [
                Filtered::<K3sArg>::parse(&input).unwrap_err().to_string(),
                Filtered::<VolumeMount>::parse(&input)
                    .unwrap_err()
                    .to_string(),
                Filtered::<PortMapping>::parse(&input)
                    .unwrap_err()
                    .to_string(),
            ] {
                assert!(!m.contains("AAAAAAAA") && m.contains("not shown"), "{m}");
            }
        }
        let m = Filtered::<EnvVar>::parse("DB_PASSWORD=sEcReT123@servrs")
            .unwrap_err()
            .to_string();
        assert!(!m.contains("sEcReT123"), "{m}");
        assert!(
            m.contains("\"DB_PASSWORD=…@servrs\"") && m.contains("unknown role"),
            "{m}"
        );
        let m = Filtered::<EnvVar>::parse("DB_PASSWORD=sEcReT123@")
            .unwrap_err()
            .to_string();
        assert!(
            !m.contains("sEcReT123") && m.contains("names no nodes"),
            "{m}"
        );
        let m = Filtered::<EnvVar>::parse(&format!("TLS_KEY={key}@agent:x"))
            .unwrap_err()
            .to_string();
        assert!(!m.contains("AAAAAAAA"), "{m}");
    }
}
