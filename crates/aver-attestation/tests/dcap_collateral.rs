//! DCAP collateral and the TCB verdict: the real SGX quote with its real
//! collateral at the pinned time gives Intel's verdict; collateral under
//! Intel's test root and PCS answer bodies verify; negatives generated
//! under the simulator's PKI give each refusal its own code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::dcap::collateral::{
    CollateralBundle, CollateralError, TcbStatus, bundle_from_named_files, parse_tcb_info,
    verify_collateral,
};
use aver_attestation::dcap::{DcapError, DcapVerifier, TcbAcceptance, TrustAnchors};
use aver_attestation::evidence::sgx::{
    SgxError, SgxEvidenceKind, claims, verify_evidence_with_collateral,
};
use aver_attestation::{AttestRequest, VerificationTime, parse_rfc3339};
use aver_sim::{EnclaveIdentity, SimCollateral, SimCollateralSpec, SimPlatform, SimTcbLevel};

fn at(text: &str) -> VerificationTime {
    parse_rfc3339(text).unwrap()
}

/// The vectors README's pin for sgx/dcap-qvl-sgx-v3.
const PIN: &str = "2025-07-01T00:00:00Z";

fn real(test: &str) -> Option<(Vec<u8>, CollateralBundle)> {
    let quote = aver_testkit::read_vector(test, "sgx/dcap-qvl-sgx-v3/quote.bin")?;
    let json = aver_testkit::read_vector(test, "sgx/dcap-qvl-sgx-v3/collateral.json")?;
    Some((quote, CollateralBundle::from_dcap_qvl_json(&json).unwrap()))
}

fn sgx_code(r: Result<impl std::fmt::Debug, SgxError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.code(),
    }
}

