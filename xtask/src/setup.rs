//! Installs and locates the system tools the tests use.
//!
//! Everything comes from Debian's packages. Debian's kubectl
//! (`kubernetes-client`) is unpacked into `target/debian` rather than
//! installed, because machines of this kind may already carry another
//! `kubectl` package that owns `/usr/bin/kubectl`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Debian packages installed system-wide.
const PACKAGES: &[&str] = &[
    "protobuf-compiler",
    "libprotobuf-dev",
    "etcd-server",
    "etcd-client",
    "haproxy",
    "openssl",
    // `strip` for the k3s stand-in image (cargo xtask images).
    "binutils",
    // `/usr/bin/time` for the peak RSS in `cargo xtask bench create`.
    "time",
    // The remote-engine e2e scenarios: an sshd of their own and a TLS
    // endpoint (socat) in front of the engine socket, on loopback.
    "openssh-server",
    "openssh-client",
    "socat",
    // The registry image (cargo xtask images) and the stand-in's pull tests:
    // Docker's distribution 2.8.
    "docker-registry",
    // Headless, for the browser test of `topgun etcd browse`.
    "chromium",
];

/// Debian's chromium, as the browser test runs it (`TOPGUN_CHROMIUM`).
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where packages that are unpacked rather than installed go.
pub fn debian_root() -> PathBuf {
    workspace_root().join("target/debian")
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Installs what is missing. Idempotent and quick when all is present.
pub fn run() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    let kubectl = debian_root().join("usr/bin/kubectl");
    if missing.is_empty() && kubectl.exists() {
        return Ok(());
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    run_cmd(sudo, &["apt-get", "update", "-qq"])?;
    if !missing.is_empty() {
        eprintln!("xtask: installing {}", missing.join(" "));
        let mut args = vec![
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
        ];
        args.extend(missing.iter().copied());
        run_cmd(sudo, &args)?;
    }
    if !kubectl.exists() {
        eprintln!(
            "xtask: unpacking Debian's kubernetes-client into {}",
            debian_root().display()
        );
        let download = workspace_root().join("target/debian-download");
        std::fs::create_dir_all(&download)?;
        let status = Command::new("apt-get")
            .args(["download", "kubernetes-client"])
            .current_dir(&download)
            .status()
            .context("running apt-get download")?;
        if !status.success() {
            bail!("apt-get download kubernetes-client failed");
        }
        let deb = std::fs::read_dir(&download)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("no kubernetes-client .deb was downloaded")?;
        run_cmd(
            &[],
            &[
                "dpkg-deb",
                "-x",
                &deb.to_string_lossy(),
                &debian_root().to_string_lossy(),
            ],
        )?;
    }
    Ok(())
}

/// Paths of the tools the tests run.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Debian's kubectl.
    pub kubectl: PathBuf,
}

impl Tools {
    /// Finds the tools, failing with a hint when `setup` has not run.
    pub fn locate() -> anyhow::Result<Self> {
        let kubectl = debian_root().join("usr/bin/kubectl");
        if !kubectl.exists() {
            bail!("{} is missing; run `cargo xtask setup`", kubectl.display());
        }
        Ok(Tools { kubectl })
    }

    /// The environment the test processes get.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "TOPGUN_KUBECTL".into(),
                self.kubectl.to_string_lossy().into_owned(),
            ),
            ("TOPGUN_CHROMIUM".into(), CHROMIUM.into()),
        ]
    }
}

/// A `cargo` command in the workspace root, without the variables `cargo
/// run` set for xtask itself: inherited by a nested cargo they change
/// build-script fingerprints and force needless rebuilds.
pub fn cargo_command() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_MANIFEST_PATH"
            || key.starts_with("CARGO_PKG_")
        {
            command.env_remove(key.as_ref());
        }
    }
    command.current_dir(workspace_root());
    command
}

/// Runs `cargo` with `args` in the workspace root and extra `env`.
pub fn cargo(args: &[&str], env: &[(String, String)]) -> anyhow::Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = cargo_command()
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs `example` of `package` with `args` and extra `env`: how every
/// benchmark runs its measuring program. In the release profile, or
/// (`release` false, for a quick smoke run that measures nothing) the dev
/// profile the tests built. Every library crate has the `testing` feature
/// the measuring programs need.
pub fn run_example(
    release: bool,
    package: &str,
    example: &str,
    args: &[&str],
    env: &[(String, String)],
) -> anyhow::Result<()> {
    let mut all = vec!["run"];
    if release {
        all.push("--release");
    }
    all.extend([
        "--locked",
        "--quiet",
        "--package",
        package,
        "--example",
        example,
        // The measuring programs use each crate's benchmark helpers.
        "--features",
        "testing",
        "--",
    ]);
    all.extend_from_slice(args);
    cargo(&all, env)
}

/// Builds the `topgun` binary (release or dev) and returns its path, taken
/// from cargo's own artifact messages so that any target dir works.
pub fn build_topgun(release: bool) -> anyhow::Result<PathBuf> {
    let mut args = vec![
        "build",
        "--locked",
        "-p",
        "topgun-cli",
        "--bin",
        "topgun",
        "--message-format=json-render-diagnostics",
    ];
    if release {
        args.push("--release");
    }
    eprintln!("xtask: cargo {}", args.join(" "));
    let out = cargo_command()
        .args(&args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build of topgun failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "topgun")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo did not report the topgun executable")
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run_cmd(prefix: &[&str], args: &[&str]) -> anyhow::Result<()> {
    let all: Vec<&str> = prefix.iter().chain(args).copied().collect();
    let status = Command::new(all[0])
        .args(&all[1..])
        .status()
        .with_context(|| format!("running {}", all[0]))?;
    if !status.success() {
        bail!("`{}` failed ({status})", all.join(" "));
    }
    Ok(())
}
