//! # topgun-tls
//!
//! Certificates with the right names for k3s clusters.
//!
//! - SANs: [`parse_san_list`] reads `--tls-san` input with errors that show
//!   the fix; [`San::covers`] matches a host against a certificate's SANs the
//!   way RFC 6125 (and kubectl) does.
//! - Generation: a [`CertificateAuthority`] and server, peer and client
//!   certificates ([`LeafParams`], ECDSA P-256), purely in memory.
//! - [`write`](mod@write): put them on disk, keys with mode 0600.
//! - [`inspect`]: what a PEM or DER file or bundle holds: subject, issuer,
//!   serial, validity and days left, SANs (DNS and IP), key algorithm, CA
//!   flag, EKUs, SHA-256 fingerprint.
//! - [`endpoint`]: handshake with a live server and capture the chain it
//!   presents, without trusting it; `--name` and `--connect-to` semantics.
//! - [`verify`]: then, separately, decide coverage, validity and trust
//!   against a CA, and explain a name that is not covered with fixes.
//! - [`kubeconfig`]: check a kubeconfig's server exactly as kubectl would
//!   connect to it, client certificate included.
//! - [`client_config`]: the one rustls client configuration every topgun
//!   crate uses (ring, TLS 1.2 and 1.3, roots or a custom verifier, an
//!   optional client certificate).
//! - [`ErrorKind`]: whether an error is the user's input, a failed
//!   operation or a bug ([`Error::kind`]).
//! - `testing` (feature `testing`): helpers for tests and benchmarks, such
//!   as an `openssl s_server` on loopback.
//!
//! TLS always uses rustls with the *ring* provider, passed explicitly; the
//! process-wide default provider is never relied upon. Every network step has
//! a deadline ([`endpoint::DEFAULT_TIMEOUT`]).
//!
//! This crate never touches Docker and never prints.
//!
//! ```
//! use topgun_tls::{CaParams, CertUsage, CertificateAuthority, LeafParams, parse_san_list};
//!
//! let ca = CertificateAuthority::generate(&CaParams::new("demo-ca"))?;
//! let sans = parse_san_list("localhost,127.0.0.1,*.demo.example")?;
//! let leaf = ca.issue(&LeafParams::new("demo", CertUsage::Server).with_sans(sans))?;
//! assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! # Ok::<(), topgun_tls::Error>(())
//! ```

#![warn(unreachable_pub)]

mod client;
pub mod endpoint;
mod error;
mod generate;
pub mod inspect;
pub mod kubeconfig;
pub mod read;
pub mod redact;
mod san;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verify;
pub mod write;

pub use client::{ClientCert, ClientIdentity, ServerTrust, client_config};
pub use endpoint::{EndpointOptions, EndpointReport, EndpointTarget, inspect_endpoint};
pub use error::{Error, ErrorKind, Result};
pub use generate::{
    CaParams, CertUsage, CertificateAuthority, CertifiedKey, DEFAULT_CA_VALIDITY,
    DEFAULT_LEAF_VALIDITY, KeyPem, LeafParams,
};
pub use inspect::{CertInfo, SanNames, inspect_pem_or_der};
pub use kubeconfig::{Kubeconfig, KubeconfigCheck, check_kubeconfig};
pub use san::{San, covered_by, parse_san, parse_san_list, san_warnings};
pub use verify::{Assessment, CheckOptions, Diagnosis, Roots, assess};