#[test]
fn real_quote_and_collateral_give_intels_verdict() {
    let Some((quote, bundle)) = real("real_quote_and_collateral_give_intels_verdict") else {
        return;
    };
    let roots = TrustAnchors::intel();
    let c = verify_collateral(&bundle, &roots, at(PIN)).unwrap();
    assert_eq!(c.tcb_info.tcb_evaluation_data_number, 17);
    assert_eq!(c.pck_crl.revoked, 0);
    let v = verify_evidence_with_collateral(
        SgxEvidenceKind::Quote,
        &DcapVerifier::new(roots),
        &quote,
        None,
        None,
        &c,
        at(PIN),
    )
    .unwrap();
    let t = v.tcb.clone().unwrap();
    // Expected by the vectors README (dcap-qvl's upstream test and 0.7.1).
    assert_eq!(t.status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(t.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(t.qe_status, TcbStatus::UpToDate);
    assert_eq!(
        t.platform_status,
        TcbStatus::ConfigurationAndSWHardeningNeeded
    );
    assert_eq!(t.fmspc, "00A067110000");
    assert_eq!(t.tcb_evaluation_data_number, 17);
    assert_eq!(t.tcb_date, "2024-03-13T00:00:00Z");
    assert_eq!(t.collateral_expiry, "2025-07-19T10:01:18Z");
    // The default acceptance refuses it, with the status's own code.
    let refused = TcbAcceptance::default().check(&t).unwrap_err();
    assert_eq!(refused.code(), "TcbStatusConfigurationAndSWHardeningNeeded");
    assert!(TcbAcceptance::all_but_revoked().check(&t).is_ok());

    // The claims: the seven hashes of x-ms-sgx-collateral (and the
    // deprecated alias) and the verdict.
    let request = AttestRequest {
        evidence: quote.clone(),
        runtime_data: None,
        init_time_data: None,
        nonce: None,
        tcb_baseline: Default::default(),
        ccel_event_log: None,
    };
    let c = claims(&v, &request);
    let col = c["x-ms-sgx-collateral"].as_object().unwrap();
    let mut keys: Vec<&str> = col.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "qeidcertshash",
            "qeidcrlhash",
            "qeidhash",
            "quotehash",
            "tcbinfocertshash",
            "tcbinfocrlhash",
            "tcbinfohash"
        ]
    );
    assert!(col.values().all(|h| h.as_str().unwrap().len() == 64));
    assert_eq!(c["maa-attestationcollateral"], c["x-ms-sgx-collateral"]);
    assert_eq!(
        c["x-ms-sgx-tcb-status"],
        "ConfigurationAndSWHardeningNeeded"
    );
    assert_eq!(
        c["x-ms-sgx-tcb-advisory-ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(c["x-ms-sgx-tcb-evaluation-data-number"], 17);
    assert_eq!(c["x-ms-sgx-fmspc"], "00A067110000");
}

#[test]
fn real_collateral_is_refused_outside_its_window() {
    let Some((_, bundle)) = real("real_collateral_is_refused_outside_its_window") else {
        return;
    };
    let roots = TrustAnchors::intel();
    // Today: every item is past its nextUpdate.
    let e = verify_collateral(&bundle, &roots, at("2026-11-28T00:00:00Z")).unwrap_err();
    assert_eq!(e.code(), "CollateralExpired");
    // Before the TCB info was issued (the CRLs and QE identity already were).
    let e = verify_collateral(&bundle, &roots, at("2025-06-19T10:30:00Z")).unwrap_err();
    assert_eq!(e.code(), "CollateralNotYetValid");
    assert!(e.to_string().contains("TCB info"), "{e}");
    // Verified once, then used at a later time: the window is rechecked.
    let c = verify_collateral(&bundle, &roots, at(PIN)).unwrap();
    assert_eq!(
        c.check_time(at("2025-07-19T10:01:18Z")).unwrap_err().code(),
        "CollateralExpired"
    );
}

#[test]
fn tampered_or_reserialized_tcb_info_is_refused() {
    let Some((_, bundle)) = real("tampered_or_reserialized_tcb_info_is_refused") else {
        return;
    };
    let roots = TrustAnchors::intel();
    // One status changed: still valid JSON, no longer Intel's bytes.
    let mut tampered = bundle.clone();
    let text = String::from_utf8(tampered.tcb_info.clone()).unwrap();
    tampered.tcb_info = text
        .replacen("ConfigurationAndSWHardeningNeeded", "UpToDate", 1)
        .into_bytes();
    assert!(parse_tcb_info(&tampered.tcb_info).is_ok());
    let e = verify_collateral(&tampered, &roots, at(PIN)).unwrap_err();
    assert_eq!(e.code(), "CollateralSignatureInvalid");
    // The same content re-serialized (whitespace): the signature covers
    // the bytes, so this is refused too.
    let mut spaced = bundle.clone();
    spaced.tcb_info = text.replacen(",", ", ", 1).into_bytes();
    assert_eq!(
        verify_collateral(&spaced, &roots, at(PIN))
            .unwrap_err()
            .code(),
        "CollateralSignatureInvalid"
    );
    // A QE identity signature broken.
    let mut qe = bundle.clone();
    qe.qe_identity_signature[10] ^= 1;
    assert_eq!(
        verify_collateral(&qe, &roots, at(PIN)).unwrap_err().code(),
        "CollateralSignatureInvalid"
    );
}

#[test]
fn missing_or_mismatched_crls_fail_closed() {
    let Some((_, bundle)) = real("missing_or_mismatched_crls_fail_closed") else {
        return;
    };
    let roots = TrustAnchors::intel();
    let mut no_pck_crl = bundle.clone();
    no_pck_crl.pck_crl.clear();
    assert_eq!(
        verify_collateral(&no_pck_crl, &roots, at(PIN))
            .unwrap_err()
            .code(),
        "CollateralMissing"
    );
    let mut no_root_crl = bundle.clone();
    no_root_crl.root_ca_crl.clear();
    assert_eq!(
        verify_collateral(&no_root_crl, &roots, at(PIN))
            .unwrap_err()
            .code(),
        "CollateralMissing"
    );
    // A bundle without the field at all.
    let json = br#"{"tcb_info":"{}"}"#;
    assert_eq!(
        CollateralBundle::from_dcap_qvl_json(json)
            .unwrap_err()
            .code(),
        "CollateralMissing"
    );
    // The root CRL given as the PCK CRL: its issuer is not the PCK CA.
    let mut swapped = bundle.clone();
    swapped.pck_crl = bundle.root_ca_crl.clone();
    assert_eq!(
        verify_collateral(&swapped, &roots, at(PIN))
            .unwrap_err()
            .code(),
        "CrlIssuerMismatch"
    );
    // Collateral under another root is not trusted.
    assert_eq!(
        verify_collateral(&bundle, &TrustAnchors::empty(), at(PIN))
            .unwrap_err()
            .code(),
        "CollateralIssuerChainInvalid"
    );
}

fn read_dir(test: &str, dir: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let path = aver_testkit::vector(test, dir)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        files.push((
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read(entry.path()).unwrap(),
        ));
    }
    Some(files)
}

#[test]
fn pcs_answer_bodies_verify_from_their_exact_member_bytes() {
    // go-tdx-guest's PCS bodies {"tcbInfo":…,"signature":…} with the
    // issuer-chain headers and CRLs: the signed member is located in the
    // body, never re-serialized.
    let test = "pcs_answer_bodies_verify_from_their_exact_member_bytes";
    let Some(mut files) = read_dir(test, "tdx/go-tdx-guest-spr-e4") else {
        return;
    };
    // Only the PCS answers, not the derived dcap-qvl bundle.
    files.retain(|(n, _)| n != "collateral.derived.json");
    let bundle = bundle_from_named_files(&files).unwrap();
    assert!(bundle.tcb_info.starts_with(b"{\"id\":\"TDX\""));
    let c = verify_collateral(&bundle, &TrustAnchors::intel(), at("2023-07-01T01:00:00Z")).unwrap();
    assert_eq!(c.tcb_info.id, "TDX");
    assert_eq!(hex::encode_upper(c.tcb_info.fmspc), "50806F000000");
    assert_eq!(c.qe_identity.id, "TD_QE");
    assert_eq!(c.pck_crl.revoked, 44);
}

#[test]
fn tcb_info_v2_under_intels_test_root() {
    let test = "tcb_info_v2_under_intels_test_root";
    let Some(files) = read_dir(test, "sgx/intel-qvl-synthetic-testroot") else {
        return;
    };
    let root = &files
        .iter()
        .find(|(n, _)| n == "trustedRootCaCert.pem")
        .unwrap()
        .1;
    let mut roots = TrustAnchors::empty();
    roots.add_pem(root, "Intel test root").unwrap();
    let bundle = bundle_from_named_files(&files).unwrap();
    let c = verify_collateral(&bundle, &roots, at("2025-01-01T00:00:00Z")).unwrap();
    assert_eq!(c.tcb_info.version, 2);
    assert_eq!(hex::encode_upper(c.tcb_info.fmspc), "00707F000000");
    // The real Intel root does not vouch for the test PKI.
    assert!(
        verify_collateral(&bundle, &TrustAnchors::intel(), at("2025-01-01T00:00:00Z")).is_err()
    );
}

// ---- generated negatives under the simulator's PKI -------------------------

const SIM_TIME: &str = "2025-01-15T00:00:00Z";

fn sim_roots(p: &SimPlatform) -> TrustAnchors {
    let mut roots = TrustAnchors::empty();
    roots.add_pem(p.root_pem().as_bytes(), "sim").unwrap();
    roots
}

fn to_bundle(s: &SimCollateral) -> CollateralBundle {
    // Through dcap-qvl's JSON, as the CLI and import read it.
    CollateralBundle::from_dcap_qvl_json(s.to_dcap_qvl_json().as_bytes()).unwrap()
}

/// Verifies a simulated quote with collateral built from `spec`.
fn sim_verdict(
    p: &SimPlatform,
    spec: &SimCollateralSpec,
) -> Result<aver_attestation::dcap::TcbVerdict, SgxError> {
    let roots = sim_roots(p);
    let c = verify_collateral(
        &to_bundle(&p.collateral(spec).unwrap()),
        &roots,
        at(SIM_TIME),
    )
    .map_err(|e| SgxError::Dcap(DcapError::Collateral(e)))?;
    let quote = p.quote(&EnclaveIdentity::default()).unwrap();
    verify_evidence_with_collateral(
        SgxEvidenceKind::Quote,
        &DcapVerifier::new(roots),
        &quote,
        None,
        None,
        &c,
        at(SIM_TIME),
    )
    .map(|v| v.tcb.unwrap())
}

#[test]
fn simulated_collateral_gives_each_status() {
    let p = SimPlatform::generate().unwrap();
    let v = sim_verdict(&p, &SimCollateralSpec::default()).unwrap();
    assert_eq!(v.status, TcbStatus::UpToDate);
    assert!(TcbAcceptance::default().check(&v).is_ok());
    for status in TcbStatus::ALL {
        let spec = SimCollateralSpec {
            levels: vec![SimTcbLevel::platform(status.as_str(), &["INTEL-SA-00001"])],
            ..SimCollateralSpec::default()
        };
        let v = sim_verdict(&p, &spec).unwrap();
        assert_eq!(v.status, status);
        assert_eq!(v.advisory_ids, ["INTEL-SA-00001"]);
        let accepted = TcbAcceptance::default().check(&v);
        match status {
            TcbStatus::UpToDate | TcbStatus::SWHardeningNeeded => assert!(accepted.is_ok()),
            _ => assert_eq!(
                accepted.unwrap_err().code(),
                format!("TcbStatus{}", status.as_str())
            ),
        }
    }
    // A newer level above the platform: the next one down matches.
    let mut newer = SimTcbLevel::platform("UpToDate", &[]);
    newer.components[0] = 18;
    let spec = SimCollateralSpec {
        levels: vec![
            newer.clone(),
            SimTcbLevel::platform("OutOfDate", &["INTEL-SA-00002"]),
        ],
        ..SimCollateralSpec::default()
    };
    assert_eq!(sim_verdict(&p, &spec).unwrap().status, TcbStatus::OutOfDate);
    // Only levels above the platform: no matching level is its own verdict.
    let spec = SimCollateralSpec {
        levels: vec![newer],
        ..SimCollateralSpec::default()
    };
    assert_eq!(sgx_code(sim_verdict(&p, &spec)), "TcbLevelNotSupported");
}

#[test]
fn qe_identity_status_combines_as_qvl() {
    let p = SimPlatform::generate().unwrap();
    let qe_out = vec![(9, "UpToDate".to_string()), (1, "OutOfDate".to_string())];
    for (platform, combined) in [
        (TcbStatus::UpToDate, TcbStatus::OutOfDate),
        (TcbStatus::SWHardeningNeeded, TcbStatus::OutOfDate),
        (
            TcbStatus::ConfigurationNeeded,
            TcbStatus::OutOfDateConfigurationNeeded,
        ),
        (
            TcbStatus::ConfigurationAndSWHardeningNeeded,
            TcbStatus::OutOfDateConfigurationNeeded,
        ),
        (TcbStatus::Revoked, TcbStatus::Revoked),
    ] {
        let spec = SimCollateralSpec {
            levels: vec![SimTcbLevel::platform(platform.as_str(), &[])],
            qe_levels: qe_out.clone(),
            ..SimCollateralSpec::default()
        };
        let v = sim_verdict(&p, &spec).unwrap();
        assert_eq!((v.status, v.qe_status), (combined, TcbStatus::OutOfDate));
    }
    let spec = SimCollateralSpec {
        qe_levels: vec![(8, "Revoked".to_string())],
        ..SimCollateralSpec::default()
    };
    assert_eq!(sim_verdict(&p, &spec).unwrap().status, TcbStatus::Revoked);
    // The QE's ISVSVN (8) below every level.
    let spec = SimCollateralSpec {
        qe_levels: vec![(9, "UpToDate".to_string())],
        ..SimCollateralSpec::default()
    };
    assert_eq!(sgx_code(sim_verdict(&p, &spec)), "QeTcbNotSupported");
    // Another QE signer.
    let spec = SimCollateralSpec {
        qe_mrsigner: [0x77; 32],
        ..SimCollateralSpec::default()
    };
    assert_eq!(sgx_code(sim_verdict(&p, &spec)), "QeIdentityMismatch");
}

#[test]
fn simulated_negatives_each_have_their_code() {
    let p = SimPlatform::generate().unwrap();
    let cases: Vec<(&str, SimCollateralSpec, &str)> = vec![
        (
            "revoked PCK",
            SimCollateralSpec {
                revoke_pck: true,
                ..SimCollateralSpec::default()
            },
            "CertificateRevoked",
        ),
        (
            "revoked PCK CA",
            SimCollateralSpec {
                revoke_ca: true,
                ..SimCollateralSpec::default()
            },
            "CollateralIssuerChainInvalid",
        ),
        (
            "wrong FMSPC",
            SimCollateralSpec {
                fmspc: Some([1, 2, 3, 4, 5, 6]),
                ..SimCollateralSpec::default()
            },
            "FmspcMismatch",
        ),
        (
            "expired TCB info",
            SimCollateralSpec {
                next_update: "2025-01-10T00:00:00Z".into(),
                ..SimCollateralSpec::default()
            },
            "CollateralExpired",
        ),
        (
            "TCB info not yet issued",
            SimCollateralSpec {
                issue_date: "2025-01-20T00:00:00Z".into(),
                ..SimCollateralSpec::default()
            },
            "CollateralNotYetValid",
        ),
        (
            "expired CRLs",
            SimCollateralSpec {
                crl_next_update: (2025, 1, 10),
                ..SimCollateralSpec::default()
            },
            "CollateralExpired",
        ),
        (
            "CRLs from the future",
            SimCollateralSpec {
                crl_this_update: (2025, 1, 20),
                ..SimCollateralSpec::default()
            },
            "CollateralNotYetValid",
        ),
    ];
    for (name, spec, code) in cases {
        assert_eq!(sgx_code(sim_verdict(&p, &spec)), code, "{name}");
    }
    // Tampered TCB info bytes.
    let roots = sim_roots(&p);
    let mut s = p.collateral(&SimCollateralSpec::default()).unwrap();
    s.tcb_info = s.tcb_info.replace("\"pcesvn\":10", "\"pcesvn\":9");
    assert_eq!(
        verify_collateral(&to_bundle(&s), &roots, at(SIM_TIME)).unwrap_err(),
        CollateralError::SignatureInvalid(
            "the TCB info signature does not verify with the TCB signing key over the bytes received"
                .into()
        )
    );
    // The collateral of another platform family (its PCK CRL is another
    // CA's): the PCK CRL issuer does not match.
    let other = SimPlatform::generate().unwrap();
    let c = verify_collateral(
        &to_bundle(&other.collateral(&SimCollateralSpec::default()).unwrap()),
        &roots,
        at(SIM_TIME),
    )
    .unwrap();
    let quote = p.quote(&EnclaveIdentity::default()).unwrap();
    let r = verify_evidence_with_collateral(
        SgxEvidenceKind::Quote,
        &DcapVerifier::new(roots),
        &quote,
        None,
        None,
        &c,
        at(SIM_TIME),
    );
    let code = sgx_code(r);
    assert!(
        [
            "CrlIssuerMismatch",
            "RevocationStatusUnknown",
            "CertificateChainInvalid"
        ]
        .contains(&code),
        "{code}"
    );
}

/// Collateral of `p` at TCB evaluation data number `number`, verified.
fn sim_at_number(
    p: &SimPlatform,
    number: u32,
    status: &str,
) -> aver_attestation::dcap::collateral::VerifiedCollateral {
    let spec = SimCollateralSpec {
        tcb_evaluation_data_number: number,
        levels: vec![SimTcbLevel::platform(status, &[])],
        ..SimCollateralSpec::default()
    };
    verify_collateral(
        &to_bundle(&p.collateral(&spec).unwrap()),
        &sim_roots(p),
        at(SIM_TIME),
    )
    .unwrap()
}

#[test]
fn the_cache_keeps_each_tcb_evaluation_data_number() {
    use aver_attestation::dcap::TeeType;
    use aver_attestation::dcap::collateral::CollateralCache;
    use aver_attestation::dcap::collateral::cache::MAX_NUMBERS_PER_FMSPC;
    let p = SimPlatform::generate().unwrap();
    let cache = CollateralCache::default();
    assert!(cache.insert(sim_at_number(&p, 17, "OutOfDate")));
    assert!(cache.insert(sim_at_number(&p, 16, "UpToDate")));
    let fmspc = [0x00, 0x90, 0x6E, 0xD5, 0x00, 0x00];
    let t = at(SIM_TIME);
    // Without a baseline: the newest number, never an older one.
    assert_eq!(
        cache
            .get(&fmspc, t)
            .unwrap()
            .tcb_info
            .tcb_evaluation_data_number,
        17
    );
    let pinned = cache.get_baseline(TeeType::Sgx, &fmspc, 16, t).unwrap();
    assert_eq!(pinned.tcb_info.tcb_evaluation_data_number, 16);
    assert!(cache.get_baseline(TeeType::Sgx, &fmspc, 15, t).is_none());
    assert!(cache.get_baseline(TeeType::Tdx, &fmspc, 16, t).is_none());
    // Past its nextUpdate, the newest is not replaced by an older one.
    let later = at("2025-03-01T00:00:00Z");
    assert!(cache.get(&fmspc, later).is_none());
    let held = cache.list();
    assert_eq!(held.len(), 2);
    assert_eq!(held.iter().filter(|h| h.newest).count(), 1);
    let numbers = cache.evaluation_numbers(TeeType::Sgx);
    assert_eq!(numbers.keys().copied().collect::<Vec<_>>(), [16, 17]);
    assert_eq!(numbers[&16].1, "2024-11-13T00:00:00Z");
    // Bounded: beyond MAX_NUMBERS_PER_FMSPC, the lowest numbers go.
    let first = 100;
    let last = first + MAX_NUMBERS_PER_FMSPC as u32;
    for n in first..=last {
        assert!(cache.insert(sim_at_number(&p, n, "UpToDate")));
    }
    let kept = cache.evaluation_numbers(TeeType::Sgx);
    assert_eq!(kept.len(), MAX_NUMBERS_PER_FMSPC);
    assert_eq!(kept.keys().next(), Some(&(first + 1)));
    // An older number than everything kept is not let in.
    assert!(!cache.insert(sim_at_number(&p, 1, "UpToDate")));
}

#[test]
fn a_policy_chooses_the_baseline_that_judges_the_quote() {
    use aver_attestation::evidence::sgx::SGX_ENCLAVE;
    use aver_attestation::{ActivePolicy, PolicyChoice, TcbBaseline, Verifiers, tail::Signer};
    let p = SimPlatform::generate().unwrap();
    let mut verifiers = Verifiers::new(DcapVerifier::new(sim_roots(&p)));
    verifiers
        .collateral
        .insert(sim_at_number(&p, 17, "OutOfDate"));
    verifiers
        .collateral
        .insert(sim_at_number(&p, 16, "UpToDate"));
    let policy = |id: &str| {
        ActivePolicy::from_text(
            &format!(
                "version=1.1; configurationrules{{ => issueproperty(type=\"x-ms-sgx-tcbidentifier\", value=\"{id}\"); }}; authorizationrules{{ => permit(); }};"
            ),
            None,
        )
    };
    assert_eq!(
        policy("16").unwrap().tcb_baseline,
        TcbBaseline::EvaluationDataNumber(16)
    );
    assert_eq!(
        policy("AzureDefault").unwrap().tcb_baseline,
        TcbBaseline::ServiceDefault
    );
    for bad in ["", "sixteen", "-1", "16.0", "99999999999"] {
        assert_eq!(
            policy(bad).unwrap_err().code,
            "TcbBaselineInvalid",
            "{bad:?}"
        );
    }
    let request = AttestRequest {
        evidence: p.quote(&EnclaveIdentity::default()).unwrap(),
        ..AttestRequest::default()
    };
    let key = aver_token::SigningKey::generate("https://aver.test").unwrap();
    let signer = Signer {
        issuer: "https://aver.test",
        key: &key,
    };
    let budget = aver_policy::Budget::default();
    let run = |policy: &ActivePolicy, verifiers: &Verifiers| {
        aver_attestation::attest(
            &SGX_ENCLAVE,
            verifiers,
            &request,
            PolicyChoice::Active(policy),
            at(SIM_TIME),
            &signer,
            &budget,
        )
        .map(|(v, _)| v.claims["x-ms-sgx-tcb-evaluation-data-number"].clone())
        .map_err(|e| e.code.to_string())
    };
    assert_eq!(run(&policy("16").unwrap(), &verifiers), Ok(16.into()));
    assert_eq!(
        run(&policy("azuredefault").unwrap(), &verifiers),
        Err("TcbStatusOutOfDate".into())
    );
    assert_eq!(
        run(&policy("15").unwrap(), &verifiers),
        Err("TcbBaselineUnavailable".into())
    );
    // The service's default stands in for `azuredefault`.
    verifiers.default_tcb_baseline = Some(16);
    assert_eq!(
        run(&policy("azuredefault").unwrap(), &verifiers),
        Ok(16.into())
    );
    assert_eq!(
        run(&policy("17").unwrap(), &verifiers),
        Err("TcbStatusOutOfDate".into())
    );
}
