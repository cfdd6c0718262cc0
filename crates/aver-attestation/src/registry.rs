//! The attestation types Aver serves, in one table.
//!
//! Everything that needs the list reads it here: the router
//! (`/attest/{type}`), the management API (`/policies/{type}` and its
//! "supported: ..." message), the client (which field carries the evidence)
//! and the CLI. Adding an evidence type is one module under
//! [`crate::evidence`] and one entry in [`TYPES`] (see ARCHITECTURE.md,
//! "Adding an evidence type").

use crate::error::AttestError;
use crate::request::AttestRequest;
use crate::{VerificationTime, Verified, Verifiers};

/// Verifies one request's evidence: parse, check (collateral and time as
/// inputs), and the service's claims about it.
pub type VerifyFn =
    fn(&Verifiers, &AttestRequest, VerificationTime) -> Result<Verified, AttestError>;

/// How a type's requests arrive.
#[derive(Clone, Copy)]
pub enum Flow {
    /// One request with the evidence in a base64url JSON field, one answer
    /// with the token (`{"quote": ..., "runtimeData": ..., "nonce": ...}`).
    SingleShot {
        /// The request field holding the evidence (`quote`, `report`).
        evidence_field: &'static str,
        verify: VerifyFn,
    },
    /// A multi-round protocol with its own messages (TPM); it shares the
    /// token tail ([`crate::tail`]) once its evidence is verified.
    Protocol,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flow::SingleShot { evidence_field, .. } => f
                .debug_struct("SingleShot")
                .field("evidence_field", evidence_field)
                .finish_non_exhaustive(),
            Flow::Protocol => f.write_str("Protocol"),
        }
    }
}

/// One attestation type.
#[derive(Debug)]
pub struct AttestationType {
    /// As in paths: `SgxEnclave`, `OpenEnclave`, `Tpm`.
    pub name: &'static str,
    pub flow: Flow,
    /// The policy in force until one is set (`None`: attestation needs a
    /// policy first, as Azure's TPM).
    pub default_policy: Option<&'static str>,
    /// Whether policies also see the legacy `$`-names of SGX claims.
    pub legacy_aliases: bool,
    /// Claims computed for the policy but kept out of tokens (large dumps a
    /// policy may issue explicitly).
    pub policy_only_claims: &'static [&'static str],
}

impl AttestationType {
    /// The request field carrying the evidence, for single-shot types.
    pub fn evidence_field(&self) -> Option<&'static str> {
        match self.flow {
            Flow::SingleShot { evidence_field, .. } => Some(evidence_field),
            Flow::Protocol => None,
        }
    }
}

impl PartialEq for AttestationType {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for AttestationType {}

impl std::hash::Hash for AttestationType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// Every attestation type, in the order they are listed to users.
pub static TYPES: [&AttestationType; 6] = [
    &crate::evidence::sgx::SGX_ENCLAVE,
    &crate::evidence::sgx::OPEN_ENCLAVE,
    &crate::evidence::tpm::TPM,
    &crate::evidence::snp::SEV_SNP_VM,
    &crate::evidence::azure_cvm::AZURE_CVM,
    &crate::evidence::tdx::TDX_VM,
];

/// The type named `name`, ignoring ASCII case (the SDKs' enums are).
pub fn lookup(name: &str) -> Option<&'static AttestationType> {
    TYPES
        .iter()
        .copied()
        .find(|t| t.name.eq_ignore_ascii_case(name))
}

/// The type named `name`, or an `InvalidParameter` error listing the
/// supported ones.
pub fn require(name: &str) -> Result<&'static AttestationType, AttestError> {
    lookup(name).ok_or_else(|| {
        AttestError::rejected(
            "InvalidParameter",
            format!("unknown attestation type {name:?}; supported: {}", names()),
        )
    })
}

/// `SgxEnclave, OpenEnclave, Tpm`.
pub fn names() -> String {
    TYPES.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}
