//! `topgun image import IMAGE... -c NAME`: images from this Docker engine
//! into a cluster's k3s nodes, with topgun-core's streamed import.

use std::io::IsTerminal;
use std::process::ExitCode;

use topgun_core::{Cluster, Event, ImportOptions, ImportWhen, Imported, NodeFilter, Progress};

use super::create::{docker, interrupted};
use super::list::table;
use super::{EXIT_SUCCESS, Failed};
use crate::cli::image::{ImageArgs, ImageCommand, ImportArgs};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Runs `topgun image ...`.
pub async fn run(args: ImageArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ImageCommand::Import(args) => import(args, global).await,
    }
}

/// Progress lines on stderr, when it is a terminal and not `--quiet`.
fn progress(global: &GlobalArgs) -> Option<Progress> {
    if global.quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(Progress::new(|event: &Event| {
        output::progress(&event.to_string())
    }))
}

fn render(imported: &Imported) -> String {
    let names: Vec<&str> = imported.images.iter().map(|i| i.name.as_str()).collect();
    let now = imported
        .nodes
        .iter()
        .filter(|n| n.when == ImportWhen::Now)
        .count();
    let later = imported.nodes.len() - now;
    let mut out = format!(
        "imported {} ({}) into cluster {} in {:.1}s: {now} node{} now",
        names.join(", "),
        imported.size(),
        imported.cluster,
        imported.elapsed.as_secs_f64(),
        if now == 1 { "" } else { "s" },
    );
    if later > 0 {
        out.push_str(&format!(", {later} at their next start"));
    }
    out.push_str("\n\n");
    let mut rows = vec![["NODE".to_owned(), "ROLE".to_owned(), "IMPORTED".to_owned()]];
    for n in &imported.nodes {
        rows.push([
            n.name.clone(),
            n.role.to_string(),
            match (n.when, n.elapsed) {
                (ImportWhen::Now, Some(d)) => format!("now ({:.1}s)", d.as_secs_f64()),
                (ImportWhen::Now, None) => "now".to_owned(),
                (ImportWhen::NextStart, _) => "at its next start".to_owned(),
            },
        ]);
    }
    out.push_str(&table(&rows));
    if let Some(archive) = &imported.archive {
        out.push_str(&format!(
            "\n\narchive: {archive} in every node (the cluster's images volume)"
        ));
    }
    out
}

/// Runs `topgun image import`.
async fn import(args: ImportArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut options = ImportOptions::new();
    if let Some(filter) = &args.nodes {
        options = options.nodes(NodeFilter::parse(filter)?);
    }
    if let Some(p) = progress(global) {
        options = options.progress(p);
    }
    let docker = docker().await?;
    let cluster = Cluster::named(docker, &args.cluster);
    let imported = tokio::select! {
        r = cluster.import_images(&args.images, &options) => {
            r?
        }
        () = interrupted() => {
            return Err(Failed(anyhow::anyhow!(
                "interrupted; nodes that had finished keep the images; an archive being copied \
                 into the images volume may be left incomplete there: run the same import again \
                 to replace it"
            ))
            .into());
        }
    };
    match args.output {
        OutputFormat::Json => output::json(&imported)?,
        OutputFormat::Text => output::result(&render(&imported)),
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}
