//! Against real etcd: clusters planned by topgun-etcd, run on loopback by
//! `local::LocalCluster` (the plan's own arguments, ports rewritten).
//!
//! Needs an `etcd` binary (Debian's `etcd-server`, or `TOPGUN_ETCD_BIN`);
//! without one these tests fail with a message saying so.

use std::time::{Duration, Instant};

use topgun_etcd::local::LocalCluster;
use topgun_etcd::{
    Checker, ClientConfig, ClientTls, EtcdClusterSpec, EtcdPlan, HealthReport, Verdict,
};

/// Faster than etcd's defaults (100 ms / 1 s) and still stable on loopback.
const HEARTBEAT: Duration = Duration::from_millis(50);
const ELECTION: Duration = Duration::from_millis(500);
const START: Duration = Duration::from_secs(20);

fn plan(name: &str, members: usize, tls: bool) -> EtcdPlan {
    EtcdClusterSpec::new(name)
        .with_members(members)
        .with_tls(tls)
        .with_timing(HEARTBEAT, ELECTION)
        .plan()
        .expect("plan")
}

async fn start(plan: &EtcdPlan) -> (LocalCluster, Checker) {
    let cluster = LocalCluster::start(plan)
        .expect("an etcd binary (install etcd-server or set TOPGUN_ETCD_BIN)");
    if let Err(e) = cluster.wait_healthy(START).await {
        let logs: Vec<String> = (0..cluster.len())
            .map(|i| {
                format!(
                    "--- {}:\n{}",
                    cluster.member_name(i),
                    cluster.log_tail(i, 15)
                )
            })
            .collect();
        panic!("cluster did not start: {e}\n{}", logs.join("\n"));
    }
    let checker = Checker::connect(&cluster.endpoints(), &cluster.client_config())
        .await
        .expect("checker");
    (cluster, checker)
}

fn index_of(cluster: &LocalCluster, endpoint: &str) -> usize {
    cluster
        .endpoints()
        .iter()
        .position(|e| e == endpoint)
        .expect("known endpoint")
}

