//! The one error type of topgun-tls, and [`ErrorKind`], the question every
//! topgun error answers.

use std::path::PathBuf;

/// Whose problem an error is: the user's input, an operation that failed,
/// or a bug. Every topgun library error answers this through its `kind()`
/// method (topgun-etcd re-exports this type), and the CLI turns it into
/// its exit status ([`ErrorKind::exit_code`]).
///
/// Exhaustive on purpose: callers match all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The user gave something wrong: a bad flag value, a bad file, a bad
    /// name. The message names the fix. Exit status 2.
    Input,
    /// An operation failed: an unreachable endpoint, a handshake failure, a
    /// timeout, an unhealthy cluster. Trying again (or fixing the
    /// environment) may help. Exit status 1.
    Failed,
    /// An internal invariant broke: a bug in topgun. Exit status 70
    /// (`EX_SOFTWARE` of sysexits.h).
    Bug,
}

impl ErrorKind {
    /// The process exit status for this kind: 2, 1 or 70.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Input => 2,
            ErrorKind::Failed => 1,
            ErrorKind::Bug => 70,
        }
    }
}

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
        /// rustls' reason, in words.
        reason: String,
        /// The handshake's error, when there was one (not for a server
        /// that presented no certificate without an error).
        #[source]
        source: Option<std::io::Error>,
    },
    /// TLS material given by the user (a client key, a certificate) is
    /// unusable for a TLS configuration.
    #[error("TLS configuration: {what}: {source}")]
    Config {
        /// What was refused ("client key", ...).
        what: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// Something that cannot fail with topgun's fixed choices did (the
    /// ring provider's protocol versions, a verifier over a non-empty root
    /// store): a bug.
    #[error("internal error: {what}: {source}")]
    Internal {
        /// What was being built.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
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
            Error::Handshake {
                target,
                reason,
                source,
            } => Error::Handshake {
                target: scrub(&target),
                reason: scrub(&reason),
                source,
            },
            Error::Config { what, source } => Error::Config {
                what: scrub(&what),
                source,
            },
            Error::Kubeconfig {
                source_name,
                problem,
            } => Error::Kubeconfig {
                source_name,
                problem: scrub(&problem),
            },
            other @ (Error::Generate(_)
            | Error::Io { .. }
            | Error::AlreadyExists { .. }
            | Error::Internal { .. }) => other,
        }
    }

    /// Whose problem this is: [`ErrorKind::Input`] for refused input
    /// (names, files, targets, kubeconfigs, existing files without
    /// `--force`), [`ErrorKind::Failed`] for failed operations (network,
    /// handshake, deadlines, writes), [`ErrorKind::Bug`] for broken
    /// invariants (certificate generation from checked parameters,
    /// internal TLS setup).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidSan { .. }
            | Error::Parse { .. }
            | Error::AlreadyExists { .. }
            | Error::InvalidTarget { .. }
            | Error::Config { .. }
            | Error::Kubeconfig { .. } => ErrorKind::Input,
            // A file the user named that cannot be read is bad input; a
            // write that fails is a failed operation.
            Error::Io { action, .. } if action.starts_with("cannot read") => ErrorKind::Input,
            Error::Io { .. }
            | Error::Timeout { .. }
            | Error::Network { .. }
            | Error::Handshake { .. } => ErrorKind::Failed,
            Error::Generate(_) | Error::Internal { .. } => ErrorKind::Bug,
        }
    }

    pub(crate) fn internal(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Internal {
            what,
            source: Box::new(source),
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn broken_invariants_are_bugs_and_keep_their_cause() {
        let err = Error::internal("a verifier", std::io::Error::other("broken"));
        assert_eq!(err.kind(), ErrorKind::Bug);
        let source = err.source().expect("the cause is kept");
        // The boxed cause itself, not the box, so that it can be downcast.
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(err.to_string(), "internal error: a verifier: broken");
    }

    #[test]
    fn refused_tls_material_is_input_with_rustls_reason() {
        let err = Error::Config {
            what: "client key".into(),
            source: rustls::Error::General("unsupported key".into()),
        };
        assert_eq!(err.kind(), ErrorKind::Input);
        assert!(err.source().unwrap().is::<rustls::Error>());
        // Scrubbing keeps the cause.
        assert!(err.scrub_pem().source().is_some());
    }
}
