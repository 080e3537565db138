//! Verifying a certificate chain, separately from capturing it.
//!
//! [`assess`] answers the three questions a user has about a chain and a
//! name: is the name **covered** by the leaf's SANs (RFC 6125, as kubectl and
//! rustls match), is the leaf within its validity (**expired**, not yet
//! valid), and is the chain **trusted** by a given CA ([`Roots`]), checked
//! with rustls' `WebPkiServerVerifier` (or `WebPkiClientVerifier` for client
//! certificates). Trust is judged independently of time and name, so one run
//! reports every problem at once. When the name is not covered, a
//! [`Diagnosis`] lists the host, the SANs present and concrete fixes.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;

use crate::inspect::{CertInfo, SanNames, certificates_from_pem_or_der, format_time};
use crate::{Error, Result};

/// Trust anchors: the CA certificates a chain is verified against.
#[derive(Clone)]
pub struct Roots {
    store: Arc<RootCertStore>,
    certificates: Vec<CertificateDer<'static>>,
    source: String,
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roots")
            .field("source", &self.source)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

/// Places where Linux distributions keep the system CA bundle, in the order
/// Go (and so kubectl) looks for them.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

impl Roots {
    /// Roots from PEM or DER bytes (one certificate or a bundle). `source`
    /// names them in reports, e.g. a path or "certificate-authority-data".
    pub fn from_pem_or_der(bytes: &[u8], source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let certificates = certificates_from_pem_or_der(bytes, &source)?;
        Self::from_certificates(certificates, source)
    }

    /// Roots from a PEM or DER file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = crate::read::bounded(path, crate::read::MAX_PEM)?;
        Self::from_pem_or_der(&bytes, path.display().to_string())
    }

    /// Roots from DER certificates.
    pub fn from_certificates(
        certificates: Vec<CertificateDer<'static>>,
        source: impl Into<String>,
    ) -> Result<Self> {
        let source = source.into();
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(certificates.iter().cloned());
        if added == 0 {
            return Err(Error::parse(source, "contains no usable CA certificate"));
        }
        Ok(Roots {
            store: Arc::new(store),
            certificates,
            source,
        })
    }

    /// The system's CA bundle, found as Go finds it: `$SSL_CERT_FILE`, then
    /// the usual distribution paths. This is what kubectl trusts when a
    /// kubeconfig names no CA.
    pub fn system() -> Result<Self> {
        let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
        let candidates = env
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from));
        for path in candidates {
            if let Ok(bytes) = crate::read::bounded(&path, crate::read::MAX_PEM) {
                return Self::from_pem_or_der(&bytes, format!("system roots ({})", path.display()));
            }
        }
        Err(Error::parse(
            "system roots",
            "no CA bundle found (set SSL_CERT_FILE, or install ca-certificates)",
        ))
    }

    /// Where the roots came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The root certificates, DER.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The rustls store built from them.
    pub fn store(&self) -> Arc<RootCertStore> {
        self.store.clone()
    }
}

/// What a chain is verified for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A TLS server (EKU serverAuth), as a client checks it.
    Server,
    /// A TLS client (EKU clientAuth), as a server checks it.
    Client,
}

impl Purpose {
    /// The natural purpose of a leaf: server unless its EKUs allow only
    /// client authentication.
    pub fn of(leaf: &CertInfo) -> Purpose {
        let eku = &leaf.extended_key_usage;
        if eku.iter().any(|e| e == "clientAuth")
            && !eku
                .iter()
                .any(|e| e == "serverAuth" || e == "anyExtendedKeyUsage")
        {
            Purpose::Client
        } else {
            Purpose::Server
        }
    }
}

/// The answer to "does this CA trust this chain?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Verification {
    /// Where the roots came from (a path, "certificate-authority-data", ...).
    pub roots: String,
    /// What the chain was verified for.
    pub purpose: Purpose,
    /// The chain leads to one of the roots with valid signatures and usages.
    /// Judged independently of the name and, when the leaf is outside its
    /// validity, at a time inside it (expiry is reported on its own).
    pub trusted: bool,
    /// Why the chain is not trusted.
    pub error: Option<String>,
}

