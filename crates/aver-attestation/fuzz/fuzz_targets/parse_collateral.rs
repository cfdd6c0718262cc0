#![no_main]
//! The DCAP collateral parsers: TCB info, QE identity, the PCS/PCCS body
//! splitters, dcap-qvl bundles, CRL decoding and the PCK certificate's SGX
//! extensions. Any bytes, never a panic; the whole input goes to each.
use aver_attestation::dcap::collateral::{
    CollateralBundle, crl_der, parse_qe_identity, parse_tcb_info, split_qe_identity_body,
    split_tcb_info_body,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_tcb_info(data);
    let _ = parse_qe_identity(data);
    if let Ok((raw, _)) = split_tcb_info_body(data) {
        let _ = parse_tcb_info(&raw);
    }
    if let Ok((raw, _)) = split_qe_identity_body(data) {
        let _ = parse_qe_identity(&raw);
    }
    if let Ok(bundle) = CollateralBundle::from_dcap_qvl_json(data) {
        let _ = parse_tcb_info(&bundle.tcb_info);
        let _ = parse_qe_identity(&bundle.qe_identity);
    }
    if let Ok(der) = crl_der(data, "fuzz") {
        let _ = aver_attestation::dcap::collateral::crl::read_crl(
            &der,
            "fuzz CRL",
            aver_attestation::VerificationTime::from_unix_seconds(1_751_328_000),
        );
    }
    let _ = aver_attestation::dcap::pck_ext::parse_pck_extensions(data);
});
