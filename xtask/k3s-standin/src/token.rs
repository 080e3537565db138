//! The cluster token and the bootstrap data it protects.
//!
//! Like k3s, a token is either a bare password or the full form
//! `K10<sha256 of the cluster CA bundle>::<user>:<password>`. The password
//! names the bootstrap key (`/bootstrap/<first 12 hex of sha256(password)>`)
//! and encrypts the bootstrap data (the cluster CAs): PBKDF2-HMAC-SHA256
//! derives an AES-256-GCM key, so a wrong token cannot decrypt the data and
//! any change to it is detected.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Secret;

const PBKDF2_ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
const FORMAT: &str = "standin-aes256gcm-pbkdf2sha256";

/// A parsed cluster token.
#[derive(Debug, Clone)]
pub struct Token {
    /// The password part: what authenticates joiners and encrypts bootstrap data.
    pub password: Secret,
    /// The CA hash of the `K10...` form, if given: joiners check the
    /// cluster CA they are sent against it.
    pub ca_hash: Option<String>,
}

impl Token {
    /// Parses a token in either form.
    pub fn parse(raw: &Secret) -> Result<Token, String> {
        let raw = raw.expose();
        let Some(rest) = raw.strip_prefix("K10") else {
            return Ok(Token {
                password: Secret::new(raw),
                ca_hash: None,
            });
        };
        let Some((hash, creds)) = rest.split_once("::") else {
            return Ok(Token {
                password: Secret::new(raw),
                ca_hash: None,
            });
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                "failed to normalize server token; must be in format K10<CA-HASH>::<USERNAME>:<PASSWORD> or <PASSWORD>".into(),
            );
        }
        let password = creds.split_once(':').map_or(creds, |(_, p)| p);
        if password.is_empty() {
            return Err("failed to normalize server token: empty password".into());
        }
        Ok(Token {
            password: Secret::new(password),
            ca_hash: Some(hash.to_ascii_lowercase()),
        })
    }

    /// A fresh random token, as k3s generates when none is given.
    pub fn generate() -> Token {
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("system random source");
        Token {
            password: Secret::new(hex::encode(bytes)),
            ca_hash: None,
        }
    }

    /// The etcd key of this token's bootstrap data.
    pub fn bootstrap_key(&self) -> String {
        let digest = Sha256::digest(self.password.expose().as_bytes());
        format!("/bootstrap/{}", &hex::encode(digest)[..12])
    }

    /// The full `K10<ca hash>::server:<password>` form for `ca_pem`.
    pub fn full(&self, ca_pem: &str) -> Secret {
        Secret::new(format!(
            "K10{}::server:{}",
            ca_hash(ca_pem),
            self.password.expose()
        ))
    }

    /// Checks `ca_pem` against the token's CA hash, if it has one.
    pub fn check_ca(&self, ca_pem: &str) -> Result<(), String> {
        match &self.ca_hash {
            Some(h) if *h != ca_hash(ca_pem) => {
                Err("token CA hash does not match the Cluster CA certificate hash".into())
            }
            _ => Ok(()),
        }
    }
}

/// The hex sha256 of a CA bundle, as in `K10` tokens.
pub fn ca_hash(ca_pem: &str) -> String {
    hex::encode(Sha256::digest(ca_pem.as_bytes()))
}

/// A CA: certificate and key, PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaPem {
    /// Certificate, PEM.
    pub cert: String,
    /// Private key, PEM.
    pub key: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What servers share: the cluster CAs. (k3s shares more: etcd, request
/// header and service-account keys; the stand-in has no use for them.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapData {
    /// Signs serving certificates (`k3s-server-ca`).
    pub server_ca: CaPem,
    /// Signs client certificates, e.g. the admin's (`k3s-client-ca`).
    pub client_ca: CaPem,
}

