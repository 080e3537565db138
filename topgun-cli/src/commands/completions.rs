//! `topgun completions SHELL`: the script a shell loads (the names it
//! completes come from [`crate::candidates`]).
//!
//! Completion is dynamic (clap_complete's `CompleteEnv`): the script a shell
//! loads calls `TOPGUN_COMPLETE=SHELL topgun -- WORDS...` for every
//! completion, and `main` answers before parsing. Subcommands and flags come from the
//! clap definitions; cluster and node names from Docker's labels, asked with
//! a short deadline. A completion prints nothing to stderr: whatever fails
//! (no engine, a slow one, a bad selection) completes to nothing.

use std::process::ExitCode;

use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};

use super::EXIT_SUCCESS;
use crate::cli::{CompletionShell, CompletionsArgs, GlobalArgs};
use crate::output;

/// The variable that switches `topgun` into answering a completion (not
/// clap's default `COMPLETE`: a stray `COMPLETE=1` in someone's environment
/// would break every run).
pub const COMPLETE_VAR: &str = "TOPGUN_COMPLETE";

/// Prints the registration script for `args.shell`.
pub async fn run(args: CompletionsArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    output::result(script(args.shell, &completer())?.trim_end());
    Ok(ExitCode::from(EXIT_SUCCESS))
}

/// The script that registers `completer` (the program the shell calls) for
/// the command `topgun` in `shell`.
pub fn script(shell: CompletionShell, completer: &str) -> anyhow::Result<String> {
    let adapter: &dyn EnvCompleter = match shell {
        CompletionShell::Bash => &Bash,
        CompletionShell::Zsh => &Zsh,
        CompletionShell::Fish => &Fish,
        CompletionShell::Powershell => &Powershell,
        CompletionShell::Elvish => &Elvish,
    };
    let mut buf = Vec::new();
    adapter.write_registration(COMPLETE_VAR, "topgun", "topgun", completer, &mut buf)?;
    Ok(String::from_utf8(buf)?)
}

/// The program the script calls, as `CompleteEnv` picks it: this process's
/// `argv[0]`, made absolute when it is a relative path with a directory (a
/// bare `topgun` stays one, found on `$PATH` at completion time).
fn completer() -> String {
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| "topgun".into());
    let mut path = std::path::PathBuf::from(argv0);
    if path.components().count() > 1
        && path.is_relative()
        && let Ok(cwd) = std::env::current_dir()
    {
        path = cwd.join(path);
    }
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_that_calls_topgun() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
            CompletionShell::Powershell,
            CompletionShell::Elvish,
        ] {
            let text = script(shell, "/opt/my tools/topgun").unwrap();
            assert!(text.contains("TOPGUN_COMPLETE"), "{shell:?}: {text}");
            assert!(text.contains("my tools/topgun"), "{shell:?}: {text}");
        }
    }
}
