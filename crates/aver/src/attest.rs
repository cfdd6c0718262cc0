//! `aver attest`: a client that sends evidence and prints the token.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use aver_attestation::AttestationType;
use aver_attestation::evidence::sgx::{OPEN_ENCLAVE, SGX_ENCLAVE};
use aver_attestation::evidence::snp::certs::{pem_chain, split_chain};
use aver_attestation::evidence::snp::{SEV_SNP_VM, encode_evidence};
use aver_attestation::evidence::tdx::TDX_VM;
use aver_client::{AttestOptions, Client, ClientError, DataType};
use clap::{Args, Subcommand, ValueEnum};

use crate::files;

#[derive(Subcommand)]
pub enum AttestCommand {
    /// Attest a TPM: enroll the AK (once), then quote and send the boot log
    /// (POST /attest/Tpm).
    #[cfg(feature = "tpm-client")]
    Tpm(crate::tpm_attest::AttestTpmArgs),
    /// Attest an SGX DCAP quote (POST /attest/SgxEnclave).
    Sgx {
        /// The quote: raw bytes, or base64/hex text.
        #[arg(long)]
        quote: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Attest an AMD SEV-SNP report (POST /attest/SevSnpVm, Azure's shape).
    Snp {
        /// The raw 1184-byte report: raw bytes, or base64/hex text.
        #[arg(long)]
        report: PathBuf,
        /// The VCEK or VLEK, then the ASK or ASVK, then the ARK: PEM or DER.
        /// Repeatable; a PEM file may hold several. Without it the service
        /// must find the VCEK itself.
        #[arg(long)]
        certs: Vec<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Attest an Intel TDX quote v4/v5 (POST /attest/TdxVm?api-version=2025-06-01,
    /// Azure's shape: quote, runtimeData, initTimeData, nonce).
    Tdx {
        /// The quote: raw bytes, or base64/hex text.
        #[arg(long)]
        quote: PathBuf,
        /// The TD's CCEL event log, raw bytes as the guest reads them
        /// (/sys/firmware/acpi/tables/data/CCEL), sent as `ccelEventLog`
        /// (an Aver extension) and replayed by the service to the quote's
        /// RTMRs.
        #[arg(long, value_name = "FILE")]
        ccel: Option<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Attest an OpenEnclave report (POST /attest/OpenEnclave).
    Openenclave {
        /// The report (16-byte OE header + quote): raw bytes, or base64/hex text.
        #[arg(long)]
        report: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Args)]
pub struct CommonArgs {
    /// Runtime data whose SHA-256 is in report_data[0..32] (SNP: REPORT_DATA;
    /// TDX: REPORT_DATA[0..32]).
    #[arg(long)]
    runtime_data: Option<PathBuf>,
    /// How the service reads the runtime data.
    #[arg(long, value_enum, default_value = "binary")]
    runtime_data_type: Kind,
    /// Init-time data whose SHA-256 is in CONFIGID[0..32] (SNP: HOST_DATA;
    /// TDX: MRCONFIGID[0..32]).
    #[arg(long)]
    init_time_data: Option<PathBuf>,
    /// Echoed in the token's nonce claim.
    #[arg(long)]
    nonce: Option<String>,
    /// Evaluate this policy file instead of the provider's (unsigned token).
    #[arg(long)]
    draft_policy: Option<PathBuf>,
    /// Service base URL.
    #[arg(long, env = "AVER_URL")]
    url: String,
    /// CA certificate (PEM) to trust for the service's TLS certificate.
    #[arg(long, env = "AVER_CA")]
    ca: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Binary,
    Json,
}

impl From<Kind> for DataType {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Binary => DataType::Binary,
            Kind::Json => DataType::Json,
        }
    }
}

pub async fn run(cmd: AttestCommand) -> Result<ExitCode> {
    let (ty, path, common) = match cmd {
        AttestCommand::Tdx {
            quote,
            ccel,
            common,
        } => {
            let evidence = files::read_evidence(&quote)?;
            let ccel = ccel.as_deref().map(files::read).transpose()?;
            return send_with(&TDX_VM, &evidence, common, ccel).await;
        }
        #[cfg(feature = "tpm-client")]
        AttestCommand::Tpm(args) => return crate::tpm_attest::attest(args).await,
        AttestCommand::Sgx { quote, common } => (&SGX_ENCLAVE, quote, common),
        AttestCommand::Openenclave { report, common } => (&OPEN_ENCLAVE, report, common),
        AttestCommand::Snp {
            report,
            certs,
            common,
        } => {
            let raw = files::read_evidence(&report)?;
            let mut ders = Vec::new();
            for path in &certs {
                ders.extend(
                    split_chain(&files::read(path)?)
                        .map_err(|e| anyhow!("{}: {e}", path.display()))?,
                );
            }
            let pem = (!ders.is_empty()).then(|| pem_chain(&ders));
            let evidence = encode_evidence(&raw, pem.as_deref());
            return send(&SEV_SNP_VM, &evidence, common).await;
        }
    };
    let evidence = files::read_evidence(&path)?;
    send(ty, &evidence, common).await
}

/// Sends `evidence` to `/attest/{type}` and prints the token.
async fn send(ty: &AttestationType, evidence: &[u8], common: CommonArgs) -> Result<ExitCode> {
    send_with(ty, evidence, common, None).await
}

/// [`send`] with a CCEL event log (TdxVm).
async fn send_with(
    ty: &AttestationType,
    evidence: &[u8],
    common: CommonArgs,
    ccel_event_log: Option<Vec<u8>>,
) -> Result<ExitCode> {
    let options = AttestOptions {
        runtime_data: common
            .runtime_data
            .as_deref()
            .map(files::read)
            .transpose()?
            .map(|d| (d, common.runtime_data_type.into())),
        init_time_data: common
            .init_time_data
            .as_deref()
            .map(files::read)
            .transpose()?
            .map(|d| (d, DataType::Binary)),
        nonce: common.nonce,
        draft_policy: common
            .draft_policy
            .as_deref()
            .map(files::read_text)
            .transpose()?,
        ccel_event_log,
    };
    let ca = common.ca.as_deref().map(files::read).transpose()?;
    let client = Client::new(&common.url, ca.as_deref())?;
    // TdxVm goes with the api-version of Azure's spec that has it.
    let api_version = if ty == &TDX_VM {
        aver_client::TDX_API_VERSION
    } else {
        aver_client::API_VERSION
    };
    match client.attest_at(ty, evidence, &options, api_version).await {
        Ok(token) => {
            outln!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Service {
            status,
            code,
            message,
        }) => {
            eprintln!("attestation refused (HTTP {status}): {code}: {message}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}
