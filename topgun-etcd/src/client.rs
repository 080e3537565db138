//! Connecting to etcd members: endpoints, client TLS, deadlines, and errors
//! that say plainly what went wrong.
//!
//! etcd-client's `Client` load-balances over its endpoints, so topgun makes
//! one client per member. Connecting never fails on a dead endpoint (only the
//! first request does), so every request here runs under a deadline.

use std::path::Path;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use topgun_tls::{ClientCert, KeyPem, ServerTrust};

use crate::{Error, Result};

/// The default deadline of one request to one member.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Client TLS material: the CA that signs the members' certificates and,
/// for mutual TLS, a client certificate and key. `Debug` redacts the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    ca_pem: String,
    identity: Option<(String, KeyPem)>,
}

impl ClientTls {
    /// From PEM contents: the CA certificate(s) and, optionally, a client
    /// certificate and its key. Checked by [`ClientTls::validate`] (and on
    /// connect).
    pub fn from_pem(ca_pem: String, identity: Option<(String, KeyPem)>) -> Self {
        ClientTls { ca_pem, identity }
    }

    /// From files, like etcdctl's `--cacert`, `--cert` and `--key`. A
    /// certificate needs its key and a key its certificate. The contents are
    /// checked, and errors name the file.
    pub fn from_files(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Self> {
        let read = |p: &Path| {
            Ok::<_, Error>(topgun_tls::read::bounded_text(
                p,
                topgun_tls::read::MAX_PEM,
            )?)
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c)?, KeyPem::new(read(k)?))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::InvalidTls(
                    "a client certificate was given without its key (--key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::InvalidTls(
                    "a client key was given without its certificate (--cert)".into(),
                ));
            }
        };
        let tls = ClientTls {
            ca_pem: read(ca)?,
            identity,
        };
        tls.check(
            &ca.display().to_string(),
            cert.map(|p| p.display().to_string()).as_deref(),
            key.map(|p| p.display().to_string()).as_deref(),
        )?;
        Ok(tls)
    }

    /// The CA certificate(s), PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The client certificate, PEM, if any.
    pub fn cert_pem(&self) -> Option<&str> {
        self.identity.as_ref().map(|(c, _)| c.as_str())
    }

    /// The client key, if any.
    pub fn key_pem(&self) -> Option<&KeyPem> {
        self.identity.as_ref().map(|(_, k)| k)
    }

    /// Checks that the PEM contents hold what they should.
    pub fn validate(&self) -> Result<()> {
        self.check(
            "the CA",
            Some("the client certificate"),
            Some("the client key"),
        )
    }

    fn check(&self, ca: &str, cert: Option<&str>, key: Option<&str>) -> Result<()> {
        let certs = |what: &str, pem: &str| -> Result<()> {
            let n = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| {
                    Error::InvalidTls(format!("{what}: {}", topgun_tls::redact::pem_error(&e)))
                })?
                .len();
            if n == 0 {
                return Err(Error::InvalidTls(format!(
                    "{what} holds no PEM certificate"
                )));
            }
            Ok(())
        };
        certs(ca, &self.ca_pem)?;
        if let Some((c, k)) = &self.identity {
            certs(cert.unwrap_or("the client certificate"), c)?;
            PrivateKeyDer::from_pem_slice(k.expose().as_bytes()).map_err(|e| {
                Error::InvalidTls(format!(
                    "{} holds no PEM private key ({})",
                    key.unwrap_or("the client key"),
                    topgun_tls::redact::pem_error(&e)
                ))
            })?;
        }
        Ok(())
    }

    fn options(&self) -> TlsOptions {
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key.expose()));
        }
        tls
    }
}

