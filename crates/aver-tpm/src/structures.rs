//! TPM 2.0 Part 2 structures used in attestation: TPMS_ATTEST (quote and
//! certify), TPMT_SIGNATURE, TPMT_PUBLIC / TPM2B_PUBLIC and
//! TPML_PCR_SELECTION. All multi-byte fields are big-endian.
//!
//! Caps (larger values are rejected with [`ParseError::TooLarge`]):
//! digests / names / extraData ≤ 66 bytes (`sizeof(TPMT_HA)` + alg),
//! RSA moduli and signatures ≤ 512 bytes (4096-bit), ECC coordinates ≤ 66
//! bytes, ≤ 16 PCR banks per selection, ≤ 8 select bytes per bank (PCRs 0–63).

use crate::alg::*;
use crate::reader::{ParseError, Reader};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// TPM_GENERATED_VALUE, the magic of every TPMS_ATTEST.
pub const TPM_ATTEST_MAGIC: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_CERTIFY.
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;
/// TPM_ST_ATTEST_QUOTE.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// Cap on digests, names and TPM2B_DATA.
pub const MAX_DIGEST_LIKE: usize = 66;
/// Cap on RSA moduli and RSA signatures (bytes).
pub const MAX_RSA_BYTES: usize = 512;
/// Cap on one ECC coordinate / signature component (bytes).
pub const MAX_ECC_BYTES: usize = 66;
/// Cap on the number of banks in a TPML_PCR_SELECTION.
pub const MAX_PCR_BANKS: u32 = 16;
/// Cap on `sizeofSelect`.
pub const MAX_SIZEOF_SELECT: u8 = 8;
/// Cap on a TPM2B_PUBLIC / TPM2B_ATTEST body.
pub const MAX_STRUCT_BYTES: usize = 4096;

fn hexs<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// One bank of a PCR selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PcrSelection {
    /// TPM_ALG_ID of the bank.
    pub hash_alg: u16,
    /// Raw select bitmap (bit `j` of byte `i` = PCR `8*i + j`).
    #[serde(serialize_with = "hexs")]
    pub select: Vec<u8>,
}

impl PcrSelection {
    /// Selected PCR indices, ascending (the order the TPM hashes them in).
    pub fn pcrs(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, byte) in self.select.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (1 << bit) != 0 {
                    out.push(i as u32 * 8 + bit);
                }
            }
        }
        out
    }
}

/// TPML_PCR_SELECTION.
pub fn parse_pcr_selection(r: &mut Reader<'_>) -> Result<Vec<PcrSelection>, ParseError> {
    let count = r.u32_be("TPML_PCR_SELECTION.count")?;
    if count > MAX_PCR_BANKS {
        return Err(ParseError::TooLarge {
            field: "TPML_PCR_SELECTION.count",
            value: count.into(),
            cap: MAX_PCR_BANKS.into(),
        });
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let hash_alg = r.u16_be("TPMS_PCR_SELECTION.hash")?;
        let size = r.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
        if size > MAX_SIZEOF_SELECT {
            return Err(ParseError::TooLarge {
                field: "TPMS_PCR_SELECTION.sizeofSelect",
                value: size.into(),
                cap: MAX_SIZEOF_SELECT.into(),
            });
        }
        let select = r
            .bytes(size as usize, "TPMS_PCR_SELECTION.pcrSelect")?
            .to_vec();
        out.push(PcrSelection { hash_alg, select });
    }
    Ok(out)
}

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered.
    pub clock: u64,
    /// TPM resets.
    pub reset_count: u32,
    /// TPM restarts / resumes.
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone backwards.
    pub safe: bool,
}

