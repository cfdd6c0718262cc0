//! `/attest/TdxVm` through the core with real TDX quotes at their pinned
//! times: Azure's TDX EAT claims, the TCB verdict from the collateral
//! cache, runtime data bound to REPORT_DATA, the default policy's refusal
//! of a debug TD, and the negatives (wrong runtime data, an SGX quote, a
//! truncated quote, no collateral when it is required).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::dcap::TeeType;
use aver_attestation::dcap::collateral::{CollateralBundle, verify_collateral};
use aver_attestation::dcap::{DcapVerifier, TrustAnchors};
use aver_attestation::evidence::tdx::{EAT_PROFILE, TDX_VM};
use aver_attestation::{
    ActivePolicy, AttestRequest, PolicyChoice, TypedData, VerificationTime, Verifiers,
    parse_rfc3339, tail,
};
use serde_json::{Map, Value};

const V4: &str = "tdx/dcap-qvl-tdx-v4";

fn v4_pin() -> VerificationTime {
    parse_rfc3339("2025-07-01T00:00:00Z").unwrap()
}

/// The v4 quote and a verifier whose cache holds its verified collateral.
fn v4_with_cache(test: &str) -> Option<(Vec<u8>, Verifiers)> {
    let quote = aver_testkit::read_vector(test, &format!("{V4}/quote.bin"))?;
    let json = aver_testkit::read_vector(test, &format!("{V4}/collateral.json"))?;
    let bundle = CollateralBundle::from_dcap_qvl_json(&json).unwrap();
    let c = verify_collateral(&bundle, &TrustAnchors::intel(), v4_pin()).unwrap();
    let verifiers = Verifiers::production();
    assert!(verifiers.collateral.insert(c));
    Some((quote, verifiers))
}

fn request(quote: Vec<u8>) -> AttestRequest {
    AttestRequest {
        evidence: quote,
        ..AttestRequest::default()
    }
}

fn policy_claims(
    claims: Map<String, Value>,
    policy: &str,
) -> Result<Map<String, Value>, &'static str> {
    let active = ActivePolicy::from_text(policy, None).unwrap();
    tail::claims(
        &TDX_VM,
        PolicyChoice::Active(&active),
        claims,
        None,
        &aver_policy::Budget::default(),
    )
    .map(|(c, _)| c)
    .map_err(|e| e.code)
}

#[test]
fn v4_quote_gives_azures_tdx_claims_with_the_tcb_verdict() {
    let test = "v4_quote_gives_azures_tdx_claims_with_the_tcb_verdict";
    let Some((quote, verifiers)) = v4_with_cache(test) else {
        return;
    };
    let v = aver_attestation::verify(&TDX_VM, &verifiers, &request(quote), v4_pin()).unwrap();
    let c = &v.claims;
    assert_eq!(c["x-ms-attestation-type"], "tdxvm");
    assert_eq!(c["x-ms-ver"], "1.0");
    assert_eq!(c["eat_profile"], EAT_PROFILE);
    assert_eq!(c["dbgstat"], "disabled");
    assert_eq!(c["intuse"], "generic");
    assert_eq!(c["attester_tcb_status"], "UpToDate");
    assert_eq!(c["x-aver-td-relaunch-advised"], false);
    assert_eq!(
        c["tdx_mrtd"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        c["tdx_rtmr0"],
        "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
    );
    assert_eq!(
        c["tdx_rtmr2"],
        "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
    );
    assert_eq!(c["tdx_rtmr3"], "0".repeat(96));
    assert_eq!(c["tdx_td_attributes"], "0000001000000000");
    assert_eq!(c["tdx_td_attributes_debug"], false);
    assert_eq!(c["tdx_td_attributes_septve_disable"], true);
    assert_eq!(c["tdx_td_attributes_key_locker"], false);
    assert_eq!(c["tdx_td_attributes_perfmon"], false);
    assert_eq!(c["tdx_td_attributes_protection_keys"], false);
    assert!(c["tdx_tee_tcb_svn"].as_str().unwrap().starts_with("0601"));
    // TEE_TCB_SVN 06 01: minor 6, major 1.
    assert_eq!(c["tdx_seamsvn"], 0x0106);
    assert!(
        c["tdx_report_data"]
            .as_str()
            .unwrap()
            .starts_with("9a9d48e7")
    );
    // Every hex claim has its field's full size, lowercase.
    for (name, len) in [
        ("tdx_mrsignerseam", 96),
        ("tdx_mrseam", 96),
        ("tdx_mrtd", 96),
        ("tdx_rtmr0", 96),
        ("tdx_rtmr1", 96),
        ("tdx_rtmr2", 96),
        ("tdx_rtmr3", 96),
        ("tdx_mrconfigid", 96),
        ("tdx_mrowner", 96),
        ("tdx_mrownerconfig", 96),
        ("tdx_report_data", 128),
        ("tdx_seam_attributes", 16),
        ("tdx_td_attributes", 16),
        ("tdx_xfam", 16),
        ("tdx_tee_tcb_svn", 32),
    ] {
        let s = c[name].as_str().unwrap_or_else(|| panic!("{name}"));
        assert_eq!(s.len(), len, "{name}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{name}"
        );
    }
    assert_eq!(v.facts.to_json()["tcb"]["status"], "UpToDate");
    // The default policy permits a production TD.
    policy_claims(v.claims, TDX_VM.default_policy.unwrap()).unwrap();
}

#[test]
fn tdx_collateral_does_not_answer_for_sgx() {
    let test = "tdx_collateral_does_not_answer_for_sgx";
    let Some((_, verifiers)) = v4_with_cache(test) else {
        return;
    };
    let fmspc = [0xB0, 0xC0, 0x6F, 0, 0, 0];
    assert!(
        verifiers
            .collateral
            .get_for(TeeType::Tdx, &fmspc, v4_pin())
            .is_some()
    );
    assert!(verifiers.collateral.get(&fmspc, v4_pin()).is_none());
    // What a collateral source refreshes: the TDX entry, as TDX.
    let listed = verifiers.collateral.list();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].tee, listed[0].fmspc), (TeeType::Tdx, fmspc));
    assert!(listed[0].newest);
    assert_eq!(listed[0].ca, "platform");
}

