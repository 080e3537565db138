//! Benchmarks of topgun-etcd's health checks against a real 3-member etcd
//! cluster with mutual TLS on loopback (run by `cargo xtask bench etcd`).
//!
//! - Status round: one [`Checker::check`] (a Status request to every member
//!   at once, and the verdict), p50/p99 over many rounds.
//! - Failover: SIGKILL the leader, then time (a) etcd's own re-election, from
//!   the new leader's `became leader at term N` log line, and (b) the first
//!   [`HealthWatch`] change whose verdict names the new leader.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use topgun_etcd::local::LocalCluster;
use topgun_etcd::{Checker, EtcdClusterSpec, Verdict};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut rounds = 500usize;
    let mut trials = 5usize;
    let mut interval = Duration::from_millis(50);
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut value = || argv.next().context("a value after the flag");
        match arg.as_str() {
            "--rounds" => rounds = value()?.parse()?,
            "--trials" => trials = value()?.parse()?,
            "--interval-ms" => interval = Duration::from_millis(value()?.parse()?),
            other => {
                bail!("unknown argument {other:?} (use --rounds N --trials N --interval-ms N)")
            }
        }
    }

    // etcd's default timing (100 ms heartbeat, 1 s election), as deployed.
    let plan = EtcdClusterSpec::new("bench").with_members(3).plan()?;
    let mut cluster = LocalCluster::start(&plan)?;
    cluster.wait_healthy(Duration::from_secs(30)).await?;
    let checker = Checker::connect(&cluster.endpoints(), &cluster.client_config()).await?;

    // 1. Status rounds.
    for _ in 0..20 {
        checker.check().await;
    }
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let report = checker.check().await;
        if report.health.verdict != Verdict::Healthy {
            bail!("not healthy during the status rounds: {}", report.health);
        }
        took.push(report.took);
    }
    took.sort();
    let p50 = percentile(&took, 50.0);
    let p99 = percentile(&took, 99.0);
    println!(
        "status round, 3 members, mutual TLS, loopback, {rounds} rounds: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p50 < 20 ms: {})",
        ms(p50),
        ms(p99),
        ms(*took.last().unwrap()),
        if p50 < Duration::from_millis(20) {
            "met"
        } else {
            "MISSED"
        }
    );

    // 2. Failover.
    println!(
        "leader SIGKILL, {trials} trials, watch interval {} ms:",
        interval.as_millis()
    );
    let mut elections = Vec::new();
    let mut detections = Vec::new();
    for trial in 1..=trials {
        let report = match checker
            .wait_healthy(Instant::now() + Duration::from_secs(30))
            .await
        {
            Ok(report) => report,
            Err(e) => {
                let logs: Vec<String> = (0..cluster.len())
                    .map(|i| format!("{}:\n{}", cluster.member_name(i), cluster.log_tail(i, 8)))
                    .collect();
                bail!("trial {trial}: {e}\n{}", logs.join("\n"));
            }
        };
        let old = report.health.leader_id.context("a leader")?;
        let old_term = report.members[0].raft_term;
        let victim = report
            .members
            .iter()
            .position(|m| m.is_leader())
            .context("leader member")?;
        let mut watch = checker.watch(interval);
        watch.next_change().await; // the current state
        let killed_wall = SystemTime::now();
        let killed = Instant::now();
        cluster.kill(victim)?;
        let change = loop {
            let change = tokio::time::timeout(Duration::from_secs(30), watch.next_change())
                .await
                .context("no new leader within 30 s")?;
            let h = &change.report.health;
            if h.verdict == Verdict::Degraded && h.leader_id.is_some_and(|l| l != old) {
                break change;
            }
        };
        let detected = killed.elapsed();
        let new = change.report.health.leader_id.unwrap();
        let new_index = change
            .report
            .members
            .iter()
            .position(|m| m.is_leader())
            .context("new leader member")?;
        let elected_at = became_leader_at(&cluster, new_index, new, old_term)
            .with_context(|| format!("no `became leader` line of {new:016x} in its log"))?;
        let election = elected_at
            .duration_since(killed_wall)
            .unwrap_or(Duration::ZERO);
        println!(
            "  trial {trial}: etcd elected {new:016x} after {:.0} ms; the watch named it after {:.0} ms ({:.2}x)",
            ms(election),
            ms(detected),
            detected.as_secs_f64() / election.as_secs_f64().max(1e-3)
        );
        elections.push(election);
        detections.push(detected);
        cluster.restart(victim)?;
    }
    elections.sort();
    detections.sort();
    let (e, d) = (percentile(&elections, 50.0), percentile(&detections, 50.0));
    let ratio = d.as_secs_f64() / e.as_secs_f64().max(1e-3);
    println!(
        "  median: etcd re-election {:.0} ms, detection {:.0} ms, ratio {ratio:.2}x (target <= 1.5x: {})",
        ms(e),
        ms(d),
        if ratio <= 1.5 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// When member `index` logged `<id> became leader at term N` with N above
/// `after_term` (zap JSON logs, `"ts":"2026-01-31T12:00:00.123Z"`).
fn became_leader_at(
    cluster: &LocalCluster,
    index: usize,
    id: u64,
    after_term: u64,
) -> Option<SystemTime> {
    let log = std::fs::read_to_string(cluster.log_path(index)).ok()?;
    let needle = format!("{id:x} became leader at term ");
    log.lines().rev().find_map(|line| {
        let msg = line.split(&needle).nth(1)?;
        let term: u64 = msg
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .split('"')
            .next()?
            .parse()
            .ok()?;
        if term <= after_term {
            return None;
        }
        let ts = line.split("\"ts\":\"").nth(1)?.split('"').next()?;
        parse_utc(ts)
    })
}

/// Parses `2026-01-31T12:00:00.123Z` (UTC).
fn parse_utc(ts: &str) -> Option<SystemTime> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos: u32 = format!("{frac:0<9}")[..9].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + s;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
