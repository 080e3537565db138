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
        /// Why the connection failed: bollard's error and its causes, in
        /// words.
        reason: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
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
        layer: &'static str,
        /// What went wrong.
        problem: String,
        /// What to do; may be empty.
        fix: &'static str,
        /// The underlying error, where there is one (an I/O or DNS error,
        /// a TLS configuration error, bollard's error).
        #[source]
        source: Option<BoxError>,
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
    #[error("kubeconfig: {what}: {source}")]
    Kubeconfig {
        /// Which kubeconfig (a path, or e.g. `the kubeconfig k3s wrote`).
        what: String,
        /// What is wrong with it.
        #[source]
        source: KubeconfigProblem,
    },
    /// The API server did not answer as expected.
    #[error("API at {url}: {reason}")]
    Api {
        /// The URL checked.
        url: String,
        /// What went wrong, with the underlying error's causes in words.
        reason: String,
        /// The underlying error, where there is one: an I/O error (connect),
        /// a TLS error ([`topgun_tls::Error`] for the credentials,
        /// `std::io::Error` for the handshake), hyper's error, or the
        /// timeout's `tokio::time::error::Elapsed`.
        #[source]
        source: Option<BoxError>,
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
    #[error(
        "image import failed on {}{}",
        node_failures(failures),
        fix_suffix(note)
    )]
    ImportFailed {
        /// Each failed node (its container name) with why: usually an
        /// [`Error::NodeCommand`] or an [`Error::Docker`].
        failures: Vec<(String, Error)>,
        /// What did succeed and what happens next; may be empty.
        note: String,
    },
    /// A command topgun ran in a node failed: it exited with an error, or
    /// its input could not be sent to it whole.
    #[error("`{command}` {}", command_failure(*code, output, source.as_ref()))]
    NodeCommand {
        /// The command line.
        command: String,
        /// Its exit code.
        code: i64,
        /// The last lines of its output, joined by ` | `; may be empty.
        output: String,
        /// Why its input could not be sent whole, if it could not.
        #[source]
        source: Option<std::io::Error>,
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

/// A boxed error, the source of variants whose cause may be of several
/// types; downcast it to the type the variant's docs name.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a kubeconfig is unusable: the source of [`Error::Kubeconfig`].
///
/// Messages never show a key or token: the YAML parser's message is cut
/// to short excerpts ([`topgun_tls::redact::parser_message`]) and the
/// parser's own error is kept, not chained, since its text quotes the input
/// (get it with [`KubeconfigProblem::yaml_error`]). `Debug` shows the
/// message.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum KubeconfigProblem {
    /// The text is not YAML (or not a kubeconfig's shape); holds the
    /// parser's error, whose own message may quote the input.
    #[error("not valid YAML: {}", topgun_tls::redact::parser_message(&.0.to_string()))]
    Yaml(serde_norway::Error),
    /// The document, or an entry of it, is not a YAML mapping.
    #[error("{entry} is not a YAML mapping")]
    NotAMapping {
        /// `the document`, or the entry, e.g. `clusters[0]`.
        entry: String,
    },
    /// A field it must have is missing or not a string.
    #[error("{entry} has no {field}")]
    Missing {
        /// The entry, e.g. `users[0].user`.
        entry: String,
        /// The field, e.g. `client-key-data`.
        field: &'static str,
    },
    /// The kubeconfig has not the number of entries expected.
    #[error("it has {found} {list}, expected {expected}")]
    Count {
        /// The list (`clusters`, `users`).
        list: &'static str,
        /// How many it has.
        found: usize,
        /// How many were expected.
        expected: usize,
    },
    /// A `*-data` field is not base64.
    #[error("{field} is not base64: {source}")]
    Base64 {
        /// The field.
        field: &'static str,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// A field or file that holds PEM or YAML is not text.
    #[error("{field} is not text (not UTF-8): {source}")]
    NotText {
        /// The field or file.
        field: String,
        /// The decoder's error (which, unlike `FromUtf8Error`, holds none
        /// of the bytes).
        #[source]
        source: std::str::Utf8Error,
    },
    /// The server URL is not `https://IP:PORT`, or one topgun refuses to
    /// write (the unspecified address).
    #[error("the server {url} {problem}")]
    Server {
        /// The URL as found or given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The file is locked by another writer (`<file>.lock`).
    #[error("it is locked by another program; if none is running, remove {}", lock.display())]
    Locked {
        /// The lock file.
        lock: PathBuf,
    },
    /// The cluster has no server node to read it from.
    #[error("the cluster has no server node to read it from")]
    NoServer,
    /// No file was named to merge into.
    #[error("no kubeconfig file to merge into")]
    NoFile,
    /// The YAML could not be written.
    #[error("cannot write YAML: {}", topgun_tls::redact::parser_message(&.0.to_string()))]
    Write(serde_norway::Error),
    /// topgun-tls's kubeconfig reader ([`topgun_tls::Kubeconfig`]) refused
    /// it.
    #[error("{0}")]
    Read(#[source] Box<topgun_tls::Error>),
}

/// Shows the message only: the YAML parser's own error (kept in
/// [`KubeconfigProblem::Yaml`]) may quote a key in its `Debug` form.
impl std::fmt::Debug for KubeconfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KubeconfigProblem")
            .field(&self.to_string())
            .finish()
    }
}

impl KubeconfigProblem {
    /// The parser's (or writer's) own error, for a [`KubeconfigProblem::Yaml`]
    /// or [`KubeconfigProblem::Write`]. Its message may quote the input:
    /// never show it.
    pub fn yaml_error(&self) -> Option<&serde_norway::Error> {
        match self {
            KubeconfigProblem::Yaml(e) | KubeconfigProblem::Write(e) => Some(e),
            _ => None,
        }
    }
}

fn node_failures(failures: &[(String, Error)]) -> String {
    failures
        .iter()
        .map(|(node, e)| format!("{node}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn command_failure(code: i64, output: &str, fed: Option<&std::io::Error>) -> String {
    match (code, fed) {
        (0, Some(e)) => format!("exited with 0, but its input could not be sent to it: {e}"),
        _ => {
            let mut text = format!("exited with {code}");
            if !output.is_empty() {
                text.push_str(": ");
                text.push_str(output);
            }
            if let Some(e) = fed {
                text.push_str(&format!(" (its input could not be sent whole: {e})"));
            }
            text
        }
    }
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
            // YAML topgun built that does not serialize, or topgun-tls's
            // reader failing on its own invariants: bugs. Every other
            // kubeconfig problem (k3s's file, the user's files, a lock)
            // is a failed operation, as before.
            Error::Kubeconfig { source, .. } => match source {
                KubeconfigProblem::Write(_) => ErrorKind::Bug,
                KubeconfigProblem::Read(e) if e.kind() == ErrorKind::Bug => ErrorKind::Bug,
                _ => ErrorKind::Failed,
            },
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
            | Error::Api { .. }
            | Error::ImportFailed { .. }
            | Error::NodeCommand { .. } => ErrorKind::Failed,
        }
    }

    /// An [`Error::Kubeconfig`]: `what` (a path or a description) has
    /// `problem`.
    pub(crate) fn kubeconfig(what: impl Into<String>, problem: KubeconfigProblem) -> Self {
        Error::Kubeconfig {
            what: what.into(),
            source: problem,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml_error() -> serde_norway::Error {
        serde_norway::from_str::<serde_norway::Value>("a: [").unwrap_err()
    }

    #[test]
    fn kubeconfig_problems_are_failures_unless_topgun_broke() {
        let failed = [
            KubeconfigProblem::Yaml(yaml_error()),
            KubeconfigProblem::NotAMapping {
                entry: "the document".to_owned(),
            },
            KubeconfigProblem::Locked {
                lock: PathBuf::from("/k/config.lock"),
            },
            KubeconfigProblem::NoServer,
            KubeconfigProblem::NoFile,
            KubeconfigProblem::Read(Box::new(topgun_tls::Error::Kubeconfig {
                source_name: "(inline)".to_owned(),
                problem: "not a kubeconfig".to_owned(),
            })),
        ];
        for problem in failed {
            let e = Error::kubeconfig("k3s.yaml", problem);
            assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
            assert!(e.to_string().starts_with("kubeconfig: k3s.yaml: "), "{e}");
            let source = std::error::Error::source(&e).unwrap();
            assert!(source.is::<KubeconfigProblem>());
        }
        let bugs = [
            KubeconfigProblem::Write(yaml_error()),
            KubeconfigProblem::Read(Box::new(topgun_tls::Error::Internal {
                what: "a verifier",
                source: "broken".into(),
            })),
        ];
        for problem in bugs {
            assert_eq!(Error::kubeconfig("k", problem).kind(), ErrorKind::Bug);
        }
        // The tls reader's error is the next cause, so its own causes stay
        // reachable.
        let e = Error::kubeconfig(
            "k",
            KubeconfigProblem::Read(Box::new(topgun_tls::Error::io(
                "cannot read",
                "/nope",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ))),
        );
        let chain: Vec<String> =
            std::iter::successors(std::error::Error::source(&e), |c| c.source())
                .map(ToString::to_string)
                .collect();
        assert_eq!(chain.len(), 3, "{chain:?}");
        assert!(chain[1].starts_with("cannot read /nope"), "{chain:?}");
    }

    #[test]
    fn failed_imports_keep_each_nodes_error() {
        let refused = Error::NodeCommand {
            command: "k3s ctr images import -".to_owned(),
            code: 1,
            output: "ctr: unexpected EOF".to_owned(),
            source: None,
        };
        assert_eq!(
            refused.to_string(),
            "`k3s ctr images import -` exited with 1: ctr: unexpected EOF"
        );
        let cut = Error::NodeCommand {
            command: "k3s ctr images import -".to_owned(),
            code: 0,
            output: String::new(),
            source: Some(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        };
        assert!(
            cut.to_string()
                .starts_with("`k3s ctr images import -` exited with 0, but its input could not"),
            "{cut}"
        );
        assert!(
            std::error::Error::source(&cut)
                .unwrap()
                .is::<std::io::Error>()
        );
        assert_eq!(cut.kind(), ErrorKind::Failed);
        let failed = Error::ImportFailed {
            failures: vec![
                ("topgun-a-agent-0".to_owned(), refused),
                ("topgun-a-agent-1".to_owned(), cut),
            ],
            note: "imported on topgun-a-server-0".to_owned(),
        };
        let text = failed.to_string();
        assert!(
            text.starts_with(
                "image import failed on topgun-a-agent-0: `k3s ctr images import -` exited with 1: \
                 ctr: unexpected EOF; topgun-a-agent-1: `k3s"
            ) && text.ends_with("; imported on topgun-a-server-0"),
            "{text}"
        );
        assert_eq!(failed.kind(), ErrorKind::Failed);
    }

    #[test]
    fn api_and_engine_errors_keep_their_source_and_fail() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let api = Error::Api {
            url: "https://127.0.0.1:6443/readyz".to_owned(),
            reason: "cannot connect: connection refused".to_owned(),
            source: Some(Box::new(io())),
        };
        assert_eq!(api.kind(), ErrorKind::Failed);
        let source = std::error::Error::source(&api).unwrap();
        assert!(source.is::<std::io::Error>());
        let without = Error::Api {
            url: "u".to_owned(),
            reason: "HTTP 500: etcd failed".to_owned(),
            source: None,
        };
        assert!(std::error::Error::source(&without).is_none());
        assert_eq!(without.to_string(), "API at u: HTTP 500: etcd failed");

        let engine = Error::Engine {
            url: "tcp://h:2376".to_owned(),
            source_of: "DOCKER_HOST".to_owned(),
            layer: "DNS",
            problem: "cannot resolve \"h\"".to_owned(),
            fix: "",
            source: Some(Box::new(io())),
        };
        assert_eq!(engine.kind(), ErrorKind::Failed);
        assert!(
            std::error::Error::source(&engine)
                .unwrap()
                .is::<std::io::Error>()
        );
    }
}
