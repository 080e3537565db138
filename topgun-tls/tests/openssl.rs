//! Interoperability with Debian's openssl, a peer nobody here wrote:
//! `openssl verify` accepts what topgun generates, `openssl x509 -text`
//! shows what topgun reports, and `openssl s_server` is inspected like any
//! other server.

mod support;

use std::net::IpAddr;
use std::path::Path;

use support::{OpensslServer, Pki, openssl};
use topgun_tls::endpoint::{ClientIdentity, EndpointOptions, EndpointTarget, inspect_endpoint};
use topgun_tls::inspect::{format_time, inspect_file};
use topgun_tls::verify::{CheckOptions, ProblemKind, assess};
use topgun_tls::{CaParams, CertUsage, CertificateAuthority, LeafParams, Roots, parse_san_list};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The names `openssl x509 -text` lists under Subject Alternative Name.
fn openssl_sans(cert: &Path) -> (Vec<String>, Vec<IpAddr>) {
    let text = openssl(&["x509", "-noout", "-text", "-in", s(cert)]);
    let mut lines = text.lines();
    lines
        .find(|l| l.contains("X509v3 Subject Alternative Name"))
        .expect("openssl shows a SAN extension");
    let line = lines.next().unwrap().trim();
    let mut dns = Vec::new();
    let mut ip = Vec::new();
    for item in line.split(", ") {
        if let Some(d) = item.strip_prefix("DNS:") {
            dns.push(d.to_owned());
        } else if let Some(a) = item.strip_prefix("IP Address:") {
            ip.push(a.parse().unwrap());
        } else {
            panic!("unexpected SAN item {item:?}");
        }
    }
    (dns, ip)
}

fn openssl_field(cert: &Path, flag: &str, prefix: &str) -> String {
    let out = openssl(&[
        "x509",
        "-noout",
        flag,
        "-dateopt",
        "iso_8601",
        "-in",
        s(cert),
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {out}"))
        .trim()
        .to_owned()
}

#[test]
fn generated_certificates_pass_openssl_verify_with_the_right_purposes() {
    let pki = Pki::new("localhost,127.0.0.1");
    let peer = pki
        .ca
        .issue(
            &LeafParams::new("etcd-0", CertUsage::Peer)
                .with_sans(parse_san_list("etcd-0,127.0.0.1").unwrap()),
        )
        .unwrap();
    pki.write("peer.crt", &peer.cert_pem);
    let ca = pki.path("ca.crt");
    let verify = |purpose: &str, cert: &str| {
        std::process::Command::new("openssl")
            .args(["verify", "-CAfile", s(&ca), "-purpose", purpose])
            .arg(pki.path(cert))
            .output()
            .unwrap()
    };
    for (purpose, cert, ok) in [
        ("sslserver", "server.crt", true),
        ("sslclient", "server.crt", false),
        ("sslserver", "peer.crt", true),
        ("sslclient", "peer.crt", true),
        ("sslclient", "client.crt", true),
        ("sslserver", "client.crt", false),
    ] {
        support::require_openssl();
        let out = verify(purpose, cert);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.success(),
            ok,
            "openssl verify -purpose {purpose} {cert}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if ok {
            assert!(stdout.trim_end().ends_with(": OK"), "{stdout}");
        }
    }
}

#[test]
fn openssl_x509_shows_what_topgun_reports() {
    let sans = "localhost,k3d-demo-server-0,*.example.com,127.0.0.1,::1,192.168.1.28,fd00::28";
    let pki = Pki::new(sans);
    let cert = pki.path("server.crt");
    let info = &inspect_file(&cert).unwrap()[0];
    let (dns, ip) = openssl_sans(&cert);
    assert_eq!(info.sans.dns, dns);
    assert_eq!(info.sans.ip, ip);
    assert_eq!(
        dns.len() + ip.len(),
        7,
        "every requested SAN is in the certificate"
    );
    let fingerprint = openssl(&["x509", "-noout", "-fingerprint", "-sha256", "-in", s(&cert)]);
    assert_eq!(
        fingerprint.trim().split_once('=').unwrap().1,
        info.sha256_fingerprint
    );
    let serial = openssl(&["x509", "-noout", "-serial", "-in", s(&cert)]);
    assert_eq!(serial.trim().strip_prefix("serial=").unwrap(), info.serial);
    let iso = |t| format_time(t).replace('T', " ");
    assert_eq!(
        openssl_field(&cert, "-enddate", "notAfter="),
        iso(info.not_after)
    );
    assert_eq!(
        openssl_field(&cert, "-startdate", "notBefore="),
        iso(info.not_before)
    );
    let text = openssl(&["x509", "-noout", "-text", "-in", s(&cert)]);
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");
    assert_eq!(info.extended_key_usage, ["serverAuth"]);
    assert!(text.contains("NIST CURVE: P-256"), "{text}");
    assert_eq!(info.key_algorithm, "ECDSA P-256");
    assert!(
        text.contains("CA:FALSE") || !text.contains("CA:TRUE"),
        "{text}"
    );
    assert!(!info.is_ca);
    let ca_text = openssl(&["x509", "-noout", "-text", "-in", s(&pki.path("ca.crt"))]);
    assert!(ca_text.contains("CA:TRUE"));
    assert!(inspect_file(&pki.path("ca.crt")).unwrap()[0].is_ca);
}

/// A CA and a server certificate made entirely by openssl (RSA), with SANs.
fn openssl_pki(dir: &Path) {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
        "-subj",
        "/CN=openssl-ca",
        "-days",
        "30",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
        "-subj",
        "/O=interop/CN=openssl-server",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:api.example.test,IP:127.0.0.1,IP:::1\n\
         extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("server.crt"),
        "-days",
        "10",
        "-extfile",
        &p("ext.cnf"),
    ]);
}

