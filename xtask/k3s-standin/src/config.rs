//! Command line and environment, read the way k3s reads them.
//!
//! k3s (urfave/cli) takes `--flag value`, `--flag=value` and `-flag value`,
//! lets an explicit flag win over its environment variable, and has many
//! flags the stand-in has no use for: those are accepted, and their names
//! (never their values) are reported so the caller can log them.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use topgun_tls::San;

/// Where k3s reads `registries.yaml` unless `--private-registry` names
/// another.
pub const DEFAULT_REGISTRIES_FILE: &str = "/etc/rancher/k3s/registries.yaml";

/// The default data directory, as for k3s running as root.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/rancher/k3s";
/// The default kubeconfig path, as for k3s running as root.
pub const DEFAULT_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
/// The default supervisor/API port.
pub const DEFAULT_HTTPS_PORT: u16 = 6443;

/// A secret string (the cluster token). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What to run.
#[derive(Debug)]
pub enum Command {
    /// `k3s server ...`
    Server(Box<ServerConfig>),
    /// `k3s agent ...`
    Agent(AgentConfig),
    /// `k3s --version` / `k3s -v` / `k3s version`
    Version,
    /// `k3s` or `k3s help`
    Help,
    /// `k3s ctr ...`: the arguments after `ctr`, unparsed (k3s hands them
    /// to containerd's `ctr` as they are).
    Ctr(Vec<String>),
    /// `k3s crictl ...`: the arguments after `crictl`, unparsed.
    Crictl(Vec<String>),
    /// A k3s subcommand the stand-in does not emulate (`kubectl`, `crictl`, ...).
    NotEmulated(String),
}

/// Settings both servers and agents have.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `--token` / `K3S_TOKEN` (or the contents of `--token-file`).
    pub token: Option<Secret>,
    /// `--server` / `K3S_URL`.
    pub server_url: Option<String>,
    /// `--node-name` / `K3S_NODE_NAME`.
    pub node_name: Option<String>,
    /// `--node-ip` (repeatable, comma-separated).
    pub node_ips: Vec<IpAddr>,
    /// `--data-dir` / `K3S_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `--private-registry`: the registries file.
    pub private_registry: PathBuf,
    /// `--disable-default-registry-endpoint`.
    pub disable_default_registry_endpoint: bool,
    /// Names of flags accepted but not emulated, e.g. `--disable`.
    pub ignored_flags: Vec<String>,
}

/// The external datastore settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatastoreConfig {
    /// `--datastore-endpoint` / `K3S_DATASTORE_ENDPOINT`, unparsed.
    pub endpoint: Option<String>,
    /// `--datastore-cafile` / `K3S_DATASTORE_CAFILE`.
    pub cafile: Option<PathBuf>,
    /// `--datastore-certfile` / `K3S_DATASTORE_CERTFILE`.
    pub certfile: Option<PathBuf>,
    /// `--datastore-keyfile` / `K3S_DATASTORE_KEYFILE`.
    pub keyfile: Option<PathBuf>,
}

/// `k3s server` settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Shared settings.
    pub common: CommonConfig,
    /// `--tls-san`, in order.
    pub tls_sans: Vec<San>,
    /// `--cluster-init`.
    pub cluster_init: bool,
    /// The datastore flags.
    pub datastore: DatastoreConfig,
    /// `--https-listen-port`.
    pub https_port: u16,
    /// `--bind-address`.
    pub bind_address: Option<IpAddr>,
    /// `--write-kubeconfig` / `K3S_KUBECONFIG_OUTPUT`.
    pub kubeconfig_path: PathBuf,
    /// `--write-kubeconfig-mode` / `K3S_KUBECONFIG_MODE`.
    pub kubeconfig_mode: u32,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// `--service-cidr`: its first address is the `kubernetes` service IP.
    pub service_cidr: String,
}

/// `k3s agent` settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Shared settings; `server_url` and `token` are required for agents.
    pub common: CommonConfig,
}

