//! What the user asks of registries: names ([`RegistryName`]), a registry
//! to create ([`RegistrySpec`]), one to use ([`RegistryRef`]), a cluster's
//! `registries` ([`RegistriesSpec`]) and the user's own `registries.yaml`
//! ([`RegistriesConfig`]). All validated here, before anything exists.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::spec::filter::parse_port;
use crate::{Error, Result};

/// The longest registry name (it is a DNS alias on cluster networks and
/// part of the container's name).
const MAX_NAME: usize = 63;
/// The largest `registries.yaml` topgun reads.
pub(crate) const MAX_CONFIG_BYTES: u64 = 256 * 1024;
/// What stands in for a secret in messages.
const REDACTED: &str = "<redacted>";

/// A registry's name: a lowercase DNS name (dots allowed, e.g.
/// `registry.localhost`), at most 63 characters. Clusters reach the
/// registry under this name; its container is `topgun-registry-NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistryName(String);

impl RegistryName {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Self> {
        let bad = |problem: &str| {
            Error::invalid(
                format!("registry name {name:?}"),
                problem.to_owned(),
                "use a DNS name of lowercase letters, digits, '-' and '.', e.g. registry.localhost",
            )
        };
        if name.is_empty() {
            return Err(bad("is empty"));
        }
        if name.len() > MAX_NAME {
            return Err(bad(&format!("is longer than {MAX_NAME} characters")));
        }
        if name.parse::<IpAddr>().is_ok() {
            return Err(bad("is an address, not a name"));
        }
        if name.chars().any(|c| c.is_ascii_uppercase())
            && RegistryName::new(&name.to_ascii_lowercase()).is_ok()
        {
            return Err(Error::invalid(
                format!("registry name {name:?}"),
                "has capital letters, which DNS and image references fold",
                format!("write it in lowercase: {}", name.to_ascii_lowercase()),
            ));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(bad("has an empty part between dots"));
            }
            if !label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(bad("has a character other than a-z, 0-9, '-' and '.'"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("has a part that starts or ends with '-'"));
            }
        }
        Ok(RegistryName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegistryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RegistryName {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RegistryName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::spec::de_parsed(d, RegistryName::new)
    }
}

/// Splits `NAME[:PORT]`.
fn name_and_port(s: &str, what: &str) -> Result<(RegistryName, Option<u16>)> {
    match s.rsplit_once(':') {
        Some((name, port)) => Ok((
            RegistryName::new(name)?,
            Some(parse_port(&format!("{what} {s:?}: port"), port)?),
        )),
        None => Ok((RegistryName::new(s)?, None)),
    }
}

/// A registry to create: `topgun registry create NAME [--port [HOST:]PORT]`,
/// or a cluster's `registries.create`.
///
/// In YAML the string `NAME[:PORT]` or a map
/// `{name: registry.localhost, host: 127.0.0.1, port: 5001, image: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RegistrySpec {
    /// Its name.
    pub name: RegistryName,
    /// The host address its port is published on (127.0.0.1 unless given).
    pub host: IpAddr,
    /// The host port; `None` picks a free one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The image; `None` means `TOPGUN_REGISTRY_IMAGE` or `registry:2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl RegistrySpec {
    /// A registry named `name` on 127.0.0.1 at a free port.
    pub fn new(name: &str) -> Result<Self> {
        Ok(RegistrySpec {
            name: RegistryName::new(name)?,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            image: None,
        })
    }

    /// Parses `NAME[:PORT]` (the form of `--registry-create`).
    pub fn parse(s: &str) -> Result<Self> {
        let (name, port) = name_and_port(s, "registry")?;
        Ok(RegistrySpec {
            name,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            image: None,
        })
    }

