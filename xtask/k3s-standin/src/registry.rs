//! Where Node objects live: in etcd (`/registry/minions/<node>`) with an
//! external datastore; in the embedded store of the init (or single)
//! server, which keeps it in memory and saves it under its data dir (as
//! k3s keeps its embedded etcd or SQLite database under
//! `<data-dir>/server/db/`); and, for joining servers, in the init
//! server's store reached over HTTPS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::{Method, StatusCode};
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::certs;
use crate::client::{self, ServerUrl};
use crate::config::Secret;
use crate::datastore::{BootstrapError, Etcd};
use crate::log;
use crate::nodes::{self, NodeReport};
use crate::token::{BootstrapData, Token};

/// The path of the node registration endpoint (stand-in specific; real
/// k3s nodes register through the Kubernetes API with kubelet credentials).
/// `POST` records a heartbeat, `GET` lists, `DELETE <path>/<name>` deletes.
pub const NODES_PATH: &str = "/v1-k3s/standin/nodes";

/// The embedded store's file, under the data dir.
pub const STORE_FILE: &str = "server/db/standin-store.json";
/// What the store file says it is.
const STORE_FORMAT: &str = "k3s-standin-store/v1";
/// How often heartbeat-only changes are saved (a node's identity, labels,
/// images and deletions are saved at once).
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

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

/// The embedded store: node objects and the token-encrypted bootstrap
/// data, in memory, saved to a file when one is given.
#[derive(Debug, Default)]
pub struct Local {
    nodes: BTreeMap<String, Value>,
    bootstrap: BTreeMap<String, String>,
    revision: u64,
    path: Option<PathBuf>,
    /// Changes not saved yet (heartbeat times only).
    dirty: bool,
}

/// The store file's contents.
#[derive(Serialize, Deserialize)]
struct StoreFile {
    format: String,
    revision: u64,
    #[serde(default)]
    bootstrap: BTreeMap<String, String>,
    #[serde(default)]
    nodes: BTreeMap<String, Value>,
}

impl Local {
    /// Loads the store saved at `path`, or starts an empty one that will be
    /// saved there. A file that cannot be read is an error, as a corrupt
    /// database is for k3s.
    pub fn open(path: &Path) -> Result<Local, String> {
        let mut local = Local {
            path: Some(path.to_owned()),
            ..Local::default()
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let file: StoreFile = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("reading the datastore {}: {e}", path.display()))?;
                if file.format != STORE_FORMAT {
                    return Err(format!(
                        "reading the datastore {}: unknown format {:?}",
                        path.display(),
                        file.format
                    ));
                }
                local.nodes = file.nodes;
                local.bootstrap = file.bootstrap;
                local.revision = file.revision;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("reading the datastore {}: {e}", path.display())),
        }
        Ok(local)
    }

    /// How many nodes the store holds.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The bootstrap data sealed with `token`, if the store has any; data
    /// under another token's key, or that does not decrypt, is k3s's
    /// "encrypted with different token" error.
    pub fn bootstrap(&self, token: &Token) -> Result<Option<BootstrapData>, BootstrapError> {
        let key = token.bootstrap_key();
        match self.bootstrap.get(&key) {
            Some(sealed) => BootstrapData::decrypt(sealed, &token.password)
                .map(Some)
                .map_err(|_| BootstrapError::DifferentToken),
            None if self.bootstrap.is_empty() => Ok(None),
            None => Err(BootstrapError::DifferentToken),
        }
    }

    /// Stores the sealed bootstrap data under `key` and saves.
    pub fn set_bootstrap(&mut self, key: String, sealed: String) -> Result<(), String> {
        self.bootstrap.insert(key, sealed);
        self.revision += 1;
        self.save()
    }

    /// Records a heartbeat at `now`; true if it created the node.
    fn heartbeat(&mut self, report: &NodeReport, now: OffsetDateTime) -> Result<bool, String> {
        let previous = self.nodes.get(&report.name);
        let node = nodes::heartbeat(report, previous, now);
        let created = previous.is_none();
        let changed = previous.is_none_or(|p| !nodes::same_but_heartbeat(p, &node));
        self.nodes.insert(report.name.clone(), node);
        self.revision += 1;
        if changed {
            self.save()?;
        } else {
            self.dirty = true;
        }
        Ok(created)
    }

    /// Removes a node and saves; the removed object, if there was one.
    fn delete(&mut self, name: &str) -> Result<Option<Value>, String> {
        let removed = self.nodes.remove(name);
        if removed.is_some() {
            self.revision += 1;
            self.save()?;
        }
        Ok(removed)
    }

    /// Writes the store atomically (temporary file, fsync, rename), if it
    /// has a file.
    fn save(&mut self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = StoreFile {
            format: STORE_FORMAT.into(),
            revision: self.revision,
            bootstrap: self.bootstrap.clone(),
            nodes: self.nodes.clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
        certs::write_atomic(path, &bytes, 0o600)
            .map_err(|e| format!("writing the datastore {}: {e}", path.display()))?;
        self.dirty = false;
        Ok(())
    }
}

