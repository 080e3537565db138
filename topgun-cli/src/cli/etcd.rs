//! `topgun etcd ...` arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{OutputFormat, parse_duration};

/// Arguments of `topgun etcd`.
#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: EtcdCommand,
}

/// The `topgun etcd` commands.
#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Ask every member for its status and judge the cluster: a table like
    /// `etcdctl endpoint status` with the leader marked, then the verdict.
    /// Exit 0 when healthy, 1 for any other verdict, 2 for usage errors.
    #[command(after_help = super::examples(super::examples::ETCD_STATUS))]
    Status(StatusArgs),
    /// List keys (keys only, never values) and count them by prefix: what
    /// k3s keeps in etcd.
    #[command(after_help = super::examples(super::examples::ETCD_KEYS))]
    Keys(KeysArgs),
    /// Serve a small web UI to look at etcd: members and the live verdict,
    /// the key tree with counts and sizes, values decoded (text, JSON,
    /// Kubernetes protobuf) with their revisions. Read-only unless --write.
    /// Bound to loopback; every request needs the random token in the URL
    /// it prints. Stop with Ctrl-C.
    #[command(after_help = super::examples(super::examples::ETCD_BROWSE))]
    Browse(BrowseArgs),
}

/// How to reach the members: a topgun cluster by name, or `--endpoints`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// A topgun cluster whose etcd to ask; its members and topgun's client
    /// certificate are found through Docker.
    #[arg(
        value_name = "CLUSTER",
        conflicts_with_all = ["endpoints", "cacert", "cert", "key"],
        add = super::cluster_names()
    )]
    pub cluster: Option<String>,
    /// Client URLs of every member, comma-separated, e.g.
    /// https://10.0.0.2:2379,https://10.0.0.3:2379. Without a scheme, https://
    /// is assumed when --cacert is given, http:// otherwise.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "cluster",
        value_name = "URLS"
    )]
    pub endpoints: Vec<String>,
    /// The CA that signed the members' certificates (PEM).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM); needs --key and --cacert.
    #[arg(long, value_name = "FILE", requires_all = ["key", "cacert"])]
    pub cert: Option<PathBuf>,
    /// Client key for mutual TLS (PEM); needs --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Deadline of each request to each member, e.g. 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// Arguments of `topgun etcd status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How to reach the members.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Output format: table (text) or json.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Keep watching; print again whenever the verdict or the leader
    /// changes (JSON: one object per line). Stop with Ctrl-C.
    #[arg(short, long)]
    pub watch: bool,
    /// Time between status rounds with --watch.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Also prove the cluster accepts writes: put, linearizable get and
    /// delete of a key under /topgun/health/.
    #[arg(long)]
    pub probe: bool,
}

/// Arguments of `topgun etcd keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// How to reach the members.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Only keys that start with this, e.g. /registry/pods/ [default: all keys].
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// List at most this many keys (all are still counted).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: usize,
    /// Count keys by their first N path segments (/registry/pods is 2).
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub depth: u16,
    /// Output format: table (text) or json.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Arguments of `topgun etcd browse`.
#[derive(Debug, Args)]
pub struct BrowseArgs {
    /// How to reach the members.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Address to serve on; port 0 picks a free one. An address that is not
    /// loopback makes etcd reachable from other machines (with the token):
    /// topgun warns.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Open the page in the default browser (xdg-open).
    #[arg(long)]
    pub open: bool,
    /// Allow putting and deleting keys from the page (each asks first).
    #[arg(long)]
    pub write: bool,
}
