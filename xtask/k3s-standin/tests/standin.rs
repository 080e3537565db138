//! The stand-in as host processes (no Docker) against a real 3-member etcd
//! on loopback with mutual TLS, Debian's kubectl and haproxy.
//!
//! Needs: `etcd` on PATH (or `$TOPGUN_ETCD_BIN`), `haproxy` on PATH or in
//! /usr/sbin, and `$TOPGUN_KUBECTL` (set by `cargo xtask test`). A missing
//! tool fails the test with a message saying how to get it.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topgun_etcd::EtcdClusterSpec;
use topgun_etcd::local::LocalCluster;
use topgun_tls::{EndpointOptions, EndpointTarget, Roots, inspect_endpoint, inspect_pem_or_der};

const K3S: &str = env!("CARGO_BIN_EXE_k3s");
const UP: &str = "k3s is up and running";
const REGISTERED: &str = "Successfully registered node";
const TOKEN: &str = "standin-test-token-0123456789";

// ---------------------------------------------------------------- helpers

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kubectl_path() -> PathBuf {
    let path = std::env::var_os("TOPGUN_KUBECTL").map(PathBuf::from).unwrap_or_else(|| {
        panic!("TOPGUN_KUBECTL is not set: run the tests with `cargo xtask test` (it unpacks Debian's kubectl)")
    });
    assert!(
        path.is_file(),
        "TOPGUN_KUBECTL={} does not exist: run `cargo xtask setup`",
        path.display()
    );
    path
}

fn haproxy_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("haproxy is not installed: run `cargo xtask setup` (Debian package haproxy)")
        })
}

