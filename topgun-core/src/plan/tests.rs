//! Snapshot tests of plans, and checks of what the snapshots cannot show.

use std::collections::BTreeMap;

use super::*;
use crate::spec::{ClusterSpec, Datastore, Token};

fn ctx(spec: &ClusterSpec) -> PlanContext {
    let images = ImageSet::resolve(spec, |_| None);
    let mut ctx = PlanContext::new(
        "0123456789abcdef",
        Token::new("REDACTED-TOKEN").unwrap(),
        Subnet::parse("172.28.0.0/24").unwrap(),
        images.clone(),
    );
    ctx.image_volumes = BTreeMap::from([(
        images.k3s.clone(),
        K3S_VOLUMES.iter().map(|s| (*s).to_owned()).collect(),
    )]);
    if let Datastore::Etcd(e) = &spec.datastore {
        let etcd_spec = topgun_etcd::EtcdClusterSpec::new(spec.name.lowercase())
            .with_members(e.members as usize)
            .with_addresses(
                (0..e.members).map(|i| IpAddr::V4(node_ip(&ctx.subnet, Role::Etcd, i))),
            );
        ctx.etcd_pki = Some(EtcdPki::generate(&etcd_spec).unwrap());
    }
    ctx
}

fn snapshot(name: &str, plan: &ClusterPlan) {
    let mut settings = insta::Settings::clone_current();
    settings.set_sort_maps(true);
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(
        r"-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----\n?",
        "[certificate]",
    );
    settings.add_filter(
        r"dev\.topgun\.version: \S+",
        "dev.topgun.version: [version]",
    );
    settings.bind(|| insta::assert_yaml_snapshot!(name, plan));
}

#[test]
fn one_server() {
    let spec = ClusterSpec::builder("demo").build().unwrap();
    let plan = plan(&spec, &ctx(&spec)).unwrap();
    snapshot("plan_one_server", &plan);
}

#[test]
fn three_servers_embedded() {
    let spec = ClusterSpec::builder("Demo")
        .servers(3)
        .api("127.0.0.1:6550")
        .build()
        .unwrap();
    let plan = plan(&spec, &ctx(&spec)).unwrap();
    snapshot("plan_three_servers_embedded", &plan);
}

#[test]
fn three_servers_two_agents_on_etcd() {
    let spec = ClusterSpec::builder("topgun")
        .servers(3)
        .agents(2)
        .datastore(Datastore::etcd(3))
        .tls_san("192.168.1.28")
        .k3s_arg("--disable=traefik@server:*")
        .env("HTTP_PROXY=http://proxy:3128@agent:1")
        .port("8080:80@loadbalancer")
        .build()
        .unwrap();
    let plan = plan(&spec, &ctx(&spec)).unwrap();
    snapshot("plan_three_servers_two_agents_etcd", &plan);
}

#[test]
fn external_endpoint() {
    let spec = ClusterSpec::builder("ext")
        .servers(2)
        .datastore(Datastore::external("postgres://k3s:PASSWORD@db.example:5432/k3s").unwrap())
        .loadbalancer(false)
        .api("6551")
        .build()
        .unwrap();
    let mut ctx = ctx(&spec);
    ctx.external_tls = ExternalTls {
        ca: Some("CA PEM".to_owned()),
        cert: None,
        key: None,
    };
    let plan = plan(&spec, &ctx).unwrap();
    snapshot("plan_external_endpoint", &plan);
}

fn env_of(node: &NodePlan) -> Vec<String> {
    node.body.env.clone().unwrap_or_default()
}

