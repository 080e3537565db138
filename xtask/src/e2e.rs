//! `cargo xtask e2e`: the end-to-end suite against the real Docker engine.
//!
//! It drives the `topgun` binary exactly as a user would, with the local
//! images from `cargo xtask images`, and checks the results with the tools a
//! user would reach for: Debian's kubectl, the docker CLI, and topgun's own
//! `tls` and `etcd` commands. Every cluster name is unique to the run, and a
//! guard removes whatever carries this run's cluster labels, even when a
//! scenario fails or panics.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::setup;

/// Label every topgun resource carries with its cluster name.
const CLUSTER_LABEL: &str = "dev.topgun.cluster";

/// Options of `cargo xtask e2e`.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Run only the scenarios whose names contain this text.
    #[arg(long)]
    pub only: Option<String>,
}

/// Everything a scenario needs: the binaries, the images and this run's id.
pub struct Harness {
    /// The `topgun` binary under test.
    pub topgun: PathBuf,
    /// Debian's kubectl.
    pub kubectl: PathBuf,
    /// The environment for the local images (see [`local_images`]).
    pub images: Vec<(String, String)>,
    /// A short random id, part of every cluster name.
    pub run_id: String,
    /// A scratch directory for kubeconfigs and files.
    pub dir: tempfile::TempDir,
    clusters: std::sync::Mutex<BTreeSet<String>>,
}

impl Harness {
    /// Builds the binary and images, and picks this run's id.
    pub fn new() -> anyhow::Result<Self> {
        setup::run()?;
        let tools = setup::Tools::locate()?;
        let images = local_images()?;
        let topgun = setup::build_topgun(false)?;
        let mut bytes = [0u8; 3];
        getrandom(&mut bytes)?;
        Ok(Harness {
            topgun,
            kubectl: tools.kubectl,
            images,
            run_id: hex::encode(bytes),
            dir: tempfile::tempdir()?,
            clusters: Default::default(),
        })
    }

    /// A cluster name unique to this run, registered for cleanup.
    pub fn cluster_name(&self, what: &str) -> String {
        self.register(format!("e2e{}-{what}", self.run_id))
    }

    /// Registers `name` for cleanup and returns it.
    pub fn register(&self, name: String) -> String {
        self.clusters.lock().unwrap().insert(name.clone());
        name
    }

    /// A `topgun` command with the local images and a private kubeconfig.
    pub fn topgun(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.topgun);
        cmd.args(args)
            .envs(self.images.iter().map(|(k, v)| (k, v)))
            .env("KUBECONFIG", self.kubeconfig_path())
            .env_remove("TOPGUN_TOKEN")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `topgun args...`, returning its output whatever the exit code.
    pub fn run_topgun(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self.topgun(args).output().context("running topgun")?;
        log_output(&format!("topgun {}", args.join(" ")), &out);
        Ok(out)
    }

    /// Runs `topgun args...` and fails unless it exits 0.
    pub fn ok_topgun(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self.run_topgun(args)?;
        ensure!(
            out.status.success(),
            "`topgun {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out)
    }

    /// The kubeconfig file `topgun` merges into during this run.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Runs Debian's kubectl against this run's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig_path())
            .stdin(Stdio::null())
            .output()
            .context("running kubectl")?;
        log_output(&format!("kubectl {}", args.join(" ")), &out);
        Ok(out)
    }

