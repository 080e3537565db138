//! Bounded fuzzing of topgun-core's spec parsers with proptest (see
//! `fuzz/harness.rs`): the node filter grammar, `VALUE@FILTER` values
//! (k3s arguments, environment, volumes, ports), `--api-port`, subnets and
//! durations, external datastore endpoints, and the YAML spec (including
//! deep nesting and the cluster record it becomes).
//!
//! Properties: nothing panics; accepted values round-trip through their
//! string form; secrets (PEM keys, environment values, datastore passwords)
//! never show in error messages; every case is fast. `cargo test` runs a few
//! cases per target; `cargo xtask fuzz [--secs N]` runs each for N seconds.

#[macro_use]
// One harness for every crate, kept in topgun-tls.
#[path = "../../topgun-tls/tests/fuzz/harness.rs"]
mod harness;

use std::net::IpAddr;
use std::path::Path;

use harness::{Outcome, YAML_BITS, embed_key, fuzz, mutate, no_key_in, noise, tokens};
use proptest::prelude::*;
use topgun_core::ImageSet;
use topgun_core::testing::{ClusterRecord, parse_duration};
use topgun_core::{
    ApiEndpoint, ClusterSpec, Datastore, DatastoreEndpoint, EndpointKind, EnvVar, Filtered,
    FilteredValue, K3sArg, KubeconfigYaml, NodeCounts, NodeFilter, PortMapping, Role, Subnet,
    Token, VolumeMount, merge_kubeconfig,
};

const ROLES: [Role; 4] = [Role::Server, Role::Agent, Role::Etcd, Role::LoadBalancer];

// ------------------------------------------------------------ node filters

const FILTER_WORDS: &[&str] = &[
    "all",
    "loadbalancer",
    "server",
    "agent",
    "etcd",
    "servers",
    "agents",
    "lb",
    "serverlb",
    ":",
    ":",
    ";",
    ";",
    "*",
    ",",
    ",",
    "-",
    "0",
    "1",
    "2",
    "3",
    "10",
    "4294967295",
    "4294967296",
    "",
    " ",
    "@",
    "Server",
    "+1",
    "01",
];

fn filter_text() -> impl Strategy<Value = String> + Clone {
    let index = prop_oneof![
        4 => (0u32..6).prop_map(|n| n.to_string()),
        1 => Just("4294967295".to_owned()),
        1 => Just("4294967296".to_owned()),
        1 => Just(String::new()),
        1 => Just("x".to_owned()),
    ];
    let item = prop_oneof![
        2 => index.clone(),
        1 => (index.clone(), index).prop_map(|(a, b)| format!("{a}-{b}")),
    ];
    let selector = prop_oneof![
        2 => Just(None),
        1 => Just(Some("*".to_owned())),
        3 => proptest::collection::vec(item, 1..4).prop_map(|v| Some(v.join(","))),
    ];
    let role = proptest::sample::select(
        &[
            "all",
            "loadbalancer",
            "server",
            "agent",
            "etcd",
            "servers",
            "lb",
            "",
        ][..],
    );
    let part = (role, selector).prop_map(|(role, sel)| match sel {
        Some(sel) => format!("{role}:{sel}"),
        None => role.to_owned(),
    });
    let grammar = proptest::collection::vec(part, 1..4).prop_map(|v| v.join(";"));
    prop_oneof![
        4 => grammar.clone(),
        2 => mutate(grammar, FILTER_WORDS),
        1 => tokens(FILTER_WORDS, 10),
    ]
}

/// The grammar of `spec/filter.rs`'s docs, as a reference: which (role,
/// index) pairs a filter selects; `None` when the text is not a filter.
fn reference_selects(text: &str, role: Role, index: u32) -> Option<bool> {
    let mut any = false;
    for part in text.split(';') {
        let (name, sel) = match part.split_once(':') {
            Some((n, s)) => (n, Some(s)),
            None => (part, None),
        };
        let r = match name {
            "all" | "loadbalancer" if sel.is_some_and(|s| s != "*") => return None,
            "all" => {
                any |= matches!(role, Role::Server | Role::Agent);
                continue;
            }
            // k3d's plural groups too.
            "server" | "servers" => Role::Server,
            "agent" | "agents" => Role::Agent,
            "etcd" => Role::Etcd,
            "loadbalancer" => Role::LoadBalancer,
            _ => return None,
        };
        let hit = match sel {
            None | Some("*") => true,
            Some(sel) => {
                let mut hit = false;
                for item in sel.split(',') {
                    let (a, b) = match item.split_once('-') {
                        Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
                        None => {
                            let n = item.parse::<u32>().ok()?;
                            (n, n)
                        }
                    };
                    if a > b {
                        return None;
                    }
                    hit |= a <= index && index <= b;
                }
                hit
            }
        };
        any |= r == role && hit;
    }
    Some(any)
}

