//! Bounded fuzzing of topgun-tls's parsers with proptest (see
//! `fuzz/harness.rs`): the SAN parser, PEM/DER inspection (arbitrary bytes
//! and mutated real certificates), the kubeconfig reader and endpoint
//! targets.
//!
//! Properties: nothing panics; accepted values round-trip through their
//! string form; a PEM private key in the input never shows in an error
//! message; every case is fast. `cargo test` runs a few cases per target;
//! `cargo xtask fuzz [--secs N]` runs each for N seconds.

#[macro_use]
#[path = "fuzz/harness.rs"]
mod harness;

use std::sync::OnceLock;

use harness::{
    Outcome, PemKey, YAML_BITS, base64_encode, embed_key, fuzz, mutate, no_key_in, noise, pem_key,
    tokens,
};
use proptest::prelude::*;
use topgun_tls::endpoint::EndpointTarget;
use topgun_tls::{
    CaParams, CertUsage, CertificateAuthority, Kubeconfig, LeafParams, San, inspect_pem_or_der,
    parse_san, parse_san_list,
};

// ---------------------------------------------------------------- SANs

const SAN_WORDS: &[&str] = &[
    "example",
    "com",
    "EXAMPLE",
    "k3s",
    "a",
    "0",
    "1",
    "255",
    "256",
    "192.168.1.28",
    "127.0.0.1",
    "::1",
    "fe80::1",
    "2001:db8::",
    "::ffff:10.0.0.1",
    ".",
    ".",
    "-",
    "*",
    "*.",
    ":",
    "::",
    "[",
    "]",
    ",",
    " ",
    "\t",
    "\"",
    "'",
    "\\",
    "_",
    "=",
    "@",
    "/",
    "https://",
    "--tls-san",
    "--tls-san=",
    "k3s server ",
    "6443",
    "%",
    "é",
    "xn--",
    "localhost",
];

fn san_input() -> impl Strategy<Value = String> + Clone {
    let valid = prop_oneof![
        Just("192.168.1.28".to_owned()),
        Just("*.example.com".to_owned()),
        Just("k3d-demo-server-0".to_owned()),
        Just("2001:db8::10".to_owned()),
        "[a-z0-9]{1,10}(\\.[a-z0-9-]{1,10}){0,4}",
    ];
    prop_oneof![
        3 => tokens(SAN_WORDS, 12),
        2 => mutate(valid, SAN_WORDS),
        1 => noise(80),
        1 => "[a-z]{60,70}\\.[a-z]{1,3}",
        1 => "([a-z]{60}\\.){4}[a-z]{1,20}",
    ]
}

