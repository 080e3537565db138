//! Pure certificate generation: a CA and the leaf certificates it signs.
//!
//! Nothing here touches the filesystem; see [`crate::write`] for that.

use std::fmt;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::san::San;
use crate::{Error, Result};

/// The default validity of a CA: ten years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The default validity of a leaf certificate: one year.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back `notBefore` is set, to tolerate clock skew between hosts.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A PEM-encoded private key. Its `Debug` output is redacted so that keys
/// never reach logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPem(String);

impl KeyPem {
    /// Wraps PEM text that holds a private key.
    pub fn new(pem: String) -> Self {
        KeyPem(pem)
    }

    /// The PEM text. Handle with care: this is a secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem(<redacted>)")
    }
}

/// What a leaf certificate is for; this sets its extended key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertUsage {
    /// A TLS server: serverAuth.
    Server,
    /// A cluster peer that both serves and dials: serverAuth and clientAuth.
    Peer,
    /// A TLS client: clientAuth.
    Client,
}

/// Parameters of a certificate authority.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CaParams {
    /// The subject common name.
    pub common_name: String,
    /// The subject organization, if any.
    pub organization: Option<String>,
    /// How long the CA is valid from now.
    pub validity: Duration,
}

impl CaParams {
    /// A CA named `common_name`, valid for [`DEFAULT_CA_VALIDITY`].
    pub fn new(common_name: impl Into<String>) -> Self {
        CaParams {
            common_name: common_name.into(),
            organization: None,
            validity: DEFAULT_CA_VALIDITY,
        }
    }
}

impl Default for CaParams {
    fn default() -> Self {
        CaParams::new("topgun-ca")
    }
}

/// Parameters of a leaf certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeafParams {
    /// The subject common name.
    pub common_name: String,
    /// The subject organization, if any (Kubernetes reads it as the group,
    /// e.g. `system:masters`).
    pub organization: Option<String>,
    /// Server, peer or client.
    pub usage: CertUsage,
    /// The subject alternative names.
    pub sans: Vec<San>,
    /// How long the certificate is valid from now.
    pub validity: Duration,
    /// An explicit validity period (notBefore, notAfter) that overrides
    /// `validity`, e.g. to reproduce an expired certificate.
    pub period: Option<(OffsetDateTime, OffsetDateTime)>,
}

impl LeafParams {
    /// A leaf for `usage` named `common_name`, with no SANs, valid for
    /// [`DEFAULT_LEAF_VALIDITY`].
    pub fn new(common_name: impl Into<String>, usage: CertUsage) -> Self {
        LeafParams {
            common_name: common_name.into(),
            organization: None,
            usage,
            sans: Vec::new(),
            validity: DEFAULT_LEAF_VALIDITY,
            period: None,
        }
    }

    /// Sets the SANs.
    pub fn with_sans(mut self, sans: impl IntoIterator<Item = San>) -> Self {
        self.sans = sans.into_iter().collect();
        self
    }

    /// Sets the organization.
    pub fn with_organization(mut self, organization: impl Into<String>) -> Self {
        self.organization = Some(organization.into());
        self
    }

    /// Sets the validity.
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Sets an explicit validity period, which may lie in the past or the
    /// future (for reproducing expired or not-yet-valid certificates).
    pub fn with_validity_period(
        mut self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Self {
        self.period = Some((not_before, not_after));
        self
    }
}

/// A certificate and its private key, both PEM-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: KeyPem,
}

/// A certificate authority that can sign leaf certificates.
pub struct CertificateAuthority {
    certified: CertifiedKey,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.certified.cert_pem)
            .field("key_pem", &self.certified.key_pem)
            .finish()
    }
}

impl CertificateAuthority {
    /// Generates a new self-signed CA with an ECDSA P-256 key.
    pub fn generate(params: &CaParams) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut cert_params = base_params(
            &params.common_name,
            params.organization.as_deref(),
            params.validity,
        );
        cert_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        cert_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = cert_params.self_signed(&key)?;
        let certified = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: KeyPem(key.serialize_pem()),
        };
        Ok(CertificateAuthority {
            certified,
            issuer: Issuer::new(cert_params, key),
        })
    }

    /// Loads an existing CA from its PEM certificate and PEM private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::parse("CA private key", e))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| Error::parse("CA certificate", e))?;
        Ok(CertificateAuthority {
            certified: CertifiedKey {
                cert_pem: cert_pem.to_owned(),
                key_pem: KeyPem(key_pem.to_owned()),
            },
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.certified.cert_pem
    }

    /// The CA certificate and key.
    pub fn certified_key(&self) -> &CertifiedKey {
        &self.certified
    }

    /// Issues a leaf certificate with a fresh ECDSA P-256 key.
    pub fn issue(&self, params: &LeafParams) -> Result<CertifiedKey> {
        let key = KeyPair::generate()?;
        let mut cert_params = base_params(
            &params.common_name,
            params.organization.as_deref(),
            params.validity,
        );
        cert_params.subject_alt_names = params.sans.iter().map(san_type).collect::<Result<_>>()?;
        cert_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if params.usage != CertUsage::Client {
            cert_params
                .key_usages
                .push(KeyUsagePurpose::KeyEncipherment);
        }
        cert_params.extended_key_usages = match params.usage {
            CertUsage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            CertUsage::Peer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            CertUsage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        cert_params.use_authority_key_identifier_extension = true;
        if let Some((not_before, not_after)) = params.period {
            cert_params.not_before = not_before;
            cert_params.not_after = not_after;
        }
        let cert = cert_params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: KeyPem(key.serialize_pem()),
        })
    }
}

fn base_params(
    common_name: &str,
    organization: Option<&str>,
    validity: Duration,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.serial_number = Some(random_serial());
    params
}

fn random_serial() -> SerialNumber {
    // 16 random bytes with the top bit cleared: a positive 127-bit serial.
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the system random source is available");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn san_type(san: &San) -> Result<SanType> {
    Ok(match san {
        San::Ip(ip) => SanType::IpAddress(*ip),
        San::Dns(name) => SanType::DnsName(
            name.clone()
                .try_into()
                .map_err(|e| Error::parse(format!("DNS SAN {name}"), e))?,
        ),
    })
}
