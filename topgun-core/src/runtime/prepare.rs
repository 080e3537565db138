//! Everything a create checks and resolves before it creates anything:
//! images present, name free, ports free, a free subnet, the token, the run
//! id, certificates and the external datastore's files.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};

use bollard::Docker;
use futures_util::future::try_join_all;
use topgun_etcd::plan::EtcdPki;
use topgun_tls::KeyPem;

use crate::docker::{self, docker_is_local};
use crate::images::ImageSet;
use crate::labels;
use crate::plan::{ExternalTls, PlanContext, network_name};
use crate::spec::{ClusterSpec, Datastore, Protocol, Subnet, Token};
use crate::{Error, Result};

/// The ranges searched for a free /24: 172.28.0.0/14 (172.28-31.x.0/24).
const SEARCH_BASE: u32 = u32::from_be_bytes([172, 28, 0, 0]);
const SEARCH_COUNT: u32 = 4 * 256;
const SEARCH_DESC: &str = "172.28.0.0/14";

/// What prepare found.
pub(crate) struct Prepared {
    pub(crate) ctx: PlanContext,
    /// Subnets that are in use (to pick another on a race).
    pub(crate) used: Vec<Subnet>,
    /// Whether the subnet was picked by topgun (and may be re-picked).
    pub(crate) auto_subnet: bool,
}

pub(crate) async fn prepare(docker: &Docker, spec: &ClusterSpec) -> Result<Prepared> {
    let images = ImageSet::from_env(spec);
    let needed: Vec<String> = images.needed(spec).into_iter().map(str::to_owned).collect();
    let (inspected, (), used) = tokio::try_join!(
        inspect_images(docker, &needed),
        check_name_free(docker, spec.name.as_str()),
        used_subnets(docker),
    )?;
    check_ports_free(spec)?;
    let (subnet, auto_subnet) = match spec.network.subnet {
        Some(subnet) => {
            if let Some(other) = used.iter().find(|u| u.overlaps(&subnet)) {
                return Err(Error::invalid(
                    format!("subnet {subnet}"),
                    format!(
                        "overlaps {other}, which a Docker network or a route of this host uses"
                    ),
                    "pick another subnet, or leave it out to get a free one",
                ));
            }
            (subnet, false)
        }
        None => (
            pick_subnet(&used, rand::random::<u32>() % SEARCH_COUNT)?,
            true,
        ),
    };
    let token = spec.token.clone().unwrap_or_else(Token::random);
    let run_id = hex::encode(rand::random::<[u8; 8]>());
    let mut ctx = PlanContext::new(run_id, token, subnet, images);
    ctx.privileged = crate::images::resolve_privileged(
        spec.privileged,
        |k| std::env::var(k).ok(),
        inspected
            .get(&ctx.images.k3s)
            .and_then(|i| i.labels.get(crate::images::PRIVILEGED_LABEL))
            .map(String::as_str),
    )?;
    ctx.image_volumes = inspected.into_iter().map(|(k, v)| (k, v.volumes)).collect();
    ctx.control_host = crate::engine::control_host();
    ctx.engine = crate::engine::current().ok().map(|e| e.label());
    ctx.etcd_pki = etcd_pki(spec, &subnet, ctx.control_host)?;
    ctx.external_tls = external_tls(spec)?;
    Ok(Prepared {
        ctx,
        used,
        auto_subnet,
    })
}

/// The etcd certificates for members at their addresses in `subnet`.
pub(crate) fn etcd_pki(
    spec: &ClusterSpec,
    subnet: &Subnet,
    control_host: IpAddr,
) -> Result<Option<EtcdPki>> {
    let Datastore::Etcd(e) = &spec.datastore else {
        return Ok(None);
    };
    let etcd_spec = crate::plan::etcd_cluster_spec(spec, e, subnet, control_host);
    Ok(Some(EtcdPki::generate(&etcd_spec)?))
}

fn external_tls(spec: &ClusterSpec) -> Result<ExternalTls> {
    let Datastore::External(ext) = &spec.datastore else {
        return Ok(ExternalTls::default());
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| Error::io("cannot read", p, e))
    };
    Ok(ExternalTls {
        ca: ext.ca.as_deref().map(read).transpose()?,
        cert: ext.cert.as_deref().map(read).transpose()?,
        key: ext.key.as_deref().map(read).transpose()?.map(KeyPem::new),
    })
}

/// What topgun reads from an image.
struct ImageFacts {
    volumes: Vec<String>,
    labels: HashMap<String, String>,
}

