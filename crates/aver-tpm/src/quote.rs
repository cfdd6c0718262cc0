//! TPM2_Quote verification.
//!
//! [`verify_quote`] checks, in order: the TPMS_ATTEST parses; magic is
//! `TPM_GENERATED_VALUE`; type is `TPM_ST_ATTEST_QUOTE`; the signature over
//! the exact TPMS_ATTEST bytes verifies with the AK (RSASSA-PKCS1-v1_5 with
//! SHA-1/256/384/512, RSA-PSS with SHA-256/384/512, ECDSA P-256/P-384 with
//! SHA-1/256/384/512, all via aws-lc-rs); `extraData` equals the expected
//! challenge; `pcrDigest` equals H(concatenation of the caller's PCR values
//! in selection order), H being the signature scheme's hash.
//!
//! Not checked here: that the AK is trusted (EK / AK certificate chains,
//! credential activation), clock freshness, `qualifiedSigner`.

use crate::alg::*;
use crate::reader::{ParseError, Reader};
use crate::structures::{
    Attest, Attested, Public, PublicKey, Signature, TPM_ATTEST_MAGIC, TPM_ST_ATTEST_QUOTE, der,
    ec_point, parse_attest, strip_zeros,
};
use aws_lc_rs::signature as sig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

/// Quote verification failure; one variant per check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuoteError {
    /// TPMS_ATTEST does not parse.
    #[error("malformed TPMS_ATTEST: {0}")]
    Parse(#[from] ParseError),
    /// magic ≠ TPM_GENERATED_VALUE: not produced by a TPM.
    #[error("bad magic 0x{0:08x} (expected 0xff544347)")]
    BadMagic(u32),
    /// Not a quote (e.g. a certify).
    #[error("attestation type 0x{0:04x} is not TPM_ST_ATTEST_QUOTE")]
    NotAQuote(u16),
    /// Scheme / hash / curve / key combination not supported.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The AK public key is unusable.
    #[error("invalid attestation key: {0}")]
    InvalidKey(String),
    /// Signature does not verify.
    #[error("quote signature is invalid")]
    SignatureInvalid,
    /// extraData differs from the expected challenge.
    #[error("extraData {found} does not match the expected challenge {expected}")]
    ChallengeMismatch {
        /// Expected (hex).
        expected: String,
        /// Found (hex).
        found: String,
    },
    /// A selected PCR has no supplied value.
    #[error("PCR {pcr} of bank {bank:?} is selected by the quote but no value was supplied")]
    PcrMissing {
        /// Bank.
        bank: HashAlg,
        /// PCR.
        pcr: u32,
    },
    /// A supplied PCR value has the wrong length for its bank.
    #[error("PCR {pcr} of bank {bank:?} has {len} bytes")]
    PcrValueLength {
        /// Bank.
        bank: HashAlg,
        /// PCR.
        pcr: u32,
        /// Length found.
        len: usize,
    },
    /// H(selected PCR values) ≠ pcrDigest.
    #[error("pcrDigest {quoted} does not match the digest of the supplied PCRs {computed}")]
    PcrDigestMismatch {
        /// From the quote (hex).
        quoted: String,
        /// Computed (hex).
        computed: String,
    },
}

/// ECC curves supported for AKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcCurve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

impl EcCurve {
    fn size(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }
}

/// An attestation key's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AkPublicKey {
    /// RSA (big-endian, no leading zeros).
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Exponent.
        e: Vec<u8>,
    },
    /// ECC, uncompressed SEC1 point (04 ‖ X ‖ Y).
    Ec {
        /// Curve.
        curve: EcCurve,
        /// Point.
        point: Vec<u8>,
    },
}

fn curve_from_tpm(id: u16) -> Result<EcCurve, QuoteError> {
    match id {
        TPM_ECC_NIST_P256 => Ok(EcCurve::P256),
        TPM_ECC_NIST_P384 => Ok(EcCurve::P384),
        c => Err(QuoteError::UnsupportedAlgorithm(format!(
            "ECC curve 0x{c:04x}"
        ))),
    }
}

