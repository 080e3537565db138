//! The create benchmark behind `cargo xtask bench create`.
//!
//! ```text
//! cargo run --release -p topgun-core --example bench_create -- --topgun PATH [--runs N]
//!     [--servers N] [--agents N] [--etcd N]
//! ```
//!
//! Scenario 2 of the end-to-end suite by default: 3 servers, 2 agents, a
//! 3-member etcd with mutual TLS and the load balancer. Alternating, `--runs`
//! times each:
//!
//! - the floor: [`topgun_core::floor::floor`] creates and starts the very
//!   containers a create would (same plan and bodies, files, volumes,
//!   network) straight through the Docker API, all at once, with no order
//!   and no readiness gates;
//! - `topgun create` as a whole process (the release binary given by
//!   `--topgun`), under `/usr/bin/time` for its peak RSS (`ru_maxrss` of the
//!   child, from `wait4`), then `topgun delete` as a whole process.
//!
//! It prints each run, with the machine's busy CPU-seconds (from
//! `/proc/stat`, all processes: the engine's work as well as the nodes') for
//! the floor and its removal and for the create and its delete, then the
//! medians, the ratio create/floor, the peak RSS and the median of each
//! create phase. Every cluster is named
//! `bench<hex>` and removed by its label at the end, also on failure or
//! Ctrl-C.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use topgun_core::lifecycle::{self, DeleteOptions, DeleteTarget};
use topgun_core::{ClusterSpec, Datastore};

type BoxError = Box<dyn std::error::Error>;

/// What the command line asks for.
struct Args {
    topgun: PathBuf,
    runs: usize,
    servers: u32,
    agents: u32,
    etcd: u32,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        topgun: PathBuf::new(),
        runs: 3,
        servers: 3,
        agents: 2,
        etcd: 3,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--topgun" => parsed.topgun = PathBuf::from(value()?),
            "--runs" => parsed.runs = value()?.parse()?,
            "--servers" => parsed.servers = value()?.parse()?,
            "--agents" => parsed.agents = value()?.parse()?,
            "--etcd" => parsed.etcd = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if parsed.topgun.as_os_str().is_empty() {
        return Err("--topgun PATH (the release `topgun` binary) is required".into());
    }
    if parsed.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(parsed)
}

/// One `topgun create` run.
struct CreateRun {
    create: Duration,
    delete: Duration,
    max_rss_kib: u64,
    phases: Vec<(String, Duration)>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_create: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let docker = match topgun_core::docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench_create: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench_create: cannot make a temp dir: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut names = Vec::new();
    let result = tokio::select! {
        r = run(&docker, &args, scratch.path(), &mut names) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    // Every cluster this bench named goes, whatever happened.
    let mut leftovers = false;
    for name in &names {
        let target = DeleteTarget::Name(name.clone());
        let options = DeleteOptions::new().kubeconfig(scratch.path().join("kubeconfig"));
        match lifecycle::delete(&docker, &target, &options).await {
            Ok(d) if d.removed.count() > 0 => {
                eprintln!(
                    "bench_create: cleaned up {} leftovers of {name}",
                    d.removed.count()
                );
            }
            Ok(_) => {}
            Err(e) => {
                leftovers = true;
                eprintln!("bench_create: cannot clean up {name}: {e}");
            }
        }
    }
    match result {
        Ok(()) if !leftovers => std::process::ExitCode::SUCCESS,
        Ok(()) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench_create: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(
    docker: &topgun_core::bollard::Docker,
    args: &Args,
    scratch: &Path,
    names: &mut Vec<String>,
) -> Result<(), BoxError> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return Err(
            "/usr/bin/time is missing (Debian package `time`; `cargo xtask setup` installs it)"
                .into(),
        );
    }
    println!(
        "scenario: {} servers, {} agents, {}-member etcd, load balancer; {} runs each, alternating",
        args.servers, args.agents, args.etcd, args.runs
    );
    let mut floors = Vec::new();
    let mut creates = Vec::new();
    for i in 0..args.runs {
        let name = fresh_name();
        names.push(name.clone());
        let spec = spec(&name, args)?;
        let cpu = busy_cpu_seconds();
        let floor = topgun_core::floor::floor(docker, &spec).await?;
        let floor_cpu = cpu_since(cpu, "with the removal");
        println!(
            "run {}: floor  {:>6.2}s (removed in {:.2}s){floor_cpu}",
            i + 1,
            floor.create_and_start.as_secs_f64(),
            floor.remove.as_secs_f64()
        );
        floors.push(floor.create_and_start);

        let name = fresh_name();
        names.push(name.clone());
        let cpu = busy_cpu_seconds();
        let created = create_and_delete(&args.topgun, time, args, &name, scratch).await?;
        let create_cpu = cpu_since(cpu, "with the delete");
        let phases: Vec<String> = created
            .phases
            .iter()
            .map(|(p, d)| format!("{p} {:.2}", d.as_secs_f64()))
            .collect();
        println!(
            "run {}: create {:>6.2}s, delete {:.2}s, peak RSS {:.1} MiB [{}]{create_cpu}",
            i + 1,
            created.create.as_secs_f64(),
            created.delete.as_secs_f64(),
            created.max_rss_kib as f64 / 1024.0,
            phases.join(", ")
        );
        creates.push(created);
    }

    let floor = median(floors.clone());
    let create = median(creates.iter().map(|c| c.create).collect());
    let delete = median(creates.iter().map(|c| c.delete).collect());
    let rss_max = creates.iter().map(|c| c.max_rss_kib).max().unwrap_or(0);
    let rss_median = median(creates.iter().map(|c| c.max_rss_kib).collect());
    let ratio = create.as_secs_f64() / floor.as_secs_f64();
    println!();
    println!("median create  {:.2}s", create.as_secs_f64());
    println!("median floor   {:.2}s", floor.as_secs_f64());
    println!("median delete  {:.2}s", delete.as_secs_f64());
    println!("ratio create/floor {ratio:.2} (target <= 1.25)");
    println!(
        "peak RSS of topgun create: max {:.1} MiB, median {:.1} MiB (target < 30 MiB)",
        rss_max as f64 / 1024.0,
        rss_median as f64 / 1024.0
    );
    let mut by_phase: BTreeMap<usize, (String, Vec<Duration>)> = BTreeMap::new();
    for c in &creates {
        for (i, (phase, d)) in c.phases.iter().enumerate() {
            by_phase
                .entry(i)
                .or_insert_with(|| (phase.clone(), Vec::new()))
                .1
                .push(*d);
        }
    }
    let phases: Vec<String> = by_phase
        .into_values()
        .map(|(p, ds)| format!("{p} {:.2}s", median(ds).as_secs_f64()))
        .collect();
    println!("median phases: {}", phases.join(", "));
    Ok(())
}

/// `Err` naming `what`, its exit status and its stderr unless it succeeded.
fn succeeded(what: &str, out: &std::process::Output) -> Result<(), BoxError> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    )
    .into())
}

