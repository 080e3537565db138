//! The pure plan: from an [`EtcdClusterSpec`] to everything topgun-core needs
//! to run the members (names, argv, files, volumes, ports) and everything k3s
//! needs to use them ([`DatastoreConfig`]).
//!
//! Certificate generation ([`EtcdPki::generate`]) is separate from the plan's
//! structure ([`plan_with_pki`]), so plans can be built from existing
//! certificates and snapshot-tested. Nothing here does IO.
//!
//! Secrets never appear in argv: the plan passes file paths, and the files
//! carry the contents. Private keys are [`KeyPem`]s, redacted in `Debug` and
//! in the plan's `Serialize` output.
//!
//! # Two CAs: clients and peers
//!
//! With TLS on, a cluster has two certificate authorities ([`EtcdPki`]):
//!
//! - the **client CA** ([`EtcdPki::ca`], `ca.crt` in [`PKI_DIR`]) signs each
//!   member's client-facing server certificate (port 2379) and the client
//!   certificates of k3s and topgun; members trust it for clients
//!   (`--trusted-ca-file`), k3s and topgun trust it for the members;
//! - the **peer CA** ([`EtcdPki::peer_ca`], `peer-ca.crt`) signs only the
//!   members' peer certificates (port 2380), and members trust only it on the
//!   peer port (`--peer-trusted-ca-file`).
//!
//! So a client certificate — k3s's or topgun's — is refused on the peer port:
//! it cannot join raft traffic or read the peer API (`/members`, raft
//! snapshots), and a leaked client key does not make its holder a peer.
//! Members never receive the peer CA's key, and no client is given the peer
//! CA. Both kinds of member certificate carry serverAuth and clientAuth (etcd
//! dials itself through its gateway and dials its peers) and the member's
//! names: its container name (= hostname), its static address if any,
//! `localhost` and `127.0.0.1`.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Serialize, Serializer};
use topgun_tls::{
    CaParams, CertUsage, CertificateAuthority, CertifiedKey, KeyPem, LeafParams, San,
};

use crate::client::ClientTls;
use crate::spec::EtcdClusterSpec;
use crate::{Error, Result};

/// Where the etcd binary is in the member image.
pub const ETCD_BINARY: &str = "/usr/local/bin/etcd";
/// Where each member's data volume is mounted.
pub const DATA_MOUNT: &str = "/var/lib/etcd";
/// The member's `--data-dir`, inside the volume (etcd creates it with 0700).
pub const DATA_DIR: &str = "/var/lib/etcd/data";
/// Where each member's certificates and keys are placed.
pub const PKI_DIR: &str = "/etc/etcd/pki";

/// Text that stands in for secrets in `Serialize` output.
pub const REDACTED: &str = "<redacted>";

/// Contents of a file to place: public text, or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContents {
    /// A certificate or other public text; mode 0644.
    Public(String),
    /// A private key; mode 0600. Redacted in `Debug` and `Serialize`.
    Secret(KeyPem),
}

impl FileContents {
    /// The bytes to write. For a secret this exposes it: handle with care.
    pub fn expose(&self) -> &[u8] {
        match self {
            FileContents::Public(text) => text.as_bytes(),
            FileContents::Secret(key) => key.expose().as_bytes(),
        }
    }

    /// The Unix mode the file gets: 0600 for secrets, 0644 otherwise.
    pub fn mode(&self) -> u32 {
        match self {
            FileContents::Public(_) => 0o644,
            FileContents::Secret(_) => 0o600,
        }
    }

    /// Whether these contents are secret.
    pub fn is_secret(&self) -> bool {
        matches!(self, FileContents::Secret(_))
    }
}

impl Serialize for FileContents {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            FileContents::Public(text) => s.serialize_str(text),
            FileContents::Secret(_) => s.serialize_str(REDACTED),
        }
    }
}

/// A file to place in a container before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedFile {
    /// The absolute path inside the container.
    pub path: String,
    /// The Unix mode, e.g. `0o600`.
    #[serde(serialize_with = "ser_mode")]
    pub mode: u32,
    /// What to write.
    pub contents: FileContents,
}

impl PlannedFile {
    fn new(path: impl Into<String>, contents: FileContents) -> Self {
        PlannedFile {
            path: path.into(),
            mode: contents.mode(),
            contents,
        }
    }
}

/// The data volume of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumePlan {
    /// The volume name: `<member name>-data`.
    pub name: String,
    /// Where it is mounted in the member ([`DATA_MOUNT`]).
    pub mount: String,
}

