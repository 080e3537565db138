//! End-to-end scenarios for remote engines, on loopback only: an sshd of the
//! scenario's own on 127.0.0.2 (`DOCKER_HOST=ssh://root@127.0.0.2:PORT`,
//! through `docker system dial-stdio`), and a mutual-TLS endpoint (socat) in
//! front of the engine socket on 127.0.0.3 (`DOCKER_TLS_VERIFY`,
//! `DOCKER_CERT_PATH`, and a docker context). Every address is in
//! 127.0.0.0/8; every process started here is killed at the end.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::e2e::{Harness, docker, scratch, stdout_json};

/// The engine socket the fixtures front.
const ENGINE_SOCKET: &str = "/var/run/docker.sock";
const SSH_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const TLS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A child process killed (by its own pid) and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on `ip`.
fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// Waits until something accepts connections on `addr`.
fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("{what} exited ({status}): {err}");
        }
        ensure!(
            Instant::now() < deadline,
            "{what} does not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// An sshd of our own on 127.0.0.2: its own config, host key and
/// authorized key (a throw-away client key), in the foreground.
struct Sshd {
    port: u16,
    /// `ssh -F <config>`: the client side (identity, known host).
    ssh_command: String,
    _process: Killed,
}

impl Sshd {
    fn start(dir: &Path) -> anyhow::Result<Sshd> {
        std::fs::create_dir_all(dir)?;
        let keygen = |file: &str| {
            let path = dir.join(file);
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("pub"));
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "topgun-e2e", "-f"])
                .arg(&path))
        };
        keygen("host_key")?;
        keygen("client_key")?;
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        let port = free_port(SSH_ADDR)?;
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {SSH_ADDR}\nHostKey {host}\n\
                 AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nAllowUsers root\nPidFile {pid}\nLogLevel ERROR\n",
                host = dir.join("host_key").display(),
                auth = dir.join("authorized_keys").display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )?;
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd")?;
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub"))?;
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[{SSH_ADDR}]:{port} {}\n", host_pub.join(" ")),
        )?;
        let client_config = dir.join("ssh_config");
        std::fs::write(
            &client_config,
            format!(
                "Host {SSH_ADDR}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n",
                key = dir.join("client_key").display(),
                known = dir.join("known_hosts").display(),
            ),
        )?;
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting sshd (apt-get install openssh-server)")?;
        wait_listening(SocketAddr::from((SSH_ADDR, port)), &mut child, "sshd")?;
        Ok(Sshd {
            port,
            ssh_command: format!("ssh -F {}", client_config.display()),
            _process: Killed(child),
        })
    }

    fn url(&self) -> String {
        format!("ssh://root@{SSH_ADDR}:{}", self.port)
    }
}

/// Certificates for the TLS endpoint: a CA, the server's (127.0.0.3), a
/// client's; and a second CA the engine does not know.
struct Pki {
    /// ca.pem, cert.pem, key.pem: what DOCKER_CERT_PATH holds.
    good: PathBuf,
    /// Only ca.pem: no client certificate.
    no_client: PathBuf,
    /// ca.pem of another CA, with a valid client certificate.
    wrong_ca: PathBuf,
    /// The server side: ca.crt, server.crt, server.key.
    server: PathBuf,
}

impl Pki {
    fn generate(h: &Harness, dir: &Path) -> anyhow::Result<Pki> {
        let server = dir.join("server");
        let other = dir.join("other");
        for (out, san) in [
            (&server, TLS_ADDR.to_string()),
            (&other, "127.0.0.9".to_owned()),
        ] {
            h.ok_topgun(&[
                "tls",
                "gen",
                "--out",
                &out.to_string_lossy(),
                "--san",
                &san,
                "--force",
            ])?;
        }
        let cert_dir = |name: &str, ca: &Path, client: bool| -> anyhow::Result<PathBuf> {
            let d = dir.join(name);
            std::fs::create_dir_all(&d)?;
            std::fs::copy(ca, d.join("ca.pem"))?;
            if client {
                std::fs::copy(server.join("client.crt"), d.join("cert.pem"))?;
                std::fs::copy(server.join("client.key"), d.join("key.pem"))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    d.join("key.pem"),
                    std::fs::Permissions::from_mode(0o600),
                )?;
            }
            Ok(d)
        };
        Ok(Pki {
            good: cert_dir("good", &server.join("ca.crt"), true)?,
            no_client: cert_dir("no-client", &server.join("ca.crt"), false)?,
            wrong_ca: cert_dir("wrong-ca", &other.join("ca.crt"), true)?,
            server,
        })
    }
}