/// How to reach members: TLS (or none) and the deadline of every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Client TLS; `None` for plain `http://` endpoints.
    pub tls: Option<ClientTls>,
    /// The deadline of each request to each member.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            tls: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ClientConfig {
    /// Plain HTTP with the default deadline.
    pub fn plain() -> Self {
        ClientConfig::default()
    }

    /// TLS with the default deadline.
    pub fn with_tls(tls: ClientTls) -> Self {
        ClientConfig {
            tls: Some(tls),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the deadline of each request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Checks and completes an endpoint: `host:port` gets `https://` when TLS is
/// configured and `http://` otherwise; a missing port becomes 2379. A scheme
/// that contradicts the TLS setting is refused.
pub fn normalize_endpoint(endpoint: &str, tls: bool) -> Result<String> {
    if topgun_tls::redact::looks_like_pem(endpoint) {
        return Err(Error::InvalidEndpoint {
            endpoint: topgun_tls::redact::describe_pem(endpoint),
            problem: "is PEM text (a certificate or key), not an endpoint; pass keys with --key"
                .to_owned(),
        });
    }
    let invalid = |problem: &str| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        problem: problem.to_owned(),
    };
    let trimmed = endpoint.trim();
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ((if tls { "https" } else { "http" }).to_owned(), trimmed),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    match (scheme.as_str(), tls) {
        ("https", true) | ("http", false) => {}
        ("https", false) => {
            return Err(invalid(
                "https:// needs the etcd CA: pass --cacert (and --cert/--key for mutual TLS)",
            ));
        }
        ("http", true) => {
            return Err(invalid(
                "TLS options were given but the endpoint is http://; use https://",
            ));
        }
        _ => return Err(invalid("the scheme must be http:// or https://")),
    }
    if rest.is_empty() {
        return Err(invalid("no host"));
    }
    if rest.contains('/') || rest.contains('@') || rest.contains(char::is_whitespace) {
        return Err(invalid(
            "expected scheme://host:port, without a path or user",
        ));
    }
    let has_port = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((_, "")) => false,
            Some((_, tail)) if tail.starts_with(':') => true,
            Some(_) => return Err(invalid("text after ']' that is not :PORT")),
            None => return Err(invalid("unclosed '[' in an IPv6 address")),
        }
    } else {
        rest.contains(':')
    };
    let split = if has_port {
        rest.rsplit_once(':')
    } else {
        None
    };
    let (host, authority) = if let Some((host, port)) = split {
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => (host, rest.to_owned()),
            _ => return Err(invalid(&format!("{port:?} is not a port"))),
        }
    } else {
        (rest, format!("{rest}:{}", crate::spec::DEFAULT_CLIENT_PORT))
    };
    check_host(host).map_err(|problem| invalid(&problem))?;
    Ok(format!("{scheme}://{authority}"))
}

/// A host of an endpoint: an IPv6 address in brackets, an IPv4 address, or
/// a DNS name (letters, digits, '-', '_' and dots).
fn check_host(host: &str) -> std::result::Result<(), String> {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner
            .strip_suffix(']')
            .map(str::parse::<std::net::Ipv6Addr>)
        {
            Some(Ok(_)) => Ok(()),
            _ => Err(format!("{host:?} is not an IPv6 address in brackets")),
        };
    }
    if host.contains(':') {
        return Err(format!(
            "{host:?} looks like an IPv6 address: write it in brackets, e.g. [::1]:2379"
        ));
    }
    let dns = host.split('.').all(|l| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !dns {
        return Err(format!("{host:?} is neither an IP address nor a host name"));
    }
    Ok(())
}

/// A client for exactly one member.
#[derive(Clone)]
pub(crate) struct MemberClient {
    pub endpoint: String,
    pub client: Client,
    pub timeout: Duration,
    tls: Option<ClientTls>,
}