#[test]
fn secrets_stay_out_of_args_and_labels() {
    let spec = ClusterSpec::builder("topgun")
        .servers(3)
        .agents(1)
        .datastore(Datastore::etcd(3))
        .token("s3cret-token-value")
        .build()
        .unwrap();
    let mut c = ctx(&spec);
    c.token = spec.token.clone().unwrap();
    let plan = plan(&spec, &c).unwrap();
    let keys: Vec<&str> = plan
        .etcd
        .as_ref()
        .unwrap()
        .pki
        .as_ref()
        .unwrap()
        .members
        .iter()
        .map(|m| m.server.key_pem.expose())
        .collect();
    for node in &plan.nodes {
        let cmd = node.body.cmd.clone().unwrap_or_default().join(" ");
        let labels = format!("{:?}", node.body.labels);
        for secret in ["s3cret-token-value", "PRIVATE KEY"] {
            assert!(!cmd.contains(secret), "{}: {cmd}", node.name);
            assert!(!labels.contains(secret), "{}: {labels}", node.name);
        }
        for key in &keys {
            assert!(!env_of(node).iter().any(|e| e.contains(key)));
        }
        if matches!(node.role, Role::Server | Role::Agent) {
            // The token is in k3s's config file (0600), not in env.
            assert!(
                !env_of(node)
                    .iter()
                    .any(|e| e.contains("s3cret-token-value"))
            );
            let config = node
                .files
                .iter()
                .find(|f| f.path == K3S_CONFIG_PATH)
                .unwrap();
            assert!(config.contents.is_secret());
            let text = String::from_utf8(config.contents.expose().to_vec()).unwrap();
            assert!(text.contains("token: s3cret-token-value"), "{text}");
        }
        for f in &node.files {
            // Keys, and the cluster record (it holds the token).
            let secret =
                f.path.ends_with(".key") || f.path == RECORD_PATH || f.path == K3S_CONFIG_PATH;
            assert_eq!(f.contents.is_secret(), secret, "{}", f.path);
            assert_eq!(f.mode, if secret { 0o600 } else { 0o644 }, "{}", f.path);
        }
    }
    let yaml = serde_norway::to_string(&plan).unwrap();
    assert!(
        !yaml.contains("PRIVATE KEY"),
        "serialized plans never hold keys"
    );
}

#[test]
fn every_resource_is_labelled_with_cluster_run_and_role() {
    let spec = ClusterSpec::builder("topgun")
        .servers(3)
        .agents(2)
        .datastore(Datastore::etcd(3))
        .build()
        .unwrap();
    let plan = plan(&spec, &ctx(&spec)).unwrap();
    let check = |what: &str, l: &HashMap<String, String>, role: &str| {
        assert_eq!(
            l.get(labels::CLUSTER).map(String::as_str),
            Some("topgun"),
            "{what}"
        );
        assert_eq!(
            l.get(labels::RUN).map(String::as_str),
            Some("0123456789abcdef"),
            "{what}"
        );
        assert_eq!(
            l.get(labels::ROLE).map(String::as_str),
            Some(role),
            "{what}"
        );
    };
    check(
        "network",
        plan.network.body.labels.as_ref().unwrap(),
        "network",
    );
    for v in plan.volumes() {
        let role = ["server", "agent", "etcd", "loadbalancer"]
            .into_iter()
            .find(|r| {
                v.name.contains(&format!(
                    "-{}-",
                    if *r == "loadbalancer" { "lb" } else { r }
                ))
            })
            .unwrap();
        check(&v.name, v.body.labels.as_ref().unwrap(), role);
    }
    // 3 etcd (1 volume each) + 5 k3s nodes (4 each).
    assert_eq!(plan.volumes().count(), 3 + 5 * 4);
    for n in &plan.nodes {
        check(&n.name, n.body.labels.as_ref().unwrap(), n.role.as_str());
    }
    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "topgun-topgun-etcd-0",
            "topgun-topgun-etcd-1",
            "topgun-topgun-etcd-2",
            "topgun-topgun-lb",
            "topgun-topgun-server-0",
            "topgun-topgun-server-1",
            "topgun-topgun-server-2",
            "topgun-topgun-agent-0",
            "topgun-topgun-agent-1",
        ]
    );
    let phases: Vec<(PhaseKind, usize)> = plan
        .phases
        .iter()
        .map(|p| (p.kind, p.nodes.len()))
        .collect();
    assert_eq!(
        phases,
        [
            (PhaseKind::Etcd, 3),
            (PhaseKind::LoadBalancer, 1),
            (PhaseKind::FirstServer, 1),
            (PhaseKind::Servers, 2),
            (PhaseKind::Agents, 2)
        ]
    );
}

#[test]
fn mixed_case_names_give_lowercase_hostnames() {
    let spec = ClusterSpec::builder("topgunCluster")
        .servers(2)
        .build()
        .unwrap();
    let plan = plan(&spec, &ctx(&spec)).unwrap();
    let s1 = plan
        .nodes
        .iter()
        .find(|n| n.name == "topgun-topgunCluster-server-1")
        .unwrap();
    assert_eq!(s1.hostname, "topgun-topguncluster-server-1");
    assert!(env_of(s1).contains(&"K3S_URL=https://topgun-topguncluster-server-0:6443".to_owned()));
    assert!(
        plan.sans
            .contains(&San::Dns("topgun-topguncluster-lb".to_owned()))
    );
}

