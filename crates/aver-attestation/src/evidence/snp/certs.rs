//! The AMD certificate chain of an SNP report: VCEK → ASK → ARK, or
//! VLEK → ASVK → ARK.
//!
//! AMD's chain is RSA-PSS (SHA-384, MGF1-SHA-384, salt 48) at every link
//! and its VCEK has serial number 0, which general-purpose path builders
//! (webpki) are not made for; the chain is three fixed links, so it is
//! checked here link by link: x509-parser reads each certificate,
//! RustCrypto's strict `der` decoder checks it is canonical DER, aws-lc-rs
//! verifies every signature (the ARK's own included), and every
//! certificate must be valid at the verification time. The ARKs of Milan,
//! Genoa and Turin are built in (with their ASKs, so a VCEK alone can be
//! checked); other roots are trusted only by configuration.

use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA384, UnparsedPublicKey};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::oid;
use x509_parser::signature_algorithm::SignatureAlgorithm;

use std::sync::Arc;

use super::SnpError;
use super::crl::{ArkCrls, ArkRef, CrlInfo};
use crate::VerificationTime;
use crate::dcap::TrustError;

/// AMD's root keys (ARK) and SEV signing keys (ASK), as published by AMD's
/// Key Distribution Service (`/vcek/v1/{product}/cert_chain`).
pub const AMD_ARK_MILAN_PEM: &[u8] = include_bytes!("../../../roots/amd/ark-milan.pem");
pub const AMD_ARK_GENOA_PEM: &[u8] = include_bytes!("../../../roots/amd/ark-genoa.pem");
pub const AMD_ARK_TURIN_PEM: &[u8] = include_bytes!("../../../roots/amd/ark-turin.pem");
pub const AMD_ASK_MILAN_PEM: &[u8] = include_bytes!("../../../roots/amd/ask-milan.pem");
pub const AMD_ASK_GENOA_PEM: &[u8] = include_bytes!("../../../roots/amd/ask-genoa.pem");
pub const AMD_ASK_TURIN_PEM: &[u8] = include_bytes!("../../../roots/amd/ask-turin.pem");

/// Most certificates accepted in a chain (VCEK, ASK, ARK).
pub const MAX_CHAIN_LEN: usize = 3;
/// Largest PEM or DER chain accepted (real chains are about 5 KiB).
pub const MAX_CHAIN_BYTES: usize = 64 * 1024;

/// VCEK extension: hardware ID (the chip ID, 64 bytes; its first 8 on Turin).
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_BL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC: &str = "1.3.6.1.4.1.3704.1.3.9";

/// Which AMD key signed the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyKind {
    Vcek,
    Vlek,
}

/// The processor generation, from the signing certificate's issuer
/// (`SEV-Milan`, `SEV-VLEK-Turin`, ...).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
    Other(String),
}

impl Product {
    fn from_issuer_cn(cn: &str) -> Product {
        let name = cn.strip_prefix("SEV-").unwrap_or(cn);
        let name = name.strip_prefix("VLEK-").unwrap_or(name);
        match name {
            "Milan" => Product::Milan,
            "Genoa" => Product::Genoa,
            "Turin" => Product::Turin,
            other => Product::Other(other.to_string()),
        }
    }

    /// Turin changed the TCB_VERSION layout (and added the FMC SVN).
    pub fn is_turin(&self) -> bool {
        matches!(self, Product::Turin)
    }
}

/// The TCB SVNs a VCEK or VLEK certifies (its extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertTcb {
    pub fmc: Option<u8>,
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
}

/// A chain that verified to a trusted ARK at the verification time.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    pub kind: KeyKind,
    pub product: Product,
    /// The signing key: an uncompressed P-384 point.
    pub public_key: Vec<u8>,
    pub tcb: CertTcb,
    /// The VCEK's hardware ID extension (absent in VLEKs).
    pub hwid: Option<Vec<u8>>,
    /// The label of the trusted ARK the chain ends at.
    pub root: String,
}

