//! Where the k3s servers keep their state.

use std::fmt;
use std::path::PathBuf;

use serde::de;
use serde::{Deserialize, Deserializer};

use crate::{Error, Result};

/// The datastore of the k3s servers.
///
/// In YAML: `datastore: embedded`, `datastore: {etcd: {members: 3}}` or
/// `datastore: {external: {endpoint: ..., ca: ..., cert: ..., key: ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Datastore {
    /// k3s's own store: SQLite for one server; with more, server-0 runs
    /// `--cluster-init` (embedded etcd) and the others join it.
    #[default]
    Embedded,
    /// An etcd cluster that topgun provisions, with mutual TLS.
    Etcd(EtcdDatastore),
    /// A datastore the user runs.
    External(ExternalDatastore),
}

impl Datastore {
    /// `embedded`, `etcd` or `external`, as used in labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Datastore::Embedded => "embedded",
            Datastore::Etcd(_) => "etcd",
            Datastore::External(_) => "external",
        }
    }

    /// An etcd datastore provisioned by topgun with `members` members.
    pub fn etcd(members: u32) -> Self {
        Datastore::Etcd(EtcdDatastore {
            members,
            image: None,
        })
    }

    /// An external datastore at `endpoint`.
    pub fn external(endpoint: &str) -> Result<Self> {
        Ok(Datastore::External(ExternalDatastore {
            endpoint: DatastoreEndpoint::parse(endpoint)?,
            ca: None,
            cert: None,
            key: None,
        }))
    }
}

const KINDS: &[&str] = &["embedded", "etcd", "external"];

impl<'de> Deserialize<'de> for Datastore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Datastore;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "`embedded`, `etcd`, `{etcd: {members: N}}` or `{external: {endpoint: ...}}`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Datastore, E> {
                match v {
                    "embedded" => Ok(Datastore::Embedded),
                    "etcd" => Ok(Datastore::Etcd(EtcdDatastore::default())),
                    "external" => Err(E::custom(
                        "`external` needs an endpoint: `external: {endpoint: ...}`",
                    )),
                    other => Err(E::unknown_variant(other, KINDS)),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Datastore, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty datastore; write `embedded`, `etcd: {...}` or `external: {...}`",
                    ));
                };
                let value = match key.as_str() {
                    "embedded" => {
                        map.next_value::<de::IgnoredAny>()?;
                        Datastore::Embedded
                    }
                    "etcd" => Datastore::Etcd(
                        map.next_value::<Option<EtcdDatastore>>()?
                            .unwrap_or_default(),
                    ),
                    "external" => Datastore::External(map.next_value()?),
                    other => return Err(de::Error::unknown_variant(other, KINDS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a datastore is one kind; remove `{extra}`"
                    )));
                }
                Ok(value)
            }
        }
        d.deserialize_any(V)
    }
}

/// An etcd cluster provisioned by topgun.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct EtcdDatastore {
    /// How many members (1, 3, 5 or 7 are sensible).
    #[serde(default = "default_members")]
    pub members: u32,
    /// The etcd image; `None` means `TOPGUN_ETCD_IMAGE` or the default.
    #[serde(default)]
    pub image: Option<String>,
}

impl Default for EtcdDatastore {
    fn default() -> Self {
        EtcdDatastore {
            members: default_members(),
            image: None,
        }
    }
}

fn default_members() -> u32 {
    3
}

/// A datastore run by the user: an endpoint and, for TLS, the files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct ExternalDatastore {
    /// The endpoint, in any form k3s accepts.
    pub endpoint: DatastoreEndpoint,
    /// The CA file that signs the datastore's certificate.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The client certificate file.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The client key file.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl ExternalDatastore {
    /// Sets the TLS files.
    pub fn with_tls(
        mut self,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Self {
        self.ca = ca;
        self.cert = cert;
        self.key = key;
        self
    }
}