/// The generated haproxy config is accepted by a real haproxy (`-c`).
#[test]
fn haproxy_accepts_the_generated_config() {
    let haproxy =
        std::env::var("TOPGUN_HAPROXY").unwrap_or_else(|_| "/usr/sbin/haproxy".to_owned());
    assert!(
        std::path::Path::new(&haproxy).exists(),
        "haproxy not found at {haproxy}: install Debian's haproxy (`cargo xtask setup`) or set TOPGUN_HAPROXY"
    );
    let spec = ClusterSpec::builder("topgun")
        .servers(3)
        .agents(2)
        .port("8080:80")
        .port("8443:443")
        .build()
        .unwrap();
    let plan = plan(&spec, &ctx(&spec)).unwrap();
    let lb = plan
        .nodes
        .iter()
        .find(|n| n.role == Role::LoadBalancer)
        .unwrap();
    let cfg = &lb.files[0];
    assert_eq!(cfg.path, LB_CONFIG_PATH);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg.contents.expose()).unwrap();
    let out = std::process::Command::new(&haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haproxy -c refused the config:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(cfg.contents.expose());
    assert!(
        text.contains("server topgun-topgun-server-2 172.28.0.22:6443 check"),
        "{text}"
    );
    assert!(
        text.contains("server topgun-topgun-agent-1 172.28.0.131:443 check"),
        "{text}"
    );
}

#[test]
fn every_published_port_is_pinned_from_the_context() {
    let spec = ClusterSpec::builder("pins")
        .servers(3)
        .agents(1)
        .datastore(Datastore::etcd(3))
        .port("8080:80@loadbalancer")
        .port("0.0.0.0::9000@agent:0")
        .build()
        .unwrap();
    let mut c = ctx(&spec);
    let open = plan(&spec, &c).unwrap().open_ports();
    // The API and stats ports of the load balancer, one client port per etcd
    // member, and the agent's port without a host port.
    assert_eq!(open.len(), 2 + 3 + 1, "{open:?}");
    assert!(open.contains(&"0.0.0.0".parse().unwrap()));
    c.host_ports = (40001..).take(open.len()).collect();
    let pinned = plan(&spec, &c).unwrap();
    assert!(pinned.open_ports().is_empty());
    let lb = pinned.node("topgun-pins-lb").unwrap();
    assert_eq!(pinned.api.port, published_port(&lb.body, API_PORT));
    assert!(pinned.api.port.is_some_and(|p| p > 40000));
    let agent = pinned.node("topgun-pins-agent-0").unwrap();
    let bound = agent
        .body
        .host_config
        .as_ref()
        .unwrap()
        .port_bindings
        .as_ref()
        .unwrap();
    let b = &bound["9000/tcp"].as_ref().unwrap()[0];
    assert_eq!(b.host_ip.as_deref(), Some("0.0.0.0"));
    assert!(b.host_port.as_deref().unwrap().parse::<u16>().unwrap() > 40000);
    // The user's fixed port stays as given.
    assert_eq!(published_port(&lb.body, 8080), None);
    let lb_ports = lb
        .body
        .host_config
        .as_ref()
        .unwrap()
        .port_bindings
        .as_ref()
        .unwrap();
    assert_eq!(
        lb_ports["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
        Some("8080")
    );
}

/// A context for nodes added to a cluster made with `ctx(spec)`: another run
/// id, and with topgun's etcd the datastore files "read back" from a server.
fn added_ctx(spec: &ClusterSpec) -> PlanContext {
    let mut c = ctx(spec);
    c.run_id = "fedcba9876543210".to_owned();
    if matches!(spec.datastore, Datastore::Etcd(_)) {
        let throwaway = plan(spec, &c).unwrap();
        let server = throwaway
            .nodes
            .iter()
            .find(|n| n.role == Role::Server)
            .unwrap();
        c.datastore_files = Some(
            server
                .files
                .iter()
                .filter(|f| f.path.starts_with(DATASTORE_DIR))
                .map(|f| PlannedFile {
                    path: f.path.clone(),
                    mode: f.mode,
                    contents: if f.contents.is_secret() {
                        FileContents::Secret(KeyPem::new("READ BACK KEY".to_owned()))
                    } else {
                        FileContents::Public(format!("READ BACK {}", f.path))
                    },
                })
                .collect(),
        );
    }
    c
}

fn k3s_nodes(servers: u32, agents: u32) -> Vec<(Role, u32)> {
    (0..servers)
        .map(|i| (Role::Server, i))
        .chain((0..agents).map(|i| (Role::Agent, i)))
        .collect()
}

fn added_spec_etcd(agents: u32) -> ClusterSpec {
    ClusterSpec::builder("topgun")
        .servers(3)
        .agents(agents)
        .datastore(Datastore::etcd(3))
        .tls_san("192.168.1.28")
        .k3s_arg("--disable=traefik@server:*")
        .env("HTTP_PROXY=http://proxy:3128@agent:*")
        .port("8080:80@loadbalancer")
        .build()
        .unwrap()
}

#[test]
fn added_agents_on_etcd() {
    // Created with 2 agents; the record's spec with bounds for 2 more.
    let spec = added_spec_etcd(4);
    let added = plan_added_nodes(
        &spec,
        &added_ctx(&spec),
        &k3s_nodes(3, 2),
        Role::Agent,
        &[2, 3],
    )
    .unwrap();
    snapshot_added("plan_added_agents_etcd", &added);
}

#[test]
fn added_server_embedded() {
    let spec = ClusterSpec::builder("Demo")
        .servers(4)
        .api("127.0.0.1:6550")
        .build()
        .unwrap();
    let added = plan_added_nodes(
        &spec,
        &added_ctx(&spec),
        &k3s_nodes(3, 0),
        Role::Server,
        &[3],
    )
    .unwrap();
    snapshot_added("plan_added_server_embedded", &added);
}

fn snapshot_added(name: &str, added: &AddedNodes) {
    let mut settings = insta::Settings::clone_current();
    settings.set_sort_maps(true);
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(
        r"dev\.topgun\.version: \S+",
        "dev.topgun.version: [version]",
    );
    // The haproxy config as lines, to be read in the snapshot.
    #[derive(Serialize)]
    struct Shown<'a> {
        nodes: &'a [NodePlan],
        haproxy_config: Option<Vec<&'a str>>,
    }
    let shown = Shown {
        nodes: &added.nodes,
        haproxy_config: added.haproxy_config.as_deref().map(|c| c.lines().collect()),
    };
    settings.bind(|| insta::assert_yaml_snapshot!(name, shown));
}

