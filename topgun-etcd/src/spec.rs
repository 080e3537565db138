//! What the user asks for: an [`EtcdClusterSpec`], checked before anything
//! is generated.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::{Error, Result};

/// The default etcd image: a pinned release from etcd's primary registry.
/// Its binary is `/usr/local/bin/etcd` and it has no entrypoint.
///
/// This is the one default of topgun: topgun-core asks for it rather than
/// pinning its own. v3.5.21 is the newer of the two tags topgun used to pin
/// (core had v3.5.17): a later 3.5 patch release with the same flags and
/// API, carrying the fixes since.
pub const DEFAULT_IMAGE: &str = "gcr.io/etcd-development/etcd:v3.5.21";
/// The port etcd serves clients on.
pub const DEFAULT_CLIENT_PORT: u16 = 2379;
/// The port etcd members talk to each other on.
pub const DEFAULT_PEER_PORT: u16 = 2380;
/// etcd's own default heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
/// etcd's own default election timeout.
pub const DEFAULT_ELECTION: Duration = Duration::from_millis(1000);
/// The most members a cluster may have: 7.
///
/// etcd's FAQ ("What is maximum cluster size?") recommends at most seven
/// members: every write is replicated to all of them, so more members make
/// writes slower while five already tolerate two failures (Google's
/// Chubby, the model, runs five). topgun-core takes this limit from here,
/// so a spec is refused while it is checked, before anything is created.
pub const MAX_MEMBERS: usize = 7;
/// The longest cluster name: member names `topgun-<cluster>-etcd-<i>` must
/// stay a valid 63-character DNS label.
pub const MAX_CLUSTER_NAME: usize = 49;
/// etcd refuses election timeouts above 50 s.
const MAX_ELECTION: Duration = Duration::from_secs(50);
/// etcd warns above an 8 GiB backend quota.
const QUOTA_WARN: u64 = 8 * 1024 * 1024 * 1024;

/// An etcd cluster to plan: names, size, image, ports, TLS and tuning.
///
/// Build it with [`EtcdClusterSpec::new`] and the `with_*` methods, then turn
/// it into an [`crate::EtcdPlan`] with [`EtcdClusterSpec::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdClusterSpec {
    /// The cluster name (lowercase letters, digits and `-`); members are
    /// named `topgun-<cluster>-etcd-<i>`.
    pub cluster: String,
    /// The `--initial-cluster-token`. `None`: a fresh random token per plan,
    /// so two clusters never mistake each other's members. Not a secret.
    pub token: Option<String>,
    /// How many members: 1, 3, 5 or 7 (even counts are allowed with a warning).
    pub members: usize,
    /// The image the members run.
    pub image: String,
    /// The client port inside each member.
    pub client_port: u16,
    /// The peer port inside each member.
    pub peer_port: u16,
    /// Mutual TLS for clients and peers. On by default.
    pub tls: bool,
    /// `--heartbeat-interval`; etcd's default (100 ms) when `None`.
    pub heartbeat: Option<Duration>,
    /// `--election-timeout`; etcd's default (1 s) when `None`.
    pub election: Option<Duration>,
    /// `--quota-backend-bytes`; etcd's default (2 GiB) when `None`.
    pub quota_backend_bytes: Option<u64>,
    /// Static member addresses, one per member, in member order (topgun-core
    /// puts members on a Docker bridge with static IPs), used in client
    /// URLs and certificates. Peer URLs always use member names. Empty:
    /// members are reached by hostname.
    pub addresses: Vec<IpAddr>,
    /// More addresses every member's server certificate covers: the host
    /// address its client port is published on when clients dial it there
    /// (a remote Docker engine's address). Empty by default.
    pub client_sans: Vec<IpAddr>,
}

impl EtcdClusterSpec {
    /// Three members with mutual TLS, the default image and ports, and a
    /// random token.
    pub fn new(cluster: impl Into<String>) -> Self {
        EtcdClusterSpec {
            cluster: cluster.into(),
            token: None,
            members: 3,
            image: DEFAULT_IMAGE.to_owned(),
            client_port: DEFAULT_CLIENT_PORT,
            peer_port: DEFAULT_PEER_PORT,
            tls: true,
            heartbeat: None,
            election: None,
            quota_backend_bytes: None,
            addresses: Vec::new(),
            client_sans: Vec::new(),
        }
    }

