//! X.509 for the TPM protocol: EK certificate chains (rustls-webpki, time
//! as an input), AK certificate issuance (rcgen, signed by the provider's
//! AK CA) and AK certificate validation.
//!
//! EK certificates: verified with rustls-webpki against the configured
//! manufacturer roots and intermediates (plus any the client sends), at
//! the request time; the EKU, when present, must include
//! tcg-kp-EKCertificate (2.23.133.8.1). webpki is strict: RSA ≥ 2048 bits
//! with SHA-256/384/512, ECDSA P-256/P-384; **SHA-1-signed EK certificates
//! (some older TPMs) and unknown critical extensions are rejected**. The
//! critical SAN `directoryName` of TCG EK certificates is accepted.
//! No revocation checking.
//!
//! AK certificates issued here: subject `CN=Aver TPM AK <first 8 bytes of
//! AK name, hex>`, SAN URI `urn:aver:tpm:ak:<AK name hex>`, EKU
//! tcg-kp-AIKCertificate (2.23.133.8.3), keyUsage digitalSignature, the AK's
//! own public key, a random 128-bit serial, validity from one minute
//! before `now` for the configured lifetime.

use crate::error::TpmError;
use aver_tpm::AkPublicKey;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use std::time::Duration;
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

/// DER content of OID 2.23.133.8.1 (tcg-kp-EKCertificate).
const OID_TCG_KP_EK_CERTIFICATE: &[u8] = &[0x67, 0x81, 0x05, 0x08, 0x01];
/// DER content of OID 2.23.133.8.3 (tcg-kp-AIKCertificate).
const OID_TCG_KP_AIK_CERTIFICATE: &[u8] = &[0x67, 0x81, 0x05, 0x08, 0x03];
/// URI SAN prefix naming an AK.
pub const AK_URI_PREFIX: &str = "urn:aver:tpm:ak:";

static SIG_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
];

/// Verifies `leaf` chains to one of `roots` through `intermediates` at
/// `now`, with the given EKU rule; returns the leaf's SPKI DER.
fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: u64,
    eku: &'static [u8],
) -> Result<Vec<u8>, String> {
    let leaf = CertificateDer::from(leaf);
    let ee =
        EndEntityCert::try_from(&leaf).map_err(|e| format!("certificate does not parse: {e}"))?;
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|r| anchor_from_trusted_cert(r).ok())
        .collect();
    if anchors.is_empty() {
        return Err("no usable trust anchor configured".into());
    }
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    ee.verify_for_usage(
        SIG_ALGS,
        &anchors,
        &inter,
        UnixTime::since_unix_epoch(Duration::from_secs(now)),
        KeyUsage::required_if_present(eku),
        None,
        None,
    )
    .map_err(|e| format!("chain verification failed: {e}"))?;
    Ok(ee.subject_public_key_info().as_ref().to_vec())
}

/// Verifies an EK certificate against manufacturer `roots` (DER) with
/// `intermediates` at `now`, and that it certifies `ek_key`.
pub fn verify_ek_certificate(
    ek_cert: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: u64,
    ek_key: &AkPublicKey,
) -> Result<(), TpmError> {
    let spki = verify_chain(
        ek_cert,
        intermediates,
        roots,
        now,
        OID_TCG_KP_EK_CERTIFICATE,
    )
    .map_err(TpmError::EkCertificateUntrusted)?;
    let cert_key = AkPublicKey::from_spki_der(&spki)
        .map_err(|e| TpmError::EkCertificateUntrusted(format!("certificate key: {e}")))?;
    if &cert_key != ek_key {
        return Err(TpmError::EkCertificateUntrusted(
            "the certificate's public key is not ek_pub".into(),
        ));
    }
    Ok(())
}

/// The provider's AK certificate authority.
pub struct AkCa {
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    lifetime_secs: u64,
}