#[test]
fn added_servers_follow_the_cluster_and_join_through_the_load_balancer() {
    let spec = added_spec_etcd(2);
    let spec = ClusterSpec { servers: 5, ..spec };
    let c = added_ctx(&spec);
    let added = plan_added_nodes(&spec, &c, &k3s_nodes(3, 2), Role::Server, &[3, 4]).unwrap();
    let names: Vec<&str> = added.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["topgun-topgun-server-3", "topgun-topgun-server-4"]);
    let created = plan(&spec, &ctx(&spec)).unwrap();
    let like = created.node("topgun-topgun-server-1").unwrap();
    for n in &added.nodes {
        assert_eq!(n.ip, node_ip(&c.subnet, Role::Server, n.index));
        // The same argv and environment as the servers made by create.
        assert_eq!(n.body.cmd, like.body.cmd, "{}", n.name);
        assert_eq!(env_of(n), env_of(like), "{}", n.name);
        assert_eq!(n.body.image, like.body.image);
        let labels = n.body.labels.as_ref().unwrap();
        assert_eq!(labels[labels::RUN], "fedcba9876543210");
        // The datastore files are the ones read back, never new ones.
        let datastore: Vec<&PlannedFile> = n
            .files
            .iter()
            .filter(|f| f.path.starts_with(DATASTORE_DIR))
            .collect();
        assert_eq!(datastore.len(), 3);
        for f in datastore {
            let text = String::from_utf8_lossy(f.contents.expose()).into_owned();
            assert!(text.starts_with("READ BACK"), "{}: {text}", f.path);
            assert_eq!(f.contents.is_secret(), f.path.ends_with(".key"));
        }
        assert!(n.volumes.iter().all(|v| v.name.starts_with(&n.name)));
    }
    let cfg = added.haproxy_config.as_deref().unwrap();
    for i in 0..5 {
        assert!(
            cfg.contains(&format!(
                "server topgun-topgun-server-{i} 172.28.0.2{i}:6443 check"
            )),
            "{cfg}"
        );
    }
    // Forwarded ports go to every k3s node, old and new.
    assert!(
        cfg.contains("server topgun-topgun-server-4 172.28.0.24:80 check"),
        "{cfg}"
    );
    assert!(
        cfg.contains("server topgun-topgun-agent-1 172.28.0.131:80 check"),
        "{cfg}"
    );

    // Embedded: a new server joins through the load balancer, never
    // initialises the store.
    let spec = ClusterSpec::builder("emb").servers(4).build().unwrap();
    let added = plan_added_nodes(
        &spec,
        &added_ctx(&spec),
        &k3s_nodes(3, 0),
        Role::Server,
        &[3],
    )
    .unwrap();
    let n = &added.nodes[0];
    assert!(env_of(n).contains(&"K3S_URL=https://topgun-emb-lb:6443".to_owned()));
    assert!(
        !n.body
            .cmd
            .as_ref()
            .unwrap()
            .contains(&"--cluster-init".to_owned())
    );
}

