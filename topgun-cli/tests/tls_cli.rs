//! `topgun tls ...` as a user runs it: the real binary against Debian's
//! `openssl s_server` on loopback. Human output is snapshot-tested with
//! filters for ports, dates, serials, fingerprints and temp paths.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use topgun_tls::testing::OpensslServer;
use topgun_tls::{CaParams, CertUsage, CertificateAuthority, LeafParams, parse_san_list};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `topgun ARGS` with a clean environment: no $KUBECONFIG, $HOME in
/// `home`.
fn topgun(args: &[&str], home: &Path, env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_topgun"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("TOPGUN_LOG")
        .env("HOME", home)
        .envs(env.iter().copied())
        .output()
        .expect("running topgun");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn require_openssl() {
    match Command::new("openssl").arg("version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "this test needs Debian's `openssl` on PATH (apt-get install openssl, or run \
             `cargo xtask setup`)"
        ),
    }
}

/// A CA and a k3s-like server certificate with `sans`, plus a client
/// certificate, written as ca.crt, server.crt/.key, client.crt/.key.
fn pki(dir: &Path, sans: &str) {
    let ca = CertificateAuthority::generate(&CaParams::new("k3s-server-ca")).unwrap();
    let server = ca
        .issue(
            &LeafParams::new("k3s", CertUsage::Server)
                .with_organization("k3s")
                .with_sans(parse_san_list(sans).unwrap()),
        )
        .unwrap();
    let client = ca
        .issue(
            &LeafParams::new("system:admin", CertUsage::Client).with_organization("system:masters"),
        )
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("server.crt"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), server.key_pem.expose()).unwrap();
    std::fs::write(dir.join("client.crt"), &client.cert_pem).unwrap();
    std::fs::write(dir.join("client.key"), client.key_pem.expose()).unwrap();
}

