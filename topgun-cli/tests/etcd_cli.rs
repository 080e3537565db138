//! `topgun etcd` against real etcd clusters planned by topgun-etcd and run
//! on loopback (`topgun_etcd::local::LocalCluster`).
//!
//! Needs `etcd` (Debian's etcd-server, or `TOPGUN_ETCD_BIN`) and, for the key
//! browser, `etcdctl` (Debian's etcd-client): `cargo xtask setup` installs
//! both. Without them these tests fail and say so.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use topgun_etcd::local::LocalCluster;
use topgun_etcd::{EtcdClusterSpec, EtcdPlan};

const START: Duration = Duration::from_secs(20);

fn plan(name: &str, members: usize, tls: bool) -> EtcdPlan {
    EtcdClusterSpec::new(name)
        .with_members(members)
        .with_tls(tls)
        .with_timing(Duration::from_millis(50), Duration::from_millis(500))
        .plan()
        .unwrap()
}

fn start(plan: &EtcdPlan) -> LocalCluster {
    let cluster = LocalCluster::start(plan).expect(
        "an etcd binary (install etcd-server with `cargo xtask setup`, or set TOPGUN_ETCD_BIN)",
    );
    runtime()
        .block_on(cluster.wait_healthy(START))
        .expect("the cluster starts");
    cluster
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn topgun() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_topgun"));
    c.env_remove("TOPGUN_LOG");
    c
}

/// `--endpoints ... --cacert ... --cert ... --key ...` for `cluster`.
fn conn(cluster: &LocalCluster) -> Vec<String> {
    let mut args = vec!["--endpoints".to_owned(), cluster.endpoints().join(",")];
    if let Some(f) = cluster.client_files() {
        for (flag, path) in [("--cacert", &f.ca), ("--cert", &f.cert), ("--key", &f.key)] {
            args.push(flag.to_owned());
            args.push(path.display().to_string());
        }
    }
    args
}

