//! What one attestation request carries, already decoded from its wire
//! form (the server decodes JSON and base64; the CLI reads files).

use serde_json::Value;

/// `runtimeData` / `initTimeData`: bytes, and their JSON reading when the
/// request's `dataType` was JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedData {
    pub bytes: Vec<u8>,
    /// Parsed JSON when `dataType` is JSON.
    pub json: Option<Value>,
}

/// A single-shot attestation request (`/attest/{type}`).
#[derive(Debug, Clone, Default)]
pub struct AttestRequest {
    /// The evidence exactly as submitted (a quote, a report, ...).
    pub evidence: Vec<u8>,
    pub runtime_data: Option<TypedData>,
    pub init_time_data: Option<TypedData>,
    /// Echoed in the token's `nonce` claim.
    pub nonce: Option<String>,
    /// The SGX TCB baseline the deciding policy selects
    /// ([`crate::PolicyChoice::tcb_baseline`]); set by whoever chose the
    /// policy, read by the SGX and OpenEnclave verifiers.
    pub tcb_baseline: crate::TcbBaseline,
    /// TdxVm only, an Aver extension Azure does not have (`ccelEventLog`
    /// on the wire): the TD's CCEL event-log area, replayed to the quote's
    /// RTMRs ([`aver_tpm::ccel`]). Other types refuse it.
    pub ccel_event_log: Option<Vec<u8>>,
}
