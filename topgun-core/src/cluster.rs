//! [`Cluster`]: a handle for programs that embed topgun.

use std::future::Future;

use bollard::Docker;

use crate::import::{self, ImportOptions, Imported};
use crate::kubeconfig::KubeconfigYaml;
use crate::lifecycle::{
    self, ClusterStatus, ClusterSummary, DeleteOptions, DeleteTarget, Deleted, EtcdAccess,
    NodeStatus,
};
use crate::runtime::nodes::{self, AddNodesOptions, Added, DeleteNodeOptions, NodeDeleted};
use crate::runtime::start::{self, Changed, LifecycleOptions, NodeChange};
use crate::runtime::{self, CreateOptions, Created};
use crate::spec::{ClusterSpec, Role};
use crate::{Error, Result};

/// What a create would do ([`Cluster::plan`]): serialise it (YAML or JSON)
/// to show it. Keys and the token are redacted.
#[derive(Debug, Clone)]
pub struct Plan(crate::plan::ClusterPlan);

impl Plan {
    /// What the plan warns about (the spec's warnings and the plan's).
    pub fn warnings(&self) -> &[crate::Warning] {
        &self.0.warnings
    }
}

impl serde::Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A cluster on a Docker engine, by name. It holds no other state: every
/// call asks Docker (by labels).
#[derive(Debug, Clone)]
pub struct Cluster {
    docker: Docker,
    name: String,
    created: Option<Box<Created>>,
}

impl Cluster {
    /// Creates the cluster `spec` describes, with default options.
    pub async fn create(docker: Docker, spec: &ClusterSpec) -> Result<Cluster> {
        Cluster::create_with(docker, spec, &CreateOptions::default()).await
    }

    /// Creates the cluster with `options` (progress, kubeconfig merge).
    pub async fn create_with(
        docker: Docker,
        spec: &ClusterSpec,
        options: &CreateOptions,
    ) -> Result<Cluster> {
        Cluster::create_until(docker, spec, options, std::future::pending::<()>()).await
    }

    /// Creates the cluster, or rolls back and returns [`Error::Cancelled`]
    /// when `cancel` completes first.
    pub async fn create_until<F: Future<Output = ()>>(
        docker: Docker,
        spec: &ClusterSpec,
        options: &CreateOptions,
        cancel: F,
    ) -> Result<Cluster> {
        let created = runtime::create_until(&docker, spec, options, cancel).await?;
        Ok(Cluster {
            docker,
            name: created.name.clone(),
            created: Some(Box::new(created)),
        })
    }

    /// A handle on an existing cluster; [`Error::ClusterNotFound`] if no
    /// container carries its label.
    pub async fn open(docker: Docker, name: &str) -> Result<Cluster> {
        let found = lifecycle::list(&docker)
            .await?
            .into_iter()
            .any(|c| c.name == name);
        if !found {
            return Err(Error::ClusterNotFound {
                name: name.to_owned(),
            });
        }
        Ok(Cluster {
            docker,
            name: name.to_owned(),
            created: None,
        })
    }

    /// What a create of `spec` would do now, without doing it: the same
    /// checks and choices as [`Cluster::create`] (images present, name and
    /// ports free, a free subnet, host ports, certificates), then the plan:
    /// network, volumes, files, every container's full create body, and the
    /// start phases with their readiness gates. Docker is only read. Secrets
    /// (keys, the token) are redacted when the plan is serialised.
    pub async fn plan(docker: &Docker, spec: &ClusterSpec) -> Result<Plan> {
        runtime::plan_only(docker, spec).await.map(Plan)
    }

    /// A handle on cluster `name` without asking Docker whether it exists:
    /// each operation asks, and fails with [`Error::ClusterNotFound`] when
    /// it does not, except [`Cluster::delete`], which removes whatever
    /// carries the name's labels (a half-made cluster too) and succeeds.
    pub fn named(docker: Docker, name: &str) -> Cluster {
        Cluster {
            docker,
            name: name.to_owned(),
            created: None,
        }
    }

    /// Every cluster on the engine, from its labels alone: name, state,
    /// node counts, API address and datastore. Half-made clusters appear as
    /// `leftovers`.
    pub async fn list(docker: &Docker) -> Result<Vec<ClusterSummary>> {
        lifecycle::list(docker).await
    }

