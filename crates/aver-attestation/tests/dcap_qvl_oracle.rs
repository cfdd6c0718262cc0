//! The published `dcap-qvl` crate (0.7.1, Phala Network, MIT) as a
//! differential oracle: every real quote with collateral in the shared
//! vectors, and the generated TCB statuses and refusals under the
//! simulator's PKI, go through Aver's verifier and through
//! `dcap_qvl::verify` at the same pinned time, and the two must agree on
//! the TCB status (platform, QE, combined), the advisory IDs, and for a
//! refusal on its category.
//!
//! Where they disagree on purpose the test says so and asserts the
//! difference, so that a change on either side is noticed. Each is written
//! down in `docs/dcap-collateral.md` ("dcap-qvl as an oracle"):
//!
//! * **Debug TDs and TD attributes.** dcap-qvl refuses a TD whose
//!   TD_ATTRIBUTES.DEBUG is set ("Debug mode is enabled"), and by default
//!   also profiling, migratable and non-SEPT_VE_DISABLE TDs. Intel's QVL
//!   (the verification order in `tee-wire.md`) does not: TD attributes are
//!   appraisal, not quote verification. Aver follows Intel and Azure:
//!   the verdict is given and `dbgstat`/`tdx_td_attributes_debug` say
//!   "enabled" for the policy to judge. With `allow_debug(true)` dcap-qvl
//!   reaches the same TCB verdict as Aver, which the test checks.
//! * **Revoked.** dcap-qvl refuses a Revoked TCB outright; Aver returns the
//!   verdict `Revoked` (shown by `aver evidence verify`) and its provider
//!   setting `TcbAcceptance` refuses it, with no way to accept it.
//! * **Unsigned trailing bytes.** go-tdx-guest's SPR E4 capture carries 39
//!   non-zero bytes after the signature data. dcap-qvl ignores them; Aver
//!   refuses them (only zero padding is tolerated: bytes no signature covers
//!   must not change `quotehash`). On the quote proper both agree.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::dcap::collateral::{CollateralBundle, TcbStatus, verify_collateral};
use aver_attestation::dcap::{
    DcapError, DcapVerifier, TcbAcceptance, TcbVerdict, TrustAnchors, parse_quote,
};
use aver_attestation::{VerificationTime, parse_rfc3339};
use aver_sim::{EnclaveIdentity, SimCollateralSpec, SimPlatform, SimTcbLevel};
use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::{QuoteVerifier, VerifiedReport};

fn at(text: &str) -> VerificationTime {
    parse_rfc3339(text).unwrap()
}

/// What one verifier concluded, in terms both can be compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A TCB verdict: combined, platform and QE status names (Intel's
    /// spelling, which both use) and the advisory IDs, sorted.
    Verdict {
        status: String,
        platform: String,
        qe: String,
        advisories: Vec<String>,
    },
    /// A refusal, by category.
    Refused(Category),
}

/// Refusal categories both verifiers can be mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    /// No TCB level of the TCB info is at or below the platform's.
    NoMatchingTcbLevel,
    /// A CRL, the TCB info or the QE identity is outside its window.
    CollateralExpired,
    /// The TD runs in debug mode (dcap-qvl only; see the module docs).
    DebugTd,
    /// The TCB status is Revoked.
    Revoked,
    /// The quote's bytes are not accepted as they are.
    MalformedQuote,
    /// The QE is not the one the QE identity describes.
    QeIdentityMismatch,
    /// The collateral is for another FMSPC.
    FmspcMismatch,
    /// A certificate is revoked, or the revocation status is unknown.
    CertificateRevoked,
    Other,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn aver_outcome(r: Result<TcbVerdict, DcapError>) -> Outcome {
    match r {
        Ok(v) => Outcome::Verdict {
            status: v.status.as_str().into(),
            platform: v.platform_status.as_str().into(),
            qe: v.qe_status.as_str().into(),
            advisories: sorted(v.advisory_ids),
        },
        Err(e) => Outcome::Refused(match e.code() {
            "TcbLevelNotSupported" | "QeTcbNotSupported" => Category::NoMatchingTcbLevel,
            "CollateralExpired" => Category::CollateralExpired,
            "InvalidQuote" => Category::MalformedQuote,
            "QeIdentityMismatch" => Category::QeIdentityMismatch,
            "FmspcMismatch" => Category::FmspcMismatch,
            "CertificateRevoked" => Category::CertificateRevoked,
            other => {
                eprintln!("aver refusal not mapped: {other}: {e}");
                Category::Other
            }
        }),
    }
}

