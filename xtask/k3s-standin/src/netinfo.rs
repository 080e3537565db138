//! The node's own addresses and hostname.
//!
//! In a container the node IPs are the container's addresses: the local
//! IPv4 addresses in `/proc/net/fib_trie` and the global IPv6 addresses in
//! `/proc/net/if_inet6`, loopback excluded, with the default-route source
//! address first (found by connecting a UDP socket, which sends nothing).
//! A host process uses 127.0.0.1 unless `--node-ip` says otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::Path;

/// Whether this process runs inside a Docker container.
pub fn in_container() -> bool {
    Path::new("/.dockerenv").exists()
}

/// The kernel hostname.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The node IPs: `overrides` if given, else the container's addresses, else
/// 127.0.0.1.
pub fn node_ips(overrides: &[IpAddr]) -> Vec<IpAddr> {
    if !overrides.is_empty() {
        return overrides.to_vec();
    }
    if !in_container() {
        return vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    }
    let mut ips: Vec<IpAddr> = std::fs::read_to_string("/proc/net/fib_trie")
        .map(|t| local_ipv4s(&t).into_iter().map(IpAddr::V4).collect())
        .unwrap_or_default();
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        ips.extend(global_ipv6s(&text).into_iter().map(IpAddr::V6));
    }
    if let Some(primary) = default_route_source()
        && let Some(pos) = ips.iter().position(|ip| *ip == primary)
    {
        ips.remove(pos);
        ips.insert(0, primary);
    }
    if ips.is_empty() {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    ips
}

/// The source address the kernel would use for the default route.
fn default_route_source() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    socket
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

/// The local (`/32 host LOCAL`) IPv4 addresses in a `/proc/net/fib_trie`
/// dump, loopback excluded, in order of first appearance.
pub fn local_ipv4s(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// The global-scope IPv6 addresses in `/proc/net/if_inet6`, loopback and
/// link-local excluded.
pub fn global_ipv6s(if_inet6: &str) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for line in if_inet6.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[3] != "00" || fields[5] == "lo" {
            continue;
        }
        let Ok(bytes) = hex::decode(fields[0]) else {
            continue;
        };
        let Ok(bytes) = <[u8; 16]>::try_from(bytes) else {
            continue;
        };
        let ip = Ipv6Addr::from(bytes);
        if !ip.is_loopback() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.18.0.0/16 2 0 2
        +-- 172.18.0.0/29 2 0 2
           |-- 172.18.0.0
              /16 link UNICAST
           |-- 172.18.0.3
              /32 host LOCAL
        |-- 172.18.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 172.18.0.3
        /32 host LOCAL
";

    #[test]
    fn parses_fib_trie() {
        assert_eq!(
            local_ipv4s(FIB),
            vec!["172.18.0.3".parse::<Ipv4Addr>().unwrap()]
        );
    }

    #[test]
    fn parses_if_inet6() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo
fe80000000000000004200fffeac1203 50 40 20 80     eth0
fd00000000000000000000000000000a 50 40 00 80     eth0
";
        assert_eq!(
            global_ipv6s(text),
            vec!["fd00::a".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn overrides_win() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(node_ips(&[ip]), vec![ip]);
    }
}
