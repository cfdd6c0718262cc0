//! TPM evidence verification: one pure function, [`verify_evidence`],
//! called by the service (`/attest/Tpm`, after the protocol has checked the
//! service context and the AK certificate) and by the offline
//! `aver evidence verify tpm`, so the two cannot disagree.
//!
//! It proves that the AK signed a quote (over the challenge, when one is
//! given) whose PCR digest covers the PCR values, that the event log
//! replays to those values on the PCRs that must be replayed, and builds
//! the claims: `x-ms-attestation-type`, `x-ms-ver`, `tpmVersion`,
//! `aikPubHash`, and from the log `pcrs`, `events`, `secureBootEnabled`,
//! ... (only events on PCRs whose replay matched the quote are published).
//! Whether the AK belongs to a genuine TPM is the protocol's question
//! (credential activation, AK certificates: `aikValidated`).

use std::collections::BTreeSet;

use aver_tpm::alg::{HashAlg, PcrValues};
use aver_tpm::eventlog::{EventLog, types};
use aver_tpm::quote::{AkPublicKey, QuoteError};
use aver_tpm::structures::{Attest, Attested, Public, TPM_ATTEST_MAGIC};
use aver_tpm::{parse_event_log, parse_signature, verify_quote};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::TpmError;
use crate::service::X_MS_VER;

/// The attestation key: its TPM public area (whose attributes are checked),
/// or, offline, only its public key (SPKI) when that is all the user has.
#[derive(Debug, Clone)]
pub enum AkInput {
    /// TPMT_PUBLIC: the attributes are checked and the AK name derived.
    Public(Public),
    /// A SubjectPublicKeyInfo (DER): the key only.
    Spki(Vec<u8>),
}

/// Where the PCR values come from.
#[derive(Debug, Clone)]
pub enum PcrSource {
    /// Values sent with the quote (the protocol; `--pcrs` offline).
    Supplied(PcrValues),
    /// The event log's replay: the quote then proves the log.
    LogReplay,
}

/// Everything [`verify_evidence`] checks.
#[derive(Debug, Clone)]
pub struct TpmEvidence<'a> {
    /// The attestation key.
    pub ak: AkInput,
    /// TPMS_ATTEST exactly as signed (a TPM2B_ATTEST is unwrapped).
    pub quote: &'a [u8],
    /// TPMT_SIGNATURE.
    pub signature: &'a [u8],
    /// The PCR values the quote's digest must cover.
    pub pcrs: PcrSource,
    /// A TCG PC Client event log.
    pub event_log: Option<&'a [u8]>,
    /// The expected quote extraData; `None` leaves it unchecked (offline
    /// without `--nonce`; the protocol always passes its challenge).
    pub challenge: Option<&'a [u8]>,
    /// PCRs (bit n = PCR n) whose quoted values must equal the log's replay
    /// in every quoted bank; `None`: PCRs 0–7 that every quoted bank holds.
    /// Every other quoted PCR the log extends must match too.
    pub required_pcr_mask: Option<u32>,
}

/// Verified TPM evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEvidence {
    /// Claims for the policy (and, after evaluation, the token).
    pub claims: Map<String, Value>,
    /// The AK name (nameAlg ‖ H(TPMT_PUBLIC)), when the public area was given.
    pub ak_name: Option<Vec<u8>>,
    /// The quoted PCR values.
    pub quoted: PcrValues,
    /// The PCRs whose replay was compared with the quote.
    pub replayed_pcrs: Vec<(HashAlg, u32)>,
    /// Facts that are not claims (quote clock, firmware, selection, where
    /// the PCR values came from), for the offline verdict.
    pub details: Value,
}

/// Refuses an AK that is not a restricted signing key that never left its
/// TPM.
pub fn check_ak_attributes(ak: &Public) -> Result<(), TpmError> {
    let a = &ak.object_attributes;
    if !a.is_attestation_key_shape() {
        return Err(TpmError::AkAttributesInvalid(format!(
            "objectAttributes 0x{:08x}: need fixedTPM, fixedParent, sensitiveDataOrigin, \
             restricted, sign and not decrypt (fixedTPM={} fixedParent={} sensitiveDataOrigin={} \
             restricted={} sign={} decrypt={})",
            a.raw,
            a.fixed_tpm,
            a.fixed_parent,
            a.sensitive_data_origin,
            a.restricted,
            a.sign,
            a.decrypt
        )));
    }
    Ok(())
}

