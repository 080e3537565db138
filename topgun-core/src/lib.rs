//! # topgun-core
//!
//! Highly available k3s clusters in Docker: servers, agents, an etcd cluster
//! with mutual TLS (or k3s's embedded store, or your own datastore), an
//! haproxy load balancer with active health checks, a kubeconfig whose
//! server and certificate names are right, and complete rollback.
//!
//! A three-server cluster on a three-member etcd, and its kubeconfig:
//!
//! ```no_run
//! use topgun_core::{Cluster, ClusterSpec, Datastore};
//!
//! #[tokio::main]
//! async fn main() -> topgun_core::Result<()> {
//!     let spec = ClusterSpec::builder("demo").servers(3).datastore(Datastore::etcd(3)).build()?;
//!     let cluster = Cluster::create(topgun_core::connect().await?, &spec).await?;
//!     cluster.kubeconfig().await?.write("demo.kubeconfig")?; // mode 0600
//!     Ok(())
//! }
//! ```
//!
//! The front door:
//! - [`ClusterSpec`] (built in code with [`ClusterSpec::builder`] or read
//!   from YAML) says what is asked for; it is validated before anything
//!   exists on the engine.
//! - [`Cluster`] is a cluster on an engine, by name: [`Cluster::create`],
//!   [`Cluster::open`], [`Cluster::list`], then status, kubeconfig, stop and
//!   start, nodes (add, delete, stop, start), image import and delete. It
//!   holds no state: every call asks Docker, by labels.
//! - [`Registry`] is a local image registry (create, list, delete); a
//!   cluster creates or uses registries through [`ClusterSpec::registries`].
//! - [`connect`] reaches the engine as the docker CLI would (flags through
//!   [`select_engine`], `DOCKER_HOST`, docker contexts; unix, TLS, ssh);
//!   [`Engine`] names engines and contexts.
//! - [`Error`] says what failed and how to fix it; [`Error::kind`] says
//!   whose fault it is (input, operation, bug).
//!
//! topgun-core never prints: progress goes to a [`Progress`] callback,
//! diagnostics to `tracing`. It re-exports [`bollard`] so callers use the
//! same version. Benchmark and test helpers sit behind the `testing`
//! feature.

#![warn(unreachable_pub)]

mod api;
mod archive;
mod cluster;
mod docker;
mod engine;
mod error;
#[cfg(feature = "testing")]
mod floor;
mod images;
mod import;
mod kubeconfig;
mod labels;
mod lifecycle;
mod lock;
mod plan;
mod progress;
mod registry;
mod runtime;
mod spec;

pub use bollard;

// The handle and its operations.
pub use cluster::{Cluster, Plan};
pub use error::{BoxError, Error, ErrorKind, KubeconfigProblem, Result};

// What is asked for: the spec and its parts.
pub use spec::{
    ApiEndpoint, CgroupnsMode, ClusterName, ClusterSpec, ClusterSpecBuilder, Datastore,
    DatastoreEndpoint, EndpointKind, EnvVar, EtcdDatastore, ExternalDatastore, Filtered,
    FilteredValue, K3dConversion, K3sArg, KubeconfigSpec, LoadBalancerSpec, NetworkSpec,
    NodeCounts, NodeFilter, PortMapping, Protocol, Role, SanList, Subnet, Timeouts, Token,
    VolumeMount, Warning, convert_k3d, convert_k3d_file,
};

// Registries: the handle, what is asked of them and what they are.
pub use registry::{
    RegistriesConfig, RegistriesSpec, Registry, RegistryDeleted, RegistryInfo, RegistryName,
    RegistryRef, RegistrySpec,
};

// Options and results of the operations.
pub use import::{ImportOptions, ImportWhen, Imported, ImportedImage, NodeImport};
pub use lifecycle::{
    ApiStatus, ClusterStatus, ClusterSummary, Count, DeleteOptions, Deleted, EtcdAccess,
    EtcdStatus, KubeconfigStatus, NodeStatus,
};
pub use runtime::nodes::{AddNodesOptions, Added, DeleteNodeOptions, NodeDeleted, NodeObject};
pub use runtime::start::{Changed, LifecycleOptions, NodeChange};
pub use runtime::{CreateOptions, Created, CreatedNode};

// Progress, kubeconfig files, the engine and the load balancer's view.
pub use api::BackendState;
pub use docker::{Removal, connect};
pub use engine::{Engine, EngineFlags, select as select_engine};
pub use images::ImageSet;
pub use kubeconfig::{
    KubeconfigYaml, default_files as default_kubeconfig_files, entry_name as kubeconfig_entry_name,
    merge_into as merge_kubeconfig,
};
pub use plan::PhaseKind;
pub use progress::{Event, Progress, ReadyCounts};

/// Benchmark and test helpers (feature `testing`); not part of the API and
/// not covered by semver.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::floor::{Floor, boot_floor, floor};
    pub use crate::spec::{ClusterRecord, parse_duration};
}
