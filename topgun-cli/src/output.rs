//! Everything topgun prints: results on stdout, progress and diagnostics on
//! stderr. No other module prints.

use std::io::IsTerminal;

use serde::Serialize;

/// Sets up `tracing` to write library events to stderr.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOPGUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .try_init();
}

/// Prints an error and its causes to stderr, one line, `error: ...`.
pub fn error(err: &anyhow::Error) {
    eprintln!("error: {err:#}");
}

/// Prints a warning to stderr.
pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}

/// Prints a hint to stderr.
pub fn hint(message: &str) {
    eprintln!("hint: {message}");
}

/// Prints a progress line to stderr (callers decide whether progress is on).
pub fn progress(message: &str) {
    eprintln!("{message}");
}

/// Prints a result line to stdout.
pub fn result(text: &str) {
    println!("{text}");
}

/// Prints `value` as pretty JSON to stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
