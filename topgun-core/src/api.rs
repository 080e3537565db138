//! Small HTTP clients topgun needs: `GET /readyz` on the Kubernetes API over
//! TLS with the kubeconfig's client certificate (verifying the server against
//! the cluster CA for the host clients dial), and the load balancer's haproxy
//! stats page.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::kubeconfig::Credentials;
use crate::{Error, Result};

/// The deadline of one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of a response topgun reads.
const MAX_RESPONSE: usize = 256 * 1024;

fn tls_config(creds: &Credentials) -> std::result::Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the cluster CA is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the cluster CA is unusable: {e}"))?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(creds.cert_pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("the client certificate is not PEM: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(creds.key_pem.expose().as_bytes())
        .map_err(|e| format!("the client key is not PEM: {e}"))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the client identity is unusable: {e}"))
}

/// One `GET /readyz` to `host:port`, verifying the server for `host`.
/// Returns the HTTP status and body, or why the request failed.
pub(crate) async fn readyz(
    host: IpAddr,
    port: u16,
    creds: &Credentials,
) -> std::result::Result<(u16, String), String> {
    api_request(host, port, creds, "GET", "/readyz").await
}

/// One `DELETE /api/v1/nodes/<name>` to `host:port`, as `kubectl delete
/// node` does, with the same TLS and credentials as [`readyz`]. Returns the
/// HTTP status (200 or 202: deleted; 404: there was no such Node) and body,
/// or why the request failed.
pub(crate) async fn delete_node(
    host: IpAddr,
    port: u16,
    creds: &Credentials,
    name: &str,
) -> std::result::Result<(u16, String), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
    {
        return Err(format!("{name:?} is not a node name"));
    }
    api_request(
        host,
        port,
        creds,
        "DELETE",
        &format!("/api/v1/nodes/{name}"),
    )
    .await
}

/// One request to the Kubernetes API at `host:port` with the kubeconfig's
/// client certificate, verifying the server for `host`, within
/// [`PROBE_TIMEOUT`].
async fn api_request(
    host: IpAddr,
    port: u16,
    creds: &Credentials,
    method: &str,
    path: &str,
) -> std::result::Result<(u16, String), String> {
    let config = tls_config(creds)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = SocketAddr::new(host, port);
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::IpAddress(host.into());
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        http_request(tls, method, &addr.to_string(), path).await
    };
    tokio::time::timeout(PROBE_TIMEOUT, fut)
        .await
        .map_err(|_| format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))?
}

/// Asks `/readyz` until it answers 200 or `deadline` passes; fails with the
/// last answer or error.
pub(crate) async fn wait_ready(
    host: IpAddr,
    port: u16,
    creds: &Credentials,
    deadline: Instant,
) -> Result<()> {
    let url = format!("https://{}/readyz", SocketAddr::new(host, port));
    let mut delay = Duration::from_millis(50);
    loop {
        let last = match readyz(host, port, creds).await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => {
                format!("HTTP {status}: {}", body.lines().last().unwrap_or_default())
            }
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Api { url, reason: last });
        }
        tracing::debug!(%url, %last, "API not ready yet");
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

async fn http_get<S>(
    stream: S,
    host: &str,
    path: &str,
) -> std::result::Result<(u16, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    http_request(stream, "GET", host, path).await
}

async fn http_request<S>(
    mut stream: S,
    method: &str,
    host: &str,
    path: &str,
) -> std::result::Result<(u16, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: topgun\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_RESPONSE {
                    return Err("the response is too large".to_owned());
                }
            }
            // Servers often close TLS without close_notify after a response.
            Err(e) if !buf.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("cannot read the response: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                head.lines().next().unwrap_or_default()
            )
        })?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One backend server as haproxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendState {
    /// The haproxy backend (`k3s-api`, `port-80`, ...).
    pub backend: String,
    /// The server (node hostname).
    pub server: String,
    /// haproxy's status: `UP`, `DOWN`, `MAINT`, `no check`, ...
    pub status: String,
    /// The last health check, e.g. `L4OK` or `L4CON`.
    pub check: String,
}

impl BackendState {
    /// Whether haproxy routes to it because a check passed: haproxy starts
    /// every server as `UP` before checking it (`INI`).
    pub fn checked_up(&self) -> bool {
        self.status.starts_with("UP") && self.check.ends_with("OK")
    }
}

/// Reads haproxy's stats page (CSV) at `port` of the engine host
/// ([`crate::engine::control_host`], 127.0.0.1 for a local engine) and
/// returns the state of every backend server.
pub(crate) async fn haproxy_backends(port: u16) -> std::result::Result<Vec<BackendState>, String> {
    let addr = SocketAddr::new(crate::engine::control_host(), port);
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        http_get(tcp, &addr.to_string(), "/stats;csv").await
    };
    let (status, body) = tokio::time::timeout(PROBE_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{addr}: no answer"))??;
    if status != 200 {
        return Err(format!("{addr}: HTTP {status}"));
    }
    Ok(parse_stats_csv(&body))
}

/// Parses haproxy's `show stat` CSV: rows that are servers (not FRONTEND or
/// BACKEND).
pub(crate) fn parse_stats_csv(csv: &str) -> Vec<BackendState> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (idx("pxname"), idx("svname"), idx("status")) else {
        return Vec::new();
    };
    let check = idx("check_status");
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let server = *f.get(sv)?;
            if server == "FRONTEND" || server == "BACKEND" {
                return None;
            }
            Some(BackendState {
                backend: f.get(px)?.to_string(),
                server: server.to_owned(),
                status: f.get(st)?.to_string(),
                check: check
                    .and_then(|c| f.get(c))
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_csv_gives_server_rows() {
        let csv = "# pxname,svname,qcur,status,check_status,\n\
                   k3s-api,FRONTEND,,OPEN,,\n\
                   k3s-api,topgun-a-server-0,0,UP,L4OK,\n\
                   k3s-api,topgun-a-server-1,0,DOWN,L4CON,\n\
                   k3s-api,BACKEND,0,UP,,\n";
        let rows = parse_stats_csv(csv);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].server, "topgun-a-server-1");
        assert_eq!(rows[1].status, "DOWN");
        assert_eq!(rows[1].check, "L4CON");
        assert!(rows[0].checked_up());
        assert!(!rows[1].checked_up());
        let unchecked = BackendState {
            check: "INI".to_owned(),
            ..rows[0].clone()
        };
        assert!(!unchecked.checked_up());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n"), "ok!!!");
    }
}
