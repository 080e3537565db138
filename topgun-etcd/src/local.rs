//! A runner of an [`EtcdPlan`] as local processes on loopback, for tests and
//! benchmarks.
//!
//! [`LocalCluster::start`] takes a plan (as topgun-core would run it in
//! Docker), rewrites every member's hosts and ports to `127.0.0.1` with free
//! ports, roots every absolute path of the plan (certificates, data
//! directory) in a temporary directory, writes the plan's files there and
//! spawns one `etcd` per member with the plan's own arguments. So a test of a
//! local cluster is a test of the plan.
//!
//! The binary is `$TOPGUN_ETCD_BIN` or `etcd` on `PATH` (Debian's
//! `etcd-server`). Members are killed with SIGKILL by PID on [`LocalCluster::kill`]
//! and on drop, also when a test panics; the temporary directory goes with it.
//! Where util-linux's `setpriv` is on `PATH`, members also get a parent-death
//! signal, so they die even when the test process itself is killed. Linux
//! sends it when the *thread* that started the member ends: call
//! [`LocalCluster::start`] and [`LocalCluster::restart`] from a thread that
//! outlives the cluster (a test's own thread or a tokio worker, not
//! `spawn_blocking`).
//!
//! ```no_run
//! # async fn demo() -> topgun_etcd::Result<()> {
//! use std::time::Duration;
//! use topgun_etcd::{EtcdClusterSpec, local::LocalCluster};
//!
//! let plan = EtcdClusterSpec::new("demo").with_members(3).plan()?;
//! let mut cluster = LocalCluster::start(&plan)?;
//! let report = cluster.wait_healthy(Duration::from_secs(20)).await?;
//! println!("{:?} via {:?}", report.health.verdict, cluster.endpoints());
//! cluster.kill(0)?;
//! # Ok(()) }
//! ```

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use topgun_tls::write::{FileMode, write_file};

use crate::client::{ClientConfig, ClientTls};
use crate::health::{Checker, HealthReport};
use crate::plan::{DatastoreConfig, EtcdPlan};
use crate::{Error, Result};

/// The environment variable that names the etcd binary to run.
pub const ETCD_BIN_ENV: &str = "TOPGUN_ETCD_BIN";

/// Paths of a client certificate, its key and the CA, written by the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// The CA certificate (etcdctl's `--cacert`).
    pub ca: PathBuf,
    /// The client certificate (`--cert`).
    pub cert: PathBuf,
    /// The client key (`--key`), mode 0600.
    pub key: PathBuf,
}

#[derive(Debug)]
struct LocalMember {
    name: String,
    root: PathBuf,
    args: Vec<String>,
    client_url: String,
    peer_url: String,
    log: PathBuf,
    child: Option<Child>,
}