/// The kind of an external datastore endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// `https://h1:2379,https://h2:2379` (or `http://`).
    Etcd,
    /// `postgres://user:pass@host:5432/db`.
    Postgres,
    /// `mysql://user:pass@tcp(host:3306)/db`.
    Mysql,
    /// `sqlite://path` (one server only).
    Sqlite,
}

/// A validated `--datastore-endpoint`. It may hold a password: `Debug` and
/// `Display` show it with the password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatastoreEndpoint {
    raw: String,
    kind: EndpointKind,
}

impl DatastoreEndpoint {
    /// Validates an endpoint in one of the forms k3s accepts.
    pub fn parse(raw: &str) -> Result<Self> {
        if topgun_tls::redact::looks_like_pem(raw) {
            return Err(Error::invalid(
                format!(
                    "datastore endpoint {}",
                    topgun_tls::redact::describe_pem(raw)
                ),
                "is PEM text (a certificate or key), not an endpoint",
                "pass the key as a file with --datastore-keyfile, and the endpoint as \
                 https://host:2379 (etcd), postgres://... or mysql://...",
            ));
        }
        let shown = redact(raw);
        let what = || format!("datastore endpoint {shown:?}");
        let forms = "use `https://host:2379[,https://host2:2379]` (etcd), \
                     `postgres://user:pass@host:5432/db` or `mysql://user:pass@tcp(host:3306)/db`";
        let Some((scheme, rest)) = raw.split_once("://") else {
            let problem = if matches!(raw, "etcd" | "postgres" | "mysql" | "sqlite") {
                "is a datastore kind, not an endpoint (older k3s silently fell back to SQLite on this)"
            } else {
                "is not of the form <scheme>://..."
            };
            return Err(Error::invalid(what(), problem, forms));
        };
        if raw.chars().any(char::is_whitespace) {
            return Err(Error::invalid(what(), "contains whitespace", forms));
        }
        let kind = match scheme {
            "http" | "https" => {
                for (i, url) in raw.split(',').enumerate() {
                    let Some((s, hostport)) = url.split_once("://") else {
                        // An item with '@' may be the rest of a password
                        // that held a ','.
                        let item = if url.contains('@') {
                            String::new()
                        } else {
                            format!(" ({url:?})")
                        };
                        return Err(Error::invalid(
                            what(),
                            format!("item {}{item} has no scheme", i + 1),
                            "write every member as https://host:port, separated by commas",
                        ));
                    };
                    if s != scheme {
                        return Err(Error::invalid(
                            what(),
                            "mixes http:// and https://",
                            "use one scheme for all members",
                        ));
                    }
                    check_host_port(&what(), hostport.trim_end_matches('/'), true)?;
                }
                EndpointKind::Etcd
            }
            "postgres" | "postgresql" => {
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                let hostport = authority.rsplit('@').next().unwrap_or_default();
                if hostport.is_empty() {
                    return Err(Error::invalid(
                        what(),
                        "has no host",
                        "write postgres://user:pass@host:5432/db",
                    ));
                }
                check_host_port(&what(), hostport, false)?;
                EndpointKind::Postgres
            }
            "mysql" => {
                let Some(start) = rest.find("tcp(") else {
                    return Err(Error::invalid(
                        what(),
                        "has no tcp(host:port) address",
                        "write mysql://user:pass@tcp(host:3306)/db",
                    ));
                };
                let inner = &rest[start + 4..];
                let Some(end) = inner.find(')') else {
                    return Err(Error::invalid(
                        what(),
                        "has an unclosed tcp(",
                        "write mysql://user:pass@tcp(host:3306)/db",
                    ));
                };
                check_host_port(&what(), &inner[..end], false)?;
                EndpointKind::Mysql
            }
            "sqlite" => EndpointKind::Sqlite,
            "unix" | "unixs" => {
                return Err(Error::invalid(
                    what(),
                    "is a unix socket, which does not exist inside the node containers",
                    forms,
                ));
            }
            other => {
                return Err(Error::invalid(
                    what(),
                    format!("has the unsupported scheme {other:?}"),
                    forms,
                ));
            }
        };
        Ok(DatastoreEndpoint {
            raw: raw.to_owned(),
            kind,
        })
    }

