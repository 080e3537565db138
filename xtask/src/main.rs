//! Project automation for topgun, run as `cargo xtask <task>`.
//!
//! - `setup`: install the system packages the workspace and its tests need.
//! - `test`: everything CI runs after lints: setup, images and their smoke
//!   tests, unit and integration tests, a short fuzzing pass, the
//!   end-to-end suite, each benchmark once as a smoke test.
//! - `fuzz [--secs N]`: every crate's fuzz targets, N seconds each.
//! - `man [--out DIR]`: topgun's man pages, into target/man by default.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench_create;
mod bench_etcd;
mod bench_tls;
mod e2e;
mod fuzz;
mod images;
mod man;
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
    /// Run every test: setup, unit and integration tests, fuzzing, e2e, and
    /// each benchmark once as a smoke test.
    Test,
    /// Build the local images (etcd, haproxy, the k3s stand-in) if their
    /// inputs changed.
    Images(images::ImagesArgs),
    /// Run the end-to-end suite against the Docker engine.
    E2e(e2e::E2eArgs),
    /// Fuzz the parsers (SANs, PEM/DER, kubeconfigs, node filters, ports,
    /// the YAML spec, endpoints) for `--secs` seconds per target.
    Fuzz(fuzz::FuzzArgs),
    /// Measure an area's speed targets: `cargo xtask bench <area>`.
    Bench {
        /// The area to measure.
        #[command(subcommand)]
        area: BenchArea,
    },
    /// Write topgun's man pages (topgun.1, topgun-create.1, ...) into
    /// `--out` [default: target/man].
    Man(man::ManArgs),
    /// Run `topgun ARGS...` with the locally built images.
    Topgun {
        /// Arguments for topgun.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The areas `cargo xtask bench` measures.
#[derive(Debug, Subcommand)]
enum BenchArea {
    /// CA + 10 leaf certificates in process; one `topgun tls inspect` on
    /// loopback as a whole process.
    Tls(bench_tls::BenchTlsArgs),
    /// A status round over 3 etcd members (p50/p99), and leader-failover
    /// detection beside etcd's own re-election time.
    Etcd(bench_etcd::BenchEtcdArgs),
    /// `topgun create` and `delete` beside their floors (the same
    /// containers created and started directly; then booted; a raw
    /// removal), peak RSS and CPU, for scenario 2 or `--scenarios
    /// s2,seed,etcd5,etcd50`.
    Create(bench_create::BenchCreateArgs),
}

fn main() -> ExitCode {
    let xtask = Xtask::parse();
    let result = match xtask.task {
        Task::Setup => setup::run(),
        Task::Test => test(),
        Task::Images(args) => images::run(args),
        Task::E2e(args) => e2e::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Bench { area } => match area {
            BenchArea::Tls(args) => bench_tls::run(args),
            BenchArea::Etcd(args) => bench_etcd::run(args),
            BenchArea::Create(args) => bench_create::run(args),
        },
        Task::Man(args) => man::run(args),
        Task::Topgun { args } => topgun(&args),
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
    let images = images::build_all()?;
    images::smoke(&images)?;
    let mut env = tools.env();
    env.extend(images::env_pairs(&images));
    setup::cargo(&["test", "--workspace", "--locked"], &env)?;
    // A short pass of every fuzz target (the workspace tests ran a few
    // cases each; this runs each for 10 s).
    fuzz::run(fuzz::FuzzArgs {
        secs: 10,
        only: None,
    })?;
    e2e::run(e2e::E2eArgs {
        only: None,
        upstream: false,
    })?;
    bench_smoke()
}

/// Each benchmark once, quickly, in the dev profile the tests built: that
/// they run and clean up, asserting nothing about time (figures come from
/// release runs, see docs/performance.md).
fn bench_smoke() -> anyhow::Result<()> {
    bench_tls::run(bench_tls::BenchTlsArgs::smoke())?;
    bench_etcd::run(bench_etcd::BenchEtcdArgs {
        rounds: 20,
        trials: 2,
        interval_ms: 50,
        dev: true,
    })?;
    bench_create::run(bench_create::BenchCreateArgs {
        runs: 1,
        scenarios: vec!["s2".to_owned(), "etcd5".to_owned()],
        servers: None,
        agents: None,
        etcd: None,
        dev: true,
    })
}

/// Runs the topgun CLI with the local images, as the README's main command.
fn topgun(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    let images = e2e::local_images()?;
    let topgun = setup::build_topgun(false)?;
    let status = std::process::Command::new(topgun)
        .args(args)
        .envs(images.iter().map(|(k, v)| (k, v)))
        .status()?;
    if !status.success() {
        anyhow::bail!("topgun {} failed ({status})", args.join(" "));
    }
    Ok(())
}
