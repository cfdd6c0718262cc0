#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
use aver_token::keys::unsecured_jwt;
use aver_token::metadata::{jwks, openid_configuration};
use aver_token::{Claims, CompactJws, JwsAlg, SigningKey, TokenError, VerifyOptions, verify_token};
use serde_json::json;

const ISSUER: &str = "https://aver.test:8443";
const NOW: u64 = 1_800_000_000;

fn claims(iat: u64) -> Claims {
    let mut c = Claims::new();
    c.insert("iss".into(), ISSUER.into());
    c.insert("iat".into(), iat.into());
    c.insert("nbf".into(), iat.into());
    c.insert("exp".into(), (iat + 28_800).into());
    c.insert("x-ms-ver".into(), "1.0".into());
    c
}

fn options() -> VerifyOptions {
    VerifyOptions {
        issuer: Some(ISSUER.into()),
        now: NOW,
        leeway: 60,
    }
}

#[test]
fn token_header_and_claims_have_azure_shape() {
    let key = SigningKey::generate(ISSUER).unwrap();
    let token = key
        .sign_jwt(&format!("{ISSUER}/certs"), &claims(NOW))
        .unwrap();
    let jws = CompactJws::parse(&token).unwrap();
    assert_eq!(jws.alg, JwsAlg::Rs256);
    assert_eq!(jws.header["jku"], format!("{ISSUER}/certs"));
    assert_eq!(jws.header["kid"], key.kid());
    assert_eq!(jws.header["typ"], "JWT");
    let header_json = String::from_utf8(
        aver_token::b64::decode_lenient(token.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(
        header_json.starts_with(r#"{"alg":"RS256","jku":"#),
        "{header_json}"
    );
    // Claims are emitted sorted, as Azure's are.
    let payload = String::from_utf8(jws.payload.clone()).unwrap();
    assert!(payload.starts_with(r#"{"exp":"#), "{payload}");
    let verified = verify_token(&token, &jwks([&key]), &options()).unwrap();
    assert_eq!(verified["x-ms-ver"], "1.0");
}

#[test]
fn rejections_each_have_their_reason() {
    let key = SigningKey::generate(ISSUER).unwrap();
    let set = jwks([&key]);
    let token = key.sign_jwt("j", &claims(NOW)).unwrap();

    // Tampered payload.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut forged = claims(NOW);
    forged.insert("x-ms-ver".into(), "2.0".into());
    parts[1] = aver_token::b64::encode_url(&serde_json::to_vec(&forged).unwrap());
    assert_eq!(
        verify_token(&parts.join("."), &set, &options()),
        Err(TokenError::BadSignature)
    );
    // Unknown kid: a key the relying party never saw.
    let stranger = SigningKey::generate(ISSUER).unwrap();
    let foreign = stranger.sign_jwt("j", &claims(NOW)).unwrap();
    assert_eq!(
        verify_token(&foreign, &set, &options()),
        Err(TokenError::UnknownKid(stranger.kid().into()))
    );
    // Expired and not yet valid (beyond the leeway).
    let old = key.sign_jwt("j", &claims(NOW - 28_800 - 61)).unwrap();
    assert!(matches!(
        verify_token(&old, &set, &options()),
        Err(TokenError::Expired { .. })
    ));
    let barely = key.sign_jwt("j", &claims(NOW - 28_800 - 59)).unwrap();
    assert!(
        verify_token(&barely, &set, &options()).is_ok(),
        "within leeway"
    );
    let future = key.sign_jwt("j", &claims(NOW + 61)).unwrap();
    assert!(matches!(
        verify_token(&future, &set, &options()),
        Err(TokenError::NotYetValid { .. })
    ));
    // Wrong issuer.
    let mut other = claims(NOW);
    other.insert("iss".into(), "https://evil.test".into());
    let wrong = key.sign_jwt("j", &other).unwrap();
    assert!(matches!(
        verify_token(&wrong, &set, &options()),
        Err(TokenError::WrongIssuer { .. })
    ));
    // Unsecured.
    assert_eq!(
        verify_token(&unsecured_jwt(&claims(NOW)), &set, &options()),
        Err(TokenError::Unsecured)
    );
}

#[test]
fn tokens_verify_with_an_independent_jose_implementation() {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let key = SigningKey::generate(ISSUER).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = key.sign_jwt("j", &claims(now)).unwrap();
    let jwk = key.jwk();
    let decoding =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    let data = decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
    assert_eq!(data.claims["x-ms-ver"], "1.0");
    assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
}

#[test]
fn recorded_azure_token_verifies_with_recorded_jwks() {
    let test = "recorded_azure_token_verifies_with_recorded_jwks";
    let dir = "maa/maa-recorded-sgx-2022-10-07";
    let (Some(resp), Some(certs)) = (
        aver_testkit::read_vector(test, &format!("{dir}/response-attest-SgxEnclave.json")),
        aver_testkit::read_vector(test, &format!("{dir}/certs-jwks-subset.json")),
    ) else {
        return;
    };
    let resp: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    let token = resp["token"].as_str().unwrap();
    let certs: serde_json::Value = serde_json::from_slice(&certs).unwrap();
    let opts = VerifyOptions {
        issuer: Some("https://sharedwus.wus.attest.azure.net".into()),
        now: 1_665_149_033 + 3600,
        leeway: 0,
    };
    let claims = verify_token(token, &certs, &opts).unwrap();
    assert_eq!(
        claims["x-ms-policy-hash"],
        "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw"
    );
    // The same token is expired today.
    let today = VerifyOptions {
        now: 1_795_824_000,
        ..opts
    };
    assert!(matches!(
        verify_token(token, &certs, &today),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn docs_signed_policy_verifies_with_its_rsa256_spelling() {
    let Some(text) =
        aver_testkit::read_vector("docs_signed_policy", "maa/docs-signed-policy-jwt.txt")
    else {
        return;
    };
    let text = String::from_utf8(text).unwrap();
    let jws = CompactJws::parse(text.trim()).unwrap();
    assert_eq!(jws.header["alg"], "RSA256");
    assert_eq!(jws.alg, JwsAlg::Rs256);
    let x5c = jws.x5c().unwrap();
    jws.verify_with_certificate(&x5c[0]).unwrap();
    // A different certificate does not verify it.
    let Some(pem) =
        aver_testkit::read_vector("docs_signed_policy", "maa/docs-policy-signer-cert1.pem")
    else {
        return;
    };
    let pem = String::from_utf8(pem).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let other = aver_token::b64::decode_std(&b64).unwrap();
    assert!(jws.verify_with_certificate(&other).is_err());

    let Some(add) =
        aver_testkit::read_vector("docs_add_signer", "maa/docs-add-policy-signer-jws.txt")
    else {
        return;
    };
    let add = String::from_utf8(add).unwrap();
    let jws = CompactJws::parse(add.trim()).unwrap();
    jws.verify_with_certificate(&other).unwrap();
    assert!(
        jws.payload_json()
            .unwrap()
            .unwrap()
            .contains_key("maa-policyCertificate")
    );
}

#[test]
fn openid_configuration_matches_the_recorded_shape() {
    let Some(recorded) = aver_testkit::read_vector(
        "openid_configuration",
        "maa/openid-configuration-isolated-recorded.json",
    ) else {
        return;
    };
    let recorded: serde_json::Value = serde_json::from_slice(&recorded).unwrap();
    let ours = openid_configuration(ISSUER);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ours), keys(&recorded));
    assert_eq!(ours["claims_supported"], recorded["claims_supported"]);
    assert_eq!(ours["jwks_uri"], json!(format!("{ISSUER}/certs")));
}
