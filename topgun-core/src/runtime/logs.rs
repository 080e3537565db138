//! Readiness from logs: follow a container's log stream (no polling) until a
//! line appears, a fatal line is logged, the container exits, or time runs
//! out; keep the last lines for the error message.

use std::collections::VecDeque;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::{Error, Result};

/// How many log lines an error shows.
pub(crate) const TAIL_LINES: usize = 15;
/// The longest log line kept (longer ones are cut).
const MAX_LINE: usize = 400;

/// The last lines of a log, split from raw chunks.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    /// Adds a chunk; returns the complete lines it finished.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                done.push(self.finish());
            } else if self.partial.len() < MAX_LINE * 4 {
                self.partial.push(b);
            }
        }
        for line in &done {
            if self.lines.len() == TAIL_LINES {
                self.lines.pop_front();
            }
            self.lines.push_back(line.clone());
        }
        done
    }

    fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.partial)
            .trim_end_matches('\r')
            .to_owned();
        self.partial.clear();
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}...", &text[..cut])
        } else {
            text
        }
    }

    /// The kept lines, including an unfinished last one.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            out.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        out
    }
}

/// Whether a log line reports a fatal error (k3s/logrus, etcd/zap).
pub(crate) fn is_fatal(line: &str) -> bool {
    line.contains("level=fatal")
        || line.contains("\"level\":\"fatal\"")
        || line.contains("level=panic")
}

fn chunk_bytes(out: &LogOutput) -> &[u8] {
    match out {
        LogOutput::StdOut { message }
        | LogOutput::StdErr { message }
        | LogOutput::Console { message }
        | LogOutput::StdIn { message } => message,
    }
}

/// When `container`'s last run ended, as Docker reports it (RFC 3339; the
/// zero time for a container that never ran). Read before a start, it
/// separates the lines of earlier runs from the new run's: a process that
/// logs at once can have lines timestamped before Docker records the new
/// `StartedAt`, but never before the previous run ended.
pub(crate) async fn finished_at(docker: &Docker, container: &str) -> Result<String> {
    let info = crate::docker::inspect(docker, container).await?;
    Ok(info.state.and_then(|s| s.finished_at).unwrap_or_default())
}

/// Parses an RFC 3339 time with up to nanoseconds, as Docker writes it, into
/// nanoseconds since the epoch (`None` if it is not one).
fn unix_nanos(ts: &str) -> Option<i128> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

/// Like [`wait_for_line`], but only lines logged after `since` (when the
/// previous run ended, see [`finished_at`]) count: a restarted container
/// still holds the lines of its earlier runs.
pub(crate) async fn wait_for_line_since(
    docker: &Docker,
    container: &str,
    ready: Option<&str>,
    since: String,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    let from = unix_nanos(&since);
    follow(docker, container, ready, from, deadline, timeout).await
}

/// Follows the logs of `container` (already started) until a line contains
/// `ready`. Fails on a fatal line, when the container exits (the stream
/// ends), or at `deadline`, naming the node and showing its last lines. With
/// `ready` `None` it only watches for failure, until `deadline`.
pub(crate) async fn wait_for_line(
    docker: &Docker,
    container: &str,
    ready: Option<&str>,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    follow(docker, container, ready, None, deadline, timeout).await
}