fn run(args: &[String]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = topgun().args(args).output().unwrap();
    (
        status.code().expect("exited"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn args(list: &[&str], rest: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| (*s).to_owned())
        .chain(rest.iter().cloned())
        .collect()
}

#[test]
fn status_watch_and_failover_with_mutual_tls() {
    let plan = plan("cli-status", 3, true);
    let mut cluster = start(&plan);
    let conn = conn(&cluster);

    // Healthy: a table with every member and one leader mark, then the verdict.
    let (code, out, err) = run(&args(&["etcd", "status", "--probe"], &conn));
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ENDPOINT") && lines[0].contains("LEADER"),
        "{out}"
    );
    for e in cluster.endpoints() {
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(&e)).count(),
            1,
            "{out}"
        );
    }
    assert_eq!(
        lines[1..4].iter().filter(|l| l.contains("  *  ")).count(),
        1,
        "{out}"
    );
    assert!(
        lines[4].starts_with("verdict: healthy: 3 of 3 members answer; leader "),
        "{out}"
    );
    assert!(
        lines[5].starts_with("write probe: ok through https://127.0.0.1:"),
        "{out}"
    );

    // The same as JSON (`table` and `text` are the same format).
    let (code, json, _) = run(&args(&["etcd", "status", "-o", "json", "--probe"], &conn));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json).unwrap();
    insta::assert_json_snapshot!("status_healthy_json", v, {
        ".members[].endpoint" => "[endpoint]",
        ".members[].latency_ms" => "[ms]",
        ".members[].member_id" => "[id]",
        ".members[].cluster_id" => "[id]",
        ".members[].leader_id" => "[id]",
        ".members[].raft_index" => "[n]",
        ".members[].raft_applied_index" => "[n]",
        ".members[].raft_term" => "[n]",
        ".members[].db_size" => "[bytes]",
        ".members[].db_size_in_use" => "[bytes]",
        ".members[].version" => "[version]",
        ".health.reason" => "[reason]",
        ".health.leader_id" => "[id]",
        ".health.leader_endpoint" => "[endpoint]",
        ".took_ms" => "[ms]",
        ".probe.endpoint" => "[endpoint]",
        ".probe.latency_ms" => "[ms]",
    });
    let leader = v["health"]["leader_id"].as_str().unwrap().to_owned();
    let leader_endpoint = v["health"]["leader_endpoint"].as_str().unwrap().to_owned();
    let (_, table, _) = run(&args(&["etcd", "status", "-o", "table"], &conn));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&leader_endpoint) && l.contains(&leader) && l.contains("  *  ")),
        "{table}"
    );

    // --watch prints one JSON line per change: kill the leader and see the
    // new one named.
    let mut watch = topgun()
        .args(args(
            &[
                "etcd",
                "status",
                "--watch",
                "--interval",
                "100ms",
                "-o",
                "json",
            ],
            &conn,
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx
                .send(serde_json::from_str(&line).expect("one JSON object per line"))
                .is_err()
            {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(10));
    let first = next().expect("a first round");
    assert_eq!(first["health"]["verdict"], "healthy");
    assert_eq!(first["previous_verdict"], Value::Null);
    let killed = cluster
        .endpoints()
        .iter()
        .position(|e| *e == leader_endpoint)
        .unwrap();
    cluster.kill(killed).unwrap();
    let new_leader = loop {
        let change = next().unwrap_or_else(|_| {
            let _ = watch.kill();
            panic!("no new leader reported")
        });
        let h = &change["health"];
        if h["verdict"] == "degraded" {
            assert_ne!(h["leader_id"].as_str().unwrap(), leader);
            break h["leader_id"].as_str().unwrap().to_owned();
        }
    };
    watch.kill().unwrap();
    let _ = watch.wait();

    // Degraded: exit 1, the dead member named with its cause.
    let (code, out, _) = run(&args(&["etcd", "status"], &conn));
    assert_eq!(code, 1, "{out}");
    let dead = out
        .lines()
        .find(|l| l.starts_with(cluster.endpoint(killed)))
        .unwrap();
    assert!(
        dead.contains("unreachable: status failed: connection refused"),
        "{out}"
    );
    let verdict = out.lines().find(|l| l.starts_with("verdict: ")).unwrap();
    assert!(
        verdict.starts_with("verdict: degraded: 1 of 3 members down ("),
        "{verdict}"
    );
    assert!(
        verdict.contains(&format!("leader {new_leader}")),
        "{verdict}"
    );
}

#[test]
fn tls_errors_name_the_endpoint_and_the_cause() {
    let plan = plan("cli-tls", 1, true);
    let cluster = start(&plan);
    let files = cluster.client_files().unwrap();
    let endpoint = cluster.endpoint(0).to_owned();
    let dir = tempfile::tempdir().unwrap();
    let other = EtcdClusterSpec::new("other")
        .with_members(1)
        .plan()
        .unwrap();
    let wrong_ca = dir.path().join("other-ca.crt");
    std::fs::write(&wrong_ca, other.ca_pem().unwrap()).unwrap();

    let p = |p: &Path| p.display().to_string();
    let cases: [(&str, Vec<String>, &str); 2] = [
        (
            "wrong CA",
            vec![
                "--cacert".into(),
                p(&wrong_ca),
                "--cert".into(),
                p(&files.cert),
                "--key".into(),
                p(&files.key),
            ],
            "the server's certificate is not signed by the given CA",
        ),
        (
            "no client certificate",
            vec!["--cacert".into(), p(&files.ca)],
            "the server requires a client certificate",
        ),
    ];
    for (name, tls, cause) in cases {
        let (code, out, err) = run(&args(&["etcd", "status", "--endpoints", &endpoint], &tls));
        assert_eq!(code, 1, "{name}: {out}{err}");
        let row = out
            .lines()
            .find(|l| l.starts_with(&endpoint))
            .unwrap_or_else(|| panic!("{name}: {out}"));
        assert!(row.contains(cause), "{name}: {out}");
        let (_, json, _) = run(&args(
            &["etcd", "status", "-o", "json", "--endpoints", &endpoint],
            &tls,
        ));
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["members"][0]["endpoint"], endpoint.as_str());
        assert!(
            v["members"][0]["error"].as_str().unwrap().contains(cause),
            "{name}: {json}"
        );
        assert_eq!(v["health"]["verdict"], "quorum_lost");

        // The key browser fails as an operation: exit 1, endpoint and cause on stderr.
        let (code, _, err) = run(&args(&["etcd", "keys", "--endpoints", &endpoint], &tls));
        assert_eq!(code, 1, "{name}: {err}");
        assert!(
            err.contains(&endpoint) && err.contains(cause),
            "{name}: {err}"
        );
    }
}

