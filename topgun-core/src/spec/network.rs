//! The cluster network ([`NetworkSpec`]) and its [`Subnet`].

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use super::de_parsed;
use crate::{Error, Result};

/// The cluster network: a user-defined bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct NetworkSpec {
    /// The IPv4 subnet (prefix at most /24); `None` picks one that no Docker
    /// network uses.
    #[serde(default)]
    pub subnet: Option<Subnet>,
}

/// An IPv4 subnet such as `172.28.5.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(into = "String")]
pub struct Subnet {
    /// The network address.
    pub base: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `A.B.C.D/N` with `N` from 8 to 24 and no host bits set.
    pub fn parse(s: &str) -> Result<Self> {
        let what = || format!("subnet {s:?}");
        let (ip, prefix) = s.split_once('/').ok_or_else(|| {
            Error::invalid(what(), "has no prefix length", "write e.g. 172.28.5.0/24")
        })?;
        let base: Ipv4Addr = ip.parse().map_err(|_| {
            Error::invalid(what(), "is not an IPv4 network", "write e.g. 172.28.5.0/24")
        })?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=24).contains(p))
            .ok_or_else(|| {
                Error::invalid(
                    what(),
                    "needs a prefix from /8 to /24",
                    "write e.g. 172.28.5.0/24",
                )
            })?;
        let subnet = Subnet { base, prefix };
        let reserved = [
            ("127.0.0.0/8", "loopback"),
            ("169.254.0.0/16", "link-local"),
            ("224.0.0.0/4", "multicast"),
            ("240.0.0.0/4", "reserved"),
            ("0.0.0.0/8", "\"this network\""),
        ];
        for (range, kind) in reserved {
            let (ip, len) = range.split_once('/').expect("a CIDR");
            let other = Subnet {
                base: ip.parse().expect("an address"),
                prefix: len.parse().expect("a prefix"),
            };
            if subnet.overlaps(&other) {
                return Err(Error::invalid(
                    what(),
                    format!("overlaps the {kind} range {range}, which a bridge network cannot use"),
                    "use a private range such as 172.28.5.0/24, or leave it out to get a free one",
                ));
            }
        }
        if subnet.network() != base {
            return Err(Error::invalid(
                what(),
                "has host bits set",
                format!("write {}/{prefix}", subnet.network()),
            ));
        }
        Ok(subnet)
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) & self.mask())
    }

    /// The address `offset` past the network address.
    pub fn host(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + offset)
    }

    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask().min(other.mask()); // the shorter prefix
        (u32::from(self.base) & mask) == (u32::from(other.base) & mask)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Subnet::parse(s)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        de_parsed(d, Subnet::parse)
    }
}