    /// The kind of datastore.
    pub fn kind(&self) -> EndpointKind {
        self.kind
    }

    /// The endpoint exactly as given. It may hold a password.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// Whether any host in the endpoint is a loopback address, which inside
    /// a node container means the container itself.
    pub fn uses_loopback(&self) -> bool {
        ["127.", "localhost", "[::1]"].iter().any(|h| {
            self.raw.split(',').any(|u| {
                let after = u.split_once("://").map_or(u, |(_, r)| r);
                let after = after.rsplit_once('@').map_or(after, |(_, r)| r);
                let after = after.strip_prefix("tcp(").unwrap_or(after);
                after.starts_with(h)
            })
        })
    }
}

impl fmt::Debug for DatastoreEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatastoreEndpoint({:?})", redact(&self.raw))
    }
}

impl fmt::Display for DatastoreEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

impl<'de> Deserialize<'de> for DatastoreEndpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::spec::de_parsed(d, DatastoreEndpoint::parse)
    }
}

fn check_host_port(what: &str, hostport: &str, need_port: bool) -> Result<()> {
    if hostport.is_empty() {
        return Err(Error::invalid(
            what,
            "has an empty host",
            "name the host, e.g. host:2379",
        ));
    }
    if hostport.contains('/') {
        return Err(Error::invalid(
            what,
            "has a path after an etcd member",
            "give only scheme://host:port",
        ));
    }
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        match inner.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => {
                return Err(Error::invalid(
                    what,
                    "has an unclosed '['",
                    "write [::1]:2379",
                ));
            }
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(Error::invalid(
            what,
            "has an empty host",
            "name the host, e.g. host:2379",
        ));
    }
    match port {
        // A port that is not a number may be part of a password (a URL
        // whose userinfo was not percent-encoded): not quoted.
        Some(p) if !p.chars().all(|c| c.is_ascii_digit()) => {
            return Err(Error::invalid(
                what,
                "has a port that is not a number",
                "write host:port with a port from 1 to 65535 (percent-encode '@', ':', '/' and ',' \
                 in a password)",
            ));
        }
        Some(p) => {
            crate::spec::filter::parse_port("datastore port", p)?;
        }
        None if need_port => {
            return Err(Error::invalid(
                what,
                format!("has no port for {host}"),
                format!("write {host}:2379"),
            ));
        }
        None => {}
    }
    Ok(())
}

