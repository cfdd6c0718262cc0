//! TPM attestation (`/attest/Tpm`): Azure's multi-round protocol.
//!
//! The protocol (challenge, credential activation, AK certificates, sealed
//! service contexts) is `aver-tpm-attest`; its verification of a quote, PCR
//! values and event log is one pure function,
//! [`aver_tpm_attest::verify_evidence`], called by the service and by the
//! offline `aver evidence verify tpm` alike. Here: the registry entry, and
//! the token tail that TPM shares with every other type ([`crate::tail`]).

use crate::registry::{AttestationType, Flow};

/// `/attest/Tpm`: no default policy, as in Azure (a TPM policy must be set
/// before TPM attestation). The full event log and PCR banks are policy
/// inputs but stay out of tokens (tens of KiB); a policy that wants them
/// issues them.
pub const TPM: AttestationType = AttestationType {
    name: "Tpm",
    flow: Flow::Protocol,
    default_policy: None,
    legacy_aliases: false,
    policy_only_claims: &["events", "pcrs"],
};
