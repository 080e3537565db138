//! Checking a kubeconfig's server the way kubectl connects to it.
//!
//! [`Kubeconfig`] reads the parts of a kubeconfig that decide the TLS
//! connection: contexts, the cluster's `server`, `certificate-authority` /
//! `certificate-authority-data`, `tls-server-name`,
//! `insecure-skip-tls-verify`, and the user's `client-certificate(-data)` /
//! `client-key(-data)`. Relative paths are resolved against the kubeconfig's
//! directory, as kubectl does.
//!
//! [`check_kubeconfig`] then dials the server (or `connect_to`), presents the
//! client certificate, and verifies the server as kubectl would: the name is
//! `tls-server-name` if set, else the server URL's host; the roots are the
//! kubeconfig's CA, else the system bundle. When the name is not covered,
//! the report's diagnosis lists the host checked, the SANs present and the
//! fixes.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::endpoint::{
    ClientIdentity, DEFAULT_TIMEOUT, EndpointOptions, EndpointReport, EndpointTarget,
    inspect_endpoint,
};
use crate::inspect::{CertInfo, inspect_pem_or_der};
use crate::verify::{Diagnosis, FixContext, Problem, ProblemKind, Roots};
use crate::{Error, Result};

/// A string that must not reach logs (e.g. `client-key-data`); `Debug` is
/// redacted.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A kubeconfig, reduced to what decides the TLS connection.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Kubeconfig {
    /// The file it was read from, if any; relative paths inside resolve
    /// against its directory.
    pub path: Option<PathBuf>,
    /// `current-context`.
    pub current_context: Option<String>,
    /// `clusters`.
    pub clusters: Vec<NamedCluster>,
    /// `contexts`.
    pub contexts: Vec<NamedContext>,
    /// `users`.
    pub users: Vec<NamedUser>,
}

/// An entry of `clusters`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct NamedCluster {
    /// Its name.
    pub name: String,
    /// Its settings.
    #[serde(default)]
    pub cluster: Cluster,
}

/// A cluster's connection settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Cluster {
    /// `server`: the API server URL.
    pub server: Option<String>,
    /// `certificate-authority`: a CA file path.
    pub certificate_authority: Option<String>,
    /// `certificate-authority-data`: base64 PEM.
    pub certificate_authority_data: Option<String>,
    /// `tls-server-name`: the name verified (and sent as SNI) instead of the
    /// URL's host.
    pub tls_server_name: Option<String>,
    /// `insecure-skip-tls-verify`.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// `proxy-url`.
    pub proxy_url: Option<String>,
}

/// An entry of `contexts`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct NamedContext {
    /// Its name.
    pub name: String,
    /// Its settings.
    #[serde(default)]
    pub context: Context,
}

/// A context: which cluster, as which user.
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct Context {
    /// The cluster entry's name.
    #[serde(default)]
    pub cluster: String,
    /// The user entry's name.
    #[serde(default)]
    pub user: String,
    /// The default namespace.
    pub namespace: Option<String>,
}

/// An entry of `users`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct NamedUser {
    /// Its name.
    pub name: String,
    /// Its credentials (only the client certificate is read).
    #[serde(default)]
    pub user: User,
}

/// A user's client certificate settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct User {
    /// `client-certificate`: a PEM file path.
    pub client_certificate: Option<String>,
    /// `client-certificate-data`: base64 PEM.
    pub client_certificate_data: Option<String>,
    /// `client-key`: a PEM file path.
    pub client_key: Option<String>,
    /// `client-key-data`: base64 PEM.
    pub client_key_data: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawKubeconfig {
    current_context: Option<String>,
    clusters: Option<Vec<NamedCluster>>,
    contexts: Option<Vec<NamedContext>>,
    users: Option<Vec<NamedUser>>,
}

impl Kubeconfig {
    /// Parses kubeconfig YAML. Relative paths inside resolve against the
    /// current directory (use [`Kubeconfig::from_path`] to resolve them
    /// against the file's directory).
    pub fn from_yaml(yaml: &str) -> Result<Self> {
        Self::parse(yaml, None)
    }

