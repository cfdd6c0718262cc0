//! Quotes from the simulated enclave: trusted only when its root is
//! configured, and verified with the same code path as real quotes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::dcap::{Collateral, DcapError, DcapVerifier, TrustAnchors};
use aver_attestation::evidence::sgx::{SgxError, SgxEvidenceKind, VerifiedSgx, verify_evidence};
use aver_attestation::{VerificationTime, parse_rfc3339};

use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for, root_certificate_pem};

fn now() -> VerificationTime {
    parse_rfc3339("2026-11-28T00:00:00Z").unwrap()
}

fn sim_trusting_verifier() -> SgxVerifier {
    // The root PEM is produced independently of the platform that signs:
    // what matters is the stable subject and key, as for a running service
    // configured once with `aver sim root`.
    let mut roots = TrustAnchors::intel();
    roots
        .add_pem(root_certificate_pem().unwrap().as_bytes(), "simulator")
        .unwrap();
    SgxVerifier::new(roots)
}

#[test]
fn simulated_quote_verifies_only_when_the_simulator_root_is_configured() {
    let platform = SimPlatform::generate().unwrap();
    let identity = EnclaveIdentity {
        report_data: report_data_for(b"runtime"),
        ..EnclaveIdentity::default()
    };
    let quote = platform.quote(&identity).unwrap();

    let v = sim_trusting_verifier()
        .verify(
            SgxEvidenceKind::Quote,
            &quote,
            Some(b"runtime"),
            None,
            now(),
        )
        .unwrap();
    assert_eq!(v.mr_enclave, identity.mr_enclave);
    assert!(v.runtime_data_bound);

    assert!(
        matches!(
            SgxVerifier::new(TrustAnchors::intel()).verify(
                SgxEvidenceKind::Quote,
                &quote,
                None,
                None,
                now()
            ),
            Err(SgxError::Dcap(DcapError::UntrustedRoot(_)))
        ),
        "the simulator is never trusted by default"
    );
}

#[test]
fn simulated_openenclave_report_verifies() {
    let platform = SimPlatform::generate().unwrap();
    let report = platform
        .openenclave_report(&EnclaveIdentity {
            debug: true,
            ..EnclaveIdentity::default()
        })
        .unwrap();
    let v = sim_trusting_verifier()
        .verify(
            SgxEvidenceKind::OpenEnclaveReport,
            &report,
            None,
            None,
            now(),
        )
        .unwrap();
    assert!(v.is_debuggable);
}

#[test]
fn expired_simulated_pck_is_rejected() {
    let platform = SimPlatform::generate_with_validity((2020, 1, 1), (2021, 1, 1)).unwrap();
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    assert_eq!(
        sim_trusting_verifier().verify(SgxEvidenceKind::Quote, &quote, None, None, now()),
        Err(SgxError::Dcap(DcapError::CertificateExpired))
    );
}

/// The SGX verifier as these tests use it: an evidence kind, the bytes,
/// optional runtime data and collateral, a time.
struct SgxVerifier(DcapVerifier);

impl SgxVerifier {
    fn new(roots: TrustAnchors) -> Self {
        SgxVerifier(DcapVerifier::new(roots))
    }

    fn verify(
        &self,
        kind: SgxEvidenceKind,
        evidence: &[u8],
        runtime_data: Option<&[u8]>,
        collateral: Option<&Collateral>,
        time: VerificationTime,
    ) -> Result<VerifiedSgx, SgxError> {
        verify_evidence(
            kind,
            &self.0,
            evidence,
            runtime_data,
            None,
            collateral,
            time,
        )
    }
}