/// The one mapping of quote failures to protocol error codes.
pub fn map_quote_error(e: QuoteError) -> TpmError {
    match e {
        QuoteError::SignatureInvalid => TpmError::QuoteSignatureInvalid,
        QuoteError::ChallengeMismatch { .. } => TpmError::ChallengeMismatch(e.to_string()),
        QuoteError::PcrDigestMismatch { .. }
        | QuoteError::PcrMissing { .. }
        | QuoteError::PcrValueLength { .. } => TpmError::PcrDigestMismatch(e.to_string()),
        QuoteError::UnsupportedAlgorithm(_) | QuoteError::InvalidKey(_) => {
            TpmError::UnsupportedAlgorithm(e.to_string())
        }
        QuoteError::Parse(_) | QuoteError::BadMagic(_) | QuoteError::NotAQuote(_) => {
            TpmError::msg(format!("quote: {e}"))
        }
    }
}

/// The TPMS_ATTEST inside `bytes`: as signed, or unwrapped from a
/// TPM2B_ATTEST (a u16 size in front).
fn attest_bytes(bytes: &[u8]) -> &[u8] {
    match bytes {
        [a, b, c, d, ..] if u32::from_be_bytes([*a, *b, *c, *d]) == TPM_ATTEST_MAGIC => bytes,
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => rest,
        _ => bytes,
    }
}

