//! The serving certificate, the admin client certificate and the
//! kubeconfig, as k3s makes them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use topgun_tls::{CertUsage, CertificateAuthority, CertifiedKey, LeafParams, San};

use crate::token::CaPem;

/// The SANs k3s puts on its serving certificate: 127.0.0.1, ::1, the node
/// IPs, the `kubernetes` service IP, localhost, the hostname, the
/// `kubernetes.default...` names, then every `--tls-san`. Duplicates are
/// dropped, order kept.
pub fn serving_sans(
    node_ips: &[IpAddr],
    service_ip: IpAddr,
    hostname: &str,
    cluster_domain: &str,
    tls_sans: &[San],
) -> Vec<San> {
    let mut sans: Vec<San> = vec![
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    sans.extend(node_ips.iter().copied().map(San::Ip));
    sans.push(San::Ip(service_ip));
    let mut names = vec!["localhost".to_owned()];
    names.push(hostname.to_ascii_lowercase());
    names.extend(
        ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    names.push(format!("kubernetes.default.svc.{cluster_domain}"));
    for name in names {
        // A hostname that is not a valid DNS name is skipped, as k3s does.
        if let Ok(san) = topgun_tls::parse_san(&name) {
            sans.push(san);
        }
    }
    sans.extend(tls_sans.iter().cloned());
    let mut out: Vec<San> = Vec::with_capacity(sans.len());
    for san in sans {
        if !out.contains(&san) {
            out.push(san);
        }
    }
    out
}

/// The first address of an IPv4 service CIDR (`10.43.0.0/16` -> 10.43.0.1).
pub fn service_ip(service_cidr: &str) -> Result<IpAddr, String> {
    let first = service_cidr.split(',').next().unwrap_or_default().trim();
    let (base, bits) = first.split_once('/').ok_or_else(|| {
        format!("invalid --service-cidr {service_cidr:?}: expected a CIDR such as 10.43.0.0/16")
    })?;
    let bits: u32 = bits
        .parse()
        .map_err(|_| format!("invalid --service-cidr {service_cidr:?}"))?;
    match base.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if bits < 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            Ok(IpAddr::V4(Ipv4Addr::from((u32::from(v4) & mask) + 1)))
        }
        Ok(IpAddr::V6(v6)) if bits < 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            Ok(IpAddr::V6(Ipv6Addr::from((u128::from(v6) & mask) + 1)))
        }
        _ => Err(format!("invalid --service-cidr {service_cidr:?}")),
    }
}

/// Loads a CA from its PEM pair.
pub fn load_ca(ca: &CaPem) -> anyhow::Result<CertificateAuthority> {
    Ok(CertificateAuthority::from_pem(&ca.cert, &ca.key)?)
}

/// The serving certificate: CN `k3s`, O `k3s`, signed by the server CA.
pub fn serving_cert(
    server_ca: &CertificateAuthority,
    sans: &[San],
) -> anyhow::Result<CertifiedKey> {
    Ok(server_ca.issue(
        &LeafParams::new("k3s", CertUsage::Server)
            .with_organization("k3s")
            .with_sans(sans.iter().cloned()),
    )?)
}

/// The admin client certificate: CN `system:admin`, O `system:masters`.
pub fn admin_cert(client_ca: &CertificateAuthority) -> anyhow::Result<CertifiedKey> {
    Ok(client_ca.issue(
        &LeafParams::new("system:admin", CertUsage::Client).with_organization("system:masters"),
    )?)
}

/// A kubeconfig like the one k3s writes: cluster, context and user all
/// named `default`.
pub fn kubeconfig(server: &str, ca_pem: &str, client: &CertifiedKey) -> String {
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = B64.encode(ca_pem),
        cert = B64.encode(&client.cert_pem),
        key = B64.encode(client.key_pem.expose()),
    )
}

/// The server URL k3s writes into its kubeconfig: the loopback address,
/// or the bind address when one was given.
pub fn kubeconfig_server(bind: Option<IpAddr>, port: u16) -> String {
    match bind {
        Some(IpAddr::V4(v4)) if !v4.is_unspecified() => format!("https://{v4}:{port}"),
        Some(IpAddr::V6(v6)) if !v6.is_unspecified() => format!("https://[{v6}]:{port}"),
        _ => format!("https://127.0.0.1:{port}"),
    }
}

/// Writes `contents` atomically (temporary sibling, fsync, rename) with
/// exactly `mode`, creating the parent directory.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or(std::io::ErrorKind::InvalidInput)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sans_like_k3s() {
        let sans = serving_sans(
            &["172.18.0.3".parse().unwrap()],
            "10.43.0.1".parse().unwrap(),
            "server-0",
            "cluster.local",
            &topgun_tls::parse_san_list("api.example.com,192.168.1.28,localhost").unwrap(),
        );
        let text: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            text,
            [
                "127.0.0.1",
                "::1",
                "172.18.0.3",
                "10.43.0.1",
                "localhost",
                "server-0",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "api.example.com",
                "192.168.1.28",
            ]
        );
    }

    #[test]
    fn service_ips() {
        assert_eq!(service_ip("10.43.0.0/16").unwrap().to_string(), "10.43.0.1");
        assert_eq!(
            service_ip("10.96.0.0/12,fd00::/108").unwrap().to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            service_ip("fd00:43::/112").unwrap().to_string(),
            "fd00:43::1"
        );
        assert!(service_ip("nonsense").is_err());
    }

    #[test]
    fn kubeconfig_server_urls() {
        assert_eq!(kubeconfig_server(None, 6443), "https://127.0.0.1:6443");
        assert_eq!(
            kubeconfig_server(Some("0.0.0.0".parse().unwrap()), 6443),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            kubeconfig_server(Some("127.0.0.1".parse().unwrap()), 7000),
            "https://127.0.0.1:7000"
        );
    }

    #[test]
    fn atomic_write_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/k3s.yaml");
        write_atomic(&path, b"a", 0o644).unwrap();
        write_atomic(&path, b"b", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"b");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
