//! How long each phase may take ([`Timeouts`]) and how durations are
//! written (`90s`, `3m`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use crate::{Error, Result};

/// How long each phase of a create may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct Timeouts {
    /// etcd members until the cluster is healthy.
    #[serde(default = "Timeouts::default_etcd", deserialize_with = "de_duration")]
    pub etcd: Duration,
    /// Each server until `k3s is up and running`.
    #[serde(default = "Timeouts::default_server", deserialize_with = "de_duration")]
    pub server: Duration,
    /// Each agent until `Successfully registered node`.
    #[serde(default = "Timeouts::default_agent", deserialize_with = "de_duration")]
    pub agent: Duration,
    /// The API through the load balancer until `/readyz` answers ok.
    #[serde(default = "Timeouts::default_api", deserialize_with = "de_duration")]
    pub api: Duration,
    /// The whole create, from its first Docker call to success; `None`:
    /// only the phases are bounded.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub total: Option<Duration>,
}

fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

impl Timeouts {
    /// How long a node of `role` may take to be ready.
    pub(crate) fn for_role(&self, role: super::Role) -> Duration {
        match role {
            super::Role::Etcd => self.etcd,
            super::Role::Agent => self.agent,
            super::Role::LoadBalancer => self.api,
            super::Role::Server => self.server,
        }
    }

    fn default_etcd() -> Duration {
        Duration::from_secs(60)
    }
    fn default_server() -> Duration {
        Duration::from_secs(180)
    }
    fn default_agent() -> Duration {
        Duration::from_secs(120)
    }
    fn default_api() -> Duration {
        Duration::from_secs(60)
    }

    /// Every phase, and the whole create, bounded by `timeout`.
    pub fn all(timeout: Duration) -> Self {
        Timeouts {
            etcd: timeout,
            server: timeout,
            agent: timeout,
            api: timeout,
            total: Some(timeout),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            etcd: Timeouts::default_etcd(),
            server: Timeouts::default_server(),
            agent: Timeouts::default_agent(),
            api: Timeouts::default_api(),
            total: None,
        }
    }
}

/// Parses a duration: `500ms`, `90s`, `3m`, `1h`, or a bare number of seconds.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            format!("duration {s:?}"),
            "is not a duration",
            "write e.g. `90s`, `3m`, `500ms` or `1h`",
        )
    };
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(Error::invalid(
            format!("duration {s:?}"),
            "is zero",
            "give a positive duration",
        ));
    }
    Ok(d)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 90s or 3m")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Duration, E> {
            parse_duration(&v.to_string()).map_err(E::custom)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}
