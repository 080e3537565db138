//! Which Docker engine topgun talks to, resolved as the docker CLI resolves
//! it, and the connection to it.
//!
//! Order: the `--engine URL` / `--context NAME` flags ([`select`]),
//! `DOCKER_HOST` (with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` for
//! `tcp://`), `DOCKER_CONTEXT`, the `currentContext` of
//! `$DOCKER_CONFIG/config.json` (default `~/.docker`) with its endpoint in
//! `contexts/meta/<sha256 of the name>/meta.json` and its TLS files in
//! `contexts/tls/<same>/docker/`, then the local socket.
//!
//! Schemes: `unix://PATH`; `tcp://HOST:PORT` (plain, or mutual TLS with
//! `ca.pem`, `cert.pem`, `key.pem`; a key readable by group or others is
//! refused); `ssh://[USER@]HOST[:PORT]`, through the system `ssh` running
//! `docker system dial-stdio` on the engine host, one ssh session per
//! connection, as the docker CLI does (`TOPGUN_SSH_COMMAND` replaces `ssh`,
//! e.g. `ssh -F my_config`). TLS and ssh connections are topgun's own (kept
//! and reused, a few ssh sessions kept ready); before the first, a probe
//! names the layer that failed: DNS, TCP, TLS handshake, ssh, or the engine
//! API.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::Docker;
use rustls_pki_types::ServerName;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Error, Result};

/// The socket Docker listens on when nothing else is selected.
pub(crate) const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// How many ssh sessions running `docker system dial-stdio` are kept ready.
const WARM_SSH_SESSIONS: usize = 4;

/// The deadline of each step of a probe (DNS, TCP, TLS, ssh, first answer).
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// The flags that select an engine; both empty means "as the environment
/// says".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineFlags {
    /// `--engine URL`.
    pub engine: Option<String>,
    /// `--context NAME`.
    pub context: Option<String>,
}

/// Where an engine's address came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `--engine`.
    Flag,
    /// `DOCKER_HOST`.
    DockerHost,
    /// A docker context: `--context`, `DOCKER_CONTEXT` or the current one.
    Context(String),
    /// The local socket.
    Default,
}

/// An engine endpoint, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix://PATH`.
    Unix(PathBuf),
    /// `tcp://HOST:PORT` (or `http://`, `https://`).
    Tcp {
        /// Host name or address, as given.
        host: String,
        /// Port.
        port: u16,
    },
    /// `ssh://[USER@]HOST[:PORT]`.
    Ssh {
        /// The user, if given.
        user: Option<String>,
        /// Host name or address, as given.
        host: String,
        /// The port, if given.
        port: Option<u16>,
    },
}

impl Endpoint {
    /// Parses an engine URL.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let bad = |problem: &str| {
            Error::invalid(
                format!("Docker engine {url:?}"),
                problem.to_owned(),
                "write unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST[:PORT]",
            )
        };
        if let Some(path) = url.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad("has no socket path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let host_port = |rest: &str, default: Option<u16>| -> Result<(String, Option<u16>)> {
            let rest = rest.trim_end_matches('/');
            if rest.is_empty() || rest.contains('/') {
                return Err(bad("needs a host and nothing after it"));
            }
            if let Some(inner) = rest.strip_prefix('[') {
                let (h, p) = inner
                    .split_once(']')
                    .ok_or_else(|| bad("has an unclosed '['"))?;
                let port = match p.strip_prefix(':') {
                    Some(p) => Some(
                        p.parse()
                            .map_err(|_| bad("has a port that is not a number"))?,
                    ),
                    None if p.is_empty() => default,
                    None => return Err(bad("has text after the IPv6 address")),
                };
                return Ok((h.to_owned(), port));
            }
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() => Ok((
                    h.to_owned(),
                    Some(
                        p.parse()
                            .map_err(|_| bad("has a port that is not a number"))?,
                    ),
                )),
                Some(_) => Err(bad("has no host")),
                None => Ok((rest.to_owned(), default)),
            }
        };
        for scheme in ["tcp://", "http://", "https://"] {
            if let Some(rest) = url.strip_prefix(scheme) {
                let (host, port) = host_port(rest, Some(2375))?;
                return Ok(Endpoint::Tcp {
                    host,
                    port: port.unwrap_or(2375),
                });
            }
        }
        if let Some(rest) = url.strip_prefix("ssh://") {
            let (user, rest) = match rest.rsplit_once('@') {
                Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
                Some(_) => return Err(bad("has an empty user")),
                None => (None, rest),
            };
            let (host, port) = host_port(rest, None)?;
            if host.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
                return Err(bad("has a host or user that starts with '-'"));
            }
            return Ok(Endpoint::Ssh { user, host, port });
        }
        Err(bad("has a scheme topgun does not speak"))
    }

    /// The engine host's name as the user gave it, for a remote engine.
    pub fn remote_host(&self) -> Option<&str> {
        match self {
            Endpoint::Unix(_) => None,
            Endpoint::Tcp { host, .. } | Endpoint::Ssh { host, .. } => Some(host),
        }
    }
}

