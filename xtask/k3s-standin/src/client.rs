//! A small HTTPS client for talking to a server's supervisor endpoints
//! (`/cacerts`, `/v1-k3s/...`), as k3s agents and joining servers do.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::Secret;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A server URL, `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or IP (no brackets).
    pub host: String,
    /// Port (default 443, as for any https URL).
    pub port: u16,
}

impl ServerUrl {
    /// Parses `https://host[:port][/]`.
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("invalid server url {url:?}: must start with https://"))?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(format!(
                "invalid server url {url:?}: expected https://host:port"
            ));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("invalid server url {url:?}"))?;
            (h.to_owned(), tail.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("invalid server url {url:?}: bad port"))?,
            None => 443,
        };
        Ok(ServerUrl { host, port })
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

/// TLS settings that trust only `ca_pem` (and check the host name).
pub fn trusting(ca_pem: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("bad CA certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS settings that trust any certificate: only for fetching `/cacerts`,
/// which is then checked against the token (as k3s does).
pub fn trust_on_first_use() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A verifier that accepts any server certificate (signatures are still
/// checked): for `/cacerts` before the token checks it, and for registries
/// configured with `insecure_skip_verify`.
#[derive(Debug)]
pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends one request and returns the status and body.
pub async fn request(
    url: &ServerUrl,
    tls: Arc<ClientConfig>,
    method: Method,
    path: &str,
    basic_auth: Option<(&str, &Secret)>,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), String> {
    let work = async {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("dial tcp {}:{}: {e}", url.host, url.port))?;
        let name =
            ServerName::try_from(url.host.clone()).map_err(|e| format!("bad server name: {e}"))?;
        let tls_stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls_stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, format!("{}:{}", url.host, url.port))
            .header(
                hyper::header::USER_AGENT,
                concat!("k3s-standin/", env!("CARGO_PKG_VERSION")),
            );
        if let Some((user, password)) = basic_auth {
            let creds = B64.encode(format!("{user}:{}", password.expose()));
            req = req.header(hyper::header::AUTHORIZATION, format!("Basic {creds}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    };
    match tokio::time::timeout(TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("{url}{path}: timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            ServerUrl::parse("https://lb:6443").unwrap(),
            ServerUrl {
                host: "lb".into(),
                port: 6443
            }
        );
        assert_eq!(ServerUrl::parse("https://10.0.0.1/").unwrap().port, 443);
        let v6 = ServerUrl::parse("https://[fd00::1]:6443").unwrap();
        assert_eq!(v6.host, "fd00::1");
        assert_eq!(v6.to_string(), "https://[fd00::1]:6443");
        assert!(ServerUrl::parse("http://lb:6443").is_err());
        assert!(ServerUrl::parse("https://u:p@lb:6443").is_err());
    }
}