/// The `attested` union of TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Attested {
    /// TPMS_QUOTE_INFO.
    Quote {
        /// PCRs covered by `pcr_digest`.
        pcr_select: Vec<PcrSelection>,
        /// Hash of the selected PCR values.
        #[serde(serialize_with = "hexs")]
        pcr_digest: Vec<u8>,
    },
    /// TPMS_CERTIFY_INFO.
    Certify {
        /// Name of the certified object.
        #[serde(serialize_with = "hexs")]
        name: Vec<u8>,
        /// Qualified name of the certified object.
        #[serde(serialize_with = "hexs")]
        qualified_name: Vec<u8>,
    },
    /// Any other attestation type; body kept raw, not interpreted.
    Other {
        /// The TPMI_ST_ATTEST value.
        #[serde(serialize_with = "hexs")]
        body: Vec<u8>,
    },
}

/// TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attest {
    /// Must be [`TPM_ATTEST_MAGIC`] (TPM_GENERATED_VALUE) (checked by [`crate::quote`], not here).
    pub magic: u32,
    /// TPMI_ST_ATTEST.
    pub attest_type: u16,
    /// Qualified name of the signing key.
    #[serde(serialize_with = "hexs")]
    pub qualified_signer: Vec<u8>,
    /// Caller-supplied qualifying data (nonce / challenge).
    #[serde(serialize_with = "hexs")]
    pub extra_data: Vec<u8>,
    /// Clock information.
    pub clock_info: ClockInfo,
    /// Vendor firmware version.
    pub firmware_version: u64,
    /// Type-specific body.
    pub attested: Attested,
}

/// Parses a TPMS_ATTEST that fills `buf` exactly (the signed message).
pub fn parse_attest(buf: &[u8]) -> Result<Attest, ParseError> {
    let mut r = Reader::new(buf);
    let magic = r.u32_be("TPMS_ATTEST.magic")?;
    let attest_type = r.u16_be("TPMS_ATTEST.type")?;
    let qualified_signer = r
        .sized_u16_be("TPMS_ATTEST.qualifiedSigner", MAX_DIGEST_LIKE)?
        .to_vec();
    let extra_data = r
        .sized_u16_be("TPMS_ATTEST.extraData", MAX_DIGEST_LIKE)?
        .to_vec();
    let clock_info = ClockInfo {
        clock: r.u64_be("TPMS_CLOCK_INFO.clock")?,
        reset_count: r.u32_be("TPMS_CLOCK_INFO.resetCount")?,
        restart_count: r.u32_be("TPMS_CLOCK_INFO.restartCount")?,
        safe: match r.u8("TPMS_CLOCK_INFO.safe")? {
            0 => false,
            1 => true,
            v => {
                return Err(ParseError::Invalid {
                    field: "TPMS_CLOCK_INFO.safe",
                    detail: format!("{v} is not a TPMI_YES_NO"),
                });
            }
        },
    };
    let firmware_version = r.u64_be("TPMS_ATTEST.firmwareVersion")?;
    let attested = match attest_type {
        TPM_ST_ATTEST_QUOTE => Attested::Quote {
            pcr_select: parse_pcr_selection(&mut r)?,
            pcr_digest: r
                .sized_u16_be("TPMS_QUOTE_INFO.pcrDigest", MAX_DIGEST_LIKE)?
                .to_vec(),
        },
        TPM_ST_ATTEST_CERTIFY => Attested::Certify {
            name: r
                .sized_u16_be("TPMS_CERTIFY_INFO.name", MAX_DIGEST_LIKE)?
                .to_vec(),
            qualified_name: r
                .sized_u16_be("TPMS_CERTIFY_INFO.qualifiedName", MAX_DIGEST_LIKE)?
                .to_vec(),
        },
        _ => Attested::Other {
            body: r.rest().to_vec(),
        },
    };
    if matches!(attested, Attested::Other { .. }) {
        return Ok(Attest {
            magic,
            attest_type,
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            attested,
        });
    }
    r.finish("TPMS_ATTEST")?;
    Ok(Attest {
        magic,
        attest_type,
        qualified_signer,
        extra_data,
        clock_info,
        firmware_version,
        attested,
    })
}

