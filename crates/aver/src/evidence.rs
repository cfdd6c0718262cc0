//! `aver evidence verify`: offline verification, the service's code path.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use aver_attestation::dcap::collateral::{
    CollateralBundle, TcbStatus, bundle_from_named_files, verify_collateral,
};
use aver_attestation::dcap::{DcapError, DcapVerifier, TcbAcceptance, TrustAnchors};
use aver_attestation::evidence::sgx::{
    OPEN_ENCLAVE, SGX_ENCLAVE, SgxEvidenceKind, verify_request_with_collateral,
};
use aver_attestation::{
    ActivePolicy, AttestError, AttestRequest, PolicyChoice, TypedData, VerificationTime, Verifiers,
    parse_rfc3339, tail,
};
use clap::Subcommand;
use serde_json::json;

use crate::files;

#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// Verify evidence and print the verdict and the claims.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Parse a TCG event log; print its events and the replayed PCRs of every bank.
    Eventlog(crate::tpm::EventlogArgs),
}

#[derive(Subcommand)]
pub enum VerifyCommand {
    /// A TPM quote, its signature, the AK and (optionally) the event log.
    Tpm(crate::tpm::VerifyTpmArgs),
    /// An SGX DCAP quote (or, with --openenclave, an OpenEnclave report).
    Sgx {
        /// The evidence: raw bytes, or base64/hex text.
        file: PathBuf,
        /// The file is an OpenEnclave report (16-byte header + quote).
        #[arg(long)]
        openenclave: bool,
        /// Runtime data that must hash to report_data[0..32].
        #[arg(long)]
        runtime_data: Option<PathBuf>,
        /// Parse the runtime data as JSON (x-ms-runtime) instead of binary.
        #[arg(long)]
        json: bool,
        /// Verification time (RFC 3339, UTC) [default: now].
        #[arg(long)]
        at: Option<String>,
        /// Extra trusted root (PEM) besides Intel's. Repeatable.
        #[arg(long)]
        trust_root: Vec<PathBuf>,
        /// Policy to evaluate [default: Azure's shared-provider SGX default].
        #[arg(long)]
        policy: Option<PathBuf>,
        /// DCAP collateral: a dcap-qvl bundle (collateral.json), or a
        /// directory of PCS/PCCS answers (tcbInfo.json, qeIdentity.json,
        /// issuer chains, CRLs). With it the verdict includes Intel's TCB
        /// status; without it only the quote's signatures are checked.
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// TCB statuses to accept (repeatable) [default: UpToDate,
        /// SWHardeningNeeded].
        #[arg(long)]
        accept_tcb_status: Vec<String>,
    },
}

pub fn run(cmd: EvidenceCommand) -> Result<ExitCode> {
    let cmd = match cmd {
        EvidenceCommand::Eventlog(args) => return crate::tpm::eventlog(args),
        EvidenceCommand::Verify(VerifyCommand::Tpm(args)) => return crate::tpm::verify(args),
        other => other,
    };
    let EvidenceCommand::Verify(VerifyCommand::Sgx {
        file,
        openenclave,
        runtime_data,
        json: as_json,
        at,
        trust_root,
        policy,
        collateral,
        accept_tcb_status,
    }) = cmd
    else {
        unreachable!("TPM commands returned above") // ok: matched exhaustively above
    };
    let time = match at {
        Some(text) => {
            parse_rfc3339(&text).ok_or_else(|| anyhow!("--at {text:?} is not RFC 3339 UTC"))?
        }
        None => VerificationTime::from_unix_seconds(aver_client::unix_now()),
    };
    let mut roots = TrustAnchors::intel();
    for path in &trust_root {
        roots
            .add_pem(&files::read(path)?, &path.display().to_string())
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    let runtime = match runtime_data {
        Some(path) => {
            let bytes = files::read(&path)?;
            let json = if as_json {
                Some(serde_json::from_slice(&bytes).context("runtime data is not JSON")?)
            } else {
                None
            };
            Some(TypedData { bytes, json })
        }
        None => None,
    };
    let ty = if openenclave {
        &OPEN_ENCLAVE
    } else {
        &SGX_ENCLAVE
    };
    let request = AttestRequest {
        evidence: files::read_evidence(&file)?,
        runtime_data: runtime,
        init_time_data: None,
        nonce: None,
    };
    let text = match policy {
        Some(path) => files::read_text(&path)?,
        None => ty.default_policy.unwrap_or_default().to_string(),
    };
    let active = ActivePolicy::from_text(&text, None).map_err(|e| anyhow!("{e}"))?;
    let verifiers = Verifiers::new(DcapVerifier::new(roots));
    // The service's path, without the service: verify, then evaluate and
    // build the token's claims (not stamped or signed offline).
    let kind = if openenclave {
        SgxEvidenceKind::OpenEnclaveReport
    } else {
        SgxEvidenceKind::Quote
    };
    let mut acceptance = TcbAcceptance::default();
    if !accept_tcb_status.is_empty() {
        acceptance.accepted = accept_tcb_status
            .iter()
            .map(|s| {
                TcbStatus::parse(s).ok_or_else(|| {
                    anyhow!("--accept-tcb-status {s:?} is not one of Intel's TCB statuses")
                })
            })
            .collect::<Result<_>>()?;
    }
    let verified = match &collateral {
        None => aver_attestation::verify(ty, &verifiers, &request, time),
        Some(path) => {
            let bundle = read_collateral(path)?;
            verify_collateral(&bundle, verifiers.dcap.roots(), time)
                .map_err(|e| AttestError::from(DcapError::Collateral(e)))
                .and_then(|c| {
                    verify_request_with_collateral(
                        kind,
                        &verifiers.dcap,
                        &request,
                        &c,
                        &acceptance,
                        time,
                    )
                })
        }
    };
    let outcome = verified.and_then(|verified| {
        let (claims, _) = tail::claims(
            ty,
            PolicyChoice::Active(&active),
            verified.claims,
            None,
            &aver_policy::Budget::default(),
        )?;
        Ok((verified.facts, claims))
    });
    match outcome {
        Ok((facts, claims)) => {
            files::print_json(&json!({
                "verdict": "verified",
                "verified_at": time.unix_seconds(),
                "evidence": facts,
                "claims": claims,
            }));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            files::print_json(&json!({
                "verdict": "rejected",
                "verified_at": time.unix_seconds(),
                "error": { "code": e.code, "message": e.message },
            }));
            Ok(ExitCode::from(2))
        }
    }
}

/// Reads DCAP collateral from a dcap-qvl bundle file or a directory of
/// PCS/PCCS answers (the core assembles and checks it; this only reads).
pub fn read_collateral(path: &std::path::Path) -> Result<CollateralBundle> {
    /// Files larger than this are not collateral.
    const MAX_FILE: u64 = 4 * 1024 * 1024;
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() && meta.len() <= MAX_FILE {
                files.push((
                    entry.file_name().to_string_lossy().into_owned(),
                    files::read(&entry.path())?,
                ));
            }
        }
    } else {
        // A single file is a bundle, whatever its name.
        files.push(("collateral.json".to_string(), files::read(path)?));
    }
    bundle_from_named_files(&files).map_err(|e| anyhow!("{}: {e}", path.display()))
}
