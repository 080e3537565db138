//! `registries.yaml`: which endpoints, credentials and TLS settings image
//! pulls use, as k3s reads the file and as the containerd configuration it
//! generates from it behaves.
//!
//! k3s reads `/etc/rancher/k3s/registries.yaml` (`--private-registry`) at
//! start (`Using private registry config file at <path>`; a file that does
//! not parse is fatal) and writes containerd's registry hosts from it; a
//! change needs a restart. The stand-in does the same with its own
//! snapshot: at start the parsed file goes to
//! `<data-dir>/agent/etc/containerd/standin-registries.json` (mode 0600: it
//! may hold passwords), which `k3s crictl pull` (and `k3s ctr images pull
//! --hosts-dir ...`) read, as containerd reads the hosts k3s wrote.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::certs;
use crate::log;

/// The node's snapshot of its registry configuration, under the data dir.
pub const SNAPSHOT: &str = "agent/etc/containerd/standin-registries.json";
/// The host `docker.io` images are pulled from by default.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// The whole file: `mirrors` and `configs`, keyed by registry host (or
/// `"*"`). Unknown keys are ignored, as Go's YAML decoder ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registries {
    /// Mirror endpoints (and rewrites) per registry.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Option<Mirror>>,
    /// Credentials and TLS per endpoint host.
    #[serde(default)]
    pub configs: BTreeMap<String, Option<RegistryConfig>>,
}

/// One `mirrors` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    /// Endpoint URLs, tried in order before the default endpoint.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regular expression -> replacement, applied to the repository path
    /// for the mirror endpoints (never for the default endpoint).
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// One `configs` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryConfig {
    /// Credentials.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<Tls>,
}

/// `configs.<host>.auth`. `Debug` never shows the values.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// Basic auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<String>,
    /// `base64(user:password)`, instead of the two above.
    #[serde(default)]
    pub auth: Option<String>,
    /// An OAuth2 refresh token for the token server.
    #[serde(default)]
    pub identitytoken: Option<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "-" };
        f.debug_struct("Auth")
            .field("username", &set(&self.username))
            .field("password", &set(&self.password))
            .field("auth", &set(&self.auth))
            .field("identitytoken", &set(&self.identitytoken))
            .finish()
    }
}

impl Auth {
    /// The basic credentials, from `username`/`password` or `auth`.
    pub fn basic(&self) -> Option<(String, String)> {
        use base64::Engine;
        if let Some(user) = self.username.as_ref().filter(|u| !u.is_empty()) {
            return Some((user.clone(), self.password.clone().unwrap_or_default()));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_deref()?.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((user.to_owned(), password.to_owned()))
    }
}

/// `configs.<host>.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    /// CA bundle to trust (besides the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Trust any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
}

/// What a node runs with: the file's contents and the node's flag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistries {
    /// The parsed file (empty without one).
    pub registries: Registries,
    /// `--disable-default-registry-endpoint`.
    #[serde(rename = "disableDefaultEndpoint", default)]
    pub disable_default_endpoint: bool,
}

/// An endpoint URL: `scheme://host[:port]` and the path requests go under
/// (`/v2` unless the endpoint names another path, which is then used as
/// is, as containerd's `override_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` as written (brackets kept for IPv6).
    pub authority: String,
    /// The API root, `/v2` by default, never ending in `/`.
    pub base: String,
}

impl EndpointUrl {
    /// Parses an endpoint as k3s normalises it: no scheme means https; an
    /// empty path or `/` means `/v2`.
    pub fn parse(raw: &str) -> Result<EndpointUrl, String> {
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("https".to_owned(), raw),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "invalid endpoint {raw:?}: unsupported scheme {scheme:?}"
            ));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(format!("invalid endpoint {raw:?}: no host"));
        }
        let path = path.trim_end_matches('/');
        let base = if path.is_empty() {
            "/v2".to_owned()
        } else {
            path.to_owned()
        };
        Ok(EndpointUrl {
            scheme,
            authority: authority.to_owned(),
            base,
        })
    }

    /// `host` and `port` to dial.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        let default = if self.scheme == "https" { 443 } else { 80 };
        let (host, port) = if let Some(v6) = self.authority.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("invalid host {:?}", self.authority))?;
            (h.to_owned(), tail.strip_prefix(':'))
        } else {
            match self.authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (self.authority.clone(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("invalid port in {:?}", self.authority))?,
            None => default,
        };
        Ok((host, port))
    }

    /// The host name alone (for TLS server names and config lookups).
    pub fn host(&self) -> String {
        self.host_port()
            .map(|(h, _)| h)
            .unwrap_or_else(|_| self.authority.clone())
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base)
    }
}

/// One endpoint a pull tries, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to send requests.
    pub url: EndpointUrl,
    /// Rewrites for this endpoint (none for the default endpoint).
    pub rewrite: BTreeMap<String, String>,
    /// The registry the image belongs to, when this endpoint is a mirror
    /// for another registry (sent as the `ns` query parameter).
    pub mirror_of: Option<String>,
    /// Credentials and TLS for this endpoint's host.
    pub config: RegistryConfig,
}

