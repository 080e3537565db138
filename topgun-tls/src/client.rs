//! The one place topgun builds a rustls client configuration.
//!
//! [`client_config`] always uses the *ring* provider (passed explicitly,
//! never the process default) and rustls' safe protocol versions (TLS 1.2
//! and 1.3). The caller says whom to trust ([`ServerTrust`]) and which
//! client certificate to present ([`ClientCert`]); ALPN and session
//! resumption are left at rustls' defaults (no ALPN, resumption on) for the
//! caller to set on the returned config.

use std::fmt;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::verify::Roots;
use crate::{Error, Result};

/// The ring crypto provider, which every topgun TLS configuration names.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whom a client trusts.
#[derive(Debug, Clone)]
pub enum ServerTrust<'a> {
    /// Servers whose chain leads to one of these roots and whose
    /// certificate names the host dialled (WebPKI, as kubectl and etcdctl
    /// check).
    Roots(&'a Roots),
    /// A custom verifier, e.g. one that captures an untrusted chain so that
    /// it can be inspected (`topgun tls inspect`).
    Verifier(Arc<dyn ServerCertVerifier>),
}

/// Which client certificate a client presents.
#[derive(Debug, Clone)]
pub enum ClientCert<'a> {
    /// None.
    None,
    /// This chain and key, whenever the server asks.
    Identity(&'a ClientIdentity),
    /// Whatever this resolver picks (e.g. one that records whether the
    /// server asked).
    Resolver(Arc<dyn ResolvesClientCert>),
}

/// A rustls client configuration: the ring provider, TLS 1.2 and 1.3,
/// `trust` for the server and `client` as the client certificate.
///
/// Set `alpn_protocols` (e.g. `h2` for gRPC) or `resumption` on the result
/// where the protocol needs them.
///
/// ```
/// use topgun_tls::{CaParams, CertificateAuthority, ClientCert, Roots, ServerTrust};
///
/// let ca = CertificateAuthority::generate(&CaParams::new("demo-ca"))?;
/// let roots = Roots::from_pem_or_der(ca.cert_pem().as_bytes(), "demo CA")?;
/// let mut config = topgun_tls::client_config(ServerTrust::Roots(&roots), ClientCert::None)?;
/// config.alpn_protocols = vec![b"h2".to_vec()];
/// # Ok::<(), topgun_tls::Error>(())
/// ```
pub fn client_config(trust: ServerTrust<'_>, client: ClientCert<'_>) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal("the ring provider's TLS versions", e))?;
    let builder = match trust {
        ServerTrust::Roots(roots) => builder.with_root_certificates(roots.store()),
        ServerTrust::Verifier(verifier) => builder
            .dangerous()
            .with_custom_certificate_verifier(verifier),
    };
    match client {
        ClientCert::None => Ok(builder.with_no_client_auth()),
        ClientCert::Identity(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|source| Error::Config {
                what: "client certificate and key".to_owned(),
                source,
            }),
        ClientCert::Resolver(resolver) => Ok(builder.with_client_cert_resolver(resolver)),
    }
}

/// A client certificate chain and its private key. `Debug` redacts the key.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClientIdentity {
    /// Loads a PEM certificate chain and a PEM private key (PKCS#8, SEC1 or
    /// PKCS#1). `what` names them in errors, which never quote the key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Self> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::parse(format!("{what} certificate"), crate::redact::pem_error(&e))
            })?;
        if chain.is_empty() {
            return Err(Error::parse(
                format!("{what} certificate"),
                "no CERTIFICATE block",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| Error::parse(format!("{what} key"), crate::redact::pem_error(&e)))?;
        let identity = ClientIdentity { chain, key };
        identity.signing_key().map_err(|e| match e {
            Error::Config { source, .. } => Error::Config {
                what: format!("{what} key"),
                source,
            },
            other => other,
        })?;
        Ok(identity)
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub(crate) fn signing_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>> {
        let key = provider()
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|source| Error::Config {
                what: "client key".to_owned(),
                source,
            })?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(
            self.chain.clone(),
            key,
        )))
    }
}
