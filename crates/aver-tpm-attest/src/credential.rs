//! TPM2_MakeCredential in software (TPM 2.0 Part 1 §24 "Credential
//! Protection", Part 3 §12.6), for RSA endorsement keys.
//!
//! ```text
//! seed            = random(digestSize(EK.nameAlg))
//! encryptedSecret = TPM2B( RSA-OAEP(EK, hash = EK.nameAlg, label = "IDENTITY\0", seed) )
//! symKey          = KDFa(EK.nameAlg, seed, "STORAGE",   AK.name, "", EK.symmetric.keyBits)
//! encIdentity     = AES-CFB(symKey, IV = 0, TPM2B(secret))
//! hmacKey         = KDFa(EK.nameAlg, seed, "INTEGRITY", "",      "", digestSize * 8)
//! outerHMAC       = HMAC(EK.nameAlg, hmacKey, encIdentity ‖ AK.name)
//! credentialBlob  = TPM2B_ID_OBJECT = u16(size) ‖ TPM2B(outerHMAC) ‖ encIdentity
//! ```
//!
//! Only the TPM holding the EK's private key recovers the seed, and it
//! releases the secret from TPM2_ActivateCredential only when the object
//! it is asked to vouch for has exactly `AK.name` (nameAlg ‖ H(TPMT_PUBLIC))
//! — so a correct answer proves the AK lives in the same TPM as the EK.
//!
//! Supported: RSA EKs (2048–4096 bits) with nameAlg SHA-256 or SHA-384 and
//! an AES-128/256-CFB symmetric definition (the TCG EK templates L-1 and
//! H-2/H-3…). ECC EKs use an ECDH-derived seed and are **not** supported
//! ([`TpmError::UnsupportedEkType`]).

use crate::error::TpmError;
use aver_tpm::alg::{TPM_ALG_AES, TPM_ALG_RSA, TPM_ALG_SHA256, TPM_ALG_SHA384};
use aver_tpm::structures::{Public, PublicKey};
use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OaepPublicEncryptingKey, PublicEncryptingKey,
};

/// TPM_ALG_CFB (symmetric mode).
pub const TPM_ALG_CFB: u16 = 0x0043;

/// Output of MakeCredential, both as the marshalled TPM2B structures
/// `tpm2_activatecredential` / `Esys_ActivateCredential` take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCredential {
    /// TPM2B_ID_OBJECT.
    pub credential_blob: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET.
    pub encrypted_secret: Vec<u8>,
}

/// The hash of an EK's nameAlg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EkHash {
    Sha256,
    Sha384,
}

impl EkHash {
    fn size(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
        }
    }
}

/// KDFa (TPM 2.0 Part 1 §11.4.10.2, SP 800-108 counter mode with HMAC):
/// `K(i) = HMAC(key, i ‖ label ‖ 00 ‖ context_u ‖ context_v ‖ bits)`,
/// concatenated and truncated to `bits`. `label` is given without its NUL.
fn kdfa(
    hash: EkHash,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let k = hmac::Key::new(hash.hmac(), key);
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + hash.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label);
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter = counter.wrapping_add(1);
    }
    out.truncate(bytes);
    if !bits.is_multiple_of(8)
        && let Some(first) = out.first_mut()
    {
        *first &= (1u8 << (bits % 8)) - 1;
    }
    out
}

fn tpm2b(body: &[u8]) -> Result<Vec<u8>, TpmError> {
    let len = u16::try_from(body.len()).map_err(|_| TpmError::Internal("TPM2B too long".into()))?;
    let mut v = Vec::with_capacity(2 + body.len());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(body);
    Ok(v)
}

