//! End-to-end TPM attestation against a real software TPM (swtpm): the
//! client in this crate drives the TPM through tss-esapi, the service is
//! `aver_tpm_attest::TpmAttestService` behind an in-process transport.
//! Every test starts its own swtpm (stopped on drop) and skips loudly when
//! swtpm / libtss2 are missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_testkit::swtpm::{LogWriter, Swtpm};
use aver_tpm_attest::{ReplayCache, TpmAttestConfig, TpmAttestService};
use aver_tpm_client::{
    AkAlgorithm, AkBlob, AttestOptions, TpmClient, attest, build_request, enroll,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;

struct Env {
    _swtpm: Swtpm,
    tpm: TpmClient,
    log: LogWriter,
    svc: TpmAttestService,
    cache: ReplayCache,
}

fn boot(test: &str) -> Option<Env> {
    require_tools(test)?;
    let id = identity('a');
    let swtpm = Swtpm::start(id);
    let mut tpm = match TpmClient::open(&swtpm.tcti()) {
        Ok(t) => t,
        Err(e) => {
            aver_testkit::skip(test, &format!("cannot open the swtpm TCTI: {e}"));
            return None;
        }
    };
    let log = standard_boot(&mut tpm);
    Some(Env {
        _swtpm: swtpm,
        tpm,
        log,
        svc: service_for(id),
        cache: ReplayCache::default(),
    })
}

fn options(log: &LogWriter) -> AttestOptions {
    AttestOptions {
        pcrs: (0..8).collect(),
        banks: vec![HashingAlgorithm::Sha1, HashingAlgorithm::Sha256],
        event_log: Some(log.bytes()),
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap()
}

/// Init, then a request built by the real client, optionally altered.
fn request_with(
    tpm: &mut TpmClient,
    log: &LogWriter,
    lb: &Loopback<'_>,
    ak: &AkBlob,
    alter_challenge: bool,
    alter: impl FnOnce(&mut Value),
) -> Result<Value, String> {
    let init = lb.send(&json!({"payload": {"type": "aikcert"}}))?;
    let mut challenge = unb64(&init["challenge"]);
    if alter_challenge {
        challenge[0] ^= 1;
    }
    let mut req =
        build_request(tpm, ak, &challenge, &init["service_context"], &options(log)).unwrap();
    alter(&mut req["tpm_att_data"]["current_attestation"]);
    lb.send(&json!({ "payload": req }))
}

fn read_tpm_pcr(tpm: &mut TpmClient, alg: HashingAlgorithm, pcr: u32) -> Vec<u8> {
    use tss_esapi::structures::{PcrSelectionListBuilder, PcrSlot};
    let sel = PcrSelectionListBuilder::new()
        .with_selection(alg, &[PcrSlot::try_from(1u32 << pcr).unwrap()])
        .build()
        .unwrap();
    let (_, _, digests) = tpm.context_mut().pcr_read(sel).unwrap();
    digests.value()[0].value().to_vec()
}

fn policy(name: &str) -> Option<aver_policy::Policy> {
    let text = aver_testkit::read_vector("policy", &format!("maa/policies/{name}"))?;
    Some(aver_policy::Policy::parse(std::str::from_utf8(&text).unwrap()).unwrap())
}

fn enroll_and_attest(test: &str, alg: AkAlgorithm) {
    let Some(mut env) = boot(test) else { return };
    let lb = Loopback::new(&env.svc, &env.cache);
    let mut ak = env.tpm.create_ak(alg).unwrap();
    let cert = enroll(&mut env.tpm, &mut ak, lb.transport()).unwrap();
    assert_eq!(ak.aik_cert.as_deref(), Some(cert.as_slice()));
    // The AK blob survives a JSON round trip (the CLI stores it on disk).
    let ak = AkBlob::from_json(&ak.to_json()).unwrap();

    let token = attest(&mut env.tpm, &ak, &options(&env.log), lb.transport()).unwrap();
    assert_eq!(token, TEST_TOKEN);
    let v = lb.verified.borrow().clone().expect("verified");
    let c = &v.claims;
    assert_eq!(c["x-ms-attestation-type"], "tpm");
    assert_eq!(c["tpmVersion"], 2);
    assert_eq!(c["aikValidated"], true);
    assert!(v.aik_validated);
    assert_eq!(c["secureBootEnabled"], true);
    let hash = base64::engine::general_purpose::STANDARD
        .decode(c["aikPubHash"].as_str().unwrap())
        .unwrap();
    assert_eq!(hash.len(), 32);
    // pcrs claim == the TPM's PCRs, both banks, PCRs 0-7.
    let pcrs = c["pcrs"]["PCRs"].as_array().unwrap();
    assert_eq!(pcrs.len(), 8);
    for p in pcrs {
        let i = p["Index"].as_u64().unwrap() as u32;
        for (name, alg) in [
            ("SHA1", HashingAlgorithm::Sha1),
            ("SHA256", HashingAlgorithm::Sha256),
        ] {
            assert_eq!(
                p["Digests"][name].as_str().unwrap(),
                hex::encode(read_tpm_pcr(&mut env.tpm, alg, i)),
                "PCR {i} {name}"
            );
        }
    }
    // PCR 7 is not the reset value: the log really drove it.
    assert_ne!(pcrs[7]["Digests"]["SHA256"], hex::encode([0u8; 32]));
    assert_eq!(v.replayed_pcrs.len(), 16, "{:?}", v.replayed_pcrs);
    // events
    let events = c["events"]["Events"].as_array().unwrap();
    assert!(events.len() >= 18, "{}", events.len());
    assert!(
        events
            .iter()
            .any(|e| e["EventTypeString"] == "EV_EFI_BOOT_SERVICES_APPLICATION")
    );
    assert_eq!(
        c["bootApplications"][0]["filePath"],
        "\\EFI\\BOOT\\BOOTX64.EFI"
    );
    assert_eq!(c["bootSummary"]["separatorsPcr0To7"], true);

    // The MAA sample TPM policies evaluate meaningfully on these claims.
    let incoming = aver_policy::claims_from_json(c);
    if let Some(p) = policy("docs-tpm-attestation-concepts_simple-v1.0.txt") {
        let ev = p.evaluate(&incoming).unwrap();
        assert_eq!(ev.decision, aver_policy::Decision::Permit);
        assert_eq!(ev.issued_json()["PlatformAttested"], true);
    }
    if let Some(p) = policy("docs-tpm-sample-policies_linux-boot-signers-v1.2.txt") {
        let ev = p.evaluate(&incoming).unwrap();
        assert_eq!(
            ev.decision,
            aver_policy::Decision::Permit,
            "{:?}",
            ev.deny_reason
        );
        let issued = ev.issued_json();
        assert_eq!(issued["secureBootEnabled"], true, "{issued:?}");
        assert_eq!(issued["platformKey"], b64(b"platform key"), "{issued:?}");
        assert_eq!(issued["bootOrder"], b64(&[1, 0]), "{issued:?}");
    }
    if let Some(p) = policy("docs-tpm-sample-policies_v1.2-windows-props.txt") {
        let ev = p.evaluate(&incoming).unwrap();
        assert_eq!(ev.issued_json()["SecureBootEnabled"], true);
        assert_eq!(ev.issued_json()["aikValidated"], true);
    }
    if let Some(p) = policy("docs-tpm-sample-policies_pcr-hashes-v1.2.txt") {
        // Its PCR0 value is another machine's: denied.
        let ev = p.evaluate(&incoming).unwrap();
        assert_eq!(ev.decision, aver_policy::Decision::Deny);
    }
}

#[test]
fn enroll_and_attest_rsa_ak() {
    enroll_and_attest("enroll_and_attest_rsa_ak", AkAlgorithm::RsaSsaSha256);
}

#[test]
fn enroll_and_attest_ecc_ak() {
    enroll_and_attest("enroll_and_attest_ecc_ak", AkAlgorithm::EcdsaP256Sha256);
}

fn expect_code(r: Result<Value, String>, lb: &Loopback<'_>, code: &str) -> String {
    let e = r.expect_err("must fail");
    assert!(e.starts_with(code), "expected {code}, got {e}");
    assert_eq!(lb.error_code(), Some(code));
    e
}

#[test]
fn log_that_does_not_replay_is_rejected() {
    let Some(mut env) = boot("log_that_does_not_replay_is_rejected") else {
        return;
    };
    // PCR 4 extended behind the log's back.
    env.tpm
        .pcr_extend(
            4,
            &[
                (HashingAlgorithm::Sha1, vec![7u8; 20]),
                (HashingAlgorithm::Sha256, vec![7u8; 32]),
            ],
        )
        .unwrap();
    let svc = &env.svc;
    let cache = &env.cache;
    let lb = Loopback::new(svc, cache);
    let ak = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    let r = request_with(&mut env.tpm, &env.log, &lb, &ak, false, |_| {});
    let e = expect_code(r, &lb, "EventLogReplayMismatch");
    assert!(e.contains("PCR 4 bank sha1"), "{e}");
    assert!(e.contains("last event extending it: #"), "{e}");
}

#[test]
fn custom_required_pcr_mask_is_enforced() {
    let Some(mut env) = boot("custom_required_pcr_mask_is_enforced") else {
        return;
    };
    let svc = &env.svc;
    let cache = &env.cache;
    let mut lb = Loopback::new(svc, cache);
    let ak = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    // PCR 9 is required but not quoted (the client quotes 0-7).
    lb.options.required_pcr_mask = Some(0x2ff);
    let e = expect_code(
        request_with(&mut env.tpm, &env.log, &lb, &ak, false, |_| {}),
        &lb,
        "EventLogReplayMismatch",
    );
    assert!(e.contains("PCR 9") && e.contains("not quoted"), "{e}");
    // Only PCR 7 required: passes.
    lb.options.required_pcr_mask = Some(1 << 7);
    request_with(&mut env.tpm, &env.log, &lb, &ak, false, |_| {}).unwrap();
}

#[test]
fn wrong_challenge_is_rejected() {
    let Some(mut env) = boot("wrong_challenge_is_rejected") else {
        return;
    };
    let svc = &env.svc;
    let cache = &env.cache;
    let lb = Loopback::new(svc, cache);
    let ak = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    let r = request_with(&mut env.tpm, &env.log, &lb, &ak, true, |_| {});
    expect_code(r, &lb, "ChallengeMismatch");
}

#[test]
fn replayed_and_expired_service_contexts_are_rejected() {
    let Some(mut env) = boot("replayed_and_expired_service_contexts_are_rejected") else {
        return;
    };
    let svc = &env.svc;
    let cache = &env.cache;
    let lb = Loopback::new(svc, cache);
    let ak = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    // Replay: the same (valid) request twice.
    let init = lb.send(&json!({"payload": {"type": "aikcert"}})).unwrap();
    let req = build_request(
        &mut env.tpm,
        &ak,
        &unb64(&init["challenge"]),
        &init["service_context"],
        &options(&env.log),
    )
    .unwrap();
    let msg = json!({ "payload": req });
    lb.send(&msg).unwrap();
    expect_code(lb.send(&msg), &lb, "ServiceContextReplayed");

    // Expiry: a fresh context presented 301 s later (default TTL 300 s).
    let init = lb.send(&json!({"payload": {"type": "aikcert"}})).unwrap();
    let req = build_request(
        &mut env.tpm,
        &ak,
        &unb64(&init["challenge"]),
        &init["service_context"],
        &options(&env.log),
    )
    .unwrap();
    let mut late = Loopback::new(svc, cache);
    late.now = lb.now + 301;
    expect_code(
        late.send(&json!({ "payload": req.clone() })),
        &late,
        "ServiceContextExpired",
    );
    // Tampered context.
    let mut bad = req;
    let sc = bad["service_context"].as_str().unwrap().to_string();
    let mut raw = unb64(&json!(sc));
    let n = raw.len();
    raw[n - 5] ^= 0x20;
    bad["service_context"] = json!(b64(&raw));
    expect_code(
        lb.send(&json!({ "payload": bad })),
        &lb,
        "ServiceContextInvalid",
    );
}

#[test]
fn tampered_quote_signature_and_pcrs_are_rejected() {
    let Some(mut env) = boot("tampered_quote_signature_and_pcrs_are_rejected") else {
        return;
    };
    let svc = &env.svc;
    let cache = &env.cache;
    let lb = Loopback::new(svc, cache);
    let ak = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    // Quote: flip a bit of clockInfo.clock (after magic, type,
    // qualifiedSigner (2+34) and extraData (2+32)) — still parses.
    let r = request_with(&mut env.tpm, &env.log, &lb, &ak, false, |a| {
        let mut q = unb64(&a["quote"]);
        q[4 + 2 + 36 + 34 + 3] ^= 0x01;
        a["quote"] = json!(b64(&q));
    });
    expect_code(r, &lb, "QuoteSignatureInvalid");
    // Signature: flip the last byte.
    let r = request_with(&mut env.tpm, &env.log, &lb, &ak, false, |a| {
        let mut s = unb64(&a["signature"]);
        let n = s.len();
        s[n - 1] ^= 0x01;
        a["signature"] = json!(b64(&s));
    });
    expect_code(r, &lb, "QuoteSignatureInvalid");
    // A PCR value that is not what was quoted.
    let r = request_with(&mut env.tpm, &env.log, &lb, &ak, false, |a| {
        let mut d = unb64(&a["pcrs"][1]["values"][7]["digest"]);
        d[0] ^= 1;
        a["pcrs"][1]["values"][7]["digest"] = json!(b64(&d));
    });
    expect_code(r, &lb, "PcrDigestMismatch");
    // An AK that did not sign the quote (another AK of the same TPM).
    let other = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    let r = request_with(&mut env.tpm, &env.log, &lb, &ak, false, |a| {
        a["aik_pub"] = json!(b64(&other.public));
    });
    expect_code(r, &lb, "QuoteSignatureInvalid");
}

#[test]
fn ak_certificate_required_and_invalid() {
    let Some(mut env) = boot("ak_certificate_required_and_invalid") else {
        return;
    };
    let svc = &env.svc;
    let cache = &env.cache;
    let mut lb = Loopback::new(svc, cache);
    let mut enrolled = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    enroll(&mut env.tpm, &mut enrolled, lb.transport()).unwrap();
    let fresh = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    lb.options.require_valid_aik_cert = true;
    expect_code(
        request_with(&mut env.tpm, &env.log, &lb, &fresh, false, |_| {}),
        &lb,
        "AikCertificateRequired",
    );
    // Another AK's certificate.
    let mut borrowed = fresh.clone();
    borrowed.aik_cert = enrolled.aik_cert.clone();
    let e = expect_code(
        request_with(&mut env.tpm, &env.log, &lb, &borrowed, false, |_| {}),
        &lb,
        "AikCertificateInvalid",
    );
    assert!(e.contains("does not certify this AK"), "{e}");
    // Not required: the same request passes with aikValidated = false.
    lb.options.require_valid_aik_cert = false;
    request_with(&mut env.tpm, &env.log, &lb, &borrowed, false, |_| {}).unwrap();
    assert_eq!(
        lb.verified.borrow().as_ref().unwrap().claims["aikValidated"],
        false
    );
    // And the enrolled AK validates.
    lb.options.require_valid_aik_cert = true;
    request_with(&mut env.tpm, &env.log, &lb, &enrolled, false, |_| {}).unwrap();
    assert_eq!(
        lb.verified.borrow().as_ref().unwrap().claims["aikValidated"],
        true
    );
}

#[test]
fn ak_not_bound_to_ek_fails_activation() {
    let Some(mut env) = boot("ak_not_bound_to_ek_fails_activation") else {
        return;
    };
    let other_id = identity('b');
    let other = Swtpm::start(other_id);
    let mut tpm_b = TpmClient::open(&other.tcti()).unwrap();
    // A service trusting both manufacturers.
    let pki = ak_ca();
    let a = identity('a');
    let mut cfg = TpmAttestConfig::new(
        [1u8; 32],
        pki.ak_ca_cert,
        pki.ak_ca_key,
        vec![a.ca_root_der.clone(), other_id.ca_root_der.clone()],
    );
    cfg.ek_intermediates = vec![
        a.ca_intermediate_der.clone(),
        other_id.ca_intermediate_der.clone(),
    ];
    let svc = TpmAttestService::new(cfg).unwrap();
    let cache = ReplayCache::default();
    let lb = Loopback::new(&svc, &cache);

    // TPM A's AK presented with TPM B's EK: B's EK certificate is valid,
    // so the service answers with a credential for B's EK...
    let ak = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    let ek_b_cert = tpm_b.read_ek_certificate().unwrap().unwrap();
    let ek_b_pub = tpm_b.ek_public().unwrap();
    let reply = lb
        .send(&json!({"payload": {
            "type": "enroll", "ek_cert": b64(&ek_b_cert), "ek_pub": b64(&ek_b_pub), "ak_pub": b64(&ak.public)
        }}))
        .unwrap();
    let blob = unb64(&reply["credential_blob"]);
    let secret = unb64(&reply["encrypted_secret"]);
    // ...which TPM A cannot activate (it does not hold B's EK)...
    let err = env
        .tpm
        .activate_credential(&ak, &blob, &secret)
        .unwrap_err();
    assert!(err.to_string().contains("ActivateCredential"), "{err}");
    // ...and TPM B cannot either: A's AK cannot be loaded under B's EK.
    assert!(tpm_b.activate_credential(&ak, &blob, &secret).is_err());
    // Guessing the secret fails with AkNotBoundToEk, and the context is burnt.
    let activate = json!({"payload": {
        "type": "activate", "secret": b64(&[0u8; 32]), "service_context": reply["service_context"]
    }});
    expect_code(lb.send(&activate), &lb, "AkNotBoundToEk");
    expect_code(lb.send(&activate), &lb, "ServiceContextReplayed");

    // EK certificate of B with the EK public area of A: refused outright.
    let ek_a_pub = env.tpm.ek_public().unwrap();
    let r = lb.send(&json!({"payload": {
        "type": "enroll", "ek_cert": b64(&ek_b_cert), "ek_pub": b64(&ek_a_pub), "ak_pub": b64(&ak.public)
    }}));
    let e = expect_code(r, &lb, "EkCertificateUntrusted");
    assert!(e.contains("not ek_pub"), "{e}");

    // The proper pairing works on the same service.
    let mut ak = ak;
    enroll(&mut env.tpm, &mut ak, lb.transport()).unwrap();
}

#[test]
fn ek_certificate_from_untrusted_root_is_rejected() {
    let Some(mut env) = boot("ek_certificate_from_untrusted_root_is_rejected") else {
        return;
    };
    // Roots: an unrelated rcgen CA, and TPM B's manufacturer (not A's).
    let pki = ak_ca();
    let stranger = ak_ca();
    let b = identity('b');
    let mut cfg = TpmAttestConfig::new(
        [3u8; 32],
        pki.ak_ca_cert,
        pki.ak_ca_key,
        vec![stranger.ak_ca_cert, b.ca_root_der.clone()],
    );
    cfg.ek_intermediates = vec![b.ca_intermediate_der.clone()];
    let svc = TpmAttestService::new(cfg).unwrap();
    let cache = ReplayCache::default();
    let lb = Loopback::new(&svc, &cache);
    let mut ak = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    let err = enroll(&mut env.tpm, &mut ak, lb.transport()).unwrap_err();
    assert!(err.to_string().contains("EkCertificateUntrusted"), "{err}");
    assert_eq!(lb.error_code(), Some("EkCertificateUntrusted"));
    // An AK-shaped check on enroll: the EK itself is not an AK.
    let ek_pub = env.tpm.ek_public().unwrap();
    let svc_a = service_for(identity('a'));
    let lb_a = Loopback::new(&svc_a, &cache);
    let r = lb_a.send(&json!({"payload": {
        "type": "enroll",
        "ek_cert": b64(&env.tpm.read_ek_certificate().unwrap().unwrap()),
        "ek_pub": b64(&ek_pub),
        "ak_pub": b64(&ek_pub),
    }}));
    expect_code(r, &lb_a, "AkAttributesInvalid");
}

/// Prints one real exchange (enroll, activate, init, request, report) with
/// long base64url fields shortened; used to write PROTOCOL.md. Run with
/// `cargo test -p aver-tpm-client --test swtpm_e2e -- --ignored --nocapture dump`.
#[test]
#[ignore]
fn dump_protocol_examples() {
    let Some(mut env) = boot("dump_protocol_examples") else {
        return;
    };
    let lb = Loopback::new(&env.svc, &env.cache);
    fn shorten(v: &Value) -> Value {
        match v {
            Value::String(s) if s.len() > 96 => {
                json!(format!("{}…({} chars)", &s[..64], s.len()))
            }
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), shorten(v))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(shorten).collect()),
            other => other.clone(),
        }
    }
    let dump = |m: &Value| {
        println!("--> {}", serde_json::to_string_pretty(&shorten(m)).unwrap());
        let r = lb.send(m);
        match &r {
            Ok(p) => println!(
                "<-- {}",
                serde_json::to_string_pretty(&shorten(&json!({"payload": p}))).unwrap()
            ),
            Err(e) => println!("<-- error {e}"),
        }
        r
    };
    let mut ak = env.tpm.create_ak(AkAlgorithm::RsaSsaSha256).unwrap();
    enroll(&mut env.tpm, &mut ak, dump).unwrap();
    attest(&mut env.tpm, &ak, &options(&env.log), dump).unwrap();
    let v = lb.verified.borrow().clone().unwrap();
    println!(
        "claims: {}",
        serde_json::to_string_pretty(&shorten(&Value::Object(v.claims))).unwrap()
    );
}