/// Verifies `chain` (leaf first) against `roots` for `purpose`.
///
/// The name does not influence the result: a chain that is only wrong for
/// the name is trusted. See [`assess`] for the full answer.
pub fn verify_chain(chain: &[CertInfo], roots: &Roots, purpose: Purpose) -> Result<Verification> {
    let Some(leaf) = chain.first() else {
        return Err(Error::parse("certificate chain", "it is empty"));
    };
    let intermediates: Vec<CertificateDer<'_>> =
        chain[1..].iter().map(|c| c.der().clone()).collect();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Any name the leaf covers; a name mismatch is reported after the chain
    // was found trusted, so it proves trust anyway.
    let name = leaf
        .sans
        .dns
        .iter()
        .find(|d| !d.starts_with("*."))
        .cloned()
        .or_else(|| leaf.sans.ip.first().map(ToString::to_string))
        .unwrap_or_else(|| "topgun.invalid".to_owned());
    let server_name = ServerName::try_from(name)
        .unwrap_or_else(|_| ServerName::try_from("topgun.invalid").expect("valid name"));
    let verify = |at: UnixTime| -> Result<std::result::Result<(), rustls::Error>> {
        Ok(match purpose {
            Purpose::Server => {
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(roots.store(), provider.clone())
                        .build()
                        .map_err(|e| Error::internal("a verifier over checked roots", e))?;
                verifier
                    .verify_server_cert(leaf.der(), &intermediates, &server_name, &[], at)
                    .map(|_| ())
            }
            Purpose::Client => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.store(), provider.clone())
                        .build()
                        .map_err(|e| Error::internal("a verifier over checked roots", e))?;
                verifier
                    .verify_client_cert(leaf.der(), &intermediates, at)
                    .map(|_| ())
            }
        })
    };
    let now = UnixTime::now();
    let mut outcome = verify(now)?;
    if outcome.as_ref().is_err_and(is_time_error) {
        // Judge trust at a moment inside the leaf's validity.
        let inside = if leaf.expired {
            leaf.not_after - time::Duration::seconds(1)
        } else {
            leaf.not_before + time::Duration::seconds(1)
        };
        let secs = u64::try_from(inside.unix_timestamp()).unwrap_or(0);
        outcome = verify(UnixTime::since_unix_epoch(Duration::from_secs(secs)))?;
    }
    let error = match outcome {
        Ok(()) => None,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => None,
        Err(e) => Some(describe(&e, roots, leaf)),
    };
    Ok(Verification {
        roots: roots.source.clone(),
        purpose,
        trusted: error.is_none(),
        error,
    })
}

fn is_time_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }
        )
    )
}

fn describe(e: &rustls::Error, roots: &Roots, leaf: &CertInfo) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the chain does not lead to a CA in {} (leaf issuer: {})",
            roots.source, leaf.issuer
        ),
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "a signature in the chain does not verify (the CA has the right name but another key)"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ) => format!(
            "the certificate is not for this purpose (extended key usages: {})",
            if leaf.extended_key_usage.is_empty() {
                "none".to_owned()
            } else {
                leaf.extended_key_usage.join(", ")
            }
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "a certificate in the chain has expired".to_owned(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "a certificate in the chain is not valid yet".to_owned(),
        other => other.to_string(),
    }
}

/// What kind of problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The checked name is not among the leaf's SANs.
    NotCovered,
    /// The leaf has expired.
    Expired,
    /// The leaf is not valid yet.
    NotYetValid,
    /// The chain does not lead to the given CA.
    Untrusted,
    /// The TLS handshake failed after the server presented its chain.
    HandshakeFailed,
    /// The server refused the client certificate (or its absence).
    ClientCertificateRejected,
    /// A kubeconfig sets `insecure-skip-tls-verify` together with a CA, which
    /// kubectl refuses.
    InsecureWithCa,
}