/// Snapshot settings: volatile values replaced by placeholders.
fn settings(tmp: &Path, ports: &[u16]) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&tmp.display().to_string()), "[TMP]");
    for port in ports {
        s.add_filter(&format!(r"127\.0\.0\.1:{port}\b"), "127.0.0.1:[PORT]");
    }
    s.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[DATE]");
    s.add_filter(r"\b\d+ days left", "[N] days left");
    s.add_filter(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", "[SHA256]");
    s.add_filter(r"(serial\s+)[0-9A-F]+", "$1[SERIAL]");
    s.add_filter(r"TLS13_[A-Z0-9_]+", "[CIPHER]");
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$#&-~".contains(c);
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn openssl_verify(ca: &Path, purpose: &str, cert: &Path) -> bool {
    require_openssl();
    Command::new("openssl")
        .args(["verify", "-CAfile", s(ca), "-purpose", purpose, s(cert)])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn gen_writes_keys_0600_refuses_to_overwrite_and_openssl_accepts_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pki");
    let run = topgun(
        &[
            "tls",
            "gen",
            "--out",
            s(&out),
            "--san",
            "localhost,127.0.0.1",
            "--san",
            "0.0.0.0",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    settings(tmp.path(), &[]).bind(|| {
        insta::assert_snapshot!("gen_stdout", run.stdout);
        insta::assert_snapshot!("gen_stderr", run.stderr);
    });
    for name in ["ca", "server", "peer", "client"] {
        let key = std::fs::metadata(out.join(format!("{name}.key"))).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600, "{name}.key");
        let cert = std::fs::metadata(out.join(format!("{name}.crt"))).unwrap();
        assert_eq!(cert.permissions().mode() & 0o777, 0o644, "{name}.crt");
    }
    let ca = out.join("ca.crt");
    assert!(openssl_verify(&ca, "sslserver", &out.join("server.crt")));
    assert!(openssl_verify(&ca, "sslserver", &out.join("peer.crt")));
    assert!(openssl_verify(&ca, "sslclient", &out.join("peer.crt")));
    assert!(openssl_verify(&ca, "sslclient", &out.join("client.crt")));
    assert!(!openssl_verify(&ca, "sslserver", &out.join("client.crt")));

    let before = std::fs::read(out.join("server.crt")).unwrap();
    let again = topgun(
        &["tls", "gen", "--out", s(&out), "--san", "x.example"],
        tmp.path(),
        &[],
    );
    assert_eq!(again.code, 2);
    assert_eq!(
        again.stderr,
        format!(
            "error: {} already exists; pass --force to overwrite it\n",
            out.join("ca.crt").display()
        )
    );
    assert_eq!(again.stdout, "");
    assert_eq!(
        std::fs::read(out.join("server.crt")).unwrap(),
        before,
        "untouched"
    );

    let forced = topgun(
        &[
            "tls",
            "gen",
            "--out",
            s(&out),
            "--san",
            "x.example",
            "--force",
            "-o",
            "json",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    let json: Value = serde_json::from_str(&forced.stdout).unwrap();
    assert_eq!(json["certificates"][0]["usage"], "server");
    assert_eq!(json["certificates"][0]["sans"]["dns"][0], "x.example");
    assert_eq!(json["certificates"][2]["usage"], "client");
    assert_eq!(json["ca"]["generated"], true);
    assert_ne!(
        std::fs::read(out.join("server.crt")).unwrap(),
        before,
        "replaced"
    );
}

#[test]
fn gen_signs_with_a_given_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let run = topgun(
        &["-q", "tls", "gen", "--out", s(&first), "--san", "etcd-0"],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "-q keeps stderr quiet");
    let second = tmp.path().join("second");
    let run = topgun(
        &[
            "tls",
            "gen",
            "--out",
            s(&second),
            "--san",
            "etcd-1,127.0.0.1",
            "--ca-cert",
            s(&first.join("ca.crt")),
            "--ca-key",
            s(&first.join("ca.key")),
            "-o",
            "json",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["ca"]["generated"], false);
    assert_eq!(json["ca"]["key"], Value::Null);
    assert!(!second.join("ca.key").exists() && !second.join("ca.crt").exists());
    assert!(openssl_verify(
        &first.join("ca.crt"),
        "sslserver",
        &second.join("server.crt")
    ));

    // A leaf is not a CA.
    let run = topgun(
        &[
            "tls",
            "gen",
            "--out",
            s(&tmp.path().join("third")),
            "--san",
            "x",
            "--ca-cert",
            s(&first.join("server.crt")),
            "--ca-key",
            s(&first.join("server.key")),
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("server.crt is not a CA certificate (CN=etcd-0)"),
        "{}",
        run.stderr
    );
    assert!(!tmp.path().join("third").exists(), "nothing written");
}

#[test]
fn gen_refuses_bad_input_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pki");
    let run = topgun(
        &[
            "tls",
            "gen",
            "--out",
            s(&out),
            "--san",
            r#"k3s server --tls-san "alien.io""#,
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: invalid SAN \"k3s server --tls-san \\\"alien.io\\\"\": is a command line, not a \
         name; pass `--tls-san alien.io`\n"
    );
    assert!(!out.exists());
    let run = topgun(
        &["tls", "gen", "--out", s(&out), "--san", "a.io:6443"],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("has a port; a SAN names a host only; pass `a.io`"),
        "{}",
        run.stderr
    );
    // --ca-cert needs --ca-key (clap).
    let run = topgun(
        &[
            "tls",
            "gen",
            "--out",
            s(&out),
            "--san",
            "a.io",
            "--ca-cert",
            "x.crt",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--ca-key <FILE>"), "{}", run.stderr);
    assert!(!out.exists());
}

#[test]
fn inspect_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    pki(tmp.path(), "kubernetes,localhost,127.0.0.1,10.43.0.1");
    let cert = tmp.path().join("server.crt");
    let ca = tmp.path().join("ca.crt");
    let ok = topgun(
        &["tls", "inspect", s(&cert), "--ca", s(&ca)],
        tmp.path(),
        &[],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let not_covered = topgun(
        &[
            "tls",
            "inspect",
            s(&cert),
            "--ca",
            s(&ca),
            "--name",
            "192.168.1.28",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(not_covered.code, 1, "{}", not_covered.stderr);
    assert_eq!(not_covered.stderr, "");
    settings(tmp.path(), &[]).bind(|| {
        insta::assert_snapshot!("inspect_file_ok", ok.stdout);
        insta::assert_snapshot!("inspect_file_not_covered", not_covered.stdout);
    });
    // A bundle: every certificate is listed.
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&ca).unwrap()
    );
    std::fs::write(tmp.path().join("bundle.pem"), bundle).unwrap();
    let run = topgun(
        &[
            "tls",
            "inspect",
            s(&tmp.path().join("bundle.pem")),
            "-o",
            "json",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["kind"], "file");
    assert_eq!(json["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(json["certificates"][1]["is_ca"], true);
    assert_eq!(json["check"]["name"], Value::Null);
    assert_eq!(json["check"]["trust"], Value::Null);
}

#[test]
fn inspect_the_k3d_case_through_connect_to() {
    let tmp = tempfile::tempdir().unwrap();
    pki(tmp.path(), "0.0.0.0,10.43.0.1,127.0.0.1,172.20.0.2");
    let server = {
        require_openssl();
        OpensslServer::start(
            &tmp.path().join("server.crt"),
            &tmp.path().join("server.key"),
            &["-cert_chain", s(&tmp.path().join("ca.crt"))],
        )
        .expect("openssl s_server")
    };
    let connect_to = format!("127.0.0.1:{}", server.port());
    let ca = tmp.path().join("ca.crt");
    let run = topgun(
        &[
            "tls",
            "inspect",
            "192.168.1.28:6443",
            "--connect-to",
            &connect_to,
            "--ca",
            s(&ca),
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert!(run.stdout.contains(
        "192.168.1.28 is not covered: the certificate is valid for 0.0.0.0, 10.43.0.1, \
         127.0.0.1, 172.20.0.2"
    ));
    assert!(run.stdout.contains("`--tls-san 192.168.1.28`"));
    settings(tmp.path(), &[server.port()]).bind(|| {
        insta::assert_snapshot!("inspect_k3d_case", run.stdout);
    });

    let json = topgun(
        &[
            "tls",
            "inspect",
            "https://192.168.1.28:6443",
            "--connect-to",
            &connect_to,
            "-o",
            "json",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(json.code, 1);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["kind"], "endpoint");
    assert_eq!(v["connected_to"], connect_to.as_str());
    assert_eq!(v["check"]["covered"], false);
    assert_eq!(v["check"]["ok"], false);
    assert_eq!(v["check"]["problems"][0]["kind"], "not-covered");
    assert_eq!(v["check"]["diagnosis"]["host"], "192.168.1.28");
    assert_eq!(v["check"]["diagnosis"]["sans"]["ip"][3], "172.20.0.2");
    assert_eq!(
        v["check"]["diagnosis"]["fixes"][0]["kind"],
        "recreate-with-tls-san"
    );
    assert_eq!(
        v["check"]["diagnosis"]["fixes"][0]["values"][0],
        "192.168.1.28"
    );
    assert_eq!(v["certificates"].as_array().unwrap().len(), 2);
    assert_documented(&v);

    // The same server, by a name it covers, trusted by its CA.
    let ok = topgun(
        &[
            "tls",
            "inspect",
            &format!("https://{connect_to}/"),
            "--ca",
            s(&ca),
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    settings(tmp.path(), &[server.port()]).bind(|| {
        insta::assert_snapshot!("inspect_endpoint_ok", ok.stdout);
    });

    // Another CA: untrusted.
    let other = tmp.path().join("other");
    pki(&other, "127.0.0.1");
    let run = topgun(
        &[
            "tls",
            "inspect",
            &connect_to,
            "--ca",
            s(&other.join("ca.crt")),
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("  trust       NOT TRUSTED by "),
        "{}",
        run.stdout
    );
}

#[test]
fn inspect_usage_errors_exit_2_and_network_errors_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["tls", "inspect", "no-such-file.pem"],
            "no-such-file.pem is not a file, and not an endpoint",
        ),
        (
            &["tls", "inspect", "http://127.0.0.1:80"],
            "is a http:// URL",
        ),
        (
            &[
                "tls",
                "inspect",
                "127.0.0.1:6443",
                "--connect-to",
                "localhost",
            ],
            "--connect-to address",
        ),
        (
            &["tls", "inspect", "127.0.0.1:6443", "--timeout", "0"],
            "--timeout must be between",
        ),
        (
            &[
                "tls",
                "inspect",
                "127.0.0.1:6443",
                "--ca",
                "/nonexistent/ca.crt",
            ],
            "cannot read /nonexistent/ca.crt",
        ),
    ];
    for (args, words) in cases {
        let run = topgun(args, tmp.path(), &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error: ") && run.stderr.contains(words),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = topgun(
        &["tls", "inspect", &format!("127.0.0.1:{port}")],
        tmp.path(),
        &[],
    );
    // A refused connection is a failed operation, as Docker unreachable is
    // for every command (README, "Exit status").
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        run.stderr
    );
}

fn write_kubeconfig(dir: &Path, name: &str, server: &str, extra_cluster: &str) -> PathBuf {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: k3d-demo\n\
         clusters:\n- name: k3d-demo\n  cluster:\n    server: {server}\n    certificate-authority: ca.crt\n{extra_cluster}\
         contexts:\n- name: k3d-demo\n  context:\n    cluster: k3d-demo\n    user: admin@k3d-demo\n\
         users:\n- name: admin@k3d-demo\n  user:\n    client-certificate: client.crt\n    client-key: client.key\n"
    );
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn check_kubeconfig_against_a_server_requiring_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    pki(
        tmp.path(),
        "kubernetes,0.0.0.0,10.43.0.1,127.0.0.1,172.20.0.2",
    );
    let ca = tmp.path().join("ca.crt");
    let server = {
        require_openssl();
        OpensslServer::start(
            &tmp.path().join("server.crt"),
            &tmp.path().join("server.key"),
            &["-Verify", "1", "-verify_return_error", "-CAfile", s(&ca)],
        )
        .expect("openssl s_server")
    };
    let connect_to = format!("127.0.0.1:{}", server.port());

    // The user's case: the kubeconfig points at the host's LAN address.
    let lan = write_kubeconfig(tmp.path(), "lan.yaml", "https://192.168.1.28:6443", "");
    let run = topgun(
        &[
            "tls",
            "check-kubeconfig",
            "--kubeconfig",
            s(&lan),
            "--connect-to",
            &connect_to,
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    settings(tmp.path(), &[server.port()]).bind(|| {
        insta::assert_snapshot!("check_kubeconfig_not_covered", run.stdout);
    });
    assert!(
        run.stdout
            .contains("kubectl config set-cluster k3d-demo --tls-server-name=kubernetes")
    );

    // The tls-server-name fix, found through $KUBECONFIG (first of a list).
    let fixed = write_kubeconfig(
        tmp.path(),
        "fixed.yaml",
        "https://192.168.1.28:6443",
        "    tls-server-name: kubernetes\n",
    );
    let list = format!("{}:/nonexistent/other", fixed.display());
    let run = topgun(
        &["tls", "check-kubeconfig", "--connect-to", &connect_to],
        tmp.path(),
        &[("KUBECONFIG", &list)],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    settings(tmp.path(), &[server.port()]).bind(|| {
        insta::assert_snapshot!("check_kubeconfig_ok", run.stdout);
    });

    // ~/.kube/config by default, JSON output.
    std::fs::create_dir_all(tmp.path().join(".kube")).unwrap();
    let url = format!("https://{connect_to}");
    let default = write_kubeconfig(tmp.path(), ".kube/config", &url, "");
    for name in ["ca.crt", "client.crt", "client.key"] {
        std::fs::copy(tmp.path().join(name), tmp.path().join(".kube").join(name)).unwrap();
    }
    let run = topgun(&["tls", "check-kubeconfig", "-o", "json"], tmp.path(), &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["kubeconfig"], default.display().to_string());
    assert_eq!(v["ok"], true);
    assert_eq!(v["covered"], true);
    assert_eq!(v["trusted"], true);
    assert_eq!(v["endpoint"]["client_certificate_sent"], true);
    assert_eq!(
        v["client_certificate"]["subject"],
        "CN=system:admin, O=system:masters"
    );
    assert_documented(&v);

    // Usage errors.
    let run = topgun(
        &[
            "tls",
            "check-kubeconfig",
            "--kubeconfig",
            s(&lan),
            "--context",
            "nope",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("context \"nope\" is not defined (contexts: k3d-demo)"),
        "{}",
        run.stderr
    );
    let run = topgun(
        &["tls", "check-kubeconfig", "--kubeconfig", "/nonexistent"],
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read /nonexistent"),
        "{}",
        run.stderr
    );
}

/// The JSON shapes documented in docs/json-output.md: these keys are
/// stable.
#[test]
fn json_shapes_match_the_documentation() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/json-output.md"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pki");
    let gen_run = topgun(
        &[
            "tls",
            "gen",
            "--out",
            s(&out),
            "--san",
            "127.0.0.1",
            "-o",
            "json",
        ],
        tmp.path(),
        &[],
    );
    let inspect = topgun(
        &[
            "tls",
            "inspect",
            s(&out.join("server.crt")),
            "--name",
            "x",
            "--ca",
            s(&out.join("ca.crt")),
            "-o",
            "json",
        ],
        tmp.path(),
        &[],
    );
    let gen_json: Value = serde_json::from_str(&gen_run.stdout).unwrap();
    let inspect_json: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_documented(&gen_json);
    assert_documented(&inspect_json);
    assert!(docs.contains("## tls"));
}

/// Every key of `v` appears in docs/json-output.md as `key`.
fn assert_documented(v: &Value) {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/json-output.md"),
    )
    .unwrap();
    let mut keys = Vec::new();
    collect_keys(v, &mut keys);
    for key in keys {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/json-output.md does not document `{key}`"
        );
    }
}

fn collect_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                collect_keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_keys(i, out)),
        _ => {}
    }
}