impl std::fmt::Debug for AkCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AkCa")
            .field("cert_der_len", &self.cert_der.len())
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl AkCa {
    /// From the CA certificate (DER) and its PKCS#8 private key (DER; RSA,
    /// ECDSA P-256/P-384 or Ed25519). `lifetime_secs` is the validity of
    /// issued AK certificates.
    pub fn new(
        cert_der: Vec<u8>,
        key_pkcs8_der: &[u8],
        lifetime_secs: u64,
    ) -> Result<Self, TpmError> {
        let key = KeyPair::try_from(key_pkcs8_der)
            .map_err(|e| TpmError::Internal(format!("AK CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key)
            .map_err(|e| TpmError::Internal(format!("AK CA certificate: {e}")))?;
        // The issuer must be able to sign for its own certificate's key.
        let spki = EndEntityCert::try_from(&CertificateDer::from(cert_der.as_slice()))
            .map_err(|e| TpmError::Internal(format!("AK CA certificate: {e}")))?
            .subject_public_key_info()
            .as_ref()
            .to_vec();
        let ca_key_spki = issuer.key().subject_public_key_info();
        if spki != ca_key_spki {
            return Err(TpmError::Internal(
                "AK CA private key does not match the AK CA certificate".into(),
            ));
        }
        Ok(Self {
            cert_der,
            issuer,
            lifetime_secs,
        })
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues an AK certificate for `ak_spki` (SPKI DER) named `ak_name`.
    pub fn issue(&self, ak_spki: &[u8], ak_name: &[u8], now: u64) -> Result<Vec<u8>, TpmError> {
        let internal = |e: rcgen::Error| TpmError::Internal(format!("AK certificate: {e}"));
        let pk = SubjectPublicKeyInfo::from_der(ak_spki).map_err(internal)?;
        let mut p = CertificateParams::default();
        let name_hex = hex::encode(ak_name);
        let short: String = name_hex.chars().take(16).collect();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, format!("Aver TPM AK {short}"));
        p.subject_alt_names = vec![SanType::URI(
            format!("{AK_URI_PREFIX}{name_hex}")
                .try_into()
                .map_err(internal)?,
        )];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(vec![2, 23, 133, 8, 3])];
        p.serial_number = Some(SerialNumber::from(
            crate::context::random::<16>()?.map(|b| b & 0x7f).to_vec(),
        ));
        let start = i64::try_from(now.saturating_sub(60)).unwrap_or(i64::MAX);
        let end = i64::try_from(now.saturating_add(self.lifetime_secs)).unwrap_or(i64::MAX);
        p.not_before = time::OffsetDateTime::from_unix_timestamp(start)
            .map_err(|e| TpmError::Internal(e.to_string()))?;
        p.not_after = time::OffsetDateTime::from_unix_timestamp(end)
            .map_err(|e| TpmError::Internal(e.to_string()))?;
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&pk, &self.issuer).map_err(internal)?;
        Ok(cert.der().to_vec())
    }

    /// Validates an AK certificate: chains to this CA at `now`, EKU allows
    /// AIK use, its key is `ak` and (when present) its `urn:aver:tpm:ak:`
    /// URI names `ak_name`.
    pub fn validate(
        &self,
        aik_cert: &[u8],
        ak: &AkPublicKey,
        ak_name: &[u8],
        now: u64,
    ) -> Result<(), TpmError> {
        let spki = verify_chain(
            aik_cert,
            &[],
            std::slice::from_ref(&self.cert_der),
            now,
            OID_TCG_KP_AIK_CERTIFICATE,
        )
        .map_err(TpmError::AikCertificateInvalid)?;
        let key = AkPublicKey::from_spki_der(&spki)
            .map_err(|e| TpmError::AikCertificateInvalid(format!("certificate key: {e}")))?;
        if &key != ak {
            return Err(TpmError::AikCertificateInvalid(
                "the certificate does not certify this AK".into(),
            ));
        }
        let leaf = CertificateDer::from(aik_cert);
        let ee = EndEntityCert::try_from(&leaf)
            .map_err(|e| TpmError::AikCertificateInvalid(e.to_string()))?;
        let expected = format!("{AK_URI_PREFIX}{}", hex::encode(ak_name));
        for uri in ee.valid_uri_names() {
            if uri.starts_with(AK_URI_PREFIX) && uri != expected {
                return Err(TpmError::AikCertificateInvalid(
                    "the certificate names another AK".into(),
                ));
            }
        }
        Ok(())
    }
}
