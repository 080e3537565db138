//! `topgun create`: builds a spec from flags, the environment and `--config`
//! ([`crate::precedence`]), and
//! creates the cluster with topgun-core, rolling back on failure or on
//! SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use topgun_core::{Cluster, CreateOptions, Event};

use super::{EXIT_SUCCESS, Failed};
use crate::cli::GlobalArgs;
use crate::cli::cluster::{CreateArgs, CreateOutput};
use crate::output;
use crate::precedence::{self, Resolved};

/// Connects to the selected Docker engine.
pub(crate) async fn docker() -> anyhow::Result<topgun_core::bollard::Docker> {
    Ok(topgun_core::connect().await?)
}

/// Waits for SIGINT, SIGTERM or SIGHUP (a closed terminal or ssh session).
pub(crate) async fn interrupted() {
    use tokio::signal::unix::SignalKind;
    let signal = |kind: SignalKind| async move {
        match tokio::signal::unix::signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = signal(SignalKind::interrupt()) => {}
        () = signal(SignalKind::terminate()) => {}
        () = signal(SignalKind::hangup()) => {}
    }
}

/// After the first interruption: every further one says that the rollback
/// still runs and how to finish it, instead of killing it half-way.
async fn rollback_notice(name: String) {
    loop {
        interrupted().await;
        output::warn(&format!(
            "rollback is still running; wait for it, or run `topgun delete {name}` afterwards to \
             remove whatever is left"
        ));
    }
}

/// Progress lines on stderr, when it is a terminal and not `--quiet`: a
/// line per phase done, and while phases of several nodes run, one status
/// line with their counts (`agents 37/50 ready`); `-v` shows each node
/// instead.
pub(crate) fn progress(global: &GlobalArgs) -> Option<topgun_core::Progress> {
    if global.quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let verbose = global.verbose > 0;
    // The counts, and whether a status line is on the terminal.
    let state = std::sync::Mutex::new((topgun_core::ReadyCounts::new(), false));
    Some(topgun_core::Progress::new(move |event: &Event| {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let (counts, shown) = &mut *state;
        let changed = counts.update(event);
        let line = match event {
            Event::PhaseDone { .. }
            | Event::RollingBack { .. }
            | Event::Removed { .. }
            | Event::NodeStopped { .. } => Some(event.to_string()),
            Event::NodeReady { .. } if verbose => Some(format!("  {event}")),
            _ => None,
        };
        // A warning is printed by someone else: clear the status first.
        let warning = matches!(event, Event::Warning { .. });
        if line.is_none() && !warning && (!changed || verbose) {
            return;
        }
        if *shown {
            output::progress_status(None);
            *shown = false;
        }
        if warning {
            return;
        }
        if let Some(line) = line {
            output::progress(&line);
        }
        if !verbose && let Some(summary) = counts.summary() {
            output::progress_status(Some(&summary));
            *shown = true;
        }
    }))
}

/// Runs `topgun create`.
pub async fn run(args: CreateArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let Resolved { spec, settings } = precedence::resolve(&args, &|k| std::env::var(k).ok())?;
    for warning in spec.warnings() {
        output::warn(&warning.to_string());
    }
    let docker = docker().await?;
    if args.dry_run {
        let plan = Cluster::plan(&docker, &spec).await?;
        /// What `--dry-run` shows, in this order.
        #[derive(serde::Serialize)]
        struct DryRun<'a> {
            settings: &'a std::collections::BTreeMap<&'static str, precedence::Setting>,
            plan: &'a topgun_core::Plan,
        }
        let shown = DryRun {
            settings: &settings,
            plan: &plan,
        };
        match args.output {
            CreateOutput::Json => output::json(&shown)?,
            CreateOutput::Text | CreateOutput::Yaml => output::yaml(&shown)?,
        }
        return Ok(ExitCode::from(EXIT_SUCCESS));
    }
    let mut options = CreateOptions::new();
    if let Some(p) = progress(global) {
        options = options.progress(p);
    }
    // The config file's `kubeconfig:` (k3d's options.kubeconfig), then the flags.
    if !args.no_kubeconfig && spec.kubeconfig.merge {
        let files = topgun_core::default_kubeconfig_files()?;
        let switch = args.switch_context || spec.kubeconfig.switch_context;
        options = options.merge_kubeconfig_files(files, switch);
    }
    let started = Instant::now();
    // The first signal cancels the create; later ones, while the rollback
    // runs, say so rather than being swallowed.
    let name = spec.name.to_string();
    let cancel = async move {
        interrupted().await;
        tokio::spawn(rollback_notice(name));
    };
    let cluster = Cluster::create_until(docker, &spec, &options, cancel).await;
    let cluster = cluster.map_err(|e| -> anyhow::Error {
        match e {
            topgun_core::Error::Cancelled if !spec.no_rollback => Failed(anyhow::anyhow!(
                "interrupted; everything this create had made was removed"
            ))
            .into(),
            e => e.into(),
        }
    })?;
    let Some(created) = cluster.created() else {
        return Err(topgun_core::Error::Bug {
            what: "Cluster::create_until",
            problem: "the handle of a create holds no report".to_owned(),
        }
        .into());
    };
    match args.output {
        CreateOutput::Json => output::json(created)?,
        CreateOutput::Yaml => output::yaml(created)?,
        CreateOutput::Text => {
            output::result(&format!(
                "created cluster {} in {:.1}s: {} nodes, API at {}",
                created.name,
                started.elapsed().as_secs_f64(),
                created.nodes.len(),
                created.server
            ));
            match &created.kubeconfig_path {
                Some(path) => output::result(&format!(
                    "kubeconfig: context topgun-{} in {}",
                    created.name,
                    path.display()
                )),
                None => output::result(&format!(
                    "kubeconfig: `topgun kubeconfig merge {}` or `topgun kubeconfig get {}`",
                    created.name, created.name
                )),
            }
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}
