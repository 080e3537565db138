//! Inspection of certificates: PEM or DER files and bundles, or the chain a
//! server presented.
//!
//! [`inspect_pem_or_der`] turns bytes into one [`CertInfo`] per certificate:
//! subject, issuer, serial, validity and days left, SANs split into DNS and
//! IP, key algorithm, CA flag, key usages, EKUs and the SHA-256 fingerprint
//! (formatted as `openssl x509 -fingerprint -sha256` prints it).

use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;

use crate::san::{San, covered_by};
use crate::{Error, Result};

/// Everything topgun reports about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CertInfo {
    /// The subject distinguished name, e.g. `CN=k3s, O=k3s`.
    pub subject: String,
    /// The issuer distinguished name.
    pub issuer: String,
    /// The serial number, upper-case hex without separators (as
    /// `openssl x509 -serial` prints it).
    pub serial: String,
    /// Start of validity.
    #[serde(serialize_with = "rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(serialize_with = "rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whole days from the time of inspection to `not_after`; negative once
    /// expired.
    pub days_left: i64,
    /// `not_after` has passed.
    pub expired: bool,
    /// `not_before` is still in the future.
    pub not_yet_valid: bool,
    /// The subject alternative names.
    pub sans: SanNames,
    /// The public key algorithm, e.g. `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub key_algorithm: String,
    /// Basic constraints say this is a CA.
    pub is_ca: bool,
    /// Subject and issuer are the same name.
    pub self_signed: bool,
    /// Key usages by their RFC 5280 names (`digitalSignature`, ...).
    pub key_usage: Vec<String>,
    /// Extended key usages (`serverAuth`, `clientAuth`, ... or a dotted OID).
    pub extended_key_usage: Vec<String>,
    /// SHA-256 of the DER, upper-case hex pairs joined by `:`.
    pub sha256_fingerprint: String,
    #[serde(skip)]
    der: CertificateDer<'static>,
}

/// Subject alternative names, split by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SanNames {
    /// DNS names, as written in the certificate.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ip: Vec<IpAddr>,
    /// Any other kind (URI, email, ...), as `kind:value`. Never matched
    /// against a host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<String>,
}

impl SanNames {
    /// The DNS and IP names as [`San`]s (DNS names lowercased).
    pub fn to_sans(&self) -> Vec<San> {
        self.dns
            .iter()
            .map(|d| San::Dns(d.to_ascii_lowercase()))
            .chain(self.ip.iter().map(|ip| San::Ip(*ip)))
            .collect()
    }

    /// Whether these names cover `host` (RFC 6125, see [`San::covers`]).
    pub fn covers(&self, host: &str) -> bool {
        covered_by(&self.to_sans(), host)
    }

    /// No DNS or IP names at all.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ip.is_empty()
    }
}

impl CertInfo {
    /// Parses one DER certificate, computing days left from now.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        Self::from_der_at(der, OffsetDateTime::now_utc())
    }

    /// Parses one DER certificate, computing days left from `now`.
    pub fn from_der_at(der: &[u8], now: OffsetDateTime) -> Result<Self> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| Error::parse("certificate (DER)", e))?;
        if !rest.is_empty() {
            return Err(Error::parse(
                "certificate (DER)",
                format!("{} trailing bytes after the certificate", rest.len()),
            ));
        }
        info_of(&cert, der, now)
    }

    /// The certificate's DER encoding.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// Whether this certificate's SANs cover `host` (RFC 6125).
    pub fn covers(&self, host: &str) -> bool {
        self.sans.covers(host)
    }
}

/// Inspects every certificate in `bytes`: a PEM file or bundle (other PEM
/// blocks such as keys are skipped), or one or more concatenated DER
/// certificates.
pub fn inspect_pem_or_der(bytes: &[u8]) -> Result<Vec<CertInfo>> {
    let now = OffsetDateTime::now_utc();
    certificates_from_pem_or_der(bytes, "input")?
        .iter()
        .map(|der| CertInfo::from_der_at(der, now))
        .collect()
}

/// Reads and inspects a PEM or DER file (see [`inspect_pem_or_der`]).
pub fn inspect_file(path: &Path) -> Result<Vec<CertInfo>> {
    let bytes = crate::read::bounded(path, crate::read::MAX_PEM)?;
    let now = OffsetDateTime::now_utc();
    certificates_from_pem_or_der(&bytes, &path.display().to_string())?
        .iter()
        .map(|der| CertInfo::from_der_at(der, now))
        .collect()
}

