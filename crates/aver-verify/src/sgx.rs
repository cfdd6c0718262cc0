//! Verification of SGX DCAP v3 quotes (and OpenEnclave reports wrapping them).
//!
//! The checks, in order, each with its own error:
//! 1. the quote parses ([`SgxError::InvalidQuote`]);
//! 2. the PCK certificate chain in the certification data reaches a trusted
//!    root at the verification time, and no certificate in it is revoked by
//!    the CRLs given as collateral;
//! 3. the QE report is signed by the PCK leaf key;
//! 4. QE report_data[0..32] = SHA-256(attestation key || QE authentication
//!    data), binding the attestation key to the quoting enclave;
//! 5. the quote (header || report body) is signed by the attestation key;
//! 6. report_data[0..32] = SHA-256(runtime data), when runtime data is given.
//!
//! TCB info and QE identity evaluation plug in through [`Collateral`] in a
//! later step; today the collateral carries CRLs only.

use aver_evidence::{ParseError, Quote, parse_openenclave_report, parse_quote};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::{TrustAnchors, VerificationTime, sha256};

/// Most certificates accepted in a PCK chain (leaf, intermediate, root and
/// some slack); real chains have three.
const MAX_CHAIN_LEN: usize = 5;

/// Which wire format carried the quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgxEvidenceKind {
    /// A bare DCAP quote (`/attest/SgxEnclave`).
    Quote,
    /// An OpenEnclave report: 16-byte header + quote (`/attest/OpenEnclave`).
    OpenEnclaveReport,
}

/// Collateral the verifier consumes besides the quote.
#[derive(Debug, Clone, Default)]
pub struct Collateral {
    /// DER CRLs (PCK CA CRL, root CA CRL). When any are given, every
    /// certificate of the chain must have a known, unrevoked status and the
    /// CRLs must not be past their nextUpdate at the verification time.
    pub crls: Vec<Vec<u8>>,
}

/// Why a quote was rejected. [`SgxError::code`] is the stable error code
/// returned by the service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SgxError {
    #[error("the quote is malformed: {0}")]
    InvalidQuote(#[from] ParseError),
    #[error("the PCK certificate chain in the quote is malformed: {0}")]
    CertificateChainMalformed(String),
    #[error("the PCK certificate chain does not lead to a trusted root: {0}")]
    UntrustedRoot(String),
    #[error("a certificate in the PCK chain has expired at the verification time")]
    CertificateExpired,
    #[error("a certificate in the PCK chain is not yet valid at the verification time")]
    CertificateNotYetValid,
    #[error("a certificate in the PCK chain is revoked")]
    CertificateRevoked,
    #[error("a CRL is past its next update at the verification time")]
    CollateralExpired,
    #[error("the revocation status of a PCK chain certificate is unknown: {0}")]
    RevocationStatusUnknown(String),
    #[error("a CRL given as collateral is malformed: {0}")]
    CollateralMalformed(String),
    #[error("the PCK certificate chain is invalid: {0}")]
    CertificateChainInvalid(String),
    #[error("the QE report signature does not verify with the PCK certificate key")]
    QeReportSignatureInvalid,
    #[error("the QE report does not bind the attestation key (report_data mismatch)")]
    AttestationKeyBindingInvalid,
    #[error("the quote signature does not verify with the attestation key")]
    QuoteSignatureInvalid,
    #[error("SHA-256 of the runtime data does not match report_data[0..32] of the quote")]
    RuntimeDataMismatch,
}

impl SgxError {
    /// Stable error code, as documented in `docs/errors.md`.
    pub fn code(&self) -> &'static str {
        match self {
            SgxError::InvalidQuote(_) => "InvalidQuote",
            SgxError::CertificateChainMalformed(_) => "CertificateChainMalformed",
            SgxError::UntrustedRoot(_) => "UntrustedRoot",
            SgxError::CertificateExpired => "CertificateExpired",
            SgxError::CertificateNotYetValid => "CertificateNotYetValid",
            SgxError::CertificateRevoked => "CertificateRevoked",
            SgxError::CollateralExpired => "CollateralExpired",
            SgxError::RevocationStatusUnknown(_) => "RevocationStatusUnknown",
            SgxError::CollateralMalformed(_) => "CollateralMalformed",
            SgxError::CertificateChainInvalid(_) => "CertificateChainInvalid",
            SgxError::QeReportSignatureInvalid => "QeReportSignatureInvalid",
            SgxError::AttestationKeyBindingInvalid => "AttestationKeyBindingInvalid",
            SgxError::QuoteSignatureInvalid => "QuoteSignatureInvalid",
            SgxError::RuntimeDataMismatch => "RuntimeDataMismatch",
        }
    }
}

