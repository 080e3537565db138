//! `topgun stop|start|restart NAME...|--all`: day 2 for whole clusters,
//! through the [`Cluster`] handle. Both are idempotent.

use std::process::ExitCode;

use topgun_core::{Changed, Cluster, LifecycleOptions};

use super::EXIT_SUCCESS;
use super::create::{docker, progress};
use crate::cli::cluster::{RestartArgs, StopStartArgs};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Which way a command goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Stop,
    Start,
    Restart,
}

fn options(global: &GlobalArgs, timeout: Option<std::time::Duration>) -> LifecycleOptions {
    let mut options = LifecycleOptions::new();
    if let Some(p) = progress(global) {
        options = options.progress(p);
    }
    if let Some(t) = timeout {
        options = options.timeout(t);
    }
    options
}

/// The clusters named, or every cluster with `--all`.
async fn targets(
    docker: &topgun_core::bollard::Docker,
    names: &[String],
    all: bool,
) -> anyhow::Result<Vec<Cluster>> {
    let names: Vec<String> = if all {
        Cluster::list(docker)
            .await?
            .into_iter()
            .filter(|c| c.state != "leftovers")
            .map(|c| c.name)
            .collect()
    } else {
        names.to_vec()
    };
    let mut clusters = Vec::new();
    for name in names {
        clusters.push(Cluster::open(docker.clone(), &name).await?);
    }
    Ok(clusters)
}

async fn run(
    direction: Direction,
    names: &[String],
    all: bool,
    timeout: Option<std::time::Duration>,
    format: OutputFormat,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let options = options(global, timeout);
    let mut done: Vec<Changed> = Vec::new();
    for cluster in targets(&docker, names, all).await? {
        if direction != Direction::Start {
            let stopped = cluster.stop(&options).await?;
            if direction == Direction::Stop {
                done.push(stopped);
                continue;
            }
        }
        done.push(cluster.start(&options).await?);
    }
    match format {
        OutputFormat::Json => output::json(&done)?,
        OutputFormat::Text => {
            if done.is_empty() {
                output::result("no clusters");
            }
            for c in &done {
                output::result(&render(direction, c));
            }
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

fn render(direction: Direction, c: &Changed) -> String {
    let verb = if direction == Direction::Stop {
        "stopped"
    } else {
        "started"
    };
    let changed = c.nodes.iter().filter(|n| n.action == verb).count();
    let mut line = if changed == 0 {
        format!("cluster {}: already {verb}", c.name)
    } else {
        format!(
            "{verb} cluster {} in {:.1}s: {changed} of {} nodes",
            c.name,
            c.elapsed.as_secs_f64(),
            c.nodes.len()
        )
    };
    if let Some(server) = &c.server {
        line.push_str(&format!(", API at {server}"));
    }
    line
}

/// Runs `topgun stop`.
pub async fn stop(args: StopStartArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    run(
        Direction::Stop,
        &args.names,
        args.all,
        args.timeout,
        args.output,
        global,
    )
    .await
}

/// Runs `topgun start`.
pub async fn start(args: StopStartArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    run(
        Direction::Start,
        &args.names,
        args.all,
        args.timeout,
        args.output,
        global,
    )
    .await
}

/// Runs `topgun restart`.
pub async fn restart(args: RestartArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    run(
        Direction::Restart,
        &args.names,
        false,
        args.timeout,
        args.output,
        global,
    )
    .await
}
