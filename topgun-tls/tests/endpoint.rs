//! Live endpoint inspection against an in-process rustls server on loopback.

mod support;

use std::time::Duration;

use support::{ClientAuth, Pki, RustlsServer};
use time::OffsetDateTime;
use topgun_tls::endpoint::{ClientIdentity, EndpointOptions, EndpointTarget, inspect_endpoint};
use topgun_tls::verify::{FixKind, ProblemKind};
use topgun_tls::{CaParams, CertificateAuthority, Error, Roots, inspect_pem_or_der};

fn target(port: u16) -> EndpointTarget {
    EndpointTarget::new("127.0.0.1", port)
}

#[tokio::test]
async fn captures_the_presented_chain_without_trusting_it() {
    let pki = Pki::new("localhost,127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::None).await;
    let report = inspect_endpoint(&EndpointOptions::new(target(server.port())))
        .await
        .unwrap();
    let generated = inspect_pem_or_der(pki.server.cert_pem.as_bytes()).unwrap();
    assert_eq!(report.certificates.len(), 2);
    assert_eq!(
        report.leaf().sha256_fingerprint,
        generated[0].sha256_fingerprint
    );
    assert_eq!(report.certificates[1].subject, "CN=topgun-test-ca");
    assert_eq!(report.connected_to, server.addr);
    assert_eq!(report.name, "127.0.0.1");
    assert_eq!(report.sni, None, "no SNI for an IP address");
    assert_eq!(report.tls_version.as_deref(), Some("TLSv1.3"));
    assert!(
        report
            .cipher_suite
            .as_deref()
            .unwrap()
            .starts_with("TLS13_")
    );
    assert!(!report.client_auth_requested);
    assert_eq!(report.check.covered, Some(true));
    assert_eq!(
        report.check.trust, None,
        "no CA given, nothing trusted or distrusted"
    );
    assert!(report.check.ok, "{:?}", report.check.problems);
}

#[tokio::test]
async fn the_k3d_case_is_not_covered_and_names_the_fix() {
    let pki = Pki::with_server("0.0.0.0,10.43.0.1,127.0.0.1,172.20.0.2", |p| p);
    let server = RustlsServer::for_pki(&pki, ClientAuth::None).await;
    let opts = EndpointOptions::new(EndpointTarget::new("192.168.1.28", 6443))
        .with_connect_to(server.addr)
        .with_roots(pki.roots());
    let report = inspect_endpoint(&opts).await.unwrap();
    assert_eq!(
        report.connected_to, server.addr,
        "dialled loopback, not 192.168.1.28"
    );
    assert_eq!(report.name, "192.168.1.28");
    let check = &report.check;
    assert_eq!(check.covered, Some(false));
    assert!(!check.ok);
    assert_eq!(check.trust.as_ref().map(|t| t.trusted), Some(true));
    assert_eq!(check.problems.len(), 1, "{:?}", check.problems);
    assert_eq!(check.problems[0].kind, ProblemKind::NotCovered);
    assert_eq!(
        check.problems[0].message,
        "192.168.1.28 is not covered: the certificate is valid for 0.0.0.0, 10.43.0.1, \
         127.0.0.1, 172.20.0.2"
    );
    let d = check.diagnosis.as_ref().unwrap();
    assert_eq!(d.host, "192.168.1.28");
    assert_eq!(d.sans.ip.len(), 4);
    assert!(d.sans.dns.is_empty());
    let kinds: Vec<FixKind> = d.fixes.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [FixKind::RecreateWithTlsSan, FixKind::UseCoveredHost]
    );
    assert_eq!(d.fixes[0].values, ["192.168.1.28"]);
    assert!(
        d.fixes[0].text.contains("`--tls-san 192.168.1.28`"),
        "{}",
        d.fixes[0].text
    );
    assert_eq!(
        d.fixes[1].values,
        ["127.0.0.1", "10.43.0.1", "172.20.0.2"],
        "reached first"
    );
    assert!(
        d.fixes[1].text.contains("https://127.0.0.1:6443"),
        "{}",
        d.fixes[1].text
    );
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("0.0.0.0 is in the certificate"))
    );
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("tls-server-name cannot help"))
    );
}

#[tokio::test]
async fn name_is_the_sni_and_the_checked_name() {
    let pki = Pki::new("kubernetes,*.example.com,127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::None).await;
    let cases = [
        ("kubernetes", true),
        ("a.example.com", true),
        ("a.b.example.com", false),
        ("example.com", false),
        ("127.0.0.1", true),
    ];
    for (name, covered) in cases {
        let report = inspect_endpoint(
            &EndpointOptions::new(target(server.port()))
                .with_name(name)
                .with_roots(pki.roots()),
        )
        .await
        .unwrap();
        assert_eq!(report.check.covered, Some(covered), "{name}");
        assert_eq!(
            report.check.ok, covered,
            "{name}: {:?}",
            report.check.problems
        );
        // Trust is judged apart from the name.
        assert_eq!(
            report.check.trust.as_ref().map(|t| t.trusted),
            Some(true),
            "{name}"
        );
        let sni = (name != "127.0.0.1").then(|| name.to_owned());
        assert_eq!(report.sni, sni);
    }
    let seen = server.sni_seen(5).await;
    assert_eq!(
        seen,
        [
            Some("kubernetes".to_owned()),
            Some("a.example.com".to_owned()),
            Some("a.b.example.com".to_owned()),
            Some("example.com".to_owned()),
            None
        ]
    );
    let not_covered =
        inspect_endpoint(&EndpointOptions::new(target(server.port())).with_name("a.b.example.com"))
            .await
            .unwrap();
    let d = not_covered.check.diagnosis.unwrap();
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("*.example.com covers exactly one label")),
        "{:?}",
        d.notes
    );
    let fix = d
        .fixes
        .iter()
        .find(|f| f.kind == FixKind::SetTlsServerName)
        .unwrap();
    assert_eq!(fix.values, ["kubernetes"]);
    assert!(fix.text.contains("`--name kubernetes`"), "{}", fix.text);
}

