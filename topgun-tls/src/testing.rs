//! Helpers for tests and benchmarks (feature `testing`; not for production
//! use).
//!
//! [`OpensslServer`] is Debian's `openssl s_server` on a loopback address
//! (127.0.0.x only), a real TLS peer that is not rustls, stopped when
//! dropped.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Error, Result};

/// How long `s_server` may take to start accepting.
const START_WAIT: Duration = Duration::from_secs(5);
/// How many free ports are tried (another process may take one first).
const START_ATTEMPTS: usize = 5;

/// `openssl s_server` on a loopback address and a free port, serving a
/// certificate and key; killed (and reaped) on drop, also when a test
/// panics.
///
/// It answers handshakes until dropped (`-ign_eof`), and its output is
/// drained so that it never blocks.
#[derive(Debug)]
pub struct OpensslServer {
    addr: SocketAddr,
    child: Child,
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OpensslServer {
    /// Starts `openssl s_server -cert CERT -key KEY` plus `extra` arguments
    /// (e.g. `["-tls1_2"]`, `["-Verify", "1", "-CAfile", ca]`) on
    /// 127.0.0.1 and waits until it accepts connections.
    pub fn start(cert: &Path, key: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_on(Ipv4Addr::LOCALHOST, cert, key, extra)
    }

    /// Like [`OpensslServer::start`], on `ip`, which must be a loopback
    /// address (127.0.0.x): the server never listens beyond this host.
    pub fn start_on(ip: Ipv4Addr, cert: &Path, key: &Path, extra: &[&str]) -> Result<Self> {
        if !ip.is_loopback() {
            return Err(Error::InvalidTarget {
                what: "test server address",
                input: ip.to_string(),
                problem: "is not a loopback address".to_owned(),
                fix: "use 127.0.0.1 (or another 127.0.0.x)".to_owned(),
            });
        }
        for _attempt in 0..START_ATTEMPTS {
            let port = TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .map_err(|source| Error::Network {
                    action: "cannot find a free port on",
                    target: ip.to_string(),
                    source,
                })?
                .port();
            let addr = SocketAddr::from((ip, port));
            let mut child = Command::new("openssl")
                .arg("s_server")
                .args(["-accept", &addr.to_string()])
                .arg("-cert")
                .arg(cert)
                .arg("-key")
                .arg(key)
                .arg("-ign_eof")
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|source| {
                    Error::io(
                        "cannot run (install Debian's openssl, or run `cargo xtask setup`)",
                        "openssl",
                        source,
                    )
                })?;
            let Some(stdout) = child.stdout.take() else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::internal(
                    "openssl s_server's output",
                    std::io::Error::other("stdout was not captured"),
                ));
            };
            let (tx, rx) = std::sync::mpsc::channel();
            // Drain stdout for the server's whole life so that it never
            // blocks on a full pipe; signal its ACCEPT line once.
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if !sent && line.trim() == "ACCEPT" {
                        let _ = tx.send(());
                        sent = true;
                    }
                }
            });
            let server = OpensslServer { addr, child };
            if rx.recv_timeout(START_WAIT).is_ok() {
                return Ok(server);
            }
            // Lost the race for the port, or failed to start: try again
            // (dropping `server` stops this attempt).
        }
        Err(Error::Timeout {
            action: "starting openssl s_server on",
            target: ip.to_string(),
            after: START_WAIT * START_ATTEMPTS as u32,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        let err = OpensslServer::start_on(
            Ipv4Addr::new(10, 0, 0, 1),
            Path::new("c"),
            Path::new("k"),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Input);
        assert!(err.to_string().contains("not a loopback address"), "{err}");
    }
}
