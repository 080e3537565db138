//! Kubeconfig checks against real servers that require a client
//! certificate, and agreement with kubectl itself.

mod support;

use std::path::Path;

use base64::Engine as _;
use support::{ClientAuth, OpensslServer, Pki, RustlsServer};
use time::OffsetDateTime;
use topgun_tls::kubeconfig::{Kubeconfig, KubeconfigCheck, check_kubeconfig};
use topgun_tls::verify::{FixKind, ProblemKind};
use topgun_tls::{CaParams, CertificateAuthority};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// How the cluster entry names its CA.
enum Ca<'a> {
    Data(&'a str),
    File(&'a str),
    None,
}

struct Entry<'a> {
    server: String,
    ca: Ca<'a>,
    tls_server_name: Option<&'a str>,
    insecure: bool,
    client: Option<(&'a str, &'a str)>,
}

impl<'a> Entry<'a> {
    fn new(server: impl Into<String>, pki: &'a Pki) -> Self {
        Entry {
            server: server.into(),
            ca: Ca::Data(pki.ca.cert_pem()),
            tls_server_name: None,
            insecure: false,
            client: Some((&pki.client.cert_pem, pki.client.key_pem.expose())),
        }
    }

    fn yaml(&self) -> String {
        let mut cluster = format!("    server: {}\n", self.server);
        match self.ca {
            Ca::Data(pem) => cluster += &format!("    certificate-authority-data: {}\n", b64(pem)),
            Ca::File(path) => cluster += &format!("    certificate-authority: {path}\n"),
            Ca::None => {}
        }
        if let Some(name) = self.tls_server_name {
            cluster += &format!("    tls-server-name: {name}\n");
        }
        if self.insecure {
            cluster += "    insecure-skip-tls-verify: true\n";
        }
        let user = match self.client {
            Some((cert, key)) => format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(cert),
                b64(key)
            ),
            None => "    token: not-a-real-token\n".to_owned(),
        };
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: k3d-demo\n\
             clusters:\n- name: k3d-demo\n  cluster:\n{cluster}\
             contexts:\n- name: k3d-demo\n  context:\n    cluster: k3d-demo\n    user: admin@k3d-demo\n\
             users:\n- name: admin@k3d-demo\n  user:\n{user}"
        )
    }

    fn write(&self, pki: &Pki, name: &str) -> std::path::PathBuf {
        pki.write(name, &self.yaml())
    }

    async fn check(&self, connect_to: Option<std::net::SocketAddr>) -> KubeconfigCheck {
        let kc = Kubeconfig::from_yaml(&self.yaml()).unwrap();
        check_kubeconfig(&kc, None, connect_to).await.unwrap()
    }
}

#[tokio::test]
async fn the_k3d_case_through_a_kubeconfig() {
    let pki = Pki::new("0.0.0.0,10.43.0.1,127.0.0.1,172.20.0.2");
    let server = RustlsServer::for_pki(&pki, ClientAuth::Required).await;
    let check = Entry::new("https://192.168.1.28:6443", &pki)
        .check(Some(server.addr))
        .await;
    assert_eq!(check.host(), "192.168.1.28");
    assert!(!check.covered && !check.ok);
    assert_eq!(check.trusted, Some(true));
    assert!(check.endpoint.client_certificate_sent);
    assert_eq!(
        check.endpoint.handshake_error, None,
        "the client certificate was accepted"
    );
    assert_eq!(check.certificate_authority, "certificate-authority-data");
    let client = check.client_certificate.as_ref().unwrap();
    assert_eq!(client.subject, "CN=system:admin, O=system:masters");
    let kinds: Vec<ProblemKind> = check.problems().iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::NotCovered]);
    let d = check.diagnosis().unwrap();
    assert_eq!(d.host, "192.168.1.28");
    assert_eq!(d.sans.ip.len(), 4);
    let use_covered = d
        .fixes
        .iter()
        .find(|f| f.kind == FixKind::UseCoveredHost)
        .unwrap();
    assert!(
        use_covered
            .text
            .contains("`kubectl config set-cluster k3d-demo --server=https://127.0.0.1:6443`"),
        "{}",
        use_covered.text
    );
    assert!(d.fixes.iter().any(
        |f| f.kind == FixKind::RecreateWithTlsSan && f.text.contains("--tls-san 192.168.1.28")
    ));
}

