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
use aver_attestation::evidence::snp::certs::{pem_chain, split_chain};
use aver_attestation::evidence::snp::{SEV_SNP_VM, SnpTrust, encode_evidence};
use aver_attestation::{
    ActivePolicy, AttestError, AttestRequest, AttestationType, PolicyChoice, TypedData,
    VerificationTime, Verified, Verifiers, parse_rfc3339, tail,
};
use clap::Subcommand;
use rustls_pki_types::pem::PemObject;
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
    /// A TDX DCAP quote (v4 or v5): signatures, PCK chain and, with
    /// --collateral, Intel's TCB verdict. Prints the TD's measurements.
    Tdx(VerifyTdxArgs),
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
    /// An AMD SEV-SNP attestation report with its VCEK/VLEK chain.
    Snp(VerifySnpArgs),
    /// An Azure confidential VM: HCL report, VCEK chain (SEV-SNP) or TD
    /// quote (TDX), and vTPM quote, bound end to end (the `/attest/AzureCvm`
    /// checks).
    #[command(name = "azure-cvm")]
    AzureCvm(VerifyAzureCvmArgs),
}

/// `aver evidence verify azure-cvm`.
#[derive(clap::Args)]
pub struct VerifyAzureCvmArgs {
    /// The HCL report (raw bytes as read from the vTPM's NV index
    /// 0x01400001, or base64/hex text), or the whole AzureCvm evidence JSON
    /// {"HclReport", "VcekCertChain", "TpmQuote"}.
    file: PathBuf,
    /// The vTPM quote as JSON {"message": hex TPMS_ATTEST, "signature":
    /// hex, "pcrs": [hex SHA-256 PCR 0, 1, ...]} (Trustee's
    /// tpm-quote-v1.json).
    #[arg(long)]
    quote: Option<PathBuf>,
    /// The VCEK chain, PEM or DER: the VCEK, then the ASK and ARK (built
    /// in for Milan, Genoa and Turin). Repeatable.
    #[arg(long)]
    certs: Vec<PathBuf>,
    /// The TD quote (TDX VMs), raw or base64/hex; it carries its PCK chain.
    #[arg(long)]
    td_quote: Option<PathBuf>,
    /// The nonce the quote's extraData must equal (as UTF-8 text, the way
    /// the service compares the request's `nonce`).
    #[arg(long)]
    nonce: String,
    /// Verification time (RFC 3339, UTC) [default: now].
    #[arg(long)]
    at: Option<String>,
    /// Extra trusted ARK (PEM) besides AMD's. Repeatable.
    #[arg(long)]
    trust_root: Vec<PathBuf>,
    /// Policy to evaluate [default: the AzureCvm default].
    #[arg(long)]
    policy: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct VerifySnpArgs {
    /// The raw 1184-byte report (or base64/hex text of it), or Azure's
    /// evidence JSON {"SnpReport": ..., "VcekCertChain": ...}.
    file: PathBuf,
    /// Certificates, PEM or DER, in order: the VCEK or VLEK, then the ASK or
    /// ASVK, then the ARK (the ASK and ARK of Milan, Genoa and Turin are
    /// built in). Repeatable; a PEM file may hold several.
    #[arg(long)]
    certs: Vec<PathBuf>,
    /// Runtime data that must hash to REPORT_DATA[0..32].
    #[arg(long)]
    runtime_data: Option<PathBuf>,
    /// Parse the runtime data as JSON (x-ms-runtime) instead of binary.
    #[arg(long)]
    json: bool,
    /// Init-time data that must hash to HOST_DATA.
    #[arg(long)]
    init_time_data: Option<PathBuf>,
    /// Verification time (RFC 3339, UTC) [default: now].
    #[arg(long)]
    at: Option<String>,
    /// Extra trusted ARK (PEM) besides AMD's. Repeatable.
    #[arg(long)]
    trust_root: Vec<PathBuf>,
    /// An ARK CRL (DER or PEM, as AMD's KDS serves /vcek/v1/{product}/crl):
    /// the chain's ASK must not be revoked and the CRL must be current.
    /// Repeatable.
    #[arg(long)]
    crl: Vec<PathBuf>,
    /// Policy to evaluate [default: the SevSnpVm default].
    #[arg(long)]
    policy: Option<PathBuf>,
}

/// `aver evidence verify tdx`.
#[derive(clap::Args)]
pub struct VerifyTdxArgs {
    /// The quote: raw bytes, or base64/hex text.
    file: PathBuf,
    /// DCAP collateral (as for `verify sgx`).
    #[arg(long)]
    collateral: Option<PathBuf>,
    /// Runtime data that must hash (SHA-256) to report_data[0..32].
    #[arg(long)]
    runtime_data: Option<PathBuf>,
    /// The runtime data is JSON (it becomes the `x-ms-runtime` claim).
    #[arg(long)]
    json: bool,
    /// Verification time (RFC 3339, UTC) [default: now].
    #[arg(long)]
    at: Option<String>,
    /// TCB statuses to accept (repeatable) [default: UpToDate,
    /// SWHardeningNeeded].
    #[arg(long)]
    accept_tcb_status: Vec<String>,
    /// Policy to evaluate [default: the TdxVm default, which refuses debug
    /// TDs].
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The TD's CCEL event log, raw bytes as the guest reads them
    /// (/sys/firmware/acpi/tables/data/CCEL, padding included): replayed
    /// to the quote's RTMR0-2 (and RTMR3 when it extends it).
    #[arg(long, value_name = "FILE")]
    ccel: Option<PathBuf>,
}

/// `aver evidence verify tdx`: the service's TdxVm path offline — the
/// DCAP checks, the TCB verdict with `--collateral`, the bindings, Azure's
/// TDX claims and the policy (the TdxVm default unless `--policy`).
fn verify_tdx(args: VerifyTdxArgs) -> Result<ExitCode> {
    use aver_attestation::evidence::tdx::{TDX_VM, verify_request_with_collateral};
    let time = verification_time(args.at)?;
    let mut verifiers = Verifiers::new(DcapVerifier::intel());
    verifiers.tcb_acceptance = acceptance(&args.accept_tcb_status)?;
    let request = AttestRequest {
        evidence: files::read_evidence(&args.file)?,
        runtime_data: typed_data(args.runtime_data, args.json)?,
        init_time_data: None,
        nonce: None,
        tcb_baseline: Default::default(),
        ccel_event_log: args.ccel.as_deref().map(files::read).transpose()?,
    };
    let Some(collateral) = args.collateral else {
        return verify_and_print(&TDX_VM, &verifiers, &request, time, args.policy);
    };
    let bundle = read_collateral(&collateral)?;
    let verified = verify_collateral(&bundle, verifiers.dcap.roots(), time)
        .map_err(|e| AttestError::from(DcapError::Collateral(e)))
        .and_then(|c| {
            verify_request_with_collateral(
                &verifiers.dcap,
                &request,
                &c,
                &verifiers.tcb_acceptance,
                time,
            )
        });
    print_verdict(
        &TDX_VM,
        &policy_or_default(&TDX_VM, args.policy)?,
        verified,
        time,
    )
}

fn acceptance(statuses: &[String]) -> Result<TcbAcceptance> {
    let mut acceptance = TcbAcceptance::default();
    if !statuses.is_empty() {
        acceptance.accepted = statuses
            .iter()
            .map(|s| {
                TcbStatus::parse(s).ok_or_else(|| {
                    anyhow!("--accept-tcb-status {s:?} is not one of Intel's TCB statuses")
                })
            })
            .collect::<Result<_>>()?;
    }
    Ok(acceptance)
}

pub fn run(cmd: EvidenceCommand) -> Result<ExitCode> {
    let cmd = match cmd {
        EvidenceCommand::Eventlog(args) => return crate::tpm::eventlog(args),
        EvidenceCommand::Verify(VerifyCommand::Tpm(args)) => return crate::tpm::verify(args),
        EvidenceCommand::Verify(VerifyCommand::Snp(args)) => return verify_snp(args),
        EvidenceCommand::Verify(VerifyCommand::Tdx(args)) => return verify_tdx(args),
        EvidenceCommand::Verify(VerifyCommand::AzureCvm(args)) => return verify_azure_cvm(args),
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
    let time = verification_time(at)?;
    let mut roots = TrustAnchors::intel();
    for path in &trust_root {
        roots
            .add_pem(&files::read(path)?, &path.display().to_string())
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    let runtime = typed_data(runtime_data, as_json)?;
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
        tcb_baseline: Default::default(),
        ccel_event_log: None,
    };
    let mut verifiers = Verifiers::new(DcapVerifier::new(roots));
    verifiers.tcb_acceptance = acceptance(&accept_tcb_status)?;
    let Some(collateral) = collateral else {
        return verify_and_print(ty, &verifiers, &request, time, policy);
    };
    // With collateral: the same verification plus Intel's TCB verdict.
    let kind = if openenclave {
        SgxEvidenceKind::OpenEnclaveReport
    } else {
        SgxEvidenceKind::Quote
    };
    let bundle = read_collateral(&collateral)?;
    let verified = verify_collateral(&bundle, verifiers.dcap.roots(), time)
        .map_err(|e| AttestError::from(DcapError::Collateral(e)))
        .and_then(|c| {
            verify_request_with_collateral(
                kind,
                &verifiers.dcap,
                &request,
                &c,
                &verifiers.tcb_acceptance,
                time,
            )
        });
    print_verdict(ty, &policy_or_default(ty, policy)?, verified, time)
}

fn verification_time(at: Option<String>) -> Result<VerificationTime> {
    Ok(match at {
        Some(text) => {
            parse_rfc3339(&text).ok_or_else(|| anyhow!("--at {text:?} is not RFC 3339 UTC"))?
        }
        None => VerificationTime::from_unix_seconds(aver_client::unix_now()),
    })
}

fn typed_data(path: Option<PathBuf>, as_json: bool) -> Result<Option<TypedData>> {
    let Some(path) = path else { return Ok(None) };
    let bytes = files::read(&path)?;
    let json = if as_json {
        Some(serde_json::from_slice(&bytes).context("the data is not JSON")?)
    } else {
        None
    };
    Ok(Some(TypedData { bytes, json }))
}

/// `aver evidence verify snp`: Azure's evidence JSON is built from the
/// report and the certificates, then verified by the service's code path.
fn verify_snp(args: VerifySnpArgs) -> Result<ExitCode> {
    let time = verification_time(args.at)?;
    let mut trust = SnpTrust::amd();
    for path in &args.trust_root {
        trust
            .add_ark_pem(&files::read(path)?, &path.display().to_string())
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    for path in &args.crl {
        let bytes = files::read(path)?;
        let der = match rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&bytes) {
            Ok(der) => der.to_vec(),
            Err(_) => bytes,
        };
        trust
            .add_crl_der(&der)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    let raw = files::read(&args.file)?;
    let evidence = if raw.trim_ascii_start().starts_with(b"{") {
        if !args.certs.is_empty() {
            return Err(anyhow!(
                "{} is Azure's evidence JSON, which carries its own chain: drop --certs",
                args.file.display()
            ));
        }
        raw
    } else {
        let report = files::read_evidence(&args.file)?;
        let mut certs = Vec::new();
        for path in &args.certs {
            certs.extend(
                split_chain(&files::read(path)?).map_err(|e| anyhow!("{}: {e}", path.display()))?,
            );
        }
        let pem = (!certs.is_empty()).then(|| pem_chain(&certs));
        encode_evidence(&report, pem.as_deref())
    };
    let request = AttestRequest {
        evidence,
        runtime_data: typed_data(args.runtime_data, args.json)?,
        init_time_data: typed_data(args.init_time_data, false)?,
        nonce: None,
        tcb_baseline: Default::default(),
        ccel_event_log: None,
    };
    let mut verifiers = Verifiers::production();
    verifiers.snp = trust;
    verify_and_print(&SEV_SNP_VM, &verifiers, &request, time, args.policy)
}

/// `aver evidence verify azure-cvm`: the AzureCvm evidence JSON is built
/// from the HCL report, the chain and the quote, then verified by the
/// service's code path with `--nonce` as the request's nonce.
fn verify_azure_cvm(args: VerifyAzureCvmArgs) -> Result<ExitCode> {
    use aver_attestation::evidence::azure_cvm;
    let time = verification_time(args.at)?;
    let mut trust = SnpTrust::amd();
    for path in &args.trust_root {
        trust
            .add_ark_pem(&files::read(path)?, &path.display().to_string())
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    let raw = files::read(&args.file)?;
    let evidence = if raw.trim_ascii_start().starts_with(b"{") {
        if !args.certs.is_empty() || args.quote.is_some() || args.td_quote.is_some() {
            return Err(anyhow!(
                "{} is AzureCvm evidence JSON, which carries its own chain and quotes: drop --certs, --td-quote and --quote",
                args.file.display()
            ));
        }
        raw
    } else {
        let hcl = files::read_evidence(&args.file)?;
        let quote_path = args
            .quote
            .ok_or_else(|| anyhow!("--quote is required with an HCL report"))?;
        let quote = azure_cvm::parse_quote_json(&files::read(&quote_path)?)
            .map_err(|e| anyhow!("{}: {e}", quote_path.display()))?;
        let mut certs = Vec::new();
        for path in &args.certs {
            certs.extend(
                split_chain(&files::read(path)?).map_err(|e| anyhow!("{}: {e}", path.display()))?,
            );
        }
        let td_quote = args
            .td_quote
            .as_deref()
            .map(files::read_evidence)
            .transpose()?;
        if certs.is_empty() && td_quote.is_none() {
            return Err(anyhow!(
                "an HCL report needs --certs (SEV-SNP: the VCEK chain) or --td-quote (TDX)"
            ));
        }
        let pem = (!certs.is_empty()).then(|| pem_chain(&certs));
        azure_cvm::encode_evidence(&hcl, pem.as_deref(), td_quote.as_deref(), &quote)
    };
    let request = AttestRequest {
        evidence,
        runtime_data: None,
        init_time_data: None,
        nonce: Some(args.nonce),
        tcb_baseline: Default::default(),
        ccel_event_log: None,
    };
    let mut verifiers = Verifiers::production();
    verifiers.snp = trust;
    verify_and_print(
        &azure_cvm::AZURE_CVM,
        &verifiers,
        &request,
        time,
        args.policy,
    )
}

/// Verifies, evaluates the policy and prints the verdict with the claims.
fn verify_and_print(
    ty: &AttestationType,
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
    policy: Option<PathBuf>,
) -> Result<ExitCode> {
    let active = policy_or_default(ty, policy)?;
    // The service's path, without the service: verify, then evaluate and
    // build the token's claims (not stamped or signed offline).
    print_verdict(
        ty,
        &active,
        aver_attestation::verify(ty, verifiers, request, time),
        time,
    )
}

/// The policy in `path`, or the type's default policy.
fn policy_or_default(ty: &AttestationType, path: Option<PathBuf>) -> Result<ActivePolicy> {
    let text = match path {
        Some(path) => files::read_text(&path)?,
        None => ty.default_policy.unwrap_or_default().to_string(),
    };
    ActivePolicy::from_text(&text, None).map_err(|e| anyhow!("{e}"))
}

/// Evaluates the policy over verified evidence and prints the verdict with
/// the claims (or the refusal with its code).
fn print_verdict(
    ty: &AttestationType,
    active: &ActivePolicy,
    verified: std::result::Result<Verified, AttestError>,
    time: VerificationTime,
) -> Result<ExitCode> {
    let outcome = verified.and_then(|verified| {
        let (claims, _) = tail::claims(
            ty,
            PolicyChoice::Active(active),
            verified.claims,
            None,
            &aver_policy::Budget::default(),
        )?;
        Ok((verified.facts.to_json(), claims))
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
