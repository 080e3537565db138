//! [`Warning`]: what a valid spec (or an operation) does that is probably
//! not what the user wants. Typed, so callers match on the kind rather than
//! on the text; shown (and serialised) as its message.

use std::fmt;
use std::net::IpAddr;

/// Something valid but probably unwanted. `Display` is the message for the
/// person at the terminal; JSON output carries the same message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A SAN that covers nothing (e.g. `0.0.0.0`), as topgun-tls explains.
    San(String),
    /// The API is published on every interface of the host.
    ApiOnEveryInterface {
        /// The address it is bound to (`0.0.0.0` or `::`).
        host: IpAddr,
        /// The address the kubeconfig dials.
        dial_host: IpAddr,
    },
    /// Several servers but no load balancer.
    NoLoadBalancer,
    /// A warning of topgun-etcd about the etcd cluster (e.g. an even
    /// member count).
    Etcd(topgun_etcd::SpecWarning),
    /// An external datastore endpoint on loopback, which inside a node is
    /// the node itself.
    DatastoreOnLoopback {
        /// The endpoint as given (credentials redacted).
        endpoint: String,
    },
    /// The load balancer does not run: it reads its new config (and routes
    /// to the new servers) when it starts.
    LoadBalancerNotRunning {
        /// Its container name.
        name: String,
    },
    /// The load balancer's config could not be changed and was left as it
    /// was.
    LoadBalancerConfigKept {
        /// Why.
        reason: String,
    },
    /// A deleted node's Kubernetes Node object is still in the API.
    NodeObjectKept {
        /// The Node's name (the container's hostname).
        node: String,
        /// Why it was not deleted.
        reason: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::San(message) => f.write_str(message),
            Warning::ApiOnEveryInterface { host, dial_host } => write!(
                f,
                "the API is published on {host}, reachable from every network of this host; the \
                 kubeconfig uses {dial_host}"
            ),
            Warning::NoLoadBalancer => {
                f.write_str("no load balancer: the API and agents reach server-0 only")
            }
            Warning::Etcd(w) => w.fmt(f),
            Warning::DatastoreOnLoopback { endpoint } => write!(
                f,
                "the datastore endpoint {endpoint} uses a loopback address, which inside a node \
                 container is the container itself; use an address the containers can reach"
            ),
            Warning::LoadBalancerNotRunning { name } => write!(
                f,
                "the load balancer {name} does not run; it reads its new config, and routes to \
                 the new servers, when it starts"
            ),
            Warning::LoadBalancerConfigKept { reason } => {
                write!(f, "the load balancer's config was left as it is: {reason}")
            }
            Warning::NodeObjectKept { node, reason } => write!(
                f,
                "the Kubernetes Node {node} was not deleted: {reason}; delete it with `kubectl \
                 delete node {node}`"
            ),
        }
    }
}

impl serde::Serialize for Warning {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