/// The ports one member listens on, inside its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemberPorts {
    /// The client port (2379 by default).
    pub client: u16,
    /// The peer port (2380 by default).
    pub peer: u16,
}

/// One member of the planned cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberPlan {
    /// Position in the cluster, from 0.
    pub index: usize,
    /// The etcd member name, also the container name: `topgun-<cluster>-etcd-<i>`.
    pub name: String,
    /// The hostname (equal to the name, so peers and k3s find it by DNS).
    pub hostname: String,
    /// The static address, when the spec gave one.
    pub address: Option<IpAddr>,
    /// The URL peers dial (`--initial-advertise-peer-urls`), by name even
    /// with a static address.
    pub peer_url: String,
    /// The URL clients dial (`--advertise-client-urls`).
    pub client_url: String,
    /// `--listen-peer-urls`.
    pub listen_peer_url: String,
    /// `--listen-client-urls`.
    pub listen_client_url: String,
    /// The SANs of the member's server and peer certificates.
    pub sans: Vec<San>,
    /// The complete command line, starting with [`ETCD_BINARY`]. Every flag
    /// is one `--flag=value` item. It holds paths, never secrets.
    pub args: Vec<String>,
    /// Files to place before the member starts.
    pub files: Vec<PlannedFile>,
    /// The data volume.
    pub volume: VolumePlan,
    /// The ports it listens on.
    pub ports: MemberPorts,
}

/// The certificates of a cluster: a client CA and a separate peer CA, server
/// and peer certificates per member, and client certificates for k3s and for
/// topgun (see [the module docs](self#two-cas-clients-and-peers)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdPki {
    /// The client CA: signs the members' server certificates and the client
    /// certificates; trusted on the client port (its key is kept for later
    /// issuing).
    #[serde(serialize_with = "ser_certified")]
    pub ca: CertifiedKey,
    /// The peer CA: signs only the members' peer certificates; the only CA
    /// trusted on the peer port (its key is kept for later issuing).
    #[serde(serialize_with = "ser_certified")]
    pub peer_ca: CertifiedKey,
    /// Per member, in member order.
    pub members: Vec<MemberPki>,
    /// k3s's client certificate (clientAuth).
    #[serde(serialize_with = "ser_certified")]
    pub k3s_client: CertifiedKey,
    /// topgun's own client certificate (clientAuth), for health checks.
    #[serde(serialize_with = "ser_certified")]
    pub topgun_client: CertifiedKey,
}

/// The certificates of one member. Both carry serverAuth and clientAuth
/// (etcd dials itself through its gateway and dials peers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberPki {
    /// Served on the client port; signed by the client CA.
    #[serde(serialize_with = "ser_certified")]
    pub server: CertifiedKey,
    /// Served and presented on the peer port; signed by the peer CA.
    #[serde(serialize_with = "ser_certified")]
    pub peer: CertifiedKey,
}

impl EtcdPki {
    /// Generates a fresh client CA, a fresh peer CA and every certificate
    /// `spec` needs. The spec must be valid.
    pub fn generate(spec: &EtcdClusterSpec) -> Result<Self> {
        spec.validate()?;
        let ca = CertificateAuthority::generate(&CaParams::new(format!(
            "topgun-{}-etcd-ca",
            spec.cluster
        )))?;
        let peer_ca = CertificateAuthority::generate(&CaParams::new(format!(
            "topgun-{}-etcd-peer-ca",
            spec.cluster
        )))?;
        let mut members = Vec::with_capacity(spec.members);
        for index in 0..spec.members {
            let name = spec.member_name(index);
            let sans = member_sans(&name, spec.addresses.get(index).copied(), &spec.client_sans);
            // serverAuth and clientAuth for both (CertUsage::Peer).
            let leaf = |by: &CertificateAuthority, cn: String| {
                by.issue(&LeafParams::new(cn, CertUsage::Peer).with_sans(sans.clone()))
            };
            members.push(MemberPki {
                server: leaf(&ca, name.clone())?,
                peer: leaf(&peer_ca, format!("{name}-peer"))?,
            });
        }
        Ok(EtcdPki {
            ca: ca.certified_key().clone(),
            peer_ca: peer_ca.certified_key().clone(),
            members,
            k3s_client: ca.issue(&LeafParams::new("k3s", CertUsage::Client))?,
            topgun_client: ca.issue(&LeafParams::new("topgun", CertUsage::Client))?,
        })
    }
}

