//! Intel DCAP collateral: TCB info, QE identity and the CRLs, verified once
//! per item and then used for every quote of the platform family.
//!
//! * [`CollateralBundle`]: the raw items as received — from dcap-qvl's
//!   bundle JSON ([`CollateralBundle::from_dcap_qvl_json`]) or from the
//!   bodies Intel PCS / a PCCS answer ([`CollateralBundle::from_parts`],
//!   which locates the exact bytes of the `tcbInfo` / `enclaveIdentity`
//!   member; nothing is ever re-serialized, since Intel's signature covers
//!   those bytes as served);
//! * [`verify_collateral`]: the issuer chains to a trusted root with the
//!   root CA CRL (rustls-webpki), the signatures over the exact bytes
//!   (aws-lc-rs), the CRLs' issuers and validity windows, and issueDate /
//!   nextUpdate of each item, all at the verification time; the result is a
//!   [`VerifiedCollateral`] a cache can keep until its earliest nextUpdate;
//! * [`tcb_info`], [`qe_identity`], [`crl`]: the pure parsers.
//!
//! A missing item fails closed ([`CollateralError::Missing`]): there is no
//! "verify without CRL" mode here.

pub mod cache;
pub mod crl;
pub mod qe_identity;
pub mod tcb_info;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::TrustAnchors;
use crate::{VerificationTime, parse_rfc3339, sha256};
pub use cache::CollateralCache;
pub use crl::CrlFacts;
pub use qe_identity::{QeIdentity, QeTcbLevel, parse_qe_identity};
pub use tcb_info::{TcbInfo, TcbLevel, TcbStatus, parse_tcb_info};

/// Largest collateral item accepted (a JSON body, a CRL, a PEM chain).
/// Intel's largest, a TDX TCB info, is about 10 KiB; PCK CRLs with a few
/// hundred entries stay well under this.
pub const MAX_ITEM_LEN: usize = 1024 * 1024;
/// Most TCB levels accepted in one TCB info or QE identity.
pub const MAX_TCB_LEVELS: usize = 1024;
/// Most advisory IDs accepted on one level.
pub const MAX_ADVISORIES: usize = 1024;
/// Most certificates in an issuer chain.
const MAX_CHAIN_LEN: usize = 5;

/// Why collateral was refused; [`CollateralError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    #[error("collateral is missing: {0}")]
    Missing(String),
    #[error("collateral is malformed: {0}")]
    Malformed(String),
    #[error("collateral has expired: {0}")]
    Expired(String),
    #[error("collateral is not yet valid: {0}")]
    NotYetValid(String),
    #[error("a collateral signature does not verify: {0}")]
    SignatureInvalid(String),
    #[error("a collateral issuer chain is invalid: {0}")]
    IssuerChainInvalid(String),
    #[error("a CRL's issuer does not match: {0}")]
    CrlIssuerMismatch(String),
    /// The policy pins a TCB baseline (`x-ms-sgx-tcbidentifier`) whose
    /// collateral is not held for the quote's FMSPC.
    #[error("the TCB baseline is not available: {0}")]
    BaselineUnavailable(String),
}

impl CollateralError {
    /// Stable error code (`docs/errors.md`).
    pub fn code(&self) -> &'static str {
        match self {
            CollateralError::Missing(_) => "CollateralMissing",
            CollateralError::Malformed(_) => "CollateralMalformed",
            CollateralError::Expired(_) => "CollateralExpired",
            CollateralError::NotYetValid(_) => "CollateralNotYetValid",
            CollateralError::SignatureInvalid(_) => "CollateralSignatureInvalid",
            CollateralError::IssuerChainInvalid(_) => "CollateralIssuerChainInvalid",
            CollateralError::CrlIssuerMismatch(_) => "CrlIssuerMismatch",
            CollateralError::BaselineUnavailable(_) => "TcbBaselineUnavailable",
        }
    }
}

/// The collateral items for one platform family, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollateralBundle {
    /// PEM: the PCK CA that issued the PCK CRL, then the root.
    pub pck_crl_issuer_chain: Vec<u8>,
    /// DER: the PCK processor or platform CA CRL.
    pub pck_crl: Vec<u8>,
    /// DER: the Intel SGX Root CA CRL.
    pub root_ca_crl: Vec<u8>,
    /// PEM: the TCB signing certificate, then the root.
    pub tcb_info_issuer_chain: Vec<u8>,
    /// The exact bytes of the `tcbInfo` object.
    pub tcb_info: Vec<u8>,
    /// Raw ECDSA P-256 signature (r ‖ s, 64 bytes).
    pub tcb_info_signature: Vec<u8>,
    /// PEM: the TCB signing certificate, then the root.
    pub qe_identity_issuer_chain: Vec<u8>,
    /// The exact bytes of the `enclaveIdentity` object.
    pub qe_identity: Vec<u8>,
    pub qe_identity_signature: Vec<u8>,
}

