//! `/attest/TdxVm` with a CCEL event log (Aver's `ccelEventLog`
//! extension), through the core: the real GCP TD quote (no collateral, so
//! TCB status `Unknown`) and its log replay exactly to RTMR0–2; the log's
//! claims reach the policy; a log that differs from the quote, or does not
//! parse, is refused with its code; other types refuse a log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::evidence::sgx::SGX_ENCLAVE;
use aver_attestation::evidence::tdx::{
    CCEL_EVENTS_CLAIM, CCEL_REPLAYED_CLAIM, CCEL_RTMRS_CLAIM, TDX_VM,
};
use aver_attestation::{
    ActivePolicy, AttestRequest, PolicyChoice, VerificationTime, Verifiers, parse_rfc3339, tail,
};
use serde_json::{Map, Value};

const DIR: &str = "tdx/go-tdx-guest-cos113-ccel";
const RTMR0: &str = "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6";

/// Inside the PCK certificate's validity (2024-07-02 … 2031-07-02).
fn pin() -> VerificationTime {
    parse_rfc3339("2025-01-01T00:00:00Z").unwrap()
}

fn vectors(test: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    Some((
        aver_testkit::read_vector(test, &format!("{DIR}/quote.bin"))?,
        aver_testkit::read_vector(test, &format!("{DIR}/ccel_data.dat"))?,
    ))
}

fn request(quote: &[u8], log: Option<&[u8]>) -> AttestRequest {
    AttestRequest {
        evidence: quote.to_vec(),
        ccel_event_log: log.map(<[u8]>::to_vec),
        ..AttestRequest::default()
    }
}

fn verify(
    req: &AttestRequest,
) -> Result<aver_attestation::Verified, aver_attestation::AttestError> {
    aver_attestation::verify(&TDX_VM, &Verifiers::production(), req, pin())
}

fn token_claims(claims: Map<String, Value>, policy: &str) -> Map<String, Value> {
    let active = ActivePolicy::from_text(policy, None).unwrap();
    tail::claims(
        &TDX_VM,
        PolicyChoice::Active(&active),
        claims,
        None,
        &aver_policy::Budget::default(),
    )
    .map(|(c, _)| c)
    .unwrap()
}

#[test]
fn gcp_quote_and_ccel_replay_and_give_claims() {
    let test = "gcp_quote_and_ccel_replay_and_give_claims";
    let Some((quote, log)) = vectors(test) else {
        return;
    };
    let without = verify(&request(&quote, None)).unwrap();
    let with = verify(&request(&quote, Some(&log))).unwrap();
    let c = &with.claims;
    assert_eq!(c["attester_tcb_status"], "Unknown");
    assert_eq!(c["tdx_rtmr0"], RTMR0);
    assert_eq!(c[CCEL_REPLAYED_CLAIM], true);
    assert_eq!(c[CCEL_RTMRS_CLAIM], serde_json::json!([0, 1, 2]));
    // Azure's claims are exactly those without a log.
    for (k, v) in &without.claims {
        assert_eq!(&c[k], v, "{k}");
    }
    let extra: Vec<&String> = c
        .keys()
        .filter(|k| !without.claims.contains_key(*k))
        .collect();
    assert_eq!(extra.len(), 3, "{extra:?}");
    assert!(extra.iter().all(|k| k.starts_with("x-aver-ccel-")));
    // The events, in the TPM `events` shape with the RTMR of each.
    let events = c[CCEL_EVENTS_CLAIM]["Events"].as_array().unwrap();
    assert_eq!(events.len(), 44);
    assert_eq!(events[0]["EventTypeString"], "EV_NO_ACTION");
    assert_eq!(events[0]["Rtmr"], Value::Null);
    let last = &events[43];
    assert_eq!(last["EventTypeString"], "EV_EFI_ACTION");
    assert_eq!(last["PcrIndex"], 2);
    assert_eq!(last["Rtmr"], 1);
    assert_eq!(
        last["ProcessedData"]["String"],
        "Exit Boot Services Returned with Success"
    );
    assert_eq!(last["Digests"][0]["AlgorithmId"], "sha384");
    // The facts say what was replayed.
    assert_eq!(
        with.facts.to_json()["ccel"]["rtmrs"],
        serde_json::json!([0, 1, 2])
    );
    assert_eq!(with.facts.to_json()["ccel"]["records"], 44);
    assert_eq!(with.facts.to_json()["ccel"]["paddingByte"], 255);
    assert!(without.facts.to_json().get("ccel").is_none());

    // A policy reads the events; the token keeps the summary, not the list.
    let policy = r#"version=1.2;
authorizationrules { [type=="x-aver-ccel-replayed", value==true] => permit(); };
issuancerules {
  c:[type=="x-aver-ccel-events"] => issue(type="ipl", value=JmesPath(c.value, "length(Events[?Rtmr==`2`])"));
};"#;
    let t = token_claims(with.claims.clone(), policy);
    // Azure's JmesPath() gives the result's JSON text.
    assert_eq!(t["ipl"], "20");
    assert_eq!(t[CCEL_REPLAYED_CLAIM], true);
    assert!(!t.contains_key(CCEL_EVENTS_CLAIM));
    // Without a log the same policy denies (no replayed claim).
    let active = ActivePolicy::from_text(policy, None).unwrap();
    let e = tail::claims(
        &TDX_VM,
        PolicyChoice::Active(&active),
        without.claims,
        None,
        &aver_policy::Budget::default(),
    )
    .unwrap_err();
    assert_eq!(e.code, "PolicyEvaluationError");
}

