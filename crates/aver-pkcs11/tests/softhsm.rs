//! Token signing through a real SoftHSM2 token: keys generated in the
//! token (C_GenerateKeyPair), certificates self-signed by the token, JWTs
//! signed by C_Sign that verify through the published JWKS; and the errors
//! an operator sees for a wrong PIN, token, object or module.
//!
//! One test function: SoftHSM reads `SOFTHSM2_CONF` once per process, so
//! the variable is set before the module is loaded and nothing else in this
//! binary runs concurrently with that.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_pkcs11::Pkcs11Error;
use aver_testkit::softhsm;
use aver_token::{KeyAlg, SigningKey, VerifyOptions};

const ISSUER: &str = "https://hsm.example";

/// The certificate's signature verifies under its own key (it was made by
/// the token over rcgen's TBS).
fn self_signature_verifies(cert: &[u8], alg: KeyAlg) {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
    let public = parsed.public_key().subject_public_key.data.as_ref();
    let algorithm: &dyn aws_lc_rs::signature::VerificationAlgorithm = match alg {
        KeyAlg::Rs256 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        KeyAlg::Es256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, public)
        .verify(
            parsed.tbs_certificate.as_ref(),
            parsed.signature_value.data.as_ref(),
        )
        .unwrap();
}

fn sign_and_verify(uri: &str, alg: KeyAlg) -> String {
    let key = SigningKey::generate_remote(ISSUER, aver_pkcs11::open_signer(uri).unwrap()).unwrap();
    assert!(key.is_remote());
    assert!(key.pkcs8_der().is_none(), "no private key in memory");
    assert_eq!(key.alg(), alg);
    self_signature_verifies(key.certificate_der(), alg);
    let mut claims = aver_token::Claims::new();
    claims.insert("iss".into(), ISSUER.into());
    claims.insert("nbf".into(), 100.into());
    claims.insert("exp".into(), 200.into());
    let token = key.sign_jwt(&format!("{ISSUER}/certs"), &claims).unwrap();
    let jwks = aver_token::metadata::jwks([&key]);
    assert_eq!(jwks["keys"][0]["alg"], alg.name());
    let options = VerifyOptions {
        issuer: Some(ISSUER.into()),
        now: 150,
        leeway: 0,
    };
    aver_token::verify_token(&token, &jwks, &options).unwrap();
    // Reloaded from the stored certificate (what a replica does): same kid.
    let again = SigningKey::from_remote(
        aver_pkcs11::open_signer(uri).unwrap(),
        key.certificate_der().to_vec(),
    )
    .unwrap();
    assert_eq!(again.kid(), key.kid());
    let token = again.sign_jwt(&format!("{ISSUER}/certs"), &claims).unwrap();
    aver_token::verify_token(&token, &jwks, &options).unwrap();
    key.certificate_der()
        .to_vec()
        .into_iter()
        .map(char::from)
        .collect()
}

#[test]
fn tokens_signed_in_softhsm_verify() {
    let base = std::env::temp_dir();
    let Some(hsm) = softhsm::setup("tokens_signed_in_softhsm_verify", &base) else {
        return;
    };
    // SAFETY: the only test in this binary, before the module is loaded.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
        std::env::remove_var(aver_pkcs11::MODULE_ENV);
    }
    hsm.init_token("aver");
    hsm.init_token("locked");

    // A wrong PIN, before anything logged in to that token.
    let wrong = format!(
        "pkcs11:token=locked;object=k?pin-value=0000&module-path={}",
        softhsm::MODULE
    );
    let err = aver_pkcs11::open(&wrong).unwrap_err();
    assert!(matches!(err, Pkcs11Error::Login { .. }), "{err}");
    assert!(!err.to_string().contains("0000"), "no PIN in errors: {err}");

    let rsa = hsm.uri("aver", "rsa-signing");
    let ec = hsm.uri("aver", "ec-signing");
    aver_pkcs11::generate_key_pair(&rsa, KeyAlg::Rs256).unwrap();
    aver_pkcs11::generate_key_pair(&ec, KeyAlg::Es256).unwrap();
    let rsa_cert = sign_and_verify(&rsa, KeyAlg::Rs256);
    let ec_cert = sign_and_verify(&ec, KeyAlg::Es256);
    assert_ne!(rsa_cert, ec_cert);

    // A certificate of another key is refused.
    let rsa_key =
        SigningKey::generate_remote(ISSUER, aver_pkcs11::open_signer(&rsa).unwrap()).unwrap();
    let err = SigningKey::from_remote(
        aver_pkcs11::open_signer(&ec).unwrap(),
        rsa_key.certificate_der().to_vec(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");

    // What an operator gets wrong.
    let missing_token = hsm.uri("nope", "rsa-signing");
    let err = aver_pkcs11::open(&missing_token).unwrap_err();
    assert!(matches!(err, Pkcs11Error::NoToken(_)), "{err}");
    let missing_key = hsm.uri("aver", "nope");
    let err = aver_pkcs11::open(&missing_key).unwrap_err();
    assert!(matches!(err, Pkcs11Error::NoKey(_)), "{err}");
    let err = aver_pkcs11::open("pkcs11:token=aver;object=rsa-signing?pin-value=4321").unwrap_err();
    assert!(matches!(err, Pkcs11Error::NoModule), "{err}");
    let err = aver_pkcs11::open(
        "pkcs11:token=aver;object=rsa-signing?pin-value=4321&module-path=/nonexistent/libpkcs11.so",
    )
    .unwrap_err();
    assert!(matches!(err, Pkcs11Error::Module { .. }), "{err}");
    let no_pin = format!(
        "pkcs11:token=aver;object=rsa-signing?module-path={}",
        softhsm::MODULE
    );
    let err = aver_pkcs11::open(&no_pin).unwrap_err();
    assert!(matches!(err, Pkcs11Error::NoPin(_)), "{err}");
    let missing_pin_file = format!(
        "pkcs11:token=aver;object=rsa-signing?pin-source=file:/nonexistent/pin&module-path={}",
        softhsm::MODULE
    );
    let err = aver_pkcs11::open(&missing_pin_file).unwrap_err();
    assert!(matches!(err, Pkcs11Error::PinFile { .. }), "{err}");

    let _ = std::fs::remove_dir_all(&hsm.dir);
}
