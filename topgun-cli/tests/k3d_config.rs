//! k3d config files with the real binary: `topgun config convert FILE`
//! prints topgun's own config (which reads back as a config), and `topgun
//! create --config k3d.yaml` refuses a field topgun cannot honour before it
//! touches Docker ("Docker" is a socket path that does not exist).

use std::path::Path;
use std::process::{Command, Output};

fn topgun(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topgun"))
        .args(args)
        .env("HOME", home)
        .env("KUBECONFIG", home.join("kubeconfig"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_CONFIG")
        .env_remove("TOPGUN_TOKEN")
        .env_remove("TOPGUN_K3S_IMAGE")
        .env_remove("TOPGUN_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A k3d config as k3d's docs write one: three servers, two agents, ingress
/// on the load balancer, traefik off, a registry.
const K3D: &str = "\
apiVersion: k3d.io/v1alpha5
kind: Simple
metadata:
  name: k3dcli
servers: 3
agents: 2
kubeAPI:
  hostIP: 127.0.0.1
  hostPort: \"6550\"
token: notAsecretInThisTest
ports:
  - port: 8080:80
    nodeFilters:
      - loadbalancer
registries:
  use:
    - k3d-registry.localhost:5001
options:
  k3d:
    timeout: 2m
  k3s:
    extraArgs:
      - arg: --disable=traefik
        nodeFilters:
          - servers:*
      - arg: --tls-san=k3s.example.com
  kubeconfig:
    switchCurrentContext: false
";

#[test]
fn convert_prints_topguns_config_and_notes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k3d.yaml");
    std::fs::write(&file, K3D).unwrap();
    let out = topgun(&["config", "convert", file.to_str().unwrap()], dir.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"/tmp/[^ ]*/k3d\.yaml", "[DIR]/k3d.yaml");
    settings.bind(|| insta::assert_snapshot!("k3d_convert_stdout", stdout));
    assert!(
        stderr
            .contains("note: registry k3d-registry.localhost:5001: k3d's `k3d-` container prefix"),
        "{stderr}"
    );
    assert!(!stderr.contains("notAsecret"), "{stderr}");

    // The output is a topgun config: `create --config` reads it (and then
    // fails only at Docker, which is not there).
    // And so does the k3d file itself.
    let converted = dir.path().join("topgun.yaml");
    std::fs::write(&converted, &stdout).unwrap();
    for config in [&converted, &file] {
        let out = topgun(
            &[
                "create",
                "--config",
                config.to_str().unwrap(),
                "--no-kubeconfig",
            ],
            dir.path(),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", config.display());
        assert!(stderr.contains("/nonexistent/docker.sock"), "{stderr}");
    }

    // `--quiet` leaves only the config.
    let out = topgun(
        &["--quiet", "config", "convert", file.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), stdout);
}

/// A field topgun cannot honour is refused with its name and line, exit 2,
/// before Docker is asked anything (the socket does not exist: had it been
/// tried, the error would be about it, with exit 1).
#[test]
fn a_refused_field_stops_create_before_docker() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k3d.yaml");
    let refused = K3D.replace(
        "options:\n",
        "hostAliases:\n  - ip: 1.2.3.4\n    hostnames: [my.host.local]\noptions:\n",
    );
    std::fs::write(&file, &refused).unwrap();
    for args in [
        vec!["create", "--config", file.to_str().unwrap()],
        vec!["create", "--config", file.to_str().unwrap(), "--dry-run"],
        vec!["config", "convert", file.to_str().unwrap()],
    ] {
        let out = topgun(&args, dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("`hostAliases` is not supported by topgun")
                && stderr.contains("line 19"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("docker.sock"), "{args:?}: {stderr}");
        assert!(!stderr.contains("notAsecret"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // k3d v4's node filter brackets get the v5 form.
    std::fs::write(&file, K3D.replace("- servers:*", "- server[0]")).unwrap();
    let out = topgun(&["create", "--config", file.to_str().unwrap()], dir.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("write `server:0`") && stderr.contains("line 25"),
        "{stderr}"
    );
    // So do the same brackets on the command line.
    let out = topgun(
        &["create", "demo", "--k3s-arg", "--disable=traefik@server[0]"],
        dir.path(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("write `server:0`"), "{stderr}");
    // An older k3d config version says how to migrate it.
    std::fs::write(&file, K3D.replace("v1alpha5", "v1alpha4")).unwrap();
    let out = topgun(&["config", "convert", file.to_str().unwrap()], dir.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("k3d config migrate"), "{stderr}");
}
