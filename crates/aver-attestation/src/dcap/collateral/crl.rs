//! CRLs of the DCAP collateral: the Intel SGX Root CA CRL and the PCK CA
//! CRL (processor or platform). Their signatures and revocation entries are
//! checked by rustls-webpki when a chain is validated with them; here they
//! are read once (x509-parser) for what webpki does not check: the issuer
//! (the root CRL must come from the trusted root, the PCK CRL from the PCK
//! certificate's issuer) and `thisUpdate` (a CRL from the future is refused
//! as much as an expired one).

use super::{CollateralError, MAX_ITEM_LEN, rfc3339};
use crate::VerificationTime;

/// What the collateral verifier keeps of one CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlFacts {
    /// Issuer name, DER.
    pub issuer: Vec<u8>,
    /// Issuer as text, for messages.
    pub issuer_text: String,
    pub this_update: u64,
    pub next_update: u64,
    pub revoked: usize,
}

/// Parses `der` (bounded) and checks its validity window at `time`.
pub fn read_crl(
    der: &[u8],
    what: &str,
    time: VerificationTime,
) -> Result<CrlFacts, CollateralError> {
    if der.len() > MAX_ITEM_LEN {
        return Err(CollateralError::Malformed(format!(
            "the {what} is {} bytes, more than the {MAX_ITEM_LEN} accepted",
            der.len()
        )));
    }
    // webpki's parser first: what it refuses would fail later anyway.
    webpki::BorrowedCertRevocationList::from_der(der)
        .map_err(|e| CollateralError::Malformed(format!("the {what} is not a valid CRL: {e:?}")))?;
    let (rest, crl) = x509_parser::parse_x509_crl(der)
        .map_err(|e| CollateralError::Malformed(format!("the {what} is not a valid CRL: {e}")))?;
    if !rest.is_empty() {
        return Err(CollateralError::Malformed(format!(
            "the {what} has trailing bytes"
        )));
    }
    let this_update = timestamp(crl.last_update().timestamp());
    let next_update = crl
        .next_update()
        .map(|t| timestamp(t.timestamp()))
        .ok_or_else(|| CollateralError::Malformed(format!("the {what} has no nextUpdate")))?;
    let now = time.unix_seconds();
    if now < this_update {
        return Err(CollateralError::NotYetValid(format!(
            "the {what} is issued at {} (thisUpdate), after the verification time {}",
            rfc3339(this_update),
            rfc3339(now)
        )));
    }
    if now >= next_update {
        return Err(CollateralError::Expired(format!(
            "the {what} was to be replaced at {} (nextUpdate), before the verification time {}; fetch fresh collateral",
            rfc3339(next_update),
            rfc3339(now)
        )));
    }
    Ok(CrlFacts {
        issuer: crl.issuer().as_raw().to_vec(),
        issuer_text: crl.issuer().to_string(),
        this_update,
        next_update,
        revoked: crl.iter_revoked_certificates().count(),
    })
}

fn timestamp(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}