/// A resolved engine: its URL, where it came from, and its TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// The URL, e.g. `ssh://jbl@alien.io` (never holds a secret).
    pub url: String,
    /// The URL, parsed.
    pub endpoint: Endpoint,
    /// Where it came from.
    pub source: Source,
    /// The directory holding `ca.pem`, `cert.pem` and `key.pem` when the
    /// engine is reached over TLS.
    pub tls_dir: Option<PathBuf>,
}

impl Engine {
    fn new(url: &str, source: Source, tls_dir: Option<PathBuf>) -> Result<Engine> {
        Ok(Engine {
            url: url.to_owned(),
            endpoint: Endpoint::parse(url)?,
            source,
            tls_dir,
        })
    }

    /// The engine this process talks to: the flags given to
    /// [`crate::select_engine`], else `DOCKER_HOST`, `DOCKER_CONTEXT`, the
    /// docker CLI's current context, else the local socket.
    pub fn current() -> Result<Engine> {
        current()
    }

    /// The names of every docker context: `default` first, then the ones
    /// defined in the docker CLI's configuration (`$DOCKER_CONFIG` or
    /// `~/.docker`), sorted.
    pub fn contexts() -> Vec<String> {
        let mut names = vec!["default".to_owned()];
        names.extend(contexts(&config_dir(&|k| std::env::var(k).ok())));
        names
    }

    /// The engine of docker context `name` (`default` is the local socket).
    pub fn of_context(name: &str) -> Result<Engine> {
        context_engine(&config_dir(&|k| std::env::var(k).ok()), name)
    }

    /// Connects to this engine: probes each layer (DNS, TCP, TLS, ssh),
    /// then negotiates the API version.
    pub async fn connect(&self) -> Result<Docker> {
        connect(self).await
    }

    /// Whether the engine runs on this machine (a unix socket), so that its
    /// host ports and routes are this machine's.
    pub fn is_local(&self) -> bool {
        matches!(self.endpoint, Endpoint::Unix(_))
    }

    /// Where it came from, for messages: `DOCKER_HOST`, `context "x"`, ...
    pub fn describe_source(&self) -> String {
        match &self.source {
            Source::Flag => "--engine".to_owned(),
            Source::DockerHost => "DOCKER_HOST".to_owned(),
            Source::Context(c) => format!("docker context {c:?}"),
            Source::Default => "the default socket".to_owned(),
        }
    }

    /// What the engine label of a cluster records: the context name, or the
    /// URL.
    pub fn label(&self) -> String {
        match &self.source {
            Source::Context(c) => format!("context:{c}"),
            _ => self.url.clone(),
        }
    }

    fn failed(&self, layer: &'static str, problem: impl Into<String>, fix: &'static str) -> Error {
        self.error(layer, problem.into(), fix, None)
    }

    /// [`Engine::failed`] because of `source`; the problem reads
    /// `problem: source`.
    fn failed_by(
        &self,
        layer: &'static str,
        problem: impl Into<String>,
        fix: &'static str,
        source: impl Into<crate::error::BoxError>,
    ) -> Error {
        let source = source.into();
        let problem = format!("{}: {source}", problem.into());
        self.error(layer, problem, fix, Some(source))
    }

    fn error(
        &self,
        layer: &'static str,
        problem: String,
        fix: &'static str,
        source: Option<crate::error::BoxError>,
    ) -> Error {
        Error::Engine {
            url: self.url.clone(),
            source_of: self.describe_source(),
            layer,
            problem,
            fix,
            source,
        }
    }
}

/// The docker CLI's configuration directory: `$DOCKER_CONFIG` or
/// `~/.docker`.
pub(crate) fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match env("DOCKER_CONFIG").filter(|s| !s.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env("HOME").unwrap_or_else(|| "/root".to_owned())).join(".docker"),
    }
}

/// A small file (docker's config, a context's meta, PEM), read bounded.
fn read_small(path: &Path) -> topgun_tls::Result<String> {
    topgun_tls::read::bounded_text(path, 1 << 20)
}

fn context_hash(name: &str) -> String {
    hex::encode(sha2::Sha256::digest(name.as_bytes()))
}

