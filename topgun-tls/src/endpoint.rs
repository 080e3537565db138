//! Inspection of a live TLS endpoint.
//!
//! [`inspect_endpoint`] dials a server, runs a rustls handshake whose
//! certificate verifier *captures* the presented chain and accepts it (so any
//! certificate can be inspected, trusted or not), and then, separately,
//! checks the chain with [`crate::verify::assess`]: is the name covered, is
//! the leaf valid, does the given CA trust it.
//!
//! - The name checked is `--name` if given, else the target's host. It is
//!   also the SNI (rustls sends no SNI for an IP address).
//! - `connect_to` dials another address than the target's host, so that
//!   `192.168.1.28` can be checked while reaching the server at
//!   `127.0.0.1:PORT`.
//! - Every network step has a deadline ([`DEFAULT_TIMEOUT`] unless set).
//! - A client certificate can be presented; when the server asked for one
//!   under TLS 1.3, the report waits for the server's verdict (a session
//!   ticket means accepted, an alert means refused), as kubectl would see it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionStore, ResolvesClientCert, Resumption};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, NamedGroup, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;

pub use crate::client::ClientIdentity;
use crate::client::{ClientCert, ServerTrust, client_config, provider};
use crate::inspect::{CertInfo, inspect_chain};
use crate::verify::{Assessment, CheckOptions, FixContext, Problem, ProblemKind, Purpose, Roots};
use crate::{Error, Result};

/// The default deadline of each network step (resolve, connect, handshake).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest wait for a TLS 1.3 server's verdict on a client certificate.
const CLIENT_AUTH_VERDICT_WAIT: Duration = Duration::from_secs(1);

/// A TLS endpoint: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointTarget {
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for EndpointTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for EndpointTarget {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        EndpointTarget::parse(s)
    }
}

impl EndpointTarget {
    /// A target from parts. The host may carry IPv6 brackets.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        let host: String = host.into();
        EndpointTarget {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        }
    }

    /// Parses `HOST:PORT`, `[IPv6]:PORT` or an `https://` URL (port 443 when
    /// the URL has none; any path is ignored).
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |problem: &str, fix: String| Error::InvalidTarget {
            what: "endpoint",
            input: input.to_owned(),
            problem: problem.to_owned(),
            fix,
        };
        if crate::redact::looks_like_pem(input) {
            return Err(Error::InvalidTarget {
                what: "endpoint",
                input: crate::redact::describe_pem(input),
                problem: "is PEM text (a certificate or key), not an endpoint".to_owned(),
                fix: "pass HOST:PORT or an https:// URL".to_owned(),
            });
        }
        let (authority, default_port) = match input.split_once("://") {
            Some((scheme, rest)) => {
                if !scheme.eq_ignore_ascii_case("https") {
                    return Err(bad(
                        &format!("is a {scheme}:// URL"),
                        "TLS endpoints are https:// URLs or HOST:PORT".to_owned(),
                    ));
                }
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let authority = authority.rsplit('@').next().unwrap_or(authority);
                (authority, Some(443))
            }
            None => (input, None),
        };
        if authority.is_empty() {
            return Err(bad(
                "has no host",
                "pass HOST:PORT, e.g. `127.0.0.1:6443`".into(),
            ));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((host, after)) = inner.split_once(']') else {
                return Err(bad("has an unclosed '['", "write `[::1]:6443`".into()));
            };
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("has text after ']'", format!("write `[{host}]:6443`"))),
            }
        } else if authority.matches(':').count() > 1 {
            return Err(bad(
                "is an IPv6 address without brackets",
                format!("write `[{authority}]:PORT`"),
            ));
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match (port, default_port) {
            (Some(p), _) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => {
                    return Err(bad(
                        &format!("has the port {p:?}"),
                        "use a port between 1 and 65535".into(),
                    ));
                }
            },
            (None, Some(d)) => d,
            (None, None) => {
                return Err(bad(
                    "has no port",
                    format!("pass HOST:PORT, e.g. `{}:6443`", bracket(host)),
                ));
            }
        };
        if ServerName::try_from(host).is_err() {
            return Err(bad(
                "has a host that is neither a DNS name nor an IP address",
                "check for typos and stray characters".into(),
            ));
        }
        Ok(EndpointTarget::new(host, port))
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Parses a `--connect-to` address: `IP:PORT`, `[IPv6]:PORT`, or a bare IP
/// that takes `default_port`.
pub fn parse_connect_to(input: &str, default_port: u16) -> Result<SocketAddr> {
    if let Ok(addr) = input.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = input.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(Error::InvalidTarget {
        what: "--connect-to address",
        input: crate::redact::shown(input).into_owned(),
        problem: "is not an IP address with an optional port".to_owned(),
        fix: "pass the address to dial, e.g. `127.0.0.1:6443` or `[::1]:6443`".to_owned(),
    })
}

