//! `k3s server`: one control-plane node.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use tokio::net::TcpListener;

use crate::api::{self, ApiState};
use crate::backoff::Backoff;
use crate::certs;
use crate::client::{self, ServerUrl};
use crate::config::{Secret, ServerConfig};
use crate::datastore::{self, BootstrapError, Endpoint, Etcd};
use crate::images;
use crate::log;
use crate::netinfo;
use crate::nodes::{HEARTBEAT_INTERVAL_SECS, NodeReport};
use crate::registry::{Local, Registry, STORE_FILE};
use crate::token::{BootstrapData, CaPem, Token};

/// How long a server keeps retrying an unreachable datastore or init
/// server (with [`Backoff`]) before it gives up with a fatal error, unless
/// [`STARTUP_TIMEOUT_ENV`] says otherwise.
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);
/// Stand-in only: the startup retry deadline in seconds (for tests).
pub const STARTUP_TIMEOUT_ENV: &str = "K3S_STANDIN_STARTUP_TIMEOUT";

fn startup_deadline() -> Duration {
    std::env::var(STARTUP_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(STARTUP_DEADLINE)
}
/// Pause between retries of an external datastore.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Where the cluster state lives.
enum Mode {
    /// External etcd.
    External { urls: Vec<String>, tls: bool },
    /// `--cluster-init`: this server holds the embedded store.
    EmbeddedInit,
    /// `--server`: join the embedded store of another server.
    EmbeddedJoin(ServerUrl),
    /// Neither: a single server (k3s would use SQLite).
    Single,
}

fn prefix(msg: impl std::fmt::Display) -> String {
    format!("starting kubernetes: preparing server: {msg}")
}

/// Runs a server until the process is signalled; fatal errors exit.
pub async fn run(cfg: ServerConfig) {
    log::starting("k3s", &cfg.common.ignored_flags);
    let hostname = netinfo::hostname();
    let node_name = cfg
        .common
        .node_name
        .clone()
        .unwrap_or_else(|| hostname.clone());
    if let Err(e) = crate::config::validate_node_name(&node_name) {
        log::fatal(e);
    }
    load_registries(&cfg.common);
    let node_ips = netinfo::node_ips(&cfg.common.node_ips);

    let mode = match (&cfg.datastore.endpoint, &cfg.common.server_url) {
        (Some(ep), _) => match datastore::parse_endpoint(ep) {
            Ok(Endpoint::Etcd { urls, tls }) => {
                if cfg.cluster_init {
                    log::warn("--cluster-init is ignored with an external datastore");
                }
                Mode::External { urls, tls }
            }
            Err(e) => log::fatal(prefix(format!("creating storage endpoint: {e}"))),
        },
        (None, Some(url)) => match ServerUrl::parse(url) {
            Ok(u) => Mode::EmbeddedJoin(u),
            Err(e) => log::fatal(prefix(e)),
        },
        (None, None) if cfg.cluster_init => Mode::EmbeddedInit,
        (None, None) => Mode::Single,
    };

    let server_dir = cfg.common.data_dir.join("server");
    let token = match &cfg.common.token {
        Some(t) => Token::parse(t).unwrap_or_else(|e| log::fatal(prefix(e))),
        None => match &mode {
            Mode::EmbeddedJoin(_) => log::fatal(prefix("token is required to join a cluster")),
            _ => match std::fs::read_to_string(server_dir.join("token")) {
                Ok(t) => {
                    Token::parse(&Secret::new(t.trim())).unwrap_or_else(|e| log::fatal(prefix(e)))
                }
                Err(_) => Token::generate(),
            },
        },
    };

    let (bootstrap, registry) = match &mode {
        Mode::External { urls, tls } => {
            log::info(format!(
                "Datastore: external etcd at {} ({})",
                urls.join(","),
                if *tls { "mutual TLS" } else { "plain http" }
            ));
            let etcd = connect_etcd(urls, *tls, &cfg).await;
            let data = bootstrap_from_etcd(&etcd, &token).await;
            (data, Registry::Etcd(Box::new(etcd)))
        }
        Mode::EmbeddedInit | Mode::Single => {
            let (data, store) = open_embedded_store(&cfg.common.data_dir, &server_dir, &token);
            (data, Registry::from_local(store))
        }
        Mode::EmbeddedJoin(url) => {
            // A server that joined before starts from what it saved, as a
            // k3s server restarts from its own etcd member; the init
            // server need not be up yet.
            let data = match joined_before(&server_dir, &token) {
                Some(d) => {
                    log::info(format!(
                        "Using the cluster CAs from the data directory (joined {url} before)"
                    ));
                    d
                }
                None => bootstrap_from_server(url, &token).await,
            };
            let tls =
                client::trusting(&data.server_ca.cert).unwrap_or_else(|e| log::fatal(prefix(e)));
            (
                data,
                Registry::Remote {
                    url: url.clone(),
                    tls,
                    password: token.password.clone(),
                },
            )
        }
    };
    if let Err(e) = token.check_ca(&bootstrap.server_ca.cert) {
        log::fatal(prefix(e));
    }
    if let Err(e) = save_local_bootstrap(&server_dir, &bootstrap, &token) {
        log::fatal(prefix(format!("writing {}: {e}", server_dir.display())));
    }

    let server_ca = certs::load_ca(&bootstrap.server_ca).unwrap_or_else(|e| log::fatal(prefix(e)));
    let client_ca = certs::load_ca(&bootstrap.client_ca).unwrap_or_else(|e| log::fatal(prefix(e)));
    let service_ip = certs::service_ip(&cfg.service_cidr).unwrap_or_else(|e| log::fatal(e));
    let sans = certs::serving_sans(
        &node_ips,
        service_ip,
        &hostname,
        &cfg.cluster_domain,
        &cfg.tls_sans,
    );
    let shown: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    log::info(format!(
        "Serving certificate (CN=k3s) SANs: {}",
        shown.join(",")
    ));
    let serving = certs::serving_cert(&server_ca, &sans).unwrap_or_else(|e| log::fatal(prefix(e)));
    let acceptor = api::tls_acceptor(
        &serving.cert_pem,
        serving.key_pem.expose(),
        &bootstrap.client_ca.cert,
    )
    .unwrap_or_else(|e| log::fatal(prefix(e)));

    let bind = cfg
        .bind_address
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = SocketAddr::new(bind, cfg.https_port);
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => log::fatal(format!("starting kubernetes: listen tcp {addr}: bind: {e}")),
    };
    let state = Arc::new(ApiState {
        registry: registry.clone(),
        server_ca_pem: bootstrap.server_ca.cert.clone(),
        sealed_bootstrap: bootstrap.encrypt(&token.password),
        password: token.password.clone(),
        advertise: format!("{}:{}", node_ips[0], cfg.https_port),
    });
    tokio::spawn(api::serve(listener, acceptor, state));
    registry.spawn_flusher();
    log::info(format!(
        "Listening on {addr} (supervisor and emulated Kubernetes API)"
    ));

    let admin = certs::admin_cert(&client_ca).unwrap_or_else(|e| log::fatal(prefix(e)));
    let kubeconfig = certs::kubeconfig(
        &certs::kubeconfig_server(cfg.bind_address, cfg.https_port),
        &bootstrap.server_ca.cert,
        &admin,
    );
    if let Err(e) = certs::write_atomic(
        &cfg.kubeconfig_path,
        kubeconfig.as_bytes(),
        cfg.kubeconfig_mode,
    ) {
        log::fatal(format!(
            "writing kubeconfig {}: {e}",
            cfg.kubeconfig_path.display()
        ));
    }
    log::info(format!(
        "Wrote kubeconfig {}",
        cfg.kubeconfig_path.display()
    ));

    log::info("Waiting for API server to become available");
    let started = Instant::now();
    let mut backoff = Backoff::new();
    loop {
        match registry.check().await {
            Ok(()) => break,
            Err(e) if started.elapsed() < startup_deadline() => {
                log::info(format!("Failed to test data store connection: {e}"));
                match mode {
                    Mode::EmbeddedJoin(_) => backoff.wait().await,
                    _ => tokio::time::sleep(RETRY_PAUSE).await,
                }
            }
            Err(e) => log::fatal(prefix(format!("data store unavailable: {e}"))),
        }
    }
    log::info("Kube API server is now running");
    log::info("k3s is up and running");

    let report = NodeReport {
        name: node_name,
        hostname,
        addresses: node_ips,
        server: true,
        etcd: matches!(mode, Mode::EmbeddedInit | Mode::EmbeddedJoin(_)),
        images: Vec::new(),
    };
    log::info("Containerd is now running");
    preload_images(&cfg.common.data_dir).await;
    heartbeat_loop(report, cfg.common.data_dir.clone(), move |r| {
        let registry = registry.clone();
        async move { registry.heartbeat(&r).await }
    })
    .await;
}

