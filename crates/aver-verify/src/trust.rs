//! Trust anchors for SGX PCK certificate chains.
//!
//! The real Intel SGX Root CA is built in. Other roots (the simulator's test
//! root, a lab PKI) are trusted only when the operator configures them.
//! Anchors are matched by subject and public key, as webpki does, never by
//! byte equality with the root a quote embeds: Azure's quotes carry an older
//! encoding of the same Intel root.

use rustls_pki_types::{CertificateDer, TrustAnchor, pem::PemObject};

/// DER of the Intel SGX Root CA (valid 2018-05-21 to 2049-12-31).
/// SHA-256 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("../roots/intel-sgx-root-ca.der");

/// Why a configured root could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("no certificate found in the PEM data")]
    Empty,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("certificate cannot be a trust anchor: {0}")]
    Anchor(String),
}

/// A set of trusted roots for PCK chains.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor<'static>>,
    names: Vec<String>,
}

impl TrustAnchors {
    /// Only the real Intel SGX Root CA.
    pub fn intel() -> Self {
        let mut set = TrustAnchors {
            anchors: Vec::new(),
            names: Vec::new(),
        };
        // The embedded root is a constant checked by the tests below.
        if let Err(e) = set.add_der(INTEL_SGX_ROOT_CA_DER.to_vec(), "Intel SGX Root CA") {
            unreachable!("embedded Intel root is valid: {e}") // ok: compile-time constant, tested
        }
        set
    }

    /// No roots at all: every chain fails. Useful to build a custom set.
    pub fn empty() -> Self {
        TrustAnchors {
            anchors: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Adds every certificate in `pem` as a trusted root.
    pub fn add_pem(&mut self, pem: &[u8], label: &str) -> Result<usize, TrustError> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TrustError::Pem(e.to_string()))?;
            self.add_der(cert.to_vec(), label)?;
            added += 1;
        }
        if added == 0 {
            return Err(TrustError::Empty);
        }
        Ok(added)
    }

    /// Adds one DER certificate as a trusted root.
    pub fn add_der(&mut self, der: Vec<u8>, label: &str) -> Result<(), TrustError> {
        let cert = CertificateDer::from(der);
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| TrustError::Anchor(format!("{e:?}")))?
            .to_owned();
        self.anchors.push(anchor);
        self.names.push(label.to_string());
        Ok(())
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// Labels of the configured roots, for logs and `--help` output.
    pub fn labels(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_intel_root_is_the_real_one() {
        let digest = crate::sha256(INTEL_SGX_ROOT_CA_DER);
        assert_eq!(
            hex::encode(digest),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        );
        assert_eq!(TrustAnchors::intel().anchors().len(), 1);
    }

    #[test]
    fn pem_without_certificates_is_rejected() {
        let mut set = TrustAnchors::empty();
        assert!(matches!(set.add_pem(b"hello", "x"), Err(TrustError::Empty)));
    }
}