#[tokio::test]
async fn inspects_an_openssl_made_chain_served_by_openssl() {
    let dir = tempfile::tempdir().unwrap();
    openssl_pki(dir.path());
    let info = &inspect_file(&dir.path().join("server.crt")).unwrap()[0];
    assert_eq!(info.subject, "O=interop, CN=openssl-server");
    assert_eq!(info.issuer, "CN=openssl-ca");
    assert_eq!(info.key_algorithm, "RSA 2048");
    assert_eq!(info.sans.dns, ["api.example.test"]);
    assert_eq!(info.sans.ip.len(), 2);
    assert!((9..=10).contains(&info.days_left), "{}", info.days_left);
    let (dns, ip) = openssl_sans(&dir.path().join("server.crt"));
    assert_eq!((info.sans.dns.clone(), info.sans.ip.clone()), (dns, ip));

    let server = OpensslServer::start(
        &dir.path().join("server.crt"),
        &dir.path().join("server.key"),
        &["-cert_chain", dir.path().join("ca.crt").to_str().unwrap()],
    )
    .expect("openssl s_server");
    let roots = Roots::from_file(&dir.path().join("ca.crt")).unwrap();
    let report = inspect_endpoint(
        &EndpointOptions::new(EndpointTarget::new("api.example.test", 443))
            .with_connect_to(server.addr())
            .with_roots(roots.clone()),
    )
    .await
    .unwrap();
    assert_eq!(report.sni.as_deref(), Some("api.example.test"));
    assert_eq!(report.certificates.len(), 2);
    assert_eq!(report.leaf().sha256_fingerprint, info.sha256_fingerprint);
    assert_eq!(report.certificates[1].subject, "CN=openssl-ca");
    assert!(report.check.ok, "{:?}", report.check.problems);
    assert_eq!(report.check.trust.as_ref().map(|t| t.trusted), Some(true));

    // Same server, a name it does not carry.
    let report = inspect_endpoint(
        &EndpointOptions::new(EndpointTarget::new("127.0.0.1", server.port()))
            .with_name("other.example.test")
            .with_roots(roots),
    )
    .await
    .unwrap();
    assert_eq!(report.check.covered, Some(false));
    assert!(report.check.has(ProblemKind::NotCovered));
}