/// dcap-qvl's `QuoteCollateralV3` JSON: PEM chains, hex CRLs and signatures,
/// and the signed JSON objects as strings.
#[derive(Deserialize)]
struct DcapQvlBundle {
    pck_crl_issuer_chain: Option<String>,
    root_ca_crl: Option<String>,
    pck_crl: Option<String>,
    tcb_info_issuer_chain: Option<String>,
    tcb_info: Option<String>,
    tcb_info_signature: Option<String>,
    qe_identity_issuer_chain: Option<String>,
    qe_identity: Option<String>,
    qe_identity_signature: Option<String>,
}

fn required(field: Option<String>, name: &str) -> Result<String, CollateralError> {
    field.ok_or_else(|| CollateralError::Missing(format!("the bundle has no {name}")))
}

fn unhex(text: &str, name: &str) -> Result<Vec<u8>, CollateralError> {
    hex::decode(text.trim())
        .map_err(|e| CollateralError::Malformed(format!("{name} is not hex: {e}")))
}

#[derive(Deserialize)]
struct SignedTcbInfo<'a> {
    #[serde(borrow, rename = "tcbInfo")]
    body: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct SignedQeIdentity<'a> {
    #[serde(borrow, rename = "enclaveIdentity")]
    body: &'a RawValue,
    signature: String,
}

/// Splits a PCS/PCCS TCB info answer `{"tcbInfo": {...}, "signature": hex}`
/// into the exact bytes of the `tcbInfo` value and the raw signature.
pub fn split_tcb_info_body(body: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CollateralError> {
    check_len(body, "TCB info body")?;
    let s: SignedTcbInfo<'_> = serde_json::from_slice(body).map_err(|e| {
        CollateralError::Malformed(format!(
            "the TCB info body is not {{\"tcbInfo\": ..., \"signature\": ...}}: {e}"
        ))
    })?;
    Ok((
        s.body.get().as_bytes().to_vec(),
        unhex(&s.signature, "the TCB info signature")?,
    ))
}

/// Splits a PCS/PCCS QE identity answer `{"enclaveIdentity": {...},
/// "signature": hex}` the same way.
pub fn split_qe_identity_body(body: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CollateralError> {
    check_len(body, "QE identity body")?;
    let s: SignedQeIdentity<'_> = serde_json::from_slice(body).map_err(|e| {
        CollateralError::Malformed(format!(
            "the QE identity body is not {{\"enclaveIdentity\": ..., \"signature\": ...}}: {e}"
        ))
    })?;
    Ok((
        s.body.get().as_bytes().to_vec(),
        unhex(&s.signature, "the QE identity signature")?,
    ))
}

/// A CRL as PCS serves it (DER), as PEM, or as hex text (PCCS's default
/// encoding): returns the DER.
pub fn crl_der(bytes: &[u8], name: &str) -> Result<Vec<u8>, CollateralError> {
    check_len(bytes, name)?;
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CollateralError::Malformed(format!("{name} is neither DER, PEM nor hex")))?;
    if text.contains("-----BEGIN") {
        use rustls_pki_types::CertificateRevocationListDer;
        return CertificateRevocationListDer::from_pem_slice(bytes)
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| CollateralError::Malformed(format!("{name}: {e}")));
    }
    unhex(text, name)
}

fn check_len(bytes: &[u8], name: &str) -> Result<(), CollateralError> {
    if bytes.len() > MAX_ITEM_LEN {
        return Err(CollateralError::Malformed(format!(
            "{name} is {} bytes, more than the {MAX_ITEM_LEN} accepted",
            bytes.len()
        )));
    }
    Ok(())
}

