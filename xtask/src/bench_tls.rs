//! `cargo xtask bench tls`: the speed targets of issue 2.
//!
//! 1. Generating a CA plus 10 leaf certificates, in process (target
//!    < 50 ms), via `topgun-tls`'s `bench_gen` example.
//! 2. One `topgun tls inspect 127.0.0.1:PORT --ca ca.crt` as a whole process
//!    (target < 20 ms), against Debian's `openssl s_server` on loopback.
//!
//! Both are built with `--release` unless `--dev` is given. Figures are
//! medians and 90th percentiles over many iterations.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use topgun_tls::testing::OpensslServer;

use crate::setup;

/// Arguments of `cargo xtask bench tls`.
#[derive(Debug, clap::Args)]
pub struct BenchTlsArgs {
    /// Build and measure the dev profile instead of release.
    #[arg(long)]
    dev: bool,
    /// Iterations of each measurement.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
}

impl BenchTlsArgs {
    /// A quick smoke run in the dev profile (CI).
    pub fn smoke() -> Self {
        Self {
            dev: true,
            iterations: 5,
        }
    }
}

/// Runs the TLS benchmarks and prints their figures.
pub fn run(args: BenchTlsArgs) -> anyhow::Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let profile: &[&str] = if args.dev { &[] } else { &["--release"] };
    let profile_name = if args.dev { "dev" } else { "release" };

    // 1. Generation, in process.
    let mut cmd_args = vec![
        "run",
        "--quiet",
        "--locked",
        "-p",
        "topgun-tls",
        "--example",
        "bench_gen",
    ];
    cmd_args.extend_from_slice(profile);
    let iterations = args.iterations.to_string();
    cmd_args.extend_from_slice(&["--", &iterations]);
    eprintln!("xtask: cargo {}", cmd_args.join(" "));
    let out = setup::cargo_command()
        .args(&cmd_args)
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("bench_gen failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let gen_json: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bench_gen printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let gen_median = gen_json["median_ms"].as_f64().context("median_ms")?;
    let gen_p90 = gen_json["p90_ms"].as_f64().context("p90_ms")?;

    // 2. `topgun tls inspect` as a whole process.
    let topgun = setup::build_topgun(!args.dev)?;
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let status = Command::new(&topgun)
        .args(["-q", "tls", "gen", "--out"])
        .arg(&pki)
        .args(["--san", "127.0.0.1,localhost"])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("topgun tls gen failed ({status})");
    }
    let server = OpensslServer::start(&pki.join("server.crt"), &pki.join("server.key"), &[])
        .context("openssl is needed for this benchmark: run `cargo xtask setup`")?;
    let target = format!("127.0.0.1:{}", server.port());
    let ca = pki.join("ca.crt");
    let inspect = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let status = Command::new(&topgun)
            .args(["tls", "inspect", &target, "--ca"])
            .arg(&ca)
            .stdout(Stdio::null())
            .status()?;
        let elapsed = started.elapsed();
        if !status.success() {
            bail!("topgun tls inspect {target} exited with {status}");
        }
        Ok(elapsed)
    };
    for _ in 0..5 {
        inspect()?; // warm the page cache
    }
    let mut times: Vec<f64> = Vec::with_capacity(args.iterations);
    for _ in 0..args.iterations {
        times.push(inspect()?.as_secs_f64() * 1000.0);
    }
    drop(server);
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];

    println!(
        "tls benchmarks ({profile_name} build, {} iterations each)",
        args.iterations
    );
    println!(
        "  generate CA + 10 leaf certificates   median {gen_median:7.2} ms   p90 {gen_p90:7.2} ms   target < 50 ms   {}",
        verdict(gen_median < 50.0)
    );
    println!(
        "  topgun tls inspect (whole process)   median {:7.2} ms   p90 {:7.2} ms   target < 20 ms   {}",
        pick(0.5),
        pick(0.9),
        verdict(pick(0.5) < 20.0)
    );
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
