//! Table-driven tests of spec validation.

use std::path::Path;

use super::*;

fn err_of(r: Result<ClusterSpec>) -> String {
    match r {
        Ok(spec) => panic!("accepted: {spec:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn names() {
    for good in ["demo", "topgunCluster", "a", "k3s-1", &"a".repeat(32)] {
        ClusterSpec::builder(good)
            .build()
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    let long = "a".repeat(33);
    let cases = [
        (
            "my_cluster",
            "contains '_'; use '-' instead: \"my-cluster\"",
        ),
        ("-demo", "starts or ends with '-'"),
        ("demo-", "starts or ends with '-'"),
        (long.as_str(), "is 33 characters long, more than 32"),
        ("", "is empty"),
        ("de mo", "contains ' '"),
        ("démo", "contains 'é'"),
    ];
    for (name, expected) in cases {
        let err = err_of(ClusterSpec::builder(name).build());
        assert!(err.contains(expected), "{name:?}: {err}");
        assert!(err.starts_with("invalid cluster name"), "{name:?}: {err}");
    }
}

#[test]
fn counts() {
    let err = err_of(ClusterSpec::builder("a").servers(0).build());
    assert!(err.contains("at least one server"), "{err}");
    ClusterSpec::builder("a").agents(0).build().unwrap();
    let err = err_of(ClusterSpec::builder("a").servers(100).build());
    assert!(err.contains("more than 99"), "{err}");
    let err = err_of(
        ClusterSpec::builder("a")
            .datastore(Datastore::etcd(0))
            .build(),
    );
    assert!(err.contains("etcd member count 0"), "{err}");
}

#[test]
fn api_ports() {
    let cases = [
        ("0", "port 0"),
        ("70000", "out of range"),
        ("127.0.0.1:0", "port 0"),
        ("127.0.0.1:70000", "out of range"),
        ("localhost:6443", "not an IP address"),
        ("127.0.0.1:http", "not a port number"),
        ("10.99.99.99", "no port"),
        ("::1", "no port"),
        ("[::1]", "no port"),
    ];
    for (input, expected) in cases {
        let err = err_of(ClusterSpec::builder("a").api(input).build());
        assert!(err.contains(expected), "{input}: {err}");
    }
    let ok = [
        ("6550", "127.0.0.1", Some(6550)),
        ("192.168.1.28:6550", "192.168.1.28", Some(6550)),
        ("192.168.1.28:", "192.168.1.28", None),
        ("[::1]:", "::1", None),
        ("[::1]:6550", "::1", Some(6550)),
        ("0.0.0.0:6550", "0.0.0.0", Some(6550)),
    ];
    for (input, host, port) in ok {
        let api = ApiEndpoint::parse(input).unwrap();
        assert_eq!(
            (api.host.to_string().as_str(), api.port),
            (host, port),
            "{input}"
        );
    }
    let api = ClusterSpec::builder("a").build().unwrap().api;
    assert_eq!(
        api.host.to_string(),
        "127.0.0.1",
        "never 0.0.0.0 by default"
    );
    assert_eq!(api.port, None);
    assert_eq!(
        ApiEndpoint::parse("0.0.0.0:1")
            .unwrap()
            .dial_host()
            .to_string(),
        "127.0.0.1"
    );
}

#[test]
fn sans() {
    let cases = [
        (
            "k3s server --tls-san \"alien.io\"",
            "pass `--tls-san alien.io`",
        ),
        (
            "https://k3s.example:6443",
            "pass only the host: `k3s.example`",
        ),
        ("a_b.example", "replace '_' with '-'"),
        ("10.0.0.1:6443", "has a port"),
        ("a,,b", "is empty"),
    ];
    for (input, expected) in cases {
        let err = err_of(ClusterSpec::builder("a").tls_san(input).build());
        assert!(err.contains(expected), "{input}: {err}");
    }
    let spec = ClusterSpec::builder("a")
        .tls_san("192.168.1.28,k3s.example")
        .tls_san("*.apps.example")
        .build()
        .unwrap();
    assert_eq!(spec.tls_san.0.len(), 3);
    let spec = ClusterSpec::builder("a")
        .tls_san("0.0.0.0")
        .build()
        .unwrap();
    assert!(
        spec.warnings()
            .iter()
            .any(|w| matches!(w, Warning::San(m) if m.contains("unspecified address")))
    );
    // The etcd member count is topgun-etcd's to judge: an even count warns,
    // more than it allows is refused.
    let spec = ClusterSpec::builder("a")
        .datastore(Datastore::etcd(4))
        .build()
        .unwrap();
    assert!(spec.warnings().iter().any(|w| matches!(
        w,
        Warning::Etcd(topgun_etcd::SpecWarning::EvenMembers { members: 4 })
    )));
    let too_many = ClusterSpec::builder("a")
        .datastore(Datastore::etcd(topgun_etcd::MAX_MEMBERS as u32 + 1))
        .build()
        .unwrap_err();
    assert!(
        too_many.to_string().contains("must be from 1 to 7"),
        "{too_many}"
    );
}

#[test]
fn filters_against_the_cluster() {
    let cases: &[(&str, &str)] = &[
        (
            "--disable=traefik@server:3",
            "selects server 3, but the cluster has 3 server nodes, indices 0-2",
        ),
        ("--disable=traefik@agent:*", "matches no node"),
        ("--disable=traefik@etcd:0", "etcd nodes cannot take it"),
        (
            "--disable=traefik@loadbalancer",
            "loadbalancer nodes cannot take it",
        ),
        ("--disable=traefik@sever:0", "unknown role \"sever\""),
        ("--disable=traefik@server:a", "where an index"),
    ];
    for (arg, expected) in cases {
        let err = err_of(ClusterSpec::builder("a").servers(3).k3s_arg(arg).build());
        assert!(err.contains(expected), "{arg}: {err}");
    }
    ClusterSpec::builder("a")
        .servers(3)
        .agents(2)
        .k3s_arg("--disable=traefik@server:0-2;agent:1")
        .build()
        .unwrap();
}

#[test]
fn ports_against_the_cluster() {
    let err = err_of(
        ClusterSpec::builder("a")
            .servers(3)
            .port("8080:80@server:*")
            .build(),
    );
    assert!(
        err.contains("would publish host port 8080 on 3 nodes"),
        "{err}"
    );
    let err = err_of(
        ClusterSpec::builder("a")
            .api("6550")
            .port("6550:80")
            .build(),
    );
    assert!(err.contains("which the API already uses"), "{err}");
    let err = err_of(ClusterSpec::builder("a").port("7000:6443").build());
    assert!(err.contains("load balancer's port 6443"), "{err}");
    let err = err_of(ClusterSpec::builder("a").port("8080:80@etcd:0").build());
    assert!(err.contains("etcd"), "{err}");
    let err = err_of(ClusterSpec::builder("a").port("5353:53/udp").build());
    assert!(err.contains("does not forward"), "{err}");
    ClusterSpec::builder("a")
        .port("5353:53/udp@server:0")
        .build()
        .unwrap();
    ClusterSpec::builder("a")
        .servers(3)
        .port("80@server:*")
        .port("8080:80")
        .build()
        .unwrap();
}

#[test]
fn external_datastore() {
    let err = err_of(
        ClusterSpec::builder("a")
            .servers(2)
            .datastore(Datastore::external("sqlite:///db").unwrap())
            .build(),
    );
    assert!(err.contains("SQLite"), "{err}");
    let ds = match Datastore::external("https://10.0.0.1:2379").unwrap() {
        Datastore::External(e) => e.with_tls(Some("/nonexistent/ca.crt".into()), None, None),
        _ => unreachable!(),
    };
    let err = err_of(
        ClusterSpec::builder("a")
            .datastore(Datastore::External(ds))
            .build(),
    );
    assert!(err.contains("cannot read /nonexistent/ca.crt"), "{err}");
}

#[test]
fn yaml_round_trip() {
    let yaml = r#"
name: topgunCluster
servers: 3
agents: 2
datastore:
  etcd:
    members: 3
api-port: "127.0.0.1:6550"
tls-san: [192.168.1.28, k3s.example]
k3s-args: ["--disable=traefik@server:*"]
env: ["HTTP_PROXY=http://proxy:3128@all"]
ports: ["8080:80@loadbalancer"]
timeouts: {server: 3m, api: 90}
no-rollback: true
"#;
    let spec = ClusterSpec::from_yaml(yaml, Path::new("c.yaml")).unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.name.as_str(), "topgunCluster");
    assert_eq!(spec.counts().etcd, 3);
    assert_eq!(spec.api.port, Some(6550));
    assert_eq!(spec.timeouts.server, std::time::Duration::from_secs(180));
    assert_eq!(spec.timeouts.api, std::time::Duration::from_secs(90));
    assert!(spec.no_rollback);

    let spec = ClusterSpec::from_yaml(
        "name: a\napi-port: 6550\ndatastore: embedded\n",
        Path::new("c.yaml"),
    )
    .unwrap();
    assert_eq!(spec.api.port, Some(6550));
    let spec = ClusterSpec::from_yaml(
        "name: a\ndatastore:\n  external:\n    endpoint: postgres://u:p@db:5432/k3s\n",
        Path::new("c.yaml"),
    )
    .unwrap();
    assert_eq!(spec.datastore.kind(), "external");
}

#[test]
fn yaml_errors_name_the_line() {
    let cases = [
        (
            "name: a\nservers: 1\nserverz: 3\n",
            "line 3",
            "unknown field `serverz`",
        ),
        (
            "name: a\ndatastore:\n  etcd:\n    members: 3\n    size: 1\n",
            "line 5",
            "unknown field `size`",
        ),
        ("name: a\n\napi-port: 70000\n", "line 3", "out of range"),
        ("name: a_b\n", "line 1", "contains '_'"),
        (
            "name: a\ntls-san:\n  - ok.example\n  - k3s server --tls-san alien.io\n",
            "line 4",
            "--tls-san alien.io",
        ),
        (
            "name: a\nk3s-args:\n  - --foo@servr:0\n",
            "line 3",
            "unknown role",
        ),
        (
            "name: a\nloadbalancer:\n  enabled: true\n  kind: nginx\n",
            "line 4",
            "unknown field `kind`",
        ),
        (
            "name: a\ndatastore:\n  external:\n    endpoint: db:5432\n",
            "line 4",
            "<scheme>://",
        ),
        (
            "name: a\ntimeouts: {server: soon}\n",
            "line 2",
            "not a duration",
        ),
    ];
    for (yaml, line, expected) in cases {
        let err = ClusterSpec::from_yaml(yaml, Path::new("cluster.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cluster.yaml: "), "{err}");
        assert!(err.contains(line), "{yaml:?}: {err}");
        assert!(err.contains(expected), "{yaml:?}: {err}");
    }
    let spec = ClusterSpec::from_yaml("servers: 1\n", Path::new("c.yaml")).unwrap();
    let err = spec.validate().unwrap_err().to_string();
    assert!(err.contains("has no name"), "{err}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
    assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
    assert_eq!(parse_duration("7").unwrap().as_secs(), 7);
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("1d").is_err());
}

#[test]
fn subnets() {
    let s = Subnet::parse("172.28.5.0/24").unwrap();
    assert_eq!(s.host(10).to_string(), "172.28.5.10");
    assert!(s.overlaps(&Subnet::parse("172.28.0.0/16").unwrap()));
    assert!(!s.overlaps(&Subnet::parse("172.28.6.0/24").unwrap()));
    assert!(
        Subnet::parse("172.28.5.1/24")
            .unwrap_err()
            .to_string()
            .contains("write 172.28.5.0/24")
    );
    assert!(Subnet::parse("172.28.5.0/25").is_err());
}

#[test]
fn subnets_a_bridge_cannot_use_are_refused() {
    for (subnet, kind) in [
        ("127.0.0.0/24", "loopback"),
        ("169.254.3.0/24", "link-local"),
        ("224.1.0.0/16", "multicast"),
        ("0.0.0.0/8", "this network"),
    ] {
        let err = err_of(ClusterSpec::builder("a").subnet(subnet).build());
        assert!(err.contains(kind), "{subnet}: {err}");
    }
    ClusterSpec::builder("a")
        .subnet("172.28.5.0/24")
        .build()
        .unwrap();
}

#[test]
fn deep_or_aliased_yaml_and_big_files_are_refused_before_parsing() {
    let origin = Path::new("c.yaml");
    let deep = format!(
        "name: a\nenv: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let started = std::time::Instant::now();
    let err = ClusterSpec::from_yaml(&deep, origin)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nested deeper"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let laughs = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\nname: a\n";
    let err = ClusterSpec::from_yaml(laughs, origin)
        .unwrap_err()
        .to_string();
    assert!(err.contains("aliases"), "{err}");
    // Filters with `*` are not aliases.
    ClusterSpec::from_yaml(
        "name: a\nk3s-args:\n  - --disable=traefik@server:*\n",
        origin,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "#".repeat(2 * 1024 * 1024)).unwrap();
    let err = ClusterSpec::from_yaml_file(&big).unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
    let err = ClusterSpec::from_yaml_file(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn an_empty_filter_is_refused_everywhere_a_filter_is_taken() {
    let err = err_of(
        ClusterSpec::builder("a")
            .k3s_arg("--disable=traefik@")
            .build(),
    );
    assert!(err.contains("names no nodes"), "{err}");
    let err = err_of(ClusterSpec::builder("a").env("A=b@").build());
    assert!(err.contains("names no nodes"), "{err}");
    let err = err_of(ClusterSpec::builder("a").port("8080:80@").build());
    assert!(err.contains("names no nodes"), "{err}");
    let err = err_of(ClusterSpec::builder("a").volume("/a:/b@").build());
    assert!(err.contains("names no nodes"), "{err}");
}

/// Found by `tests/fuzz.rs` (core::ClusterSpec::from_yaml(keys)): a key
/// pasted as the datastore kind came back whole in serde's "unknown variant
/// `...`" (quoted in backticks, which the redaction did not look into).
#[test]
fn fuzz_regression_yaml_errors_show_no_keys() {
    let key = "-----BEGIN PRIVATE KEY-----\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\\n-----END PRIVATE KEY-----\\n";
    for yaml in [
        format!("datastore: \"\\\"\\\"{key}\\\"\"\n"),
        format!("cgroupns: \"{key}\"\n"),
        format!("k3s-args: [\"{key}\"]\n"),
        format!("env: [\"A={key}@servrs\"]\n"),
        format!("tls-san: \"{key}\"\n"),
    ] {
        let m = err_of(ClusterSpec::from_yaml(&yaml, Path::new("x.yaml")));
        assert!(!m.contains("AAAAAAAA"), "{yaml}: {m}");
    }
}
