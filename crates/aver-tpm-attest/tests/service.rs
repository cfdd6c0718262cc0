//! The service on real evidence from `shared/vectors/tpm` (pure: no TPM).
//! Recorded quotes carry a fixed extraData, so these tests seal a context
//! with that value as the challenge (`init_with_challenge`, test-only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_testkit::read_vector;
use aver_tpm_attest::certs::verify_ek_certificate;
use aver_tpm_attest::{
    ReplayCache, RequestOptions, TpmAttestConfig, TpmAttestService, TpmError, TpmStep, VerifiedTpm,
    decode_message,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

const GCP: &str = "tpm/go-attestation-windows-gcp-e2e";
const SWTPM: &str = "tpm/swtpm-local";
/// 2026-11-28T12:00:00Z, just after the swtpm-local EK certificate's notBefore.
const NOW: u64 = 1_795_867_200;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn data(payload: Value) -> String {
    b64(json!({ "payload": payload }).to_string().as_bytes())
}

fn ak_ca() -> (Vec<u8>, Vec<u8>) {
    let kp = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "test AK CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let cert = p.self_signed(&kp).unwrap();
    (cert.der().to_vec(), kp.serialize_der())
}

fn service() -> TpmAttestService {
    service_with_key([5u8; 32])
}

fn service_with_key(k: [u8; 32]) -> TpmAttestService {
    let (cert, key) = ak_ca();
    TpmAttestService::new(TpmAttestConfig::new(k, cert, key, vec![])).unwrap()
}

fn context_for(svc: &TpmAttestService, challenge: &[u8], now: u64) -> Value {
    svc.init_with_challenge(challenge, now).unwrap()["service_context"].clone()
}

/// The GCP Shielded VM evidence as a `request` payload.
fn gcp_request(t: &str, svc: &TpmAttestService, now: u64) -> Option<Value> {
    let ak = read_vector(t, &format!("{GCP}/ak.tpmt_public"))?;
    let quote = read_vector(t, &format!("{GCP}/quote.tpms_attest"))?;
    let sig = read_vector(t, &format!("{GCP}/quote.tpmt_signature"))?;
    let log = read_vector(t, &format!("{GCP}/eventlog.bin"))?;
    let pcrs: Value =
        serde_json::from_slice(&read_vector(t, &format!("{GCP}/pcrs-from-tpm.json"))?).unwrap();
    let values: Vec<Value> = pcrs["sha1"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(i, v)| {
            json!({"index": i.parse::<u32>().unwrap(), "digest": b64(&hex::decode(v.as_str().unwrap()).unwrap())})
        })
        .collect();
    Some(json!({
        "type": "request",
        "service_context": context_for(svc, &[], now),
        "tpm_att_data": {"current_attestation": {
            "logs": [{"type": "TCG", "log": b64(&log)}],
            "aik_pub": b64(&ak),
            "pcrs": [{"algorithm": 4, "values": values}],
            "quote": b64(&quote),
            "signature": b64(&sig),
        }}
    }))
}

fn att(r: &mut Value) -> &mut Value {
    &mut r["tpm_att_data"]["current_attestation"]
}

fn verified(r: Result<TpmStep, TpmError>) -> VerifiedTpm {
    match r.unwrap() {
        TpmStep::Verified(v) => *v,
        TpmStep::Reply(p) => panic!("unexpected reply {p}"),
    }
}

fn code(r: Result<TpmStep, TpmError>) -> (&'static str, String) {
    match r {
        Ok(_) => panic!("must fail but succeeded"),
        Err(e) => (e.code(), e.to_string()),
    }
}

#[test]
fn gcp_shielded_vm_evidence_verifies_into_claims() {
    let t = "gcp_shielded_vm_evidence_verifies_into_claims";
    let svc = service();
    let cache = ReplayCache::default();
    let Some(req) = gcp_request(t, &svc, NOW) else {
        return;
    };
    let v = verified(svc.handle(&data(req.clone()), NOW, &cache));
    let c = &v.claims;
    assert_eq!(c["x-ms-attestation-type"], "tpm");
    assert_eq!(c["tpmVersion"], 2);
    assert_eq!(c["aikValidated"], false);
    assert_eq!(c["secureBootEnabled"], true);
    assert_eq!(c["pcrs"]["PCRs"].as_array().unwrap().len(), 24);
    assert_eq!(
        c["pcrs"]["PCRs"][0]["Digests"]["SHA1"],
        "51c323de0c0c694f4601cdd02beb58ff13629f74"
    );
    assert_eq!(
        c["pcrs"]["PCRs"][7]["Digests"]["SHA1"],
        "859a5877266b5c909613468091a73380a5386786"
    );
    // aikPubHash = base64(SHA-256(SPKI DER)), 32 bytes.
    let h = base64::engine::general_purpose::STANDARD
        .decode(c["aikPubHash"].as_str().unwrap())
        .unwrap();
    assert_eq!(h.len(), 32);
    // Events from replay-verified PCRs only (the log extends 0,4,5,7,11-14).
    let events = c["events"]["Events"].as_array().unwrap();
    assert!(!events.is_empty());
    let replayed: std::collections::BTreeSet<u32> =
        v.replayed_pcrs.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        replayed.into_iter().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14]
    );
    // The recorded MAA sample policies evaluate on these claims.
    let incoming = aver_policy::claims_from_json(c);
    if let Some(text) = read_vector(
        t,
        "maa/policies/docs-tpm-sample-policies_v1.2-windows-props.txt",
    ) {
        let p = aver_policy::Policy::parse(std::str::from_utf8(&text).unwrap()).unwrap();
        let ev = p.evaluate(&incoming).unwrap();
        assert_eq!(ev.decision, aver_policy::Decision::Permit);
        assert_eq!(ev.issued_json()["SecureBootEnabled"], true);
        assert_eq!(ev.issued_json()["aikValidated"], false);
    }
    if let Some(text) = read_vector(
        t,
        "maa/policies/docs-tpm-attestation-concepts_simple-v1.0.txt",
    ) {
        let p = aver_policy::Policy::parse(std::str::from_utf8(&text).unwrap()).unwrap();
        let ev = p.evaluate(&incoming).unwrap();
        // aikValidated is false: PlatformAttested is not issued.
        assert!(!ev.issued_json().contains_key("PlatformAttested"));
    }

    // Replay of the same request.
    let (c, _) = code(svc.handle(&data(req), NOW, &cache));
    assert_eq!(c, "ServiceContextReplayed");
}

