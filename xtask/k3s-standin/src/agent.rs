//! `k3s agent`: a worker node that joins through `K3S_URL`.

use hyper::{Method, StatusCode};

use crate::backoff::Backoff;
use crate::client::{self, ServerUrl};
use crate::config::AgentConfig;
use crate::log;
use crate::netinfo;
use crate::nodes::NodeReport;
use crate::registry::NODES_PATH;
use crate::server::{heartbeat_loop, load_registries, preload_images};
use crate::token::Token;

/// Runs an agent until the process is signalled.
pub async fn run(cfg: AgentConfig) {
    log::starting("k3s agent", &cfg.common.ignored_flags);
    let raw_url = cfg.common.server_url.as_deref().expect("checked by config");
    let url = ServerUrl::parse(raw_url).unwrap_or_else(|e| log::fatal(e));
    let token = Token::parse(cfg.common.token.as_ref().expect("checked by config"))
        .unwrap_or_else(|e| log::fatal(e));
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
    let report = NodeReport {
        name: node_name,
        hostname,
        addresses: netinfo::node_ips(&cfg.common.node_ips),
        server: false,
        etcd: false,
        images: Vec::new(),
    };

    // Like k3s: fetch the CA (checked against a K10 token), then prove the
    // token; retry, with back-off and forever, until the server is there.
    let mut backoff = Backoff::new();
    let tls = loop {
        match connect(&url, &token, &report).await {
            Ok(tls) => break tls,
            Err(e) => {
                log::info(format!(
                    "Waiting to retrieve agent configuration; server is not ready: {e}"
                ));
                backoff.wait().await;
            }
        }
    };
    log::info("Containerd is now running");
    preload_images(&cfg.common.data_dir).await;
    let password = token.password.clone();
    heartbeat_loop(report, cfg.common.data_dir.clone(), move |r| {
        let (url, tls, password) = (url.clone(), tls.clone(), password.clone());
        async move { post(&url, tls, &password, &r).await }
    })
    .await;
}

async fn connect(
    url: &ServerUrl,
    token: &Token,
    report: &NodeReport,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let (status, ca) = client::request(
        url,
        client::trust_on_first_use(),
        Method::GET,
        "/cacerts",
        None,
        None,
    )
    .await?;
    if status != StatusCode::OK {
        return Err(format!("{url}/cacerts: {status}"));
    }
    let ca = String::from_utf8_lossy(&ca).into_owned();
    if let Err(e) = token.check_ca(&ca) {
        log::fatal(e);
    }
    let tls = client::trusting(&ca)?;
    // The first heartbeat registers the node and checks the token.
    post(url, tls.clone(), &token.password, report).await?;
    Ok(tls)
}

/// Posts a heartbeat; true if it created the node.
async fn post(
    url: &ServerUrl,
    tls: std::sync::Arc<rustls::ClientConfig>,
    password: &crate::config::Secret,
    report: &NodeReport,
) -> Result<bool, String> {
    let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
    let (status, body) = client::request(
        url,
        tls,
        Method::POST,
        NODES_PATH,
        Some(("node", password)),
        Some(body),
    )
    .await?;
    match status {
        s if s.is_success() => Ok(serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("created").and_then(serde_json::Value::as_bool))
            .unwrap_or(false)),
        StatusCode::UNAUTHORIZED => Err(format!(
            "{url}{NODES_PATH}: 401 Unauthorized (is the token right?)"
        )),
        s => Err(format!(
            "{url}{NODES_PATH}: {s}: {}",
            String::from_utf8_lossy(&body).trim()
        )),
    }
}
