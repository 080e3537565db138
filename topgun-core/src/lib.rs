//! # topgun-core
//!
//! Highly available k3s clusters in Docker: servers, agents, an etcd cluster
//! with mutual TLS (or k3s's embedded store, or your own datastore), an
//! haproxy load balancer with active health checks, a kubeconfig whose
//! server and certificate names are right, and complete rollback.
//!
//! - [`spec`]: what is asked for ([`ClusterSpec`], built in code or read
//!   from YAML), validated before anything exists.
//! - [`plan`]: the pure plan: network, volumes, files, full container bodies,
//!   start phases and readiness gates (snapshot-tested).
//! - [`runtime`]: executes a plan through Docker ([`runtime::create`],
//!   [`runtime::create_until`] for cancellation), rolling back by label.
//! - [`lifecycle`]: [`lifecycle::list`], [`lifecycle::status`],
//!   [`lifecycle::kubeconfig`] and [`lifecycle::delete`], rebuilt from
//!   Docker labels alone.
//! - [`kubeconfig`]: rewrite, merge (atomic, 0600) and remove entries.
//! - [`import`]: images from the host engine into a cluster's nodes
//!   ([`import::import_images`]), streamed.
//! - [`engine`]: which Docker engine (flags, `DOCKER_HOST`, docker
//!   contexts; unix, TLS, ssh), resolved as the docker CLI does.
//! - [`Cluster`]: a handle for programs that embed topgun.
//!
//! topgun-core never prints: progress goes to a [`progress::Progress`]
//! callback, diagnostics to `tracing`. It re-exports [`bollard`] so callers
//! use the same version.
//!
//! ```no_run
//! use topgun_core::{Cluster, ClusterSpec, Datastore};
//!
//! # async fn demo() -> topgun_core::Result<()> {
//! let spec = ClusterSpec::builder("demo")
//!     .servers(3)
//!     .agents(2)
//!     .datastore(Datastore::etcd(3))
//!     .tls_san("192.168.1.28")
//!     .build()?;
//! let docker = topgun_core::docker::connect().await?;
//! let cluster = Cluster::create(docker, &spec).await?;
//! let status = cluster.status().await?;
//! assert!(status.healthy);
//! std::fs::write("kubeconfig.yaml", cluster.kubeconfig().await?.expose()).unwrap();
//! cluster.delete().await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod archive;
pub mod cluster;
pub mod docker;
pub mod engine;
pub mod error;
pub mod floor;
pub mod images;
pub mod import;
pub mod kubeconfig;
pub mod labels;
pub mod lifecycle;
mod lock;
pub mod plan;
pub mod progress;
pub mod runtime;
pub mod spec;

pub use bollard;
pub use cluster::Cluster;
pub use error::{Error, Result};
pub use images::ImageSet;
pub use import::{ImportOptions, ImportWhen, Imported, ImportedImage, NodeImport};
pub use lifecycle::{ClusterStatus, ClusterSummary, DeleteOptions, DeleteTarget, Deleted};
pub use progress::{Event, Progress, ReadyCounts};
pub use runtime::nodes::{AddNodesOptions, Added, DeleteNodeOptions, NodeDeleted, NodeObject};
pub use runtime::start::{Changed, LifecycleOptions, NodeChange};
pub use runtime::{CreateOptions, Created};
pub use spec::{ClusterSpec, ClusterSpecBuilder, Datastore};