/// Facts established by a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedSgx {
    pub kind: SgxEvidenceKind,
    #[serde(with = "hex_array")]
    pub mr_enclave: [u8; 32],
    #[serde(with = "hex_array")]
    pub mr_signer: [u8; 32],
    pub product_id: u16,
    pub svn: u16,
    pub is_debuggable: bool,
    #[serde(with = "hex_array")]
    pub attributes: [u8; 16],
    #[serde(with = "hex_array")]
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    #[serde(with = "hex_array")]
    pub report_data: [u8; 64],
    #[serde(with = "hex_array")]
    pub config_id: [u8; 64],
    pub config_svn: u16,
    #[serde(with = "hex_array")]
    pub isv_ext_prod_id: [u8; 16],
    #[serde(with = "hex_array")]
    pub isv_family_id: [u8; 16],
    pub qe_svn: u16,
    pub pce_svn: u16,
    /// SHA-256 of the evidence exactly as submitted (for an OpenEnclave
    /// report, header included, as Azure Attestation computes `quotehash`).
    #[serde(with = "hex_array")]
    pub evidence_hash: [u8; 32],
    /// Whether runtime data was given and matched report_data.
    pub runtime_data_bound: bool,
}

impl serde::Serialize for SgxEvidenceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            SgxEvidenceKind::Quote => "sgx-quote",
            SgxEvidenceKind::OpenEnclaveReport => "openenclave-report",
        })
    }
}

mod hex_array {
    pub fn serialize<S: serde::Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

/// Verifies SGX quotes against a set of trusted roots.
#[derive(Debug, Clone)]
pub struct SgxVerifier {
    roots: TrustAnchors,
}

impl SgxVerifier {
    pub fn new(roots: TrustAnchors) -> Self {
        SgxVerifier { roots }
    }

    /// Verifies `evidence` (a quote or an OpenEnclave report, per `kind`) at
    /// `time`. `runtime_data`, when given, must hash to report_data[0..32].
    pub fn verify(
        &self,
        kind: SgxEvidenceKind,
        evidence: &[u8],
        runtime_data: Option<&[u8]>,
        collateral: Option<&Collateral>,
        time: VerificationTime,
    ) -> Result<VerifiedSgx, SgxError> {
        let quote = match kind {
            SgxEvidenceKind::Quote => parse_quote(evidence)?,
            SgxEvidenceKind::OpenEnclaveReport => parse_openenclave_report(evidence)?.quote,
        };
        let pck_key = self.verify_pck_chain(&quote, collateral, time)?;
        verify_qe_report(&quote, &pck_key)?;
        verify_quote_signature(&quote)?;
        let runtime_data_bound = match runtime_data {
            Some(data) => {
                if sha256(data)[..] != quote.report_body.report_data[..32] {
                    return Err(SgxError::RuntimeDataMismatch);
                }
                true
            }
            None => false,
        };
        let b = &quote.report_body;
        Ok(VerifiedSgx {
            kind,
            mr_enclave: *b.mr_enclave,
            mr_signer: *b.mr_signer,
            product_id: b.isv_prod_id,
            svn: b.isv_svn,
            is_debuggable: b.is_debuggable(),
            attributes: *b.attributes,
            cpu_svn: *b.cpu_svn,
            misc_select: b.misc_select,
            report_data: *b.report_data,
            config_id: *b.config_id,
            config_svn: b.config_svn,
            isv_ext_prod_id: *b.isv_ext_prod_id,
            isv_family_id: *b.isv_family_id,
            qe_svn: quote.header.qe_svn,
            pce_svn: quote.header.pce_svn,
            evidence_hash: sha256(evidence),
            runtime_data_bound,
        })
    }

