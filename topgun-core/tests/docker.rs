//! Against the real Docker engine, with the local images from
//! `cargo xtask images`: create, status, kubeconfig, delete, and the failure
//! paths that must leave nothing behind. `cargo xtask e2e` is the main Docker
//! suite; this test covers the library's own promises.
//!
//! Images come from `TOPGUN_K3S_IMAGE`, `TOPGUN_ETCD_IMAGE` and
//! `TOPGUN_LB_IMAGE`, or else the newest local images labelled
//! `dev.topgun.image`. Without them the test fails and says how to build them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use topgun_core::bollard::Docker;
use topgun_core::bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListVolumesOptions,
};
use topgun_core::{
    Cluster, ClusterSpec, CreateOptions, Datastore, DeleteOptions, Error, Filtered, K3sArg,
    Timeouts,
};

/// Removes everything labelled with a cluster of this test, even on panic.
struct Cleanup {
    docker: Docker,
    names: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let names = self.names.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for name in names {
                    let options = DeleteOptions::new().keep_kubeconfig(true);
                    let _ = Cluster::named(docker.clone(), &name)
                        .delete_with(&options)
                        .await;
                }
            });
        })
        .join();
    }
}

async fn image(docker: &Docker, env: &str, kind: &str) -> String {
    if let Ok(v) = std::env::var(env)
        && !v.is_empty()
    {
        return v;
    }
    let images = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("dev.topgun.image={kind}")],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap();
    let newest = images
        .iter()
        .max_by_key(|i| i.created)
        .and_then(|i| i.repo_tags.first().cloned());
    newest.unwrap_or_else(|| {
        panic!("no local {kind} image: run `cargo xtask images` (or set {env} to an image on this engine)")
    })
}

