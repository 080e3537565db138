//! Bounded fuzzing of what topgun-etcd parses (see `fuzz/harness.rs`): the
//! member endpoints of `topgun etcd --endpoints` (`normalize_endpoint`) and
//! client TLS material (`ClientTls::validate`).
//!
//! Properties: nothing panics; an accepted endpoint is already normal (it
//! normalizes to itself), has the scheme the TLS setting asks for and is a
//! URI the client library takes; a PEM private key never shows in an error
//! message; every case is fast.

#[macro_use]
// One harness for every crate, kept in topgun-tls.
#[path = "../../topgun-tls/tests/fuzz/harness.rs"]
mod harness;

use std::sync::OnceLock;

use harness::{Outcome, PemKey, embed_key, fuzz, mutate, no_key_in, noise, pem_key, tokens};
use proptest::prelude::*;
use topgun_etcd::{ClientTls, EtcdClusterSpec, normalize_endpoint};
use topgun_tls::KeyPem;

const ENDPOINT_WORDS: &[&str] = &[
    "https://",
    "http://",
    "HTTPS://",
    "unix://",
    "m0",
    "etcd-0",
    "127.0.0.1",
    "::1",
    "[",
    "]",
    ":",
    ":",
    "2379",
    "0",
    "65535",
    "65536",
    "/",
    "/v3",
    "@",
    "u:p@",
    " ",
    "\t",
    ".",
    "-",
    "%",
    "*",
    ",",
    "?",
    "#",
];

fn endpoint() -> impl Strategy<Value = String> + Clone {
    let valid = prop_oneof![
        Just("https://m0:2379".to_owned()),
        Just("127.0.0.1:2379".to_owned()),
        Just("[::1]".to_owned()),
        Just("etcd-1".to_owned()),
    ];
    prop_oneof![
        3 => tokens(ENDPOINT_WORDS, 8),
        2 => mutate(valid, ENDPOINT_WORDS),
        1 => noise(40),
    ]
}

#[test]
fn fuzz_normalize_endpoint() {
    fuzz(
        "etcd::normalize_endpoint",
        400,
        (endpoint(), any::<bool>()),
        |(input, tls)| -> Outcome {
            let Ok(normal) = normalize_endpoint(&input, tls) else {
                return Ok(());
            };
            let scheme = if tls { "https://" } else { "http://" };
            check!(normal.starts_with(scheme), "{input:?} → {normal}");
            let again = normalize_endpoint(&normal, tls);
            check!(
                again.as_ref().ok() == Some(&normal),
                "{input:?} → {normal} is not normal: {again:?}"
            );
            let uri = tonic::transport::Endpoint::from_shared(normal.clone());
            check!(
                uri.is_ok(),
                "{input:?} → {normal}, which the client refuses: {:?}",
                uri.err()
            );
            Ok(())
        },
    );
}

#[test]
fn fuzz_normalize_endpoint_keys() {
    fuzz(
        "etcd::normalize_endpoint(keys)",
        100,
        (embed_key(tokens(ENDPOINT_WORDS, 3)), any::<bool>()),
        |((input, key), tls)| -> Outcome {
            if let Err(e) = normalize_endpoint(&input, tls) {
                no_key_in(&key, &e.to_string())?;
            }
            Ok(())
        },
    );
}

/// A real CA and client certificate (PEM) to mangle.
fn material() -> &'static (String, String, String) {
    static M: OnceLock<(String, String, String)> = OnceLock::new();
    M.get_or_init(|| {
        let plan = EtcdClusterSpec::new("fuzz").with_members(1).plan().unwrap();
        let client = plan.topgun_client().unwrap();
        (
            plan.ca_pem().unwrap().to_owned(),
            client.cert_pem.clone(),
            client.key_pem.expose().to_owned(),
        )
    })
}

const PEM_BITS: &[&str] = &[
    "\n",
    "-----",
    "-----BEGIN ",
    "-----END ",
    "CERTIFICATE",
    "PRIVATE KEY",
    " ",
    "=",
    "A",
    "\r\n",
];

#[test]
fn fuzz_client_tls_errors_never_show_keys() {
    // The key mangled (lines joined, bytes edited, put in the wrong slot):
    // validation says what is wrong without repeating the key.
    let key = prop_oneof![Just(PemKey::from_pem(&material().2)), pem_key(),];
    let mangle = prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4),];
    let strategy = (key, mangle, mutate(Just(String::new()), PEM_BITS), 0..3u8);
    fuzz(
        "etcd::ClientTls::validate(keys)",
        150,
        strategy,
        |(key, how, junk, slot)| -> Outcome {
            let (ca, cert, _) = material();
            let pem = match how {
                0 => key.pem.clone(),
                1 => key.pem.replace("-----\n", "-----"),
                2 => key.pem.replace('\n', ""),
                3 => key.pem.replace('\n', " "),
                _ => format!("{junk}{}", key.pem),
            };
            let tls = match slot {
                0 => ClientTls::from_pem(ca.clone(), Some((cert.clone(), KeyPem::new(pem)))),
                1 => ClientTls::from_pem(
                    pem,
                    Some((cert.clone(), KeyPem::new(material().2.clone()))),
                ),
                _ => {
                    ClientTls::from_pem(ca.clone(), Some((pem, KeyPem::new(material().2.clone()))))
                }
            };
            if let Err(e) = tls.validate() {
                no_key_in(&key, &e.to_string())?;
            }
            if slot == 0 {
                // The certificates are shown (they are public, and share the
                // key's public half): only the rest must not show the key.
                let debug = format!("{tls:?}").replace(&ca.replace('\n', "\\n"), "");
                let debug = debug.replace(&cert.replace('\n', "\\n"), "");
                check!(
                    key.shown_in(&debug).is_none(),
                    "the key is in Debug: {debug}"
                );
            }
            Ok(())
        },
    );
}