#[test]
fn wrong_runtime_data_is_refused() {
    let test = "wrong_runtime_data_is_refused";
    let Some((quote, verifiers)) = v4_with_cache(test) else {
        return;
    };
    let mut r = request(quote);
    r.runtime_data = Some(TypedData {
        bytes: b"not what the TD put in REPORT_DATA".to_vec(),
        json: None,
    });
    let e = aver_attestation::verify(&TDX_VM, &verifiers, &r, v4_pin()).unwrap_err();
    assert_eq!(e.code, "RuntimeDataMismatch", "{e}");
}

#[test]
fn truncated_quote_is_refused() {
    let test = "truncated_quote_is_refused";
    let Some((quote, verifiers)) = v4_with_cache(test) else {
        return;
    };
    for len in [0, 47, 48 + 584, quote.len() / 2] {
        let r = request(quote[..len].to_vec());
        let e = aver_attestation::verify(&TDX_VM, &verifiers, &r, v4_pin()).unwrap_err();
        assert_eq!(e.code, "InvalidQuote", "{len}: {e}");
    }
}

#[test]
fn sgx_quote_sent_to_tdxvm_is_refused() {
    let test = "sgx_quote_sent_to_tdxvm_is_refused";
    let Some(quote) = aver_testkit::read_vector(test, "sgx/dcap-qvl-sgx-v3/quote.bin") else {
        return;
    };
    let e = aver_attestation::verify(&TDX_VM, &Verifiers::production(), &request(quote), v4_pin())
        .unwrap_err();
    assert_eq!(e.code, "InvalidQuote", "{e}");
    assert!(e.message.contains("SGX"), "{e}");
}

#[test]
fn missing_collateral_is_refused_when_required() {
    let test = "missing_collateral_is_refused_when_required";
    let Some(quote) = aver_testkit::read_vector(test, &format!("{V4}/quote.bin")) else {
        return;
    };
    let mut verifiers = Verifiers::production();
    verifiers.require_collateral = true;
    let e = aver_attestation::verify(&TDX_VM, &verifiers, &request(quote.clone()), v4_pin())
        .unwrap_err();
    assert_eq!(e.code, "CollateralMissing", "{e}");
    assert!(e.message.contains("B0C06F000000"), "{e}");
    // Without the requirement: verified, the status Unknown.
    let v = aver_attestation::verify(&TDX_VM, &Verifiers::production(), &request(quote), v4_pin())
        .unwrap();
    assert_eq!(v.claims["attester_tcb_status"], "Unknown");
}