/// `E` is dcap-qvl's `anyhow::Error` (named generically, so that the test
/// needs no anyhow dependency of its own).
fn qvl_outcome<E: std::fmt::Display>(r: Result<VerifiedReport, E>) -> Outcome {
    match r {
        Ok(v) => Outcome::Verdict {
            status: v.status.clone(),
            platform: format!("{:?}", v.platform_status.status),
            qe: format!("{:?}", v.qe_status.status),
            advisories: sorted(v.advisory_ids),
        },
        Err(e) => {
            // dcap-qvl's errors are anyhow chains; the category is in the
            // message of one of its causes.
            let text = format!("{e:#}");
            let category = if text.contains("No matching TCB level") {
                Category::NoMatchingTcbLevel
            } else if text.contains("Debug mode is enabled") {
                Category::DebugTd
            } else if text.contains("CertRevoked") {
                Category::CertificateRevoked
            } else if text.contains("TCB status is invalid: Revoked") {
                Category::Revoked
            } else if text.contains("expired")
                || text.contains("Expired")
                || text.contains("CrlExpired")
            {
                Category::CollateralExpired
            } else if text.contains("Fmspc mismatch") {
                Category::FmspcMismatch
            } else if text.contains("QE")
                && (text.contains("mrsigner") || text.contains("MRSIGNER"))
            {
                Category::QeIdentityMismatch
            } else {
                eprintln!("dcap-qvl refusal not mapped: {text}");
                Category::Other
            };
            Outcome::Refused(category)
        }
    }
}

/// Aver's verdict: the bundle verified once at `time` (as `aver collateral
/// import` and the service's cache do), then the quote against it.
fn aver(roots: &TrustAnchors, quote: &[u8], json: &[u8], time: VerificationTime) -> Outcome {
    let bundle = CollateralBundle::from_dcap_qvl_json(json).unwrap();
    let c = match verify_collateral(&bundle, roots, time) {
        Ok(c) => c,
        Err(e) => return aver_outcome(Err(DcapError::Collateral(e))),
    };
    let q = match parse_quote(quote) {
        Ok(q) => q,
        Err(e) => return aver_outcome(Err(DcapError::InvalidQuote(e))),
    };
    aver_outcome(DcapVerifier::new(roots.clone()).verify_with_collateral(&q, &c, time))
}

/// dcap-qvl's verdict on the same bytes at the same time, rooted at
/// `root_der` (Intel's, or the simulator's).
fn qvl(
    root_der: &[u8],
    allow_debug: bool,
    quote: &[u8],
    json: &[u8],
    time: VerificationTime,
) -> Outcome {
    let collateral: QuoteCollateralV3 = serde_json::from_slice(json).unwrap();
    let verifier = QuoteVerifier::new(root_der.to_vec()).allow_debug(allow_debug);
    qvl_outcome(verifier.verify(quote, &collateral, time.unix_seconds()))
}

fn intel_root() -> Vec<u8> {
    aver_attestation::dcap::INTEL_SGX_ROOT_CA_DER.to_vec()
}

/// Both verifiers on a real vector, with Intel's root: returns (Aver, dcap-qvl).
fn both(quote: &[u8], json: &[u8], time: &str) -> (Outcome, Outcome) {
    let t = at(time);
    (
        aver(&TrustAnchors::intel(), quote, json, t),
        qvl(&intel_root(), false, quote, json, t),
    )
}

