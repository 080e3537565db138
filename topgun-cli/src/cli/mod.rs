//! The command line, as clap types only; no behaviour lives here.

use clap::{Parser, Subcommand};

pub mod cluster;
pub mod etcd;
pub mod tls;

/// Highly available k3s clusters in Docker, with external etcd and
/// certificates that carry the right names.
#[derive(Debug, Parser)]
#[command(name = "topgun", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Print no progress, only results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a k3s cluster: servers, agents, a datastore, a load balancer.
    Create(Box<cluster::CreateArgs>),
    /// Delete clusters (containers, volumes, network, kubeconfig entries).
    Delete(cluster::DeleteArgs),
    /// List the clusters on this Docker engine.
    List(cluster::ListArgs),
    /// Show a cluster's nodes, load balancer, etcd verdict and API.
    Status(cluster::StatusArgs),
    /// Print or merge a cluster's kubeconfig.
    Kubeconfig(cluster::KubeconfigArgs),
    /// Generate certificates, inspect endpoints and files, check kubeconfigs.
    Tls(tls::TlsArgs),
    /// Check an etcd cluster's health and leader, and browse its keys.
    Etcd(etcd::EtcdArgs),
}

/// Output format for commands that report results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people (`table` is accepted too, as etcdctl says).
    #[default]
    #[value(alias = "table")]
    Text,
    /// Stable, documented JSON (see docs/json-output.md).
    Json,
}
