//! The commands: each composes the libraries and reports through
//! [`crate::output`].

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::output;

pub mod completions;
pub mod config;
pub mod create;
pub mod delete;
pub mod etcd;
pub mod image;
pub mod kubeconfig;
pub mod list;
pub mod man;
pub mod node;
pub mod registry;
pub mod status;
pub mod stop_start;
pub mod tls;

// Exit statuses, decided here and nowhere else (README, "Exit status").
//
// | status | meaning |
// | 0 | success: the check passed, the operation completed |
// | 1 | a negative diagnosis (unhealthy, not covered) or a failed operation: Docker unreachable, a node that failed, a timeout |
// | 2 | the input: a bad flag, file or name, a cluster that does not exist or already does |
// | 70 | a bug in topgun (an internal invariant broke) |
//
// A library error answers by its `kind()`; an error of the CLI's own is
// input (2) unless wrapped in [`Failed`].

/// Exit code for success: the check passed or the operation completed.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code for a negative diagnosis or a failed operation.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for input the command cannot use.
pub const EXIT_USAGE: u8 = 2;

/// The exit status of a command that failed with `err`: the kind of the
/// first topgun library error in its chain, else 1 for [`Failed`], else 2
/// (the CLI's own errors are about its input).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<topgun_core::Error>() {
            return e.kind().exit_code();
        }
        if let Some(e) = cause.downcast_ref::<topgun_etcd::Error>() {
            return e.kind().exit_code();
        }
        if let Some(e) = cause.downcast_ref::<topgun_tls::Error>() {
            return e.kind().exit_code();
        }
        if cause.is::<Failed>() {
            return EXIT_FAILURE;
        }
    }
    EXIT_USAGE
}

/// An error that means "the operation failed" (exit 1) rather than "the
/// command was used wrongly or could not read its input" (exit 2, the default
/// for the CLI's own errors).
#[derive(Debug)]
pub struct Failed(pub anyhow::Error);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Failed {}

/// Runs the parsed command line and maps its result to an exit code.
pub fn run(cli: Cli) -> ExitCode {
    output::init_logging(cli.global.verbose, cli.global.quiet);
    topgun_core::select_engine(topgun_core::EngineFlags {
        engine: cli.global.engine.clone(),
        context: cli.global.context.clone(),
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::error(&anyhow::Error::new(e).context("cannot start the async runtime"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let global = cli.global;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Create(args) => create::run(*args, &global).await,
            Command::Delete(args) => delete::run(args, &global).await,
            Command::Stop(args) => stop_start::stop(args, &global).await,
            Command::Start(args) => stop_start::start(args, &global).await,
            Command::Restart(args) => stop_start::restart(args, &global).await,
            Command::List(args) => list::run(args, &global).await,
            Command::Status(args) => status::run(args, &global).await,
            Command::Kubeconfig(args) => kubeconfig::run(args, &global).await,
            Command::Tls(args) => tls::run(args, &global).await,
            Command::Etcd(args) => etcd::run(args, &global).await,
            Command::Image(args) => image::run(args, &global).await,
            Command::Node(args) => node::run(args, &global).await,
            Command::Registry(args) => registry::run(args, &global).await,
            Command::Config(args) => config::run(args, &global).await,
            Command::Completions(args) => completions::run(args, &global).await,
            Command::Man(args) => man::run(args, &global).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            output::error(&err);
            ExitCode::from(exit_code(&err))
        }
    }
}
