//! `topgun etcd`: status and verdict of an etcd cluster, a key lister, and
//! a web UI (`browse`).

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;
use topgun_core::{Cluster, EtcdAccess};
use topgun_etcd::{Checker, ClientConfig, ClientTls, HealthReport, WriteProbe};
use topgun_etcd::{HealthChange, KeyListing, hex_id};

use super::{EXIT_FAILURE, EXIT_SUCCESS, Failed};
use crate::cli::etcd::{ConnectArgs, EtcdArgs, EtcdCommand, KeysArgs, StatusArgs};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

mod browse;

/// Runs `topgun etcd`.
pub async fn run(args: EtcdArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        EtcdCommand::Status(args) => status(args).await,
        EtcdCommand::Keys(args) => keys(args).await,
        EtcdCommand::Browse(args) => {
            let (checker, access) = connect_with_access(&args.connect).await?;
            let members = access.map(|a| browse::ClusterMembers {
                members: a.members,
                states: a.states,
            });
            browse::run(args, checker, members, global.quiet).await
        }
    }
}

/// The etcd of a topgun cluster: its members (found through Docker) and
/// topgun's client certificate, read back from a member.
async fn cluster_access(name: &str) -> anyhow::Result<EtcdAccess> {
    let docker = topgun_core::connect().await?;
    Ok(Cluster::named(docker, name).etcd_access().await?)
}

/// Builds one client per member. Bad endpoints or unreadable certificate
/// files are usage errors (exit 2), found before any connection.
async fn connect(args: &ConnectArgs) -> anyhow::Result<Checker> {
    Ok(connect_with_access(args).await?.0)
}

/// [`connect`], and for a cluster by name also what Docker said about its
/// members (stopped ones have no endpoint).
async fn connect_with_access(args: &ConnectArgs) -> anyhow::Result<(Checker, Option<EtcdAccess>)> {
    if let Some(name) = &args.cluster {
        let access = cluster_access(name).await?;
        let config = ClientConfig::with_tls(access.tls.clone()).timeout(args.timeout);
        let endpoints = access.endpoints();
        if endpoints.is_empty() {
            return Err(Failed(anyhow::anyhow!("no etcd member of {name} is running")).into());
        }
        return Ok((Checker::connect(&endpoints, &config).await?, Some(access)));
    }
    let tls = match &args.cacert {
        Some(ca) => Some(ClientTls::from_files(
            ca,
            args.cert.as_deref(),
            args.key.as_deref(),
        )?),
        None => None,
    };
    let config = ClientConfig {
        tls,
        timeout: args.timeout,
    };
    Ok((Checker::connect(&args.endpoints, &config).await?, None))
}

/// The JSON of one status round (see docs/json-output.md).
#[derive(Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    report: &'a HealthReport,
    probe: Option<ProbeJson>,
}

/// The write probe's outcome in JSON.
#[derive(Serialize)]
struct ProbeJson {
    ok: bool,
    endpoint: Option<String>,
    latency_ms: Option<f64>,
    error: Option<String>,
}

impl ProbeJson {
    fn new(probe: &topgun_etcd::Result<WriteProbe>) -> Self {
        match probe {
            Ok(p) => ProbeJson {
                ok: true,
                endpoint: Some(p.endpoint.clone()),
                latency_ms: Some(ms(p.latency)),
                error: None,
            },
            Err(e) => ProbeJson {
                ok: false,
                endpoint: None,
                latency_ms: None,
                error: Some(e.to_string()),
            },
        }
    }
}

/// One line of `status --watch -o json`.
#[derive(Serialize)]
struct ChangeJson<'a> {
    elapsed_ms: f64,
    previous_verdict: Option<topgun_etcd::Verdict>,
    previous_leader: Option<String>,
    #[serde(flatten)]
    status: StatusJson<'a>,
}

/// `topgun etcd status CLUSTER -o json`: the fields of `status -o json`,
/// plus the members' container names and the leader's.
#[derive(Serialize)]
struct ClusterStatusJson<'a> {
    cluster: &'a str,
    #[serde(flatten)]
    status: StatusJson<'a>,
    names: Vec<&'a str>,
    leader: Option<&'a str>,
}