#[derive(Debug, Clone)]
struct Root {
    label: String,
    der: Vec<u8>,
    subject: Vec<u8>,
    spki: Vec<u8>,
}

/// The roots (ARKs) trusted for SNP chains, and known intermediates (ASKs)
/// used when a chain stops at the VCEK.
#[derive(Debug, Clone)]
pub struct SnpTrust {
    arks: Vec<Root>,
    intermediates: Vec<Vec<u8>>,
    /// ARK CRLs, verified when added ([`super::crl`]). Clones share them:
    /// the service replaces them while it runs, through a shared reference.
    crls: Arc<ArkCrls>,
    /// Whether a chain whose ARK has no CRL is refused (`CollateralMissing`)
    /// rather than verified without a revocation check.
    require_crl: bool,
    /// Chains verified before ([`ChainCache`]). Clones share it until one of
    /// them trusts another ARK, which gives that one a fresh cache.
    chains: Arc<ChainCache>,
}

impl SnpTrust {
    /// AMD's ARKs and ASKs for Milan, Genoa and Turin.
    pub fn amd() -> Self {
        let mut trust = SnpTrust::empty();
        for (pem, label) in [
            (AMD_ARK_MILAN_PEM, "AMD ARK-Milan"),
            (AMD_ARK_GENOA_PEM, "AMD ARK-Genoa"),
            (AMD_ARK_TURIN_PEM, "AMD ARK-Turin"),
        ] {
            // Compile-time constants, checked by the tests below.
            if let Err(e) = trust.add_ark_pem(pem, label) {
                unreachable!("embedded AMD ARK {label} is valid: {e}") // ok: constant, tested
            }
        }
        for pem in [AMD_ASK_MILAN_PEM, AMD_ASK_GENOA_PEM, AMD_ASK_TURIN_PEM] {
            for der in CertificateDer::pem_slice_iter(pem).flatten() {
                trust.intermediates.push(der.to_vec());
            }
        }
        trust
    }

    /// No roots: every chain fails. Start of a custom set.
    pub fn empty() -> Self {
        SnpTrust {
            arks: Vec::new(),
            intermediates: Vec::new(),
            crls: Arc::default(),
            require_crl: false,
            chains: Arc::default(),
        }
    }