#[tokio::test]
async fn tls_server_name_selects_a_covered_dns_name() {
    let pki = Pki::new("kubernetes,127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::Required).await;
    let mut entry = Entry::new("https://192.168.1.28:6443", &pki);
    let check = entry.check(Some(server.addr)).await;
    assert!(!check.ok);
    let fix = check
        .diagnosis()
        .unwrap()
        .fixes
        .iter()
        .find(|f| f.kind == FixKind::SetTlsServerName)
        .unwrap();
    assert!(
        fix.text
            .contains("`kubectl config set-cluster k3d-demo --tls-server-name=kubernetes`"),
        "{}",
        fix.text
    );
    entry.tls_server_name = Some("kubernetes");
    let check = entry.check(Some(server.addr)).await;
    assert!(check.ok, "{:?}", check.problems());
    assert_eq!(check.host(), "kubernetes");
    assert_eq!(check.endpoint.sni.as_deref(), Some("kubernetes"));
    assert_eq!(server.sni_seen(2).await[1].as_deref(), Some("kubernetes"));
}

#[tokio::test]
async fn paths_resolve_against_the_kubeconfig_directory() {
    let pki = Pki::new("127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::Required).await;
    let yaml = format!(
        "current-context: files\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: ca.crt\n\
         contexts:\n- name: files\n  context: {{cluster: c, user: u}}\n- name: other\n  context: {{cluster: c, user: u}}\n\
         users:\n- name: u\n  user:\n    client-certificate: client.crt\n    client-key: client.key\n",
        server.port()
    );
    let path = pki.write("config", &yaml);
    let kc = Kubeconfig::from_path(&path).unwrap();
    let check = check_kubeconfig(&kc, Some("other"), None).await.unwrap();
    assert!(check.ok, "{:?}", check.problems());
    assert_eq!(check.context, "other");
    assert_eq!(
        check.certificate_authority,
        pki.path("ca.crt").display().to_string()
    );
    assert!(check.endpoint.client_certificate_sent);
}

#[tokio::test]
async fn untrusted_and_insecure_entries() {
    let pki = Pki::new("127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::Required).await;
    let url = format!("https://127.0.0.1:{}", server.port());
    let other = CertificateAuthority::generate(&CaParams::new("other-ca")).unwrap();

    let mut entry = Entry::new(url.clone(), &pki);
    entry.ca = Ca::Data(other.cert_pem());
    let check = entry.check(None).await;
    assert_eq!(check.trusted, Some(false));
    assert!(check.covered && !check.ok);
    assert_eq!(check.problems()[0].kind, ProblemKind::Untrusted);

    // insecure-skip-tls-verify: kubectl verifies nothing, so a name that is
    // not covered does not stop it; the check says so and warns.
    let mut entry = Entry::new("https://192.168.1.28:6443", &pki);
    entry.ca = Ca::None;
    entry.insecure = true;
    let check = entry.check(Some(server.addr)).await;
    assert!(check.ok, "{:?}", check.problems());
    assert!(!check.covered);
    assert_eq!(check.trusted, None);
    assert_eq!(check.certificate_authority, "none");
    assert!(
        check
            .warnings
            .iter()
            .any(|w| w.contains("insecure-skip-tls-verify is set"))
    );
    assert!(check.endpoint.check.notes.iter().any(|n| n.starts_with(
        "ignored by kubectl because of insecure-skip-tls-verify: 192.168.1.28 is not covered"
    )));
    // ... but kubectl refuses insecure together with a CA.
    entry.ca = Ca::Data(pki.ca.cert_pem());
    let check = entry.check(Some(server.addr)).await;
    assert!(!check.ok);
    assert_eq!(check.problems()[0].kind, ProblemKind::InsecureWithCa);
}

#[tokio::test]
async fn a_server_requiring_client_certificates_refuses_a_user_without_one() {
    let pki = Pki::new("127.0.0.1");
    // rustls, then openssl s_server -Verify, both TLS 1.3 and 1.2.
    let rustls = RustlsServer::for_pki(&pki, ClientAuth::Required).await;
    let ca = pki.path("ca.crt");
    let ca = ca.to_str().unwrap();
    let openssl13 = OpensslServer::start(
        &pki.path("server.crt"),
        &pki.path("server.key"),
        &["-Verify", "1", "-verify_return_error", "-CAfile", ca],
    )
    .expect("openssl s_server");
    let openssl12 = OpensslServer::start(
        &pki.path("server.crt"),
        &pki.path("server.key"),
        &[
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            ca,
            "-tls1_2",
        ],
    )
    .expect("openssl s_server");
    for addr in [rustls.addr, openssl13.addr(), openssl12.addr()] {
        let mut entry = Entry::new(format!("https://127.0.0.1:{}", addr.port()), &pki);
        let with = entry.check(None).await;
        assert!(with.ok, "{addr}: {:?}", with.problems());
        assert!(with.endpoint.client_certificate_sent, "{addr}");
        entry.client = None;
        let without = entry.check(None).await;
        assert!(!without.ok, "{addr}");
        assert!(without.covered, "{addr}");
        assert_eq!(without.trusted, Some(true), "{addr}");
        assert_eq!(
            without.problems()[0].kind,
            ProblemKind::ClientCertificateRejected,
            "{addr}: {:?}",
            without.problems()
        );
        assert!(
            without.problems()[0]
                .message
                .contains("user \"admin@k3d-demo\" has none"),
            "{:?}",
            without.problems()
        );
    }
}

/// Runs `kubectl get --raw /healthz` with `kubeconfig`, isolated from the
/// user's own configuration.
async fn kubectl_healthz(kubeconfig: &Path, home: &Path) -> (bool, String) {
    // Async, so that the in-process server keeps serving meanwhile.
    let out = tokio::process::Command::new(support::kubectl())
        .args(["--request-timeout", "5s", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["get", "--raw", "/healthz"])
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn kubectl_agrees_with_the_verdict() {
    let pki = Pki::new("kubernetes,127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::Required).await;
    let port = server.port();
    let other = CertificateAuthority::generate(&CaParams::new("other-ca")).unwrap();
    let now = OffsetDateTime::now_utc();
    let expired = Pki::with_server("127.0.0.1", |p| {
        p.with_validity_period(now - time::Duration::days(9), now - time::Duration::days(1))
    });
    let expired_server = RustlsServer::for_pki(&expired, ClientAuth::Required).await;

    let home = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    // (what, entry, kubectl's words when it fails)
    let mut cases: Vec<(&str, Entry<'_>, Option<&str>)> = Vec::new();
    cases.push(("all good", Entry::new(url.clone(), &pki), None));
    cases.push((
        "not covered",
        Entry::new(format!("https://localhost:{port}"), &pki),
        Some("x509: certificate is valid for kubernetes, not localhost"),
    ));
    let mut e = Entry::new(format!("https://localhost:{port}"), &pki);
    e.tls_server_name = Some("kubernetes");
    cases.push(("tls-server-name", e, None));
    let mut e = Entry::new(url.clone(), &pki);
    e.ca = Ca::Data(other.cert_pem());
    cases.push((
        "untrusted",
        e,
        Some("x509: certificate signed by unknown authority"),
    ));
    let mut e = Entry::new(url.clone(), &pki);
    e.client = None;
    cases.push(("no client certificate", e, Some("tls:")));
    let e = Entry::new(
        format!("https://127.0.0.1:{}", expired_server.port()),
        &expired,
    );
    cases.push((
        "expired",
        e,
        Some("x509: certificate has expired or is not yet valid"),
    ));
    let mut e = Entry::new(url.clone(), &pki);
    e.ca = Ca::File("ca.crt");
    e.insecure = true;
    cases.push((
        "insecure with CA",
        e,
        Some("specifying a root certificates file with the insecure flag is not allowed"),
    ));

    for (i, (what, entry, kubectl_error)) in cases.iter().enumerate() {
        let pki_for_files = &pki;
        let path = entry.write(pki_for_files, &format!("kubeconfig-{i}"));
        let kc = Kubeconfig::from_path(&path).unwrap();
        let check = check_kubeconfig(&kc, None, None).await.unwrap();
        let (kubectl_ok, kubectl_out) = kubectl_healthz(&path, home.path()).await;
        assert_eq!(
            check.ok,
            kubectl_ok,
            "{what}: topgun says ok={} ({:?}), kubectl says: {kubectl_out}",
            check.ok,
            check.problems()
        );
        match kubectl_error {
            None => assert_eq!(kubectl_out.trim(), "ok", "{what}"),
            Some(words) => assert!(kubectl_out.contains(words), "{what}: {kubectl_out}"),
        }
    }
}
