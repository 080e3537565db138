//! k3d's config files (`apiVersion: k3d.io/v1alpha5`, `kind: Simple`), read
//! as topgun's own.
//!
//! Pure: the k3d file is read into serde types that know every v1alpha5
//! field (unknown ones are refused with their line), then turned into
//! topgun's own YAML ([`convert`]), which [`super::ClusterSpec::from_yaml`]
//! reads like any other config. A k3d field topgun cannot honour is refused
//! with its line, the reason and what to do instead; nothing is ignored
//! silently: what maps with a difference leaves a note. docs/k3d-config.md
//! has the table of every field.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use serde_norway::{Mapping, Value};

use super::filter::{FilteredValue, NodeFilter, Role};
use super::yaml::yaml_message;
use super::{ClusterName, EnvVar, K3sArg, PortMapping, SanList, Subnet, Token, VolumeMount};
use super::{de_parsed, filter};
use crate::{Error, Result};

/// The one k3d config version topgun reads.
pub(crate) const API_VERSION: &str = "k3d.io/v1alpha5";

/// k3d's own default cluster name.
const K3D_DEFAULT_NAME: &str = "k3s-default";

/// What a config file is, by its `apiVersion` and `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigKind {
    /// topgun's own config (no `apiVersion`, no `kind`).
    Topgun,
    /// A k3d v1alpha5 `Simple` config.
    K3d,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<Value>,
    #[serde(default)]
    kind: Option<Value>,
}

/// Tells topgun's config from k3d's. Anything that is not a mapping is left
/// to topgun's own reader, whose message names the problem.
pub(crate) fn detect(text: &str, origin: &Path) -> Result<ConfigKind> {
    let Ok(head) = serde_norway::from_str::<Head>(text) else {
        return Ok(ConfigKind::Topgun);
    };
    let fail = |key: &str, message: String| {
        let message = match line_of_key(text, key) {
            Some(n) => format!("line {n}: {message}"),
            None => message,
        };
        Err(Error::Config {
            path: origin.to_owned(),
            message,
        })
    };
    let text_of = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_owned);
    match (&head.api_version, &head.kind) {
        (None, None) => Ok(ConfigKind::Topgun),
        (None, Some(_)) => fail(
            "kind",
            format!(
                "`kind` without `apiVersion`: topgun's own config has neither, a k3d config has \
                 both (`apiVersion: {API_VERSION}`, `kind: Simple`)"
            ),
        ),
        (Some(_), _) => {
            let version = text_of(&head.api_version).unwrap_or_default();
            if version != API_VERSION {
                let message = if version.starts_with("k3d.io/") {
                    format!(
                        "apiVersion {version:?} is an older k3d config version; topgun reads \
                         {API_VERSION}: convert the file with `k3d config migrate FILE NEW_FILE` \
                         first"
                    )
                } else {
                    format!(
                        "apiVersion {version:?} is not a config topgun reads: topgun's own config \
                         has no apiVersion, and k3d's has `apiVersion: {API_VERSION}`"
                    )
                };
                return fail("apiVersion", message);
            }
            match text_of(&head.kind).as_deref() {
                Some("Simple") => Ok(ConfigKind::K3d),
                Some(kind) => fail(
                    "kind",
                    format!(
                        "kind {kind:?}: topgun reads k3d's `kind: Simple` config only (the other \
                         kinds are k3d's internal forms)"
                    ),
                ),
                None => fail(
                    "apiVersion",
                    "a k3d config needs `kind: Simple` beside its apiVersion".to_owned(),
                ),
            }
        }
    }
}

/// The 1-based line of a top-level `key:`.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let prefix = format!("{key}:");
    text.lines()
        .position(|l| l.starts_with(&prefix))
        .map(|n| n + 1)
}

/// The 1-based line of the first line from line `from` on (1-based) that
/// holds `needle` outside a comment.
fn line_of(text: &str, from: usize, needle: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            let content = l.split(" #").next().unwrap_or(l);
            !l.trim_start().starts_with('#') && content.contains(needle)
        })
        .map(|(n, _)| n + 1)
}

