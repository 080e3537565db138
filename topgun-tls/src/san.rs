//! Subject alternative names: parsing user input, and matching a host against
//! the SANs of a certificate the way RFC 6125 (and so kubectl) does.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One subject alternative name: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum San {
    /// A DNS name, lowercased; may start with a `*.` wildcard label.
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for San {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        parse_san(s)
    }
}

impl San {
    /// A DNS SAN from a name known to be valid (checked, panics never: invalid
    /// names are returned as errors).
    pub fn dns(name: &str) -> Result<Self> {
        match parse_san(name)? {
            San::Dns(name) => Ok(San::Dns(name)),
            San::Ip(_) => Err(invalid(
                name,
                "is an IP address, not a DNS name",
                "use San::Ip",
            )),
        }
    }

    /// Whether this SAN covers `host` under RFC 6125: an IP host matches only
    /// an equal IP SAN; a DNS host matches an equal DNS SAN (case-insensitive),
    /// or a wildcard SAN whose `*` stands for exactly one whole leftmost label.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match (self, host.parse::<IpAddr>()) {
            (San::Ip(ip), Ok(host_ip)) => *ip == host_ip,
            (San::Dns(_), Ok(_)) | (San::Ip(_), Err(_)) => false,
            (San::Dns(name), Err(_)) => {
                let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(rest) => match host.split_once('.') {
                        Some((label, host_rest)) => !label.is_empty() && host_rest == rest,
                        None => false,
                    },
                    None => *name == host,
                }
            }
        }
    }
}

/// Whether any of `sans` covers `host` (see [`San::covers`]).
pub fn covered_by(sans: &[San], host: &str) -> bool {
    sans.iter().any(|san| san.covers(host))
}

/// Parses a comma-separated list of SANs, as given to `--tls-san`.
///
/// Every item is validated by [`parse_san`]; an empty item is an error.
pub fn parse_san_list(input: &str) -> Result<Vec<San>> {
    if crate::redact::looks_like_pem(input) {
        return Err(pem_refused(input));
    }
    if looks_like_command(input) {
        // Report the whole string, not its first comma-separated piece.
        return parse_san(input).map(|san| vec![san]);
    }
    input.split(',').map(parse_san).collect()
}

/// Parses one SAN: an IPv4 or IPv6 address, or a DNS name made of RFC 1123
/// labels, where `*` may only be the whole leftmost label.
///
/// Errors name the problem and the fix, for example `k3s server --tls-san
/// "alien.io"` gives "pass `--tls-san alien.io`".
pub fn parse_san(input: &str) -> Result<San> {
    if crate::redact::looks_like_pem(input) {
        return Err(pem_refused(input));
    }
    if input.is_empty() {
        return Err(invalid(
            input,
            "is empty",
            "remove the empty item (a doubled or trailing comma)",
        ));
    }
    if let Some(value) = flag_value(input) {
        return Err(invalid(
            input,
            "is a command line, not a name",
            &format!("pass `{value}`"),
        ));
    }
    if input.chars().any(char::is_whitespace) {
        let fix = match input.split_whitespace().collect::<Vec<_>>().as_slice() {
            [one] => format!("pass `{one}` without the surrounding spaces"),
            _ => "give one name per --tls-san, or separate names with commas".to_owned(),
        };
        return Err(invalid(input, "contains whitespace", &fix));
    }
    if input.starts_with('-') {
        return Err(invalid(
            input,
            "looks like a flag",
            "put the flag before its value, e.g. `--tls-san example.com`",
        ));
    }
    let unquoted = input.trim_matches(|c| c == '"' || c == '\'');
    if unquoted != input {
        return Err(invalid(
            input,
            "contains quotes",
            &format!("pass `{unquoted}` without quotes"),
        ));
    }
    if let Some((scheme, rest)) = input.split_once("://") {
        let host = host_of(rest);
        return Err(invalid(
            input,
            &format!("is a {scheme}:// URL"),
            &format!("pass only the host: `{host}`"),
        ));
    }
    if let Ok(ip) = input.parse::<IpAddr>() {
        return Ok(San::Ip(ip));
    }
    if let Some(inner) = input.strip_prefix('[') {
        let host = inner.split(']').next().unwrap_or_default();
        return Err(invalid(
            input,
            "has brackets or a port",
            &format!("pass the bare address: `{host}`"),
        ));
    }
    if let Some((host, port)) = input.rsplit_once(':')
        && !host.contains(':')
    {
        let problem = if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() {
            "has a port; a SAN names a host only"
        } else {
            "contains ':'"
        };
        return Err(invalid(input, problem, &format!("pass `{host}`")));
    }
    parse_dns(input).map(San::Dns)
}

