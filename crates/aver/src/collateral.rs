//! `aver collateral import|status`: the store's shared collateral cache,
//! for air-gapped services and labs. Imported collateral is verified
//! first (at `--at`, default now) and stored per FMSPC; every replica
//! loads it within its refresh interval. Built with the `server` feature.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use aver_attestation::dcap::TrustAnchors;
use aver_attestation::dcap::collateral::rfc3339;
use aver_attestation::{VerificationTime, parse_rfc3339};
use clap::Subcommand;
use serde_json::json;

use crate::files;
use crate::provider::StoreArgs;

#[derive(Subcommand)]
pub enum CollateralCommand {
    /// Verify DCAP collateral and store it in the shared cache. Each PATH
    /// is a dcap-qvl bundle (collateral.json) or a directory of PCS/PCCS
    /// answers (see docs/dcap-collateral.md), an AMD VCEK, or an AMD ARK
    /// CRL (see docs/sev-snp.md).
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Verify at this time (RFC 3339, UTC) [default: now]; for labs
        /// that pin old collateral.
        #[arg(long)]
        at: Option<String>,
        /// Extra trusted root (PEM) besides Intel's. Repeatable.
        #[arg(long)]
        trust_root: Vec<PathBuf>,
        /// Extra trusted SEV-SNP ARK (PEM) besides AMD's, for the ARK CRLs
        /// imported. Repeatable.
        #[arg(long)]
        snp_trust_root: Vec<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the cached collateral: key (FMSPC), source, when fetched, when
    /// it expires.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(cmd: CollateralCommand) -> Result<ExitCode> {
    match cmd {
        CollateralCommand::Import {
            paths,
            at,
            trust_root,
            snp_trust_root,
            store,
        } => {
            let now = aver_client::unix_now();
            let time = match at {
                Some(text) => parse_rfc3339(&text)
                    .ok_or_else(|| anyhow!("--at {text:?} is not RFC 3339 UTC"))?,
                None => VerificationTime::from_unix_seconds(now),
            };
            let mut roots = TrustAnchors::intel();
            for path in &trust_root {
                roots
                    .add_pem(&files::read(path)?, &path.display().to_string())
                    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            }
            let mut snp = aver_attestation::evidence::snp::SnpTrust::amd();
            for path in &snp_trust_root {
                snp.add_ark_pem(&files::read(path)?, &path.display().to_string())
                    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            }
            let store = store.open()?;
            let mut failed = false;
            for path in &paths {
                // An AMD ARK CRL (DER or PEM), as the KDS serves it.
                if let Some(der) = ark_crl(&files::read(path)?) {
                    match import_crl(store.as_ref(), &snp, path, &der, now) {
                        Ok((key, info)) => files::print_json(&json!({
                            "imported": path.display().to_string(),
                            "tee": "SEV-SNP",
                            "key": key,
                            "ark": info.ark,
                            "revoked": info.revoked,
                            "valid_from": u64::try_from(info.this_update).map(rfc3339).ok(),
                            "expires": u64::try_from(info.next_update).map(rfc3339).ok(),
                        })),
                        Err(e) => {
                            failed = true;
                            eprintln!("{}: refused: {e:#}", path.display());
                        }
                    }
                    continue;
                }
                // An AMD VCEK (PEM or DER certificate): kept under the key a
                // SevSnpVm report without a chain looks up.
                if let Some(der) = single_certificate(&files::read(path)?) {
                    match import_vcek(store.as_ref(), path, &der, time, now) {
                        Ok(key) => files::print_json(&json!({
                            "imported": path.display().to_string(),
                            "tee": "SEV-SNP",
                            "key": key,
                        })),
                        Err(e) => {
                            failed = true;
                            eprintln!("{}: refused: {e:#}", path.display());
                        }
                    }
                    continue;
                }
                let outcome = crate::evidence::read_collateral(path).and_then(|bundle| {
                    aver_server::collateral::import(
                        store.as_ref(),
                        &roots,
                        &bundle,
                        &format!("import:{}", path.display()),
                        time,
                        i64::try_from(now).unwrap_or(i64::MAX),
                    )
                    .map_err(|e| anyhow!(e))
                });
                match outcome {
                    Ok(c) => files::print_json(&json!({
                        "imported": path.display().to_string(),
                        // TCB info `id`: SGX or TDX (stored under separate keys).
                        "tee": if c.tcb_info.id.is_empty() { "SGX" } else { c.tcb_info.id.as_str() },
                        "fmspc": hex::encode_upper(c.tcb_info.fmspc),
                        "tcb_evaluation_data_number": c.tcb_info.tcb_evaluation_data_number,
                        "valid_from": rfc3339(c.valid_from),
                        "expires": rfc3339(c.valid_until),
                    })),
                    Err(e) => {
                        failed = true;
                        eprintln!("{}: refused: {e:#}", path.display());
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        CollateralCommand::Status { store } => {
            let store = store.open()?;
            let index = store.collateral_index()?;
            let items: Vec<_> = index
                .iter()
                .map(|r| {
                    json!({
                        "key": r.key,
                        "sha256": r.sha256,
                        "source": r.source,
                        "fetched_at": u64::try_from(r.fetched_at).map(rfc3339).ok(),
                        "expires": r.expires_at.and_then(|t| u64::try_from(t).ok()).map(rfc3339),
                    })
                })
                .collect();
            files::print_json(&json!({ "collateral": items }));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The one certificate in `bytes` (PEM or DER), if that is what they are.
fn single_certificate(bytes: &[u8]) -> Option<Vec<u8>> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    if bytes.starts_with(b"-----BEGIN CERTIFICATE") {
        let mut certs = CertificateDer::pem_slice_iter(bytes);
        let first = certs.next()?.ok()?;
        return certs.next().is_none().then(|| first.to_vec());
    }
    // DER: a SEQUENCE (collateral bundles are JSON or directories); the
    // core parses and verifies it.
    (bytes.first() == Some(&0x30)).then(|| bytes.to_vec())
}

/// The DER of `bytes` if they are one X.509 CRL (PEM or DER).
fn ark_crl(bytes: &[u8]) -> Option<Vec<u8>> {
    use rustls_pki_types::{CertificateRevocationListDer, pem::PemObject};
    if bytes.starts_with(b"-----BEGIN X509 CRL") {
        return CertificateRevocationListDer::from_pem_slice(bytes)
            .ok()
            .map(|der| der.to_vec());
    }
    x509_parser::parse_x509_crl(bytes)
        .is_ok_and(|(rest, _)| rest.is_empty())
        .then(|| bytes.to_vec())
}

/// Verifies an ARK CRL to `trust` and stores it under its ARK's VCEK route,
/// where a service's KDS refresh would put it; returns its key. (The
/// service verifies it again, against its own ARKs, when it loads it.)
fn import_crl(
    store: &dyn aver_server::store::Store,
    trust: &aver_attestation::evidence::snp::SnpTrust,
    path: &std::path::Path,
    der: &[u8],
    now: u64,
) -> Result<(String, aver_attestation::evidence::snp::CrlInfo)> {
    let info = trust.add_crl_der(der).map_err(|e| anyhow!("{e}"))?;
    let issuer_cn = x509_parser::parse_x509_crl(der)
        .ok()
        .and_then(|(_, crl)| {
            crl.issuer()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(str::to_string))
        })
        .unwrap_or_default();
    let key = aver_server::snp_crl::import_key(&issuer_cn);
    let record = aver_server::store::CollateralRecord::new(
        key.clone(),
        der.to_vec(),
        format!("import:{}", path.display()),
        i64::try_from(now).unwrap_or(i64::MAX),
        Some(info.next_update),
    );
    store.put_collateral(&record)?;
    Ok((key, info))
}

/// Verifies a VCEK to AMD's built-in roots at `time` and stores it in the
/// shared collateral cache; returns its key.
fn import_vcek(
    store: &dyn aver_server::store::Store,
    path: &std::path::Path,
    der: &[u8],
    time: VerificationTime,
    now: u64,
) -> Result<String> {
    use aver_attestation::evidence::snp::{SnpTrust, kds::vcek_cache_key};
    let key = vcek_cache_key(&SnpTrust::amd(), der, time).map_err(|e| anyhow!("{e}"))?;
    let expires_at = aver_attestation::evidence::snp::kds::not_after(der);
    let record = aver_server::store::CollateralRecord::new(
        key.clone(),
        der.to_vec(),
        format!("import:{}", path.display()),
        i64::try_from(now).unwrap_or(i64::MAX),
        expires_at,
    );
    store.put_collateral(&record)?;
    Ok(key)
}