impl CollateralBundle {
    /// Reads dcap-qvl's bundle JSON (the `collateral.json` of the vectors).
    pub fn from_dcap_qvl_json(bytes: &[u8]) -> Result<Self, CollateralError> {
        if bytes.len() > 4 * MAX_ITEM_LEN {
            return Err(CollateralError::Malformed("the bundle is too large".into()));
        }
        let b: DcapQvlBundle = serde_json::from_slice(bytes).map_err(|e| {
            CollateralError::Malformed(format!("not a dcap-qvl collateral bundle: {e}"))
        })?;
        Ok(CollateralBundle {
            pck_crl_issuer_chain: required(b.pck_crl_issuer_chain, "pck_crl_issuer_chain")?
                .into_bytes(),
            pck_crl: unhex(&required(b.pck_crl, "pck_crl")?, "pck_crl")?,
            root_ca_crl: unhex(&required(b.root_ca_crl, "root_ca_crl")?, "root_ca_crl")?,
            tcb_info_issuer_chain: required(b.tcb_info_issuer_chain, "tcb_info_issuer_chain")?
                .into_bytes(),
            tcb_info: required(b.tcb_info, "tcb_info")?.into_bytes(),
            tcb_info_signature: unhex(
                &required(b.tcb_info_signature, "tcb_info_signature")?,
                "tcb_info_signature",
            )?,
            qe_identity_issuer_chain: required(
                b.qe_identity_issuer_chain,
                "qe_identity_issuer_chain",
            )?
            .into_bytes(),
            qe_identity: required(b.qe_identity, "qe_identity")?.into_bytes(),
            qe_identity_signature: unhex(
                &required(b.qe_identity_signature, "qe_identity_signature")?,
                "qe_identity_signature",
            )?,
        })
    }

    /// dcap-qvl's bundle JSON for this bundle: the one form Aver stores
    /// (the signed members stay the exact bytes received, as strings).
    pub fn to_dcap_qvl_json(&self) -> Result<Vec<u8>, CollateralError> {
        let text = |b: &[u8], name: &str| {
            String::from_utf8(b.to_vec())
                .map_err(|_| CollateralError::Malformed(format!("the {name} is not UTF-8")))
        };
        let value = serde_json::json!({
            "pck_crl_issuer_chain": text(&self.pck_crl_issuer_chain, "PCK CRL issuer chain")?,
            "root_ca_crl": hex::encode(&self.root_ca_crl),
            "pck_crl": hex::encode(&self.pck_crl),
            "tcb_info_issuer_chain": text(&self.tcb_info_issuer_chain, "TCB info issuer chain")?,
            "tcb_info": text(&self.tcb_info, "TCB info")?,
            "tcb_info_signature": hex::encode(&self.tcb_info_signature),
            "qe_identity_issuer_chain": text(&self.qe_identity_issuer_chain, "QE identity issuer chain")?,
            "qe_identity": text(&self.qe_identity, "QE identity")?,
            "qe_identity_signature": hex::encode(&self.qe_identity_signature),
        });
        serde_json::to_vec(&value).map_err(|e| CollateralError::Malformed(e.to_string()))
    }

    /// Builds a bundle from what PCS/PCCS serve: the TCB info and QE
    /// identity response bodies, their issuer chains (the URL-decoded
    /// `…-Issuer-Chain` headers, PEM), the PCK CRL and its chain, the root
    /// CA CRL (DER, PEM or hex).
    pub fn from_parts(parts: &CollateralParts<'_>) -> Result<Self, CollateralError> {
        let (tcb_info, tcb_info_signature) = split_tcb_info_body(parts.tcb_info_body)?;
        let (qe_identity, qe_identity_signature) = split_qe_identity_body(parts.qe_identity_body)?;
        Ok(CollateralBundle {
            pck_crl_issuer_chain: parts.pck_crl_issuer_chain.to_vec(),
            pck_crl: crl_der(parts.pck_crl, "the PCK CRL")?,
            root_ca_crl: crl_der(parts.root_ca_crl, "the root CA CRL")?,
            tcb_info_issuer_chain: parts.tcb_info_issuer_chain.to_vec(),
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: parts.qe_identity_issuer_chain.to_vec(),
            qe_identity,
            qe_identity_signature,
        })
    }
}

/// The PCS/PCCS answers [`CollateralBundle::from_parts`] assembles.
#[derive(Debug, Clone, Copy)]
pub struct CollateralParts<'a> {
    pub tcb_info_body: &'a [u8],
    pub tcb_info_issuer_chain: &'a [u8],
    pub qe_identity_body: &'a [u8],
    pub qe_identity_issuer_chain: &'a [u8],
    pub pck_crl: &'a [u8],
    pub pck_crl_issuer_chain: &'a [u8],
    pub root_ca_crl: &'a [u8],
}

