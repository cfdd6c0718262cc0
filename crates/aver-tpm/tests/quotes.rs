//! Real quotes verify; tampered ones fail with the right error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use aver_testkit::read_vector;
use aver_tpm::quote::{AkPublicKey, QuoteError, verify_signature};
use aver_tpm::structures::{Attested, Signature, parse_public2b};
use aver_tpm::{
    HashAlg, PcrValues, compare, parse_attest, parse_event_log, parse_public, parse_signature,
    replay, verify_quote,
};
use common::*;
use std::collections::BTreeMap;

struct Case {
    attest: Vec<u8>,
    sig: Signature,
    ak: AkPublicKey,
    challenge: Vec<u8>,
    pcrs: PcrValues,
}

fn gcp(t: &str) -> Option<Case> {
    let attest = read_vector(t, &format!("{GCP}/quote.tpms_attest"))?;
    let sig =
        parse_signature(&read_vector(t, &format!("{GCP}/quote.tpmt_signature"))?).expect("sig");
    let ak = parse_public(&read_vector(t, &format!("{GCP}/ak.tpmt_public"))?).expect("ak");
    let pcrs = json_pcrs(&json(&read_vector(
        t,
        &format!("{GCP}/pcrs-from-tpm.json"),
    )?));
    Some(Case {
        attest,
        sig,
        ak: AkPublicKey::from_public(&ak).expect("ak"),
        challenge: vec![],
        pcrs,
    })
}