#[test]
fn fuzz_parse_san() {
    fuzz("tls::parse_san", 400, san_input(), |input| -> Outcome {
        match parse_san(&input) {
            Ok(san) => {
                check!(
                    !input.chars().any(char::is_whitespace),
                    "accepted whitespace: {san:?}"
                );
                let again = parse_san(&san.to_string());
                check!(
                    again.as_ref().ok() == Some(&san),
                    "{san:?} does not round-trip: {again:?}"
                );
                if let San::Dns(name) = &san {
                    check!(*name == name.to_ascii_lowercase(), "not lowercased: {name}");
                    check!(name.len() <= 253, "too long: {name}");
                    check!(
                        san.covers(name) || name.starts_with("*."),
                        "{name} not covering itself"
                    );
                }
            }
            Err(e) => {
                let message = e.to_string();
                check!(!message.is_empty(), "empty message");
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_parse_san_list() {
    let list = proptest::collection::vec(san_input(), 0..6).prop_map(|v| v.join(","));
    fuzz("tls::parse_san_list", 200, list, |input| -> Outcome {
        if let Ok(sans) = parse_san_list(&input) {
            let text = sans.iter().map(ToString::to_string).collect::<Vec<_>>();
            let again = parse_san_list(&text.join(","));
            check!(
                again.as_ref().ok() == Some(&sans),
                "{sans:?} does not round-trip: {again:?}"
            );
        }
        Ok(())
    });
}

#[test]
fn fuzz_san_errors_never_show_keys() {
    fuzz(
        "tls::parse_san(keys)",
        100,
        embed_key(tokens(SAN_WORDS, 4)),
        |(input, key)| -> Outcome {
            for result in [
                parse_san(&input).map(|_| ()),
                parse_san_list(&input).map(|_| ()),
            ] {
                if let Err(e) = result {
                    no_key_in(&key, &e.to_string())?;
                }
            }
            Ok(())
        },
    );
}

// ----------------------------------------------------- PEM and DER inspection

/// Real certificates of every shape topgun meets: its own (P-256 CA, server,
/// peer, client), and rcgen's P-384, Ed25519 and many-extension ones.
fn real_certs() -> &'static [Vec<u8>] {
    static CERTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CERTS.get_or_init(|| {
        let ca = CertificateAuthority::generate(&CaParams::new("fuzz-ca")).unwrap();
        let sans = parse_san_list("fuzz.example,*.fuzz.example,127.0.0.1,::1").unwrap();
        let mut pems = vec![ca.cert_pem().to_owned()];
        for usage in [CertUsage::Server, CertUsage::Peer, CertUsage::Client] {
            let leaf = ca
                .issue(&LeafParams::new("fuzz-leaf", usage).with_sans(sans.clone()))
                .unwrap();
            pems.push(leaf.cert_pem);
        }
        for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let mut params = rcgen::CertificateParams::new(vec![
                "rcgen.example".to_owned(),
                "10.0.0.1".to_owned(),
            ])
            .unwrap();
            params.subject_alt_names.extend([
                rcgen::SanType::URI("spiffe://fuzz/x".try_into().unwrap()),
                rcgen::SanType::Rfc822Name("a@b.example".try_into().unwrap()),
            ]);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(2));
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            params.extended_key_usages = vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::CodeSigning,
                rcgen::ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 99999, 1]),
            ];
            params.serial_number = Some(rcgen::SerialNumber::from(vec![0, 0, 1, 2, 3]));
            pems.push(params.self_signed(&key).unwrap().pem());
        }
        pems.iter()
            .map(|pem| {
                let infos = inspect_pem_or_der(pem.as_bytes()).unwrap();
                infos[0].der().to_vec()
            })
            .collect()
    })
}

fn pem_of(der: &[u8], label: &str) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Byte-level edits of DER: flip bits, set bytes (often length octets),
/// insert, delete, truncate, duplicate.
fn mutate_bytes(bytes: Vec<u8>, edits: Vec<(u8, usize, u8, usize)>) -> Vec<u8> {
    let mut b = bytes;
    for (kind, at, value, len) in edits {
        if b.is_empty() {
            b.push(value);
            continue;
        }
        let pos = at % b.len();
        match kind % 7 {
            0 => b[pos] ^= 1 << (value % 8),
            1 => b[pos] = value,
            2 => b.insert(pos, value),
            3 => {
                let end = (pos + 1 + len % 16).min(b.len());
                b.drain(pos..end);
            }
            4 => b.truncate(pos),
            5 => {
                let end = (pos + 1 + len % 32).min(b.len());
                let copy = b[pos..end].to_vec();
                b.splice(pos..pos, copy);
            }
            _ => b[pos] = [0x00, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff][value as usize % 7],
        }
    }
    b
}

fn check_infos(bytes: &[u8]) -> Outcome {
    match inspect_pem_or_der(bytes) {
        Ok(infos) => {
            check!(!infos.is_empty(), "Ok with no certificate");
            for info in &infos {
                // What was reported is what is there: the DER inspects again
                // to the same names, and the fingerprint is its SHA-256.
                let again = inspect_pem_or_der(info.der());
                let again = match again {
                    Ok(mut v) if v.len() == 1 => v.remove(0),
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "the DER of an accepted certificate does not inspect alone: {other:?}"
                        )));
                    }
                };
                check!(
                    again.subject == info.subject
                        && again.serial == info.serial
                        && again.sans == info.sans
                        && again.sha256_fingerprint == info.sha256_fingerprint,
                    "re-inspection differs: {info:?} / {again:?}"
                );
                check!(
                    info.sha256_fingerprint.len() == 32 * 3 - 1,
                    "fingerprint {}",
                    info.sha256_fingerprint
                );
                // Coverage never panics, whatever the names.
                for dns in &info.sans.dns {
                    let _ = info.covers(dns);
                }
                let _ = info.covers("127.0.0.1");
                let _ = serde_json::to_string(info);
            }
        }
        Err(e) => check!(!e.to_string().is_empty(), "empty message"),
    }
    Ok(())
}

