//! `topgun node list|add|delete|stop|start|restart`: one cluster's nodes,
//! through topgun-core's day-2 operations.

use std::process::ExitCode;

use topgun_core::{
    AddNodesOptions, Cluster, DeleteNodeOptions, LifecycleOptions, NodeChange, NodeObject,
    NodeStatus, Role,
};

use super::create::{docker, interrupted, progress};
use super::list::table;
use super::{EXIT_SUCCESS, Failed};
use crate::cli::node::{
    NodeAddArgs, NodeArgs, NodeCommand, NodeListArgs, NodeNamesArgs, NodeRole, NodeStartArgs,
};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Runs `topgun node`.
pub async fn run(args: NodeArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        NodeCommand::List(args) => list(args).await,
        NodeCommand::Add(args) => add(args, global).await,
        NodeCommand::Delete(args) => delete(args, global).await,
        NodeCommand::Stop(args) => stop(args, global).await,
        NodeCommand::Start(args) => start_or_restart(args, global, false).await,
        NodeCommand::Restart(args) => start_or_restart(args, global, true).await,
    }
}

async fn list(args: NodeListArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let nodes = Cluster::named(docker, &args.cluster).nodes().await?;
    match args.output {
        OutputFormat::Json => output::json(&nodes)?,
        OutputFormat::Text => output::result(&render(&nodes)),
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

fn render(nodes: &[NodeStatus]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "ROLE".to_owned(),
        "STATE".to_owned(),
        "IP".to_owned(),
        "IMAGE".to_owned(),
    ]];
    for n in nodes {
        rows.push([
            n.name.clone(),
            n.role.to_string(),
            n.state.clone(),
            n.ip.clone().unwrap_or_else(|| "-".to_owned()),
            n.image.clone(),
        ]);
    }
    table(&rows)
}

async fn add(args: NodeAddArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let role = match args.role {
        NodeRole::Server => Role::Server,
        NodeRole::Agent => Role::Agent,
    };
    let docker = docker().await?;
    let mut options = AddNodesOptions::new();
    if let Some(image) = &args.image {
        options = options.image(image.clone());
    }
    if let Some(timeout) = args.timeout {
        options = options.timeout(timeout);
    }
    if let Some(p) = progress(global) {
        options = options.progress(p);
    }
    let added = Cluster::open(docker, &args.cluster)
        .await?
        .add_nodes_until(role, args.count, &options, interrupted())
        .await
        .map_err(|e| -> anyhow::Error {
            match e {
                topgun_core::Error::Cancelled => Failed(anyhow::anyhow!(
                    "interrupted; everything this add had made was removed"
                ))
                .into(),
                e => e.into(),
            }
        })?;
    for warning in &added.warnings {
        output::warn(&warning.to_string());
    }
    match args.output {
        OutputFormat::Json => output::json(&added)?,
        OutputFormat::Text => {
            let nodes: Vec<String> = added
                .nodes
                .iter()
                .map(|n| format!("{} ({})", n.name, n.ip))
                .collect();
            output::result(&format!(
                "added {} {}{} to cluster {} in {:.1}s: {}{}",
                added.nodes.len(),
                added.role,
                if added.nodes.len() == 1 { "" } else { "s" },
                added.cluster,
                added.elapsed.as_secs_f64(),
                nodes.join(", "),
                if added.loadbalancer_updated {
                    "; the load balancer routes to them"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

async fn delete(args: NodeNamesArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let mut options = DeleteNodeOptions::new();
    if let Some(p) = progress(global) {
        options = options.progress(p);
    }
    let mut deleted = Vec::new();
    for (cluster, nodes) in Cluster::of_nodes(&docker, &args.nodes).await? {
        deleted.extend(cluster.delete_nodes(&nodes, &options).await?);
    }
    for d in &deleted {
        for warning in &d.warnings {
            output::warn(&warning.to_string());
        }
    }
    match args.output {
        OutputFormat::Json => output::json(&deleted)?,
        OutputFormat::Text => {
            for d in &deleted {
                output::result(&format!(
                    "deleted {} {} of cluster {}: the container, {} volume{}{}, {}",
                    d.role,
                    d.name,
                    d.cluster,
                    d.volumes.len(),
                    if d.volumes.len() == 1 { "" } else { "s" },
                    if d.loadbalancer_updated {
                        ", out of the load balancer"
                    } else {
                        ""
                    },
                    match d.node_object {
                        NodeObject::Deleted => "and its Kubernetes Node",
                        NodeObject::Absent => "no Kubernetes Node to delete",
                        NodeObject::Kept => "but NOT its Kubernetes Node (see the warning)",
                    }
                ));
            }
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

async fn stop(args: NodeNamesArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let mut options = LifecycleOptions::new();
    if let Some(p) = progress(global) {
        options = options.progress(p);
    }
    let mut changes = Vec::new();
    for (cluster, nodes) in Cluster::of_nodes(&docker, &args.nodes).await? {
        changes.extend(cluster.stop_nodes(&nodes, &options).await?);
    }
    report_changes(&changes, args.output)
}

async fn start_or_restart(
    args: NodeStartArgs,
    global: &GlobalArgs,
    restart: bool,
) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let mut options = LifecycleOptions::new();
    if let Some(timeout) = args.timeout {
        options = options.timeout(timeout);
    }
    if let Some(p) = progress(global) {
        options = options.progress(p);
    }
    let mut changes = Vec::new();
    for (cluster, nodes) in Cluster::of_nodes(&docker, &args.nodes).await? {
        changes.extend(if restart {
            cluster.restart_nodes(&nodes, &options).await
        } else {
            cluster.start_nodes(&nodes, &options).await
        }?);
    }
    report_changes(&changes, args.output)
}

fn report_changes(changes: &[NodeChange], format: OutputFormat) -> anyhow::Result<ExitCode> {
    match format {
        OutputFormat::Json => output::json(&changes)?,
        OutputFormat::Text => {
            for c in changes {
                output::result(&match c.action {
                    "unchanged" => format!("{}: unchanged", c.name),
                    action => format!("{action} {}", c.name),
                });
            }
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}