/// k3s boolean flags that never take a separate value (so the next
/// argument is not swallowed as one).
const BOOL_FLAGS: &[&str] = &[
    "cluster-init",
    "cluster-reset",
    "debug",
    "disable-agent",
    "disable-apiserver",
    "disable-cloud-controller",
    "disable-controller-manager",
    "disable-etcd",
    "disable-helm-controller",
    "disable-kube-proxy",
    "disable-network-policy",
    "disable-scheduler",
    "disable-default-registry-endpoint",
    "docker",
    "embedded-registry",
    "enable-pprof",
    "etcd-disable-snapshots",
    "etcd-expose-metrics",
    "etcd-snapshot-compress",
    "flannel-ipv6-masq",
    "flannel-external-ip",
    "no-flannel",
    "prefer-bundled-bin",
    "protect-kernel-defaults",
    "rootless",
    "secrets-encryption",
    "selinux",
    "supervisor-metrics",
    "with-node-id",
];

/// Short flag aliases k3s has, mapped to their long names.
fn long_name(name: &str) -> &str {
    match name {
        "t" => "token",
        "s" => "server",
        "d" => "data-dir",
        "o" => "write-kubeconfig",
        "i" => "node-ip",
        "c" => "config",
        "v" => "v",
        other => other,
    }
}

/// Parses `args` (without the program name). `env` looks up environment
/// variables; errors are messages fit for a `level=fatal` line.
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Command, String> {
    let Some(pos) = args.iter().position(|a| !a.starts_with('-')) else {
        if args.iter().any(|a| a == "--version" || a == "-v") {
            return Ok(Command::Version);
        }
        if args.iter().any(|a| a == "--help" || a == "-h") || args.is_empty() {
            return Ok(Command::Help);
        }
        return Err(format!(
            "no command given; try `k3s server` or `k3s agent` (arguments: {})",
            args.len()
        ));
    };
    if args[..pos].iter().any(|a| a == "--version" || a == "-v") {
        return Ok(Command::Version);
    }
    let sub = args[pos].as_str();
    let mut given: Vec<String> = args[..pos].to_vec();
    given.extend_from_slice(&args[pos + 1..]);
    // As k3s: the config file's values come first, as flags, so that flags
    // on the command line win over them (and both over the environment).
    let rest = match sub {
        "server" | "agent" => {
            let mut rest = config_file_flags(&given, env)?;
            rest.extend(given);
            rest
        }
        _ => given,
    };
    match sub {
        "server" => {
            let flags = Flags::parse(&rest)?;
            if flags.help {
                return Ok(Command::Help);
            }
            server_config(flags, env).map(|c| Command::Server(Box::new(c)))
        }
        "agent" => {
            let flags = Flags::parse(&rest)?;
            if flags.help {
                return Ok(Command::Help);
            }
            agent_config(flags, env).map(Command::Agent)
        }
        "version" => Ok(Command::Version),
        "help" => Ok(Command::Help),
        "ctr" => Ok(Command::Ctr(args[pos + 1..].to_vec())),
        "crictl" => Ok(Command::Crictl(args[pos + 1..].to_vec())),
        other => Ok(Command::NotEmulated(other.to_owned())),
    }
}

/// Where k3s reads its config file when neither `--config` nor
/// `K3S_CONFIG_FILE` names one.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/rancher/k3s/config.yaml";