/// One problem found, with a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// One sentence for people.
    pub message: String,
}

impl Problem {
    /// A problem of `kind` described by `message`.
    pub fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        Problem {
            kind,
            message: message.into(),
        }
    }
}

/// Where a check happens, so that fixes can be concrete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FixContext {
    /// The port clients dial, to spell out covered URLs.
    pub port: Option<u16>,
    /// The kubeconfig cluster entry, to spell out `kubectl config` commands.
    pub kubeconfig_cluster: Option<String>,
    /// The address the check actually reached; a covered host equal to it
    /// is suggested first.
    pub reached: Option<IpAddr>,
}

impl FixContext {
    /// Context for a plain endpoint on `port`.
    pub fn port(port: u16) -> Self {
        FixContext {
            port: Some(port),
            ..FixContext::default()
        }
    }

    /// Context for a kubeconfig cluster entry reached on `port`.
    pub fn kubeconfig(cluster: impl Into<String>, port: u16) -> Self {
        FixContext {
            port: Some(port),
            kubeconfig_cluster: Some(cluster.into()),
            reached: None,
        }
    }

    /// Records the address the check reached.
    pub fn with_reached(mut self, ip: IpAddr) -> Self {
        self.reached = Some(ip);
        self
    }
}

/// The kind of a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixKind {
    /// Recreate the certificate with `--tls-san <host>`.
    RecreateWithTlsSan,
    /// Dial a host the certificate covers.
    UseCoveredHost,
    /// Keep dialing the host but verify a covered DNS name
    /// (`tls-server-name`).
    SetTlsServerName,
}

/// One way to fix a name that is not covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// Which fix.
    pub kind: FixKind,
    /// The hosts or names it involves.
    pub values: Vec<String>,
    /// One sentence for people, with the command to run where there is one.
    pub text: String,
}

/// Why a name is not covered, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Diagnosis {
    /// The host that was checked.
    pub host: String,
    /// The SANs the certificate carries.
    pub sans: SanNames,
    /// Facts that explain the mismatch.
    pub notes: Vec<String>,
    /// Concrete fixes, most thorough first.
    pub fixes: Vec<Fix>,
}

