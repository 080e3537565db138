//! Where the Kubernetes API is published ([`ApiEndpoint`]) and the extra
//! names its certificate carries ([`SanList`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use topgun_tls::San;

use super::{de_parsed, filter};
use crate::{Error, Result};

/// Where the Kubernetes API is published: `[HOST:]PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// The host address; 127.0.0.1 unless given (never 0.0.0.0 by default).
    pub host: IpAddr,
    /// The host port; `None` picks a free one.
    pub port: Option<u16>,
}

impl Default for ApiEndpoint {
    fn default() -> Self {
        ApiEndpoint {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
        }
    }
}

impl ApiEndpoint {
    /// Parses `[HOST:]PORT`, `HOST:` (a free port on HOST) or
    /// `[IPV6]:[PORT]`. A bare host is refused: it reads like a port was
    /// forgotten.
    pub fn parse(s: &str) -> Result<Self> {
        let no_port = |h: &str| {
            Error::invalid(
                format!("API address {s:?}"),
                "has a host but no port",
                format!("write `{h}:6443` for a port, or `{h}:` to get a free one"),
            )
        };
        let bad_host = |h: &str| {
            Error::invalid(
                format!("API address {s:?}"),
                format!("has the host {h:?}, which is not an IP address"),
                "give an IP address of this host, e.g. 127.0.0.1 or 192.168.1.28",
            )
        };
        if let Some(inner) = s.strip_prefix('[') {
            let (host, port) = inner.split_once(']').ok_or_else(|| bad_host(s))?;
            let host: IpAddr = host.parse().map_err(|_| bad_host(host))?;
            let port = match port.strip_prefix(':') {
                Some("") => None,
                Some(p) => Some(filter::parse_port("API port", p)?),
                None if port.is_empty() => return Err(no_port(&format!("[{host}]"))),
                None => return Err(bad_host(s)),
            };
            return Ok(ApiEndpoint { host, port });
        }
        if !s.contains(':') {
            if s.chars().all(|c| c.is_ascii_digit()) {
                return Ok(ApiEndpoint {
                    port: Some(filter::parse_port("API port", s)?),
                    ..Default::default()
                });
            }
            let _: IpAddr = s.parse().map_err(|_| bad_host(s))?;
            return Err(no_port(s));
        }
        if s.parse::<IpAddr>().is_ok() {
            // A bare IPv6 address.
            return Err(no_port(&format!("[{s}]")));
        }
        let (host, port) = s.rsplit_once(':').expect("contains ':'");
        let host = host.parse().map_err(|_| bad_host(host))?;
        let port = if port.is_empty() {
            None
        } else {
            Some(filter::parse_port("API port", port)?)
        };
        Ok(ApiEndpoint { host, port })
    }

    /// The host clients should dial: the API host, or 127.0.0.1 when the API
    /// is bound to every address.
    pub fn dial_host(&self) -> IpAddr {
        if self.host.is_unspecified() {
            match self.host {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            }
        } else {
            self.host
        }
    }
}

/// `HOST:PORT`, or `HOST:` for a free port: the form
/// [`ApiEndpoint::parse`] reads.
impl fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            IpAddr::V6(h) => write!(f, "[{h}]:")?,
            IpAddr::V4(h) => write!(f, "{h}:")?,
        }
        match self.port {
            Some(p) => write!(f, "{p}"),
            None => Ok(()),
        }
    }
}

impl FromStr for ApiEndpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ApiEndpoint::parse(s)
    }
}

impl<'de> Deserialize<'de> for ApiEndpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ApiEndpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port or \"HOST:PORT\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<ApiEndpoint, E> {
                ApiEndpoint::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ApiEndpoint, E> {
                ApiEndpoint::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<ApiEndpoint, E> {
                ApiEndpoint::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of SANs, validated by topgun-tls. In YAML a list of strings or one
/// comma-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SanList(pub Vec<San>);

impl SanList {
    /// Parses one `--tls-san` value (a comma-separated list).
    pub fn parse(s: &str) -> Result<Vec<San>> {
        Ok(topgun_tls::parse_san_list(s)?)
    }
}

impl<'de> Deserialize<'de> for SanList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SanList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of names or addresses")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<SanList, E> {
                SanList::parse(v).map(SanList).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<SanList, A::Error> {
                let mut out = Vec::new();
                while let Some(SanItem(item)) = seq.next_element()? {
                    out.extend(item);
                }
                Ok(SanList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One item of a SAN list, parsed where it stands so errors name its line.
struct SanItem(Vec<San>);

impl<'de> Deserialize<'de> for SanItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        de_parsed(d, |s| SanList::parse(s).map(SanItem))
    }
}