/// `topgun etcd status CLUSTER`: every member of the cluster counts, and a
/// stopped one as unreachable, so a killed member shows as `degraded`.
async fn cluster_status(name: &str, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let access = cluster_access(name).await?;
    let mut previous: Option<(topgun_etcd::Verdict, Option<String>)> = None;
    let started = Instant::now();
    loop {
        let round = Instant::now();
        let (health, members) = access.health().await?;
        let report = HealthReport {
            members,
            health,
            took: round.elapsed(),
        };
        let probe = if args.probe {
            let config = ClientConfig::with_tls(access.tls.clone()).timeout(args.connect.timeout);
            Some(match Checker::connect(&access.endpoints(), &config).await {
                Ok(checker) => checker.write_probe().await,
                Err(e) => Err(e),
            })
        } else {
            None
        };
        let names: Vec<&str> = access.members.iter().map(|(n, _)| n.as_str()).collect();
        let leader = report
            .members
            .iter()
            .zip(&names)
            .find(|(m, _)| m.is_leader())
            .map(|(_, n)| *n);
        let key = (report.health.verdict, leader.map(str::to_owned));
        if previous.as_ref() != Some(&key) {
            match args.output {
                OutputFormat::Json => {
                    let json = ClusterStatusJson {
                        cluster: name,
                        status: StatusJson {
                            report: &report,
                            probe: probe.as_ref().map(ProbeJson::new),
                        },
                        names: names.clone(),
                        leader,
                    };
                    if args.watch {
                        output::result(&serde_json::to_string(&json)?);
                    } else {
                        output::json(&json)?;
                    }
                }
                OutputFormat::Text => {
                    if args.watch {
                        output::result(&format!("[+{:.1}s]", started.elapsed().as_secs_f64()));
                    }
                    let rows: Vec<String> = names
                        .iter()
                        .zip(&report.members)
                        .map(|(n, m)| format!("{n} = {}", m.endpoint))
                        .collect();
                    output::result(&render_status(&report, probe.as_ref()));
                    output::result(&format!("members: {}", rows.join(", ")));
                    if let Some(leader) = leader {
                        output::result(&format!("leader: {leader}"));
                    }
                }
            }
        }
        let code = exit_code(&report, probe.as_ref());
        if !args.watch {
            return Ok(code);
        }
        previous = Some(key);
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(code),
        }
    }
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = args.connect.cluster.clone() {
        return cluster_status(&name, &args).await;
    }
    let checker = connect(&args.connect).await?;
    if !args.watch {
        let report = checker.check().await;
        let probe = if args.probe {
            Some(checker.write_probe().await)
        } else {
            None
        };
        match args.output {
            OutputFormat::Json => output::json(&StatusJson {
                report: &report,
                probe: probe.as_ref().map(ProbeJson::new),
            })?,
            OutputFormat::Text => output::result(&render_status(&report, probe.as_ref())),
        }
        return Ok(exit_code(&report, probe.as_ref()));
    }

    let started = Instant::now();
    let mut watch = checker.watch(args.interval);
    let mut code = ExitCode::from(EXIT_FAILURE);
    loop {
        let change = tokio::select! {
            change = watch.next_change() => change,
            _ = tokio::signal::ctrl_c() => break,
        };
        let probe = if args.probe {
            Some(checker.write_probe().await)
        } else {
            None
        };
        code = exit_code(&change.report, probe.as_ref());
        let elapsed = started.elapsed();
        match args.output {
            OutputFormat::Json => output::result(&serde_json::to_string(&ChangeJson {
                elapsed_ms: ms(elapsed),
                previous_verdict: change.previous_verdict,
                previous_leader: change.previous_leader.map(hex_id),
                status: StatusJson {
                    report: &change.report,
                    probe: probe.as_ref().map(ProbeJson::new),
                },
            })?),
            OutputFormat::Text => {
                output::result(&format!(
                    "[+{:.1}s] {}",
                    elapsed.as_secs_f64(),
                    describe_change(&change)
                ));
                output::result(&render_status(&change.report, probe.as_ref()));
                output::result("");
            }
        }
    }
    Ok(code)
}