/// socat on 127.0.0.3: TLS that requires a client certificate signed by
/// our CA, in front of the engine socket.
struct TlsEndpoint {
    port: u16,
    _process: Killed,
}

impl TlsEndpoint {
    fn start(pki: &Pki) -> anyhow::Result<TlsEndpoint> {
        let port = free_port(TLS_ADDR)?;
        let s = &pki.server;
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind={TLS_ADDR},reuseaddr,fork,cert={},key={},cafile={},verify=1",
            s.join("server.crt").display(),
            s.join("server.key").display(),
            s.join("ca.crt").display(),
        );
        let mut child = Command::new("socat")
            .args([listen, format!("UNIX-CONNECT:{ENGINE_SOCKET}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting socat (apt-get install socat)")?;
        wait_listening(SocketAddr::from((TLS_ADDR, port)), &mut child, "socat")?;
        Ok(TlsEndpoint {
            port,
            _process: Killed(child),
        })
    }

    fn url(&self) -> String {
        format!("tcp://{TLS_ADDR}:{}", self.port)
    }
}

/// A unix socket in front of the engine socket that counts HTTP requests
/// (request lines from client to engine): the engine round trips.
struct CountingProxy {
    path: PathBuf,
    requests: Arc<AtomicU64>,
}

impl CountingProxy {
    fn start(path: PathBuf) -> anyhow::Result<CountingProxy> {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(engine) = UnixStream::connect(ENGINE_SOCKET) else {
                    continue;
                };
                let counter = counter.clone();
                let (mut c_read, mut e_write) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    // The tail of the last read, so a marker split across
                    // reads is still seen.
                    let mut tail: Vec<u8> = Vec::new();
                    const MARK: &[u8] = b" HTTP/1.1\r\n";
                    loop {
                        let n = match c_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut seen = tail.clone();
                        seen.extend_from_slice(&buf[..n]);
                        let found = seen.windows(MARK.len()).filter(|w| *w == MARK).count();
                        counter.fetch_add(found as u64, Ordering::Relaxed);
                        let keep = seen.len().min(MARK.len() - 1);
                        tail = seen[seen.len() - keep..].to_vec();
                        if e_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = e_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut e_read, mut c_write) = (engine, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut e_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Ok(CountingProxy { path, requests })
    }

    fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// `topgun status NAME -o json` through `env`; checks it is healthy, the
/// API on `host` and covered, and etcd healthy.
fn check_status(
    h: &Harness,
    env: &[(&str, String)],
    global: &[&str],
    name: &str,
    host: &str,
) -> anyhow::Result<()> {
    let args = |rest: &[&'static str]| {
        let mut a: Vec<&str> = global.to_vec();
        a.extend_from_slice(rest);
        a
    };
    let mut status_args = args(&["status"]);
    status_args.extend([name, "-o", "json"]);
    let out = with_env(h.topgun(&status_args), env).output()?;
    let status = stdout_json(&out)?;
    ensure!(
        status["healthy"] == true,
        "status of {name} is not healthy: {status}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        status["api"]["host"] == host && status["api"]["host_covered"] == true,
        "the API of {name} is not on {host}, covered: {}",
        status["api"]
    );
    ensure!(
        status["etcd"]["verdict"] == "healthy",
        "etcd of {name}: {}",
        status["etcd"]
    );
    let mut etcd_args = args(&["etcd", "status"]);
    etcd_args.push(name);
    let out = with_env(h.topgun(&etcd_args), env).output()?;
    ensure!(
        out.status.success(),
        "etcd status {name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn with_env(mut cmd: Command, env: &[(&str, String)]) -> Command {
    for var in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn ok(mut cmd: Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// The small cluster every remote scenario makes: 1 server, 1 agent, a
/// 1-member etcd.
const SHAPE: &[&str] = &[
    "--servers",
    "1",
    "--agents",
    "1",
    "--datastore",
    "etcd",
    "--etcd-members",
    "1",
];

/// Creates `name` through `env`, checks it from this side (kubectl through
/// the merged kubeconfig, the API on `host` and covered, status and etcd
/// status healthy, the engine label), deletes it and checks nothing is
/// left. Returns how long the create took.
fn full_flow(
    h: &Harness,
    env: &[(&str, String)],
    global: &[&str],
    name: &str,
    host: &str,
    engine_label: &str,
    between: &dyn Fn() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let mut args: Vec<&str> = global.to_vec();
    args.extend(["create", name]);
    args.extend(SHAPE);
    let started = Instant::now();
    ok(with_env(h.topgun(&args), env), "create")?;
    let took = started.elapsed();
    let context = format!("topgun-{name}");
    h.wait_ready_nodes(&context, 2, Duration::from_secs(60))?;
    let server = h.kubectl(&[
        "config",
        "view",
        "-o",
        &format!("jsonpath={{.clusters[?(@.name==\"{context}\")].cluster.server}}"),
    ])?;
    let server = String::from_utf8_lossy(&server.stdout).into_owned();
    ensure!(
        server.starts_with(&format!("https://{host}:")),
        "the merged kubeconfig's server is {server:?}, not on {host}"
    );
    // The certificate covers the host: kubectl verified it above, and so
    // does topgun's own check.
    let addr = server.trim_start_matches("https://").to_owned();
    let kubeconfig = h.kubeconfig_path().to_string_lossy().into_owned();
    ok(
        h.topgun(&[
            "tls",
            "check-kubeconfig",
            "--kubeconfig",
            &kubeconfig,
            "--context",
            &context,
        ]),
        "tls check-kubeconfig",
    )?;
    let inspect = ok(
        h.topgun(&["tls", "inspect", &addr, "--name", host]),
        "tls inspect",
    )?;
    ensure!(
        String::from_utf8_lossy(&inspect.stdout).contains(host),
        "the API certificate does not name {host}"
    );
    check_status(h, env, global, name, host)?;
    between()?;
    // The engine the cluster lives on is recorded.
    let labels = docker(&[
        "inspect",
        &format!("topgun-{name}-server-0"),
        "--format",
        "{{index .Config.Labels \"dev.topgun.engine\"}}",
    ])?;
    let label = String::from_utf8_lossy(&labels.stdout).trim().to_owned();
    ensure!(
        label == engine_label,
        "engine label {label:?}, wanted {engine_label:?}"
    );
    // kubeconfig through the archive API, over the same connection.
    let mut a: Vec<&str> = global.to_vec();
    a.extend(["kubeconfig", "get", name]);
    let got = ok(with_env(h.topgun(&a), env), "kubeconfig get")?;
    ensure!(
        String::from_utf8_lossy(&got.stdout).contains(&server),
        "kubeconfig get does not name {server}"
    );
    let mut a: Vec<&str> = global.to_vec();
    a.extend(["delete", name]);
    ok(with_env(h.topgun(&a), env), "delete")?;
    h.assert_no_resources(name)?;
    Ok(took)
}

/// Over ssh: `DOCKER_HOST=ssh://root@127.0.0.2:PORT`, the API on
/// 127.0.0.2. Also measures, in the same run, a create on the local socket
/// (through a counting proxy: the engine round trips of one create).
pub(super) fn remote_ssh(h: &Harness) -> anyhow::Result<()> {
    let sshd = Sshd::start(&scratch(h, "sshd"))?;
    let ssh_env = vec![
        ("DOCKER_HOST", sshd.url()),
        ("TOPGUN_SSH_COMMAND", sshd.ssh_command.clone()),
    ];
    // A wrong user fails at the ssh layer, before anything exists.
    let nobody = h.cluster_name("ssh-denied");
    let out = with_env(
        h.topgun(&["create", &nobody]),
        &[
            (
                "DOCKER_HOST",
                format!("ssh://nobody@{SSH_ADDR}:{}", sshd.port),
            ),
            ("TOPGUN_SSH_COMMAND", sshd.ssh_command.clone()),
        ],
    )
    .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("ssh authentication"),
        "a refused ssh login is not named: {stderr}"
    );
    h.assert_no_resources(&nobody)?;

    // The local socket, counted.
    let proxy = CountingProxy::start(scratch(h, "count.sock"))?;
    let local = h.cluster_name("local");
    let mut args = vec!["create", local.as_str()];
    args.extend(SHAPE);
    let started = Instant::now();
    ok(
        with_env(h.topgun(&args), &[("DOCKER_HOST", proxy.url())]),
        "local create",
    )?;
    let local_took = started.elapsed();
    let round_trips = proxy.count();
    ok(with_env(h.topgun(&["delete", &local]), &[]), "local delete")?;
    h.assert_no_resources(&local)?;

    let name = h.cluster_name("ssh");
    let ssh_took = full_flow(
        h,
        &ssh_env,
        &[],
        &name,
        &SSH_ADDR.to_string(),
        &sshd.url(),
        &|| Ok(()),
    )?;
    eprintln!(
        "e2e: figures: create (1 server, 1 agent, 1-member etcd): local socket {:.1}s, over ssh \
         {:.1}s; engine round trips (HTTP requests) of one create: {round_trips}",
        local_took.as_secs_f64(),
        ssh_took.as_secs_f64()
    );
    Ok(())
}

/// Over mutual TLS: `DOCKER_HOST=tcp://127.0.0.3:PORT`, `DOCKER_TLS_VERIFY=1`,
/// `DOCKER_CERT_PATH`. Without a client certificate, with a wrong CA, or
/// with a key others can read, the create fails before anything exists and
/// names the TLS problem.
pub(super) fn remote_tls(h: &Harness) -> anyhow::Result<()> {
    let pki = Pki::generate(h, &scratch(h, "tls"))?;
    let endpoint = TlsEndpoint::start(&pki)?;
    let env = |dir: &Path| {
        vec![
            ("DOCKER_HOST", endpoint.url()),
            ("DOCKER_TLS_VERIFY", "1".to_owned()),
            ("DOCKER_CERT_PATH", dir.to_string_lossy().into_owned()),
        ]
    };
    let loose = scratch(h, "tls/loose");
    std::fs::create_dir_all(&loose)?;
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(pki.good.join(f), loose.join(f))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            loose.join("key.pem"),
            std::fs::Permissions::from_mode(0o644),
        )?;
    }
    for (dir, needles) in [
        (&pki.no_client, &["TLS", "client certificate"][..]),
        (
            &pki.wrong_ca,
            &["TLS handshake", "invalid peer certificate"][..],
        ),
        (&loose, &["readable by others", "chmod 600"][..]),
    ] {
        let name = h.cluster_name("tls-refused");
        let out = with_env(h.topgun(&["create", &name]), &env(dir)).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success(),
            "create with {} succeeded",
            dir.display()
        );
        for needle in needles {
            ensure!(
                stderr.contains(needle) && stderr.contains(&endpoint.url()),
                "the error for {} does not name {needle:?} and the endpoint: {stderr}",
                dir.display()
            );
        }
        h.assert_no_resources(&name)?;
    }
    let name = h.cluster_name("tls");
    full_flow(
        h,
        &env(&pki.good),
        &[],
        &name,
        &TLS_ADDR.to_string(),
        &endpoint.url(),
        &|| Ok(()),
    )?;
    Ok(())
}

/// `docker context create` plus `topgun --context NAME`: the same path; and
/// `topgun list --all-contexts` says which context did not answer.
pub(super) fn remote_context(h: &Harness) -> anyhow::Result<()> {
    let pki = Pki::generate(h, &scratch(h, "ctx-tls"))?;
    let endpoint = TlsEndpoint::start(&pki)?;
    // A docker configuration of our own: the user's ~/.docker is untouched.
    let config = scratch(h, "docker-config");
    std::fs::create_dir_all(&config)?;
    let config_env = ("DOCKER_CONFIG", config.to_string_lossy().into_owned());
    let context = format!("topgun-e2e-{}", h.run_id);
    let g = &pki.good;
    run(Command::new("docker")
        .env(config_env.0, &config_env.1)
        .args(["context", "create", &context, "--docker"])
        .arg(format!(
            "host={},ca={},cert={},key={}",
            endpoint.url(),
            g.join("ca.pem").display(),
            g.join("cert.pem").display(),
            g.join("key.pem").display()
        )))?;
    let dead = format!("topgun-e2e-{}-dead", h.run_id);
    let dead_port = free_port(TLS_ADDR)?;
    run(Command::new("docker")
        .env(config_env.0, &config_env.1)
        .args(["context", "create", &dead, "--docker"])
        .arg(format!("host=tcp://{TLS_ADDR}:{dead_port}")))?;
    let env = vec![config_env];
    let name = h.cluster_name("ctx");
    let list_check = || -> anyhow::Result<()> {
        let out = with_env(h.topgun(&["list", "--all-contexts", "-o", "json"]), &env).output()?;
        let listed = stdout_json(&out)?;
        let ours = listed["contexts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["context"] == context.as_str())
            .with_context(|| format!("list --all-contexts has no context {context}: {listed}"))?;
        ensure!(
            ours["clusters"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["name"] == name.as_str())),
            "list --all-contexts does not show {name} in {context}: {listed}"
        );
        ensure!(
            listed["unanswered"]
                .as_array()
                .is_some_and(|u| u.iter().any(|c| c["context"] == dead.as_str())),
            "list --all-contexts does not say {dead} did not answer: {listed}"
        );
        ensure!(
            String::from_utf8_lossy(&out.stderr).contains(&dead),
            "no warning names {dead}"
        );
        Ok(())
    };
    full_flow(
        h,
        &env,
        &["--context", &context],
        &name,
        &TLS_ADDR.to_string(),
        &format!("context:{context}"),
        &list_check,
    )?;
    Ok(())
}