/// Every docker context defined in `config_dir` (not `default`), sorted.
pub(crate) fn contexts(config_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(config_dir.join("contexts/meta")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let text = read_small(&e.path().join("meta.json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(v.get("Name")?.as_str()?.to_owned())
        })
        .collect();
    names.sort();
    names
}

/// The engine of docker context `name` in `config_dir`.
pub(crate) fn context_engine(config_dir: &Path, name: &str) -> Result<Engine> {
    if name == "default" {
        return Engine::new(DEFAULT_SOCKET, Source::Context(name.to_owned()), None);
    }
    let hash = context_hash(name);
    let meta = config_dir
        .join("contexts/meta")
        .join(&hash)
        .join("meta.json");
    let missing = |problem: String| {
        Error::invalid(
            format!("docker context {name:?}"),
            problem,
            "`docker context ls` shows the contexts; create one with `docker context create`",
        )
    };
    let text = read_small(&meta)
        .map_err(|e| missing(format!("cannot be read from {}: {e}", meta.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| missing(format!("{} is not JSON: {e}", meta.display())))?;
    let host = v
        .pointer("/Endpoints/docker/Host")
        .and_then(|h| h.as_str())
        .ok_or_else(|| missing(format!("{} has no docker endpoint", meta.display())))?;
    let tls = config_dir.join("contexts/tls").join(&hash).join("docker");
    let tls_dir = tls.join("ca.pem").exists().then_some(tls);
    Engine::new(host, Source::Context(name.to_owned()), tls_dir)
}

/// Resolves the engine as the docker CLI does (see the module docs).
pub(crate) fn resolve_with(
    flags: &EngineFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Engine> {
    let env_nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    let config = config_dir(env);
    let tls_from_env = || {
        env_nonempty("DOCKER_TLS_VERIFY").map(|_| match env_nonempty("DOCKER_CERT_PATH") {
            Some(p) => PathBuf::from(p),
            None => config.clone(),
        })
    };
    if flags.engine.is_some() && flags.context.is_some() {
        return Err(Error::invalid(
            "engine selection",
            "both --engine and --context are given",
            "give one of them",
        ));
    }
    if let Some(url) = &flags.engine {
        return Engine::new(url, Source::Flag, tls_from_env());
    }
    if let Some(name) = &flags.context {
        return context_engine(&config, name);
    }
    if let Some(url) = env_nonempty("DOCKER_HOST") {
        return Engine::new(&url, Source::DockerHost, tls_from_env());
    }
    if let Some(name) = env_nonempty("DOCKER_CONTEXT") {
        return context_engine(&config, &name);
    }
    let current = read_small(&config.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("currentContext")?.as_str().map(str::to_owned))
        .filter(|c| !c.is_empty());
    if let Some(name) = current {
        return context_engine(&config, &name);
    }
    Engine::new(DEFAULT_SOCKET, Source::Default, None)
}

static FLAGS: OnceLock<EngineFlags> = OnceLock::new();

/// Sets the flags every later [`Engine::current`] and [`crate::connect`]
/// use (the CLI calls it once, at start). Later calls are ignored.
pub fn select(flags: EngineFlags) {
    let _ = FLAGS.set(flags);
}

/// The engine this process talks to: the [`select`]ed flags, else the
/// environment.
pub(crate) fn current() -> Result<Engine> {
    let flags = FLAGS.get().cloned().unwrap_or_default();
    resolve_with(&flags, &|k| std::env::var(k).ok())
}

/// The address of the engine host, once a connection resolved it: where
/// topgun publishes what it dials itself (etcd client ports, haproxy's
/// stats) and, by default, the API. 127.0.0.1 for a local engine.
pub(crate) fn control_host() -> IpAddr {
    *CONTROL_HOST
        .get()
        .unwrap_or(&IpAddr::V4(Ipv4Addr::LOCALHOST))
}

static CONTROL_HOST: OnceLock<IpAddr> = OnceLock::new();

/// On a remote engine, a spec whose API is on the default 127.0.0.1 (the
/// engine host's loopback, which no client reaches) gets the engine host's
/// address instead, and the engine host's name in its certificate's SANs;
/// returns that spec and the name, for the kubeconfig's server. `None`: the
/// spec stays as it is (a local engine, or an API address the user chose).
pub(crate) fn place_api(spec: &crate::ClusterSpec) -> Result<Option<(crate::ClusterSpec, String)>> {
    let Ok(engine) = current() else {
        return Ok(None);
    };
    let Some(name) = engine.endpoint.remote_host() else {
        return Ok(None);
    };
    if spec.api.host != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return Ok(None);
    }
    let mut placed = spec.clone();
    placed.api.host = control_host();
    for san in crate::spec::SanList::parse(name)? {
        if !placed.tls_san.0.contains(&san) {
            placed.tls_san.0.push(san);
        }
    }
    placed.validate()?;
    Ok(Some((placed, name.to_owned())))
}

/// Connects to `engine`: probes each layer, then connects (TLS and ssh
/// through topgun's own connections), and negotiates the API version.
pub(crate) async fn connect(engine: &Engine) -> Result<Docker> {
    let docker = match &engine.endpoint {
        Endpoint::Unix(_) => {
            return connect_to(&engine.url).await;
        }
        Endpoint::Tcp { host, port } => match &engine.tls_dir {
            None => {
                let ip = resolve(engine, host, *port).await?;
                let docker = connect_to(&format!("tcp://{host}:{port}")).await?;
                let _ = CONTROL_HOST.set(ip);
                return Ok(docker);
            }
            Some(dir) => {
                let ip = resolve(engine, host, *port).await?;
                let tls = tls_config(engine, dir)?;
                let dialer = Dialer::Tls {
                    addr: std::net::SocketAddr::new(ip, *port),
                    name: ServerName::try_from(host.clone()).map_err(|e| {
                        engine.failed_by(
                            "TLS",
                            format!("{host:?} is not a valid server name"),
                            "",
                            e,
                        )
                    })?,
                    config: tls,
                };
                let docker = serve(engine, dialer).await?;
                let _ = CONTROL_HOST.set(ip);
                docker
            }
        },
        Endpoint::Ssh { host, .. } => {
            // The host ssh dials: an alias in the ssh config names another.
            let real = ssh_hostname(&engine.endpoint)
                .await
                .unwrap_or_else(|| host.clone());
            let ip = resolve(engine, &real, 22).await?;
            let dialer = Dialer::Ssh {
                argv: ssh_argv(&engine.endpoint),
            };
            let docker = serve(engine, dialer).await?;
            let _ = CONTROL_HOST.set(ip);
            docker
        }
    };
    tracing::debug!(engine = %engine.url, "negotiating the API version");
    docker.negotiate_version().await.map_err(|e| {
        engine.error(
            "engine API",
            describe_connect_error(&e),
            "the engine answered but its API did not; is it a Docker engine?",
            Some(Box::new(e)),
        )
    })
}

async fn resolve(engine: &Engine, host: &str, port: u16) -> Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let found = tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|e| engine.failed_by("DNS", format!("no answer for {host:?}"), "", e))?
        .map_err(|e| engine.failed_by("DNS", format!("cannot resolve {host:?}"), "", e))?
        .map(|a| a.ip())
        .collect::<Vec<_>>();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| engine.failed("DNS", format!("{host:?} has no address"), ""))
}

