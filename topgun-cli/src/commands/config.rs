//! `topgun config convert`: a k3d config file as topgun's own config.

use std::process::ExitCode;

use super::EXIT_SUCCESS;
use crate::cli::GlobalArgs;
use crate::cli::config::{ConfigArgs, ConfigCommand};
use crate::output;

/// Runs `topgun config ...`. Touches no Docker engine.
pub async fn run(args: ConfigArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Convert { file } => {
            let converted = topgun_core::convert_k3d_file(&file)?;
            if !global.quiet {
                for note in &converted.notes {
                    output::progress(&format!("note: {note}"));
                }
            }
            output::result(converted.yaml.trim_end());
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}
