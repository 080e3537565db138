//! Small HTTP clients topgun needs: `GET /readyz` and `DELETE
//! /api/v1/nodes/NAME` on the Kubernetes API over TLS with the kubeconfig's
//! client certificate (verifying the server against the cluster CA for the
//! host clients dial; [`topgun_tls::client_config`]), and the load
//! balancer's haproxy stats page over plain HTTP.
//!
//! hyper speaks HTTP/1.1 (one request per connection); topgun dials TCP and
//! TLS itself so that an error names the step that failed. Every request
//! has a deadline ([`PROBE_TIMEOUT`]) and reads at most [`MAX_RESPONSE`]
//! bytes of body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use topgun_tls::{ClientCert, ServerTrust};

use crate::error::BoxError;
use crate::kubeconfig::Credentials;
use crate::{Error, Result};

/// The deadline of one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of a response body topgun reads.
const MAX_RESPONSE: usize = 256 * 1024;

/// Why one request failed: a sentence (naming the step: connect, TLS
/// handshake, HTTP, the deadline) with the causes of the underlying error
/// in words, and that error. [`RequestError::into_api`] makes it an
/// [`Error::Api`].
#[derive(Debug)]
pub(crate) struct RequestError {
    reason: String,
    source: Option<BoxError>,
}

impl RequestError {
    /// `step` failed because of `source`; the reason names every cause once.
    fn new(step: impl Into<String>, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        let mut reason = step.into();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*source);
        while let Some(c) = cause {
            let text = c.to_string();
            if !reason.contains(&text) {
                reason.push_str(": ");
                reason.push_str(&text);
            }
            cause = c.source();
        }
        RequestError {
            reason,
            source: Some(source),
        }
    }

    /// A failure with no underlying error.
    fn plain(reason: impl Into<String>) -> Self {
        RequestError {
            reason: reason.into(),
            source: None,
        }
    }

    /// The [`Error::Api`] for a request to `url`.
    pub(crate) fn into_api(self, url: String) -> Error {
        Error::Api {
            url,
            reason: self.reason,
            source: self.source,
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The TLS configuration of API requests: the cluster CA as the only root,
/// the kubeconfig's client certificate ([`topgun_tls::client_config`]).
fn tls_config(creds: &Credentials) -> std::result::Result<rustls::ClientConfig, topgun_tls::Error> {
    let roots = topgun_tls::Roots::from_pem_or_der(creds.ca_pem.as_bytes(), "the cluster CA")?;
    let id = topgun_tls::ClientIdentity::from_pem(
        creds.cert_pem.as_bytes(),
        creds.key_pem.expose().as_bytes(),
        "the kubeconfig's client",
    )?;
    topgun_tls::client_config(ServerTrust::Roots(&roots), ClientCert::Identity(&id))
}

/// One `GET /readyz` to `host:port`, verifying the server for `host`.
/// Returns the HTTP status and body, or why the request failed.
pub(crate) async fn readyz(
    host: IpAddr,
    port: u16,
    creds: &Credentials,
) -> std::result::Result<(u16, String), RequestError> {
    api_request(host, port, creds, http::Method::GET, "/readyz").await
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
) -> std::result::Result<(u16, String), RequestError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
    {
        return Err(RequestError::plain(format!("{name:?} is not a node name")));
    }
    api_request(
        host,
        port,
        creds,
        http::Method::DELETE,
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
    method: http::Method,
    path: &str,
) -> std::result::Result<(u16, String), RequestError> {
    let config = tls_config(creds)
        .map_err(|e| RequestError::new("the kubeconfig's credentials are unusable", e))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = SocketAddr::new(host, port);
    let fut = async {
        let tcp = connect(addr).await?;
        let tls = connector
            .connect(ServerName::IpAddress(host.into()), tcp)
            .await
            .map_err(|e| RequestError::new("TLS handshake failed", e))?;
        http_request(tls, method, &addr.to_string(), path).await
    };
    within_deadline(fut).await
}

/// `fut` within [`PROBE_TIMEOUT`].
async fn within_deadline<T>(
    fut: impl Future<Output = std::result::Result<T, RequestError>>,
) -> std::result::Result<T, RequestError> {
    tokio::time::timeout(PROBE_TIMEOUT, fut)
        .await
        .map_err(|e| {
            RequestError::new(format!("no answer within {}s", PROBE_TIMEOUT.as_secs()), e)
        })?
}

async fn connect(addr: SocketAddr) -> std::result::Result<TcpStream, RequestError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| RequestError::new("cannot connect", e))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Asks `/readyz` until it answers 200 or `deadline` passes; fails with
/// [`Error::Api`] holding the last answer or error.
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
            Ok((status, body)) => RequestError::plain(format!(
                "HTTP {status}: {}",
                body.lines().last().unwrap_or_default()
            )),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(last.into_api(url));
        }
        tracing::debug!(%url, %last, "API not ready yet");
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// One HTTP/1.1 request over `io` (hyper speaks the protocol: chunked
/// bodies, keep-alive framing); returns the status and at most
/// [`MAX_RESPONSE`] bytes of body as text.
async fn http_request<S>(
    io: S,
    method: http::Method,
    authority: &str,
    path: &str,
) -> std::result::Result<(u16, String), RequestError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| RequestError::new("HTTP", e))?;
    // The connection runs until the response is read or dropped; bounded
    // too, in case the caller's deadline drops the request first.
    tokio::spawn(tokio::time::timeout(PROBE_TIMEOUT, connection));
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "topgun")
        .body(Empty::new())
        .map_err(|e| RequestError::new("cannot build the request", e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| RequestError::new("no HTTP response", e))?;
    let status = response.status().as_u16();
    let too_large = || {
        RequestError::plain(format!(
            "the response is too large (over {MAX_RESPONSE} bytes)"
        ))
    };
    if response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_RESPONSE)
    {
        return Err(too_large());
    }
    let mut body = response.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RequestError::new("cannot read the response", e))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > MAX_RESPONSE {
                return Err(too_large());
            }
        }
    }
    Ok((status, String::from_utf8_lossy(&buf).into_owned()))
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
pub(crate) async fn haproxy_backends(
    port: u16,
) -> std::result::Result<Vec<BackendState>, RequestError> {
    stats_at(SocketAddr::new(crate::engine::control_host(), port)).await
}