    /// Trusts every certificate in `pem` as an ARK (self-signed, RSA-PSS).
    pub fn add_ark_pem(&mut self, pem: &[u8], label: &str) -> Result<usize, TrustError> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TrustError::Pem(e.to_string()))?;
            self.add_ark_der(cert.to_vec(), label)?;
            added += 1;
        }
        if added == 0 {
            return Err(TrustError::Empty);
        }
        Ok(added)
    }

    /// Trusts one DER certificate as an ARK, after checking that it is
    /// self-signed with RSA-PSS-SHA384.
    pub fn add_ark_der(&mut self, der: Vec<u8>, label: &str) -> Result<(), TrustError> {
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| TrustError::Anchor(e.to_string()))?;
        verify_signed_by(&cert, &cert).map_err(|e| TrustError::Anchor(e.to_string()))?;
        // What verified before was judged against other roots.
        self.chains = Arc::default();
        let root = Root {
            label: label.to_string(),
            subject: cert.subject().as_raw().to_vec(),
            spki: cert.public_key().raw.to_vec(),
            der: der.clone(),
        };
        self.arks.push(root);
        Ok(())
    }

    /// Verifies an ARK CRL (DER) against the trusted ARKs and holds it in a
    /// slot of its own (named by its SHA-256). Add the ARKs first.
    pub fn add_crl_der(&self, der: &[u8]) -> Result<CrlInfo, SnpError> {
        self.install_crl(&format!("sha256:{}", hex::encode(crate::sha256(der))), der)
    }

    /// Verifies an ARK CRL (DER) against the trusted ARKs and puts it in
    /// `slot`, replacing what the slot held unless that was issued later
    /// ([`super::crl`]). Works through a shared reference: the service
    /// refreshes CRLs while requests are verified.
    pub fn install_crl(&self, slot: &str, der: &[u8]) -> Result<CrlInfo, SnpError> {
        self.crls.install(
            slot,
            der,
            self.arks.iter().map(|r| ArkRef {
                label: &r.label,
                subject: &r.subject,
                spki: &r.spki,
                der: &r.der,
            }),
        )
    }

    /// The CRLs held.
    pub fn crls(&self) -> &ArkCrls {
        &self.crls
    }

    /// Refuse chains whose ARK has no CRL (`CollateralMissing`), rather
    /// than verifying them without a revocation check.
    pub fn require_crl(&mut self, require: bool) {
        self.require_crl = require;
    }

    /// Labels of the trusted ARKs.
    pub fn labels(&self) -> Vec<&str> {
        self.arks.iter().map(|r| r.label.as_str()).collect()
    }

    /// Verifies `certs` (DER; the VCEK or VLEK first, then optionally its
    /// ASK or ASVK, then optionally the ARK) at `time`. A chain that
    /// verified before is found by its exact bytes ([`ChainCache`]): only
    /// the time and the CRLs are checked again.
    pub fn verify_chain(
        &self,
        certs: &[Vec<u8>],
        time: VerificationTime,
    ) -> Result<VerifiedChain, SnpError> {
        if certs.len() > MAX_CHAIN_LEN {
            return Err(SnpError::CertificateChainMalformed(format!(
                "{} certificates; a chain has at most {MAX_CHAIN_LEN} (VCEK or VLEK, ASK or ASVK, ARK)",
                certs.len()
            )));
        }
        let key = ChainCache::key(certs);
        let now = i64::try_from(time.unix_seconds()).unwrap_or(i64::MAX);
        if let Some(hit) = self.chains.get(&key)
            && hit.not_before <= now
            && now <= hit.not_after
        {
            self.crls.check(
                &hit.ark_subject,
                &hit.ark_spki,
                &hit.chain.root,
                &hit.ask_serial,
                &hit.ask_subject,
                time,
                self.require_crl,
            )?;
            return Ok(hit.chain.clone());
        }
        let cached = self.verify_chain_in_full(certs, time)?;
        let chain = cached.chain.clone();
        self.chains.insert(key, cached);
        Ok(chain)
    }

    /// [`Self::verify_chain`] without the cache: every check, and what the
    /// cache keeps of a chain that passed them.
    fn verify_chain_in_full(
        &self,
        certs: &[Vec<u8>],
        time: VerificationTime,
    ) -> Result<CachedChain, SnpError> {
        let Some(leaf_der) = certs.first() else {
            return Err(SnpError::CertificateChainMissing);
        };
        let leaf = parse_cert(leaf_der, "the VCEK/VLEK")?;
        // The intermediate: as sent, or a built-in ASK named by the leaf.
        let intermediate_der = match certs.get(1) {
            Some(der) => der.as_slice(),
            None => self
                .intermediates
                .iter()
                .find(|der| {
                    x509_parser::parse_x509_certificate(der)
                        .is_ok_and(|(_, c)| c.subject().as_raw() == leaf.issuer().as_raw())
                })
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    SnpError::CertificateChainMalformed(format!(
                        "the chain has only the signing certificate and its issuer {:?} is not a built-in ASK; send the ASK or ASVK too",
                        leaf.issuer().to_string()
                    ))
                })?,
        };
        let intermediate = parse_cert(intermediate_der, "the ASK/ASVK")?;
        if leaf.issuer().as_raw() != intermediate.subject().as_raw() {
            return Err(SnpError::CertificateChainMalformed(
                "the signing certificate is not issued by the next certificate of the chain (order: VCEK or VLEK, ASK or ASVK, ARK)".into(),
            ));
        }
        // The root: a trusted ARK; the chain's own copy, if sent, must be it.
        let root = match certs.get(2) {
            Some(der) => {
                let sent = parse_cert(der, "the ARK")?;
                self.arks
                    .iter()
                    .find(|r| {
                        r.subject == sent.subject().as_raw() && r.spki == sent.public_key().raw
                    })
                    .ok_or_else(|| {
                        SnpError::UntrustedRoot(format!(
                            "the chain ends with {:?}, which is not a trusted AMD root key",
                            sent.subject().to_string()
                        ))
                    })?;
                verify_signed_by(&sent, &sent)?;
                check_validity(&sent, "the ARK", time)?;
                der.as_slice()
            }
            // Not sent: the trusted ARK of that name whose key signed the
            // intermediate (two configured ARKs may share a name).
            None => self
                .arks
                .iter()
                .filter(|r| r.subject == intermediate.issuer().as_raw())
                .find(|r| {
                    x509_parser::parse_x509_certificate(&r.der)
                        .is_ok_and(|(_, ark)| verify_signed_by(&intermediate, &ark).is_ok())
                })
                .or_else(|| {
                    self.arks
                        .iter()
                        .find(|r| r.subject == intermediate.issuer().as_raw())
                })
                .map(|r| r.der.as_slice())
                .ok_or_else(|| {
                    SnpError::UntrustedRoot(format!(
                        "{:?} is not issued by a trusted AMD root key",
                        intermediate.subject().to_string()
                    ))
                })?,
        };
        let ark = parse_cert(root, "the ARK")?;
        let label = self
            .arks
            .iter()
            .find(|r| r.subject == ark.subject().as_raw() && r.spki == ark.public_key().raw)
            .map(|r| r.label.clone())
            .ok_or_else(|| SnpError::UntrustedRoot("the ARK is not trusted".into()))?;
        if intermediate.issuer().as_raw() != ark.subject().as_raw() {
            return Err(SnpError::UntrustedRoot(format!(
                "{:?} is not issued by the chain's ARK {:?}",
                intermediate.subject().to_string(),
                ark.subject().to_string()
            )));
        }
        check_validity(&ark, "the ARK", time)?;
        verify_signed_by(&intermediate, &ark)?;
        self.check_crls(&ark, &label, &intermediate, time)?;
        check_validity(&intermediate, "the ASK/ASVK", time)?;
        if !intermediate.is_ca() {
            return Err(SnpError::CertificateChainInvalid(
                "the ASK/ASVK is not a CA certificate".into(),
            ));
        }
        verify_signed_by(&leaf, &intermediate)?;
        check_validity(&leaf, "the VCEK/VLEK", time)?;

        let subject_cn = common_name(&leaf);
        let kind = match subject_cn.as_deref() {
            Some("SEV-VCEK") => KeyKind::Vcek,
            Some("SEV-VLEK") => KeyKind::Vlek,
            other => {
                return Err(SnpError::CertificateChainMalformed(format!(
                    "the signing certificate's common name is {other:?}, neither SEV-VCEK nor SEV-VLEK"
                )));
            }
        };
        let issuer_cn = common_name(&intermediate).unwrap_or_default();
        let is_asvk = issuer_cn.starts_with("SEV-VLEK-");
        if is_asvk != (kind == KeyKind::Vlek) {
            return Err(SnpError::CertificateChainInvalid(format!(
                "a {kind:?} must be issued by {}, not by {issuer_cn:?}",
                if is_asvk { "an ASK" } else { "an ASVK" }
            )));
        }
        let public_key = p384_public_key(&leaf)?;
        let (tcb, hwid) = extensions(&leaf)?;
        let window = [&leaf, &intermediate, &ark].map(|c| c.validity());
        Ok(CachedChain {
            not_before: window
                .iter()
                .map(|v| v.not_before.timestamp())
                .max()
                .unwrap_or(i64::MAX),
            not_after: window
                .iter()
                .map(|v| v.not_after.timestamp())
                .min()
                .unwrap_or(i64::MIN),
            ark_subject: ark.subject().as_raw().to_vec(),
            ark_spki: ark.public_key().raw.to_vec(),
            ask_serial: intermediate.raw_serial().to_vec(),
            ask_subject: intermediate.subject().to_string(),
            chain: VerifiedChain {
                kind,
                product: Product::from_issuer_cn(&issuer_cn),
                public_key,
                tcb,
                hwid,
                root: label,
            },
        })
    }
}