/// SHA-256 of each collateral item, as Azure's `x-ms-sgx-collateral`
/// claim carries them (the quote's own hash is added per quote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollateralHashes {
    /// Of the exact `tcbInfo` bytes.
    pub tcbinfohash: String,
    /// Of the TCB info issuer chain (PEM, as received).
    pub tcbinfocertshash: String,
    /// Of the CRL that vouches for the TCB info signer: the root CA CRL.
    pub tcbinfocrlhash: String,
    /// Of the exact `enclaveIdentity` bytes.
    pub qeidhash: String,
    pub qeidcertshash: String,
    /// Of the root CA CRL, which vouches for the QE identity signer.
    pub qeidcrlhash: String,
}

/// Collateral whose every item verified at some time: what a cache keeps,
/// usable for any quote of its FMSPC while `time` stays inside
/// [`VerifiedCollateral::valid_from`, `VerifiedCollateral::valid_until`).
#[derive(Debug, Clone)]
pub struct VerifiedCollateral {
    pub bundle: CollateralBundle,
    pub tcb_info: TcbInfo,
    pub qe_identity: QeIdentity,
    pub pck_crl: CrlFacts,
    pub root_ca_crl: CrlFacts,
    pub hashes: CollateralHashes,
    /// The latest issue date of the items (seconds).
    pub valid_from: u64,
    /// The earliest nextUpdate of the items (seconds): the collateral's
    /// expiry, after which it must be fetched again.
    pub valid_until: u64,
    /// [`crate::dcap::pck::crl_digest`] of the PCK and root CA CRLs,
    /// computed once here rather than by the PCK chain cache per quote.
    pub crl_digest: [u8; 32],
}

impl VerifiedCollateral {
    /// Whether `time` is inside every item's validity window.
    pub fn check_time(&self, time: VerificationTime) -> Result<(), CollateralError> {
        let now = time.unix_seconds();
        if now < self.valid_from {
            return Err(CollateralError::NotYetValid(format!(
                "the collateral is issued at {}, after the verification time {now}",
                rfc3339(self.valid_from)
            )));
        }
        if now >= self.valid_until {
            return Err(CollateralError::Expired(format!(
                "the collateral's earliest nextUpdate is {}, before the verification time; fetch fresh collateral",
                rfc3339(self.valid_until)
            )));
        }
        Ok(())
    }

    /// The CRLs, for the PCK chain check.
    pub fn crls(&self) -> super::Collateral {
        super::Collateral {
            crls: vec![self.bundle.pck_crl.clone(), self.bundle.root_ca_crl.clone()],
            crl_digest: Some(self.crl_digest),
        }
    }
}

/// Seconds since the epoch as RFC 3339 UTC (for messages and claims).
pub fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub(crate) fn parse_date(text: &str, field: &str) -> Result<u64, String> {
    parse_rfc3339(text)
        .map(|t| t.unix_seconds())
        .ok_or_else(|| format!("{field} {text:?} is not an RFC 3339 UTC time"))
}

pub(crate) fn parse_hex<const N: usize>(text: &str, field: &str) -> Result<[u8; N], String> {
    hex::decode(text)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or_else(|| format!("{field} is not {N} bytes of hex"))
}

