//! `topgun delete NAME...|--all`: removes clusters by label, with their
//! kubeconfig entries. Deleting what does not exist succeeds.

use std::process::ExitCode;

use topgun_core::{Cluster, DeleteOptions};

use super::EXIT_SUCCESS;
use super::create::docker;
use crate::cli::GlobalArgs;
use crate::cli::cluster::DeleteArgs;
use crate::output;

/// Runs `topgun delete`.
pub async fn run(args: DeleteArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let targets: Vec<Option<&String>> = if args.all {
        vec![None]
    } else {
        args.names.iter().map(Some).collect()
    };
    for target in targets {
        let options = DeleteOptions::new();
        let deleted = match target {
            // Deleting what does not exist (or only half exists) succeeds.
            Some(name) => {
                Cluster::named(docker.clone(), name)
                    .delete_with(&options)
                    .await
            }
            None => Cluster::delete_all(&docker, &options).await,
        }?;
        let what = match target {
            Some(name) => name.clone(),
            None => "all clusters".to_owned(),
        };
        if deleted.removed.count() == 0 && deleted.kubeconfig_entries.is_empty() {
            output::result(&format!("{what}: nothing to delete"));
        } else {
            output::result(&format!(
                "deleted {what}: {} containers, {} volumes, {} networks{}",
                deleted.removed.containers.len(),
                deleted.removed.volumes.len(),
                deleted.removed.networks.len(),
                if deleted.kubeconfig_entries.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", kubeconfig entries of {} in {}",
                        deleted.kubeconfig_entries.join(", "),
                        deleted
                            .kubeconfig_path
                            .as_deref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )
                }
            ));
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}
