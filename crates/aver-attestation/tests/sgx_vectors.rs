//! Real SGX quotes verify to the real Intel SGX Root CA at a pinned time;
//! mutating each region gives its specific error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::dcap::{Collateral, DcapError, DcapVerifier, TrustAnchors};
use aver_attestation::evidence::sgx::{SgxError, SgxEvidenceKind, VerifiedSgx, verify_evidence};
use aver_attestation::{VerificationTime, parse_rfc3339};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn at(text: &str) -> VerificationTime {
    parse_rfc3339(text).unwrap()
}

fn intel() -> SgxVerifier {
    SgxVerifier::new(TrustAnchors::intel())
}

/// Inside the Azure SDK quote's PCK validity (2021-04-21 .. 2028-04-21).
const AZURE_TIME: &str = "2024-01-01T00:00:00Z";

fn azure_quote(test: &str) -> Option<Vec<u8>> {
    aver_testkit::read_vector(test, "azure-sdk/sgx_quote.bin")
}

#[test]
fn azure_sdk_quote_verifies_with_runtime_data() {
    let Some(quote) = azure_quote("azure_sdk_quote_verifies_with_runtime_data") else {
        return;
    };
    let Some(runtime) = aver_testkit::read_vector("runtime", "azure-sdk/runtime_data.bin") else {
        return;
    };
    let v = intel()
        .verify(
            SgxEvidenceKind::Quote,
            &quote,
            Some(&runtime),
            None,
            at(AZURE_TIME),
        )
        .unwrap();
    assert_eq!(
        hex::encode(v.mr_enclave),
        "b779202618becb636768e5d902f28d524222735fafb539ea9ba07c3fc171a1c2"
    );
    assert!(v.runtime_data_bound);
    assert!(!v.is_debuggable);
    // SHA-256 of the quote bytes, as MAA's quotehash.
    assert_eq!(
        hex::encode(v.evidence_hash),
        "af0e05631c145d7dc1a33b214d43c6aa34a7859622a0ac7d880ab7b24e2f18d2"
    );

    let mut wrong = runtime.clone();
    wrong.push(b' ');
    assert_eq!(
        intel().verify(
            SgxEvidenceKind::Quote,
            &quote,
            Some(&wrong),
            None,
            at(AZURE_TIME)
        ),
        Err(SgxError::RuntimeDataMismatch)
    );
}

#[test]
fn azure_sdk_openenclave_report_verifies_and_hashes_whole_report() {
    let Some(report) = aver_testkit::read_vector("oe", "azure-sdk/oe_report.bin") else {
        return;
    };
    let v = intel()
        .verify(
            SgxEvidenceKind::OpenEnclaveReport,
            &report,
            None,
            None,
            at(AZURE_TIME),
        )
        .unwrap();
    // Recorded MAA (2021): quotehash of /attest/OpenEnclave covers the header.
    assert_eq!(
        hex::encode(v.evidence_hash),
        "949b189c928f25c0a8090ae57d9f481b3435f26fb9a4d7e86e2619770d29c13f"
    );
    assert_eq!(v.kind, SgxEvidenceKind::OpenEnclaveReport);
}

#[test]
fn cpp_sdk_reports_verify() {
    for file in [
        "maa/oe-report-debug.b64url",
        "maa/oe-report-nondebug.b64url",
    ] {
        let Some(text) = aver_testkit::read_vector("cpp_sdk_reports_verify", file) else {
            return;
        };
        let report = URL_SAFE_NO_PAD
            .decode(String::from_utf8(text).unwrap().trim())
            .unwrap();
        let v = intel()
            .verify(
                SgxEvidenceKind::OpenEnclaveReport,
                &report,
                None,
                None,
                at(AZURE_TIME),
            )
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(v.is_debuggable, file.contains("-debug"));
    }
}