#[test]
fn added_nodes_take_free_indices_of_servers_and_agents_only() {
    let spec = added_spec_etcd(4);
    let c = added_ctx(&spec);
    let existing = k3s_nodes(3, 2);
    for (role, indices) in [
        (Role::Agent, vec![1]),
        (Role::Agent, vec![4]),
        (Role::Etcd, vec![3]),
        (Role::LoadBalancer, vec![0]),
    ] {
        let err = plan_added_nodes(&spec, &c, &existing, role, &indices).unwrap_err();
        assert!(
            matches!(err, Error::InvalidSpec { .. }),
            "{role} {indices:?}: {err}"
        );
    }
}

#[test]
fn a_deleted_node_leaves_the_load_balancer() {
    let spec = added_spec_etcd(2);
    let subnet = Subnet::parse("172.28.0.0/24").unwrap();
    let existing = k3s_nodes(3, 2);
    let all = haproxy_config_for(&spec, &subnet, &existing).unwrap();
    let created = plan(&spec, &ctx(&spec)).unwrap();
    let lb = created.node("topgun-topgun-lb").unwrap();
    assert_eq!(all.as_bytes(), lb.files[0].contents.expose());

    let without = haproxy_config_without(&spec, &subnet, &existing, Role::Server, 1).unwrap();
    assert!(!without.contains("topgun-topgun-server-1 "), "{without}");
    assert!(without.contains("server topgun-topgun-server-2 172.28.0.22:6443 check"));
    // The agent stays in the forwarded port's backend.
    assert!(without.contains("server topgun-topgun-agent-0 172.28.0.130:80 check"));
    let without = haproxy_config_without(&spec, &subnet, &existing, Role::Agent, 0).unwrap();
    assert!(!without.contains("topgun-topgun-agent-0 "), "{without}");
    assert!(without.contains("server topgun-topgun-server-1 172.28.0.21:6443 check"));

    let no_lb = ClusterSpec::builder("solo")
        .loadbalancer(false)
        .build()
        .unwrap();
    assert_eq!(
        haproxy_config_without(&no_lb, &subnet, &existing, Role::Agent, 0),
        None
    );
}

#[test]
fn registries_are_connected_before_nodes_start_and_every_k3s_node_gets_their_mirrors() {
    use crate::registry::{RegistriesConfig, RegistriesSpec, RegistryRef, RegistrySpec};
    let registries = RegistriesSpec {
        create: Some(
            RegistrySpec::parse("registry.localhost:5001")
                .unwrap()
                .with_image("registry:2"),
        ),
        uses: vec![RegistryRef::parse("shared.localhost:5002").unwrap()],
        config: Some(
            RegistriesConfig::parse(
                "configs:\n  mirror.example:\n    auth: {username: u, password: REDACTED-PW}\n",
                std::path::Path::new("r.yaml"),
            )
            .unwrap(),
        ),
    };
    let spec = ClusterSpec::builder("demo")
        .agents(1)
        .registries(registries)
        .build()
        .unwrap();
    let plan = plan(&spec, &ctx(&spec)).unwrap();
    snapshot("plan_registries", &plan);
    let path = crate::plan::registry::REGISTRIES_PATH;
    let mut contents = Vec::new();
    for node in plan
        .nodes
        .iter()
        .filter(|n| matches!(n.role, Role::Server | Role::Agent))
    {
        let file = node
            .files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("{} has no {path}", node.name));
        assert_eq!(file.mode, 0o600, "{}", node.name);
        contents.push(String::from_utf8(file.contents.expose().to_vec()).unwrap());
    }
    assert_eq!(contents.len(), 2);
    assert_eq!(contents[0], contents[1]);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("plan_registries_yaml", contents[0]));
    // The load balancer gets none.
    let lb = plan.node("topgun-demo-lb").unwrap();
    assert!(lb.files.iter().all(|f| f.path != path));
}