// ---------------------------------------------------------------------------
// k3d v1alpha5 `kind: Simple`, every field.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Refused fields are checked while parsing and never read.
#[allow(dead_code)]
struct Simple {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    servers: Option<u32>,
    #[serde(default)]
    agents: Option<u32>,
    #[serde(default, rename = "kubeAPI")]
    kube_api: KubeApi,
    #[serde(default)]
    image: Option<String>,
    #[serde(default, deserialize_with = "refuse_network")]
    network: (),
    #[serde(default, deserialize_with = "de_subnet")]
    subnet: Option<Subnet>,
    #[serde(default)]
    token: Option<Token>,
    #[serde(default)]
    volumes: Vec<VolumeItem>,
    #[serde(default)]
    ports: Vec<PortItem>,
    #[serde(default)]
    env: Vec<EnvItem>,
    #[serde(default, deserialize_with = "refuse_files")]
    files: (),
    #[serde(default, deserialize_with = "refuse_manifests")]
    manifests: (),
    #[serde(default)]
    registries: Registries,
    #[serde(default, deserialize_with = "refuse_host_aliases")]
    host_aliases: (),
    #[serde(default)]
    options: Options,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    name: Option<ClusterName>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KubeApi {
    #[serde(default, deserialize_with = "de_api_host")]
    host: Option<ApiHost>,
    #[serde(default, rename = "hostIP", deserialize_with = "de_ip")]
    host_ip: Option<IpAddr>,
    #[serde(default, deserialize_with = "de_port")]
    host_port: Option<u16>,
}

/// `kubeAPI.host`: an address, or a name for the certificate.
enum ApiHost {
    Ip(IpAddr),
    Name(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VolumeItem {
    #[serde(deserialize_with = "de_volume")]
    volume: VolumeMount,
    #[serde(default)]
    node_filters: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PortItem {
    #[serde(deserialize_with = "de_k3d_port")]
    port: K3dPort,
    #[serde(default)]
    node_filters: Vec<String>,
}

/// A port as k3d writes it, and whether it named a host address.
struct K3dPort {
    raw: String,
    mapping: PortMapping,
    has_host_ip: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvItem {
    #[serde(deserialize_with = "de_env")]
    env_var: EnvVar,
    #[serde(default)]
    node_filters: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Registries {
    #[serde(default)]
    create: Option<RegistryCreate>,
    #[serde(default, rename = "use")]
    use_: Vec<RegistryUse>,
    #[serde(default, deserialize_with = "de_registry_config")]
    config: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Refused fields are checked while parsing and never read.
#[allow(dead_code)]
struct RegistryCreate {
    #[serde(default, deserialize_with = "de_registry_name")]
    name: Option<String>,
    #[serde(default, deserialize_with = "de_registry_host")]
    host: Option<IpAddr>,
    #[serde(default, deserialize_with = "de_port")]
    host_port: Option<u16>,
    #[serde(default, deserialize_with = "de_registry_image")]
    image: Option<String>,
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "refuse_registry_proxy")]
    proxy: (),
    #[serde(default, deserialize_with = "refuse_registry_volumes")]
    volumes: (),
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Refused fields are checked while parsing and never read.
#[allow(dead_code)]
struct Options {
    #[serde(default)]
    k3d: K3dOptions,
    #[serde(default)]
    k3s: K3sOptions,
    #[serde(default)]
    kubeconfig: KubeconfigOptions,
    #[serde(default)]
    runtime: RuntimeOptions,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Refused fields are checked while parsing and never read.
#[allow(dead_code)]
struct K3dOptions {
    #[serde(default)]
    wait: Option<bool>,
    #[serde(default, deserialize_with = "de_go_duration")]
    timeout: Option<u64>,
    #[serde(default)]
    disable_loadbalancer: bool,
    #[serde(default)]
    disable_image_volume: bool,
    #[serde(default)]
    disable_rollback: bool,
    #[serde(default, deserialize_with = "refuse_node_hook_actions")]
    node_hook_actions: (),
    #[serde(default)]
    loadbalancer: LoadbalancerOptions,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Refused fields are checked while parsing and never read.
#[allow(dead_code)]
struct LoadbalancerOptions {
    #[serde(default, deserialize_with = "refuse_config_overrides")]
    config_overrides: (),
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct K3sOptions {
    #[serde(default)]
    extra_args: Vec<ArgItem>,
    #[serde(default)]
    node_labels: Vec<LabelItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ArgItem {
    #[serde(deserialize_with = "de_k3s_arg")]
    arg: K3dArg,
    #[serde(default)]
    node_filters: Vec<String>,
}

/// A k3s argument from k3d: `--tls-san` becomes topgun's own `tls-san`.
enum K3dArg {
    TlsSan(String),
    Arg(K3sArg),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LabelItem {
    #[serde(deserialize_with = "de_node_label")]
    label: String,
    #[serde(default)]
    node_filters: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KubeconfigOptions {
    #[serde(default)]
    update_default_kubeconfig: Option<bool>,
    #[serde(default)]
    switch_current_context: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Refused fields are checked while parsing and never read.
#[allow(dead_code)]
struct RuntimeOptions {
    #[serde(default, deserialize_with = "refuse_gpu_request")]
    gpu_request: (),
    #[serde(default, deserialize_with = "refuse_servers_memory")]
    servers_memory: (),
    #[serde(default, deserialize_with = "refuse_agents_memory")]
    agents_memory: (),
    #[serde(default, deserialize_with = "refuse_host_pid_mode")]
    host_pid_mode: (),
    #[serde(default, deserialize_with = "refuse_runtime_labels")]
    labels: (),
    #[serde(default, deserialize_with = "refuse_ulimits")]
    ulimits: (),
}

// ---------------------------------------------------------------------------
// Fields topgun refuses unless they are empty (or false): each names itself,
// says why and what to do; serde_norway adds the line.

/// Whether a value asks for nothing: null, false, "", [] or a mapping of
/// such values (k3d writes defaults out in full).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Sequence(s) => s.is_empty(),
        Value::Mapping(m) => m.values().all(is_empty),
        Value::Number(_) => false,
        Value::Tagged(t) => is_empty(&t.value),
    }
}

/// Refuses a field unless its value asks for nothing. The error is raised
/// inside the visitor, while the parser is at the value, so that it carries
/// the value's line.
fn refuse<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
    why: &'static str,
    fix: &'static str,
) -> std::result::Result<(), D::Error> {
    struct Refuse {
        field: &'static str,
        why: &'static str,
        fix: &'static str,
    }
    impl Refuse {
        fn err<E: de::Error>(&self) -> E {
            E::custom(format!(
                "k3d's `{}` is not supported by topgun: {}; {}",
                self.field, self.why, self.fix
            ))
        }
    }
    impl<'de> Visitor<'de> for Refuse {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("nothing")
        }
        fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_none<E: de::Error>(self) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<(), E> {
            if v { Err(self.err()) } else { Ok(()) }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<(), E> {
            if v.is_empty() {
                Ok(())
            } else {
                Err(self.err())
            }
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<(), E> {
            Err(self.err())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<(), E> {
            Err(self.err())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<(), E> {
            Err(self.err())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            match seq.next_element::<de::IgnoredAny>()? {
                None => Ok(()),
                Some(_) => Err(self.err()),
            }
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            while let Some((_, value)) = map.next_entry::<de::IgnoredAny, Value>()? {
                if !is_empty(&value) {
                    return Err(self.err());
                }
            }
            Ok(())
        }
    }
    d.deserialize_any(Refuse { field, why, fix })
}

macro_rules! refused {
    ($name:ident, $field:literal, $why:literal, $fix:literal) => {
        fn $name<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<(), D::Error> {
            refuse(d, $field, $why, $fix)
        }
    };
}

refused!(
    refuse_network,
    "network",
    "topgun makes a labelled network for each cluster (with static node addresses) and removes \
     it on delete; it does not join an existing one",
    "remove it (`subnet` chooses the addresses), and `docker network connect` other containers \
     to the cluster's network after the create"
);
refused!(
    refuse_files,
    "files",
    "topgun copies no files into nodes",
    "put them on the host and mount them with `volumes` (e.g. a directory onto \
     /var/lib/rancher/k3s/server/manifests/custom@server:*)"
);
refused!(
    refuse_manifests,
    "manifests",
    "topgun copies no manifests into nodes",
    "put them on the host and mount the directory with `volumes` onto \
     /var/lib/rancher/k3s/server/manifests/custom (node filter server:*)"
);
refused!(
    refuse_host_aliases,
    "hostAliases",
    "topgun writes no /etc/hosts entries into nodes and does not edit CoreDNS's NodeHosts",
    "remove it and resolve the names through DNS, or add them to CoreDNS (the `coredns-custom` \
     ConfigMap) after the create"
);
refused!(
    refuse_registry_proxy,
    "registries.create.proxy",
    "topgun's registries are plain registries, not pull-through caches",
    "remove it, and push the images the cluster needs to the registry (or mirror docker.io in \
     `registries.config`)"
);
refused!(
    refuse_registry_volumes,
    "registries.create.volumes",
    "topgun keeps a registry's data in a labelled named volume of its own",
    "remove it"
);
refused!(
    refuse_node_hook_actions,
    "options.k3d.nodeHookActions",
    "topgun runs no hooks inside nodes",
    "remove it"
);
refused!(
    refuse_config_overrides,
    "options.k3d.loadbalancer.configOverrides",
    "topgun's load balancer is haproxy with a generated config; k3d's nginx settings do not apply",
    "remove it"
);
refused!(
    refuse_gpu_request,
    "options.runtime.gpuRequest",
    "topgun does not pass GPUs to nodes",
    "remove it"
);
refused!(
    refuse_servers_memory,
    "options.runtime.serversMemory",
    "topgun sets no memory limits on nodes",
    "remove it"
);
refused!(
    refuse_agents_memory,
    "options.runtime.agentsMemory",
    "topgun sets no memory limits on nodes",
    "remove it"
);
refused!(
    refuse_host_pid_mode,
    "options.runtime.hostPidMode",
    "topgun nodes always have their own PID namespace",
    "remove it"
);
refused!(
    refuse_runtime_labels,
    "options.runtime.labels",
    "topgun sets the labels of its containers itself (they find the cluster's resources)",
    "remove it; `options.k3s.nodeLabels` sets Kubernetes node labels"
);
refused!(
    refuse_ulimits,
    "options.runtime.ulimits",
    "topgun sets no ulimits on nodes",
    "remove it"
);

// ---------------------------------------------------------------------------
// Values checked where they stand, so errors carry their line.

fn de_subnet<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Subnet>, D::Error> {
    de_parsed(d, |s| match s {
        "" | "auto" => Ok(None),
        s => Subnet::parse(s).map(Some),
    })
}

fn de_api_host<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<ApiHost>, D::Error> {
    de_parsed(d, |s| {
        if s.is_empty() {
            return Ok(None);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Some(ApiHost::Ip(ip)));
        }
        SanList::parse(s)?;
        Ok(Some(ApiHost::Name(s.to_owned())))
    })
}

fn de_ip<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<IpAddr>, D::Error> {
    de_parsed(d, |s| {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| {
            Error::invalid(
                format!("address {s:?}"),
                "is not an IP address",
                "give an IP address of this host, e.g. 127.0.0.1 or 0.0.0.0",
            )
        })
    })
}

fn de_registry_host<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<IpAddr>, D::Error> {
    de_parsed(d, |s| match s {
        "" => Ok(None),
        "localhost" => Ok(Some(IpAddr::V4(Ipv4Addr::LOCALHOST))),
        s => s.parse().map(Some).map_err(|_| {
            Error::invalid(
                format!("registry host {s:?}"),
                "is not an IP address",
                "give the host address to publish the registry on, e.g. 127.0.0.1",
            )
        }),
    })
}

/// A port written as a string (`"6445"`, as k3d's schema has it) or a number.
fn de_port<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u16>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<u16>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a port number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            match v {
                "" | "random" => Ok(None),
                v => filter::parse_port("host port", v)
                    .map(Some)
                    .map_err(E::custom),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
    }
    d.deserialize_any(V)
}

fn de_volume<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<VolumeMount, D::Error> {
    de_parsed(d, VolumeMount::parse_value)
}

fn de_env<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<EnvVar, D::Error> {
    de_parsed(d, EnvVar::parse_value)
}

fn de_k3d_port<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<K3dPort, D::Error> {
    de_parsed(d, |s| {
        let unbracketed = match s.rsplit_once(']') {
            Some((_, rest)) => rest,
            None => s,
        };
        let ports = unbracketed.split('/').next().unwrap_or_default();
        let ports = ports.rsplit(':').take(2).collect::<Vec<_>>();
        if ports.iter().any(|p| p.contains('-')) {
            return Err(Error::invalid(
                format!("port {s:?}"),
                "is a port range, which topgun does not publish",
                "list each port on its own",
            ));
        }
        let has_host_ip =
            s.starts_with('[') || s.split('/').next().unwrap_or(s).matches(':').count() >= 2;
        Ok(K3dPort {
            raw: s.to_owned(),
            mapping: PortMapping::parse_value(s)?,
            has_host_ip,
        })
    })
}

fn de_k3s_arg<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<K3dArg, D::Error> {
    de_parsed(d, |s| {
        if let Some(sans) = s.strip_prefix("--tls-san=") {
            SanList::parse(sans)?;
            return Ok(K3dArg::TlsSan(sans.to_owned()));
        }
        K3sArg::parse_value(s).map(K3dArg::Arg)
    })
}

fn de_node_label<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    de_parsed(d, |s| {
        let arg = format!("--node-label={s}");
        K3sArg::parse_value(&arg)?;
        if !s.contains('=') || s.starts_with('=') {
            return Err(Error::invalid(
                format!("node label {s:?}"),
                "is not KEY=VALUE",
                "write e.g. `tier=frontend`",
            ));
        }
        Ok(arg)
    })
}

/// The registry image; k3d's default (registry:2) is left to topgun's
/// (`TOPGUN_REGISTRY_IMAGE` or registry:2).
fn de_registry_image<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    de_parsed(d, |s| match s {
        "" | "registry:2" | "docker.io/library/registry:2" | "library/registry:2" => Ok(None),
        other => {
            super::check_image("registry", other)?;
            Ok(Some(other.to_owned()))
        }
    })
}

/// A registry name as k3d writes it (`k3d-NAME` for its own containers),
/// checked without that prefix.
fn de_registry_name<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    de_parsed(d, |s| {
        if s.is_empty() {
            return Ok(None);
        }
        crate::registry::RegistryName::new(s.strip_prefix("k3d-").unwrap_or(s))?;
        Ok(Some(s.to_owned()))
    })
}

/// An entry of `registries.use`, `[k3d-]NAME[:PORT]`, as written.
struct RegistryUse(String);

impl<'de> Deserialize<'de> for RegistryUse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        de_parsed(d, |s| {
            crate::registry::RegistryRef::parse(s.strip_prefix("k3d-").unwrap_or(s))?;
            Ok(RegistryUse(s.to_owned()))
        })
    }
}

/// `registries.config`: k3d takes the text of a registries.yaml or a path to
/// one; topgun takes the text.
fn de_registry_config<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    de_parsed(d, |s| {
        let line = s.trim();
        if line.is_empty() {
            return Ok(None);
        }
        if !line.contains('\n') && !line.contains(':') {
            return Err(Error::invalid(
                "k3d's `registries.config`",
                "names a file; topgun takes the file's text here",
                "paste the registries.yaml under `config: |`",
            ));
        }
        Ok(Some(s.to_owned()))
    })
}

/// A Go duration (`60s`, `1m30s`, `1.5h`, `500ms`) in milliseconds.
fn de_go_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    de_parsed(d, |s| {
        if s.is_empty() || s == "0" || s == "0s" {
            return Ok(None);
        }
        parse_go_duration(s).map(Some).ok_or_else(|| {
            Error::invalid(
                format!("k3d timeout {s:?}"),
                "is not a duration",
                "write e.g. `60s`, `1m30s` or `2m`",
            )
        })
    })
}

fn parse_go_duration(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += n * ms;
        rest = &rest[unit_len..];
    }
    let ms = total.round();
    (1.0..1e15).contains(&ms).then_some(ms as u64)
}

// ---------------------------------------------------------------------------
// Node filters: k3d's `GROUP[:SUBSET][:SUFFIX]`, turned into topgun's.

/// A k3d filter in topgun's grammar, with k3d's port suffix if any.
struct ConvertedFilter {
    topgun: String,
    suffix: Option<String>,
    /// The group was `loadbalancer` (k3d: a port proxied to every node).
    loadbalancer: bool,
}

fn convert_filter(text: &str, counts: &super::NodeCounts) -> Result<ConvertedFilter> {
    let what = || format!("k3d node filter {text:?}");
    let fix =
        "write e.g. `server:0`, `agent:*`, `server:0,1`, `agent:0-2`, `loadbalancer` or `all`";
    if let Some((group, rest)) = text.split_once('[') {
        let inner = rest.trim_end_matches(']');
        return Err(Error::invalid(
            what(),
            "is k3d v4's bracket form, which k3d v5 and topgun no longer read",
            format!("write `{group}:{inner}`"),
        ));
    }
    let mut parts = text.splitn(3, ':');
    let group = parts.next().unwrap_or_default();
    let subset = parts.next();
    let suffix = parts.next().map(str::to_owned);
    let (role, count) = match group {
        "server" | "servers" => ("server", counts.servers),
        "agent" | "agents" => ("agent", counts.agents),
        "loadbalancer" | "all" => (group, 0),
        _ => {
            return Err(Error::invalid(
                what(),
                format!("has the unknown group {group:?}"),
                fix,
            ));
        }
    };
    let subset = match subset {
        None | Some("*") | Some("") => None,
        Some(s) if role == "loadbalancer" || role == "all" => {
            return Err(Error::invalid(
                what(),
                format!("gives `{role}` the subset {s:?}"),
                format!("write `{role}`"),
            ));
        }
        Some(s) => Some(match s.split_once('-') {
            // k3d's open ranges: `1-` (to the last node), `-2` (from the first).
            Some((lo, hi)) if !s.contains(',') && (lo.is_empty() || hi.is_empty()) => {
                let lo = if lo.is_empty() { "0" } else { lo };
                let hi = if hi.is_empty() {
                    count.saturating_sub(1).to_string()
                } else {
                    hi.to_owned()
                };
                format!("{lo}-{hi}")
            }
            _ => s.to_owned(),
        }),
    };
    let topgun = match subset {
        Some(s) => format!("{role}:{s}"),
        None if role == "server" || role == "agent" => format!("{role}:*"),
        None => role.to_owned(),
    };
    NodeFilter::parse(&topgun).map_err(|e| match e {
        Error::InvalidSpec { problem, .. } => Error::invalid(what(), problem, fix),
        other => other,
    })?;
    Ok(ConvertedFilter {
        topgun,
        suffix,
        loadbalancer: role == "loadbalancer",
    })
}

// ---------------------------------------------------------------------------
// The conversion.

/// Context for errors found after parsing: the file and its text, to name
/// the line a value is on.
struct Ctx<'a> {
    text: &'a str,
    origin: &'a Path,
    /// The line of the item being converted: errors name the first line
    /// from there on that holds what they are about.
    item_line: std::cell::Cell<usize>,
}

impl Ctx<'_> {
    /// Starts converting the item whose value (as written) is `value`.
    fn item(&self, value: &str) {
        self.item_line
            .set(line_of(self.text, 1, value).unwrap_or(1));
    }

