//! `cargo xtask bench create`: `topgun create` beside two floors, in the
//! same run: the raw floor (the same containers created and started
//! straight through the Docker API, all at once) and the boot floor (the
//! same, then each node's own readiness line, with no order); `topgun
//! delete` beside a raw parallel removal of the same resources; the peak RSS
//! and CPU-seconds of `topgun create`. Scenarios: `s2` (3 servers, 2
//! agents, 3-member etcd; the default), `seed` (5 servers, 9 agents,
//! embedded), `etcd5` (3 + 5, etcd), `etcd50` (3 + 50, etcd); or a shape of
//! your own with `--servers`, `--agents`, `--etcd`.
//!
//! Targets: create at most 1.10x the boot floor; delete at most 1.2x the
//! raw removal; t(etcd50)/t(etcd5) at most 2.5; peak RSS with 53 nodes
//! under 40 MiB. Figures and how to reproduce them: docs/performance.md.
//!
//! The measuring code is the `bench_create` example of topgun-core (xtask
//! builds without protoc, so it does not link topgun-core); it runs the
//! release `topgun` binary as a whole process under `/usr/bin/time`.

use crate::{e2e, setup};

/// Arguments of `cargo xtask bench create`.
#[derive(Debug, clap::Args)]
pub struct BenchCreateArgs {
    /// Creates (and floors) to time per scenario, alternating.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Named scenarios, comma-separated: s2, seed, etcd5, etcd50.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["servers", "agents", "etcd"])]
    pub scenarios: Vec<String>,
    /// Servers (a shape of your own).
    #[arg(long)]
    pub servers: Option<u32>,
    /// Agents (a shape of your own).
    #[arg(long)]
    pub agents: Option<u32>,
    /// etcd members (a shape of your own; 0: embedded datastore).
    #[arg(long)]
    pub etcd: Option<u32>,
    /// Build and run the dev profile: a quick smoke run (CI), whose
    /// figures mean nothing.
    #[arg(long)]
    pub dev: bool,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: BenchCreateArgs) -> anyhow::Result<()> {
    setup::run()?;
    let env = e2e::local_images()?;
    let topgun = setup::build_topgun(!args.dev)?;
    let mut argv = vec![
        "--topgun".to_owned(),
        topgun.to_string_lossy().into_owned(),
        "--runs".to_owned(),
        args.runs.to_string(),
    ];
    if !args.scenarios.is_empty() {
        argv.extend(["--scenarios".to_owned(), args.scenarios.join(",")]);
    }
    for (flag, value) in [
        ("--servers", args.servers),
        ("--agents", args.agents),
        ("--etcd", args.etcd),
    ] {
        if let Some(v) = value {
            argv.extend([flag.to_owned(), v.to_string()]);
        }
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    setup::run_example(!args.dev, "topgun-core", "bench_create", &argv, &env)
}
