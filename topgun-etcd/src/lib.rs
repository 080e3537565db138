//! # topgun-etcd
//!
//! Plan an N-member etcd cluster with mutual TLS for k3s, and check its
//! health, leader and quorum against the real members.
//!
//! - The spec: what is asked for ([`EtcdClusterSpec`]), checked up front
//!   and purely; topgun-etcd owns etcd's limits and defaults
//!   ([`MAX_MEMBERS`], [`DEFAULT_IMAGE`], [`SpecWarning`]).
//! - [`plan`]: the pure plan ([`EtcdPlan`]): per member its name, hostname,
//!   complete etcd argv, files (certificates from topgun-tls: a client CA
//!   for the client port, a separate peer CA for the peer port), volume and
//!   ports; client certificates for k3s and topgun; the k3s
//!   [`DatastoreConfig`]. Nothing here talks to Docker: topgun-core runs plans.
//! - Health: one client per member ([`Checker`], [`ClientConfig`]), a
//!   deadline on every request, [`MemberStatus`], the pure verdict
//!   [`assess`] → [`ClusterHealth`], a write probe, `wait_healthy` and a
//!   leader-change watch; key listing ([`Checker::list_keys`]).
//! - [`browse`]: the data side of `topgun etcd browse`: the key tree one
//!   level at a time with counts and sizes, values decoded (text, JSON,
//!   Kubernetes protobuf), a key's revision history, puts and deletes.
//! - `local` (feature `testing`): a runner of a plan as local processes on
//!   loopback, for tests and benchmarks.
//! - Errors: one [`enum@Error`]; [`Error::kind`] says whether it is the
//!   user's input, a failed operation or a bug ([`ErrorKind`]).
//!
//! This crate never prints; it logs with `tracing`.
//!
//! ```
//! use topgun_etcd::EtcdClusterSpec;
//!
//! let plan = EtcdClusterSpec::new("demo").with_members(3).plan()?;
//! assert_eq!(plan.members[0].name, "topgun-demo-etcd-0");
//! assert_eq!(
//!     plan.datastore.endpoint_value(),
//!     "https://topgun-demo-etcd-0:2379,https://topgun-demo-etcd-1:2379,https://topgun-demo-etcd-2:2379"
//! );
//! // Secrets never reach argv: only paths do.
//! assert!(plan.members[0].args.iter().all(|a| !a.contains("PRIVATE KEY")));
//! # Ok::<(), topgun_etcd::Error>(())
//! ```

#![warn(unreachable_pub)]

pub mod browse;
mod client;
mod error;
mod health;
mod keys;
#[cfg(feature = "testing")]
pub mod local;
pub mod plan;
mod spec;

pub use client::{ClientConfig, ClientTls, DEFAULT_TIMEOUT, normalize_endpoint};
pub use error::{Cause, Error, ErrorKind, Result};
pub use health::{
    Alarm, AlarmKind, Checker, ClusterHealth, HealthChange, HealthReport, HealthWatch,
    MemberStatus, POLL_INTERVAL, PROBE_PREFIX, Verdict, WriteProbe, assess, hex_id, parse_alarm,
};
pub use keys::{KeyListing, PrefixCount, key_prefix};
pub use plan::{DatastoreConfig, EtcdPki, EtcdPlan, MemberPlan, PlannedFile, plan_with_pki};
pub use spec::{
    DEFAULT_CLIENT_PORT, DEFAULT_ELECTION, DEFAULT_HEARTBEAT, DEFAULT_IMAGE, DEFAULT_PEER_PORT,
    EtcdClusterSpec, MAX_CLUSTER_NAME, MAX_MEMBERS, SpecWarning,
};