/// What k3s needs to use the cluster as its datastore: the
/// `--datastore-endpoint` value and, with TLS, the CA, certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatastoreConfig {
    /// The members' client URLs by hostname: `https://<member>:2379`.
    pub endpoints: Vec<String>,
    /// Client TLS material; `None` when TLS is off.
    pub tls: Option<DatastoreTls>,
}

/// Client TLS material for k3s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatastoreTls {
    /// The etcd CA certificate, PEM.
    pub ca_pem: String,
    /// k3s's client certificate, PEM.
    pub cert_pem: String,
    /// k3s's client key, PEM. Redacted in `Debug` and `Serialize`.
    #[serde(serialize_with = "ser_redacted")]
    pub key_pem: KeyPem,
}

/// File names [`DatastoreConfig::k3s_files`] uses inside its directory.
const K3S_CA: &str = "etcd-ca.crt";
const K3S_CERT: &str = "etcd-client.crt";
const K3S_KEY: &str = "etcd-client.key";

impl DatastoreConfig {
    /// The k3s `--datastore-endpoint` value: the endpoints joined by commas,
    /// e.g. `https://m0:2379,https://m1:2379`.
    pub fn endpoint_value(&self) -> String {
        self.endpoints.join(",")
    }

    /// The CA, certificate and key as files under `dir` in the k3s
    /// container (the key with mode 0600). Empty when TLS is off.
    pub fn k3s_files(&self, dir: &str) -> Vec<PlannedFile> {
        let dir = dir.trim_end_matches('/');
        match &self.tls {
            None => Vec::new(),
            Some(tls) => vec![
                PlannedFile::new(
                    format!("{dir}/{K3S_CA}"),
                    FileContents::Public(tls.ca_pem.clone()),
                ),
                PlannedFile::new(
                    format!("{dir}/{K3S_CERT}"),
                    FileContents::Public(tls.cert_pem.clone()),
                ),
                PlannedFile::new(
                    format!("{dir}/{K3S_KEY}"),
                    FileContents::Secret(tls.key_pem.clone()),
                ),
            ],
        }
    }

    /// The environment that points k3s at the datastore and at the files of
    /// [`DatastoreConfig::k3s_files`] placed under `dir`: `K3S_DATASTORE_ENDPOINT`
    /// and, with TLS, `K3S_DATASTORE_CAFILE`, `_CERTFILE`, `_KEYFILE`. Only
    /// paths, never key contents.
    pub fn k3s_env(&self, dir: &str) -> Vec<(String, String)> {
        let dir = dir.trim_end_matches('/');
        let mut env = vec![("K3S_DATASTORE_ENDPOINT".to_owned(), self.endpoint_value())];
        if self.tls.is_some() {
            env.push(("K3S_DATASTORE_CAFILE".to_owned(), format!("{dir}/{K3S_CA}")));
            env.push((
                "K3S_DATASTORE_CERTFILE".to_owned(),
                format!("{dir}/{K3S_CERT}"),
            ));
            env.push((
                "K3S_DATASTORE_KEYFILE".to_owned(),
                format!("{dir}/{K3S_KEY}"),
            ));
        }
        env
    }

    /// The same material as a [`ClientTls`] for topgun's own health checks.
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.tls.as_ref().map(|t| {
            ClientTls::from_pem(
                t.ca_pem.clone(),
                Some((t.cert_pem.clone(), t.key_pem.clone())),
            )
        })
    }
}

/// A planned etcd cluster: every member's name, argv, files, volume and
/// ports, the certificates, and the k3s datastore settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdPlan {
    /// The cluster name.
    pub cluster: String,
    /// The `--initial-cluster-token` (unique per cluster; not a secret).
    pub token: String,
    /// The image every member runs.
    pub image: String,
    /// Whether clients and peers use mutual TLS.
    pub tls: bool,
    /// The members, in order.
    pub members: Vec<MemberPlan>,
    /// The certificates; `None` when TLS is off.
    pub pki: Option<EtcdPki>,
    /// What k3s needs to use this cluster.
    pub datastore: DatastoreConfig,
    /// Things the user should know (even member count, TLS off, ...): the
    /// messages of [`EtcdClusterSpec::validate`]'s [`crate::SpecWarning`]s.
    pub warnings: Vec<String>,
}

