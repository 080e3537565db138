//! The create benchmark behind `cargo xtask bench create`.
//!
//! ```text
//! cargo run --release -p topgun-core --example bench_create -- --topgun PATH [--runs N]
//!     [--scenarios s2,seed,etcd5,etcd50 | --servers N --agents N --etcd N]
//! ```
//!
//! The scenarios (`--scenarios`, comma-separated; default: the one given by
//! `--servers`, `--agents`, `--etcd`, which default to `s2`):
//!
//! - `s2`: 3 servers, 2 agents, a 3-member etcd (scenario 2 of the e2e suite);
//! - `seed`: 5 servers, 9 agents, embedded datastore (the seed's cluster);
//! - `etcd5`: 3 servers, 5 agents, a 3-member etcd;
//! - `etcd50`: 3 servers, 50 agents, a 3-member etcd.
//!
//! For each scenario, alternating, `--runs` times each:
//!
//! - the raw floor ([`topgun_core::testing::floor`]): the very containers a
//!   create would make, created and started straight through the Docker
//!   API, all at once, with no order and no readiness gates;
//! - the boot floor ([`topgun_core::testing::boot_floor`]): the same, then
//!   waiting for each node's own readiness line, all at once;
//!   both floors then remove everything raw: every container at once, then
//!   every volume, then the network (the floor of a delete);
//! - `topgun create` as a whole process (the release binary given by
//!   `--topgun`), under `/usr/bin/time` for its peak RSS and its own
//!   CPU-seconds (user + system, from `wait4`), then `topgun delete` as a
//!   whole process.
//!
//! It prints each run, with the machine's busy CPU-seconds (from
//! `/proc/stat`, all processes) for each, then per scenario the medians and
//! the ratios create/boot floor, create/raw floor and delete/raw removal,
//! and a Markdown table of every scenario; with `etcd5` and `etcd50` both
//! run, t(50 agents)/t(5 agents). Every cluster is named `bench<hex>` and
//! removed by its label at the end, also on failure or Ctrl-C.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use topgun_core::{Cluster, DeleteOptions};
use topgun_core::{ClusterSpec, Datastore};

type BoxError = Box<dyn std::error::Error>;