async fn wait(
    checker: &Checker,
    within: Duration,
    what: &str,
    f: impl Fn(&HealthReport) -> bool,
) -> HealthReport {
    checker
        .wait_until(Instant::now() + within, f)
        .await
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

fn assert_healthy(report: &HealthReport, members: usize) {
    let h = &report.health;
    assert_eq!(h.verdict, Verdict::Healthy, "{h}");
    assert_eq!((h.members_total, h.members_up), (members, members));
    let leader = h.leader_id.expect("a leader");
    assert!(
        report
            .members
            .iter()
            .all(|m| m.reachable && m.leader_id == leader)
    );
    assert_eq!(report.members.iter().filter(|m| m.is_leader()).count(), 1);
    let cluster_id = report.members[0].cluster_id;
    assert_ne!(cluster_id, 0);
    for m in &report.members {
        assert_eq!(m.cluster_id, cluster_id);
        assert!(m.version.starts_with("3."), "{}", m.version);
        assert!(
            m.raft_term > 0 && m.raft_index > 0 && m.db_size > 0,
            "{m:?}"
        );
        assert!(m.latency.is_some() && m.error.is_none());
    }
    let leader_status = report.members.iter().find(|m| m.is_leader()).unwrap();
    assert_eq!(
        h.leader_endpoint.as_deref(),
        Some(leader_status.endpoint.as_str())
    );
}

/// Healthy → SIGKILL the leader → Degraded with a new leader within 5 s,
/// writes still work → kill a second member → QuorumLost → restart both →
/// Healthy.
async fn lifecycle(name: &str, tls: bool) {
    let plan = plan(name, 3, tls);
    let (mut cluster, checker) = start(&plan).await;
    let scheme = if tls {
        "https://127.0.0.1:"
    } else {
        "http://127.0.0.1:"
    };
    assert!(cluster.endpoints().iter().all(|e| e.starts_with(scheme)));
    assert_eq!(
        cluster
            .args(0)
            .iter()
            .any(|a| a == "--client-cert-auth=true"),
        tls
    );

    let report = checker.check().await;
    assert_healthy(&report, 3);
    let probe = checker.write_probe().await.expect("write probe");
    assert!(probe.key.starts_with("/topgun/health/"));

    let old_leader = report.health.leader_id.unwrap();
    let killed = index_of(&cluster, report.health.leader_endpoint.as_deref().unwrap());
    cluster.kill(killed).unwrap();
    assert!(!cluster.is_running(killed));
    let killed_at = Instant::now();
    let degraded = wait(&checker, Duration::from_secs(5), "a new leader", |r| {
        r.health.verdict == Verdict::Degraded && r.health.leader_id.is_some_and(|l| l != old_leader)
    })
    .await;
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    let h = &degraded.health;
    assert_eq!((h.members_total, h.members_up, h.quorum), (3, 2, 2));
    assert!(h.reason.contains(cluster.endpoint(killed)), "{h}");
    let down = &degraded.members[killed];
    assert!(!down.reachable);
    assert!(
        down.error
            .as_deref()
            .unwrap()
            .contains("connection refused"),
        "{down:?}"
    );
    checker
        .write_probe()
        .await
        .expect("writes work without the old leader");

    let second = (killed + 1) % 3;
    cluster.kill(second).unwrap();
    let lost = wait(&checker, Duration::from_secs(5), "quorum lost", |r| {
        r.health.verdict == Verdict::QuorumLost
    })
    .await;
    assert_eq!((lost.health.members_up, lost.health.quorum), (1, 2));
    assert!(
        lost.health
            .reason
            .contains("1 of 3 members answer, 2 are needed"),
        "{}",
        lost.health
    );
    assert!(
        checker.write_probe().await.is_err(),
        "a single member of three must refuse writes"
    );

    cluster.restart(killed).unwrap();
    cluster.restart(second).unwrap();
    let healthy = checker
        .wait_healthy(Instant::now() + START)
        .await
        .expect("healthy again after restarts");
    assert_healthy(&healthy, 3);
    // The restarted members rejoined the same cluster.
    assert_eq!(
        healthy.members[killed].cluster_id,
        report.members[killed].cluster_id
    );
    assert_eq!(
        healthy.members[killed].member_id,
        report.members[killed].member_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_tls() {
    lifecycle("life-tls", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_without_tls() {
    lifecycle("life-plain", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_and_tls_errors() {
    let plan = plan("single", 1, true);
    let (mut cluster, checker) = start(&plan).await;
    let endpoint = cluster.endpoint(0).to_owned();
    let report = checker.check().await;
    assert_healthy(&report, 1);
    assert!(report.members[0].is_leader());
    checker.write_probe().await.unwrap();

    // A CA that did not sign the server's certificate.
    let other = plan_other_ca();
    let wrong_ca = ClientTls::from_pem(
        other.ca_pem().unwrap().to_owned(),
        Some((
            plan.topgun_client().unwrap().cert_pem.clone(),
            plan.topgun_client().unwrap().key_pem.clone(),
        )),
    );
    let err = probe_error(&endpoint, wrong_ca).await;
    assert!(
        err.contains(&endpoint) && err.contains("not signed by the given CA"),
        "{err}"
    );

    // No client certificate.
    let no_cert = ClientTls::from_pem(plan.ca_pem().unwrap().to_owned(), None);
    let err = probe_error(&endpoint, no_cert).await;
    assert!(
        err.contains(&endpoint) && err.contains("requires a client certificate"),
        "{err}"
    );

    // A client certificate from another CA.
    let foreign = other.topgun_client().unwrap();
    let foreign_cert = ClientTls::from_pem(
        plan.ca_pem().unwrap().to_owned(),
        Some((foreign.cert_pem.clone(), foreign.key_pem.clone())),
    );
    let err = probe_error(&endpoint, foreign_cert).await;
    assert!(
        err.contains(&endpoint) && err.contains("refused our client certificate"),
        "{err}"
    );

    // Plain HTTP against a TLS member.
    let plain = endpoint.replace("https://", "http://");
    let checker_plain = Checker::connect(&[plain.as_str()], &ClientConfig::plain())
        .await
        .unwrap();
    let status = checker_plain.member_status(0).await;
    assert!(!status.reachable && status.error.is_some(), "{status:?}");

    // Keys: what was written is listed and counted by prefix.
    let mut kv = etcd_client_for(&cluster).await;
    for key in [
        "/registry/pods/default/a",
        "/registry/pods/default/b",
        "/registry/services/x",
        "/bootstrap/abc",
    ] {
        kv.put(key, "v", None).await.unwrap();
    }
    let listing = checker.list_keys("/registry/", 1, 2).await.unwrap();
    assert_eq!(listing.total, 3);
    assert_eq!(listing.keys, vec!["/registry/pods/default/a".to_owned()]);
    assert!(listing.truncated);
    let counts: Vec<(&str, u64)> = listing
        .prefixes
        .iter()
        .map(|p| (p.prefix.as_str(), p.count))
        .collect();
    assert_eq!(
        counts,
        vec![("/registry/pods", 2), ("/registry/services", 1)]
    );
    let all = checker.list_keys("", 100, 1).await.unwrap();
    assert_eq!(all.total, 4, "{all:?}");
    assert!(!all.truncated);

    cluster.kill(0).unwrap();
    let lost = wait(&checker, Duration::from_secs(5), "quorum lost", |r| {
        r.health.verdict == Verdict::QuorumLost
    })
    .await;
    assert!(
        lost.health.reason.contains("0 of 1 members answer"),
        "{}",
        lost.health
    );
    cluster.restart(0).unwrap();
    let again = checker.wait_healthy(Instant::now() + START).await.unwrap();
    assert_healthy(&again, 1);

    // Dropping the cluster kills its processes.
    let pid = cluster.pid(0).unwrap();
    let dir = cluster.dir().to_owned();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(cluster);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "etcd {pid} survived the drop"
    );
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_alarm() {
    let plan = EtcdClusterSpec::new("nospace")
        .with_members(1)
        .with_tls(false)
        .with_timing(HEARTBEAT, ELECTION)
        .with_quota_backend_bytes(256 * 1024)
        .plan()
        .unwrap();
    let (cluster, checker) = start(&plan).await;
    let mut kv = etcd_client_for(&cluster).await;
    let value = vec![b'x'; 32 * 1024];
    let mut refused = None;
    for i in 0..200 {
        if let Err(e) = kv.put(format!("/fill/{i}"), value.clone(), None).await {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("etcd never refused a write over its quota");
    assert!(refused.contains("database space exceeded"), "{refused}");
    let report = wait(&checker, Duration::from_secs(5), "the alarm", |r| {
        r.health.verdict == Verdict::Alarmed
    })
    .await;
    assert!(
        report.health.reason.contains("alarm NOSPACE on member"),
        "{}",
        report.health
    );
    assert_eq!(report.members[0].alarms.len(), 1);
    assert!(checker.write_probe().await.is_err());
}

fn plan_other_ca() -> EtcdPlan {
    EtcdClusterSpec::new("other")
        .with_members(1)
        .plan()
        .unwrap()
}

async fn probe_error(endpoint: &str, tls: ClientTls) -> String {
    let config = ClientConfig::with_tls(tls);
    let checker = Checker::connect(&[endpoint], &config).await.unwrap();
    let status = checker.member_status(0).await;
    assert!(!status.reachable);
    let err = checker
        .write_probe()
        .await
        .expect_err("the probe must fail")
        .to_string();
    // The status says the same cause.
    let cause = status.error.unwrap();
    assert!(
        err.contains(
            cause
                .split(" [")
                .next()
                .unwrap()
                .trim_start_matches("status failed: ")
        ),
        "{err} / {cause}"
    );
    err
}

async fn etcd_client_for(cluster: &LocalCluster) -> etcd_client::Client {
    let mut options = etcd_client::ConnectOptions::new();
    if let Some(files) = cluster.client_files() {
        let read = |p| std::fs::read_to_string(p).unwrap();
        options = options.with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&files.ca)))
                .identity(etcd_client::Identity::from_pem(
                    read(&files.cert),
                    read(&files.key),
                )),
        );
    }
    etcd_client::Client::connect(cluster.endpoints(), Some(options))
        .await
        .unwrap()
}