#[test]
fn outdated_platform_is_refused_through_tdxvm() {
    let test = "outdated_platform_is_refused_through_tdxvm";
    let dir = "tdx/dcap-qvl-tdx-v5-outdated";
    let (Some(quote), Some(json)) = (
        aver_testkit::read_vector(test, &format!("{dir}/quote.bin")),
        aver_testkit::read_vector(test, &format!("{dir}/collateral.json")),
    ) else {
        return;
    };
    let time = parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    let bundle = CollateralBundle::from_dcap_qvl_json(&json).unwrap();
    let verifiers = Verifiers::production();
    verifiers
        .collateral
        .insert(verify_collateral(&bundle, &TrustAnchors::intel(), time).unwrap());
    let e = aver_attestation::verify(&TDX_VM, &verifiers, &request(quote), time).unwrap_err();
    assert_eq!(e.code, "TcbLevelNotSupported", "{e}");
}

/// The Azure confidential VM's TD quote: its REPORT_DATA[0..32] is the
/// SHA-256 of the HCL runtime JSON in the same capture.
#[test]
fn azure_cvm_td_quote_binds_its_runtime_json() {
    let test = "azure_cvm_td_quote_binds_its_runtime_json";
    let (Some(quote), Some(hcl)) = (
        aver_testkit::read_vector(test, "tpm/azure-cvm-vtpm-tdx/td-quote.bin"),
        aver_testkit::read_vector(test, "tpm/azure-cvm-vtpm-tdx/hcl-report.bin"),
    ) else {
        return;
    };
    let len = u32::from_le_bytes(hcl[1232..1236].try_into().unwrap()) as usize;
    let runtime = hcl[1236..1236 + len].to_vec();
    let json: Value = serde_json::from_slice(&runtime).unwrap();
    let time = parse_rfc3339("2024-01-01T00:00:00Z").unwrap();
    let mut r = request(quote);
    r.runtime_data = Some(TypedData {
        bytes: runtime,
        json: Some(json.clone()),
    });
    let v = aver_attestation::verify(&TDX_VM, &Verifiers::production(), &r, time).unwrap();
    assert_eq!(v.claims["x-ms-runtime"], json);
    assert_eq!(v.facts.to_json()["runtime_data_bound"], true);
    assert!(
        v.claims["tdx_report_data"]
            .as_str()
            .unwrap()
            .starts_with("9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839")
    );
    // One changed byte of the runtime data breaks the binding.
    let mut bad = r.clone();
    bad.runtime_data.as_mut().unwrap().bytes[0] ^= 1;
    let e = aver_attestation::verify(&TDX_VM, &Verifiers::production(), &bad, time).unwrap_err();
    assert_eq!(e.code, "RuntimeDataMismatch");
    // Init-time data is held to MRCONFIGID, which this TD left zero.
    let mut init = r;
    init.init_time_data = Some(TypedData {
        bytes: b"{}".to_vec(),
        json: None,
    });
    let e = aver_attestation::verify(&TDX_VM, &Verifiers::production(), &init, time).unwrap_err();
    assert_eq!(e.code, "InitTimeDataMismatch");
}

/// trustee's debug TD quote verifies (its claims say so) and the default
/// policy refuses it; a policy that permits debug TDs accepts it.
#[test]
fn debug_td_is_the_policys_decision() {
    let test = "debug_td_is_the_policys_decision";
    let Some(quote) = aver_testkit::read_vector(test, "tdx/trustee/tdx_quote_4.dat") else {
        return;
    };
    let time = parse_rfc3339("2023-07-01T01:00:00Z").unwrap();
    let v = aver_attestation::verify(
        &TDX_VM,
        &Verifiers::new(DcapVerifier::intel()),
        &request(quote),
        time,
    )
    .unwrap();
    assert_eq!(v.claims["dbgstat"], "enabled");
    assert_eq!(v.claims["tdx_td_attributes_debug"], true);
    assert_eq!(
        policy_claims(v.claims.clone(), TDX_VM.default_policy.unwrap()).unwrap_err(),
        "PolicyEvaluationError"
    );
    policy_claims(
        v.claims,
        "version=1.0; authorizationrules { => permit(); }; issuancerules {};",
    )
    .unwrap();
}
