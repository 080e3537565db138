//! `topgun etcd`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::cli::etcd::EtcdArgs;

/// Runs `topgun etcd`.
pub async fn run(_args: EtcdArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("topgun etcd is being built")
}