/// Verifies every item of `bundle` at `time` against `roots`.
pub fn verify_collateral(
    bundle: &CollateralBundle,
    roots: &TrustAnchors,
    time: VerificationTime,
) -> Result<VerifiedCollateral, CollateralError> {
    for (item, name) in [
        (&bundle.pck_crl, "PCK CRL"),
        (&bundle.root_ca_crl, "root CA CRL"),
        (&bundle.pck_crl_issuer_chain, "PCK CRL issuer chain"),
        (&bundle.tcb_info_issuer_chain, "TCB info issuer chain"),
        (&bundle.tcb_info, "TCB info"),
        (&bundle.qe_identity_issuer_chain, "QE identity issuer chain"),
        (&bundle.qe_identity, "QE identity"),
    ] {
        if item.is_empty() {
            return Err(CollateralError::Missing(format!(
                "the {name} is empty; every item is required"
            )));
        }
    }
    let root_ca_crl = crl::read_crl(&bundle.root_ca_crl, "root CA CRL", time)?;
    let pck_crl = crl::read_crl(&bundle.pck_crl, "PCK CRL", time)?;

    // The PCK CRL: its issuer chain leads to a trusted root, and its
    // signature verifies with the chain's first certificate; per quote, the
    // PCK certificate's issuer must be this CRL's issuer.
    let pck_chain = read_chain(&bundle.pck_crl_issuer_chain, "PCK CRL issuer chain")?;
    check_root_crl_issuer(roots, &pck_chain, &root_ca_crl, "PCK CRL issuer chain")?;
    verify_pck_crl(
        &bundle.pck_crl,
        &pck_chain,
        &pck_crl,
        &bundle.root_ca_crl,
        time,
    )?;

    let tcb_key = verify_signer_chain(
        roots,
        &bundle.tcb_info_issuer_chain,
        &bundle.root_ca_crl,
        &root_ca_crl,
        time,
        "TCB info issuer chain",
    )?;
    verify_item_signature(
        &tcb_key,
        &bundle.tcb_info,
        &bundle.tcb_info_signature,
        "TCB info",
    )?;
    let tcb_info = parse_tcb_info(&bundle.tcb_info).map_err(CollateralError::Malformed)?;
    check_window(tcb_info.issue_date, tcb_info.next_update, time, "TCB info")?;

    let qe_key = verify_signer_chain(
        roots,
        &bundle.qe_identity_issuer_chain,
        &bundle.root_ca_crl,
        &root_ca_crl,
        time,
        "QE identity issuer chain",
    )?;
    verify_item_signature(
        &qe_key,
        &bundle.qe_identity,
        &bundle.qe_identity_signature,
        "QE identity",
    )?;
    let qe_identity = parse_qe_identity(&bundle.qe_identity).map_err(CollateralError::Malformed)?;
    check_window(
        qe_identity.issue_date,
        qe_identity.next_update,
        time,
        "QE identity",
    )?;

    let hex256 = |b: &[u8]| hex::encode(sha256(b));
    let hashes = CollateralHashes {
        tcbinfohash: hex256(&bundle.tcb_info),
        tcbinfocertshash: hex256(&bundle.tcb_info_issuer_chain),
        tcbinfocrlhash: hex256(&bundle.root_ca_crl),
        qeidhash: hex256(&bundle.qe_identity),
        qeidcertshash: hex256(&bundle.qe_identity_issuer_chain),
        qeidcrlhash: hex256(&bundle.root_ca_crl),
    };
    let valid_from = [
        tcb_info.issue_date,
        qe_identity.issue_date,
        pck_crl.this_update,
        root_ca_crl.this_update,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let valid_until = [
        tcb_info.next_update,
        qe_identity.next_update,
        pck_crl.next_update,
        root_ca_crl.next_update,
    ]
    .into_iter()
    .min()
    .unwrap_or(0);
    let crl_digest =
        crate::dcap::pck::crl_digest(&[bundle.pck_crl.clone(), bundle.root_ca_crl.clone()]);
    Ok(VerifiedCollateral {
        crl_digest,
        bundle: bundle.clone(),
        tcb_info,
        qe_identity,
        pck_crl,
        root_ca_crl,
        hashes,
        valid_from,
        valid_until,
    })
}

fn check_window(
    issue: u64,
    next: u64,
    time: VerificationTime,
    what: &str,
) -> Result<(), CollateralError> {
    let now = time.unix_seconds();
    if now < issue {
        return Err(CollateralError::NotYetValid(format!(
            "the {what} is issued at {}, after the verification time {}",
            rfc3339(issue),
            rfc3339(now)
        )));
    }
    if now >= next {
        return Err(CollateralError::Expired(format!(
            "the {what} was to be replaced at {} (nextUpdate), before the verification time {}; fetch fresh collateral",
            rfc3339(next),
            rfc3339(now)
        )));
    }
    Ok(())
}

fn read_chain(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, CollateralError> {
    check_len(pem, what)?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| CollateralError::Malformed(format!("the {what}: {e}")))?;
        if certs.len() == MAX_CHAIN_LEN {
            return Err(CollateralError::Malformed(format!(
                "the {what} has more than {MAX_CHAIN_LEN} certificates"
            )));
        }
        certs.push(cert);
    }
    if certs.len() < 2 {
        return Err(CollateralError::Malformed(format!(
            "the {what} must hold the issuing certificate and the root ({} found)",
            certs.len()
        )));
    }
    Ok(certs)
}

