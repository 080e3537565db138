//! `topgun tls`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::cli::tls::TlsArgs;

/// Runs `topgun tls`.
pub async fn run(_args: TlsArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("topgun tls is being built")
}
