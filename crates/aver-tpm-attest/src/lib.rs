//! # aver-tpm-attest — the service side of Aver's TPM attestation
//!
//! Implements `POST /attest/Tpm` in MAA's framing (`{"data":
//! base64url({"payload": …})}`), as a pure function of the request body,
//! the time and a replay cache: no I/O, no clock, no TPM library (the
//! verifier must not link libtss2). The wire protocol, with a full example
//! of every message, is in `PROTOCOL.md` next to this crate.
//!
//! ## Steps
//! * **Init** `{"type":"aikcert"}` → random 32-byte challenge + sealed
//!   `service_context` ([`context`]: AES-256-GCM under the provider key,
//!   carrying the challenge, a context id, the purpose and an expiry; any
//!   replica with the key serves the next step).
//! * **Request** → quote verification with the AK, challenge, PCR digest,
//!   event-log replay, AK attributes, AK certificate → [`VerifiedTpm`]
//!   with the claims for the policy. The caller evaluates the policy,
//!   signs the token and answers with [`report_reply`].
//! * **Enroll / Activate** (credential activation, as Keylime's registrar
//!   does): the EK certificate must chain to a configured TPM-manufacturer
//!   root; the service runs TPM2_MakeCredential ([`credential`]) for the
//!   AK name; only the TPM holding both the EK and the AK can return the
//!   secret, and the service then issues an **AK certificate** ([`certs`])
//!   which later Requests present (`aikValidated`).
//!
//! ## Why it is built this way
//! * State travels in the sealed context, so the service scales
//!   horizontally; the only per-process state is the [`ReplayCache`],
//!   whose multi-replica limitation is documented in [`context`].
//! * The AK↔EK binding is proven once (activation) and then carried by a
//!   certificate from the provider's own CA, so attestation requests need
//!   no manufacturer PKI and no round trip more than MAA's.
//! * Every failure has a stable [`TpmError::code`].
//!
//! ## Route sketch
//! ```ignore
//! let step = service.handle_with(&body.data, now_unix, &replay_cache, &options)?;
//! match step {
//!     TpmStep::Reply(payload) => json!({"data": encode_payload(&payload)}),
//!     TpmStep::Verified(v) => {
//!         let token = evaluate_policy_and_sign(&v.claims)?;   // the lead's code
//!         json!({"data": report_reply(&token)})
//!     }
//! }
//! ```
//!
//! ## Limits
//! RSA EKs only for MakeCredential; TCG (not IMA) logs; MAA's JWS-framed
//! v1/v2 requests (`request_key`, `other_keys`, VBS) are not implemented;
//! no EK certificate revocation checks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod certs;
pub mod context;
pub mod credential;
pub mod error;
pub mod evidence;
pub mod message;
pub mod service;

pub use context::ReplayCache;
pub use error::TpmError;
pub use evidence::{AkInput, PcrSource, TpmEvidence, VerifiedEvidence, verify_evidence};
pub use message::{decode_message, encode_payload, report_reply};
pub use service::{RequestOptions, TpmAttestConfig, TpmAttestService, TpmStep, VerifiedTpm};