/// Parses a TPM2B_ATTEST (u16 size + TPMS_ATTEST); returns the structure and
/// the inner bytes (which are what the TPM signed).
pub fn parse_attest2b(buf: &[u8]) -> Result<(Attest, &[u8]), ParseError> {
    let mut r = Reader::new(buf);
    let inner = r.sized_u16_be("TPM2B_ATTEST", MAX_STRUCT_BYTES)?;
    r.finish("TPM2B_ATTEST")?;
    Ok((parse_attest(inner)?, inner))
}

/// TPMT_SIGNATURE (the schemes used for attestation keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Signature {
    /// RSASSA-PKCS1-v1_5.
    RsaSsa {
        /// Digest algorithm (TPM_ALG_ID).
        hash_alg: u16,
        /// Signature bytes (big-endian, modulus length).
        #[serde(serialize_with = "hexs")]
        sig: Vec<u8>,
    },
    /// RSASSA-PSS (salt length = digest length, as the TPM signs).
    RsaPss {
        /// Digest algorithm (TPM_ALG_ID).
        hash_alg: u16,
        /// Signature bytes.
        #[serde(serialize_with = "hexs")]
        sig: Vec<u8>,
    },
    /// ECDSA with (r, s) as big-endian integers.
    Ecdsa {
        /// Digest algorithm (TPM_ALG_ID).
        hash_alg: u16,
        /// r.
        #[serde(serialize_with = "hexs")]
        r: Vec<u8>,
        /// s.
        #[serde(serialize_with = "hexs")]
        s: Vec<u8>,
    },
}

impl Signature {
    /// The TPM_ALG_ID of the digest the scheme uses.
    pub fn hash_alg(&self) -> u16 {
        match self {
            Self::RsaSsa { hash_alg, .. }
            | Self::RsaPss { hash_alg, .. }
            | Self::Ecdsa { hash_alg, .. } => *hash_alg,
        }
    }
}

/// Parses a TPMT_SIGNATURE that fills `buf` exactly. Schemes other than
/// RSASSA, RSAPSS and ECDSA are rejected.
pub fn parse_signature(buf: &[u8]) -> Result<Signature, ParseError> {
    let mut r = Reader::new(buf);
    let sig_alg = r.u16_be("TPMT_SIGNATURE.sigAlg")?;
    let sig = match sig_alg {
        TPM_ALG_RSASSA | TPM_ALG_RSAPSS => {
            let hash_alg = r.u16_be("TPMS_SIGNATURE_RSA.hash")?;
            let sig = r
                .sized_u16_be("TPMS_SIGNATURE_RSA.sig", MAX_RSA_BYTES)?
                .to_vec();
            if sig_alg == TPM_ALG_RSASSA {
                Signature::RsaSsa { hash_alg, sig }
            } else {
                Signature::RsaPss { hash_alg, sig }
            }
        }
        TPM_ALG_ECDSA => {
            let hash_alg = r.u16_be("TPMS_SIGNATURE_ECC.hash")?;
            let rr = r
                .sized_u16_be("TPMS_SIGNATURE_ECC.signatureR", MAX_ECC_BYTES)?
                .to_vec();
            let s = r
                .sized_u16_be("TPMS_SIGNATURE_ECC.signatureS", MAX_ECC_BYTES)?
                .to_vec();
            Signature::Ecdsa { hash_alg, r: rr, s }
        }
        other => {
            return Err(ParseError::Invalid {
                field: "TPMT_SIGNATURE.sigAlg",
                detail: format!("unsupported signature scheme 0x{other:04x}"),
            });
        }
    };
    r.finish("TPMT_SIGNATURE")?;
    Ok(sig)
}

/// TPMA_OBJECT bit positions.
pub mod attrs {
    /// fixedTPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// stClear.
    pub const ST_CLEAR: u32 = 1 << 2;
    /// fixedParent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// userWithAuth.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// adminWithPolicy.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// noDA.
    pub const NO_DA: u32 = 1 << 10;
    /// encryptedDuplication.
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    /// restricted.
    pub const RESTRICTED: u32 = 1 << 16;
    /// decrypt.
    pub const DECRYPT: u32 = 1 << 17;
    /// sign / encrypt.
    pub const SIGN: u32 = 1 << 18;
    /// x509sign.
    pub const X509_SIGN: u32 = 1 << 19;
}

