//! Day-2 end-to-end scenarios: what people do to a cluster after `create`.
//! `topgun stop`/`start`/`restart`, a simulated reboot (every container
//! stopped and started again by Docker alone), one node restarted at a
//! time, kubeconfig drift caught by `status`, growing and shrinking with
//! `topgun node`, `topgun image import`, and failed day-2 commands that must
//! leave nothing behind.
//!
//! Creating clusters is the expensive part, so two clusters carry every
//! check: `day2-etcd` (3 servers, 2 agents, a 3-member etcd) and
//! `day2-reboot-embedded` (3 servers, embedded datastore). Each runs its
//! checks as steps. A failed step does not end its scenario: the cluster is
//! brought back with plain `docker start` (and the kubeconfig from create),
//! the next step runs, and the scenario fails at the end naming every failed
//! step, so one run reports each broken feature.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::e2e::{Harness, docker, scratch, stdout_json};

/// The labels topgun puts on every container (see topgun-core's `labels`).
const CLUSTER_LABEL: &str = "dev.topgun.cluster";
const ROLE_LABEL: &str = "dev.topgun.role";
const INDEX_LABEL: &str = "dev.topgun.index";
/// The API port inside the load balancer and the servers.
const API_PORT: &str = "6443/tcp";
/// A name the etcd cluster's API certificate must cover, on every server,
/// added ones included.
const EXTRA_SAN: &str = "day2.topgun.test";
/// Roles in the order topgun starts them.
const START_ORDER: [&str; 4] = ["etcd", "server", "loadbalancer", "agent"];

/// 3 servers and 2 agents on a 3-member etcd: stop/start, restart, node
/// commands, reboot, one node at a time, drift, grow, image import, failed
/// day-2 commands, shrink, delete.
pub(super) fn day2_etcd(h: &Harness) -> anyhow::Result<()> {
    let mut d = Day2::create(
        h,
        "d2etcd",
        &[
            "--servers",
            "3",
            "--agents",
            "2",
            "--datastore",
            "etcd",
            "--etcd-members",
            "3",
            "--tls-san",
            EXTRA_SAN,
        ],
        5,
    )?;
    d.step("ports-pinned", ports_pinned);
    d.step("stop-start", stop_start);
    d.step("restart-and-partial-start", restart_and_partial_start);
    d.step("node-list-stop-start-restart", node_commands);
    d.step("reboot", reboot);
    d.step("one-node-at-a-time", one_node_at_a_time);
    d.step("status-catches-drift", status_catches_drift);
    d.step("grow-and-delete", grow_and_delete);
    d.step("image-import", image_import);
    d.step("failures-leave-nothing", failures_leave_nothing);
    d.step("shrink-to-last-server", shrink_to_last_server);
    d.step("delete", delete);
    d.finish()
}

/// 3 servers, embedded datastore: the simulated reboot, then topgun's own
/// stop and start.
pub(super) fn day2_reboot_embedded(h: &Harness) -> anyhow::Result<()> {
    let mut d = Day2::create(h, "d2emb", &["--servers", "3"], 3)?;
    d.step("ports-pinned", ports_pinned);
    d.step("reboot", reboot);
    d.step("stop-start", stop_start);
    d.step("delete", delete);
    d.finish()
}

/// One cluster under day-2 test, and what its steps found.
struct Day2<'h> {
    h: &'h Harness,
    name: String,
    context: String,
    /// A copy of the kubeconfig taken right after create: whatever happens
    /// to the cluster later, this file must keep working.
    old_kubeconfig: PathBuf,
    /// The host port of the API, right after create.
    api_port: u16,
    /// Node name → creationTimestamp, right after create.
    created: BTreeMap<String, String>,
    failures: Vec<String>,
    timings: Vec<(String, Duration)>,
}

impl<'h> Day2<'h> {
    /// Creates the cluster and waits for `nodes` Ready nodes; a failure here
    /// ends the scenario.
    fn create(h: &'h Harness, what: &str, args: &[&str], nodes: usize) -> anyhow::Result<Self> {
        let name = h.cluster_name(what);
        let mut all = vec!["create", name.as_str()];
        all.extend_from_slice(args);
        let started = Instant::now();
        h.ok_topgun(&all)?;
        let took = started.elapsed();
        let context = format!("topgun-{name}");
        h.wait_ready_nodes(&context, nodes, Duration::from_secs(30))?;
        let old_kubeconfig = scratch(h, &format!("kubeconfig-{what}-after-create"));
        std::fs::copy(h.kubeconfig_path(), &old_kubeconfig)
            .context("copying the kubeconfig after create")?;
        let api_port = live_port(&api_container(&name)?)?;
        let created = creation_timestamps(h, &old_kubeconfig, &context)?;
        ensure!(
            created.len() == nodes,
            "kubectl lists {} nodes right after create, want {nodes}: {created:?}",
            created.len()
        );
        let mut d = Day2 {
            h,
            name,
            context,
            old_kubeconfig,
            api_port,
            created,
            failures: Vec::new(),
            timings: Vec::new(),
        };
        d.time(&format!("topgun create {}", args.join(" ")), took);
        Ok(d)
    }