/// A planned etcd cluster running as local processes on 127.0.0.1.
///
/// Every member process is killed (SIGKILL) when this is dropped.
#[derive(Debug)]
pub struct LocalCluster {
    members: Vec<LocalMember>,
    bin: PathBuf,
    setpriv: Option<PathBuf>,
    tls: Option<ClientTls>,
    client_files: Option<ClientFiles>,
    k3s_client_files: Option<ClientFiles>,
    datastore: DatastoreConfig,
    // Last, so the processes are killed before their files go.
    dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Rewrites `plan` for loopback and starts every member. Returns once the
    /// processes are spawned; use [`LocalCluster::wait_healthy`] to wait for
    /// the cluster.
    pub fn start(plan: &EtcdPlan) -> Result<Self> {
        let bin = etcd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("topgun-etcd-")
            .tempdir()
            .map_err(|e| Error::io("cannot create", std::env::temp_dir(), e))?;
        let scheme = if plan.tls { "https" } else { "http" };
        let ports = free_ports(plan.members.len() * 2)?;
        let urls: Vec<(String, String)> = (0..plan.members.len())
            .map(|i| {
                (
                    format!("{scheme}://127.0.0.1:{}", ports[2 * i]),
                    format!("{scheme}://127.0.0.1:{}", ports[2 * i + 1]),
                )
            })
            .collect();
        let peer_by_name: Vec<(&str, &str)> = plan
            .members
            .iter()
            .zip(&urls)
            .map(|(m, (_, peer))| (m.name.as_str(), peer.as_str()))
            .collect();

        let mut members = Vec::with_capacity(plan.members.len());
        for (member, (client_url, peer_url)) in plan.members.iter().zip(&urls) {
            let root = dir.path().join(&member.name);
            std::fs::create_dir_all(&root).map_err(|e| Error::io("cannot create", &root, e))?;
            for file in &member.files {
                let path = rooted(&root, &file.path);
                create_parent(&path)?;
                let mode = if file.contents.is_secret() {
                    FileMode::Secret
                } else {
                    FileMode::Public
                };
                write_file(&path, file.contents.expose(), mode, false)?;
            }
            let args = member.args[1..]
                .iter()
                .map(|arg| rewrite_arg(arg, &root, client_url, peer_url, &peer_by_name))
                .collect::<Result<Vec<_>>>()?;
            members.push(LocalMember {
                name: member.name.clone(),
                log: root.join("etcd.log"),
                root,
                args,
                client_url: client_url.clone(),
                peer_url: peer_url.clone(),
                child: None,
            });
        }

        let client_dir = dir.path().join("client");
        let write_client =
            |name: &str, key: Option<&topgun_tls::CertifiedKey>| -> Result<Option<ClientFiles>> {
                let (Some(ca), Some(key)) = (plan.ca_pem(), key) else {
                    return Ok(None);
                };
                let (cert, keyfile) =
                    topgun_tls::write::write_certified_key(&client_dir, name, key, true)?;
                let ca_path = client_dir.join("ca.crt");
                write_file(&ca_path, ca.as_bytes(), FileMode::Public, true)?;
                Ok(Some(ClientFiles {
                    ca: ca_path,
                    cert,
                    key: keyfile,
                }))
            };
        let client_files = write_client("topgun", plan.topgun_client())?;
        let k3s_client_files = write_client("k3s", plan.k3s_client())?;
        let datastore = DatastoreConfig {
            endpoints: urls.iter().map(|(c, _)| c.clone()).collect(),
            tls: plan.datastore.tls.clone(),
        };
        let mut cluster = LocalCluster {
            members,
            bin,
            setpriv: on_path("setpriv"),
            tls: plan.topgun_client_tls(),
            client_files,
            k3s_client_files,
            datastore,
            dir,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        tracing::debug!(dir = %cluster.dir.path().display(), "local etcd cluster started");
        Ok(cluster)
    }

    /// How many members the cluster has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never, for a valid plan).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client URL (`http(s)://127.0.0.1:<port>`), in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// Member `i`'s peer URL.
    pub fn peer_url(&self, i: usize) -> &str {
        &self.members[i].peer_url
    }

    /// Member `i`'s name, as planned.
    pub fn member_name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Member `i`'s arguments after rewriting (without the binary).
    pub fn args(&self, i: usize) -> &[String] {
        &self.members[i].args
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Member `i`'s log file (stdout and stderr of every run).
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log
    }

    /// The last `lines` lines of member `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// topgun's client TLS (CA and topgun's client certificate); `None`
    /// when the plan has TLS off.
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.tls.clone()
    }

    /// A [`ClientConfig`] for this cluster with topgun's certificate.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            tls: self.client_tls(),
            ..ClientConfig::default()
        }
    }

    /// Paths of topgun's client certificate, key and the CA; `None` without TLS.
    pub fn client_files(&self) -> Option<&ClientFiles> {
        self.client_files.as_ref()
    }

    /// Paths of k3s's client certificate, key and the CA; `None` without TLS.
    pub fn k3s_client_files(&self) -> Option<&ClientFiles> {
        self.k3s_client_files.as_ref()
    }

    /// The plan's datastore settings with the loopback endpoints: what a
    /// k3s (or stand-in) on this machine passes as `--datastore-*`.
    pub fn datastore(&self) -> &DatastoreConfig {
        &self.datastore
    }

    /// Member `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Whether member `i`'s process is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs member `i` and reaps it. A member that is not running is left alone.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let member = &mut self.members[i];
        if let Some(mut child) = member.child.take() {
            let pid = child.id();
            // Child::kill sends SIGKILL on Unix.
            if let Err(e) = child.kill()
                && e.kind() != std::io::ErrorKind::InvalidInput
            {
                member.child = Some(child);
                return Err(Error::Process {
                    member: member.name.clone(),
                    action: "kill",
                    source: e,
                });
            }
            let _ = child.wait();
            tracing::debug!(member = %member.name, pid, "etcd member killed");
        }
        Ok(())
    }

    /// Starts member `i` again with the same arguments, ports and data
    /// (killing it first if it still runs).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.spawn(i)
    }

    /// Waits until the cluster is healthy and accepts writes (see
    /// [`Checker::wait_healthy`]), with topgun's client certificate.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<HealthReport> {
        let checker = Checker::connect(&self.endpoints(), &self.client_config()).await?;
        checker
            .wait_healthy(std::time::Instant::now() + timeout)
            .await
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let member = &mut self.members[i];
        let fail = |source| Error::Process {
            member: member.name.clone(),
            action: "start",
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .map_err(fail)?;
        let log2 = log.try_clone().map_err(fail)?;
        let mut command = match &self.setpriv {
            // Dies with us even when the test process is SIGKILLed. setpriv
            // execs etcd, so the PID stays etcd's.
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--"]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        command
            .args(&member.args)
            .current_dir(&member.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // etcd reads ETCD_* variables as flags and refuses conflicts.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn().map_err(fail)?;
        tracing::debug!(member = %member.name, pid = child.id(), "etcd member started");
        member.child = Some(child);
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.kill(i);
        }
    }
}