#[test]
fn fuzz_node_filter() {
    fuzz(
        "core::NodeFilter::parse",
        400,
        filter_text(),
        |text| -> Outcome {
            let parsed = NodeFilter::parse(&text);
            let reference_ok = reference_selects(&text, Role::Server, 0).is_some();
            check!(
                parsed.is_ok() == reference_ok,
                "parser says {parsed:?}, the grammar says {}",
                if reference_ok { "valid" } else { "invalid" }
            );
            let Ok(filter) = parsed else { return Ok(()) };
            // Its text parses to the same selection.
            let again = NodeFilter::parse(&filter.to_string());
            check!(
                again.as_ref().ok() == Some(&filter),
                "{filter:?} does not round-trip: {again:?}"
            );
            for role in ROLES {
                for index in [0, 1, 2, 3, 5, 9, u32::MAX] {
                    let want = reference_selects(&text, role, index).unwrap_or(false);
                    check!(
                        filter.matches(role, index) == want,
                        "{text:?} selects {role} {index}: parser {} grammar {want}",
                        filter.matches(role, index)
                    );
                }
            }
            for (servers, agents, etcd, lb) in [(1, 0, 0, true), (3, 2, 3, true), (0, 0, 0, false)]
            {
                let counts = NodeCounts {
                    servers,
                    agents,
                    etcd,
                    loadbalancer: lb,
                };
                let _ = filter.check("fuzz", &ROLES, &counts);
            }
            Ok(())
        },
    );
}

// --------------------------------------------------------- VALUE@FILTER

const VALUE_WORDS: &[&str] = &[
    "--disable=traefik",
    "--flag",
    "=",
    "k3s",
    "server",
    "agent",
    "--token",
    "--tls-san",
    "--node-name",
    " ",
    "traefik",
    "A",
    "_B",
    "1X",
    "K3S_TOKEN",
    "K3S_DATASTORE_X",
    "HTTP_PROXY",
    "v",
    "@",
    "@",
    "/",
    "/srv",
    "/var/lib",
    "dir",
    ":",
    ":",
    "ro",
    "rw",
    "8080",
    "80",
    "/tcp",
    "/udp",
    "/sctp",
    "127.0.0.1",
    "0.0.0.0",
    "[::1]",
    "::1",
    "[",
    "]",
    "65535",
    "65536",
    "0",
    "\"",
    "'",
    "\t",
];

fn filtered_text() -> impl Strategy<Value = String> + Clone {
    let value = prop_oneof![
        3 => tokens(VALUE_WORDS, 6),
        1 => Just("--disable=traefik".to_owned()),
        1 => Just("HTTP_PROXY=http://u:p@proxy:3128".to_owned()),
        1 => Just("/srv/a:/var/lib/a:ro".to_owned()),
        1 => Just("[::1]:8080:80/udp".to_owned()),
        1 => Just("0.0.0.0::80".to_owned()),
        1 => noise(30),
    ];
    let with_filter = (value.clone(), proptest::option::of(filter_text()))
        .prop_map(|(v, f)| f.map_or(v.clone(), |f| format!("{v}@{f}")));
    prop_oneof![4 => with_filter, 1 => mutate(value, VALUE_WORDS)]
}

fn round_trip<T>(input: &str) -> Outcome
where
    T: FilteredValue + std::fmt::Display + PartialEq + std::fmt::Debug,
{
    let Ok(parsed) = Filtered::<T>::parse(input) else {
        return Ok(());
    };
    // The form the cluster record keeps: the value's and the filter's text.
    let text = match &parsed.filter {
        Some(f) => format!("{}@{f}", parsed.value),
        None => parsed.value.to_string(),
    };
    let again = Filtered::<T>::parse(&text);
    check!(
        again.as_ref().ok() == Some(&parsed),
        "{input:?} → {text:?} does not round-trip: {parsed:?} / {again:?}"
    );
    let value = T::parse_value(&parsed.value.to_string());
    check!(
        value.as_ref().ok() == Some(&parsed.value),
        "the value {:?} does not round-trip alone: {value:?}",
        parsed.value.to_string()
    );
    Ok(())
}

#[test]
fn fuzz_filtered_values() {
    fuzz(
        "core::Filtered::parse",
        400,
        filtered_text(),
        |input| -> Outcome {
            round_trip::<K3sArg>(&input)?;
            round_trip::<EnvVar>(&input)?;
            round_trip::<VolumeMount>(&input)?;
            round_trip::<PortMapping>(&input)?;
            Ok(())
        },
    );
}

#[test]
fn fuzz_ports_from_parts() {
    // Every mapping there is prints to a text that parses back to it.
    let mapping = (
        any::<IpAddr>(),
        proptest::option::of(1u16..),
        1u16..,
        any::<bool>(),
    );
    fuzz(
        "core::PortMapping(display)",
        300,
        mapping,
        |(ip, host, container, udp)| -> Outcome {
            let text = match ip {
                IpAddr::V4(v4) => format!("{v4}:"),
                IpAddr::V6(v6) => format!("[{v6}]:"),
            } + &host.map_or(String::new(), |p| p.to_string())
                + &format!(":{container}/{}", if udp { "udp" } else { "tcp" });
            let parsed = PortMapping::parse_value(&text);
            check!(parsed.is_ok(), "{text:?} refused: {parsed:?}");
            let p = parsed.unwrap();
            check!(
                p.host_ip == ip && p.host_port == host && p.container_port == container,
                "{text:?} → {p:?}"
            );
            check!(p.to_string() == text, "{p:?} prints as {p}, not {text}");
            Ok(())
        },
    );
}