/// A process that is SIGKILLed (by its own PID) on drop.
struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(
        name: &str,
        dir: &Path,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, _) in std::env::vars() {
            if k.starts_with("K3S_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `needle`; panics with the log if the
    /// process exits first or time runs out.
    async fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before logging {needle:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not log {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} still runs after {timeout:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct ServerOpts<'a> {
    name: &'a str,
    port: u16,
    token: &'a str,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

fn server(dir: &Path, o: ServerOpts<'_>) -> (Proc, PathBuf) {
    let log = o.name.to_owned();
    server_logged(dir, o, &log)
}

/// [`server`] with its own log file (for a restart, which must not
/// overwrite the first run's log).
fn server_logged(dir: &Path, o: ServerOpts<'_>, log: &str) -> (Proc, PathBuf) {
    let node_dir = dir.join(o.name);
    std::fs::create_dir_all(&node_dir).unwrap();
    let kubeconfig = node_dir.join("kubeconfig.yaml");
    let mut args: Vec<String> = [
        "server",
        "--token",
        o.token,
        "--node-name",
        o.name,
        "--node-ip",
        "127.0.0.1",
        "--bind-address",
        "127.0.0.1",
        "--https-listen-port",
        &o.port.to_string(),
        "--data-dir",
        &node_dir.join("data").to_string_lossy(),
        "--write-kubeconfig",
        &kubeconfig.to_string_lossy(),
        // k3s flags the stand-in accepts and ignores, as topgun may pass them.
        "--disable",
        "traefik",
        "--disable-network-policy",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(o.extra);
    (
        Proc::spawn(log, dir, Path::new(K3S), &args, &o.env),
        kubeconfig,
    )
}

fn agent(dir: &Path, name: &str, url: &str, token: &str) -> Proc {
    agent_logged(dir, name, url, token, name)
}

/// An agent with its data dir under `dir/<name>/data`, logging to `log`.
fn agent_logged(dir: &Path, name: &str, url: &str, token: &str, log: &str) -> Proc {
    let data = dir.join(name).join("data");
    let args: Vec<String> = [
        "agent",
        "--node-name",
        name,
        "--node-ip",
        "127.0.0.1",
        "--data-dir",
        &data.to_string_lossy(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let env = vec![
        ("K3S_URL".to_owned(), url.to_owned()),
        ("K3S_TOKEN".to_owned(), token.to_owned()),
    ];
    Proc::spawn(log, dir, Path::new(K3S), &args, &env)
}

/// A TCP load balancer in front of the servers, as topgun runs one.
fn haproxy(dir: &Path, port: u16, backends: &[u16]) -> Proc {
    let mut cfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n\
         frontend api\n  bind 127.0.0.1:{port}\n  default_backend servers\n\
         backend servers\n  balance roundrobin\n"
    );
    for (i, p) in backends.iter().enumerate() {
        cfg.push_str(&format!("  server s{i} 127.0.0.1:{p} check inter 1s\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let args = vec![
        "-W".into(),
        "-db".into(),
        "-f".into(),
        path.to_string_lossy().into_owned(),
    ];
    Proc::spawn("haproxy", dir, &haproxy_path(), &args, &[])
}

fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(kubectl_path())
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Polls `kubectl get nodes -o json` until `want` holds; returns the names
/// and Ready statuses of the last answer.
async fn wait_nodes(
    home: &Path,
    kubeconfig: &Path,
    want: impl Fn(&[(String, String, String)]) -> bool,
    timeout: Duration,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let (ok, out) = kubectl(home, kubeconfig, &["get", "nodes", "-o", "json"]);
        let nodes: Vec<(String, String, String)> = if ok {
            let v: Value = serde_json::from_str(&out)
                .unwrap_or_else(|e| panic!("kubectl output is not JSON ({e}):\n{out}"));
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| {
                    let ready = n["status"]["conditions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|c| c["type"] == "Ready")
                        .map(|c| c["status"].as_str().unwrap().to_owned())
                        .unwrap_or_default();
                    let mut roles: Vec<&str> = n["metadata"]["labels"]
                        .as_object()
                        .unwrap()
                        .keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect();
                    roles.sort_unstable();
                    (
                        n["metadata"]["name"].as_str().unwrap().to_owned(),
                        ready,
                        roles.join(","),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        if ok && want(&nodes) {
            return nodes;
        }
        if Instant::now() > deadline {
            panic!("nodes never reached the expected state; last kubectl answer (ok={ok}):\n{out}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until Debian's kubectl, run with `home` as HOME, lists agent-0,
/// server-0 and server-1 Ready, and checks their roles: `server_roles` for
/// servers, none for the agent.
async fn ready_with_roles(home: &Path, kubeconfig: &Path, server_roles: &str) {
    std::fs::create_dir_all(home).unwrap();
    let nodes = wait_nodes(
        home,
        kubeconfig,
        |n| all_ready(n, &["agent-0", "server-0", "server-1"]),
        Duration::from_secs(30),
    )
    .await;
    for (name, _, roles) in &nodes {
        let want = if name.starts_with("server") {
            server_roles
        } else {
            ""
        };
        assert_eq!(roles, want, "roles of {name}");
    }
}

fn all_ready(nodes: &[(String, String, String)], names: &[&str]) -> bool {
    let mut got: Vec<&str> = nodes
        .iter()
        .filter(|n| n.1 == "True")
        .map(|n| n.0.as_str())
        .collect();
    got.sort_unstable();
    got == names && nodes.len() == names.len()
}

/// The YAML value after `key: ` on the first line that has it.
fn yaml_value<'a>(yaml: &'a str, key: &str) -> &'a str {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in kubeconfig:\n{yaml}"))
}

struct Handshake {
    alpn: Option<Vec<u8>>,
    response: String,
}

/// Connects with TLS trusting `ca_pem`, optionally with a client
/// certificate, and sends `GET path`. Errors are returned as text.
async fn https_get(
    port: u16,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    path: &str,
) -> Result<Handshake, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    // TLS 1.3 reports a rejected client certificate only on the first read.
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(Handshake {
        alpn,
        response: String::from_utf8_lossy(&response).into_owned(),
    })
}

fn b64_field(yaml: &str, key: &str) -> String {
    String::from_utf8(B64.decode(yaml_value(yaml, key)).unwrap()).unwrap()
}

/// The uid and creationTimestamp of each node, by name.
fn identities(home: &Path, kubeconfig: &Path) -> BTreeMap<String, (String, String)> {
    let (ok, out) = kubectl(home, kubeconfig, &["get", "nodes", "-o", "json"]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let s = |p: &str| n.pointer(p).and_then(Value::as_str).unwrap().to_owned();
            (
                s("/metadata/name"),
                (s("/metadata/uid"), s("/metadata/creationTimestamp")),
            )
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn tar_add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append_data(&mut h, path, data).unwrap();
}

/// A tiny image as `docker save` writes it (Docker archive format: one
/// layer, a config, `manifest.json`), and the digest of the manifest
/// containerd makes for it on import.
fn docker_archive(tags: &[&str], file: &str) -> (Vec<u8>, String) {
    let mut layer = tar::Builder::new(Vec::new());
    tar_add(&mut layer, file, format!("{file}\n").as_bytes());
    let layer = layer.into_inner().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [format!("/{file}")]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    let config_name = format!("{}.json", &sha256(&config)[7..]);
    let layer_name = format!("{}/layer.tar", &sha256(&layer)[7..]);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": [layer_name],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    tar_add(&mut b, &layer_name, &layer);
    tar_add(&mut b, &config_name, &config);
    tar_add(&mut b, "manifest.json", &manifest);
    // The manifest containerd writes: Go's json.Marshal, Go's field order.
    let containerd_manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","digest":"{}","size":{}}}]}}"#,
        sha256(&config),
        config.len(),
        sha256(&layer),
        layer.len()
    );
    (
        b.into_inner().unwrap(),
        sha256(containerd_manifest.as_bytes()),
    )
}

/// Runs `k3s ctr ARGS` on the node whose data dir is `data` (stdin from
/// `stdin` if given): (success, stdout, stderr).
fn ctr(data: &Path, args: &[&str], stdin: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new(K3S);
    cmd.arg("ctr").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("K3S_") || k.starts_with("CONTAINERD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("K3S_DATA_DIR", data);
    match stdin {
        Some(path) => cmd.stdin(std::fs::File::open(path).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    let out = cmd.output().expect("running k3s ctr");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `kubectl get node NAME -o jsonpath=...` until `want` holds.
async fn wait_jsonpath(
    home: &Path,
    kubeconfig: &Path,
    node: &str,
    jsonpath: &str,
    want: impl Fn(&str) -> bool,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (ok, out) = kubectl(
            home,
            kubeconfig,
            &["get", "node", node, "-o", &format!("jsonpath={jsonpath}")],
        );
        if ok && want(&out) {
            return out;
        }
        if Instant::now() > deadline {
            panic!("node {node}: {jsonpath} never matched; last answer (ok={ok}):\n{out}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_an_agent_on_external_etcd_with_mutual_tls() {
    kubectl_path();
    haproxy_path();
    let dir = tempfile::tempdir().unwrap();
    let plan = EtcdClusterSpec::new("standin")
        .with_members(3)
        .plan()
        .unwrap();
    let etcd = LocalCluster::start(&plan)
        .expect("starting a local etcd cluster (is etcd-server installed?)");
    etcd.wait_healthy(Duration::from_secs(60))
        .await
        .expect("etcd became healthy");

    // The k3s client files, placed and passed as topgun does (env, paths only).
    let ds = etcd.datastore();
    let pki = dir.path().join("etcd-pki");
    for file in ds.k3s_files(&pki.to_string_lossy()) {
        let path = PathBuf::from(&file.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, file.contents.expose()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode)).unwrap();
    }
    let env = ds.k3s_env(&pki.to_string_lossy());
    assert!(
        env.iter().any(|(k, _)| k == "K3S_DATASTORE_CERTFILE"),
        "the plan uses mutual TLS"
    );

    let (p0, p1, plb) = (free_port(), free_port(), free_port());
    let sans = vec![
        "--tls-san".to_owned(),
        "api.topgun.test".to_owned(),
        "--tls-san=192.0.2.10,lb.topgun.test".to_owned(),
    ];
    let (mut s0, kc0) = server(
        dir.path(),
        ServerOpts {
            name: "server-0",
            port: p0,
            token: TOKEN,
            extra: sans.clone(),
            env: env.clone(),
        },
    );
    s0.wait_for(UP, Duration::from_secs(60)).await;
    // The second server gets the datastore as flags rather than env.
    let mut flags = sans.clone();
    for (k, v) in &env {
        let flag = match k.as_str() {
            "K3S_DATASTORE_ENDPOINT" => "--datastore-endpoint",
            "K3S_DATASTORE_CAFILE" => "--datastore-cafile",
            "K3S_DATASTORE_CERTFILE" => "--datastore-certfile",
            "K3S_DATASTORE_KEYFILE" => "--datastore-keyfile",
            other => panic!("unexpected datastore variable {other}"),
        };
        flags.push(format!("{flag}={v}"));
    }
    let (mut s1, kc1) = server(
        dir.path(),
        ServerOpts {
            name: "server-1",
            port: p1,
            token: TOKEN,
            extra: flags.clone(),
            env: vec![],
        },
    );
    s1.wait_for(UP, Duration::from_secs(60)).await;
    let log0 = s0.log();
    for line in [
        "Starting k3s v",
        "Wrote kubeconfig ",
        "Kube API server is now running",
        UP,
        REGISTERED,
    ] {
        assert!(log0.contains(line), "server-0 log lacks {line:?}:\n{log0}");
    }
    assert!(
        log0.contains("level=warning msg=\"Flag --disable is accepted but not emulated"),
        "unknown flags are logged:\n{log0}"
    );
    assert!(!log0.contains(TOKEN), "the token must never be logged");
    assert!(
        s1.log().contains("Reconciling bootstrap data"),
        "server-1 read the bootstrap data:\n{}",
        s1.log()
    );

    // The agent joins through a real haproxy in front of both servers.
    let _lb = haproxy(dir.path(), plb, &[p0, p1]);
    let mut a0 = agent(
        dir.path(),
        "agent-0",
        &format!("https://127.0.0.1:{plb}"),
        TOKEN,
    );
    a0.wait_for(REGISTERED, Duration::from_secs(60)).await;

    // The kubeconfig is k3s's: 0600, names `default`, loopback server.
    let yaml = std::fs::read_to_string(&kc0).unwrap();
    assert_eq!(
        std::fs::metadata(&kc0).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        yaml_value(&yaml, "server"),
        format!("https://127.0.0.1:{p0}")
    );
    assert_eq!(yaml_value(&yaml, "current-context"), "default");
    assert_eq!(yaml.matches("name: default").count(), 3, "{yaml}");
    let ca_pem = b64_field(&yaml, "certificate-authority-data");
    let client_cert = b64_field(&yaml, "client-certificate-data");
    let client_key = b64_field(&yaml, "client-key-data");
    let admin = &inspect_pem_or_der(client_cert.as_bytes()).unwrap()[0];
    assert!(
        admin.subject.contains("O=system:masters"),
        "admin subject: {}",
        admin.subject
    );
    assert!(
        admin.extended_key_usage.iter().any(|u| u == "clientAuth"),
        "{:?}",
        admin.extended_key_usage
    );

    // Debian's kubectl lists three Ready nodes with k3s's roles.
    let home = dir.path().join("home");
    ready_with_roles(&home, &kc0, "control-plane,master").await;
    let (ok, table) = kubectl(&home, &kc0, &["get", "nodes"]);
    assert!(ok, "{table}");
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count(),
        3,
        "{table}"
    );
    let (ok, version) = kubectl(&home, &kc0, &["version"]);
    assert!(
        ok && version.contains("Server Version")
            && version.contains("GitVersion:\"v1.30.6+standin1\""),
        "{version}"
    );
    // Both servers share the cluster CAs: server-0's kubeconfig works on server-1.
    let (ok, out) = kubectl(
        &home,
        &kc0,
        &[
            "--server",
            &format!("https://127.0.0.1:{p1}"),
            "get",
            "nodes",
        ],
    );
    assert!(ok, "server-0's kubeconfig against server-1: {out}");
    assert_eq!(
        b64_field(
            &std::fs::read_to_string(&kc1).unwrap(),
            "certificate-authority-data"
        ),
        ca_pem
    );

    // The serving certificate, inspected with topgun-tls (what `topgun tls
    // inspect` shows): CN k3s, k3s's default SANs plus every --tls-san,
    // trusted through the kubeconfig's CA for each --tls-san name as a
    // client would dial it.
    let roots = Roots::from_pem_or_der(ca_pem.as_bytes(), "certificate-authority-data").unwrap();
    for name in ["api.topgun.test", "lb.topgun.test", "192.0.2.10"] {
        let opts = EndpointOptions::new(EndpointTarget::new("127.0.0.1", p0))
            .with_name(name)
            .with_roots(roots.clone());
        let report = inspect_endpoint(&opts).await.unwrap();
        assert!(report.check.ok, "{name}: {:?}", report.check);
        assert_eq!(report.check.covered, Some(true), "{name}");
        let leaf = &report.certificates[0];
        assert!(leaf.subject.contains("CN=k3s"), "{}", leaf.subject);
        let sans: Vec<String> = leaf
            .sans
            .dns
            .iter()
            .cloned()
            .chain(leaf.sans.ip.iter().map(|ip| ip.to_string()))
            .collect();
        for want in [
            "api.topgun.test",
            "lb.topgun.test",
            "192.0.2.10",
            "127.0.0.1",
            "::1",
            "10.43.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            assert!(
                sans.iter().any(|s| s == want),
                "SAN {want} missing from {sans:?}"
            );
        }
    }
    let opts = EndpointOptions::new(EndpointTarget::new("127.0.0.1", p0))
        .with_name("not-a-san.topgun.test")
        .with_roots(roots.clone());
    let report = inspect_endpoint(&opts).await.unwrap();
    assert_eq!(report.check.covered, Some(false), "{:?}", report.check);
    // Only http/1.1 is offered; /readyz answers the admin certificate.
    let hs = https_get(p0, &ca_pem, Some((&client_cert, &client_key)), "/readyz")
        .await
        .unwrap();
    assert_eq!(hs.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(
        hs.response.starts_with("HTTP/1.1 200") && hs.response.ends_with("ok"),
        "{}",
        hs.response
    );
    // Without a client certificate the API answers 401; a certificate from
    // another CA fails the handshake.
    let anon = https_get(p0, &ca_pem, None, "/api/v1/nodes").await.unwrap();
    assert!(
        anon.response.starts_with("HTTP/1.1 401"),
        "{}",
        anon.response
    );
    let stranger_ca =
        topgun_tls::CertificateAuthority::generate(&topgun_tls::CaParams::new("stranger")).unwrap();
    let stranger = stranger_ca
        .issue(
            &topgun_tls::LeafParams::new("system:admin", topgun_tls::CertUsage::Client)
                .with_organization("system:masters"),
        )
        .unwrap();
    let refused = https_get(
        p0,
        &ca_pem,
        Some((&stranger.cert_pem, stranger.key_pem.expose())),
        "/api/v1/nodes",
    )
    .await;
    assert!(
        refused.is_err(),
        "a foreign client certificate was accepted: {:?}",
        refused.map(|h| h.response)
    );

    // The datastore holds the encrypted bootstrap data and the node objects.
    let files = etcd.client_files().expect("TLS client files");
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&files.ca).unwrap()))
        .identity(Identity::from_pem(
            std::fs::read(&files.cert).unwrap(),
            std::fs::read(&files.key).unwrap(),
        ));
    let mut client = Client::connect(etcd.endpoints(), Some(ConnectOptions::new().with_tls(tls)))
        .await
        .unwrap();
    let boot = client
        .get("/bootstrap/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let want_key = format!(
        "/bootstrap/{}",
        &hex::encode(Sha256::digest(TOKEN.as_bytes()))[..12]
    );
    let keys: Vec<String> = boot
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, [want_key]);
    let sealed = boot.kvs()[0].value_str().unwrap();
    assert!(
        !sealed.contains("BEGIN") && !sealed.contains(TOKEN),
        "bootstrap data must be encrypted"
    );
    let minions = client
        .get(
            "/registry/minions/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = minions
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "/registry/minions/agent-0",
            "/registry/minions/server-0",
            "/registry/minions/server-1"
        ]
    );

    // A third server with the wrong token fails as k3s does.
    let (mut bad, _) = server(
        dir.path(),
        ServerOpts {
            name: "server-2",
            port: free_port(),
            token: "not-the-cluster-token",
            extra: vec![],
            env: env.clone(),
        },
    );
    let status = bad.wait_exit(Duration::from_secs(60)).await;
    assert!(!status.success(), "a server with the wrong token must fail");
    let log = bad.log();
    assert!(
        log.contains("level=fatal msg=\"starting kubernetes: preparing server: bootstrap data already found and encrypted with different token\""),
        "{log}"
    );
    assert!(!log.contains("k3s is up and running"), "{log}");

    // A node is Ready only while it heartbeats: a killed agent turns NotReady.
    a0.kill();
    let nodes = wait_nodes(
        &home,
        &kc1,
        |n| {
            n.iter()
                .any(|(name, ready, _)| name == "agent-0" && ready == "Unknown")
        },
        Duration::from_secs(30),
    )
    .await;
    assert!(
        nodes
            .iter()
            .filter(|n| n.0.starts_with("server"))
            .all(|n| n.1 == "True"),
        "{nodes:?}"
    );
    let (_, table) = kubectl(&home, &kc1, &["get", "nodes"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("agent-0") && l.contains("NotReady")),
        "{table}"
    );

    // `kubectl delete node` removes the stopped agent's object from etcd.
    let (ok, out) = kubectl(&home, &kc1, &["delete", "node", "agent-0"]);
    assert!(ok && out.contains("node \"agent-0\" deleted"), "{out}");
    let minions = client
        .get(
            "/registry/minions/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = minions
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["/registry/minions/server-0", "/registry/minions/server-1"]
    );
    let before = identities(&home, &kc0);

    // SIGTERM stops a server promptly (PID 1 in a container gets only that).
    let pid = s1.child.as_ref().unwrap().id();
    let t = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = s1.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "SIGTERM exit status: {status}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "SIGTERM took {:?}",
        t.elapsed()
    );

    // Started again, server-1 re-registers as the same Node: same uid,
    // same creation time.
    let (mut s1, _) = server_logged(
        dir.path(),
        ServerOpts {
            name: "server-1",
            port: p1,
            token: TOKEN,
            extra: flags,
            env: vec![],
        },
        "server-1-restarted",
    );
    s1.wait_for(REGISTERED, Duration::from_secs(60)).await;
    assert_eq!(identities(&home, &kc0), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_cluster_init_joiner_and_agent() {
    kubectl_path();
    let dir = tempfile::tempdir().unwrap();
    let (p0, p1) = (free_port(), free_port());
    let (mut s0, kc0) = server(
        dir.path(),
        ServerOpts {
            name: "server-0",
            port: p0,
            token: TOKEN,
            extra: vec!["--cluster-init".into()],
            env: vec![],
        },
    );
    s0.wait_for(UP, Duration::from_secs(30)).await;
    let (mut s1, kc1) = server(
        dir.path(),
        ServerOpts {
            name: "server-1",
            port: p1,
            token: TOKEN,
            extra: vec![],
            env: vec![
                ("K3S_URL".into(), format!("https://127.0.0.1:{p0}")),
                ("K3S_KUBECONFIG_MODE".into(), "644".into()),
            ],
        },
    );
    s1.wait_for(UP, Duration::from_secs(30)).await;
    assert_eq!(
        std::fs::metadata(&kc1).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        std::fs::metadata(&kc0).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The agent talks to the joiner, which forwards to the init server's store.
    let mut a0 = agent(
        dir.path(),
        "agent-0",
        &format!("https://127.0.0.1:{p1}"),
        TOKEN,
    );
    a0.wait_for(REGISTERED, Duration::from_secs(30)).await;

    let home = dir.path().join("home");
    ready_with_roles(&home, &kc1, "control-plane,etcd,master").await;
    // Same CA on both servers.
    let ca = |p: &Path| {
        b64_field(
            &std::fs::read_to_string(p).unwrap(),
            "certificate-authority-data",
        )
    };
    assert_eq!(ca(&kc0), ca(&kc1));
    // The init server wrote k3s's full token form: K10<sha256 of the CA>::server:<password>.
    let token_file =
        std::fs::read_to_string(dir.path().join("server-0/data/server/token")).unwrap();
    let want = format!(
        "K10{}::server:{TOKEN}",
        hex::encode(Sha256::digest(ca(&kc0).as_bytes()))
    );
    assert_eq!(token_file.trim(), want);
    assert_eq!(
        std::fs::metadata(dir.path().join("server-0/data/server/token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // A joiner with the wrong token is refused and exits.
    let (mut bad, _) = server(
        dir.path(),
        ServerOpts {
            name: "server-2",
            port: free_port(),
            token: "wrong-token",
            extra: vec!["--server".into(), format!("https://127.0.0.1:{p0}")],
            env: vec![],
        },
    );
    assert!(!bad.wait_exit(Duration::from_secs(30)).await.success());
    assert!(bad.log().contains("level=fatal"), "{}", bad.log());
    // An agent with a K10 token for another CA refuses to join.
    let other = format!("K10{}::server:{TOKEN}", "0".repeat(64));
    let mut stray = agent(
        dir.path(),
        "agent-1",
        &format!("https://127.0.0.1:{p0}"),
        &other,
    );
    assert!(!stray.wait_exit(Duration::from_secs(30)).await.success());
    assert!(
        stray
            .log()
            .contains("level=fatal msg=\"token CA hash does not match"),
        "{}",
        stray.log()
    );
}

#[tokio::test]
async fn bad_datastore_endpoint_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    for endpoint in ["etcd", "127.0.0.1:2379"] {
        let (mut s, kc) = server(
            dir.path(),
            ServerOpts {
                name: "server-0",
                port: free_port(),
                token: TOKEN,
                extra: vec![format!("--datastore-endpoint={endpoint}")],
                env: vec![],
            },
        );
        let status = s.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(1), "{}", s.log());
        let log = s.log();
        assert!(
            log.contains("level=fatal") && log.contains("invalid datastore endpoint"),
            "{log}"
        );
        assert!(
            !kc.exists(),
            "nothing is written before the configuration is checked"
        );
    }
}

#[tokio::test]
async fn unreachable_etcd_is_retried_then_fatal() {
    let dir = tempfile::tempdir().unwrap();
    // Real TLS files, but nothing listens on the endpoint.
    let ca =
        topgun_tls::CertificateAuthority::generate(&topgun_tls::CaParams::new("etcd-ca")).unwrap();
    let client = ca
        .issue(&topgun_tls::LeafParams::new(
            "k3s",
            topgun_tls::CertUsage::Client,
        ))
        .unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::write(pki.join("ca.crt"), ca.cert_pem()).unwrap();
    let (cert, key) =
        topgun_tls::write::write_certified_key(&pki, "client", &client, false).unwrap();
    let env = vec![
        (
            "K3S_DATASTORE_ENDPOINT".to_owned(),
            format!("https://127.0.0.1:{}", free_port()),
        ),
        (
            "K3S_DATASTORE_CAFILE".to_owned(),
            pki.join("ca.crt").to_string_lossy().into_owned(),
        ),
        (
            "K3S_DATASTORE_CERTFILE".to_owned(),
            cert.to_string_lossy().into_owned(),
        ),
        (
            "K3S_DATASTORE_KEYFILE".to_owned(),
            key.to_string_lossy().into_owned(),
        ),
        ("K3S_STANDIN_STARTUP_TIMEOUT".to_owned(), "4".to_owned()),
    ];
    let (mut s, kc) = server(
        dir.path(),
        ServerOpts {
            name: "server-0",
            port: free_port(),
            token: TOKEN,
            extra: vec![],
            env,
        },
    );
    let status = s.wait_exit(Duration::from_secs(30)).await;
    let log = s.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.matches("Failed to test data store connection").count() >= 2,
        "retries are logged:\n{log}"
    );
    assert!(log.contains("level=fatal"), "{log}");
    assert!(!kc.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_cluster_survives_restarts_in_any_order() {
    kubectl_path();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (p0, p1) = (free_port(), free_port());
    let url0 = format!("https://127.0.0.1:{p0}");
    let init = |log: &str| {
        server_logged(
            dir.path(),
            ServerOpts {
                name: "server-0",
                port: p0,
                token: TOKEN,
                extra: vec!["--cluster-init".into()],
                env: vec![],
            },
            log,
        )
    };
    let joiner = |log: &str| {
        server_logged(
            dir.path(),
            ServerOpts {
                name: "server-1",
                port: p1,
                token: TOKEN,
                extra: vec![],
                env: vec![("K3S_URL".into(), url0.clone())],
            },
            log,
        )
    };
    let all = ["agent-0", "server-0", "server-1"];

    // An agent started before any server retries with back-off until one
    // answers, as k3s agents do.
    let mut a0 = agent(dir.path(), "agent-0", &url0, TOKEN);
    a0.wait_for(
        "Waiting to retrieve agent configuration; server is not ready",
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let waits = a0
        .log()
        .matches("Waiting to retrieve agent configuration")
        .count();
    assert!(
        (2..=4).contains(&waits),
        "0.5 s, 1 s, 2 s ... between attempts; {waits} attempts in 1.6 s:\n{}",
        a0.log()
    );
    let (mut s0, kc0) = init("server-0");
    s0.wait_for(UP, Duration::from_secs(30)).await;
    let (mut s1, kc1) = joiner("server-1");
    s1.wait_for(UP, Duration::from_secs(30)).await;
    a0.wait_for(REGISTERED, Duration::from_secs(30)).await;
    wait_nodes(&home, &kc1, |n| all_ready(n, &all), Duration::from_secs(30)).await;
    let before = identities(&home, &kc1);
    let ca = |p: &Path| {
        b64_field(
            &std::fs::read_to_string(p).unwrap(),
            "certificate-authority-data",
        )
    };
    let ca_before = ca(&kc0);
    // The store is saved under the init server's data dir, as k3s keeps
    // its datastore under server/db/.
    let store = dir
        .path()
        .join("server-0/data/server/db/standin-store.json");
    assert!(store.is_file(), "no {}", store.display());

    // The init server restarts while the joiner and the agent keep
    // running: same CAs, same nodes, and both carry on through it.
    s0.kill();
    let (mut s0, _) = init("server-0-restarted");
    s0.wait_for(UP, Duration::from_secs(30)).await;
    let log = s0.log();
    assert!(
        log.contains("Reconciling bootstrap data between datastore and disk")
            && log.contains("(3 node(s) stored)"),
        "{log}"
    );
    assert_eq!(ca(&kc0), ca_before);
    wait_nodes(&home, &kc1, |n| all_ready(n, &all), Duration::from_secs(30)).await;
    assert_eq!(identities(&home, &kc1), before);
    assert_eq!(identities(&home, &kc0), before);

    // Every node stops, then they start in reverse order: the agent, the
    // joiner (which joined before, so it waits for its init server instead
    // of failing), the init server last. Everything converges by itself.
    a0.kill();
    s1.kill();
    s0.kill();
    let mut a0 = agent_logged(dir.path(), "agent-0", &url0, TOKEN, "agent-0-restarted");
    let (mut s1, _) = joiner("server-1-restarted");
    s1.wait_for(
        "Failed to test data store connection",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        s1.log().contains(&format!(
            "Using the cluster CAs from the data directory (joined {url0} before)"
        )),
        "{}",
        s1.log()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut s0, _) = init("server-0-restarted-last");
    s0.wait_for(UP, Duration::from_secs(30)).await;
    s1.wait_for(UP, Duration::from_secs(30)).await;
    a0.wait_for(REGISTERED, Duration::from_secs(30)).await;
    wait_nodes(&home, &kc1, |n| all_ready(n, &all), Duration::from_secs(30)).await;
    assert_eq!(identities(&home, &kc1), before);
    assert_eq!(ca(&kc0), ca_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_node_deletion() {
    kubectl_path();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let p0 = free_port();
    let data0 = dir.path().join("server-0/data");

    // The air-gap directory holds a tarball (and a file that is not one)
    // before the server starts.
    let images_dir = data0.join("agent/images");
    std::fs::create_dir_all(&images_dir).unwrap();
    let (preload, preload_digest) = docker_archive(&["preload:1"], "preload");
    std::fs::write(images_dir.join("preload.tar"), preload).unwrap();
    std::fs::write(images_dir.join("broken.tar"), b"not a tarball").unwrap();
    let (mut s0, kc0) = server(
        dir.path(),
        ServerOpts {
            name: "server-0",
            port: p0,
            token: TOKEN,
            extra: vec![],
            env: vec![],
        },
    );
    s0.wait_for(REGISTERED, Duration::from_secs(30)).await;
    let log = s0.log();
    let preload_path = images_dir.join("preload.tar");
    for line in [
        format!(
            "level=info msg=\"Importing images from {}\"",
            preload_path.display()
        ),
        format!(
            "level=info msg=\"Imported images from {} in ",
            preload_path.display()
        ),
        format!(
            "level=error msg=\"Error encountered while importing {}: ",
            images_dir.join("broken.tar").display()
        ),
    ] {
        assert!(log.contains(&line), "no {line:?} in:\n{log}");
    }
    // Imported before the node registered.
    assert!(
        log.find("Imported images from").unwrap() < log.find(REGISTERED).unwrap(),
        "{log}"
    );

    // `k3s ctr images import` while the server runs (another process,
    // sharing only the data dir), in each spelling k3s users type.
    let (app, app_digest) = docker_archive(&["standin/app:1.0", "app"], "app");
    let app_tar = dir.path().join("app.tar");
    std::fs::write(&app_tar, app).unwrap();
    let want = format!(
        "unpacking docker.io/standin/app:1.0 ({app_digest})...done\nunpacking docker.io/library/app:latest ({app_digest})...done\n"
    );
    let app_path = app_tar.to_string_lossy().into_owned();
    for args in [
        vec!["images", "import", app_path.as_str()],
        vec!["-n", "k8s.io", "images", "import", app_path.as_str()],
        vec!["image", "import", app_path.as_str()],
    ] {
        let (ok, out, err) = ctr(&data0, &args, None);
        assert!(ok, "ctr {args:?}: {err}");
        assert_eq!(out, want, "ctr {args:?}");
    }
    let (ok, out, err) = ctr(&data0, &["images", "import", "-"], Some(&app_tar));
    assert!(ok && out == want, "import from stdin: {out}{err}");
    // Streamed in through a pipe with padding after the archive (as
    // `docker save` pads), the whole stream is read, so the sender is not
    // cut off.
    let mut child = Command::new(K3S)
        .args(["ctr", "images", "import", "-"])
        .env("K3S_DATA_DIR", &data0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&std::fs::read(&app_tar).unwrap()).unwrap();
        stdin.write_all(&vec![0u8; 256 * 1024]).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    // As `ctr` (the name rancher/k3s links to k3s in /bin), it is `k3s ctr`.
    let link = dir.path().join("ctr");
    std::os::unix::fs::symlink(K3S, &link).unwrap();
    let out = Command::new(&link)
        .args(["images", "ls", "-q"])
        .env("K3S_DATA_DIR", &data0)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("docker.io/standin/app:1.0\n"),
        "{out:?}"
    );
    let (ok, out, err) = ctr(&data0, &["images", "import", "/does/not/exist.tar"], None);
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(
        err,
        "ctr: open /does/not/exist.tar: no such file or directory\n"
    );

    let (ok, out, _) = ctr(&data0, &["images", "ls", "-q"], None);
    assert!(ok);
    assert_eq!(
        out,
        "docker.io/library/app:latest\ndocker.io/library/preload:1\ndocker.io/standin/app:1.0\n"
    );
    let (ok, table, _) = ctr(&data0, &["images", "list"], None);
    assert!(ok);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    );
    assert_eq!(rows.len(), 4, "{table}");
    let row = |name: &str| rows.iter().find(|r| r[0] == name).unwrap().clone();
    let preload_row = row("docker.io/library/preload:1");
    assert_eq!(
        preload_row[1],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(preload_row[2], preload_digest);
    assert_eq!(preload_row[4], "KiB", "{table}");
    assert_eq!(preload_row[5], "linux/amd64");
    assert_eq!(
        preload_row[6],
        "io.cattle.k3s.pinned=pinned,io.cri-containerd.pinned=pinned"
    );
    let app_row = row("docker.io/standin/app:1.0");
    assert_eq!(app_row[2], app_digest);
    assert_eq!(app_row[6], "-");
    // Another namespace is another image store (the kubelet sees k8s.io).
    let (ok, out, _) = ctr(&data0, &["-n", "default", "images", "ls", "-q"], None);
    assert!(ok && out.is_empty(), "{out}");

    // The node reports its images, as the kubelet does, within a heartbeat
    // or two of the import.
    let names = wait_jsonpath(
        &home,
        &kc0,
        "server-0",
        "{.status.images[*].names}",
        |s| s.contains("docker.io/standin/app:1.0"),
        Duration::from_secs(6),
    )
    .await;
    for name in [
        format!("docker.io/standin/app@{app_digest}"),
        format!("docker.io/library/app@{app_digest}"),
        "docker.io/library/app:latest".to_owned(),
        format!("docker.io/library/preload@{preload_digest}"),
        "docker.io/library/preload:1".to_owned(),
    ] {
        assert!(names.contains(&name), "{name} missing from {names}");
    }
    let sizes = wait_jsonpath(
        &home,
        &kc0,
        "server-0",
        "{.status.images[*].sizeBytes}",
        |s| !s.is_empty(),
        Duration::from_secs(1),
    )
    .await;
    assert!(
        sizes
            .split_whitespace()
            .all(|n| n.parse::<u64>().unwrap() > 1000),
        "{sizes}"
    );
    // Removed names leave the node's status too.
    let (ok, out, _) = ctr(
        &data0,
        &["images", "rm", "docker.io/library/app:latest"],
        None,
    );
    assert!(ok && out == "docker.io/library/app:latest\n", "{out}");
    wait_jsonpath(
        &home,
        &kc0,
        "server-0",
        "{.status.images[*].names}",
        |s| !s.contains("docker.io/library/app:latest") && s.contains("docker.io/standin/app:1.0"),
        Duration::from_secs(6),
    )
    .await;

    // `kubectl delete node` (Debian's kubectl, which waits for the
    // deletion) on a node that has stopped.
    let mut a0 = agent(
        dir.path(),
        "agent-0",
        &format!("https://127.0.0.1:{p0}"),
        TOKEN,
    );
    a0.wait_for(REGISTERED, Duration::from_secs(30)).await;
    a0.kill();
    let (ok, out) = kubectl(&home, &kc0, &["delete", "node", "agent-0"]);
    assert!(ok && out.contains("node \"agent-0\" deleted"), "{out}");
    let (ok, out) = kubectl(&home, &kc0, &["get", "node", "agent-0"]);
    assert!(
        !ok && out.contains("(NotFound)") && out.contains("nodes \"agent-0\" not found"),
        "{out}"
    );
    let (ok, out) = kubectl(&home, &kc0, &["delete", "node", "no-such-node"]);
    assert!(
        !ok && out.contains("nodes \"no-such-node\" not found"),
        "{out}"
    );
    // A node that keeps running registers again on its next heartbeat, as
    // a new object.
    let before = identities(&home, &kc0);
    let (ok, out) = kubectl(&home, &kc0, &["delete", "node", "server-0"]);
    assert!(ok && out.contains("node \"server-0\" deleted"), "{out}");
    wait_nodes(
        &home,
        &kc0,
        |n| all_ready(n, &["server-0"]),
        Duration::from_secs(10),
    )
    .await;
    let after = identities(&home, &kc0);
    assert_ne!(after["server-0"].0, before["server-0"].0, "a new uid");
    s0.wait_for(
        "Successfully registered node server-0\"\n",
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        s0.log()
            .matches("Successfully registered node server-0")
            .count(),
        2,
        "{}",
        s0.log()
    );

    // All of it is kept across a restart: images, the deletion, the node.
    s0.kill();
    let (mut s0, _) = server_logged(
        dir.path(),
        ServerOpts {
            name: "server-0",
            port: p0,
            token: TOKEN,
            extra: vec![],
            env: vec![],
        },
        "server-0-restarted",
    );
    s0.wait_for(REGISTERED, Duration::from_secs(30)).await;
    assert_eq!(identities(&home, &kc0), after);
    wait_jsonpath(
        &home,
        &kc0,
        "server-0",
        "{.status.images[*].names}",
        |s| s.contains("docker.io/standin/app:1.0"),
        Duration::from_secs(6),
    )
    .await;
}

// ------------------------------------------------------- registry pulls

/// Debian's registry (Docker distribution 2.8), the real thing.
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether the real registry is here; says loudly why a test is skipped.
/// Under CI (which installs it) a missing registry fails instead.
#[allow(clippy::print_stderr)]
fn registry_available() -> bool {
    if Path::new(REGISTRY_BIN).is_file() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{REGISTRY_BIN} is missing under CI: run `cargo xtask setup` (Debian package docker-registry)"
    );
    eprintln!(
        "\n\n*** SKIPPED: {REGISTRY_BIN} is not installed; run `cargo xtask setup` (Debian package docker-registry) ***\n\n"
    );
    false
}

/// A registry serving `dir/<name>` on 127.0.0.1 (plain HTTP, or HTTPS with
/// `tls` = (certificate, key)); waits until `GET /v2/` answers.
async fn registry(dir: &Path, name: &str, tls: Option<(&Path, &Path)>) -> (Proc, u16) {
    let data = dir.join(name).join("data");
    registry_with(dir, name, tls, &data, "").await
}

/// [`registry`] on the storage under `data` (registries may share it: one
/// to push to, another with authentication to pull from), with `extra`
/// appended to its config.
async fn registry_with(
    dir: &Path,
    name: &str,
    tls: Option<(&Path, &Path)>,
    data: &Path,
    extra: &str,
) -> (Proc, u16) {
    let port = free_port();
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    let tls_lines = match tls {
        Some((cert, key)) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let config = root.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_lines}{extra}",
            data.display()
        ),
    )
    .unwrap();
    let mut proc = Proc::spawn(
        name,
        dir,
        Path::new(REGISTRY_BIN),
        &["serve".to_owned(), config.to_string_lossy().into_owned()],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if up {
            break;
        }
        if let Some(status) = proc.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("the registry exited ({status}):\n{}", proc.log());
        }
        assert!(
            Instant::now() < deadline,
            "the registry did not listen:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (proc, port)
}

/// One plain HTTP/1.1 request: (status, headers in lower case, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, answer[split + 4..].to_vec())
}

/// Pushes a blob through the Registry API (upload, then a monolithic PUT).
fn push_blob(port: u16, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let (status, headers, body) = http(
        port,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let location = &headers["location"];
    let path = match location.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/').unwrap()..],
        None => location.as_str(),
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, _, body) = http(
        port,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    digest
}

/// A server that reads `registries` as its `--private-registry` file,
/// logging to `log`.
fn registry_node(dir: &Path, name: &str, registries: &Path, log: &str) -> (Proc, PathBuf) {
    server_logged(
        dir,
        ServerOpts {
            name,
            port: free_port(),
            token: TOKEN,
            extra: vec![format!("--private-registry={}", registries.display())],
            env: vec![],
        },
        log,
    )
}

/// An open registry (`registry-open` under `dir`, whose storage the tests'
/// authenticating registries share) holding `app:1` for amd64; returns it
/// and the image's config digest.
async fn open_registry_with_app(dir: &Path) -> (Proc, String) {
    let (open, port) = registry(dir, "registry-open", None).await;
    let (manifest, _, config_digest, _) = push_image(port, "app", "amd64", "app");
    push_manifest(
        port,
        "app",
        "1",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    (open, config_digest)
}

/// Pushes a manifest (or index) under `reference`; returns its digest.
fn push_manifest(port: u16, repo: &str, reference: &str, media_type: &str, doc: &[u8]) -> String {
    let (status, headers, body) = http(
        port,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        doc,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["docker-content-digest"], sha256(doc));
    sha256(doc)
}

/// Pushes a one-layer image for `arch`: (manifest, manifest digest,
/// config digest, manifest + config + layer size).
fn push_image(port: u16, repo: &str, arch: &str, file: &str) -> (Vec<u8>, String, String, u64) {
    let mut layer = tar::Builder::new(Vec::new());
    tar_add(&mut layer, file, format!("{file} for {arch}\n").as_bytes());
    let layer = layer.into_inner().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": [format!("/{file}")]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    push_blob(port, repo, &layer);
    push_blob(port, repo, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let size = (manifest.len() + config.len() + layer.len()) as u64;
    let digest = sha256(&manifest);
    (manifest, digest, sha256(&config), size)
}

/// Runs `k3s SUB ARGS` (`ctr`, `crictl`) on the node whose data dir is
/// `data`: (success, stdout, stderr).
fn k3s_cli(data: &Path, sub: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(K3S);
    cmd.arg(sub).args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("K3S_") || k.starts_with("CONTAINERD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("K3S_DATA_DIR", data);
    let out = cmd.output().expect("running k3s");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_yaml_mirrors_pull_from_a_real_registry() {
    if !registry_available() {
        return;
    }
    kubectl_path();
    let dir = tempfile::tempdir().unwrap();
    let (_plain, port) = registry(dir.path(), "registry-plain", None).await;

    // An image, and a two-platform index, pushed through the real API.
    let (manifest, manifest_digest, config_digest, size) =
        push_image(port, "team/app", "amd64", "app");
    push_manifest(
        port,
        "team/app",
        "1",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    let (arm, arm_digest, _, _) = push_image(port, "team/app", "arm64", "app");
    push_manifest(
        port,
        "team/app",
        &arm_digest,
        "application/vnd.oci.image.manifest.v1+json",
        &arm,
    );
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_digest, "size": arm.len(), "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let index_digest = push_manifest(
        port,
        "team/app",
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    // The same image under a path only a rewrite reaches.
    push_manifest(
        port,
        "mirrored/app",
        "1",
        "application/vnd.oci.image.manifest.v1+json",
        &{
            let (m, _, _, _) = push_image(port, "mirrored/app", "amd64", "app");
            m
        },
    );

    // The node: its registries.yaml sends registry.test:5000 to a mirror
    // that is down, then to the real registry; docker.io to the registry
    // with a rewrite.
    let down = free_port();
    let file = dir.path().join("registries.yaml");
    std::fs::write(
        &file,
        format!(
            "mirrors:\n  \"registry.test:5000\":\n    endpoint:\n      - \"http://127.0.0.1:{down}\"\n      - \"http://127.0.0.1:{port}\"\n  docker.io:\n    endpoint: [\"http://127.0.0.1:{port}\"]\n    rewrite:\n      \"^library/(.*)\": \"mirrored/$1\"\n"
        ),
    )
    .unwrap();
    let (mut server, kubeconfig) = registry_node(dir.path(), "server-0", &file, "server-0");
    server.wait_for(REGISTERED, Duration::from_secs(30)).await;
    assert!(
        server.log().contains(&format!(
            "Using private registry config file at {}",
            file.display()
        )),
        "{}",
        server.log()
    );
    let data = dir.path().join("server-0/data");

    // crictl pull: through the mirror that is down, on to the next one.
    let (ok, out, err) = k3s_cli(&data, "crictl", &["pull", "registry.test:5000/team/app:1"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, format!("Image is up to date for {config_digest}\n"));
    let containerd_log =
        std::fs::read_to_string(data.join("agent/containerd/containerd.log")).unwrap();
    assert!(
        containerd_log.contains(&format!("http://127.0.0.1:{down}/v2"))
            && containerd_log.contains("connection refused"),
        "{containerd_log}"
    );
    let (ok, out, err) = k3s_cli(&data, "ctr", &["images", "ls"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("registry.test:5000/team/app:1 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(&manifest_digest), "{out}");
    assert!(line.contains("io.cri-containerd.image=managed"), "{out}");
    assert!(
        out.contains(&format!("registry.test:5000/team/app@{manifest_digest}")),
        "the repo digest is recorded too:\n{out}"
    );
    let (_, out, _) = k3s_cli(&data, "crictl", &["images"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("registry.test:5000/team/app ")
                && l.contains(&config_digest[7..20])),
        "{out}"
    );
    // The running node reports it, as the kubelet reports what it pulled.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let want = format!("registry.test:5000/team/app@{manifest_digest}");
    wait_jsonpath(
        &home,
        &kubeconfig,
        "server-0",
        "{.status.images[*].names}",
        |names| names.contains(&want) && names.contains("registry.test:5000/team/app:1"),
        Duration::from_secs(15),
    )
    .await;
    // The size is what was fetched: manifest, config and layer.
    let records = std::fs::read_dir(data.join("agent/containerd/standin-images/k8s.io"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .find(|v| v["name"] == "registry.test:5000/team/app:1")
        .unwrap();
    assert_eq!(records["size"], size);

    // An index: the host's platform is fetched, the index is the target.
    let (ok, out, err) = k3s_cli(
        &data,
        "ctr",
        &[
            "images",
            "pull",
            "--hosts-dir",
            "/etc/containerd/certs.d",
            "registry.test:5000/team/app:multi",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("unpacking linux/amd64 {index_digest}...")),
        "{out}"
    );
    let (_, out, _) = k3s_cli(&data, "ctr", &["-n", "k8s.io", "images", "ls"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("registry.test:5000/team/app:multi "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("application/vnd.oci.image.index.v1+json")
            && line.contains(&index_digest)
            && line.contains("linux/amd64,linux/arm64"),
        "{out}"
    );

    // docker.io through the mirror, with the rewrite; a digest reference.
    let (ok, out, err) = k3s_cli(&data, "crictl", &["pull", "app:1"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = k3s_cli(
        &data,
        "crictl",
        &[
            "pull",
            &format!("registry.test:5000/team/app@{manifest_digest}"),
        ],
    );
    assert!(ok, "{out}{err}");

    // ctr without --hosts-dir goes to the registry itself, as ctr does.
    let (ok, out, err) = k3s_cli(
        &data,
        "ctr",
        &[
            "images",
            "pull",
            "--plain-http",
            &format!("127.0.0.1:{port}/team/app:1"),
        ],
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = k3s_cli(
        &data,
        "ctr",
        &["images", "pull", "registry.test:5000/team/app:1"],
    );
    assert!(
        !ok && err.starts_with("ctr: failed to resolve reference"),
        "{err}"
    );

    // Not found anywhere: containerd's error, status 1. The default
    // endpoint comes last, so its error is the one shown when it fails.
    let missing = format!("127.0.0.1:{port}/team/nope:1");
    let (ok, _, err) = k3s_cli(&data, "crictl", &["pull", &missing]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            r#"failed to resolve reference \"{missing}\": {missing}: not found"#
        )) && err.contains("code = NotFound"),
        "{err}"
    );
    let (ok, _, err) = k3s_cli(&data, "crictl", &["pull", "registry.test:5000/team/nope:1"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(r#"Get \"https://registry.test:5000/v2/team/nope/manifests/1\": dial tcp: lookup registry.test: no such host"#),
        "{err}"
    );
    // A blob altered in the registry's storage is refused: every digest
    // is checked.
    let (tampered, _, _, _) = push_image(port, "team/tampered", "amd64", "tampered");
    push_manifest(
        port,
        "team/tampered",
        "1",
        "application/vnd.oci.image.manifest.v1+json",
        &tampered,
    );
    let doc: Value = serde_json::from_slice(&tampered).unwrap();
    let layer = doc["layers"][0]["digest"].as_str().unwrap()[7..].to_owned();
    let blob = dir
        .path()
        .join("registry-plain/data/docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let len = std::fs::metadata(&blob).unwrap().len() as usize;
    std::fs::write(&blob, vec![b'x'; len]).unwrap();
    let (ok, _, err) = k3s_cli(
        &data,
        "crictl",
        &["pull", "registry.test:5000/team/tampered:1"],
    );
    assert!(!ok, "{err}");
    assert!(err.contains("unexpected commit digest"), "{err}");
    let (_, out, _) = k3s_cli(&data, "ctr", &["images", "ls", "-q"]);
    assert!(!out.contains("tampered"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_yaml_tls_endpoint_and_bad_files() {
    if !registry_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A registry on HTTPS with a certificate from a CA of our own.
    let ca = topgun_tls::CertificateAuthority::generate(&topgun_tls::CaParams::new("registry-ca"))
        .unwrap();
    let leaf = ca
        .issue(
            &topgun_tls::LeafParams::new("registry", topgun_tls::CertUsage::Server)
                .with_sans(topgun_tls::parse_san_list("127.0.0.1").unwrap()),
        )
        .unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::write(pki.join("ca.crt"), ca.cert_pem()).unwrap();
    let (cert, key) =
        topgun_tls::write::write_certified_key(&pki, "registry", &leaf, false).unwrap();
    let (_tls, tls_port) = registry(dir.path(), "registry-tls", Some((&cert, &key))).await;
    let (_plain, port) = registry(dir.path(), "registry-plain", None).await;
    let (manifest, _, config_digest, _) = push_image(port, "app", "amd64", "app");
    push_manifest(
        port,
        "app",
        "1",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );

    // Without the CA the TLS endpoint fails, and the error names it.
    let file = dir.path().join("registries.yaml");
    std::fs::write(
        &file,
        format!(
            "mirrors:\n  \"registry.test\":\n    endpoint: [\"https://127.0.0.1:{tls_port}\"]\n"
        ),
    )
    .unwrap();
    let (mut s, _) = registry_node(dir.path(), "server-0", &file, "server-0");
    s.wait_for(REGISTERED, Duration::from_secs(30)).await;
    let data = dir.path().join("server-0/data");
    let (ok, _, err) = k3s_cli(&data, "crictl", &["pull", "registry.test/app:1"]);
    assert!(!ok, "{err}");
    assert!(err.contains("failed to resolve reference"), "{err}");
    let containerd_log =
        std::fs::read_to_string(data.join("agent/containerd/containerd.log")).unwrap();
    assert!(
        containerd_log.contains(&format!("https://127.0.0.1:{tls_port}/v2"))
            && containerd_log.contains("x509: certificate signed by unknown authority"),
        "{containerd_log}"
    );
    s.kill();

    // With the CA: the TLS registry answers 404 (empty), then the plain
    // one has it; a restart is what makes the node read the file again.
    std::fs::write(
        &file,
        format!(
            "mirrors:\n  \"registry.test\":\n    endpoint:\n      - \"https://127.0.0.1:{tls_port}\"\n      - \"http://127.0.0.1:{port}\"\nconfigs:\n  \"127.0.0.1:{tls_port}\":\n    tls:\n      ca_file: {}\n",
            pki.join("ca.crt").display()
        ),
    )
    .unwrap();
    let (mut s, _) = registry_node(dir.path(), "server-0", &file, "server-0-again");
    s.wait_for(REGISTERED, Duration::from_secs(30)).await;
    let (ok, out, err) = k3s_cli(&data, "crictl", &["pull", "registry.test/app:1"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, format!("Image is up to date for {config_digest}\n"));
    let containerd_log =
        std::fs::read_to_string(data.join("agent/containerd/containerd.log")).unwrap();
    assert!(
        containerd_log.contains(&format!(
            "https://127.0.0.1:{tls_port}/v2: registry.test/app:1: not found"
        )),
        "{containerd_log}"
    );
    s.kill();

    // Mutual TLS: a registry on the same storage that wants a client
    // certificate from the CA; and `insecure_skip_verify` for the first.
    let client = ca
        .issue(&topgun_tls::LeafParams::new(
            "node",
            topgun_tls::CertUsage::Client,
        ))
        .unwrap();
    let (client_cert, client_key) =
        topgun_tls::write::write_certified_key(&pki, "client", &client, false).unwrap();
    let (_mtls, mtls_port) = registry_with(
        dir.path(),
        "registry-mtls",
        Some((&cert, &key)),
        &dir.path().join("registry-plain/data"),
        &format!("    clientcas:\n      - {}\n", pki.join("ca.crt").display()),
    )
    .await;
    std::fs::write(
        &file,
        format!(
            "mirrors:\n  \"registry.test\":\n    endpoint:\n      - \"https://127.0.0.1:{tls_port}\"\n      - \"https://127.0.0.1:{mtls_port}\"\nconfigs:\n  \"127.0.0.1:{tls_port}\":\n    tls:\n      insecure_skip_verify: true\n  \"127.0.0.1:{mtls_port}\":\n    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
            pki.join("ca.crt").display(),
            client_cert.display(),
            client_key.display()
        ),
    )
    .unwrap();
    let (mut s, _) = registry_node(dir.path(), "server-0", &file, "server-0-mtls");
    s.wait_for(REGISTERED, Duration::from_secs(30)).await;
    std::fs::remove_file(data.join("agent/containerd/containerd.log")).unwrap();
    let (ok, out, err) = k3s_cli(&data, "crictl", &["pull", "registry.test/app:1"]);
    assert!(ok, "{out}{err}");
    let containerd_log =
        std::fs::read_to_string(data.join("agent/containerd/containerd.log")).unwrap();
    assert!(
        containerd_log.contains(&format!(
            "https://127.0.0.1:{tls_port}/v2: registry.test/app:1: not found"
        )) && !containerd_log.contains(&format!("{mtls_port}")),
        "{containerd_log}"
    );
    s.kill();

    // A file that does not parse is fatal at start, and never quoted.
    std::fs::write(
        &file,
        "mirrors:\n  docker.io:\n    endpoint: {password: hunter2-secret}\n",
    )
    .unwrap();
    let (mut s, kc) = registry_node(dir.path(), "server-1", &file, "server-1-bad");
    let status = s.wait_exit(Duration::from_secs(10)).await;
    let log = s.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("Using private registry config file at"),
        "{log}"
    );
    assert!(
        log.contains("level=fatal") && log.contains("yaml: unmarshal errors"),
        "{log}"
    );
    assert!(!log.contains("hunter2-secret"), "{log}");
    assert!(!kc.exists());
    // Agents read it the same way, before they reach for a server.
    let mut agent = Proc::spawn(
        "agent-bad",
        dir.path(),
        Path::new(K3S),
        &[
            "agent".to_owned(),
            "--data-dir".to_owned(),
            dir.path().join("agent/data").to_string_lossy().into_owned(),
            "--private-registry".to_owned(),
            file.to_string_lossy().into_owned(),
        ],
        &[
            (
                "K3S_URL".to_owned(),
                format!("https://127.0.0.1:{}", free_port()),
            ),
            ("K3S_TOKEN".to_owned(), TOKEN.to_owned()),
        ],
    );
    let status = agent.wait_exit(Duration::from_secs(10)).await;
    let log = agent.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("yaml: unmarshal errors"), "{log}");
    assert!(
        !log.contains("Waiting to retrieve agent configuration"),
        "{log}"
    );
}

/// `standin-pw` hashed with bcrypt (cost 4), as `htpasswd -B` writes it.
const HTPASSWD: &str = "standin:$2b$04$u4x9NWbVB.veaaYI.csqe.6si7tsdWReFpfLORI81CYlfliQDmwby\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_yaml_basic_auth() {
    if !registry_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Pushed through an open registry; pulled from one with htpasswd
    // authentication on the same storage.
    let (_open, config_digest) = open_registry_with_app(dir.path()).await;
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, HTPASSWD).unwrap();
    let (_auth, port) = registry_with(
        dir.path(),
        "registry-auth",
        None,
        &dir.path().join("registry-open/data"),
        &format!(
            "auth:\n  htpasswd:\n    realm: standin-realm\n    path: {}\n",
            htpasswd.display()
        ),
    )
    .await;
    let (status, headers, _) = http(port, "GET", "/v2/", &[], b"");
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].starts_with("Basic "));

    let file = dir.path().join("registries.yaml");
    std::fs::write(
        &file,
        format!("mirrors:\n  \"registry.test\":\n    endpoint: [\"http://127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    let (mut s, _) = registry_node(dir.path(), "server-0", &file, "server-0");
    s.wait_for(REGISTERED, Duration::from_secs(30)).await;
    let data = dir.path().join("server-0/data");
    // No credentials: refused, and the log says who asked for them.
    let (ok, _, err) = k3s_cli(&data, "crictl", &["pull", "registry.test/app:1"]);
    assert!(!ok, "{err}");
    let containerd_log =
        std::fs::read_to_string(data.join("agent/containerd/containerd.log")).unwrap();
    assert!(
        containerd_log.contains(&format!(
            "http://127.0.0.1:{port}/v2 asks for basic credentials and none are configured"
        )),
        "{containerd_log}"
    );
    // A wrong password: the registry's 401 is the error.
    let (ok, _, err) = k3s_cli(
        &data,
        "crictl",
        &["pull", "--creds", "standin:wrong", "registry.test/app:1"],
    );
    assert!(!ok, "{err}");
    let containerd_log =
        std::fs::read_to_string(data.join("agent/containerd/containerd.log")).unwrap();
    assert!(
        containerd_log.contains(&format!(
            "unexpected status from GET request to http://127.0.0.1:{port}/v2/app/manifests/1: 401 Unauthorized"
        )),
        "{containerd_log}"
    );
    assert!(!containerd_log.contains("wrong") && !err.contains("wrong"));
    // crictl's --creds.
    let (ok, out, err) = k3s_cli(
        &data,
        "crictl",
        &[
            "pull",
            "--creds",
            "standin:standin-pw",
            "registry.test/app:1",
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out, format!("Image is up to date for {config_digest}\n"));
    s.kill();

    // registries.yaml's configs, with `auth` as base64 of user:password.
    std::fs::write(
        &file,
        format!(
            "mirrors:\n  \"registry.test\":\n    endpoint: [\"http://127.0.0.1:{port}\"]\nconfigs:\n  \"127.0.0.1:{port}\":\n    auth:\n      auth: {}\n",
            B64.encode("standin:standin-pw")
        ),
    )
    .unwrap();
    let (mut s, _) = registry_node(dir.path(), "server-0", &file, "server-0-again");
    s.wait_for(REGISTERED, Duration::from_secs(30)).await;
    let (ok, _, err) = k3s_cli(&data, "ctr", &["images", "rm", "registry.test/app:1"]);
    assert!(ok, "{err}");
    let (ok, out, err) = k3s_cli(&data, "crictl", &["pull", "registry.test/app:1"]);
    assert!(ok, "{out}{err}");
    assert!(!s.log().contains("standin-pw"), "{}", s.log());
    let snapshot = data.join("agent/etc/containerd/standin-registries.json");
    let mode = std::fs::metadata(&snapshot).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the snapshot holds credentials");
}

/// A token server for the registry's `token` authentication: every
/// request gets a JWT (ES256, its certificate in `x5c`) granting pull on
/// `repository:app`, signed with `key` for `cert`. Records each request's
/// line and `Authorization` header.
struct TokenServer {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TokenServer {
    fn start(cert_pem: &str, key_pem: &str) -> TokenServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let b64url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let PrivateKeyDer::Pkcs8(key) = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap()
        else {
            panic!("a PKCS#8 key")
        };
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.secret_pkcs8_der(),
            &rng,
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header =
            serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [B64.encode(cert.as_ref())]});
        let claims = serde_json::json!({
            "iss": "standin-issuer", "sub": "standin", "aud": "standin-service",
            "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": "standin-1",
            "access": [{"type": "repository", "name": "app", "actions": ["pull"]}],
        });
        let signing_input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        let signature = pair.sign(&rng, signing_input.as_bytes()).unwrap();
        let jwt = format!("{signing_input}.{}", b64url(signature.as_ref()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let line = text.lines().next().unwrap_or_default().to_owned();
                let auth = text
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .map(|l| l["authorization:".len()..].trim().to_owned())
                    .unwrap_or_else(|| "-".into());
                seen2.lock().unwrap().push(format!("{line} auth={auth}"));
                let body =
                    serde_json::to_vec(&serde_json::json!({"token": jwt, "expires_in": 600}))
                        .unwrap();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            }
        });
        TokenServer { port, seen, stop }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_yaml_bearer_token_challenge() {
    if !registry_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_open, config_digest) = open_registry_with_app(dir.path()).await;
    // The registry trusts tokens signed for certificates of this CA.
    let ca =
        topgun_tls::CertificateAuthority::generate(&topgun_tls::CaParams::new("token-ca")).unwrap();
    let signer = ca
        .issue(&topgun_tls::LeafParams::new(
            "token-signer",
            topgun_tls::CertUsage::Client,
        ))
        .unwrap();
    let bundle = dir.path().join("token-ca.crt");
    std::fs::write(&bundle, ca.cert_pem()).unwrap();
    let tokens = TokenServer::start(&signer.cert_pem, signer.key_pem.expose());
    let (_auth, port) = registry_with(
        dir.path(),
        "registry-token",
        None,
        &dir.path().join("registry-open/data"),
        &format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: standin-service\n    issuer: standin-issuer\n    rootcertbundle: {}\n",
            tokens.port,
            bundle.display()
        ),
    )
    .await;
    let (status, headers, _) = http(port, "GET", "/v2/app/manifests/1", &[], b"");
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"].starts_with("Bearer "),
        "{headers:?}"
    );

    // Anonymous: ctr straight to the registry.
    let data = dir.path().join("node");
    let (ok, out, err) = k3s_cli(
        &data,
        "ctr",
        &[
            "images",
            "pull",
            "--plain-http",
            &format!("127.0.0.1:{port}/app:1"),
        ],
    );
    assert!(ok, "{out}{err}");
    let seen = tokens.seen();
    assert!(
        seen.iter().any(|l| l.starts_with("GET /token?")
            && l.contains("scope=repository%3Aapp%3Apull")
            && l.contains("service=standin-service")
            && l.ends_with("auth=-")),
        "{seen:?}"
    );
    // With basic credentials for the token server, from --user.
    let (ok, out, err) = k3s_cli(
        &data,
        "ctr",
        &[
            "images",
            "pull",
            "--plain-http",
            "--user",
            "standin:standin-pw",
            &format!("127.0.0.1:{port}/app:1"),
        ],
    );
    assert!(ok, "{out}{err}");
    let basic = format!("auth=Basic {}", B64.encode("standin:standin-pw"));
    assert!(
        tokens.seen().iter().any(|l| l.ends_with(&basic)),
        "{:?}",
        tokens.seen()
    );
    let (_, out, _) = k3s_cli(&data, "ctr", &["images", "ls", "-q"]);
    assert_eq!(out, format!("127.0.0.1:{port}/app:1\n"));
    // The CRI lists what is in k8s.io, whoever put it there.
    let (_, out, _) = k3s_cli(&data, "crictl", &["images", "-q"]);
    assert_eq!(out, format!("{config_digest}\n"));
}