impl EtcdPlan {
    /// The members' advertised client URLs.
    pub fn client_endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The client CA certificate, PEM (what clients trust for the members'
    /// client port); `None` when TLS is off.
    pub fn ca_pem(&self) -> Option<&str> {
        self.pki.as_ref().map(|p| p.ca.cert_pem.as_str())
    }

    /// The peer CA certificate, PEM (what members trust on the peer port);
    /// `None` when TLS is off.
    pub fn peer_ca_pem(&self) -> Option<&str> {
        self.pki.as_ref().map(|p| p.peer_ca.cert_pem.as_str())
    }

    /// k3s's client certificate; `None` when TLS is off.
    pub fn k3s_client(&self) -> Option<&CertifiedKey> {
        self.pki.as_ref().map(|p| &p.k3s_client)
    }

    /// topgun's own client certificate; `None` when TLS is off.
    pub fn topgun_client(&self) -> Option<&CertifiedKey> {
        self.pki.as_ref().map(|p| &p.topgun_client)
    }

    /// Client TLS for topgun's health checks (CA and topgun's certificate);
    /// `None` when TLS is off.
    pub fn topgun_client_tls(&self) -> Option<ClientTls> {
        self.pki.as_ref().map(|p| {
            ClientTls::from_pem(
                p.ca.cert_pem.clone(),
                Some((
                    p.topgun_client.cert_pem.clone(),
                    p.topgun_client.key_pem.clone(),
                )),
            )
        })
    }
}

impl EtcdClusterSpec {
    /// Validates the spec, generates certificates (when TLS is on) and plans
    /// the cluster. Pure apart from randomness (keys, default token).
    pub fn plan(&self) -> Result<EtcdPlan> {
        self.validate()?;
        let pki = if self.tls {
            Some(EtcdPki::generate(self)?)
        } else {
            None
        };
        plan_with_pki(self, pki)
    }
}

/// Plans the cluster with the given certificates (`None` exactly when TLS is
/// off). A spec without a token gets a fresh random one.
pub fn plan_with_pki(spec: &EtcdClusterSpec, pki: Option<EtcdPki>) -> Result<EtcdPlan> {
    let warnings: Vec<String> = spec.validate()?.iter().map(ToString::to_string).collect();
    match (&pki, spec.tls) {
        (None, true) => {
            return Err(Error::spec(
                "tls",
                "TLS is on but no certificates were given",
            ));
        }
        (Some(_), false) => {
            return Err(Error::spec("tls", "TLS is off but certificates were given"));
        }
        (Some(p), true) if p.members.len() != spec.members => {
            return Err(Error::spec(
                "tls",
                format!(
                    "certificates for {} member(s) given for {} member(s)",
                    p.members.len(),
                    spec.members
                ),
            ));
        }
        _ => {}
    }
    let token = spec
        .token
        .clone()
        .unwrap_or_else(|| random_token(&spec.cluster));
    let scheme = if spec.tls { "https" } else { "http" };
    let hosts: Vec<(String, Option<IpAddr>)> = (0..spec.members)
        .map(|i| (spec.member_name(i), spec.addresses.get(i).copied()))
        .collect();
    let url = |(name, address): &(String, Option<IpAddr>), port: u16| match address {
        Some(ip) => format!("{scheme}://{}:{port}", url_host(*ip)),
        None => format!("{scheme}://{name}:{port}"),
    };
    // Peers are listed by name, even with static addresses: a member asks
    // every peer whether it is already bootstrapped before it starts, with a
    // 1 s timeout each. A peer not running yet fails name resolution at once
    // (Docker's DNS only knows running containers), whereas its static
    // address would not answer at all until the timeout.
    let peer_url = |name: &str| format!("{scheme}://{name}:{}", spec.peer_port);
    let initial_cluster = hosts
        .iter()
        .map(|(name, _)| format!("{name}={}", peer_url(name)))
        .collect::<Vec<_>>()
        .join(",");

    let mut members = Vec::with_capacity(spec.members);
    for (index, host) in hosts.iter().enumerate() {
        let (name, address) = host;
        let any: IpAddr = match address {
            Some(IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let peer_url = peer_url(name);
        let client_url = url(host, spec.client_port);
        let listen_peer_url = format!("{scheme}://{}:{}", url_host(any), spec.peer_port);
        let listen_client_url = format!("{scheme}://{}:{}", url_host(any), spec.client_port);
        let mut args = vec![
            ETCD_BINARY.to_owned(),
            format!("--name={name}"),
            format!("--data-dir={DATA_DIR}"),
            format!("--listen-peer-urls={listen_peer_url}"),
            format!("--listen-client-urls={listen_client_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--initial-cluster={initial_cluster}"),
            "--initial-cluster-state=new".to_owned(),
            format!("--initial-cluster-token={token}"),
            // Structured logs with millisecond timestamps (3.5's default;
            // 3.4 otherwise logs raft events to the second only).
            "--logger=zap".to_owned(),
        ];
        if let Some(hb) = spec.heartbeat {
            args.push(format!("--heartbeat-interval={}", hb.as_millis()));
        }
        if let Some(el) = spec.election {
            args.push(format!("--election-timeout={}", el.as_millis()));
        }
        if let Some(q) = spec.quota_backend_bytes {
            args.push(format!("--quota-backend-bytes={q}"));
        }
        let mut files = Vec::new();
        if let Some(pki) = &pki {
            // Clients (port 2379) are checked against the client CA, peers
            // (port 2380) against the peer CA only.
            let ca = format!("{PKI_DIR}/ca.crt");
            let peer_ca = format!("{PKI_DIR}/peer-ca.crt");
            let (server_crt, server_key) = (
                format!("{PKI_DIR}/server.crt"),
                format!("{PKI_DIR}/server.key"),
            );
            let (peer_crt, peer_key) =
                (format!("{PKI_DIR}/peer.crt"), format!("{PKI_DIR}/peer.key"));
            args.extend([
                "--client-cert-auth=true".to_owned(),
                format!("--trusted-ca-file={ca}"),
                format!("--cert-file={server_crt}"),
                format!("--key-file={server_key}"),
                "--peer-client-cert-auth=true".to_owned(),
                format!("--peer-trusted-ca-file={peer_ca}"),
                format!("--peer-cert-file={peer_crt}"),
                format!("--peer-key-file={peer_key}"),
            ]);
            let m = &pki.members[index];
            files = vec![
                PlannedFile::new(ca, FileContents::Public(pki.ca.cert_pem.clone())),
                PlannedFile::new(server_crt, FileContents::Public(m.server.cert_pem.clone())),
                PlannedFile::new(server_key, FileContents::Secret(m.server.key_pem.clone())),
                PlannedFile::new(peer_ca, FileContents::Public(pki.peer_ca.cert_pem.clone())),
                PlannedFile::new(peer_crt, FileContents::Public(m.peer.cert_pem.clone())),
                PlannedFile::new(peer_key, FileContents::Secret(m.peer.key_pem.clone())),
            ];
        }
        members.push(MemberPlan {
            index,
            name: name.clone(),
            hostname: name.clone(),
            address: *address,
            peer_url,
            client_url,
            listen_peer_url,
            listen_client_url,
            sans: if spec.tls {
                member_sans(name, *address, &spec.client_sans)
            } else {
                Vec::new()
            },
            args,
            files,
            volume: VolumePlan {
                name: format!("{name}-data"),
                mount: DATA_MOUNT.to_owned(),
            },
            ports: MemberPorts {
                client: spec.client_port,
                peer: spec.peer_port,
            },
        });
    }

    let datastore = DatastoreConfig {
        endpoints: hosts
            .iter()
            .map(|(name, _)| format!("{scheme}://{name}:{}", spec.client_port))
            .collect(),
        tls: pki.as_ref().map(|p| DatastoreTls {
            ca_pem: p.ca.cert_pem.clone(),
            cert_pem: p.k3s_client.cert_pem.clone(),
            key_pem: p.k3s_client.key_pem.clone(),
        }),
    };
    Ok(EtcdPlan {
        cluster: spec.cluster.clone(),
        token,
        image: spec.image.clone(),
        tls: spec.tls,
        members,
        pki,
        datastore,
        warnings,
    })
}

/// The SANs of member `name`: its name, its address, localhost, 127.0.0.1,
/// then `extra`.
fn member_sans(name: &str, address: Option<IpAddr>, extra: &[IpAddr]) -> Vec<San> {
    let mut sans = vec![San::Dns(name.to_owned())];
    if let Some(ip) = address {
        sans.push(San::Ip(ip));
    }
    sans.push(San::Dns("localhost".to_owned()));
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if address != Some(loopback) {
        sans.push(San::Ip(loopback));
    }
    for ip in extra {
        if !sans.contains(&San::Ip(*ip)) {
            sans.push(San::Ip(*ip));
        }
    }
    sans
}

/// An IP as a URL host: IPv6 in brackets.
fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `<cluster>-<16 random hex digits>`.
fn random_token(cluster: &str) -> String {
    let bytes: [u8; 8] = rand::random();
    format!("topgun-{cluster}-{}", hex::encode(bytes))
}

fn ser_mode<S: Serializer>(mode: &u32, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

fn ser_redacted<S: Serializer>(_: &KeyPem, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(REDACTED)
}

fn ser_certified<S: Serializer>(c: &CertifiedKey, s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("CertifiedKey", 2)?;
    st.serialize_field("cert_pem", &c.cert_pem)?;
    st.serialize_field("key_pem", REDACTED)?;
    st.end()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;

    /// Snapshots hide certificate bodies (random) but keep the `<redacted>`
    /// markers, which prove keys never reach serialized plans.
    macro_rules! assert_plan_snapshot {
        ($name:expr, $plan:expr) => {
            insta::assert_yaml_snapshot!($name, $plan, {
                ".members[].files[].contents" => insta::dynamic_redaction(redact_pem),
                ".pki.**.cert_pem" => insta::dynamic_redaction(redact_pem),
                ".datastore.tls.*" => insta::dynamic_redaction(redact_pem),
            });
        };
    }

    fn redact_pem(
        value: insta::internals::Content,
        _: insta::internals::ContentPath<'_>,
    ) -> insta::internals::Content {
        match value.as_str() {
            Some(s) if s.starts_with("-----BEGIN CERTIFICATE-----") => "[certificate]".into(),
            _ => value,
        }
    }

    fn parse(pem: &str) -> X509Certificate<'static> {
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1;
        let der: &'static [u8] = Box::leak(der.contents.into_boxed_slice());
        X509Certificate::from_der(der).unwrap().1
    }

    fn sans_of(cert: &X509Certificate<'_>) -> Vec<String> {
        let ext = cert.subject_alternative_name().unwrap().unwrap();
        ext.value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn three_members_with_tls() {
        let plan = EtcdClusterSpec::new("demo")
            .with_token("demo-token")
            .plan()
            .unwrap();
        assert_plan_snapshot!("three_members_with_tls", &plan);
    }

    #[test]
    fn single_member_without_tls_with_tuning() {
        let plan = EtcdClusterSpec::new("solo")
            .with_members(1)
            .with_token("solo-token")
            .with_tls(false)
            .with_timing(Duration::from_millis(50), Duration::from_millis(500))
            .with_quota_backend_bytes(64 * 1024 * 1024)
            .plan()
            .unwrap();
        assert_plan_snapshot!("single_member_without_tls", &plan);
    }

    #[test]
    fn static_addresses_and_even_count() {
        let plan = EtcdClusterSpec::new("net")
            .with_members(2)
            .with_token("net-token")
            .with_ports(12379, 12380)
            .with_addresses([
                "172.28.0.10".parse().unwrap(),
                "172.28.0.11".parse().unwrap(),
            ])
            .plan()
            .unwrap();
        assert_plan_snapshot!("static_addresses_and_even_count", &plan);
    }

    #[test]
    fn certificates_carry_the_member_names_and_both_usages() {
        let plan = EtcdClusterSpec::new("demo")
            .with_addresses(["10.1.0.2", "10.1.0.3", "10.1.0.4"].map(|a| a.parse().unwrap()))
            .plan()
            .unwrap();
        let ca = parse(plan.ca_pem().unwrap());
        let peer_ca = parse(plan.peer_ca_pem().unwrap());
        assert_ne!(ca.subject(), peer_ca.subject());
        assert_ne!(ca.public_key(), peer_ca.public_key());
        assert!(peer_ca.is_ca() && ca.is_ca());
        for (i, member) in plan.members.iter().enumerate() {
            let contents = |file: &str| {
                let path = format!("{PKI_DIR}/{file}");
                let f = member.files.iter().find(|f| f.path == path).unwrap();
                std::str::from_utf8(f.contents.expose()).unwrap().to_owned()
            };
            // The trust anchors: the client CA for clients, the peer CA for peers.
            assert_eq!(contents("ca.crt"), plan.ca_pem().unwrap());
            assert_eq!(contents("peer-ca.crt"), plan.peer_ca_pem().unwrap());
            for arg in [
                format!("--trusted-ca-file={PKI_DIR}/ca.crt"),
                format!("--peer-trusted-ca-file={PKI_DIR}/peer-ca.crt"),
                "--client-cert-auth=true".to_owned(),
                "--peer-client-cert-auth=true".to_owned(),
            ] {
                assert!(member.args.contains(&arg), "{arg} missing");
            }
            for (file, signer, other) in
                [("server.crt", &ca, &peer_ca), ("peer.crt", &peer_ca, &ca)]
            {
                let path = format!("{PKI_DIR}/{file}");
                let cert = parse(&contents(file));
                assert_eq!(
                    sans_of(&cert),
                    vec![
                        member.name.clone(),
                        format!("10.1.0.{}", i + 2),
                        "localhost".into(),
                        "127.0.0.1".into()
                    ]
                );
                let eku = cert.extended_key_usage().unwrap().unwrap().value;
                assert!(eku.server_auth && eku.client_auth, "{path}: {eku:?}");
                assert_eq!(cert.issuer(), signer.subject(), "{path}");
                assert!(cert.verify_signature(Some(signer.public_key())).is_ok());
                assert!(
                    cert.verify_signature(Some(other.public_key())).is_err(),
                    "{path} verifies against the wrong CA"
                );
            }
        }
        for client in [plan.k3s_client().unwrap(), plan.topgun_client().unwrap()] {
            let cert = parse(&client.cert_pem);
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.server_auth);
            assert!(cert.verify_signature(Some(ca.public_key())).is_ok());
            // Not a peer: the peer CA did not sign it.
            assert!(cert.verify_signature(Some(peer_ca.public_key())).is_err());
        }
        // What k3s and topgun are given trusts the client CA only.
        let ds = plan.datastore.tls.as_ref().unwrap();
        assert_eq!(ds.ca_pem, plan.ca_pem().unwrap());
        // Each member has its own certificate.
        assert_ne!(plan.members[0].files[1], plan.members[1].files[1]);
    }

    #[test]
    fn secrets_stay_out_of_argv_debug_and_json() {
        let plan = EtcdClusterSpec::new("demo").plan().unwrap();
        let keys: Vec<&str> = plan
            .members
            .iter()
            .flat_map(|m| &m.files)
            .filter(|f| f.contents.is_secret())
            .map(|f| std::str::from_utf8(f.contents.expose()).unwrap())
            .chain(plan.pki.iter().flat_map(|p| {
                [
                    p.ca.key_pem.expose(),
                    p.peer_ca.key_pem.expose(),
                    p.k3s_client.key_pem.expose(),
                    p.topgun_client.key_pem.expose(),
                ]
            }))
            .collect();
        assert_eq!(keys.len(), 3 * 2 + 4);
        let debug = format!("{plan:?}");
        let json = serde_json::to_string(&plan).unwrap();
        let argv = plan
            .members
            .iter()
            .flat_map(|m| &m.args)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        for key in keys {
            assert!(key.contains("PRIVATE KEY"));
            let body = key.lines().nth(1).unwrap();
            for (what, text) in [("debug", &debug), ("json", &json), ("argv", &argv)] {
                assert!(
                    !text.contains(body),
                    "a private key is in the {what} output"
                );
            }
        }
        assert!(!argv.contains("BEGIN"));
        for m in &plan.members {
            for f in &m.files {
                assert_eq!(
                    f.mode,
                    if f.contents.is_secret() { 0o600 } else { 0o644 },
                    "{}",
                    f.path
                );
                assert_eq!(f.mode, f.contents.mode());
            }
        }
    }

    #[test]
    fn initial_cluster_entries_equal_advertised_peer_urls() {
        for spec in [
            EtcdClusterSpec::new("a").with_members(5),
            EtcdClusterSpec::new("b").with_tls(false).with_members(3),
            EtcdClusterSpec::new("c")
                .with_members(3)
                .with_addresses(["fd00::2", "fd00::3", "fd00::4"].map(|a| a.parse().unwrap())),
        ] {
            let plan = spec.plan().unwrap();
            for m in &plan.members {
                let flag = |name: &str| {
                    m.args
                        .iter()
                        .find_map(|a| a.strip_prefix(&format!("--{name}=")))
                        .unwrap_or_else(|| panic!("{name} missing"))
                        .to_owned()
                };
                let cluster = flag("initial-cluster");
                let entries: Vec<&str> = cluster.split(',').collect();
                assert_eq!(entries.len(), plan.members.len());
                for other in &plan.members {
                    assert!(
                        entries.contains(&format!("{}={}", other.name, other.peer_url).as_str())
                    );
                }
                assert_eq!(flag("initial-advertise-peer-urls"), m.peer_url);
                assert_eq!(flag("name"), m.name);
                assert_eq!(flag("initial-cluster-token"), plan.token);
                assert_eq!(m.args[0], ETCD_BINARY);
                assert!(
                    m.args[1..]
                        .iter()
                        .all(|a| a.starts_with("--") && a.contains('='))
                );
            }
        }
        let v6 = EtcdClusterSpec::new("c")
            .with_members(1)
            .with_addresses(["fd00::2".parse().unwrap()])
            .plan()
            .unwrap();
        assert_eq!(v6.members[0].peer_url, "https://topgun-c-etcd-0:2380");
        assert_eq!(v6.members[0].client_url, "https://[fd00::2]:2379");
        assert_eq!(v6.members[0].listen_client_url, "https://[::]:2379");
    }

    #[test]
    fn tokens_are_unique_per_plan_unless_given() {
        let spec = EtcdClusterSpec::new("demo").with_tls(false);
        let (a, b) = (spec.plan().unwrap().token, spec.plan().unwrap().token);
        assert_ne!(a, b);
        assert!(a.starts_with("topgun-demo-"), "{a}");
        assert_eq!(spec.clone().with_token("t").plan().unwrap().token, "t");
    }

    #[test]
    fn datastore_config_for_k3s() {
        let plan = EtcdClusterSpec::new("demo").plan().unwrap();
        let ds = &plan.datastore;
        assert_eq!(
            ds.endpoint_value(),
            "https://topgun-demo-etcd-0:2379,https://topgun-demo-etcd-1:2379,https://topgun-demo-etcd-2:2379"
        );
        let env = ds.k3s_env("/etc/topgun/etcd/");
        assert_eq!(
            env,
            vec![
                ("K3S_DATASTORE_ENDPOINT".into(), ds.endpoint_value()),
                (
                    "K3S_DATASTORE_CAFILE".into(),
                    "/etc/topgun/etcd/etcd-ca.crt".into()
                ),
                (
                    "K3S_DATASTORE_CERTFILE".into(),
                    "/etc/topgun/etcd/etcd-client.crt".into()
                ),
                (
                    "K3S_DATASTORE_KEYFILE".into(),
                    "/etc/topgun/etcd/etcd-client.key".into()
                ),
            ]
        );
        let files = ds.k3s_files("/etc/topgun/etcd");
        assert_eq!(
            files
                .iter()
                .map(|f| (f.path.as_str(), f.mode))
                .collect::<Vec<_>>(),
            vec![
                ("/etc/topgun/etcd/etcd-ca.crt", 0o644),
                ("/etc/topgun/etcd/etcd-client.crt", 0o644),
                ("/etc/topgun/etcd/etcd-client.key", 0o600),
            ]
        );
        let tls = ds.tls.as_ref().unwrap();
        assert_eq!(tls.cert_pem, plan.k3s_client().unwrap().cert_pem);
        assert!(format!("{ds:?}").contains("KeyPem(<redacted>)"));
        assert!(ds.client_tls().unwrap().validate().is_ok());

        let plain = EtcdClusterSpec::new("demo")
            .with_tls(false)
            .with_members(1)
            .plan()
            .unwrap();
        assert_eq!(
            plain.datastore.endpoint_value(),
            "http://topgun-demo-etcd-0:2379"
        );
        assert_eq!(plain.datastore.k3s_env("/x").len(), 1);
        assert!(plain.datastore.k3s_files("/x").is_empty());
        assert!(plain.members[0].args.iter().all(|a| !a.contains("cert")));
    }

    #[test]
    fn plan_with_pki_checks_the_certificates_fit() {
        let spec = EtcdClusterSpec::new("demo");
        let pki = EtcdPki::generate(&spec).unwrap();
        let err = plan_with_pki(&spec.clone().with_members(5), Some(pki.clone())).unwrap_err();
        assert!(
            err.to_string()
                .contains("certificates for 3 member(s) given for 5"),
            "{err}"
        );
        assert!(plan_with_pki(&spec, None).is_err());
        assert!(plan_with_pki(&spec.clone().with_tls(false), Some(pki.clone())).is_err());
        let plan = plan_with_pki(&spec, Some(pki.clone())).unwrap();
        assert_eq!(plan.pki.as_ref(), Some(&pki));
        assert!(EtcdClusterSpec::new("BAD").plan().is_err());
    }
}