impl SnpTrust {
    /// The chain's ASK/ASVK against the CRLs of its ARK, at `time`.
    fn check_crls(
        &self,
        ark: &X509Certificate<'_>,
        ark_label: &str,
        intermediate: &X509Certificate<'_>,
        time: VerificationTime,
    ) -> Result<(), SnpError> {
        self.crls.check(
            ark.subject().as_raw(),
            ark.public_key().raw,
            ark_label,
            intermediate.raw_serial(),
            &intermediate.subject().to_string(),
            time,
            self.require_crl,
        )
    }
}

/// Chains that verified, by the SHA-256 of their exact certificates, so that
/// a platform's next report costs no RSA verification and no certificate
/// parsing. Only what holds for any time inside the chain's validity window
/// is kept: a hit still checks the time against that window (falling back
/// to full verification outside it, for the precise error) and the ASK/ASVK
/// against the CRLs held at that moment.
#[derive(Debug, Default)]
struct ChainCache {
    map: std::sync::RwLock<std::collections::HashMap<[u8; 32], Arc<CachedChain>>>,
}

/// Most chains kept (one per platform and TCB); when full, the cache starts
/// over. Only chains that verified to a trusted ARK get in.
const MAX_CACHED_CHAINS: usize = 1024;

#[derive(Debug)]
struct CachedChain {
    chain: VerifiedChain,
    /// The latest notBefore and earliest notAfter of the chain's three
    /// certificates (Unix seconds).
    not_before: i64,
    not_after: i64,
    ark_subject: Vec<u8>,
    ark_spki: Vec<u8>,
    ask_serial: Vec<u8>,
    ask_subject: String,
}