    /// Sets where the port is published from `[HOST:]PORT` (the form of
    /// `--port`; `HOST:` alone picks a free port on HOST).
    pub fn with_port(mut self, s: &str) -> Result<Self> {
        let bad_host = |h: &str| {
            Error::invalid(
                format!("registry port {s:?}"),
                format!("has the host {h:?}, which is not an IP address"),
                "write [HOST:]PORT, e.g. 5001 or 127.0.0.1:5001",
            )
        };
        let (host, port) = if let Some(inner) = s.strip_prefix('[') {
            let (h, rest) = inner.split_once(']').ok_or_else(|| bad_host(s))?;
            let host: IpAddr = h.parse().map_err(|_| bad_host(h))?;
            (Some(host), rest.strip_prefix(':').unwrap_or(rest))
        } else if let Some((h, p)) = s.rsplit_once(':') {
            (Some(h.parse().map_err(|_| bad_host(h))?), p)
        } else {
            (None, s)
        };
        if let Some(host) = host {
            self.host = host;
        }
        self.port = if port.is_empty() && host.is_some() {
            None
        } else {
            Some(parse_port("registry port", port)?)
        };
        Ok(self)
    }

    /// Sets the image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Checks what [`RegistrySpec::parse`] cannot: the image reference.
    pub fn validate(&self) -> Result<()> {
        if let Some(image) = &self.image
            && (image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::invalid(
                format!("registry image {image:?}"),
                "is not an image reference",
                "write e.g. registry:2",
            ));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for RegistrySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            name: RegistryName,
            #[serde(default)]
            host: Option<IpAddr>,
            #[serde(default)]
            port: Option<u16>,
            #[serde(default)]
            image: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RegistrySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"NAME[:PORT]\" or {name, host, port}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<RegistrySpec, E> {
                RegistrySpec::parse(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<RegistrySpec, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if full.port == Some(0) {
                    return Err(de::Error::custom(
                        "registry port 0 is not a port: give 1 to 65535, or leave it out",
                    ));
                }
                Ok(RegistrySpec {
                    name: full.name,
                    host: full.host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    port: full.port,
                    image: full.image,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A topgun registry a cluster uses: `NAME[:PORT]` (the form of
/// `--registry-use`). The port, when given, must be the one the registry
/// is published on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryRef {
    /// The registry's name.
    pub name: RegistryName,
    /// Its host port, if given.
    pub port: Option<u16>,
}

impl RegistryRef {
    /// Parses `NAME[:PORT]`.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, port) = name_and_port(s, "registry")?;
        Ok(RegistryRef { name, port })
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl Serialize for RegistryRef {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RegistryRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::spec::de_parsed(d, RegistryRef::parse)
    }
}

/// A cluster's registries (`registries:` in a cluster spec):
///
/// ```yaml
/// registries:
///   create: {name: registry.localhost, host: 127.0.0.1, port: 5001}  # or "registry.localhost:5001"
///   use: ["shared.localhost:5002"]                                    # NAME or NAME:PORT
///   config: |                                                         # your registries.yaml
///     mirrors: {...}
/// ```
///
/// Every k3s node gets `/etc/rancher/k3s/registries.yaml` with mirrors of
/// each registry (`NAME:PORT` and `localhost:PORT` → `http://NAME:5000`),
/// merged with `config` (whose entries win).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistriesSpec {
    /// A registry the create makes; it belongs to the cluster (rolled back
    /// with it, deleted with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<RegistrySpec>,
    /// Registries that exist already; the cluster only uses them.
    #[serde(default, rename = "use", skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<RegistryRef>,
    /// The user's own `registries.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RegistriesConfig>,
}

impl RegistriesSpec {
    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.create.is_none() && self.uses.is_empty() && self.config.is_none()
    }

    /// Checks names are unique and the created registry's image.
    pub(crate) fn validate(&self) -> Result<()> {
        let mut seen: Vec<&RegistryName> = Vec::new();
        if let Some(create) = &self.create {
            create.validate()?;
            seen.push(&create.name);
        }
        for r in &self.uses {
            if seen.contains(&&r.name) {
                return Err(Error::invalid(
                    format!("registry {}", r.name),
                    "is named twice (created or used)",
                    "name each registry once: --registry-create makes one, --registry-use takes \
                     one that exists",
                ));
            }
            seen.push(&r.name);
        }
        Ok(())
    }

    /// The registries as `(name, host port)`, every port pinned; a port
    /// left open is a bug (the runtime pins them before planning).
    pub(crate) fn pinned(&self) -> Result<Vec<(RegistryName, u16)>> {
        let mut out = Vec::new();
        if let Some(c) = &self.create {
            out.push((c.name.clone(), c.port));
        }
        out.extend(self.uses.iter().map(|r| (r.name.clone(), r.port)));
        out.into_iter()
            .map(|(name, port)| {
                port.map(|p| (name, p)).ok_or_else(|| {
                    Error::bug(
                        "the registries of the plan",
                        "a registry's port is not pinned",
                    )
                })
            })
            .collect()
    }
}

/// A user's `registries.yaml` (`--registry-config FILE`, or `config:` in
/// the spec), validated: `mirrors` (`endpoint` lists, `rewrite` maps) and
/// `configs` (`auth`: `username`, `password`, `auth`, `identitytoken`;
/// `tls`: `ca_file`, `cert_file`, `key_file`, `insecure_skip_verify`), as
/// k3s reads them. It may hold passwords: `Debug` shows only its size and
/// errors never quote them.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistriesConfig {
    text: String,
}

impl fmt::Debug for RegistriesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistriesConfig({} bytes)", self.text.len())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "read only to check the file's shape")]
struct FileShape {
    #[serde(default)]
    mirrors: Option<BTreeMap<String, Option<MirrorShape>>>,
    #[serde(default)]
    configs: Option<BTreeMap<String, Option<ConfigShape>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "read only to check the file's shape")]
struct MirrorShape {
    #[serde(default)]
    endpoint: Option<Vec<String>>,
    #[serde(default)]
    rewrite: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "read only to check the file's shape")]
