//! # aver-attestation — the attestation core
//!
//! Owns the whole flow of one attestation, without HTTP and without a
//! database:
//!
//! ```text
//! attestation type ─> parse ─> verify (collateral, time) ─> claims
//!        (registry)     └──── evidence::<type> ────┘           │
//!                                   token claims <── policy (budget)
//!                                        └──> stamp, sign (tail)
//! ```
//!
//! * [`registry`]: the attestation types (`SgxEnclave`, `OpenEnclave`,
//!   `Tpm`, `SevSnpVm`, `TdxVm`), read by the server's router and management API, the client and
//!   the CLI;
//! * [`evidence`]: one module per type — parser, verifier, claims;
//! * [`dcap`]: what SGX and TDX quotes share (quote format, PCK chain, QE
//!   checks);
//! * [`policy`] and [`tail`]: evaluation under a budget and the token tail,
//!   one for every type (the TPM protocol included);
//! * [`AttestError`]: one error type with the stable codes; the server maps
//!   it to HTTP.
//!
//! Nothing here reads the clock: the verification time is an argument
//! ([`VerificationTime`]), so tests pin it on expired real vectors. The
//! server runs this on its CPU pool; the CLI (`aver evidence verify`) and
//! the benchmarks call it directly.

pub mod dcap;
pub mod error;
pub mod evidence;
pub mod policy;
pub mod registry;
pub mod request;
pub mod tail;
pub mod time;

use aver_policy::Budget;
use serde_json::{Map, Value};

pub use error::AttestError;
pub use policy::{ActivePolicy, DraftPolicy, PolicyChoice, TcbBaseline};
pub use registry::{AttestationType, Flow};
pub use request::{AttestRequest, TypedData};
pub use tail::{Issued, Signer};
pub use time::{VerificationTime, parse_rfc3339};

/// Service-wide verification settings and caches, shared by every
/// provider: the roots trusted for each kind of evidence, and verified
/// DCAP collateral.
#[derive(Debug, Clone)]
pub struct Verifiers {
    pub dcap: dcap::DcapVerifier,
    /// AMD's ARKs (and ASKs) for SEV-SNP chains.
    pub snp: evidence::snp::SnpTrust,
    /// Verified collateral by TEE and FMSPC; SGX and TDX quotes whose
    /// FMSPC is here get Intel's TCB verdict.
    pub collateral: std::sync::Arc<dcap::collateral::CollateralCache>,
    /// Which TCB statuses are accepted.
    pub tcb_acceptance: dcap::TcbAcceptance,
    /// Whether an SGX or TDX quote with no valid collateral for its FMSPC is
    /// refused (`CollateralMissing`, naming the FMSPC) rather than verified
    /// without a TCB verdict. Off until a collateral source is configured,
    /// so that air-gapped labs and old real quotes keep working.
    pub require_collateral: bool,
    /// The TCB evaluation data number that judges SGX quotes whose policy
    /// does not pin one (`"azuredefault"`, or no rule): `None` for the
    /// newest collateral held.
    pub default_tcb_baseline: Option<u32>,
}

impl Verifiers {
    /// What real hardware needs: Intel's root for DCAP, AMD's ARKs for SNP.
    pub fn production() -> Self {
        Self::new(dcap::DcapVerifier::intel())
    }

    /// `dcap` with an empty collateral cache and the default settings.
    pub fn new(dcap: dcap::DcapVerifier) -> Self {
        Verifiers {
            dcap,
            collateral: Default::default(),
            tcb_acceptance: dcap::TcbAcceptance::default(),
            require_collateral: false,
            default_tcb_baseline: None,
            snp: evidence::snp::SnpTrust::amd(),
        }
    }
}

/// Verified evidence: the service's claims about it, and its typed facts.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The incoming claims of the policy (`x-ms-*`, ...).
    pub claims: Map<String, Value>,
    /// The verified facts, for the CLI's verdict and for tests.
    pub facts: Facts,
    /// One line for the service log (never evidence bytes).
    pub log_summary: String,
}

/// A type's verified facts (its `Verified*` struct), turned into JSON only
/// when asked: the CLI's verdict shows them, the service never does, and
/// serialising them on every attestation cost about 1% of its CPU.
#[derive(Clone)]
pub struct Facts(std::sync::Arc<dyn Fn() -> Value + Send + Sync>);

impl Facts {
    pub fn of<T: serde::Serialize + Send + Sync + 'static>(facts: T) -> Self {
        Facts(std::sync::Arc::new(move || {
            serde_json::to_value(&facts).unwrap_or(Value::Null)
        }))
    }

    /// The facts as JSON.
    pub fn to_json(&self) -> Value {
        (self.0)()
    }
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Facts(..)")
    }
}

/// Verifies the evidence of a single-shot request at `time`.
pub fn verify(
    ty: &AttestationType,
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
) -> Result<Verified, AttestError> {
    // Only TdxVm reads a CCEL log; any other type would ignore it, and a
    // client that believes its log was checked must hear that it was not.
    if request.ccel_event_log.is_some() && ty != &evidence::tdx::TDX_VM {
        return Err(AttestError::rejected(
            "InvalidParameter",
            format!(
                "ccelEventLog (an Aver extension) is only accepted by TdxVm attestation, not by {}",
                ty.name
            ),
        ));
    }
    match ty.flow {
        Flow::SingleShot { verify, .. } => verify(verifiers, request, time),
        Flow::Protocol => Err(AttestError::rejected(
            "InvalidParameter",
            format!(
                "{} attestation is a multi-round protocol, not a single request",
                ty.name
            ),
        )),
    }
}

/// A whole single-shot attestation: [`verify`], then the token tail
/// ([`tail::finish`]).
pub fn attest(
    ty: &AttestationType,
    verifiers: &Verifiers,
    request: &AttestRequest,
    policy: PolicyChoice<'_>,
    time: VerificationTime,
    signer: &Signer<'_>,
    budget: &Budget,
) -> Result<(Verified, Issued), AttestError> {
    // The policy's configuration rules may pin the SGX TCB baseline, which
    // verification needs: read it first.
    let baseline = policy.tcb_baseline(budget)?;
    let with_baseline;
    let request = if baseline == request.tcb_baseline {
        request
    } else {
        with_baseline = AttestRequest {
            tcb_baseline: baseline,
            ..request.clone()
        };
        &with_baseline
    };
    let verified = verify(ty, verifiers, request, time)?;
    let issued = tail::finish(
        ty,
        policy,
        verified.claims.clone(),
        request.nonce.as_deref(),
        signer,
        time.unix_seconds(),
        budget,
    )?;
    Ok((verified, issued))
}

/// SHA-256 of `data`, through aws-lc-rs.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
