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
            San::Ip(_) => Err(invalid(name, "is an IP address, not a DNS name", "use San::Ip")),
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
            &format!("pass `--tls-san {value}`"),
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
    let name = input.strip_suffix('.').unwrap_or(input).to_ascii_lowercase();
    if name.len() > 253 {
        return Err(invalid(input, "is longer than 253 characters", "use a shorter name"));
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
        return Err(invalid(input, "has an empty label", "remove the doubled or leading dot"));
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

/// Finds `--tls-san VALUE` or `--tls-san=VALUE` inside a string that was
/// passed as one argument, and returns the cleaned value.
fn flag_value(input: &str) -> Option<String> {
    let tokens: Vec<&str> = input.split_whitespace().collect();
    for (i, token) in tokens.iter().enumerate() {
        let value = if let Some(v) = token.strip_prefix("--tls-san=") {
            Some(v)
        } else if *token == "--tls-san" {
            tokens.get(i + 1).copied()
        } else {
            None
        };
        if let Some(v) = value {
            let v = v.trim_matches(|c| c == '"' || c == '\'' || c == '\\');
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            if !v.is_empty() {
                return Some(v.to_owned());
            }
        }
    }
    None
}

fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(inner) = authority.strip_prefix('[') {
        return inner.split(']').next().unwrap_or(inner);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn invalid(input: &str, problem: &str, fix: &str) -> Error {
    Error::InvalidSan {
        input: input.to_owned(),
        problem: problem.to_owned(),
        fix: fix.to_owned(),
    }
}
