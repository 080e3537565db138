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

    pub(crate) fn parse(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Parse {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