fn verdict(status: &str, platform: &str, qe: &str, advisories: &[&str]) -> Outcome {
    Outcome::Verdict {
        status: status.into(),
        platform: platform.into(),
        qe: qe.into(),
        advisories: advisories.iter().map(|s| s.to_string()).collect(),
    }
}

fn read(test: &str, path: &str) -> Option<Vec<u8>> {
    aver_testkit::read_vector(test, path)
}

fn hex_quote(test: &str, path: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8(read(test, path)?).unwrap();
    Some(hex::decode(text.trim().trim_start_matches("0x")).unwrap())
}

#[test]
fn sgx_v3_quote_agrees_at_its_pin_and_after_expiry() {
    let test = "sgx_v3_quote_agrees_at_its_pin_and_after_expiry";
    let (Some(quote), Some(json)) = (
        read(test, "sgx/dcap-qvl-sgx-v3/quote.bin"),
        read(test, "sgx/dcap-qvl-sgx-v3/collateral.json"),
    ) else {
        return;
    };
    let (a, q) = both(&quote, &json, "2025-07-01T00:00:00Z");
    assert_eq!(a, q, "Aver and dcap-qvl disagree on the SGX v3 sample");
    assert_eq!(
        a,
        verdict(
            "ConfigurationAndSWHardeningNeeded",
            "ConfigurationAndSWHardeningNeeded",
            "UpToDate",
            &["INTEL-SA-00289", "INTEL-SA-00615"]
        )
    );
    // The vectors' reference date: every item is past its nextUpdate
    // (dcap-qvl names the CRL, Aver the first item it checks).
    let (a, q) = both(&quote, &json, "2026-11-28T00:00:00Z");
    assert_eq!(a, q);
    assert_eq!(a, Outcome::Refused(Category::CollateralExpired));
}

#[test]
fn tdx_v4_quotes_agree() {
    let test = "tdx_v4_quotes_agree";
    let dir = "tdx/dcap-qvl-tdx-v4";
    let (Some(quote), Some(json)) = (
        read(test, &format!("{dir}/quote.bin")),
        read(test, &format!("{dir}/collateral.json")),
    ) else {
        return;
    };
    let pin = "2025-07-01T00:00:00Z";
    let (a, q) = both(&quote, &json, pin);
    assert_eq!(a, q, "Aver and dcap-qvl disagree on the TDX v4 sample");
    assert_eq!(a, verdict("UpToDate", "UpToDate", "UpToDate", &[]));
    // Two older quotes of the same platform: below every TCB level.
    for name in ["tdx-quote.hex", "quote-from-tappd.hex"] {
        let Some(older) = hex_quote(test, &format!("{dir}/{name}")) else {
            return;
        };
        let (a, q) = both(&older, &json, pin);
        assert_eq!(a, q, "{name}");
        assert_eq!(a, Outcome::Refused(Category::NoMatchingTcbLevel), "{name}");
    }
}

#[test]
fn tdx_v5_quotes_below_every_level_agree() {
    let test = "tdx_v5_quotes_below_every_level_agree";
    let dir = "tdx/dcap-qvl-tdx-v5-outdated";
    let Some(json) = read(test, &format!("{dir}/collateral.json")) else {
        return;
    };
    // dcap-qvl's own v5 sample, and trustee's v5 quote of the same FMSPC.
    for path in [&format!("{dir}/quote.bin"), "tdx/trustee/tdx_quote_5.dat"] {
        let Some(quote) = read(test, path) else {
            return;
        };
        let (a, q) = both(&quote, &json, "2026-03-01T00:00:00Z");
        assert_eq!(a, q, "{path}");
        assert_eq!(a, Outcome::Refused(Category::NoMatchingTcbLevel), "{path}");
    }
}