fn azure(t: &str, dir: &str) -> Option<Case> {
    let q = json(&read_vector(t, &format!("tpm/{dir}/tpm-quote-v1.json"))?);
    let hcl = read_vector(t, &format!("tpm/{dir}/hcl-report.bin"))?;
    // IGVM request header at 1216: data_size, version, report_type, hash_type, variable_data_size.
    let size = u32::from_le_bytes(hcl[1232..1236].try_into().expect("4")) as usize;
    let runtime = json(&hcl[1236..1236 + size]);
    let jwk = runtime["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == "HCLAkPub")
        .expect("HCLAkPub")
        .clone();
    let ak = AkPublicKey::from_jwk(&jwk).expect("jwk");
    let sig = Signature::RsaSsa {
        hash_alg: 0x000b,
        sig: hex_or_b64(q["signature"].as_str().expect("sig")),
    };
    let pcrs = list_pcrs(HashAlg::Sha256, q["pcrs"].as_array().expect("pcrs"));
    Some(Case {
        attest: hex_or_b64(q["message"].as_str().expect("msg")),
        sig,
        ak,
        challenge: b"challenge".to_vec(),
        pcrs,
    })
}

fn trustee(t: &str) -> Option<Case> {
    let e = json(&read_vector(
        t,
        "tpm/trustee-swtpm-evidence/tpm_evidence.json",
    )?);
    let spki = hex_or_b64(e["ak_public"].as_str().expect("ak"));
    let ak = AkPublicKey::from_spki_der(&spki).expect("spki");
    let q = &e["tpm_quote"];
    let attest = hex_or_b64(q["message"].as_str().expect("msg"));
    let raw_sig = hex_or_b64(q["signature"].as_str().expect("sig"));
    let sig = parse_signature(&raw_sig).unwrap_or(Signature::RsaSsa {
        hash_alg: 0x000b,
        sig: raw_sig,
    });
    let pcrs = list_pcrs(HashAlg::Sha256, q["pcrs"].as_array().expect("pcrs"));
    let challenge = parse_attest(&attest).expect("attest").extra_data;
    assert_eq!(challenge.len(), 64);
    assert!(hex::encode(&challenge).starts_with("a04182b5"));
    Some(Case {
        attest,
        sig,
        ak,
        challenge,
        pcrs,
    })
}

fn swtpm_pcrs() -> PcrValues {
    let m = BTreeMap::from([
        (0, vec![0u8; 32]),
        (
            16,
            hex::decode("9851312028952521510e8eaab5be94e7dc24b5fc292b2e9781173cf11ffa9878")
                .expect("hex"),
        ),
        (
            23,
            hex::decode("63a2cc09272ae4d03d8ae482a394d209bf2dfd1449f1dd75552198264a168ac3")
                .expect("hex"),
        ),
    ]);
    BTreeMap::from([(HashAlg::Sha256, m)])
}

fn swtpm_challenge(t: &str) -> Option<Vec<u8>> {
    let n = read_vector(t, &format!("{SWTPM}/nonce.hex"))?;
    Some(hex::decode(String::from_utf8(n).expect("utf8").trim()).expect("hex"))
}

fn swtpm_rsa(t: &str) -> Option<Case> {
    let ak = parse_public2b(&read_vector(t, &format!("{SWTPM}/ak.tpm2b_public"))?).expect("ak");
    Some(Case {
        attest: read_vector(t, &format!("{SWTPM}/quote.msg"))?,
        sig: parse_signature(&read_vector(t, &format!("{SWTPM}/quote.sig"))?).expect("sig"),
        ak: AkPublicKey::from_public(&ak).expect("ak"),
        challenge: swtpm_challenge(t)?,
        pcrs: swtpm_pcrs(),
    })
}

fn swtpm_ec(t: &str) -> Option<Case> {
    let spki = pem_der(&read_vector(t, &format!("{SWTPM}/akec.pub"))?);
    Some(Case {
        attest: read_vector(t, &format!("{SWTPM}/quoteec.msg"))?,
        sig: parse_signature(&read_vector(t, &format!("{SWTPM}/quoteec.sig"))?).expect("sig"),
        ak: AkPublicKey::from_spki_der(&spki).expect("ec spki"),
        challenge: swtpm_challenge(t)?,
        pcrs: swtpm_pcrs(),
    })
}

fn all_cases(t: &str) -> Vec<(&'static str, Case)> {
    let mut v = Vec::new();
    let cases: [(&'static str, Option<Case>); 6] = [
        ("gcp", gcp(t)),
        ("azure-snp", azure(t, "azure-cvm-vtpm-snp")),
        ("azure-tdx", azure(t, "azure-cvm-vtpm-tdx")),
        ("trustee-swtpm", trustee(t)),
        ("swtpm-rsa", swtpm_rsa(t)),
        ("swtpm-ecdsa", swtpm_ec(t)),
    ];
    for (n, c) in cases {
        if let Some(c) = c {
            v.push((n, c));
        }
    }
    v
}

#[test]
fn real_quotes_verify() {
    let cases = all_cases("real_quotes_verify");
    for (name, c) in &cases {
        let v = verify_quote(&c.attest, &c.sig, &c.ak, &c.challenge, &c.pcrs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!v.selected.is_empty(), "{name}");
    }
    // Specific facts from the vectors README.
    let c = gcp("real_quotes_verify").expect("gcp");
    assert!(matches!(
        c.sig,
        Signature::RsaSsa {
            hash_alg: 0x0004,
            ..
        }
    ));
    let v = verify_quote(&c.attest, &c.sig, &c.ak, &[], &c.pcrs).expect("gcp");
    assert_eq!(v.selected.len(), 24);
    assert!(v.selected.iter().all(|(b, _)| *b == HashAlg::Sha1));
    let Attested::Quote { pcr_digest, .. } = &v.attest.attested else {
        panic!("not a quote")
    };
    assert_eq!(
        hex::encode(pcr_digest),
        "a610f27bc687ce906243287d832706036e79f6e1"
    );
    let c = azure("real_quotes_verify", "azure-cvm-vtpm-snp").expect("snp");
    let v = verify_quote(&c.attest, &c.sig, &c.ak, b"challenge", &c.pcrs).expect("snp");
    assert_eq!(v.attest.firmware_version, 0x2020031200120003);
    let c = swtpm_rsa("real_quotes_verify").expect("swtpm");
    let v = verify_quote(&c.attest, &c.sig, &c.ak, &c.challenge, &c.pcrs).expect("swtpm");
    assert_eq!(
        v.selected,
        vec![
            (HashAlg::Sha256, 0),
            (HashAlg::Sha256, 16),
            (HashAlg::Sha256, 23)
        ]
    );
    let Attested::Quote { pcr_digest, .. } = &v.attest.attested else {
        panic!("not a quote")
    };
    assert_eq!(
        hex::encode(pcr_digest),
        "83d1199e1d167f9cb8d317a8160a0526632381cde4ad503889d3e375fb44fe76"
    );
    assert!(matches!(
        swtpm_ec("real_quotes_verify").expect("ec").sig,
        Signature::Ecdsa {
            hash_alg: 0x000b,
            ..
        }
    ));
    assert_eq!(cases.len(), 6, "some quote vectors were skipped");
}

#[test]
fn gcp_end_to_end_quote_and_log() {
    let t = "gcp_end_to_end_quote_and_log";
    let Some(c) = gcp(t) else { return };
    let Some(log) = read_vector(t, &format!("{GCP}/eventlog.bin")) else {
        return;
    };
    verify_quote(&c.attest, &c.sig, &c.ak, &[], &c.pcrs).expect("quote");
    let log = parse_event_log(&log).expect("log");
    let r = replay(&log).expect("replay");
    let rep =
        compare(&log, &r, &c.pcrs, Some(0x00ff_ffff), &[]).expect("log matches the quoted PCRs");
    assert_eq!(rep.checked.len(), 24);
}

#[test]
fn flipped_signature_byte_is_signature_invalid() {
    for (name, c) in all_cases("flipped_signature_byte_is_signature_invalid") {
        let mut sig = c.sig.clone();
        match &mut sig {
            Signature::RsaSsa { sig, .. } | Signature::RsaPss { sig, .. } => sig[10] ^= 1,
            Signature::Ecdsa { s, .. } => s[5] ^= 1,
        }
        let e = verify_quote(&c.attest, &sig, &c.ak, &c.challenge, &c.pcrs).expect_err(name);
        assert_eq!(e, QuoteError::SignatureInvalid, "{name}");
    }
}

#[test]
fn flipped_quote_byte_fails() {
    for (name, c) in all_cases("flipped_quote_byte_fails") {
        // Bytes in pcrDigest, the PCR selection / firmware area, qualifiedSigner.
        let n = c.attest.len();
        for i in [n - 1, n - 10, 10, 20] {
            let mut a = c.attest.clone();
            a[i] ^= 0x80;
            let e = verify_quote(&a, &c.sig, &c.ak, &c.challenge, &c.pcrs).expect_err(name);
            assert!(
                matches!(e, QuoteError::SignatureInvalid | QuoteError::Parse(_)),
                "{name} byte {i}: {e:?}"
            );
        }
        let mut a = c.attest.clone();
        a[0] ^= 1;
        assert!(
            matches!(
                verify_quote(&a, &c.sig, &c.ak, &c.challenge, &c.pcrs),
                Err(QuoteError::BadMagic(_))
            ),
            "{name}"
        );
        let mut a = c.attest.clone();
        a[5] = 0x17; // certify
        assert!(
            matches!(
                verify_quote(&a, &c.sig, &c.ak, &c.challenge, &c.pcrs),
                Err(QuoteError::NotAQuote(0x8017)) | Err(QuoteError::Parse(_))
            ),
            "{name}"
        );
    }
}

#[test]
fn wrong_challenge_is_challenge_mismatch() {
    for (name, c) in all_cases("wrong_challenge_is_challenge_mismatch") {
        let mut ch = c.challenge.clone();
        ch.push(0);
        let e = verify_quote(&c.attest, &c.sig, &c.ak, &ch, &c.pcrs).expect_err(name);
        assert!(
            matches!(e, QuoteError::ChallengeMismatch { .. }),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn wrong_pcr_value_is_pcr_digest_mismatch() {
    for (name, c) in all_cases("wrong_pcr_value_is_pcr_digest_mismatch") {
        let mut pcrs = c.pcrs.clone();
        let bank = pcrs.values_mut().next().expect("bank");
        let first = *bank.keys().next().expect("pcr");
        bank.get_mut(&first).expect("pcr")[0] ^= 1;
        let e = verify_quote(&c.attest, &c.sig, &c.ak, &c.challenge, &pcrs).expect_err(name);
        assert!(
            matches!(e, QuoteError::PcrDigestMismatch { .. }),
            "{name}: {e:?}"
        );
        let mut pcrs = c.pcrs.clone();
        pcrs.values_mut().next().expect("bank").remove(&first);
        let e = verify_quote(&c.attest, &c.sig, &c.ak, &c.challenge, &pcrs).expect_err(name);
        assert!(
            matches!(e, QuoteError::PcrMissing { pcr, .. } if pcr == first),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn wrong_key_fails() {
    let t = "wrong_key_fails";
    let (Some(a), Some(b), Some(ec)) = (gcp(t), swtpm_rsa(t), swtpm_ec(t)) else {
        return;
    };
    assert_eq!(
        verify_signature(&a.attest, &a.sig, &b.ak),
        Err(QuoteError::SignatureInvalid)
    );
    assert!(matches!(
        verify_signature(&a.attest, &a.sig, &ec.ak),
        Err(QuoteError::UnsupportedAlgorithm(_))
    ));
}

#[test]
fn swtpm_public_area_name_spki_and_attributes() {
    let t = "swtpm_public_area_name_spki_and_attributes";
    let Some(pub2b) = read_vector(t, &format!("{SWTPM}/ak.tpm2b_public")) else {
        return;
    };
    let Some(name) = read_vector(t, &format!("{SWTPM}/ak.name")) else {
        return;
    };
    let Some(pem) = read_vector(t, &format!("{SWTPM}/ak.pub")) else {
        return;
    };
    let p = parse_public2b(&pub2b).expect("public");
    assert_eq!(
        p.name().expect("name"),
        name,
        "TPM name = nameAlg || H(TPMT_PUBLIC)"
    );
    assert_eq!(
        p.to_spki_der().expect("spki"),
        pem_der(&pem),
        "SPKI DER equals tpm2-tools' PEM"
    );
    assert!(p.object_attributes.is_attestation_key_shape());
    assert!(p.object_attributes.user_with_auth);
    let jwk = p.to_jwk().expect("jwk");
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["e"], "AQAB");
    assert_eq!(
        AkPublicKey::from_jwk(&jwk).expect("jwk"),
        AkPublicKey::from_public(&p).expect("ak")
    );
    // qualifiedSigner is the AK's qualified name (depends on the hierarchy),
    // so only its algorithm prefix is checked.
    let q =
        parse_attest(&read_vector(t, &format!("{SWTPM}/quote.msg")).expect("msg")).expect("attest");
    assert_eq!(&q.qualified_signer[..2], &[0x00, 0x0b]);

    // GCP AK: TPMT_PUBLIC, RSA-2048, RSASSA, nameAlg SHA-256.
    let Some(gcp_ak) = read_vector(t, &format!("{GCP}/ak.tpmt_public")) else {
        return;
    };
    let g = parse_public(&gcp_ak).expect("gcp ak");
    assert_eq!(g.name_alg, 0x000b);
    assert!(g.object_attributes.is_attestation_key_shape());
    let spki = g.to_spki_der().expect("spki");
    assert_eq!(
        AkPublicKey::from_spki_der(&spki).expect("spki"),
        AkPublicKey::from_public(&g).expect("ak")
    );
}

#[test]
fn swtpm_ec_public_area_matches_pem() {
    // akec.name is nameAlg||H(TPMT_PUBLIC) of the ECC AK; we only have its
    // SPKI (PEM), so check the JWK / SPKI conversions round-trip on it.
    let t = "swtpm_ec_public_area_matches_pem";
    let Some(pem) = read_vector(t, &format!("{SWTPM}/akec.pub")) else {
        return;
    };
    let der = pem_der(&pem);
    let ak = AkPublicKey::from_spki_der(&der).expect("spki");
    let AkPublicKey::Ec { point, .. } = &ak else {
        panic!("not EC")
    };
    assert_eq!(point.len(), 65);
    assert!(AkPublicKey::from_spki_der(&der[..der.len() - 1]).is_err());
}