/// Decoded TPMA_OBJECT flags relevant to attestation keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectAttributes {
    /// Raw TPMA_OBJECT value.
    pub raw: u32,
    /// fixedTPM.
    pub fixed_tpm: bool,
    /// fixedParent.
    pub fixed_parent: bool,
    /// sensitiveDataOrigin.
    pub sensitive_data_origin: bool,
    /// userWithAuth.
    pub user_with_auth: bool,
    /// adminWithPolicy.
    pub admin_with_policy: bool,
    /// noDA.
    pub no_da: bool,
    /// restricted.
    pub restricted: bool,
    /// decrypt.
    pub decrypt: bool,
    /// sign.
    pub sign: bool,
}

impl ObjectAttributes {
    /// Decodes a raw TPMA_OBJECT.
    pub fn from_raw(raw: u32) -> Self {
        Self {
            raw,
            fixed_tpm: raw & attrs::FIXED_TPM != 0,
            fixed_parent: raw & attrs::FIXED_PARENT != 0,
            sensitive_data_origin: raw & attrs::SENSITIVE_DATA_ORIGIN != 0,
            user_with_auth: raw & attrs::USER_WITH_AUTH != 0,
            admin_with_policy: raw & attrs::ADMIN_WITH_POLICY != 0,
            no_da: raw & attrs::NO_DA != 0,
            restricted: raw & attrs::RESTRICTED != 0,
            decrypt: raw & attrs::DECRYPT != 0,
            sign: raw & attrs::SIGN != 0,
        }
    }

    /// True for a TPM-resident restricted signing key that never left the
    /// TPM (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign,
    /// not decrypt): the shape an attestation key must have.
    pub fn is_attestation_key_shape(&self) -> bool {
        self.fixed_tpm
            && self.fixed_parent
            && self.sensitive_data_origin
            && self.restricted
            && self.sign
            && !self.decrypt
    }
}

/// A TPM scheme selector with its hash (TPMT_RSA_SCHEME, TPMT_ECC_SCHEME, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scheme {
    /// Scheme TPM_ALG_ID (TPM_ALG_NULL when none).
    pub scheme: u16,
    /// Hash TPM_ALG_ID (TPM_ALG_NULL when the scheme has none).
    pub hash_alg: u16,
}

/// TPMT_SYM_DEF_OBJECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SymDef {
    /// Algorithm (TPM_ALG_NULL for none).
    pub algorithm: u16,
    /// Key bits (0 when NULL).
    pub key_bits: u16,
    /// Mode (0 when NULL).
    pub mode: u16,
}

/// Type-specific parameters and unique field of a public area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PublicKey {
    /// TPM_ALG_RSA.
    Rsa {
        /// Symmetric algorithm for restricted decryption keys.
        symmetric: SymDef,
        /// Signing / encryption scheme.
        scheme: Scheme,
        /// Modulus size in bits.
        key_bits: u16,
        /// Public exponent (the TPM encodes 65537 as 0; normalised here).
        exponent: u32,
        /// Modulus, big-endian.
        #[serde(serialize_with = "hexs")]
        modulus: Vec<u8>,
    },
    /// TPM_ALG_ECC.
    Ecc {
        /// Symmetric algorithm for restricted decryption keys.
        symmetric: SymDef,
        /// Signing scheme.
        scheme: Scheme,
        /// TPM_ECC_CURVE.
        curve_id: u16,
        /// KDF scheme.
        kdf: Scheme,
        /// X coordinate.
        #[serde(serialize_with = "hexs")]
        x: Vec<u8>,
        /// Y coordinate.
        #[serde(serialize_with = "hexs")]
        y: Vec<u8>,
    },
}

