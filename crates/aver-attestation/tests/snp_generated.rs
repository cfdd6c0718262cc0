//! SEV-SNP negatives under a test PKI (`aver_testkit::snp`: an RSA-PSS
//! ARK and ASK, an ECDSA P-384 VCEK, reports signed by it): wrong chip ID,
//! TCB mismatch, foreign ARK, expired VCEK, debug and VMPL through a
//! policy, Turin's layout, VLEK and signing-key selector, ARK CRLs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::evidence::snp::{
    SEV_SNP_VM, SnpError, SnpTrust, VerifiedSnp, encode_evidence, verify_report,
};
use aver_attestation::{
    ActivePolicy, AttestRequest, PolicyChoice, VerificationTime, Verifiers, parse_rfc3339, tail,
};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::RsaKeyPair;

use aver_testkit::snp::*;

fn trust(pki: &Pki) -> SnpTrust {
    let mut t = SnpTrust::empty();
    t.add_ark_der(pki.ark.clone(), "test ARK").unwrap();
    t
}

fn at() -> VerificationTime {
    parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

fn check(pki: &Pki, report: &[u8], certs: Vec<Vec<u8>>) -> Result<VerifiedSnp, SnpError> {
    verify_report(&trust(pki), report, &certs, None, None, at())
}

fn vcek(pki: &Pki) -> Vec<u8> {
    signing_cert(pki, GEN, false, SVNS, Some(CHIP.to_vec()), "350101000000Z")
}

#[test]
fn a_generated_report_verifies_under_the_test_ark_only() {
    let pki = pki(GEN);
    let r = report(&pki, &milan_report());
    let chain = vec![vcek(&pki), pki.ask.clone(), pki.ark.clone()];
    let v = check(&pki, &r, chain.clone()).unwrap();
    assert_eq!(v.reported_tcb.microcode, 0x73);
    assert_eq!(v.root, "test ARK");
    // Foreign ARK: AMD's roots do not trust the test ARK.
    let err = verify_report(&SnpTrust::amd(), &r, &chain, None, None, at()).unwrap_err();
    assert_eq!(err.code(), "UntrustedRoot", "{err}");
    // An ASK signed by another ARK with the same name.
    let other = self::pki(GEN);
    let err = check(
        &pki,
        &r,
        vec![vcek(&pki), other.ask.clone(), pki.ark.clone()],
    )
    .unwrap_err();
    assert_eq!(err.code(), "CertificateChainInvalid", "{err}");
    // The ARK key is not used to sign reports.
    let _ = &pki.ark_key;
}

#[test]
fn wrong_chip_id_is_refused() {
    let pki = pki(GEN);
    let r = report(&pki, &milan_report());
    let other_chip = signing_cert(
        &pki,
        GEN,
        false,
        SVNS,
        Some(vec![0xAB; 64]),
        "350101000000Z",
    );
    let err = check(&pki, &r, vec![other_chip, pki.ask.clone()]).unwrap_err();
    assert_eq!(err.code(), "SnpChipIdMismatch", "{err}");
    let no_hwid = signing_cert(&pki, GEN, false, SVNS, None, "350101000000Z");
    let err = check(&pki, &r, vec![no_hwid, pki.ask.clone()]).unwrap_err();
    assert_eq!(err.code(), "CertificateChainMalformed", "{err}");
}

#[test]
fn tcb_mismatch_between_report_and_vcek_is_refused() {
    let pki = pki(GEN);
    let r = report(&pki, &milan_report());
    for svns in [
        (None, 4, 0, 8, 0x73),
        (None, 3, 1, 8, 0x73),
        (None, 3, 0, 7, 0x73),
        (None, 3, 0, 8, 0x74),
    ] {
        let cert = signing_cert(&pki, GEN, false, svns, Some(CHIP.to_vec()), "350101000000Z");
        let err = check(&pki, &r, vec![cert, pki.ask.clone()]).unwrap_err();
        assert_eq!(err.code(), "SnpTcbMismatch", "{svns:?}: {err}");
    }
}

#[test]
fn expired_vcek_is_refused() {
    let pki = pki(GEN);
    let r = report(&pki, &milan_report());
    let old = signing_cert(&pki, GEN, false, SVNS, Some(CHIP.to_vec()), "211231000000Z");
    let err = check(&pki, &r, vec![old, pki.ask.clone()]).unwrap_err();
    assert_eq!(err.code(), "CertificateExpired", "{err}");
}

/// The service's flow: verification, then the policy over the claims.
fn attest(
    pki: &Pki,
    report: &[u8],
    policy: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let request = AttestRequest {
        evidence: encode_evidence(
            report,
            Some(&aver_attestation::evidence::snp::certs::pem_chain(&[
                vcek(pki),
                pki.ask.clone(),
            ])),
        ),
        ..AttestRequest::default()
    };
    let mut verifiers = Verifiers::production();
    verifiers.snp = trust(pki);
    let verified = aver_attestation::verify(&SEV_SNP_VM, &verifiers, &request, at())
        .map_err(|e| e.code.to_string())?;
    let active = ActivePolicy::from_text(policy, None).unwrap();
    tail::claims(
        &SEV_SNP_VM,
        PolicyChoice::Active(&active),
        verified.claims,
        None,
        &aver_policy::Budget::default(),
    )
    .map(|(claims, _)| claims)
    .map_err(|e| e.code.to_string())
}

const STRICT_POLICY: &str = r#"version=1.0;
authorizationrules {
  [type=="x-ms-sevsnpvm-is-debuggable", value==false] && [type=="x-ms-sevsnpvm-vmpl", value==0] => permit();
};
issuancerules {};"#;

#[test]
fn debug_policy_and_vmpl_reach_the_claims_and_a_policy_refuses_them() {
    let pki = pki(GEN);
    let good = report(&pki, &milan_report());
    let claims = attest(&pki, &good, STRICT_POLICY).unwrap();
    assert_eq!(claims["x-ms-sevsnpvm-is-debuggable"], false);
    assert_eq!(claims["x-ms-sevsnpvm-vmpl"], 0);

    let debug = report(
        &pki,
        &ReportSpec {
            policy: 0x30000 | (1 << 19),
            ..milan_report()
        },
    );
    let claims = attest(&pki, &debug, SEV_SNP_VM.default_policy.unwrap()).unwrap();
    assert_eq!(claims["x-ms-sevsnpvm-is-debuggable"], true);
    assert_eq!(
        attest(&pki, &debug, STRICT_POLICY).unwrap_err(),
        "PolicyEvaluationError"
    );

    let vmpl2 = report(
        &pki,
        &ReportSpec {
            vmpl: 2,
            ..milan_report()
        },
    );
    let claims = attest(&pki, &vmpl2, SEV_SNP_VM.default_policy.unwrap()).unwrap();
    assert_eq!(claims["x-ms-sevsnpvm-vmpl"], 2);
    assert_eq!(
        attest(&pki, &vmpl2, STRICT_POLICY).unwrap_err(),
        "PolicyEvaluationError"
    );

    let vmpl4 = report(
        &pki,
        &ReportSpec {
            vmpl: 4,
            ..milan_report()
        },
    );
    assert_eq!(
        attest(&pki, &vmpl4, STRICT_POLICY).unwrap_err(),
        "SnpReservedFieldNonZero"
    );
}

#[test]
fn turin_layout_with_fmc_and_an_8_byte_hardware_id() {
    let pki = pki("Turin");
    // Turin TCB: [fmc, bootloader, tee, snp, 0, 0, 0, microcode].
    let spec = ReportSpec {
        version: 3,
        tcb: [1, 3, 0, 8, 0, 0, 0, 0x73],
        cpuid_family: 0x1A,
        ..milan_report()
    };
    let r = report(&pki, &spec);
    let turin_svns = (Some(1), 3, 0, 8, 0x73);
    let cert = signing_cert(
        &pki,
        "Turin",
        false,
        turin_svns,
        Some(CHIP[..8].to_vec()),
        "350101000000Z",
    );
    let v = check(&pki, &r, vec![cert.clone(), pki.ask.clone()]).unwrap();
    assert_eq!(v.reported_tcb.fmc, Some(1));
    assert_eq!(v.reported_tcb.snp, 8);
    // FMC differs.
    let other = signing_cert(
        &pki,
        "Turin",
        false,
        (Some(2), 3, 0, 8, 0x73),
        Some(CHIP[..8].to_vec()),
        "350101000000Z",
    );
    let err = check(&pki, &r, vec![other, pki.ask.clone()]).unwrap_err();
    assert_eq!(err.code(), "SnpTcbMismatch", "{err}");
    // A v3 report of a Milan/Genoa CPU (family 0x19) under a Turin VCEK.
    let milan_cpu = report(
        &pki,
        &ReportSpec {
            cpuid_family: 0x19,
            ..spec
        },
    );
    let err = check(&pki, &milan_cpu, vec![cert, pki.ask.clone()]).unwrap_err();
    assert_eq!(err.code(), "SnpTcbMismatch", "{err}");
}

#[test]
fn vlek_reports_and_the_signing_key_selector() {
    let pki = pki(GEN);
    let vlek = signing_cert(&pki, GEN, true, SVNS, None, "350101000000Z");
    let vlek_report = report(
        &pki,
        &ReportSpec {
            signing_key: 1,
            chip_id: [0; 64],
            ..milan_report()
        },
    );
    check(&pki, &vlek_report, vec![vlek.clone(), pki.asvk.clone()]).unwrap();
    // The VLEK report with the VCEK's certificate, and the reverse.
    let err = check(&pki, &vlek_report, vec![vcek(&pki), pki.ask.clone()]).unwrap_err();
    assert_eq!(err.code(), "SnpSigningKeyMismatch", "{err}");
    let vcek_report = report(&pki, &milan_report());
    let err = check(&pki, &vcek_report, vec![vlek, pki.asvk.clone()]).unwrap_err();
    assert_eq!(err.code(), "SnpSigningKeyMismatch", "{err}");
    // Unsigned (SIGNING_KEY = 7).
    let unsigned = report(
        &pki,
        &ReportSpec {
            signing_key: 7,
            ..milan_report()
        },
    );
    let err = check(&pki, &unsigned, vec![vcek(&pki), pki.ask.clone()]).unwrap_err();
    assert_eq!(err.code(), "SnpSigningKeyMismatch", "{err}");
}

#[test]
fn ark_crl_revokes_the_ask_and_must_be_current_and_signed() {
    let pki = pki(GEN);
    let r = report(&pki, &milan_report());
    let chain = vec![vcek(&pki), pki.ask.clone(), pki.ark.clone()];
    let ark_name = format!("ARK-{GEN}");
    let with = |der: Vec<u8>| {
        let t = trust(&pki);
        t.add_crl_der(&der).unwrap();
        verify_report(&t, &r, &chain, None, None, at())
    };
    // Current, revoking nothing (or another serial): verifies.
    with(crl(
        &ark_name,
        &pki.ark_key,
        "250101000000Z",
        "270101000000Z",
        &[],
    ))
    .unwrap();
    with(crl(
        &ark_name,
        &pki.ark_key,
        "250101000000Z",
        "270101000000Z",
        &[7],
    ))
    .unwrap();
    // Revoking the ASK (serial 1).
    let err = with(crl(
        &ark_name,
        &pki.ark_key,
        "250101000000Z",
        "270101000000Z",
        &[1],
    ))
    .unwrap_err();
    assert_eq!(err.code(), "CertificateRevoked", "{err}");
    // Past its nextUpdate, or not yet issued.
    let err = with(crl(
        &ark_name,
        &pki.ark_key,
        "240101000000Z",
        "250101000000Z",
        &[],
    ))
    .unwrap_err();
    assert_eq!(err.code(), "CollateralExpired", "{err}");
    let err = with(crl(
        &ark_name,
        &pki.ark_key,
        "270101000000Z",
        "280101000000Z",
        &[],
    ))
    .unwrap_err();
    assert_eq!(err.code(), "CollateralExpired", "{err}");
    // Refused when added: named for the ARK but signed by another key, and
    // issued by no trusted ARK. Neither changes what a chain verifies to.
    let t = trust(&pki);
    let forged = crl(
        &ark_name,
        &pki.ask_key,
        "250101000000Z",
        "270101000000Z",
        &[],
    );
    let err = t.add_crl_der(&forged).unwrap_err();
    assert_eq!(err.code(), "CollateralMalformed", "{err}");
    assert!(
        err.to_string()
            .contains("no trusted ARK of that name signed it"),
        "{err}"
    );
    let foreign = crl(
        "ARK-Other",
        &pki.ask_key,
        "240101000000Z",
        "250101000000Z",
        &[1],
    );
    let err = t.add_crl_der(&foreign).unwrap_err();
    assert!(err.to_string().contains("is not a trusted ARK"), "{err}");
    assert!(t.crls().list().is_empty());
    verify_report(&t, &r, &chain, None, None, at()).unwrap();
    // Truncated and oversized input.
    let good = crl(
        &ark_name,
        &pki.ark_key,
        "250101000000Z",
        "270101000000Z",
        &[],
    );
    let err = t.add_crl_der(&good[..good.len() - 1]).unwrap_err();
    assert_eq!(err.code(), "CollateralMalformed", "{err}");
    let err = t.add_crl_der(&vec![0x30; 300 * 1024]).unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
}

#[test]
fn a_crl_slot_is_replaced_by_a_newer_crl_never_an_older_one() {
    let pki = pki(GEN);
    let r = report(&pki, &milan_report());
    let chain = vec![vcek(&pki), pki.ask.clone()];
    let ark_name = format!("ARK-{GEN}");
    let t = trust(&pki);
    let clean = crl(
        &ark_name,
        &pki.ark_key,
        "250601000000Z",
        "270101000000Z",
        &[],
    );
    let info = t.install_crl("kds:/vcek/v1/Milan/crl", &clean).unwrap();
    assert_eq!(info.revoked, 0);
    assert_eq!(info.ark, "test ARK");
    verify_report(&t, &r, &chain, None, None, at()).unwrap();
    // A clone (the service's view of the same trust) sees replacements.
    let shared = t.clone();
    // An older CRL revoking the ASK cannot take the slot back in time...
    let older = crl(
        &ark_name,
        &pki.ark_key,
        "250101000000Z",
        "270101000000Z",
        &[3],
    );
    let err = t.install_crl("kds:/vcek/v1/Milan/crl", &older).unwrap_err();
    assert!(err.to_string().contains("issued earlier"), "{err}");
    // ...a newer one revoking the ASK takes it, and the chain is refused.
    let newer = crl(
        &ark_name,
        &pki.ark_key,
        "250701000000Z",
        "270101000000Z",
        &[1],
    );
    let info = t.install_crl("kds:/vcek/v1/Milan/crl", &newer).unwrap();
    assert_eq!(info.revoked, 1);
    assert_eq!(t.crls().list().len(), 1);
    let err = verify_report(&shared, &r, &chain, None, None, at()).unwrap_err();
    assert_eq!(err.code(), "CertificateRevoked", "{err}");
    assert!(err.to_string().contains("kds:/vcek/v1/Milan/crl"), "{err}");
}

#[test]
fn a_required_crl_refuses_chains_of_an_ark_without_one() {
    let pki = pki(GEN);
    let r = report(&pki, &milan_report());
    let chain = vec![vcek(&pki), pki.ask.clone()];
    let mut t = trust(&pki);
    verify_report(&t, &r, &chain, None, None, at()).unwrap();
    t.require_crl(true);
    let err = verify_report(&t, &r, &chain, None, None, at()).unwrap_err();
    assert_eq!(err.code(), "CollateralMissing", "{err}");
    assert!(
        err.to_string().contains("no CRL of test ARK is held"),
        "{err}"
    );
    let current = crl(
        &format!("ARK-{GEN}"),
        &pki.ark_key,
        "250101000000Z",
        "270101000000Z",
        &[],
    );
    t.add_crl_der(&current).unwrap();
    verify_report(&t, &r, &chain, None, None, at()).unwrap();
}

#[test]
fn two_trusted_arks_of_the_same_name_are_told_apart_by_key() {
    let first = pki(GEN);
    let second = pki(GEN);
    let mut t = SnpTrust::empty();
    t.add_ark_der(first.ark.clone(), "first").unwrap();
    t.add_ark_der(second.ark.clone(), "second").unwrap();
    let r = report(&second, &milan_report());
    let v = verify_report(
        &t,
        &r,
        &[vcek(&second), second.ask.clone()],
        None,
        None,
        at(),
    )
    .unwrap();
    assert_eq!(v.root, "second");
}

// ---- Azure confidential VMs (AzureCvm) over generated SNP reports ----

mod azure_cvm {
    use super::*;
    use aver_attestation::evidence::azure_cvm::{AzureCvmEvidence, VtpmQuote, verify_evidence};
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwk(kid: &str, key: &RsaKeyPair) -> serde_json::Value {
        let Ok(aver_tpm::quote::AkPublicKey::Rsa { n, e }) =
            aver_tpm::quote::AkPublicKey::from_spki_der(&rsa_spki(key))
        else {
            panic!("not RSA");
        };
        serde_json::json!({"kid": kid, "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)})
    }

    /// An HCL report around a generated SNP report whose REPORT_DATA holds
    /// SHA-256 of `runtime`.
    fn hcl(pki: &Pki, vmpl: u32, runtime: &[u8]) -> Vec<u8> {
        let mut snp = report(
            pki,
            &ReportSpec {
                vmpl,
                ..milan_report()
            },
        );
        snp[0x50..0x70].copy_from_slice(&aver_attestation::sha256(runtime));
        resign(pki, &mut snp);
        let mut b = b"HCLA".to_vec();
        for v in [1u32, 0, 2, 0, 0, 0, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&snp);
        let len = runtime.len() as u32;
        for v in [20 + len, 1, 2, 1, len] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(runtime);
        b.resize(b.len() + 100, 0); // the NV index's padding
        b
    }

    /// A TPMS_ATTEST quote over SHA-256 PCRs 0–23 with `nonce`, signed by `ak`.
    fn quote(ak: &RsaKeyPair, nonce: &[u8], pcrs: &[Vec<u8>]) -> VtpmQuote {
        let mut m = Vec::new();
        m.extend_from_slice(&0xff54_4347u32.to_be_bytes());
        m.extend_from_slice(&0x8018u16.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes()); // qualifiedSigner
        m.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        m.extend_from_slice(nonce);
        m.extend_from_slice(&[0u8; 17]); // clockInfo
        m.extend_from_slice(&7u64.to_be_bytes()); // firmwareVersion
        m.extend_from_slice(&1u32.to_be_bytes());
        m.extend_from_slice(&0x000bu16.to_be_bytes());
        m.extend_from_slice(&[3, 0xff, 0xff, 0xff]);
        m.extend_from_slice(&32u16.to_be_bytes());
        m.extend_from_slice(&aver_attestation::sha256(&pcrs.concat()));
        let mut sig = vec![0u8; ak.public_modulus_len()];
        ak.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), &m, &mut sig)
            .unwrap();
        VtpmQuote {
            message: m,
            signature: sig,
            pcrs: pcrs.to_vec(),
        }
    }

    struct Case {
        pki: Pki,
        ak: RsaKeyPair,
        pcrs: Vec<Vec<u8>>,
    }

    fn case() -> Case {
        Case {
            pki: pki(GEN),
            ak: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
            pcrs: (0..24u8).map(|i| vec![i; 32]).collect(),
        }
    }

    fn runtime(keys: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::json!({"keys": keys, "vm-configuration": {"vmUniqueId": "test-vm"}})
            .to_string()
            .into_bytes()
    }

    fn run(c: &Case, hcl_report: Vec<u8>, q: VtpmQuote) -> Result<serde_json::Value, String> {
        let mut verifiers = Verifiers::production();
        verifiers.snp = trust(&c.pki);
        let ev = AzureCvmEvidence {
            hcl_report,
            certs: vec![vcek(&c.pki), c.pki.ask.clone()],
            td_quote: None,
            quote: q,
        };
        verify_evidence(&verifiers, &ev, b"fresh", at())
            .map(|v| serde_json::to_value(&v).unwrap())
            .map_err(|e| e.code().to_string())
    }

    #[test]
    fn a_generated_azure_cvm_verifies() {
        let c = case();
        let rt = runtime(vec![jwk("HCLAkPub", &c.ak)]);
        let facts = run(&c, hcl(&c.pki, 0, &rt), quote(&c.ak, b"fresh", &c.pcrs)).unwrap();
        assert_eq!(facts["snp"]["vmpl"], 0);
        assert_eq!(facts["firmware_version"], 7);
        assert_eq!(facts["pcrs"]["23"], hex::encode([23u8; 32]));
    }

    #[test]
    fn a_report_from_vmpl_1_is_refused() {
        let c = case();
        let rt = runtime(vec![jwk("HCLAkPub", &c.ak)]);
        let err = run(&c, hcl(&c.pki, 1, &rt), quote(&c.ak, b"fresh", &c.pcrs)).unwrap_err();
        assert_eq!(err, "AzureCvmVmplInvalid");
    }

    #[test]
    fn a_quote_by_a_key_other_than_hcl_ak_pub_is_refused() {
        let c = case();
        let other = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        // HCLAkPub is c.ak; the other key is in the JSON too, as HCLEkPub.
        let rt = runtime(vec![jwk("HCLAkPub", &c.ak), jwk("HCLEkPub", &other)]);
        let err = run(&c, hcl(&c.pki, 0, &rt), quote(&other, b"fresh", &c.pcrs)).unwrap_err();
        assert_eq!(err, "QuoteSignatureInvalid");
        // No HCLAkPub at all, or two of them.
        let rt = runtime(vec![jwk("HCLEkPub", &c.ak)]);
        let err = run(&c, hcl(&c.pki, 0, &rt), quote(&c.ak, b"fresh", &c.pcrs)).unwrap_err();
        assert_eq!(err, "HclRuntimeDataInvalid");
        let rt = runtime(vec![jwk("HCLAkPub", &c.ak), jwk("HCLAkPub", &other)]);
        let err = run(&c, hcl(&c.pki, 0, &rt), quote(&c.ak, b"fresh", &c.pcrs)).unwrap_err();
        assert_eq!(err, "HclRuntimeDataInvalid");
        // Runtime data that is not JSON, bound all the same.
        let err = run(
            &c,
            hcl(&c.pki, 0, b"not json"),
            quote(&c.ak, b"fresh", &c.pcrs),
        )
        .unwrap_err();
        assert_eq!(err, "HclRuntimeDataInvalid");
    }

    #[test]
    fn a_stale_quote_is_refused() {
        let c = case();
        let rt = runtime(vec![jwk("HCLAkPub", &c.ak)]);
        let err = run(&c, hcl(&c.pki, 0, &rt), quote(&c.ak, b"stale", &c.pcrs)).unwrap_err();
        assert_eq!(err, "ChallengeMismatch");
    }
}

/// A chain that verified is kept by its exact bytes; a later report of the
/// same platform skips the RSA checks but never the time or the CRLs, and
/// a trust that gains an ARK does not share what another judged.
#[test]
fn a_verified_chain_is_reused_but_time_and_crls_are_checked_each_time() {
    let pki = pki(GEN);
    let r = report(&pki, &milan_report());
    let chain = vec![vcek(&pki), pki.ask.clone()];
    let t = trust(&pki);
    let first = verify_report(&t, &r, &chain, None, None, at()).unwrap();
    let again = verify_report(&t, &r, &chain, None, None, at()).unwrap();
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
    // Outside the VCEK's validity (notAfter 2035): the precise error.
    let late = parse_rfc3339("2036-01-01T00:00:00Z").unwrap();
    let err = verify_report(&t, &r, &chain, None, None, late).unwrap_err();
    assert_eq!(err.code(), "CertificateExpired", "{err}");
    let early = parse_rfc3339("2019-01-01T00:00:00Z").unwrap();
    let err = verify_report(&t, &r, &chain, None, None, early).unwrap_err();
    assert_eq!(err.code(), "CertificateNotYetValid", "{err}");
    // A CRL revoking the ASK, installed after the chain was kept: refused.
    let revoking = crl(
        &format!("ARK-{GEN}"),
        &pki.ark_key,
        "250101000000Z",
        "270101000000Z",
        &[1],
    );
    t.add_crl_der(&revoking).unwrap();
    let err = verify_report(&t, &r, &chain, None, None, at()).unwrap_err();
    assert_eq!(err.code(), "CertificateRevoked", "{err}");

    // Two trusts that were one: the one that gains an ARK gets its own
    // cache, so a chain to the new ARK never verifies for the other.
    let other = aver_testkit::snp::pki(GEN);
    let mut gains = SnpTrust::empty();
    gains.add_ark_der(pki.ark.clone(), "first").unwrap();
    let stays = gains.clone();
    gains.add_ark_der(other.ark.clone(), "second").unwrap();
    let other_report = report(&other, &milan_report());
    let other_chain = vec![
        signing_cert(
            &other,
            GEN,
            false,
            SVNS,
            Some(CHIP.to_vec()),
            "350101000000Z",
        ),
        other.ask.clone(),
    ];
    verify_report(&gains, &other_report, &other_chain, None, None, at()).unwrap();
    // (`stays` trusts only the first ARK of that name, whose key did not
    // sign the other ASK.)
    let err = verify_report(&stays, &other_report, &other_chain, None, None, at()).unwrap_err();
    assert_eq!(err.code(), "CertificateChainInvalid", "{err}");
}