    /// Sets the extra addresses every member's server certificate covers.
    pub fn with_client_sans(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.client_sans = addresses.into_iter().collect();
        self
    }

    /// Sets the member count.
    pub fn with_members(mut self, members: usize) -> Self {
        self.members = members;
        self
    }

    /// Sets the `--initial-cluster-token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// Sets the client and peer ports.
    pub fn with_ports(mut self, client_port: u16, peer_port: u16) -> Self {
        self.client_port = client_port;
        self.peer_port = peer_port;
        self
    }

    /// Turns mutual TLS on or off (on by default).
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the heartbeat interval and election timeout.
    pub fn with_timing(mut self, heartbeat: Duration, election: Duration) -> Self {
        self.heartbeat = Some(heartbeat);
        self.election = Some(election);
        self
    }

    /// Sets the backend quota in bytes.
    pub fn with_quota_backend_bytes(mut self, bytes: u64) -> Self {
        self.quota_backend_bytes = Some(bytes);
        self
    }

    /// Sets the static member addresses, one per member.
    pub fn with_addresses(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.addresses = addresses.into_iter().collect();
        self
    }

    /// The name (and hostname) of member `index`: `topgun-<cluster>-etcd-<index>`.
    pub fn member_name(&self, index: usize) -> String {
        member_name(&self.cluster, index)
    }

    /// Checks a member count alone, purely (no I/O): 1 to [`MAX_MEMBERS`]
    /// is accepted, an even count with [`SpecWarning::EvenMembers`]; 0 and
    /// more than [`MAX_MEMBERS`] are an [`Error::InvalidSpec`] (of
    /// [`ErrorKind::Input`](crate::ErrorKind::Input)). [`EtcdClusterSpec::validate`]
    /// runs the same check; topgun-core asks this before it plans anything.
    pub fn check_members(members: usize) -> Result<Option<SpecWarning>> {
        match members {
            0 => Err(Error::spec("members", "at least 1 member is needed")),
            n if n > MAX_MEMBERS => Err(Error::spec(
                "members",
                format!(
                    "{n} members is more than etcd's recommended maximum of {MAX_MEMBERS}; use 3, 5 or 7"
                ),
            )),
            n if n % 2 == 0 => Ok(Some(SpecWarning::EvenMembers { members: n })),
            _ => Ok(None),
        }
    }

    /// Checks the spec, purely. Returns warnings (e.g. for an even member
    /// count) when it is acceptable, an [`Error::InvalidSpec`] naming the
    /// field when not.
    pub fn validate(&self) -> Result<Vec<SpecWarning>> {
        let mut warnings = Vec::new();
        validate_cluster_name(&self.cluster)?;
        warnings.extend(Self::check_members(self.members)?);
        if let Some(token) = &self.token {
            if token.is_empty() || token.len() > 128 {
                return Err(Error::spec("token", "must be 1 to 128 characters long"));
            }
            if let Some(c) = token
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            {
                return Err(Error::spec(
                    "token",
                    format!("{c:?} is not allowed; use letters, digits, '-', '_' and '.'"),
                ));
            }
        }
        if self.image.trim().is_empty() || self.image.chars().any(char::is_whitespace) {
            return Err(Error::spec(
                "image",
                format!("{:?} is not an image reference", self.image),
            ));
        }
        if self.client_port == 0 || self.peer_port == 0 {
            return Err(Error::spec("ports", "ports must not be 0"));
        }
        if self.client_port == self.peer_port {
            return Err(Error::spec(
                "ports",
                format!(
                    "client and peer ports are both {}; they must differ",
                    self.client_port
                ),
            ));
        }
        let heartbeat = self.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
        let election = self.election.unwrap_or(DEFAULT_ELECTION);
        if heartbeat.as_millis() == 0 || !heartbeat.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(Error::spec(
                "heartbeat",
                "must be a whole number of milliseconds, at least 1 ms",
            ));
        }
        if !election.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(Error::spec(
                "election",
                "must be a whole number of milliseconds",
            ));
        }
        if election < heartbeat * 5 {
            return Err(Error::spec(
                "election",
                format!(
                    "{} ms is less than 5 heartbeats ({} ms); etcd refuses to start",
                    election.as_millis(),
                    heartbeat.as_millis() * 5
                ),
            ));
        }
        if election > MAX_ELECTION {
            return Err(Error::spec(
                "election",
                "etcd refuses election timeouts above 50 s",
            ));
        }
        match self.quota_backend_bytes {
            Some(0) => return Err(Error::spec("quota", "must be more than 0 bytes")),
            Some(q) if q > QUOTA_WARN => warnings.push(SpecWarning::LargeQuota { bytes: q }),
            _ => {}
        }
        if !self.addresses.is_empty() {
            if self.addresses.len() != self.members {
                return Err(Error::spec(
                    "addresses",
                    format!(
                        "{} address(es) for {} member(s); give one per member or none",
                        self.addresses.len(),
                        self.members
                    ),
                ));
            }
            let mut seen = BTreeSet::new();
            for ip in &self.addresses {
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(Error::spec(
                        "addresses",
                        format!("{ip} cannot be a member address"),
                    ));
                }
                if !seen.insert(ip) {
                    return Err(Error::spec("addresses", format!("{ip} is given twice")));
                }
            }
        }
        if !self.tls {
            warnings.push(SpecWarning::TlsOff);
        }
        Ok(warnings)
    }
}

