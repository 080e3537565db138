//! Creates a cluster, shows its status, and deletes it again.
//!
//! ```text
//! cargo run -p topgun-core --example create -- [NAME] [--servers N] [--agents N] [--etcd N] [--keep] [--floor]
//! ```
//!
//! Images come from `TOPGUN_K3S_IMAGE`, `TOPGUN_ETCD_IMAGE` and
//! `TOPGUN_LB_IMAGE` (see `cargo xtask images --print`) or the defaults.
//! Ctrl-C during the create rolls everything back. `--floor` first measures
//! creating and starting the same containers directly (see
//! `topgun_core::testing::floor`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use topgun_core::{Cluster, ClusterSpec, CreateOptions, Datastore};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut name = "example".to_owned();
    let (mut servers, mut agents, mut etcd, mut keep, mut floor) = (1, 0, 0, false, false);
    while let Some(arg) = args.next() {
        let mut number = || -> Result<u32, Box<dyn std::error::Error>> {
            Ok(args.next().ok_or("a number is missing")?.parse()?)
        };
        match arg.as_str() {
            "--servers" => servers = number()?,
            "--agents" => agents = number()?,
            "--etcd" => etcd = number()?,
            "--keep" => keep = true,
            "--floor" => floor = true,
            other => name = other.to_owned(),
        }
    }
    let mut builder = ClusterSpec::builder(&name).servers(servers).agents(agents);
    if etcd > 0 {
        builder = builder.datastore(Datastore::etcd(etcd));
    }
    let spec = builder.build()?;

    let docker = topgun_core::connect().await?;
    if floor {
        let f = topgun_core::testing::floor(&docker, &spec).await?;
        println!(
            "floor: created and started the same containers in {:.2}s (removed in {:.2}s)",
            f.create_and_start.as_secs_f64(),
            f.remove.as_secs_f64()
        );
    }
    let options =
        CreateOptions::new().progress(topgun_core::Progress::new(|event| eprintln!("  {event}")));
    let cancel = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let started = std::time::Instant::now();
    let cluster = Cluster::create_until(docker, &spec, &options, cancel).await?;
    let created = cluster.created().expect("just created");
    println!(
        "created {} in {:.2}s; API at {}",
        created.name,
        started.elapsed().as_secs_f64(),
        created.server
    );

    let status = cluster.status().await?;
    for node in &status.nodes {
        println!(
            "  {:<32} {:<12} {:<8} {}",
            node.name,
            node.role,
            node.state,
            node.ip.as_deref().unwrap_or("-")
        );
    }
    if let Some(etcd) = status.etcd.as_ref().and_then(|e| e.health.as_ref()) {
        println!("  etcd: {etcd}");
    }
    println!(
        "  API ready: {} ({}); healthy: {}",
        status.api.ready, status.api.detail, status.healthy
    );

    if keep {
        println!("kept; delete with `topgun delete {name}`");
    } else {
        let started = std::time::Instant::now();
        let deleted = cluster.delete().await?;
        println!(
            "deleted {} resources in {:.2}s",
            deleted.removed.count(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