    /// Validates the PCK chain and returns the leaf's uncompressed P-256 key.
    fn verify_pck_chain(
        &self,
        quote: &Quote<'_>,
        collateral: Option<&Collateral>,
        time: VerificationTime,
    ) -> Result<Vec<u8>, SgxError> {
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_slice_iter(quote.certification_data.data) {
            let cert = cert.map_err(|e| SgxError::CertificateChainMalformed(e.to_string()))?;
            if certs.len() == MAX_CHAIN_LEN {
                return Err(SgxError::CertificateChainMalformed(format!(
                    "more than {MAX_CHAIN_LEN} certificates"
                )));
            }
            certs.push(cert);
        }
        // Every byte of accepted evidence is covered by a check: the chain
        // must be leaf → intermediates → root in order, the root must be a
        // trusted root (same subject and key, self-signature valid), and
        // the verified path must use every intermediate given.
        let (Some(leaf_der), Some(root_der)) = (certs.first(), certs.last()) else {
            return Err(SgxError::CertificateChainMalformed(
                "no certificate in the certification data".into(),
            ));
        };
        if certs.len() < 2 {
            return Err(SgxError::CertificateChainMalformed(
                "the chain has only the PCK certificate; its CA and root must follow it".into(),
            ));
        }
        check_canonical_pem(quote.certification_data.data, &certs)?;
        check_chain_order(&certs)?;
        self.roots
            .check_root(root_der)
            .map_err(SgxError::UntrustedRoot)?;
        let intermediates = certs.get(1..certs.len() - 1).unwrap_or_default();
        let leaf = EndEntityCert::try_from(leaf_der)
            .map_err(|e| SgxError::CertificateChainMalformed(format!("PCK leaf: {e:?}")))?;

        let crls = parse_crls(collateral)?;
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = if crl_refs.is_empty() {
            None
        } else {
            let builder = RevocationOptionsBuilder::new(&crl_refs)
                .map_err(|e| SgxError::CollateralMalformed(format!("{e:?}")))?;
            Some(
                builder
                    .with_depth(RevocationCheckDepth::Chain)
                    .with_status_policy(UnknownStatusPolicy::Deny)
                    .with_expiration_policy(ExpirationPolicy::Enforce)
                    .build(),
            )
        };

        let path = leaf
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                self.roots.anchors(),
                intermediates,
                time.as_webpki(),
                // PCK certificates carry no extended key usage.
                KeyUsage::required_if_present(&[]),
                revocation,
                None,
            )
            .map_err(map_webpki_error)?;
        let used = path.intermediate_certificates().count();
        if used != intermediates.len() {
            return Err(SgxError::CertificateChainInvalid(format!(
                "the chain carries {} intermediate certificate(s) but the path to the root uses {used}",
                intermediates.len()
            )));
        }

        let (_, parsed) = x509_parser::parse_x509_certificate(leaf_der.as_ref())
            .map_err(|e| SgxError::CertificateChainMalformed(format!("PCK leaf: {e}")))?;
        Ok(parsed.public_key().subject_public_key.data.to_vec())
    }
}

/// The certification data must be exactly the canonical PEM of the
/// certificates it holds (64-character base64 lines, `\n` line ends), as
/// Intel's quoting enclave writes it, optionally followed by the one NUL
/// byte the QE appends. A PEM reader skips stray text and tolerates line
/// lengths and non-canonical base64; without this check such bytes would
/// change the quote (and its `quotehash`) without failing any signature.
fn check_canonical_pem(data: &[u8], certs: &[CertificateDer<'_>]) -> Result<(), SgxError> {
    use base64::Engine as _;
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    let mut expected = Vec::with_capacity(data.len());
    for cert in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        expected.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            expected.extend_from_slice(line);
            expected.push(b'\n');
        }
        expected.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    if expected != data {
        let at = expected
            .iter()
            .zip(data)
            .position(|(a, b)| a != b)
            .unwrap_or(expected.len().min(data.len()));
        return Err(SgxError::CertificateChainMalformed(format!(
            "the certification data is not the canonical PEM of its certificates (first difference at byte {at})"
        )));
    }
    Ok(())
}

