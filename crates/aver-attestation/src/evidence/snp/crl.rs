//! AMD's ARK certificate revocation lists: the ARK of each product signs a
//! CRL (`/vcek/v1/{product}/crl` and `/vlek/v1/{product}/crl` at AMD's Key
//! Distribution Service) listing the ASKs and ASVKs it revoked.
//!
//! A CRL is checked once, when it is added: it must parse, fit in
//! [`MAX_CRL_BYTES`], carry a nextUpdate, and be signed (RSA-PSS, AMD's
//! one algorithm) by a trusted ARK. What is kept is only what a chain
//! needs — the ARK it belongs to, its window and the revoked serials — so
//! checking a chain costs no signature. A chain of an ARK that has CRLs
//! must be inside every one's window at the verification time and its
//! ASK/ASVK listed in none.
//!
//! CRLs live in named *slots* (the service uses one per KDS route, the CLI
//! one per file). A slot can be replaced while the service runs, by a CRL
//! of the same ARK issued no earlier than the one held: an older CRL
//! (which could omit a later revocation) is refused.

use std::sync::{Arc, RwLock};

use super::SnpError;
use crate::VerificationTime;

/// Largest CRL accepted (AMD's are about 1 KiB).
pub const MAX_CRL_BYTES: usize = 256 * 1024;
/// Most slots held: a few products times two routes, with room for
/// configured extras.
pub const MAX_SLOTS: usize = 64;

/// What a CRL slot holds, for logs, status and the refresher.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrlInfo {
    /// The slot's name.
    pub slot: String,
    /// The label of the trusted ARK that signed it.
    pub ark: String,
    /// thisUpdate and nextUpdate, Unix seconds.
    pub this_update: i64,
    pub next_update: i64,
    /// How many certificates it revokes.
    pub revoked: usize,
}

/// A CRL that verified to a trusted ARK when it was added.
#[derive(Debug)]
struct HeldCrl {
    info: CrlInfo,
    ark_subject: Vec<u8>,
    ark_spki: Vec<u8>,
    /// Raw serial numbers (DER INTEGER contents) of revoked certificates.
    revoked: Vec<Vec<u8>>,
}

/// The CRLs of an [`SnpTrust`](super::SnpTrust), shared by its clones and
/// replaceable through a shared reference.
#[derive(Debug, Default)]
pub struct ArkCrls {
    held: RwLock<Vec<Arc<HeldCrl>>>,
}

/// A trusted ARK, as the CRL check sees it.
pub(crate) struct ArkRef<'a> {
    pub label: &'a str,
    pub subject: &'a [u8],
    pub spki: &'a [u8],
    pub der: &'a [u8],
}