/// What to inspect and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointOptions {
    /// The endpoint.
    pub target: EndpointTarget,
    /// The name to check and send as SNI; defaults to the target's host.
    pub name: Option<String>,
    /// Dial this address instead of resolving the target's host.
    pub connect_to: Option<SocketAddr>,
    /// Verify the chain against these roots.
    pub roots: Option<Roots>,
    /// Present this client certificate when the server asks for one.
    pub client_identity: Option<ClientIdentity>,
    /// Deadline of each network step.
    pub timeout: Duration,
    /// Context for the fixes in a diagnosis; defaults to the target's port.
    pub fix_context: Option<FixContext>,
}

impl EndpointOptions {
    /// Inspects `target`, checking its own host, with [`DEFAULT_TIMEOUT`].
    pub fn new(target: EndpointTarget) -> Self {
        EndpointOptions {
            target,
            name: None,
            connect_to: None,
            roots: None,
            client_identity: None,
            timeout: DEFAULT_TIMEOUT,
            fix_context: None,
        }
    }

    /// Checks (and sends as SNI) `name` instead of the target's host.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Dials `addr` instead of the target's host.
    pub fn with_connect_to(mut self, addr: SocketAddr) -> Self {
        self.connect_to = Some(addr);
        self
    }

    /// Verifies the chain against `roots`.
    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Presents `identity` when asked for a client certificate.
    pub fn with_client_identity(mut self, identity: ClientIdentity) -> Self {
        self.client_identity = Some(identity);
        self
    }

    /// Sets the deadline of each network step.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the context used to word fixes.
    pub fn with_fix_context(mut self, ctx: FixContext) -> Self {
        self.fix_context = Some(ctx);
        self
    }
}

/// What a live endpoint presented, and the verdict on it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EndpointReport {
    /// The endpoint as given (`host:port`).
    pub target: String,
    /// The address actually dialled.
    pub connected_to: SocketAddr,
    /// The name checked.
    pub name: String,
    /// The SNI sent (none for an IP address).
    pub sni: Option<String>,
    /// The negotiated protocol, e.g. `TLSv1.3`; `None` if the handshake did
    /// not complete.
    pub tls_version: Option<String>,
    /// The negotiated cipher suite.
    pub cipher_suite: Option<String>,
    /// The server asked for a client certificate.
    pub client_auth_requested: bool,
    /// A client certificate was sent.
    pub client_certificate_sent: bool,
    /// Why the handshake failed after the chain was captured, if it did.
    pub handshake_error: Option<String>,
    /// The presented chain, leaf first.
    pub certificates: Vec<CertInfo>,
    /// Coverage, validity and trust of the chain.
    pub check: Assessment,
}

impl EndpointReport {
    /// The presented leaf certificate.
    pub fn leaf(&self) -> &CertInfo {
        &self.certificates[0]
    }
}