impl ChainCache {
    fn key(certs: &[Vec<u8>]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for der in certs {
            ctx.update(&(der.len() as u64).to_le_bytes());
            ctx.update(der);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    fn get(&self, key: &[u8; 32]) -> Option<Arc<CachedChain>> {
        self.map.read().ok()?.get(key).cloned()
    }

    fn insert(&self, key: [u8; 32], chain: CachedChain) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= MAX_CACHED_CHAINS {
                map.clear();
            }
            map.insert(key, Arc::new(chain));
        }
    }
}

/// Splits a chain given as PEM (one or more certificates) or as one DER
/// certificate into DER certificates.
pub fn split_chain(bytes: &[u8]) -> Result<Vec<Vec<u8>>, SnpError> {
    if bytes.len() > MAX_CHAIN_BYTES {
        return Err(SnpError::CertificateChainMalformed(format!(
            "the chain is {} bytes, more than {MAX_CHAIN_BYTES}",
            bytes.len()
        )));
    }
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes.to_vec()]);
    }
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(bytes) {
        let cert = cert.map_err(|e| SnpError::CertificateChainMalformed(e.to_string()))?;
        if certs.len() == MAX_CHAIN_LEN {
            return Err(SnpError::CertificateChainMalformed(format!(
                "more than {MAX_CHAIN_LEN} certificates"
            )));
        }
        certs.push(cert.to_vec());
    }
    if certs.is_empty() {
        return Err(SnpError::CertificateChainMalformed(
            "no PEM certificate found".into(),
        ));
    }
    Ok(certs)
}