/// Warnings about SANs that parse but are not useful to a client, such as
/// `0.0.0.0` and `::`, which no client can connect to.
pub fn san_warnings(sans: &[San]) -> Vec<String> {
    sans.iter()
        .filter_map(|san| match san {
            San::Ip(ip) if ip.is_unspecified() => Some(format!(
                "{ip} is the unspecified address: no client can connect to it, so as a SAN it \
                 covers nothing; use the address clients dial, e.g. the host's LAN IP"
            )),
            _ => None,
        })
        .collect()
}

fn parse_dns(input: &str) -> Result<String> {
    let name = input
        .strip_suffix('.')
        .unwrap_or(input)
        .to_ascii_lowercase();
    if name.len() > 253 {
        return Err(invalid(
            input,
            "is longer than 253 characters",
            "use a shorter name",
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" {
            if i != 0 {
                return Err(invalid(
                    input,
                    "has a wildcard that is not the leftmost label",
                    "a wildcard may only be the whole first label, e.g. `*.example.com`",
                ));
            }
            if labels.len() < 2 {
                return Err(invalid(
                    input,
                    "is a bare wildcard",
                    "name the domain it covers, e.g. `*.example.com`",
                ));
            }
            continue;
        }
        check_label(input, label)?;
    }
    if labels.iter().all(|l| l.chars().all(|c| c.is_ascii_digit())) {
        return Err(invalid(
            input,
            "is neither an IP address nor a DNS name",
            "write a complete IPv4 address such as `192.168.1.28`",
        ));
    }
    Ok(name)
}

fn check_label(input: &str, label: &str) -> Result<()> {
    if label.is_empty() {
        return Err(invalid(
            input,
            "has an empty label",
            "remove the doubled or leading dot",
        ));
    }
    if label.len() > 63 {
        return Err(invalid(
            input,
            &format!("has the label {label:?}, longer than 63 characters"),
            "shorten that label",
        ));
    }
    if label.contains('*') {
        return Err(invalid(
            input,
            "has a partial wildcard label",
            "a wildcard must be the whole first label, e.g. `*.example.com`",
        ));
    }
    if let Some(bad) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        let fix = if bad == '_' {
            "replace '_' with '-'".to_owned()
        } else {
            "use only letters, digits and '-' (RFC 1123)".to_owned()
        };
        return Err(invalid(input, &format!("contains {bad:?}"), &fix));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(invalid(
            input,
            &format!("has the label {label:?}, which starts or ends with '-'"),
            "labels must start and end with a letter or digit",
        ));
    }
    Ok(())
}

fn looks_like_command(input: &str) -> bool {
    flag_value(input).is_some()
}

/// Finds every `--tls-san VALUE` or `--tls-san=VALUE` inside a string that
/// was passed as one argument, and returns the flags to pass instead, with
/// quotes and backslashes removed (`--tls-san a --tls-san b`).
fn flag_value(input: &str) -> Option<String> {
    let tokens: Vec<&str> = input.split_whitespace().collect();
    let mut flags = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let value = if let Some(v) = token.strip_prefix("--tls-san=") {
            Some(v)
        } else if *token == "--tls-san" {
            tokens.get(i + 1).copied()
        } else {
            None
        };
        if let Some(v) = value {
            let v: String = v
                .chars()
                .filter(|c| !matches!(c, '"' | '\'' | '\\'))
                .collect();
            if !v.is_empty() {
                flags.push(format!("--tls-san {v}"));
            }
        }
    }
    if flags.is_empty() {
        None
    } else {
        Some(flags.join(" "))
    }
}

fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(inner) = authority.strip_prefix('[') {
        return inner.split(']').next().unwrap_or(inner);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// PEM text (a certificate or a key) where a name belongs: refused without
/// repeating it.
fn pem_refused(input: &str) -> Error {
    Error::InvalidSan {
        input: crate::redact::describe_pem(input),
        problem: "is PEM text (a certificate or key), not a name".to_owned(),
        fix: "pass a host name or an IP address".to_owned(),
    }
}

fn invalid(input: &str, problem: &str, fix: &str) -> Error {
    Error::InvalidSan {
        input: input.to_owned(),
        problem: problem.to_owned(),
        fix: fix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> San {
        San::Ip(s.parse().unwrap())
    }

    fn dns(s: &str) -> San {
        San::Dns(s.to_owned())
    }

    #[test]
    fn parses_valid_sans() {
        let cases = [
            ("192.168.1.28", ip("192.168.1.28")),
            ("127.0.0.1", ip("127.0.0.1")),
            ("::1", ip("::1")),
            ("fe80::1", ip("fe80::1")),
            ("2001:db8::10", ip("2001:db8::10")),
            ("0.0.0.0", ip("0.0.0.0")),
            ("localhost", dns("localhost")),
            ("Example.COM", dns("example.com")),
            ("example.com.", dns("example.com")),
            ("*.example.com", dns("*.example.com")),
            ("k3d-demo-server-0", dns("k3d-demo-server-0")),
            ("a1.b-2.c3", dns("a1.b-2.c3")),
            (
                "kubernetes.default.svc.cluster.local",
                dns("kubernetes.default.svc.cluster.local"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_san(input).unwrap_or_else(|e| panic!("{input}: {e}")),
                want
            );
        }
    }

    #[test]
    fn refuses_bad_sans_with_the_fix() {
        let long_label = format!("{}.com", "a".repeat(64));
        // (input, words of the problem, words of the fix)
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"k3s server --tls-san "alien.io""#,
                "is a command line",
                "pass `--tls-san alien.io`",
            ),
            (
                r#"k3s server --tls-san \"alien.io\""#,
                "is a command line",
                "pass `--tls-san alien.io`",
            ),
            (
                "--tls-san=alien.io",
                "is a command line",
                "pass `--tls-san alien.io`",
            ),
            (
                "--tls-san alien.io",
                "is a command line",
                "pass `--tls-san alien.io`",
            ),
            (
                "k3s server --tls-san a.io --tls-san=b.io",
                "is a command line",
                "pass `--tls-san a.io --tls-san b.io`",
            ),
            (
                "alien.io ",
                "contains whitespace",
                "pass `alien.io` without the surrounding spaces",
            ),
            (
                "alien.io other.io",
                "contains whitespace",
                "one name per --tls-san",
            ),
            ("-alien.io", "looks like a flag", "--tls-san example.com"),
            (
                r#""alien.io""#,
                "contains quotes",
                "pass `alien.io` without quotes",
            ),
            (
                "'alien.io'",
                "contains quotes",
                "pass `alien.io` without quotes",
            ),
            (
                "https://alien.io:6443/x",
                "is a https:// URL",
                "pass only the host: `alien.io`",
            ),
            (
                "https://[::1]:6443",
                "is a https:// URL",
                "pass only the host: `::1`",
            ),
            ("alien.io:6443", "has a port", "pass `alien.io`"),
            ("192.168.1.28:6443", "has a port", "pass `192.168.1.28`"),
            (
                "[::1]:6443",
                "has brackets or a port",
                "pass the bare address: `::1`",
            ),
            ("[::1]", "has brackets or a port", "`::1`"),
            ("", "is empty", "remove the empty item"),
            (
                "a..b",
                "has an empty label",
                "remove the doubled or leading dot",
            ),
            (
                ".a.b",
                "has an empty label",
                "remove the doubled or leading dot",
            ),
            ("foo.*.com", "not the leftmost label", "`*.example.com`"),
            ("*", "is a bare wildcard", "`*.example.com`"),
            ("f*o.example.com", "partial wildcard", "`*.example.com`"),
            ("*foo.example.com", "partial wildcard", "`*.example.com`"),
            ("foo_bar.com", "contains '_'", "replace '_' with '-'"),
            ("foo!.com", "contains '!'", "RFC 1123"),
            (
                "foo-.com",
                "starts or ends with '-'",
                "start and end with a letter or digit",
            ),
            (
                "192.168.1",
                "neither an IP address nor a DNS name",
                "`192.168.1.28`",
            ),
            (
                "1.2.3.4.5",
                "neither an IP address nor a DNS name",
                "`192.168.1.28`",
            ),
            (
                &long_label,
                "longer than 63 characters",
                "shorten that label",
            ),
        ];
        for (input, problem, fix) in cases {
            let err = parse_san(input).expect_err(input);
            let Error::InvalidSan {
                problem: p,
                fix: f,
                input: i,
            } = &err
            else {
                panic!("{input}: unexpected error {err}");
            };
            assert_eq!(i, input);
            assert!(
                p.contains(problem),
                "{input:?}: problem {p:?} lacks {problem:?}"
            );
            assert!(f.contains(fix), "{input:?}: fix {f:?} lacks {fix:?}");
            // The message shows both.
            let msg = err.to_string();
            assert!(msg.contains(problem) && msg.contains(fix), "{msg}");
        }
    }

    #[test]
    fn parses_lists() {
        assert_eq!(
            parse_san_list("alien.io,192.168.1.28,::1").unwrap(),
            vec![dns("alien.io"), ip("192.168.1.28"), ip("::1")]
        );
        let cases = [
            ("a.io,,b.io", "is empty"),
            ("a.io,", "is empty"),
            ("a.io, b.io", "contains whitespace"),
            // The whole string is reported, not its first piece.
            (
                r#"k3s server --tls-san "alien.io",x"#,
                "pass `--tls-san alien.io,x`",
            ),
        ];
        for (input, want) in cases {
            let err = parse_san_list(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn warns_about_unspecified_addresses() {
        let sans = parse_san_list("0.0.0.0,::,127.0.0.1,localhost").unwrap();
        let warnings = san_warnings(&sans);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("0.0.0.0 is the unspecified address"));
        assert!(warnings[1].starts_with(":: is the unspecified address"));
        assert!(
            warnings
                .iter()
                .all(|w| w.contains("no client can connect to it"))
        );
        assert!(san_warnings(&parse_san_list("127.0.0.1,::1").unwrap()).is_empty());
    }

    #[test]
    fn matches_like_rfc_6125() {
        let cases = [
            // IP hosts match IP SANs only, by value.
            (ip("127.0.0.1"), "127.0.0.1", true),
            (ip("127.0.0.1"), "127.0.0.2", false),
            (ip("::1"), "::1", true),
            (ip("::1"), "[::1]", true),
            (ip("::1"), "0:0:0:0:0:0:0:1", true),
            (ip("127.0.0.1"), "localhost", false),
            (dns("127.0.0.1"), "127.0.0.1", false),
            (dns("localhost"), "127.0.0.1", false),
            (ip("0.0.0.0"), "192.168.1.28", false),
            (ip("127.0.0.1"), "::ffff:127.0.0.1", false),
            // DNS names: exact, case-insensitive, trailing dot ignored.
            (dns("localhost"), "localhost", true),
            (dns("localhost"), "LocalHost", true),
            (dns("localhost"), "localhost.", true),
            (dns("kubernetes"), "kubernetes.default", false),
            (dns("example.com"), "www.example.com", false),
            // A wildcard covers exactly one whole label.
            (dns("*.example.com"), "a.example.com", true),
            (dns("*.example.com"), "A.Example.Com", true),
            (dns("*.example.com"), "a.b.example.com", false),
            (dns("*.example.com"), "example.com", false),
            (dns("*.example.com"), ".example.com", false),
            (dns("*.example.com"), "a.example.org", false),
            (dns("*.example.com"), "a.xexample.com", false),
        ];
        for (san, host, want) in cases {
            assert_eq!(san.covers(host), want, "{san} covers {host}?");
        }
    }

    #[test]
    fn the_k3d_case_is_not_covered() {
        let sans = parse_san_list("0.0.0.0,10.43.0.1,127.0.0.1,172.20.0.2").unwrap();
        assert!(!covered_by(&sans, "192.168.1.28"));
        assert!(covered_by(&sans, "127.0.0.1"));
        assert!(covered_by(&sans, "172.20.0.2"));
    }

    /// Found by `tests/fuzz.rs` (tls::parse_san(keys)): the error repeated
    /// the whole input, so a key pasted as a SAN was printed back.
    #[test]
    fn fuzz_regression_pem_text_is_refused_without_being_shown() {
        let key = "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n";
        for err in [
            parse_san(key).unwrap_err(),
            parse_san_list(key).unwrap_err(),
            parse_san_list(&format!("a.example,{key}")).unwrap_err(),
            parse_san(&key.replace('\n', " ")).unwrap_err(),
        ] {
            let m = err.to_string();
            assert!(!m.contains("AAAAAAAA"), "{m}");
            assert!(m.contains("is PEM text") && m.contains("not shown"), "{m}");
        }
    }
}