/// Reads the node's `registries.yaml` as k3s does at start (see
/// `registries`): a file that does not parse is fatal.
pub fn load_registries(common: &crate::config::CommonConfig) {
    if let Err(e) = crate::registries::load_for_node(
        &common.private_registry,
        common.disable_default_registry_endpoint,
        &common.data_dir,
    ) {
        log::fatal(e);
    }
}

/// k3s's import of `<data-dir>/agent/images/` once containerd runs, before
/// the kubelet registers the node.
pub async fn preload_images(data_dir: &Path) {
    let dir = data_dir.to_owned();
    if let Err(e) = tokio::task::spawn_blocking(move || images::preload(&dir)).await {
        log::error(format!("Importing images: {e}"));
    }
}

/// Sends heartbeats forever (each with the node's images as they are
/// now), logging registrations (the first, and any after the node was
/// deleted and a heartbeat created it again) and failures. `send` says
/// whether the heartbeat created the node.
pub async fn heartbeat_loop<F, Fut>(mut report: NodeReport, data_dir: PathBuf, send: F)
where
    F: Fn(NodeReport) -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let mut registered = false;
    let mut failing = false;
    let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        report.images = images::current_node_images(&data_dir);
        match send(report.clone()).await {
            Ok(created) => {
                if !registered || created {
                    log::info(format!("Successfully registered node {}", report.name));
                    registered = true;
                } else if failing {
                    log::info(format!("Node {} is posting status again", report.name));
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    log::error(format!(
                        "Failed to post node status of {}: {e}",
                        report.name
                    ));
                }
                failing = true;
            }
        }
    }
}