/// The canonical PEM of DER certificates (64-character lines), as
/// `VcekCertChain` carries them.
pub fn pem_chain(certs: &[Vec<u8>]) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for der in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, SnpError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| SnpError::CertificateChainMalformed(format!("{what}: {e}")))?;
    if !rest.is_empty() {
        return Err(SnpError::CertificateChainMalformed(format!(
            "{what} has trailing bytes"
        )));
    }
    crate::dcap::trust::check_strict_der(der)
        .map_err(|e| SnpError::CertificateChainMalformed(format!("{what}: {e}")))?;
    Ok(cert)
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

fn check_validity(
    cert: &X509Certificate<'_>,
    what: &str,
    time: VerificationTime,
) -> Result<(), SnpError> {
    let now = i64::try_from(time.unix_seconds()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(SnpError::CertificateNotYetValid(format!(
            "{what} is valid from {}",
            validity.not_before
        )));
    }
    if now > validity.not_after.timestamp() {
        return Err(SnpError::CertificateExpired(format!(
            "{what} expired on {}",
            validity.not_after
        )));
    }
    Ok(())
}

/// Verifies that `issuer`'s RSA key signed `cert` with RSASSA-PSS,
/// SHA-384, MGF1-SHA-384 and a 48-byte salt: the only algorithm of AMD's
/// chains.
fn verify_signed_by(
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), SnpError> {
    let subject = cert.subject().to_string();
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(SnpError::CertificateChainMalformed(format!(
            "{subject:?}: the two signature algorithm fields differ"
        )));
    }
    verify_pss(
        &cert.signature_algorithm,
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
        issuer,
    )
    .map_err(|why| SnpError::CertificateChainInvalid(format!("{subject:?}: {why}")))
}

/// Verifies `signature` over `signed` with `issuer`'s RSA key, requiring
/// RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt.
pub(super) fn verify_pss(
    algorithm: &x509_parser::x509::AlgorithmIdentifier<'_>,
    signed: &[u8],
    signature: &[u8],
    issuer: &X509Certificate<'_>,
) -> Result<(), String> {
    let sha384 = oid!(2.16.840.1.101.3.4.2.2);
    let mgf1 = oid!(1.2.840.113549.1.1.8);
    let pss_sha384 = match SignatureAlgorithm::try_from(algorithm) {
        Ok(SignatureAlgorithm::RSASSA_PSS(params)) => {
            *params.hash_algorithm_oid() == sha384
                && params
                    .mask_gen_algorithm()
                    .is_ok_and(|m| m.mgf == mgf1 && m.hash == sha384)
                && params.salt_length() == 48
                && params.trailer_field() == 1
        }
        _ => false,
    };
    if !pss_sha384 {
        return Err(
            "not signed with RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48), AMD's algorithm".into(),
        );
    }
    let key = issuer.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
        .verify(signed, signature)
        .map_err(|_| {
            format!(
                "the signature does not verify with the key of {:?}",
                issuer.subject().to_string()
            )
        })
}

/// The signing certificate's key: an EC P-384 key, as an uncompressed point.
fn p384_public_key(cert: &X509Certificate<'_>) -> Result<Vec<u8>, SnpError> {
    let spki = cert.public_key();
    let ec = oid!(1.2.840.10045.2.1);
    let p384 = oid!(1.3.132.0.34);
    let curve_ok = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|o| o == p384);
    let key = spki.subject_public_key.data.as_ref();
    if spki.algorithm.algorithm != ec || !curve_ok || key.len() != 97 || key.first() != Some(&4) {
        return Err(SnpError::CertificateChainMalformed(
            "the VCEK/VLEK key is not an uncompressed EC P-384 key".into(),
        ));
    }
    Ok(key.to_vec())
}