/// Inspects DER certificates already split apart, such as a chain a server
/// presented.
pub fn inspect_chain(chain: &[CertificateDer<'_>]) -> Result<Vec<CertInfo>> {
    let now = OffsetDateTime::now_utc();
    chain
        .iter()
        .map(|der| CertInfo::from_der_at(der, now))
        .collect()
}

/// Splits PEM or DER input into DER certificates. `what` names the input in
/// errors. Fails when there is no certificate at all.
pub fn certificates_from_pem_or_der(
    bytes: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>> {
    let text_start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let looks_pem = text_start.is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN"))
        || bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if looks_pem {
        let certs = CertificateDer::pem_slice_iter(bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::parse(what, format!("bad PEM: {}", crate::redact::pem_error(&e)))
            })?;
        if certs.is_empty() {
            let kinds = pem_labels(bytes);
            return Err(Error::parse(
                what,
                format!(
                    "no CERTIFICATE block (found {})",
                    if kinds.is_empty() {
                        "nothing".to_owned()
                    } else {
                        kinds.join(", ")
                    }
                ),
            ));
        }
        return Ok(certs);
    }
    if bytes.is_empty() {
        return Err(Error::parse(what, "the input is empty"));
    }
    let mut certs = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (next, _) = x509_parser::parse_x509_certificate(rest)
            .map_err(|e| Error::parse(what, format!("neither PEM nor a DER certificate ({e})")))?;
        let len = rest.len() - next.len();
        certs.push(CertificateDer::from(rest[..len].to_vec()));
        rest = next;
    }
    Ok(certs)
}

fn pem_labels(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .filter_map(|l| l.strip_suffix("-----"))
        // A label with dashes in it is lines run together (maybe a key's).
        .map(|l| {
            if l.len() <= 40 && !l.contains("--") {
                l.to_owned()
            } else {
                "a malformed -----BEGIN line".to_owned()
            }
        })
        .collect()
}

fn info_of(cert: &X509Certificate<'_>, der: &[u8], now: OffsetDateTime) -> Result<CertInfo> {
    let not_before = asn1_time(cert.validity().not_before.timestamp())?;
    let not_after = asn1_time(cert.validity().not_after.timestamp())?;
    let mut sans = SanNames::default();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.dns.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => match ip_of(bytes) {
                    Some(ip) => sans.ip.push(ip),
                    None => sans.other.push(format!("ip:{}", hex::encode(bytes))),
                },
                GeneralName::URI(u) => sans.other.push(format!("uri:{u}")),
                GeneralName::RFC822Name(e) => sans.other.push(format!("email:{e}")),
                other => sans.other.push(format!("{other}")),
            }
        }
    }
    let key_usage = match cert.key_usage() {
        Ok(Some(ku)) => {
            let ku = ku.value;
            [
                (ku.digital_signature(), "digitalSignature"),
                (ku.non_repudiation(), "nonRepudiation"),
                (ku.key_encipherment(), "keyEncipherment"),
                (ku.data_encipherment(), "dataEncipherment"),
                (ku.key_agreement(), "keyAgreement"),
                (ku.key_cert_sign(), "keyCertSign"),
                (ku.crl_sign(), "cRLSign"),
                (ku.encipher_only(), "encipherOnly"),
                (ku.decipher_only(), "decipherOnly"),
            ]
            .into_iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| name.to_owned())
            .collect()
        }
        _ => Vec::new(),
    };
    let extended_key_usage = match cert.extended_key_usage() {
        Ok(Some(eku)) => {
            let eku = eku.value;
            let mut out: Vec<String> = [
                (eku.server_auth, "serverAuth"),
                (eku.client_auth, "clientAuth"),
                (eku.code_signing, "codeSigning"),
                (eku.email_protection, "emailProtection"),
                (eku.time_stamping, "timeStamping"),
                (eku.ocsp_signing, "OCSPSigning"),
                (eku.any, "anyExtendedKeyUsage"),
            ]
            .into_iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| name.to_owned())
            .collect();
            out.extend(eku.other.iter().map(|oid| oid.to_id_string()));
            out
        }
        _ => Vec::new(),
    };
    let fingerprint = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: serial_hex(cert.raw_serial()),
        not_before,
        not_after,
        days_left: (not_after - now).whole_days(),
        expired: now > not_after,
        not_yet_valid: now < not_before,
        sans,
        key_algorithm: key_algorithm(cert),
        is_ca: cert.is_ca(),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        key_usage,
        extended_key_usage,
        sha256_fingerprint: fingerprint,
        der: CertificateDer::from(der.to_vec()),
    })
}

fn asn1_time(unix: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| Error::parse("certificate validity", e))
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    let bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
    match oid.as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".to_owned(),
                Some("1.3.132.0.34") => "ECDSA P-384".to_owned(),
                Some("1.3.132.0.35") => "ECDSA P-521".to_owned(),
                Some(other) => format!("ECDSA (curve {other})"),
                None => format!("ECDSA ({bits} bits)"),
            }
        }
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
            _ => "RSA".to_owned(),
        },
        "1.2.840.113549.1.1.10" => format!("RSA-PSS {bits}"),
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        other => format!("unknown ({other})"),
    }
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

