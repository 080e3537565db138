//! `topgun`: highly available k3s clusters in Docker.
//!
//! The clap types live in [`cli`], the commands in [`commands`]; results go to
//! stdout and diagnostics to stderr through [`output`].

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod candidates;
mod cli;
mod commands;
mod output;
mod precedence;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A shell asking for completions (`TOPGUN_COMPLETE=bash topgun -- ...`, from the
    // script `topgun completions` prints) is answered here, before parsing.
    clap_complete::CompleteEnv::with_factory(cli::command)
        .var(commands::completions::COMPLETE_VAR)
        .complete();
    commands::run(<cli::Cli as clap::Parser>::parse())
}