impl ArkCrls {
    /// Verifies `der` against `arks` and puts it in `slot` (see the module
    /// documentation for when a held CRL is replaced).
    pub(crate) fn install<'a>(
        &self,
        slot: &str,
        der: &[u8],
        arks: impl Iterator<Item = ArkRef<'a>>,
    ) -> Result<CrlInfo, SnpError> {
        let held = Arc::new(parse_and_verify(slot, der, arks)?);
        let info = held.info.clone();
        let mut slots = self
            .held
            .write()
            .map_err(|_| SnpError::CrlInvalid("the CRL set is unusable (poisoned)".into()))?;
        match slots.iter().position(|h| h.info.slot == slot) {
            Some(i) => {
                let current = slots
                    .get(i)
                    .map(|h| (h.info.this_update, h.ark_spki.clone()));
                if let Some((this_update, spki)) = current
                    && spki == held.ark_spki
                    && info.this_update < this_update
                {
                    return Err(SnpError::CrlInvalid(format!(
                        "slot {slot:?} holds a CRL issued at {} and this one was issued earlier, at {}; an older CRL could miss a revocation",
                        rfc3339(this_update),
                        rfc3339(info.this_update)
                    )));
                }
                if let Some(entry) = slots.get_mut(i) {
                    *entry = held;
                }
            }
            None => {
                if slots.len() >= MAX_SLOTS {
                    return Err(SnpError::CrlInvalid(format!(
                        "already {MAX_SLOTS} CRLs are held"
                    )));
                }
                slots.push(held);
            }
        }
        Ok(info)
    }

    /// What `slot` holds.
    pub fn get(&self, slot: &str) -> Option<CrlInfo> {
        let slots = self.held.read().ok()?;
        slots
            .iter()
            .find(|h| h.info.slot == slot)
            .map(|h| h.info.clone())
    }

    /// Every held CRL.
    pub fn list(&self) -> Vec<CrlInfo> {
        self.held
            .read()
            .map(|slots| slots.iter().map(|h| h.info.clone()).collect())
            .unwrap_or_default()
    }

    /// Checks the chain's ASK or ASVK (its raw serial number and, for the
    /// message, its subject) against every CRL of the chain's ARK (its raw
    /// subject and public key) at `time`. `require` refuses a chain whose
    /// ARK has none.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check(
        &self,
        ark_subject: &[u8],
        ark_spki: &[u8],
        ark_label: &str,
        serial: &[u8],
        subject: &str,
        time: VerificationTime,
        require: bool,
    ) -> Result<(), SnpError> {
        let now = i64::try_from(time.unix_seconds()).unwrap_or(i64::MAX);
        let slots = self
            .held
            .read()
            .map_err(|_| SnpError::CrlInvalid("the CRL set is unusable (poisoned)".into()))?;
        let mut found = false;
        for held in slots
            .iter()
            .filter(|h| h.ark_subject == ark_subject && h.ark_spki == ark_spki)
        {
            found = true;
            let info = &held.info;
            if now < info.this_update || now > info.next_update {
                return Err(SnpError::CrlExpired(format!(
                    "the CRL of {} ({}) is valid from {} to {}",
                    info.ark,
                    info.slot,
                    rfc3339(info.this_update),
                    rfc3339(info.next_update)
                )));
            }
            if held.revoked.iter().any(|r| r.as_slice() == serial) {
                return Err(SnpError::CertificateRevoked(format!(
                    "the CRL of {} ({}) revokes {subject:?}",
                    info.ark, info.slot,
                )));
            }
        }
        if require && !found {
            return Err(SnpError::CrlMissing(format!(
                "no CRL of {ark_label} is held, and revocation checking is required"
            )));
        }
        Ok(())
    }
}

fn parse_and_verify<'a>(
    slot: &str,
    der: &[u8],
    arks: impl Iterator<Item = ArkRef<'a>>,
) -> Result<HeldCrl, SnpError> {
    if der.len() > MAX_CRL_BYTES {
        return Err(SnpError::CrlInvalid(format!(
            "the CRL is {} bytes, more than {MAX_CRL_BYTES}",
            der.len()
        )));
    }
    let (rest, crl) = x509_parser::parse_x509_crl(der)
        .map_err(|e| SnpError::CrlInvalid(format!("not a DER CRL: {e}")))?;
    if !rest.is_empty() {
        return Err(SnpError::CrlInvalid("the CRL has trailing bytes".into()));
    }
    if crl.signature_algorithm != crl.tbs_cert_list.signature {
        return Err(SnpError::CrlInvalid(
            "the CRL's two signature algorithm fields differ".into(),
        ));
    }
    let issuer = crl.issuer().as_raw();
    let mut named = false;
    let mut signer = None;
    for ark in arks.filter(|a| a.subject == issuer) {
        named = true;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(ark.der) else {
            continue;
        };
        if super::certs::verify_pss(
            &crl.signature_algorithm,
            crl.tbs_cert_list.as_ref(),
            crl.signature_value.data.as_ref(),
            &cert,
        )
        .is_ok()
        {
            signer = Some(ark);
            break;
        }
    }
    let Some(ark) = signer else {
        return Err(SnpError::CrlInvalid(if named {
            format!(
                "the CRL names {:?} as its issuer but no trusted ARK of that name signed it",
                crl.issuer().to_string()
            )
        } else {
            format!(
                "the CRL's issuer {:?} is not a trusted ARK",
                crl.issuer().to_string()
            )
        }));
    };
    let next_update = crl
        .next_update()
        .map(|t| t.timestamp())
        .ok_or_else(|| SnpError::CrlInvalid("the CRL has no nextUpdate".into()))?;
    let revoked: Vec<Vec<u8>> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    Ok(HeldCrl {
        info: CrlInfo {
            slot: slot.to_string(),
            ark: ark.label.to_string(),
            this_update: crl.last_update().timestamp(),
            next_update,
            revoked: revoked.len(),
        },
        ark_subject: ark.subject.to_vec(),
        ark_spki: ark.spki.to_vec(),
        revoked,
    })
}

fn rfc3339(t: i64) -> String {
    u64::try_from(t)
        .map(crate::dcap::collateral::rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
