//! The verified-PCK-chain cache: a second quote on the same chain skips
//! chain building, but never a check whose answer could differ — time
//! outside the chain's window, or other CRLs, go through the full check.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::dcap::{Collateral, DcapError, DcapVerifier, TrustAnchors, parse_quote};
use aver_attestation::parse_rfc3339;
use aver_sim::{EnclaveIdentity, SimCollateralSpec, SimPlatform};

fn verifier(p: &SimPlatform) -> DcapVerifier {
    let mut roots = TrustAnchors::empty();
    roots.add_pem(p.root_pem().as_bytes(), "sim").unwrap();
    DcapVerifier::new(roots)
}

fn crls(p: &SimPlatform, spec: &SimCollateralSpec) -> Collateral {
    let c = p.collateral(spec).unwrap();
    Collateral {
        crls: vec![c.pck_crl, c.root_ca_crl],
        crl_digest: None,
    }
}

#[test]
fn cached_chains_are_reused_only_where_the_full_check_would_agree() {
    let p = SimPlatform::generate().unwrap();
    let quote_bytes = p.quote(&EnclaveIdentity::default()).unwrap();
    let quote = parse_quote(&quote_bytes).unwrap();
    let v = verifier(&p);
    // Inside the simulated CRLs' window (2025-01-01 .. 2025-02-01).
    let t = parse_rfc3339("2025-01-15T00:00:00Z").unwrap();

    let first = v.verify(&quote, None, t).unwrap();
    assert_eq!(v.chain_cache().len(), 1);
    // Same chain, no CRLs, same window: a hit with the same answer.
    assert_eq!(v.verify(&quote, None, t).unwrap(), first);
    assert_eq!(v.chain_cache().len(), 1);
    // Another quote of the same platform carries the same chain.
    let other = p
        .quote(&EnclaveIdentity {
            svn: 9,
            ..EnclaveIdentity::default()
        })
        .unwrap();
    v.verify(&parse_quote(&other).unwrap(), None, t).unwrap();
    assert_eq!(v.chain_cache().len(), 1);

    // Outside the chain's validity the cached result is not used.
    let far_future = parse_rfc3339("2999-01-01T00:00:00Z").unwrap();
    assert_eq!(
        v.verify(&quote, None, far_future).unwrap_err(),
        DcapError::CertificateExpired
    );
    let long_ago = parse_rfc3339("1990-01-01T00:00:00Z").unwrap();
    assert_eq!(
        v.verify(&quote, None, long_ago).unwrap_err(),
        DcapError::CertificateNotYetValid
    );

    // With CRLs the chain is checked again (another key), and revocation
    // is never answered from a result obtained without it.
    let clean = crls(&p, &SimCollateralSpec::default());
    v.verify(&quote, Some(&clean), t).unwrap();
    assert_eq!(v.chain_cache().len(), 2);
    let revoking = crls(
        &p,
        &SimCollateralSpec {
            revoke_pck: true,
            ..SimCollateralSpec::default()
        },
    );
    assert_eq!(
        v.verify(&quote, Some(&revoking), t).unwrap_err(),
        DcapError::CertificateRevoked
    );
    assert_eq!(v.chain_cache().len(), 2, "a refused chain is not cached");
    // CRLs past their nextUpdate: the cached clean result does not hold.
    let after_crls = parse_rfc3339("2025-03-01T00:00:00Z").unwrap();
    assert_eq!(
        v.verify(&quote, Some(&clean), after_crls).unwrap_err(),
        DcapError::CollateralExpired
    );

    // A clone shares the cache; a new verifier starts empty.
    assert_eq!(v.clone().chain_cache().len(), 2);
    assert!(verifier(&p).chain_cache().is_empty());
}

#[test]
fn a_verified_chain_answers_its_platform_identity_without_parsing() {
    let p = SimPlatform::generate().unwrap();
    let quote_bytes = p.quote(&EnclaveIdentity::default()).unwrap();
    let quote = parse_quote(&quote_bytes).unwrap();
    let pem = quote.qe.pck_chain_pem;
    let v = verifier(&p);
    let t = parse_rfc3339("2025-01-15T00:00:00Z").unwrap();
    let read = ([9u8; 6], "processor");
    // Not yet verified: the leaf is read (here: the stand-in answer).
    assert_eq!(v.chain_cache().identity(pem, || Some(read)), Some(read));
    // A chain that does not verify is never remembered.
    let far_future = parse_rfc3339("2999-01-01T00:00:00Z").unwrap();
    assert!(v.verify(&quote, None, far_future).is_err());
    assert_eq!(v.chain_cache().identity(pem, || None), None);
    // Once verified, the cached chain answers: the simulated platform's
    // FMSPC and its platform CA, without calling `read`.
    v.verify(&quote, None, t).unwrap();
    let cached = v
        .chain_cache()
        .identity(pem, || panic!("the cached chain should answer"));
    assert_eq!(
        cached,
        Some(([0x00, 0x90, 0x6E, 0xD5, 0x00, 0x00], "platform"))
    );
    // Other bytes (one flipped) are another chain: read again.
    let mut other = pem.to_vec();
    let last = other.len() - 40;
    other[last] ^= 1;
    assert_eq!(v.chain_cache().identity(&other, || None), None);
}