/// The etcd binary: `$TOPGUN_ETCD_BIN`, else `etcd` on `PATH`.
pub fn etcd_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(ETCD_BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::EtcdNotFound {
                searched: format!("{ETCD_BIN_ENV}={} does not exist", path.display()),
            })
        };
    }
    on_path("etcd").ok_or_else(|| Error::EtcdNotFound {
        searched: format!("no `etcd` on PATH and {ETCD_BIN_ENV} is not set"),
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `count` distinct free TCP ports on 127.0.0.1, all held until chosen,
/// picked below the kernel's ephemeral range.
///
/// A port from the ephemeral range (what binding port 0 gives) is free
/// only while its member runs: once a member is killed, any outgoing
/// connection on the machine may get that port as its local port, and so
/// may the surviving members' own dials of the dead member (a TCP
/// self-connect: on loopback, a dial of a closed ephemeral port from that
/// same port connects to itself). The restarted member then cannot bind its
/// port and never rejoins. Ports below the range are never handed out that
/// way, so a member's ports stay its own across restarts.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let (low, _) = ephemeral_range();
    // Candidates between 10000 and the range's start; with no room below
    // it (an unusual kernel setting) fall back to ports the kernel picks.
    let (from, to) = (10_000u16, low.saturating_sub(1));
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(count);
    if to > from && usize::from(to - from) > count * 8 {
        let mut tries = 0;
        while listeners.len() < count && tries < count * 200 {
            tries += 1;
            let port = rand::random_range(from..=to);
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                listeners.push(l);
            }
        }
    }
    while listeners.len() < count {
        listeners.push(
            TcpListener::bind("127.0.0.1:0")
                .map_err(|e| Error::io("cannot bind", "127.0.0.1:0", e))?,
        );
    }
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| Error::io("cannot bind", "127.0.0.1:0", e))
        })
        .collect()
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`),
/// Linux's default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// `path` (absolute in the container) inside `root`.
fn rooted(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn create_parent(path: &Path) -> Result<()> {
    let parent = path.parent().expect("rooted paths have a parent");
    std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))
}

/// Rewrites one `--flag=value` argument of the plan for loopback.
fn rewrite_arg(
    arg: &str,
    root: &Path,
    client_url: &str,
    peer_url: &str,
    peers: &[(&str, &str)],
) -> Result<String> {
    let Some((flag, value)) = arg.split_once('=') else {
        return Ok(arg.to_owned());
    };
    let value = match flag {
        "--listen-peer-urls" | "--initial-advertise-peer-urls" => peer_url.to_owned(),
        "--listen-client-urls" | "--advertise-client-urls" => client_url.to_owned(),
        "--initial-cluster" => value
            .split(',')
            .map(|entry| {
                let name = entry.split_once('=').map_or(entry, |(n, _)| n);
                peers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(n, url)| format!("{n}={url}"))
                    .ok_or_else(|| {
                        Error::spec(
                            "members",
                            format!("--initial-cluster names unknown member {name:?}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?
            .join(","),
        _ if value.starts_with('/') => rooted(root, value).to_string_lossy().into_owned(),
        _ => value.to_owned(),
    };
    Ok(format!("{flag}={value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        assert!(low <= high);
        let ports = free_ports(12).unwrap();
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 12, "{ports:?}");
        if low > 20_000 {
            assert!(ports.iter().all(|&p| p < low), "{ports:?} vs {low}");
        }
    }

    #[test]
    fn arguments_are_rewritten_for_loopback() {
        let root = Path::new("/tmp/x/m0");
        let peers = [
            ("m0", "https://127.0.0.1:1001"),
            ("m1", "https://127.0.0.1:1003"),
        ];
        let rw = |a: &str| {
            rewrite_arg(
                a,
                root,
                "https://127.0.0.1:1000",
                "https://127.0.0.1:1001",
                &peers,
            )
            .unwrap()
        };
        assert_eq!(rw("--name=m0"), "--name=m0");
        assert_eq!(
            rw("--listen-peer-urls=https://0.0.0.0:2380"),
            "--listen-peer-urls=https://127.0.0.1:1001"
        );
        assert_eq!(
            rw("--advertise-client-urls=https://m0:2379"),
            "--advertise-client-urls=https://127.0.0.1:1000"
        );
        assert_eq!(
            rw("--initial-cluster=m0=https://m0:2380,m1=https://m1:2380"),
            "--initial-cluster=m0=https://127.0.0.1:1001,m1=https://127.0.0.1:1003"
        );
        assert_eq!(
            rw("--cert-file=/etc/etcd/pki/server.crt"),
            "--cert-file=/tmp/x/m0/etc/etcd/pki/server.crt"
        );
        assert_eq!(rw("--client-cert-auth=true"), "--client-cert-auth=true");
        assert!(
            rewrite_arg(
                "--initial-cluster=zz=https://zz:2380",
                root,
                "a",
                "b",
                &peers
            )
            .is_err()
        );
    }
}