/// Replaces the password in `scheme://user:password@...` with `***`, in
/// every URL of the text. A URL's userinfo runs to the last `@` before the
/// next `://` (or the end), so a password holding `,`, `@` or `/` is hidden
/// whole.
pub(crate) fn redact(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let segment = &rest[..rest.find("://").unwrap_or(rest.len())];
        if let Some(at) = segment.rfind('@') {
            match segment[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(&segment[..at]),
            }
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_k3s_endpoint_form_is_accepted() {
        let cases = [
            (
                "https://h1:2379,https://h2:2379,https://h3:2379",
                EndpointKind::Etcd,
            ),
            ("http://10.0.0.5:2379", EndpointKind::Etcd),
            ("https://[fd00::1]:2379", EndpointKind::Etcd),
            (
                "postgres://user:pass@db.example:5432/k3s?sslmode=disable",
                EndpointKind::Postgres,
            ),
            ("postgresql://db.example/k3s", EndpointKind::Postgres),
            (
                "mysql://user:pass@tcp(db.example:3306)/k3s",
                EndpointKind::Mysql,
            ),
            (
                "sqlite:///var/lib/rancher/k3s/server/db/state.db",
                EndpointKind::Sqlite,
            ),
        ];
        for (raw, kind) in cases {
            assert_eq!(DatastoreEndpoint::parse(raw).unwrap().kind(), kind, "{raw}");
        }
    }

    #[test]
    fn bad_endpoints_are_refused_without_showing_passwords() {
        let cases = [
            ("etcd", "is a datastore kind, not an endpoint"),
            ("db.example:5432", "is not of the form <scheme>://"),
            ("https://h1", "has no port"),
            ("https://h1:2379,h2:2379", "has no scheme"),
            ("https://h1:2379,http://h2:2379", "mixes http"),
            ("https://h1:0", "port 0"),
            ("https://h1:2379/v3", "has a path"),
            ("mysql://user:hunter2@db:3306/k3s", "has no tcp(host:port)"),
            ("mysql://user:hunter2@tcp(db:3306/k3s", "unclosed tcp("),
            ("postgres://user:hunter2@/k3s", "has no host"),
            ("redis://db:6379", "unsupported scheme \"redis\""),
            ("unix:///run/etcd.sock", "unix socket"),
        ];
        for (raw, expected) in cases {
            let err = DatastoreEndpoint::parse(raw).unwrap_err().to_string();
            assert!(err.contains(expected), "{raw}: {err}");
            assert!(!err.contains("hunter2"), "{raw}: {err}");
        }
    }

    #[test]
    fn debug_and_display_redact_the_password() {
        let e = DatastoreEndpoint::parse("postgres://k3s:hunter2@db:5432/k3s").unwrap();
        assert_eq!(e.to_string(), "postgres://k3s:***@db:5432/k3s");
        assert!(!format!("{e:?}").contains("hunter2"));
        assert_eq!(e.expose(), "postgres://k3s:hunter2@db:5432/k3s");
    }

    #[test]
    fn loopback_hosts_are_noticed() {
        assert!(
            DatastoreEndpoint::parse("https://127.0.0.1:2379")
                .unwrap()
                .uses_loopback()
        );
        assert!(
            DatastoreEndpoint::parse("mysql://u:p@tcp(localhost:3306)/k")
                .unwrap()
                .uses_loopback()
        );
        assert!(
            !DatastoreEndpoint::parse("https://10.0.0.1:2379")
                .unwrap()
                .uses_loopback()
        );
    }

    /// Found by `tests/fuzz.rs` (core::DatastoreEndpoint::parse): the
    /// password of a URL was split at its ',' and shown (Display, and
    /// errors); a non-numeric "port" (part of a password with '/' or '@')
    /// was quoted; a pasted key was repeated.
    #[test]
    fn fuzz_regression_passwords_and_keys_stay_hidden() {
        let e = DatastoreEndpoint::parse("sqlite://:PwDAa,@db").unwrap();
        assert!(!format!("{e} {e:?}").contains("PwD"), "{e}");
        assert_eq!(
            DatastoreEndpoint::parse("postgres://u:p,w@db:5432/x")
                .unwrap()
                .to_string(),
            "postgres://u:***@db:5432/x"
        );
        for bad in [
            "https://:PwDa0,@db",
            "https://u:PwDx@db",
            "postgres://u:PwD/x@db:5432/db",
        ] {
            let m = DatastoreEndpoint::parse(bad).unwrap_err().to_string();
            assert!(!m.contains("PwD"), "{bad}: {m}");
        }
        assert_eq!(
            DatastoreEndpoint::parse("mysql://u:P@ss@tcp(db:3306)/x")
                .unwrap()
                .to_string(),
            "mysql://u:***@tcp(db:3306)/x"
        );
        assert_eq!(
            redact("https://u:p@h1:2379,https://h2:2379,https://v:q@h3:2379"),
            "https://u:***@h1:2379,https://h2:2379,https://v:***@h3:2379"
        );
        let m = DatastoreEndpoint::parse("-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n").unwrap_err().to_string();
        assert!(!m.contains("AAAAAAAA") && m.contains("is PEM text"), "{m}");
    }
}