struct ConfigShape {
    #[serde(default)]
    auth: Option<AuthShape>,
    #[serde(default)]
    tls: Option<TlsShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "read only to check the file's shape")]
struct AuthShape {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "read only to check the file's shape")]
struct TlsShape {
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    insecure_skip_verify: Option<bool>,
}

/// The words of a `configs` section that may show in messages.
const CONFIG_WORDS: &[&str] = &[
    "auth",
    "tls",
    "username",
    "password",
    "identitytoken",
    "ca_file",
    "cert_file",
    "key_file",
    "insecure_skip_verify",
    "true",
    "false",
];

/// Every scalar under `configs` (keys too) but the field names: what errors
/// must not quote, since a password may sit in any of them when the file is
/// mistyped (a missing colon turns `password x` into a key). Registry hosts
/// under `configs` are cut too; the line and column still say where.
fn secrets_of(value: &serde_norway::Value) -> Vec<String> {
    fn walk(v: &serde_norway::Value, out: &mut Vec<String>) {
        use serde_norway::Value;
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            Value::Sequence(items) => items.iter().for_each(|i| walk(i, out)),
            // A mistyped line can turn a password into a key.
            Value::Mapping(map) => {
                for (k, v) in map {
                    walk(k, out);
                    walk(v, out);
                }
            }
            Value::Tagged(t) => walk(&t.value, out),
            Value::Null => {}
        }
    }
    let mut out = Vec::new();
    if let Some(configs) = value.get("configs") {
        walk(configs, &mut out);
    }
    out.retain(|s| !s.is_empty() && !CONFIG_WORDS.contains(&s.as_str()));
    // The longest first, so that a secret containing another is cut whole.
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// `text` with every whole occurrence of `secret` (not inside a longer
/// word) replaced by [`REDACTED`].
fn cut(text: &str, secret: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(secret) {
        let before = rest[..i].chars().last().or_else(|| out.chars().last());
        let after = rest[i + secret.len()..].chars().next();
        out.push_str(&rest[..i]);
        if word(before) || word(after) {
            out.push_str(secret);
        } else {
            out.push_str(REDACTED);
        }
        rest = &rest[i + secret.len()..];
    }
    out.push_str(rest);
    out
}

