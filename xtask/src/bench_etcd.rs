//! `cargo xtask bench etcd`: topgun-etcd's health checks against a real
//! 3-member etcd with mutual TLS on loopback, built in release mode.
//!
//! - a status round over the 3 members, p50/p99 (target: p50 < 20 ms);
//! - from SIGKILLing the leader to a verdict naming the new leader, beside
//!   etcd's own re-election time from the same run (target: within 1.5x).
//!
//! The measuring code is the `bench_etcd` example of topgun-etcd: xtask
//! itself must build without protoc (it installs it), so it does not link
//! etcd-client.

use crate::setup;

/// Arguments of `cargo xtask bench etcd`.
#[derive(Debug, clap::Args)]
pub struct BenchEtcdArgs {
    /// Status rounds to time.
    #[arg(long, default_value_t = 500)]
    pub rounds: usize,
    /// Leader kills to time.
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    /// Milliseconds between status rounds while watching for the new leader.
    #[arg(long, default_value_t = 50)]
    pub interval_ms: u64,
    /// Build and run the dev profile: a quick smoke run (CI), whose
    /// figures mean nothing.
    #[arg(long)]
    pub dev: bool,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: BenchEtcdArgs) -> anyhow::Result<()> {
    setup::run()?;
    let (rounds, trials, interval) = (
        args.rounds.to_string(),
        args.trials.to_string(),
        args.interval_ms.to_string(),
    );
    setup::run_example(
        !args.dev,
        "topgun-etcd",
        "bench_etcd",
        &[
            "--rounds",
            &rounds,
            "--trials",
            &trials,
            "--interval-ms",
            &interval,
        ],
        &[],
    )
}
