//! `topgun list`: every cluster on this engine, rebuilt from Docker labels.

use std::process::ExitCode;

use super::EXIT_SUCCESS;
use super::create::{core_error, docker};
use crate::cli::cluster::ListArgs;
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Runs `topgun list`.
pub async fn run(args: ListArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let clusters = topgun_core::lifecycle::list(&docker)
        .await
        .map_err(core_error)?;
    match args.output {
        OutputFormat::Json => output::json(&clusters)?,
        OutputFormat::Text => output::result(&render(&clusters)),
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

fn render(clusters: &[topgun_core::ClusterSummary]) -> String {
    if clusters.is_empty() {
        return "no clusters".to_owned();
    }
    let count = |c: &topgun_core::lifecycle::Count| format!("{}/{}", c.running, c.total);
    let mut rows = vec![[
        "NAME".to_owned(),
        "STATE".to_owned(),
        "SERVERS".to_owned(),
        "AGENTS".to_owned(),
        "ETCD".to_owned(),
        "LB".to_owned(),
        "DATASTORE".to_owned(),
        "API".to_owned(),
    ]];
    for c in clusters {
        rows.push([
            c.name.clone(),
            c.state.to_owned(),
            count(&c.servers),
            count(&c.agents),
            if c.etcd.total > 0 {
                count(&c.etcd)
            } else {
                "-".to_owned()
            },
            match c.loadbalancer {
                Some(true) => "running".to_owned(),
                Some(false) => "stopped".to_owned(),
                None => "-".to_owned(),
            },
            c.datastore
                .clone()
                .unwrap_or_else(|| "leftovers".to_owned()),
            c.server.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table(&rows)
}

/// Left-aligned columns, two spaces apart.
pub(crate) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
