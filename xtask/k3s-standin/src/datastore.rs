//! The external datastore: endpoint parsing and the etcd keys the stand-in
//! keeps, `/bootstrap/<id>` and `/registry/minions/<node>`.

use std::path::Path;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    TlsOptions, Txn, TxnOp,
};
use serde_json::Value;
use time::OffsetDateTime;

use crate::config::DatastoreConfig;
use crate::nodes::{self, NodeReport};
use crate::token::{BootstrapData, Token};

/// The prefix of node objects, as in Kubernetes' etcd layout.
pub const MINIONS_PREFIX: &str = "/registry/minions/";
/// How long one etcd request may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request that reaches no member is retried on others.
const FAILOVER: Duration = Duration::from_millis(300);

/// A parsed `--datastore-endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// etcd: `http(s)://host:port[,http(s)://host:port...]`.
    Etcd {
        /// The endpoint URLs, in order.
        urls: Vec<String>,
        /// Whether they are `https`.
        tls: bool,
    },
}

/// Shows an endpoint without any password in it.
pub fn redact(endpoint: &str) -> String {
    endpoint
        .split(',')
        .map(|part| match part.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}"),
                None => part.to_owned(),
            },
            None if part.contains('@') || part.contains(':') => "<redacted>".to_owned(),
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses an endpoint the way k3s (kine) does: it must be `<scheme>://...`.
pub fn parse_endpoint(raw: &str) -> Result<Endpoint, String> {
    let shown = redact(raw);
    let Some((scheme, _)) = raw.split_once("://") else {
        return Err(format!(
            "invalid datastore endpoint {shown:?}: expected <scheme>://..., for example https://etcd-0:2379,https://etcd-1:2379"
        ));
    };
    match scheme {
        "http" | "https" => {
            let mut urls = Vec::new();
            for part in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some((s, rest)) = part.split_once("://") else {
                    return Err(format!(
                        "invalid datastore endpoint {shown:?}: {part:?} is not <scheme>://host:port"
                    ));
                };
                if s != scheme {
                    return Err(format!(
                        "invalid datastore endpoint {shown:?}: all etcd endpoints must use the same scheme"
                    ));
                }
                let host = rest.trim_end_matches('/');
                if host.is_empty() || host.contains('/') || host.contains('@') {
                    return Err(format!(
                        "invalid datastore endpoint {shown:?}: {part:?} is not {scheme}://host:port"
                    ));
                }
                urls.push(format!("{scheme}://{host}"));
            }
            Ok(Endpoint::Etcd {
                urls,
                tls: scheme == "https",
            })
        }
        "sqlite" | "mysql" | "postgres" | "postgresql" | "nats" | "unix" => Err(format!(
            "datastore {scheme}:// is not emulated by the k3s stand-in; use an etcd endpoint (https://host:2379)"
        )),
        other => Err(format!(
            "invalid datastore endpoint {shown:?}: unsupported scheme {other:?}"
        )),
    }
}

fn read(path: Option<&Path>, flag: &str) -> Result<String, String> {
    let path = path.ok_or_else(|| format!("{flag} is required for an https datastore endpoint"))?;
    std::fs::read_to_string(path).map_err(|e| format!("open {}: {e}", path.display()))
}

/// An etcd datastore client (one client over all endpoints).
#[derive(Clone)]
pub struct Etcd {
    client: Client,
}

/// Why bootstrapping from the datastore failed.
#[derive(Debug)]
pub enum BootstrapError {
    /// Bootstrap data exists for another token (k3s's fatal error).
    DifferentToken,
    /// Anything else (unreachable, corrupt...).
    Other(String),
}

impl Etcd {
    /// Connects with the TLS files of `cfg` (mutual TLS for https).
    pub async fn connect(
        urls: &[String],
        tls: bool,
        cfg: &DatastoreConfig,
    ) -> Result<Etcd, String> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(RPC_TIMEOUT)
            .with_timeout(RPC_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if tls {
            let ca = read(cfg.cafile.as_deref(), "--datastore-cafile")?;
            let mut tls_options = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            match (cfg.certfile.as_deref(), cfg.keyfile.as_deref()) {
                (Some(c), Some(k)) => {
                    let cert = read(Some(c), "--datastore-certfile")?;
                    let key = read(Some(k), "--datastore-keyfile")?;
                    tls_options = tls_options.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => {
                    return Err(
                        "--datastore-certfile and --datastore-keyfile must be given together"
                            .into(),
                    );
                }
            }
            options = options.with_tls(tls_options);
        }
        let client = Client::connect(urls, Some(options))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Etcd { client })
    }