    /// Reads and parses a kubeconfig file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let yaml = crate::read::bounded_text(path, crate::read::MAX_KUBECONFIG)?;
        Self::parse(&yaml, Some(path))
    }

    /// The kubeconfig kubectl would read: the first path in `$KUBECONFIG`
    /// (a colon-separated list), else `~/.kube/config`.
    pub fn default_path() -> Result<PathBuf> {
        if let Some(list) = std::env::var_os("KUBECONFIG") {
            let list = list.to_string_lossy().into_owned();
            if let Some(first) = list.split(':').find(|p| !p.is_empty()) {
                return Ok(PathBuf::from(first));
            }
        }
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".kube/config")),
            _ => Err(Error::Kubeconfig {
                source_name: "~/.kube/config".into(),
                problem: "neither $KUBECONFIG nor $HOME is set; pass --kubeconfig FILE".into(),
            }),
        }
    }

    fn parse(yaml: &str, path: Option<&Path>) -> Result<Self> {
        let name = source_name(path);
        let raw: RawKubeconfig = serde_norway::from_str(yaml).map_err(|e| Error::Kubeconfig {
            source_name: name.clone(),
            problem: format!(
                "not a kubeconfig: {}",
                crate::redact::parser_message(&e.to_string())
            ),
        })?;
        Ok(Kubeconfig {
            path: path.map(Path::to_owned),
            current_context: raw.current_context.filter(|c| !c.is_empty()),
            clusters: raw.clusters.unwrap_or_default(),
            contexts: raw.contexts.unwrap_or_default(),
            users: raw.users.unwrap_or_default(),
        })
    }

    fn source_name(&self) -> String {
        source_name(self.path.as_deref())
    }

    fn problem(&self, problem: impl Into<String>) -> Error {
        Error::Kubeconfig {
            source_name: self.source_name(),
            problem: problem.into(),
        }
    }

    /// Resolves `context` (or `current-context`) to everything needed to
    /// connect: server, name to verify, CA, client identity. Files named in
    /// the kubeconfig are read here.
    ///
    /// Error messages quote names and values from the kubeconfig; any that
    /// hold PEM text are described instead of shown.
    pub fn resolve(&self, context: Option<&str>) -> Result<ResolvedContext> {
        self.resolve_context(context).map_err(Error::scrub_pem)
    }

    fn resolve_context(&self, context: Option<&str>) -> Result<ResolvedContext> {
        let context_names = || {
            let names: Vec<&str> = self.contexts.iter().map(|c| c.name.as_str()).collect();
            if names.is_empty() {
                "it has no contexts".to_owned()
            } else {
                format!("contexts: {}", names.join(", "))
            }
        };
        let context_name = match context.or(self.current_context.as_deref()) {
            Some(c) => c.to_owned(),
            None => {
                return Err(self.problem(format!(
                    "no current-context is set; pass --context ({})",
                    context_names()
                )));
            }
        };
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .ok_or_else(|| {
                self.problem(format!(
                    "context {context_name:?} is not defined ({})",
                    context_names()
                ))
            })?;
        let cluster_name = ctx.context.cluster.clone();
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .ok_or_else(|| {
                self.problem(format!(
                    "context {context_name:?} names cluster {cluster_name:?}, which is not defined"
                ))
            })?
            .cluster;
        let user_name = ctx.context.user.clone();
        let user = if user_name.is_empty() {
            User::default()
        } else {
            self.users
                .iter()
                .find(|u| u.name == user_name)
                .map(|u| u.user.clone())
                .ok_or_else(|| {
                    self.problem(format!(
                        "context {context_name:?} names user {user_name:?}, which is not defined"
                    ))
                })?
        };
        let server = cluster
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.problem(format!("cluster {cluster_name:?} has no server")))?;
        let target = EndpointTarget::parse(&server).map_err(|e| {
            self.problem(format!(
                "cluster {cluster_name:?} has an unusable server: {e}"
            ))
        })?;
        let mut warnings = Vec::new();
        if let Ok(ip) = target.host.parse::<std::net::IpAddr>()
            && ip.is_unspecified()
        {
            warnings.push(format!(
                "the server address {ip} works only on the machine that runs the cluster; other \
                 clients need the host's real address (and the certificate must cover it)"
            ));
        }
        if cluster.proxy_url.is_some() {
            warnings.push(
                "proxy-url is set: kubectl goes through the proxy, this check dialled the server \
                 directly"
                    .to_owned(),
            );
        }
        let ca = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), file) => {
                if file.is_some() {
                    warnings.push(
                        "certificate-authority-data and certificate-authority are both set; \
                         certificate-authority-data wins"
                            .to_owned(),
                    );
                }
                let bytes = self.base64(data, "certificate-authority-data", &cluster_name)?;
                Some(Roots::from_pem_or_der(
                    &bytes,
                    "certificate-authority-data",
                )?)
            }
            (None, Some(file)) => Some(Roots::from_file(&self.resolve_path(file))?),
            (None, None) => None,
        };
        let cert_pem = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(data), _) => Some(self.base64(data, "client-certificate-data", &user_name)?),
            (None, Some(file)) => Some(self.read(file)?),
            (None, None) => None,
        };
        let key_pem = match (&user.client_key_data, &user.client_key) {
            (Some(data), _) => Some(self.base64(data.expose(), "client-key-data", &user_name)?),
            (None, Some(file)) => Some(self.read(file)?),
            (None, None) => None,
        };
        let (client_identity, client_certificate) = match (cert_pem, key_pem) {
            (Some(cert), Some(key)) => {
                let identity =
                    ClientIdentity::from_pem(&cert, &key, &format!("user {user_name:?} client"))?;
                let info = inspect_pem_or_der(&cert)?.into_iter().next();
                if let Some(info) = &info
                    && info.expired
                {
                    warnings.push(format!(
                        "the client certificate of user {user_name:?} expired {} days ago",
                        -info.days_left
                    ));
                }
                (Some(identity), info)
            }
            (Some(_), None) => {
                return Err(self.problem(format!(
                    "user {user_name:?} has a client certificate but no client-key(-data)"
                )));
            }
            (None, Some(_)) => {
                return Err(self.problem(format!(
                    "user {user_name:?} has a client key but no client-certificate(-data)"
                )));
            }
            (None, None) => (None, None),
        };
        Ok(ResolvedContext {
            context: context_name,
            cluster: cluster_name,
            user: user_name,
            server,
            target,
            tls_server_name: cluster.tls_server_name.clone().filter(|n| !n.is_empty()),
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            roots: ca,
            client_identity,
            client_certificate,
            warnings,
        })
    }

    fn resolve_path(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        match self.path.as_deref().and_then(Path::parent) {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_owned(),
        }
    }

    fn read(&self, file: &str) -> Result<Vec<u8>> {
        let path = self.resolve_path(file);
        crate::read::bounded(&path, crate::read::MAX_PEM)
    }

    fn base64(&self, data: &str, field: &str, owner: &str) -> Result<Vec<u8>> {
        let compact: String = data.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| self.problem(format!("{field} of {owner:?} is not base64: {e}")))
    }
}