#[test]
fn gcp_evidence_negative_cases() {
    let t = "gcp_evidence_negative_cases";
    let svc = service();
    let cache = ReplayCache::default();
    let Some(good) = gcp_request(t, &svc, NOW) else {
        return;
    };
    let fresh = |mut r: Value| {
        r["service_context"] = context_for(&svc, &[], NOW);
        r
    };

    // Expired context.
    let mut r = fresh(good.clone());
    r["service_context"] = context_for(&svc, &[], NOW - 301);
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "ServiceContextExpired"
    );
    // Context sealed by another service key.
    let mut r = good.clone();
    r["service_context"] = context_for(&service_with_key([6u8; 32]), &[], NOW);
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "ServiceContextInvalid"
    );
    // Wrong challenge.
    let mut r = good.clone();
    r["service_context"] = context_for(&svc, b"another challenge", NOW);
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "ChallengeMismatch"
    );
    // A truncated log is malformed.
    let mut r = fresh(good.clone());
    let log = read_vector(t, &format!("{GCP}/eventlog.bin")).unwrap();
    att(&mut r)["logs"][0]["log"] = json!(b64(&log[..log.len() - 7]));
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "EventLogMalformed"
    );
    // A PCR value changed: the quote's digest no longer matches.
    let mut r = fresh(good.clone());
    att(&mut r)["pcrs"][0]["values"][3]["digest"] = json!(b64(&[1u8; 20]));
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "PcrDigestMismatch"
    );
    // A log whose first event digest (PCR 0) was altered.
    let mut r = fresh(good.clone());
    let mut bad_log = log.clone();
    bad_log[8] ^= 1;
    att(&mut r)["logs"][0]["log"] = json!(b64(&bad_log));
    let (c, m) = code(svc.handle(&data(r), NOW, &cache));
    assert_eq!(c, "EventLogReplayMismatch", "{m}");
    assert!(m.contains("PCR 0 bank sha1"), "{m}");
    let r = fresh(good.clone());
    let opts = RequestOptions {
        required_pcr_mask: None,
        require_valid_aik_cert: true,
    };
    assert_eq!(
        code(svc.handle_with(&data(r), NOW, &cache, &opts)).0,
        "AikCertificateRequired"
    );
    // No log while PCRs 0-7 are quoted.
    let mut r = fresh(good.clone());
    att(&mut r)["logs"] = json!([]);
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "EventLogMalformed"
    );
    // Tampered signature.
    let mut r = fresh(good.clone());
    let mut sig = read_vector(t, &format!("{GCP}/quote.tpmt_signature")).unwrap();
    let n = sig.len();
    sig[n - 2] ^= 0x40;
    att(&mut r)["signature"] = json!(b64(&sig));
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "QuoteSignatureInvalid"
    );
    // Tampered quote (clock byte).
    let mut r = fresh(good.clone());
    let mut q = read_vector(t, &format!("{GCP}/quote.tpms_attest")).unwrap();
    let signer_len = u16::from_be_bytes([q[6], q[7]]) as usize;
    let clock = 6 + 2 + signer_len + 2; // empty extraData
    q[clock + 7] ^= 1;
    att(&mut r)["quote"] = json!(b64(&q));
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "QuoteSignatureInvalid"
    );
    // Not-an-AK: every field fine but aik_pub garbage.
    let mut r = fresh(good);
    att(&mut r)["aik_pub"] = json!("AAAA");
    assert_eq!(
        code(svc.handle(&data(r), NOW, &cache)).0,
        "InvalidTpmMessage"
    );
}

