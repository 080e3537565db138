//! Everything topgun prints: results on stdout, progress and diagnostics on
//! stderr. No other module prints.

use std::io::IsTerminal;

use serde::Serialize;

/// Sets up `tracing` to write library events to stderr.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        // topgun's own crates; the HTTP and gRPC crates below are chatty.
        (false, 1) => "warn,topgun_core=debug,topgun_etcd=debug,topgun_tls=debug,topgun=debug",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let from_env = tracing_subscriber::EnvFilter::try_from_env("TOPGUN_LOG").ok();
    // Debugging output carries the time since start, to see where a
    // create spends it; plain warnings do not.
    let timed = verbose > 0 || from_env.is_some();
    let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if timed {
        builder
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// Prints an error and its causes to stderr, one line, `error: ...`.
pub fn error(err: &anyhow::Error) {
    eprintln!("error: {}", error_line(err));
}

/// An error and its causes, each once: many errors name their cause in
/// their own message already, so a cause whose text is there is not
/// repeated.
fn error_line(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
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

/// Shows `message` as a status line on the terminal (stderr), replacing the
/// last one, without a newline; `None` clears it. Only for a terminal.
pub fn progress_status(message: Option<&str>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{}", message.unwrap_or_default());
    let _ = err.flush();
}

/// Writes `text` to stdout. A reader that went away (`topgun list | head`)
/// ends the process quietly, as `cat` does, instead of a panic.
fn stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        error(&anyhow::Error::new(e).context("cannot write to stdout"));
        std::process::exit(1);
    }
}

/// Prints a result line to stdout.
pub fn result(text: &str) {
    stdout(&format!("{text}\n"));
}

/// Prints `value` as pretty JSON to stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    stdout(&format!("{}\n", serde_json::to_string_pretty(value)?));
    Ok(())
}

/// Prints `value` as YAML on stdout.
pub fn yaml<T: Serialize>(value: &T) -> anyhow::Result<()> {
    stdout(&serde_norway::to_string(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::other("connection refused");
        let err = anyhow::Error::new(io).context("cannot reach Docker: connection refused");
        assert_eq!(error_line(&err), "cannot reach Docker: connection refused");
        let io = std::io::Error::other("permission denied");
        let err = anyhow::Error::new(io).context("cannot read /x");
        assert_eq!(error_line(&err), "cannot read /x: permission denied");
    }
}