fn source_name(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string())
        .unwrap_or_else(|| "(inline)".to_owned())
}

/// A context resolved to what a TLS connection needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolvedContext {
    /// The context's name.
    pub context: String,
    /// The cluster entry's name.
    pub cluster: String,
    /// The user entry's name.
    pub user: String,
    /// The server URL as written.
    pub server: String,
    /// The server as host and port.
    pub target: EndpointTarget,
    /// `tls-server-name`, if set.
    pub tls_server_name: Option<String>,
    /// `insecure-skip-tls-verify`.
    pub insecure_skip_tls_verify: bool,
    /// The kubeconfig's CA, if it names one.
    pub roots: Option<Roots>,
    /// The user's client certificate and key, if any.
    pub client_identity: Option<ClientIdentity>,
    /// The user's client certificate, inspected.
    pub client_certificate: Option<CertInfo>,
    /// Things worth knowing about the entries.
    pub warnings: Vec<String>,
}

impl ResolvedContext {
    /// The name kubectl verifies: `tls-server-name`, else the URL's host.
    pub fn verified_name(&self) -> &str {
        self.tls_server_name.as_deref().unwrap_or(&self.target.host)
    }
}

/// How to run [`check_kubeconfig_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KubeconfigCheckOptions {
    /// The context to check; `None` is `current-context`.
    pub context: Option<String>,
    /// Dial this address instead of the server URL's host.
    pub connect_to: Option<SocketAddr>,
    /// Deadline of each network step.
    pub timeout: Duration,
}

