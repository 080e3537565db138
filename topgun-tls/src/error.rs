//! The one error type of topgun-tls.

use std::path::PathBuf;

/// Everything that can go wrong in topgun-tls.
///
/// Messages are written for the person at the terminal: each names the input
/// that was refused and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A subject alternative name was refused.
    #[error("invalid SAN {input:?}: {problem}; {fix}")]
    InvalidSan {
        /// The item exactly as given.
        input: String,
        /// What is wrong with it.
        problem: String,
        /// What to pass instead.
        fix: String,
    },
    /// Certificate or key generation failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM or DER input could not be parsed.
    #[error("cannot parse {what}: {reason}")]
    Parse {
        /// What was being parsed (a path, or a description).
        what: String,
        /// The parser's reason.
        reason: String,
    },
    /// A file could not be read or written.
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
    /// A file exists and overwriting was not asked for.
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    AlreadyExists {
        /// The file that exists.
        path: PathBuf,
    },
    /// An endpoint, server URL or address was refused.
    #[error("invalid {what} {input:?}: {problem}; {fix}")]
    InvalidTarget {
        /// What the input was meant to be ("endpoint", "--connect-to address", ...).
        what: &'static str,
        /// The input exactly as given.
        input: String,
        /// What is wrong with it.
        problem: String,
        /// What to pass instead.
        fix: String,
    },
    /// A network operation did not finish within its deadline.
    #[error("{action} {target} timed out after {}", humanize(*after))]
    Timeout {
        /// What was being done ("connecting to", "TLS handshake with", ...).
        action: &'static str,
        /// The address or name involved.
        target: String,
        /// The deadline that passed.
        after: std::time::Duration,
    },
    /// A network operation failed.
    #[error("{action} {target}: {source}")]
    Network {
        /// What was being done ("cannot connect to", "cannot resolve", ...).
        action: &'static str,
        /// The address or name involved.
        target: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed before the server presented any certificate.
    #[error(
        "TLS handshake with {target} failed before the server presented a certificate: {reason}"
    )]
    Handshake {
        /// The address dialled.
        target: String,
        /// rustls' reason.
        reason: String,
    },
    /// TLS configuration (keys, roots, verifiers) could not be built.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A kubeconfig is unusable as written.
    #[error("kubeconfig {source_name}: {problem}")]
    Kubeconfig {
        /// The kubeconfig's path, or a description.
        source_name: String,
        /// What is wrong, with the fix where there is one.
        problem: String,
    },
}

fn humanize(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

impl Error {
    /// Wraps an I/O error with the action and the path it concerns.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// This error with every text that may hold PEM (a key) described
    /// instead of shown ([`crate::redact::scrub_pem`]), for errors whose
    /// messages quote values read from a file.
    pub fn scrub_pem(self) -> Self {
        use crate::redact::scrub_pem as scrub;
        match self {
            Error::InvalidSan {
                input,
                problem,
                fix,
            } => Error::InvalidSan {
                input: crate::redact::shown(&input).into_owned(),
                problem: scrub(&problem),
                fix: scrub(&fix),
            },
            Error::Parse { what, reason } => Error::Parse {
                what: scrub(&what),
                reason: scrub(&reason),
            },
            Error::InvalidTarget {
                what,
                input,
                problem,
                fix,
            } => Error::InvalidTarget {
                what,
                input: crate::redact::shown(&input).into_owned(),
                problem: scrub(&problem),
                fix: scrub(&fix),
            },
            Error::Timeout {
                action,
                target,
                after,
            } => Error::Timeout {
                action,
                target: scrub(&target),
                after,
            },
            Error::Network {
                action,
                target,
                source,
            } => Error::Network {
                action,
                target: scrub(&target),
                source,
            },
            Error::Handshake { target, reason } => Error::Handshake {
                target: scrub(&target),
                reason: scrub(&reason),
            },
            Error::Config(message) => Error::Config(scrub(&message)),
            Error::Kubeconfig {
                source_name,
                problem,
            } => Error::Kubeconfig {
                source_name,
                problem: scrub(&problem),
            },
            other @ (Error::Generate(_) | Error::Io { .. } | Error::AlreadyExists { .. }) => other,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Parse {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
