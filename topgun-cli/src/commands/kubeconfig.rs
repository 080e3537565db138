//! `topgun kubeconfig get|merge NAME`.

use std::process::ExitCode;

use super::EXIT_SUCCESS;
use super::create::{core_error, docker};
use crate::cli::GlobalArgs;
use crate::cli::cluster::{KubeconfigArgs, KubeconfigCommand};
use crate::output;

/// Runs `topgun kubeconfig`.
pub async fn run(args: KubeconfigArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    match args.command {
        KubeconfigCommand::Get { name } => {
            let kubeconfig = topgun_core::lifecycle::kubeconfig(&docker, &name)
                .await
                .map_err(core_error)?;
            output::result(kubeconfig.expose().trim_end());
        }
        KubeconfigCommand::Merge {
            name,
            kubeconfig,
            switch_context,
        } => {
            let yaml = topgun_core::lifecycle::kubeconfig(&docker, &name)
                .await
                .map_err(core_error)?;
            let files = match kubeconfig {
                Some(p) => vec![p],
                None => topgun_core::kubeconfig::default_files().map_err(core_error)?,
            };
            let path = topgun_core::kubeconfig::merge_into(&files, &yaml, switch_context)
                .map_err(core_error)?;
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
