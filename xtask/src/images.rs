//! `cargo xtask images`: the images the tests run, built locally with no
//! registry.
//!
//! Each image is `FROM scratch` plus one layer: a tar of the binaries and
//! exactly the shared libraries `ldd` lists for them (plus a few small
//! files: passwd/group, nsswitch.conf, empty directories). We chose this
//! over a debootstrap rootfs because it needs nothing but the Debian
//! packages the tests already install (no root-only chroot, no mirror
//! access at build time), builds in seconds and yields small images with
//! the same layout as the official ones.
//!
//! The layer tar is deterministic (sorted entries, fixed mtime, fixed
//! owners), so its sha256, together with the Dockerfile's, keys the image
//! tag `topgun-local/<image>:<12 hex>`: an image whose tag exists is not
//! rebuilt. Images carry `org.opencontainers.image.*` labels and
//! `dev.topgun.image=<name>`; older tags of the same repository are removed
//! only when they carry that label.
//!
//! The layer goes in with `docker import` and `--change` for the image
//! config (ENV, LABEL, ENTRYPOINT, CMD, VOLUME, USER, WORKDIR, EXPOSE):
//! one step, well under a second per image. The classic builder
//! (`DOCKER_BUILDKIT=0`: built into every engine, no buildx plugin needed,
//! and this machine's client has none) takes about 0.8 s per Dockerfile
//! instruction on this engine (fuse-overlayfs), so it is used only for
//! what `import` cannot set: haproxy's `STOPSIGNAL`, one instruction on
//! top of the imported layer.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};

use crate::setup;

/// Arguments of `cargo xtask images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Print `TOPGUN_K3S_IMAGE=...`, `TOPGUN_ETCD_IMAGE=...`,
    /// `TOPGUN_LB_IMAGE=...` and `TOPGUN_REGISTRY_IMAGE=...` lines on stdout
    /// (progress goes to stderr).
    #[arg(long)]
    pub print: bool,
    /// After building, run the smoke tests: each image starts and works.
    #[arg(long)]
    pub smoke: bool,
}

/// The label naming which topgun image an image is.
pub const IMAGE_LABEL: &str = "dev.topgun.image";
/// The label carrying the full inputs hash.
pub const INPUTS_LABEL: &str = "dev.topgun.inputs";
/// The label naming the checkout that built an image (a hash of its
/// path): `cargo xtask images` only ever removes its own checkout's images,
/// never those another clone on the same engine built.
pub const CHECKOUT_LABEL: &str = "dev.topgun.checkout";

/// This checkout's id for [`CHECKOUT_LABEL`].
fn checkout_id() -> String {
    use sha2::Digest;
    let root = crate::setup::workspace_root();
    hex::encode(&sha2::Sha256::digest(root.to_string_lossy().as_bytes())[..8])
}

/// The label smoke-test containers carry, with the run id.
pub const RUN_LABEL: &str = "dev.topgun.test-run";
/// The repository prefix of local images.
pub const REPOSITORY_PREFIX: &str = "topgun-local";
/// The Kubernetes version string the stand-in prints (kept in step with
/// `xtask/k3s-standin/src/main.rs`).
const STANDIN_VERSION_PREFIX: &str = "k3s version v";

/// One built (or already present) image.
#[derive(Debug, Clone)]
pub struct Image {
    /// `k3s`, `etcd`, `haproxy` or `registry`.
    pub name: &'static str,
    /// The environment variable topgun reads it from.
    pub env: &'static str,
    /// `topgun-local/<name>:<12 hex>`.
    pub tag: String,
    /// Whether this run built it.
    pub built: bool,
}

/// Runs the task.
pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let images = build_all()?;
    if args.smoke {
        smoke(&images)?;
    }
    if args.print {
        for image in &images {
            println!("{}={}", image.env, image.tag);
        }
    }
    Ok(())
}