#[test]
fn swtpm_recorded_quote_without_log() {
    let t = "swtpm_recorded_quote_without_log";
    let (Some(ak), Some(quote), Some(sig), Some(nonce)) = (
        read_vector(t, &format!("{SWTPM}/ak.tpm2b_public")),
        read_vector(t, &format!("{SWTPM}/quote.msg")),
        read_vector(t, &format!("{SWTPM}/quote.sig")),
        read_vector(t, &format!("{SWTPM}/nonce.hex")),
    ) else {
        return;
    };
    let nonce = hex::decode(String::from_utf8(nonce).unwrap().trim()).unwrap();
    let svc = service();
    let cache = ReplayCache::default();
    let pcr = |h: &str| b64(&hex::decode(h).unwrap());
    let req = |ctx: Value| {
        json!({"type": "request", "service_context": ctx, "tpm_att_data": {"current_attestation": {
            "aik_pub": b64(&ak), "quote": b64(&quote), "signature": b64(&sig),
            "pcrs": [{"algorithm": 11, "values": [
                {"index": 0, "digest": pcr(&"00".repeat(32))},
                {"index": 16, "digest": pcr("9851312028952521510e8eaab5be94e7dc24b5fc292b2e9781173cf11ffa9878")},
                {"index": 23, "digest": pcr("63a2cc09272ae4d03d8ae482a394d209bf2dfd1449f1dd75552198264a168ac3")},
            ]}],
        }}})
    };
    // PCR 0 is quoted, so by default the log is required.
    let (c, _) = code(svc.handle(&data(req(context_for(&svc, &nonce, NOW))), NOW, &cache));
    assert_eq!(c, "EventLogMalformed");
    // With required_pcr_mask = 0 the quote alone verifies.
    let opts = RequestOptions {
        required_pcr_mask: Some(0),
        require_valid_aik_cert: false,
    };
    let v = verified(svc.handle_with(
        &data(req(context_for(&svc, &nonce, NOW))),
        NOW,
        &cache,
        &opts,
    ));
    assert_eq!(v.claims["pcrs"]["PCRs"].as_array().unwrap().len(), 3);
    assert!(v.claims.get("events").is_none());
}

