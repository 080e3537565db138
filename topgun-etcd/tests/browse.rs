//! The data side of `topgun etcd browse` against a real etcd: tree levels
//! with counts and sizes, values and their history down to creation, a
//! limit, or compaction.
//!
//! Needs `etcd` and `etcdctl` (Debian's etcd-server and etcd-client:
//! `cargo xtask setup`); without them this test fails and says so.

use std::process::Command;
use std::time::Duration;

use topgun_etcd::browse::Decoded;
use topgun_etcd::local::LocalCluster;
use topgun_etcd::{Checker, EtcdClusterSpec};

#[tokio::test]
async fn tree_values_and_history() {
    let plan = EtcdClusterSpec::new("browse-lib")
        .with_members(1)
        .with_tls(false)
        .with_timing(Duration::from_millis(50), Duration::from_millis(500))
        .plan()
        .unwrap();
    let cluster = LocalCluster::start(&plan)
        .expect("an etcd binary (install etcd-server or set TOPGUN_ETCD_BIN)");
    cluster
        .wait_healthy(Duration::from_secs(20))
        .await
        .expect("etcd starts");
    let checker = Checker::connect(&cluster.endpoints(), &cluster.client_config())
        .await
        .unwrap();

    // More keys than one range page (500), to cross pages.
    for i in 0..1200 {
        checker
            .put(&format!("/registry/events/default/e{i:04}"), "x")
            .await
            .unwrap();
    }
    checker
        .put(
            "/registry/minions/a",
            r#"{"kind":"Node","metadata":{"name":"a"}}"#,
        )
        .await
        .unwrap();
    let mut revisions = Vec::new();
    for v in 1..=4 {
        revisions.push(checker.put("/k", format!("v{v}")).await.unwrap());
    }

    let root = checker.tree("", "", 100).await.unwrap();
    assert_eq!(root.keys, 1202);
    let names: Vec<&str> = root.children.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(names, ["/"]);
    let slash = checker.tree("/", "", 100).await.unwrap();
    let children: Vec<(&str, bool, u64)> = slash
        .children
        .iter()
        .map(|c| (c.path.as_str(), c.leaf, c.keys))
        .collect();
    assert_eq!(children, [("/k", true, 1), ("/registry/", false, 1201)]);
    let levels = checker
        .tree_levels(&["", "/", "/registry/", "/elsewhere/"], "", 100)
        .await
        .unwrap();
    assert_eq!(levels[0], root);
    assert_eq!(levels[1].children, slash.children);
    assert_eq!(levels[2].keys, 1201);
    assert_eq!(levels[3].keys, 0);
    let registry = checker.tree("/registry/", "", 100).await.unwrap();
    let events = &registry.children[0];
    assert_eq!(
        (events.path.as_str(), events.keys),
        ("/registry/events/", 1200)
    );
    assert_eq!(
        events.bytes,
        1200 * ("/registry/events/default/e0000".len() as u64 + 1)
    );
    let limited = checker
        .tree("/registry/events/default/", "", 10)
        .await
        .unwrap();
    assert_eq!((limited.keys, limited.children.len()), (1200, 10));
    assert!(limited.truncated && limited.children[0].leaf);
    let next = checker
        .tree("/registry/events/default/", &limited.children[9].path, 10)
        .await
        .unwrap();
    assert_eq!(next.children[0].path, "/registry/events/default/e0010");

    let node = checker.value("/registry/minions/a", 10).await.unwrap();
    let current = node.current.unwrap();
    assert!(
        matches!(current.decoded, Decoded::Json { object: Some(ref o), .. } if o.kind == "Node")
    );
    assert!(node.history.is_empty());
    assert_eq!(node.history_end, "created");

    let all = checker.value("/k", 10).await.unwrap();
    let texts: Vec<String> = std::iter::once(all.current.as_ref().unwrap())
        .chain(&all.history)
        .map(|r| match &r.decoded {
            Decoded::Text { text } => text.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["v4", "v3", "v2", "v1"]);
    assert_eq!(all.history_end, "created");
    let two = checker.value("/k", 2).await.unwrap();
    assert_eq!((two.history.len(), two.history_end), (2, "limit"));

    // Compact at v3's revision: v3 stays readable, v2 and v1 are gone.
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &cluster.endpoints().join(",")])
        .args(["compact", &revisions[2].to_string()])
        .output()
        .expect("etcdctl (Debian's etcd-client; run `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compacted = checker.value("/k", 10).await.unwrap();
    assert_eq!(compacted.history.len(), 1);
    assert_eq!(compacted.history[0].mod_revision, revisions[2]);
    assert_eq!(compacted.history_end, "compacted");

    assert_eq!(checker.delete("/k").await.unwrap(), 1);
    assert!(checker.value("/k", 10).await.unwrap().current.is_none());
}
