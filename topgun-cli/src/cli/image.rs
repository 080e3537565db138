//! `topgun image ...` arguments.

use clap::{Args, Subcommand};

use super::OutputFormat;

/// Arguments of `topgun image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// The `topgun image` commands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Copy images from this Docker engine into a cluster's k3s nodes.
    ///
    /// Every running node imports them now; nodes that do not run, and
    /// nodes added later, import them when they start (the archive stays in
    /// the cluster's images volume). With --nodes only the selected running
    /// nodes get them. Nothing is done when an image is missing.
    #[command(after_help = super::examples(super::examples::IMAGE_IMPORT))]
    Import(ImportArgs),
}

/// Arguments of `topgun image import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Images on this Docker engine (`name:tag` or an id).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// The cluster.
    #[arg(short, long, value_name = "NAME", add = super::cluster_names())]
    pub cluster: String,
    /// Only these nodes, which must run, e.g. `agent:*`, `server:0`,
    /// `agent:0,2` or `all` (servers and agents).
    #[arg(long, value_name = "FILTER")]
    pub nodes: Option<String>,
    /// Output format of the result.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}