fn exit_code(report: &HealthReport, probe: Option<&topgun_etcd::Result<WriteProbe>>) -> ExitCode {
    let probe_ok = probe.is_none_or(|p| p.is_ok());
    if report.health.is_healthy() && probe_ok {
        ExitCode::from(EXIT_SUCCESS)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn describe_change(change: &HealthChange) -> String {
    let now = &change.report.health;
    let leader = |l: Option<u64>| l.map_or_else(|| "none".to_owned(), hex_id);
    match change.previous_verdict {
        None => format!("watching; {}", now.verdict),
        Some(before) if change.leader_changed() => format!(
            "leader changed: {} -> {} ({} -> {})",
            leader(change.previous_leader),
            leader(now.leader_id),
            before,
            now.verdict
        ),
        Some(before) => format!("verdict changed: {before} -> {}", now.verdict),
    }
}

/// The table, like `etcdctl endpoint status -w table` with the leader
/// marked, then the verdict and its reason on one line.
fn render_status(report: &HealthReport, probe: Option<&topgun_etcd::Result<WriteProbe>>) -> String {
    let header = [
        "ENDPOINT", "ID", "VERSION", "DB SIZE", "LEADER", "LEARNER", "TERM", "INDEX", "APPLIED",
        "LATENCY", "ERRORS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for m in &report.members {
        if m.reachable {
            rows.push(vec![
                m.endpoint.clone(),
                hex_id(m.member_id),
                m.version.clone(),
                human_bytes(m.db_size),
                if m.is_leader() { "*" } else { "" }.to_owned(),
                m.is_learner.to_string(),
                m.raft_term.to_string(),
                m.raft_index.to_string(),
                m.raft_applied_index.to_string(),
                m.latency
                    .map_or_else(String::new, |l| format!("{:.1} ms", ms(l))),
                m.errors.join("; "),
            ]);
        } else {
            let cause = m.error.as_deref().unwrap_or("no answer");
            // The plain-words cause; the library's detail is in the JSON.
            let short = cause.split(" [").next().unwrap_or(cause);
            let mut row = vec![m.endpoint.clone()];
            row.extend(std::iter::repeat_n("-".to_owned(), header.len() - 2));
            row.push(format!("unreachable: {short}"));
            rows.push(row);
        }
    }
    let mut text = table(&rows);
    text.push_str(&format!(
        "\nverdict: {}: {}",
        report.health.verdict, report.health.reason
    ));
    match probe {
        Some(Ok(p)) => text.push_str(&format!(
            "\nwrite probe: ok through {} in {:.1} ms",
            p.endpoint,
            ms(p.latency)
        )),
        Some(Err(e)) => text.push_str(&format!("\nwrite probe: failed: {e}")),
        None => {}
    }
    text
}

async fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let checker = connect(&args.connect).await?;
    let listing = checker
        .list_keys(&args.prefix, args.limit, usize::from(args.depth))
        .await?;
    match args.output {
        OutputFormat::Json => output::json(&listing)?,
        OutputFormat::Text => {
            output::result(&render_keys(&listing));
            if listing.truncated {
                output::hint("raise --limit to list more keys, or narrow --prefix");
            }
        }
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

fn render_keys(listing: &KeyListing) -> String {
    let mut text = String::new();
    for key in &listing.keys {
        text.push_str(&printable(key));
        text.push('\n');
    }
    let under = if listing.prefix.is_empty() {
        "in etcd".to_owned()
    } else {
        format!("under {:?}", listing.prefix)
    };
    text.push_str(&format!("{} key(s) {under}", listing.total));
    if listing.truncated {
        text.push_str(&format!(", the first {} listed", listing.keys.len()));
    }
    if !listing.prefixes.is_empty() {
        let mut rows = vec![vec!["PREFIX".to_owned(), "KEYS".to_owned()]];
        rows.extend(
            listing
                .prefixes
                .iter()
                .map(|p| vec![printable(&p.prefix), p.count.to_string()]),
        );
        text.push_str("\n\n");
        text.push_str(&table(&rows));
    }
    text
}

/// Keys may hold any bytes: escape control characters.
fn printable(key: &str) -> String {
    key.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Left-aligned columns, two spaces apart, no trailing spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let line = row
                .iter()
                .enumerate()
                .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
                .collect::<Vec<_>>()
                .join("  ");
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sizes as etcdctl prints them: 20 kB, 1.2 MB.
fn human_bytes(bytes: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", units[unit])
    } else {
        format!("{value:.0} {}", units[unit])
    }
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), "".to_owned()],
            vec!["ccc".to_owned(), "d".to_owned(), "".to_owned()],
        ];
        assert_eq!(table(&rows), "A    BB\nccc  d");
    }

    #[test]
    fn keys_are_printable() {
        assert_eq!(printable("/a\nb"), "/a\\nb");
    }
}
