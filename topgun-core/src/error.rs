//! The one error type of topgun-core.

use std::path::PathBuf;
use std::time::Duration;

pub use topgun_tls::ErrorKind;

/// Everything that can go wrong in topgun-core.
///
/// Messages are written for the person at the terminal: each names what was
/// refused or what failed and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A part of the cluster spec was refused; nothing was created.
    #[error("invalid {what}: {problem}{}", fix_suffix(fix))]
    InvalidSpec {
        /// What was refused, with the value where it is not secret
        /// (e.g. `cluster name "a_b"`).
        what: String,
        /// What is wrong with it.
        problem: String,
        /// What to do instead; may be empty.
        fix: String,
    },
    /// A YAML config file could not be read as a cluster spec. The message
    /// names the line.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file (or `<string>` for in-memory input).
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A local file could not be read or written.
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
    /// An I/O error of the caller's own code, so that `?` works on
    /// `std::io::Result` in a function returning [`crate::Result`].
    #[error(transparent)]
    StdIo(#[from] std::io::Error),
    /// The Docker daemon could not be reached.
    #[error(
        "cannot reach Docker at {host}: {reason}; is the daemon running? DOCKER_HOST selects \
         the daemon (unset, it is the socket unix:///var/run/docker.sock)"
    )]
    DockerUnreachable {
        /// The host or socket that was tried.
        host: String,
        /// Why the connection failed.
        reason: String,
    },
    /// A Docker engine (remote, over TLS or ssh, or a context's) could not be
    /// reached; names the layer that failed.
    #[error(
        "cannot reach the Docker engine {url} (from {source_of}): {layer}: {problem}{}",
        fix_suffix(fix)
    )]
    Engine {
        /// The engine URL.
        url: String,
        /// Where it was selected (`DOCKER_HOST`, `docker context "x"`, ...).
        source_of: String,
        /// The layer that failed: DNS, TCP, TLS handshake, ssh, ssh
        /// authentication, engine API, ...
        layer: String,
        /// What went wrong.
        problem: String,
        /// What to do; may be empty.
        fix: String,
    },
    /// A Docker API call failed.
    #[error("docker: cannot {action}: {source}")]
    Docker {
        /// What was being done, e.g. `create container topgun-demo-server-0`.
        action: String,
        /// The underlying error.
        #[source]
        source: bollard::errors::Error,
    },
    /// An image the cluster needs is not present on the engine.
    #[error(
        "image {image} is not present on the Docker engine; pull it (`docker pull {image}`), or \
         build the local test images with `cargo xtask images` and use the tags that \
         `cargo xtask images --print` shows (TOPGUN_K3S_IMAGE, TOPGUN_ETCD_IMAGE, TOPGUN_LB_IMAGE)"
    )]
    ImageMissing {
        /// The image reference.
        image: String,
    },
    /// A cluster (or leftovers of one) with this name already exists.
    #[error(
        "a cluster named {name:?} already exists ({}); delete it first with `topgun delete {name}`",
        resources.join(", ")
    )]
    ClusterExists {
        /// The cluster name.
        name: String,
        /// What was found, e.g. `container topgun-demo-server-0`.
        resources: Vec<String>,
    },
    /// No cluster with this name exists.
    #[error("no cluster named {name:?}; `topgun list` shows the clusters")]
    ClusterNotFound {
        /// The cluster name.
        name: String,
    },
    /// A host port is already taken.
    #[error(
        "port {port} on {host} is already in use; free it, pick another port, or leave the port \
         out to get a free one"
    )]
    PortInUse {
        /// The host address.
        host: String,
        /// The port.
        port: u16,
    },
    /// No free subnet was found for the cluster network.
    #[error(
        "no free /24 subnet for the cluster network in {searched}; remove unused Docker networks \
         or give one with `network: {{subnet: ...}}`"
    )]
    NoFreeSubnet {
        /// The ranges that were searched.
        searched: String,
    },
    /// A node failed while starting: it exited or logged a fatal error.
    #[error("{node} failed: {reason}{}", log_tail(last_logs))]
    NodeFailed {
        /// The container name.
        node: String,
        /// What happened.
        reason: String,
        /// The node's last log lines.
        last_logs: Vec<String>,
    },
    /// A node or check did not become ready in time.
    #[error("{node} was not ready after {}: {waiting_for}{}", human(*after), log_tail(last_logs))]
    Timeout {
        /// The container (or check) that timed out.
        node: String,
        /// What was awaited.
        waiting_for: String,
        /// The timeout.
        after: Duration,
        /// The node's last log lines.
        last_logs: Vec<String>,
    },
    /// The operation was cancelled (SIGINT/SIGTERM).
    #[error("cancelled")]
    Cancelled,
    /// Rollback could not remove everything.
    #[error(
        "{cause}; rollback could not remove: {}; remove them with `topgun delete {name}`",
        leftovers.join(", ")
    )]
    RollbackIncomplete {
        /// The error that triggered the rollback.
        cause: Box<Error>,
        /// The cluster name.
        name: String,
        /// What is left.
        leftovers: Vec<String>,
    },
    /// A delete could not remove everything.
    #[error("could not remove: {}; run the delete again", leftovers.join(", "))]
    RemoveIncomplete {
        /// What is left, with why.
        leftovers: Vec<String>,
    },
    /// A failed `node add` could not remove everything it made; the
    /// cluster's other nodes were not touched.
    #[error(
        "{cause}; removing what this add made failed for: {}; remove those by hand (`topgun node \
         delete NODE` for a node); the other nodes were not touched",
        leftovers.join(", ")
    )]
    AddRollbackIncomplete {
        /// The error that triggered the rollback.
        cause: Box<Error>,
        /// What is left, with why.
        leftovers: Vec<String>,
    },
    /// A kubeconfig could not be read, parsed or rewritten.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// The API server did not answer as expected.
    #[error("API at {url}: {reason}")]
    Api {
        /// The URL checked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An image to import into a cluster is not on the host's Docker
    /// engine; nothing was imported.
    #[error(
        "image {image} is not on the Docker engine (`docker image ls` shows what is there); pull, \
         build or load it first; nothing was imported"
    )]
    ImportImageMissing {
        /// The image reference.
        image: String,
    },
    /// Importing images failed on some nodes (the others were tried).
    #[error("image import failed on {}{}", failures.join("; "), fix_suffix(note))]
    ImportFailed {
        /// Each failed node with why, e.g. `topgun-demo-agent-0: ... exited with 1: ...`.
        failures: Vec<String>,
        /// What did succeed and what happens next; may be empty.
        note: String,
    },
    /// An internal invariant broke: a bug in topgun, not the user's input.
    #[error("internal error in {what}: {problem}; this is a bug in topgun, please report it")]
    Bug {
        /// The part of topgun whose invariant broke.
        what: &'static str,
        /// What was found.
        problem: String,
    },
    /// An etcd operation failed.
    #[error(transparent)]
    Etcd(#[from] topgun_etcd::Error),
    /// A certificate operation failed.
    #[error(transparent)]
    Tls(#[from] topgun_tls::Error),
}

fn fix_suffix(fix: &str) -> String {
    if fix.is_empty() {
        String::new()
    } else {
        format!("; {fix}")
    }
}

fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn log_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nlast log lines:");
    for line in lines {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}

impl Error {
    /// An [`Error::InvalidSpec`]. Messages quote the input they refuse;
    /// any part that holds PEM text (a key pasted in the wrong place) is
    /// described instead of shown ([`topgun_tls::redact::scrub_pem`]).
    pub fn invalid(
        what: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        use topgun_tls::redact::scrub_pem;
        Error::InvalidSpec {
            what: scrub_pem(&what.into()),
            problem: scrub_pem(&problem.into()),
            fix: scrub_pem(&fix.into()),
        }
    }

    /// Whose problem this is: the user's input (a bad flag, file or name, a
    /// cluster that does not exist or already does), an operation that
    /// failed (Docker, a node, a timeout), or a bug. The CLI's exit status
    /// follows from it ([`ErrorKind::exit_code`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidSpec { .. }
            | Error::Config { .. }
            | Error::ClusterExists { .. }
            | Error::ClusterNotFound { .. }
            | Error::PortInUse { .. }
            | Error::ImportImageMissing { .. } => ErrorKind::Input,
            // A file the user named that cannot be read is bad input.
            Error::Io { action, .. } if action.starts_with("cannot read") => ErrorKind::Input,
            Error::Bug { .. } => ErrorKind::Bug,
            Error::Etcd(e) => e.kind(),
            Error::Tls(e) => e.kind(),
            Error::RollbackIncomplete { cause, .. }
            | Error::AddRollbackIncomplete { cause, .. } => match cause.kind() {
                ErrorKind::Bug => ErrorKind::Bug,
                _ => ErrorKind::Failed,
            },
            Error::Io { .. }
            | Error::StdIo(_)
            | Error::DockerUnreachable { .. }
            | Error::Engine { .. }
            | Error::Docker { .. }
            | Error::ImageMissing { .. }
            | Error::NoFreeSubnet { .. }
            | Error::NodeFailed { .. }
            | Error::Timeout { .. }
            | Error::Cancelled
            | Error::RemoveIncomplete { .. }
            | Error::Kubeconfig(_)
            | Error::Api { .. }
            | Error::ImportFailed { .. } => ErrorKind::Failed,
        }
    }

    /// An internal invariant of `what` broke (a bug, exit status 70).
    pub(crate) fn bug(what: &'static str, problem: impl Into<String>) -> Self {
        Error::Bug {
            what,
            problem: problem.into(),
        }
    }

    /// Wraps an I/O error with the action and the path it concerns.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Wraps a Docker error with what was being done.
    pub fn docker(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        Error::Docker {
            action: action.into(),
            source,
        }
    }

    /// Whether this error means "the Docker object was not there" (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Docker {
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                },
                ..
            }
        )
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