impl BootstrapData {
    /// Generates fresh CAs named like k3s's.
    pub fn generate() -> anyhow::Result<Self> {
        let gen_ca = |name: String| -> anyhow::Result<CaPem> {
            let ca = topgun_tls::CertificateAuthority::generate(&topgun_tls::CaParams::new(name))?;
            Ok(CaPem {
                cert: ca.cert_pem().to_owned(),
                key: ca.certified_key().key_pem.expose().to_owned(),
            })
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Ok(BootstrapData {
            server_ca: gen_ca(format!("k3s-server-ca@{now}"))?,
            client_ca: gen_ca(format!("k3s-client-ca@{now}"))?,
        })
    }

    /// Encrypts with `password`: `<format>:<b64 salt>:<b64 nonce+ciphertext+tag>`.
    pub fn encrypt(&self, password: &Secret) -> String {
        let rng = SystemRandom::new();
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut salt).expect("system random source");
        rng.fill(&mut nonce).expect("system random source");
        let key = derive_key(password, &salt);
        let mut data = serde_json::to_vec(self).expect("bootstrap data serializes");
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(FORMAT),
            &mut data,
        )
        .expect("AES-GCM seal");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        format!("{FORMAT}:{}:{}", B64.encode(salt), B64.encode(sealed))
    }

    /// Decrypts what [`BootstrapData::encrypt`] made. Any failure, including a
    /// wrong password, is an error.
    pub fn decrypt(text: &str, password: &Secret) -> Result<Self, String> {
        let mut parts = text.trim().splitn(3, ':');
        let (Some(format), Some(salt), Some(sealed)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("bootstrap data is not in a known format".into());
        };
        if format != FORMAT {
            return Err(format!("bootstrap data is in an unknown format {format:?}"));
        }
        let salt = B64.decode(salt).map_err(|_| "bootstrap data is corrupt")?;
        let sealed = B64
            .decode(sealed)
            .map_err(|_| "bootstrap data is corrupt")?;
        if sealed.len() < NONCE_LEN {
            return Err("bootstrap data is corrupt".into());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bootstrap data is corrupt")?;
        let key = derive_key(password, &salt);
        let mut ct = ct.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(FORMAT), &mut ct)
            .map_err(
                |_| "failed to decrypt bootstrap data: the token is wrong or the data was altered",
            )?;
        serde_json::from_slice(plain).map_err(|e| format!("bootstrap data is corrupt: {e}"))
    }
}

fn derive_key(password: &Secret, salt: &[u8]) -> LessSafeKey {
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(PBKDF2_ITERATIONS).expect("non-zero"),
        salt,
        password.expose().as_bytes(),
        &mut key,
    );
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_full_tokens() {
        let t = Token::parse(&Secret::new("hunter2")).unwrap();
        assert_eq!(t.password.expose(), "hunter2");
        assert!(t.ca_hash.is_none());
        let full = t.full("CA PEM");
        let t2 = Token::parse(&full).unwrap();
        assert_eq!(t2.password.expose(), "hunter2");
        assert_eq!(t2.ca_hash.as_deref(), Some(ca_hash("CA PEM").as_str()));
        assert!(t2.check_ca("CA PEM").is_ok());
        assert!(t2.check_ca("OTHER").is_err());
        assert!(Token::parse(&Secret::new("K10abc::server:x")).is_err());
    }

    #[test]
    fn bootstrap_key_is_sha256_prefix() {
        // sha256("hunter2") = f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7
        let t = Token::parse(&Secret::new("hunter2")).unwrap();
        assert_eq!(t.bootstrap_key(), "/bootstrap/f52fbd32b2b3");
    }

    #[test]
    fn encrypt_round_trip_and_wrong_token() {
        let data = BootstrapData {
            server_ca: CaPem {
                cert: "c1".into(),
                key: "server-ca-private-key".into(),
            },
            client_ca: CaPem {
                cert: "c2".into(),
                key: "k2".into(),
            },
        };
        let sealed = data.encrypt(&Secret::new("right"));
        // A key long enough that random ciphertext cannot contain it by
        // chance (a two-letter one did, about once in forty runs).
        assert!(!sealed.contains("server-ca-private-key"));
        assert_eq!(
            BootstrapData::decrypt(&sealed, &Secret::new("right")).unwrap(),
            data
        );
        let err = BootstrapData::decrypt(&sealed, &Secret::new("wrong")).unwrap_err();
        assert!(err.contains("token is wrong"), "{err}");
        // Tampering is detected.
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            BootstrapData::decrypt(
                std::str::from_utf8(&tampered).unwrap(),
                &Secret::new("right")
            )
            .is_err()
        );
    }
}
