//! `cargo xtask e2e`: the end-to-end suite against the real Docker engine.
//!
//! It drives the `topgun` binary exactly as a user would and checks the
//! results with the tools a user would reach for: kubectl, the docker CLI,
//! and topgun's own `tls` and `etcd` commands. Every cluster name is unique
//! to the run, and a guard removes whatever carries this run's cluster
//! labels, even when a scenario fails or panics.
//!
//! Two modes ([`Mode`]): by default the local images from `cargo xtask
//! images` (Debian's etcd and haproxy, the k3s stand-in) with unprivileged
//! nodes; with `--upstream` the images topgun uses by default (`rancher/k3s`,
//! etcd, haproxy, pinned in topgun-core) and `registry:2`, pulled first, with
//! privileged nodes, as users with a registry run them.
//!
//! This module is the harness; the scenarios live in [`scenarios`] and reach
//! the runner only through [`scenarios::all`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::setup;

pub mod scenarios;

/// Label every topgun resource carries with its cluster name.
const CLUSTER_LABEL: &str = "dev.topgun.cluster";

/// The variables that choose topgun's images and privileges: the harness
/// sets them for every `topgun` it runs, whatever the caller's environment.
const IMAGE_ENV: [&str; 5] = [
    "TOPGUN_K3S_IMAGE",
    "TOPGUN_ETCD_IMAGE",
    "TOPGUN_LB_IMAGE",
    "TOPGUN_REGISTRY_IMAGE",
    "TOPGUN_PRIVILEGED",
];

/// How much longer the upstream run waits for anything that depends on k3s:
/// real k3s takes 20–60 s to be ready where the stand-in takes milliseconds.
const UPSTREAM_PATIENCE: u32 = 6;

/// Which images the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The local images from `cargo xtask images`, the k3s stand-in among
    /// them, with unprivileged nodes. Needs no registry.
    Local,
    /// The upstream images (topgun's pinned defaults and `registry:2`),
    /// pulled first, with privileged nodes. Needs a registry.
    Upstream,
}

/// Options of `cargo xtask e2e`.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Run only the scenarios whose names contain this text.
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    /// Run on the upstream images instead of the local ones: rancher/k3s,
    /// etcd and haproxy as topgun pins them by default, and registry:2,
    /// pulled first (needs a registry), with privileged nodes and longer
    /// waits; scenarios and checks that hold only with the k3s stand-in are
    /// skipped and listed.
    #[arg(long)]
    pub upstream: bool,
}

/// Everything a scenario needs: the binaries, the images and this run's id.
pub struct Harness {
    /// The `topgun` binary under test.
    pub topgun: PathBuf,
    /// kubectl: Debian's (`cargo xtask setup`); with `--upstream`,
    /// `$TOPGUN_KUBECTL`, else Debian's, else the one on `PATH`.
    pub kubectl: PathBuf,
    /// The images the suite runs on.
    pub mode: Mode,
    /// The environment every `topgun` gets: the `TOPGUN_*_IMAGE` pairs and
    /// `TOPGUN_PRIVILEGED` (see [`local_images`] and [`upstream_images`]).
    pub images: Vec<(String, String)>,
    /// A short random id, part of every cluster name.
    pub run_id: String,
    /// A scratch directory for kubeconfigs and files.
    pub dir: tempfile::TempDir,
    clusters: std::sync::Mutex<BTreeSet<String>>,
    /// The scenario running now, for [`Harness::standin_only`].
    current: std::sync::Mutex<&'static str>,
    /// Checks skipped by [`Harness::standin_only`]: `scenario: reason`.
    skipped: std::sync::Mutex<Vec<String>>,
}

impl Harness {
    /// Gets the tools and images of `mode` ready, builds the binary, and
    /// picks this run's id. `scenarios` are the ones that will run, for the
    /// upstream preflight.
    ///
    /// Local: installs the Debian packages and builds the local images.
    /// Upstream: checks the tools are there (it installs nothing, so it also
    /// runs on Ubuntu), then pulls the upstream images, failing before
    /// anything is built or created when a pull fails.
    pub fn new(mode: Mode, scenarios: &[&str]) -> anyhow::Result<Self> {
        let (kubectl, images) = match mode {
            Mode::Local => {
                setup::run()?;
                (setup::Tools::locate()?.kubectl, local_images()?)
            }
            Mode::Upstream => {
                let images = upstream_images()?;
                let list: Vec<String> = images.iter().map(|(k, v)| format!("{k}={v}")).collect();
                eprintln!("e2e: upstream run on {}", list.join(" "));
                let kubectl = upstream_preflight(scenarios)?;
                pull_upstream(&images)?;
                (kubectl, images)
            }
        };
        let topgun = setup::build_topgun(false)?;
        let mut bytes = [0u8; 3];
        getrandom(&mut bytes)?;
        Ok(Harness {
            topgun,
            kubectl,
            mode,
            images,
            run_id: hex::encode(bytes),
            dir: tempfile::tempdir()?,
            clusters: Default::default(),
            current: std::sync::Mutex::new(""),
            skipped: Default::default(),
        })
    }

