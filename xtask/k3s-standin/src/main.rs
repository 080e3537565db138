//! `k3s`: a stand-in for the k3s binary, for topgun's tests only.
//!
//! It plays k3s at exactly the interfaces topgun relies on: the command
//! line and environment, the shared cluster CA (bootstrap data in the
//! external etcd, or fetched from the init server), the serving
//! certificate's SANs, the kubeconfig, the readiness log lines, `/readyz`
//! and the slice of the Kubernetes API that `kubectl get nodes` and
//! `kubectl delete node` need, node registration with heartbeats, state
//! kept under the data dir across restarts, and images (`k3s ctr images`,
//! the air-gap images directory, `status.images`). See README.md for what
//! it does not do.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod agent;
mod api;
mod backoff;
mod certs;
mod client;
mod config;
mod crictl;
mod ctr;
mod datastore;
mod images;
mod log;
mod netinfo;
mod nodes;
mod pull;
mod registries;
mod registry;
mod server;
mod token;

use config::Command;

/// The Kubernetes version the stand-in reports (`/version`, node info).
pub const VERSION: &str = "v1.30.6+standin1";
/// What k3s prints in parentheses after its version (a commit there).
pub const COMMIT: &str = concat!("k3s-standin ", env!("CARGO_PKG_VERSION"));

const HELP: &str = "k3s stand-in (topgun tests only): plays k3s at the interfaces topgun relies on.

USAGE:
   k3s server [flags]    run a control-plane node
   k3s agent [flags]     run a worker node (needs --server/K3S_URL and --token/K3S_TOKEN)
   k3s ctr images import|pull|ls|rm ...   the node's images (see k3s ctr --help)
   k3s crictl pull|images ...        pull through registries.yaml, list (see k3s crictl --help)
   k3s --version

FLAGS (others are accepted and ignored):
   --token, -t / K3S_TOKEN, --token-file / K3S_TOKEN_FILE, --server, -s / K3S_URL,
   --node-name / K3S_NODE_NAME, --node-ip, -i, --data-dir, -d / K3S_DATA_DIR,
   --tls-san (repeatable, comma-separated), --cluster-init,
   --datastore-endpoint / K3S_DATASTORE_ENDPOINT, --datastore-cafile / K3S_DATASTORE_CAFILE,
   --datastore-certfile / K3S_DATASTORE_CERTFILE, --datastore-keyfile / K3S_DATASTORE_KEYFILE,
   --https-listen-port, --bind-address, --write-kubeconfig, -o / K3S_KUBECONFIG_OUTPUT,
   --write-kubeconfig-mode / K3S_KUBECONFIG_MODE, --cluster-domain, --service-cidr,
   --private-registry (default /etc/rancher/k3s/registries.yaml), --disable-default-registry-endpoint
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Like k3s's multi-call binary: run as `ctr` (a link named so, as
    // rancher/k3s has in /bin), it is `k3s ctr`.
    let program = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&program).file_name() == Some(std::ffi::OsStr::new("ctr")) {
        std::process::exit(ctr::run(&args, &|k| std::env::var(k).ok()));
    }
    let command = match config::parse(&args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => log::fatal(e),
    };
    match command {
        Command::Version => {
            println!("k3s version {VERSION} ({COMMIT})");
            println!("go version none (the k3s stand-in is written in Rust)");
        }
        Command::Help => print!("{HELP}"),
        Command::Ctr(args) => std::process::exit(ctr::run(&args, &|k| std::env::var(k).ok())),
        Command::Crictl(args) => std::process::exit(crictl::run(&args, &|k| std::env::var(k).ok())),
        Command::NotEmulated(sub) => log::fatal(format!(
            "k3s {sub} is not emulated by the k3s stand-in (only server, agent, ctr images, crictl pull|images and --version are)"
        )),
        Command::Server(cfg) => run(server::run(*cfg)),
        Command::Agent(cfg) => run(agent::run(cfg)),
    }
}

/// Runs `work` until it ends or SIGTERM/SIGINT arrives. As PID 1 in a
/// container the default signal actions do not apply, so both are
/// handled explicitly.
fn run(work: impl std::future::Future<Output = ()>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| log::fatal(format!("starting runtime: {e}")));
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).unwrap_or_else(|e| log::fatal(format!("signals: {e}")));
        let mut int =
            signal(SignalKind::interrupt()).unwrap_or_else(|e| log::fatal(format!("signals: {e}")));
        tokio::select! {
            () = work => {}
            _ = term.recv() => log::info("Received SIGTERM, shutting down"),
            _ = int.recv() => log::info("Received SIGINT, shutting down"),
        }
    });
    // Do not wait for connection tasks: exit promptly.
    std::process::exit(0);
}
