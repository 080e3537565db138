//! Log lines in k3s's (logrus) text format on stderr:
//! `time="2024-05-01T10:00:00Z" level=info msg="k3s is up and running"`.
//!
//! topgun follows these lines to decide when a node is ready, so their
//! wording matches k3s where k3s has a line for the same event.

use std::io::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A log level, printed as logrus prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `level=info`
    Info,
    /// `level=warning`
    Warn,
    /// `level=error`
    Error,
    /// `level=fatal`: the process exits after printing it.
    Fatal,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

/// Formats one line (without the newline) at `now`.
pub fn format_line(now: OffsetDateTime, level: Level, msg: &str) -> String {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let time = now.format(&Rfc3339).unwrap_or_else(|_| "unknown".into());
    format!(
        "time=\"{time}\" level={} msg=\"{}\"",
        level.as_str(),
        escape(msg)
    )
}

/// Quotes the way logrus does: backslashes, quotes and control characters
/// are escaped so that one event is always one line.
fn escape(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Writes one line at `level` to stderr.
pub fn log(level: Level, msg: &str) {
    let line = format_line(OffsetDateTime::now_utc(), level, msg);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Logs at info level.
pub fn info(msg: impl AsRef<str>) {
    log(Level::Info, msg.as_ref());
}

/// Logs at warning level.
pub fn warn(msg: impl AsRef<str>) {
    log(Level::Warn, msg.as_ref());
}

/// Logs at error level.
pub fn error(msg: impl AsRef<str>) {
    log(Level::Error, msg.as_ref());
}

/// Logs at fatal level and exits with status 1, as k3s does.
pub fn fatal(msg: impl AsRef<str>) -> ! {
    log(Level::Fatal, msg.as_ref());
    std::process::exit(1)
}

/// Logs k3s's start line for `what` (`k3s` or `k3s agent`), then a warning
/// for each flag that is accepted but not emulated.
pub fn starting(what: &str, ignored_flags: &[String]) {
    info(format!(
        "Starting {what} {} ({})",
        crate::VERSION,
        crate::COMMIT
    ));
    for flag in ignored_flags {
        warn(format!(
            "Flag --{flag} is accepted but not emulated by the k3s stand-in"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_like_logrus() {
        let line = format_line(
            datetime!(2024-05-01 10:00:00.5 UTC),
            Level::Info,
            "k3s is up and running",
        );
        assert_eq!(
            line,
            r#"time="2024-05-01T10:00:00Z" level=info msg="k3s is up and running""#
        );
    }

    #[test]
    fn escapes_quotes_and_newlines() {
        let line = format_line(
            datetime!(2024-05-01 10:00:00 UTC),
            Level::Fatal,
            "bad \"x\"\nnext",
        );
        assert_eq!(
            line,
            r#"time="2024-05-01T10:00:00Z" level=fatal msg="bad \"x\"\nnext""#
        );
    }
}