    /// How long to wait for something that depends on k3s (nodes Ready,
    /// heartbeats, the API through the load balancer), given the wait that
    /// suits the stand-in: as given locally, [`UPSTREAM_PATIENCE`] times
    /// longer with real k3s. Waits on etcd, haproxy or topgun alone are not
    /// scaled.
    pub fn patience(&self, standin: Duration) -> Duration {
        match self.mode {
            Mode::Local => standin,
            Mode::Upstream => standin * UPSTREAM_PATIENCE,
        }
    }

    /// The guard of a check that is meaningful only with the k3s stand-in:
    /// true locally; with `--upstream` false, and the check is listed as
    /// skipped, with `reason`, in the summary. Use as
    /// `if h.standin_only("why") { ...check... }`.
    #[allow(
        dead_code,
        reason = "no check is stand-in only today; kept for those that will be"
    )]
    pub fn standin_only(&self, reason: &str) -> bool {
        match self.mode {
            Mode::Local => true,
            Mode::Upstream => {
                let scenario = *self.current.lock().unwrap();
                eprintln!("e2e: skip (stand-in only) in {scenario}: {reason}");
                self.skipped
                    .lock()
                    .unwrap()
                    .push(format!("{scenario} (one check): {reason}"));
                false
            }
        }
    }

    /// The k3s image the nodes run.
    pub fn k3s_image(&self) -> anyhow::Result<&str> {
        self.images
            .iter()
            .find(|(k, _)| k == "TOPGUN_K3S_IMAGE")
            .map(|(_, v)| v.as_str())
            .context("no TOPGUN_K3S_IMAGE")
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

    /// A `topgun` command with this run's images (and nothing of the
    /// caller's `TOPGUN_*_IMAGE`/`TOPGUN_PRIVILEGED`) and a private
    /// kubeconfig.
    pub fn topgun(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.topgun);
        for key in IMAGE_ENV {
            cmd.env_remove(key);
        }
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

    /// Waits until `kubectl get nodes` on `context` lists `want` Ready nodes
    /// (and no others); `within` suits the stand-in and is scaled for real
    /// k3s ([`Harness::patience`]).
    pub fn wait_ready_nodes(
        &self,
        context: &str,
        want: usize,
        within: Duration,
    ) -> anyhow::Result<()> {
        let within = self.patience(within);
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
                    "kubectl get nodes on {context}: wanted {want} Ready nodes within {}s, got:\n{stdout}{}",
                    within.as_secs(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every Docker resource (containers, networks, volumes) labelled with
    /// the cluster `name`, as `kind:name` strings.
    pub fn resources(&self, name: &str) -> anyhow::Result<Vec<String>> {
        labelled(&format!("{CLUSTER_LABEL}={name}"))
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
            remove_labelled(&format!("{CLUSTER_LABEL}={name}"), &name);
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

/// The environment for running topgun on the upstream images: topgun's own
/// defaults for k3s, etcd, the load balancer and registries (read from its
/// source, so the two cannot drift; xtask builds without protoc, so it cannot
/// link topgun-core), and `TOPGUN_PRIVILEGED=true`, as real k3s needs.
pub fn upstream_images() -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for (env, dir, constant) in [
        ("TOPGUN_K3S_IMAGE", "topgun-core/src", "DEFAULT_K3S_IMAGE"),
        ("TOPGUN_ETCD_IMAGE", "topgun-core/src", "DEFAULT_ETCD_IMAGE"),
        ("TOPGUN_LB_IMAGE", "topgun-core/src", "DEFAULT_LB_IMAGE"),
        (
            "TOPGUN_REGISTRY_IMAGE",
            "topgun-core/src",
            "DEFAULT_REGISTRY_IMAGE",
        ),
    ] {
        pairs.push((env.to_owned(), rust_str_const(dir, constant)?));
    }
    pairs.push(("TOPGUN_PRIVILEGED".to_owned(), "true".to_owned()));
    Ok(pairs)
}

/// The value of `const NAME: &str = ...;` in the sources under `dir` (of
/// the workspace; whatever its visibility), following a value that names
/// another constant (`OTHER`, or `topgun_etcd::OTHER` in that crate) to its
/// string literal.
fn rust_str_const(dir: &str, name: &str) -> anyhow::Result<String> {
    let (mut dir, mut name) = (dir.to_owned(), name.to_owned());
    for _ in 0..4 {
        let path = setup::workspace_root().join(&dir);
        let value = find_str_const(&path, &name)?
            .with_context(|| format!("{} defines no const {name}", path.display()))?;
        if let Some(literal) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            return Ok(literal.to_owned());
        }
        let mut path: Vec<&str> = value.split("::").map(str::trim).collect();
        let last = path.pop().context("an empty const")?.to_owned();
        match path.first() {
            Some(&"crate") | Some(&"self") | Some(&"super") | None => {}
            Some(other) => dir = format!("{}/src", other.replace('_', "-")),
        }
        name = last;
    }
    bail!("{name} in {dir}: too many constants deep")
}

/// Searches the `.rs` files under `dir` for `const NAME: &str = VALUE;` and
/// returns VALUE (trimmed).
fn find_str_const(dir: &Path, name: &str) -> anyhow::Result<Option<String>> {
    let marker = format!("const {name}: &str =");
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path)?;
            if let Some((_, rest)) = source.split_once(&marker) {
                let value = rest.split_once(';').map_or(rest, |(v, _)| v);
                return Ok(Some(value.trim().to_owned()));
            }
        }
    }
    Ok(None)
}

