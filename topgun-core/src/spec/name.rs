//! Cluster names and tokens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::{Error, Result};

/// The longest cluster name accepted.
pub(crate) const MAX_NAME_LEN: usize = 32;

/// A validated cluster name: 1 to 32 of `[a-zA-Z0-9-]`, starting and ending
/// with a letter or digit. Mixed case is kept for container names and labels;
/// node hostnames use the lowercased form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ClusterName(String);

impl ClusterName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self> {
        let what = || format!("cluster name {name:?}");
        if name.is_empty() {
            return Err(Error::invalid(
                what(),
                "is empty",
                "give the cluster a name, e.g. `demo`",
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            let fix = if bad == '_' {
                format!("use '-' instead: {:?}", name.replace('_', "-"))
            } else {
                "use only letters, digits and '-'".to_owned()
            };
            return Err(Error::invalid(what(), format!("contains {bad:?}"), fix));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(Error::invalid(
                what(),
                "starts or ends with '-'",
                format!(
                    "start and end with a letter or digit, e.g. {:?}",
                    name.trim_matches('-')
                ),
            ));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(Error::invalid(
                what(),
                format!(
                    "is {} characters long, more than {MAX_NAME_LEN}",
                    name.len()
                ),
                "use a shorter name (node hostnames are built from it)",
            ));
        }
        Ok(ClusterName(name.to_owned()))
    }

    /// The placeholder for "no name given yet"; `ClusterSpec::validate`
    /// refuses it.
    pub(crate) fn unset() -> Self {
        ClusterName(String::new())
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lowercased name, used in hostnames and DNS SANs.
    pub fn lowercase(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ClusterName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ClusterName::new(s)
    }
}

impl<'de> Deserialize<'de> for ClusterName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::spec::de_parsed(d, ClusterName::new)
    }
}

/// The cluster token that servers and agents share. Its `Debug` output is
/// redacted; it only ever reaches containers as the `K3S_TOKEN` environment
/// variable, never labels, logs or command lines.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Validates a user-supplied token: 1 to 256 printable, non-space ASCII
    /// characters.
    pub fn new(token: &str) -> Result<Self> {
        let what = "token";
        if token.is_empty() {
            return Err(Error::invalid(
                what,
                "is empty",
                "leave it out to get a random one",
            ));
        }
        if token.len() > 256 {
            return Err(Error::invalid(
                what,
                "is longer than 256 characters",
                "use a shorter token",
            ));
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::invalid(
                what,
                "contains whitespace or non-ASCII characters",
                "use printable ASCII without spaces",
            ));
        }
        Ok(Token(token.to_owned()))
    }

    /// A random token of 256 bits, hex-encoded.
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::random();
        Token(hex::encode(bytes))
    }

    /// The token. Handle with care: this is a secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::spec::de_parsed(d, Token::new)
    }
}
