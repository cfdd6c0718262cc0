//! `aver collateral import` of VCEKs: the key computed from a VCEK is the
//! key a report without a chain looks up, so an imported VCEK is found.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::evidence::snp::kds::{evidence, vcek_cache_key, vcek_lookup};
use aver_attestation::evidence::snp::{SnpTrust, encode_evidence};
use aver_attestation::parse_rfc3339;

const PINNED: &str = "2025-06-01T00:00:00Z";

#[test]
fn an_imported_vcek_is_under_the_key_its_reports_look_up() {
    let test = "an_imported_vcek_is_under_the_key_its_reports_look_up";
    let (Some(report), Some(vcek)) = (
        aver_testkit::read_vector(test, "sev-snp/virtee-milan-turin/report_milan.bin"),
        aver_testkit::read_vector(test, "sev-snp/virtee-milan-turin/vcek_milan.der"),
    ) else {
        return;
    };
    let time = parse_rfc3339(PINNED).unwrap();
    let key = vcek_cache_key(&SnpTrust::amd(), &vcek, time).unwrap();
    assert!(key.starts_with("amd/milan/vcek/"), "{key}");
    let lookup = vcek_lookup(&evidence(&encode_evidence(&report, None)).unwrap()).unwrap();
    let (first, _) = lookup.candidates().next().unwrap();
    assert_eq!(key, first);
}

#[test]
fn vleks_and_untrusted_or_expired_vceks_are_not_imported() {
    let test = "vleks_and_untrusted_or_expired_vceks_are_not_imported";
    let (Some(vlek), Some(vcek)) = (
        aver_testkit::read_vector(test, "sev-snp/trustee/test-vlek.der"),
        aver_testkit::read_vector(test, "sev-snp/virtee-milan-turin/vcek_milan.der"),
    ) else {
        return;
    };
    let time = parse_rfc3339(PINNED).unwrap();
    // A VLEK is refused (its ASVK is not built in, or it is a VLEK).
    assert!(vcek_cache_key(&SnpTrust::amd(), &vlek, time).is_err());
    // No trusted ARK.
    let err = vcek_cache_key(&SnpTrust::empty(), &vcek, time).unwrap_err();
    assert!(!err.to_string().is_empty());
    // Long after the VCEK's validity.
    let late = parse_rfc3339("2099-01-01T00:00:00Z").unwrap();
    assert!(vcek_cache_key(&SnpTrust::amd(), &vcek, late).is_err());
}