#[test]
fn fuzz_inspect_arbitrary_bytes() {
    let bytes = prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..2048),
        // DER-looking: a SEQUENCE header first.
        2 => proptest::collection::vec(any::<u8>(), 0..1024).prop_map(|mut v| {
            v.splice(0..0, [0x30, 0x82, (v.len() >> 8) as u8, v.len() as u8]);
            v
        }),
        // PEM framing around random bytes, with other labels too.
        2 => (
            proptest::collection::vec(any::<u8>(), 0..1024),
            prop_oneof![Just("CERTIFICATE"), Just("PRIVATE KEY"), Just("X"), Just("")],
        )
            .prop_map(|(v, label)| pem_of(&v, label).into_bytes()),
        1 => noise(400).prop_map(String::into_bytes),
    ];
    fuzz("tls::inspect_pem_or_der(bytes)", 200, bytes, |bytes| {
        check_infos(&bytes)
    });
}

#[test]
fn fuzz_inspect_mutated_certificates() {
    let n = real_certs().len();
    let edits = proptest::collection::vec(
        (any::<u8>(), any::<usize>(), any::<u8>(), any::<usize>()),
        0..6,
    );
    let strategy = (0..n, edits, 0..4u8, proptest::collection::vec(0..n, 0..3));
    fuzz(
        "tls::inspect_pem_or_der(mutated)",
        200,
        strategy,
        |(which, edits, form, extra)| -> Outcome {
            let certs = real_certs();
            let unchanged = edits.is_empty();
            let der = mutate_bytes(certs[which].clone(), edits);
            let bytes = match form {
                // DER, alone or followed by more certificates.
                0 => der.clone(),
                1 => {
                    let mut all = der.clone();
                    for i in &extra {
                        all.extend_from_slice(&certs[*i]);
                    }
                    all
                }
                // PEM, alone or in a bundle with others.
                2 => pem_of(&der, "CERTIFICATE").into_bytes(),
                _ => {
                    let mut all = String::new();
                    for i in &extra {
                        all.push_str(&pem_of(&certs[*i], "CERTIFICATE"));
                    }
                    all.push_str(&pem_of(&der, "CERTIFICATE"));
                    all.into_bytes()
                }
            };
            if unchanged {
                let infos = inspect_pem_or_der(&bytes);
                check!(infos.is_ok(), "a real certificate was refused: {infos:?}");
            }
            check_infos(&bytes)
        },
    );
}

fn real_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let ca = CertificateAuthority::generate(&CaParams::new("fuzz-ca")).unwrap();
        ca.issue(&LeafParams::new("k", CertUsage::Client))
            .unwrap()
            .key_pem
            .expose()
            .to_owned()
    })
}

#[test]
fn fuzz_inspect_errors_never_show_keys() {
    // A bundle with a key in it (a real one or a random one), mangled the
    // ways keys get mangled: joined lines, cut, bytes edited.
    let key = prop_oneof![
        1 => Just(PemKey::from_pem(real_key())),
        2 => pem_key(),
    ];
    let strategy = (
        key,
        0..real_certs().len(),
        0..5u8,
        any::<bool>(),
        proptest::collection::vec(
            (any::<u8>(), any::<usize>(), any::<u8>(), any::<usize>()),
            0..3,
        ),
    );
    fuzz(
        "tls::inspect_pem_or_der(keys)",
        200,
        strategy,
        |(key, which, how, key_first, edits)| -> Outcome {
            let cert = pem_of(&real_certs()[which], "CERTIFICATE");
            let pem = match how {
                0 => key.pem.clone(),
                1 => key.pem.replace('\n', " "),
                2 => key.pem.replace("-----\n", "-----"),
                3 => key.pem.replace("\n-----END", "-----END"),
                _ => key.pem.replace('\n', ""),
            };
            let text = if key_first {
                format!("{pem}{cert}")
            } else {
                format!("{cert}{pem}")
            };
            let bytes = mutate_bytes(text.into_bytes(), edits);
            if let Err(e) = inspect_pem_or_der(&bytes) {
                no_key_in(&key, &e.to_string())?;
            }
            if let Err(e) = topgun_tls::Roots::from_pem_or_der(&bytes, "fuzz") {
                no_key_in(&key, &e.to_string())?;
            }
            Ok(())
        },
    );
}

// ----------------------------------------------------------- kubeconfigs

fn scalar() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => "[a-z0-9.-]{0,12}",
        1 => Just("https://127.0.0.1:6443".to_owned()),
        1 => Just("https://[::1]:6443/x".to_owned()),
        1 => Just("https://k3s.example".to_owned()),
        1 => Just("0.0.0.0:6443".to_owned()),
        1 => Just("https://h:0".to_owned()),
        1 => noise(20).prop_map(|s| format!("{s:?}")),
        1 => Just("\"a\\\"b\"".to_owned()),
        1 => Just("[]".to_owned()),
        1 => Just("{}".to_owned()),
        1 => Just("~".to_owned()),
    ]
}