#[test]
fn usage_errors_exit_2_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let m = missing.display().to_string();
    let g = garbage.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["etcd", "status"], "--endpoints"),
        (
            vec![
                "etcd",
                "status",
                "--endpoints",
                "127.0.0.1:2379",
                "--cert",
                &g,
            ],
            "--key",
        ),
        (
            vec!["etcd", "status", "--endpoints", "ftp://127.0.0.1:2379"],
            "scheme must be http:// or https://",
        ),
        (
            vec!["etcd", "status", "--endpoints", "https://127.0.0.1:2379"],
            "https:// needs the etcd CA: pass --cacert",
        ),
        (
            vec!["etcd", "status", "--endpoints", "127.0.0.1:99999"],
            "\"99999\" is not a port",
        ),
        (
            vec!["etcd", "status", "--endpoints", "127.0.0.1:1,127.0.0.1:1"],
            "given twice",
        ),
        (
            vec![
                "etcd",
                "status",
                "--endpoints",
                "127.0.0.1:1",
                "--cacert",
                &m,
            ],
            "cannot read",
        ),
        (
            vec![
                "etcd",
                "status",
                "--endpoints",
                "127.0.0.1:1",
                "--cacert",
                &g,
            ],
            "holds no PEM certificate",
        ),
        (
            vec![
                "etcd",
                "status",
                "--endpoints",
                "127.0.0.1:1",
                "--timeout",
                "soon",
            ],
            "invalid duration",
        ),
        (
            vec!["etcd", "keys", "--endpoints", "127.0.0.1:1", "--depth", "0"],
            "--depth",
        ),
        (
            vec!["etcd", "status", "--endpoints", "127.0.0.1:1", "-o", "yaml"],
            "possible values",
        ),
    ];
    for (argv, want) in cases {
        let out = topgun().args(&argv).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {err}");
        assert!(err.contains(want), "{argv:?}: {err:?} lacks {want:?}");
        assert!(out.stdout.is_empty(), "{argv:?}");
    }
}

#[test]
fn keys_are_listed_and_counted_by_prefix() {
    let plan = plan("cli-keys", 1, false);
    let cluster = start(&plan);
    let endpoint = cluster.endpoint(0).to_owned();
    let keys = [
        "/bootstrap/2d1f4b0c3a9e",
        "/registry/pods/default/web-0",
        "/registry/pods/default/web-1",
        "/registry/pods/kube-system/coredns",
        "/registry/services/specs/default/kubernetes",
    ];
    for key in keys {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoint, "put", key, "v"])
            .output()
            .expect("etcdctl (Debian's etcd-client; run `cargo xtask setup`)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conn = vec!["--endpoints".to_owned(), endpoint.clone()];

    let (code, out, err) = run(&args(&["etcd", "keys"], &conn));
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("keys_all", out);
    assert!(err.is_empty(), "{err}");

    let (code, out, err) = run(&args(
        &[
            "etcd",
            "keys",
            "--prefix",
            "/registry/pods/",
            "--limit",
            "1",
            "--depth",
            "3",
        ],
        &conn,
    ));
    assert_eq!(code, 0);
    insta::assert_snapshot!("keys_pods_limited", out);
    assert!(err.contains("hint: raise --limit"), "{err}");

    let (code, json, _) = run(&args(
        &["etcd", "keys", "-o", "json", "--prefix", "/registry/"],
        &conn,
    ));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json).unwrap();
    insta::assert_json_snapshot!("keys_json", v, { ".endpoint" => "[endpoint]" });
}