    fn error(&self, needle: &str, e: Error) -> Error {
        let message = e.to_string();
        let found = line_of(self.text, self.item_line.get(), needle)
            .or_else(|| line_of(self.text, 1, needle));
        let message = match found {
            Some(n) => format!("line {n}: {message}"),
            None => message,
        };
        Error::Config {
            path: self.origin.to_owned(),
            message,
        }
    }

    /// k3d filters, each converted, joined with `;`; no filters: `None`.
    fn filters(
        &self,
        filters: &[String],
        counts: &super::NodeCounts,
        what: &str,
    ) -> Result<Option<String>> {
        let mut out = Vec::new();
        for f in filters {
            let c = convert_filter(f, counts).map_err(|e| self.error(f, e))?;
            if let Some(suffix) = &c.suffix {
                return Err(self.error(
                    f,
                    Error::invalid(
                        format!("k3d node filter {f:?} of {what}"),
                        format!("has the suffix `:{suffix}`, which only ports take"),
                        format!("write `{}`", c.topgun),
                    ),
                ));
            }
            out.push(c.topgun);
        }
        Ok((!out.is_empty()).then(|| out.join(";")))
    }

    /// A port's filters. k3d proxies a port through its load balancer to the
    /// nodes a filter names (suffix `:proxy`, the default) or publishes it
    /// on the node itself (`:direct`); topgun's load balancer forwards a
    /// published port to every server and agent, and a filter that names
    /// nodes publishes the port on them.
    fn port_filters(
        &self,
        port: &str,
        filters: &[String],
        counts: &super::NodeCounts,
    ) -> Result<Option<String>> {
        let mut direct = Vec::new();
        let mut proxied = Vec::new();
        let mut to_lb = false;
        for f in filters {
            let c = convert_filter(f, counts).map_err(|e| self.error(f, e))?;
            match c.suffix.as_deref() {
                Some("direct") if c.loadbalancer => {
                    return Err(self.error(
                        f,
                        Error::invalid(
                            format!("k3d node filter {f:?} of port {port:?}"),
                            "publishes directly on the load balancer, which k3d refuses too",
                            "write `loadbalancer`",
                        ),
                    ));
                }
                Some("direct") => direct.push(c.topgun),
                None | Some("proxy") if c.loadbalancer => to_lb = true,
                None | Some("proxy") => proxied.push(c.topgun),
                Some(other) => {
                    return Err(self.error(
                        f,
                        Error::invalid(
                            format!("k3d node filter {f:?} of port {port:?}"),
                            format!("has the unknown suffix `:{other}`"),
                            "use `:direct` (on the node) or `:proxy` (through the load balancer)",
                        ),
                    ));
                }
            }
        }
        if !proxied.is_empty() {
            let filter = NodeFilter::parse(&proxied.join(";"))?;
            let every = (0..counts.servers).all(|i| filter.matches(Role::Server, i))
                && (0..counts.agents).all(|i| filter.matches(Role::Agent, i));
            if !every {
                let first = filters
                    .iter()
                    .find(|f| !f.ends_with(":direct"))
                    .map_or(port, String::as_str);
                return Err(self.error(
                    first,
                    Error::invalid(
                        format!("node filters {} of port {port:?}", filters.join(", ")),
                        "ask k3d's load balancer to forward the port to some nodes only; \
                         topgun's load balancer forwards a published port to every server \
                         and agent",
                        format!(
                            "use `loadbalancer` for every node, or publish it on the node itself \
                             with `{}:direct`",
                            proxied[0]
                        ),
                    ),
                ));
            }
            to_lb = true;
        }
        if to_lb && !counts.loadbalancer {
            return Err(self.error(
                port,
                Error::invalid(
                    format!("port {port:?}"),
                    "goes through the load balancer, which `disableLoadbalancer` turns off",
                    "publish it on a node with e.g. `server:0:direct`",
                ),
            ));
        }
        if to_lb {
            direct.insert(0, "loadbalancer".to_owned());
        }
        Ok((!direct.is_empty()).then(|| direct.join(";")))
    }
}