#[test]
fn fuzz_filtered_secrets_stay_out_of_errors() {
    // A PEM key anywhere in a value, and environment values (which may be
    // secret) before a filter that does not parse.
    let env = (
        "[A-Z_]{1,8}",
        "[a-zA-Z0-9]{6,12}",
        filter_text(),
        prop_oneof![Just(""), Just("@"), Just("@@")],
    )
        .prop_map(|(k, v, f, at)| (format!("{k}=sEcReT{v}{at}@{f}"), format!("sEcReT{v}")));
    let keys = embed_key(tokens(VALUE_WORDS, 3));
    let strategy = (keys, env);
    fuzz(
        "core::Filtered::parse(secrets)",
        300,
        strategy,
        |((input, key), (env_input, secret))| -> Outcome {
            let errors = [
                Filtered::<K3sArg>::parse(&input).err(),
                Filtered::<EnvVar>::parse(&input).err(),
                Filtered::<VolumeMount>::parse(&input).err(),
                Filtered::<PortMapping>::parse(&input).err(),
                NodeFilter::parse(&input).err(),
            ];
            for e in errors.into_iter().flatten() {
                no_key_in(&key, &e.to_string())?;
            }
            if let Err(e) = Filtered::<EnvVar>::parse(&env_input) {
                let m = e.to_string();
                check!(!m.contains(&secret), "an environment value is shown: {m}");
            }
            Ok(())
        },
    );
}

// ------------------------------------------------- --api-port, subnet, durations

const API_WORDS: &[&str] = &[
    "127.0.0.1",
    "0.0.0.0",
    "192.168.1.28",
    "::1",
    "::",
    "fe80::1",
    "[",
    "]",
    ":",
    ":",
    "6443",
    "0",
    "65535",
    "65536",
    "localhost",
    " ",
    "-1",
    "+1",
    "%eth0",
];

#[test]
fn fuzz_api_endpoint() {
    let input = prop_oneof![3 => tokens(API_WORDS, 6), 1 => noise(30)];
    fuzz("core::ApiEndpoint::parse", 400, input, |input| -> Outcome {
        if let Ok(api) = ApiEndpoint::parse(&input) {
            check!(api.port != Some(0), "port 0 from {input:?}");
            let again = ApiEndpoint::parse(&api.to_string());
            check!(
                again.as_ref().ok() == Some(&api),
                "{input:?} → {api} does not round-trip: {again:?}"
            );
        }
        Ok(())
    });
}

#[test]
fn fuzz_api_endpoint_display() {
    let api = (any::<IpAddr>(), proptest::option::of(1u16..));
    fuzz(
        "core::ApiEndpoint(display)",
        300,
        api,
        |(host, port)| -> Outcome {
            let api = ApiEndpoint { host, port };
            let again = ApiEndpoint::parse(&api.to_string());
            check!(
                again.as_ref().ok() == Some(&api),
                "{api:?} prints as {api}, which parses to {again:?}"
            );
            Ok(())
        },
    );
}