/// TPMT_PUBLIC (RSA and ECC only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Public {
    /// TPMI_ALG_PUBLIC.
    pub key_type: u16,
    /// Name algorithm.
    pub name_alg: u16,
    /// TPMA_OBJECT.
    pub object_attributes: ObjectAttributes,
    /// Authorization policy digest.
    #[serde(serialize_with = "hexs")]
    pub auth_policy: Vec<u8>,
    /// Parameters and key.
    pub key: PublicKey,
    /// The exact TPMT_PUBLIC bytes (what the name hashes).
    #[serde(skip)]
    pub raw: Vec<u8>,
}

fn parse_symdef(r: &mut Reader<'_>) -> Result<SymDef, ParseError> {
    let algorithm = r.u16_be("TPMT_SYM_DEF_OBJECT.algorithm")?;
    if algorithm == TPM_ALG_NULL {
        return Ok(SymDef {
            algorithm,
            key_bits: 0,
            mode: 0,
        });
    }
    Ok(SymDef {
        algorithm,
        key_bits: r.u16_be("TPMT_SYM_DEF_OBJECT.keyBits")?,
        mode: r.u16_be("TPMT_SYM_DEF_OBJECT.mode")?,
    })
}

fn parse_scheme(r: &mut Reader<'_>, what: &'static str) -> Result<Scheme, ParseError> {
    let scheme = r.u16_be(what)?;
    let hash_alg = match scheme {
        TPM_ALG_NULL | TPM_ALG_RSAES => TPM_ALG_NULL,
        TPM_ALG_ECDAA => {
            let h = r.u16_be(what)?;
            let _count = r.u16_be(what)?;
            h
        }
        _ => r.u16_be(what)?,
    };
    Ok(Scheme { scheme, hash_alg })
}

/// Parses one TPMT_PUBLIC from the reader (RSA and ECC only).
pub fn read_public(r: &mut Reader<'_>) -> Result<Public, ParseError> {
    let start = r.rest();
    let start_off = r.offset();
    let key_type = r.u16_be("TPMT_PUBLIC.type")?;
    let name_alg = r.u16_be("TPMT_PUBLIC.nameAlg")?;
    let object_attributes = ObjectAttributes::from_raw(r.u32_be("TPMT_PUBLIC.objectAttributes")?);
    let auth_policy = r
        .sized_u16_be("TPMT_PUBLIC.authPolicy", MAX_DIGEST_LIKE)?
        .to_vec();
    let key = match key_type {
        TPM_ALG_RSA => {
            let symmetric = parse_symdef(r)?;
            let scheme = parse_scheme(r, "TPMT_RSA_SCHEME")?;
            let key_bits = r.u16_be("TPMS_RSA_PARMS.keyBits")?;
            let exponent = match r.u32_be("TPMS_RSA_PARMS.exponent")? {
                0 => 65537,
                e => e,
            };
            let modulus = r
                .sized_u16_be("TPM2B_PUBLIC_KEY_RSA", MAX_RSA_BYTES)?
                .to_vec();
            PublicKey::Rsa {
                symmetric,
                scheme,
                key_bits,
                exponent,
                modulus,
            }
        }
        TPM_ALG_ECC => {
            let symmetric = parse_symdef(r)?;
            let scheme = parse_scheme(r, "TPMT_ECC_SCHEME")?;
            let curve_id = r.u16_be("TPMS_ECC_PARMS.curveID")?;
            let kdf = parse_scheme(r, "TPMT_KDF_SCHEME")?;
            let x = r.sized_u16_be("TPMS_ECC_POINT.x", MAX_ECC_BYTES)?.to_vec();
            let y = r.sized_u16_be("TPMS_ECC_POINT.y", MAX_ECC_BYTES)?.to_vec();
            PublicKey::Ecc {
                symmetric,
                scheme,
                curve_id,
                kdf,
                x,
                y,
            }
        }
        other => {
            return Err(ParseError::Invalid {
                field: "TPMT_PUBLIC.type",
                detail: format!("unsupported key type 0x{other:04x} (RSA and ECC only)"),
            });
        }
    };
    let len = r.offset() - start_off;
    let raw = start.get(..len).unwrap_or(start).to_vec();
    Ok(Public {
        key_type,
        name_alg,
        object_attributes,
        auth_policy,
        key,
        raw,
    })
}

