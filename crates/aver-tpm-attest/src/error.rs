//! Errors of the TPM protocol, each with a stable code.

use thiserror::Error;

/// A failed protocol step. [`TpmError::code`] is stable and meant for the
/// HTTP error body (`{"error":{"code":…,"message":…}}`); the `Display`
/// text adds detail (which PCR, which bank, which field) and may change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TpmError {
    /// The `data` value or the message inside it is not what the protocol
    /// expects (bad base64url, bad JSON, missing or malformed field,
    /// unparsable TPM structure).
    #[error("invalid TPM message: {0}")]
    InvalidTpmMessage(String),
    /// The service_context does not decode, does not decrypt under the
    /// service key, or was sealed for another step.
    #[error("service_context is invalid: {0}")]
    ServiceContextInvalid(String),
    /// The service_context expired.
    #[error("service_context expired at {expired_at} (now {now})")]
    ServiceContextExpired {
        /// Expiry (Unix seconds).
        expired_at: u64,
        /// Time of the request (Unix seconds).
        now: u64,
    },
    /// The service_context was already used.
    #[error("service_context was already used")]
    ServiceContextReplayed,
    /// The quote's extraData is not the challenge.
    #[error("quote extraData does not match the challenge: {0}")]
    ChallengeMismatch(String),
    /// The quote's signature does not verify with the AK.
    #[error("quote signature does not verify with the attestation key")]
    QuoteSignatureInvalid,
    /// The quote's pcrDigest is not the digest of the supplied PCR values.
    #[error("PCR digest mismatch: {0}")]
    PcrDigestMismatch(String),
    /// The event log does not replay to the quoted PCR values.
    #[error("event log does not replay to the quoted PCRs: {0}")]
    EventLogReplayMismatch(String),
    /// The event log is missing, does not parse or cannot be replayed.
    #[error("event log is malformed: {0}")]
    EventLogMalformed(String),
    /// The AK is not a restricted signing key that never left its TPM.
    #[error("attestation key attributes are invalid: {0}")]
    AkAttributesInvalid(String),
    /// Credential activation failed: the returned secret is not the one
    /// sealed to the EK (the AK is not in the TPM that owns the EK).
    #[error("credential activation failed: the AK is not bound to the EK")]
    AkNotBoundToEk,
    /// The EK certificate does not chain to a configured manufacturer root
    /// or does not certify the supplied EK.
    #[error("EK certificate is untrusted: {0}")]
    EkCertificateUntrusted(String),
    /// The EK is not RSA (only RSA EKs are supported for MakeCredential).
    #[error("unsupported EK: {0}")]
    UnsupportedEkType(String),
    /// The aik_cert is present but does not chain to the AK CA or does not
    /// certify this AK.
    #[error("AIK certificate is invalid: {0}")]
    AikCertificateInvalid(String),
    /// The caller requires a valid aik_cert and none was presented.
    #[error("a valid AIK certificate is required (require_valid_aik_cert) but none was presented")]
    AikCertificateRequired,
    /// An algorithm the service does not implement.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// A service-side failure (RNG, key material, certificate issuance):
    /// not the client's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl TpmError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidTpmMessage(_) => "InvalidTpmMessage",
            Self::ServiceContextInvalid(_) => "ServiceContextInvalid",
            Self::ServiceContextExpired { .. } => "ServiceContextExpired",
            Self::ServiceContextReplayed => "ServiceContextReplayed",
            Self::ChallengeMismatch(_) => "ChallengeMismatch",
            Self::QuoteSignatureInvalid => "QuoteSignatureInvalid",
            Self::PcrDigestMismatch(_) => "PcrDigestMismatch",
            Self::EventLogReplayMismatch(_) => "EventLogReplayMismatch",
            Self::EventLogMalformed(_) => "EventLogMalformed",
            Self::AkAttributesInvalid(_) => "AkAttributesInvalid",
            Self::AkNotBoundToEk => "AkNotBoundToEk",
            Self::EkCertificateUntrusted(_) => "EkCertificateUntrusted",
            Self::UnsupportedEkType(_) => "UnsupportedEkType",
            Self::AikCertificateInvalid(_) => "AikCertificateInvalid",
            Self::AikCertificateRequired => "AikCertificateRequired",
            Self::UnsupportedAlgorithm(_) => "UnsupportedAlgorithm",
            Self::Internal(_) => "InternalError",
        }
    }

    pub(crate) fn msg(what: impl Into<String>) -> Self {
        Self::InvalidTpmMessage(what.into())
    }
}