/// Inspects each image: missing ones fail with [`Error::ImageMissing`];
/// the volumes and labels each declares are returned.
async fn inspect_images(
    docker: &Docker,
    images: &[String],
) -> Result<BTreeMap<String, ImageFacts>> {
    let found = try_join_all(images.iter().map(|image| async move {
        match docker.inspect_image(image).await {
            Ok(info) => {
                let config = info.config.unwrap_or_default();
                Ok((
                    image.clone(),
                    ImageFacts {
                        volumes: config.volumes.unwrap_or_default(),
                        labels: config.labels.unwrap_or_default(),
                    },
                ))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::ImageMissing {
                image: image.clone(),
            }),
            Err(e) => Err(Error::docker(format!("inspect image {image}"), e)),
        }
    }))
    .await?;
    Ok(found.into_iter().collect())
}

/// Refuses a name that is taken: by label, by container name, by network
/// name or by labelled volumes (leftovers of a half-made cluster count).
pub(crate) async fn check_name_free(docker: &Docker, name: &str) -> Result<()> {
    let by_label = docker::label_filters(&[(labels::CLUSTER, name)]);
    let prefix = format!("topgun-{name}-");
    let net = network_name(name);
    let (labelled, named, networks, volumes, named_volumes) = tokio::try_join!(
        docker::containers(docker, by_label.clone()),
        docker::containers(
            docker,
            HashMap::from([("name".to_owned(), vec![prefix.clone()])])
        ),
        docker::networks(
            docker,
            HashMap::from([("name".to_owned(), vec![net.clone()])])
        ),
        docker::volumes(docker, by_label),
        docker::volumes(
            docker,
            HashMap::from([("name".to_owned(), vec![prefix.clone()])])
        ),
    )?;
    let mut resources: Vec<String> = Vec::new();
    for c in labelled.iter().chain(named.iter()) {
        let n = docker::summary_name(c);
        let ours = c
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::CLUSTER))
            .map(String::as_str)
            == Some(name);
        if (ours || is_node_name(name, &n)) && !resources.contains(&format!("container {n}")) {
            resources.push(format!("container {n}"));
        }
    }
    for n in networks {
        if n.name.as_deref() == Some(net.as_str()) {
            resources.push(format!("network {net}"));
        }
    }
    if !volumes.is_empty() {
        resources.push(format!("{} volume(s)", volumes.len()));
    }
    // Volumes named like this cluster's, whoever made them: topgun never
    // mounts a volume it did not make in this run.
    let foreign: Vec<String> = named_volumes
        .iter()
        .filter(|v| v.labels.get(labels::CLUSTER).map(String::as_str) != Some(name))
        .filter(|v| is_volume_name(name, &v.name))
        .map(|v| v.name.clone())
        .collect();
    if resources.is_empty() && !foreign.is_empty() {
        return Err(Error::invalid(
            format!("cluster name {name:?}"),
            format!(
                "is taken by volumes topgun did not make: {}",
                foreign.join(", ")
            ),
            format!(
                "remove them yourself if they are not needed (`docker volume rm {}`), or pick \
                 another name; topgun never mounts or removes what it did not make",
                foreign.join(" ")
            ),
        ));
    }
    if resources.is_empty() {
        Ok(())
    } else {
        resources.truncate(6);
        Err(Error::ClusterExists {
            name: name.to_owned(),
            resources,
        })
    }
}

