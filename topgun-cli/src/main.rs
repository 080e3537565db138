//! `topgun`: highly available k3s clusters in Docker.
//!
//! The clap types live in [`cli`], the commands in [`commands`]; results go to
//! stdout and diagnostics to stderr through [`output`].

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    commands::run(<cli::Cli as clap::Parser>::parse())
}