#[test]
fn ek_certificate_chain_from_vectors() {
    let t = "ek_certificate_chain_from_vectors";
    let (Some(cert), Some(ek), Some(root), Some(inter)) = (
        read_vector(t, &format!("{SWTPM}/ek-cert.der")),
        read_vector(t, &format!("{SWTPM}/ek.pub")),
        read_vector(t, &format!("{SWTPM}/swtpm-localca-rootca-cert.pem")),
        read_vector(t, &format!("{SWTPM}/issuercert.pem")),
    ) else {
        return;
    };
    let der = |pem: &[u8]| {
        CertificateDer::from_pem_slice(pem)
            .unwrap()
            .as_ref()
            .to_vec()
    };
    let (root, inter) = (der(&root), der(&inter));
    let ek = aver_tpm::parse_public2b(&ek).unwrap();
    let key = aver_tpm::AkPublicKey::from_public(&ek).unwrap();
    verify_ek_certificate(
        &cert,
        std::slice::from_ref(&inter),
        std::slice::from_ref(&root),
        NOW,
        &key,
    )
    .unwrap();
    // Before the certificate's notBefore.
    let e = verify_ek_certificate(
        &cert,
        std::slice::from_ref(&inter),
        std::slice::from_ref(&root),
        NOW - 3600,
        &key,
    )
    .unwrap_err();
    assert_eq!(e.code(), "EkCertificateUntrusted");
    // Without the intermediate.
    let e = verify_ek_certificate(&cert, &[], std::slice::from_ref(&root), NOW, &key).unwrap_err();
    assert_eq!(e.code(), "EkCertificateUntrusted");
    // Another root.
    let (other, _) = ak_ca();
    let e = verify_ek_certificate(&cert, std::slice::from_ref(&inter), &[other], NOW, &key)
        .unwrap_err();
    assert_eq!(e.code(), "EkCertificateUntrusted");
    // The right chain but another key.
    let ak =
        aver_tpm::parse_public2b(&read_vector(t, &format!("{SWTPM}/ak.tpm2b_public")).unwrap())
            .unwrap();
    let e = verify_ek_certificate(
        &cert,
        &[inter],
        &[root],
        NOW,
        &aver_tpm::AkPublicKey::from_public(&ak).unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not ek_pub"), "{e}");
}

#[test]
fn enroll_and_activate_in_software() {
    // The service side of enrollment with the recorded swtpm EK; the
    // secret cannot be recovered without the TPM, so only the failure
    // paths and the message shapes are checked here (the swtpm tests in
    // aver-tpm-client run the real ActivateCredential).
    let t = "enroll_and_activate_in_software";
    let (Some(cert), Some(ek), Some(root), Some(inter), Some(ak)) = (
        read_vector(t, &format!("{SWTPM}/ek-cert.der")),
        read_vector(t, &format!("{SWTPM}/ek.pub")),
        read_vector(t, &format!("{SWTPM}/swtpm-localca-rootca-cert.pem")),
        read_vector(t, &format!("{SWTPM}/issuercert.pem")),
        read_vector(t, &format!("{SWTPM}/ak.tpm2b_public")),
    ) else {
        return;
    };
    let der = |pem: &[u8]| {
        CertificateDer::from_pem_slice(pem)
            .unwrap()
            .as_ref()
            .to_vec()
    };
    let (ca, key) = ak_ca();
    let mut cfg = TpmAttestConfig::new([9u8; 32], ca, key, vec![der(&root)]);
    cfg.ek_intermediates = vec![der(&inter)];
    let svc = TpmAttestService::new(cfg).unwrap();
    let cache = ReplayCache::default();
    let enroll =
        json!({"type": "enroll", "ek_cert": b64(&cert), "ek_pub": b64(&ek), "ak_pub": b64(&ak)});
    let reply = match svc.handle(&data(enroll.clone()), NOW, &cache).unwrap() {
        TpmStep::Reply(p) => p,
        TpmStep::Verified(_) => panic!(),
    };
    let blob = URL_SAFE_NO_PAD
        .decode(reply["credential_blob"].as_str().unwrap())
        .unwrap();
    let secret = URL_SAFE_NO_PAD
        .decode(reply["encrypted_secret"].as_str().unwrap())
        .unwrap();
    // TPM2B_ID_OBJECT: size, TPM2B(HMAC-SHA256), AES-CFB(TPM2B(32-byte secret)).
    assert_eq!(blob.len(), 2 + 2 + 32 + 2 + 32);
    assert_eq!(&blob[2..4], &[0, 32]);
    // TPM2B_ENCRYPTED_SECRET: RSA-2048 ciphertext.
    assert_eq!(secret.len(), 2 + 256);
    let activate = |s: &[u8], ctx: &Value, now| {
        svc.handle(
            &data(json!({"type": "activate", "secret": b64(s), "service_context": ctx})),
            now,
            &cache,
        )
    };
    let ctx = &reply["service_context"];
    assert_eq!(
        code(activate(&[0u8; 32], ctx, NOW + 301)).0,
        "ServiceContextExpired"
    );
    assert_eq!(code(activate(&[0u8; 32], ctx, NOW)).0, "AkNotBoundToEk");
    assert_eq!(
        code(activate(&[0u8; 32], ctx, NOW)).0,
        "ServiceContextReplayed"
    );
    // An attest context is not an activate context.
    let init_ctx = context_for(&svc, b"x", NOW);
    assert_eq!(
        code(activate(&[0u8; 32], &init_ctx, NOW)).0,
        "ServiceContextInvalid"
    );
    // Untrusted at a time before the EK certificate existed.
    assert_eq!(
        code(svc.handle(&data(enroll), NOW - 3600, &cache)).0,
        "EkCertificateUntrusted"
    );
}

#[test]
fn init_reply_shape() {
    let svc = service();
    let cache = ReplayCache::default();
    let TpmStep::Reply(p) = svc
        .handle("eyJwYXlsb2FkIjogeyJ0eXBlIjogImFpa2NlcnQifX0", NOW, &cache)
        .unwrap()
    else {
        panic!()
    };
    let ch = URL_SAFE_NO_PAD
        .decode(p["challenge"].as_str().unwrap())
        .unwrap();
    assert_eq!(ch.len(), 32);
    assert!(p["service_context"].as_str().unwrap().len() > 40);
    assert!(matches!(
        decode_message(&data(json!({"type": "request"}))),
        Err(TpmError::InvalidTpmMessage(_))
    ));
}

#[test]
fn ak_certificate_issue_and_validate() {
    let t = "ak_certificate_issue_and_validate";
    let (Some(ak), Some(akec)) = (
        read_vector(t, &format!("{SWTPM}/ak.tpm2b_public")),
        read_vector(t, &format!("{SWTPM}/akec.pub")),
    ) else {
        return;
    };
    let _ = akec;
    let ak = aver_tpm::parse_public2b(&ak).unwrap();
    let (ca, key) = ak_ca();
    let ca = aver_tpm_attest::certs::AkCa::new(ca, &key, 3600).unwrap();
    let spki = ak.to_spki_der().unwrap();
    let name = ak.name().unwrap();
    let cert = ca.issue(&spki, &name, NOW).unwrap();
    let key = aver_tpm::AkPublicKey::from_public(&ak).unwrap();
    ca.validate(&cert, &key, &name, NOW + 10).unwrap();
    // Expired after its lifetime.
    assert_eq!(
        ca.validate(&cert, &key, &name, NOW + 7200)
            .unwrap_err()
            .code(),
        "AikCertificateInvalid"
    );
    // Other name.
    let mut other = name.clone();
    other[3] ^= 1;
    assert_eq!(
        ca.validate(&cert, &key, &other, NOW).unwrap_err().code(),
        "AikCertificateInvalid"
    );
    // Another CA.
    let (ca2, key2) = ak_ca();
    let ca2 = aver_tpm_attest::certs::AkCa::new(ca2, &key2, 3600).unwrap();
    assert_eq!(
        ca2.validate(&cert, &key, &name, NOW).unwrap_err().code(),
        "AikCertificateInvalid"
    );
    // A CA key that does not match its certificate is refused at startup.
    let (ca3, _) = ak_ca();
    assert!(aver_tpm_attest::certs::AkCa::new(ca3, &key2, 3600).is_err());
}
