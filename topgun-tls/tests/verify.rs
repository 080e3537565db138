//! `assess` and `verify_chain` without a network: purposes, and agreement
//! of topgun's RFC 6125 matching with rustls' own name check.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{ServerName, UnixTime};
use topgun_tls::inspect::inspect_pem_or_der;
use topgun_tls::verify::{CheckOptions, ProblemKind, Purpose, assess, verify_chain};
use topgun_tls::{
    CaParams, CertUsage, CertificateAuthority, LeafParams, Roots, San, parse_san_list,
};

#[test]
fn topgun_matching_agrees_with_rustls() {
    let ca = CertificateAuthority::generate(&CaParams::new("ca")).unwrap();
    let sans = parse_san_list("kubernetes,*.example.com,127.0.0.1,::1,0.0.0.0").unwrap();
    let leaf = ca
        .issue(&LeafParams::new("k3s", CertUsage::Server).with_sans(sans.clone()))
        .unwrap();
    let chain = inspect_pem_or_der(leaf.cert_pem.as_bytes()).unwrap();
    let roots = Roots::from_pem_or_der(ca.cert_pem().as_bytes(), "ca").unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(
        roots.store(),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let hosts = [
        "kubernetes",
        "KUBERNETES",
        "kubernetes.default",
        "a.example.com",
        "A.EXAMPLE.COM",
        "a.b.example.com",
        "example.com",
        "xexample.com",
        "127.0.0.1",
        "127.0.0.2",
        "::1",
        "0:0:0:0:0:0:0:1",
        "0.0.0.0",
        "192.168.1.28",
        "localhost",
    ];
    for host in hosts {
        let name = ServerName::try_from(host).unwrap();
        let rustls_says = verifier
            .verify_server_cert(chain[0].der(), &[], &name, &[], UnixTime::now())
            .is_ok();
        let topgun_says = sans.iter().any(|s: &San| s.covers(host));
        assert_eq!(topgun_says, rustls_says, "{host}");
        let a = assess(
            &chain,
            &CheckOptions::new()
                .with_name(host)
                .with_roots(roots.clone()),
        )
        .unwrap();
        assert_eq!(a.covered, Some(rustls_says), "{host}");
        assert_eq!(a.ok, rustls_says, "{host}: {:?}", a.problems);
        assert_eq!(
            a.trust.as_ref().map(|t| t.trusted),
            Some(true),
            "{host}: trust does not depend on the name"
        );
    }
}

#[test]
fn purposes_follow_the_extended_key_usage() {
    let ca = CertificateAuthority::generate(&CaParams::new("ca")).unwrap();
    let roots = Roots::from_pem_or_der(ca.cert_pem().as_bytes(), "ca.crt").unwrap();
    let client = ca
        .issue(&LeafParams::new("admin", CertUsage::Client))
        .unwrap();
    let client = inspect_pem_or_der(client.cert_pem.as_bytes()).unwrap();
    assert_eq!(Purpose::of(&client[0]), Purpose::Client);
    let a = assess(&client, &CheckOptions::new().with_roots(roots.clone())).unwrap();
    assert!(a.ok, "{:?}", a.problems);
    assert_eq!(a.trust.as_ref().unwrap().purpose, Purpose::Client);

    // A client certificate is no server certificate.
    let v = verify_chain(&client, &roots, Purpose::Server).unwrap();
    assert!(!v.trusted);
    assert!(
        v.error
            .as_deref()
            .unwrap()
            .contains("not for this purpose (extended key usages: clientAuth)"),
        "{v:?}"
    );

    let peer = ca
        .issue(
            &LeafParams::new("etcd-0", CertUsage::Peer)
                .with_sans(parse_san_list("etcd-0").unwrap()),
        )
        .unwrap();
    let peer = inspect_pem_or_der(peer.cert_pem.as_bytes()).unwrap();
    for purpose in [Purpose::Server, Purpose::Client] {
        assert!(
            verify_chain(&peer, &roots, purpose).unwrap().trusted,
            "{purpose:?}"
        );
    }
}

#[test]
fn a_leaf_without_sans_is_explained() {
    let ca = CertificateAuthority::generate(&CaParams::new("ca")).unwrap();
    let leaf = ca
        .issue(&LeafParams::new("my-server", CertUsage::Server))
        .unwrap();
    let chain = inspect_pem_or_der(leaf.cert_pem.as_bytes()).unwrap();
    let a = assess(&chain, &CheckOptions::new().with_name("my-server")).unwrap();
    assert_eq!(a.covered, Some(false), "the CN is not a SAN");
    assert_eq!(a.problems[0].kind, ProblemKind::NotCovered);
    assert!(
        a.problems[0]
            .message
            .ends_with("valid for no names (it has no SANs)")
    );
    let d = a.diagnosis.unwrap();
    assert!(
        d.notes[0].contains("no DNS or IP SANs; its subject (CN=my-server) is not used"),
        "{:?}",
        d.notes
    );
    let err = assess(&chain, &CheckOptions::new().with_name("bad name")).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither a DNS name nor an IP address"),
        "{err}"
    );
}
