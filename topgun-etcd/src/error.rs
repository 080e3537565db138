//! The one error type of topgun-etcd.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in topgun-etcd.
///
/// Messages are written for the person at the terminal: each names what was
/// refused or which endpoint failed, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster spec was refused before anything was generated.
    #[error("invalid etcd spec: {field}: {problem}")]
    InvalidSpec {
        /// The field that was refused (`members`, `cluster`, ...).
        field: &'static str,
        /// What is wrong with it, and the fix.
        problem: String,
    },
    /// An endpoint was refused before any connection was tried.
    #[error("invalid etcd endpoint {endpoint:?}: {problem}")]
    InvalidEndpoint {
        /// The endpoint exactly as given.
        endpoint: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Certificate material was refused before any connection was tried.
    #[error("invalid TLS material: {0}")]
    InvalidTls(String),
    /// Certificate generation or a file write in topgun-tls failed.
    #[error(transparent)]
    Tls(#[from] topgun_tls::Error),
    /// A file or directory could not be read, written or created.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot write", ...).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The `etcd` binary for the local runner was not found.
    #[error(
        "etcd binary not found: {searched}; install Debian's etcd-server (`cargo xtask setup`) or set TOPGUN_ETCD_BIN"
    )]
    EtcdNotFound {
        /// Where it was looked for.
        searched: String,
    },
    /// An etcd member process could not be started or stopped.
    #[error("member {member}: cannot {action} etcd: {source}")]
    Process {
        /// The member name.
        member: String,
        /// "start", "kill", ...
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A request to one member failed; `cause` says why in plain words.
    #[error("{endpoint}: {call} failed: {cause}")]
    Request {
        /// The endpoint that was asked.
        endpoint: String,
        /// The request ("status", "put", ...).
        call: &'static str,
        /// The cause, e.g. "the server's certificate is not signed by the given CA".
        cause: String,
    },
    /// No member could serve a request.
    #[error("no etcd member answered {call}: {}", causes.join("; "))]
    NoMemberAnswered {
        /// The request ("put", "range", ...).
        call: &'static str,
        /// One cause per endpoint, each naming the endpoint.
        causes: Vec<String>,
    },
    /// The write probe failed.
    #[error("write probe through {endpoint} failed at {step}: {cause}")]
    Probe {
        /// The endpoint that was used.
        endpoint: String,
        /// "put", "get" or "delete".
        step: &'static str,
        /// What went wrong.
        cause: String,
    },
    /// The cluster did not become healthy in time.
    #[error("etcd did not become {wanted} within {}; last: {last}", humanize(*.waited))]
    NotHealthy {
        /// What was waited for ("healthy", ...).
        wanted: &'static str,
        /// How long was waited.
        waited: Duration,
        /// The last verdict, with its reason.
        last: String,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn spec(field: &'static str, problem: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field,
            problem: problem.into(),
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