#[test]
fn a_log_that_differs_from_the_quote_is_refused() {
    let test = "a_log_that_differs_from_the_quote_is_refused";
    let Some((quote, log)) = vectors(test) else {
        return;
    };
    // One digest of the last RTMR2 event (record #41, EV_IPL, 743 bytes of
    // data ending at offset 17900) flipped.
    let mut bad = log.clone();
    let digest = 17091 + 14;
    bad[digest] ^= 0xff;
    let e = verify(&request(&quote, Some(&bad))).unwrap_err();
    assert_eq!(e.code, "EventLogReplayMismatch");
    assert!(e.message.contains("RTMR2 (MR index 3)"), "{}", e.message);
    assert!(e.message.contains("20 event(s)"), "{}", e.message);
    assert!(e.message.contains("record #41 EV_IPL"), "{}", e.message);
    // The log of another TD: dcap-qvl's v4 quote is verified (at its own
    // pin) and the GCP log does not replay to its RTMR0.
    if let Some(other) = aver_testkit::read_vector(test, "tdx/dcap-qvl-tdx-v4/quote.bin") {
        let e = aver_attestation::verify(
            &TDX_VM,
            &Verifiers::production(),
            &request(&other, Some(&log)),
            parse_rfc3339("2025-07-01T00:00:00Z").unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.code, "EventLogReplayMismatch");
        assert!(e.message.contains("RTMR0"), "{}", e.message);
        assert!(e.message.contains("16 event(s)"), "{}", e.message);
    }
}

#[test]
fn a_malformed_log_is_refused_after_the_quote_verifies() {
    let test = "a_malformed_log_is_refused_after_the_quote_verifies";
    let Some((quote, log)) = vectors(test) else {
        return;
    };
    for bad in [&log[..18100], &b"not an event log"[..], &[0xFF; 1024][..]] {
        let e = verify(&request(&quote, Some(bad))).unwrap_err();
        assert_eq!(e.code, "EventLogMalformed", "{}", e.message);
        assert!(e.message.contains("CCEL"), "{}", e.message);
    }
    // A broken quote is named as such first, whatever the log.
    let e = verify(&request(&quote[..600], Some(b"junk"))).unwrap_err();
    assert_eq!(e.code, "InvalidQuote");
}

#[test]
fn other_types_refuse_a_ccel_log() {
    let req = AttestRequest {
        evidence: vec![0; 16],
        ccel_event_log: Some(vec![0xFF; 16]),
        ..AttestRequest::default()
    };
    let e =
        aver_attestation::verify(&SGX_ENCLAVE, &Verifiers::production(), &req, pin()).unwrap_err();
    assert_eq!(e.code, "InvalidParameter");
    assert!(e.message.contains("ccelEventLog"), "{}", e.message);
}
