//! `aver attest tpm`: drives a real TPM through `aver-tpm-client`
//! (libtss2). The AK is created and enrolled once (credential activation;
//! the AK certificate is kept in the AK file), then every run quotes the
//! PCRs, sends the event log and prints the token. The protocol is in
//! `crates/aver-tpm-attest/PROTOCOL.md`. Built with the `tpm-client`
//! feature (the only part of the CLI that links C TPM libraries).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use aver_client::{Client, ClientError};
use aver_tpm::alg::HashAlg;
use aver_tpm_client::{AkAlgorithm, AkBlob, TpmClient};
use clap::{Args, ValueEnum};
use serde_json::Value;

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
    pub(crate) tcti: String,
    /// Service base URL.
    #[arg(long, env = "AVER_URL")]
    pub(crate) url: String,
    /// CA certificate (PEM) to trust for the service's TLS certificate.
    #[arg(long, env = "AVER_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// The attestation key file: loaded when it exists, otherwise an AK is
    /// created, enrolled at the service and saved here with its certificate.
    #[arg(long, default_value = "aver-tpm-ak.json")]
    pub(crate) ak_file: PathBuf,
    /// The TCG event log sent with the quote.
    #[arg(long, default_value = aver_tpm_client::DEFAULT_EVENT_LOG)]
    pub(crate) event_log: PathBuf,
    /// PCRs to quote (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7", value_parser = pcr_index)]
    pub(crate) pcrs: Vec<u32>,
    /// PCR banks to quote (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sha256")]
    pub(crate) banks: Vec<Bank>,
    /// Algorithm of a newly created AK (an existing AK file is used as is).
    #[arg(long, value_enum, default_value = "rsa")]
    pub(crate) ak_alg: AkAlg,
}

// ------------------------------------------------------------------ attest

pub(crate) enum AttestOutcome {
    Token(String),
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

pub async fn attest(args: AttestTpmArgs) -> Result<ExitCode> {
    match attest_outcome(args).await? {
        AttestOutcome::Token(token) => {
            outln!("{token}");
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

/// Enrolls (when the AK file has no certificate yet) and attests: the
/// token, or the service's refusal.
pub(crate) async fn attest_outcome(args: AttestTpmArgs) -> Result<AttestOutcome> {
    let ca = args.ca.as_deref().map(files::read).transpose()?;
    let client = Client::new(&args.url, ca.as_deref())?;
    let event_log = files::read(&args.event_log)?;
    let handle = tokio::runtime::Handle::current();
    // The TPM calls are blocking: run them off the async workers; the
    // transport re-enters the runtime for each HTTP round trip.
    tokio::task::spawn_blocking(move || attest_blocking(&args, &client, &handle, event_log))
        .await
        .map_err(|e| anyhow!("TPM task failed: {e}"))?
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