/// The flags k3s's config file stands for: `--config FILE` (`-c`), else
/// `K3S_CONFIG_FILE`, else [`DEFAULT_CONFIG_FILE`] if it exists. Keys are the
/// long flag names without dashes; a list gives the flag once per item; a
/// boolean gives `--flag=true|false`. A file named explicitly must exist.
fn config_file_flags(
    given: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let mut explicit = None;
    for (i, arg) in given.iter().enumerate() {
        let named = match arg.split_once('=') {
            Some(("--config" | "-c", value)) => Some(value.to_owned()),
            None if arg == "--config" || arg == "-c" => given.get(i + 1).cloned(),
            _ => None,
        };
        if named.is_some() {
            explicit = named;
        }
    }
    let explicit = explicit.or_else(|| env("K3S_CONFIG_FILE").filter(|v| !v.is_empty()));
    let path = match &explicit {
        Some(p) => PathBuf::from(p),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => PathBuf::from(DEFAULT_CONFIG_FILE),
        None => return Ok(Vec::new()),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("failed to read config file {}: {e}", path.display()))?;
    config_flags(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

/// The flags a config file's text stands for (see [`config_file_flags`]).
/// Values are never quoted in errors: the file holds the token.
pub fn config_flags(text: &str) -> Result<Vec<String>, String> {
    use serde_norway::Value;
    let doc: Value = serde_norway::from_str(text).map_err(|e| match e.location() {
        Some(l) => format!("not YAML (line {} column {})", l.line(), l.column()),
        None => "not YAML".to_owned(),
    })?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Ok(Vec::new()),
        _ => return Err("not a mapping of flag names to values".to_owned()),
    };
    let scalar = |key: &str, v: &Value| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(format!(
                "the value of {key:?} is not a string, number or boolean"
            )),
        }
    };
    let mut flags = Vec::new();
    for (k, v) in &map {
        let key = k
            .as_str()
            .ok_or_else(|| "a key is not a string".to_owned())?
            .trim_end_matches('+');
        match v {
            Value::Sequence(items) => {
                for item in items {
                    flags.push(format!("--{key}={}", scalar(key, item)?));
                }
            }
            v => flags.push(format!("--{key}={}", scalar(key, v)?)),
        }
    }
    Ok(flags)
}

/// Flags as given: `(long name, value)` in order.
#[derive(Debug, Default)]
struct Flags {
    values: Vec<(String, String)>,
    help: bool,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut flags = Flags::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(format!(
                    "unexpected argument {arg:?}: k3s takes no positional arguments here"
                ));
            };
            if stripped.is_empty() {
                return Err("unexpected argument \"--\"".into());
            }
            let (name, inline) = match stripped.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (stripped, None),
            };
            let name = long_name(name).to_owned();
            if name == "help" || name == "h" {
                flags.help = true;
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None if BOOL_FLAGS.contains(&name.as_str()) => "true".into(),
                None if takes_value(&name) => {
                    let Some(v) = args.get(i) else {
                        return Err(format!("flag needs an argument: --{name}"));
                    };
                    i += 1;
                    v.clone()
                }
                // An unknown flag: k3s takes no positional arguments, so a
                // following non-flag argument must be its value.
                None => match args.get(i) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        v.clone()
                    }
                    _ => "true".into(),
                },
            };
            flags.values.push((name, value));
        }
        // Like k3s's CLI, refuse a boolean flag with a value that is not a
        // boolean before anything starts.
        for name in BOOL_FLAGS {
            flags.bool(name)?;
        }
        Ok(flags)
    }

    fn last(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn bool(&self, name: &str) -> Result<bool, String> {
        match self.last(name) {
            None => Ok(false),
            Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
            Some(v) => Err(format!("invalid boolean value {v:?} for flag --{name}")),
        }
    }

    /// The flag's value, else the environment variable's.
    fn value(
        &self,
        name: &str,
        env_name: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        self.last(name)
            .map(str::to_owned)
            .or_else(|| env(env_name).filter(|v| !v.is_empty()))
    }

    fn ignored(&self, known: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (name, _) in &self.values {
            if !known.contains(&name.as_str()) && !out.iter().any(|n| n == name) {
                out.push(name.clone());
            }
        }
        out
    }
}

/// Whether `name` is a flag the stand-in reads that takes a value (every
/// flag it reads but the boolean ones).
fn takes_value(name: &str) -> bool {
    !BOOL_FLAGS.contains(&name) && (COMMON_FLAGS.contains(&name) || SERVER_FLAGS.contains(&name))
}

const COMMON_FLAGS: &[&str] = &[
    "config",
    "token",
    "token-file",
    "server",
    "node-name",
    "node-ip",
    "data-dir",
    "private-registry",
    "disable-default-registry-endpoint",
];