/// The chain's last certificate is a trusted root, and the root CA CRL is
/// that root's.
fn check_root_crl_issuer(
    roots: &TrustAnchors,
    chain: &[CertificateDer<'static>],
    root_crl: &CrlFacts,
    what: &str,
) -> Result<(), CollateralError> {
    let Some(root) = chain.last() else {
        return Err(CollateralError::Malformed(format!("the {what} is empty")));
    };
    roots
        .check_root(root.as_ref())
        .map_err(|e| CollateralError::IssuerChainInvalid(format!("the {what}: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(root.as_ref())
        .map_err(|e| CollateralError::Malformed(format!("the {what}'s root: {e}")))?;
    if cert.subject().as_raw() != root_crl.issuer.as_slice() {
        return Err(CollateralError::CrlIssuerMismatch(format!(
            "the root CA CRL is issued by {:?}, not by the root {:?} of the {what}",
            root_crl.issuer_text,
            cert.subject().to_string()
        )));
    }
    Ok(())
}

/// Validates a collateral signer's chain (e.g. TCB signing certificate →
/// root) with webpki at `time`, the root CA CRL checked (a signer with no
/// status fails closed); returns the signer's public key.
fn verify_signer_chain(
    roots: &TrustAnchors,
    pem: &[u8],
    root_crl_der: &[u8],
    root_crl: &CrlFacts,
    time: VerificationTime,
    what: &str,
) -> Result<Vec<u8>, CollateralError> {
    let certs = read_chain(pem, what)?;
    check_root_crl_issuer(roots, &certs, root_crl, what)?;
    let (Some(leaf_der), Some(_)) = (certs.first(), certs.last()) else {
        return Err(CollateralError::Malformed(format!("the {what} is empty")));
    };
    let intermediates = certs
        .get(1..certs.len().saturating_sub(1))
        .unwrap_or_default();
    let leaf = EndEntityCert::try_from(leaf_der)
        .map_err(|e| CollateralError::Malformed(format!("the {what}'s signer: {e:?}")))?;
    let crl = BorrowedCertRevocationList::from_der(root_crl_der)
        .map(CertRevocationList::from)
        .map_err(|e| CollateralError::Malformed(format!("the root CA CRL: {e:?}")))?;
    let crls = [&crl];
    let revocation = RevocationOptionsBuilder::new(&crls)
        .map_err(|e| CollateralError::Malformed(format!("{e:?}")))?
        .with_depth(RevocationCheckDepth::Chain)
        .with_status_policy(UnknownStatusPolicy::Deny)
        .with_expiration_policy(ExpirationPolicy::Enforce)
        .build();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        roots.anchors(),
        intermediates,
        time.as_webpki(),
        KeyUsage::required_if_present(&[]),
        Some(revocation),
        None,
    )
    .map_err(|e| signer_error(e, what))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf_der.as_ref())
        .map_err(|e| CollateralError::Malformed(format!("the {what}'s signer: {e}")))?;
    // Only a certificate Intel issued for signing collateral may sign it
    // (a chain to the root alone would admit any Intel-issued leaf).
    let cn_ok = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| cn.contains("TCB Signing"));
    if !cn_ok {
        return Err(CollateralError::IssuerChainInvalid(format!(
            "the {what} starts with {:?}, which is not a TCB signing certificate",
            parsed.subject().to_string()
        )));
    }
    Ok(parsed.public_key().subject_public_key.data.to_vec())
}

fn signer_error(e: webpki::Error, what: &str) -> CollateralError {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => {
            CollateralError::Expired(format!("a certificate of the {what} has expired"))
        }
        E::CertNotValidYet { .. } => {
            CollateralError::NotYetValid(format!("a certificate of the {what} is not yet valid"))
        }
        E::CertRevoked => CollateralError::IssuerChainInvalid(format!(
            "a certificate of the {what} is revoked by the root CA CRL"
        )),
        E::CrlExpired { .. } => {
            CollateralError::Expired("the root CA CRL is past its nextUpdate".into())
        }
        E::UnknownRevocationStatus => {
            CollateralError::Missing(format!("no CRL covers a certificate of the {what}"))
        }
        other => CollateralError::IssuerChainInvalid(format!("the {what}: {other:?}")),
    }
}

