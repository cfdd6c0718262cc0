//! The PCK certificate chain a quote carries: checked byte for byte, then
//! validated with rustls-webpki to a trusted root at the verification time,
//! with CRLs as collateral.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};

use rustls_pki_types::{CertificateDer, pem::PemObject};
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::{Collateral, DcapError, TrustAnchors};
use crate::VerificationTime;

/// Most certificates accepted in a PCK chain (leaf, intermediate, root and
/// some slack); real chains have three.
const MAX_CHAIN_LEN: usize = 5;

/// A PCK chain that verified: the leaf's key and certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPck {
    /// Uncompressed P-256 public key of the PCK certificate.
    pub key: Vec<u8>,
    /// DER of the PCK certificate (for its SGX extensions and issuer).
    pub leaf_der: Vec<u8>,
    /// The PCK certificate's issuer name, DER (matched against the PCK
    /// CRL's issuer).
    pub leaf_issuer: Vec<u8>,
    /// Its SGX extensions, read once when the chain was verified (and kept
    /// with it in the [`PckChainCache`]), or why they do not parse: only a
    /// TCB verdict needs them.
    pub extensions: Result<super::pck_ext::PckExtensions, String>,
    /// `key` parsed for ECDSA-P256-SHA256 verification once, when the chain
    /// was verified, instead of for every quote's QE report; `None` if
    /// aws-lc refuses the point (then the QE report check parses `key` and
    /// fails as it always did).
    pub parsed_key: PckKey,
}

/// The PCK's public key, parsed (what `ParsedPublicKey` lacks to sit in a
/// comparable struct: equality is that of the key's encoding).
#[derive(Clone)]
pub struct PckKey(pub Option<Arc<ParsedPublicKey>>);

impl PckKey {
    fn parse(key: &[u8]) -> Self {
        PckKey(
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
                .ok()
                .map(Arc::new),
        )
    }
}

impl PartialEq for PckKey {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => a.as_ref().as_ref() == b.as_ref().as_ref(),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for PckKey {}

impl std::fmt::Debug for PckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PckKey(parsed)"
        } else {
            "PckKey(unparsed)"
        })
    }
}

/// Most chains kept by a [`PckChainCache`]; a platform has one PCK chain
/// (per TCB level), so this covers a large fleet. Only chains that verified
/// are kept, so an attacker cannot fill it with garbage.
const MAX_CACHED_CHAINS: usize = 1024;

/// PCK chains that verified, keyed by the exact chain bytes and the
/// digest of the exact CRLs they were checked against, with the window of time in
/// which that result holds: the latest `notBefore` and `thisUpdate`, the
/// earliest `notAfter` and `nextUpdate`. A hit inside the window is the
/// same verdict webpki would give (its only time-dependent checks are those
/// dates, and revocation is fixed by the CRLs in the key); a hit outside
/// it, new CRLs, or any other byte sends the chain through the full check.
/// It saves the two ECDSA verifications of chain building per quote.
#[derive(Debug, Default)]
pub struct PckChainCache {
    /// By the exact chain bytes (equality is on every byte), then by the
    /// digest of the CRLs the chain was checked against. Keying by the
    /// bytes themselves rather than by their SHA-256 saves hashing ~3.5 KB
    /// per quote, and foldhash (seeded per process) reads them several
    /// times faster than std's SipHash, which was ~0.7% of an attestation
    /// for two lookups. Its weaker resistance to chosen collisions does not
    /// matter here: only chains that verified to Intel's root are stored,
    /// at most `MAX_CACHED_CHAINS` of them.
    entries: std::sync::RwLock<HashMap<Vec<u8>, CrlSets, foldhash::quality::RandomState>>,
}

