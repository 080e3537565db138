//! Where Node objects live: in etcd (`/registry/minions/<node>`) with an
//! external datastore, in the init server's memory with the embedded
//! store, and, for joining servers, in the init server reached over HTTPS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use rustls::ClientConfig;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::client::{self, ServerUrl};
use crate::config::Secret;
use crate::datastore::Etcd;
use crate::nodes::{self, NodeReport};

/// The path of the node registration endpoint (stand-in specific; real
/// k3s nodes register through the Kubernetes API with kubelet credentials).
pub const NODES_PATH: &str = "/v1-k3s/standin/nodes";

/// The node registry of one server.
#[derive(Clone)]
pub enum Registry {
    /// External etcd.
    Etcd(Box<Etcd>),
    /// The embedded store, held by this (init or single) server.
    Local(Arc<Mutex<Local>>),
    /// The embedded store of the init server, reached over HTTPS.
    Remote {
        /// The init server.
        url: ServerUrl,
        /// Trusts the cluster's server CA.
        tls: Arc<ClientConfig>,
        /// The token password (basic auth as `server`).
        password: Secret,
    },
}

/// An in-memory node store.
#[derive(Debug, Default)]
pub struct Local {
    nodes: BTreeMap<String, Value>,
    revision: u64,
}

impl Registry {
    /// A new, empty in-memory registry.
    pub fn local() -> Registry {
        Registry::Local(Arc::new(Mutex::new(Local::default())))
    }

    /// Records a heartbeat.
    pub async fn heartbeat(&self, report: &NodeReport) -> Result<(), String> {
        match self {
            Registry::Etcd(etcd) => etcd.heartbeat(report).await,
            Registry::Local(local) => {
                let mut local = local.lock().expect("registry lock");
                let node = nodes::heartbeat(
                    report,
                    local.nodes.get(&report.name),
                    OffsetDateTime::now_utc(),
                );
                local.nodes.insert(report.name.clone(), node);
                local.revision += 1;
                Ok(())
            }
            Registry::Remote { url, tls, password } => {
                let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
                let (status, body) = client::request(
                    url,
                    tls.clone(),
                    Method::POST,
                    NODES_PATH,
                    Some(("server", password)),
                    Some(body),
                )
                .await?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{url}{NODES_PATH}: {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ))
                }
            }
        }
    }

    /// All nodes as stored (Ready not yet re-evaluated) and a resource version.
    pub async fn nodes(&self) -> Result<(Vec<Value>, String), String> {
        match self {
            Registry::Etcd(etcd) => etcd.nodes().await,
            Registry::Local(local) => {
                let local = local.lock().expect("registry lock");
                Ok((
                    local.nodes.values().cloned().collect(),
                    local.revision.to_string(),
                ))
            }
            Registry::Remote { url, tls, password } => {
                let (status, body) = client::request(
                    url,
                    tls.clone(),
                    Method::GET,
                    NODES_PATH,
                    Some(("server", password)),
                    None,
                )
                .await?;
                if status != StatusCode::OK {
                    return Err(format!("{url}{NODES_PATH}: {status}"));
                }
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                let items = v
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let rv = v
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("0")
                    .to_owned();
                Ok((items, rv))
            }
        }
    }

    /// Whether the store answers (the `etcd` check of `/readyz`).
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Registry::Etcd(etcd) => etcd.probe().await,
            Registry::Local(_) => Ok(()),
            Registry::Remote { .. } => self.nodes().await.map(|_| ()),
        }
    }

    /// The body of `GET /v1-k3s/standin/nodes`.
    pub async fn nodes_json(&self) -> Result<Value, String> {
        let (items, rv) = self.nodes().await?;
        Ok(json!({"items": items, "resourceVersion": rv}))
    }
}
