//! The `registry` scenario: a local registry as a k3d user keeps one.
//! `topgun registry create`, `docker push` from the host, two clusters
//! that use it pulling through the mirror on every node (one added later
//! too), deleting a cluster leaves the registry serving, and a registry a
//! cluster's create makes goes with the cluster.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::e2e::{Harness, docker, labelled, remove_labelled, scratch, stdout_json};

/// The label on every registry's container and volume.
const REGISTRY_LABEL: &str = "dev.topgun.registry";

/// Removes the registries this scenario made (by their label), and the
/// image it built, even when it fails. Touches nothing else.
struct Guard {
    registries: Vec<String>,
    images: Vec<String>,
}

impl Guard {
    fn remove(&self) {
        for name in &self.registries {
            remove_labelled(
                &format!("{REGISTRY_LABEL}={name}"),
                &format!("registry {name}"),
            );
        }
        for image in &self.images {
            let _ = docker(&["image", "rm", "-f", image]);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Docker resources labelled as registry `name`'s, as `kind:name`.
fn registry_resources(name: &str) -> anyhow::Result<Vec<String>> {
    labelled(&format!("{REGISTRY_LABEL}={name}"))
}

/// `topgun registry list -o json`, the entry of `name`.
fn listed(h: &Harness, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let out = h.ok_topgun(&["registry", "list", "-o", "json"])?;
    let list = stdout_json(&out)?;
    Ok(list
        .as_array()
        .context("registry list -o json is no array")?
        .iter()
        .find(|r| r["name"] == name)
        .cloned())
}

/// `GET path` on 127.0.0.1:`port`, the body (plain HTTP/1.0, a deadline on
/// every step).
fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP response")?;
    ensure!(head.contains(" 200 "), "GET {path}: {head}");
    Ok(body.to_owned())
}

/// Pulls `image` on `node` through the cluster's mirror and checks that the
/// node's containerd lists it.
fn pull_on(node: &str, image: &str) -> anyhow::Result<()> {
    docker(&["exec", node, "k3s", "crictl", "pull", image])
        .with_context(|| format!("pulling {image} on {node}"))?;
    let out = docker(&["exec", node, "k3s", "ctr", "images", "ls", "-q"])?;
    let refs = String::from_utf8_lossy(&out.stdout);
    ensure!(
        refs.lines().any(|l| l.trim() == image),
        "{node}: `k3s ctr images ls` does not list {image}:\n{refs}"
    );
    Ok(())
}

/// Waits until the Node `node` of `context` lists `image` in its
/// status.images, as the kubelet reports it.
fn node_lists(h: &Harness, context: &str, node: &str, image: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + h.patience(Duration::from_secs(30));
    loop {
        let out = h.kubectl(&["--context", context, "get", "node", node, "-o", "json"])?;
        if out.status.success() {
            let json = stdout_json(&out)?;
            let names: Vec<&str> = json["status"]["images"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|i| i["names"].as_array().into_iter().flatten())
                .filter_map(|n| n.as_str())
                .collect();
            if names.contains(&image) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("Node {node} does not list {image} in status.images: {names:?}");
            }
        } else if Instant::now() > deadline {
            bail!(
                "kubectl get node {node}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The registry scenario (see the module docs).
pub(super) fn registry(h: &Harness) -> anyhow::Result<()> {
    let reg = format!("r{}.localhost", h.run_id);
    let own = format!("own{}.localhost", h.run_id);
    let taken_name = format!("taken{}.localhost", h.run_id);
    let repo = format!("e2e{}/hello", h.run_id);
    let mut guard = Guard {
        registries: vec![reg.clone(), own.clone(), taken_name.clone()],
        images: Vec::new(),
    };

    // 1. A registry, at a free port on 127.0.0.1.
    let out = h.ok_topgun(&["registry", "create", &reg, "-o", "json"])?;
    let created = stdout_json(&out)?;
    let port = created["port"]
        .as_u64()
        .context("registry create -o json gives no port")?;
    ensure!(
        created["host"] == "127.0.0.1",
        "not on 127.0.0.1: {created}"
    );
    ensure!(
        created["state"] == "running",
        "the registry does not run: {created}"
    );
    // A given port that is taken is refused before anything exists.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let taken = listener.local_addr()?.port().to_string();
    let out = h.run_topgun(&["registry", "create", &taken_name, "--port", &taken])?;
    ensure!(
        out.status.code() == Some(2) && String::from_utf8_lossy(&out.stderr).contains(&taken),
        "a taken port: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    drop(listener);
    ensure!(
        registry_resources(&taken_name)?.is_empty(),
        "a refused registry left {:?}",
        registry_resources(&taken_name)?
    );

    // 2. A tiny image built here, pushed from the host.
    let dir = scratch(h, "registry-image");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("hello.txt"), format!("hello from {}\n", h.run_id))?;
    let tar = scratch(h, "registry-image.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&tar)
        .arg("hello.txt")
        .status()?;
    ensure!(status.success(), "tar failed");
    let pushed = format!("127.0.0.1:{port}/{repo}:v1");
    guard.images.push(pushed.clone());
    docker(&["import", &tar.to_string_lossy(), &pushed])?;
    docker(&["push", &pushed])?;
    let pulled = format!("localhost:{port}/{repo}:v1");

    // 3. A cluster that uses it: every node pulls through the mirror.
    let c1 = h.cluster_name("reg1");
    let use_arg = format!("{reg}:{port}");
    h.ok_topgun(&[
        "create",
        &c1,
        "--servers",
        "1",
        "--agents",
        "1",
        "--registry-use",
        &use_arg,
    ])?;
    for node in [
        format!("topgun-{c1}-server-0"),
        format!("topgun-{c1}-agent-0"),
    ] {
        pull_on(&node, &pulled)?;
        node_lists(h, &format!("topgun-{c1}"), &node, &pulled)?;
    }

    // 4. A second cluster uses the same registry.
    let c2 = h.cluster_name("reg2");
    h.ok_topgun(&["create", &c2, "--registry-use", &reg])?;
    pull_on(&format!("topgun-{c2}-server-0"), &pulled)?;
    // A node added later gets the same mirrors (from the cluster record).
    h.ok_topgun(&["node", "add", &c2, "--role", "agent"])?;
    pull_on(&format!("topgun-{c2}-agent-0"), &pulled)?;
    let entry = listed(h, &reg)?.context("the registry is not listed")?;
    let clusters = entry["clusters"].to_string();
    ensure!(
        clusters.contains(&c1) && clusters.contains(&c2),
        "registry list does not show both clusters: {entry}"
    );

    // 5. Deleting the first cluster leaves the registry serving the repo;
    // deleting the registry while the second uses it is refused.
    h.ok_topgun(&["delete", &c1])?;
    h.assert_no_resources(&c1)?;
    let catalog = http_get(port as u16, "/v2/_catalog")?;
    ensure!(
        catalog.contains(&repo),
        "after deleting {c1}, the catalog lacks {repo}: {catalog}"
    );
    let out = h.run_topgun(&["registry", "delete", &reg])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2) && stderr.contains(&c2),
        "deleting a registry in use: {} {stderr}",
        out.status
    );
    ensure!(
        !registry_resources(&reg)?.is_empty(),
        "a refused registry delete removed it"
    );

    // 6. A cluster that makes its own registry; its delete removes it.
    let c3 = h.cluster_name("reg3");
    h.ok_topgun(&["create", &c3, "--registry-create", &own])?;
    let entry = listed(h, &own)?.context("the created registry is not listed")?;
    ensure!(
        entry["cluster"] == c3.as_str(),
        "the created registry does not belong to {c3}: {entry}"
    );
    let own_port = entry["port"].as_u64().context("no port")?;
    let own_image = format!("localhost:{own_port}/{repo}:v1");
    let own_push = format!("127.0.0.1:{own_port}/{repo}:v1");
    guard.images.push(own_push.clone());
    docker(&["tag", &pushed, &own_push])?;
    docker(&["push", &own_push])?;
    pull_on(&format!("topgun-{c3}-server-0"), &own_image)?;
    h.ok_topgun(&["delete", &c3])?;
    h.assert_no_resources(&c3)?;
    ensure!(
        registry_resources(&own)?.is_empty(),
        "deleting {c3} left its registry: {:?}",
        registry_resources(&own)?
    );

    // The last cluster goes, then the registry, then nothing is left.
    h.ok_topgun(&["delete", &c2])?;
    h.assert_no_resources(&c2)?;
    ensure!(
        http_get(port as u16, "/v2/_catalog")?.contains(&repo),
        "the registry stopped serving after its clusters went"
    );
    h.ok_topgun(&["registry", "delete", &reg])?;
    ensure!(
        registry_resources(&reg)?.is_empty(),
        "registry delete left {:?}",
        registry_resources(&reg)?
    );
    guard.remove();
    Ok(())
}
