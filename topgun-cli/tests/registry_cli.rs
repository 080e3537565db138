//! Bad registry input is refused by the real binary before anything
//! exists: the Docker engine is a socket that does not exist, so a command
//! that got as far as Docker would fail differently (exit 1, naming the
//! engine). Every refusal is a usage error (exit 2) that names the problem,
//! and a registries file's passwords never show.

use std::process::{Command, Output};

fn topgun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topgun"))
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("KUBECONFIG")
        .env_remove("TOPGUN_TOKEN")
        .output()
        .unwrap()
}

/// Runs `args`, expects exit 2 before Docker is reached, and returns the
/// output text.
fn refused(args: &[&str]) -> String {
    let out = topgun(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
    assert!(
        !text.contains("nonexistent/docker.sock"),
        "{args:?} reached for Docker: {text}"
    );
    text
}

#[test]
fn bad_registry_names_are_refused_before_docker() {
    for (args, says) in [
        (
            vec!["registry", "create", "Registry.localhost"],
            "lowercase: registry.localhost",
        ),
        (vec!["registry", "create", "reg_1"], "a-z, 0-9"),
        (vec!["registry", "create", "a..b"], "empty part"),
        (
            vec!["registry", "create", "reg-"],
            "starts or ends with '-'",
        ),
        (vec!["registry", "create", "127.0.0.1"], "an address"),
        (
            vec!["registry", "delete", "ok.localhost", "Bad"],
            "lowercase",
        ),
        (
            vec!["create", "c1", "--registry-create", "bad name"],
            "a-z, 0-9",
        ),
        (
            vec!["create", "c1", "--registry-use", "x..y:5000"],
            "empty part",
        ),
        (
            vec![
                "create",
                "c1",
                "--registry-create",
                "r.localhost",
                "--registry-use",
                "r.localhost",
            ],
            "named twice",
        ),
    ] {
        let text = refused(&args);
        assert!(text.contains(says), "{args:?}: {text}");
    }
    let long = "r".repeat(64);
    let text = refused(&["registry", "create", &long]);
    assert!(text.contains("longer than 63"), "{text}");
}

#[test]
fn bad_registry_ports_are_refused_before_docker() {
    for (args, says) in [
        (
            vec!["registry", "create", "r.localhost", "--port", "0"],
            "port 0",
        ),
        (
            vec!["registry", "create", "r.localhost", "--port", "70000"],
            "out of range",
        ),
        (
            vec!["registry", "create", "r.localhost", "--port", "five"],
            "not a port number",
        ),
        (
            vec!["registry", "create", "r.localhost", "--port", "myhost:5000"],
            "not an IP address",
        ),
        (
            vec!["create", "c1", "--registry-create", "r.localhost:0"],
            "port 0",
        ),
        (
            vec!["create", "c1", "--registry-use", "r.localhost:x"],
            "not a port number",
        ),
        (
            vec![
                "create",
                "c1",
                "--api-port",
                "6550",
                "--registry-create",
                "r.localhost:6550",
            ],
            "which the API uses",
        ),
    ] {
        let text = refused(&args);
        assert!(text.contains(says), "{args:?}: {text}");
    }
}

#[test]
fn bad_registries_files_are_refused_with_their_line_and_without_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    // An unknown top-level key, with its line.
    let unknown = write(
        "unknown.yaml",
        "mirrors:\n  docker.io:\n    endpoint: [\"https://m.example\"]\nmirorrs: {}\n",
    );
    let text = refused(&["create", "c1", "--registry-config", &unknown]);
    assert!(text.contains("mirorrs"), "{text}");
    assert!(text.contains("line 4"), "{text}");
    assert!(text.contains("unknown.yaml"), "{text}");
    // A wrong value next to a password: the password never shows.
    let secret = write(
        "secret.yaml",
        "configs:\n  r.example:\n    auth:\n      username: me\n      password: Sup3r-s3cret-pw\n      \
         tokn: Sup3r-s3cret-pw\n",
    );
    let text = refused(&["create", "c1", "--registry-config", &secret]);
    assert!(text.contains("line 6"), "{text}");
    assert!(!text.contains("Sup3r-s3cret-pw"), "{text}");
    let typed = write(
        "typed.yaml",
        "configs:\n  r.example:\n    auth: {password: Sup3r-s3cret-pw}\n    tls: {insecure_skip_verify: Sup3r-s3cret-pw}\n",
    );
    let text = refused(&["create", "c1", "--registry-config", &typed]);
    assert!(!text.contains("Sup3r-s3cret-pw"), "{text}");
    assert!(text.contains("line 4"), "{text}");
    // An endpoint that is no URL; a list instead of a map.
    let ftp = write(
        "ftp.yaml",
        "mirrors:\n  docker.io:\n    endpoint: [\"ftp://m\"]\n",
    );
    let text = refused(&["create", "c1", "--registry-config", &ftp]);
    assert!(text.contains("ftp://m"), "{text}");
    let list = write("list.yaml", "- mirrors\n");
    refused(&["create", "c1", "--registry-config", &list]);
    // Too big, a directory, missing: refused before they are read.
    let big = write("big.yaml", &format!("# {}\n", "x".repeat(300 * 1024)));
    refused(&["create", "c1", "--registry-config", &big]);
    refused(&[
        "create",
        "c1",
        "--registry-config",
        dir.path().to_str().unwrap(),
    ]);
    let text = refused(&["create", "c1", "--registry-config", "/nonexistent/r.yaml"]);
    assert!(text.contains("/nonexistent/r.yaml"), "{text}");
}

#[test]
fn a_cluster_specs_registries_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(
        &path,
        "name: c1\nregistries:\n  create: {name: r.localhost, port: 5001}\n  uses: [x]\n",
    )
    .unwrap();
    let text = refused(&["create", "--config", path.to_str().unwrap()]);
    assert!(text.contains("uses"), "{text}");
    std::fs::write(
        &path,
        "name: c1\nregistries:\n  create: {name: R.localhost, port: 5001}\n",
    )
    .unwrap();
    let text = refused(&["create", "--config", path.to_str().unwrap()]);
    assert!(text.contains("lowercase"), "{text}");
    std::fs::write(
        &path,
        "name: c1\nregistries:\n  config: |\n    configs:\n      r:\n        auth: {password: Sup3r-s3cret-pw, bad: 1}\n",
    )
    .unwrap();
    let text = refused(&["create", "--config", path.to_str().unwrap()]);
    assert!(!text.contains("Sup3r-s3cret-pw"), "{text}");
}