    /// Waits until `kubectl get nodes` on `context` lists `want` Ready nodes.
    pub fn wait_ready_nodes(
        &self,
        context: &str,
        want: usize,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let out = self.kubectl(&["--context", context, "get", "nodes", "--no-headers"])?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let ready = stdout
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
                .count();
            if out.status.success() && ready == want && stdout.lines().count() == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kubectl get nodes on {context}: wanted {want} Ready nodes, got:\n{stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every Docker resource (containers, networks, volumes) labelled with
    /// the cluster `name`, as `kind:name` strings.
    pub fn resources(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let filter = format!("label={CLUSTER_LABEL}={name}");
        let mut found = Vec::new();
        for (kind, args) in [
            (
                "container",
                vec!["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
            ),
            (
                "network",
                vec![
                    "network",
                    "ls",
                    "--filter",
                    &filter,
                    "--format",
                    "{{.Name}}",
                ],
            ),
            (
                "volume",
                vec!["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"],
            ),
        ] {
            let out = docker(&args)?;
            found.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| format!("{kind}:{l}")),
            );
        }
        Ok(found)
    }

    /// Containers, volumes and networks named like cluster `name`'s
    /// (`topgun-<name>` and `topgun-<name>-…`), labelled or not: Docker
    /// makes a volume that a container mounts by name when it is missing,
    /// so a leftover need not carry topgun's labels.
    pub fn named_resources(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let exact = format!("topgun-{name}");
        let prefix = format!("topgun-{name}-");
        let mut found = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-a", "--format", "{{.Names}}"]),
            ("network", vec!["network", "ls", "--format", "{{.Name}}"]),
            ("volume", vec!["volume", "ls", "--format", "{{.Name}}"]),
        ] {
            let out = docker(&args)?;
            found.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| *l == exact || l.starts_with(&prefix))
                    .map(|l| format!("{kind}:{l}")),
            );
        }
        Ok(found)
    }

    /// Fails unless nothing of cluster `name` exists: nothing labelled with
    /// it, and nothing named like its resources.
    pub fn assert_no_resources(&self, name: &str) -> anyhow::Result<()> {
        let mut left = self.resources(name)?;
        left.extend(self.named_resources(name)?);
        left.sort();
        left.dedup();
        ensure!(
            left.is_empty(),
            "resources left behind for {name}: {left:?}"
        );
        Ok(())
    }

    /// Removes everything labelled with one of this run's cluster names.
    /// Touches nothing else.
    pub fn cleanup(&self) {
        let names: Vec<String> = self.clusters.lock().unwrap().iter().cloned().collect();
        for name in names {
            let filter = format!("label={CLUSTER_LABEL}={name}");
            let lists = [
                (
                    vec!["ps", "-aq", "--filter", filter.as_str()],
                    vec!["rm", "-f", "-v"],
                ),
                (
                    vec!["network", "ls", "-q", "--filter", filter.as_str()],
                    vec!["network", "rm"],
                ),
                (
                    vec!["volume", "ls", "-q", "--filter", filter.as_str()],
                    vec!["volume", "rm", "-f"],
                ),
            ];
            for (list, remove) in lists {
                let Ok(out) = docker(&list) else { continue };
                let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                eprintln!(
                    "e2e: cleanup: removing {} leftover {} of {name}",
                    ids.len(),
                    remove[0]
                );
                let mut args: Vec<&str> = remove.clone();
                args.extend(ids.iter().map(String::as_str));
                let _ = docker(&args);
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Runs `docker args...` and returns its output; fails if it cannot start
/// or exits non-zero.
pub fn docker(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running docker")?;
    ensure!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}

/// Parses a command's stdout as JSON.
pub fn stdout_json(out: &Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "stdout is not JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn log_output(what: &str, out: &Output) {
    eprintln!("e2e: $ {what} -> {}", out.status);
    if std::env::var_os("TOPGUN_E2E_VERBOSE").is_some() {
        eprintln!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The environment for running topgun on the local images, built if
/// needed: the `TOPGUN_*_IMAGE` pairs, and `TOPGUN_PRIVILEGED=false` (the
/// stand-in needs no privileges, and engines like this one refuse privileged
/// containers; real k3s images keep the privileged default).
///
/// In process, not through `cargo xtask images --print`: building the images
/// rebuilds the workspace binaries, this one included, so the running
/// executable's path may no longer exist.
pub fn local_images() -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = crate::images::env_pairs(&crate::images::build_all()?);
    for key in ["TOPGUN_K3S_IMAGE", "TOPGUN_ETCD_IMAGE", "TOPGUN_LB_IMAGE"] {
        ensure!(
            pairs.iter().any(|(k, _)| k == key),
            "the local images include no {key}"
        );
    }
    pairs.push(("TOPGUN_PRIVILEGED".to_owned(), "false".to_owned()));
    Ok(pairs)
}

fn getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)?;
    Ok(())
}

/// A scenario: a name and the function that runs it.
pub type Scenario = (&'static str, fn(&Harness) -> anyhow::Result<()>);

/// Runs the suite and prints `N passed, N failed`.
pub fn run(args: E2eArgs) -> anyhow::Result<()> {
    let harness = Harness::new()?;
    let scenarios: Vec<Scenario> = crate::e2e_scenarios::all();
    let mut passed = 0;
    let mut failed = Vec::new();
    for (name, scenario) in scenarios {
        if args
            .only
            .as_deref()
            .is_some_and(|only| !name.contains(only))
        {
            continue;
        }
        eprintln!("e2e: --- {name}");
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&harness)))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("scenario panicked")));
        harness.cleanup();
        match result {
            Ok(()) => {
                passed += 1;
                eprintln!("e2e: ok   {name} ({:.1}s)", started.elapsed().as_secs_f64());
            }
            Err(err) => {
                eprintln!(
                    "e2e: FAIL {name} ({:.1}s): {err:#}",
                    started.elapsed().as_secs_f64()
                );
                failed.push(name);
            }
        }
    }
    println!("{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        bail!("e2e scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Paths in the scratch dir.
pub fn scratch(h: &Harness, name: &str) -> PathBuf {
    h.dir.path().join(name)
}

/// Whether `path` has exactly mode `mode` (permission bits).
pub fn has_mode(path: &Path, mode: u32) -> anyhow::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777 == mode)
}