/// Whether `host` (`name[:port]`) is the local machine, for which
/// containerd's default endpoint is plain HTTP.
fn is_localhost(host: &str) -> bool {
    let name = EndpointUrl {
        scheme: "http".into(),
        authority: host.to_owned(),
        base: String::new(),
    }
    .host();
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The default endpoint of a registry: `https://<host>/v2`
/// (`https://registry-1.docker.io/v2` for `docker.io`; plain HTTP for
/// localhost, as containerd's CRI does).
pub fn default_endpoint(registry: &str) -> EndpointUrl {
    let authority = if registry == "docker.io" {
        DOCKER_HUB_HOST.to_owned()
    } else {
        registry.to_owned()
    };
    EndpointUrl {
        scheme: if is_localhost(registry) {
            "http"
        } else {
            "https"
        }
        .into(),
        authority,
        base: "/v2".into(),
    }
}

impl Registries {
    /// Parses the file's text. Errors name the line and column, never a
    /// value (the file may hold passwords).
    pub fn parse(text: &str) -> Result<Registries, String> {
        let parsed: Option<Registries> = serde_norway::from_str(text).map_err(|e| {
            // serde's messages quote offending values: every quoted part
            // goes, the path and the kind of mistake stay.
            let what = e.to_string();
            let what = match what.find(" at line ") {
                Some(i) => &what[..i],
                None => &what,
            };
            let mut kind = String::new();
            let mut quote: Option<char> = None;
            for c in what.chars() {
                match (quote, c) {
                    (None, '"' | '`') => {
                        quote = Some(c);
                        kind.push_str("<value>");
                    }
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, c) => kind.push(c),
                }
            }
            match e.location() {
                Some(l) => format!(
                    "yaml: unmarshal errors: line {} column {}: {kind}",
                    l.line(),
                    l.column()
                ),
                None => format!("yaml: unmarshal errors: {kind}"),
            }
        })?;
        let registries = parsed.unwrap_or_default();
        for mirror in registries.mirrors.values().flatten() {
            for endpoint in &mirror.endpoint {
                EndpointUrl::parse(endpoint)?;
            }
            for pattern in mirror.rewrite.keys() {
                regex::Regex::new(pattern)
                    .map_err(|e| format!("invalid rewrite pattern {pattern:?}: {e}"))?;
            }
        }
        Ok(registries)
    }

    /// The config for an endpoint host: its own entry, else `"*"`.
    fn config_for(&self, authority: &str) -> RegistryConfig {
        self.configs
            .get(authority)
            .or_else(|| self.configs.get("*"))
            .cloned()
            .flatten()
            .unwrap_or_default()
    }

    /// The endpoints a pull from `registry` tries, in order: the mirror's
    /// (the registry's own entry, else `"*"`), without those equal to the
    /// default endpoint, then the default endpoint unless the node
    /// disables it for a registry that has its own mirror entry.
    pub fn endpoints(&self, registry: &str, disable_default: bool) -> Vec<Endpoint> {
        let own = self.mirrors.get(registry);
        let mirror = own.or_else(|| self.mirrors.get("*")).cloned().flatten();
        let default = default_endpoint(registry);
        let mut out: Vec<Endpoint> = Vec::new();
        if let Some(mirror) = mirror {
            for raw in &mirror.endpoint {
                let Ok(url) = EndpointUrl::parse(raw) else {
                    continue;
                };
                if url == default || out.iter().any(|e| e.url == url) {
                    continue;
                }
                let config = self.config_for(&url.authority);
                out.push(Endpoint {
                    mirror_of: (url.authority != registry).then(|| registry.to_owned()),
                    url,
                    rewrite: mirror.rewrite.clone(),
                    config,
                });
            }
        }
        if !(disable_default && own.is_some()) {
            out.push(Endpoint {
                config: self.config_for(if registry == "docker.io" {
                    registry
                } else {
                    &default.authority
                }),
                url: default,
                rewrite: BTreeMap::new(),
                mirror_of: None,
            });
        }
        out
    }
}

/// Applies an endpoint's rewrites to a repository path: the first pattern
/// (in sorted order) that changes it wins.
pub fn rewrite(repository: &str, rules: &BTreeMap<String, String>) -> String {
    for (pattern, replacement) in rules {
        let Ok(re) = regex::Regex::new(pattern) else {
            continue;
        };
        let out = re.replace_all(repository, replacement.as_str());
        if out != repository {
            return out.into_owned();
        }
    }
    repository.to_owned()
}

