//! Files topgun is pointed at by mistake never reach its messages: a private
//! key given as a config file or a kubeconfig is refused without a line of
//! it on stdout or stderr.

use std::process::Command;

use topgun_tls::{CaParams, CertificateAuthority};

#[test]
fn a_private_key_given_as_a_config_or_kubeconfig_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate(&CaParams::new("secret-test-ca")).unwrap();
    let key = ca.certified_key().key_pem.expose().to_owned();
    let path = dir.path().join("server.key");
    std::fs::write(&path, &key).unwrap();
    let path = path.to_str().unwrap();
    // Every line of the key body, so that not even part of it may show.
    let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for args in [
        vec!["create", "--config", path],
        vec!["tls", "check-kubeconfig", "--kubeconfig", path],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_topgun"))
            .args(&args)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?}: {text}");
        for line in &body {
            for piece in line.as_bytes().chunks(12) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(
                    !text.contains(piece),
                    "{args:?} shows part of the key: {text}"
                );
            }
        }
        assert!(!text.contains("PRIVATE KEY-----\n"), "{args:?}: {text}");
    }
}