/// `text` with every double-quoted string cut out, and every `quoted` name
/// that is not a plain field name (lowercase letters and '_', as every
/// field of the file is): the parser quotes values it cannot take and keys
/// it does not know, and on a mistyped line either may be a password.
fn cut_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest[i..].chars().next().expect("found");
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        // The end: the next quote not escaped by a backslash.
        let mut escaped = false;
        let end = tail.char_indices().find_map(|(j, c)| {
            let found = c == quote && !escaped;
            escaped = c == '\\' && !escaped;
            found.then_some(j)
        });
        let Some(end) = end else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &tail[..end];
        let plain = quote == '`'
            && !inner.is_empty()
            && inner.len() <= 32
            && inner.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        out.push(quote);
        out.push_str(if plain { inner } else { REDACTED });
        out.push(quote);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The parser's message, its line kept, every secret cut out.
fn message(e: &serde_norway::Error, secrets: &[String]) -> String {
    let mut text = e.to_string();
    for s in secrets {
        // As written, and as the parser quotes it (escaped).
        let escaped = format!("{s:?}");
        text = cut(&text, &escaped[1..escaped.len() - 1]);
        text = cut(&text, s);
    }
    let mut text = topgun_tls::redact::parser_message(&cut_quoted(&text));
    for s in secrets {
        text = cut(&text, s);
    }
    match e.location() {
        Some(loc) if !text.contains("line") => {
            format!("line {} column {}: {text}", loc.line(), loc.column())
        }
        _ => text,
    }
}

impl RegistriesConfig {
    /// Reads and checks `text`; `origin` names it in messages (a path, or
    /// `<registries config>`).
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let config = |message: String| Error::Config {
            path: origin.to_owned(),
            message,
        };
        crate::spec::check_yaml_shape(text).map_err(config)?;
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| config(message(&e, &[])))?;
        if value.is_null() {
            return Ok(RegistriesConfig {
                text: String::new(),
            });
        }
        if !value.is_mapping() {
            return Err(config(
                "is not a registries.yaml: it has to be a map with `mirrors` and/or `configs`"
                    .to_owned(),
            ));
        }
        let secrets = secrets_of(&value);
        let shape: FileShape =
            serde_norway::from_str(text).map_err(|e| config(message(&e, &secrets)))?;
        for (host, mirror) in shape.mirrors.iter().flatten() {
            for endpoint in mirror.iter().flat_map(|m| m.endpoint.iter().flatten()) {
                let scheme_ok = match endpoint.split_once("://") {
                    Some((scheme, rest)) => {
                        matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
                            && !rest.is_empty()
                    }
                    None => !endpoint.is_empty(),
                };
                if !scheme_ok || endpoint.chars().any(char::is_whitespace) {
                    return Err(config(format!(
                        "mirrors.{host}: endpoint {endpoint:?} is not an http:// or https:// URL"
                    )));
                }
            }
        }
        Ok(RegistriesConfig {
            text: text.to_owned(),
        })
    }

    /// Reads and checks a file of at most 256 KiB (devices, FIFOs and larger
    /// files are refused before they are read).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = topgun_tls::read::bounded_text(path, MAX_CONFIG_BYTES)?;
        RegistriesConfig::parse(&text, path)
    }

    /// The text, as given (it may hold passwords: never log it).
    pub fn expose(&self) -> &str {
        &self.text
    }
}