    /// Runs one step; on failure records it, brings the cluster back and
    /// goes on.
    fn step(&mut self, what: &str, f: fn(&mut Self) -> anyhow::Result<()>) {
        eprintln!("e2e: -- step {what} ({})", self.name);
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("step panicked")));
        match result {
            Ok(()) => eprintln!(
                "e2e: step ok   {what} ({:.1}s)",
                started.elapsed().as_secs_f64()
            ),
            Err(err) => {
                eprintln!(
                    "e2e: step FAIL {what} ({:.1}s): {err:#}",
                    started.elapsed().as_secs_f64()
                );
                self.failures.push(format!("{what}: {err:#}"));
                self.recover();
            }
        }
    }

    /// Records and prints a timing people care about.
    fn time(&mut self, what: &str, took: Duration) {
        eprintln!("e2e: time: {what}: {:.2}s", took.as_secs_f64());
        self.timings.push((what.to_owned(), took));
    }

    /// Prints the timings and fails if a step failed.
    fn finish(self) -> anyhow::Result<()> {
        eprintln!("e2e: timings for {}:", self.name);
        for (what, took) in &self.timings {
            eprintln!("e2e:   {:>7.2}s  {what}", took.as_secs_f64());
        }
        ensure!(
            self.failures.is_empty(),
            "{} step(s) failed:\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
        Ok(())
    }

    /// After a failed step: the kubeconfig from create back in place, every
    /// container started in topgun's start order, and a bounded wait for
    /// the nodes, so the next step tests its own feature. Docker only.
    fn recover(&self) {
        eprintln!(
            "e2e: recovering {} with docker start for the next steps",
            self.name
        );
        if let Err(err) = std::fs::copy(&self.old_kubeconfig, self.h.kubeconfig_path()) {
            eprintln!("e2e: recover: restoring the kubeconfig: {err}");
        }
        match containers(&self.name) {
            Ok(list) => {
                for c in list.iter().filter(|c| c.state != "running") {
                    if let Err(err) = docker(&["start", &c.name]) {
                        eprintln!("e2e: recover: {err:#}");
                    }
                }
            }
            Err(err) => eprintln!("e2e: recover: {err:#}"),
        }
        if let Err(err) = self.wait_all_ready(Duration::from_secs(60)) {
            eprintln!("e2e: recover: {err:#}");
        }
    }

    /// How many k3s nodes (servers and agents) Docker holds for the cluster.
    fn k3s_nodes(&self) -> anyhow::Result<usize> {
        Ok(containers(&self.name)?
            .iter()
            .filter(|c| c.role == "server" || c.role == "agent")
            .count())
    }

    /// Waits until kubectl, with the kubeconfig from create, lists every k3s
    /// container as a Ready node; returns how long that took.
    fn wait_all_ready(&self, within: Duration) -> anyhow::Result<Duration> {
        let want = self.k3s_nodes()?;
        wait_ready_at(self.h, &self.old_kubeconfig, &self.context, want, within)
    }

    /// Fails unless the API is published on the port it had at create.
    fn check_port(&self, after: &str) -> anyhow::Result<()> {
        let container = api_container(&self.name)?;
        let now = live_port(&container)?;
        ensure!(
            now == self.api_port,
            "after {after} the API is published on port {now}, it was {} at create",
            self.api_port
        );
        Ok(())
    }

    /// Fails unless every node from create still has its creationTimestamp.
    fn check_timestamps(&self, after: &str) -> anyhow::Result<()> {
        let now = creation_timestamps(self.h, &self.old_kubeconfig, &self.context)?;
        let changed: Vec<String> = self
            .created
            .iter()
            .filter(|(node, ts)| now.get(*node) != Some(*ts))
            .map(|(node, ts)| format!("{node}: {ts} -> {:?}", now.get(node)))
            .collect();
        ensure!(
            changed.is_empty(),
            "after {after} node creationTimestamps changed: {}",
            changed.join(", ")
        );
        Ok(())
    }

    /// Whether topgun runs etcd for this cluster.
    fn has_etcd(&self) -> anyhow::Result<bool> {
        Ok(containers(&self.name)?.iter().any(|c| c.role == "etcd"))
    }

    /// Waits until `topgun etcd status NAME` exits 0 with verdict healthy.
    fn wait_etcd_healthy(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let out = self
                .h
                .run_topgun(&["etcd", "status", &self.name, "-o", "json"])?;
            let verdict = stdout_json(&out)
                .ok()
                .and_then(|v| v["health"]["verdict"].as_str().map(str::to_owned));
            if out.status.success() && verdict.as_deref() == Some("healthy") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "topgun etcd status {}: exit {:?}, verdict {verdict:?}, want healthy within {}s: {}{}",
                    self.name,
                    out.status.code(),
                    within.as_secs(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until `topgun status NAME -o json` exits 0 and `check` accepts
    /// its JSON; returns that JSON.
    fn wait_status(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&Value) -> Result<(), String>,
    ) -> anyhow::Result<Value> {
        let within = self.h.patience(within);
        let deadline = Instant::now() + within;
        loop {
            let out = self.h.run_topgun(&["status", &self.name, "-o", "json"])?;
            let problem = match stdout_json(&out) {
                Ok(json) => match (out.status.code(), check(&json)) {
                    (Some(0), Ok(())) => return Ok(json),
                    (code, Ok(())) => format!("exit {code:?}, want 0: {json}"),
                    (_, Err(problem)) => format!("{problem}: {json}"),
                },
                Err(err) => format!(
                    "exit {:?}: {err:#}; stderr: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            };
            if Instant::now() > deadline {
                bail!(
                    "topgun status {} within {}s ({what}): {problem}",
                    self.name,
                    within.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The cluster's server CA (from the kubeconfig from create) as a file.
    fn ca_file(&self) -> anyhow::Result<PathBuf> {
        let out = kubectl_at(
            self.h,
            &self.old_kubeconfig,
            &[
                "--context",
                &self.context,
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                "jsonpath={.clusters[0].cluster.certificate-authority-data}",
            ],
            true,
        )?;
        ensure!(out.status.success(), "kubectl config view failed");
        let pem = base64_decode(String::from_utf8_lossy(&out.stdout).trim())?;
        let path = scratch(self.h, &format!("{}-ca.crt", self.name));
        std::fs::write(&path, pem)?;
        Ok(path)
    }

    /// The container name topgun gives a node: `topgun-NAME-ROLE-INDEX`,
    /// and `topgun-NAME-lb` for the load balancer.
    fn node(&self, role: &str, index: u32) -> String {
        match role {
            "loadbalancer" => format!("topgun-{}-lb", self.name),
            _ => format!("topgun-{}-{role}-{index}", self.name),
        }
    }
}

// ---------------------------------------------------------------------------
// Steps

/// Every published port has an explicit host port, the one it runs on.
fn ports_pinned(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut published = 0;
    for c in containers(&d.name)? {
        let out = docker(&[
            "inspect",
            "-f",
            "{{json .HostConfig.PortBindings}}",
            &c.name,
        ])?;
        let bindings: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let Some(bindings) = bindings.as_object() else {
            continue;
        };
        for (port, list) in bindings {
            for b in list.as_array().into_iter().flatten() {
                published += 1;
                let host_port = b["HostPort"].as_str().unwrap_or_default();
                if host_port.is_empty() || host_port == "0" {
                    problems.push(format!(
                        "{} publishes {port} without a fixed host port ({b})",
                        c.name
                    ));
                }
            }
        }
    }
    ensure!(published > 0, "no container of {} publishes a port", d.name);
    ensure!(
        problems.is_empty(),
        "ports not pinned at create (they change on docker restart): {}",
        problems.join("; ")
    );
    Ok(())
}

/// `topgun stop` (twice), the stopped cluster in `list` and `status`,
/// `topgun start` (twice); the port, nodes, etcd and node creation times
/// survive.
fn stop_start(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    let before = containers(&name)?;
    let count = |role: &str| before.iter().filter(|c| c.role == role).count() as u64;
    let nodes = before.len();

    let started = Instant::now();
    let wall = unix_nanos();
    h.ok_topgun(&["stop", &name])?;
    let all: Vec<String> = before.iter().map(|c| c.name.clone()).collect();
    print_exit_times(&all, wall, "topgun stop");
    d.time(
        &format!("topgun stop ({nodes} containers)"),
        started.elapsed(),
    );
    let running: Vec<String> = containers(&name)?
        .into_iter()
        .filter(|c| c.state == "running")
        .map(|c| c.name)
        .collect();
    ensure!(
        running.is_empty(),
        "after topgun stop these still run: {running:?}"
    );
    check_order(
        &name,
        "FinishedAt",
        &["agent", "loadbalancer", "server", "etcd"],
    )
    .context("topgun stop must stop agents, then the load balancer, then servers, then etcd")?;

    let started = Instant::now();
    let out = h
        .ok_topgun(&["stop", &name, "-o", "json"])
        .context("stopping a stopped cluster must succeed")?;
    d.time("topgun stop of the stopped cluster", started.elapsed());
    stdout_json(&out).context("topgun stop -o json")?;

    // list: the JSON counts and the word "stopped" in the text.
    let list = stdout_json(&h.ok_topgun(&["list", "-o", "json"])?)?;
    let entry = list
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name.as_str()))
        .with_context(|| format!("topgun list -o json has no {name}: {list}"))?;
    for (key, role) in [("servers", "server"), ("agents", "agent"), ("etcd", "etcd")] {
        ensure!(
            entry[key]["running"].as_u64() == Some(0)
                && entry[key]["total"].as_u64() == Some(count(role)),
            "topgun list of the stopped cluster: {key} = {}, want running 0 of {}",
            entry[key],
            count(role)
        );
    }
    if count("loadbalancer") > 0 {
        ensure!(
            entry["loadbalancer"] == false,
            "topgun list of the stopped cluster: loadbalancer = {}, want false",
            entry["loadbalancer"]
        );
    }
    let text = h.ok_topgun(&["list"])?;
    let text = String::from_utf8_lossy(&text.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == name))
        .with_context(|| format!("topgun list does not show {name}:\n{text}"))?;
    ensure!(
        line.to_lowercase().contains("stopped"),
        "topgun list does not show {name} as stopped: {line:?}"
    );
    let out = h.run_topgun(&["status", &name])?;
    ensure!(
        out.status.code() == Some(1),
        "topgun status of a stopped cluster exited {:?}, want 1",
        out.status.code()
    );

    let started = Instant::now();
    let since = unix_now();
    h.ok_topgun(&["start", &name])?;
    let start_took = started.elapsed();
    d.time(
        &format!("topgun start ({nodes} containers, waits for /readyz)"),
        start_took,
    );
    let stopped: Vec<String> = containers(&name)?
        .into_iter()
        .filter(|c| c.state != "running")
        .map(|c| format!("{} ({})", c.name, c.state))
        .collect();
    ensure!(
        stopped.is_empty(),
        "after topgun start these do not run: {stopped:?}"
    );
    check_order(&name, "StartedAt", &START_ORDER).context(
        "topgun start must start etcd, then servers, then the load balancer, then agents",
    )?;
    let started_at = docker_times(&all, "StartedAt")?;
    let started = Instant::now();
    let out = h
        .ok_topgun(&["start", &name, "-o", "json"])
        .context("starting a running cluster must succeed")?;
    d.time("topgun start of the running cluster", started.elapsed());
    stdout_json(&out).context("topgun start -o json")?;
    ensure!(
        docker_times(&all, "StartedAt")? == started_at,
        "starting a running cluster restarted containers"
    );

    d.check_port("topgun stop and start")?;
    let ready = Instant::now();
    d.wait_all_ready(Duration::from_secs(30))?;
    wait_heartbeats(d, None, since, Duration::from_secs(30))?;
    d.time(
        "all nodes Ready, with a heartbeat since, after topgun start returned",
        ready.elapsed(),
    );
    let want = d.k3s_nodes()?;
    wait_ready_at(
        h,
        &h.kubeconfig_path(),
        &d.context,
        want,
        Duration::from_secs(10),
    )
    .context("the merged kubeconfig after start")?;
    if d.has_etcd()? {
        d.wait_etcd_healthy(Duration::from_secs(1))
            .context("etcd right after topgun start")?;
    }
    d.check_timestamps("topgun stop and start")
}

/// `topgun restart NAME` restarts every container; `topgun start` brings up
/// a partly stopped cluster.
fn restart_and_partial_start(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    let all: Vec<String> = containers(&name)?.into_iter().map(|c| c.name).collect();
    let before = docker_times(&all, "StartedAt")?;
    let started = Instant::now();
    let since = unix_now();
    h.ok_topgun(&["restart", &name])?;
    d.time("topgun restart", started.elapsed());
    let after = docker_times(&all, "StartedAt")?;
    let same: Vec<&String> = all.iter().filter(|c| before[*c] == after[*c]).collect();
    ensure!(same.is_empty(), "topgun restart did not restart {same:?}");
    d.check_port("topgun restart")?;
    d.wait_all_ready(Duration::from_secs(30))?;
    wait_heartbeats(d, None, since, Duration::from_secs(30))?;

    // Partly stopped: one server and one agent down.
    let down = [d.node("server", 1), d.node("agent", 0)];
    docker(&["stop", &down[0], &down[1]])?;
    let started = Instant::now();
    h.ok_topgun(&["start", &name])
        .context("start of a partly stopped cluster")?;
    d.time(
        "topgun start with 1 server and 1 agent stopped",
        started.elapsed(),
    );
    let stopped: Vec<String> = containers(&name)?
        .into_iter()
        .filter(|c| c.state != "running")
        .map(|c| c.name)
        .collect();
    ensure!(
        stopped.is_empty(),
        "after topgun start of a partly stopped cluster these do not run: {stopped:?}"
    );
    d.wait_all_ready(Duration::from_secs(30))?;
    d.check_timestamps("topgun restart")
}

/// `topgun node list` (shape and contents), `node stop|start|restart`.
fn node_commands(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    let nodes = node_list(h, &name)?;
    let docker_names: BTreeSet<String> = containers(&name)?.into_iter().map(|c| c.name).collect();
    let listed: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    ensure!(
        listed == docker_names,
        "topgun node list shows {listed:?}, Docker has {docker_names:?}"
    );
    let k3s_image = h.k3s_image()?.to_owned();
    for n in &nodes {
        ensure!(
            n.state == "running",
            "node list: {} is {}, want running",
            n.name,
            n.state
        );
        ensure!(
            n.name == d.node(&n.role, n.index),
            "node list: {} has role {} and index {}, which name {}",
            n.name,
            n.role,
            n.index,
            d.node(&n.role, n.index)
        );
        ensure!(n.ip.is_some(), "node list: {} has no ip", n.name);
        if n.role == "server" || n.role == "agent" {
            ensure!(
                n.image == k3s_image,
                "node list: {} runs image {:?}, want {k3s_image}",
                n.name,
                n.image
            );
        }
    }
    let text = h.ok_topgun(&["node", "list", &name])?;
    let text = String::from_utf8_lossy(&text.stdout);
    for n in &nodes {
        ensure!(
            text.contains(&n.name),
            "topgun node list (text) does not show {}:\n{text}",
            n.name
        );
    }

    let agent = d.node("agent", 1);
    h.ok_topgun(&["node", "stop", &agent])?;
    let state = node_state(h, &name, &agent)?;
    ensure!(
        state == "exited",
        "after node stop, node list says {agent} is {state}, want exited"
    );
    let others: Vec<String> = containers(&name)?
        .into_iter()
        .filter(|c| c.name != agent && c.state != "running")
        .map(|c| c.name)
        .collect();
    ensure!(
        others.is_empty(),
        "node stop {agent} also stopped {others:?}"
    );
    h.ok_topgun(&["node", "start", &agent])?;
    let state = node_state(h, &name, &agent)?;
    ensure!(
        state == "running",
        "after node start, node list says {agent} is {state}, want running"
    );
    d.wait_all_ready(Duration::from_secs(30))
        .context("after node start")?;

    let server = d.node("server", 1);
    let before = docker_times(std::slice::from_ref(&server), "StartedAt")?;
    h.ok_topgun(&["node", "restart", &server])?;
    let after = docker_times(std::slice::from_ref(&server), "StartedAt")?;
    ensure!(before != after, "node restart {server} did not restart it");
    ensure!(
        node_state(h, &name, &server)? == "running",
        "{server} does not run after node restart"
    );
    d.wait_all_ready(Duration::from_secs(30))
        .context("after node restart")?;
    Ok(())
}

/// A simulated reboot: `docker stop` of every container, then `docker
/// start` of each in the reverse order of `topgun node list`; the cluster
/// comes back by itself within 60 s (with real k3s: see
/// [`Harness::patience`]), through the kubeconfig from create.
fn reboot(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    // The order of `topgun node list`; without it, topgun's start order from
    // the labels, so the reboot is still tested (and the step still fails).
    let docker_order: Vec<String> = containers(&name)?.into_iter().map(|c| c.name).collect();
    let (order, node_list_problem) = match node_list(h, &name) {
        Ok(nodes) => {
            let order: Vec<String> = nodes.into_iter().map(|n| n.name).collect();
            let listed: BTreeSet<&String> = order.iter().collect();
            let problem = (listed != docker_order.iter().collect())
                .then(|| format!("topgun node list shows {order:?}, Docker has {docker_order:?}"));
            (order, problem)
        }
        Err(err) => {
            eprintln!("e2e: reboot: without topgun node list, in label order: {err:#}");
            (docker_order.clone(), Some(format!("{err:#}")))
        }
    };
    let order = if node_list_problem.is_some() {
        docker_order
    } else {
        order
    };
    let want = d.k3s_nodes()?;

    let mut args = vec!["stop"];
    args.extend(order.iter().map(String::as_str));
    let started = Instant::now();
    let wall = unix_nanos();
    docker(&args)?;
    print_exit_times(&order, wall, "docker stop");
    d.time(
        &format!("docker stop of the {} containers", order.len()),
        started.elapsed(),
    );
    let running: Vec<String> = containers(&name)?
        .into_iter()
        .filter(|c| c.state == "running")
        .map(|c| c.name)
        .collect();
    ensure!(
        running.is_empty(),
        "after docker stop these run: {running:?}"
    );

    let first_start = Instant::now();
    let since = unix_now();
    for c in order.iter().rev() {
        docker(&["start", c])?;
    }
    let starts = first_start.elapsed();
    d.time(
        &format!(
            "docker start of the {} containers one by one, reverse order",
            order.len()
        ),
        starts,
    );
    // The waits below scale their budget for real k3s.
    let recovery = h.patience(Duration::from_secs(60)).as_secs();
    let budget = Duration::from_secs(60).saturating_sub(starts);
    let last_start = Instant::now();
    wait_ready_at(h, &d.old_kubeconfig, &d.context, want, budget).with_context(|| {
        format!(
            "the cluster did not recover by itself within {recovery} s of the first docker start"
        )
    })?;
    wait_heartbeats(
        d,
        None,
        since,
        Duration::from_secs(60).saturating_sub(first_start.elapsed()),
    )
    .with_context(|| {
        format!(
            "the cluster did not recover by itself within {recovery} s of the first docker start"
        )
    })?;
    d.time(
        "all nodes Ready, with a heartbeat since, after the last docker start (reboot)",
        last_start.elapsed(),
    );
    d.time(
        "all nodes Ready, with a heartbeat since, after the first docker start (reboot)",
        first_start.elapsed(),
    );
    d.check_port("docker stop and start")?;
    if d.has_etcd()? {
        d.wait_etcd_healthy(Duration::from_secs(10))?;
    }
    d.check_timestamps("docker stop and start")?;
    match node_list_problem {
        Some(problem) => {
            bail!("the cluster recovered, but the reboot order came from labels: {problem}")
        }
        None => Ok(()),
    }
}

/// `docker restart` of server-0, the load balancer, and one etcd member,
/// each followed by all nodes Ready and a healthy status.
fn one_node_at_a_time(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let mut targets = vec![d.node("server", 0), d.node("loadbalancer", 0)];
    if d.has_etcd()? {
        targets.push(d.node("etcd", 1));
    }
    for target in targets {
        let before = docker_times(std::slice::from_ref(&target), "StartedAt")?;
        let started = Instant::now();
        docker(&["restart", &target])?;
        let restart = started.elapsed();
        let restarted_at = unix_now();
        ensure!(
            docker_times(std::slice::from_ref(&target), "StartedAt")? != before,
            "docker restart {target} did not restart it"
        );
        d.check_port(&format!("docker restart {target}"))?;
        d.wait_all_ready(Duration::from_secs(30))
            .with_context(|| format!("after docker restart {target}"))?;
        if target.contains("-server-") {
            wait_heartbeats(d, Some(&target), restarted_at, Duration::from_secs(15))?;
        }
        d.wait_status(
            Duration::from_secs(20),
            &format!("after docker restart {target}"),
            |_| Ok(()),
        )?;
        d.time(
            &format!("docker restart {target} until status healthy"),
            started.elapsed(),
        );
        eprintln!(
            "e2e: docker restart {target} took {:.2}s",
            restart.as_secs_f64()
        );
    }
    d.check_timestamps("docker restart of single nodes")
}

/// A hand-edited port in the kubeconfig: `status` exits 1 naming both ports
/// and the fix; `kubeconfig merge` fixes it.
fn status_catches_drift(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    let out = h.run_topgun(&["status", &name])?;
    ensure!(
        out.status.code() == Some(0),
        "status before the edit exited {:?}, want 0 (else the drift check proves nothing): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    let server = kubectl_at(
        h,
        &h.kubeconfig_path(),
        &[
            "config",
            "view",
            "-o",
            &format!(
                "jsonpath={{.clusters[?(@.name==\"{}\")].cluster.server}}",
                d.context
            ),
        ],
        true,
    )?;
    let server = String::from_utf8_lossy(&server.stdout).trim().to_owned();
    let live = format!(":{}", d.api_port);
    ensure!(
        server.starts_with("https://") && server.ends_with(&live),
        "the merged kubeconfig's server for {} is {server:?}, want https://...{live}",
        d.context
    );
    // A port nothing listens on.
    let wrong_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let wrong = format!(
        "{}:{wrong_port}",
        server.strip_suffix(&live).unwrap_or(&server)
    );
    let path = h.kubeconfig_path();
    let config = std::fs::read_to_string(&path)?;
    let line = format!("server: {server}\n");
    ensure!(
        config.matches(&line).count() == 1,
        "the kubeconfig does not hold {line:?} exactly once"
    );
    std::fs::write(&path, config.replace(&line, &format!("server: {wrong}\n")))?;

    let out = h.run_topgun(&["status", &name])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("e2e: status with the port edited to {wrong_port}:\n{text}");
    ensure!(
        out.status.code() == Some(1),
        "status with a drifted kubeconfig exited {:?}, want 1:\n{text}",
        out.status.code()
    );
    let wrong_hostport = wrong.trim_start_matches("https://");
    let live_hostport = server.trim_start_matches("https://");
    for (what, needle) in [
        ("the kubeconfig's value", wrong_hostport),
        ("the live value", live_hostport),
        ("the fix", "topgun kubeconfig merge"),
    ] {
        ensure!(
            text.contains(needle),
            "status with a drifted kubeconfig does not name {what} ({needle}):\n{text}"
        );
    }

    h.ok_topgun(&["kubeconfig", "merge", &name])?;
    let out = h.run_topgun(&["status", &name])?;
    ensure!(
        out.status.code() == Some(0),
        "status after kubeconfig merge exited {:?}, want 0: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let want = d.k3s_nodes()?;
    wait_ready_at(h, &path, &d.context, want, Duration::from_secs(10))
        .context("the re-merged kubeconfig")?;

    // The other half of the comparison: another cluster's CA in the entry.
    let ca = kubectl_at(
        h,
        &path,
        &[
            "config",
            "view",
            "--raw",
            "-o",
            &format!(
                "jsonpath={{.clusters[?(@.name==\"{}\")].cluster.certificate-authority-data}}",
                d.context
            ),
        ],
        true,
    )?;
    let ca = String::from_utf8_lossy(&ca.stdout).trim().to_owned();
    ensure!(
        !ca.is_empty(),
        "the merged entry has no certificate-authority-data"
    );
    let other = scratch(h, "other-ca");
    h.ok_topgun(&[
        "tls",
        "gen",
        "--out",
        &other.to_string_lossy(),
        "--san",
        "other.test",
    ])?;
    let other_ca = base64_encode(&std::fs::read(other.join("ca.crt"))?);
    let config = std::fs::read_to_string(&path)?;
    let line = format!("certificate-authority-data: {ca}\n");
    ensure!(
        config.matches(&line).count() == 1,
        "the kubeconfig does not hold this cluster's certificate-authority-data exactly once"
    );
    std::fs::write(
        &path,
        config.replace(&line, &format!("certificate-authority-data: {other_ca}\n")),
    )?;
    let out = h.run_topgun(&["status", &name])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.code() == Some(1) && text.contains("topgun kubeconfig merge"),
        "status with another CA in the kubeconfig: exit {:?}, want 1 and the fix `topgun kubeconfig merge`:\n{text}",
        out.status.code()
    );
    h.ok_topgun(&["kubeconfig", "merge", &name])?;
    let out = h.run_topgun(&["status", &name])?;
    ensure!(
        out.status.code() == Some(0),
        "status after kubeconfig merge (CA) exited {:?}, want 0",
        out.status.code()
    );
    Ok(())
}

/// `node add` of 2 agents and a server (Ready, behind the load balancer,
/// covered by the API certificate), then `node delete` of an agent and of a
/// server (gone from Docker, kubectl and the load balancer).
fn grow_and_delete(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    let before = containers(&name)?;
    let next = |role: &str| {
        before
            .iter()
            .filter(|c| c.role == role)
            .map(|c| c.index + 1)
            .max()
            .unwrap_or(0)
    };
    let (next_agent, next_server) = (next("agent"), next("server"));
    let want = d.k3s_nodes()?;

    let started = Instant::now();
    let out = h.ok_topgun(&[
        "node", "add", &name, "--role", "agent", "--count", "2", "-o", "json",
    ])?;
    d.time("topgun node add --role agent --count 2", started.elapsed());
    stdout_json(&out).context("node add -o json")?;
    let agents = [d.node("agent", next_agent), d.node("agent", next_agent + 1)];
    expect_running(&name, &agents)?;
    let ready = d.wait_all_ready(Duration::from_secs(60))?;
    d.time("the 2 added agents Ready after node add returned", ready);
    ensure!(
        d.k3s_nodes()? == want + 2,
        "node add --count 2 made {} k3s nodes, want {}",
        d.k3s_nodes()?,
        want + 2
    );

    let started = Instant::now();
    h.ok_topgun(&["node", "add", &name, "--role", "server"])?;
    d.time("topgun node add --role server", started.elapsed());
    let server = d.node("server", next_server);
    expect_running(&name, std::slice::from_ref(&server))?;
    d.wait_all_ready(Duration::from_secs(60))?;
    let names = ready_node_names(h, &d.old_kubeconfig, &d.context)?;
    for n in agents.iter().chain([&server]) {
        ensure!(
            names.contains(n),
            "kubectl does not list {n} Ready: {names:?}"
        );
    }
    ensure!(
        names.len() == want + 3,
        "kubectl lists {} Ready nodes after adding 3, want {}",
        names.len(),
        want + 3
    );
    let nodes = node_list(h, &name)?;
    for n in agents.iter().chain([&server]) {
        let node = nodes
            .iter()
            .find(|x| &x.name == n)
            .with_context(|| format!("topgun node list does not show {n}"))?;
        ensure!(
            node.state == "running" && node.ip.is_some(),
            "node list: {n} is {} with ip {:?}",
            node.state,
            node.ip
        );
    }
    let ip = nodes
        .iter()
        .find(|x| x.name == server)
        .and_then(|x| x.ip.clone())
        .context("no ip for the new server")?;

    // The load balancer checks the new server and finds it up.
    let servers = servers_of(&name)?;
    d.wait_status(
        Duration::from_secs(20),
        "the new server behind the load balancer",
        |s| backends_are(s, &servers),
    )?;
    check_new_server_cert(d, &server, &ip)?;

    // Delete one original agent and the new server.
    let agent = d.node("agent", 0);
    for node in [&agent, &server] {
        let started = Instant::now();
        h.ok_topgun(&["node", "delete", node])?;
        d.time(&format!("topgun node delete {node}"), started.elapsed());
        expect_gone(h, &name, node)?;
        wait_node_gone(h, &d.old_kubeconfig, &d.context, node)?;
    }
    d.wait_all_ready(Duration::from_secs(30))?;
    ensure!(
        d.k3s_nodes()? == want + 1,
        "after adding 3 nodes and deleting 2 there are {} k3s nodes, want {}",
        d.k3s_nodes()?,
        want + 1
    );
    let servers = servers_of(&name)?;
    d.wait_status(Duration::from_secs(20), "after deleting a server", |s| {
        backends_are(s, &servers)
    })?;
    Ok(())
}

/// `image import` puts a host image on every node, and on a node added
/// later.
fn image_import(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    let image = HostImage::make(h, "tiny")?;
    let started = Instant::now();
    h.ok_topgun(&["image", "import", &image.0, "-c", &name])?;
    d.time("topgun image import (1 tiny image)", started.elapsed());
    wait_images(d, &image.0, None, Duration::from_secs(10))?;

    let next_agent = containers(&name)?
        .iter()
        .filter(|c| c.role == "agent")
        .map(|c| c.index + 1)
        .max()
        .unwrap_or(0);
    h.ok_topgun(&["node", "add", &name, "--role", "agent"])?;
    let agent = d.node("agent", next_agent);
    expect_running(&name, std::slice::from_ref(&agent))?;
    d.wait_all_ready(Duration::from_secs(60))?;
    wait_images(d, &image.0, Some(&agent), Duration::from_secs(10))
        .context("a node added after the import")?;
    image.remove()
}

/// A failed `node add` (missing k3s image) and a failed `image import` (no
/// such image) exit non-zero, say why, and leave no new Docker resource.
fn failures_leave_nothing(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    let before: BTreeSet<String> = h.resources(&name)?.into_iter().collect();
    let want = d.k3s_nodes()?;

    // A missing image given with --image (node add reads no
    // TOPGUN_K3S_IMAGE: new nodes run the cluster's image unless a flag
    // says otherwise).
    let bad_image = "nonexistent:1";
    let out = h
        .topgun(&[
            "node", "add", &name, "--role", "agent", "--image", bad_image,
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "e2e: $ topgun node add {name} --role agent --image {bad_image} -> {}\n{}",
        out.status,
        stderr.trim()
    );
    let after: BTreeSet<String> = h.resources(&name)?.into_iter().collect();
    let mut problems = Vec::new();
    if out.status.success() {
        problems.push("node add with a missing image succeeded".to_owned());
    }
    if !stderr.contains("nonexistent") {
        problems.push(format!(
            "node add with a missing image does not name it: {stderr}"
        ));
    }
    if after != before {
        problems.push(format!(
            "a failed node add left resources behind: {:?}",
            after.difference(&before).collect::<Vec<_>>()
        ));
        // Leftovers of a failed add would fail the next check too.
        for r in after.difference(&before) {
            if let Some(c) = r.strip_prefix("container:") {
                let _ = docker(&["rm", "-f", "-v", c]);
            }
        }
    }
    let before: BTreeSet<String> = h.resources(&name)?.into_iter().collect();

    let missing = format!("topgun-e2e-{}/absent:1", h.run_id);
    let out = h.run_topgun(&["image", "import", &missing, "-c", &name])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let after: BTreeSet<String> = h.resources(&name)?.into_iter().collect();
    if out.status.success() {
        problems.push("image import of a missing image succeeded".to_owned());
    }
    if !stderr.contains(&missing) {
        problems.push(format!(
            "image import of a missing image does not name it: {stderr}"
        ));
    }
    if after != before {
        problems.push(format!(
            "a failed image import left resources behind: {:?}",
            after.difference(&before).collect::<Vec<_>>()
        ));
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    ensure!(
        d.k3s_nodes()? == want,
        "the failed commands changed the node count"
    );
    d.wait_all_ready(Duration::from_secs(10))?;
    Ok(())
}

/// A bare node name is refused; servers are deleted until one is left, and
/// deleting that one is refused.
fn shrink_to_last_server(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let h = d.h;
    let name = d.name.clone();
    let before = h.resources(&name)?;
    let out = h.run_topgun(&["node", "delete", "server-1"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("server-1"),
        "node delete of the bare name server-1: exit {:?}, want non-zero and a message naming it: {stderr}",
        out.status.code()
    );
    ensure!(
        h.resources(&name)? == before,
        "node delete of a bare name changed resources"
    );

    let servers = servers_of(&name)?;
    ensure!(servers.len() > 1, "only {servers:?} left to shrink");
    let (last, rest) = servers.split_last().context("no servers")?;
    let mut args = vec!["node", "delete"];
    args.extend(rest.iter().map(String::as_str));
    let started = Instant::now();
    h.ok_topgun(&args)?;
    d.time(
        &format!("topgun node delete of {} servers", rest.len()),
        started.elapsed(),
    );
    for s in rest {
        expect_gone(h, &name, s)?;
        wait_node_gone(h, &d.old_kubeconfig, &d.context, s)?;
    }
    d.wait_all_ready(Duration::from_secs(30))
        .context("with one server left")?;
    d.wait_status(Duration::from_secs(20), "with one server left", |s| {
        backends_are(s, std::slice::from_ref(last))
    })?;

    let out = h.run_topgun(&["node", "delete", last])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "node delete of the last server {last} succeeded"
    );
    ensure!(
        stderr.to_lowercase().contains("last"),
        "refusing to delete the last server does not say why: {stderr}"
    );
    expect_running(&name, std::slice::from_ref(last))?;
    d.wait_all_ready(Duration::from_secs(10))?;
    Ok(())
}

/// `topgun delete` removes everything, added nodes included.
fn delete(d: &mut Day2<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    d.h.ok_topgun(&["delete", &d.name])?;
    d.time("topgun delete", started.elapsed());
    d.h.assert_no_resources(&d.name)
}

// ---------------------------------------------------------------------------
// Helpers

/// One container of a cluster, from Docker's labels.
#[derive(Debug, Clone)]
struct Container {
    name: String,
    role: String,
    index: u32,
    state: String,
}

/// The cluster's containers in topgun's start order (etcd, servers, load
/// balancer, agents; by index).
fn containers(cluster: &str) -> anyhow::Result<Vec<Container>> {
    let filter = format!("label={CLUSTER_LABEL}={cluster}");
    let format = format!(
        "{{{{.Names}}}}\t{{{{.Label \"{ROLE_LABEL}\"}}}}\t{{{{.Label \"{INDEX_LABEL}\"}}}}\t{{{{.State}}}}"
    );
    let out = docker(&["ps", "-a", "--filter", &filter, "--format", &format])?;
    let mut list: Vec<Container> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Container {
                name: f.first().copied().unwrap_or_default().to_owned(),
                role: f.get(1).copied().unwrap_or_default().to_owned(),
                index: f.get(2).and_then(|i| i.parse().ok()).unwrap_or(0),
                state: f.get(3).copied().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    list.sort_by_key(|c| {
        (
            START_ORDER
                .iter()
                .position(|r| *r == c.role)
                .unwrap_or(START_ORDER.len()),
            c.index,
        )
    });
    Ok(list)
}

/// The server container names, by index.
fn servers_of(cluster: &str) -> anyhow::Result<Vec<String>> {
    Ok(containers(cluster)?
        .into_iter()
        .filter(|c| c.role == "server")
        .map(|c| c.name)
        .collect())
}

/// The container that publishes the API: the load balancer, else server-0.
fn api_container(cluster: &str) -> anyhow::Result<String> {
    let list = containers(cluster)?;
    list.iter()
        .find(|c| c.role == "loadbalancer")
        .or_else(|| list.iter().find(|c| c.role == "server" && c.index == 0))
        .map(|c| c.name.clone())
        .with_context(|| format!("{cluster} has neither a load balancer nor server-0"))
}

/// The host port Docker publishes the API of `container` on now.
fn live_port(container: &str) -> anyhow::Result<u16> {
    let out = docker(&["port", container, API_PORT])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.rsplit_once(':'))
        .find_map(|(_, port)| port.trim().parse().ok())
        .with_context(|| format!("docker port {container} {API_PORT} says {text:?}"))
}

/// One entry of `topgun node list -o json`.
#[derive(Debug, Clone)]
struct NodeInfo {
    name: String,
    role: String,
    index: u32,
    state: String,
    ip: Option<String>,
    image: String,
}

/// `topgun node list NAME -o json`, with every documented field checked.
fn node_list(h: &Harness, cluster: &str) -> anyhow::Result<Vec<NodeInfo>> {
    let json = stdout_json(&h.ok_topgun(&["node", "list", cluster, "-o", "json"])?)?;
    let list = json
        .as_array()
        .with_context(|| format!("topgun node list -o json is not an array: {json}"))?;
    list.iter()
        .map(|n| {
            let text = |key: &str| {
                n[key]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("node list entry without a string {key}: {n}"))
            };
            let role = text("role")?;
            ensure!(
                ["server", "agent", "etcd", "loadbalancer"].contains(&role.as_str()),
                "node list entry with role {role:?}: {n}"
            );
            ensure!(
                n.get("ip").is_some_and(|ip| ip.is_string() || ip.is_null()),
                "node list entry without ip: {n}"
            );
            Ok(NodeInfo {
                name: text("name")?,
                role,
                index: n["index"]
                    .as_u64()
                    .and_then(|i| u32::try_from(i).ok())
                    .with_context(|| format!("node list entry without an index: {n}"))?,
                state: text("state")?,
                ip: n["ip"].as_str().map(str::to_owned),
                image: text("image")?,
            })
        })
        .collect()
}

/// A node's state as `topgun node list` reports it.
fn node_state(h: &Harness, cluster: &str, node: &str) -> anyhow::Result<String> {
    node_list(h, cluster)?
        .into_iter()
        .find(|n| n.name == node)
        .map(|n| n.state)
        .with_context(|| format!("topgun node list does not show {node}"))
}

/// Fails unless each of `names` is a running container of the cluster.
fn expect_running(cluster: &str, names: &[String]) -> anyhow::Result<()> {
    let list = containers(cluster)?;
    for n in names {
        let c = list
            .iter()
            .find(|c| &c.name == n)
            .with_context(|| format!("no container {n}; the cluster has {list:?}"))?;
        ensure!(c.state == "running", "{n} is {}, want running", c.state);
    }
    Ok(())
}

/// Fails unless the container `node` and its volumes are gone.
fn expect_gone(h: &Harness, cluster: &str, node: &str) -> anyhow::Result<()> {
    let prefix = format!("{node}-");
    let left: Vec<String> = h
        .resources(cluster)?
        .into_iter()
        .filter(|r| {
            let name = r.split_once(':').map_or(r.as_str(), |(_, n)| n);
            name == node || name.starts_with(&prefix)
        })
        .collect();
    ensure!(left.is_empty(), "node delete {node} left {left:?}");
    Ok(())
}

/// Waits until kubectl no longer lists `node`.
fn wait_node_gone(h: &Harness, kubeconfig: &Path, context: &str, node: &str) -> anyhow::Result<()> {
    let within = h.patience(Duration::from_secs(15));
    let deadline = Instant::now() + within;
    loop {
        let names = creation_timestamps(h, kubeconfig, context)?;
        if !names.contains_key(node) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "kubectl still lists {node} {} s after node delete",
            within.as_secs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Nanoseconds since the epoch.
fn unix_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Prints when each container exited, relative to `since` (nanoseconds
/// since the epoch), slowest last: where a stop spends its time.
fn print_exit_times(names: &[String], since: i128, what: &str) {
    let Ok(times) = docker_times(names, "FinishedAt") else {
        return;
    };
    let mut times: Vec<(&String, i128)> = times.iter().map(|(n, t)| (n, *t - since)).collect();
    times.sort_by_key(|(_, t)| *t);
    let list: Vec<String> = times
        .iter()
        .map(|(n, t)| format!("{n} +{:.2}s", *t as f64 / 1e9))
        .collect();
    eprintln!("e2e: {what}: containers exited at {}", list.join(", "));
}

/// Seconds since the epoch, rounded up.
fn unix_now() -> i128 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i128::from(now.as_secs()) + i128::from(now.subsec_nanos() > 0)
}

/// Waits until the Ready condition of `node` (of every node: `None`) has a
/// heartbeat at or after `since` (seconds since the epoch; heartbeats have
/// whole seconds). Ready alone proves little after a quick restart: a node
/// turns NotReady only 10 s after its last heartbeat.
fn wait_heartbeats(
    d: &Day2<'_>,
    node: Option<&str>,
    since: i128,
    within: Duration,
) -> anyhow::Result<()> {
    let within = d.h.patience(within);
    let deadline = Instant::now() + within;
    let want = match node {
        Some(_) => 1,
        None => d.k3s_nodes()?,
    };
    loop {
        let items = nodes_json(d.h, &d.old_kubeconfig, &d.context)?;
        let mut stale = Vec::new();
        let mut checked = 0;
        for n in &items {
            let name = n["metadata"]["name"].as_str().unwrap_or_default();
            if node.is_some_and(|want| want != name) {
                continue;
            }
            checked += 1;
            let heartbeat = n["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["lastHeartbeatTime"].as_str());
            let fresh = heartbeat
                .and_then(parse_rfc3339_nanos)
                .is_some_and(|t| t.div_euclid(1_000_000_000) >= since);
            if !fresh {
                stale.push(format!("{name} (last heartbeat {heartbeat:?})"));
            }
        }
        if checked == want && stale.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{checked} of {want} nodes checked; no heartbeat since the restart within {}s from: {}",
            within.as_secs(),
            stale.join(", ")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Checks the load balancer's API backends in a `status -o json`: exactly
/// `servers` (hostnames), each checked and up.
fn backends_are(status: &Value, servers: &[String]) -> Result<(), String> {
    let backends = status["loadbalancer"]["backends"]
        .as_array()
        .ok_or("status has no loadbalancer.backends")?;
    let api: Vec<&Value> = backends
        .iter()
        .filter(|b| b["backend"] == "k3s-api")
        .collect();
    let listed: BTreeSet<String> = api
        .iter()
        .filter_map(|b| b["server"].as_str().map(str::to_lowercase))
        .collect();
    let want: BTreeSet<String> = servers.iter().map(|s| s.to_lowercase()).collect();
    if listed != want {
        return Err(format!(
            "the load balancer's API backends are {listed:?}, want {want:?}"
        ));
    }
    let down: Vec<String> = api
        .iter()
        .filter(|b| {
            !(b["status"].as_str().is_some_and(|s| s.starts_with("UP"))
                && b["check"].as_str().is_some_and(|c| c.ends_with("OK")))
        })
        .map(|b| b.to_string())
        .collect();
    if !down.is_empty() {
        return Err(format!("backends not checked up: {}", down.join(", ")));
    }
    Ok(())
}

/// Through the load balancer, finds the new server's certificate (the one
/// covering its IP) and checks it: trusted by the cluster CA, covering the
/// API host, the load balancer's name and the `--tls-san` from create.
fn check_new_server_cert(d: &Day2<'_>, server: &str, ip: &str) -> anyhow::Result<()> {
    let ca = d.ca_file()?;
    let ca = ca.to_string_lossy();
    let target = format!("127.0.0.1:{}", d.api_port);
    let lb = format!("topgun-{}-lb", d.name.to_lowercase());
    let mut seen = Vec::new();
    // Round robin over at most 4 servers: 8 connections reach each twice.
    for _ in 0..8 {
        let out = d.h.run_topgun(&[
            "tls", "inspect", &target, "--name", ip, "--ca", &ca, "-o", "json",
        ])?;
        let json = stdout_json(&out)?;
        let leaf = &json["certificates"][0];
        let strings = |kind: &str| -> Vec<String> {
            leaf["sans"][kind]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let (dns, ips) = (strings("dns"), strings("ip"));
        if json["check"]["covered"] != true {
            seen.push(format!("{dns:?} {ips:?}"));
            continue;
        }
        ensure!(
            json["check"]["ok"] == true,
            "the certificate of {server}, reached through the load balancer, fails its check: {}",
            json["check"]
        );
        for name in [lb.as_str(), EXTRA_SAN] {
            ensure!(
                dns.iter().any(|d| d == name),
                "the certificate of {server} does not cover {name}: dns {dns:?}"
            );
        }
        ensure!(
            ips.iter().any(|i| i == "127.0.0.1"),
            "the certificate of {server} does not cover 127.0.0.1: ip {ips:?}"
        );
        return Ok(());
    }
    bail!(
        "8 TLS connections through the load balancer never reached a certificate covering the new server {server} ({ip}); SANs seen: {}",
        seen.join("; ")
    )
}

/// Waits until every node (or just `only`) lists `image` in
/// `.status.images[*].names`.
fn wait_images(
    d: &Day2<'_>,
    image: &str,
    only: Option<&str>,
    within: Duration,
) -> anyhow::Result<()> {
    let within = d.h.patience(within);
    let deadline = Instant::now() + within;
    let want = d.k3s_nodes()?;
    loop {
        let items = nodes_json(d.h, &d.old_kubeconfig, &d.context)?;
        let mut missing = Vec::new();
        let mut checked = 0;
        for node in &items {
            let name = node["metadata"]["name"].as_str().unwrap_or_default();
            if only.is_some_and(|o| o != name) {
                continue;
            }
            checked += 1;
            let has = node["status"]["images"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|i| i["names"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .any(|n| n.contains(image));
            if !has {
                missing.push(format!("{name} (images: {})", node["status"]["images"]));
            }
        }
        let all_seen = match only {
            Some(_) => checked == 1,
            None => checked == want,
        };
        if all_seen && missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{}s after image import, {checked} nodes checked (want {}), these do not list {image}: {}",
                within.as_secs(),
                if only.is_some() { 1 } else { want },
                missing.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// An image made on the host for this run, removed when dropped.
struct HostImage(String);

impl HostImage {
    /// `docker import` of a one-file tar as `topgun-e2e-<run>/<what>:1`.
    fn make(h: &Harness, what: &str) -> anyhow::Result<Self> {
        let name = format!("topgun-e2e-{}/{what}:1", h.run_id);
        let tar_path = scratch(h, &format!("{what}.tar"));
        let file = std::fs::File::create(&tar_path)?;
        let mut builder = tar::Builder::new(file);
        let data = b"topgun e2e day-2 image import\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder.append_data(&mut header, "hello.txt", &data[..])?;
        builder.into_inner()?.sync_all()?;
        let image = HostImage(name);
        docker(&["import", &tar_path.to_string_lossy(), &image.0])?;
        Ok(image)
    }

    /// Removes the image now, failing if Docker cannot.
    fn remove(self) -> anyhow::Result<()> {
        docker(&["image", "rm", &self.0])?;
        Ok(())
    }
}

impl Drop for HostImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.0])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs Debian's kubectl with `kubeconfig`; logs the call when `log`.
fn kubectl_at(h: &Harness, kubeconfig: &Path, args: &[&str], log: bool) -> anyhow::Result<Output> {
    let out = Command::new(&h.kubectl)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .output()
        .context("running kubectl")?;
    if log {
        eprintln!("e2e: $ kubectl {} -> {}", args.join(" "), out.status);
    }
    Ok(out)
}

/// Waits until kubectl on `context` of `kubeconfig` lists exactly `want`
/// nodes, all Ready; returns how long it took. `within` suits the stand-in
/// and is scaled for real k3s ([`Harness::patience`]), as in every wait
/// here on something k3s does; waits on etcd alone are not.
fn wait_ready_at(
    h: &Harness,
    kubeconfig: &Path,
    context: &str,
    want: usize,
    within: Duration,
) -> anyhow::Result<Duration> {
    let within = h.patience(within);
    let started = Instant::now();
    let mut calls = 0;
    loop {
        calls += 1;
        let out = kubectl_at(
            h,
            kubeconfig,
            &[
                "--context",
                context,
                "--request-timeout",
                "5s",
                "get",
                "nodes",
                "--no-headers",
            ],
            false,
        )?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ready = stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if out.status.success() && ready == want && stdout.lines().count() == want {
            eprintln!(
                "e2e: kubectl: {want} nodes Ready on {context} after {:.1}s ({calls} calls)",
                started.elapsed().as_secs_f64()
            );
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!(
                "kubectl get nodes on {context} ({}): wanted {want} Ready nodes within {}s, got:\n{stdout}{}",
                kubeconfig.display(),
                within.as_secs(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `kubectl get nodes -o json`'s items.
fn nodes_json(h: &Harness, kubeconfig: &Path, context: &str) -> anyhow::Result<Vec<Value>> {
    let out = kubectl_at(
        h,
        kubeconfig,
        &[
            "--context",
            context,
            "--request-timeout",
            "5s",
            "get",
            "nodes",
            "-o",
            "json",
        ],
        false,
    )?;
    ensure!(
        out.status.success(),
        "kubectl get nodes -o json failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let json = stdout_json(&out)?;
    Ok(json["items"].as_array().cloned().unwrap_or_default())
}

/// Node name → creationTimestamp.
fn creation_timestamps(
    h: &Harness,
    kubeconfig: &Path,
    context: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(nodes_json(h, kubeconfig, context)?
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                n["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect())
}

/// The names of the nodes kubectl shows Ready.
fn ready_node_names(
    h: &Harness,
    kubeconfig: &Path,
    context: &str,
) -> anyhow::Result<BTreeSet<String>> {
    Ok(nodes_json(h, kubeconfig, context)?
        .iter()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
        .collect())
}

/// Container name → Docker's `State.<field>` (`StartedAt`, `FinishedAt`)
/// in nanoseconds since the epoch, in one `docker inspect`.
fn docker_times(names: &[String], field: &str) -> anyhow::Result<BTreeMap<String, i128>> {
    let format = format!("{{{{.Name}}}} {{{{.State.{field}}}}}");
    let mut args = vec!["inspect", "-f", format.as_str()];
    args.extend(names.iter().map(String::as_str));
    let out = docker(&args)?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, time) = l
                .split_once(' ')
                .with_context(|| format!("docker inspect said {l:?}"))?;
            let nanos = parse_rfc3339_nanos(time)
                .with_context(|| format!("{name}: {field} {time:?} is not a time"))?;
            Ok((name.trim_start_matches('/').to_owned(), nanos))
        })
        .collect()
}

/// Fails unless each role group's `field` times all come at or after the
/// times of every group before it (`groups` in the expected order).
fn check_order(cluster: &str, field: &str, groups: &[&str]) -> anyhow::Result<()> {
    let list = containers(cluster)?;
    let names: Vec<String> = list.iter().map(|c| c.name.clone()).collect();
    let times = docker_times(&names, field)?;
    let mut previous: Option<(&str, i128)> = None;
    for group in groups {
        let members: Vec<(&str, i128)> = list
            .iter()
            .filter(|c| c.role == *group)
            .filter_map(|c| times.get(&c.name).map(|t| (c.name.as_str(), *t)))
            .collect();
        let Some(first) = members.iter().min_by_key(|(_, t)| *t) else {
            continue;
        };
        if let Some((before, at)) = previous {
            ensure!(
                first.1 >= at,
                "{} ({group}) has {field} {:.3}s before {before}",
                first.0,
                (at - first.1) as f64 / 1e9
            );
        }
        previous = members.iter().max_by_key(|(_, t)| *t).copied();
    }
    Ok(())
}

/// Parses Docker's `2024-05-01T10:00:00.123456789Z` into nanoseconds since
/// the epoch.
fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let (date, time) = text.trim().split_once('T')?;
    let time = time.strip_suffix('Z')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (parts.next()??, parts.next()??, parts.next()??);
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = format!("{frac:0<9}").parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

fn base64_encode(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

fn base64_decode(input: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::STANDARD.decode(input)?)
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_nanos;

    #[test]
    fn docker_times() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("1970-01-02T00:00:01.5Z"),
            Some(86_401_500_000_000)
        );
        // date -d 2024-03-01T12:34:56Z +%s = 1709296496
        assert_eq!(
            parse_rfc3339_nanos("2024-03-01T12:34:56.000000123Z"),
            Some(1_709_296_496_000_000_123)
        );
        assert_eq!(
            parse_rfc3339_nanos("0001-01-01T00:00:00Z").map(|n| n < 0),
            Some(true)
        );
        assert_eq!(parse_rfc3339_nanos("yesterday"), None);
    }
}
