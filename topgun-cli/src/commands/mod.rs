//! The commands: each composes the libraries and reports through
//! [`crate::output`].

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::output;

pub mod create;
pub mod delete;
pub mod etcd;
pub mod image;
pub mod kubeconfig;
pub mod list;
pub mod node;
pub mod status;
pub mod stop_start;
pub mod tls;

/// Exit code for success: the check passed or the operation completed.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code for a negative diagnosis or a failed operation.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage and I/O errors.
pub const EXIT_USAGE: u8 = 2;

/// An error that means "the operation failed" (exit 1) rather than "the
/// command was used wrongly or could not read its input" (exit 2, the default
/// for any other error).
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
    topgun_core::engine::select(topgun_core::engine::EngineFlags {
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
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            output::error(&err);
            if err.downcast_ref::<Failed>().is_some() {
                ExitCode::from(EXIT_FAILURE)
            } else {
                ExitCode::from(EXIT_USAGE)
            }
        }
    }
}