/// Each certificate must be issued by the next one (issuer name = next
/// subject name), so that no certificate of the chain is decoration.
fn check_chain_order(certs: &[CertificateDer<'_>]) -> Result<(), SgxError> {
    let mut names = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        crate::trust::check_strict_der(der.as_ref()).map_err(|e| {
            SgxError::CertificateChainMalformed(format!("certificate {} of the chain: {e}", i + 1))
        })?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            SgxError::CertificateChainMalformed(format!("certificate {} of the chain: {e}", i + 1))
        })?;
        names.push((
            cert.subject().as_raw().to_vec(),
            cert.issuer().as_raw().to_vec(),
        ));
    }
    for (i, pair) in names.windows(2).enumerate() {
        if let [(_, issuer), (next_subject, _)] = pair
            && issuer != next_subject
        {
            return Err(SgxError::CertificateChainMalformed(format!(
                "certificate {} of the chain is not issued by certificate {}: the chain must run from the PCK certificate to the root, in order",
                i + 1,
                i + 2
            )));
        }
    }
    Ok(())
}

fn parse_crls(collateral: Option<&Collateral>) -> Result<Vec<CertRevocationList<'_>>, SgxError> {
    let Some(collateral) = collateral else {
        return Ok(Vec::new());
    };
    collateral
        .crls
        .iter()
        .map(|der| {
            BorrowedCertRevocationList::from_der(der)
                .map(CertRevocationList::from)
                .map_err(|e| SgxError::CollateralMalformed(format!("CRL: {e:?}")))
        })
        .collect()
}

fn map_webpki_error(e: webpki::Error) -> SgxError {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => {
            SgxError::UntrustedRoot("no trusted root issued the chain's CA certificate".into())
        }
        E::CertExpired { .. } => SgxError::CertificateExpired,
        E::CertNotValidYet { .. } => SgxError::CertificateNotYetValid,
        E::CertRevoked => SgxError::CertificateRevoked,
        E::CrlExpired { .. } => SgxError::CollateralExpired,
        E::UnknownRevocationStatus => {
            SgxError::RevocationStatusUnknown("no CRL covers a certificate of the chain".into())
        }
        other => SgxError::CertificateChainInvalid(format!("{other:?}")),
    }
}

fn verify_qe_report(quote: &Quote<'_>, pck_key: &[u8]) -> Result<(), SgxError> {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pck_key)
        .verify(quote.qe_report_raw, quote.qe_report_signature)
        .map_err(|_| SgxError::QeReportSignatureInvalid)?;
    let mut bound = Vec::with_capacity(64 + quote.qe_authentication_data.len());
    bound.extend_from_slice(quote.attestation_key);
    bound.extend_from_slice(quote.qe_authentication_data);
    if sha256(&bound)[..] != quote.qe_report.report_data[..32] {
        return Err(SgxError::AttestationKeyBindingInvalid);
    }
    Ok(())
}

fn verify_quote_signature(quote: &Quote<'_>) -> Result<(), SgxError> {
    let mut key = [0u8; 65];
    key[0] = 0x04; // uncompressed SEC1 point
    key[1..].copy_from_slice(quote.attestation_key);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key[..])
        .verify(quote.signed_region, quote.signature)
        .map_err(|_| SgxError::QuoteSignatureInvalid)
}

/// Parses RFC 3339 UTC timestamps like `2025-07-01T00:00:00Z` into a
/// [`VerificationTime`]; used by the CLI's `--at` and by tests.
pub fn parse_rfc3339(text: &str) -> Option<VerificationTime> {
    let (date, time) = text.trim().split_once('T')?;
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs)
        .ok()
        .map(VerificationTime::from_unix_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(
            parse_rfc3339("2025-07-01T00:00:00Z").map(|t| t.unix_seconds()),
            Some(1_751_328_000)
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00Z").map(|t| t.unix_seconds()),
            Some(0)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.789Z").map(|t| t.unix_seconds()),
            Some(1_709_210_096)
        );
        assert_eq!(parse_rfc3339("2025-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