/// The host name ssh dials for `endpoint` (`ssh -G`: the ssh config's
/// `HostName` for an alias), if ssh says.
async fn ssh_hostname(endpoint: &Endpoint) -> Option<String> {
    let argv = ssh_argv(endpoint);
    let host_at = argv.iter().position(|a| a == "--")? + 1;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..host_at - 1])
        .arg("-G")
        .arg(&argv[host_at])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(STEP_TIMEOUT, cmd.output())
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("hostname "))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The ssh command line that runs `docker system dial-stdio` on the host.
pub(crate) fn ssh_argv(endpoint: &Endpoint) -> Vec<String> {
    let Endpoint::Ssh { user, host, port } = endpoint else {
        return Vec::new();
    };
    let mut argv: Vec<String> = std::env::var("TOPGUN_SSH_COMMAND")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_else(|| vec!["ssh".to_owned()]);
    argv.extend(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"].map(str::to_owned));
    if let Some(user) = user {
        argv.extend(["-l".to_owned(), user.clone()]);
    }
    if let Some(port) = port {
        argv.extend(["-p".to_owned(), port.to_string()]);
    }
    argv.extend(["--", host, "docker", "system", "dial-stdio"].map(str::to_owned));
    argv
}

fn tls_config(engine: &Engine, dir: &Path) -> Result<Arc<rustls::ClientConfig>> {
    use topgun_tls::{ClientCert, ClientIdentity, Roots, ServerTrust};
    let read = |file: &str| read_small(&dir.join(file));
    let ca = read("ca.pem").map_err(|e| {
        engine.failed_by(
            "TLS",
            "cannot read the CA",
            "DOCKER_CERT_PATH (or the context's TLS directory) must hold ca.pem, cert.pem and key.pem",
            e,
        )
    })?;
    let roots = Roots::from_pem_or_der(ca.as_bytes(), "ca.pem")
        .map_err(|e| engine.failed_by("TLS", "ca.pem is unusable", "", e))?;
    let key_path = dir.join("key.pem");
    let identity = if !key_path.exists() && !dir.join("cert.pem").exists() {
        // No client identity: the engine says whether it wants one.
        None
    } else {
        check_key_mode(engine, &key_path)?;
        let cert = read("cert.pem")
            .map_err(|e| engine.failed_by("TLS", "cannot read the client certificate", "", e))?;
        let key = read("key.pem")
            .map_err(|e| engine.failed_by("TLS", "cannot read the client key", "", e))?;
        Some(
            ClientIdentity::from_pem(cert.as_bytes(), key.as_bytes(), "the client")
                .map_err(|e| engine.failed_by("TLS", "cert.pem and key.pem are unusable", "", e))?,
        )
    };
    let mut config = topgun_tls::client_config(
        ServerTrust::Roots(&roots),
        identity
            .as_ref()
            .map_or(ClientCert::None, ClientCert::Identity),
    )
    .map_err(|e| engine.failed_by("TLS", "the client identity is unusable", "", e))?;
    // No session resumption: every connection makes a full handshake with
    // the client certificate, as the docker CLI's does (some TLS fronts,
    // e.g. socat with client verification, fail resumed handshakes).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

fn check_key_mode(engine: &Engine, key: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(key)
        .map_err(|e| engine.failed_by("TLS", format!("cannot read {}", key.display()), "", e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        // The fix names the file, so it goes with the problem.
        return Err(engine.failed(
            "TLS",
            format!(
                "the client key {} is readable by others (mode {mode:04o}); make it private: \
                 `chmod 600 {}`",
                key.display(),
                key.display()
            ),
            "",
        ));
    }
    Ok(())
}

/// How the private socket reaches the engine, per connection.
enum Dialer {
    Tls {
        addr: std::net::SocketAddr,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
    Ssh {
        argv: Vec<String>,
    },
}

trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

/// Why a dial failed: the layer and the problem, and the I/O error when
/// there is one.
struct DialError {
    layer: &'static str,
    problem: String,
    fix: &'static str,
    source: Option<std::io::Error>,
}

impl Dialer {
    async fn dial(&self) -> std::result::Result<Box<dyn Duplex>, DialError> {
        match self {
            Dialer::Tls { addr, name, config } => {
                let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(|_| DialError {
                        layer: "TCP",
                        problem: format!("no answer from {addr}"),
                        fix: "",
                        source: None,
                    })?
                    .map_err(|e| DialError {
                        layer: "TCP",
                        problem: format!("cannot connect to {addr}: {e}"),
                        fix: "",
                        source: Some(e),
                    })?;
                let _ = tcp.set_nodelay(true);
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(STEP_TIMEOUT, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| DialError {
                        layer: "TLS handshake",
                        problem: "no answer".to_owned(),
                        fix: "",
                        source: None,
                    })?
                    .map_err(|e| DialError {
                        layer: "TLS handshake",
                        problem: e.to_string(),
                        fix: "check that ca.pem is the CA that signed the engine's certificate \
                              and that the certificate names the host you dial",
                        source: Some(e),
                    })?;
                Ok(Box::new(tls))
            }
            Dialer::Ssh { argv } => {
                let child = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| DialError {
                        layer: "ssh",
                        problem: format!("cannot run {}: {e}", argv[0]),
                        fix: "install an OpenSSH client",
                        source: Some(e),
                    })?;
                Ok(Box::new(SshStream::new(child)))
            }
        }
    }
}

/// A child process's stdin and stdout as one stream.
struct SshStream {
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    _child: tokio::process::Child,
}

impl SshStream {
    fn new(mut child: tokio::process::Child) -> Self {
        SshStream {
            stdin: child.stdin.take().expect("piped"),
            stdout: child.stdout.take().expect("piped"),
            _child: child,
        }
    }
}

impl tokio::io::AsyncRead for SshStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SshStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stdin).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdin).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

/// Classifies what ssh wrote on stderr.
pub(crate) fn ssh_failure(stderr: &str) -> (&'static str, &'static str) {
    let s = stderr.to_ascii_lowercase();
    if s.contains("could not resolve hostname") {
        ("DNS", "")
    } else if s.contains("connection refused")
        || s.contains("connection timed out")
        || s.contains("no route to host")
    {
        ("TCP", "is sshd running on that host and port?")
    } else if s.contains("host key verification failed") || s.contains("host identification") {
        (
            "ssh host key",
            "connect once with `ssh` to check and record the host key",
        )
    } else if s.contains("permission denied") || s.contains("too many authentication failures") {
        (
            "ssh authentication",
            "`ssh USER@HOST` must log in without a password (a key in ssh-agent or ~/.ssh)",
        )
    } else if s.contains("command not found")
        || s.contains("unknown command")
        || s.contains("dial-stdio")
    {
        (
            "remote docker CLI",
            "the engine host needs the docker CLI (it runs `docker system dial-stdio`)",
        )
    } else {
        ("ssh", "")
    }
}

/// Probes the dialer with `GET /_ping`, then returns a client whose
/// connections the dialer makes (TLS to the engine, or an ssh session
/// running `docker system dial-stdio`). Unlike bollard's own clients, idle
/// connections are kept and reused: a new ssh session costs about half a
/// second, so one per request would make a create several times slower.
async fn serve(engine: &Engine, dialer: Dialer) -> Result<Docker> {
    probe(engine, &dialer).await?;
    tracing::debug!(engine = %engine.url, "engine answered the probe");
    let dialer = Arc::new(dialer);
    // A few ssh sessions are kept ready, so a burst of requests rarely waits
    // for one. TLS connections are dialled when needed.
    let warm = match &*dialer {
        Dialer::Ssh { .. } => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Box<dyn Duplex>>(WARM_SSH_SESSIONS);
            let filler = dialer.clone();
            tokio::spawn(async move {
                while let Ok(stream) = filler.dial().await {
                    if tx.send(stream).await.is_err() {
                        break;
                    }
                }
            });
            Some(WarmSessions::new(tokio::sync::Mutex::new(rx)))
        }
        Dialer::Tls { .. } => None,
    };
    let client = Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(Connector { dialer, warm }),
    );
    Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some("http://docker"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| engine.failed_by("engine API", "cannot make a client", "", e))
}

