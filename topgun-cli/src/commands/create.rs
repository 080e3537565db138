//! `topgun create`: builds a [`ClusterSpec`] from `--config` and flags, and
//! creates the cluster with topgun-core, rolling back on failure or on
//! SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use topgun_core::{
    ApiEndpoint, Cluster, ClusterName, ClusterSpec, CreateOptions, Datastore, EtcdDatastore, Event,
    ExternalDatastore, Filtered, SanList, Timeouts, Token,
};

use super::{EXIT_SUCCESS, Failed};
use crate::cli::cluster::{CreateArgs, DatastoreKind};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Maps a topgun-core error: bad input is a usage error (exit 2), anything
/// else a failed operation (exit 1).
pub(crate) fn core_error(e: topgun_core::Error) -> anyhow::Error {
    match e {
        topgun_core::Error::InvalidSpec { .. } | topgun_core::Error::Config { .. } => {
            anyhow::Error::new(e)
        }
        e => Failed(anyhow::Error::new(e)).into(),
    }
}

/// Connects to Docker; failing to is a failed operation (exit 1).
pub(crate) async fn docker() -> anyhow::Result<topgun_core::bollard::Docker> {
    topgun_core::connect().await.map_err(core_error)
}

/// Builds the spec: the config file (if any), then every flag given.
fn spec(args: &CreateArgs) -> anyhow::Result<ClusterSpec> {
    let mut spec = match &args.config {
        Some(path) => ClusterSpec::from_yaml_file(path)?,
        None => match &args.name {
            Some(name) => ClusterSpec::new(ClusterName::new(name)?),
            None => bail!("give the cluster a NAME (or a --config file that names it)"),
        },
    };
    if let Some(name) = &args.name {
        spec.name = ClusterName::new(name)?;
    }
    if let Some(n) = args.servers {
        spec.servers = n;
    }
    if let Some(n) = args.agents {
        spec.agents = n;
    }
    if let Some(image) = &args.image {
        spec.image = Some(image.clone());
    }
    if let Some(endpoint) = &args.datastore_endpoint {
        if args.datastore.is_some() || args.etcd_members.is_some() {
            bail!(
                "--datastore-endpoint is a datastore of its own; leave out --datastore and --etcd-members"
            );
        }
        let mut ext = match Datastore::external(endpoint)? {
            Datastore::External(e) => e,
            _ => unreachable!("external"),
        };
        ext = ExternalDatastore::with_tls(
            ext,
            args.datastore_cafile.clone(),
            args.datastore_certfile.clone(),
            args.datastore_keyfile.clone(),
        );
        spec.datastore = Datastore::External(ext);
    } else if args.datastore_cafile.is_some()
        || args.datastore_certfile.is_some()
        || args.datastore_keyfile.is_some()
    {
        bail!(
            "--datastore-cafile, --datastore-certfile and --datastore-keyfile go with --datastore-endpoint"
        );
    } else {
        let kind = args
            .datastore
            .or(args.etcd_members.map(|_| DatastoreKind::Etcd));
        match kind {
            Some(DatastoreKind::Embedded) => {
                if args.etcd_members.is_some() {
                    bail!("--etcd-members goes with --datastore etcd");
                }
                spec.datastore = Datastore::Embedded;
            }
            Some(DatastoreKind::Etcd) => {
                let mut etcd = match &spec.datastore {
                    Datastore::Etcd(e) => e.clone(),
                    _ => EtcdDatastore::default(),
                };
                if let Some(n) = args.etcd_members {
                    etcd.members = n;
                }
                spec.datastore = Datastore::Etcd(etcd);
            }
            None => {}
        }
    }
    if let (Some(image), Datastore::Etcd(etcd)) = (&args.etcd_image, &mut spec.datastore) {
        etcd.image = Some(image.clone());
    }
    if let Some(api) = &args.api_port {
        spec.api = ApiEndpoint::parse(api)?;
    }
    for sans in &args.tls_san {
        spec.tls_san.0.extend(SanList::parse(sans)?);
    }
    if let Some(token) = &args.token {
        spec.token = Some(Token::new(token)?);
    }
    for arg in &args.k3s_arg {
        spec.k3s_args.push(Filtered::parse(arg)?);
    }
    for var in &args.env {
        spec.env.push(Filtered::parse(var)?);
    }
    for volume in &args.volume {
        spec.volumes.push(Filtered::parse(volume)?);
    }
    for port in &args.port {
        spec.ports.push(Filtered::parse(port)?);
    }
    if args.no_lb {
        spec.loadbalancer.enabled = false;
    }
    if let Some(image) = &args.lb_image {
        spec.loadbalancer.image = Some(image.clone());
    }
    if let Some(timeout) = args.timeout {
        spec.timeouts = Timeouts::all(timeout);
    }
    if args.no_rollback {
        spec.no_rollback = true;
    }
    spec.validate()?;
    Ok(spec)
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
    Some(Arc::new(move |event: &Event| {
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
    let spec = spec(&args)?;
    for warning in spec.warnings() {
        output::warn(&warning.to_string());
    }
    let docker = docker().await?;
    let mut options = CreateOptions::new();
    if let Some(p) = progress(global) {
        options = options.progress(p);
    }
    if !args.no_kubeconfig {
        let files = topgun_core::default_kubeconfig_files().map_err(core_error)?;
        options = options.merge_kubeconfig_files(files, args.switch_context);
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
    let cluster = cluster.map_err(|e| match e {
        topgun_core::Error::Cancelled if !spec.no_rollback => Failed(anyhow::anyhow!(
            "interrupted; everything this create had made was removed"
        ))
        .into(),
        e => core_error(e),
    })?;
    let Some(created) = cluster.created() else {
        anyhow::bail!("internal error: the create returned no report");
    };
    match args.output {
        OutputFormat::Json => output::json(created)?,
        OutputFormat::Text => {
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