impl Default for KubeconfigCheckOptions {
    fn default() -> Self {
        KubeconfigCheckOptions {
            context: None,
            connect_to: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl KubeconfigCheckOptions {
    /// Checks `current-context`, dialling the server URL, with the default
    /// deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `context`.
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Dials `addr` instead of the server URL's host.
    pub fn with_connect_to(mut self, addr: SocketAddr) -> Self {
        self.connect_to = Some(addr);
        self
    }

    /// Sets the deadline of each network step.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The result of checking a kubeconfig's server as kubectl would.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KubeconfigCheck {
    /// The kubeconfig file, if it came from one.
    pub kubeconfig: Option<String>,
    /// The context checked.
    pub context: String,
    /// Its cluster entry.
    pub cluster: String,
    /// Its user entry.
    pub user: String,
    /// The server URL.
    pub server: String,
    /// `tls-server-name`, if set.
    pub tls_server_name: Option<String>,
    /// `insecure-skip-tls-verify`.
    pub insecure_skip_tls_verify: bool,
    /// Where the trusted CA came from: `certificate-authority-data`, a path,
    /// the system roots, or `none`.
    pub certificate_authority: String,
    /// The client certificate presented, if the user has one.
    pub client_certificate: Option<CertInfo>,
    /// Things worth knowing that do not decide the verdict.
    pub warnings: Vec<String>,
    /// The connection, the server's chain and the verdict on it. Its
    /// `check.name` is the host checked; `check.diagnosis` says why it is not
    /// covered and how to fix it.
    pub endpoint: EndpointReport,
    /// The host checked is covered by the server's certificate.
    pub covered: bool,
    /// The server's chain is trusted by the kubeconfig's CA (`None` when
    /// nothing was verified: insecure-skip-tls-verify without a CA).
    pub trusted: Option<bool>,
    /// kubectl would accept this connection.
    pub ok: bool,
}

impl KubeconfigCheck {
    /// The host checked (`tls-server-name` or the server URL's host).
    pub fn host(&self) -> &str {
        &self.endpoint.name
    }

    /// Why the host is not covered and how to fix it.
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        self.endpoint.check.diagnosis.as_ref()
    }

    /// Everything that makes kubectl fail.
    pub fn problems(&self) -> &[Problem] {
        &self.endpoint.check.problems
    }
}

/// Checks the server of `context` (or `current-context`) as kubectl would,
/// optionally dialling `connect_to` instead of the server URL's host.
pub async fn check_kubeconfig(
    kubeconfig: &Kubeconfig,
    context: Option<&str>,
    connect_to: Option<SocketAddr>,
) -> Result<KubeconfigCheck> {
    let mut options = KubeconfigCheckOptions::new();
    options.context = context.map(str::to_owned);
    options.connect_to = connect_to;
    check_kubeconfig_with(kubeconfig, &options).await
}

/// [`check_kubeconfig`] with every option.
pub async fn check_kubeconfig_with(
    kubeconfig: &Kubeconfig,
    options: &KubeconfigCheckOptions,
) -> Result<KubeconfigCheck> {
    let resolved = kubeconfig.resolve(options.context.as_deref())?;
    check_resolved(kubeconfig.path.as_deref(), resolved, options).await
}

async fn check_resolved(
    path: Option<&Path>,
    resolved: ResolvedContext,
    options: &KubeconfigCheckOptions,
) -> Result<KubeconfigCheck> {
    let mut warnings = resolved.warnings.clone();
    let has_ca = resolved.roots.is_some();
    let roots = match (&resolved.roots, resolved.insecure_skip_tls_verify) {
        (Some(roots), _) => Some(roots.clone()),
        (None, true) => None,
        (None, false) => Some(Roots::system()?),
    };
    let certificate_authority = roots
        .as_ref()
        .map(|r| r.source().to_owned())
        .unwrap_or_else(|| "none".to_owned());
    let mut endpoint_options = EndpointOptions::new(resolved.target.clone())
        .with_name(resolved.verified_name())
        .with_timeout(options.timeout)
        .with_fix_context(FixContext::kubeconfig(
            &resolved.cluster,
            resolved.target.port,
        ));
    endpoint_options.connect_to = options.connect_to;
    endpoint_options.roots = roots;
    endpoint_options.client_identity = resolved.client_identity.clone();
    let mut endpoint = inspect_endpoint(&endpoint_options).await?;

    let check = &mut endpoint.check;
    if resolved.client_identity.is_some()
        && !endpoint.client_auth_requested
        && endpoint.handshake_error.is_none()
    {
        check.notes.push(
            "the server did not ask for a client certificate, so the user's was not sent"
                .to_owned(),
        );
    }
    if resolved.client_identity.is_none()
        && endpoint.client_auth_requested
        && let Some(error) = &endpoint.handshake_error
    {
        check
            .notes
            .retain(|n| !n.starts_with("the server requires a client certificate"));
        check.push_problem(Problem::new(
            ProblemKind::ClientCertificateRejected,
            format!(
                "the server requires a client certificate and user {:?} has none: {error}",
                resolved.user
            ),
        ));
    }
    if resolved.insecure_skip_tls_verify {
        warnings.push(
            "insecure-skip-tls-verify is set: kubectl does not verify the server, so anyone on \
             the path can impersonate it; set certificate-authority-data instead"
                .to_owned(),
        );
        let ignored = [
            ProblemKind::NotCovered,
            ProblemKind::Expired,
            ProblemKind::NotYetValid,
            ProblemKind::Untrusted,
        ];
        let (skipped, kept): (Vec<Problem>, Vec<Problem>) = check
            .problems
            .drain(..)
            .partition(|p| ignored.contains(&p.kind));
        check.problems = kept;
        for p in skipped {
            check.notes.push(format!(
                "ignored by kubectl because of insecure-skip-tls-verify: {}",
                p.message
            ));
        }
        if has_ca {
            check.problems.push(Problem::new(
                ProblemKind::InsecureWithCa,
                "kubectl refuses this cluster entry (\"specifying a root certificates file with \
                 the insecure flag is not allowed\"): remove insecure-skip-tls-verify, or the \
                 certificate authority",
            ));
        }
        check.refresh_ok();
    }
    let covered = check.covered.unwrap_or(false);
    let trusted = check.trust.as_ref().map(|t| t.trusted);
    let ok = check.ok;
    Ok(KubeconfigCheck {
        kubeconfig: path.map(|p| p.display().to_string()),
        context: resolved.context,
        cluster: resolved.cluster,
        user: resolved.user,
        server: resolved.server,
        tls_server_name: resolved.tls_server_name,
        insecure_skip_tls_verify: resolved.insecure_skip_tls_verify,
        certificate_authority,
        client_certificate: resolved.client_certificate,
        warnings,
        endpoint,
        covered,
        trusted,
        ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: v1
kind: Config
current-context: one
clusters:
- name: c1
  cluster:
    server: https://192.168.1.28:6443
    certificate-authority: ca.crt
    tls-server-name: kubernetes
- name: c2
  cluster:
    server: https://0.0.0.0:7443
    insecure-skip-tls-verify: true
    proxy-url: http://proxy:3128
contexts:
- name: one
  context: {cluster: c1, user: u1}
- name: two
  context: {cluster: c2, user: ""}
- name: broken
  context: {cluster: nope, user: u1}
users:
- name: u1
  user:
    token: secret-token
preferences: {}
"#;

    #[test]
    fn reads_the_fields_kubectl_uses() {
        let kc = Kubeconfig::from_yaml(YAML).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("one"));
        let c1 = &kc.clusters[0].cluster;
        assert_eq!(c1.server.as_deref(), Some("https://192.168.1.28:6443"));
        assert_eq!(c1.certificate_authority.as_deref(), Some("ca.crt"));
        assert_eq!(c1.tls_server_name.as_deref(), Some("kubernetes"));
        assert!(kc.clusters[1].cluster.insecure_skip_tls_verify);
    }

    #[test]
    fn resolves_contexts_with_clear_errors() {
        let kc = Kubeconfig::from_yaml(YAML).unwrap();
        let two = kc.resolve(Some("two")).unwrap();
        assert_eq!(two.target, EndpointTarget::new("0.0.0.0", 7443));
        assert_eq!(two.verified_name(), "0.0.0.0");
        assert!(two.insecure_skip_tls_verify && two.roots.is_none());
        assert_eq!(two.warnings.len(), 2, "{:?}", two.warnings);
        let err = kc.resolve(Some("three")).unwrap_err().to_string();
        assert!(
            err.contains("\"three\" is not defined (contexts: one, two, broken)"),
            "{err}"
        );
        let err = kc.resolve(Some("broken")).unwrap_err().to_string();
        assert!(err.contains("names cluster \"nope\""), "{err}");
        // The current context names a CA file that is not there.
        let err = kc.resolve(None).unwrap_err().to_string();
        assert!(err.contains("cannot read ca.crt"), "{err}");
        let none = Kubeconfig::from_yaml("clusters: []\n").unwrap();
        let err = none.resolve(None).unwrap_err().to_string();
        assert!(
            err.contains("no current-context is set; pass --context"),
            "{err}"
        );
        let err = Kubeconfig::from_yaml("- a\n- b\n").unwrap_err().to_string();
        assert!(err.contains("not a kubeconfig"), "{err}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let yaml = "users:\n- name: u\n  user:\n    client-key-data: c2VjcmV0LWtleQ==\n";
        let kc = Kubeconfig::from_yaml(yaml).unwrap();
        let debug = format!("{kc:?}");
        assert!(!debug.contains("c2VjcmV0LWtleQ"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    /// Found by `tests/fuzz.rs` (tls::Kubeconfig::from_yaml(keys)): a key
    /// pasted as `current-context` (or any name) was quoted in full by
    /// "context ... is not defined".
    #[test]
    fn fuzz_regression_names_holding_keys_are_not_shown() {
        let yaml = "current-context: -----BEGIN PRIVATE KEY----- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA -----END PRIVATE KEY-----\n";
        let k = Kubeconfig::from_yaml(yaml).unwrap();
        let m = k.resolve(None).unwrap_err().to_string();
        assert!(!m.contains("AAAAAAAA"), "{m}");
        assert!(
            m.contains("is not defined") && m.contains("not shown"),
            "{m}"
        );
        // A server URL holding one goes the same way.
        let yaml = "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n\
                    clusters: [{name: k, cluster: {server: \"-----BEGIN PRIVATE KEY-----\\nAAAAAAAAAAAAAAAAAAAA\\n-----END PRIVATE KEY-----\"}}]\n";
        let m = Kubeconfig::from_yaml(yaml)
            .unwrap()
            .resolve(None)
            .unwrap_err()
            .to_string();
        assert!(
            !m.contains("AAAAAAAA") && m.contains("unusable server"),
            "{m}"
        );
    }
}
