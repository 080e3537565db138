//! Project automation for topgun, run as `cargo xtask <task>`.
//!
//! - `setup`: install the system packages the workspace and its tests need.
//! - `test`: everything CI runs after lints: setup, images, unit and
//!   integration tests, the end-to-end suite.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod setup;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// topgun's project automation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the Debian packages the workspace and its tests need.
    Setup,
    /// Run every test: setup, unit and integration tests.
    Test,
}

fn main() -> ExitCode {
    let xtask = Xtask::parse();
    let result = match xtask.task {
        Task::Setup => setup::run(),
        Task::Test => test(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn test() -> anyhow::Result<()> {
    setup::run()?;
    let tools = setup::Tools::locate()?;
    setup::cargo(&["test", "--workspace", "--locked"], &tools.env())?;
    Ok(())
}