/// Parses a TPMT_PUBLIC that fills `buf` exactly.
pub fn parse_public(buf: &[u8]) -> Result<Public, ParseError> {
    let mut r = Reader::new(buf);
    let p = read_public(&mut r)?;
    r.finish("TPMT_PUBLIC")?;
    Ok(p)
}

/// Parses a TPM2B_PUBLIC (u16 size + TPMT_PUBLIC) that fills `buf` exactly.
pub fn parse_public2b(buf: &[u8]) -> Result<Public, ParseError> {
    let mut r = Reader::new(buf);
    let inner = r.sized_u16_be("TPM2B_PUBLIC", MAX_STRUCT_BYTES)?;
    r.finish("TPM2B_PUBLIC")?;
    parse_public(inner)
}

impl Public {
    /// The TPM name: nameAlg (big-endian u16) || H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Result<Vec<u8>, ParseError> {
        let alg = HashAlg::from_tpm(self.name_alg).ok_or_else(|| ParseError::Invalid {
            field: "TPMT_PUBLIC.nameAlg",
            detail: format!("unsupported name algorithm 0x{:04x}", self.name_alg),
        })?;
        let mut out = self.name_alg.to_be_bytes().to_vec();
        out.extend_from_slice(&alg.hash(&self.raw));
        Ok(out)
    }

    /// SubjectPublicKeyInfo DER (rsaEncryption, or id-ecPublicKey with
    /// P-256 / P-384 / P-521).
    pub fn to_spki_der(&self) -> Result<Vec<u8>, ParseError> {
        match &self.key {
            PublicKey::Rsa {
                modulus, exponent, ..
            } => Ok(der::rsa_spki(modulus, &exponent.to_be_bytes())),
            PublicKey::Ecc { curve_id, x, y, .. } => {
                let (oid, size) = der::curve(*curve_id).ok_or_else(|| ParseError::Invalid {
                    field: "TPMS_ECC_PARMS.curveID",
                    detail: format!("unsupported curve 0x{curve_id:04x}"),
                })?;
                let point = ec_point(x, y, size)?;
                Ok(der::ec_spki(oid, &point))
            }
        }
    }

    /// JWK (RFC 7517) of the public key: `{"kty":"RSA","n","e"}` or
    /// `{"kty":"EC","crv","x","y"}`, base64url without padding.
    pub fn to_jwk(&self) -> Result<serde_json::Value, ParseError> {
        match &self.key {
            PublicKey::Rsa {
                modulus, exponent, ..
            } => {
                let e = exponent.to_be_bytes();
                let e = strip_zeros(&e);
                Ok(serde_json::json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(strip_zeros(modulus)),
                    "e": URL_SAFE_NO_PAD.encode(e),
                }))
            }
            PublicKey::Ecc { curve_id, x, y, .. } => {
                let (crv, size) = match *curve_id {
                    TPM_ECC_NIST_P256 => ("P-256", 32),
                    TPM_ECC_NIST_P384 => ("P-384", 48),
                    TPM_ECC_NIST_P521 => ("P-521", 66),
                    c => {
                        return Err(ParseError::Invalid {
                            field: "TPMS_ECC_PARMS.curveID",
                            detail: format!("unsupported curve 0x{c:04x}"),
                        });
                    }
                };
                Ok(serde_json::json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": URL_SAFE_NO_PAD.encode(left_pad(x, size)?),
                    "y": URL_SAFE_NO_PAD.encode(left_pad(y, size)?),
                }))
            }
        }
    }
}

pub(crate) fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or(&[])
}

