//! `topgun kubeconfig get|merge NAME`.

use std::process::ExitCode;

use topgun_core::Cluster;

use super::EXIT_SUCCESS;
use super::create::docker;
use crate::cli::GlobalArgs;
use crate::cli::cluster::{KubeconfigArgs, KubeconfigCommand};
use crate::output;

/// Runs `topgun kubeconfig`.
pub async fn run(args: KubeconfigArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    match args.command {
        KubeconfigCommand::Get { name } => {
            let kubeconfig = Cluster::named(docker, &name).kubeconfig().await?;
            output::result(kubeconfig.expose().trim_end());
        }
        KubeconfigCommand::Merge {
            name,
            kubeconfig,
            switch_context,
        } => {
            let yaml = Cluster::named(docker, &name).kubeconfig().await?;
            let files = match kubeconfig {
                Some(p) => vec![p],
                None => topgun_core::default_kubeconfig_files()?,
            };
            let path = topgun_core::merge_kubeconfig(&files, &yaml, switch_context)?;
            output::result(&format!(
                "merged context topgun-{name} into {}{}",
                path.display(),
                if switch_context {
                    " (current context)"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}