impl Diagnosis {
    /// Builds the diagnosis for `host` not being covered by `sans`.
    pub fn not_covered(host: &str, sans: &SanNames, leaf_subject: &str, ctx: &FixContext) -> Self {
        let host = bare_host(host);
        let host_ip = host.parse::<IpAddr>().ok();
        let mut notes = Vec::new();
        if sans.is_empty() {
            notes.push(format!(
                "the certificate has no DNS or IP SANs; its subject ({leaf_subject}) is not used \
                 for matching by kubectl or rustls"
            ));
        } else if host_ip.is_some() && sans.ip.is_empty() {
            notes.push(format!(
                "{host} is an IP address: only IP SANs can cover it, and the certificate has none"
            ));
        } else if host_ip.is_none() && sans.dns.is_empty() {
            notes.push(format!(
                "{host} is a DNS name: only DNS SANs can cover it, and the certificate has none"
            ));
        }
        if host_ip.is_none() {
            for pattern in sans.dns.iter().filter(|d| d.starts_with("*.")) {
                let base = &pattern[2..];
                if host.to_ascii_lowercase().ends_with(&format!(".{base}")) {
                    notes.push(format!(
                        "{pattern} covers exactly one label before .{base}, not {host}"
                    ));
                }
            }
        }
        for ip in sans.ip.iter().filter(|ip| ip.is_unspecified()) {
            notes.push(format!(
                "{ip} is in the certificate but is not an address a client can use: it covers \
                 nothing"
            ));
        }
        let mut fixes = Vec::new();
        if crate::san::parse_san(&host).is_ok() {
            fixes.push(Fix {
                kind: FixKind::RecreateWithTlsSan,
                values: vec![host.clone()],
                text: format!(
                    "recreate the certificate with `--tls-san {host}` (k3s reads --tls-san only \
                     when it first creates its serving certificate, so recreate the cluster, \
                     or generate one with `topgun tls gen --san {host}`)"
                ),
            });
        }
        let reached_first = sans
            .ip
            .iter()
            .filter(|ip| Some(**ip) == ctx.reached)
            .chain(sans.ip.iter().filter(|ip| Some(**ip) != ctx.reached));
        let covered_hosts: Vec<String> = reached_first
            .filter(|ip| !ip.is_unspecified())
            .map(ToString::to_string)
            .chain(sans.dns.iter().filter(|d| !d.starts_with("*.")).cloned())
            .collect();
        if !covered_hosts.is_empty() {
            let shown: Vec<String> = covered_hosts
                .iter()
                .map(|h| match ctx.port {
                    Some(port) => url_for(h, port),
                    None => h.clone(),
                })
                .collect();
            let how = match (&ctx.kubeconfig_cluster, ctx.port) {
                (Some(cluster), Some(port)) => format!(
                    ", e.g. `kubectl config set-cluster {cluster} --server={}`",
                    url_for(&covered_hosts[0], port)
                ),
                _ => String::new(),
            };
            fixes.push(Fix {
                kind: FixKind::UseCoveredHost,
                values: covered_hosts.clone(),
                text: format!(
                    "connect through a host the certificate covers and that reaches this server: \
                     {}{how}",
                    shown.join(", ")
                ),
            });
        }
        let names: Vec<String> = sans
            .dns
            .iter()
            .filter(|d| !d.starts_with("*."))
            .cloned()
            .collect();
        if let Some(first) = names.first() {
            let how = match &ctx.kubeconfig_cluster {
                Some(cluster) => {
                    format!("`kubectl config set-cluster {cluster} --tls-server-name={first}`")
                }
                None => format!(
                    "`tls-server-name: {first}` in the kubeconfig's cluster entry (check it here \
                     with `--name {first}`)"
                ),
            };
            fixes.push(Fix {
                kind: FixKind::SetTlsServerName,
                values: names.clone(),
                text: format!(
                    "keep dialing {host} but verify a covered DNS name ({}): {how}",
                    names.join(", ")
                ),
            });
        } else {
            notes.push(
                "tls-server-name cannot help: the certificate has no DNS SAN to name".to_owned(),
            );
        }
        Diagnosis {
            host,
            sans: sans.clone(),
            notes,
            fixes,
        }
    }
}

fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn url_for(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// What to check about a chain.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CheckOptions {
    /// The name to check, as a client would dial it; `None` skips the name
    /// check.
    pub name: Option<String>,
    /// The CA to verify against; `None` skips the trust check.
    pub roots: Option<Roots>,
    /// What to verify the chain for; `None` picks [`Purpose::of`] the leaf.
    pub purpose: Option<Purpose>,
    /// Context for concrete fixes.
    pub fix_context: FixContext,
}

impl CheckOptions {
    /// Checks nothing but validity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks that `name` is covered.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks trust against `roots`.
    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Verifies for `purpose`.
    pub fn with_purpose(mut self, purpose: Purpose) -> Self {
        self.purpose = Some(purpose);
        self
    }

    /// Sets the context used to word fixes.
    pub fn with_fix_context(mut self, ctx: FixContext) -> Self {
        self.fix_context = ctx;
        self
    }
}

/// The verdict on a chain: coverage, validity, trust, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Assessment {
    /// The name checked, if any.
    pub name: Option<String>,
    /// Whether the leaf's SANs cover the name; `None` when no name was
    /// checked.
    pub covered: Option<bool>,
    /// The leaf has expired.
    pub expired: bool,
    /// The leaf is not valid yet.
    pub not_yet_valid: bool,
    /// The trust check, when roots were given.
    pub trust: Option<Verification>,
    /// Everything that would make a client refuse the chain.
    pub problems: Vec<Problem>,
    /// Facts worth knowing that are not problems.
    pub notes: Vec<String>,
    /// Why the name is not covered and how to fix it.
    pub diagnosis: Option<Diagnosis>,
    /// No problems: covered (or not checked), valid, trusted (or not checked).
    pub ok: bool,
}

