//! `topgun config ...` arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `topgun config`.
pub const CONFIG: &str = "\
# topgun's config for a k3d config file; notes on what differs go to stderr
topgun config convert k3d.yaml

# Keep it, then: topgun create --config topgun.yaml (or --config k3d.yaml)
topgun config convert k3d.yaml --quiet > topgun.yaml";

/// `topgun config convert`.
pub const CONFIG_CONVERT: &str = "\
# Print topgun's config for a k3d config file
topgun config convert k3d.yaml

# Keep it, without the notes (create with `topgun create --config topgun.yaml`)
topgun config convert k3d.yaml --quiet > topgun.yaml";

/// Arguments of `topgun config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// `topgun config convert`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print topgun's own config for a k3d config file (`apiVersion:
    /// k3d.io/v1alpha5`, `kind: Simple`): YAML on stdout, notes on what maps
    /// with a difference on stderr. A k3d field topgun cannot honour is an
    /// error naming it and its line (docs/k3d-config.md lists every field).
    #[command(after_help = super::examples(CONFIG_CONVERT))]
    Convert {
        /// The k3d config file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}