#[test]
fn spr_e4_quote_agrees_once_its_unsigned_tail_is_removed() {
    let test = "spr_e4_quote_agrees_once_its_unsigned_tail_is_removed";
    let dir = "tdx/go-tdx-guest-spr-e4";
    let (Some(raw), Some(json)) = (
        read(test, &format!("{dir}/quote.bin")),
        read(test, &format!("{dir}/collateral.derived.json")),
    ) else {
        return;
    };
    let pin = "2023-07-01T01:00:00Z";
    // Deliberate difference: 39 non-zero bytes follow the signature data.
    // dcap-qvl ignores them; Aver refuses bytes no signature covers unless
    // they are zero padding.
    let (a, q) = both(&raw, &json, pin);
    assert_eq!(a, Outcome::Refused(Category::MalformedQuote));
    assert_eq!(q, Outcome::Refused(Category::NoMatchingTcbLevel));
    // The quote proper: TEE_TCB_SVN[2] = 4 is below both TCB levels.
    let mut quote = raw.clone();
    quote.truncate(raw.len() - 39);
    let (a, q) = both(&quote, &json, pin);
    assert_eq!(a, q);
    assert_eq!(a, Outcome::Refused(Category::NoMatchingTcbLevel));
}

#[test]
fn debug_td_is_refused_by_dcap_qvl_and_left_to_policy_by_aver() {
    let test = "debug_td_is_refused_by_dcap_qvl_and_left_to_policy_by_aver";
    let (Some(quote), Some(json)) = (
        read(test, "tdx/trustee/tdx_quote_4.dat"),
        read(test, "tdx/go-tdx-guest-spr-e4/collateral.derived.json"),
    ) else {
        return;
    };
    let pin = "2023-07-01T01:00:00Z";
    let parsed = parse_quote(&quote).unwrap();
    assert!(
        parsed.td_report().unwrap().is_debug(),
        "trustee's tdx_quote_4 is a debug TD"
    );
    let (a, q) = both(&quote, &json, pin);
    // Deliberate difference: dcap-qvl refuses the debug TD before anything
    // else is said; Intel's QVL and Aver give the TCB verdict and leave
    // TD_ATTRIBUTES to the appraisal policy (Aver's `dbgstat` claim).
    assert_eq!(q, Outcome::Refused(Category::DebugTd));
    // With debug allowed, dcap-qvl reaches Aver's verdict.
    let permissive = qvl(&intel_root(), true, &quote, &json, at(pin));
    assert_eq!(a, permissive);
    // Its TCB is up to date: what makes it unfit is for the policy to say
    // (`dbgstat` = "enabled").
    assert_eq!(a, verdict("UpToDate", "UpToDate", "UpToDate", &[]));
}

// ---- generated statuses and refusals under the simulator's PKI -----------

const SIM_TIME: &str = "2025-01-15T00:00:00Z";

/// (Aver, dcap-qvl) on a simulated quote with collateral built from `spec`,
/// both rooted at the simulator's root.
fn sim_both(p: &SimPlatform, spec: &SimCollateralSpec) -> (Outcome, Outcome) {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = TrustAnchors::empty();
    roots.add_pem(p.root_pem().as_bytes(), "sim").unwrap();
    let root_der = CertificateDer::from_pem_slice(p.root_pem().as_bytes()).unwrap();
    let json = p.collateral(spec).unwrap().to_dcap_qvl_json();
    let quote = p.quote(&EnclaveIdentity::default()).unwrap();
    let t = at(SIM_TIME);
    (
        aver(&roots, &quote, json.as_bytes(), t),
        qvl(root_der.as_ref(), false, &quote, json.as_bytes(), t),
    )
}