impl MemberClient {
    /// Builds the client. This does not touch the network: the channel
    /// connects on the first request, and reconnects after failures.
    ///
    /// A plain tonic channel (not etcd-client's balanced one) is used on
    /// purpose: a balanced channel waits for a ready endpoint, so a request
    /// to a dead member hangs until its deadline; a plain channel fails at
    /// once with the connection error.
    pub(crate) async fn connect(endpoint: &str, config: &ClientConfig) -> Result<Self> {
        let invalid = |problem: String| Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            problem,
        };
        let mut ep = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(config.timeout)
            .keep_alive_while_idle(false);
        if let Some(tls) = &config.tls {
            ep = ep
                .tls_config(tls.options())
                .map_err(|e| Error::InvalidTls(format!("{endpoint}: {e}")))?;
        }
        let channel = etcd_client::Channel::Tonic(ep.connect_lazy());
        let client = Client::from_channel(channel, Some(ConnectOptions::new()))
            .await
            .map_err(|e| Error::Request {
                endpoint: endpoint.to_owned(),
                call: "connect",
                cause: describe(&e),
                source: Some(Box::new(e)),
            })?;
        Ok(MemberClient {
            endpoint: endpoint.to_owned(),
            client,
            timeout: config.timeout,
            tls: config.tls.clone(),
        })
    }

    /// Runs one request under the deadline, turning failures into
    /// [`Error::Request`] naming this endpoint and the cause. When a TLS
    /// connection fails for a reason the client library hides (a server
    /// that refuses our certificate just closes the connection), a direct
    /// handshake finds the cause.
    pub(crate) async fn call<T, F>(&self, call: &'static str, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let started = std::time::Instant::now();
        let (cause, source) = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let cause = match recognised(&e) {
                    Some(cause) => with_detail(cause, &e),
                    None => {
                        let left = self.timeout.saturating_sub(started.elapsed());
                        match self.diagnose(left).await {
                            Some(cause) => with_detail(cause, &e),
                            None => chain(&e),
                        }
                    }
                };
                (cause, Some(Box::new(e) as crate::Cause))
            }
            Err(_) => (deadline_cause(self.timeout), None),
        };
        Err(Error::Request {
            endpoint: self.endpoint.clone(),
            call,
            cause,
            source,
        })
    }

    /// Connects directly to learn why the connection failed: a TLS
    /// handshake with our material, or a plain HTTP/2 greeting.
    async fn diagnose(&self, within: Duration) -> Option<String> {
        let within = within.max(Duration::from_millis(200));
        let diagnosis = async {
            match &self.tls {
                Some(tls) => diagnose_tls(&self.endpoint, tls).await,
                None => diagnose_plain(&self.endpoint).await,
            }
        };
        tokio::time::timeout(within, diagnosis).await.ok().flatten()
    }
}

/// Sends the HTTP/2 greeting in plain text: a TLS server hangs up at once.
async fn diagnose_plain(endpoint: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let authority = endpoint.split_once("://").map_or(endpoint, |(_, a)| a);
    let mut tcp = tokio::net::TcpStream::connect(authority).await.ok()?;
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf).await {
        Ok(0) | Err(_) => Some(
            "the server hung up on plain HTTP/2; it probably serves TLS (use https:// and --cacert)"
                .to_owned(),
        ),
        Ok(_) => None,
    }
}

/// A TCP connect and TLS handshake with `tls`, then one read: the server
/// either speaks (HTTP/2 settings: TLS is fine) or says why it refuses us.
async fn diagnose_tls(endpoint: &str, tls: &ClientTls) -> Option<String> {
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    let authority = endpoint.split_once("://").map_or(endpoint, |(_, a)| a);
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = rustls_pki_types::ServerName::try_from(host.to_owned()).ok()?;
    let roots = topgun_tls::verify::Roots::from_pem_or_der(tls.ca_pem.as_bytes(), "the CA").ok()?;
    let identity = match &tls.identity {
        Some((cert, key)) => Some(
            topgun_tls::ClientIdentity::from_pem(
                cert.as_bytes(),
                key.expose().as_bytes(),
                "the client",
            )
            .ok()?,
        ),
        None => None,
    };
    let client = match &identity {
        Some(identity) => ClientCert::Identity(identity),
        None => ClientCert::None,
    };
    let mut config = topgun_tls::client_config(ServerTrust::Roots(&roots), client).ok()?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = match tokio::net::TcpStream::connect(authority).await {
        Ok(tcp) => tcp,
        Err(e) => return recognise(&e),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut stream = match connector.connect(server_name, tcp).await {
        Ok(s) => s,
        Err(e) => return recognise(&e),
    };
    let mut buf = [0u8; 64];
    let without_cert =
        || Some("the server requires a client certificate (pass --cert and --key)".to_owned());
    match stream.read(&mut buf).await {
        // The server hung up right after the handshake, without a word.
        Ok(0) if tls.identity.is_none() => without_cert(),
        Ok(_) => None,
        Err(e) if tls.identity.is_none() && is_alert(&e) => without_cert(),
        Err(e) => recognise(&e),
    }
}

/// Whether `e` is a TLS alert from the server.
fn is_alert(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|t| matches!(t, rustls::Error::AlertReceived(_)))
}