/// Verifies TPM evidence; see the module documentation.
pub fn verify_evidence(e: &TpmEvidence<'_>) -> Result<VerifiedEvidence, TpmError> {
    // Attestation key.
    let (key, spki, ak_name) = match &e.ak {
        AkInput::Public(public) => {
            check_ak_attributes(public)?;
            let name = public
                .name()
                .map_err(|err| TpmError::UnsupportedAlgorithm(format!("AK name: {err}")))?;
            let key = AkPublicKey::from_public(public)
                .map_err(|err| TpmError::UnsupportedAlgorithm(format!("AK: {err}")))?;
            let spki = public
                .to_spki_der()
                .map_err(|err| TpmError::UnsupportedAlgorithm(format!("AK: {err}")))?;
            (key, spki, Some(name))
        }
        AkInput::Spki(spki) => {
            let key = AkPublicKey::from_spki_der(spki)
                .map_err(|err| TpmError::UnsupportedAlgorithm(format!("AK: {err}")))?;
            (key, spki.clone(), None)
        }
    };

    // Quote, signature and event log.
    let quote = attest_bytes(e.quote);
    let attest =
        aver_tpm::parse_attest(quote).map_err(|err| TpmError::msg(format!("quote: {err}")))?;
    let signature = parse_signature(e.signature)
        .map_err(|err| TpmError::msg(format!("signature is not a TPMT_SIGNATURE: {err}")))?;
    let log = match e.event_log {
        Some(bytes) => {
            let log = parse_event_log(bytes)
                .map_err(|err| TpmError::EventLogMalformed(err.to_string()))?;
            let replay = aver_tpm::replay(&log)
                .map_err(|err| TpmError::EventLogMalformed(err.to_string()))?;
            Some((log, replay))
        }
        None => None,
    };
    let (values, source) = match (&e.pcrs, &log) {
        (PcrSource::Supplied(values), _) => (values.clone(), "supplied"),
        (PcrSource::LogReplay, Some((_, replay))) => (replay.banks.clone(), "event-log-replay"),
        (PcrSource::LogReplay, None) => {
            return Err(TpmError::EventLogMalformed(
                "no PCR values were given and there is no event log to replay".into(),
            ));
        }
    };
    let challenge = e.challenge.unwrap_or(&attest.extra_data);
    let from_replay = matches!(e.pcrs, PcrSource::LogReplay);
    let vq = verify_quote(quote, &signature, &key, challenge, &values).map_err(|err| {
        match (&err, from_replay) {
            // The values are the log's replay: the log is what disagrees.
            (
                QuoteError::PcrDigestMismatch { .. }
                | QuoteError::PcrMissing { .. }
                | QuoteError::PcrValueLength { .. },
                true,
            ) => TpmError::EventLogReplayMismatch(format!(
                "the event log does not replay to the quoted PCRs: {err}"
            )),
            _ => map_quote_error(err),
        }
    })?;
    let mut quoted = PcrValues::new();
    for (bank, pcr) in &vq.selected {
        if let Some(v) = values.get(bank).and_then(|b| b.get(pcr)) {
            quoted.entry(*bank).or_default().insert(*pcr, v.clone());
        }
    }

    // Replay: the required PCRs, and every other quoted PCR the log extends.
    let mask = e.required_pcr_mask.unwrap_or_else(|| {
        (0u32..8)
            .filter(|p| !quoted.is_empty() && quoted.values().all(|b| b.contains_key(p)))
            .fold(0, |m, p| m | (1 << p))
    });
    let replayed_pcrs: Vec<(HashAlg, u32)> = match &log {
        None if mask != 0 => {
            return Err(TpmError::EventLogMalformed(format!(
                "no TCG event log, but the PCRs of mask 0x{mask:06x} must be replayed"
            )));
        }
        None => Vec::new(),
        Some((log, replay)) => {
            let required = aver_tpm::compare(log, replay, &quoted, Some(mask), &[])
                .map_err(|m| TpmError::EventLogReplayMismatch(m.describe()))?;
            let touched = aver_tpm::compare(log, replay, &quoted, None, &[])
                .map_err(|m| TpmError::EventLogReplayMismatch(m.describe()))?;
            let mut checked: BTreeSet<(HashAlg, u32)> = required.checked.into_iter().collect();
            checked.extend(touched.checked);
            checked.into_iter().collect()
        }
    };

    // Claims: only events on PCRs whose replay matched the quote (plus
    // EV_NO_ACTION records) are published.
    let verified_pcrs: BTreeSet<u32> = replayed_pcrs.iter().map(|(_, p)| *p).collect();
    let mut claims = Map::new();
    claims.insert("x-ms-attestation-type".into(), json!("tpm"));
    claims.insert("x-ms-ver".into(), json!(X_MS_VER));
    claims.insert("tpmVersion".into(), json!(2));
    claims.insert(
        "aikPubHash".into(),
        json!(STANDARD.encode(Sha256::digest(&spki))),
    );
    match &log {
        Some((log, replay)) => {
            let published = EventLog {
                format: log.format,
                spec_id: log.spec_id.clone(),
                events: log
                    .events
                    .iter()
                    .filter(|ev| {
                        ev.event_type == types::EV_NO_ACTION
                            || verified_pcrs.contains(&ev.pcr_index)
                    })
                    .cloned()
                    .collect(),
                trailing_zero_bytes: log.trailing_zero_bytes,
            };
            let tc = aver_tpm::claims::build_claims(&published, Some(replay), &quoted);
            if let Ok(Value::Object(m)) = serde_json::to_value(&tc) {
                claims.extend(m);
            }
        }
        None => {
            if let Ok(v) = serde_json::to_value(aver_tpm::claims::pcrs_claim(&quoted)) {
                claims.insert("pcrs".into(), v);
            }
        }
    }
    let details = json!({
        "quote": quote_summary(&attest, &vq.selected, e.challenge.is_some()),
        "pcrSource": source,
        "eventLogVerifiedPcrs": verified_pcrs,
    });
    Ok(VerifiedEvidence {
        claims,
        ak_name,
        quoted,
        replayed_pcrs,
        details,
    })
}

fn quote_summary(attest: &Attest, selected: &[(HashAlg, u32)], challenge_checked: bool) -> Value {
    let mut banks: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for (bank, pcr) in selected {
        banks.entry(bank.lower_name()).or_default().push(*pcr);
    }
    let digest = match &attest.attested {
        Attested::Quote { pcr_digest, .. } => Some(hex::encode(pcr_digest)),
        _ => None,
    };
    json!({
        "extraData": hex::encode(&attest.extra_data),
        "extraDataChecked": challenge_checked,
        "qualifiedSigner": hex::encode(&attest.qualified_signer),
        "clock": attest.clock_info.clock,
        "resetCount": attest.clock_info.reset_count,
        "restartCount": attest.clock_info.restart_count,
        "safe": attest.clock_info.safe,
        "firmwareVersion": format!("0x{:016x}", attest.firmware_version),
        "selectedPcrs": banks,
        "pcrDigest": digest,
    })
}
