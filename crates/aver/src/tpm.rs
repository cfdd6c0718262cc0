//! TPM commands: `aver attest tpm`, `aver evidence verify tpm`,
//! `aver evidence eventlog`.
//!
//! * `attest tpm` drives a real TPM through `aver-tpm-client` (libtss2):
//!   the AK is created and enrolled once (credential activation, the AK
//!   certificate is kept in the AK file), then every run quotes the PCRs,
//!   sends the event log and prints the token. The protocol is in
//!   `crates/aver-tpm-attest/PROTOCOL.md`.
//! * `evidence verify tpm` verifies a quote offline with `aver-tpm` (no
//!   service, no TPM library): signature by the AK, extraData, pcrDigest
//!   over PCR values given in a file or replayed from the event log, and
//!   the log's replay against the quoted PCRs. The AK's provenance (EK,
//!   AK certificate) is **not** checked offline.
//! * `evidence eventlog` parses a TCG event log and replays every bank.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use aver_client::{Client, ClientError};
use aver_tpm::alg::{HashAlg, PcrValues};
use aver_tpm::eventlog::{EventLog, types};
use aver_tpm::quote::QuoteError;
use aver_tpm::replay::Replay;
use aver_tpm::structures::{Attested, Public, TPM_ATTEST_MAGIC};
use aver_tpm::{AkPublicKey, parse_event_log};
use aver_tpm_client::{AkAlgorithm, AkBlob, TpmClient};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::files;