fn verify_item_signature(
    key: &[u8],
    message: &[u8],
    signature: &[u8],
    what: &str,
) -> Result<(), CollateralError> {
    if signature.len() != 64 {
        return Err(CollateralError::Malformed(format!(
            "the {what} signature is {} bytes, not 64 (r ‖ s)",
            signature.len()
        )));
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(message, signature)
        .map_err(|_| {
            CollateralError::SignatureInvalid(format!(
                "the {what} signature does not verify with the TCB signing key over the bytes received"
            ))
        })
}

/// The PCK CRL's issuer is the first certificate of its chain, which the
/// root issued and has not revoked (checked by webpki through a path from
/// that CA to the root is not possible for a CA certificate, so: the CA's
/// signature by the root with aws-lc-rs, its validity window, the root CRL
/// entry), and the CRL's signature verifies with that CA's key.
fn verify_pck_crl(
    pck_crl_der: &[u8],
    chain: &[CertificateDer<'static>],
    facts: &CrlFacts,
    root_crl_der: &[u8],
    time: VerificationTime,
) -> Result<(), CollateralError> {
    let what = "PCK CRL issuer chain";
    let (Some(ca_der), Some(root_der)) = (chain.first(), chain.last()) else {
        return Err(CollateralError::Malformed(format!("the {what} is empty")));
    };
    if chain.len() != 2 {
        return Err(CollateralError::Malformed(format!(
            "the {what} must be the PCK CA and the root ({} certificates found)",
            chain.len()
        )));
    }
    let ca = x509_parser::parse_x509_certificate(ca_der.as_ref())
        .map(|(_, c)| c)
        .map_err(|e| CollateralError::Malformed(format!("the {what}: {e}")))?;
    let root = x509_parser::parse_x509_certificate(root_der.as_ref())
        .map(|(_, c)| c)
        .map_err(|e| CollateralError::Malformed(format!("the {what}: {e}")))?;
    if ca.subject().as_raw() != facts.issuer.as_slice() {
        return Err(CollateralError::CrlIssuerMismatch(format!(
            "the PCK CRL is issued by {:?}, but its issuer chain starts with {:?}",
            facts.issuer_text,
            ca.subject().to_string()
        )));
    }
    if ca.issuer().as_raw() != root.subject().as_raw() {
        return Err(CollateralError::IssuerChainInvalid(format!(
            "the {what}: the PCK CA is not issued by the root"
        )));
    }
    let now = i64::try_from(time.unix_seconds()).unwrap_or(i64::MAX);
    let validity = ca.validity();
    if now < validity.not_before.timestamp() {
        return Err(CollateralError::NotYetValid(format!(
            "the PCK CA certificate of the {what} is not yet valid"
        )));
    }
    if now > validity.not_after.timestamp() {
        return Err(CollateralError::Expired(format!(
            "the PCK CA certificate of the {what} has expired"
        )));
    }
    verify_x509_signature(
        &root,
        ca.tbs_certificate.as_ref(),
        &ca.signature_algorithm,
        &ca.signature_value.data,
    )
    .map_err(|_| {
        CollateralError::IssuerChainInvalid(format!(
            "the PCK CA certificate of the {what} is not signed by the root"
        ))
    })?;
    let (_, root_crl) = x509_parser::parse_x509_crl(root_crl_der)
        .map_err(|e| CollateralError::Malformed(format!("the root CA CRL: {e}")))?;
    if root_crl
        .iter_revoked_certificates()
        .any(|r| r.raw_serial() == ca.raw_serial())
    {
        return Err(CollateralError::IssuerChainInvalid(format!(
            "the PCK CA certificate of the {what} is revoked by the root CA CRL"
        )));
    }
    let (_, crl) = x509_parser::parse_x509_crl(pck_crl_der)
        .map_err(|e| CollateralError::Malformed(format!("the PCK CRL: {e}")))?;
    verify_x509_signature(
        &ca,
        crl.tbs_cert_list.as_ref(),
        &crl.signature_algorithm,
        &crl.signature_value.data,
    )
    .map_err(|_| {
        CollateralError::SignatureInvalid(
            "the PCK CRL signature does not verify with its issuer's key".into(),
        )
    })
}

/// Verifies `signature` over `tbs` with `issuer`'s key (aws-lc-rs), for
/// the ECDSA algorithms Intel's PKI uses.
fn verify_x509_signature(
    issuer: &x509_parser::certificate::X509Certificate<'_>,
    tbs: &[u8],
    alg: &x509_parser::x509::AlgorithmIdentifier<'_>,
    signature: &[u8],
) -> Result<(), ()> {
    use aws_lc_rs::signature;
    let verify_alg: &dyn signature::VerificationAlgorithm =
        match alg.algorithm.to_id_string().as_str() {
            "1.2.840.10045.4.3.2" => &signature::ECDSA_P256_SHA256_ASN1,
            "1.2.840.10045.4.3.3" => &signature::ECDSA_P384_SHA384_ASN1,
            _ => return Err(()),
        };
    let key = issuer.public_key().subject_public_key.data.as_ref();
    signature::UnparsedPublicKey::new(verify_alg, key)
        .verify(tbs, signature)
        .map_err(|_| ())
}

/// Which collateral item a file holds, by its (case-insensitive) name:
/// the names PCS/PCCS tooling, Intel's QVL samples, go-tdx-guest and
/// dcap-qvl use.
fn item_for_name(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    let n = n.as_str();
    Some(match n {
        "collateral.json" | "collateral.derived.json" | "bundle.json" => "bundle",
        "tcbinfo.json" | "tcb_info.json" | "tcbinfo" | "sample_tcbinfo_response" | "tcb.json" => {
            "tcb_info"
        }
        "qeidentity.json"
        | "qe_identity.json"
        | "qeidentity"
        | "sample_qeidentity_response"
        | "enclaveidentity.json" => "qe_identity",
        "tcbsignchain.pem" | "tcbinfoissuerchain.pem" | "tcb_info_issuer_chain.pem" => "tcb_chain",
        "qeidentityissuerchain.pem" | "qe_identity_issuer_chain.pem" => "qe_chain",
        "pckcrl"
        | "pckcrl.der"
        | "pckcrl.pem"
        | "pck_crl.der"
        | "pck_crl.pem"
        | "intermediatecacrl.der" => "pck_crl",
        "pckcrlissuerchain.pem" | "pck_crl_issuer_chain.pem" | "pcksignchain.pem" => "pck_chain",
        "rootcacrl.der" | "rootcacrl.pem" | "rootcrl.der" | "root_ca_crl.der" | "rootcrl.pem" => {
            "root_crl"
        }
        _ => return None,
    })
}

/// Assembles a bundle from named files (a directory's contents): either
/// one dcap-qvl bundle (`collateral.json`), or the PCS/PCCS answers under
/// the names [`item_for_name`] knows (the QE identity's chain defaults to
/// the TCB info's: Intel signs both with the TCB signing key). Files with
/// other names are ignored; a missing item is named in the error.
pub fn bundle_from_named_files(
    files: &[(String, Vec<u8>)],
) -> Result<CollateralBundle, CollateralError> {
    let find = |item: &str| {
        files
            .iter()
            .find(|(name, _)| item_for_name(name) == Some(item))
            .map(|(_, b)| b.as_slice())
    };
    if let Some(bundle) = find("bundle") {
        return CollateralBundle::from_dcap_qvl_json(bundle);
    }
    let need = |item: &str, what: &str| {
        find(item).ok_or_else(|| {
            CollateralError::Missing(format!(
                "no {what} among the files (and no collateral.json bundle)"
            ))
        })
    };
    let tcb_chain = need(
        "tcb_chain",
        "TCB info issuer chain (tcbInfoIssuerChain.pem)",
    )?;
    CollateralBundle::from_parts(&CollateralParts {
        tcb_info_body: need("tcb_info", "TCB info (tcbInfo.json)")?,
        tcb_info_issuer_chain: tcb_chain,
        qe_identity_body: need("qe_identity", "QE identity (qeIdentity.json)")?,
        qe_identity_issuer_chain: find("qe_chain").unwrap_or(tcb_chain),
        pck_crl: need("pck_crl", "PCK CRL (pckCrl.der)")?,
        pck_crl_issuer_chain: need("pck_chain", "PCK CRL issuer chain (pckCrlIssuerChain.pem)")?,
        root_ca_crl: need("root_crl", "root CA CRL (rootCaCrl.der)")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for text in [
            "2025-07-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59Z",
            "2049-12-31T12:34:56Z",
        ] {
            let secs = parse_rfc3339(text).unwrap().unix_seconds();
            assert_eq!(rfc3339(secs), text);
        }
    }

    #[test]
    fn oversized_and_odd_items_are_refused_without_panicking() {
        let big = vec![b' '; MAX_ITEM_LEN + 1];
        assert!(parse_tcb_info(&big).is_err());
        assert!(parse_qe_identity(&big).is_err());
        assert!(split_tcb_info_body(&big).is_err());
        assert_eq!(
            crl_der(b"zz", "x").unwrap_err().code(),
            "CollateralMalformed"
        );
        // A duplicated member is refused, not resolved silently.
        let dup = br#"{"tcbInfo":{},"tcbInfo":{},"signature":"00"}"#;
        assert!(split_tcb_info_body(dup).is_err());
    }
}
