//! Arguments of `topgun node`: `list`, `add`, `delete`, `stop`, `start` and
//! `restart`.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::{OutputFormat, parse_duration};

/// Arguments of `topgun node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// The `topgun node` commands. Nodes are named by container name, e.g.
/// `topgun-demo-agent-0` (`topgun node list CLUSTER` shows them).
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List a cluster's nodes: name, role, Docker state, address and image.
    #[command(after_help = super::examples(super::examples::NODE_LIST))]
    List(NodeListArgs),
    /// Add servers or agents to a cluster, planned as the create planned the
    /// first ones; new servers join the load balancer. A failed add removes
    /// what it made.
    #[command(after_help = super::examples(super::examples::NODE_ADD))]
    Add(NodeAddArgs),
    /// Delete nodes: out of the load balancer, the Kubernetes Node object,
    /// the container and its volumes. The last server, etcd members and the
    /// load balancer are refused.
    #[command(after_help = super::examples(super::examples::NODE_DELETE))]
    Delete(NodeNamesArgs),
    /// Stop nodes, in reverse dependency order (agents first).
    #[command(after_help = super::examples(super::examples::NODE_STOP))]
    Stop(NodeNamesArgs),
    /// Start nodes, in start order, each until it is ready.
    #[command(after_help = super::examples(super::examples::NODE_START))]
    Start(NodeStartArgs),
    /// Stop, then start nodes.
    #[command(after_help = super::examples(super::examples::NODE_RESTART))]
    Restart(NodeStartArgs),
}

/// Arguments of `topgun node list`.
#[derive(Debug, Args)]
pub struct NodeListArgs {
    /// The cluster.
    #[arg(add = super::cluster_names())]
    pub cluster: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// The roles `node add --role` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeRole {
    /// A k3s server (control plane); joins the load balancer.
    Server,
    /// A k3s agent (worker).
    Agent,
}

/// Arguments of `topgun node add`.
#[derive(Debug, Args)]
pub struct NodeAddArgs {
    /// The cluster.
    #[arg(add = super::cluster_names())]
    pub cluster: String,
    /// What the new nodes are.
    #[arg(long, value_enum)]
    pub role: NodeRole,
    /// How many to add (1 to 50).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub count: u32,
    /// k3s image of the new nodes [default: the image the cluster's nodes
    /// run; $TOPGUN_K3S_IMAGE is not read: new nodes match the cluster].
    #[arg(long)]
    pub image: Option<String>,
    /// How long each new node may take to be ready, e.g. 90s or 3m
    /// [default: the cluster's].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Output format of the result.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun node delete` and `topgun node stop`.
#[derive(Debug, Args)]
pub struct NodeNamesArgs {
    /// The nodes (container names, e.g. topgun-demo-agent-0).
    #[arg(required = true, value_name = "NODE", add = super::node_names())]
    pub nodes: Vec<String>,
    /// Output format of the result.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun node start` and `topgun node restart`.
#[derive(Debug, Args)]
pub struct NodeStartArgs {
    /// The nodes (container names, e.g. topgun-demo-agent-0).
    #[arg(required = true, value_name = "NODE", add = super::node_names())]
    pub nodes: Vec<String>,
    /// How long each node may take to be ready, e.g. 90s or 3m.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Output format of the result.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}
