//! `cargo xtask bench create`: `topgun create` of scenario 2 (3 servers, 2
//! agents, a 3-member etcd with mutual TLS, the load balancer) beside the
//! floor, creating and starting the same containers straight through the
//! Docker API in the same run; and the peak RSS of `topgun create`.
//!
//! Targets: create at most 1.25x the floor, peak RSS under 30 MiB.
//!
//! The measuring code is the `bench_create` example of topgun-core (xtask
//! builds without protoc, so it does not link topgun-core); it runs the
//! release `topgun` binary as a whole process under `/usr/bin/time`.

use crate::{e2e, setup};

/// Arguments of `cargo xtask bench create`.
#[derive(Debug, clap::Args)]
pub struct BenchCreateArgs {
    /// Creates (and floors) to time, alternating.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Servers.
    #[arg(long, default_value_t = 3)]
    pub servers: u32,
    /// Agents.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// etcd members (0: embedded datastore).
    #[arg(long, default_value_t = 3)]
    pub etcd: u32,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: BenchCreateArgs) -> anyhow::Result<()> {
    setup::run()?;
    let env = e2e::local_images()?;
    let topgun = setup::build_topgun(true)?;
    let topgun = topgun.to_string_lossy().into_owned();
    let (runs, servers, agents, etcd) = (
        args.runs.to_string(),
        args.servers.to_string(),
        args.agents.to_string(),
        args.etcd.to_string(),
    );
    setup::run_example(
        "topgun-core",
        "bench_create",
        &[
            "--topgun",
            &topgun,
            "--runs",
            &runs,
            "--servers",
            &servers,
            "--agents",
            &agents,
            "--etcd",
            &etcd,
        ],
        &env,
    )
}