fn deadline_cause(timeout: Duration) -> String {
    format!(
        "no answer within {} ms (deadline exceeded)",
        timeout.as_millis()
    )
}

/// The errors under an etcd-client error, outermost first (etcd-client's
/// own error does not expose its source).
fn causes(err: &etcd_client::Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut out: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = match err {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        etcd_client::Error::TransportError(e) => Some(e),
        etcd_client::Error::IoError(e) => Some(e),
        _ => None,
    };
    while let Some(e) = current {
        out.push(e);
        // io::Error hides its inner error from source(); look inside too.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            out.push(inner);
            current = inner.source();
        } else {
            current = e.source();
        }
    }
    out
}

/// The first cause we can say in plain words.
fn recognised(err: &etcd_client::Error) -> Option<String> {
    causes(err).into_iter().find_map(recognise)
}

/// The whole chain as text, for the curious.
fn chain(err: &etcd_client::Error) -> String {
    let mut parts: Vec<String> = match err {
        etcd_client::Error::GRpcStatus(status) => {
            vec![format!("{:?}: {}", status.code(), status.message())]
        }
        other => vec![other.to_string()],
    };
    for e in causes(err).into_iter().skip(1) {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Says what went wrong in plain words, from the deepest cause we recognise.
pub(crate) fn describe(err: &etcd_client::Error) -> String {
    match recognised(err) {
        Some(cause) => with_detail(cause, err),
        None => chain(err),
    }
}

/// The plain-words cause, then the library's own chain in brackets.
fn with_detail(cause: String, err: &etcd_client::Error) -> String {
    let detail = chain(err);
    let last = detail.rsplit(": ").next().unwrap_or_default();
    if cause.contains(last) {
        cause
    } else {
        format!("{cause} [{detail}]")
    }
}

fn recognise(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{AlertDescription, CertificateError};
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(match tls {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            | rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
                "the server's certificate is not signed by the given CA (wrong --cacert?)".into()
            }
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            }) => "the server's certificate does not name this host (its SANs lack it)".into(),
            rustls::Error::InvalidCertificate(CertificateError::Expired)
            | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
                "the server's certificate has expired".into()
            }
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
                "the server requires a client certificate (pass --cert and --key)".into()
            }
            rustls::Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::DecryptError,
            ) => "the server refused our client certificate (not signed by its CA?)".into(),
            other => format!("TLS failed: {other}"),
        });
    }
    if let Some(status) = e.downcast_ref::<tonic::Status>()
        && status.message().contains("mapped from HTTP status code")
    {
        return Some(format!(
            "the server answered plain HTTP, not gRPC ({}): is this an etcd client URL?",
            status.message()
        ));
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind;
        if let Some(cause) = io.get_ref().and_then(|inner| recognise(inner)) {
            return Some(cause);
        }
        return match io.kind() {
            ErrorKind::ConnectionRefused => {
                Some("connection refused (is etcd running and listening there?)".into())
            }
            ErrorKind::TimedOut => Some("connection timed out".into()),
            ErrorKind::ConnectionReset => Some("connection reset by the server".into()),
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_completed_or_refused() {
        let ok = [
            ("127.0.0.1:2379", false, "http://127.0.0.1:2379"),
            ("127.0.0.1:2379", true, "https://127.0.0.1:2379"),
            ("m0", true, "https://m0:2379"),
            ("HTTPS://m0:12379/", true, "https://m0:12379"),
            ("[::1]:2379", false, "http://[::1]:2379"),
            ("[::1]", false, "http://[::1]:2379"),
        ];
        for (input, tls, want) in ok {
            assert_eq!(normalize_endpoint(input, tls).unwrap(), want, "{input}");
        }
        let bad = [
            ("https://m0:2379", false, "needs the etcd CA"),
            ("http://m0:2379", true, "use https://"),
            ("ftp://m0", false, "http:// or https://"),
            ("http://", false, "no host"),
            ("http://:2379", false, "no host"),
            ("http://m0:2379/v3", false, "without a path"),
            ("http://u@m0:2379", false, "without a path or user"),
            ("m0:0", false, "\"0\" is not a port"),
            ("m0:x", false, "\"x\" is not a port"),
            ("[::1", false, "unclosed"),
        ];
        for (input, tls, want) in bad {
            let err = normalize_endpoint(input, tls).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains(input), "{input}: {err}");
        }
    }

    #[test]
    fn tls_material_is_checked_and_keys_stay_out_of_debug() {
        let plan = crate::EtcdClusterSpec::new("t")
            .with_members(1)
            .plan()
            .unwrap();
        let tls = plan.topgun_client_tls().unwrap();
        tls.validate().unwrap();
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
        let no_ca = ClientTls::from_pem("nothing".into(), None);
        assert!(
            no_ca
                .validate()
                .unwrap_err()
                .to_string()
                .contains("no PEM certificate")
        );
        let key = plan.topgun_client().unwrap().key_pem.clone();
        let swapped = ClientTls::from_pem(
            plan.ca_pem().unwrap().into(),
            Some((key.expose().to_owned(), key.clone())),
        );
        assert!(swapped.validate().is_err());

        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, plan.ca_pem().unwrap()).unwrap();
        let missing = dir.path().join("missing.key");
        let err = ClientTls::from_files(&ca, Some(&ca), Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("missing.key"), "{err}");
        let err = ClientTls::from_files(&ca, Some(&ca), Some(&ca)).unwrap_err();
        assert!(
            err.to_string().contains("holds no PEM private key"),
            "{err}"
        );
        assert!(ClientTls::from_files(&ca, None, Some(&ca)).is_err());
    }

    /// Found by `cargo xtask fuzz` (etcd::normalize_endpoint): text after
    /// the brackets of an IPv6 host that did not start with ':' made
    /// `normalize_endpoint` panic ("checked above").
    #[test]
    fn fuzz_regression_text_after_brackets_does_not_panic() {
        for input in ["[]m0", "[::1]x", "https://[::1]2379"] {
            let err = normalize_endpoint(input, input.starts_with("https")).unwrap_err();
            assert!(err.to_string().contains("after ']'"), "{input}: {err}");
        }
        assert_eq!(
            normalize_endpoint("[::1]:12379", false).unwrap(),
            "http://[::1]:12379"
        );
    }

    /// Found by `tests/fuzz.rs` (etcd::normalize_endpoint): hosts that are
    /// no host at all (`1]`, `a b`, a bare IPv6 address) were accepted, and
    /// the client library refused the URL later with "InvalidUri"; a pasted
    /// key was repeated in the error.
    #[test]
    fn fuzz_regression_endpoint_hosts_are_checked() {
        for (input, want) in [
            ("1]", "neither an IP address nor a host name"),
            ("m0%", "neither an IP address nor a host name"),
            ("::1", "write it in brackets"),
            ("[m0]:2379", "not an IPv6 address in brackets"),
            ("a..b", "neither an IP address nor a host name"),
        ] {
            let err = normalize_endpoint(input, false).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
        assert_eq!(
            normalize_endpoint("etcd_0", false).unwrap(),
            "http://etcd_0:2379"
        );
        let key = "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n";
        let err = normalize_endpoint(key, true).unwrap_err().to_string();
        assert!(
            !err.contains("AAAAAAAA") && err.contains("is PEM text"),
            "{err}"
        );
    }

    /// Found by `tests/fuzz.rs` (etcd::ClientTls::validate(keys)): a key whose
    /// BEGIN line ran into its first line made the PEM parser's error repeat
    /// that line (as byte values).
    #[test]
    fn fuzz_regression_tls_errors_do_not_repeat_key_lines() {
        let plan = crate::EtcdClusterSpec::new("t")
            .with_members(1)
            .plan()
            .unwrap();
        let client = plan.topgun_client().unwrap();
        let joined = client.key_pem.expose().replacen("-----\n", "-----", 1);
        let tls = ClientTls::from_pem(
            plan.ca_pem().unwrap().to_owned(),
            Some((client.cert_pem.clone(), KeyPem::new(joined.clone()))),
        );
        let err = tls.validate().unwrap_err().to_string();
        let line = joined.lines().next().unwrap();
        let numbers: Vec<String> = line
            .bytes()
            .skip(30)
            .take(8)
            .map(|b| b.to_string())
            .collect();
        assert!(
            !err.contains(&line[27..]) && !err.contains(&numbers.join(", ")),
            "{err}"
        );
        assert!(err.contains("-----BEGIN line is malformed"), "{err}");
    }
}