impl Assessment {
    /// Adds a problem and clears `ok`.
    pub fn push_problem(&mut self, problem: Problem) {
        self.problems.push(problem);
        self.ok = false;
    }

    /// Whether any problem is of `kind`.
    pub fn has(&self, kind: ProblemKind) -> bool {
        self.problems.iter().any(|p| p.kind == kind)
    }

    /// Recomputes `ok` from the problems.
    pub fn refresh_ok(&mut self) {
        self.ok = self.problems.is_empty();
    }
}

/// Checks `chain` (leaf first): name coverage, the leaf's validity, and trust
/// against the given roots.
pub fn assess(chain: &[CertInfo], options: &CheckOptions) -> Result<Assessment> {
    let Some(leaf) = chain.first() else {
        return Err(Error::parse("certificate chain", "it is empty"));
    };
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut diagnosis = None;
    let name = options.name.as_deref().map(bare_host);
    if let Some(name) = &name {
        ServerName::try_from(name.as_str()).map_err(|_| Error::InvalidTarget {
            what: "name",
            input: name.clone(),
            problem: "is neither a DNS name nor an IP address".to_owned(),
            fix: "pass the host a client would dial, e.g. `192.168.1.28` or `api.example.com`"
                .to_owned(),
        })?;
    }
    let covered = name.as_deref().map(|n| leaf.covers(n));
    if let (Some(name), Some(false)) = (&name, covered) {
        problems.push(Problem::new(
            ProblemKind::NotCovered,
            format!(
                "{name} is not covered: the certificate is valid for {}",
                list_sans(&leaf.sans)
            ),
        ));
        diagnosis = Some(Diagnosis::not_covered(
            name,
            &leaf.sans,
            &leaf.subject,
            &options.fix_context,
        ));
    }
    if leaf.expired {
        problems.push(Problem::new(
            ProblemKind::Expired,
            format!(
                "the certificate expired at {} ({} days ago)",
                format_time(leaf.not_after),
                -leaf.days_left
            ),
        ));
    } else if leaf.not_yet_valid {
        problems.push(Problem::new(
            ProblemKind::NotYetValid,
            format!(
                "the certificate is not valid before {} (check the clocks)",
                format_time(leaf.not_before)
            ),
        ));
    } else if leaf.days_left < 30 {
        notes.push(format!(
            "the certificate expires in {} days",
            leaf.days_left
        ));
    }
    if diagnosis.is_none() {
        // (A diagnosis already explains it.)
        for ip in leaf.sans.ip.iter().filter(|ip| ip.is_unspecified()) {
            notes.push(format!(
                "{ip} is in the certificate but is not an address a client can use: it covers \
                 nothing"
            ));
        }
    }
    let trust = match &options.roots {
        Some(roots) => {
            let purpose = options.purpose.unwrap_or_else(|| Purpose::of(leaf));
            let verification = verify_chain(chain, roots, purpose)?;
            if let Some(error) = &verification.error {
                problems.push(Problem::new(
                    ProblemKind::Untrusted,
                    format!("untrusted: {error}"),
                ));
            }
            Some(verification)
        }
        None => None,
    };
    let ok = problems.is_empty();
    Ok(Assessment {
        name,
        covered,
        expired: leaf.expired,
        not_yet_valid: leaf.not_yet_valid,
        trust,
        problems,
        notes,
        diagnosis,
        ok,
    })
}

/// The SANs as one comma-separated list, IPs and DNS names, or `no names`.
pub fn list_sans(sans: &SanNames) -> String {
    let all: Vec<String> = sans
        .ip
        .iter()
        .map(ToString::to_string)
        .chain(sans.dns.iter().cloned())
        .collect();
    if all.is_empty() {
        "no names (it has no SANs)".to_owned()
    } else {
        all.join(", ")
    }
}