pub(crate) fn left_pad(b: &[u8], size: usize) -> Result<Vec<u8>, ParseError> {
    let b = strip_zeros(b);
    if b.len() > size {
        return Err(ParseError::Invalid {
            field: "ECC coordinate",
            detail: format!("{} bytes for a {size}-byte curve", b.len()),
        });
    }
    let mut out = vec![0u8; size - b.len()];
    out.extend_from_slice(b);
    Ok(out)
}

/// Uncompressed SEC1 point 04 || X || Y with coordinates padded to `size`.
pub(crate) fn ec_point(x: &[u8], y: &[u8], size: usize) -> Result<Vec<u8>, ParseError> {
    let mut p = Vec::with_capacity(1 + 2 * size);
    p.push(4);
    p.extend_from_slice(&left_pad(x, size)?);
    p.extend_from_slice(&left_pad(y, size)?);
    Ok(p)
}

/// Minimal DER encoding / decoding for SubjectPublicKeyInfo.
pub(crate) mod der {
    use crate::alg::*;
    use crate::reader::{ParseError, Reader};

    pub const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

    /// Curve OID and coordinate size for a TPM curve id.
    pub fn curve(id: u16) -> Option<(&'static [u8], usize)> {
        match id {
            TPM_ECC_NIST_P256 => Some((OID_P256, 32)),
            TPM_ECC_NIST_P384 => Some((OID_P384, 48)),
            TPM_ECC_NIST_P521 => Some((OID_P521, 66)),
            _ => None,
        }
    }

    pub fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = body.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let be = (n as u64).to_be_bytes();
            let l = super::strip_zeros(&be);
            out.push(0x80 | l.len() as u8);
            out.extend_from_slice(l);
        }
        out.extend_from_slice(body);
        out
    }

    fn uint(v: &[u8]) -> Vec<u8> {
        let v = super::strip_zeros(v);
        let mut body = Vec::with_capacity(v.len() + 1);
        if v.first().is_none_or(|b| b & 0x80 != 0) {
            body.push(0);
        }
        body.extend_from_slice(v);
        tlv(0x02, &body)
    }

    fn bit_string(v: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8];
        body.extend_from_slice(v);
        tlv(0x03, &body)
    }

    /// PKCS#1 RSAPublicKey.
    pub fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
        let mut seq = uint(n);
        seq.extend_from_slice(&uint(e));
        tlv(0x30, &seq)
    }

    pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
        let mut alg = tlv(0x06, OID_RSA);
        alg.extend_from_slice(&[0x05, 0x00]);
        let mut seq = tlv(0x30, &alg);
        seq.extend_from_slice(&bit_string(&rsa_public_key(n, e)));
        tlv(0x30, &seq)
    }

    pub fn ec_spki(curve_oid: &[u8], point: &[u8]) -> Vec<u8> {
        let mut alg = tlv(0x06, OID_EC);
        alg.extend_from_slice(&tlv(0x06, curve_oid));
        let mut seq = tlv(0x30, &alg);
        seq.extend_from_slice(&bit_string(point));
        tlv(0x30, &seq)
    }

    /// Reads one DER TLV with the expected tag; returns its body.
    pub fn read<'a>(r: &mut Reader<'a>, tag: u8) -> Result<&'a [u8], ParseError> {
        let t = r.u8("DER tag")?;
        if t != tag {
            return Err(ParseError::Invalid {
                field: "DER tag",
                detail: format!("expected 0x{tag:02x}, found 0x{t:02x}"),
            });
        }
        let first = r.u8("DER length")?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let nbytes = (first & 0x7f) as usize;
            if nbytes == 0 || nbytes > 3 {
                return Err(ParseError::Invalid {
                    field: "DER length",
                    detail: format!("unsupported length form 0x{first:02x}"),
                });
            }
            let mut len = 0usize;
            for b in r.bytes(nbytes, "DER length")? {
                len = (len << 8) | *b as usize;
            }
            len
        };
        r.bytes(len, "DER value")
    }
}