/// The log follower behind [`wait_for_line`] and [`wait_for_line_since`]:
/// with `from` (nanoseconds since the epoch) the lines are asked for with
/// Docker's timestamps, and earlier ones are skipped.
async fn follow(
    docker: &Docker,
    container: &str,
    ready: Option<&str>,
    from: Option<i128>,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    let mut stream = docker.logs(
        container,
        Some(LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            tail: "all".to_owned(),
            timestamps: from.is_some(),
            // Whole seconds, one early (the lines are compared exactly
            // below); the zero time of a container that never ran gives 0.
            since: from
                .and_then(|n| i32::try_from(n / 1_000_000_000 - 1).ok())
                .unwrap_or(0)
                .max(0),
            ..Default::default()
        }),
    );
    let mut tail = Tail::default();
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                return match ready {
                    None => Ok(()),
                    Some(line) => Err(Error::Timeout {
                        node: container.to_owned(),
                        waiting_for: format!("no {line:?} in its log"),
                        after: timeout,
                        last_logs: tail.lines(),
                    }),
                };
            }
        };
        match next {
            Some(Ok(out)) => {
                for line in tail.push(chunk_bytes(&out)) {
                    let line = match from {
                        None => line,
                        Some(from) => match line.split_once(' ') {
                            Some((ts, _)) if unix_nanos(ts).is_some_and(|t| t <= from) => {
                                continue;
                            }
                            Some((ts, rest)) if unix_nanos(ts).is_some() => rest.to_owned(),
                            _ => line,
                        },
                    };
                    if let Some(ready) = ready
                        && line.contains(ready)
                    {
                        return Ok(());
                    }
                    if is_fatal(&line) {
                        return Err(Error::NodeFailed {
                            node: container.to_owned(),
                            reason: "it logged a fatal error".to_owned(),
                            last_logs: tail.lines(),
                        });
                    }
                }
            }
            Some(Err(e)) => {
                return Err(Error::docker(format!("follow the logs of {container}"), e));
            }
            None => {
                let reason = exit_reason(docker, container).await;
                return Err(Error::NodeFailed {
                    node: container.to_owned(),
                    reason,
                    last_logs: tail.lines(),
                });
            }
        }
    }
}

/// Why a container's log stream ended, from its state.
pub(crate) async fn exit_reason(docker: &Docker, container: &str) -> String {
    match crate::docker::inspect(docker, container).await {
        Ok(info) => {
            let state = info.state.unwrap_or_default();
            let code = state.exit_code.unwrap_or_default();
            let restarts = info.restart_count.unwrap_or_default();
            let mut reason = format!("it exited with code {code}");
            if state.oom_killed == Some(true) {
                reason.push_str(" (killed: out of memory)");
            }
            if let Some(err) = state.error.filter(|e| !e.is_empty()) {
                reason.push_str(&format!(" ({err})"));
            }
            if state.running == Some(true) || restarts > 0 {
                reason.push_str(&format!(" and Docker restarted it ({restarts} restarts)"));
            }
            reason
        }
        Err(e) => format!("its log stream ended and it cannot be inspected: {e}"),
    }
}

/// The last `n` log lines of a container (not following).
pub(crate) async fn last_lines(docker: &Docker, container: &str, n: usize) -> Vec<String> {
    let mut stream = docker.logs(
        container,
        Some(LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            tail: n.to_string(),
            ..Default::default()
        }),
    );
    let mut tail = Tail::default();
    let fut = async {
        while let Some(Ok(out)) = stream.next().await {
            tail.push(chunk_bytes(&out));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), fut).await;
    let mut lines = tail.lines();
    if lines.len() > n {
        lines.drain(..lines.len() - n);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_splits_chunks_into_lines_and_keeps_the_last() {
        let mut t = Tail::default();
        assert!(t.push(b"first li").is_empty());
        assert_eq!(t.push(b"ne\r\nsecond\nthi"), ["first line", "second"]);
        assert_eq!(t.lines(), ["first line", "second", "thi"]);
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(t.lines().len(), TAIL_LINES);
        assert_eq!(t.lines().last().map(String::as_str), Some("line 99"));
        let long = "x".repeat(10_000) + "\n";
        let lines = t.push(long.as_bytes());
        assert!(lines[0].len() <= MAX_LINE + 3);
    }

    #[test]
    fn fatal_lines() {
        assert!(is_fatal(
            "time=\"2024\" level=fatal msg=\"invalid datastore endpoint\""
        ));
        assert!(is_fatal(
            "{\"level\":\"fatal\",\"msg\":\"discovery failed\"}"
        ));
        assert!(!is_fatal("level=info msg=\"k3s is up and running\""));
    }
}
