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

/// Peer traffic is on its own CA: the members form a healthy cluster over
/// peer TLS with certificates from the peer CA, while a client certificate
/// (topgun's, signed by the client CA) is refused on the peer port, and the
/// peer port's certificate is not trusted by the client CA either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_port_refuses_client_certificates() {
    let plan = plan("peerca", 3, true);
    let (cluster, checker) = start(&plan).await;

    // Both directions of peer TLS work: three members, one cluster, a
    // leader, writes committed through raft.
    let report = checker.check().await;
    assert_healthy(&report, 3);
    checker.write_probe().await.expect("writes over peer TLS");
    for i in 0..cluster.len() {
        let args = cluster.args(i);
        assert!(
            args.iter()
                .any(|a| a.starts_with("--peer-trusted-ca-file=") && a.ends_with("/peer-ca.crt")),
            "{args:?}"
        );
    }

    let pki = plan.pki.as_ref().unwrap();
    let client = plan.topgun_client().unwrap();
    let client_identity = (client.cert_pem.as_str(), client.key_pem.expose());
    let peer = &pki.members[1].peer;
    let peer_identity = (peer.cert_pem.as_str(), peer.key_pem.expose());
    let server = &pki.members[1].server;
    let server_identity = (server.cert_pem.as_str(), server.key_pem.expose());

    for i in 0..cluster.len() {
        let peer_url = cluster.peer_url(i);
        let client_url = cluster.endpoint(i);

        // Control: a member's own peer identity reads the peer API.
        let members = https_get(
            peer_url,
            "/members",
            plan.peer_ca_pem().unwrap(),
            peer_identity,
        )
        .await
        .unwrap_or_else(|e| panic!("{peer_url}/members with a peer certificate: {e}"));
        assert!(members.starts_with("HTTP/1.1 200"), "{members}");
        for m in &plan.members {
            assert!(members.contains(&m.name), "{} missing: {members}", m.name);
        }

        // topgun's client certificate with the client CA, as topgun would
        // dial: the handshake fails (the peer port's certificate is not from
        // the client CA).
        let err = https_get(
            peer_url,
            "/members",
            plan.ca_pem().unwrap(),
            client_identity,
        )
        .await
        .expect_err("the peer port answered a client with the client CA");
        assert!(err.contains("UnknownIssuer"), "{peer_url}: {err}");

        // Even trusting the peer CA, the member refuses the client
        // certificate: it is not signed by the peer CA.
        let err = https_get(
            peer_url,
            "/members",
            plan.peer_ca_pem().unwrap(),
            client_identity,
        )
        .await
        .expect_err("the peer port accepted topgun's client certificate");
        assert!(
            err.contains("AlertReceived(BadCertificate)"),
            "{peer_url}: {err}"
        );
        // So is k3s's, and a member's client-port (server) certificate,
        // which the client CA signed.
        let k3s = plan.k3s_client().unwrap();
        for identity in [
            (k3s.cert_pem.as_str(), k3s.key_pem.expose()),
            server_identity,
        ] {
            let err = https_get(peer_url, "/members", plan.peer_ca_pem().unwrap(), identity)
                .await
                .expect_err("the peer port accepted a certificate of the client CA");
            assert!(
                err.contains("AlertReceived(BadCertificate)"),
                "{peer_url}: {err}"
            );
        }

        // The client port is unchanged: the client CA and topgun's
        // certificate (etcd's HTTP API answers /version there).
        let version = https_get(
            client_url,
            "/version",
            plan.ca_pem().unwrap(),
            client_identity,
        )
        .await
        .unwrap_or_else(|e| panic!("{client_url}/version: {e}"));
        assert!(version.starts_with("HTTP/1.1 200"), "{version}");
        // And the client port does not take a peer certificate.
        let err = https_get(
            client_url,
            "/version",
            plan.ca_pem().unwrap(),
            peer_identity,
        )
        .await
        .expect_err("the client port accepted a peer certificate");
        assert!(
            err.contains("AlertReceived(BadCertificate)"),
            "{client_url}: {err}"
        );
    }
}

/// The control for the test above: with one CA for everything (topgun's PKI
/// before the peer CA), the peer port answers `/members` to topgun's client
/// certificate. So the refusal above is the peer CA's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_single_ca_the_peer_port_answers_clients() {
    let spec = EtcdClusterSpec::new("oneca")
        .with_members(1)
        .with_timing(HEARTBEAT, ELECTION);
    let mut pki = topgun_etcd::EtcdPki::generate(&spec).unwrap();
    pki.peer_ca = pki.ca.clone();
    for m in &mut pki.members {
        m.peer = m.server.clone();
    }
    let plan = topgun_etcd::plan_with_pki(&spec, Some(pki)).unwrap();
    let (cluster, _checker) = start(&plan).await;
    let client = plan.topgun_client().unwrap();
    let members = https_get(
        cluster.peer_url(0),
        "/members",
        plan.ca_pem().unwrap(),
        (client.cert_pem.as_str(), client.key_pem.expose()),
    )
    .await
    .expect("one CA: the peer port answers a client certificate");
    assert!(members.starts_with("HTTP/1.1 200"), "{members}");
    assert!(members.contains("topgun-oneca-etcd-0"), "{members}");
}

/// One HTTP/1.1 GET over TLS (ring, TLS 1.2/1.3) to `url` (an
/// `https://127.0.0.1:port` URL), trusting only `ca_pem` and presenting
/// `identity`. The response's head and body, or why there is none. Every
/// step has a deadline.
async fn https_get(
    url: &str,
    path: &str,
    ca_pem: &str,
    identity: (&str, &str),
) -> Result<String, String> {
    use std::sync::Arc;

    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use topgun_tls::{ClientCert, ClientIdentity, ServerTrust, client_config, verify::Roots};

    let authority = url.strip_prefix("https://").expect("an https URL");
    let roots = Roots::from_pem_or_der(ca_pem.as_bytes(), "the CA").unwrap();
    let identity =
        ClientIdentity::from_pem(identity.0.as_bytes(), identity.1.as_bytes(), "client").unwrap();
    let config =
        client_config(ServerTrust::Roots(&roots), ClientCert::Identity(&identity)).unwrap();
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e:?}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e:?}"))?;
        // Until the server closes, or says nothing more for a second.
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
                // A response, then a close without close_notify.
                Ok(Err(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() =>
                {
                    break;
                }
                Ok(Err(e)) => return Err(format!("read: {e:?}")),
                Err(_) if !response.is_empty() => break,
                Err(_) => return Err("no response within 1 s".to_owned()),
            }
        }
        if response.is_empty() {
            return Err("closed without a response".to_owned());
        }
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
}
