//! Arguments of the cluster commands: `create`, `delete`, `list`, `status`
//! and `kubeconfig`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::{OutputFormat, parse_duration};

/// Arguments of `topgun create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Cluster name: letters, digits and '-', at most 32 characters.
    /// Optional when --config names the cluster.
    pub name: Option<String>,
    /// A YAML cluster spec; flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Number of k3s servers (at least 1).
    #[arg(short, long)]
    pub servers: Option<u32>,
    /// Number of k3s agents.
    #[arg(short, long)]
    pub agents: Option<u32>,
    /// k3s image [default: a pinned rancher/k3s]. Beats $TOPGUN_K3S_IMAGE,
    /// which beats the config file.
    #[arg(long)]
    pub image: Option<String>,
    /// Where the cluster keeps its state.
    #[arg(long, value_enum)]
    pub datastore: Option<DatastoreKind>,
    /// Members of the etcd cluster topgun provisions (with --datastore etcd).
    #[arg(long, value_name = "N")]
    pub etcd_members: Option<u32>,
    /// etcd image [default: a pinned etcd]. Beats $TOPGUN_ETCD_IMAGE, which
    /// beats the config file.
    #[arg(long)]
    pub etcd_image: Option<String>,
    /// An external datastore you run: etcd https list, postgres:// or mysql://.
    #[arg(long, value_name = "URL")]
    pub datastore_endpoint: Option<String>,
    /// CA file for the external datastore.
    #[arg(long, value_name = "FILE")]
    pub datastore_cafile: Option<PathBuf>,
    /// Client certificate file for the external datastore.
    #[arg(long, value_name = "FILE")]
    pub datastore_certfile: Option<PathBuf>,
    /// Client key file for the external datastore.
    #[arg(long, value_name = "FILE")]
    pub datastore_keyfile: Option<PathBuf>,
    /// Where the API is published: [HOST:]PORT [default: 127.0.0.1 and a free port].
    #[arg(long, value_name = "[HOST:]PORT")]
    pub api_port: Option<String>,
    /// Extra names for the API certificate (repeatable, comma-separated).
    #[arg(long = "tls-san", value_name = "SAN")]
    pub tls_san: Vec<String>,
    /// Cluster join token [default: 256 random bits]. Prefer $TOPGUN_TOKEN
    /// (which beats the config file): arguments are visible to every user of
    /// the machine.
    #[arg(long)]
    pub token: Option<String>,
    /// An extra k3s argument for the nodes a filter picks: ARG@FILTER,
    /// e.g. `--disable=traefik@server:*`.
    #[arg(
        long = "k3s-arg",
        value_name = "ARG@FILTER",
        allow_hyphen_values = true
    )]
    pub k3s_arg: Vec<String>,
    /// An environment variable for the nodes a filter picks: KEY=VALUE[@FILTER].
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE[@FILTER]")]
    pub env: Vec<String>,
    /// A volume for the nodes a filter picks: SRC:DEST[:ro][@FILTER] (no
    /// short `-v`: that is --verbose).
    #[arg(long = "volume", value_name = "SRC:DEST[@FILTER]")]
    pub volume: Vec<String>,
    /// A port to publish on the nodes a filter picks: [HOST:][HOSTPORT:]PORT[/PROTO][@FILTER].
    #[arg(short = 'p', long = "port", value_name = "PORTS[@FILTER]")]
    pub port: Vec<String>,
    /// Do not put a load balancer in front of the servers.
    #[arg(long)]
    pub no_lb: bool,
    /// Load balancer image [default: a pinned haproxy]. Beats
    /// $TOPGUN_LB_IMAGE, which beats the config file.
    #[arg(long)]
    pub lb_image: Option<String>,
    /// How long to wait for the whole cluster to be ready, e.g. 90s or 3m.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Keep what was created when creation fails (for debugging).
    #[arg(long)]
    pub no_rollback: bool,
    /// Do not merge the kubeconfig into $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    pub no_kubeconfig: bool,
    /// Make the new cluster the current kubeconfig context.
    #[arg(long)]
    pub switch_context: bool,
    /// Create a registry for the cluster, NAME[:PORT] (127.0.0.1, a free
    /// port unless given); it is deleted with the cluster.
    #[arg(long, value_name = "NAME[:PORT]")]
    pub registry_create: Option<String>,
    /// Use an existing topgun registry, NAME[:PORT] (repeatable); deleting
    /// the cluster leaves it.
    #[arg(long, value_name = "NAME[:PORT]")]
    pub registry_use: Vec<String>,
    /// Your own registries.yaml, merged with the registries' mirrors (its
    /// entries win); it goes into every node with mode 0600.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<std::path::PathBuf>,
    /// Check everything and print the resolved settings (with where each
    /// came from) and the plan, without creating anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the result (or of the plan, with --dry-run).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: CreateOutput,
}

/// Output formats of `topgun create`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CreateOutput {
    /// For people (with --dry-run: YAML).
    #[default]
    #[value(alias = "table")]
    Text,
    /// JSON (see docs/json-output.md).
    Json,
    /// YAML.
    Yaml,
}

/// The datastore kinds `--datastore` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatastoreKind {
    /// k3s's own store: SQLite for one server, embedded etcd for several.
    Embedded,
    /// An etcd cluster that topgun provisions, with mutual TLS.
    Etcd,
}

/// Arguments of `topgun delete`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["names", "all"]))]
pub struct DeleteArgs {
    /// Clusters to delete.
    #[arg(add = super::cluster_names())]
    pub names: Vec<String>,
    /// Delete every topgun cluster.
    #[arg(long)]
    pub all: bool,
}

/// Arguments of `topgun stop` and `topgun start`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["names", "all"]))]
pub struct StopStartArgs {
    /// Clusters to stop or start.
    #[arg(add = super::cluster_names())]
    pub names: Vec<String>,
    /// Every topgun cluster on this engine.
    #[arg(long)]
    pub all: bool,
    /// How long each phase of a start may take (e.g. 90s, 3m).
    #[arg(long, value_parser = crate::cli::parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Clusters to restart.
    #[arg(required = true, add = super::cluster_names())]
    pub names: Vec<String>,
    /// How long each phase of the start may take (e.g. 90s, 3m).
    #[arg(long, value_parser = crate::cli::parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Ask the engine of every docker context (and `default`), and say which
    /// did not answer.
    #[arg(long)]
    pub all_contexts: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The cluster.
    #[arg(add = super::cluster_names())]
    pub name: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun kubeconfig`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// What to do with the kubeconfig.
    #[command(subcommand)]
    pub command: KubeconfigCommand,
}

/// `topgun kubeconfig get|merge`.
#[derive(Debug, Subcommand)]
pub enum KubeconfigCommand {
    /// Print the cluster's kubeconfig to stdout.
    #[command(after_help = super::examples(super::examples::KUBECONFIG_GET))]
    Get {
        /// The cluster.
        #[arg(add = super::cluster_names())]
        name: String,
    },
    /// Merge the cluster's kubeconfig into $KUBECONFIG or ~/.kube/config.
    #[command(after_help = super::examples(super::examples::KUBECONFIG_MERGE))]
    Merge {
        /// The cluster.
        #[arg(add = super::cluster_names())]
        name: String,
        /// The file to merge into [default: first path of $KUBECONFIG, else ~/.kube/config].
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Make it the current context.
        #[arg(long)]
        switch_context: bool,
    },
}

#[cfg(test)]
mod tests {
    /// Catches clashing options (e.g. a short `-v` besides `--verbose`).
    #[test]
    fn the_command_line_is_consistent() {
        <crate::cli::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