impl AkPublicKey {
    /// From a TPMT_PUBLIC.
    pub fn from_public(p: &Public) -> Result<Self, QuoteError> {
        match &p.key {
            PublicKey::Rsa {
                modulus, exponent, ..
            } => Ok(Self::Rsa {
                n: strip_zeros(modulus).to_vec(),
                e: strip_zeros(&exponent.to_be_bytes()).to_vec(),
            }),
            PublicKey::Ecc { curve_id, x, y, .. } => {
                let curve = curve_from_tpm(*curve_id)?;
                let point = ec_point(x, y, curve.size())?;
                Ok(Self::Ec { curve, point })
            }
        }
    }

    /// From a DER SubjectPublicKeyInfo (rsaEncryption or id-ecPublicKey
    /// P-256 / P-384).
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, QuoteError> {
        let bad = |e: ParseError| QuoteError::InvalidKey(e.to_string());
        let mut r = Reader::new(spki);
        let body = der::read(&mut r, 0x30).map_err(bad)?;
        r.finish("SubjectPublicKeyInfo").map_err(bad)?;
        let mut s = Reader::new(body);
        let alg = der::read(&mut s, 0x30).map_err(bad)?;
        let bits = der::read(&mut s, 0x03).map_err(bad)?;
        let mut a = Reader::new(alg);
        let oid = der::read(&mut a, 0x06).map_err(bad)?;
        let key = match bits.split_first() {
            Some((0, k)) => k,
            _ => return Err(QuoteError::InvalidKey("BIT STRING with unused bits".into())),
        };
        if oid == der::OID_RSA {
            let mut k = Reader::new(key);
            let seq = der::read(&mut k, 0x30).map_err(bad)?;
            let mut q = Reader::new(seq);
            let n = der::read(&mut q, 0x02).map_err(bad)?;
            let e = der::read(&mut q, 0x02).map_err(bad)?;
            Ok(Self::Rsa {
                n: strip_zeros(n).to_vec(),
                e: strip_zeros(e).to_vec(),
            })
        } else if oid == der::OID_EC {
            let curve_oid = der::read(&mut a, 0x06).map_err(bad)?;
            let curve = if curve_oid == der::OID_P256 {
                EcCurve::P256
            } else if curve_oid == der::OID_P384 {
                EcCurve::P384
            } else {
                return Err(QuoteError::UnsupportedAlgorithm(format!(
                    "EC curve OID {}",
                    hex::encode(curve_oid)
                )));
            };
            if key.len() != 1 + 2 * curve.size() || key.first() != Some(&4) {
                return Err(QuoteError::InvalidKey(
                    "EC point is not uncompressed".into(),
                ));
            }
            Ok(Self::Ec {
                curve,
                point: key.to_vec(),
            })
        } else {
            Err(QuoteError::UnsupportedAlgorithm(format!(
                "key algorithm OID {}",
                hex::encode(oid)
            )))
        }
    }

    /// From a JWK object (`kty` RSA with `n`,`e`, or EC P-256/P-384 with
    /// `x`,`y`; base64url).
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, QuoteError> {
        let field = |name: &str| -> Result<Vec<u8>, QuoteError> {
            let s = jwk
                .get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| QuoteError::InvalidKey(format!("JWK has no \"{name}\"")))?;
            URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|e| QuoteError::InvalidKey(format!("JWK \"{name}\": {e}")))
        };
        match jwk.get("kty").and_then(|v| v.as_str()) {
            Some("RSA") => Ok(Self::Rsa {
                n: strip_zeros(&field("n")?).to_vec(),
                e: strip_zeros(&field("e")?).to_vec(),
            }),
            Some("EC") => {
                let curve = match jwk.get("crv").and_then(|v| v.as_str()) {
                    Some("P-256") => EcCurve::P256,
                    Some("P-384") => EcCurve::P384,
                    other => {
                        return Err(QuoteError::UnsupportedAlgorithm(format!(
                            "JWK crv {other:?}"
                        )));
                    }
                };
                let point = ec_point(&field("x")?, &field("y")?, curve.size())?;
                Ok(Self::Ec { curve, point })
            }
            other => Err(QuoteError::UnsupportedAlgorithm(format!(
                "JWK kty {other:?}"
            ))),
        }
    }
}