/// What the command line asks for.
struct Args {
    topgun: PathBuf,
    runs: usize,
    scenarios: Vec<Scenario>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = std::env::args().skip(1);
    let mut topgun = PathBuf::new();
    let mut runs = 3;
    let mut custom = SCENARIOS[0];
    custom.name = "custom";
    let mut shaped = false;
    let mut scenarios = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--topgun" => topgun = PathBuf::from(value()?),
            "--runs" => runs = value()?.parse()?,
            "--servers" => (custom.servers, shaped) = (value()?.parse()?, true),
            "--agents" => (custom.agents, shaped) = (value()?.parse()?, true),
            "--etcd" => (custom.etcd, shaped) = (value()?.parse()?, true),
            "--scenarios" => {
                for name in value()?.split(',').filter(|n| !n.is_empty()) {
                    let found = SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| {
                        let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
                        format!("unknown scenario {name:?} (known: {})", known.join(", "))
                    })?;
                    scenarios.push(*found);
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if topgun.as_os_str().is_empty() {
        return Err("--topgun PATH (the release `topgun` binary) is required".into());
    }
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if shaped && !scenarios.is_empty() {
        return Err("give --scenarios or --servers/--agents/--etcd, not both".into());
    }
    if scenarios.is_empty() {
        scenarios.push(if shaped { custom } else { SCENARIOS[0] });
    }
    Ok(Args {
        topgun,
        runs,
        scenarios,
    })
}

/// One `topgun create` run.
struct CreateRun {
    create: Duration,
    delete: Duration,
    max_rss_kib: u64,
    /// topgun's own CPU-seconds (user + system).
    cpu: f64,
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
    let docker = match topgun_core::connect().await {
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
        let options = DeleteOptions::new().kubeconfig(scratch.path().join("kubeconfig"));
        match Cluster::named(docker.clone(), name)
            .delete_with(&options)
            .await
        {
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

/// A cluster shape to measure.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    servers: u32,
    agents: u32,
    etcd: u32,
}

/// The named scenarios.
const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "s2",
        servers: 3,
        agents: 2,
        etcd: 3,
    },
    Scenario {
        name: "seed",
        servers: 5,
        agents: 9,
        etcd: 0,
    },
    Scenario {
        name: "etcd5",
        servers: 3,
        agents: 5,
        etcd: 3,
    },
    Scenario {
        name: "etcd50",
        servers: 3,
        agents: 50,
        etcd: 3,
    },
];

impl Scenario {
    fn describe(&self) -> String {
        let store = match self.etcd {
            0 => "embedded datastore".to_owned(),
            n => format!("{n}-member etcd"),
        };
        format!(
            "{}: {} servers, {} agents, {store}, load balancer",
            self.name, self.servers, self.agents
        )
    }
}

/// One run of a scenario.
struct Measured {
    raw: Duration,
    boot: Duration,
    removal: Duration,
    create: CreateRun,
}

/// A scenario's medians.
struct Summary {
    scenario: Scenario,
    runs: usize,
    raw: Duration,
    boot: Duration,
    create: Duration,
    delete: Duration,
    removal: Duration,
    rss_max_kib: u64,
    cpu: f64,
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
    println!("machine: {}, load average {}", machine(), load_average());
    let mut summaries = Vec::new();
    for scenario in &args.scenarios {
        summaries.push(run_scenario(docker, args, *scenario, time, scratch, names).await?);
    }
    println!();
    println!("load average at the end: {}", load_average());
    println!();
    println!(
        "| scenario | runs | raw floor | boot floor | create | create/boot | create/raw | delete | \
         raw removal | delete/removal | peak RSS | topgun CPU-s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &summaries {
        println!(
            "| {} | {} | {:.2} s | {:.2} s | {:.2} s | {:.2} | {:.2} | {:.2} s | {:.2} s | {:.2} | \
             {:.1} MiB | {:.2} |",
            s.scenario.describe(),
            s.runs,
            s.raw.as_secs_f64(),
            s.boot.as_secs_f64(),
            s.create.as_secs_f64(),
            ratio(s.create, s.boot),
            ratio(s.create, s.raw),
            s.delete.as_secs_f64(),
            s.removal.as_secs_f64(),
            ratio(s.delete, s.removal),
            s.rss_max_kib as f64 / 1024.0,
            s.cpu,
        );
    }
    let by_name = |n: &str| summaries.iter().find(|s| s.scenario.name == n);
    if let (Some(five), Some(fifty)) = (by_name("etcd5"), by_name("etcd50")) {
        let r = ratio(fifty.create, five.create);
        println!();
        println!(
            "t(50 agents)/t(5 agents) = {:.2} s / {:.2} s = {r:.2} (target <= 2.5: {})",
            fifty.create.as_secs_f64(),
            five.create.as_secs_f64(),
            met(r <= 2.5)
        );
        println!(
            "peak RSS of topgun create with {} k3s nodes ({} containers): {:.1} MiB (target < 40 MiB: {})",
            fifty.scenario.servers + fifty.scenario.agents,
            fifty.scenario.servers + fifty.scenario.agents + fifty.scenario.etcd + 1,
            fifty.rss_max_kib as f64 / 1024.0,
            met(fifty.rss_max_kib < 40 * 1024)
        );
    }
    Ok(())
}

async fn run_scenario(
    docker: &topgun_core::bollard::Docker,
    args: &Args,
    scenario: Scenario,
    time: &Path,
    scratch: &Path,
    names: &mut Vec<String>,
) -> Result<Summary, BoxError> {
    println!();
    println!(
        "scenario {}; {} runs each, alternating",
        scenario.describe(),
        args.runs
    );
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let name = fresh_name();
        names.push(name.clone());
        let cpu = busy_cpu_seconds();
        let raw = topgun_core::testing::floor(docker, &spec(&name, &scenario)?).await?;
        let raw_cpu = cpu_since(cpu, "with the removal");
        println!(
            "run {}: raw floor  {:>6.2}s, raw removal {:.2}s{raw_cpu}",
            i + 1,
            raw.create_and_start.as_secs_f64(),
            raw.remove.as_secs_f64()
        );

        let name = fresh_name();
        names.push(name.clone());
        let cpu = busy_cpu_seconds();
        let booted = topgun_core::testing::boot_floor(docker, &spec(&name, &scenario)?).await?;
        let boot_cpu = cpu_since(cpu, "with the removal");
        let boot = booted.boot.unwrap_or(booted.create_and_start);
        println!(
            "run {}: boot floor {:>6.2}s (all started at {:.2}s), raw removal {:.2}s{boot_cpu}",
            i + 1,
            boot.as_secs_f64(),
            booted.create_and_start.as_secs_f64(),
            booted.remove.as_secs_f64()
        );

        let name = fresh_name();
        names.push(name.clone());
        let cpu = busy_cpu_seconds();
        let created = create_and_delete(&args.topgun, time, &scenario, &name, scratch).await?;
        let create_cpu = cpu_since(cpu, "with the delete");
        let phases: Vec<String> = created
            .phases
            .iter()
            .map(|(p, d)| format!("{p} {:.2}", d.as_secs_f64()))
            .collect();
        println!(
            "run {}: create     {:>6.2}s ({:.2}x boot, {:.2}x raw), delete {:.2}s, peak RSS {:.1} MiB, \
             topgun {:.2} CPU-s [{}]{create_cpu}",
            i + 1,
            created.create.as_secs_f64(),
            ratio(created.create, boot),
            ratio(created.create, raw.create_and_start),
            created.delete.as_secs_f64(),
            created.max_rss_kib as f64 / 1024.0,
            created.cpu,
            phases.join(", ")
        );
        runs.push(Measured {
            raw: raw.create_and_start,
            boot,
            removal: raw.remove.min(booted.remove),
            create: created,
        });
    }