/// A kubeconfig: the right keys mostly, with scalars of every kind, then
/// mutated as text.
fn kubeconfig_yaml() -> impl Strategy<Value = String> + Clone {
    let b64_cert = (0..real_certs().len(), any::<bool>()).prop_map(|(i, bad)| {
        let pem = pem_of(&real_certs()[i], "CERTIFICATE");
        if bad {
            format!("{}!", base64_encode(pem.as_bytes()))
        } else {
            base64_encode(pem.as_bytes())
        }
    });
    let b64_key = prop_oneof![
        Just(base64_encode(real_key().as_bytes())),
        pem_key().prop_map(|k| base64_encode(k.pem.as_bytes())),
        "[A-Za-z0-9+/=]{0,40}",
    ];
    let cluster = (
        scalar(),
        scalar(),
        proptest::option::of(b64_cert.clone()),
        proptest::option::of(scalar()),
        any::<bool>(),
    )
        .prop_map(|(name, server, ca, sni, insecure)| {
            let mut out = format!("- name: {name}\n  cluster:\n    server: {server}\n");
            if let Some(ca) = ca {
                out.push_str(&format!("    certificate-authority-data: {ca}\n"));
            }
            if let Some(sni) = sni {
                out.push_str(&format!("    tls-server-name: {sni}\n"));
            }
            out.push_str(&format!("    insecure-skip-tls-verify: {insecure}\n"));
            out
        });
    let user = (
        scalar(),
        proptest::option::of(b64_cert),
        proptest::option::of(b64_key),
    )
        .prop_map(|(name, cert, key)| {
            let mut out = format!("- name: {name}\n  user:\n");
            if let Some(cert) = cert {
                out.push_str(&format!("    client-certificate-data: {cert}\n"));
            }
            if let Some(key) = key {
                out.push_str(&format!("    client-key-data: {key}\n"));
            }
            if out.ends_with("user:\n") {
                out.push_str("    {}\n");
            }
            out
        });
    let context = (scalar(), scalar(), scalar()).prop_map(|(name, cluster, user)| {
        format!("- name: {name}\n  context:\n    cluster: {cluster}\n    user: {user}\n")
    });
    let doc = (
        proptest::option::of(scalar()),
        proptest::collection::vec(cluster, 0..3),
        proptest::collection::vec(context, 0..3),
        proptest::collection::vec(user, 0..3),
    )
        .prop_map(|(current, clusters, contexts, users)| {
            let mut out = String::from("apiVersion: v1\nkind: Config\n");
            if let Some(c) = current {
                out.push_str(&format!("current-context: {c}\n"));
            }
            for (key, items) in [
                ("clusters", clusters),
                ("contexts", contexts),
                ("users", users),
            ] {
                out.push_str(&format!("{key}:\n"));
                for item in items {
                    out.push_str(&item);
                }
            }
            out
        });
    // Matching names, so resolve gets far.
    let coherent =
        (scalar(), proptest::option::of(Just(real_key().to_owned()))).prop_map(|(server, key)| {
            let cert = base64_encode(pem_of(&real_certs()[3], "CERTIFICATE").as_bytes());
            let key = key.map_or(String::new(), |k| {
                format!("    client-key-data: {}\n", base64_encode(k.as_bytes()))
            });
            format!(
                "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: {server}\n    \
                 certificate-authority-data: {cert}\ncontexts:\n- name: c\n  context:\n    \
                 cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    \
                 client-certificate-data: {cert}\n{key}"
            )
        });
    prop_oneof![
        3 => mutate(doc, YAML_BITS),
        2 => mutate(coherent, YAML_BITS),
        1 => deep_yaml(),
        1 => tokens(YAML_BITS, 40),
    ]
}

/// Deeply nested YAML: flow brackets, block indentation, nested maps.
fn deep_yaml() -> impl Strategy<Value = String> + Clone {
    (1usize..400, 0..4u8).prop_map(|(depth, how)| match how {
        0 => format!("clusters: {}{}", "[".repeat(depth), "]".repeat(depth)),
        1 => format!("users: {}x{}", "{a: ".repeat(depth), "}".repeat(depth)),
        2 => {
            let mut out = String::from("contexts:\n");
            for i in 0..depth.min(200) {
                out.push_str(&" ".repeat(i + 1));
                out.push_str("- \n");
            }
            out
        }
        _ => {
            let mut out = String::from("clusters:\n");
            for i in 0..depth.min(200) {
                out.push_str(&"  ".repeat(i + 1));
                out.push_str(&format!("k{i}:\n"));
            }
            out
        }
    })
}