/// Checks that `ek` is an RSA storage-style EK MakeCredential can target
/// and returns (hash, symmetric key bits).
fn ek_parameters(ek: &Public) -> Result<(EkHash, u32), TpmError> {
    if ek.key_type != TPM_ALG_RSA {
        return Err(TpmError::UnsupportedEkType(format!(
            "EK type 0x{:04x}: only RSA EKs are supported",
            ek.key_type
        )));
    }
    let hash = match ek.name_alg {
        TPM_ALG_SHA256 => EkHash::Sha256,
        TPM_ALG_SHA384 => EkHash::Sha384,
        other => {
            return Err(TpmError::UnsupportedEkType(format!(
                "EK nameAlg 0x{other:04x} (SHA-256 or SHA-384 required)"
            )));
        }
    };
    let PublicKey::Rsa { symmetric, .. } = &ek.key else {
        return Err(TpmError::UnsupportedEkType("EK is not RSA".into()));
    };
    if symmetric.algorithm != TPM_ALG_AES
        || symmetric.mode != TPM_ALG_CFB
        || !(symmetric.key_bits == 128 || symmetric.key_bits == 256)
    {
        return Err(TpmError::UnsupportedEkType(format!(
            "EK symmetric definition alg 0x{:04x} bits {} mode 0x{:04x} (AES-128/256-CFB required)",
            symmetric.algorithm, symmetric.key_bits, symmetric.mode
        )));
    }
    let a = &ek.object_attributes;
    if !(a.restricted && a.decrypt && !a.sign) {
        return Err(TpmError::UnsupportedEkType(
            "EK is not a restricted decryption key".into(),
        ));
    }
    Ok((hash, u32::from(symmetric.key_bits)))
}

/// MakeCredential with a random seed. `secret` must be at most the EK
/// nameAlg digest size.
pub fn make_credential(
    ek: &Public,
    ak_name: &[u8],
    secret: &[u8],
) -> Result<MadeCredential, TpmError> {
    let (hash, _) = ek_parameters(ek)?;
    let mut seed = vec![0u8; hash.size()];
    aws_lc_rs::rand::fill(&mut seed).map_err(|_| TpmError::Internal("system RNG failed".into()))?;
    make_credential_with_seed(ek, ak_name, secret, &seed)
}