#[tokio::test]
async fn inspects_a_tls12_only_server() {
    let pki = Pki::new("127.0.0.1");
    let server = OpensslServer::start(
        &pki.path("server.crt"),
        &pki.path("server.key"),
        &["-tls1_2"],
    )
    .expect("openssl s_server");
    let report = inspect_endpoint(
        &EndpointOptions::new(EndpointTarget::new("127.0.0.1", server.port()))
            .with_roots(pki.roots()),
    )
    .await
    .unwrap();
    assert_eq!(report.tls_version.as_deref(), Some("TLSv1.2"));
    assert_eq!(report.certificates.len(), 1, "openssl sent the leaf only");
    assert!(report.check.ok, "{:?}", report.check.problems);
}

#[tokio::test]
async fn openssl_requiring_client_certificates() {
    let pki = Pki::new("127.0.0.1");
    let ca = pki.path("ca.crt");
    let stranger = CertificateAuthority::generate(&CaParams::new("stranger")).unwrap();
    let bad = stranger
        .issue(&LeafParams::new("intruder", CertUsage::Client))
        .unwrap();
    for version in ["-tls1_3", "-tls1_2"] {
        let server = OpensslServer::start(
            &pki.path("server.crt"),
            &pki.path("server.key"),
            &[
                "-Verify",
                "1",
                "-verify_return_error",
                "-CAfile",
                s(&ca),
                version,
            ],
        )
        .expect("openssl s_server");
        let opts = || EndpointOptions::new(EndpointTarget::new("127.0.0.1", server.port()));

        let none = inspect_endpoint(&opts()).await.unwrap();
        assert!(none.client_auth_requested, "{version}");
        assert!(none.handshake_error.is_some(), "{version}: {none:?}");
        // The chain was captured anyway (openssl adds the CA from -CAfile).
        assert_eq!(
            none.leaf().sha256_fingerprint,
            inspect_file(&pki.path("server.crt")).unwrap()[0].sha256_fingerprint,
            "{version}"
        );
        assert!(none.check.ok, "{version}: {:?}", none.check.problems);

        let good = ClientIdentity::from_pem(
            pki.client.cert_pem.as_bytes(),
            pki.client.key_pem.expose().as_bytes(),
            "client",
        )
        .unwrap();
        let accepted = inspect_endpoint(&opts().with_client_identity(good))
            .await
            .unwrap();
        assert!(accepted.client_certificate_sent, "{version}");
        assert_eq!(accepted.handshake_error, None, "{version}");
        assert!(
            accepted.check.ok,
            "{version}: {:?}",
            accepted.check.problems
        );

        let intruder = ClientIdentity::from_pem(
            bad.cert_pem.as_bytes(),
            bad.key_pem.expose().as_bytes(),
            "intruder",
        )
        .unwrap();
        let refused = inspect_endpoint(&opts().with_client_identity(intruder))
            .await
            .unwrap();
        assert!(
            refused.check.has(ProblemKind::ClientCertificateRejected),
            "{version}: {refused:?}"
        );
    }
}

#[test]
fn assess_agrees_with_openssl_verify_on_trust() {
    // A chain openssl made, checked by topgun against the right and a wrong CA.
    let dir = tempfile::tempdir().unwrap();
    openssl_pki(dir.path());
    let chain = inspect_file(&dir.path().join("server.crt")).unwrap();
    let right = Roots::from_file(&dir.path().join("ca.crt")).unwrap();
    let a = assess(
        &chain,
        &CheckOptions::new().with_name("::1").with_roots(right),
    )
    .unwrap();
    assert!(a.ok, "{:?}", a.problems);
    let other = CertificateAuthority::generate(&CaParams::new("openssl-ca")).unwrap();
    let wrong = Roots::from_pem_or_der(other.cert_pem().as_bytes(), "same-name.crt").unwrap();
    let a = assess(&chain, &CheckOptions::new().with_roots(wrong)).unwrap();
    let trust = a.trust.unwrap();
    assert!(!trust.trusted);
    // Same subject, another key: a signature problem, not a missing issuer.
    assert!(
        trust.error.as_deref().unwrap().contains("signature"),
        "{:?}",
        trust.error
    );
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("ca.crt"))
        .arg(dir.path().join("server.crt"))
        .output()
        .unwrap();
    assert!(out.status.success());
}