/// Checks, before anything is pulled or built, that the tools the upstream
/// run needs are there (it installs nothing); returns kubectl.
fn upstream_preflight(scenarios: &[&str]) -> anyhow::Result<PathBuf> {
    let kubectl = match std::env::var_os("TOPGUN_KUBECTL") {
        Some(path) => PathBuf::from(path),
        None => match setup::Tools::locate() {
            Ok(tools) => tools.kubectl,
            Err(_) => on_path("kubectl").context(
                "kubectl is missing: put one on PATH, set TOPGUN_KUBECTL, or run `cargo xtask setup`",
            )?,
        },
    };
    let mut missing = Vec::new();
    let mut need = vec![("docker", "docker"), ("protoc", "protobuf-compiler")];
    if scenarios.iter().any(|s| s.starts_with("remote-")) {
        need.extend([
            ("sshd", "openssh-server"),
            ("ssh", "openssh-client"),
            ("ssh-keygen", "openssh-client"),
            ("socat", "socat"),
        ]);
    }
    for (tool, package) in need {
        let found =
            on_path(tool).is_some() || (tool == "sshd" && Path::new("/usr/sbin/sshd").exists());
        if !found {
            missing.push(format!("{tool} (package {package})"));
        }
    }
    ensure!(
        missing.is_empty(),
        "the upstream suite needs {}; install them, or leave out the scenarios that need them with --only",
        missing.join(", ")
    );
    if scenarios.contains(&"remote-ssh") {
        ensure!(
            is_root(),
            "remote-ssh logs in as root through an sshd of its own, so it runs only as root \
             (in CI: sudo); run as root, or leave it out with --only"
        );
    }
    Ok(kubectl)
}

/// `docker pull` of every upstream image, before anything is built or
/// created; a failed pull ends the run with the image and Docker's reason.
fn pull_upstream(images: &[(String, String)]) -> anyhow::Result<()> {
    let mut seen = BTreeSet::new();
    for (key, image) in images {
        if !key.ends_with("_IMAGE") || !seen.insert(image.clone()) {
            continue;
        }
        let started = Instant::now();
        eprintln!("e2e: docker pull {image}");
        let out = Command::new("docker")
            .args(["pull", "--quiet", image])
            .stdin(Stdio::null())
            .output()
            .context("running docker pull")?;
        ensure!(
            out.status.success(),
            "cannot pull {image}: {}; the upstream suite needs a registry (Docker Hub, \
             gcr.io); without one, run the local suite (`cargo xtask e2e`)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        eprintln!(
            "e2e: pulled {image} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The first executable `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)?;
    Ok(())
}

/// One end-to-end scenario, as registered in [`scenarios::all`].
pub struct Scenario {
    /// Its name, as `--only` matches it.
    pub name: &'static str,
    /// The function that runs it.
    pub run: fn(&Harness) -> anyhow::Result<()>,
    /// Why it proves something only with the k3s stand-in, if it does:
    /// `--upstream` skips it and says so.
    pub standin_only: Option<&'static str>,
}

impl Scenario {
    /// A scenario that holds for real k3s as well as for the stand-in.
    pub fn new(name: &'static str, run: fn(&Harness) -> anyhow::Result<()>) -> Self {
        Scenario {
            name,
            run,
            standin_only: None,
        }
    }

    /// Marks the scenario as meaningful only with the stand-in, for `reason`.
    #[allow(
        dead_code,
        reason = "no scenario is stand-in only today; kept for those that will be"
    )]
    pub fn standin_only(mut self, reason: &'static str) -> Self {
        self.standin_only = Some(reason);
        self
    }
}