/// haproxy's stats CSV at `addr` (plain HTTP), parsed.
async fn stats_at(addr: SocketAddr) -> std::result::Result<Vec<BackendState>, RequestError> {
    let fut = async {
        let tcp = connect(addr).await?;
        http_request(tcp, http::Method::GET, &addr.to_string(), "/stats;csv").await
    };
    let (status, body) = within_deadline(fut).await.map_err(|e| RequestError {
        reason: format!("{addr}: {}", e.reason),
        ..e
    })?;
    if status != 200 {
        return Err(RequestError::plain(format!("{addr}: HTTP {status}")));
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
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
    use topgun_tls::{
        CaParams, CertUsage, CertificateAuthority, KeyPem, LeafParams, parse_san_list,
    };

    /// A cluster CA, a server certificate for 127.0.0.1 and the client
    /// credentials a kubeconfig would hold.
    struct Pki {
        creds: Credentials,
        server: Arc<rustls::ServerConfig>,
    }

    fn pki() -> Pki {
        let ca = CertificateAuthority::generate(&CaParams::new("k3s-server-ca")).unwrap();
        let server = ca
            .issue(
                &LeafParams::new("k3s", CertUsage::Server)
                    .with_sans(parse_san_list("127.0.0.1").unwrap()),
            )
            .unwrap();
        let client = ca
            .issue(&LeafParams::new("system:admin", CertUsage::Client))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
            .unwrap();
        // Like the API server: a client certificate the cluster CA signed.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(server.key_pem.expose().as_bytes()).unwrap(),
            )
            .unwrap();
        Pki {
            creds: Credentials {
                ca_pem: ca.cert_pem().to_owned(),
                cert_pem: client.cert_pem,
                key_pem: KeyPem::new(client.key_pem.expose().to_owned()),
            },
            server: Arc::new(config),
        }
    }

    /// Serves one connection on 127.0.0.1 (over TLS with `tls`): reads the
    /// request head and answers `response` verbatim, or nothing when
    /// `response` is `None`. The task returns the request head, or `None`
    /// when the TLS handshake failed.
    async fn serve_once(
        tls: Option<Arc<rustls::ServerConfig>>,
        response: Option<Vec<u8>>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Option<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            match tls {
                Some(config) => {
                    let stream = tokio_rustls::TlsAcceptor::from(config)
                        .accept(tcp)
                        .await
                        .ok()?;
                    Some(answer(stream, response).await)
                }
                None => Some(answer(tcp, response).await),
            }
        });
        (addr, task)
    }

    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        response: Option<Vec<u8>>,
    ) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        match response {
            Some(r) => {
                // The client may stop reading an oversized body.
                let _ = stream.write_all(&r).await;
                let _ = stream.shutdown().await;
            }
            None => tokio::time::sleep(PROBE_TIMEOUT * 2).await,
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    fn response(status: &str, headers: &str, body: &str) -> Option<Vec<u8>> {
        Some(format!("HTTP/1.1 {status}\r\n{headers}\r\n{body}").into_bytes())
    }

    fn with_length(status: &str, body: &str) -> Option<Vec<u8>> {
        response(status, &format!("Content-Length: {}\r\n", body.len()), body)
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn readyz_answers_are_read_over_tls_with_the_client_certificate() {
        let pki = pki();
        let (addr, server) =
            serve_once(Some(pki.server.clone()), with_length("200 OK", "ok")).await;
        let got = readyz(LOCAL, addr.port(), &pki.creds).await.unwrap();
        assert_eq!(got, (200, "ok".to_owned()));
        let head = server
            .await
            .unwrap()
            .expect("handshake with the client certificate");
        assert!(head.starts_with("GET /readyz HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: 127.0.0.1:{}\r\n", addr.port())),
            "{head}"
        );

        // A failing check: the status and the body, as the API server sends them.
        let body = "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n";
        let (addr, _server) = serve_once(
            Some(pki.server.clone()),
            with_length("500 Internal Server Error", body),
        )
        .await;
        let got = readyz(LOCAL, addr.port(), &pki.creds).await.unwrap();
        assert_eq!(got, (500, body.to_owned()));

        // A chunked body is joined.
        let (addr, _server) = serve_once(
            Some(pki.server.clone()),
            response(
                "200 OK",
                "Transfer-Encoding: chunked\r\n",
                "2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n",
            ),
        )
        .await;
        let got = readyz(LOCAL, addr.port(), &pki.creds).await.unwrap();
        assert_eq!(got, (200, "ok!!!".to_owned()));
    }

    #[tokio::test]
    async fn delete_node_sends_delete_and_refuses_odd_names() {
        let pki = pki();
        let (addr, server) =
            serve_once(Some(pki.server.clone()), with_length("404 Not Found", "{}")).await;
        let got = delete_node(LOCAL, addr.port(), &pki.creds, "topgun-a-agent-1")
            .await
            .unwrap();
        assert_eq!(got.0, 404);
        let head = server.await.unwrap().unwrap();
        assert!(
            head.starts_with("DELETE /api/v1/nodes/topgun-a-agent-1 HTTP/1.1\r\n"),
            "{head}"
        );
        let err = delete_node(LOCAL, addr.port(), &pki.creds, "a/../b")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is not a node name"), "{err}");
    }

    #[tokio::test]
    async fn oversized_responses_are_refused() {
        let pki = pki();
        let big = "x".repeat(MAX_RESPONSE + 1);
        // Announced by Content-Length ...
        let (addr, _server) =
            serve_once(Some(pki.server.clone()), with_length("200 OK", &big)).await;
        let err = readyz(LOCAL, addr.port(), &pki.creds).await.unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        // ... or not: chunked, then cut off.
        let mut chunked = String::new();
        for piece in big.as_bytes().chunks(8192) {
            chunked.push_str(&format!(
                "{:x}\r\n{}\r\n",
                piece.len(),
                String::from_utf8_lossy(piece)
            ));
        }
        chunked.push_str("0\r\n\r\n");
        let (addr, _server) = serve_once(
            Some(pki.server.clone()),
            response("200 OK", "Transfer-Encoding: chunked\r\n", &chunked),
        )
        .await;
        let err = readyz(LOCAL, addr.port(), &pki.creds).await.unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[tokio::test]
    async fn a_server_the_cluster_ca_did_not_sign_is_refused() {
        let pki = pki();
        let other = self::pki();
        let (addr, server) = serve_once(Some(other.server), with_length("200 OK", "ok")).await;
        let err = readyz(LOCAL, addr.port(), &pki.creds).await.unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("TLS handshake failed"), "{text}");
        // The other cluster's CA has the same name, as a recreated
        // cluster's has: its signature does not verify.
        assert!(text.contains("invalid peer certificate"), "{text}");
        let source = std::error::Error::source(&err).expect("a source");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
        assert!(server.await.unwrap().is_none(), "no request was sent");

        // As an Error::Api, the source is kept and the kind is Failed.
        let api = err.into_api("https://127.0.0.1/readyz".to_owned());
        assert_eq!(api.kind(), crate::ErrorKind::Failed);
        let source = std::error::Error::source(&api).expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert!(
            api.to_string()
                .starts_with("API at https://127.0.0.1/readyz: TLS handshake failed")
        );
    }

    #[tokio::test]
    async fn unusable_credentials_name_the_part_and_keep_the_tls_error() {
        let mut pki = pki();
        pki.creds.key_pem = KeyPem::new(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS10ZXh0\n-----END PRIVATE KEY-----\n"
                .to_owned(),
        );
        let err = readyz(LOCAL, 9, &pki.creds).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("credentials are unusable"), "{text}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
        let source = std::error::Error::source(&err).unwrap();
        assert!(
            source.downcast_ref::<topgun_tls::Error>().is_some(),
            "{source:?}"
        );
    }

    #[tokio::test]
    async fn refused_connections_and_silent_servers_fail_with_their_cause() {
        let pki = pki();
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = readyz(LOCAL, port, &pki.creds).await.unwrap_err();
        assert!(err.to_string().starts_with("cannot connect"), "{err}");
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        // A server that never answers: the probe's deadline.
        let (addr, _server) = serve_once(None, None).await;
        let started = std::time::Instant::now();
        let err = stats_at(addr).await.unwrap_err();
        assert!(started.elapsed() < PROBE_TIMEOUT * 2);
        assert!(err.to_string().contains("no answer within 3s"), "{err}");
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.is::<tokio::time::error::Elapsed>(), "{source:?}");
    }

    #[tokio::test]
    async fn haproxy_stats_are_read_over_plain_http() {
        let csv = "# pxname,svname,qcur,status,check_status,\n\
                   k3s-api,topgun-a-server-0,0,UP,L4OK,\n";
        let (addr, server) = serve_once(None, with_length("200 OK", csv)).await;
        let rows = stats_at(addr).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].checked_up());
        let head = server.await.unwrap().unwrap();
        assert!(head.starts_with("GET /stats;csv HTTP/1.1\r\n"), "{head}");
        let (addr, _server) = serve_once(None, with_length("503 Service Unavailable", "")).await;
        let err = stats_at(addr).await.unwrap_err().to_string();
        assert_eq!(err, format!("{addr}: HTTP 503"));
    }

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
}