const SERVER_FLAGS: &[&str] = &[
    "tls-san",
    "cluster-init",
    "datastore-endpoint",
    "datastore-cafile",
    "datastore-certfile",
    "datastore-keyfile",
    "https-listen-port",
    "bind-address",
    "write-kubeconfig",
    "write-kubeconfig-mode",
    "cluster-domain",
    "service-cidr",
];

fn common_config(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
    known: &[&str],
) -> Result<CommonConfig, String> {
    let token = match flags.value("token", "K3S_TOKEN", env) {
        Some(t) => Some(t),
        None => match flags.value("token-file", "K3S_TOKEN_FILE", env) {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("failed to read token file {path}: {e}"))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        },
    };
    let mut node_ips = Vec::new();
    for list in flags.all("node-ip") {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            node_ips.push(
                item.parse::<IpAddr>()
                    .map_err(|_| format!("invalid --node-ip {item:?}: not an IP address"))?,
            );
        }
    }
    let node_name = flags.value("node-name", "K3S_NODE_NAME", env);
    if let Some(name) = &node_name {
        validate_node_name(name)?;
    }
    Ok(CommonConfig {
        token: token.filter(|t| !t.is_empty()).map(Secret::new),
        server_url: flags.value("server", "K3S_URL", env),
        node_name,
        node_ips,
        data_dir: flags
            .value("data-dir", "K3S_DATA_DIR", env)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        private_registry: flags
            .last("private-registry")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRIES_FILE)),
        disable_default_registry_endpoint: flags.bool("disable-default-registry-endpoint")?,
        ignored_flags: flags.ignored(known),
    })
}

/// A node name must be a DNS-1123 subdomain, as Kubernetes requires.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid node name {name:?}: must be lowercase letters, digits, '-' and '.' (a DNS-1123 subdomain)"
        ))
    }
}

fn server_config(
    flags: Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServerConfig, String> {
    let known: Vec<&str> = COMMON_FLAGS.iter().chain(SERVER_FLAGS).copied().collect();
    let common = common_config(&flags, env, &known)?;
    let mut tls_sans: Vec<San> = Vec::new();
    for list in flags.all("tls-san") {
        for san in
            topgun_tls::parse_san_list(list).map_err(|e| format!("invalid --tls-san: {e}"))?
        {
            if !tls_sans.contains(&san) {
                tls_sans.push(san);
            }
        }
    }
    let https_port = match flags.last("https-listen-port") {
        None => DEFAULT_HTTPS_PORT,
        Some(v) => v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!("invalid value {v:?} for flag --https-listen-port: parse error")
        })?,
    };
    let bind_address = flags
        .last("bind-address")
        .map(|v| {
            v.parse::<IpAddr>()
                .map_err(|_| format!("invalid --bind-address {v:?}: not an IP address"))
        })
        .transpose()?;
    let kubeconfig_mode = match flags.value("write-kubeconfig-mode", "K3S_KUBECONFIG_MODE", env) {
        None => 0o600,
        Some(v) => parse_mode(&v)?,
    };
    Ok(ServerConfig {
        common,
        tls_sans,
        cluster_init: flags.bool("cluster-init")?,
        datastore: DatastoreConfig {
            endpoint: flags.value("datastore-endpoint", "K3S_DATASTORE_ENDPOINT", env),
            cafile: flags
                .value("datastore-cafile", "K3S_DATASTORE_CAFILE", env)
                .map(PathBuf::from),
            certfile: flags
                .value("datastore-certfile", "K3S_DATASTORE_CERTFILE", env)
                .map(PathBuf::from),
            keyfile: flags
                .value("datastore-keyfile", "K3S_DATASTORE_KEYFILE", env)
                .map(PathBuf::from),
        },
        https_port,
        bind_address,
        kubeconfig_path: flags
            .value("write-kubeconfig", "K3S_KUBECONFIG_OUTPUT", env)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBECONFIG)),
        kubeconfig_mode,
        cluster_domain: flags
            .last("cluster-domain")
            .unwrap_or("cluster.local")
            .to_owned(),
        service_cidr: flags
            .last("service-cidr")
            .unwrap_or("10.43.0.0/16")
            .to_owned(),
    })
}

