//! # topgun-etcd
//!
//! Plan an N-member etcd cluster with mutual TLS for k3s, and check its
//! health, leader and quorum against the real members.
//!
//! - [`spec`]: what is asked for ([`EtcdClusterSpec`]), checked up front.
//! - [`plan`]: the pure plan ([`EtcdPlan`]): per member its name, hostname,
//!   complete etcd argv, files (certificates from topgun-tls: a client CA
//!   for the client port, a separate peer CA for the peer port), volume and
//!   ports; client certificates for k3s and topgun; the k3s
//!   [`DatastoreConfig`]. Nothing here talks to Docker: topgun-core runs plans.
//! - [`health`]: one client per member, a deadline on every request,
//!   [`MemberStatus`], the pure verdict [`health::assess`] → [`ClusterHealth`],
//!   a write probe, `wait_healthy` and a leader-change watch.
//! - [`browse`]: the data side of `topgun etcd browse`: the key tree one
//!   level at a time with counts and sizes, values decoded (text, JSON,
//!   Kubernetes protobuf), a key's revision history, puts and deletes.
//! - [`local`]: a runner of a plan as local processes on loopback, for
//!   tests and benchmarks.
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

pub mod browse;
pub mod client;
pub mod error;
pub mod health;
pub mod local;
pub mod plan;
pub mod spec;

pub use client::{ClientConfig, ClientTls};
pub use error::{Error, Result};
pub use health::{
    Checker, ClusterHealth, HealthReport, HealthWatch, MemberStatus, Verdict, WriteProbe, assess,
};
pub use plan::{DatastoreConfig, EtcdPki, EtcdPlan, MemberPlan, PlannedFile, plan_with_pki};
pub use spec::EtcdClusterSpec;
