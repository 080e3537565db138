//! # topgun-tls
//!
//! Certificates with the right names for k3s clusters.
//!
//! - [`san`]: parse `--tls-san` input with errors that show the fix, and match
//!   a host against a certificate's SANs the way RFC 6125 (and kubectl) does.
//! - [`generate`]: a CA and server, peer and client certificates (ECDSA
//!   P-256), purely in memory.
//! - [`write`]: put them on disk, keys with mode 0600.
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

pub mod error;
pub mod generate;
pub mod san;
pub mod write;

pub use error::{Error, Result};
pub use generate::{CaParams, CertUsage, CertificateAuthority, CertifiedKey, KeyPem, LeafParams};
pub use san::{San, covered_by, parse_san, parse_san_list, san_warnings};