fn agent_config(flags: Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<AgentConfig, String> {
    let common = common_config(&flags, env, COMMON_FLAGS)?;
    if common.server_url.is_none() {
        return Err("--server is required".into());
    }
    if common.token.is_none() {
        return Err("--token is required".into());
    }
    Ok(AgentConfig { common })
}

/// Parses an octal file mode such as `644` or `0600`.
pub fn parse_mode(value: &str) -> Result<u32, String> {
    u32::from_str_radix(value.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            format!("invalid kubeconfig mode {value:?}: expected an octal mode such as 0600 or 644")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn server(s: &str, env: &dyn Fn(&str) -> Option<String>) -> ServerConfig {
        match parse(&args(s), env).unwrap() {
            Command::Server(c) => *c,
            other => panic!("not a server: {other:?}"),
        }
    }

    #[test]
    fn version_forms() {
        for s in ["--version", "-v", "version"] {
            assert!(
                matches!(parse(&args(s), &no_env).unwrap(), Command::Version),
                "{s}"
            );
        }
        assert!(matches!(parse(&[], &no_env).unwrap(), Command::Help));
        assert!(
            matches!(parse(&args("kubectl get nodes"), &no_env).unwrap(), Command::NotEmulated(c) if c == "kubectl")
        );
        assert!(
            matches!(parse(&args("ctr -n k8s.io images import -"), &no_env).unwrap(), Command::Ctr(a) if a == args("-n k8s.io images import -"))
        );
    }

    #[test]
    fn server_defaults() {
        let c = server("server", &no_env);
        assert_eq!(c.https_port, 6443);
        assert_eq!(
            c.kubeconfig_path,
            PathBuf::from("/etc/rancher/k3s/k3s.yaml")
        );
        assert_eq!(c.kubeconfig_mode, 0o600);
        assert_eq!(c.common.data_dir, PathBuf::from("/var/lib/rancher/k3s"));
        assert!(!c.cluster_init);
        assert!(c.tls_sans.is_empty());
        assert_eq!(c.datastore, DatastoreConfig::default());
    }

    #[test]
    fn tls_san_repeatable_and_comma_separated() {
        let c = server(
            "server --tls-san a.example,10.0.0.1 --tls-san=b.example --tls-san a.example",
            &no_env,
        );
        let sans: Vec<String> = c.tls_sans.iter().map(|s| s.to_string()).collect();
        assert_eq!(sans, ["a.example", "10.0.0.1", "b.example"]);
    }

    #[test]
    fn flags_win_over_env() {
        let env = |k: &str| match k {
            "K3S_TOKEN" => Some("from-env".to_owned()),
            "K3S_KUBECONFIG_OUTPUT" => Some("/output/kubeconfig.yaml".to_owned()),
            "K3S_KUBECONFIG_MODE" => Some("644".to_owned()),
            "K3S_DATASTORE_ENDPOINT" => Some("https://a:2379".to_owned()),
            "K3S_DATASTORE_CAFILE" => Some("/ca.crt".to_owned()),
            _ => None,
        };
        let c = server("server --token from-flag", &env);
        assert_eq!(c.common.token.unwrap().expose(), "from-flag");
        assert_eq!(c.kubeconfig_path, PathBuf::from("/output/kubeconfig.yaml"));
        assert_eq!(c.kubeconfig_mode, 0o644);
        assert_eq!(c.datastore.endpoint.as_deref(), Some("https://a:2379"));
        assert_eq!(c.datastore.cafile, Some(PathBuf::from("/ca.crt")));
        let c = server("server", &env);
        assert_eq!(c.common.token.unwrap().expose(), "from-env");
    }

    #[test]
    fn unknown_flags_are_collected_by_name_only() {
        let c = server(
            "server --disable traefik --disable-network-policy --kubelet-arg=eviction-hard=x --cluster-init --node-label a=b",
            &no_env,
        );
        assert!(c.cluster_init);
        assert_eq!(
            c.common.ignored_flags,
            [
                "disable",
                "disable-network-policy",
                "kubelet-arg",
                "node-label"
            ]
        );
    }

    #[test]
    fn short_aliases() {
        let c = server("server -t tok -d /data -o /kc.yaml -i 10.0.0.5", &no_env);
        assert_eq!(c.common.token.unwrap().expose(), "tok");
        assert_eq!(c.common.data_dir, PathBuf::from("/data"));
        assert_eq!(c.kubeconfig_path, PathBuf::from("/kc.yaml"));
        assert_eq!(
            c.common.node_ips,
            vec!["10.0.0.5".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn agent_requires_server_and_token() {
        assert_eq!(
            parse(&args("agent"), &no_env).unwrap_err(),
            "--server is required"
        );
        assert_eq!(
            parse(&args("agent --server https://lb:6443"), &no_env).unwrap_err(),
            "--token is required"
        );
        let env = |k: &str| match k {
            "K3S_URL" => Some("https://lb:6443".to_owned()),
            "K3S_TOKEN" => Some("t".to_owned()),
            _ => None,
        };
        let Command::Agent(a) = parse(&args("agent"), &env).unwrap() else {
            panic!()
        };
        assert_eq!(a.common.server_url.as_deref(), Some("https://lb:6443"));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse(&args("server --https-listen-port abc"), &no_env).is_err());
        assert!(parse(&args("server --debug=maybe"), &no_env).is_err());
        assert!(parse(&args("server --debug=false"), &no_env).is_ok());
        assert!(parse(&args("server --write-kubeconfig-mode 999"), &no_env).is_err());
        assert!(parse(&args("server --tls-san bad_name!"), &no_env).is_err());
        assert!(parse(&args("server --node-name Bad_Name"), &no_env).is_err());
        assert!(parse(&args("server --token"), &no_env).is_err());
        assert!(parse(&args("server stray"), &no_env).is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let c = server("server --token hunter2", &no_env);
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_config_file_is_read_as_k3s_reads_it_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(
            &file,
            "token: from-file\ntls-san:\n  - a.example\n  - 10.0.0.9\ncluster-init: true\ndatastore-endpoint: \"postgres://u:p@db:5432/k3s\"\n",
        )
        .unwrap();
        let path = file.display().to_string();
        let env = |k: &str| match k {
            "K3S_TOKEN" => Some("from-env".to_owned()),
            "K3S_CONFIG_FILE" => Some(path.clone()),
            _ => None,
        };
        let Command::Server(c) = parse(&args("server"), &env).unwrap() else {
            panic!("a server")
        };
        // The file beats the environment; lists give the flag per item.
        assert_eq!(c.common.token.as_ref().unwrap().expose(), "from-file");
        assert!(c.cluster_init);
        let sans: Vec<String> = c.tls_sans.iter().map(ToString::to_string).collect();
        assert!(
            sans.contains(&"a.example".to_owned()) && sans.contains(&"10.0.0.9".to_owned()),
            "{sans:?}"
        );
        // A flag on the command line beats the file.
        let Command::Server(c) = parse(
            &args(&format!("server --config {path} --token from-flag")),
            &|_| None,
        )
        .unwrap() else {
            panic!("a server")
        };
        assert_eq!(c.common.token.as_ref().unwrap().expose(), "from-flag");
        // A named file that is missing, or not YAML, is fatal, and never quoted.
        assert!(parse(&args("server --config /nonexistent.yaml"), &|_| None).is_err());
        std::fs::write(&file, "token: [unclosed secret-value").unwrap();
        let err = match parse(&args(&format!("server -c {path}")), &|_| None) {
            Err(e) => e,
            Ok(_) => panic!("refused"),
        };
        assert!(!err.contains("secret-value"), "{err}");
    }
}
