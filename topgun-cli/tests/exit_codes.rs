//! Every command gives the same exit status for the same condition (the
//! table in the README, "Exit status"): Docker unreachable is a failed
//! operation (1); a cluster or node that does not exist is the user's input
//! (2); deleting what does not exist succeeds (0).
//!
//! The real binary runs; "unreachable" is a socket path that does not
//! exist, and "no such cluster" asks the machine's real Docker engine about
//! a name no one uses (skipped, loudly, without an engine).

#![allow(clippy::print_stderr)]

use std::process::{Command, Output};

fn topgun(args: &[&str], docker_host: Option<&str>) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_topgun"));
    cmd.args(args)
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("kubeconfig"))
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_CONFIG")
        .env_remove("TOPGUN_TOKEN");
    match docker_host {
        Some(host) => cmd.env("DOCKER_HOST", host),
        None => cmd.env_remove("DOCKER_HOST"),
    };
    cmd.output().unwrap()
}

/// Every command that talks to Docker, about a cluster named `name`.
fn commands(name: &str) -> Vec<Vec<String>> {
    let node = format!("topgun-{name}-agent-0");
    let table: &[&[&str]] = &[
        &["create", name, "--no-kubeconfig"],
        &["create", name, "--dry-run"],
        &["delete", name],
        &["stop", name],
        &["start", name],
        &["restart", name],
        &["list"],
        &["status", name],
        &["kubeconfig", "get", name],
        &["kubeconfig", "merge", name],
        &["node", "list", name],
        &["node", "add", name, "--role", "agent"],
        &["node", "delete", &node],
        &["node", "stop", &node],
        &["node", "start", &node],
        &["node", "restart", &node],
        &["image", "import", "busybox:latest", "--cluster", name],
        &["etcd", "status", name],
        &["etcd", "keys", name],
    ];
    table
        .iter()
        .map(|args| args.iter().map(|a| (*a).to_owned()).collect())
        .collect()
}

#[test]
fn docker_unreachable_is_a_failed_operation_everywhere() {
    for args in commands("unreach") {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = topgun(&args, Some("unix:///nonexistent/topgun-test/docker.sock"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "topgun {}: {stderr}",
            args.join(" ")
        );
        assert!(
            stderr.contains("nonexistent/topgun-test/docker.sock"),
            "topgun {} names the engine it tried: {stderr}",
            args.join(" ")
        );
    }
}

#[test]
fn no_such_cluster_is_the_users_input_everywhere() {
    let probe = topgun(&["list"], None);
    if !probe.status.success() {
        eprintln!(
            "SKIPPED: no Docker engine answers here: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        return;
    }
    let name = format!("nope{}", std::process::id());
    for args in commands(&name) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let expected = match args[0] {
            // Deleting what does not exist succeeds, as listing does.
            "delete" | "list" => 0,
            // A create of a free name would go ahead: not this test's
            // condition.
            "create" => continue,
            _ => 2,
        };
        let out = topgun(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(expected),
            "topgun {}: {stderr}",
            args.join(" ")
        );
        if expected == 2 {
            assert!(
                stderr.contains(&name),
                "topgun {} names what it did not find: {stderr}",
                args.join(" ")
            );
        }
    }
}

#[test]
fn bad_input_is_refused_before_docker_is_asked() {
    // With an unreachable engine, input errors still win: they are found
    // first, and they are the user's (2).
    let table: &[&[&str]] = &[
        &["create", "Bad_Name"],
        &["create", "ok", "--servers", "0"],
        &["create", "ok", "--api-port", "99999"],
        &["create", "ok", "--tls-san", "bad san"],
        &["create", "ok", "--datastore", "etcd", "--etcd-members", "9"],
        &["create", "ok", "--config", "/nonexistent/topgun.yaml"],
        &["node", "add", "x", "--count", "0"],
        &[
            "image",
            "import",
            "x",
            "--cluster",
            "x",
            "--nodes",
            "nothing:9",
        ],
    ];
    for args in table {
        let out = topgun(args, Some("unix:///nonexistent/topgun-test/docker.sock"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "topgun {}: {stderr}",
            args.join(" ")
        );
        assert!(
            !stderr.contains("cannot reach"),
            "topgun {} refused its input before asking Docker: {stderr}",
            args.join(" ")
        );
    }
}
