//! Whose problem each error is ([`ErrorKind`]), the causes it keeps
//! (`source()`), and the one client configuration ([`client_config`])
//! against a real rustls server on loopback.

mod support;

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use support::{ClientAuth, Pki, RustlsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topgun_tls::endpoint::{EndpointOptions, EndpointTarget, inspect_endpoint};
use topgun_tls::write::{FileMode, write_file};
use topgun_tls::{
    CaParams, CertificateAuthority, ClientCert, ClientIdentity, Error, ErrorKind, Roots,
    ServerTrust, client_config, parse_san,
};

fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn input_errors_are_the_users() {
    let san = parse_san("bad name!").unwrap_err();
    assert_eq!(san.kind(), ErrorKind::Input, "{san}");
    assert_eq!(ErrorKind::Input.exit_code(), 2);

    let dir = tempfile::tempdir().unwrap();
    let missing = topgun_tls::read::bounded(&dir.path().join("missing.pem"), 1024).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Input, "{missing}");
    assert!(missing.source().is_some(), "the io::Error is kept");

    let path = dir.path().join("ca.crt");
    write_file(&path, b"x", FileMode::Public, false).unwrap();
    let exists = write_file(&path, b"y", FileMode::Public, false).unwrap_err();
    assert!(matches!(exists, Error::AlreadyExists { .. }), "{exists}");
    assert_eq!(exists.kind(), ErrorKind::Input);

    let parse = Roots::from_pem_or_der(b"not a certificate", "ca.crt").unwrap_err();
    assert_eq!(parse.kind(), ErrorKind::Input, "{parse}");
    let target = EndpointTarget::parse("ftp://x").unwrap_err();
    assert_eq!(target.kind(), ErrorKind::Input, "{target}");
}

#[test]
fn a_failed_write_is_a_failed_operation_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    // A directory cannot be created under a regular file.
    let err = write_file(&file.join("sub/ca.crt"), b"x", FileMode::Public, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failed, "{err}");
    assert_eq!(ErrorKind::Failed.exit_code(), 1);
    assert!(err.source().is_some(), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_a_failed_operation_with_its_cause() {
    let addr = closed_port();
    let err = inspect_endpoint(
        &EndpointOptions::new(EndpointTarget::new("127.0.0.1", addr.port()))
            .with_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Failed);
    let source = err.source().expect("the io::Error is the source");
    assert_eq!(
        source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}

#[tokio::test]
async fn a_failed_handshake_keeps_the_handshake_error() {
    // A server that accepts and hangs up at once: no certificate is ever
    // presented.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 16];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp.shutdown().await;
        }
    });
    let err = inspect_endpoint(
        &EndpointOptions::new(EndpointTarget::new("127.0.0.1", addr.port()))
            .with_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    task.abort();
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Failed);
    assert!(err.source().is_some(), "{err}");
}

#[test]
fn bug_is_exit_70() {
    assert_eq!(ErrorKind::Bug.exit_code(), 70);
}

/// Connects with `config` to `server` for `name`, sends a request and
/// reads the answer.
async fn talk(config: rustls::ClientConfig, port: u16, name: &str) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .map_err(std::io::Error::other)??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn client_config_trusts_its_roots_and_presents_its_identity() {
    let pki = Pki::new("localhost,127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::Required).await;
    let roots = pki.roots();
    let identity = ClientIdentity::from_pem(
        pki.client.cert_pem.as_bytes(),
        pki.client.key_pem.expose().as_bytes(),
        "client",
    )
    .unwrap();

    let config =
        client_config(ServerTrust::Roots(&roots), ClientCert::Identity(&identity)).unwrap();
    let answer = talk(config, server.port(), "localhost").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Without the identity, the server refuses us.
    let config = client_config(ServerTrust::Roots(&roots), ClientCert::None).unwrap();
    assert!(talk(config, server.port(), "localhost").await.is_err());

    // With other roots, we refuse the server.
    let other = CertificateAuthority::generate(&CaParams::new("other")).unwrap();
    let other = Roots::from_pem_or_der(other.cert_pem().as_bytes(), "other").unwrap();
    let config =
        client_config(ServerTrust::Roots(&other), ClientCert::Identity(&identity)).unwrap();
    let err = talk(config, server.port(), "localhost").await.unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // And for a name the certificate lacks.
    let config =
        client_config(ServerTrust::Roots(&roots), ClientCert::Identity(&identity)).unwrap();
    let err = talk(config, server.port(), "elsewhere.example")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}