/// Counts containers, networks and volumes labelled with cluster `name`.
async fn leftovers(docker: &Docker, name: &str) -> usize {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("dev.topgun.cluster={name}")],
    )]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .unwrap();
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .unwrap();
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default();
    containers.len() + networks.len() + volumes.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_on_docker() {
    let docker = topgun_core::connect()
        .await
        .expect("Docker must be reachable for this test");
    let k3s = image(&docker, "TOPGUN_K3S_IMAGE", "k3s").await;
    let etcd = image(&docker, "TOPGUN_ETCD_IMAGE", "etcd").await;
    let lb = image(&docker, "TOPGUN_LB_IMAGE", "haproxy").await;
    let run = hex::encode(rand::random::<[u8; 3]>());
    let name = |what: &str| format!("core{run}-{what}");
    let cleanup = Cleanup {
        docker: docker.clone(),
        names: ["ha", "noimg", "exit", "port", "slow", "sigint"]
            .iter()
            .map(|w| name(w))
            .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    // The stand-in needs no privileges (this engine refuses them).
    let base = |what: &str| {
        ClusterSpec::builder(&name(what))
            .image(k3s.clone())
            .loadbalancer_image(lb.clone())
            .privileged(Some(false))
    };

    // An HA cluster on etcd: created, healthy, kubeconfig merged and right.
    let spec = base("ha")
        .servers(3)
        .agents(1)
        .datastore(Datastore::Etcd({
            let mut e = topgun_core::EtcdDatastore::default();
            e.image = Some(etcd.clone());
            e
        }))
        .build()
        .unwrap();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = CreateOptions::new()
        .progress(topgun_core::Progress::new(move |e| {
            sink.lock().unwrap().push(e.to_string())
        }))
        .merge_kubeconfig(kubeconfig.clone(), true);
    let cluster = Cluster::create_with(docker.clone(), &spec, &options)
        .await
        .unwrap();
    let created = cluster.created().unwrap();
    assert_eq!(created.nodes.len(), 3 + 3 + 1 + 1);
    assert!(
        created.server.starts_with("https://127.0.0.1:"),
        "{}",
        created.server
    );
    let events = events.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| e.starts_with("etcd members (")),
        "{events:?}"
    );

    let merged = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        merged.contains(&format!("current-context: topgun-{}", name("ha"))),
        "{merged}"
    );
    assert!(merged.contains(&created.server), "{merged}");
    assert!(!merged.contains("0.0.0.0"), "{merged}");

    let status = cluster.status().await.unwrap();
    assert!(status.healthy, "{status:#?}");
    assert_eq!(status.nodes.len(), 8);
    assert!(
        status
            .nodes
            .iter()
            .all(|n| n.state == "running" && n.ip.is_some()),
        "{status:#?}"
    );
    let health = status
        .etcd
        .as_ref()
        .and_then(|e| e.health.as_ref())
        .expect("an etcd verdict");
    assert!(health.is_healthy(), "{health}");
    let backends = status.loadbalancer.clone().unwrap();
    assert_eq!(backends.len(), 3, "{backends:?}");
    assert_eq!(status.api.host_covered, Some(true));

    let listed = Cluster::list(&docker).await.unwrap();
    let summary = listed
        .iter()
        .find(|c| c.name == name("ha"))
        .expect("listed");
    assert_eq!(
        (
            summary.servers.running,
            summary.agents.running,
            summary.etcd.running
        ),
        (3, 1, 3)
    );
    assert_eq!(summary.server.as_deref(), Some(created.server.as_str()));

    // A second create with the same name is refused before anything is made.
    let err = Cluster::create_with(docker.clone(), &spec, &CreateOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ClusterExists { .. }), "{err}");

    // The kubeconfig read back later equals the one create wrote.
    let again = Cluster::named(docker.clone(), &name("ha"))
        .kubeconfig()
        .await
        .unwrap();
    assert_eq!(again.expose(), created.kubeconfig.expose());

    let options = DeleteOptions::new().kubeconfig(kubeconfig.clone());
    let deleted = cluster.delete_with(&options).await.unwrap();
    assert_eq!(deleted.removed.containers.len(), 8);
    assert_eq!(deleted.kubeconfig_entries, [name("ha")]);
    assert!(
        !std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&name("ha"))
    );
    assert_eq!(leftovers(&docker, &name("ha")).await, 0);
    let again = Cluster::named(docker.clone(), &name("ha"))
        .delete_with(&options)
        .await
        .unwrap();
    assert_eq!(again.removed.count(), 0, "a second delete is a no-op");

    // Failures: each fails clearly and leaves nothing labelled behind.
    let spec = base("noimg")
        .image("topgun-missing/k3s:none")
        .build()
        .unwrap();
    let err = Cluster::create_with(docker.clone(), &spec, &CreateOptions::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("topgun-missing/k3s:none")
            && err.to_string().contains("cargo xtask images"),
        "{err}"
    );
    assert_eq!(leftovers(&docker, &name("noimg")).await, 0);

    let mut spec = base("exit").build().unwrap();
    // A datastore endpoint that is not scheme:// makes k3s exit at start
    // (the spec refuses it; the test smuggles it in).
    spec.k3s_args.push(Filtered {
        value: K3sArg("--datastore-endpoint=etcd".to_owned()),
        filter: None,
    });
    let err = Cluster::create_with(docker.clone(), &spec, &CreateOptions::new())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::NodeFailed { .. }), "{text}");
    assert!(
        text.contains(&format!("topgun-{}-server-0", name("exit")))
            && text.contains("last log lines"),
        "{text}"
    );
    assert_eq!(leftovers(&docker, &name("exit")).await, 0);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spec = base("port")
        .api(&format!("127.0.0.1:{port}"))
        .build()
        .unwrap();
    let err = Cluster::create_with(docker.clone(), &spec, &CreateOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PortInUse { port: p, .. } if p == port),
        "{err}"
    );
    assert!(err.to_string().contains(&port.to_string()));
    assert_eq!(leftovers(&docker, &name("port")).await, 0);
    drop(taken);

    let mut timeouts = Timeouts::default();
    timeouts.server = Duration::from_millis(1);
    let spec = base("slow").timeouts(timeouts).build().unwrap();
    let err = Cluster::create_with(docker.clone(), &spec, &CreateOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("topgun-{}-server-0", name("slow"))),
        "{err}"
    );
    assert_eq!(leftovers(&docker, &name("slow")).await, 0);

    let spec = base("sigint").servers(2).build().unwrap();
    let cancel = tokio::time::sleep(Duration::from_millis(400));
    let err = Cluster::create_until(docker.clone(), &spec, &CreateOptions::new(), cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(leftovers(&docker, &name("sigint")).await, 0);

    drop(cleanup);
}