/// Reads the TCB and hardware-ID extensions. TCB values are DER INTEGERs
/// (0–255); the hardware ID is raw bytes.
fn extensions(cert: &X509Certificate<'_>) -> Result<(CertTcb, Option<Vec<u8>>), SnpError> {
    let mut tcb = CertTcb::default();
    let mut hwid = None;
    for ext in cert.extensions() {
        let id = ext.oid.to_id_string();
        let slot = match id.as_str() {
            OID_BL => &mut tcb.bootloader,
            OID_TEE => &mut tcb.tee,
            OID_SNP => &mut tcb.snp,
            OID_UCODE => &mut tcb.microcode,
            OID_FMC => &mut tcb.fmc,
            OID_HWID => {
                if hwid.is_some() {
                    return Err(SnpError::CertificateChainMalformed(
                        "the VCEK has two hardware ID extensions".into(),
                    ));
                }
                hwid = Some(ext.value.to_vec());
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(SnpError::CertificateChainMalformed(format!(
                "the VCEK/VLEK has extension {id} twice"
            )));
        }
        *slot = Some(svn_integer(ext.value).ok_or_else(|| {
            SnpError::CertificateChainMalformed(format!(
                "extension {id} of the VCEK/VLEK is not a DER INTEGER in 0..=255"
            ))
        })?);
    }
    Ok((tcb, hwid))
}

fn svn_integer(value: &[u8]) -> Option<u8> {
    let (rest, int) = x509_parser::der_parser::der::parse_der_integer(value).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let v = int.as_u32().ok()?;
    u8::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_amd_roots_load() {
        let trust = SnpTrust::amd();
        assert_eq!(trust.arks.len(), 3);
        assert_eq!(trust.intermediates.len(), 3);
        assert_eq!(
            hex::encode(crate::sha256(AMD_ARK_MILAN_PEM)),
            "8c109952166431ffad8cb9a3d54f3d20ffbbb58164f0d54be3457bf0ece9e0d8"
        );
        assert_eq!(
            hex::encode(crate::sha256(AMD_ARK_GENOA_PEM)),
            "96bff94e97e2b7ddf4bf3b9b7f780f94a46b8c51f52abfdcc283be7df36ce405"
        );
        assert_eq!(
            hex::encode(crate::sha256(AMD_ARK_TURIN_PEM)),
            "b69c981fe0216c3d8e682eb6f480c6879497103071e52b5e603178638db8f68d"
        );
    }

    #[test]
    fn the_chain_cache_is_bounded_and_keyed_by_every_certificate() {
        let cache = ChainCache::default();
        let entry = || CachedChain {
            chain: VerifiedChain {
                kind: KeyKind::Vcek,
                product: Product::Milan,
                public_key: Vec::new(),
                tcb: CertTcb::default(),
                hwid: None,
                root: String::new(),
            },
            not_before: 0,
            not_after: 0,
            ark_subject: Vec::new(),
            ark_spki: Vec::new(),
            ask_serial: Vec::new(),
            ask_subject: String::new(),
        };
        for i in 0..=MAX_CACHED_CHAINS as u32 {
            cache.insert(ChainCache::key(&[i.to_le_bytes().to_vec()]), entry());
            assert!(cache.map.read().unwrap().len() <= MAX_CACHED_CHAINS);
        }
        // Lengths are part of the key: moving a byte between certificates
        // is another chain.
        assert_ne!(
            ChainCache::key(&[vec![1, 2], vec![3]]),
            ChainCache::key(&[vec![1], vec![2, 3]])
        );
        assert_ne!(
            ChainCache::key(&[vec![1]]),
            ChainCache::key(&[vec![1], vec![]])
        );
    }

    #[test]
    fn svn_integers() {
        assert_eq!(svn_integer(&[2, 1, 0x73]), Some(0x73));
        assert_eq!(svn_integer(&[2, 2, 0, 0xDB]), Some(0xDB));
        assert_eq!(svn_integer(&[2, 2, 1, 0]), None);
        assert_eq!(svn_integer(&[2, 1, 3, 0]), None);
        assert_eq!(svn_integer(&[4, 1, 3]), None);
    }
}