/// Whether `volume` is named like a volume of cluster `name`: its images
/// volume, or `<node name>-<path>` of one of its nodes.
fn is_volume_name(name: &str, volume: &str) -> bool {
    if volume == crate::plan::images_volume_name(name) {
        return true;
    }
    let Some(rest) = volume.strip_prefix(&format!("topgun-{name}-")) else {
        return false;
    };
    if rest.starts_with("lb-") {
        return true;
    }
    let mut parts = rest.splitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(role), Some(index), Some(_)) => {
            matches!(role, "server" | "agent" | "etcd")
                && !index.is_empty()
                && index.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// Whether `container` is named like a node of cluster `name`:
/// `topgun-<name>-lb` or `topgun-<name>-<role>-<index>` (not a node of
/// `<name>-more`).
fn is_node_name(name: &str, container: &str) -> bool {
    let Some(rest) = container.strip_prefix(&format!("topgun-{name}-")) else {
        return false;
    };
    if rest == "lb" {
        return true;
    }
    match rest.split_once('-') {
        Some((role, index)) => {
            matches!(role, "server" | "agent" | "etcd")
                && !index.is_empty()
                && index.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Fixed host ports must be free. Only checked when Docker runs here (the
/// ports are this machine's); a port bound by another program, or published
/// by another container, fails with [`Error::PortInUse`].
fn check_ports_free(spec: &ClusterSpec) -> Result<()> {
    if !docker_is_local() {
        return Ok(());
    }
    let mut wanted: Vec<(IpAddr, u16, Protocol)> = Vec::new();
    if let Some(port) = spec.api.port {
        wanted.push((spec.api.host, port, Protocol::Tcp));
    }
    for p in &spec.ports {
        if let Some(port) = p.value.host_port {
            wanted.push((p.value.host_ip, port, p.value.protocol));
        }
    }
    for (ip, port, proto) in wanted {
        let result = match proto {
            Protocol::Tcp => TcpListener::bind((ip, port)).map(drop),
            Protocol::Udp => UdpSocket::bind((ip, port)).map(drop),
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(Error::PortInUse {
                    host: ip.to_string(),
                    port,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                return Err(Error::invalid(
                    format!("host address {ip}"),
                    "is not an address of this machine",
                    "publish on 127.0.0.1, on one of this host's addresses, or on 0.0.0.0",
                ));
            }
            Err(e) => tracing::debug!(%ip, port, error = %e, "cannot probe port; Docker will tell"),
        }
    }
    Ok(())
}

/// Subnets in use: every Docker network's IPv4 subnets and, when Docker runs
/// here, this host's routes.
async fn used_subnets(docker: &Docker) -> Result<Vec<Subnet>> {
    let nets = docker::networks(docker, HashMap::new()).await?;
    let mut used: Vec<Subnet> = nets
        .iter()
        .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
        .flatten()
        .filter_map(|c| c.subnet.as_deref())
        .filter_map(parse_any_subnet)
        .collect();
    if docker_is_local()
        && let Ok(routes) = std::fs::read_to_string("/proc/net/route")
    {
        used.extend(parse_routes(&routes));
    }
    Ok(used)
}

/// Parses `A.B.C.D/N` (any prefix, host bits allowed), IPv4 only.
fn parse_any_subnet(s: &str) -> Option<Subnet> {
    let (ip, prefix) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    Some(Subnet {
        base: Ipv4Addr::from(u32::from(ip) & mask),
        prefix,
    })
}

/// The non-default routes of `/proc/net/route` (little-endian hex).
fn parse_routes(text: &str) -> Vec<Subnet> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            if mask == 0 {
                return None;
            }
            let dest = Ipv4Addr::from(dest.to_le_bytes());
            let prefix = u32::from_be_bytes(mask.to_le_bytes()).leading_ones() as u8;
            Some(Subnet { base: dest, prefix })
        })
        .collect()
}

/// The first free /24 of the search range, starting at candidate `start`
/// (a random start spreads concurrent creates apart).
pub(crate) fn pick_subnet(used: &[Subnet], start: u32) -> Result<Subnet> {
    for i in 0..SEARCH_COUNT {
        let n = (start + i) % SEARCH_COUNT;
        let candidate = Subnet {
            base: Ipv4Addr::from(SEARCH_BASE + (n << 8)),
            prefix: 24,
        };
        if !used.iter().any(|u| u.overlaps(&candidate)) {
            return Ok(candidate);
        }
    }
    Err(Error::NoFreeSubnet {
        searched: SEARCH_DESC.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_avoid_networks_and_routes() {
        let used = vec![
            parse_any_subnet("172.28.0.0/24").unwrap(),
            parse_any_subnet("172.28.1.7/24").unwrap(),
            parse_any_subnet("172.17.0.0/16").unwrap(),
        ];
        assert_eq!(pick_subnet(&used, 0).unwrap().to_string(), "172.28.2.0/24");
        assert_eq!(
            pick_subnet(&used, 1023).unwrap().to_string(),
            "172.31.255.0/24"
        );
        let all = vec![parse_any_subnet("172.28.0.0/14").unwrap()];
        assert!(
            pick_subnet(&all, 5)
                .unwrap_err()
                .to_string()
                .contains("172.28.0.0/14")
        );
    }

    #[test]
    fn node_names_of_a_cluster_and_not_of_another() {
        assert!(is_node_name("demo", "topgun-demo-server-0"));
        assert!(is_node_name("demo", "topgun-demo-lb"));
        assert!(is_node_name("demo", "topgun-demo-etcd-12"));
        assert!(!is_node_name("demo", "topgun-demo-x-server-0"));
        assert!(!is_node_name("demo", "topgun-demo-x-lb"));
        assert!(!is_node_name("demo", "topgun-demo-server-"));
        assert!(!is_node_name("demo", "topgun-demox-server-0"));
    }

    #[test]
    fn volume_names_of_a_cluster_and_not_of_another() {
        assert!(is_volume_name("demo", "topgun-demo-server-0-var-log"));
        assert!(is_volume_name("demo", "topgun-demo-images"));
        assert!(is_volume_name("demo", "topgun-demo-lb-root"));
        assert!(!is_volume_name("demo", "topgun-demo-x-server-0-var-log"));
        assert!(!is_volume_name("demo", "topgun-demox-server-0-var-log"));
        assert!(!is_volume_name("demo", "topgun-demo-server-0"));
    }

    #[test]
    fn proc_net_route_is_parsed() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let routes: Vec<String> = parse_routes(text).iter().map(|s| s.to_string()).collect();
        assert_eq!(routes, ["192.168.0.0/24", "172.17.0.0/16"]);
    }
}
