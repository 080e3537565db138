//! `topgun registry create|list|delete` (the registry flags of `topgun
//! create` are resolved in [`crate::precedence`]). Exit statuses follow each error's kind: bad input (a bad
//! name or port, a taken name or port, a registry still in use) is 2.

use std::process::ExitCode;

use topgun_core::{Registry, RegistryName, RegistrySpec};

use super::EXIT_SUCCESS;
use super::create::docker;
use crate::cli::registry::{CreateArgs, DeleteArgs, ListArgs, RegistryArgs, RegistryCommand};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Runs `topgun registry ...`.
pub async fn run(args: RegistryArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RegistryCommand::Create(args) => create(args).await,
        RegistryCommand::List(args) => list(args).await,
        RegistryCommand::Delete(args) => delete(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let mut spec = RegistrySpec::new(&args.name)?;
    if let Some(port) = &args.port {
        spec = spec.with_port(port)?;
    }
    if let Some(image) = &args.image {
        spec = spec.with_image(image);
    }
    spec.validate()?;
    let docker = docker().await?;
    let registry = Registry::create(docker, &spec).await?;
    let info = registry.info().await?;
    match args.output {
        OutputFormat::Json => output::json(&info)?,
        OutputFormat::Text => {
            let port = info.port.map(|p| p.to_string()).unwrap_or_default();
            output::result(&format!(
                "created registry {} ({}) on {}:{port}",
                info.name,
                info.container,
                info.host.as_deref().unwrap_or("?")
            ));
            output::result(&format!(
                "push: docker push 127.0.0.1:{port}/IMAGE; clusters: topgun create NAME \
                 --registry-use {}:{port}, then image: localhost:{port}/IMAGE",
                info.name
            ));
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let registries = Registry::list(&docker).await?;
    match args.output {
        OutputFormat::Json => output::json(&registries)?,
        OutputFormat::Text if registries.is_empty() => {
            output::result(
                "no registries on this engine (`topgun registry create NAME` makes one)",
            );
        }
        OutputFormat::Text => {
            let mut lines = vec![format!(
                "{:<28} {:<10} {:<22} {:<16} {}",
                "NAME", "STATE", "ADDRESS", "CREATED BY", "CLUSTERS"
            )];
            for r in &registries {
                let address = match (&r.host, r.port) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    _ => "-".to_owned(),
                };
                lines.push(format!(
                    "{:<28} {:<10} {:<22} {:<16} {}",
                    r.name,
                    r.state,
                    address,
                    r.cluster.as_deref().unwrap_or("-"),
                    if r.clusters.is_empty() {
                        "-".to_owned()
                    } else {
                        r.clusters.join(",")
                    }
                ));
            }
            output::result(&lines.join("\n"));
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    // Every name is checked before anything is deleted.
    let names = args
        .names
        .iter()
        .map(|n| RegistryName::new(n))
        .collect::<topgun_core::Result<Vec<_>>>()?;
    let docker = docker().await?;
    for name in names {
        let deleted = Registry::named(docker.clone(), name.clone())
            .delete(args.force)
            .await?;
        if deleted.removed.count() == 0 {
            output::result(&format!(
                "registry {name} does not exist; nothing to delete"
            ));
            continue;
        }
        if !deleted.disconnected.is_empty() {
            output::result(&format!(
                "disconnected registry {name} from cluster(s) {}",
                deleted.disconnected.join(", ")
            ));
        }
        output::result(&format!(
            "deleted registry {name} ({} resources)",
            deleted.removed.count()
        ));
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}
