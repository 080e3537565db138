//! The cluster record: the spec a cluster was created from, with every value
//! the create resolved (token, subnet, images, privileges), so that later
//! commands (`node add`) plan new nodes exactly as the create planned the
//! first ones.
//!
//! The record holds the token and possibly a datastore password, so it never
//! goes into a label: the plan writes it into every server as
//! [`RECORD_PATH`] with mode 0600, next to k3s's own token file, and topgun
//! reads it back through the archive API (there is no local state file).

use serde::{Deserialize, Serialize};

use super::{
    ApiEndpoint, CgroupnsMode, ClusterName, ClusterSpec, Datastore, DatastoreEndpoint,
    EtcdDatastore, ExternalDatastore, Filtered, FilteredValue, NodeFilter, SanList, Subnet,
    Timeouts, Token,
};
use crate::images::ImageSet;
use crate::{Error, Result};

/// Where the record lives in every server container.
pub(crate) const RECORD_PATH: &str = "/etc/topgun/cluster.json";

/// The record's format version.
const VERSION: u32 = 1;

/// A cluster as created: the spec and what the create resolved.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub struct ClusterRecord {
    version: u32,
    name: String,
    servers: u32,
    agents: u32,
    image: Option<String>,
    datastore: DatastoreRecord,
    api: String,
    tls_san: Vec<String>,
    token: String,
    k3s_args: Vec<FilteredRecord>,
    env: Vec<FilteredRecord>,
    volumes: Vec<FilteredRecord>,
    ports: Vec<FilteredRecord>,
    loadbalancer: bool,
    loadbalancer_image: Option<String>,
    subnet: String,
    timeouts_ms: [u64; 4],
    init: bool,
    cgroupns: Option<String>,
    /// The images the nodes run.
    pub images: ImageSet,
    /// Whether k3s nodes run privileged.
    pub privileged: bool,
    /// The registries, their ports pinned (every node gets the same
    /// `registries.yaml`).
    #[serde(
        default,
        skip_serializing_if = "crate::registry::RegistriesSpec::is_empty"
    )]
    registries: crate::registry::RegistriesSpec,
}

impl std::fmt::Debug for ClusterRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRecord")
            .field("name", &self.name)
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
enum DatastoreRecord {
    Embedded,
    Etcd { members: u32, image: Option<String> },
    External { endpoint: String },
}

#[derive(Clone, Serialize, Deserialize)]
struct FilteredRecord {
    value: String,
    filter: Option<String>,
}

fn filtered<T: std::fmt::Display>(list: &[Filtered<T>]) -> Vec<FilteredRecord> {
    list.iter()
        .map(|f| FilteredRecord {
            value: f.value.to_string(),
            filter: f.filter.as_ref().map(ToString::to_string),
        })
        .collect()
}

fn unfiltered<T: FilteredValue>(list: &[FilteredRecord]) -> Result<Vec<Filtered<T>>> {
    list.iter()
        .map(|r| {
            Ok(Filtered {
                value: T::parse_value(&r.value)?,
                filter: r.filter.as_deref().map(NodeFilter::parse).transpose()?,
            })
        })
        .collect()
}

// Public for the `testing` feature's fuzzers only.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
impl ClusterRecord {
    /// The record of `spec` as created with `token`, `subnet`, `images` and
    /// `privileged`.
    pub fn new(
        spec: &ClusterSpec,
        token: &Token,
        subnet: Subnet,
        images: &ImageSet,
        privileged: bool,
    ) -> Self {
        let t = &spec.timeouts;
        ClusterRecord {
            version: VERSION,
            name: spec.name.to_string(),
            servers: spec.servers,
            agents: spec.agents,
            image: spec.image.clone(),
            datastore: match &spec.datastore {
                Datastore::Embedded => DatastoreRecord::Embedded,
                Datastore::Etcd(e) => DatastoreRecord::Etcd {
                    members: e.members,
                    image: e.image.clone(),
                },
                Datastore::External(e) => DatastoreRecord::External {
                    endpoint: e.endpoint.expose().to_owned(),
                },
            },
            api: spec.api.to_string(),
            tls_san: spec.tls_san.0.iter().map(ToString::to_string).collect(),
            token: token.expose().to_owned(),
            k3s_args: filtered(&spec.k3s_args),
            env: filtered(&spec.env),
            volumes: filtered(&spec.volumes),
            ports: filtered(&spec.ports),
            loadbalancer: spec.loadbalancer.enabled,
            loadbalancer_image: spec.loadbalancer.image.clone(),
            subnet: subnet.to_string(),
            timeouts_ms: [t.etcd, t.server, t.agent, t.api].map(|d| d.as_millis() as u64),
            init: spec.init,
            cgroupns: spec.cgroupns.map(|c| {
                match c {
                    CgroupnsMode::Private => "private",
                    CgroupnsMode::Host => "host",
                }
                .to_owned()
            }),
            images: images.clone(),
            privileged,
            registries: spec.registries.clone(),
        }
    }

    /// Reads a record from its JSON text. The error never quotes the text
    /// (it holds the token).
    pub fn from_json(text: &[u8]) -> Result<Self> {
        let record: ClusterRecord = serde_json::from_slice(text).map_err(|e| {
            Error::invalid(
                format!("cluster record {RECORD_PATH}"),
                format!("cannot be read (line {} column {})", e.line(), e.column()),
                "the cluster was made by an older topgun; recreate it to use this command",
            )
        })?;
        if record.version != VERSION {
            return Err(Error::invalid(
                format!("cluster record {RECORD_PATH}"),
                format!(
                    "has version {}, this topgun reads {VERSION}",
                    record.version
                ),
                "use the topgun that made the cluster",
            ));
        }
        Ok(record)
    }

