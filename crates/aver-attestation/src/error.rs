//! The one error type of the attestation flow: a stable code, a message for
//! people, and whether the fault is the client's or the service's. No HTTP
//! here: the server maps [`AttestError::is_internal`] to 500 and everything
//! else to 400.

use std::fmt;

/// An attestation that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestError {
    /// Stable code (`docs/errors.md`): clients may branch on it.
    pub code: &'static str,
    /// What went wrong and why; may change between versions.
    pub message: String,
    /// A fault of the service (RNG, key material), not of the evidence.
    pub internal: bool,
}

impl AttestError {
    /// The client's evidence, data or policy was refused.
    pub fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        AttestError {
            code,
            message: message.into(),
            internal: false,
        }
    }

    /// The service failed.
    pub fn internal(message: impl Into<String>) -> Self {
        AttestError {
            code: "InternalError",
            message: message.into(),
            internal: true,
        }
    }

    pub fn is_internal(&self) -> bool {
        self.internal
    }
}

impl fmt::Display for AttestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AttestError {}

impl From<crate::dcap::DcapError> for AttestError {
    fn from(e: crate::dcap::DcapError) -> Self {
        AttestError::rejected(e.code(), e.to_string())
    }
}

impl From<crate::evidence::sgx::SgxError> for AttestError {
    fn from(e: crate::evidence::sgx::SgxError) -> Self {
        AttestError::rejected(e.code(), e.to_string())
    }
}

impl From<crate::evidence::tdx::TdxError> for AttestError {
    fn from(e: crate::evidence::tdx::TdxError) -> Self {
        AttestError::rejected(e.code(), e.to_string())
    }
}

impl From<crate::evidence::snp::SnpError> for AttestError {
    fn from(e: crate::evidence::snp::SnpError) -> Self {
        AttestError::rejected(e.code(), e.to_string())
    }
}

impl From<crate::evidence::azure_cvm::AzureCvmError> for AttestError {
    fn from(e: crate::evidence::azure_cvm::AzureCvmError) -> Self {
        AttestError::rejected(e.code(), e.to_string())
    }
}

impl From<aver_tpm_attest::TpmError> for AttestError {
    fn from(e: aver_tpm_attest::TpmError) -> Self {
        match e.code() {
            "InternalError" => AttestError::internal(e.to_string()),
            code => AttestError::rejected(code, e.to_string()),
        }
    }
}