/// Refuses `$VAR` and `${VAR}`, which k3d expands from the environment
/// before it reads the file; topgun reads the file as written.
fn check_no_env_expansion(text: &str, origin: &Path) -> Result<()> {
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let bytes = line.as_bytes();
        let found = bytes
            .windows(2)
            .any(|w| w[0] == b'$' && (w[1] == b'{' || w[1] == b'_' || w[1].is_ascii_alphabetic()));
        if found {
            return Err(Error::Config {
                path: origin.to_owned(),
                message: format!(
                    "line {}: uses `$VARIABLE`, which k3d expands from the environment and topgun \
                     does not; expand it first, e.g. `envsubst < FILE > expanded.yaml`",
                    n + 1
                ),
            });
        }
    }
    Ok(())
}

/// Converts a k3d v1alpha5 `Simple` config into topgun's own YAML, with
/// notes on what maps with a difference. The caller checked the YAML's shape.
pub(crate) fn convert(text: &str, origin: &Path) -> Result<(Mapping, Vec<String>)> {
    check_no_env_expansion(text, origin)?;
    let k: Simple = serde_norway::from_str(text).map_err(|e| Error::Config {
        path: origin.to_owned(),
        message: yaml_message(&e),
    })?;
    let ctx = Ctx {
        text,
        origin,
        item_line: std::cell::Cell::new(1),
    };
    let mut notes = Vec::new();
    let mut out = Mapping::new();
    let mut put = |key: &str, value: Value| {
        out.insert(Value::String(key.to_owned()), value);
    };
    let s = |v: &str| Value::String(v.to_owned());

    match &k.metadata.name {
        Some(name) => put("name", s(name.as_str())),
        None => {
            notes.push(format!(
                "the file names no cluster: named {K3D_DEFAULT_NAME}, as k3d would (a NAME on \
                 the command line overrides it)"
            ));
            put("name", s(K3D_DEFAULT_NAME));
        }
    }
    let servers = k.servers.unwrap_or(1);
    let agents = k.agents.unwrap_or(0);
    put("servers", Value::from(servers));
    put("agents", Value::from(agents));
    if let Some(image) = &k.image {
        put("image", s(image));
    }
    let counts = super::NodeCounts {
        servers,
        agents,
        etcd: 0,
        loadbalancer: !k.options.k3d.disable_loadbalancer,
    };

    // The API: k3d publishes it on 0.0.0.0 unless told otherwise.
    let mut sans: Vec<String> = Vec::new();
    let api = &k.kube_api;
    let host_ip = match (&api.host_ip, &api.host) {
        (Some(ip), _) => Some(*ip),
        (None, Some(ApiHost::Ip(ip))) => Some(*ip),
        _ => None,
    };
    if let Some(ApiHost::Name(name)) = &api.host {
        notes.push(format!(
            "kubeAPI.host {name:?} is added to the API certificate's names (tls-san); the \
             kubeconfig topgun writes dials the API's address, {}",
            host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
        ));
        sans.push(name.clone());
    }
    if host_ip.is_none() {
        notes.push(
            "the API is published on 127.0.0.1 (topgun's default) where k3d would use 0.0.0.0; \
             set kubeAPI.hostIP to publish it elsewhere"
                .to_owned(),
        );
    }
    if host_ip.is_some() || api.host_port.is_some() {
        let ip = host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let host = match ip {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let port = api.host_port.map(|p| p.to_string()).unwrap_or_default();
        put("api-port", s(&format!("{host}:{port}")));
    }

    // k3s arguments; `--tls-san` becomes topgun's own option.
    let mut k3s_args = Vec::new();
    for item in &k.options.k3s.extra_args {
        match &item.arg {
            K3dArg::TlsSan(names) => {
                if !item.node_filters.is_empty()
                    && item.node_filters.iter().any(|f| {
                        !matches!(
                            f.as_str(),
                            "server:*" | "servers:*" | "server" | "servers" | "all"
                        )
                    })
                {
                    notes.push(format!(
                        "--tls-san={names}: topgun gives every server's certificate the same \
                         names, so its node filters ({}) do not apply",
                        item.node_filters.join(", ")
                    ));
                }
                sans.push(names.clone());
            }
            K3dArg::Arg(arg) => {
                ctx.item(&arg.0);
                let filter =
                    ctx.filters(&item.node_filters, &counts, &format!("k3s argument {arg}"))?;
                k3s_args.push(with_filter(&arg.0, filter, K3sArg::DEFAULT_FILTER_HINT));
            }
        }
    }
    for item in &k.options.k3s.node_labels {
        ctx.item(item.label.trim_start_matches("--node-label="));
        let filter = ctx.filters(&item.node_filters, &counts, "a node label")?;
        k3s_args.push(with_filter(
            &item.label,
            filter,
            K3sArg::DEFAULT_FILTER_HINT,
        ));
    }
    if !sans.is_empty() {
        put(
            "tls-san",
            Value::Sequence(sans.iter().map(|n| s(n)).collect()),
        );
    }
    if let Some(token) = &k.token {
        put("token", s(token.expose()));
    }
    if !k3s_args.is_empty() {
        put("k3s-args", Value::Sequence(k3s_args));
    }

    let mut env = Vec::new();
    for item in &k.env {
        let what = format!("environment variable {}", item.env_var.key);
        ctx.item(&format!("{}=", item.env_var.key));
        let filter = ctx.filters(&item.node_filters, &counts, &what)?;
        env.push(with_filter(
            &item.env_var.to_string(),
            filter,
            EnvVar::DEFAULT_FILTER_HINT,
        ));
    }
    if !env.is_empty() {
        put("env", Value::Sequence(env));
    }
    let mut volumes = Vec::new();
    for item in &k.volumes {
        let what = format!("volume {}", item.volume);
        ctx.item(&item.volume.source.to_string_lossy());
        let filter = ctx.filters(&item.node_filters, &counts, &what)?;
        volumes.push(with_filter(
            &item.volume.to_string(),
            filter,
            VolumeMount::DEFAULT_FILTER_HINT,
        ));
    }
    if !volumes.is_empty() {
        put("volumes", Value::Sequence(volumes));
    }
    let mut ports = Vec::new();
    for item in &k.ports {
        let shown = item.port.mapping.to_string();
        if !item.port.has_host_ip {
            notes.push(format!(
                "port {} is published on 127.0.0.1 (topgun's default) where k3d would use \
                 0.0.0.0; write `0.0.0.0:{}` to publish it on every interface",
                item.port.raw, item.port.raw
            ));
        }
        ctx.item(&item.port.raw);
        let filter = ctx.port_filters(&shown, &item.node_filters, &counts)?;
        let default = if counts.loadbalancer {
            "loadbalancer"
        } else {
            "server:0"
        };
        ports.push(with_filter(&shown, filter, default));
    }
    if !ports.is_empty() {
        put("ports", Value::Sequence(ports));
    }

    let o = &k.options.k3d;
    if o.disable_loadbalancer {
        let mut lb = Mapping::new();
        lb.insert(s("enabled"), Value::Bool(false));
        put("loadbalancer", Value::Mapping(lb));
    }
    if let Some(subnet) = &k.subnet {
        let mut net = Mapping::new();
        net.insert(s("subnet"), s(&subnet.to_string()));
        put("network", Value::Mapping(net));
    }
    if let Some(ms) = o.timeout {
        let text = if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        };
        let mut t = Mapping::new();
        t.insert(s("total"), s(&text));
        put("timeouts", Value::Mapping(t));
    }
    if o.disable_rollback {
        put("no-rollback", Value::Bool(true));
    }
    if o.wait == Some(false) {
        notes.push(
            "options.k3d.wait is false: topgun always waits until every node is ready".to_owned(),
        );
    }
    if o.disable_image_volume {
        notes.push(
            "options.k3d.disableImageVolume: topgun always makes the images volume (`topgun \
             image import` uses it)"
                .to_owned(),
        );
    }

    // k3d updates the default kubeconfig and switches to the new context
    // unless told not to.
    let kc = &k.options.kubeconfig;
    let mut kubeconfig = Mapping::new();
    kubeconfig.insert(
        s("merge"),
        Value::Bool(kc.update_default_kubeconfig.unwrap_or(true)),
    );
    kubeconfig.insert(
        s("switch-context"),
        Value::Bool(
            kc.update_default_kubeconfig != Some(false)
                && kc.switch_current_context.unwrap_or(true),
        ),
    );
    put("kubeconfig", Value::Mapping(kubeconfig));

    let r = &k.registries;
    let mut registries = Mapping::new();
    if let Some(create) = &r.create {
        let mut c = Mapping::new();
        let name = match create.name.as_deref() {
            Some(n) => strip_k3d(n, &mut notes),
            None => {
                notes.push(
                    "registries.create names no registry: named registry.localhost".to_owned(),
                );
                "registry.localhost".to_owned()
            }
        };
        c.insert(s("name"), s(&name));
        match create.host {
            Some(ip) => {
                c.insert(s("host"), s(&ip.to_string()));
            }
            None => notes.push(format!(
                "registry {name} is published on 127.0.0.1 (topgun's default) where k3d would \
                 use 0.0.0.0; set registries.create.host to publish it elsewhere"
            )),
        }
        if let Some(port) = create.host_port {
            c.insert(s("port"), Value::from(port));
        }
        if let Some(image) = &create.image {
            c.insert(s("image"), s(image));
        }
        registries.insert(s("create"), Value::Mapping(c));
    }
    if !r.use_.is_empty() {
        let used = r
            .use_
            .iter()
            .map(|u| s(&strip_k3d(&u.0, &mut notes)))
            .collect();
        registries.insert(s("use"), Value::Sequence(used));
    }
    if let Some(config) = &r.config {
        registries.insert(s("config"), s(config));
    }
    if !registries.is_empty() {
        put("registries", Value::Mapping(registries));
    }
    Ok((out, notes))
}

/// `VALUE[@FILTER]`. A value with an `@` of its own gets its default filter
/// written out, so that topgun does not read its tail as a filter.
fn with_filter(value: &str, filter: Option<String>, default: &str) -> Value {
    Value::String(match filter {
        Some(f) => format!("{value}@{f}"),
        None if value.contains('@') => format!("{value}@{default}"),
        None => value.to_owned(),
    })
}

/// k3d names its registry containers `k3d-NAME`; topgun's registries go by
/// their own name.
fn strip_k3d(name: &str, notes: &mut Vec<String>) -> String {
    match name.strip_prefix("k3d-") {
        Some(rest) => {
            notes.push(format!(
                "registry {name}: k3d's `k3d-` container prefix is dropped; topgun calls it {rest}"
            ));
            rest.to_owned()
        }
        None => name.to_owned(),
    }
}

/// The converted file as text: topgun's own config, with a header.
pub(crate) fn to_text(config: &Mapping, origin: &Path) -> String {
    let body = serde_norway::to_string(config).expect("a mapping of strings always serialises");
    format!(
        "# topgun config, converted from the k3d config {} by `topgun config convert`\n{body}",
        origin.display()
    )
}

#[cfg(test)]
mod tests;
