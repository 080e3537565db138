//! k3d config files as k3d's documentation shows them (written here from
//! what the docs show), every field of v1alpha5, and the refusals.

use std::path::Path;

use super::super::{ClusterSpec, K3dConversion, convert_k3d};
use crate::Datastore;

fn convert(text: &str) -> K3dConversion {
    convert_k3d(text, Path::new("k3d.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn refused(text: &str) -> String {
    match convert_k3d(text, Path::new("k3d.yaml")) {
        Ok(c) => panic!("accepted:\n{}", c.yaml),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "apiVersion: k3d.io/v1alpha5\nkind: Simple\n";

/// The docs' "All Options" example, with only what topgun supports: every
/// field that maps.
const DOCS_SUPPORTED: &str = r#"# a k3d config, as in k3d's "Using Config Files" page
apiVersion: k3d.io/v1alpha5
kind: Simple
metadata:
  name: mycluster
servers: 1
agents: 2
kubeAPI:
  host: "myhost.my.domain"
  hostIP: "127.0.0.1"
  hostPort: "6445"
image: rancher/k3s:v1.20.4-k3s1
subnet: "172.28.0.0/16"
token: superSecretToken
volumes:
  - volume: /my/host/path:/path/in/node
    nodeFilters:
      - server:0
      - agent:*
ports:
  - port: 8080:80
    nodeFilters:
      - loadbalancer
env:
  - envVar: bar=baz
    nodeFilters:
      - server:0
registries:
  create:
    name: registry.localhost
    host: "0.0.0.0"
    hostPort: "5000"
  use:
    - k3d-myotherregistry:5000
  config: |
    mirrors:
      "my.company.registry":
        endpoint:
          - http://my.company.registry:5000
options:
  k3d:
    wait: true
    timeout: "60s"
    disableLoadbalancer: false
    disableImageVolume: false
    disableRollback: false
  k3s:
    extraArgs:
      - arg: "--tls-san=my.host.domain"
        nodeFilters:
          - server:*
    nodeLabels:
      - label: foo=bar
        nodeFilters:
          - agent:1
  kubeconfig:
    updateDefaultKubeconfig: true
    switchCurrentContext: true
"#;

#[test]
fn the_minimal_config_is_k3ds_default_cluster() {
    let c = convert(HEAD);
    assert_eq!(c.spec.name.as_str(), "k3s-default");
    assert_eq!((c.spec.servers, c.spec.agents), (1, 0));
    assert!(c.spec.loadbalancer.enabled);
    assert!(c.spec.kubeconfig.merge && c.spec.kubeconfig.switch_context);
    assert!(
        c.notes.iter().any(|n| n.contains("k3s-default")),
        "{:?}",
        c.notes
    );
    assert!(
        c.notes.iter().any(|n| n.contains("0.0.0.0")),
        "{:?}",
        c.notes
    );
}

#[test]
fn the_docs_example_converts() {
    let c = convert(DOCS_SUPPORTED);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!("k3d_docs_example", c.yaml);
        insta::assert_snapshot!("k3d_docs_example_notes", c.notes.join("\n"));
    });
    let s = &c.spec;
    assert_eq!(s.name.as_str(), "mycluster");
    assert_eq!((s.servers, s.agents), (1, 2));
    assert_eq!(s.api.to_string(), "127.0.0.1:6445");
    assert_eq!(s.image.as_deref(), Some("rancher/k3s:v1.20.4-k3s1"));
    assert_eq!(
        s.network.subnet.map(|n| n.to_string()).as_deref(),
        Some("172.28.0.0/16")
    );
    assert_eq!(
        s.token.as_ref().map(|t| t.expose()),
        Some("superSecretToken")
    );
    assert_eq!(s.timeouts.total, Some(std::time::Duration::from_secs(60)));
    assert!(matches!(s.datastore, Datastore::Embedded));
    let sans: Vec<String> = s.tls_san.0.iter().map(|n| n.to_string()).collect();
    assert_eq!(sans, ["myhost.my.domain", "my.host.domain"]);
    let args: Vec<String> = s
        .k3s_args
        .iter()
        .map(|a| format!("{}@{}", a.value, a.filter.as_ref().unwrap()))
        .collect();
    assert_eq!(args, ["--node-label=foo=bar@agent:1"]);
    let volume = &s.volumes[0];
    assert_eq!(volume.filter.as_ref().unwrap().as_str(), "server:0;agent:*");
    assert_eq!(s.ports[0].filter.as_ref().unwrap().as_str(), "loadbalancer");
    assert_eq!(s.ports[0].value.host_port, Some(8080));
    assert_eq!(s.env[0].value.key, "bar");
    let r = &s.registries;
    let create = r.create.as_ref().unwrap();
    assert_eq!(create.name.to_string(), "registry.localhost");
    assert_eq!(create.host.to_string(), "0.0.0.0");
    assert_eq!(create.port, Some(5000));
    let used: Vec<String> = r.uses.iter().map(|u| u.to_string()).collect();
    assert_eq!(used, ["myotherregistry:5000"]);
    assert!(r.config.is_some());
}

/// What `topgun config convert` prints reads back as the same cluster.
#[test]
fn the_converted_config_reads_back() {
    for text in [HEAD.to_owned(), DOCS_SUPPORTED.to_owned()] {
        let c = convert(&text);
        let again = ClusterSpec::from_yaml(&c.yaml, Path::new("converted.yaml")).unwrap();
        again.validate().unwrap();
        assert_eq!(format!("{:?}", again), format!("{:?}", c.spec));
    }
}

/// The docs' "All Options" example in full: it uses fields topgun refuses.
/// Each refused field, on its own, is an error that names it and its line.
#[test]
fn every_refused_field_names_itself_and_its_line() {
    let cases: &[(&str, &str, usize)] = &[
        ("network: my-custom-net\n", "`network`", 3),
        (
            "files:\n  - source: ns.yaml\n    destination: /var/lib/rancher/k3s/server/manifests/ns.yaml\n",
            "`files`",
            4,
        ),
        (
            "manifests:\n  - name: ns\n    manifest: 'kind: Namespace'\n",
            "`manifests`",
            4,
        ),
        (
            "hostAliases:\n  - ip: 1.2.3.4\n    hostnames: [my.host.local]\n",
            "`hostAliases`",
            4,
        ),
        (
            "registries:\n  create:\n    name: registry.localhost\n    proxy:\n      remoteURL: https://registry-1.docker.io\n",
            "`registries.create.proxy`",
            7,
        ),
        (
            "registries:\n  create:\n    name: r.localhost\n    volumes:\n      - /some/path:/var/lib/registry\n",
            "`registries.create.volumes`",
            7,
        ),
        (
            "options:\n  k3d:\n    nodeHookActions:\n      - stage: preStart\n",
            "`options.k3d.nodeHookActions`",
            6,
        ),
        (
            "options:\n  k3d:\n    loadbalancer:\n      configOverrides:\n        - settings.workerConnections=2048\n",
            "`options.k3d.loadbalancer.configOverrides`",
            7,
        ),
        (
            "options:\n  runtime:\n    gpuRequest: all\n",
            "`options.runtime.gpuRequest`",
            5,
        ),
        (
            "options:\n  runtime:\n    serversMemory: 1g\n",
            "`options.runtime.serversMemory`",
            5,
        ),
        (
            "options:\n  runtime:\n    agentsMemory: 1g\n",
            "`options.runtime.agentsMemory`",
            5,
        ),
        (
            "options:\n  runtime:\n    hostPidMode: true\n",
            "`options.runtime.hostPidMode`",
            5,
        ),
        (
            "options:\n  runtime:\n    labels:\n      - label: bar=baz\n        nodeFilters: [agent:1]\n",
            "`options.runtime.labels`",
            6,
        ),
        (
            "options:\n  runtime:\n    ulimits:\n      - name: nofile\n        soft: 26677\n        hard: 26677\n",
            "`options.runtime.ulimits`",
            6,
        ),
    ];
    for (snippet, field, line) in cases {
        let text = format!("{HEAD}{snippet}");
        let err = refused(&text);
        assert!(err.contains(field), "{field}: {err}");
        assert!(err.contains("not supported by topgun"), "{field}: {err}");
        assert!(
            err.contains(&format!("line {line} ")),
            "{field} at line {line}: {err}"
        );
        assert!(err.starts_with("k3d.yaml: "), "{err}");
    }
}

/// Fields k3d writes out with their defaults (as `k3d config init` does)
/// are accepted: they ask for nothing topgun does not do.
#[test]
fn empty_and_default_values_are_accepted() {
    let text = format!(
        "{HEAD}network: \"\"\nsubnet: auto\nfiles: []\nhostAliases: []\nregistries:\n  create:\n    \
         name: reg.localhost\n    image: docker.io/library/registry:2\n    proxy:\n      remoteURL: \
         \"\"\n      username: \"\"\n      password: \"\"\n    volumes: []\noptions:\n  k3d:\n    \
         disableImageVolume: false\n    loadbalancer:\n      configOverrides: []\n  runtime:\n    \
         gpuRequest: \"\"\n    hostPidMode: false\n    labels: []\n    ulimits: []\n"
    );
    let c = convert(&text);
    assert_eq!(c.spec.network.subnet, None);
    let create = c.spec.registries.create.as_ref().unwrap();
    assert_eq!(create.image, None);
    assert_eq!(create.host.to_string(), "127.0.0.1");
    assert!(
        c.notes.iter().any(|n| n.contains("registry reg.localhost")),
        "{:?}",
        c.notes
    );
}

/// k3d's "Exposing Services" and "Using Registries" guides, as config files.
#[test]
fn guide_examples_convert() {
    // Ingress on the load balancer, traefik off on the first server.
    let text = format!(
        "{HEAD}metadata:\n  name: ingress\nagents: 2\nports:\n  - port: 8081:80\n    nodeFilters:\n      \
         - loadbalancer\n  - port: 0.0.0.0:30080:30080\n    nodeFilters:\n      - agent:0:direct\n\
         options:\n  k3s:\n    extraArgs:\n      - arg: --disable=traefik\n        nodeFilters:\n          \
         - server:*\n"
    );
    let c = convert(&text);
    let ports: Vec<String> = c
        .spec
        .ports
        .iter()
        .map(|p| format!("{}@{}", p.value, p.filter.as_ref().unwrap()))
        .collect();
    assert_eq!(
        ports,
        [
            "127.0.0.1:8081:80/tcp@loadbalancer",
            "0.0.0.0:30080:30080/tcp@agent:0"
        ]
    );
    assert_eq!(c.spec.k3s_args[0].value.0, "--disable=traefik");
    // A port without filters goes through the load balancer, as in k3d.
    let c = convert(&format!("{HEAD}servers: 3\nports:\n  - port: 8080:80\n"));
    assert_eq!(c.spec.ports[0].filter, None);
    assert!(c.yaml.contains("- 127.0.0.1:8080:80/tcp\n"), "{}", c.yaml);
    // A registry created with the cluster, and one made before.
    let text = format!(
        "{HEAD}registries:\n  create:\n    name: k3d-registry.localhost\n    hostPort: \"12345\"\n  \
         use:\n    - k3d-myregistry.localhost:12345\n"
    );
    let c = convert(&text);
    let r = &c.spec.registries;
    assert_eq!(
        r.create.as_ref().unwrap().name.to_string(),
        "registry.localhost"
    );
    assert_eq!(r.uses[0].to_string(), "myregistry.localhost:12345");
    assert!(
        c.notes
            .iter()
            .filter(|n| n.contains("`k3d-` container prefix"))
            .count()
            == 2,
        "{:?}",
        c.notes
    );
}

#[test]
fn kubeconfig_options_map() {
    let c = convert(&format!(
        "{HEAD}options:\n  kubeconfig:\n    updateDefaultKubeconfig: true\n    switchCurrentContext: false\n"
    ));
    assert!(c.spec.kubeconfig.merge && !c.spec.kubeconfig.switch_context);
    let c = convert(&format!(
        "{HEAD}options:\n  kubeconfig:\n    updateDefaultKubeconfig: false\n"
    ));
    assert!(!c.spec.kubeconfig.merge && !c.spec.kubeconfig.switch_context);
}

#[test]
fn k3d_options_map() {
    let c = convert(&format!(
        "{HEAD}servers: 3\noptions:\n  k3d:\n    wait: false\n    timeout: 1m30s\n    disableLoadbalancer: true\n    \
         disableImageVolume: true\n    disableRollback: true\n"
    ));
    assert!(!c.spec.loadbalancer.enabled);
    assert!(c.spec.no_rollback);
    assert_eq!(
        c.spec.timeouts.total,
        Some(std::time::Duration::from_secs(90))
    );
    assert!(
        c.notes.iter().any(|n| n.contains("always waits")),
        "{:?}",
        c.notes
    );
    assert!(
        c.notes.iter().any(|n| n.contains("images volume")),
        "{:?}",
        c.notes
    );
    let err = refused(&format!("{HEAD}options:\n  k3d:\n    timeout: soon\n"));
    assert!(
        err.contains("k3d timeout \"soon\"") && err.contains("line 5 "),
        "{err}"
    );
}

#[test]
fn tls_san_args_become_topguns_option() {
    let c = convert(&format!(
        "{HEAD}options:\n  k3s:\n    extraArgs:\n      - arg: --tls-san=k3s.example.com\n      \
         - arg: --tls-san=192.168.1.28\n        nodeFilters: [server:0]\n"
    ));
    let sans: Vec<String> = c.spec.tls_san.0.iter().map(|n| n.to_string()).collect();
    assert_eq!(sans, ["k3s.example.com", "192.168.1.28"]);
    assert!(c.spec.k3s_args.is_empty());
    assert!(
        c.notes.iter().any(|n| n.contains("server:0")),
        "{:?}",
        c.notes
    );
    // Other flags topgun manages are refused where they stand.
    let err = refused(&format!(
        "{HEAD}options:\n  k3s:\n    extraArgs:\n      - arg: --cluster-init\n"
    ));
    assert!(
        err.contains("line 6 ") && err.contains("--cluster-init"),
        "{err}"
    );
}

#[test]
fn node_filters_in_k3d_forms() {
    let cases = [
        ("server:0", "server:0"),
        ("servers:*", "server:*"),
        ("agents:1", "agent:1"),
        ("agent:0,1", "agent:0,1"),
        ("agent:0-2", "agent:0-2"),
        ("agent:1-", "agent:1-2"),
        ("agent:-1", "agent:0-1"),
        ("all", "all"),
        ("server", "server:*"),
    ];
    for (k3d, topgun) in cases {
        let c = convert(&format!(
            "{HEAD}servers: 3\nagents: 3\nenv:\n  - envVar: A=b\n    nodeFilters: [\"{k3d}\"]\n"
        ));
        assert_eq!(
            c.spec.env[0].filter.as_ref().unwrap().as_str(),
            topgun,
            "{k3d}"
        );
    }
    let refusals = [
        ("server[0]", "write `server:0`", 5),
        ("agent:x", "k3d node filter \"agent:x\"", 5),
        ("workers:*", "unknown group", 5),
        ("server:0:direct", "only ports take", 5),
        ("agent:5", "selects agent 5", 0),
    ];
    for (k3d, expected, line) in refusals {
        let err = refused(&format!(
            "{HEAD}agents: 3\nenv:\n  - envVar: A=b\n    nodeFilters:\n      - \"{k3d}\"\n"
        ));
        assert!(err.contains(expected), "{k3d}: {err}");
        if line > 0 {
            // The filter's own line (the list is on line 7).
            assert!(err.contains("line 7"), "{k3d}: {err}");
        }
    }
}

/// An error about a filter names the line of that item's filter, not of
/// the same filter text elsewhere.
#[test]
fn filter_errors_name_their_items_line() {
    let err = refused(&format!(
        "{HEAD}agents: 1\nenv:\n  - envVar: A=b\n    nodeFilters: [agent:0]\n  - envVar: C=d\n    \
         nodeFilters: [server:0]\nvolumes:\n  - volume: /x:/y\n    nodeFilters: [server:0:direct]\n"
    ));
    assert!(
        err.contains("line 11") && err.contains("only ports take"),
        "{err}"
    );
}

/// k3d proxies a port through its load balancer to the nodes a filter
/// names; topgun's load balancer forwards to every node, so a subset is
/// refused, with the two forms that work.
#[test]
fn ports_through_the_load_balancer_to_some_nodes_are_refused() {
    let err = refused(&format!(
        "{HEAD}servers: 3\nports:\n  - port: 8080:80\n    nodeFilters:\n      - server:0\n"
    ));
    assert!(
        err.contains("forwards a published port to every server and agent")
            && err.contains("`server:0:direct`")
            && err.contains("line 7"),
        "{err}"
    );
    // Every node, in k3d's words, is the load balancer in topgun's.
    let c = convert(&format!(
        "{HEAD}servers: 3\nagents: 1\nports:\n  - port: 8080:80\n    nodeFilters: [servers:*, agents:*]\n"
    ));
    assert_eq!(
        c.spec.ports[0].filter.as_ref().unwrap().as_str(),
        "loadbalancer"
    );
    let err = refused(&format!(
        "{HEAD}options:\n  k3d:\n    disableLoadbalancer: true\nports:\n  - port: 8080:80\n    nodeFilters: [loadbalancer]\n"
    ));
    assert!(err.contains("disableLoadbalancer"), "{err}");
    let err = refused(&format!("{HEAD}ports:\n  - port: 8000-8010:80-90\n"));
    assert!(
        err.contains("port range") && err.contains("line 4 "),
        "{err}"
    );
}

#[test]
fn other_config_versions_and_kinds_are_refused() {
    let err = refused("apiVersion: k3d.io/v1alpha4\nkind: Simple\n");
    assert!(
        err.contains("k3d config migrate") && err.contains("line 1"),
        "{err}"
    );
    let err = refused("apiVersion: k3d.io/v1alpha5\nkind: Cluster\n");
    assert!(
        err.contains("`kind: Simple`") && err.contains("line 2"),
        "{err}"
    );
    let err = refused("apiVersion: v1\nkind: Config\n");
    assert!(err.contains("not a config topgun reads"), "{err}");
    let err = ClusterSpec::from_yaml_file(Path::new("/nonexistent")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent"), "{err}");
}

#[test]
fn unknown_fields_name_their_line() {
    let err = refused(&format!("{HEAD}servers: 1\nlabels:\n  - label: foo=bar\n"));
    assert!(
        err.contains("unknown field `labels`") && err.contains("line 4 "),
        "{err}"
    );
    let err = refused(&format!(
        "{HEAD}options:\n  k3s:\n    extraServerArgs: [--tls-san=x]\n"
    ));
    assert!(
        err.contains("extraServerArgs") && err.contains("line 5 "),
        "{err}"
    );
}

#[test]
fn environment_variables_are_not_expanded() {
    let err = refused(&format!("{HEAD}volumes:\n  - volume: ${{HOME}}/src:/src\n"));
    assert!(
        err.contains("line 4: uses `$VARIABLE`") && err.contains("envsubst"),
        "{err}"
    );
}

/// Secrets in the file (the token, environment values, a registry's auth)
/// never show in an error.
#[test]
fn errors_show_no_secrets() {
    let err = refused(&format!("{HEAD}token: \"s3cret token\"\n"));
    assert!(err.contains("token") && !err.contains("s3cret"), "{err}");
    let err = refused(&format!(
        "{HEAD}token: s3cretToken\nenv:\n  - envVar: DB_PASSWORD=hunter2\n    nodeFilters: [servers]\n  \
         - envVar: K3S_TOKEN=hunter3\n"
    ));
    assert!(
        !err.contains("s3cretToken") && !err.contains("hunter"),
        "{err}"
    );
    let err = refused(&format!(
        "{HEAD}registries:\n  config: |\n    configs:\n      reg:\n        auth: {{password: hunter4}}\n    bogus: 1\n"
    ));
    assert!(!err.contains("hunter4"), "{err}");
}

/// A topgun config is told apart from a k3d one by its lack of apiVersion.
#[test]
fn topgun_configs_are_not_k3d_configs() {
    let err = refused("name: demo\nservers: 3\n");
    assert!(err.contains("is not a k3d config"), "{err}");
}
