//! `topgun etcd ...` arguments.

/// Arguments of `topgun etcd`.
#[derive(Debug, clap::Args)]
pub struct EtcdArgs {}