/// Formats a time as RFC 3339 in UTC, seconds precision (`2025-01-31T12:00:00Z`).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaParams, CertUsage, CertificateAuthority, LeafParams, parse_san_list};

    #[test]
    fn reports_what_was_generated() {
        let ca = CertificateAuthority::generate(&CaParams::new("test-ca")).unwrap();
        let leaf = ca
            .issue(
                &LeafParams::new("etcd-0", CertUsage::Peer)
                    .with_sans(parse_san_list("etcd-0,localhost,127.0.0.1,::1").unwrap()),
            )
            .unwrap();
        let bundle = format!("{}{}", leaf.cert_pem, ca.cert_pem());
        let infos = inspect_pem_or_der(bundle.as_bytes()).unwrap();
        assert_eq!(infos.len(), 2);
        let (l, c) = (&infos[0], &infos[1]);
        assert_eq!(l.subject, "CN=etcd-0");
        assert_eq!(l.issuer, "CN=test-ca");
        assert_eq!(l.sans.dns, ["etcd-0", "localhost"]);
        assert_eq!(
            l.sans.ip,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(l.key_algorithm, "ECDSA P-256");
        assert_eq!(l.extended_key_usage, ["serverAuth", "clientAuth"]);
        assert!(!l.is_ca && !l.self_signed && !l.expired && !l.not_yet_valid);
        assert!((363..=365).contains(&l.days_left), "{}", l.days_left);
        assert!(c.is_ca && c.self_signed);
        assert!(c.key_usage.contains(&"keyCertSign".to_owned()));
        assert_eq!(l.sha256_fingerprint.len(), 32 * 3 - 1);
        assert_ne!(l.serial, c.serial);
        // DER of the same certificate gives the same answer.
        let der = inspect_pem_or_der(l.der()).unwrap();
        assert_eq!(der, vec![l.clone()]);
        // Two concatenated DER certificates are a bundle too.
        let mut two = l.der().to_vec();
        two.extend_from_slice(c.der());
        assert_eq!(inspect_pem_or_der(&two).unwrap().len(), 2);
    }

    #[test]
    fn refuses_input_without_certificates() {
        let ca = CertificateAuthority::generate(&CaParams::new("x")).unwrap();
        let err = inspect_pem_or_der(ca.certified_key().key_pem.expose().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no CERTIFICATE block (found PRIVATE KEY)"),
            "{err}"
        );
        let err = inspect_pem_or_der(b"hello").unwrap_err().to_string();
        assert!(err.contains("neither PEM nor a DER certificate"), "{err}");
        assert!(inspect_pem_or_der(b"").is_err());
    }

    #[test]
    fn days_left_counts_from_the_given_time() {
        let ca = CertificateAuthority::generate(&CaParams::new("x")).unwrap();
        let der = &certificates_from_pem_or_der(ca.cert_pem().as_bytes(), "ca").unwrap()[0];
        let info = CertInfo::from_der(der).unwrap();
        let later = CertInfo::from_der_at(der, info.not_after + time::Duration::days(3)).unwrap();
        assert!(later.expired);
        assert_eq!(later.days_left, -3);
        let earlier =
            CertInfo::from_der_at(der, info.not_before - time::Duration::hours(1)).unwrap();
        assert!(earlier.not_yet_valid && !earlier.expired);
    }

    #[test]
    fn formats_times_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(format_time(t), "2023-11-14T22:13:20Z");
    }

    /// Found by `tests/fuzz.rs` (tls::inspect_pem_or_der(keys)): a key whose
    /// lines were run together made the PEM parser's error repeat the line,
    /// key and all (as a list of byte values).
    #[test]
    fn fuzz_regression_joined_key_lines_are_not_repeated() {
        let ca = CertificateAuthority::generate(&CaParams::new("test-ca")).unwrap();
        let body = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg";
        let bytes = |key: String| {
            let bundle = format!("{}{key}", ca.cert_pem());
            let m = inspect_pem_or_der(bundle.as_bytes())
                .unwrap_err()
                .to_string();
            let numbers = body
                .bytes()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            assert!(!m.contains(body) && !m.contains(&numbers[..40]), "{m}");
            m
        };
        // The BEGIN line joined with the first key line.
        let m = bytes(format!(
            "-----BEGIN PRIVATE KEY-----{body}\n-----END PRIVATE KEY-----\n"
        ));
        assert!(m.contains("-----BEGIN line is malformed"), "{m}");
        // Everything on one line.
        let m = bytes(format!(
            "-----BEGIN PRIVATE KEY-----{body}-----END PRIVATE KEY-----"
        ));
        assert!(m.contains("has no -----END line"), "{m}");
        // Only a key, lines joined: the labels found are not repeated either.
        let m = inspect_pem_or_der(
            format!(
                "-----BEGIN PRIVATE KEY-----{body}-----END PRIVATE KEY-----\n-----END X-----\n"
            )
            .as_bytes(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(!m.contains(body), "{m}");
    }
}