/// Runs the suite and prints `N passed, N failed` (with `--upstream`, also
/// what was skipped as meaningful only with the stand-in, and why).
pub fn run(args: E2eArgs) -> anyhow::Result<()> {
    let mode = if args.upstream {
        Mode::Upstream
    } else {
        Mode::Local
    };
    let selected: Vec<Scenario> = scenarios::all()
        .into_iter()
        .filter(|s| {
            args.only
                .as_deref()
                .is_none_or(|only| s.name.contains(only))
        })
        .collect();
    ensure!(
        !selected.is_empty(),
        "no scenario name contains {:?}; the scenarios are: {}",
        args.only.as_deref().unwrap_or_default(),
        scenarios::all()
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (runnable, standin_only): (Vec<Scenario>, Vec<Scenario>) = selected
        .into_iter()
        .partition(|s| mode == Mode::Local || s.standin_only.is_none());
    let names: Vec<&str> = runnable.iter().map(|s| s.name).collect();
    let harness = Harness::new(mode, &names)?;
    let mut skipped: Vec<String> = standin_only
        .iter()
        .map(|s| format!("{}: {}", s.name, s.standin_only.unwrap_or_default()))
        .collect();
    for s in &skipped {
        eprintln!("e2e: skip (stand-in only) {s}");
    }
    let mut passed = 0;
    let mut failed = Vec::new();
    for Scenario {
        name,
        run: scenario,
        ..
    } in runnable
    {
        eprintln!("e2e: --- {name}");
        *harness.current.lock().unwrap() = name;
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
    match mode {
        Mode::Local => println!("{passed} passed, {} failed", failed.len()),
        Mode::Upstream => {
            skipped.extend(harness.skipped.lock().unwrap().iter().cloned());
            println!(
                "{passed} passed, {} failed on the upstream images; {} skipped as meaningful only with the k3s stand-in{}",
                failed.len(),
                skipped.len(),
                if skipped.is_empty() { "" } else { ":" }
            );
            for s in &skipped {
                println!("  skipped {s}");
            }
        }
    }
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

/// Removes every container (with its anonymous volumes), network and volume
/// carrying the label `label` (`key=value`), saying what it removes of
/// `what`. Touches nothing else; failures are left to the leftovers check.
pub fn remove_labelled(label: &str, what: &str) {
    let filter = format!("label={label}");
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
            "e2e: cleanup: removing {} leftover {} of {what}",
            ids.len(),
            remove[0]
        );
        let mut args: Vec<&str> = remove.clone();
        args.extend(ids.iter().map(String::as_str));
        let _ = docker(&args);
    }
}

/// Every Docker resource (containers, networks, volumes) with the label
/// `key=value` (`label`), as `kind:name` strings.
pub fn labelled(label: &str) -> anyhow::Result<Vec<String>> {
    let filter = format!("label={label}");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The upstream run uses topgun's pinned defaults, read from
    /// topgun-core's source: a pinned k3s release, not `latest`.
    #[test]
    fn upstream_images_are_topgun_defaults() {
        let pairs = upstream_images().unwrap();
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
        };
        let k3s = get("TOPGUN_K3S_IMAGE");
        assert!(
            k3s.starts_with("rancher/k3s:v1.") && k3s.ends_with("-k3s1"),
            "{k3s}"
        );
        assert!(get("TOPGUN_ETCD_IMAGE").contains("etcd:v3."));
        assert!(get("TOPGUN_LB_IMAGE").starts_with("haproxy:"));
        assert!(get("TOPGUN_REGISTRY_IMAGE").contains("registry:2"));
        assert_eq!(get("TOPGUN_PRIVILEGED"), "true");
    }
}