#[test]
fn fuzz_subnet_and_duration() {
    let subnet = prop_oneof![
        (any::<[u8; 4]>(), 0u8..40)
            .prop_map(|(ip, p)| format!("{}.{}.{}.{}/{p}", ip[0], ip[1], ip[2], ip[3])),
        tokens(
            &[
                "10", "172", "192", "168", ".", "/", "24", "8", "0", "256", " "
            ],
            8
        ),
    ];
    let duration = prop_oneof![
        (
            any::<u64>(),
            proptest::sample::select(&["", "s", "ms", "m", "h", "d", " s", "S"][..])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        noise(12),
    ];
    fuzz(
        "core::Subnet::parse+parse_duration",
        300,
        (subnet, duration),
        |(subnet, duration)| -> Outcome {
            if let Ok(s) = Subnet::parse(&subnet) {
                check!((8..=24).contains(&s.prefix), "prefix {}", s.prefix);
                let again = Subnet::parse(&s.to_string());
                check!(again.as_ref().ok() == Some(&s), "{s} does not round-trip");
                let _ = s.host(2);
            }
            if let Ok(d) = parse_duration(&duration) {
                check!(!d.is_zero(), "zero from {duration:?}");
            }
            Ok(())
        },
    );
}

// ----------------------------------------------------- datastore endpoints

fn endpoint_parts() -> impl Strategy<Value = (String, String)> + Clone {
    let password = "[a-zA-Z0-9]{2,6}(@|,|:|/|%40)?[a-zA-Z0-9]{0,4}".prop_map(|p| format!("PwD{p}"));
    let host = prop_oneof![
        Just("db".to_owned()),
        Just("10.0.0.5".to_owned()),
        Just("[::1]".to_owned()),
        Just("::1".to_owned()),
        Just("localhost".to_owned()),
        Just(String::new()),
        Just("[".to_owned()),
    ];
    let port = prop_oneof![
        Just(String::new()),
        Just(":2379".to_owned()),
        Just(":5432".to_owned()),
        Just(":0".to_owned()),
        Just(":99999".to_owned()),
        Just(":".to_owned()),
        Just(":x".to_owned()),
    ];
    let scheme = proptest::sample::select(
        &[
            "https",
            "http",
            "postgres",
            "postgresql",
            "mysql",
            "sqlite",
            "unix",
            "ftp",
            "",
        ][..],
    );
    (
        scheme,
        proptest::option::of("[a-z]{1,5}"),
        password,
        any::<bool>(),
        host,
        port,
        proptest::sample::select(&["", "/", "/db", "/db?sslmode=disable", "/v3"][..]),
        0..3usize,
    )
        .prop_map(
            |(scheme, user, password, with_password, host, port, path, extra)| {
                let userinfo = match (&user, with_password) {
                    (Some(u), true) => format!("{u}:{password}@"),
                    (Some(u), false) => format!("{u}@"),
                    (None, true) => format!(":{password}@"),
                    (None, false) => String::new(),
                };
                let hostport = if scheme == "mysql" {
                    format!("tcp({host}{port})")
                } else {
                    format!("{host}{port}")
                };
                let one = format!("{scheme}://{userinfo}{hostport}{path}");
                let mut all = vec![one];
                for i in 0..extra {
                    all.push(format!("{scheme}://m{i}:2379"));
                }
                let secret = if with_password {
                    password
                } else {
                    String::new()
                };
                (all.join(","), secret)
            },
        )
}

#[test]
fn fuzz_datastore_endpoint() {
    let input = prop_oneof![
        4 => endpoint_parts(),
        1 => mutate(endpoint_parts().prop_map(|(e, _)| e), &[":", "@", ",", "/", "[", "]", "(", ")", " ", "://"])
            .prop_map(|e| (e, String::new())),
        1 => noise(60).prop_map(|e| (e, String::new())),
    ];
    fuzz(
        "core::DatastoreEndpoint::parse",
        400,
        input,
        |(raw, password)| -> Outcome {
            let result = DatastoreEndpoint::parse(&raw);
            let shown = match &result {
                Ok(e) => format!("{e} {e:?}"),
                Err(e) => e.to_string(),
            };
            check!(
                password.is_empty() || !shown.contains(&password),
                "the password {password:?} is shown: {shown}"
            );
            if let Ok(e) = result {
                check!(e.expose() == raw, "not kept as given");
                let again = DatastoreEndpoint::parse(e.expose());
                check!(again.as_ref().ok() == Some(&e), "does not parse again");
                let scheme = raw.split("://").next().unwrap_or_default();
                let kind = match scheme {
                    "http" | "https" => EndpointKind::Etcd,
                    "postgres" | "postgresql" => EndpointKind::Postgres,
                    "mysql" => EndpointKind::Mysql,
                    _ => EndpointKind::Sqlite,
                };
                check!(e.kind() == kind, "{raw:?} is {:?}", e.kind());
                let _ = e.uses_loopback();
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_datastore_endpoint_keys() {
    fuzz(
        "core::DatastoreEndpoint::parse(keys)",
        100,
        embed_key(tokens(
            &["https://", "postgres://u:p@", "h", ":2379", ","],
            3,
        )),
        |(input, key)| -> Outcome {
            if let Err(e) = DatastoreEndpoint::parse(&input) {
                no_key_in(&key, &e.to_string())?;
            }
            if let Err(e) = ApiEndpoint::parse(&input) {
                no_key_in(&key, &e.to_string())?;
            }
            Ok(())
        },
    );
}

// ------------------------------------------------------------- YAML spec

fn yaml_value() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => "[a-z0-9.-]{0,10}",
        2 => (0u64..10).prop_map(|n| n.to_string()),
        1 => Just("4294967296".to_owned()),
        1 => Just("-3".to_owned()),
        1 => Just("true".to_owned()),
        1 => Just("~".to_owned()),
        1 => Just("[]".to_owned()),
        1 => Just("{}".to_owned()),
        1 => filtered_text().prop_map(|s| format!("{s:?}")),
        1 => noise(16).prop_map(|s| format!("{s:?}")),
    ]
}

fn spec_yaml() -> impl Strategy<Value = String> + Clone {
    let list = |items: &'static [&'static str]| {
        proptest::collection::vec(
            prop_oneof![
                3 => proptest::sample::select(items).prop_map(|s| format!("{s:?}")),
                1 => filtered_text().prop_map(|s| format!("{s:?}")),
            ],
            0..3,
        )
        .prop_map(|v| format!("[{}]", v.join(", ")))
    };
    let datastore = prop_oneof![
        Just("embedded".to_owned()),
        Just("etcd".to_owned()),
        Just("external".to_owned()),
        (0u32..9).prop_map(|n| format!("{{etcd: {{members: {n}}}}}")),
        Just("{etcd: ~}".to_owned()),
        Just("{etcd: {members: 3, image: \"etcd:v3\"}}".to_owned()),
        endpoint_parts().prop_map(|(e, _)| format!("{{external: {{endpoint: {e:?}}}}}")),
        Just("{external: {endpoint: \"https://db:2379\", ca: /ca.crt}}".to_owned()),
        Just("{embedded: 1, etcd: 2}".to_owned()),
        Just("{}".to_owned()),
    ];
    let field = prop_oneof![
        (
            Just("name"),
            prop_oneof![
                Just("demo".to_owned()),
                Just("Demo-1".to_owned()),
                Just("a_b".to_owned()),
                "[a-z]{0,70}"
            ]
        ),
        (Just("servers"), yaml_value()),
        (Just("agents"), yaml_value()),
        (Just("image"), yaml_value()),
        (Just("datastore"), datastore),
        (
            Just("api-port"),
            prop_oneof![
                tokens(API_WORDS, 4).prop_map(|s| format!("{s:?}")),
                yaml_value()
            ]
        ),
        (
            Just("tls-san"),
            prop_oneof![
                list(&[
                    "192.168.1.28",
                    "a.example",
                    "*.b.example",
                    "::1",
                    "bad_name"
                ]),
                Just("\"a.example,1.2.3.4\"".to_owned())
            ]
        ),
        (Just("token"), yaml_value()),
        (
            Just("k3s-args"),
            list(&[
                "--disable=traefik@server:*",
                "--flag",
                "--token=x",
                "--node-label=a=b@agent:0"
            ])
        ),
        (
            Just("env"),
            list(&[
                "HTTP_PROXY=http://proxy:3128@all",
                "A=b",
                "K3S_TOKEN=x",
                "1=2"
            ])
        ),
        (
            Just("volumes"),
            list(&["/srv:/srv", "/a:/b:ro@server:0", "rel:/x", "/a:/b:xx"])
        ),
        (
            Just("ports"),
            list(&[
                "8080:80@loadbalancer",
                "6443",
                "[::1]:8443:443/udp@server:0",
                "0:1"
            ])
        ),
        (
            Just("loadbalancer"),
            prop_oneof![
                Just("{enabled: false}".to_owned()),
                Just("{image: haproxy}".to_owned()),
                Just("{enabled: true, x: 1}".to_owned())
            ]
        ),
        (
            Just("network"),
            prop_oneof![
                Just("{subnet: 172.28.5.0/24}".to_owned()),
                Just("{subnet: 127.0.0.0/8}".to_owned()),
                Just("{subnet: 10.0.0.1/24}".to_owned())
            ]
        ),
        (
            Just("timeouts"),
            prop_oneof![
                Just("{server: 3m}".to_owned()),
                Just("{etcd: 0}".to_owned()),
                Just("{api: 18446744073709551615h}".to_owned()),
                Just("{total: 1s, agent: 500ms}".to_owned())
            ]
        ),
        (Just("no-rollback"), yaml_value()),
        (Just("init"), yaml_value()),
        (
            Just("cgroupns"),
            prop_oneof![
                Just("host".to_owned()),
                Just("private".to_owned()),
                yaml_value()
            ]
        ),
        (Just("privileged"), yaml_value()),
        (Just("unknown-field"), yaml_value()),
    ];
    let doc = proptest::collection::vec(field, 0..8).prop_map(|fields| {
        fields
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    });
    prop_oneof![
        5 => doc.clone(),
        3 => mutate(doc, YAML_BITS),
        3 => valid_spec_yaml(),
        1 => deep_yaml(),
        1 => tokens(YAML_BITS, 40),
    ]
}

/// Specs that are mostly valid, so that many reach validation and the
/// cluster record: valid building blocks in every field, values generated.
fn valid_spec_yaml() -> impl Strategy<Value = String> + Clone {
    let filter = prop_oneof![
        Just(""),
        Just("@server:0"),
        Just("@server:*"),
        Just("@all"),
        Just("@agent:0"),
        Just("@server:0;agent:0"),
        Just("@loadbalancer"),
    ];
    let k3s_arg = ("--[a-z]{1,8}(=[a-z0-9,=.]{0,8})?", filter.clone())
        .prop_map(|(a, f)| format!("{:?}", format!("{a}{f}")));
    let env = ("[A-Z][A-Z0-9_]{0,6}", "[ -~]{0,12}", filter.clone())
        .prop_map(|(k, v, f)| format!("{:?}", format!("X{k}={v}{f}")));
    let volume = (
        "(/[a-z0-9._-]{1,6}){1,3}",
        "(/[a-z0-9]{1,6}){1,3}",
        any::<bool>(),
        filter.clone(),
    )
        .prop_map(|(a, b, ro, f)| {
            format!("{:?}", format!("{a}:{b}{}{f}", if ro { ":ro" } else { "" }))
        });
    let port = (
        any::<IpAddr>(),
        proptest::option::of(1u16..),
        1u16..,
        any::<bool>(),
        filter,
    )
        .prop_map(|(ip, h, c, udp, f)| {
            let ip = match ip {
                IpAddr::V4(v4) => format!("{v4}:"),
                IpAddr::V6(v6) => format!("[{v6}]:"),
            };
            let h = h.map_or(String::new(), |h| h.to_string());
            let proto = if udp { "/udp" } else { "" };
            format!("{:?}", format!("{ip}{h}:{c}{proto}{f}"))
        });
    let list = |item: BoxedStrategy<String>| {
        proptest::collection::vec(item, 0..3).prop_map(|v| format!("[{}]", v.join(", ")))
    };
    let san = prop_oneof![
        any::<IpAddr>().prop_map(|ip| format!("{:?}", ip.to_string())),
        "[a-z][a-z0-9-]{0,8}(\\.[a-z0-9]{1,5}){0,3}".prop_map(|s| format!("{s:?}")),
        "[a-z]{1,5}\\.[a-z]{2,3}".prop_map(|s| format!("\"*.{s}\"")),
    ];
    let api = (any::<IpAddr>(), proptest::option::of(1u16..))
        .prop_map(|(host, port)| format!("{:?}", ApiEndpoint { host, port }.to_string()));
    let datastore = prop_oneof![
        Just("embedded".to_owned()),
        (1u32..8).prop_map(|n| format!("{{etcd: {{members: {n}}}}}")),
        endpoint_parts().prop_map(|(e, _)| format!("{{external: {{endpoint: {e:?}}}}}")),
    ];
    (
        (1u32..4, 0u32..3, datastore, api),
        (
            list(san.boxed()),
            list(k3s_arg.boxed()),
            list(env.boxed()),
            list(volume.boxed()),
            list(port.boxed()),
        ),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((servers, agents, datastore, api), (sans, args, env, volumes, ports), (lb, init))| {
                format!(
                    "name: fuzz\nservers: {servers}\nagents: {agents}\ndatastore: {datastore}\n\
                     api-port: {api}\ntls-san: {sans}\nk3s-args: {args}\nenv: {env}\n\
                     volumes: {volumes}\nports: {ports}\nloadbalancer: {{enabled: {lb}}}\n\
                     init: {init}\n"
                )
            },
        )
}

/// Deeply nested YAML: flow brackets, block indentation, nested maps,
/// anchors and aliases.
fn deep_yaml() -> impl Strategy<Value = String> + Clone {
    (1usize..300, 0..6u8).prop_map(|(depth, how)| match how {
        0 => format!("tls-san: {}{}", "[".repeat(depth), "]".repeat(depth)),
        1 => format!("datastore: {}x{}", "{a: ".repeat(depth), "}".repeat(depth)),
        2 => {
            let mut out = String::from("ports:\n");
            for i in 0..depth.min(150) {
                out.push_str(&" ".repeat(i + 1));
                out.push_str("- \n");
            }
            out
        }
        3 => {
            let mut out = String::from("datastore:\n");
            for i in 0..depth.min(150) {
                out.push_str(&"  ".repeat(i + 1));
                out.push_str(&format!("k{i}:\n"));
            }
            out
        }
        4 => {
            // A billion laughs, small.
            let mut out = String::from("a0: &a0 [x, x]\n");
            for i in 1..depth.min(30) {
                out.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
            }
            out
        }
        _ => format!("env: [{}]", vec!["\"A=b\""; depth.min(500)].join(", ")),
    })
}

/// Accepted and valid: the cluster record it becomes reads back to the same
/// spec (every value through its string form).
fn record_round_trip(spec: &ClusterSpec) -> Outcome {
    let token = Token::new("fuzz-token-0123456789").unwrap();
    let subnet = Subnet::parse("172.28.5.0/24").unwrap();
    let images = ImageSet::resolve(spec, |_| None);
    let record = ClusterRecord::new(spec, &token, subnet, &images, true);
    let read = ClusterRecord::from_json(record.to_json().as_bytes());
    let again = read.and_then(|r| r.spec(spec.servers, spec.agents));
    let again = match again {
        Ok(a) => a,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "the record of a valid spec does not read back: {e}"
            )));
        }
    };
    let datastore_same = match (&spec.datastore, &again.datastore) {
        (Datastore::External(a), Datastore::External(b)) => a.endpoint == b.endpoint,
        (a, b) => a == b,
    };
    check!(
        datastore_same,
        "datastore {:?} → {:?}",
        spec.datastore,
        again.datastore
    );
    check!(
        again.api == spec.api,
        "api {:?} → {:?}",
        spec.api,
        again.api
    );
    check!(
        again.tls_san == spec.tls_san,
        "tls-san {:?} → {:?}",
        spec.tls_san,
        again.tls_san
    );
    check!(
        again.k3s_args == spec.k3s_args,
        "k3s-args {:?} → {:?}",
        spec.k3s_args,
        again.k3s_args
    );
    check!(
        again.env == spec.env,
        "env {:?} → {:?}",
        spec.env,
        again.env
    );
    check!(
        again.volumes == spec.volumes,
        "volumes {:?} → {:?}",
        spec.volumes,
        again.volumes
    );
    check!(
        again.ports == spec.ports,
        "ports {:?} → {:?}",
        spec.ports,
        again.ports
    );
    check!(
        again.image == spec.image && again.init == spec.init,
        "image/init"
    );
    check!(
        again.validate().is_ok(),
        "the read-back spec is invalid: {:?}",
        again.validate()
    );
    Ok(())
}

