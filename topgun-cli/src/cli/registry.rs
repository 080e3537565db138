//! `topgun registry ...` arguments.

use clap::{Args, Subcommand};

use super::OutputFormat;

/// `topgun registry`.
pub const REGISTRY: &str = "\
# A registry on 127.0.0.1:5001 (then: topgun create dev --registry-use registry.localhost)
topgun registry create registry.localhost --port 5001

# The registries on this engine
topgun registry list";

/// `topgun registry create`.
pub const REGISTRY_CREATE: &str = "\
# On 127.0.0.1 at port 5001 (push to 127.0.0.1:5001/app, pull localhost:5001/app)
topgun registry create registry.localhost --port 5001

# On every address of this host, at a free port
topgun registry create shared.localhost --port 0.0.0.0:";

/// `topgun registry list`.
pub const REGISTRY_LIST: &str = "\
# Names, ports and the clusters each is connected to
topgun registry list

# As JSON (see docs/json-output.md)
topgun registry list -o json";

/// `topgun registry delete`.
pub const REGISTRY_DELETE: &str = "\
# Delete a registry no cluster is connected to
topgun registry delete registry.localhost

# Disconnect it from its clusters first
topgun registry delete registry.localhost --force";

/// Arguments of `topgun registry`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// The `topgun registry` commands.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Create and start a registry (registry:2, or $TOPGUN_REGISTRY_IMAGE)
    /// with its data on a named volume.
    ///
    /// Its container is topgun-registry-NAME; clusters that use it
    /// (`topgun create --registry-use NAME`) reach it as NAME, and their
    /// nodes pull `localhost:PORT/...` and `NAME:PORT/...` through it.
    #[command(after_help = super::examples(REGISTRY_CREATE))]
    Create(CreateArgs),
    /// List the registries on this Docker engine.
    #[command(after_help = super::examples(REGISTRY_LIST))]
    List(ListArgs),
    /// Delete registries: container and data volume.
    ///
    /// A registry still connected to clusters is refused (naming them)
    /// unless --force. Deleting one that does not exist succeeds.
    #[command(after_help = super::examples(REGISTRY_DELETE))]
    Delete(DeleteArgs),
}

/// Arguments of `topgun registry create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Registry name: a lowercase DNS name, e.g. registry.localhost.
    pub name: String,
    /// Where its port is published: [HOST:]PORT, or HOST: for a free port
    /// [default: 127.0.0.1 and a free port].
    #[arg(long, value_name = "[HOST:]PORT")]
    pub port: Option<String>,
    /// The registry image [default: registry:2, or $TOPGUN_REGISTRY_IMAGE].
    #[arg(long)]
    pub image: Option<String>,
    /// Output format of the result.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun registry list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun registry delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Registries to delete.
    #[arg(required = true, value_name = "NAME", add = super::registry_names())]
    pub names: Vec<String>,
    /// Disconnect them from the clusters they are connected to first.
    #[arg(long)]
    pub force: bool,
}