    /// The clusters the nodes `nodes` (container names) belong to, each
    /// with its nodes, in the order first named. A name that is no topgun
    /// node is an error that says which node names exist.
    pub async fn of_nodes(
        docker: &Docker,
        nodes: &[String],
    ) -> Result<Vec<(Cluster, Vec<String>)>> {
        let mut groups: Vec<(Cluster, Vec<String>)> = Vec::new();
        for (cluster, node) in lifecycle::find_nodes(docker, nodes).await? {
            match groups.iter_mut().find(|(c, _)| c.name == cluster) {
                Some((_, names)) => {
                    if !names.contains(&node.name) {
                        names.push(node.name);
                    }
                }
                None => groups.push((
                    Cluster {
                        docker: docker.clone(),
                        name: cluster,
                        created: None,
                    },
                    vec![node.name],
                )),
            }
        }
        Ok(groups)
    }

    /// Deletes every cluster topgun made on the engine, with `options`.
    pub async fn delete_all(docker: &Docker, options: &DeleteOptions) -> Result<Deleted> {
        lifecycle::delete(docker, &DeleteTarget::All, options).await
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Docker client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// What the create reported, when this handle came from a create.
    pub fn created(&self) -> Option<&Created> {
        self.created.as_deref()
    }

    /// The cluster's status: every node's state, the API through the load
    /// balancer, etcd health, and whether the merged kubeconfig entry still
    /// matches the cluster.
    pub async fn status(&self) -> Result<ClusterStatus> {
        lifecycle::status(&self.docker, &self.name).await
    }

    /// The cluster's kubeconfig: its server is the API's published address
    /// and its names are `topgun-NAME`.
    pub async fn kubeconfig(&self) -> Result<KubeconfigYaml> {
        match &self.created {
            Some(c) => Ok(c.kubeconfig.clone()),
            None => lifecycle::kubeconfig(&self.docker, &self.name).await,
        }
    }

    /// The cluster's nodes: role, Docker state, address and image.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>> {
        lifecycle::nodes(&self.docker, &self.name).await
    }

    /// How to reach the cluster's etcd members (endpoints and client
    /// credentials); an error when the cluster has no etcd cluster of
    /// topgun's.
    pub async fn etcd_access(&self) -> Result<EtcdAccess> {
        lifecycle::etcd_access(&self.docker, &self.name).await
    }