/// The `TOPGUN_*_IMAGE` environment pairs for `images`.
pub fn env_pairs(images: &[Image]) -> Vec<(String, String)> {
    images
        .iter()
        .map(|i| (i.env.to_owned(), i.tag.clone()))
        .collect()
}

/// Builds every image that is missing; returns all four.
pub fn build_all() -> anyhow::Result<Vec<Image>> {
    check_docker()?;
    let started = Instant::now();
    let k3s_bin = build_standin()?;
    let defs = vec![
        etcd_def()?,
        haproxy_def()?,
        k3s_def(&k3s_bin)?,
        registry_def()?,
    ];
    let mut out = Vec::new();
    for def in defs {
        out.push(build(&def)?);
    }
    eprintln!(
        "xtask: images ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

// ------------------------------------------------------------ definitions

/// A file in an image's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32, uid: u64, gid: u64 },
    File { data: Vec<u8>, mode: u32 },
}

/// Everything an image is made of.
#[derive(Debug)]
struct ImageDef {
    name: &'static str,
    env: &'static str,
    /// Dockerfile instructions applied by `docker import --change`.
    changes: Vec<String>,
    /// Instructions `import` cannot apply (e.g. STOPSIGNAL), built on top.
    build_steps: Vec<String>,
    rootfs: BTreeMap<String, Entry>,
    /// Files of the root filesystem that the tag names by the digest of the
    /// sources they were built from rather than by their bytes: a binary
    /// built in another checkout differs in the paths it embeds (and so
    /// everywhere after them), yet is the same program.
    built_from: BTreeMap<String, String>,
}

impl ImageDef {
    fn new(name: &'static str, env: &'static str) -> Self {
        ImageDef {
            name,
            env,
            changes: Vec::new(),
            build_steps: Vec::new(),
            rootfs: BTreeMap::new(),
            built_from: BTreeMap::new(),
        }
    }

    /// What the tag is computed from: every entry of the root filesystem
    /// (path, kind, mode, owner and bytes, or the sources digest of a built
    /// file), then the instructions.
    fn tag_inputs(&self, hasher: &mut Sha256) {
        for (path, entry) in &self.rootfs {
            hasher.update(path.as_bytes());
            match entry {
                Entry::Dir { mode, uid, gid } => {
                    hasher.update(format!(" dir {mode:o} {uid} {gid}\n").as_bytes());
                }
                Entry::File { data, mode } => {
                    hasher.update(format!(" file {mode:o}\n").as_bytes());
                    match self.built_from.get(path) {
                        Some(digest) => hasher.update(digest.as_bytes()),
                        None => hasher.update(data),
                    }
                }
            }
        }
        for line in self.changes.iter().chain(&self.build_steps) {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
    }

    fn dir(&mut self, path: &str, mode: u32, owner: u64) {
        self.parents(path);
        self.rootfs.insert(
            path.trim_matches('/').to_owned(),
            Entry::Dir {
                mode,
                uid: owner,
                gid: owner,
            },
        );
    }

    fn parents(&mut self, path: &str) {
        let trimmed = path.trim_matches('/');
        let mut acc = String::new();
        let parts: Vec<&str> = trimmed.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.rootfs.entry(acc.clone()).or_insert(Entry::Dir {
                mode: 0o755,
                uid: 0,
                gid: 0,
            });
        }
    }

    fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.parents(path);
        self.rootfs.insert(
            path.trim_matches('/').to_owned(),
            Entry::File { data, mode },
        );
    }

    /// What every image needs besides its programs: name lookup through
    /// files and DNS, these `passwd` and `group` files, and a `/tmp`.
    fn base(&mut self, passwd: &str, group: &str) {
        self.file("/etc/nsswitch.conf", NSSWITCH.into(), 0o644);
        self.file("/etc/passwd", passwd.as_bytes().to_vec(), 0o644);
        self.file("/etc/group", group.as_bytes().to_vec(), 0o644);
        self.dir("/tmp", 0o1777, 0);
    }

    /// `binary` at `dest`, plus every library `ldd` lists, at the paths it lists.
    fn binary(&mut self, source: &Path, dest: &str) -> anyhow::Result<()> {
        let data =
            std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        self.file(dest, data, 0o755);
        for lib in ldd(source)? {
            let data = std::fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
            self.file(&lib.to_string_lossy(), data, 0o755);
        }
        Ok(())
    }

    /// The deterministic layer tar.
    fn layer(&self) -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.rootfs {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            match entry {
                Entry::Dir { mode, uid, gid } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(*uid);
                    header.set_gid(*gid);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Entry::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_uid(0);
                    header.set_gid(0);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
            }
        }
        Ok(builder.into_inner()?)
    }
}