fn hash_of(id: u16) -> Result<HashAlg, QuoteError> {
    HashAlg::from_tpm(id)
        .ok_or_else(|| QuoteError::UnsupportedAlgorithm(format!("hash algorithm 0x{id:04x}")))
}

fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let v = strip_zeros(v);
        let mut b = Vec::with_capacity(v.len() + 1);
        if v.first().is_none_or(|x| x & 0x80 != 0) {
            b.push(0);
        }
        b.extend_from_slice(v);
        der::tlv(0x02, &b)
    }
    let mut body = int(r);
    body.extend_from_slice(&int(s));
    der::tlv(0x30, &body)
}

/// Verifies `signature` over `message` with `ak`.
pub fn verify_signature(
    message: &[u8],
    signature: &Signature,
    ak: &AkPublicKey,
) -> Result<(), QuoteError> {
    let hash = hash_of(signature.hash_alg())?;
    match (signature, ak) {
        (Signature::RsaSsa { sig: s, .. }, AkPublicKey::Rsa { n, e }) => {
            let params: &sig::RsaParameters = match hash {
                HashAlg::Sha1 => &sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                HashAlg::Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                HashAlg::Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                HashAlg::Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            };
            sig::RsaPublicKeyComponents { n, e }
                .verify(params, message, s)
                .map_err(|_| QuoteError::SignatureInvalid)
        }
        (Signature::RsaPss { sig: s, .. }, AkPublicKey::Rsa { n, e }) => {
            let params: &sig::RsaParameters = match hash {
                HashAlg::Sha256 => &sig::RSA_PSS_2048_8192_SHA256,
                HashAlg::Sha384 => &sig::RSA_PSS_2048_8192_SHA384,
                HashAlg::Sha512 => &sig::RSA_PSS_2048_8192_SHA512,
                HashAlg::Sha1 => {
                    return Err(QuoteError::UnsupportedAlgorithm("RSAPSS with SHA-1".into()));
                }
            };
            sig::RsaPublicKeyComponents { n, e }
                .verify(params, message, s)
                .map_err(|_| QuoteError::SignatureInvalid)
        }
        (Signature::Ecdsa { r, s, .. }, AkPublicKey::Ec { curve, point }) => {
            let alg: &'static sig::EcdsaVerificationAlgorithm = match (curve, hash) {
                (EcCurve::P256, HashAlg::Sha1) => &sig::ECDSA_P256_SHA1_ASN1,
                (EcCurve::P256, HashAlg::Sha256) => &sig::ECDSA_P256_SHA256_ASN1,
                (EcCurve::P256, HashAlg::Sha384) => &sig::ECDSA_P256_SHA384_ASN1,
                (EcCurve::P256, HashAlg::Sha512) => &sig::ECDSA_P256_SHA512_ASN1,
                (EcCurve::P384, HashAlg::Sha256) => &sig::ECDSA_P384_SHA256_ASN1,
                (EcCurve::P384, HashAlg::Sha384) => &sig::ECDSA_P384_SHA384_ASN1,
                (EcCurve::P384, HashAlg::Sha512) => &sig::ECDSA_P384_SHA512_ASN1,
                (EcCurve::P384, HashAlg::Sha1) => {
                    return Err(QuoteError::UnsupportedAlgorithm(
                        "ECDSA P-384 with SHA-1".into(),
                    ));
                }
            };
            if r.len() > curve.size() || s.len() > curve.size() {
                return Err(QuoteError::SignatureInvalid);
            }
            sig::UnparsedPublicKey::new(alg, point)
                .verify(message, &ecdsa_der(r, s))
                .map_err(|_| QuoteError::SignatureInvalid)
        }
        _ => Err(QuoteError::UnsupportedAlgorithm(
            "signature scheme does not match the key type".into(),
        )),
    }
}