/// Parses the JSON body a server answers a heartbeat with.
fn created_flag(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("created").and_then(Value::as_bool))
        .unwrap_or(false)
}

impl Registry {
    /// A registry over an embedded store.
    pub fn from_local(local: Local) -> Registry {
        Registry::Local(Arc::new(Mutex::new(local)))
    }

    /// Saves heartbeat-only changes of an embedded store every few
    /// seconds (other changes are saved at once).
    pub fn spawn_flusher(&self) {
        let Registry::Local(local) = self else {
            return;
        };
        let local = local.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(FLUSH_INTERVAL).await;
                let mut store = local.lock().expect("registry lock");
                if !store.dirty {
                    continue;
                }
                match store.save() {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        log::error(e);
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// Records a heartbeat; true if it created the node (a first
    /// registration, or a new one after the node was deleted).
    pub async fn heartbeat(&self, report: &NodeReport) -> Result<bool, String> {
        match self {
            Registry::Etcd(etcd) => etcd.heartbeat(report).await,
            Registry::Local(local) => local
                .lock()
                .expect("registry lock")
                .heartbeat(report, OffsetDateTime::now_utc()),
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
                    Ok(created_flag(&body))
                } else {
                    Err(format!(
                        "{url}{NODES_PATH}: {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ))
                }
            }
        }
    }

    /// Deletes a node; the deleted object, or `None` if there was none.
    pub async fn delete(&self, name: &str) -> Result<Option<Value>, String> {
        match self {
            Registry::Etcd(etcd) => etcd.delete_node(name).await,
            Registry::Local(local) => local.lock().expect("registry lock").delete(name),
            Registry::Remote { url, tls, password } => {
                let path = format!("{NODES_PATH}/{name}");
                let (status, body) = client::request(
                    url,
                    tls.clone(),
                    Method::DELETE,
                    &path,
                    Some(("server", password)),
                    None,
                )
                .await?;
                match status {
                    StatusCode::OK => serde_json::from_slice(&body)
                        .map(Some)
                        .map_err(|e| format!("{url}{path}: {e}")),
                    StatusCode::NOT_FOUND => Ok(None),
                    s => Err(format!(
                        "{url}{path}: {s}: {}",
                        String::from_utf8_lossy(&body).trim()
                    )),
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use time::macros::datetime;

    fn report(name: &str) -> NodeReport {
        NodeReport {
            name: name.into(),
            hostname: name.into(),
            addresses: vec!["10.0.0.2".parse().unwrap()],
            server: false,
            etcd: false,
            images: vec![],
        }
    }

    fn saved(path: &Path) -> StoreFile {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_store_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let token = Token::parse(&Secret::new("hunter2")).unwrap();
        let data = BootstrapData::generate().unwrap();
        let t0 = datetime!(2024-05-01 10:00:00 UTC);
        let created = {
            let mut store = Local::open(&path).unwrap();
            assert_eq!(store.bootstrap(&token).unwrap(), None);
            store
                .set_bootstrap(token.bootstrap_key(), data.encrypt(&token.password))
                .unwrap();
            assert!(store.heartbeat(&report("agent-0"), t0).unwrap());
            // A heartbeat that changes only the heartbeat time is saved later.
            let t1 = t0 + time::Duration::seconds(2);
            assert!(!store.heartbeat(&report("agent-0"), t1).unwrap());
            assert!(store.dirty);
            let on_disk = saved(&path);
            assert_eq!(
                on_disk.nodes["agent-0"]
                    .pointer("/status/conditions/0/lastHeartbeatTime")
                    .unwrap(),
                "2024-05-01T10:00:00Z"
            );
            store.save().unwrap();
            store.nodes["agent-0"].clone()
        };
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Reopened: the same CAs, the same node (uid, creation time).
        let mut store = Local::open(&path).unwrap();
        assert_eq!(store.bootstrap(&token).unwrap(), Some(data));
        assert_eq!(store.node_count(), 1);
        let t2 = t0 + time::Duration::seconds(600);
        assert!(!store.heartbeat(&report("agent-0"), t2).unwrap());
        let again = &store.nodes["agent-0"];
        assert_eq!(
            again.pointer("/metadata/uid"),
            created.pointer("/metadata/uid")
        );
        assert_eq!(
            again.pointer("/metadata/creationTimestamp").unwrap(),
            "2024-05-01T10:00:00Z"
        );
        // Another token cannot use it.
        let other = Token::parse(&Secret::new("other")).unwrap();
        assert!(matches!(
            store.bootstrap(&other),
            Err(BootstrapError::DifferentToken)
        ));
        // Deleting saves at once; a later heartbeat registers the node anew.
        assert!(store.delete("agent-0").unwrap().is_some());
        assert!(store.delete("agent-0").unwrap().is_none());
        assert!(saved(&path).nodes.is_empty());
        assert!(store.heartbeat(&report("agent-0"), t2).unwrap());
        assert_ne!(
            store.nodes["agent-0"].pointer("/metadata/uid"),
            created.pointer("/metadata/uid")
        );
    }

    #[test]
    fn a_corrupt_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = Local::open(&path).unwrap_err();
        assert!(err.contains("reading the datastore"), "{err}");
    }
}