    /// One request, retried like the Go client k3s uses: a request that
    /// did not reach a member (the endpoint is gone, e.g. its name no longer
    /// resolves) goes to another one, for up to [`FAILOVER`]; a datastore
    /// that is down altogether still fails fast, so callers log and retry.
    async fn rpc<T, Fut>(&self, f: impl Fn(Client) -> Fut) -> Result<T, String>
    where
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let failover = tokio::time::Instant::now() + FAILOVER;
        let attempts = async {
            loop {
                match f(self.client.clone()).await {
                    Err(e) if unavailable(&e) && tokio::time::Instant::now() < failover => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    r => return r.map_err(|e| e.to_string()),
                }
            }
        };
        match tokio::time::timeout(RPC_TIMEOUT, attempts).await {
            Ok(r) => r,
            Err(_) => Err("context deadline exceeded".into()),
        }
    }

    /// One request that proves the datastore answers.
    pub async fn probe(&self) -> Result<(), String> {
        self.rpc(|mut c| async move {
            c.get(
                "/bootstrap/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_keys_only()
                        .with_limit(1),
                ),
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// Reads this token's bootstrap data, or creates it when the datastore
    /// has none, like k3s: data under another token's key is an error.
    pub async fn bootstrap(&self, token: &Token) -> Result<(BootstrapData, bool), BootstrapError> {
        let key = token.bootstrap_key();
        let other = |e: String| BootstrapError::Other(e);
        let resp = self
            .rpc(|mut c| async move {
                c.get("/bootstrap/", Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await
            .map_err(other)?;
        if let Some(kv) = resp.kvs().iter().find(|kv| kv.key() == key.as_bytes()) {
            let text = String::from_utf8_lossy(kv.value()).into_owned();
            return BootstrapData::decrypt(&text, &token.password)
                .map(|d| (d, false))
                .map_err(|_| BootstrapError::DifferentToken);
        }
        if !resp.kvs().is_empty() {
            return Err(BootstrapError::DifferentToken);
        }
        let data = BootstrapData::generate().map_err(|e| other(e.to_string()))?;
        let sealed = data.encrypt(&token.password);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), sealed, None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self
            .rpc(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(other)?;
        if resp.succeeded() {
            return Ok((data, true));
        }
        // Another server created it first: use theirs.
        for op in resp.op_responses() {
            if let etcd_client::TxnOpResponse::Get(get) = op
                && let Some(kv) = get.kvs().first()
            {
                let text = String::from_utf8_lossy(kv.value()).into_owned();
                return BootstrapData::decrypt(&text, &token.password)
                    .map(|d| (d, false))
                    .map_err(|_| BootstrapError::DifferentToken);
            }
        }
        Err(other(
            "bootstrap data vanished while it was being created".into(),
        ))
    }

    /// Records a heartbeat of `report` under `/registry/minions/<name>`;
    /// true if it created the node. The write is a transaction on the
    /// revision read, so a node deleted meanwhile is created anew (with a
    /// new uid) rather than resurrected with its old identity.
    pub async fn heartbeat(&self, report: &NodeReport) -> Result<bool, String> {
        let key = format!("{MINIONS_PREFIX}{}", report.name);
        let key = key.as_str();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let resp = self
                .rpc(|mut c| async move { c.get(key, None).await })
                .await?;
            let kv = resp.kvs().first();
            let previous: Option<Value> = kv.and_then(|kv| serde_json::from_slice(kv.value()).ok());
            let guard = match kv {
                Some(kv) => Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
                None => Compare::create_revision(key, CompareOp::Equal, 0),
            };
            let node = nodes::heartbeat(report, previous.as_ref(), OffsetDateTime::now_utc());
            let value = serde_json::to_vec(&node).map_err(|e| e.to_string())?;
            let txn = Txn::new()
                .when([guard])
                .and_then([TxnOp::put(key, value, None)]);
            let resp = self
                .rpc(|mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await?;
            if resp.succeeded() {
                return Ok(previous.is_none());
            }
            if attempts >= 3 {
                return Err(format!("{key} keeps changing concurrently"));
            }
        }
    }

    /// Deletes `/registry/minions/<name>`; the deleted object, if any.
    pub async fn delete_node(&self, name: &str) -> Result<Option<Value>, String> {
        let key = format!("{MINIONS_PREFIX}{name}");
        let key = key.as_str();
        let resp = self
            .rpc(|mut c| async move {
                c.delete(key, Some(DeleteOptions::new().with_prev_key()))
                    .await
            })
            .await?;
        Ok(resp
            .prev_kvs()
            .first()
            .map(|kv| serde_json::from_slice(kv.value()).unwrap_or(Value::Null)))
    }

    /// All nodes, with the revision the read saw.
    pub async fn nodes(&self) -> Result<(Vec<Value>, String), String> {
        let resp = self
            .rpc(|mut c| async move {
                c.get(MINIONS_PREFIX, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let revision = resp
            .header()
            .map(|h| h.revision())
            .unwrap_or_default()
            .to_string();
        let nodes = resp
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(kv.value()).ok())
            .collect();
        Ok((nodes, revision))
    }
}

/// Whether no member served the request: the one picked could not be
/// reached, or said it is unavailable.
fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_endpoints() {
        assert_eq!(
            parse_endpoint("https://a:2379,https://b:2379/").unwrap(),
            Endpoint::Etcd {
                urls: vec!["https://a:2379".into(), "https://b:2379".into()],
                tls: true
            }
        );
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379").unwrap(),
            Endpoint::Etcd {
                urls: vec!["http://127.0.0.1:2379".into()],
                tls: false
            }
        );
    }

    #[test]
    fn bad_endpoints() {
        let err = parse_endpoint("etcd").unwrap_err();
        assert!(
            err.starts_with("invalid datastore endpoint \"etcd\""),
            "{err}"
        );
        assert!(
            parse_endpoint("a:2379")
                .unwrap_err()
                .contains("invalid datastore endpoint")
        );
        assert!(parse_endpoint("https://a:2379,http://b:2379").is_err());
        assert!(
            parse_endpoint("ftp://x")
                .unwrap_err()
                .contains("unsupported scheme")
        );
        let err = parse_endpoint("postgres://user:pw@db:5432/k3s").unwrap_err();
        assert!(err.contains("not emulated") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://***@h:5432/db"
        );
        assert_eq!(redact("u:secret@h"), "<redacted>");
        assert!(!parse_endpoint("u:secret@h").unwrap_err().contains("secret"));
    }
}