#[tokio::test]
async fn another_ca_is_untrusted() {
    let pki = Pki::new("127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::None).await;
    let other = CertificateAuthority::generate(&CaParams::new("other-ca")).unwrap();
    let roots = Roots::from_pem_or_der(other.cert_pem().as_bytes(), "other.crt").unwrap();
    let report = inspect_endpoint(&EndpointOptions::new(target(server.port())).with_roots(roots))
        .await
        .unwrap();
    let check = &report.check;
    assert_eq!(check.covered, Some(true));
    let trust = check.trust.as_ref().unwrap();
    assert!(!trust.trusted);
    assert_eq!(trust.roots, "other.crt");
    assert!(
        trust
            .error
            .as_deref()
            .unwrap()
            .contains("does not lead to a CA in other.crt"),
        "{trust:?}"
    );
    assert!(check.has(ProblemKind::Untrusted) && !check.ok);
}

#[tokio::test]
async fn an_expired_certificate_is_reported_as_expired_but_trusted() {
    let now = OffsetDateTime::now_utc();
    let pki = Pki::with_server("127.0.0.1", |p| {
        p.with_validity_period(
            now - time::Duration::days(30),
            now - time::Duration::days(2),
        )
    });
    let server = RustlsServer::for_pki(&pki, ClientAuth::None).await;
    let report =
        inspect_endpoint(&EndpointOptions::new(target(server.port())).with_roots(pki.roots()))
            .await
            .unwrap();
    let check = &report.check;
    assert!(check.expired && !check.ok);
    assert_eq!(report.leaf().days_left, -2);
    let kinds: Vec<ProblemKind> = check.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::Expired], "{:?}", check.problems);
    assert!(check.problems[0].message.contains("(2 days ago)"));
    assert_eq!(check.trust.as_ref().map(|t| t.trusted), Some(true));
}

#[tokio::test]
async fn client_certificates_are_presented_when_asked() {
    let pki = Pki::new("127.0.0.1");
    let server = RustlsServer::for_pki(&pki, ClientAuth::Required).await;
    // Without a certificate: the chain is still captured; the refusal is a note.
    let report = inspect_endpoint(&EndpointOptions::new(target(server.port())))
        .await
        .unwrap();
    assert!(report.client_auth_requested && !report.client_certificate_sent);
    assert!(report.handshake_error.is_some());
    assert_eq!(report.certificates.len(), 2);
    assert!(report.check.ok, "{:?}", report.check.problems);
    assert!(report.check.notes[0].starts_with("the server requires a client certificate"));
    // With one: accepted.
    let identity = ClientIdentity::from_pem(
        pki.client.cert_pem.as_bytes(),
        pki.client.key_pem.expose().as_bytes(),
        "test",
    )
    .unwrap();
    let report = inspect_endpoint(
        &EndpointOptions::new(target(server.port())).with_client_identity(identity),
    )
    .await
    .unwrap();
    assert!(report.client_certificate_sent);
    assert_eq!(report.handshake_error, None);
    assert!(report.check.ok);
    // One the server does not trust: refused, and that is a problem.
    let stranger = CertificateAuthority::generate(&CaParams::new("stranger")).unwrap();
    let bad = stranger
        .issue(&topgun_tls::LeafParams::new(
            "x",
            topgun_tls::CertUsage::Client,
        ))
        .unwrap();
    let identity = ClientIdentity::from_pem(
        bad.cert_pem.as_bytes(),
        bad.key_pem.expose().as_bytes(),
        "t",
    )
    .unwrap();
    let report = inspect_endpoint(
        &EndpointOptions::new(target(server.port())).with_client_identity(identity),
    )
    .await
    .unwrap();
    assert!(
        report.check.has(ProblemKind::ClientCertificateRejected),
        "{report:?}"
    );
    assert!(!report.check.ok);
}

#[tokio::test]
async fn network_failures_are_errors_with_deadlines() {
    // Nothing listens.
    let port = support::free_port();
    let err = inspect_endpoint(&EndpointOptions::new(target(port)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err}");
    assert!(
        err.to_string().starts_with("cannot connect to 127.0.0.1:"),
        "{err}"
    );

    // Accepts TCP, never speaks TLS.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let started = std::time::Instant::now();
    let err = inspect_endpoint(
        &EndpointOptions::new(target(addr.port())).with_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out after 300 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();

    // Speaks plain HTTP.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    let answer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        if let Ok((mut c, _)) = plain.accept().await {
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let err = inspect_endpoint(&EndpointOptions::new(target(addr.port())))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    answer.abort();
}
