//! The command line, as clap types only; no behaviour lives here.
//!
//! Doc comments here are `--help` text for people, written as topgun prints
//! it (`[HOST:]PORT`, `KEY=VALUE[@FILTER]`), not links for rustdoc.
#![allow(rustdoc::broken_intra_doc_links)]

use clap::{Parser, Subcommand};

pub mod cluster;
pub mod config;
pub mod etcd;
pub mod examples;
pub mod image;
pub mod node;
pub mod registry;
pub mod tls;

use examples::examples;

/// Completes an argument with the names of the clusters on the engine.
pub(crate) fn cluster_names() -> clap_complete::ArgValueCandidates {
    clap_complete::ArgValueCandidates::new(crate::candidates::clusters)
}

/// Completes an argument with the names of topgun's registries.
pub(crate) fn registry_names() -> clap_complete::ArgValueCandidates {
    clap_complete::ArgValueCandidates::new(crate::candidates::registries)
}

/// Completes an argument with the names of every cluster's nodes.
pub(crate) fn node_names() -> clap_complete::ArgValueCandidates {
    clap_complete::ArgValueCandidates::new(crate::candidates::nodes)
}

/// The whole command line as a clap [`clap::Command`]: for completion, man
/// pages and tests.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Highly available k3s clusters in Docker, with external etcd and
/// certificates that carry the right names.
#[derive(Debug, Parser)]
#[command(
    name = "topgun",
    version,
    about,
    propagate_version = true,
    after_help = examples(examples::TOPGUN)
)]
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
    /// More detail on stderr, stamped with the time since start (-v: topgun's
    /// debug trace, -vv: every library's, -vvv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The Docker engine, before the command as with docker: unix:///PATH,
    /// tcp://HOST:PORT (TLS with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH) or
    /// ssh://USER@HOST[:PORT] [default: DOCKER_HOST, DOCKER_CONTEXT, the
    /// current docker context, unix:///var/run/docker.sock].
    #[arg(long, value_name = "URL", conflicts_with = "context")]
    pub engine: Option<String>,
    /// The docker context (`docker context ls`) whose engine to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a k3s cluster: servers, agents, a datastore, a load balancer.
    #[command(after_help = examples(examples::CREATE))]
    Create(Box<cluster::CreateArgs>),
    /// Delete clusters (containers, volumes, network, kubeconfig entries).
    #[command(after_help = examples(examples::DELETE))]
    Delete(cluster::DeleteArgs),
    /// Stop clusters: agents, load balancer, servers, then etcd.
    #[command(after_help = examples(examples::STOP))]
    Stop(cluster::StopStartArgs),
    /// Start stopped clusters: etcd until healthy, servers, load balancer,
    /// agents, then the API.
    #[command(after_help = examples(examples::START))]
    Start(cluster::StopStartArgs),
    /// Stop, then start clusters.
    #[command(after_help = examples(examples::RESTART))]
    Restart(cluster::RestartArgs),
    /// List the clusters on this Docker engine.
    #[command(after_help = examples(examples::LIST))]
    List(cluster::ListArgs),
    /// Show a cluster's nodes, load balancer, etcd verdict and API.
    #[command(after_help = examples(examples::STATUS))]
    Status(cluster::StatusArgs),
    /// Print or merge a cluster's kubeconfig.
    #[command(after_help = examples(examples::KUBECONFIG))]
    Kubeconfig(cluster::KubeconfigArgs),
    /// Generate certificates, inspect endpoints and files, check kubeconfigs.
    #[command(after_help = examples(examples::TLS))]
    Tls(tls::TlsArgs),
    /// Check an etcd cluster's health and leader, and browse its keys.
    #[command(after_help = examples(examples::ETCD))]
    Etcd(etcd::EtcdArgs),
    /// Copy images from this Docker engine into a cluster's nodes.
    #[command(after_help = examples(examples::IMAGE))]
    Image(image::ImageArgs),
    /// List, add, delete, stop, start and restart a cluster's nodes.
    #[command(after_help = examples(examples::NODE))]
    Node(node::NodeArgs),
    /// Create, list and delete local image registries that clusters pull
    /// from.
    #[command(after_help = examples(registry::REGISTRY))]
    Registry(registry::RegistryArgs),
    /// Convert k3d config files into topgun's own.
    #[command(after_help = examples(config::CONFIG))]
    Config(config::ConfigArgs),
    /// Print the shell script that completes topgun's commands, flags, and
    /// the names of clusters and nodes.
    #[command(long_about = COMPLETIONS_ABOUT, after_help = examples(examples::COMPLETIONS))]
    Completions(CompletionsArgs),
    /// Write topgun's man pages (topgun.1, topgun-create.1, ...) into a
    /// directory; `cargo xtask man` runs it.
    #[command(name = "__man", hide = true)]
    Man(ManArgs),
}

/// The long help of `topgun completions`: how to install the script.
const COMPLETIONS_ABOUT: &str = "\
Print the shell script that completes topgun's commands, flags, and the names
of clusters and nodes (asked from Docker as you type).

Install it from your shell's startup file:

  bash        ~/.bashrc:    source <(topgun completions bash)
  zsh         ~/.zshrc:     source <(topgun completions zsh)     (after compinit)
  fish        topgun completions fish > ~/.config/fish/completions/topgun.fish
  powershell  $PROFILE:     topgun completions powershell | Out-String | Invoke-Expression
  elvish      rc.elv:       eval (topgun completions elvish | slurp)

The script runs `topgun` for every completion, so it stays right when topgun
is upgraded. Names come from the Docker engine topgun would use (--engine or
--context on the line, else DOCKER_HOST, DOCKER_CONTEXT, ...); when the engine
does not answer within a second, names complete to nothing.";

/// Arguments of `topgun completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells `topgun completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// GNU bash 4.4 or later (3.2 works, unsorted).
    Bash,
    /// zsh, with compinit.
    Zsh,
    /// fish.
    Fish,
    /// PowerShell (Windows PowerShell 5.1 and pwsh).
    Powershell,
    /// elvish.
    Elvish,
}

/// Arguments of the hidden `topgun __man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    pub out: std::path::PathBuf,
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

/// Parses a duration for clap: `500ms`, `90s`, `3m`, `1h`, combinations such
/// as `1m30s`, or a bare number of seconds. Zero is refused.
pub fn parse_duration(input: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let err = || format!("invalid duration {input:?}: use e.g. 500ms, 90s, 3m or 1m30s");
    let input = input.trim();
    let mut total = Duration::ZERO;
    let mut rest = input;
    if let Ok(secs) = input.parse::<u64>() {
        total = Duration::from_secs(secs);
        rest = "";
    } else if input.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("invalid duration {input:?}: must be more than 0"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        let cases = [
            ("90", Some(90_000)),
            ("90s", Some(90_000)),
            ("3m", Some(180_000)),
            ("1h", Some(3_600_000)),
            ("1m30s", Some(90_000)),
            ("500ms", Some(500)),
            ("0", None),
            ("0s", None),
            ("", None),
            ("s", None),
            ("5x", None),
            ("1.5s", None),
            ("-5s", None),
        ];
        for (input, expected) in cases {
            let got = parse_duration(input).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, expected, "{input:?}");
        }
    }
}