async fn connect_etcd(urls: &[String], tls: bool, cfg: &ServerConfig) -> Etcd {
    let started = Instant::now();
    loop {
        let attempt = match Etcd::connect(urls, tls, &cfg.datastore).await {
            Ok(etcd) => etcd.probe().await.map(|()| etcd),
            Err(e)
                if e.starts_with("open ")
                    || e.contains("is required")
                    || e.contains("must be given") =>
            {
                log::fatal(prefix(format!("creating storage endpoint: {e}")))
            }
            Err(e) => Err(e),
        };
        match attempt {
            Ok(etcd) => return etcd,
            Err(e) if started.elapsed() < startup_deadline() => {
                log::info(format!("Failed to test data store connection: {e}"));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => log::fatal(prefix(format!(
                "failed to reach the datastore at {}: {e}",
                urls.join(",")
            ))),
        }
    }
}

async fn bootstrap_from_etcd(etcd: &Etcd, token: &Token) -> BootstrapData {
    let started = Instant::now();
    loop {
        match etcd.bootstrap(token).await {
            Ok((data, created)) => {
                if created {
                    log::info(format!(
                        "Saved bootstrap data to the datastore under {}",
                        token.bootstrap_key()
                    ));
                } else {
                    log::info("Reconciling bootstrap data between datastore and disk");
                }
                return data;
            }
            Err(BootstrapError::DifferentToken) => log::fatal(prefix(
                "bootstrap data already found and encrypted with different token",
            )),
            Err(BootstrapError::Other(e)) if started.elapsed() < startup_deadline() => {
                log::info(format!("Failed to get bootstrap data from etcd: {e}"));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(BootstrapError::Other(e)) => {
                log::fatal(prefix(format!("failed to get bootstrap data: {e}")))
            }
        }
    }
}

async fn bootstrap_from_server(url: &ServerUrl, token: &Token) -> BootstrapData {
    let started = Instant::now();
    let mut backoff = Backoff::new();
    loop {
        let attempt = fetch_bootstrap(url, token).await;
        match attempt {
            Ok(data) => {
                log::info(format!("Fetched the cluster CAs from {url}"));
                return data;
            }
            Err((true, e)) => log::fatal(prefix(e)),
            Err((false, e)) if started.elapsed() < startup_deadline() => {
                log::info(format!(
                    "Waiting to retrieve cluster bootstrap data; server is not ready: {e}"
                ));
                backoff.wait().await;
            }
            Err((false, e)) => log::fatal(prefix(format!(
                "failed to get bootstrap data from {url}: {e}"
            ))),
        }
    }
}

/// Fetches and decrypts the bootstrap data; the flag says whether the
/// failure is final (a wrong token) rather than worth retrying.
async fn fetch_bootstrap(url: &ServerUrl, token: &Token) -> Result<BootstrapData, (bool, String)> {
    let (status, ca) = client::request(
        url,
        client::trust_on_first_use(),
        Method::GET,
        "/cacerts",
        None,
        None,
    )
    .await
    .map_err(|e| (false, e))?;
    if status != StatusCode::OK {
        return Err((false, format!("{url}/cacerts: {status}")));
    }
    let ca = String::from_utf8_lossy(&ca).into_owned();
    token.check_ca(&ca).map_err(|e| (true, e))?;
    let tls = client::trusting(&ca).map_err(|e| (true, e))?;
    let (status, body) = client::request(
        url,
        tls,
        Method::GET,
        "/v1-k3s/server-bootstrap",
        Some(("server", &token.password)),
        None,
    )
    .await
    .map_err(|e| (false, e))?;
    if status == StatusCode::UNAUTHORIZED {
        return Err((
            true,
            format!(
                "{url}/v1-k3s/server-bootstrap: 401 Unauthorized: the token does not match the cluster's"
            ),
        ));
    }
    if status != StatusCode::OK {
        return Err((false, format!("{url}/v1-k3s/server-bootstrap: {status}")));
    }
    let data = BootstrapData::decrypt(&String::from_utf8_lossy(&body), &token.password)
        .map_err(|e| (true, e))?;
    if data.server_ca.cert != ca {
        return Err((true, "bootstrap data does not match the server's CA".into()));
    }
    Ok(data)
}

/// Opens the embedded store of an init (or single) server and settles the
/// cluster CAs: those in the store (sealed with the token, as k3s keeps
/// its bootstrap data in its datastore), else those on disk, else new
/// ones, which are then stored. Bootstrap data sealed with another token
/// is fatal, as in k3s.
fn open_embedded_store(
    data_dir: &Path,
    server_dir: &Path,
    token: &Token,
) -> (BootstrapData, Local) {
    let db = data_dir.join(STORE_FILE);
    let mut store = Local::open(&db).unwrap_or_else(|e| log::fatal(prefix(e)));
    let data = match store.bootstrap(token) {
        Ok(Some(d)) => {
            log::info("Reconciling bootstrap data between datastore and disk");
            d
        }
        Ok(None) => {
            let d = match load_local_bootstrap(server_dir) {
                Some(d) => {
                    log::info("Using the cluster CAs from the data directory");
                    d
                }
                None => BootstrapData::generate().unwrap_or_else(|e| log::fatal(prefix(e))),
            };
            if let Err(e) = store.set_bootstrap(token.bootstrap_key(), d.encrypt(&token.password)) {
                log::fatal(prefix(e));
            }
            d
        }
        Err(BootstrapError::DifferentToken) => log::fatal(prefix(
            "bootstrap data already found and encrypted with different token",
        )),
        Err(BootstrapError::Other(e)) => log::fatal(prefix(e)),
    };
    log::info(format!(
        "Datastore: {} ({} node(s) stored)",
        db.display(),
        store.node_count()
    ));
    (data, store)
}

/// The CAs a joining server saved when it joined, if it joined with this
/// token's password (and, for a `K10` token, this CA).
fn joined_before(server_dir: &Path, token: &Token) -> Option<BootstrapData> {
    let data = load_local_bootstrap(server_dir)?;
    let saved = std::fs::read_to_string(server_dir.join("token")).ok()?;
    let saved = Token::parse(&Secret::new(saved.trim())).ok()?;
    let same = saved.password.expose() == token.password.expose()
        && saved.check_ca(&data.server_ca.cert).is_ok()
        && token.check_ca(&data.server_ca.cert).is_ok();
    same.then_some(data)
}

fn load_local_bootstrap(server_dir: &Path) -> Option<BootstrapData> {
    let tls = server_dir.join("tls");
    let read = |n: &str| std::fs::read_to_string(tls.join(n)).ok();
    Some(BootstrapData {
        server_ca: CaPem {
            cert: read("server-ca.crt")?,
            key: read("server-ca.key")?,
        },
        client_ca: CaPem {
            cert: read("client-ca.crt")?,
            key: read("client-ca.key")?,
        },
    })
}

/// Writes the CAs and the token files where k3s keeps them.
fn save_local_bootstrap(
    server_dir: &Path,
    data: &BootstrapData,
    token: &Token,
) -> std::io::Result<()> {
    let tls = server_dir.join("tls");
    certs::write_atomic(
        &tls.join("server-ca.crt"),
        data.server_ca.cert.as_bytes(),
        0o644,
    )?;
    certs::write_atomic(
        &tls.join("server-ca.key"),
        data.server_ca.key.as_bytes(),
        0o600,
    )?;
    certs::write_atomic(
        &tls.join("client-ca.crt"),
        data.client_ca.cert.as_bytes(),
        0o644,
    )?;
    certs::write_atomic(
        &tls.join("client-ca.key"),
        data.client_ca.key.as_bytes(),
        0o600,
    )?;
    let full = token.full(&data.server_ca.cert);
    certs::write_atomic(
        &server_dir.join("token"),
        format!("{}\n", full.expose()).as_bytes(),
        0o600,
    )?;
    certs::write_atomic(
        &server_dir.join("node-token"),
        format!("{}\n", full.expose()).as_bytes(),
        0o600,
    )?;
    Ok(())
}
