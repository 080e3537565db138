//! [`ClusterSpecBuilder`]: a [`ClusterSpec`] built in code.

use super::*;
use crate::{Error, Result};

/// Builds a [`ClusterSpec`] in code. Methods that parse text record the first
/// error; [`ClusterSpecBuilder::build`] returns it, or validates the spec.
///
/// ```
/// use topgun_core::{ClusterSpec, Datastore};
///
/// let spec = ClusterSpec::builder("demo")
///     .servers(3)
///     .agents(2)
///     .datastore(Datastore::etcd(3))
///     .api("127.0.0.1:6550")
///     .tls_san("192.168.1.28")
///     .k3s_arg("--disable=traefik@server:*")
///     .build()?;
/// assert_eq!(spec.counts().etcd, 3);
/// # Ok::<(), topgun_core::Error>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct ClusterSpecBuilder {
    pub(super) spec: ClusterSpec,
    error: Option<Error>,
}

impl ClusterSpecBuilder {
    pub(super) fn new(name: &str) -> Self {
        let (name, error) = match ClusterName::new(name) {
            Ok(n) => (n, None),
            Err(e) => (ClusterName::unset(), Some(e)),
        };
        ClusterSpecBuilder {
            spec: ClusterSpec {
                name,
                servers: 1,
                agents: 0,
                image: None,
                datastore: Datastore::Embedded,
                api: ApiEndpoint::default(),
                tls_san: SanList::default(),
                token: None,
                k3s_args: Vec::new(),
                env: Vec::new(),
                volumes: Vec::new(),
                ports: Vec::new(),
                loadbalancer: LoadBalancerSpec::default(),
                network: NetworkSpec::default(),
                timeouts: Timeouts::default(),
                no_rollback: false,
                init: true,
                cgroupns: None,
                privileged: None,
                kubeconfig: super::KubeconfigSpec::default(),
                registries: Default::default(),
            },
            error,
        }
    }

    fn record<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// Sets the number of servers.
    pub fn servers(mut self, n: u32) -> Self {
        self.spec.servers = n;
        self
    }

    /// Sets the number of agents.
    pub fn agents(mut self, n: u32) -> Self {
        self.spec.agents = n;
        self
    }

    /// Sets the k3s image.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.spec.image = Some(image.into());
        self
    }

    /// Sets the datastore.
    pub fn datastore(mut self, datastore: Datastore) -> Self {
        self.spec.datastore = datastore;
        self
    }

    /// Sets where the API is published, `[HOST:]PORT`.
    pub fn api(mut self, endpoint: &str) -> Self {
        if let Some(api) = self.record(ApiEndpoint::parse(endpoint)) {
            self.spec.api = api;
        }
        self
    }

    /// Adds SANs (a comma-separated list).
    pub fn tls_san(mut self, sans: &str) -> Self {
        if let Some(list) = self.record(SanList::parse(sans)) {
            self.spec.tls_san.0.extend(list);
        }
        self
    }

    /// Sets the token.
    pub fn token(mut self, token: &str) -> Self {
        self.spec.token = self.record(Token::new(token));
        self
    }

    /// Adds a k3s argument, `ARG[@FILTER]`.
    pub fn k3s_arg(mut self, arg: &str) -> Self {
        if let Some(a) = self.record(Filtered::parse(arg)) {
            self.spec.k3s_args.push(a);
        }
        self
    }

    /// Adds an environment variable, `KEY=VALUE[@FILTER]`.
    pub fn env(mut self, var: &str) -> Self {
        if let Some(v) = self.record(Filtered::parse(var)) {
            self.spec.env.push(v);
        }
        self
    }

    /// Adds a bind mount, `HOST:CONTAINER[:ro][@FILTER]`.
    pub fn volume(mut self, volume: &str) -> Self {
        if let Some(v) = self.record(Filtered::parse(volume)) {
            self.spec.volumes.push(v);
        }
        self
    }

    /// Adds a published port, `[IP:][HOST:]CONTAINER[/PROTO][@FILTER]`.
    pub fn port(mut self, port: &str) -> Self {
        if let Some(p) = self.record(Filtered::parse(port)) {
            self.spec.ports.push(p);
        }
        self
    }

    /// Turns the load balancer on or off.
    pub fn loadbalancer(mut self, enabled: bool) -> Self {
        self.spec.loadbalancer.enabled = enabled;
        self
    }

    /// Sets the load balancer image.
    pub fn loadbalancer_image(mut self, image: impl Into<String>) -> Self {
        self.spec.loadbalancer.image = Some(image.into());
        self
    }

    /// Sets the network subnet.
    pub fn subnet(mut self, subnet: &str) -> Self {
        self.spec.network.subnet = self.record(Subnet::parse(subnet));
        self
    }

    /// Sets the phase timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.spec.timeouts = timeouts;
        self
    }

    /// Keeps what was created when a create fails.
    pub fn no_rollback(mut self, no_rollback: bool) -> Self {
        self.spec.no_rollback = no_rollback;
        self
    }

    /// Runs k3s nodes with or without Docker's init process.
    pub fn init(mut self, init: bool) -> Self {
        self.spec.init = init;
        self
    }

    /// Sets the cgroup namespace mode of k3s nodes.
    pub fn cgroupns(mut self, mode: Option<CgroupnsMode>) -> Self {
        self.spec.cgroupns = mode;
        self
    }

    /// Runs k3s nodes privileged or not (`None`: decide automatically).
    pub fn privileged(mut self, privileged: Option<bool>) -> Self {
        self.spec.privileged = privileged;
        self
    }

    /// Sets the registries to create or use (see
    /// [`crate::RegistriesSpec`]).
    pub fn registries(mut self, registries: crate::RegistriesSpec) -> Self {
        self.spec.registries = registries;
        self
    }

    /// The spec, validated.
    pub fn build(self) -> Result<ClusterSpec> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.spec.validate()?;
        Ok(self.spec)
    }
}
