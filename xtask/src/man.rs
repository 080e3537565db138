//! `cargo xtask man [--out DIR]`: topgun's man pages.
//!
//! The pages come from topgun's clap definitions, which live in the binary
//! crate and need topgun-core; xtask must build without protoc, so it builds
//! `topgun` and runs its hidden `topgun __man DIR` instead of linking it.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::setup;

/// Arguments of `cargo xtask man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory to write topgun.1, topgun-create.1, ... into
    /// [default: target/man].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Builds topgun and writes its man pages.
pub fn run(args: ManArgs) -> anyhow::Result<()> {
    let out = args
        .out
        .unwrap_or_else(|| setup::workspace_root().join("target").join("man"));
    let topgun = setup::build_topgun(false)?;
    let status = std::process::Command::new(&topgun)
        .arg("__man")
        .arg(&out)
        .status()
        .with_context(|| format!("running {}", topgun.display()))?;
    if !status.success() {
        bail!("topgun __man {} failed ({status})", out.display());
    }
    println!(
        "man pages in {}: man -l {}",
        out.display(),
        out.join("topgun.1").display()
    );
    Ok(())
}