impl Serialize for RegistriesConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for RegistriesConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::spec::de_parsed(d, |text| {
            RegistriesConfig::parse(text, Path::new("<registries config>"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["registry.localhost", "reg", "a-b.c-d.example", "r1"] {
            RegistryName::new(ok).unwrap();
        }
        for bad in [
            "",
            "Registry",
            "-reg",
            "reg-",
            "a..b",
            "reg_1",
            "127.0.0.1",
            "a/b",
            &"x".repeat(64),
        ] {
            let err = RegistryName::new(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Input, "{bad}: {err}");
        }
    }

    #[test]
    fn create_and_use_forms() {
        let s = RegistrySpec::parse("registry.localhost:5001").unwrap();
        assert_eq!(
            (s.name.as_str(), s.port),
            ("registry.localhost", Some(5001))
        );
        let s = RegistrySpec::new("r")
            .unwrap()
            .with_port("0.0.0.0:5002")
            .unwrap();
        assert_eq!(
            (s.host.to_string(), s.port),
            ("0.0.0.0".to_owned(), Some(5002))
        );
        let s = RegistrySpec::new("r").unwrap().with_port("5003").unwrap();
        assert_eq!(
            (s.host.to_string(), s.port),
            ("127.0.0.1".to_owned(), Some(5003))
        );
        let s = RegistrySpec::new("r")
            .unwrap()
            .with_port("[::1]:5004")
            .unwrap();
        assert_eq!((s.host.to_string(), s.port), ("::1".to_owned(), Some(5004)));
        assert!(RegistrySpec::new("r").unwrap().with_port("host:5").is_err());
        assert!(RegistrySpec::new("r").unwrap().with_port("70000").is_err());
        assert!(RegistrySpec::parse("r:0").is_err());
        assert!(RegistrySpec::parse("r:x").is_err());
        let r = RegistryRef::parse("registry.localhost").unwrap();
        assert_eq!(r.port, None);
        assert_eq!(
            RegistryRef::parse("registry.localhost:5001")
                .unwrap()
                .to_string(),
            "registry.localhost:5001"
        );
    }

    #[test]
    fn the_spec_shape() {
        let text = "create: {name: registry.localhost, host: 127.0.0.1, port: 5001}\n\
                    use: [\"shared.localhost:5002\", other]\n\
                    config: |\n  mirrors:\n    docker.io:\n      endpoint: [\"http://m:5000\"]\n";
        let spec: RegistriesSpec = serde_norway::from_str(text).unwrap();
        assert_eq!(spec.create.as_ref().unwrap().port, Some(5001));
        assert_eq!(spec.uses.len(), 2);
        assert!(spec.config.as_ref().unwrap().expose().contains("docker.io"));
        let short: RegistriesSpec = serde_norway::from_str("create: r.localhost:5001").unwrap();
        assert_eq!(short.create.unwrap().port, Some(5001));
        // It goes through the record as JSON and comes back.
        let json = serde_json::to_string(&spec).unwrap();
        let back: RegistriesSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        let err = serde_norway::from_str::<RegistriesSpec>("uses: [a]").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn a_users_file_is_checked_and_its_secrets_never_shown() {
        let origin = Path::new("regs.yaml");
        RegistriesConfig::parse(
            "mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.example:5000\"]\n    rewrite:\n      \"^rancher/(.*)\": \"mirror/$1\"\n\
             configs:\n  \"mirror.example:5000\":\n    auth: {username: u, password: hunter2}\n    tls: {insecure_skip_verify: true}\n",
            origin,
        )
        .unwrap();
        let err = RegistriesConfig::parse("mirrors: {}\nmirorrs: {}\n", origin)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("mirorrs"), "{err}");
        let err = RegistriesConfig::parse(
            "configs:\n  r:\n    auth: {username: u, password: hunter2}\n    tls: {insecure_skip_verify: hunter2}\n",
            origin,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        let err = RegistriesConfig::parse(
            "configs:\n  r:\n    auth: {username: u, passwd: s3cret-pw}\n",
            origin,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("s3cret-pw"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        // Field names still show, not cut out of other words.
        assert!(err.contains("`username`, `password`"), "{err}");
        let err = RegistriesConfig::parse(
            "configs:\n  r:\n    auth:\n      password s3cret-pw\n",
            origin,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("s3cret-pw"), "{err}");
        let err = RegistriesConfig::parse("mirrors:\n  d:\n    endpoint: [\"ftp://x\"]\n", origin)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ftp://x"), "{err}");
        assert!(RegistriesConfig::parse("- a\n- b\n", origin).is_err());
        assert!(
            RegistriesConfig::parse("", origin)
                .unwrap()
                .expose()
                .is_empty()
        );
        let debug = format!(
            "{:?}",
            RegistriesConfig::parse("configs: {r: {auth: {password: pw-123}}}", origin).unwrap()
        );
        assert!(!debug.contains("pw-123"), "{debug}");
    }
}