/// Dials the endpoint, captures its chain without trusting it, and checks
/// the chain (see the module docs).
///
/// Errors are for failures that leave nothing to inspect: bad options, no
/// connection, a handshake that failed before any certificate, a deadline.
/// A chain that is not covered, expired or untrusted is a successful report
/// whose `check` says so.
pub async fn inspect_endpoint(opts: &EndpointOptions) -> Result<EndpointReport> {
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| opts.target.host.clone());
    let name = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let server_name = ServerName::try_from(name.clone()).map_err(|_| Error::InvalidTarget {
        what: "name",
        input: name.clone(),
        problem: "is neither a DNS name nor an IP address".to_owned(),
        fix: "pass the host a client would dial, e.g. `192.168.1.28` or `api.example.com`"
            .to_owned(),
    })?;
    let sni = match &server_name {
        ServerName::DnsName(d) => Some(d.as_ref().to_owned()),
        _ => None,
    };
    let identity = match &opts.client_identity {
        Some(id) => Some(id.signing_key()?),
        None => None,
    };

    let (tcp, connected_to) = connect(opts).await?;
    let _ = tcp.set_nodelay(true);

    let provider = provider();
    let capture = Arc::new(CaptureVerifier {
        algorithms: provider.signature_verification_algorithms,
        chain: Mutex::new(None),
    });
    let client_auth = Arc::new(ClientAuth {
        identity,
        requested: AtomicBool::new(false),
        sent: AtomicBool::new(false),
    });
    let tickets = Arc::new(TicketSignal::default());
    let mut config = client_config(
        ServerTrust::Verifier(capture.clone()),
        ClientCert::Resolver(client_auth.clone()),
    )?;
    config.resumption = Resumption::store(tickets.clone());
    let connector = TlsConnector::from(Arc::new(config));

    let mut handshake_error = None;
    let mut handshake_source = None;
    let mut tls_version = None;
    let mut cipher_suite = None;
    let handshake = tokio::time::timeout(opts.timeout, connector.connect(server_name, tcp)).await;
    match handshake {
        Ok(Ok(mut stream)) => {
            let conn = stream.get_ref().1;
            let version = conn.protocol_version();
            tls_version = version.map(version_name);
            cipher_suite = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()));
            if client_auth.requested.load(Ordering::SeqCst)
                && version == Some(rustls::ProtocolVersion::TLSv1_3)
            {
                handshake_error = client_auth_verdict(
                    &mut stream,
                    &tickets,
                    opts.timeout.min(CLIENT_AUTH_VERDICT_WAIT),
                )
                .await;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
        }
        Ok(Err(e)) => {
            handshake_error = Some(e.to_string());
            handshake_source = Some(e);
        }
        Err(_) => handshake_error = Some(format!("timed out after {:?}", opts.timeout)),
    }
    let chain = capture.chain.lock().expect("not poisoned").take();
    let Some(chain) = chain else {
        let reason = handshake_error.unwrap_or_else(|| "no certificate".to_owned());
        if reason.starts_with("timed out") {
            return Err(Error::Timeout {
                action: "TLS handshake with",
                target: connected_to.to_string(),
                after: opts.timeout,
            });
        }
        return Err(Error::Handshake {
            target: connected_to.to_string(),
            reason,
            source: handshake_source,
        });
    };
    let certificates = inspect_chain(&chain)?;
    let mut check_options = CheckOptions::new()
        .with_name(name.clone())
        .with_purpose(Purpose::Server)
        .with_fix_context(
            opts.fix_context
                .clone()
                .unwrap_or_else(|| FixContext::port(opts.target.port))
                .with_reached(connected_to.ip()),
        );
    check_options.roots = opts.roots.clone();
    let mut check = crate::verify::assess(&certificates, &check_options)?;
    let requested = client_auth.requested.load(Ordering::SeqCst);
    let sent = client_auth.sent.load(Ordering::SeqCst);
    if let Some(error) = &handshake_error {
        if requested && !sent {
            check.notes.push(format!(
                "the server requires a client certificate and none was given; the handshake \
                 ended with: {error} (the chain above was captured before that)"
            ));
        } else if requested {
            check.push_problem(Problem::new(
                ProblemKind::ClientCertificateRejected,
                format!("the server refused the client certificate: {error}"),
            ));
        } else {
            check.push_problem(Problem::new(
                ProblemKind::HandshakeFailed,
                format!("the handshake failed after the server presented its chain: {error}"),
            ));
        }
    } else if requested && !sent {
        check
            .notes
            .push("the server asked for a client certificate (optional: it accepted none)".into());
    }
    tracing::debug!(target = %opts.target, %connected_to, ok = check.ok, "endpoint inspected");
    Ok(EndpointReport {
        target: opts.target.to_string(),
        connected_to,
        name,
        sni,
        tls_version,
        cipher_suite,
        client_auth_requested: requested,
        client_certificate_sent: sent,
        handshake_error,
        certificates,
        check,
    })
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    }
}

