//! `topgun tls ...` arguments.

/// Arguments of `topgun tls`.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {}
