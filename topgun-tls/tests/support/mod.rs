//! Real TLS peers for the tests, on loopback only: an in-process rustls
//! server (tokio-rustls) and Debian's `openssl s_server`. Both are stopped
//! when dropped, also when a test fails.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topgun_tls::write::{FileMode, write_file};
use topgun_tls::{
    CaParams, CertUsage, CertificateAuthority, CertifiedKey, LeafParams, Roots, parse_san_list,
};

/// A CA with a server and a client certificate, written to a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
    pub server: CertifiedKey,
    pub client: CertifiedKey,
}

impl Pki {
    /// A CA, a server certificate with `sans` (comma list) and a client
    /// certificate, as `ca.crt`, `server.crt/.key`, `client.crt/.key`.
    pub fn new(sans: &str) -> Self {
        Self::with_server(sans, |p| p)
    }

    /// Like [`Pki::new`], letting the caller adjust the server's params.
    pub fn with_server(sans: &str, adjust: impl FnOnce(LeafParams) -> LeafParams) -> Self {
        let ca = CertificateAuthority::generate(&CaParams::new("topgun-test-ca")).unwrap();
        let params = LeafParams::new("k3s", CertUsage::Server)
            .with_organization("k3s")
            .with_sans(parse_san_list(sans).unwrap());
        let server = ca.issue(&adjust(params)).unwrap();
        let client = ca
            .issue(
                &LeafParams::new("system:admin", CertUsage::Client)
                    .with_organization("system:masters"),
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki {
            dir,
            ca,
            server,
            client,
        };
        pki.write("ca.crt", pki.ca.cert_pem());
        pki.write("server.crt", &pki.server.cert_pem);
        pki.write("server.key", pki.server.key_pem.expose());
        pki.write("client.crt", &pki.client.cert_pem);
        pki.write("client.key", pki.client.key_pem.expose());
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        write_file(&path, contents.as_bytes(), FileMode::Secret, true).unwrap();
        path
    }

    pub fn roots(&self) -> Roots {
        Roots::from_pem_or_der(self.ca.cert_pem().as_bytes(), "ca.crt").unwrap()
    }
}

/// Whether the in-process server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Required, verified against the given CA.
    Required,
}

/// An in-process rustls server on 127.0.0.1 answering HTTP/1.1 `200 ok` to
/// any request (so that kubectl can talk to it too). It records the SNI of
/// each connection.
pub struct RustlsServer {
    pub addr: SocketAddr,
    pub sni: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RustlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RustlsServer {
    /// Serves `chain_pem` (leaf first) with `key_pem`; `client_ca_pem`
    /// requires client certificates signed by it.
    pub async fn start(chain_pem: &str, key_pem: &str, client_ca_pem: Option<&str>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca_pem {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                builder.with_client_cert_verifier(
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap(),
                )
            }
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sni = Arc::new(Mutex::new(Vec::new()));
        let seen = sni.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    seen.lock()
                        .unwrap()
                        .push(tls.get_ref().1.server_name().map(str::to_owned));
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), serve_http(&mut tls)).await;
                });
            }
        });
        RustlsServer { addr, sni, task }
    }

    /// Serves the Pki's server certificate followed by its CA.
    pub async fn for_pki(pki: &Pki, client_auth: ClientAuth) -> Self {
        let chain = format!("{}{}", pki.server.cert_pem, pki.ca.cert_pem());
        let client_ca = match client_auth {
            ClientAuth::None => None,
            ClientAuth::Required => Some(pki.ca.cert_pem()),
        };
        Self::start(&chain, pki.server.key_pem.expose(), client_ca).await
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The SNI of the first `n` connections, waiting up to 2 s for the
    /// server to finish their handshakes (it finishes after the client).
    pub async fn sni_seen(&self, n: usize) -> Vec<Option<String>> {
        for _ in 0..200 {
            if self.sni.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.sni.lock().unwrap().clone()
    }
}

async fn serve_http<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if request.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let body = "ok";
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(response.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// Fails the test clearly when openssl is missing.
pub fn require_openssl() {
    match Command::new("openssl").arg("version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "this test needs Debian's `openssl` on PATH (apt-get install openssl, or run \
             `cargo xtask setup`)"
        ),
    }
}

/// Runs openssl with `args`, returning stdout; panics with its stderr on
/// failure.
pub fn openssl(args: &[&str]) -> String {
    require_openssl();
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `openssl s_server` on 127.0.0.1 at a free port, killed on drop.
#[allow(unused_imports)]
pub use topgun_tls::testing::OpensslServer;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's kubectl: `$TOPGUN_KUBECTL`, else where `cargo xtask setup`
/// unpacks it. Fails clearly when absent.
pub fn kubectl() -> PathBuf {
    let path = std::env::var_os("TOPGUN_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian/usr/bin/kubectl")
        });
    assert!(
        path.exists(),
        "this test needs kubectl at {} (set TOPGUN_KUBECTL or run `cargo xtask setup`)",
        path.display()
    );
    path
}