/// Reads the node's registries file at start, as k3s does: a missing file
/// is no configuration; otherwise `Using private registry config file at
/// <path>` is logged, and a file that cannot be read or parsed is the
/// error returned (fatal for the caller). The result is written to the
/// node's snapshot (or a stale snapshot removed).
pub fn load_for_node(
    path: &Path,
    disable_default_endpoint: bool,
    data_dir: &Path,
) -> Result<NodeRegistries, String> {
    let registries = match std::fs::read_to_string(path) {
        Ok(text) => {
            log::info(format!(
                "Using private registry config file at {}",
                path.display()
            ));
            Registries::parse(&text)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registries::default(),
        Err(e) => return Err(format!("open {}: {e}", path.display())),
    };
    let node = NodeRegistries {
        registries,
        disable_default_endpoint,
    };
    let snapshot = data_dir.join(SNAPSHOT);
    let bytes = serde_json::to_vec_pretty(&node).map_err(|e| e.to_string())?;
    certs::write_atomic(&snapshot, &bytes, 0o600)
        .map_err(|e| format!("writing {}: {e}", snapshot.display()))?;
    Ok(node)
}

/// The registry configuration the node started with (none if it never
/// started, or had no file).
pub fn node_snapshot(data_dir: &Path) -> NodeRegistries {
    std::fs::read(data_dir.join(SNAPSHOT))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://registry.localhost:5000"
      - "https://registry-1.docker.io"
      - "mirror.example.com/custom/path/"
    rewrite:
      "^library/(.*)": "hub/$1"
  "*":
    endpoint: ["https://all.example.com:8443"]
  only.example.com:
configs:
  "registry.localhost:5000":
    auth:
      username: user
      password: secret-password
  "*":
    tls:
      insecure_skip_verify: true
  docker.io:
unknown-key: ignored
"#;

    #[test]
    fn parses_like_k3s_and_orders_endpoints_like_containerd() {
        let r = Registries::parse(FILE).unwrap();
        let hub = r.endpoints("docker.io", false);
        let urls: Vec<String> = hub.iter().map(|e| e.url.to_string()).collect();
        // The endpoint equal to the default one is dropped and the default
        // comes last; a path is kept as the API root.
        assert_eq!(
            urls,
            [
                "http://registry.localhost:5000/v2",
                "https://mirror.example.com/custom/path",
                "https://registry-1.docker.io/v2",
            ]
        );
        assert_eq!(hub[0].mirror_of.as_deref(), Some("docker.io"));
        assert_eq!(
            hub[0].config.auth.as_ref().unwrap().basic(),
            Some(("user".into(), "secret-password".into()))
        );
        // `"*"` configs apply to hosts without their own entry.
        assert_eq!(
            hub[1].config.tls.as_ref().unwrap().insecure_skip_verify,
            Some(true)
        );
        assert!(hub[2].rewrite.is_empty(), "no rewrites on the default");
        assert_eq!(hub[2].config, RegistryConfig::default(), "docker.io: empty");
        assert_eq!(rewrite("library/busybox", &hub[0].rewrite), "hub/busybox");
        assert_eq!(rewrite("me/app", &hub[0].rewrite), "me/app");
        // The wildcard mirror, then the registry's own default endpoint.
        let other: Vec<String> = r
            .endpoints("ghcr.io", false)
            .iter()
            .map(|e| e.url.to_string())
            .collect();
        assert_eq!(
            other,
            ["https://all.example.com:8443/v2", "https://ghcr.io/v2"]
        );
        // A mirror entry without endpoints, and the default disabled.
        assert!(r.endpoints("only.example.com", true).is_empty());
        assert_eq!(r.endpoints("ghcr.io", true).len(), 2, "not its own entry");
        assert_eq!(
            r.endpoints("localhost:5000", false)
                .last()
                .unwrap()
                .url
                .to_string(),
            "http://localhost:5000/v2"
        );
        assert!(!format!("{r:?}").contains("secret-password"));
    }

    #[test]
    fn bad_files_are_refused_without_quoting_values() {
        assert_eq!(Registries::parse("").unwrap(), Registries::default());
        for bad in [
            "mirrors: [unclosed secret-value",
            "mirrors:\n  docker.io:\n    endpoint: {a: secret-value}\n",
            "configs:\n  x:\n    auth: secret-value\n",
            "mirrors:\n  x:\n    endpoint: [\"ftp://secret-value\"]\n",
            "mirrors:\n  x:\n    rewrite: {\"(unclosed\": \"y\"}\n",
        ] {
            let err = Registries::parse(bad).unwrap_err();
            assert!(
                !err.contains("secret-value") || bad.contains("ftp"),
                "{err}"
            );
        }
        let err = Registries::parse("configs:\n  x:\n    auth: secret-value\n").unwrap_err();
        assert!(err.starts_with("yaml: unmarshal errors: line 3"), "{err}");
    }

    #[test]
    fn load_writes_and_clears_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("registries.yaml");
        std::fs::write(&file, FILE).unwrap();
        let node = load_for_node(&file, true, dir.path()).unwrap();
        assert!(node.disable_default_endpoint);
        assert_eq!(node_snapshot(dir.path()), node);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SNAPSHOT))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let node = load_for_node(&dir.path().join("missing.yaml"), false, dir.path()).unwrap();
        assert_eq!(node_snapshot(dir.path()), node);
        assert!(node.registries.mirrors.is_empty());
        std::fs::write(&file, "mirrors: [").unwrap();
        assert!(load_for_node(&file, false, dir.path()).is_err());
    }
}