/// Something acceptable in a spec that the user should know about; its
/// `Display` is the message, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecWarning {
    /// An even member count: it needs a larger quorum than the odd count
    /// below it and tolerates no more failures.
    EvenMembers {
        /// The member count.
        members: usize,
    },
    /// A backend quota above the 8 GiB etcd recommends.
    LargeQuota {
        /// The quota in bytes.
        bytes: u64,
    },
    /// TLS is off: anyone who reaches the ports can read and write.
    TlsOff,
}

impl std::fmt::Display for SpecWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecWarning::EvenMembers { members: n } => write!(
                f,
                "{n} etcd members need a quorum of {} and tolerate {} failure(s), the same as {}; use an odd count",
                n / 2 + 1,
                (n - 1) / 2,
                n - 1
            ),
            SpecWarning::LargeQuota { bytes } => write!(
                f,
                "a backend quota of {bytes} bytes is above the 8 GiB etcd recommends"
            ),
            SpecWarning::TlsOff => f.write_str(
                "TLS is off: any client that reaches the etcd ports can read and write everything",
            ),
        }
    }
}

/// Serialized as its message, as plans show warnings.
impl serde::Serialize for SpecWarning {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The member name for `cluster` and `index`.
pub(crate) fn member_name(cluster: &str, index: usize) -> String {
    format!("topgun-{cluster}-etcd-{index}")
}

fn validate_cluster_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::spec("cluster", "the cluster name is empty"));
    }
    if name.len() > MAX_CLUSTER_NAME {
        return Err(Error::spec(
            "cluster",
            format!(
                "{name:?} is {} characters; at most {MAX_CLUSTER_NAME} keep member names valid hostnames",
                name.len()
            ),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(Error::spec(
            "cluster",
            format!("{name:?} contains {c:?}; use lowercase letters, digits and '-'"),
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(Error::spec(
            "cluster",
            format!("{name:?} must start and end with a letter or digit"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_without_warnings_but_tls_off_warns() {
        let spec = EtcdClusterSpec::new("demo");
        assert_eq!(spec.validate().unwrap(), Vec::<SpecWarning>::new());
        assert!(spec.tls);
        assert_eq!(spec.members, 3);
        let warnings = spec.with_tls(false).validate().unwrap();
        assert_eq!(warnings, [SpecWarning::TlsOff]);
        assert!(
            warnings[0].to_string().contains("TLS is off"),
            "{warnings:?}"
        );
    }

    #[test]
    fn member_counts() {
        for n in [1, 3, 5, 7] {
            let w = EtcdClusterSpec::new("c")
                .with_members(n)
                .validate()
                .unwrap();
            assert!(w.is_empty(), "{n}: {w:?}");
        }
        for n in [2, 4, 6] {
            let w = EtcdClusterSpec::new("c")
                .with_members(n)
                .validate()
                .unwrap();
            assert_eq!(w, [SpecWarning::EvenMembers { members: n }], "{n}");
            assert!(w[0].to_string().contains("odd count"), "{w:?}");
        }
        let w = EtcdClusterSpec::new("c")
            .with_members(4)
            .validate()
            .unwrap();
        assert!(
            w[0].to_string()
                .contains("quorum of 3 and tolerate 1 failure"),
            "{w:?}"
        );
        for n in [0, 8, 9] {
            let err = EtcdClusterSpec::new("c")
                .with_members(n)
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains("members"), "{err}");
        }
    }

    #[test]
    fn refused_specs_name_the_field_and_fix() {
        let cases: Vec<(EtcdClusterSpec, &str)> = vec![
            (EtcdClusterSpec::new(""), "cluster name is empty"),
            (EtcdClusterSpec::new("Demo"), "lowercase"),
            (EtcdClusterSpec::new("a_b"), "'_'"),
            (EtcdClusterSpec::new("-a"), "start and end"),
            (EtcdClusterSpec::new("a".repeat(50)), "at most 49"),
            (
                EtcdClusterSpec::new("c").with_token("a b"),
                "' ' is not allowed",
            ),
            (EtcdClusterSpec::new("c").with_token(""), "1 to 128"),
            (EtcdClusterSpec::new("c").with_image(""), "not an image"),
            (
                EtcdClusterSpec::new("c").with_ports(2379, 2379),
                "must differ",
            ),
            (
                EtcdClusterSpec::new("c").with_ports(0, 2380),
                "must not be 0",
            ),
            (
                EtcdClusterSpec::new("c")
                    .with_timing(Duration::from_millis(100), Duration::from_millis(400)),
                "less than 5 heartbeats (500 ms)",
            ),
            (
                EtcdClusterSpec::new("c")
                    .with_timing(Duration::from_micros(100), Duration::from_millis(400)),
                "whole number of milliseconds",
            ),
            (
                EtcdClusterSpec::new("c")
                    .with_timing(Duration::from_secs(1), Duration::from_secs(60)),
                "above 50 s",
            ),
            (
                EtcdClusterSpec::new("c").with_quota_backend_bytes(0),
                "more than 0",
            ),
            (
                EtcdClusterSpec::new("c").with_addresses(["10.0.0.2".parse().unwrap()]),
                "1 address(es) for 3 member(s)",
            ),
            (
                EtcdClusterSpec::new("c")
                    .with_members(1)
                    .with_addresses(["0.0.0.0".parse().unwrap()]),
                "cannot be a member address",
            ),
            (
                EtcdClusterSpec::new("c")
                    .with_members(2)
                    .with_addresses(["10.0.0.2".parse().unwrap(), "10.0.0.2".parse().unwrap()]),
                "given twice",
            ),
        ];
        for (spec, want) in cases {
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.starts_with("invalid etcd spec: "), "{err}");
            assert!(
                err.contains(want),
                "{spec:?}: {err:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn big_quota_warns() {
        let w = EtcdClusterSpec::new("c")
            .with_quota_backend_bytes(16 * 1024 * 1024 * 1024)
            .validate()
            .unwrap();
        assert!(w[0].to_string().contains("8 GiB"), "{w:?}");
    }

    /// The member limit is checked purely, by the same function core asks,
    /// and refuses 8 and 9 as the user's input.
    #[test]
    fn member_limit_is_checked_without_io() {
        assert_eq!(MAX_MEMBERS, 7);
        assert_eq!(EtcdClusterSpec::check_members(7).unwrap(), None);
        assert_eq!(
            EtcdClusterSpec::check_members(6).unwrap(),
            Some(SpecWarning::EvenMembers { members: 6 })
        );
        for n in [0, MAX_MEMBERS + 1, 9] {
            let err = EtcdClusterSpec::check_members(n).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Input, "{err}");
            assert!(matches!(
                err,
                Error::InvalidSpec {
                    field: "members",
                    ..
                }
            ));
        }
        assert!(DEFAULT_IMAGE.ends_with(":v3.5.21"));
    }

    #[test]
    fn member_names_are_hostnames() {
        let spec = EtcdClusterSpec::new("a".repeat(MAX_CLUSTER_NAME)).with_members(7);
        spec.validate().unwrap();
        assert_eq!(spec.member_name(6).len(), 63);
        assert_eq!(
            EtcdClusterSpec::new("demo").member_name(2),
            "topgun-demo-etcd-2"
        );
    }
}
