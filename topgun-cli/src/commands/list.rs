//! `topgun list`: every cluster on this engine, rebuilt from Docker labels.

use std::process::ExitCode;

use topgun_core::{Cluster, Engine};

use super::EXIT_SUCCESS;
use super::create::docker;
use crate::cli::cluster::ListArgs;
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// The clusters of one docker context.
#[derive(serde::Serialize)]
struct ContextClusters {
    context: String,
    engine: String,
    clusters: Vec<topgun_core::ClusterSummary>,
}

/// A docker context whose engine did not answer.
#[derive(serde::Serialize)]
struct Unanswered {
    context: String,
    error: String,
}

/// `topgun list --all-contexts`: every context's engine, asked at once.
async fn all_contexts(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let mut asks = tokio::task::JoinSet::new();
    for (i, name) in Engine::contexts().into_iter().enumerate() {
        asks.spawn(async move {
            let ask = async {
                let engine = Engine::of_context(&name)?;
                let docker = engine.connect().await?;
                let clusters = Cluster::list(&docker).await?;
                Ok::<_, topgun_core::Error>((engine.url, clusters))
            };
            let answer = tokio::time::timeout(std::time::Duration::from_secs(30), ask).await;
            (i, name, answer)
        });
    }
    let mut answers = asks.join_all().await;
    answers.sort_by_key(|(i, _, _)| *i);
    let mut answered = Vec::new();
    let mut unanswered = Vec::new();
    for (_, context, answer) in answers {
        match answer {
            Ok(Ok((engine, clusters))) => answered.push(ContextClusters {
                context,
                engine,
                clusters,
            }),
            Ok(Err(e)) => unanswered.push(Unanswered {
                context,
                error: e.to_string(),
            }),
            Err(_) => unanswered.push(Unanswered {
                context,
                error: "no answer within 30s".to_owned(),
            }),
        }
    }
    for u in &unanswered {
        output::warn(&format!(
            "context {:?} did not answer: {}",
            u.context, u.error
        ));
    }
    match args.output {
        OutputFormat::Json => output::json(&serde_json::json!({
            "contexts": answered,
            "unanswered": unanswered,
        }))?,
        OutputFormat::Text => {
            let text = answered
                .iter()
                .map(|c| {
                    format!(
                        "CONTEXT {} ({})\n{}",
                        c.context,
                        c.engine,
                        render(&c.clusters)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n\n");
            output::result(&text);
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

/// Runs `topgun list`.
pub async fn run(args: ListArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.all_contexts {
        return all_contexts(&args).await;
    }
    let docker = docker().await?;
    let clusters = Cluster::list(&docker).await?;
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
    let count = |c: &topgun_core::Count| format!("{}/{}", c.running, c.total);
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