/// The libraries `ldd` lists for `binary` (none for a static binary).
fn ldd(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic")
        {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", binary.display()))
}

/// Parses `ldd` output into library paths.
fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("=> not found") {
            bail!("missing library: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

fn labels(def: &mut ImageDef, title: &str, description: &str, version: &str) {
    let labels = [
        ("org.opencontainers.image.title", title.to_owned()),
        (
            "org.opencontainers.image.description",
            description.to_owned(),
        ),
        ("org.opencontainers.image.version", version.to_owned()),
        (
            "org.opencontainers.image.vendor",
            "topgun (local build)".to_owned(),
        ),
        (
            "org.opencontainers.image.source",
            "https://github.com/topgun-dev/topgun".to_owned(),
        ),
        (
            "org.opencontainers.image.licenses",
            "MIT OR Apache-2.0".to_owned(),
        ),
        ("org.opencontainers.image.base.name", "scratch".to_owned()),
        (IMAGE_LABEL, def.name.to_owned()),
    ];
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).expect("json string")))
        .collect();
    def.changes.push(format!("LABEL {}", pairs.join(" ")));
}

fn debian_version(package: &str) -> anyhow::Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .context("running dpkg-query")?;
    ensure!(
        out.status.success(),
        "Debian package {package} is not installed; run `cargo xtask setup`"
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn require(path: &str, package: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(path);
    ensure!(
        p.is_file(),
        "{path} is missing: install Debian's {package} (`cargo xtask setup`)"
    );
    Ok(p)
}

const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n";

/// etcd, laid out like gcr.io/etcd-development/etcd: binaries in
/// /usr/local/bin, no entrypoint, `CMD ["/usr/local/bin/etcd"]`.
fn etcd_def() -> anyhow::Result<ImageDef> {
    let version = debian_version("etcd-server")?;
    let mut def = ImageDef::new("etcd", "TOPGUN_ETCD_IMAGE");
    def.binary(
        &require("/usr/bin/etcd", "etcd-server")?,
        "/usr/local/bin/etcd",
    )?;
    def.binary(
        &require("/usr/bin/etcdctl", "etcd-client")?,
        "/usr/local/bin/etcdctl",
    )?;
    def.base("root:x:0:0:root:/root:/sbin/nologin\n", "root:x:0:\n");
    def.dir("/var/etcd", 0o700, 0);
    def.dir("/var/lib/etcd", 0o700, 0);
    def.changes = vec![
        "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        "WORKDIR /".into(),
        "EXPOSE 2379 2380".into(),
        r#"CMD ["/usr/local/bin/etcd"]"#.into(),
    ];
    labels(
        &mut def,
        "etcd (Debian etcd-server, topgun local image)",
        "Debian's etcd laid out like gcr.io/etcd-development/etcd",
        &version,
    );
    Ok(def)
}

/// haproxy, laid out like the official `haproxy` image.
fn haproxy_def() -> anyhow::Result<ImageDef> {
    let version = debian_version("haproxy")?;
    let upstream = version.split('-').next().unwrap_or(&version).to_owned();
    let mut def = ImageDef::new("haproxy", "TOPGUN_LB_IMAGE");
    def.binary(
        &require("/usr/sbin/haproxy", "haproxy")?,
        "/usr/local/sbin/haproxy",
    )?;
    def.base(
        "root:x:0:0:root:/root:/sbin/nologin\nhaproxy:x:99:99:haproxy:/var/lib/haproxy:/usr/sbin/nologin\n",
        "root:x:0:\nhaproxy:x:99:\n",
    );
    def.dir("/run", 0o755, 0);
    def.dir("/usr/local/etc/haproxy", 0o755, 0);
    def.dir("/var/lib/haproxy", 0o755, 99);
    def.changes = vec![
        format!(
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HAPROXY_VERSION={upstream}"
        ),
        "USER haproxy".into(),
        "WORKDIR /var/lib/haproxy".into(),
        r#"CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]"#.into(),
    ];
    // As the official image: `docker stop` asks haproxy for a soft stop.
    def.build_steps = vec!["STOPSIGNAL SIGUSR1".into()];
    labels(
        &mut def,
        "haproxy (Debian haproxy, topgun local image)",
        "Debian's haproxy laid out like the official haproxy image",
        &version,
    );
    Ok(def)
}

/// The user the registry image runs as (upstream `registry:2` runs as
/// root, and runs as well as any user that owns its storage).
const REGISTRY_UID: u64 = 1000;

/// The registry's configuration, as upstream `registry:2` ships it in
/// spirit: filesystem storage under the volume, plain HTTP on :5000, the
/// storage driver's health check on.
const REGISTRY_CONFIG: &str = "version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

/// A registry (Debian's `docker-registry`, distribution 2.8), laid out like
/// upstream `registry:2`, so that one container body serves both: the
/// binary at `/bin/registry`, its config at
/// `/etc/docker/registry/config.yml`, storage in the `/var/lib/registry`
/// volume, plain HTTP on port 5000. Upstream's entrypoint script turns a
/// config path into `registry serve <path>`; with no shell in the image,
/// the entrypoint is the binary and the command `serve <config>`, which is
/// what upstream runs by default. It runs as the unprivileged user
/// `registry`, which owns `/var/lib/registry`, so a fresh named volume
/// there (Docker copies the directory's owner into it) is writable.
fn registry_def() -> anyhow::Result<ImageDef> {
    let version = debian_version("docker-registry")?;
    let mut def = ImageDef::new("registry", "TOPGUN_REGISTRY_IMAGE");
    def.binary(
        &require("/usr/bin/docker-registry", "docker-registry")?,
        "/bin/registry",
    )?;
    def.base(
        &format!(
            "root:x:0:0:root:/root:/sbin/nologin\nregistry:x:{REGISTRY_UID}:{REGISTRY_UID}:registry:/var/lib/registry:/sbin/nologin\n"
        ),
        &format!("root:x:0:\nregistry:x:{REGISTRY_UID}:\n"),
    );
    def.file(
        "/etc/docker/registry/config.yml",
        REGISTRY_CONFIG.as_bytes().to_vec(),
        0o644,
    );
    def.dir("/var/lib/registry", 0o755, REGISTRY_UID);
    def.changes = vec![
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        r#"VOLUME ["/var/lib/registry"]"#.into(),
        "EXPOSE 5000".into(),
        "USER registry".into(),
        "WORKDIR /var/lib/registry".into(),
        r#"ENTRYPOINT ["/bin/registry"]"#.into(),
        r#"CMD ["serve", "/etc/docker/registry/config.yml"]"#.into(),
    ];
    labels(
        &mut def,
        "registry (Debian docker-registry, topgun local image)",
        "Debian's Docker registry (distribution 2.8) laid out like the official registry:2 image",
        &version,
    );
    Ok(def)
}

/// The k3s stand-in, laid out like rancher/k3s: `/bin/k3s` entrypoint.
fn k3s_def(binary: &Path) -> anyhow::Result<ImageDef> {
    let mut def = ImageDef::new("k3s", "TOPGUN_K3S_IMAGE");
    def.binary(binary, "/bin/k3s")?;
    def.built_from
        .insert("bin/k3s".to_owned(), standin_sources_digest()?);
    def.base("root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n");
    def.dir("/run", 0o755, 0);
    def.dir("/var/run", 0o755, 0);
    def.dir("/etc/rancher/k3s", 0o755, 0);
    for v in [
        "/var/lib/kubelet",
        "/var/lib/rancher/k3s",
        "/var/lib/cni",
        "/var/log",
    ] {
        def.dir(v, 0o755, 0);
    }
    def.changes = vec![
        "ENV PATH=/var/lib/rancher/k3s/data/cni:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bin/aux \
         CRI_CONFIG_FILE=/var/lib/rancher/k3s/agent/etc/crictl.yaml"
            .into(),
        r#"VOLUME ["/var/lib/kubelet", "/var/lib/rancher/k3s", "/var/lib/cni", "/var/log"]"#.into(),
        r#"ENTRYPOINT ["/bin/k3s"]"#.into(),
        r#"CMD ["agent"]"#.into(),
    ];
    labels(
        &mut def,
        "k3s stand-in (NOT k3s; topgun test double)",
        "A stand-in for rancher/k3s that plays k3s at the interfaces topgun relies on; see xtask/k3s-standin/README.md",
        concat!("standin-", env!("CARGO_PKG_VERSION")),
    );
    Ok(def)
}

// ---------------------------------------------------------------- effects

fn docker() -> Command {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_BUILDKIT", "0");
    cmd
}

fn check_docker() -> anyhow::Result<()> {
    let out = docker()
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .context("running `docker`: is the Docker CLI installed?")?;
    ensure!(
        out.status.success(),
        "the Docker engine is not reachable: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Builds the stand-in and returns a stripped copy.
///
/// The dev profile, built as `cargo build --workspace --bins`: measured on
/// 2 cores from an empty target dir, `--package k3s-standin` alone compiles
/// 41 of its dependencies a second time for `cargo test --workspace`
/// (features unify differently), while `--workspace --bins` leaves 10, and
/// also builds the `topgun` binary the end-to-end suite runs. A release
/// build would compile every dependency again (about 2 minutes more) for a
/// binary that starts in milliseconds either way. It goes through
/// [`setup::cargo`] like the test run, so both see the same environment.
fn build_standin() -> anyhow::Result<PathBuf> {
    setup::cargo(&["build", "--locked", "--workspace", "--bins"], &[])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| setup::workspace_root().join("target"));
    let exe = target.join("debug/k3s");
    ensure!(exe.is_file(), "{} was not built", exe.display());
    let stripped = exe.with_file_name("k3s-standin-image");
    std::fs::copy(&exe, &stripped).with_context(|| format!("copying {}", exe.display()))?;
    // The build id is a hash over the whole binary, paths included: without
    // it, two clones of one commit differ only by their checkout's path.
    let status = Command::new("strip")
        .args(["--remove-section=.note.gnu.build-id"])
        .arg(&stripped)
        .status()
        .context("running strip (Debian package binutils)")?;
    ensure!(status.success(), "strip {} failed", stripped.display());
    Ok(stripped)
}

/// The digest of everything the stand-in binary is built from: its crate
/// and topgun-tls (sources and manifests), the workspace manifest, lock file
/// and cargo config, and the compiler's version. Paths are relative to the
/// checkout, so clones of one commit get one digest, and so one tag.
fn standin_sources_digest() -> anyhow::Result<String> {
    let root = setup::workspace_root();
    let mut files = Vec::new();
    for dir in ["xtask/k3s-standin/src", "topgun-tls/src"] {
        collect_files(&root.join(dir), &mut files)?;
    }
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
        "xtask/k3s-standin/Cargo.toml",
        "topgun-tls/Cargo.toml",
    ] {
        files.push(root.join(file));
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap_or(file);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update(b"\0");
        hasher.update(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
        hasher.update(b"\0");
    }
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    hasher.update(&rustc.stdout);
    Ok(hex::encode(hasher.finalize()))
}

/// Every file below `dir`, recursively.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn image_exists(tag: &str) -> bool {
    docker()
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn build(def: &ImageDef) -> anyhow::Result<Image> {
    let layer = def.layer()?;
    let mut hasher = Sha256::new();
    def.tag_inputs(&mut hasher);
    let hash = hex::encode(hasher.finalize());
    let repo = format!("{REPOSITORY_PREFIX}/{}", def.name);
    let tag = format!("{repo}:{}", &hash[..12]);
    let mut image = Image {
        name: def.name,
        env: def.env,
        tag: tag.clone(),
        built: false,
    };
    if image_exists(&tag) {
        eprintln!("xtask: {tag} is up to date");
        // Tags left behind while a container still used them go now.
        remove_stale(&repo, &tag, def.name);
        return Ok(image);
    }
    let started = Instant::now();
    eprintln!(
        "xtask: building {tag} ({:.1} MB layer)",
        layer.len() as f64 / 1e6
    );
    let mut changes = def.changes.clone();
    changes.push(format!("LABEL {INPUTS_LABEL}=\"{hash}\""));
    changes.push(format!("LABEL {CHECKOUT_LABEL}=\"{}\"", checkout_id()));
    let import_tag = if def.build_steps.is_empty() {
        tag.clone()
    } else {
        format!("{tag}-layer")
    };
    let mut cmd = docker();
    cmd.arg("import");
    for change in &changes {
        cmd.args(["--change", change]);
    }
    cmd.args(["-", &import_tag]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running docker import")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(&layer)
            .context("streaming the layer to docker import")?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "docker import of {tag} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    if !def.build_steps.is_empty() {
        let ctx = tempfile::Builder::new().prefix("topgun-image-").tempdir()?;
        let dockerfile = format!("FROM {import_tag}\n{}\n", def.build_steps.join("\n"));
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile)?;
        let out = docker()
            .args(["build", "--quiet", "--force-rm", "--tag", &tag])
            .arg(ctx.path())
            .output()
            .context("running docker build")?;
        ensure!(
            out.status.success(),
            "docker build of {tag} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The layer image stays as the parent; only its extra tag goes.
        docker_ok(&["image", "rm", "--no-prune", &import_tag])?;
    }
    eprintln!(
        "xtask: built {tag} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    image.built = true;
    remove_stale(&repo, &tag, def.name);
    Ok(image)
}

/// Removes other tags of `repo` that this checkout built (never anything
/// else: not another clone's images, not images in use).
fn remove_stale(repo: &str, keep: &str, name: &str) {
    let Ok(out) = docker()
        .args([
            "image",
            "ls",
            "--filter",
            &format!("label={IMAGE_LABEL}={name}"),
            "--filter",
            &format!("label={CHECKOUT_LABEL}={}", checkout_id()),
            "--filter",
            &format!("reference={repo}"),
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .output()
    else {
        return;
    };
    for old in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
        if old.is_empty() || old == keep || !old.starts_with(&format!("{repo}:")) {
            continue;
        }
        let removed = docker()
            .args(["image", "rm", old])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if removed {
            eprintln!("xtask: removed the stale image {old}");
        } else {
            eprintln!("xtask: warning: could not remove the stale image {old} (still in use?)");
        }
    }
}

// ------------------------------------------------------------------ smoke

/// Removes every container labelled with the run id, also on panic.
struct RunGuard {
    id: String,
}

impl RunGuard {
    fn new() -> anyhow::Result<Self> {
        let mut bytes = [0u8; 4];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(RunGuard {
            id: hex::encode(bytes),
        })
    }

    fn label(&self) -> String {
        format!("{RUN_LABEL}={}", self.id)
    }

    fn name(&self, what: &str) -> String {
        format!("topgun-smoke-{}-{what}", self.id)
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let Ok(out) = docker()
            .args(["ps", "-aq", "--filter", &format!("label={}", self.label())])
            .output()
        else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = docker()
                .args(["rm", "-f", "-v", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn docker_ok(args: &[&str]) -> anyhow::Result<String> {
    let out = docker().args(args).output().context("running docker")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "`docker {}` failed:\n{text}",
        args.join(" ")
    );
    Ok(text)
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One plain HTTP/1.1 request without a body, with a deadline; the whole
/// answer (status line, headers, body) as text.
fn http_request(addr: std::net::SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A container's logs, for an error message.
fn docker_logs(name: &str) -> String {
    docker_ok(&["logs", name]).unwrap_or_else(|e| e.to_string())
}

/// Each image starts and does its job: etcd serves and reports its
/// version, haproxy validates and runs a config uploaded as topgun does,
/// the stand-in prints its version and comes up as a server, the registry
/// answers `GET /v2/`.
pub fn smoke(images: &[Image]) -> anyhow::Result<()> {
    let tag = |name: &str| {
        images
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.tag.clone())
            .expect("image built")
    };
    let guard = RunGuard::new()?;
    let label = guard.label();
    let started = Instant::now();

    // etcd: the same arguments as the official image work.
    let etcd = tag("etcd");
    let version = docker_ok(&[
        "run",
        "--rm",
        "--label",
        &label,
        &etcd,
        "/usr/local/bin/etcd",
        "--version",
    ])?;
    ensure!(
        version.contains("etcd Version: 3."),
        "etcd --version said:\n{version}"
    );
    let name = guard.name("etcd");
    docker_ok(&[
        "run",
        "-d",
        "--label",
        &label,
        "--name",
        &name,
        &etcd,
        "etcd",
        "--name=smoke",
        "--data-dir=/var/lib/etcd/smoke",
        "--listen-client-urls=http://0.0.0.0:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
    ])?;
    wait_until("etcd to serve", Duration::from_secs(20), || {
        let out = docker()
            .args([
                "exec",
                &name,
                "etcdctl",
                "--endpoints=http://127.0.0.1:2379",
                "endpoint",
                "health",
            ])
            .output()?;
        // etcdctl 3.4 reports health on stderr.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.status.success() && text.contains("is healthy"))
    })?;
    eprintln!(
        "xtask: smoke: etcd serves ({})",
        version.lines().next().unwrap_or_default()
    );

    // haproxy: a config uploaded before start, as topgun does, validates and runs.
    let lb = tag("haproxy");
    let cfg_dir = tempfile::tempdir()?;
    let cfg = cfg_dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n\
         frontend api\n  bind :6443\n  default_backend servers\n\
         backend servers\n  server s0 127.0.0.1:6444 check\n",
    )?;
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let check = guard.name("haproxy-check");
    docker_ok(&[
        "create",
        "--label",
        &label,
        "--name",
        &check,
        &lb,
        "haproxy",
        "-c",
        "-f",
        "/usr/local/etc/haproxy/haproxy.cfg",
    ])?;
    docker_ok(&[
        "cp",
        &cfg.to_string_lossy(),
        &format!("{check}:/usr/local/etc/haproxy/haproxy.cfg"),
    ])?;
    let out = docker_ok(&["start", "-a", &check])?;
    ensure!(
        out.contains("Configuration file is valid"),
        "haproxy -c said:\n{out}"
    );
    let run = guard.name("haproxy");
    docker_ok(&["create", "--label", &label, "--name", &run, &lb])?;
    docker_ok(&[
        "cp",
        &cfg.to_string_lossy(),
        &format!("{run}:/usr/local/etc/haproxy/haproxy.cfg"),
    ])?;
    docker_ok(&["start", &run])?;
    std::thread::sleep(Duration::from_millis(1500));
    let state = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Running}} {{.Config.User}}",
        &run,
    ])?;
    let logs = docker_ok(&["logs", &run])?;
    ensure!(
        state.trim() == "true haproxy",
        "haproxy is not running as user haproxy ({state}):\n{logs}"
    );
    eprintln!("xtask: smoke: haproxy validates and runs a config");

    // The stand-in: prints its version, and comes up as a server.
    let k3s = tag("k3s");
    let out = docker_ok(&["run", "--rm", "--label", &label, &k3s, "--version"])?;
    ensure!(
        out.starts_with(STANDIN_VERSION_PREFIX),
        "k3s --version said:\n{out}"
    );
    let server = guard.name("k3s");
    docker_ok(&[
        "run",
        "-d",
        "--label",
        &label,
        "--name",
        &server,
        "--hostname",
        "smoke-server-0",
        &k3s,
        "server",
        "--tls-san",
        "smoke.topgun.test",
    ])?;
    let mut logs = String::new();
    wait_until(
        "the stand-in server to come up",
        Duration::from_secs(30),
        || {
            logs = docker_ok(&["logs", &server])?;
            ensure!(
                !logs.contains("level=fatal"),
                "the stand-in failed:\n{logs}"
            );
            Ok(logs.contains("k3s is up and running")
                && logs.contains("Successfully registered node smoke-server-0"))
        },
    )?;
    ensure!(
        logs.contains("Wrote kubeconfig /etc/rancher/k3s/k3s.yaml"),
        "{logs}"
    );
    eprintln!(
        "xtask: smoke: {} and comes up as a server",
        out.lines().next().unwrap_or_default()
    );

    // The registry: serves the Registry API v2 on :5000, as the user that
    // owns its storage volume.
    let registry = guard.name("registry");
    docker_ok(&[
        "run",
        "-d",
        "--label",
        &label,
        "--name",
        &registry,
        "--publish",
        "127.0.0.1::5000",
        &tag("registry"),
    ])?;
    let port = docker_ok(&["port", &registry, "5000/tcp"])?;
    let addr: std::net::SocketAddr = port
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .with_context(|| format!("docker port said: {port}"))?;
    let mut answer = String::new();
    wait_until("the registry to answer", Duration::from_secs(20), || {
        answer = http_request(addr, "GET", "/v2/").unwrap_or_else(|e| e.to_string());
        Ok(answer.starts_with("HTTP/1.1 200"))
    })
    .with_context(|| format!("GET /v2/ answered:\n{answer}\n{}", docker_logs(&registry)))?;
    ensure!(
        answer
            .to_ascii_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "GET /v2/ is not the Registry API v2:\n{answer}"
    );
    let user = docker_ok(&["inspect", "--format", "{{.Config.User}}", &registry])?;
    ensure!(user.trim() == "registry", "the registry runs as {user}");
    // Its storage (the anonymous volume) is writable by that user: an
    // upload starts.
    let upload = http_request(addr, "POST", "/v2/smoke/blobs/uploads/")?;
    ensure!(
        upload.starts_with("HTTP/1.1 202"),
        "starting an upload answered:\n{upload}\n{}",
        docker_logs(&registry)
    );
    eprintln!(
        "xtask: smoke: the registry answers GET /v2/ and takes an upload as user registry; smoke tests passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    drop(guard);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f2)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn layer_is_deterministic_with_parents_owners_and_modes() {
        let make = || {
            let mut def = ImageDef::new("t", "T");
            def.file("/usr/local/bin/x", b"bin".to_vec(), 0o755);
            def.dir("/var/lib/haproxy", 0o755, 99);
            def.dir("/tmp", 0o1777, 0);
            def
        };
        let a = make().layer().unwrap();
        assert_eq!(a, make().layer().unwrap());
        let mut archive = tar::Archive::new(a.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("tmp/".to_owned(), 0o1777, 0),
                ("usr/".to_owned(), 0o755, 0),
                ("usr/local/".to_owned(), 0o755, 0),
                ("usr/local/bin/".to_owned(), 0o755, 0),
                ("usr/local/bin/x".to_owned(), 0o755, 0),
                ("var/".to_owned(), 0o755, 0),
                ("var/lib/".to_owned(), 0o755, 0),
                ("var/lib/haproxy/".to_owned(), 0o755, 99),
            ]
        );
    }
}