/// The FMSPC a PCK certificate states and the kind of its CA
/// (`processor` or `platform`), unverified.
pub type PlatformIdentity = ([u8; 6], &'static str);

/// CRL sets remembered per chain (a new set, after a CRL refresh, pushes
/// out the oldest).
const CRL_SETS_PER_CHAIN: usize = 4;

/// A chain's verified results, one per CRL set (by its digest).
type CrlSets = Vec<([u8; 32], CachedChain)>;

#[derive(Debug, Clone)]
struct CachedChain {
    /// Shared with every quote that hits: nothing is copied per quote.
    pck: Arc<VerifiedPck>,
    valid_from: i64,
    valid_until: i64,
}

impl PckChainCache {
    fn crl_key(collateral: Option<&Collateral>) -> [u8; 32] {
        match collateral {
            Some(c) => c.crl_digest.unwrap_or_else(|| crl_digest(&c.crls)),
            None => crl_digest(&[]),
        }
    }

    fn get(&self, pem: &[u8], crls: &[u8; 32], time: VerificationTime) -> Option<Arc<VerifiedPck>> {
        let t = i64::try_from(time.unix_seconds()).ok()?;
        let entries = self.entries.read().ok()?;
        let (_, hit) = entries.get(pem)?.iter().find(|(k, _)| k == crls)?;
        (hit.valid_from <= t && t <= hit.valid_until).then(|| hit.pck.clone())
    }

    fn put(&self, pem: &[u8], crls: [u8; 32], entry: CachedChain) {
        if let Ok(mut entries) = self.entries.write() {
            if !entries.contains_key(pem) && entries.len() >= MAX_CACHED_CHAINS {
                entries.clear();
            }
            let sets = entries.entry(pem.to_vec()).or_default();
            sets.retain(|(k, _)| *k != crls);
            if sets.len() >= CRL_SETS_PER_CHAIN {
                sets.remove(0);
            }
            sets.push((crls, entry));
        }
    }

    /// The platform identity of the chain `pem` (FMSPC, PCK CA kind),
    /// used to pick collateral before the quote is verified: read from a
    /// cached verified chain with these exact bytes when there is one
    /// (its extensions were parsed when it was verified), else by `read`
    /// (parsing the leaf). Nothing is remembered for chains that did not
    /// verify, so unauthenticated bytes never take space here.
    pub fn identity(
        &self,
        pem: &[u8],
        read: impl FnOnce() -> Option<PlatformIdentity>,
    ) -> Option<PlatformIdentity> {
        let cached = self.entries.read().ok().and_then(|entries| {
            let (_, hit) = entries.get(pem)?.first()?;
            let fmspc = hit.pck.extensions.as_ref().ok()?.fmspc;
            let platform = hit.pck.leaf_issuer.windows(8).any(|w| w == b"Platform");
            Some((fmspc, if platform { "platform" } else { "processor" }))
        });
        cached.or_else(read)
    }

    /// (Chain, CRL set) pairs held now (tests, metrics).
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .map(|e| e.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// SHA-256 over the CRLs, each preceded by its length: what the
/// [`PckChainCache`] key holds of them ([`Collateral::crl_digest`]).
pub fn crl_digest(crls: &[Vec<u8>]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for crl in crls {
        ctx.update(&(crl.len() as u64).to_be_bytes());
        ctx.update(crl);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The window in which a verified chain's result holds (see
/// [`PckChainCache`]), or `None` when a date cannot be read (then the
/// chain is simply not cached).
fn validity_window(
    certs: &[CertificateDer<'_>],
    collateral: Option<&Collateral>,
) -> Option<(i64, i64)> {
    let mut from = i64::MIN;
    let mut until = i64::MAX;
    for cert in certs {
        let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        from = from.max(c.validity().not_before.timestamp());
        until = until.min(c.validity().not_after.timestamp());
    }
    for crl in collateral.map(|c| c.crls.as_slice()).unwrap_or_default() {
        let (_, crl) = x509_parser::parse_x509_crl(crl).ok()?;
        from = from.max(crl.last_update().timestamp());
        if let Some(next) = crl.next_update() {
            // One second short: whether the instant of nextUpdate itself
            // passes is left to the full check.
            until = until.min(next.timestamp().saturating_sub(1));
        }
    }
    Some((from, until))
}

/// [`verify_pck_chain`] through `cache`: a chain already verified with the
/// same CRLs, at a time inside its window, is not verified again.
pub fn verify_pck_chain_cached(
    cache: &PckChainCache,
    roots: &TrustAnchors,
    pem: &[u8],
    collateral: Option<&Collateral>,
    time: VerificationTime,
) -> Result<Arc<VerifiedPck>, DcapError> {
    let crls = PckChainCache::crl_key(collateral);
    if let Some(pck) = cache.get(pem, &crls, time) {
        return Ok(pck);
    }
    let pck = Arc::new(verify_pck_chain(roots, pem, collateral, time)?);
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if let Some((valid_from, valid_until)) = validity_window(&certs, collateral) {
        cache.put(
            pem,
            crls,
            CachedChain {
                pck: pck.clone(),
                valid_from,
                valid_until,
            },
        );
    }
    Ok(pck)
}

/// Validates the PCK chain `pem` and returns the leaf's uncompressed P-256
/// public key and DER.
pub fn verify_pck_chain(
    roots: &TrustAnchors,
    pem: &[u8],
    collateral: Option<&Collateral>,
    time: VerificationTime,
) -> Result<VerifiedPck, DcapError> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| DcapError::CertificateChainMalformed(e.to_string()))?;
        if certs.len() == MAX_CHAIN_LEN {
            return Err(DcapError::CertificateChainMalformed(format!(
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
        return Err(DcapError::CertificateChainMalformed(
            "no certificate in the certification data".into(),
        ));
    };
    if certs.len() < 2 {
        return Err(DcapError::CertificateChainMalformed(
            "the chain has only the PCK certificate; its CA and root must follow it".into(),
        ));
    }
    check_canonical_pem(pem, &certs)?;
    check_chain_order(&certs)?;
    roots
        .check_root(root_der)
        .map_err(DcapError::UntrustedRoot)?;
    let intermediates = certs
        .get(1..certs.len().saturating_sub(1))
        .unwrap_or_default();
    let leaf = EndEntityCert::try_from(leaf_der)
        .map_err(|e| DcapError::CertificateChainMalformed(format!("PCK leaf: {e:?}")))?;

    let crls = parse_crls(collateral)?;
    let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
    let revocation = if crl_refs.is_empty() {
        None
    } else {
        let builder = RevocationOptionsBuilder::new(&crl_refs)
            .map_err(|e| DcapError::CollateralMalformed(format!("{e:?}")))?;
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
            roots.anchors(),
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
        return Err(DcapError::CertificateChainInvalid(format!(
            "the chain carries {} intermediate certificate(s) but the path to the root uses {used}",
            intermediates.len()
        )));
    }

    let (_, parsed) = x509_parser::parse_x509_certificate(leaf_der.as_ref())
        .map_err(|e| DcapError::CertificateChainMalformed(format!("PCK leaf: {e}")))?;
    let key = parsed.public_key().subject_public_key.data.to_vec();
    Ok(VerifiedPck {
        parsed_key: PckKey::parse(&key),
        key,
        leaf_der: leaf_der.as_ref().to_vec(),
        leaf_issuer: parsed.issuer().as_raw().to_vec(),
        extensions: super::pck_ext::parse_pck_extensions(leaf_der.as_ref()),
    })
}

/// The certification data must be exactly the canonical PEM of the
/// certificates it holds (64-character base64 lines, `\n` line ends), as
/// Intel's quoting enclave writes it, optionally followed by the one NUL
/// byte the QE appends. A PEM reader skips stray text and tolerates line
/// lengths and non-canonical base64; without this check such bytes would
/// change the quote (and its `quotehash`) without failing any signature.
fn check_canonical_pem(data: &[u8], certs: &[CertificateDer<'_>]) -> Result<(), DcapError> {
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
        return Err(DcapError::CertificateChainMalformed(format!(
            "the certification data is not the canonical PEM of its certificates (first difference at byte {at})"
        )));
    }
    Ok(())
}

/// Each certificate must be issued by the next one (issuer name = next
/// subject name), so that no certificate of the chain is decoration.
fn check_chain_order(certs: &[CertificateDer<'_>]) -> Result<(), DcapError> {
    let mut names = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        super::trust::check_strict_der(der.as_ref()).map_err(|e| {
            DcapError::CertificateChainMalformed(format!("certificate {} of the chain: {e}", i + 1))
        })?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            DcapError::CertificateChainMalformed(format!("certificate {} of the chain: {e}", i + 1))
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
            return Err(DcapError::CertificateChainMalformed(format!(
                "certificate {} of the chain is not issued by certificate {}: the chain must run from the PCK certificate to the root, in order",
                i + 1,
                i + 2
            )));
        }
    }
    Ok(())
}

fn parse_crls(collateral: Option<&Collateral>) -> Result<Vec<CertRevocationList<'_>>, DcapError> {
    let Some(collateral) = collateral else {
        return Ok(Vec::new());
    };
    collateral
        .crls
        .iter()
        .map(|der| {
            BorrowedCertRevocationList::from_der(der)
                .map(CertRevocationList::from)
                .map_err(|e| DcapError::CollateralMalformed(format!("CRL: {e:?}")))
        })
        .collect()
}

fn map_webpki_error(e: webpki::Error) -> DcapError {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => {
            DcapError::UntrustedRoot("no trusted root issued the chain's CA certificate".into())
        }
        E::CertExpired { .. } => DcapError::CertificateExpired,
        E::CertNotValidYet { .. } => DcapError::CertificateNotYetValid,
        E::CertRevoked => DcapError::CertificateRevoked,
        E::CrlExpired { .. } => DcapError::CollateralExpired,
        E::UnknownRevocationStatus => {
            DcapError::RevocationStatusUnknown("no CRL covers a certificate of the chain".into())
        }
        other => DcapError::CertificateChainInvalid(format!("{other:?}")),
    }
}