    let summary = Summary {
        scenario,
        runs: runs.len(),
        raw: median(runs.iter().map(|r| r.raw).collect()),
        boot: median(runs.iter().map(|r| r.boot).collect()),
        create: median(runs.iter().map(|r| r.create.create).collect()),
        delete: median(runs.iter().map(|r| r.create.delete).collect()),
        removal: median(runs.iter().map(|r| r.removal).collect()),
        rss_max_kib: runs.iter().map(|r| r.create.max_rss_kib).max().unwrap_or(0),
        cpu: median_f64(runs.iter().map(|r| r.create.cpu).collect()),
    };
    let per_run = |f: &dyn Fn(&Measured) -> f64| -> String {
        runs.iter()
            .map(|r| format!("{:.2}", f(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "median create {:.2}s, boot floor {:.2}s, raw floor {:.2}s, delete {:.2}s, raw removal {:.2}s",
        summary.create.as_secs_f64(),
        summary.boot.as_secs_f64(),
        summary.raw.as_secs_f64(),
        summary.delete.as_secs_f64(),
        summary.removal.as_secs_f64()
    );
    println!(
        "create/boot floor {:.2} (per run {}; target <= 1.10: {})",
        ratio(summary.create, summary.boot),
        per_run(&|r| ratio(r.create.create, r.boot)),
        met(ratio(summary.create, summary.boot) <= 1.10)
    );
    println!(
        "create/raw floor {:.2} (per run {})",
        ratio(summary.create, summary.raw),
        per_run(&|r| ratio(r.create.create, r.raw)),
    );
    println!(
        "delete/raw removal {:.2} (per run {}; target <= 1.2: {})",
        ratio(summary.delete, summary.removal),
        per_run(&|r| ratio(r.create.delete, r.removal)),
        met(ratio(summary.delete, summary.removal) <= 1.2)
    );
    println!(
        "peak RSS of topgun create: max {:.1} MiB; topgun's own CPU: median {:.2} CPU-s (per run {})",
        summary.rss_max_kib as f64 / 1024.0,
        summary.cpu,
        per_run(&|r| r.create.cpu)
    );
    let mut by_phase: BTreeMap<usize, (String, Vec<Duration>)> = BTreeMap::new();
    for r in &runs {
        for (i, (phase, d)) in r.create.phases.iter().enumerate() {
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
    Ok(summary)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-3)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Cores and the CPU model, from `/proc/cpuinfo`.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_owned();
    format!("{cores} cores, {model}")
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
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

fn spec(name: &str, scenario: &Scenario) -> Result<ClusterSpec, BoxError> {
    let mut builder = ClusterSpec::builder(name)
        .servers(scenario.servers)
        .agents(scenario.agents);
    if scenario.etcd > 0 {
        builder = builder.datastore(Datastore::etcd(scenario.etcd));
    }
    Ok(builder.build()?)
}

/// `topgun create` under `/usr/bin/time`, then `topgun delete`, each timed
/// as a whole process.
async fn create_and_delete(
    topgun: &Path,
    time: &Path,
    args: &Scenario,
    name: &str,
    scratch: &Path,
) -> Result<CreateRun, BoxError> {
    let rss_file = scratch.join(format!("{name}.rss"));
    let kubeconfig = scratch.join("kubeconfig");
    let mut command = tokio::process::Command::new(time);
    command
        .arg("-f")
        .arg("%M %U %S")
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
    // `/usr/bin/time -f "%M %U %S"`: peak RSS in KiB, user and system
    // CPU-seconds.
    let figures = std::fs::read_to_string(&rss_file)?;
    let fields: Vec<&str> = figures
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let (max_rss_kib, cpu) = match fields[..] {
        [rss, user, system] => (
            rss.parse::<u64>()?,
            user.parse::<f64>()? + system.parse::<f64>()?,
        ),
        _ => return Err(format!("cannot read /usr/bin/time's figures from {figures:?}").into()),
    };
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
        cpu,
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