#[test]
fn other_real_quotes_verify() {
    for (file, time) in [
        ("sgx/dcap-qvl-sgx-v3/quote.bin", "2025-07-01T00:00:00Z"),
        (
            "sgx/trustee-occlum/occlum_quote.dat",
            "2024-01-01T00:00:00Z",
        ),
    ] {
        let Some(quote) = aver_testkit::read_vector("other_real_quotes_verify", file) else {
            return;
        };
        intel()
            .verify(SgxEvidenceKind::Quote, &quote, None, None, at(time))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    for name in ["debug", "release", "prodid", "securityversion"] {
        let path = format!("maa/samples-intel-sdk-enclave.info.{name}.json");
        let Some(json) = aver_testkit::read_vector("other_real_quotes_verify", &path) else {
            return;
        };
        let info: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let quote = hex::decode(info["QuoteHex"].as_str().unwrap()).unwrap();
        let ehd = hex::decode(info["EnclaveHeldDataHex"].as_str().unwrap()).unwrap();
        intel()
            .verify(
                SgxEvidenceKind::Quote,
                &quote,
                Some(&ehd),
                None,
                at(AZURE_TIME),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn dcap_qvl_crls(test: &str) -> Option<Collateral> {
    let json = aver_testkit::read_vector(test, "sgx/dcap-qvl-sgx-v3/collateral.json")?;
    let c: serde_json::Value = serde_json::from_slice(&json).unwrap();
    Some(Collateral {
        crls: vec![
            hex::decode(c["pck_crl"].as_str().unwrap()).unwrap(),
            hex::decode(c["root_ca_crl"].as_str().unwrap()).unwrap(),
        ],
        crl_digest: None,
    })
}

#[test]
fn crls_are_checked_at_the_verification_time() {
    let test = "crls_are_checked_at_the_verification_time";
    let Some(quote) = aver_testkit::read_vector(test, "sgx/dcap-qvl-sgx-v3/quote.bin") else {
        return;
    };
    let Some(collateral) = dcap_qvl_crls(test) else {
        return;
    };
    // Inside the collateral window: PCK CRL and root CRL vouch for the chain.
    intel()
        .verify(
            SgxEvidenceKind::Quote,
            &quote,
            None,
            Some(&collateral),
            at("2025-07-01T00:00:00Z"),
        )
        .unwrap();
    // Today the PCK CRL is past its nextUpdate.
    assert_eq!(
        intel().verify(
            SgxEvidenceKind::Quote,
            &quote,
            None,
            Some(&collateral),
            at("2026-11-28T00:00:00Z")
        ),
        Err(SgxError::Dcap(DcapError::CollateralExpired))
    );
    // Only the root CRL: the PCK leaf's status is unknown, which fails closed.
    let partial = Collateral {
        crls: vec![collateral.crls[1].clone()],
        crl_digest: None,
    };
    assert!(matches!(
        intel().verify(
            SgxEvidenceKind::Quote,
            &quote,
            None,
            Some(&partial),
            at("2025-07-01T00:00:00Z")
        ),
        Err(SgxError::Dcap(DcapError::RevocationStatusUnknown(_)))
    ));
    let garbage = Collateral {
        crls: vec![vec![0x30, 0x03, 1, 2, 3]],
        crl_digest: None,
    };
    assert!(matches!(
        intel().verify(
            SgxEvidenceKind::Quote,
            &quote,
            None,
            Some(&garbage),
            at("2025-07-01T00:00:00Z")
        ),
        Err(SgxError::Dcap(DcapError::CollateralMalformed(_)))
    ));
}

#[test]
fn validity_window_of_the_pck_chain_is_enforced() {
    let Some(quote) = azure_quote("validity_window") else {
        return;
    };
    let v = intel();
    assert_eq!(
        v.verify(
            SgxEvidenceKind::Quote,
            &quote,
            None,
            None,
            at("2021-01-01T00:00:00Z")
        ),
        Err(SgxError::Dcap(DcapError::CertificateNotYetValid))
    );
    assert_eq!(
        v.verify(
            SgxEvidenceKind::Quote,
            &quote,
            None,
            None,
            at("2028-05-01T00:00:00Z")
        ),
        Err(SgxError::Dcap(DcapError::CertificateExpired))
    );
}

#[test]
fn unknown_root_is_untrusted() {
    let Some(quote) = azure_quote("unknown_root") else {
        return;
    };
    let v = SgxVerifier::new(TrustAnchors::empty());
    assert!(matches!(
        v.verify(SgxEvidenceKind::Quote, &quote, None, None, at(AZURE_TIME)),
        Err(SgxError::Dcap(DcapError::UntrustedRoot(_)))
    ));
}

/// Offsets into the Azure SDK quote.
const SIG: usize = 436;
const ATT_KEY: usize = SIG + 64;
const QE_REPORT: usize = ATT_KEY + 64;
const QE_SIG: usize = QE_REPORT + 384;
const AUTH: usize = QE_SIG + 64;

#[test]
fn each_signed_region_mutation_gives_its_error() {
    let Some(quote) = azure_quote("mutations") else {
        return;
    };
    let verify = |m: &[u8]| intel().verify(SgxEvidenceKind::Quote, m, None, None, at(AZURE_TIME));
    let flip = |at: usize| {
        let mut m = quote.clone();
        m[at] ^= 0x01;
        m
    };
    assert_eq!(verify(&quote), verify(&quote.clone()));
    assert!(verify(&quote).is_ok());
    // Header (qe_vendor_id) and report body (MRENCLAVE, report data).
    assert_eq!(
        verify(&flip(20)),
        Err(SgxError::Dcap(DcapError::QuoteSignatureInvalid))
    );
    assert_eq!(
        verify(&flip(48 + 64)),
        Err(SgxError::Dcap(DcapError::QuoteSignatureInvalid))
    );
    assert_eq!(
        verify(&flip(48 + 320)),
        Err(SgxError::Dcap(DcapError::QuoteSignatureInvalid))
    );
    // Quote signature.
    assert_eq!(
        verify(&flip(SIG + 5)),
        Err(SgxError::Dcap(DcapError::QuoteSignatureInvalid))
    );
    // Attestation key: no longer the one the QE vouched for.
    assert_eq!(
        verify(&flip(ATT_KEY + 3)),
        Err(SgxError::Dcap(DcapError::AttestationKeyBindingInvalid))
    );
    // QE report body and its signature.
    assert_eq!(
        verify(&flip(QE_REPORT + 70)),
        Err(SgxError::Dcap(DcapError::QeReportSignatureInvalid))
    );
    assert_eq!(
        verify(&flip(QE_SIG + 9)),
        Err(SgxError::Dcap(DcapError::QeReportSignatureInvalid))
    );
    // QE authentication data.
    assert_eq!(
        verify(&flip(AUTH + 2 + 4)),
        Err(SgxError::Dcap(DcapError::AttestationKeyBindingInvalid))
    );
}

#[test]
fn certificate_chain_mutations_are_rejected() {
    let Some(quote) = azure_quote("chain_mutations") else {
        return;
    };
    let auth_len = u16::from_le_bytes([quote[AUTH], quote[AUTH + 1]]) as usize;
    let pem_at = AUTH + 2 + auth_len + 6;
    let verify = |m: &[u8]| intel().verify(SgxEvidenceKind::Quote, m, None, None, at(AZURE_TIME));
    // Every 7th byte of the PEM chain: must fail with a chain error, never
    // verify and never panic.
    let mut seen = std::collections::BTreeSet::new();
    for i in (pem_at..quote.len()).step_by(7) {
        let mut m = quote.clone();
        let c = m[i];
        m[i] = if c.is_ascii_alphabetic() {
            c ^ 0x20
        } else {
            b'A'
        };
        if m[i] == c || c == b'\n' || c == b'-' || c == 0 {
            continue;
        }
        match verify(&m) {
            Ok(_) => panic!("offset {i}: a mutated chain verified"),
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        SgxError::Dcap(DcapError::CertificateChainMalformed(_))
                            | SgxError::Dcap(DcapError::CertificateChainInvalid(_))
                            | SgxError::Dcap(DcapError::UntrustedRoot(_))
                            | SgxError::Dcap(DcapError::QeReportSignatureInvalid)
                    ),
                    "offset {i}: unexpected {e:?}"
                );
                seen.insert(e.code());
            }
        }
    }
    assert!(seen.contains("CertificateChainMalformed") || seen.contains("CertificateChainInvalid"));
    // No certificates at all.
    let mut m = quote.clone();
    for b in &mut m[pem_at..] {
        *b = b' ';
    }
    assert!(matches!(
        verify(&m),
        Err(SgxError::Dcap(DcapError::CertificateChainMalformed(_)))
    ));
}

/// Every byte of accepted evidence is covered by a check: a single-bit
/// flip anywhere in the Azure SDK quote — header, report body, signature
/// data, QE report and authentication data, and the certification data
/// (PEM armor, base64, line ends, the trailing NUL, the root certificate,
/// an older encoding of which the quote embeds) — is rejected, never
/// accepted with a new `quotehash`. Likewise for the OpenEnclave report.
#[test]
fn every_bit_of_the_evidence_is_covered() {
    let Some(quote) = azure_quote("every_bit") else {
        return;
    };
    let Some(report) = aver_testkit::read_vector("every_bit", "azure-sdk/oe_report.bin") else {
        return;
    };
    let v = intel();
    for (kind, evidence) in [
        (SgxEvidenceKind::Quote, &quote),
        (SgxEvidenceKind::OpenEnclaveReport, &report),
    ] {
        assert!(v.verify(kind, evidence, None, None, at(AZURE_TIME)).is_ok());
        let mut accepted = Vec::new();
        for i in 0..evidence.len() {
            for bit in 0..8 {
                let mut m = evidence.clone();
                m[i] ^= 1 << bit;
                if v.verify(kind, &m, None, None, at(AZURE_TIME)).is_ok() {
                    accepted.push((i, bit));
                }
            }
        }
        assert!(
            accepted.is_empty(),
            "{kind:?}: {} single-bit flips still verify: {accepted:?}",
            accepted.len(),
        );
    }
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(
        SgxError::Dcap(DcapError::QuoteSignatureInvalid).code(),
        "QuoteSignatureInvalid"
    );
    assert_eq!(SgxError::RuntimeDataMismatch.code(), "RuntimeDataMismatch");
    assert_eq!(
        SgxError::Dcap(DcapError::UntrustedRoot(String::new())).code(),
        "UntrustedRoot"
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