/// The machine's busy CPU time so far (all cores, from `/proc/stat`), to
/// show how much work a measured stretch cost beside how long it took.
fn busy_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and
    // iowait, in USER_HZ ticks (100 a second on Linux).
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    Some(busy / 100.0)
}

/// `, N.N CPU-s <what>` busy since `before`, or nothing off Linux.
fn cpu_since(before: Option<f64>, what: &str) -> String {
    match (before, busy_cpu_seconds()) {
        (Some(a), Some(b)) => format!(", {:.1} CPU-s {what}", b - a),
        _ => String::new(),
    }
}

fn spec(name: &str, args: &Args) -> Result<ClusterSpec, BoxError> {
    let mut builder = ClusterSpec::builder(name)
        .servers(args.servers)
        .agents(args.agents);
    if args.etcd > 0 {
        builder = builder.datastore(Datastore::etcd(args.etcd));
    }
    Ok(builder.build()?)
}

/// `topgun create` under `/usr/bin/time`, then `topgun delete`, each timed
/// as a whole process.
async fn create_and_delete(
    topgun: &Path,
    time: &Path,
    args: &Args,
    name: &str,
    scratch: &Path,
) -> Result<CreateRun, BoxError> {
    let rss_file = scratch.join(format!("{name}.rss"));
    let kubeconfig = scratch.join("kubeconfig");
    let mut command = tokio::process::Command::new(time);
    command
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(topgun)
        .args(["create", name, "--quiet", "-o", "json"])
        .args(["--servers", &args.servers.to_string()])
        .args(["--agents", &args.agents.to_string()]);
    if args.etcd > 0 {
        command.args([
            "--datastore",
            "etcd",
            "--etcd-members",
            &args.etcd.to_string(),
        ]);
    }
    command
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = command.output().await?;
    let create = started.elapsed();
    succeeded(&format!("topgun create {name}"), &out)?;
    let max_rss_kib: u64 = std::fs::read_to_string(&rss_file)?
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|e| format!("cannot read the peak RSS from /usr/bin/time: {e}"))?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let phases = json["phases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p["phase"].as_str()?.to_owned(),
                        Duration::from_millis(p["elapsed_ms"].as_u64()?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();

    let started = Instant::now();
    let out = tokio::process::Command::new(topgun)
        .args(["delete", name, "--quiet"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await?;
    let delete = started.elapsed();
    succeeded(&format!("topgun delete {name}"), &out)?;
    Ok(CreateRun {
        create,
        delete,
        max_rss_kib,
        phases,
    })
}

/// `bench` and 6 random hex digits.
fn fresh_name() -> String {
    format!("bench{}", hex::encode(rand::random::<[u8; 3]>()))
}

fn median<T: Ord + Copy + Default>(mut values: Vec<T>) -> T {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}