    /// Stops every node, agents first and etcd last. Stopping a stopped
    /// cluster succeeds.
    ///
    /// ```no_run
    /// # async fn demo(docker: topgun_core::bollard::Docker) -> topgun_core::Result<()> {
    /// use topgun_core::{Cluster, LifecycleOptions};
    ///
    /// let cluster = Cluster::open(docker, "demo").await?;
    /// cluster.stop(&LifecycleOptions::new()).await?;
    /// let started = cluster.start(&LifecycleOptions::new()).await?;
    /// println!("API at {}", started.server.unwrap_or_default());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stop(&self, options: &LifecycleOptions) -> Result<Changed> {
        start::stop(&self.docker, &self.name, options).await
    }

    /// Starts every node that does not run, in the plan's order and with
    /// its readiness gates (etcd healthy, servers, load balancer, agents),
    /// then waits for `/readyz` through the published API port. Starting a
    /// running cluster succeeds.
    pub async fn start(&self, options: &LifecycleOptions) -> Result<Changed> {
        start::start(&self.docker, &self.name, options).await
    }

    /// Stops the named nodes of this cluster (container names).
    pub async fn stop_nodes(
        &self,
        nodes: &[String],
        options: &LifecycleOptions,
    ) -> Result<Vec<NodeChange>> {
        self.check_own(nodes).await?;
        start::stop_nodes(&self.docker, nodes, options).await
    }

    /// Starts the named nodes of this cluster, each until it is ready.
    pub async fn start_nodes(
        &self,
        nodes: &[String],
        options: &LifecycleOptions,
    ) -> Result<Vec<NodeChange>> {
        self.check_own(nodes).await?;
        start::start_nodes(&self.docker, nodes, options).await
    }

    /// Restarts the named nodes of this cluster, each until it is ready.
    pub async fn restart_nodes(
        &self,
        nodes: &[String],
        options: &LifecycleOptions,
    ) -> Result<Vec<NodeChange>> {
        self.check_own(nodes).await?;
        start::restart_nodes(&self.docker, nodes, options).await
    }

    /// Adds `count` servers or agents (`role`), planned from the cluster's
    /// record as the create planned the first ones; new servers join the
    /// load balancer. Everything is checked before anything is made, and a
    /// failed add removes what it made (see [`Cluster::add_nodes_until`]).
    ///
    /// ```no_run
    /// # async fn demo(docker: topgun_core::bollard::Docker) -> topgun_core::Result<()> {
    /// use topgun_core::Role;
    /// use topgun_core::{AddNodesOptions, Cluster, DeleteNodeOptions};
    ///
    /// let cluster = Cluster::open(docker, "demo").await?;
    /// let added = cluster.add_nodes(Role::Agent, 2, &AddNodesOptions::new()).await?;
    /// for node in &added.nodes {
    ///     println!("{} at {}", node.name, node.ip);
    /// }
    /// cluster.delete_node(&added.nodes[0].name, &DeleteNodeOptions::new()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn add_nodes(
        &self,
        role: Role,
        count: u32,
        options: &AddNodesOptions,
    ) -> Result<Added> {
        nodes::add_nodes(&self.docker, &self.name, role, count, options).await
    }

    /// Adds nodes as [`Cluster::add_nodes`] does, or removes what it made
    /// and returns [`Error::Cancelled`] when `cancel` completes first.
    pub async fn add_nodes_until<F: Future<Output = ()>>(
        &self,
        role: Role,
        count: u32,
        options: &AddNodesOptions,
        cancel: F,
    ) -> Result<Added> {
        nodes::add_nodes_until(&self.docker, &self.name, role, count, options, cancel).await
    }

    /// Deletes the named nodes of this cluster as [`Cluster::delete_node`]
    /// does, checking quorum for all of them together.
    pub async fn delete_nodes(
        &self,
        names: &[String],
        options: &DeleteNodeOptions,
    ) -> Result<Vec<NodeDeleted>> {
        self.check_own(names).await?;
        nodes::delete_nodes(&self.docker, names, options).await
    }

    /// Deletes the node `name` (a container name) of this cluster: out of
    /// the load balancer, its Kubernetes Node object, its container and
    /// volumes. The last server, etcd members and the load balancer are
    /// refused.
    pub async fn delete_node(
        &self,
        name: &str,
        options: &DeleteNodeOptions,
    ) -> Result<NodeDeleted> {
        self.check_own(&[name.to_owned()]).await?;
        nodes::delete_node(&self.docker, name, options).await
    }

    /// Refuses node names that are not nodes of this cluster.
    async fn check_own(&self, nodes: &[String]) -> Result<()> {
        for (cluster, node) in lifecycle::find_nodes(&self.docker, nodes).await? {
            if cluster != self.name {
                return Err(Error::invalid(
                    format!("node {:?}", node.name),
                    format!("belongs to cluster {cluster:?}, not {:?}", self.name),
                    format!("open cluster {cluster:?} instead"),
                ));
            }
        }
        Ok(())
    }

    /// Imports images from the host's Docker engine into the cluster's k3s
    /// nodes: every running node now, the others when they next start (or
    /// only the running nodes `options.nodes` selects). Nothing is touched
    /// when an image is missing.
    ///
    /// ```no_run
    /// # async fn demo(docker: topgun_core::bollard::Docker) -> topgun_core::Result<()> {
    /// use topgun_core::NodeFilter;
    /// use topgun_core::{Cluster, ImportOptions};
    ///
    /// let cluster = Cluster::open(docker, "demo").await?;
    /// let images = ["myapp:dev".to_owned()];
    /// let everywhere = cluster.import_images(&images, &ImportOptions::new()).await?;
    /// println!("{} bytes into {} nodes", everywhere.bytes, everywhere.nodes.len());
    /// let agents = ImportOptions::new().nodes(NodeFilter::parse("agent:*")?);
    /// cluster.import_images(&images, &agents).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn import_images(
        &self,
        images: &[String],
        options: &ImportOptions,
    ) -> Result<Imported> {
        import::import_images(&self.docker, &self.name, images, options).await
    }

    /// Deletes the cluster by its labels (containers, volumes, networks)
    /// and the kubeconfig entries topgun merged for it. Deleting what does
    /// not exist succeeds.
    pub async fn delete(self) -> Result<Deleted> {
        self.delete_with(&DeleteOptions::default()).await
    }

    /// Deletes the cluster with `options`.
    pub async fn delete_with(self, options: &DeleteOptions) -> Result<Deleted> {
        lifecycle::delete(&self.docker, &DeleteTarget::Name(self.name), options).await
    }
}