#[test]
fn fuzz_cluster_spec_yaml() {
    fuzz(
        "core::ClusterSpec::from_yaml",
        150,
        spec_yaml(),
        |yaml| -> Outcome {
            match ClusterSpec::from_yaml(&yaml, Path::new("<fuzz>")) {
                Ok(spec) => {
                    if spec.validate().is_ok() {
                        let _ = spec.warnings();
                        let _ = spec.default_port_filter();
                        record_round_trip(&spec)?;
                    }
                }
                Err(e) => check!(!e.to_string().is_empty(), "empty message"),
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_cluster_spec_yaml_keys() {
    // A key pasted as the value of any field, quoted (with escapes) or
    // plain, or as a list item.
    let field = proptest::sample::select(
        &[
            "name",
            "servers",
            "image",
            "api-port",
            "tls-san",
            "token",
            "k3s-args",
            "env",
            "volumes",
            "ports",
            "datastore",
            "network",
            "timeouts",
            "cgroupns",
            "bogus",
        ][..],
    );
    let strategy = (embed_key(tokens(YAML_BITS, 2)), field, 0..4u8);
    fuzz(
        "core::ClusterSpec::from_yaml(keys)",
        150,
        strategy,
        |((value, key), field, shape)| -> Outcome {
            let yaml = match shape {
                0 => format!("{field}: {value:?}\n"),
                1 => format!("{field}: [{value:?}]\n"),
                2 => format!("{field}: {{external: {{endpoint: {value:?}}}}}\n"),
                _ => format!("{field}: {value}\n"),
            };
            match ClusterSpec::from_yaml(&yaml, Path::new("<fuzz>")) {
                Err(e) => no_key_in(&key, &e.to_string())?,
                Ok(spec) => {
                    if let Err(e) = spec.validate() {
                        no_key_in(&key, &e.to_string())?;
                    }
                }
            }
            Ok(())
        },
    );
}

// ------------------------------------------------------------- kubeconfigs

#[test]
fn fuzz_kubeconfig_merge_keys() {
    // A key pasted into a kubeconfig, where YAML allows it or breaks: as
    // the kubeconfig merged, and as the file merged into. Errors (and their
    // Debug form) never show it.
    const VALID: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: topgun-k\n  cluster:\n    server: https://127.0.0.1:6443\n";
    let field = proptest::sample::select(
        &[
            "clusters",
            "users",
            "contexts",
            "current-context",
            "preferences",
            "kind",
        ][..],
    );
    let strategy = (embed_key(tokens(YAML_BITS, 2)), field, 0..4u8);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    fuzz(
        "core::merge_kubeconfig(keys)",
        150,
        strategy,
        |((value, key), field, shape)| -> Outcome {
            let yaml = match shape {
                0 => format!("{field}: {value:?}\n"),
                1 => format!("{field}: [{value:?}]\n"),
                2 => format!(
                    "{field}: [{{name: {value:?}, user: {{client-key-data: {value:?}}}}}]\n"
                ),
                _ => format!("{field}: {value}\n"),
            };
            let files = std::slice::from_ref(&file);
            let _ = std::fs::remove_file(&file);
            let as_merged = merge_kubeconfig(files, &KubeconfigYaml::new(yaml.clone()), true);
            std::fs::write(&file, &yaml).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let as_file = merge_kubeconfig(files, &KubeconfigYaml::new(VALID.to_owned()), true);
            let errors = [as_merged.err(), as_file.err()];
            for e in errors.into_iter().flatten() {
                no_key_in(&key, &e.to_string())?;
                no_key_in(&key, &format!("{e:?}"))?;
            }
            Ok(())
        },
    );
}

// -------------------------------------------------------------- registries

const REGISTRY_WORDS: &[&str] = &[
    "registry",
    "localhost",
    ".",
    ".",
    "-",
    ":",
    ":",
    "5000",
    "0",
    "70000",
    "R",
    "_",
    "127.0.0.1",
    "[::1]",
    "0.0.0.0",
    "x",
    "",
];

#[test]
fn fuzz_registry_names_and_ports() {
    use topgun_core::{RegistryRef, RegistrySpec};
    let input = prop_oneof![3 => tokens(REGISTRY_WORDS, 6), 1 => noise(30)];
    fuzz(
        "core::RegistrySpec::parse",
        400,
        input,
        |input| -> Outcome {
            if let Ok(spec) = RegistrySpec::parse(&input) {
                check!(spec.port != Some(0), "port 0 from {input:?}");
                check!(
                    !spec.name.as_str().is_empty() && spec.name.as_str().len() <= 63,
                    "name {:?} from {input:?}",
                    spec.name
                );
            }
            if let Ok(r) = RegistryRef::parse(&input) {
                let again = RegistryRef::parse(&r.to_string());
                check!(
                    again.as_ref().ok() == Some(&r),
                    "{input:?} → {r} does not round-trip: {again:?}"
                );
            }
            if let Ok(spec) = RegistrySpec::new("r.localhost").and_then(|s| s.with_port(&input)) {
                check!(spec.port != Some(0), "port 0 from --port {input:?}");
            }
            Ok(())
        },
    );
}

const REGISTRIES_YAML_BITS: &[&str] = &[
    "\n", "  ", ": ", ":", "- ", "[", "]", "{", "}", "\"", "'", ",", "#", "tls:", "auth:", "bad: ",
    "true", "password", "configs:", "mirrors:",
];

#[test]
fn fuzz_registries_config_keeps_passwords_out_of_errors() {
    use topgun_core::RegistriesConfig;
    let secret = "[a-z]{4}-[A-Z0-9]{10}";
    let text = (secret, 0..4u8).prop_map(|(pw, form)| {
        let body = match form {
            0 => format!("configs:\n  r.example:\n    auth:\n      username: u\n      password: {pw}\n"),
            1 => format!("configs:\n  r.example:\n    auth: {{username: u, password: \"{pw}\"}}\n    tls: {{insecure_skip_verify: true}}\n"),
            2 => format!("mirrors:\n  docker.io:\n    endpoint: [\"http://m:5000\"]\nconfigs:\n  m:5000:\n    auth:\n      auth: {pw}\n"),
            _ => format!("configs:\n  r:\n    auth:\n      identitytoken: {pw}\n"),
        };
        (body, pw)
    });
    let mutated =
        text.prop_flat_map(|(body, pw)| (mutate(Just(body), REGISTRIES_YAML_BITS), Just(pw)));
    fuzz(
        "core::RegistriesConfig::parse(passwords)",
        300,
        mutated,
        |(text, pw)| -> Outcome {
            if let Err(e) = RegistriesConfig::parse(&text, Path::new("r.yaml")) {
                let message = e.to_string();
                check!(
                    !message.contains(&pw),
                    "the password shows in: {message}\n(input {text:?})"
                );
            }
            Ok(())
        },
    );
}

// --------------------------------------------------------- k3d config files

const K3D_BITS: &[&str] = &[
    "\n",
    "  ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "\"",
    ",",
    "#",
    ":*",
    ":0",
    ";",
    "@",
    "nodeFilters:",
    "server[0]",
    "agents:1-",
    ":direct",
    "true",
    "\"\"",
    "$X",
    "k3d-",
    "0.0.0.0",
];

/// k3d files (from the shape of k3d's docs example), mutated: never a
/// panic; the token and an environment value never show in an error; what
/// converts reads back as a topgun config.
#[test]
fn fuzz_k3d_config() {
    let secret = "[a-z]{4}[A-Z0-9]{12}";
    let text = (secret, secret).prop_map(|(token, value)| {
        let body = format!(
            "apiVersion: k3d.io/v1alpha5\nkind: Simple\nmetadata:\n  name: fz\nservers: 3\nagents: 2\n\
             kubeAPI:\n  host: k.example\n  hostIP: 127.0.0.1\n  hostPort: \"6445\"\ntoken: {token}\n\
             subnet: 172.28.0.0/16\nvolumes:\n  - volume: /src:/src\n    nodeFilters:\n      - server:0\n      \
             - agent:*\nports:\n  - port: 8080:80\n    nodeFilters:\n      - loadbalancer\nenv:\n  \
             - envVar: DB_PASSWORD={value}\n    nodeFilters:\n      - all\nregistries:\n  create:\n    \
             name: k3d-reg.localhost\n    hostPort: \"5000\"\n  use:\n    - k3d-other.localhost:5001\n\
             hostAliases: []\noptions:\n  k3d:\n    wait: true\n    timeout: 1m30s\n    \
             disableRollback: false\n  k3s:\n    extraArgs:\n      - arg: --tls-san=a.example\n      \
             - arg: --disable=traefik\n        nodeFilters:\n          - servers:*\n    nodeLabels:\n      \
             - label: tier=web\n        nodeFilters: [agent:1]\n  kubeconfig:\n    \
             switchCurrentContext: false\n  runtime:\n    gpuRequest: \"\"\n"
        );
        (body, token, value)
    });
    let mutated = text.prop_flat_map(|(body, token, value)| {
        (mutate(Just(body), K3D_BITS), Just(token), Just(value))
    });
    fuzz(
        "core::convert_k3d",
        200,
        mutated,
        |(text, token, value)| -> Outcome {
            match topgun_core::convert_k3d(&text, Path::new("k3d.yaml")) {
                Ok(c) => {
                    let again = ClusterSpec::from_yaml(&c.yaml, Path::new("converted.yaml"));
                    check!(
                        again.is_ok(),
                        "the converted config does not read back: {again:?}"
                    );
                }
                Err(e) => {
                    let message = e.to_string();
                    check!(!message.is_empty(), "empty message");
                    for secret in [&token, &value] {
                        check!(
                            !message.contains(secret.as_str()),
                            "a secret shows in: {message}\n(input {text:?})"
                        );
                    }
                }
            }
            Ok(())
        },
    );
}