/// Kubeconfigs with only inline data resolve without reading files.
fn inline_only(k: &Kubeconfig) -> bool {
    k.clusters
        .iter()
        .all(|c| c.cluster.certificate_authority.is_none())
        && k.users
            .iter()
            .all(|u| u.user.client_certificate.is_none() && u.user.client_key.is_none())
}

#[test]
fn fuzz_kubeconfig_from_yaml() {
    fuzz(
        "tls::Kubeconfig::from_yaml",
        200,
        kubeconfig_yaml(),
        |yaml| -> Outcome {
            let secret = PemKey::from_pem(real_key());
            match Kubeconfig::from_yaml(&yaml) {
                Ok(k) => {
                    if inline_only(&k) {
                        for context in [None, Some("c"), Some("")] {
                            match k.resolve(context) {
                                Ok(r) => {
                                    let _ = r.verified_name();
                                    check!(r.target.port != 0, "port 0 accepted");
                                }
                                Err(e) => no_key_in(&secret, &e.to_string())?,
                            }
                        }
                    }
                    check!(
                        !format!("{k:?}").contains(&base64_encode(real_key().as_bytes())[..40]),
                        "the client key is in Debug"
                    );
                }
                Err(e) => no_key_in(&secret, &e.to_string())?,
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_kubeconfig_errors_never_show_keys() {
    // A PEM key pasted where a value belongs (not base64-encoded), quoted or
    // not: whatever the parser chokes on, the key stays out of the message.
    let field = prop_oneof![
        Just("server"),
        Just("certificate-authority-data"),
        Just("client-key-data"),
        Just("client-certificate-data"),
        Just("insecure-skip-tls-verify"),
        Just("name"),
    ];
    let strategy = (embed_key(tokens(YAML_BITS, 3)), field, 0..4u8);
    fuzz(
        "tls::Kubeconfig::from_yaml(keys)",
        200,
        strategy,
        |((value, key), field, shape)| -> Outcome {
            let yaml = match shape {
                0 => format!(
                    "clusters:\n- name: k\n  cluster:\n    {field}: {value}\ncontexts: []\n"
                ),
                1 => format!("users:\n- name: u\n  user:\n    {field}: {value}\n"),
                2 => format!("current-context: {value}\n"),
                _ => format!("clusters: [{{name: k, cluster: {{{field}: {value:?}}}}}]\n"),
            };
            match Kubeconfig::from_yaml(&yaml) {
                Err(e) => no_key_in(&key, &e.to_string())?,
                Ok(k) => {
                    if inline_only(&k)
                        && let Err(e) = k.resolve(None)
                    {
                        no_key_in(&key, &e.to_string())?;
                    }
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------- endpoint targets

const TARGET_WORDS: &[&str] = &[
    "https://",
    "http://",
    "HTTPS://",
    "127.0.0.1",
    "::1",
    "[",
    "]",
    ":",
    "6443",
    "0",
    "65536",
    "/",
    "?",
    "#",
    "@",
    "user",
    "k3s.example",
    "*",
    " ",
    "-",
    "_",
    ".",
];

#[test]
fn fuzz_endpoint_target() {
    let input = prop_oneof![tokens(TARGET_WORDS, 8), noise(40)];
    fuzz(
        "tls::EndpointTarget::parse",
        300,
        input,
        |input| -> Outcome {
            if let Ok(target) = EndpointTarget::parse(&input) {
                check!(target.port != 0, "port 0 from {input:?}");
                let again = EndpointTarget::parse(&target.to_string());
                check!(
                    again.as_ref().ok() == Some(&target),
                    "{target:?} ({target}) does not round-trip: {again:?}"
                );
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_endpoint_target_keys() {
    fuzz(
        "tls::EndpointTarget::parse(keys)",
        100,
        embed_key(tokens(TARGET_WORDS, 3)),
        |(input, key)| -> Outcome {
            if let Err(e) = EndpointTarget::parse(&input) {
                no_key_in(&key, &e.to_string())?;
            }
            Ok(())
        },
    );
}
