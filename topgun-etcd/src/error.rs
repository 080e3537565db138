//! The one error type of topgun-etcd.

use std::path::PathBuf;
use std::time::Duration;

pub use topgun_tls::ErrorKind;

/// The cause an [`enum@Error`] keeps: `source()` returns the error itself
/// (downcast it to [`enum@Error`] or [`etcd_client::Error`]), not this box.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    ///
    /// It carries no source on purpose: the PEM parser's own errors may
    /// quote key bytes, so only a redacted description is kept.
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
    /// A request to one member failed; `cause` says why in plain words,
    /// `source` is the client library's error (none when the deadline
    /// passed).
    #[error("{endpoint}: {call} failed: {cause}")]
    Request {
        /// The endpoint that was asked.
        endpoint: String,
        /// The request ("status", "put", ...).
        call: &'static str,
        /// The cause, e.g. "the server's certificate is not signed by the given CA".
        cause: String,
        /// The error the client library returned (an [`etcd_client::Error`]).
        #[source]
        source: Option<Cause>,
    },
    /// No member could serve a request.
    #[error("no etcd member answered {call}: {first}{}", more(rest))]
    NoMemberAnswered {
        /// The request ("put", "range", ...).
        call: &'static str,
        /// The first member's error (each names its endpoint), an [`enum@Error`].
        #[source]
        first: Cause,
        /// The other members' errors, in order.
        rest: Vec<Error>,
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
        /// The failed request, an [`enum@Error`], when a request failed (not
        /// when the value read back was wrong).
        #[source]
        source: Option<Cause>,
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
    /// Whose problem this is: [`ErrorKind::Input`] for a refused spec,
    /// endpoint or TLS material; [`ErrorKind::Failed`] for requests,
    /// probes, waits, local processes and files that failed;
    /// topgun-tls's own classification for its errors.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidSpec { .. } | Error::InvalidEndpoint { .. } | Error::InvalidTls(_) => {
                ErrorKind::Input
            }
            Error::Tls(e) => e.kind(),
            Error::Io { .. }
            | Error::EtcdNotFound { .. }
            | Error::Process { .. }
            | Error::Request { .. }
            | Error::NoMemberAnswered { .. }
            | Error::Probe { .. }
            | Error::NotHealthy { .. } => ErrorKind::Failed,
        }
    }

    #[cfg(feature = "testing")]
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

    /// [`Error::NoMemberAnswered`] from one error per member tried.
    pub(crate) fn no_member_answered(call: &'static str, failures: Vec<Error>) -> Self {
        let mut failures = failures.into_iter();
        match failures.next() {
            Some(first) => Error::NoMemberAnswered {
                call,
                first: Box::new(first),
                rest: failures.collect(),
            },
            None => Error::InvalidEndpoint {
                endpoint: String::new(),
                problem: "no endpoints were given".into(),
            },
        }
    }

    pub(crate) fn spec(field: &'static str, problem: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field,
            problem: problem.into(),
        }
    }
}

fn more(rest: &[Error]) -> String {
    rest.iter().map(|e| format!("; {e}")).collect()
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