/// hyper's connector: every new connection is one the dialer makes.
#[derive(Clone)]
struct Connector {
    dialer: Arc<Dialer>,
    warm: Option<WarmSessions>,
}

/// ssh sessions started ahead of need.
type WarmSessions = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Box<dyn Duplex>>>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<Conn>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<Self::Response, Self::Error>>
                + Send,
        >,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let stream = match &this.warm {
                Some(rx) => match rx.lock().await.recv().await {
                    Some(stream) => Ok(stream),
                    None => this.dialer.dial().await,
                },
                None => this.dialer.dial().await,
            };
            stream
                .map(|s| hyper_util::rt::TokioIo::new(Conn(s)))
                .map_err(|e| format!("{}: {}", e.layer, e.problem).into())
        })
    }
}

/// One connection to the engine.
struct Conn(Box<dyn Duplex>);

impl hyper_util::client::legacy::connect::Connection for Conn {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

async fn probe(engine: &Engine, dialer: &Dialer) -> Result<()> {
    let fail = |e: DialError| {
        let source = e.source.map(|s| Box::new(s) as crate::error::BoxError);
        engine.error(e.layer, e.problem, e.fix, source)
    };
    let mut stream = dialer.dial().await.map_err(fail)?;
    let ping = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
    let exchange = async {
        stream.write_all(ping).await?;
        stream.flush().await?;
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(got)
    };
    let answer = tokio::time::timeout(STEP_TIMEOUT, exchange).await;
    let (layer, fix_tls) = match dialer {
        Dialer::Tls { .. } => ("TLS handshake", true),
        Dialer::Ssh { .. } => ("ssh", false),
    };
    match answer {
        Ok(Ok(got)) if got.starts_with(b"HTTP/1.") => Ok(()),
        other => {
            let (io_problem, io_error) = match other {
                Err(_) => ("no answer".to_owned(), None),
                Ok(Err(e)) => (e.to_string(), Some(e)),
                Ok(Ok(got)) if got.is_empty() => {
                    ("the connection closed without an answer".to_owned(), None)
                }
                Ok(Ok(_)) => ("the answer is not HTTP".to_owned(), None),
            };
            let source = io_error.map(|e| Box::new(e) as crate::error::BoxError);
            if fix_tls {
                let lower = io_problem.to_ascii_lowercase();
                let fix = if lower.contains("certificaterequired")
                    || lower.contains("handshakefailure")
                    || lower.contains("bad certificate")
                    || lower.contains("badcertificate")
                    || lower.contains("unknownca")
                    || lower.contains("closed without")
                {
                    "the engine refused this client: put a client certificate its CA signed in \
                     cert.pem and key.pem (DOCKER_CERT_PATH or the context's TLS files)"
                } else {
                    ""
                };
                return Err(engine.error(layer, io_problem, fix, source));
            }
            // ssh: its stderr says why.
            drop(stream);
            let stderr = ssh_stderr(dialer).await;
            let (layer, fix) = ssh_failure(&stderr);
            let problem = if stderr.trim().is_empty() {
                io_problem
            } else {
                stderr.trim().lines().last().unwrap_or_default().to_owned()
            };
            Err(engine.error(layer, problem, fix, source))
        }
    }
}

/// Runs the ssh command once more, with no input, and returns its stderr
/// (bounded); used only to explain a failed probe.
async fn ssh_stderr(dialer: &Dialer) -> String {
    let Dialer::Ssh { argv } = dialer else {
        return String::new();
    };
    let run = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(STEP_TIMEOUT, run).await {
        Ok(Ok(out)) => {
            let end = out.stderr.len().min(8192);
            String::from_utf8_lossy(&out.stderr[..end]).into_owned()
        }
        _ => String::new(),
    }
}

/// Connects to the daemon at `host` (`unix:///path`, `tcp://host:port` or
/// `http://host:port`) and negotiates the API version.
pub(crate) async fn connect_to(host: &str) -> Result<Docker> {
    let unreachable = |source: bollard::errors::Error| Error::DockerUnreachable {
        host: host.to_owned(),
        reason: describe_connect_error(&source),
        source,
    };
    let docker = Docker::connect_with_host(host).map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

pub(crate) fn describe_connect_error(e: &bollard::errors::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write_context(dir: &Path, name: &str, host: &str, tls: bool) {
        let hash = context_hash(name);
        let meta = dir.join("contexts/meta").join(&hash);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            ),
        )
        .unwrap();
        if tls {
            let t = dir.join("contexts/tls").join(&hash).join("docker");
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("ca.pem"), "x").unwrap();
        }
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("ssh://jbl@alien.io").unwrap(),
            Endpoint::Ssh {
                user: Some("jbl".into()),
                host: "alien.io".into(),
                port: None
            }
        );
        assert_eq!(
            Endpoint::parse("ssh://root@127.0.0.2:2222").unwrap(),
            Endpoint::Ssh {
                user: Some("root".into()),
                host: "127.0.0.2".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            Endpoint::parse("tcp://192.168.1.28:2376").unwrap(),
            Endpoint::Tcp {
                host: "192.168.1.28".into(),
                port: 2376
            }
        );
        assert_eq!(
            Endpoint::parse("tcp://[::1]:2376").unwrap().remote_host(),
            Some("::1")
        );
        assert!(
            Endpoint::parse("unix:///var/run/docker.sock")
                .unwrap()
                .remote_host()
                .is_none()
        );
        for bad in [
            "ftp://x",
            "ssh://-oProxyCommand=x",
            "tcp://h:port",
            "unix://",
            "ssh://@h",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolution_follows_the_docker_cli_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        write_context(dir.path(), "remote", "ssh://jbl@alien.io", false);
        write_context(dir.path(), "tls", "tcp://alien.io:2376", true);
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"remote"}"#,
        )
        .unwrap();
        let flags = EngineFlags::default();
        // The current context.
        let e = resolve_with(&flags, &env(&[("DOCKER_CONFIG", d)])).unwrap();
        assert_eq!(e.url, "ssh://jbl@alien.io");
        assert_eq!(e.source, Source::Context("remote".into()));
        // DOCKER_CONTEXT beats it.
        let e = resolve_with(
            &flags,
            &env(&[("DOCKER_CONFIG", d), ("DOCKER_CONTEXT", "tls")]),
        )
        .unwrap();
        assert_eq!(e.url, "tcp://alien.io:2376");
        assert!(e.tls_dir.is_some());
        // DOCKER_HOST beats DOCKER_CONTEXT; TLS from DOCKER_TLS_VERIFY.
        let e = resolve_with(
            &flags,
            &env(&[
                ("DOCKER_CONFIG", d),
                ("DOCKER_CONTEXT", "tls"),
                ("DOCKER_HOST", "tcp://127.0.0.3:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
            ]),
        )
        .unwrap();
        assert_eq!(e.source, Source::DockerHost);
        assert_eq!(e.tls_dir, Some(PathBuf::from("/certs")));
        // The flags beat everything.
        let e = resolve_with(
            &EngineFlags {
                context: Some("default".into()),
                engine: None,
            },
            &env(&[("DOCKER_CONFIG", d), ("DOCKER_HOST", "tcp://x:1")]),
        )
        .unwrap();
        assert_eq!(e.url, DEFAULT_SOCKET);
        let e = resolve_with(
            &EngineFlags {
                engine: Some("ssh://a@b".into()),
                context: None,
            },
            &env(&[("DOCKER_HOST", "tcp://x:1")]),
        )
        .unwrap();
        assert_eq!(e.source, Source::Flag);
        // Nothing: the socket.
        let e = resolve_with(&flags, &env(&[("DOCKER_CONFIG", "/nonexistent")])).unwrap();
        assert_eq!(e.url, DEFAULT_SOCKET);
        // An unknown context is named.
        let err = resolve_with(
            &flags,
            &env(&[("DOCKER_CONFIG", d), ("DOCKER_CONTEXT", "nope")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"nope\""), "{err}");
        assert_eq!(contexts(dir.path()), vec!["remote", "tls"]);
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let engine = Engine::new("tcp://127.0.0.3:2376", Source::DockerHost, None).unwrap();
        let err = check_key_mode(&engine, &key).unwrap_err().to_string();
        assert!(
            err.contains("readable by others") && err.contains("chmod 600"),
            "{err}"
        );
        assert!(err.contains("tcp://127.0.0.3:2376"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_key_mode(&engine, &key).unwrap();
    }

    #[test]
    fn tls_files_make_one_client_config_and_errors_keep_their_source() {
        use std::os::unix::fs::PermissionsExt;
        use topgun_tls::{CaParams, CertUsage, CertificateAuthority, LeafParams};
        let ca = CertificateAuthority::generate(&CaParams::new("docker-ca")).unwrap();
        let client = ca
            .issue(&LeafParams::new("client", CertUsage::Client))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new("tcp://127.0.0.3:2376", Source::DockerHost, None).unwrap();
        let source_of = |e: &Error| {
            let source = std::error::Error::source(e).expect("a source");
            assert!(source.is::<topgun_tls::Error>(), "{source:?}");
        };

        // No ca.pem.
        let err = tls_config(&engine, dir.path()).unwrap_err();
        assert!(err.to_string().contains("cannot read the CA"), "{err}");
        assert!(matches!(&err, Error::Engine { layer, .. } if *layer == "TLS"));
        source_of(&err);

        // A CA only: no client certificate, no resumption.
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        let config = tls_config(&engine, dir.path()).unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());
        assert!(format!("{:?}", config.resumption).contains("Disabled"));

        // With the client's certificate and key.
        std::fs::write(dir.path().join("cert.pem"), &client.cert_pem).unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, client.key_pem.expose()).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = tls_config(&engine, dir.path()).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());

        // A key that is not one: named, never shown.
        let bogus =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS10ZXh0\n-----END PRIVATE KEY-----\n";
        std::fs::write(&key, bogus).unwrap();
        let err = tls_config(&engine, dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cert.pem and key.pem are unusable"), "{text}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
        source_of(&err);

        // A CA that is not PEM.
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let err = tls_config(&engine, dir.path()).unwrap_err();
        assert!(err.to_string().contains("ca.pem is unusable"), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Failed);
        source_of(&err);
    }

    /// A TLS engine that wants a client certificate: openssl s_server
    /// (`-www` answers the probe's `GET /_ping`, but is no Docker API).
    #[tokio::test]
    async fn a_tls_engine_is_dialled_with_the_client_certificate() {
        use std::os::unix::fs::PermissionsExt;
        use topgun_tls::{CaParams, CertUsage, CertificateAuthority, LeafParams};
        let ca = CertificateAuthority::generate(&CaParams::new("docker-ca")).unwrap();
        let server = ca
            .issue(
                &LeafParams::new("engine", CertUsage::Server)
                    .with_sans(topgun_tls::parse_san_list("127.0.0.1").unwrap()),
            )
            .unwrap();
        let client = ca
            .issue(&LeafParams::new("client", CertUsage::Client))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let ca_file = file("ca.pem", ca.cert_pem());
        let openssl = topgun_tls::testing::OpensslServer::start(
            &file("server.pem", &server.cert_pem),
            &file("server-key.pem", server.key_pem.expose()),
            &["-www", "-Verify", "1", "-CAfile", ca_file.to_str().unwrap()],
        )
        .expect("openssl s_server");
        let url = format!("tcp://127.0.0.1:{}", openssl.port());
        let engine = Engine::new(&url, Source::DockerHost, Some(dir.path().to_owned())).unwrap();

        // Without a client certificate the engine refuses the client.
        let Err(err) = connect(&engine).await else {
            panic!("connected without a client certificate");
        };
        assert!(
            matches!(
                &err,
                Error::Engine {
                    layer: "TLS handshake",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("refused this client"), "{err}");
        let source = std::error::Error::source(&err).expect("the handshake's error");
        assert!(source.is::<std::io::Error>(), "{source:?}");

        // With one, TLS and the probe pass; the API is not Docker's.
        file("cert.pem", &client.cert_pem);
        file("key.pem", client.key_pem.expose());
        let Err(err) = connect(&engine).await else {
            panic!("s_server is no Docker engine");
        };
        assert!(
            matches!(
                &err,
                Error::Engine {
                    layer: "engine API",
                    ..
                }
            ),
            "{err}"
        );
        let source = std::error::Error::source(&err).expect("bollard's error");
        assert!(source.is::<bollard::errors::Error>(), "{source:?}");
    }

    #[test]
    fn ssh_stderr_names_the_layer() {
        assert_eq!(
            ssh_failure("root@127.0.0.2: Permission denied (publickey).").0,
            "ssh authentication"
        );
        assert_eq!(
            ssh_failure("ssh: Could not resolve hostname nope: Name or service not known").0,
            "DNS"
        );
        assert_eq!(
            ssh_failure("ssh: connect to host 127.0.0.2 port 1: Connection refused").0,
            "TCP"
        );
        assert_eq!(
            ssh_failure("Host key verification failed.").0,
            "ssh host key"
        );
    }

    #[test]
    fn the_kubeconfig_names_the_engine_host_as_given() {
        let ip: IpAddr = "192.168.1.28".parse().unwrap();
        let server = crate::kubeconfig::kubeconfig_server;
        assert_eq!(server(Some("alien.io"), ip, 6550), "https://alien.io:6550");
        assert_eq!(server(None, ip, 6550), "https://192.168.1.28:6550");
        assert_eq!(server(Some("::1"), ip, 6550), "https://[::1]:6550");
        assert_eq!(
            crate::plan::extra_etcd_sans(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Vec::<IpAddr>::new()
        );
        assert_eq!(crate::plan::extra_etcd_sans(ip), vec![ip]);
    }

    #[test]
    fn ssh_argv_runs_dial_stdio() {
        let argv = ssh_argv(&Endpoint::parse("ssh://root@127.0.0.2:2222").unwrap());
        let tail: Vec<&str> = argv
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(tail, ["--", "127.0.0.2", "docker", "system", "dial-stdio"]);
        assert!(argv.windows(2).any(|w| w == ["-p", "2222"]));
        assert!(argv.windows(2).any(|w| w == ["-l", "root"]));
    }

    #[tokio::test]
    async fn an_unreachable_daemon_names_docker_host_and_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("unix://{}/docker.sock", dir.path().display());
        let err = connect_to(&socket).await.unwrap_err().to_string();
        assert!(err.contains(&socket), "{err}");
        assert!(err.contains("DOCKER_HOST"), "{err}");
        assert!(err.contains("unix:///var/run/docker.sock"), "{err}");
        let err = connect_to("ftp://nowhere").await.unwrap_err().to_string();
        assert!(err.contains("ftp://nowhere"), "{err}");
        // bollard's error is kept as the source; the operation failed.
        let err = connect_to(&socket).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Failed);
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.is::<bollard::errors::Error>(), "{source:?}");
    }
}