#[test]
fn generated_statuses_agree_except_revoked() {
    let p = SimPlatform::generate().unwrap();
    for status in TcbStatus::ALL {
        let spec = SimCollateralSpec {
            levels: vec![SimTcbLevel::platform(status.as_str(), &["INTEL-SA-00001"])],
            ..SimCollateralSpec::default()
        };
        let (a, q) = sim_both(&p, &spec);
        let expected = verdict(
            status.as_str(),
            status.as_str(),
            "UpToDate",
            &["INTEL-SA-00001"],
        );
        assert_eq!(a, expected, "{status:?}");
        if status == TcbStatus::Revoked {
            // Deliberate difference: dcap-qvl refuses Revoked itself; Aver
            // gives the verdict and its acceptance always refuses it.
            assert_eq!(q, Outcome::Refused(Category::Revoked));
            continue;
        }
        assert_eq!(a, q, "{status:?}");
    }
    // The QE's level OutOfDate combines with each platform status as
    // Intel's QVL combines them.
    for platform in [
        TcbStatus::UpToDate,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
    ] {
        let spec = SimCollateralSpec {
            levels: vec![SimTcbLevel::platform(platform.as_str(), &[])],
            qe_levels: vec![(9, "UpToDate".to_string()), (1, "OutOfDate".to_string())],
            ..SimCollateralSpec::default()
        };
        let (a, q) = sim_both(&p, &spec);
        assert_eq!(a, q, "QE OutOfDate with platform {platform:?}");
    }
    // Revoked is refused by Aver's acceptance whatever the provider allows.
    assert!(
        TcbAcceptance::all_but_revoked()
            .check(&revoked_verdict(&p))
            .is_err()
    );
}

fn revoked_verdict(p: &SimPlatform) -> TcbVerdict {
    let mut roots = TrustAnchors::empty();
    roots.add_pem(p.root_pem().as_bytes(), "sim").unwrap();
    let spec = SimCollateralSpec {
        levels: vec![SimTcbLevel::platform("Revoked", &[])],
        ..SimCollateralSpec::default()
    };
    let json = p.collateral(&spec).unwrap().to_dcap_qvl_json();
    let c = verify_collateral(
        &CollateralBundle::from_dcap_qvl_json(json.as_bytes()).unwrap(),
        &roots,
        at(SIM_TIME),
    )
    .unwrap();
    let quote = p.quote(&EnclaveIdentity::default()).unwrap();
    DcapVerifier::new(roots)
        .verify_with_collateral(&parse_quote(&quote).unwrap(), &c, at(SIM_TIME))
        .unwrap()
}

#[test]
fn generated_refusals_agree() {
    let p = SimPlatform::generate().unwrap();
    let mut newer = SimTcbLevel::platform("UpToDate", &[]);
    newer.components[0] = 18;
    let cases: Vec<(&str, SimCollateralSpec, Category)> = vec![
        (
            "only levels above the platform",
            SimCollateralSpec {
                levels: vec![newer],
                ..SimCollateralSpec::default()
            },
            Category::NoMatchingTcbLevel,
        ),
        (
            "revoked PCK",
            SimCollateralSpec {
                revoke_pck: true,
                ..SimCollateralSpec::default()
            },
            Category::CertificateRevoked,
        ),
        (
            "wrong FMSPC",
            SimCollateralSpec {
                fmspc: Some([1, 2, 3, 4, 5, 6]),
                ..SimCollateralSpec::default()
            },
            Category::FmspcMismatch,
        ),
        (
            "expired TCB info",
            SimCollateralSpec {
                next_update: "2025-01-10T00:00:00Z".into(),
                ..SimCollateralSpec::default()
            },
            Category::CollateralExpired,
        ),
        (
            "expired CRLs",
            SimCollateralSpec {
                crl_next_update: (2025, 1, 10),
                ..SimCollateralSpec::default()
            },
            Category::CollateralExpired,
        ),
        (
            "another QE signer",
            SimCollateralSpec {
                qe_mrsigner: [0x77; 32],
                ..SimCollateralSpec::default()
            },
            Category::QeIdentityMismatch,
        ),
    ];
    for (name, spec, category) in cases {
        let (a, q) = sim_both(&p, &spec);
        assert_eq!(a, Outcome::Refused(category), "Aver on {name}");
        assert_eq!(q, Outcome::Refused(category), "dcap-qvl on {name}");
    }
}
