//! Offline TPM commands: `aver evidence verify tpm` and `aver evidence
//! eventlog`.
//!
//! * `evidence verify tpm` verifies a quote with the same pure function the
//!   service runs for `/attest/Tpm` ([`aver_tpm_attest::verify_evidence`]):
//!   signature by the AK, extraData, pcrDigest over PCR values given in a
//!   file or replayed from the event log, and the log's replay against the
//!   quoted PCRs; the claims are the service's. The AK's provenance (EK, AK
//!   certificate) is **not** checked offline (`aikValidated` is false).
//! * `evidence eventlog` parses a TCG event log and replays every bank.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use aver_tpm::alg::PcrValues;
use aver_tpm::eventlog::EventLog;
use aver_tpm::parse_event_log;
use aver_tpm::replay::Replay;
use aver_tpm_attest::{AkInput, PcrSource, TpmError, TpmEvidence, verify_evidence};
use clap::Args;
use serde_json::{Map, Value, json};

use crate::files;

#[derive(Args, Debug)]
pub struct VerifyTpmArgs {
    /// The quote: TPMS_ATTEST as signed (or TPM2B_ATTEST); raw, hex or base64.
    #[arg(long)]
    quote: PathBuf,
    /// The signature: TPMT_SIGNATURE; raw, hex or base64.
    #[arg(long)]
    signature: PathBuf,
    /// The attestation key: TPM2B_PUBLIC, TPMT_PUBLIC, PEM SPKI, or an AK
    /// file written by `aver attest tpm` (auto-detected).
    #[arg(long)]
    ak: PathBuf,
    /// TCG event log (legacy SHA-1 or crypto-agile). Without --pcrs, the
    /// PCR values are its replay (so the quote proves the log).
    #[arg(long)]
    event_log: Option<PathBuf>,
    /// Expected extraData (hex). Without it, extraData is reported but not
    /// checked.
    #[arg(long)]
    nonce: Option<String>,
    /// PCR values: JSON `{"sha256": {"0": "<hex>", ...}, ...}` or a
    /// tpm2-tools PCR file (`tpm2_quote -o`).
    #[arg(long)]
    pcrs: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EventlogArgs {
    /// The event log, e.g. /sys/kernel/security/tpm0/binary_bios_measurements.
    file: PathBuf,
}

// ------------------------------------------------------------------ verify

pub fn verify(args: VerifyTpmArgs) -> Result<ExitCode> {
    if args.pcrs.is_none() && args.event_log.is_none() {
        bail!("give the PCR values (--pcrs) or the event log to replay (--event-log)");
    }
    let nonce = args
        .nonce
        .as_deref()
        .map(|n| hex::decode(n.trim()).map_err(|_| anyhow!("--nonce {n:?} is not hex")))
        .transpose()?;
    let quote = files::read_evidence(&args.quote)?;
    let signature = files::read_evidence(&args.signature)?;
    let ak = files::read(&args.ak)?;
    let event_log = args.event_log.as_deref().map(files::read).transpose()?;
    let pcrs = args.pcrs.as_deref().map(files::read).transpose()?;
    let result = (|| {
        let pcrs = match &pcrs {
            Some(bytes) => PcrSource::Supplied(
                aver_tpm::parse_pcr_file(bytes)
                    .map_err(|e| TpmError::InvalidTpmMessage(format!("PCR file: {e}")))?,
            ),
            None => PcrSource::LogReplay,
        };
        verify_evidence(&TpmEvidence {
            ak: parse_ak(&ak)?,
            quote: &quote,
            signature: &signature,
            pcrs,
            event_log: event_log.as_deref(),
            challenge: nonce.as_deref(),
            // Without a log nothing can be replayed: the quote is verified
            // over the supplied values alone.
            required_pcr_mask: event_log.is_none().then_some(0),
        })
    })();
    match result {
        Ok(verified) => {
            let mut claims = verified.claims;
            // Offline there is no AK certificate to validate.
            claims.insert("aikValidated".into(), json!(false));
            files::print_json(&json!({
                "verdict": "verified",
                "claims": claims,
                "details": verified.details,
            }));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            files::print_json(&json!({
                "verdict": "rejected",
                "error": { "code": e.code(), "message": e.to_string() },
            }));
            Ok(ExitCode::from(2))
        }
    }
}

/// The AK: PEM SubjectPublicKeyInfo, an AK file written by
/// `aver attest tpm` (JSON with the TPM2B_PUBLIC under `public`), or a
/// TPM2B_PUBLIC / TPMT_PUBLIC (raw, hex or base64).
fn parse_ak(bytes: &[u8]) -> std::result::Result<AkInput, TpmError> {
    let bad = |m: String| TpmError::InvalidTpmMessage(m);
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    let tpm_public = |raw: &[u8]| {
        aver_tpm::parse_public2b(raw)
            .or_else(|_| aver_tpm::parse_public(raw))
            .map(AkInput::Public)
            .map_err(|e| bad(format!("AK is not a TPM2B_PUBLIC / TPMT_PUBLIC: {e}")))
    };
    match text {
        Some(t) if t.starts_with("-----BEGIN") => {
            let der = pem_body(t).ok_or_else(|| bad("AK PEM does not decode".into()))?;
            Ok(AkInput::Spki(der))
        }
        Some(t) if t.starts_with('{') => {
            let v: Value = serde_json::from_str(t).map_err(|e| bad(format!("AK JSON: {e}")))?;
            let public = v
                .get("public")
                .and_then(Value::as_str)
                .and_then(aver_token::b64::decode_lenient)
                .ok_or_else(|| bad("AK file: no base64url \"public\"".into()))?;
            tpm_public(&public)
        }
        _ => tpm_public(bytes),
    }
}

fn pem_body(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    aver_token::b64::decode_std(&body)
}

// ---------------------------------------------------------------- eventlog

pub fn eventlog(args: EventlogArgs) -> Result<ExitCode> {
    let bytes = files::read(&args.file)?;
    let log = parse_event_log(&bytes)
        .map_err(|e| anyhow!("{}: not a TCG event log: {e}", args.file.display()))?;
    files::print_json(&eventlog_json(&log));
    Ok(ExitCode::SUCCESS)
}

fn hex_banks(banks: &PcrValues) -> Value {
    let mut out = Map::new();
    for (bank, values) in banks {
        let values: Map<String, Value> = values
            .iter()
            .map(|(pcr, v)| (pcr.to_string(), json!(hex::encode(v))))
            .collect();
        out.insert(bank.lower_name().into(), Value::Object(values));
    }
    Value::Object(out)
}

fn replay_json(replay: &Replay) -> Value {
    json!({
        "pcrs": hex_banks(&replay.banks),
        "touched": replay.touched(),
        "lastExtend": replay
            .last_extend
            .iter()
            .map(|(pcr, seq)| (pcr.to_string(), json!(seq)))
            .collect::<Map<String, Value>>(),
        "startupLocality": replay.startup_locality,
        "incompleteBanks": replay
            .incomplete_banks
            .iter()
            .map(|b| b.lower_name())
            .collect::<Vec<_>>(),
    })
}

fn eventlog_json(log: &EventLog) -> Value {
    let replay = aver_tpm::replay(log);
    let mut out = Map::new();
    out.insert("format".into(), json!(log.format));
    out.insert(
        "banks".into(),
        json!(
            log.banks()
                .iter()
                .map(|b| b.lower_name())
                .collect::<Vec<_>>()
        ),
    );
    out.insert("eventCount".into(), json!(log.events.len()));
    out.insert(
        "events".into(),
        serde_json::to_value(aver_tpm::claims::events_claim(log)).unwrap_or(Value::Null),
    );
    let empty = PcrValues::new();
    match &replay {
        Ok(r) => {
            out.insert("replay".into(), replay_json(r));
            let claims = aver_tpm::claims::build_claims(log, Some(r), &empty);
            out.insert(
                "summary".into(),
                json!({
                    "secureBootEnabled": claims.secure_boot_enabled,
                    "secureBootVariables": claims.secure_boot_variables,
                    "bootApplications": claims.boot_applications,
                    "bootSummary": claims.boot_summary,
                }),
            );
        }
        Err(e) => {
            out.insert("replayError".into(), json!(e.to_string()));
        }
    }
    Value::Object(out)
}
