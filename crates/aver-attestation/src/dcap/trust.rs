//! Trust anchors for DCAP PCK certificate chains, and the checks on the
//! root certificate a chain ends with.
//!
//! The real Intel SGX Root CA is built in. Other roots (the simulator's test
//! root, a lab PKI) are trusted only when the operator configures them.
//! Anchors are matched by subject and public key, as webpki does, never by
//! byte equality with the root a quote embeds: Azure's quotes carry an older
//! encoding of the same Intel root.

use rustls_pki_types::{CertificateDer, TrustAnchor, pem::PemObject};

/// DER of the Intel SGX Root CA (valid 2018-05-21 to 2049-12-31).
/// SHA-256 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("../../roots/intel-sgx-root-ca.der");

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
    /// (subject, SubjectPublicKeyInfo) of each root, as DER, to recognise
    /// the root certificate a chain ends with.
    identities: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TrustAnchors {
    /// Only the real Intel SGX Root CA.
    pub fn intel() -> Self {
        let mut set = TrustAnchors::empty();
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
            identities: Vec::new(),
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
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| TrustError::Anchor(e.to_string()))?;
        let identity = (
            parsed.subject().as_raw().to_vec(),
            parsed.public_key().raw.to_vec(),
        );
        let cert = CertificateDer::from(der.clone());
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| TrustError::Anchor(format!("{e:?}")))?
            .to_owned();
        self.anchors.push(anchor);
        self.names.push(label.to_string());
        self.identities.push(identity);
        Ok(())
    }

    /// Checks the root certificate a chain ends with: it names one of the
    /// trusted roots (same subject and public key — not byte equality,
    /// since Azure's quotes embed an older encoding of Intel's root), and
    /// its self-signature verifies, so that no byte of it is unchecked.
    pub fn check_root(&self, der: &[u8]) -> Result<(), String> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("the chain's root certificate does not parse: {e}"))?;
        if !rest.is_empty() {
            return Err("the chain's root certificate has trailing bytes".into());
        }
        let subject = cert.subject().as_raw();
        let spki = cert.public_key().raw;
        if !self
            .identities
            .iter()
            .any(|(s, k)| s.as_slice() == subject && k.as_slice() == spki)
        {
            return Err(format!(
                "the chain ends with {:?}, which is not a trusted root",
                cert.subject().to_string()
            ));
        }
        if cert.issuer().as_raw() != subject {
            return Err("the chain's last certificate is not self-issued".into());
        }
        check_strict_der(der)?;
        verify_self_signature(&cert)
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// Labels of the configured roots, for logs and `--help` output.
    pub fn labels(&self) -> &[String] {
        &self.names
    }
}

/// Checks that `der` is one certificate in canonical DER (RustCrypto's
/// strict `der` decoder, re-encoded byte for byte), whose two signature
/// algorithm fields are identical and whose signature BIT STRING has no
/// unused bits. Lenient parsers accept variants of these bytes (a
/// primitive outer SEQUENCE tag, a non-zero unused-bits count) that no
/// signature covers.
pub(crate) fn check_strict_der(der: &[u8]) -> Result<(), String> {
    use x509_cert::der::{Decode, Encode};
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|e| format!("not a DER certificate: {e}"))?;
    let again = cert
        .to_der()
        .map_err(|e| format!("cannot re-encode the certificate: {e}"))?;
    if again != der {
        return Err("the certificate is not in canonical DER".into());
    }
    if cert.signature_algorithm() != cert.tbs_certificate().signature() {
        return Err("the certificate's two signature algorithm fields differ".into());
    }
    if cert.signature().unused_bits() != 0 {
        return Err("the certificate's signature has unused bits".into());
    }
    Ok(())
}

/// Verifies a certificate's signature with its own public key (aws-lc-rs).
fn verify_self_signature(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<(), String> {
    use aws_lc_rs::signature;
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    let alg: &dyn signature::VerificationAlgorithm = match oid.as_str() {
        "1.2.840.10045.4.3.2" => &signature::ECDSA_P256_SHA256_ASN1,
        "1.2.840.10045.4.3.3" => &signature::ECDSA_P384_SHA384_ASN1,
        "1.2.840.113549.1.1.11" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "1.2.840.113549.1.1.12" => &signature::RSA_PKCS1_2048_8192_SHA384,
        other => {
            return Err(format!(
                "the root's signature algorithm {other} is not supported"
            ));
        }
    };
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err("the root's two signature algorithm fields differ".into());
    }
    let key = cert.public_key().subject_public_key.data.as_ref();
    signature::UnparsedPublicKey::new(alg, key)
        .verify(
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
        .map_err(|_| "the root certificate's self-signature does not verify".to_string())
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
