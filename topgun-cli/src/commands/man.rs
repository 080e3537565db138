//! The hidden `topgun __man DIR`: man pages from the clap definitions, one
//! per command (`topgun.1`, `topgun-create.1`, `topgun-node-add.1`, ...).
//!
//! It lives in the binary rather than in xtask because xtask must build
//! without protoc (it installs it), and the clap types need topgun-core.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::builder::{Resettable, StyledStr};

use super::EXIT_SUCCESS;
use crate::cli::{GlobalArgs, ManArgs};
use crate::output;

/// Writes every page into `args.out` and prints their paths.
pub async fn run(args: ManArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let written = write_pages(crate::cli::command(), &args.out)?;
    if !global.quiet {
        output::progress(&format!(
            "wrote {} man pages into {}",
            written.len(),
            args.out.display()
        ));
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

/// Renders the pages of `cmd` and its visible subcommands into `dir`
/// (created if missing); returns the files written.
pub fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let mut pending = vec![cmd];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        render(&cmd, &mut page)?;
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

/// One page: clap_mangen's, with the help's examples as an EXAMPLES section
/// kept line by line (clap_mangen would fill them into one paragraph), before
/// the version.
fn render(cmd: &clap::Command, out: &mut Vec<u8>) -> anyhow::Result<()> {
    let version = cmd.get_version().map(str::to_owned);
    let plain = cmd
        .clone()
        .after_help(Resettable::<StyledStr>::Reset)
        .after_long_help(Resettable::<StyledStr>::Reset)
        .version(None::<&'static str>);
    let source = format!("topgun {}", version.as_deref().unwrap_or_default());
    clap_mangen::Man::new(plain)
        .source(source.trim_end())
        .render(out)?;
    if let Some(examples) = cmd.get_after_help() {
        writeln!(out, ".SH EXAMPLES\n.nf")?;
        let text = examples.to_string();
        for line in text.lines().skip_while(|l| l.trim_end() == "Examples:") {
            writeln!(out, "{}", roff_line(line))?;
        }
        writeln!(out, ".fi")?;
    }
    if let Some(version) = version {
        writeln!(out, ".SH VERSION\nv{}", roff_line(&version))?;
    }
    Ok(())
}

/// A line of literal text for roff: backslashes and hyphens escaped, and a
/// leading `.` or `'` kept from being read as a request.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::roff_line;

    #[test]
    fn roff_lines_are_literal() {
        assert_eq!(roff_line("  topgun a --b"), "  topgun a \\-\\-b");
        assert_eq!(roff_line(".x 'y'"), "\\&.x 'y'");
        assert_eq!(roff_line("a\\b"), "a\\eb");
    }
}