/// PCR index, 0–23.
fn pcr_index(s: &str) -> std::result::Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(v) if v < 24 => Ok(v),
        _ => Err(format!("{s:?} is not a PCR index (0-23)")),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AkAlg {
    /// RSA-2048, RSASSA-PKCS1-v1_5 SHA-256.
    Rsa,
    /// ECC NIST P-256, ECDSA SHA-256.
    Ecc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Bank {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Bank {
    fn alg(self) -> HashAlg {
        match self {
            Bank::Sha1 => HashAlg::Sha1,
            Bank::Sha256 => HashAlg::Sha256,
            Bank::Sha384 => HashAlg::Sha384,
            Bank::Sha512 => HashAlg::Sha512,
        }
    }
}

#[derive(Args, Debug)]
pub struct AttestTpmArgs {
    /// The TPM: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, ...
    /// (libtss2 TCTI syntax).
    #[arg(long, env = "AVER_TPM_TCTI", default_value = "device:/dev/tpmrm0")]
    tcti: String,
    /// Service base URL.
    #[arg(long, env = "AVER_URL")]
    url: String,
    /// CA certificate (PEM) to trust for the service's TLS certificate.
    #[arg(long, env = "AVER_CA")]
    ca: Option<PathBuf>,
    /// The attestation key file: loaded when it exists, otherwise an AK is
    /// created, enrolled at the service and saved here with its certificate.
    #[arg(long, default_value = "aver-tpm-ak.json")]
    ak_file: PathBuf,
    /// The TCG event log sent with the quote.
    #[arg(long, default_value = aver_tpm_client::DEFAULT_EVENT_LOG)]
    event_log: PathBuf,
    /// PCRs to quote (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7", value_parser = pcr_index)]
    pcrs: Vec<u32>,
    /// PCR banks to quote (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sha256")]
    banks: Vec<Bank>,
    /// Algorithm of a newly created AK (an existing AK file is used as is).
    #[arg(long, value_enum, default_value = "rsa")]
    ak_alg: AkAlg,
}

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

// ------------------------------------------------------------------ attest

enum AttestOutcome {
    Token(String),
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

pub async fn attest(args: AttestTpmArgs) -> Result<ExitCode> {
    let ca = args.ca.as_deref().map(files::read).transpose()?;
    let client = Client::new(&args.url, ca.as_deref())?;
    let event_log = files::read(&args.event_log)?;
    let handle = tokio::runtime::Handle::current();
    // The TPM calls are blocking: run them off the async workers; the
    // transport re-enters the runtime for each HTTP round trip.
    let outcome =
        tokio::task::spawn_blocking(move || attest_blocking(&args, &client, &handle, event_log))
            .await
            .map_err(|e| anyhow!("TPM task failed: {e}"))??;
    match outcome {
        AttestOutcome::Token(token) => {
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        AttestOutcome::Refused {
            status,
            code,
            message,
        } => {
            eprintln!("attestation refused (HTTP {status}): {code}: {message}");
            Ok(ExitCode::from(2))
        }
    }
}

fn attest_blocking(
    args: &AttestTpmArgs,
    client: &Client,
    handle: &tokio::runtime::Handle,
    event_log: Vec<u8>,
) -> Result<AttestOutcome> {
    // The last service error, kept whole (the TPM client only sees text).
    let mut refused: Option<AttestOutcome> = None;
    let mut transport = |message: &Value| -> std::result::Result<Value, String> {
        let body = aver_tpm_client::encode_data(message);
        match handle.block_on(client.post_json("attest/Tpm", &body)) {
            Ok(reply) => aver_tpm_client::decode_data(&reply).map_err(|e| e.to_string()),
            Err(ClientError::Service {
                status,
                code,
                message,
            }) => {
                let text = format!("HTTP {status}: {code}: {message}");
                refused = Some(AttestOutcome::Refused {
                    status,
                    code,
                    message,
                });
                Err(text)
            }
            Err(e) => Err(e.to_string()),
        }
    };

    let mut tpm =
        TpmClient::open(&args.tcti).with_context(|| format!("opening the TPM at {}", args.tcti))?;
    let mut ak = match std::fs::read(&args.ak_file) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not an AK file (JSON)", args.ak_file.display()))?;
            AkBlob::from_json(&v)
                .with_context(|| format!("{} is not an AK file", args.ak_file.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let alg = match args.ak_alg {
                AkAlg::Rsa => AkAlgorithm::RsaSsaSha256,
                AkAlg::Ecc => AkAlgorithm::EcdsaP256Sha256,
            };
            eprintln!(
                "no AK file at {}: creating an attestation key ({:?})",
                args.ak_file.display(),
                args.ak_alg
            );
            tpm.create_ak(alg).context("creating the attestation key")?
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", args.ak_file.display()));
        }
    };

    if ak.aik_cert.is_none() {
        eprintln!(
            "enrolling AK {} at {} (credential activation)",
            hex::encode(&ak.name),
            args.url
        );
        if let Err(e) = aver_tpm_client::enroll(&mut tpm, &mut ak, &mut transport) {
            if let Some(r) = refused {
                eprintln!("AK enrollment failed");
                return Ok(r);
            }
            return Err(anyhow!("AK enrollment failed: {e}"));
        }
        save_ak(&args.ak_file, &ak)?;
        eprintln!(
            "AK enrolled; AK and its certificate saved in {}",
            args.ak_file.display()
        );
    } else {
        eprintln!(
            "using the enrolled AK {} from {}",
            hex::encode(&ak.name),
            args.ak_file.display()
        );
    }

    let mut options = aver_tpm_client::AttestOptions {
        pcrs: args.pcrs.clone(),
        event_log: Some(event_log),
        ..Default::default()
    };
    options.banks.clear();
    for bank in &args.banks {
        // The element type is tss-esapi's HashingAlgorithm, built from its
        // TPM_ALG_ID.
        options.banks.push(
            TryFrom::try_from(bank.alg().tpm_id())
                .map_err(|e| anyhow!("PCR bank {bank:?}: {e}"))?,
        );
    }
    match aver_tpm_client::attest(&mut tpm, &ak, &options, &mut transport) {
        Ok(token) => Ok(AttestOutcome::Token(token)),
        Err(e) => match refused {
            Some(r) => Ok(r),
            None => Err(anyhow!("TPM attestation failed: {e}")),
        },
    }
}

/// Writes the AK file atomically (0600 where supported).
fn save_ak(path: &Path, ak: &AkBlob) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let text = serde_json::to_string_pretty(&ak.to_json())?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.write_all(b"\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow!("saving {}: {}", path.display(), e.error))?;
    Ok(())
}

// ------------------------------------------------------------------ verify

/// A verification failure with a stable code (the service's TPM codes).
struct Rejection {
    code: &'static str,
    message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

pub fn verify(args: VerifyTpmArgs) -> Result<ExitCode> {
    if args.pcrs.is_none() && args.event_log.is_none() {
        bail!("give the PCR values (--pcrs) or the event log to replay (--event-log)");
    }
    let nonce = args
        .nonce
        .as_deref()
        .map(|n| hex::decode(n.trim()).map_err(|_| anyhow!("--nonce {n:?} is not hex")))
        .transpose()?;
    let inputs = Inputs {
        quote: files::read_evidence(&args.quote)?,
        signature: files::read_evidence(&args.signature)?,
        ak: files::read(&args.ak)?,
        event_log: args.event_log.as_deref().map(files::read).transpose()?,
        pcrs: args.pcrs.as_deref().map(files::read).transpose()?,
        nonce,
    };
    match verify_inputs(&inputs) {
        Ok(claims) => {
            files::print_json(&json!({ "verdict": "verified", "claims": claims }));
            Ok(ExitCode::SUCCESS)
        }
        Err(r) => {
            files::print_json(&json!({
                "verdict": "rejected",
                "error": { "code": r.code, "message": r.message },
            }));
            Ok(ExitCode::from(2))
        }
    }
}

struct Inputs {
    quote: Vec<u8>,
    signature: Vec<u8>,
    ak: Vec<u8>,
    event_log: Option<Vec<u8>>,
    pcrs: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
}

/// The AK as a key, plus its TPM public area when it was given as one.
fn parse_ak(bytes: &[u8]) -> std::result::Result<(AkPublicKey, Option<Public>), Rejection> {
    let bad = |m: String| reject("InvalidTpmMessage", m);
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    let tpm_public = |raw: &[u8]| {
        aver_tpm::parse_public2b(raw)
            .or_else(|_| aver_tpm::parse_public(raw))
            .map_err(|e| bad(format!("AK is not a TPM2B_PUBLIC / TPMT_PUBLIC: {e}")))
    };
    let public = match text {
        Some(t) if t.starts_with("-----BEGIN") => {
            let der = pem_body(t).ok_or_else(|| bad("AK PEM does not decode".into()))?;
            let key = AkPublicKey::from_spki_der(&der)
                .map_err(|e| reject("UnsupportedAlgorithm", format!("AK: {e}")))?;
            return Ok((key, None));
        }
        Some(t) if t.starts_with('{') => {
            let v: Value = serde_json::from_str(t).map_err(|e| bad(format!("AK JSON: {e}")))?;
            let blob = AkBlob::from_json(&v).map_err(|e| bad(format!("AK file: {e}")))?;
            tpm_public(&blob.public)?
        }
        _ => tpm_public(bytes)?,
    };
    let key = AkPublicKey::from_public(&public)
        .map_err(|e| reject("UnsupportedAlgorithm", format!("AK: {e}")))?;
    Ok((key, Some(public)))
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

/// PCR values from `{"sha256": {"0": "<hex>"}}` (keys starting with `_`
/// are ignored) or a tpm2-tools serialized PCR file.
fn parse_pcrs(bytes: &[u8]) -> std::result::Result<PcrValues, Rejection> {
    let bad = |m: String| reject("InvalidTpmMessage", format!("PCR file: {m}"));
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        let obj = v
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let mut out = PcrValues::new();
        for (bank_name, values) in obj {
            if bank_name.starts_with('_') {
                continue;
            }
            let bank = HashAlg::ALL
                .into_iter()
                .find(|b| b.lower_name().eq_ignore_ascii_case(bank_name))
                .ok_or_else(|| bad(format!("unknown bank {bank_name:?}")))?;
            let values = values
                .as_object()
                .ok_or_else(|| bad(format!("bank {bank_name} is not an object")))?;
            let entry = out.entry(bank).or_default();
            for (index, hex_value) in values {
                let index = pcr_index(index).map_err(bad)?;
                let value = hex_value
                    .as_str()
                    .and_then(|h| hex::decode(h.trim()).ok())
                    .ok_or_else(|| bad(format!("{bank_name} PCR {index} is not hex")))?;
                if value.len() != bank.size() {
                    return Err(bad(format!(
                        "{bank_name} PCR {index} has {} bytes",
                        value.len()
                    )));
                }
                entry.insert(index, value);
            }
        }
        return Ok(out);
    }
    parse_tpm2_tools_pcrs(bytes).ok_or_else(|| {
        bad("neither JSON {\"sha256\": {\"0\": \"<hex>\"}} nor a tpm2-tools PCR file".into())
    })
}

/// tpm2-tools' "serialized" PCR output (`tpm2_quote -o`, `tpm2_pcrread -o`):
/// host-endian C structures TPML_PCR_SELECTION (4 + 16×8 bytes), UINT32
/// count, then `count` TPML_DIGEST (4 + 8×(2+64) bytes) holding the values
/// in selection order.
fn parse_tpm2_tools_pcrs(b: &[u8]) -> Option<PcrValues> {
    const SEL_LEN: usize = 4 + 16 * 8;
    const DIGESTS_LEN: usize = 4 + 8 * 66;
    let u32_at = |o: usize| -> Option<u32> {
        let s = b.get(o..o + 4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let u16_at = |o: usize| -> Option<u16> {
        let s = b.get(o..o + 2)?;
        Some(u16::from_le_bytes([s[0], s[1]]))
    };
    let sel_count = usize::try_from(u32_at(0)?).ok()?;
    let lists = usize::try_from(u32_at(SEL_LEN)?).ok()?;
    if sel_count > 16 || lists > 16 || b.len() != SEL_LEN + 4 + lists * DIGESTS_LEN {
        return None;
    }
    let mut order = Vec::new();
    for i in 0..sel_count {
        let o = 4 + i * 8;
        let bank = HashAlg::from_tpm(u16_at(o)?)?;
        let size = usize::from(*b.get(o + 2)?).min(4);
        for byte in 0..size {
            let bits = *b.get(o + 3 + byte)?;
            for bit in 0..8 {
                if bits & (1 << bit) != 0 {
                    order.push((bank, (byte * 8 + bit) as u32));
                }
            }
        }
    }
    let mut digests = Vec::new();
    for l in 0..lists {
        let o = SEL_LEN + 4 + l * DIGESTS_LEN;
        let count = usize::try_from(u32_at(o)?).ok()?.min(8);
        for d in 0..count {
            let p = o + 4 + d * 66;
            let size = usize::from(u16_at(p)?);
            digests.push(b.get(p + 2..p + 2 + size.min(64))?.to_vec());
        }
    }
    if digests.len() != order.len() {
        return None;
    }
    let mut out = PcrValues::new();
    for ((bank, pcr), value) in order.into_iter().zip(digests) {
        if value.len() != bank.size() {
            return None;
        }
        out.entry(bank).or_default().insert(pcr, value);
    }
    Some(out)
}

fn map_quote_error(e: QuoteError) -> Rejection {
    let code = match &e {
        QuoteError::SignatureInvalid => "QuoteSignatureInvalid",
        QuoteError::ChallengeMismatch { .. } => "ChallengeMismatch",
        QuoteError::PcrDigestMismatch { .. }
        | QuoteError::PcrMissing { .. }
        | QuoteError::PcrValueLength { .. } => "PcrDigestMismatch",
        QuoteError::UnsupportedAlgorithm(_) | QuoteError::InvalidKey(_) => "UnsupportedAlgorithm",
        QuoteError::Parse(_) | QuoteError::BadMagic(_) | QuoteError::NotAQuote(_) => {
            "InvalidTpmMessage"
        }
    };
    reject(code, e.to_string())
}

fn verify_inputs(inputs: &Inputs) -> std::result::Result<Value, Rejection> {
    let (key, public) = parse_ak(&inputs.ak)?;
    if let Some(p) = &public
        && !p.object_attributes.is_attestation_key_shape()
    {
        return Err(reject(
            "AkAttributesInvalid",
            format!(
                "objectAttributes 0x{:08x}: need fixedTPM, fixedParent, sensitiveDataOrigin, \
                 restricted, sign and not decrypt",
                p.object_attributes.raw
            ),
        ));
    }
    let signature = aver_tpm::parse_signature(&inputs.signature).map_err(|e| {
        reject(
            "InvalidTpmMessage",
            format!("signature is not a TPMT_SIGNATURE: {e}"),
        )
    })?;
    // TPMS_ATTEST as signed; a TPM2B_ATTEST is unwrapped.
    let quote_bytes: &[u8] = match inputs.quote.as_slice() {
        [a, b, c, d, ..] if u32::from_be_bytes([*a, *b, *c, *d]) == TPM_ATTEST_MAGIC => {
            &inputs.quote
        }
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => rest,
        _ => &inputs.quote,
    };
    let attest = aver_tpm::parse_attest(quote_bytes)
        .map_err(|e| reject("InvalidTpmMessage", format!("quote: {e}")))?;

    let log = inputs
        .event_log
        .as_deref()
        .map(|bytes| {
            let log =
                parse_event_log(bytes).map_err(|e| reject("EventLogMalformed", e.to_string()))?;
            let replay =
                aver_tpm::replay(&log).map_err(|e| reject("EventLogMalformed", e.to_string()))?;
            Ok::<_, Rejection>((log, replay))
        })
        .transpose()?;
    let from_file = inputs.pcrs.as_deref().map(parse_pcrs).transpose()?;
    let (values, source) = match (&from_file, &log) {
        (Some(v), _) => (v.clone(), "pcrs-file"),
        (None, Some((_, replay))) => (replay.banks.clone(), "event-log-replay"),
        (None, None) => {
            return Err(reject(
                "EventLogMalformed",
                "no PCR values and no event log",
            ));
        }
    };

    let challenge = inputs
        .nonce
        .clone()
        .unwrap_or_else(|| attest.extra_data.clone());
    let vq = aver_tpm::verify_quote(quote_bytes, &signature, &key, &challenge, &values).map_err(
        |e| match (&e, from_file.is_none()) {
            // The values are the log's replay: the log is what disagrees.
            (
                QuoteError::PcrDigestMismatch { .. }
                | QuoteError::PcrMissing { .. }
                | QuoteError::PcrValueLength { .. },
                true,
            ) => reject(
                "EventLogReplayMismatch",
                format!("the event log does not replay to the quoted PCRs: {e}"),
            ),
            _ => map_quote_error(e),
        },
    )?;
    let mut quoted = PcrValues::new();
    for (bank, pcr) in &vq.selected {
        if let Some(v) = values.get(bank).and_then(|b| b.get(pcr)) {
            quoted.entry(*bank).or_default().insert(*pcr, v.clone());
        }
    }

    // PCRs whose log replay is proven equal to the quote.
    let mut verified_pcrs: BTreeSet<u32> = BTreeSet::new();
    if let Some((log, replay)) = &log {
        if from_file.is_some() {
            let mask = (0u32..8)
                .filter(|p| quoted.values().all(|b| b.contains_key(p)))
                .fold(0u32, |m, p| m | (1 << p));
            let mask = if quoted.is_empty() { 0 } else { mask };
            for required in [Some(mask), None] {
                let report = aver_tpm::compare(log, replay, &quoted, required, &[])
                    .map_err(|m| reject("EventLogReplayMismatch", m.describe()))?;
                verified_pcrs.extend(report.checked.iter().map(|(_, p)| *p));
            }
        } else {
            verified_pcrs.extend(vq.selected.iter().map(|(_, p)| *p));
        }
    }

    let mut claims = Map::new();
    claims.insert("x-ms-attestation-type".into(), json!("tpm"));
    claims.insert("tpmVersion".into(), json!(2));
    if let Some(spki) = public.as_ref().and_then(|p| p.to_spki_der().ok()) {
        claims.insert(
            "aikPubHash".into(),
            json!(aver_token::b64::encode_std(&HashAlg::Sha256.hash(&spki))),
        );
    }
    claims.insert("quote".into(), quote_summary(&attest, &vq.selected, inputs));
    claims.insert("pcrSource".into(), json!(source));
    match &log {
        Some((log, replay)) => {
            let filtered = EventLog {
                events: log
                    .events
                    .iter()
                    .filter(|e| {
                        e.event_type == types::EV_NO_ACTION || verified_pcrs.contains(&e.pcr_index)
                    })
                    .cloned()
                    .collect(),
                ..log.clone()
            };
            let tc = aver_tpm::claims::build_claims(&filtered, Some(replay), &quoted);
            if let Ok(Value::Object(m)) = serde_json::to_value(&tc) {
                claims.extend(m);
            }
            claims.insert(
                "eventLogVerifiedPcrs".into(),
                json!(verified_pcrs.iter().collect::<Vec<_>>()),
            );
        }
        None => {
            if let Ok(v) = serde_json::to_value(aver_tpm::claims::pcrs_claim(&quoted)) {
                claims.insert("pcrs".into(), v);
            }
        }
    }
    Ok(Value::Object(claims))
}

fn quote_summary(
    attest: &aver_tpm::structures::Attest,
    selected: &[(HashAlg, u32)],
    inputs: &Inputs,
) -> Value {
    let mut banks: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (bank, pcr) in selected {
        banks.entry(bank.lower_name()).or_default().push(*pcr);
    }
    let digest = match &attest.attested {
        Attested::Quote { pcr_digest, .. } => Some(hex::encode(pcr_digest)),
        _ => None,
    };
    json!({
        "extraData": hex::encode(&attest.extra_data),
        "nonceChecked": inputs.nonce.is_some(),
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