/// (bank, PCR) pairs in selection order.
pub type SelectedPcrs = Vec<(HashAlg, u32)>;

/// A verified quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// The parsed TPMS_ATTEST.
    pub attest: Attest,
    /// (bank, PCR) pairs covered, in selection order.
    pub selected: Vec<(HashAlg, u32)>,
}

/// Computes H(concatenation of the selected PCR values in selection order).
pub fn pcr_digest(
    selection: &[crate::structures::PcrSelection],
    pcrs: &PcrValues,
    hash: HashAlg,
) -> Result<(Vec<u8>, SelectedPcrs), QuoteError> {
    // Sized up front from the selection bitmaps (which their parser caps),
    // and capped again here: at most what the loop below would push.
    let (mut count, mut bytes) = (0usize, 0usize);
    for s in selection {
        let n: usize = s.select.iter().map(|b| b.count_ones() as usize).sum();
        let size = HashAlg::from_tpm(s.hash_alg).map_or(0, HashAlg::size);
        count = count.saturating_add(n);
        bytes = bytes.saturating_add(n.saturating_mul(size));
    }
    let mut concat = Vec::with_capacity(bytes.min(1 << 16));
    let mut selected = Vec::with_capacity(count.min(1 << 12));
    for s in selection {
        let indices = s.pcrs();
        if indices.is_empty() {
            continue;
        }
        let bank = HashAlg::from_tpm(s.hash_alg).ok_or_else(|| {
            QuoteError::UnsupportedAlgorithm(format!("PCR bank 0x{:04x}", s.hash_alg))
        })?;
        for pcr in indices {
            let v = pcrs
                .get(&bank)
                .and_then(|b| b.get(&pcr))
                .ok_or(QuoteError::PcrMissing { bank, pcr })?;
            if v.len() != bank.size() {
                return Err(QuoteError::PcrValueLength {
                    bank,
                    pcr,
                    len: v.len(),
                });
            }
            concat.extend_from_slice(v);
            selected.push((bank, pcr));
        }
    }
    Ok((hash.hash(&concat), selected))
}

/// Verifies a quote: magic, type, signature, challenge, PCR digest (see
/// the module docs). `attest_bytes` is the TPMS_ATTEST exactly as signed;
/// `expected_challenge` must equal `extraData`; `pcrs` must hold every
/// selected PCR.
pub fn verify_quote(
    attest_bytes: &[u8],
    signature: &Signature,
    ak: &AkPublicKey,
    expected_challenge: &[u8],
    pcrs: &PcrValues,
) -> Result<VerifiedQuote, QuoteError> {
    let attest = parse_attest(attest_bytes)?;
    if attest.magic != TPM_ATTEST_MAGIC {
        return Err(QuoteError::BadMagic(attest.magic));
    }
    let Attested::Quote {
        pcr_select,
        pcr_digest: quoted,
    } = &attest.attested
    else {
        return Err(QuoteError::NotAQuote(attest.attest_type));
    };
    if attest.attest_type != TPM_ST_ATTEST_QUOTE {
        return Err(QuoteError::NotAQuote(attest.attest_type));
    }
    verify_signature(attest_bytes, signature, ak)?;
    if attest.extra_data != expected_challenge {
        return Err(QuoteError::ChallengeMismatch {
            expected: hex::encode(expected_challenge),
            found: hex::encode(&attest.extra_data),
        });
    }
    let hash = hash_of(signature.hash_alg())?;
    let (computed, selected) = pcr_digest(pcr_select, pcrs, hash)?;
    if &computed != quoted {
        return Err(QuoteError::PcrDigestMismatch {
            quoted: hex::encode(quoted),
            computed: hex::encode(computed),
        });
    }
    Ok(VerifiedQuote { attest, selected })
}