async fn connect(opts: &EndpointOptions) -> Result<(TcpStream, SocketAddr)> {
    let addrs: Vec<SocketAddr> = match opts.connect_to {
        Some(addr) => vec![addr],
        None => {
            let host = opts.target.host.as_str();
            let lookup = tokio::net::lookup_host((host, opts.target.port));
            match tokio::time::timeout(opts.timeout, lookup).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => {
                    return Err(Error::Network {
                        action: "cannot resolve",
                        target: host.to_owned(),
                        source: e,
                    });
                }
                Err(_) => {
                    return Err(Error::Timeout {
                        action: "resolving",
                        target: host.to_owned(),
                        after: opts.timeout,
                    });
                }
            }
        }
    };
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(opts.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok((tcp, addr)),
            Ok(Err(e)) => {
                last = Some(Error::Network {
                    action: "cannot connect to",
                    target: addr.to_string(),
                    source: e,
                })
            }
            Err(_) => {
                last = Some(Error::Timeout {
                    action: "connecting to",
                    target: addr.to_string(),
                    after: opts.timeout,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Network {
        action: "cannot resolve",
        target: opts.target.host.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
    }))
}

/// Waits for a TLS 1.3 server's verdict on the client certificate: a
/// session ticket means it was accepted; an alert or a close means refused.
/// No word within `wait` counts as accepted.
async fn client_auth_verdict(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    tickets: &TicketSignal,
    wait: Duration,
) -> Option<String> {
    let mut buf = [0u8; 256];
    tokio::select! {
        _ = tickets.notify.notified() => None,
        read = stream.read(&mut buf) => match read {
            Ok(0) => Some("the server closed the connection right after the handshake".to_owned()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        },
        _ = tokio::time::sleep(wait) => None,
    }
}

/// Accepts any chain, remembering it; still checks handshake signatures so
/// that the peer proves it holds the key.
#[derive(Debug)]
struct CaptureVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    chain: Mutex<Option<Vec<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for CaptureVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.chain.lock().expect("not poisoned") = Some(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Presents the optional identity and records whether the server asked.
#[derive(Debug)]
struct ClientAuth {
    identity: Option<Arc<rustls::sign::CertifiedKey>>,
    requested: AtomicBool,
    sent: AtomicBool,
}

impl ResolvesClientCert for ClientAuth {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.requested.store(true, Ordering::SeqCst);
        if self.identity.is_some() {
            self.sent.store(true, Ordering::SeqCst);
        }
        self.identity.clone()
    }

    fn has_certs(&self) -> bool {
        // Keep the transcript so that a request can always be answered.
        true
    }
}

/// A session store that keeps nothing and signals when a TLS 1.3 ticket
/// arrives (the server's sign that it accepted the handshake).
#[derive(Debug, Default)]
struct TicketSignal {
    notify: Notify,
}

impl ClientSessionStore for TicketSignal {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls13ClientSessionValue,
    ) {
        self.notify.notify_one();
    }

    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let ok = [
            ("127.0.0.1:6443", "127.0.0.1", 6443),
            ("localhost:443", "localhost", 443),
            ("[::1]:6443", "::1", 6443),
            ("https://192.168.1.28:6443", "192.168.1.28", 6443),
            ("https://api.example.com", "api.example.com", 443),
            (
                "https://api.example.com/healthz?x=1",
                "api.example.com",
                443,
            ),
            ("HTTPS://[::1]/", "::1", 443),
            ("https://user@host.example:8443/", "host.example", 8443),
        ];
        for (input, host, port) in ok {
            let t = EndpointTarget::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((t.host.as_str(), t.port), (host, port), "{input}");
        }
        let bad = [
            ("127.0.0.1", "has no port", "127.0.0.1:6443"),
            ("::1", "without brackets", "[::1]:PORT"),
            ("http://x:80", "http:// URL", "https://"),
            ("host:0", "port \"0\"", "between 1 and 65535"),
            ("host:https", "port \"https\"", "between 1 and 65535"),
            ("[::1", "unclosed", "[::1]:6443"),
            ("", "no host", "HOST:PORT"),
            ("bad host:1", "neither a DNS name", "typos"),
        ];
        for (input, problem, fix) in bad {
            let err = EndpointTarget::parse(input).unwrap_err().to_string();
            assert!(err.contains(problem) && err.contains(fix), "{input}: {err}");
        }
        assert_eq!(EndpointTarget::new("[::1]", 1).to_string(), "[::1]:1");
    }

    #[test]
    fn parses_connect_to() {
        assert_eq!(
            parse_connect_to("127.0.0.1:7", 1).unwrap(),
            "127.0.0.1:7".parse().unwrap()
        );
        assert_eq!(parse_connect_to("127.0.0.1", 6443).unwrap().port(), 6443);
        assert_eq!(
            parse_connect_to("[::1]", 9).unwrap(),
            "[::1]:9".parse().unwrap()
        );
        let err = parse_connect_to("localhost:1", 1).unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:6443"), "{err}");
    }

    /// Found by `tests/fuzz.rs` (tls::EndpointTarget::parse(keys)): the
    /// error repeated the input, a key included; so did `--connect-to`'s.
    #[test]
    fn fuzz_regression_pem_text_is_not_repeated() {
        let key = "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n";
        let m = EndpointTarget::parse(key).unwrap_err().to_string();
        assert!(!m.contains("AAAAAAAA") && m.contains("is PEM text"), "{m}");
        let m = parse_connect_to(key, 6443).unwrap_err().to_string();
        assert!(!m.contains("AAAAAAAA") && m.contains("not shown"), "{m}");
    }
}