    /// The record as JSON (holds secrets: write it with mode 0600 only).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a record always serialises")
    }

    /// The token every node shares.
    pub fn token(&self) -> Result<Token> {
        Token::new(&self.token)
    }

    /// The network's subnet.
    pub fn subnet(&self) -> Result<Subnet> {
        Subnet::parse(&self.subnet)
    }

    /// The spec again, with the token and subnet the create resolved, and
    /// `servers` and `agents` as given (the indices nodes may take).
    pub fn spec(&self, servers: u32, agents: u32) -> Result<ClusterSpec> {
        let [etcd, server, agent, api] = self.timeouts_ms.map(std::time::Duration::from_millis);
        let mut tls_san = Vec::new();
        for san in &self.tls_san {
            tls_san.extend(SanList::parse(san)?);
        }
        let spec = ClusterSpec {
            name: ClusterName::new(&self.name)?,
            servers,
            agents,
            image: self.image.clone(),
            datastore: match &self.datastore {
                DatastoreRecord::Embedded => Datastore::Embedded,
                DatastoreRecord::Etcd { members, image } => Datastore::Etcd(EtcdDatastore {
                    members: *members,
                    image: image.clone(),
                }),
                DatastoreRecord::External { endpoint } => Datastore::External(ExternalDatastore {
                    endpoint: DatastoreEndpoint::parse(endpoint)?,
                    ca: None,
                    cert: None,
                    key: None,
                }),
            },
            api: ApiEndpoint::parse(&self.api)?,
            tls_san: SanList(tls_san),
            token: Some(self.token()?),
            k3s_args: unfiltered(&self.k3s_args)?,
            env: unfiltered(&self.env)?,
            volumes: unfiltered(&self.volumes)?,
            ports: unfiltered(&self.ports)?,
            loadbalancer: super::LoadBalancerSpec {
                enabled: self.loadbalancer,
                image: self.loadbalancer_image.clone(),
            },
            network: super::NetworkSpec {
                subnet: Some(self.subnet()?),
            },
            timeouts: Timeouts {
                etcd,
                server,
                agent,
                api,
                total: None,
            },
            no_rollback: false,
            init: self.init,
            cgroupns: match self.cgroupns.as_deref() {
                Some("private") => Some(CgroupnsMode::Private),
                Some("host") => Some(CgroupnsMode::Host),
                _ => None,
            },
            privileged: Some(self.privileged),
            kubeconfig: super::KubeconfigSpec::default(),
            registries: self.registries.clone(),
        };
        Ok(spec)
    }

    /// How many servers and agents the cluster was created with.
    pub(crate) fn created_counts(&self) -> (u32, u32) {
        (self.servers, self.agents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_gives_back_the_spec_it_was_made_from() {
        let spec = ClusterSpec::builder("Demo")
            .servers(3)
            .agents(2)
            .datastore(Datastore::etcd(3))
            .api("127.0.0.1:6550")
            .tls_san("192.168.1.28,k3s.example.com")
            .k3s_arg("--disable=traefik@server:*")
            .env("HTTP_PROXY=http://u:p@proxy:3128@agent:1")
            .volume("/srv/m:/var/lib/m:ro@server:0")
            .port("8080:80@loadbalancer")
            .port("[::1]::9090/udp@agent:*")
            .build()
            .unwrap();
        let token = Token::new("s3cret-token").unwrap();
        let subnet = Subnet::parse("172.28.9.0/24").unwrap();
        let images = ImageSet::resolve(&spec, |_| None);
        let record = ClusterRecord::new(&spec, &token, subnet, &images, false);
        let json = record.to_json();
        let back = ClusterRecord::from_json(json.as_bytes()).unwrap();
        let again = back.spec(spec.servers, spec.agents).unwrap();
        assert_eq!(again.name, spec.name);
        assert_eq!(again.datastore, spec.datastore);
        assert_eq!(again.api, spec.api);
        assert_eq!(again.tls_san, spec.tls_san);
        assert_eq!(again.k3s_args, spec.k3s_args);
        assert_eq!(again.env, spec.env);
        assert_eq!(again.volumes, spec.volumes);
        assert_eq!(again.ports, spec.ports);
        assert_eq!(again.timeouts, spec.timeouts);
        assert_eq!(
            again.token.as_ref().map(Token::expose),
            Some("s3cret-token")
        );
        assert_eq!(again.network.subnet, Some(subnet));
        assert_eq!(again.privileged, Some(false));
        assert_eq!(back.images, images);
        again.validate().unwrap();
    }

    #[test]
    fn a_record_keeps_the_registries_with_their_ports() {
        let registries: crate::registry::RegistriesSpec = serde_norway::from_str(
            "create: {name: registry.localhost, port: 5001, image: \"registry:2\"}\n\
             use: [\"shared.localhost:5002\"]\n\
             config: \"configs: {m: {auth: {password: pw}}}\"\n",
        )
        .unwrap();
        let spec = ClusterSpec::builder("demo")
            .registries(registries.clone())
            .build()
            .unwrap();
        let token = Token::new("s3cret-token").unwrap();
        let subnet = Subnet::parse("172.28.9.0/24").unwrap();
        let images = ImageSet::resolve(&spec, |_| None);
        let json = ClusterRecord::new(&spec, &token, subnet, &images, false).to_json();
        let back = ClusterRecord::from_json(json.as_bytes()).unwrap();
        assert_eq!(back.spec(1, 0).unwrap().registries, registries);
    }

    #[test]
    fn an_unreadable_record_does_not_quote_itself() {
        let err = ClusterRecord::from_json(br#"{"token": "s3cret", "#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains(RECORD_PATH), "{err}");
    }
}