/// MakeCredential with a caller-chosen seed (deterministic except for the
/// OAEP padding; for tests).
pub fn make_credential_with_seed(
    ek: &Public,
    ak_name: &[u8],
    secret: &[u8],
    seed: &[u8],
) -> Result<MadeCredential, TpmError> {
    let (hash, sym_bits) = ek_parameters(ek)?;
    if secret.is_empty() || secret.len() > hash.size() {
        return Err(TpmError::Internal(format!(
            "credential secret must be 1..={} bytes",
            hash.size()
        )));
    }
    let spki = ek
        .to_spki_der()
        .map_err(|e| TpmError::UnsupportedEkType(e.to_string()))?;
    let pk = PublicEncryptingKey::from_der(&spki)
        .map_err(|e| TpmError::UnsupportedEkType(format!("EK RSA key rejected: {e}")))?;
    let oaep = OaepPublicEncryptingKey::new(pk)
        .map_err(|_| TpmError::UnsupportedEkType("EK RSA key unusable for OAEP".into()))?;
    let alg = match hash {
        EkHash::Sha256 => &OAEP_SHA256_MGF1SHA256,
        EkHash::Sha384 => &OAEP_SHA384_MGF1SHA384,
    };
    let mut ct = vec![0u8; oaep.ciphertext_size()];
    let ct = oaep
        .encrypt(alg, seed, &mut ct, Some(b"IDENTITY\0"))
        .map_err(|_| TpmError::Internal("RSA-OAEP encryption failed".into()))?
        .to_vec();

    let sym_key = kdfa(hash, seed, b"STORAGE", ak_name, &[], sym_bits);
    let mut enc_identity = tpm2b(secret)?;
    let cipher = match sym_bits {
        128 => &AES_128,
        _ => &AES_256,
    };
    let key = UnboundCipherKey::new(cipher, &sym_key)
        .map_err(|_| TpmError::Internal("AES key".into()))?;
    EncryptingKey::cfb128(key)
        .and_then(|k| {
            k.less_safe_encrypt(
                &mut enc_identity,
                EncryptionContext::Iv128(FixedLength::from([0u8; 16])),
            )
        })
        .map_err(|_| TpmError::Internal("AES-CFB encryption failed".into()))?;

    let hmac_key = kdfa(hash, seed, b"INTEGRITY", &[], &[], (hash.size() * 8) as u32);
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hash.hmac(), &hmac_key));
    ctx.update(&enc_identity);
    ctx.update(ak_name);
    let outer_hmac = ctx.sign();

    let mut id_object = tpm2b(outer_hmac.as_ref())?;
    id_object.extend_from_slice(&enc_identity);
    Ok(MadeCredential {
        credential_blob: tpm2b(&id_object)?,
        encrypted_secret: tpm2b(&ct)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::cipher::DecryptingKey;

    #[test]
    fn kdfa_known_answer() {
        // Independent computation: HMAC-SHA256(key, 00000001 ‖ "STORAGE" ‖ 00 ‖ ctx ‖ 00000080).
        let key = [0x11u8; 32];
        let out = kdfa(EkHash::Sha256, &key, b"STORAGE", b"ctx", b"", 128);
        let mut msg = vec![0, 0, 0, 1];
        msg.extend_from_slice(b"STORAGE\0ctx");
        msg.extend_from_slice(&128u32.to_be_bytes());
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &msg);
        assert_eq!(out, tag.as_ref()[..16]);
        // multi-block output
        assert_eq!(kdfa(EkHash::Sha256, &key, b"X", b"", b"", 520).len(), 65);
    }

    /// Decodes a credential blob in software with a known seed, as
    /// TPM2_ActivateCredential does after recovering the seed.
    fn open(blob: &[u8], seed: &[u8], ak_name: &[u8]) -> Option<Vec<u8>> {
        let body = blob.get(2..)?;
        let hlen = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
        let hm = body.get(2..2 + hlen)?;
        let enc = body.get(2 + hlen..)?;
        let hmac_key = kdfa(EkHash::Sha256, seed, b"INTEGRITY", &[], &[], 256);
        let mut msg = enc.to_vec();
        msg.extend_from_slice(ak_name);
        hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &hmac_key), &msg, hm).ok()?;
        let sym = kdfa(EkHash::Sha256, seed, b"STORAGE", ak_name, &[], 128);
        let k = DecryptingKey::cfb128(UnboundCipherKey::new(&AES_128, &sym).ok()?).ok()?;
        let mut buf = enc.to_vec();
        let out = k
            .decrypt(
                &mut buf,
                aws_lc_rs::cipher::DecryptionContext::Iv128(FixedLength::from([0u8; 16])),
            )
            .ok()?;
        Some(out.get(2..)?.to_vec())
    }

    #[test]
    fn blob_structure_round_trips_in_software() {
        let Some(ek) = aver_testkit::read_vector("blob_structure", "tpm/swtpm-local/ek.pub") else {
            return;
        };
        let ek = aver_tpm::parse_public2b(&ek).unwrap();
        let name = [0x00, 0x0b]
            .iter()
            .copied()
            .chain([5u8; 32])
            .collect::<Vec<_>>();
        let seed = [9u8; 32];
        let mc = make_credential_with_seed(&ek, &name, b"0123456789abcdef", &seed).unwrap();
        assert_eq!(mc.encrypted_secret.len(), 2 + 256);
        assert_eq!(
            open(&mc.credential_blob, &seed, &name).unwrap(),
            b"0123456789abcdef"
        );
        let mut other = name.clone();
        other[5] ^= 1;
        assert!(open(&mc.credential_blob, &seed, &other).is_none());
        assert!(make_credential(&ek, &name, &[0u8; 33]).is_err());
    }
}
