//! Whose problem each error is ([`ErrorKind`]) and the causes it keeps
//! (`source()`), against a real closed port (no etcd needed), and the
//! member limit, refused before anything is generated or started.

use std::error::Error as _;
use std::time::Duration;

use topgun_etcd::{
    Checker, ClientConfig, ClientTls, Error, ErrorKind, EtcdClusterSpec, MAX_MEMBERS, SpecWarning,
};

fn assert_send_sync<T: Send + Sync + 'static>() {}

#[test]
fn the_error_can_cross_threads() {
    assert_send_sync::<Error>();
}

#[test]
fn the_member_limit_is_refused_before_any_io() {
    // `plan` would generate certificates; `local::LocalCluster::start`
    // would start processes; neither gets that far.
    for members in [MAX_MEMBERS + 1, 9] {
        let spec = EtcdClusterSpec::new("limit").with_members(members);
        let err = spec.plan().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidSpec {
                    field: "members",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Input);
        assert!(err.to_string().contains("use 3, 5 or 7"), "{err}");
    }
    let plan = EtcdClusterSpec::new("limit")
        .with_members(MAX_MEMBERS)
        .with_tls(false)
        .plan()
        .unwrap();
    assert_eq!(plan.members.len(), 7);
    assert_eq!(
        EtcdClusterSpec::new("even")
            .with_members(4)
            .validate()
            .unwrap(),
        [SpecWarning::EvenMembers { members: 4 }]
    );
}

#[tokio::test]
async fn input_errors_are_the_users() {
    let err = Checker::connect(&["ftp://m0"], &ClientConfig::plain())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    let err = ClientTls::from_pem("nothing".into(), None)
        .validate()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    // topgun-tls's errors keep their kind: a missing --cacert file.
    let dir = tempfile::tempdir().unwrap();
    let err = ClientTls::from_files(&dir.path().join("missing.crt"), None, None).unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
}

#[tokio::test]
async fn a_dead_member_is_a_failed_operation_with_the_whole_chain() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let checker = Checker::connect(
        &[endpoint.as_str()],
        &ClientConfig::plain().timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let err = checker.write_probe().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failed, "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");

    // NoMemberAnswered → Probe → Request → etcd-client's error → ...
    assert!(matches!(err, Error::NoMemberAnswered { .. }), "{err}");
    let probe = err.source().expect("the member's failure");
    let probe = probe.downcast_ref::<Error>().expect("a topgun-etcd error");
    assert!(matches!(probe, Error::Probe { step: "put", .. }), "{probe}");
    let request = probe.source().expect("the failed request");
    let request = request
        .downcast_ref::<Error>()
        .expect("a topgun-etcd error");
    assert!(
        matches!(request, Error::Request { call: "put", .. }),
        "{request}"
    );
    let client = request.source().expect("etcd-client's error");
    assert!(
        client.downcast_ref::<etcd_client::Error>().is_some(),
        "{client}"
    );
}
