//! `cargo xtask fuzz [--secs N]`: runs every crate's bounded fuzz targets
//! (`tests/fuzz.rs`, proptest on stable) for N seconds each, and prints per
//! target how many cases ran and what failed.
//!
//! Each target runs fresh randomly seeded batches until its time budget
//! (`TOPGUN_FUZZ_SECS`) has passed; the crate's fuzz targets run
//! side by side, one per core. A failure is shrunk to a minimal input, which
//! is printed: make it a named `#[test]` next to the code it concerns.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::setup;

/// The crates with fuzz targets, in the order they run.
pub const CRATES: &[&str] = &["topgun-tls", "topgun-etcd", "topgun-core"];

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Only this crate (e.g. `topgun-tls`).
    #[arg(long = "crate")]
    pub only: Option<String>,
}

/// One `fuzz-result` line of the harness.
#[derive(Debug, Clone, PartialEq)]
struct TargetResult {
    krate: String,
    target: String,
    cases: u64,
    secs: f64,
    max_case_ms: u64,
    ok: bool,
}

/// Parses `fuzz-result target=NAME cases=N secs=S max_case_ms=M status=ok`.
fn parse_result(krate: &str, line: &str) -> Option<TargetResult> {
    let rest = line.trim().strip_prefix("fuzz-result ")?;
    let field = |name: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    Some(TargetResult {
        krate: krate.to_owned(),
        target: field("target")?.to_owned(),
        cases: field("cases")?.parse().ok()?,
        secs: field("secs")?.parse().ok()?,
        max_case_ms: field("max_case_ms")?.parse().ok()?,
        ok: field("status")? == "ok",
    })
}

/// Runs the fuzz targets; fails when any target fails.
pub fn run(args: FuzzArgs) -> anyhow::Result<()> {
    let crates: Vec<&str> = match &args.only {
        Some(c) if CRATES.contains(&c.as_str()) => vec![c.as_str()],
        Some(c) => bail!(
            "no fuzz targets in {c:?}; the crates are {}",
            CRATES.join(", ")
        ),
        None => CRATES.to_vec(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for krate in crates {
        let (mut found, failed) = run_crate(krate, args.secs, threads)?;
        results.append(&mut found);
        failures.extend(failed);
    }
    println!();
    println!(
        "{:<12} {:<40} {:>10} {:>7} {:>12}  result",
        "crate", "target", "cases", "secs", "max case ms"
    );
    for r in &results {
        println!(
            "{:<12} {:<40} {:>10} {:>7.1} {:>12}  {}",
            r.krate,
            r.target,
            r.cases,
            r.secs,
            r.max_case_ms,
            if r.ok { "ok" } else { "FAILED" }
        );
    }
    let total_cases: u64 = results.iter().map(|r| r.cases).sum();
    let target_secs: f64 = results.iter().map(|r| r.secs).sum();
    println!(
        "{} targets, {total_cases} cases, {target_secs:.0} s of fuzzing in {:.0} s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        println!();
        for f in &failures {
            println!("{f}");
        }
        bail!(
            "{} fuzz target(s) failed; make each minimal input a named #[test] next to the code",
            results.iter().filter(|r| !r.ok).count().max(1)
        );
    }
    Ok(())
}

/// Runs one crate's `tests/fuzz.rs`: its results, and the failure messages.
fn run_crate(
    krate: &str,
    secs: u64,
    threads: usize,
) -> anyhow::Result<(Vec<TargetResult>, Vec<String>)> {
    let threads = threads.to_string();
    let args = [
        "test",
        "--locked",
        "-p",
        krate,
        "--test",
        "fuzz",
        "--",
        "--nocapture",
        "--test-threads",
        threads.as_str(),
    ];
    eprintln!("xtask: TOPGUN_FUZZ_SECS={secs} cargo {}", args.join(" "));
    let mut child = setup::cargo_command()
        .args(args)
        .env("TOPGUN_FUZZ_SECS", secs.to_string())
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let stderr = child.stderr.take().expect("piped");
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(r) = parse_result(krate, &line) {
            eprintln!(
                "xtask: fuzz {krate} {}: {} cases in {:.1} s (slowest {} ms) {}",
                r.target,
                r.cases,
                r.secs,
                r.max_case_ms,
                if r.ok { "ok" } else { "FAILED" }
            );
            results.push(r);
        } else if line.starts_with("fuzz target ") || line.starts_with("minimal input:") {
            eprintln!("{line}");
            failures.push(format!("{krate}: {line}"));
        } else if !line.starts_with("note: run with `RUST_BACKTRACE") {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    let stdout = out_thread.join().unwrap_or_default();
    if !status.success() {
        if failures.is_empty() {
            // A build error or a panic outside the harness: show the rest.
            for line in &stdout {
                eprintln!("{line}");
            }
            failures.push(format!("{krate}: cargo test --test fuzz failed ({status})"));
        }
    } else if results.is_empty() {
        bail!("{krate}: tests/fuzz.rs reported no targets");
    }
    Ok((results, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_read() {
        let r = parse_result(
            "topgun-tls",
            "fuzz-result target=tls::parse_san cases=400 secs=0.2 max_case_ms=1 status=ok",
        )
        .unwrap();
        assert_eq!(
            r,
            TargetResult {
                krate: "topgun-tls".into(),
                target: "tls::parse_san".into(),
                cases: 400,
                secs: 0.2,
                max_case_ms: 1,
                ok: true,
            }
        );
        let failed = parse_result(
            "x",
            "fuzz-result target=a(keys) cases=3 secs=0.0 max_case_ms=0 status=FAILED",
        )
        .unwrap();
        assert!(!failed.ok);
        assert!(parse_result("x", "test fuzz_a ... ok").is_none());
    }
}
