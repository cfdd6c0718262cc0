//! TPM algorithm identifiers (TPM 2.0 Part 2, TPM_ALG_ID) and the hash
//! algorithms Aver computes with.

use serde::Serialize;

/// TPM_ALG_RSA.
pub const TPM_ALG_RSA: u16 = 0x0001;
/// TPM_ALG_SHA1.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_HMAC.
pub const TPM_ALG_HMAC: u16 = 0x0005;
/// TPM_ALG_AES.
pub const TPM_ALG_AES: u16 = 0x0006;
/// TPM_ALG_KEYEDHASH.
pub const TPM_ALG_KEYEDHASH: u16 = 0x0008;
/// TPM_ALG_XOR.
pub const TPM_ALG_XOR: u16 = 0x000A;
/// TPM_ALG_SHA256.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// TPM_ALG_SHA384.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// TPM_ALG_SHA512.
pub const TPM_ALG_SHA512: u16 = 0x000D;
/// TPM_ALG_NULL.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// TPM_ALG_SM3_256.
pub const TPM_ALG_SM3_256: u16 = 0x0012;
/// TPM_ALG_RSASSA (PKCS#1 v1.5 signatures).
pub const TPM_ALG_RSASSA: u16 = 0x0014;
/// TPM_ALG_RSAES.
pub const TPM_ALG_RSAES: u16 = 0x0015;
/// TPM_ALG_RSAPSS.
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
/// TPM_ALG_OAEP.
pub const TPM_ALG_OAEP: u16 = 0x0017;
/// TPM_ALG_ECDSA.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
/// TPM_ALG_ECDH.
pub const TPM_ALG_ECDH: u16 = 0x0019;
/// TPM_ALG_ECDAA.
pub const TPM_ALG_ECDAA: u16 = 0x001A;
/// TPM_ALG_SM2.
pub const TPM_ALG_SM2: u16 = 0x001B;
/// TPM_ALG_ECSCHNORR.
pub const TPM_ALG_ECSCHNORR: u16 = 0x001C;
/// TPM_ALG_ECC.
pub const TPM_ALG_ECC: u16 = 0x0023;
/// TPM_ALG_SYMCIPHER.
pub const TPM_ALG_SYMCIPHER: u16 = 0x0025;

/// TPM_ECC_NIST_P256.
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// TPM_ECC_NIST_P384.
pub const TPM_ECC_NIST_P384: u16 = 0x0004;
/// TPM_ECC_NIST_P521.
pub const TPM_ECC_NIST_P521: u16 = 0x0005;

/// A hash algorithm Aver can compute (PCR banks, names, signatures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum HashAlg {
    /// SHA-1 (20 bytes).
    Sha1,
    /// SHA-256 (32 bytes).
    Sha256,
    /// SHA-384 (48 bytes).
    Sha384,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl HashAlg {
    /// All supported banks, in TPM_ALG_ID order.
    pub const ALL: [HashAlg; 4] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    /// From a TPM_ALG_ID; `None` for anything else (e.g. SM3_256).
    pub fn from_tpm(id: u16) -> Option<Self> {
        match id {
            TPM_ALG_SHA1 => Some(Self::Sha1),
            TPM_ALG_SHA256 => Some(Self::Sha256),
            TPM_ALG_SHA384 => Some(Self::Sha384),
            TPM_ALG_SHA512 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The TPM_ALG_ID.
    pub fn tpm_id(self) -> u16 {
        match self {
            Self::Sha1 => TPM_ALG_SHA1,
            Self::Sha256 => TPM_ALG_SHA256,
            Self::Sha384 => TPM_ALG_SHA384,
            Self::Sha512 => TPM_ALG_SHA512,
        }
    }

    /// Digest size in bytes.
    pub fn size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// MAA claim name of the bank (`SHA1`, `SHA256`, ...).
    pub fn maa_name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }

    /// Lower-case name as used by tpm2-tools (`sha1`, `sha256`, ...).
    pub fn lower_name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// The hash of the concatenation of `parts`, without allocating.
    ///
    /// The `sha1` / `sha2` crates: they use the CPU's SHA extensions where
    /// present and run inline, which for PCR-extend-sized inputs (two
    /// blocks) is faster than a call into aws-lc (measured: ~100 ns against
    /// ~130 ns per SHA-256 extend with SHA-NI).
    pub fn digest_parts(self, parts: &[&[u8]]) -> Digest {
        fn run<D: sha1::Digest>(parts: &[&[u8]]) -> Digest {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            Digest::new(&d.finalize())
        }
        match self {
            Self::Sha1 => run::<sha1::Sha1>(parts),
            Self::Sha256 => run::<sha2::Sha256>(parts),
            Self::Sha384 => run::<sha2::Sha384>(parts),
            Self::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    /// Hashes the concatenation of `parts`.
    pub fn hash_parts(self, parts: &[&[u8]]) -> Vec<u8> {
        self.digest_parts(parts).as_ref().to_vec()
    }

    /// Hashes `data`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        self.hash_parts(&[data])
    }

    /// PCR extend: H(old || digest).
    pub fn extend(self, old: &[u8], digest: &[u8]) -> Vec<u8> {
        self.hash_parts(&[old, digest])
    }

    /// PCR extend in place: `value` ← H(`value` ‖ `digest`), `value` being
    /// of this algorithm's size (any other length is left as it is).
    ///
    /// When `digest` is of the algorithm's size too (always, for a digest
    /// of a parsed log: the Spec ID event's sizes are checked), both sizes
    /// are known at compile time: the message is assembled on the stack
    /// with fixed-size moves and hashed in one piece, and the result is
    /// written back the same way. Through [`Self::digest_parts`] an extend
    /// made three to four `memcpy` calls of run-time length (the hasher
    /// buffering each part, the result into a [`Digest`], the [`Digest`]
    /// into the PCR). Measured on keylime's `mb_log.bin` (100 SHA-256
    /// extends): 1% fewer instructions for `parse_event_log` + `replay`,
    /// and `memmove` down from 20% to 6% of its time, but no wall-clock
    /// gain beyond the noise (BENCHMARKS.md, "Event log without per-event
    /// allocation"); the hashing itself is what an extend costs.
    pub fn extend_in_place(self, value: &mut [u8], digest: &[u8]) {
        fn run<D: sha1::Digest, const N: usize>(value: &mut [u8], digest: &[u8]) {
            if let (Ok(v), Ok(d)) = (
                <&mut [u8; N]>::try_from(&mut *value),
                <&[u8; N]>::try_from(digest),
            ) {
                // old ‖ digest: at most 2 × 64 bytes (SHA-512).
                let mut message = [0u8; 128];
                if let Some((old, rest)) = message.split_first_chunk_mut::<N>()
                    && let Some((new, _)) = rest.split_first_chunk_mut::<N>()
                {
                    *old = *v;
                    *new = *d;
                }
                let out = D::digest(message.get(..2 * N).unwrap_or_default());
                if let Ok(out) = <&[u8; N]>::try_from(out.as_slice()) {
                    *v = *out;
                }
            } else if value.len() == N {
                let out = D::new()
                    .chain_update(&*value)
                    .chain_update(digest)
                    .finalize();
                value.copy_from_slice(&out);
            }
        }
        match self {
            Self::Sha1 => run::<sha1::Sha1, 20>(value, digest),
            Self::Sha256 => run::<sha2::Sha256, 32>(value, digest),
            Self::Sha384 => run::<sha2::Sha384, 48>(value, digest),
            Self::Sha512 => run::<sha2::Sha512, 64>(value, digest),
        }
    }
}

/// A digest held inline (at most 64 bytes, SHA-512's size).
#[derive(Clone, Copy)]
pub struct Digest {
    bytes: [u8; 64],
    len: usize,
}

impl Digest {
    fn new(d: &[u8]) -> Digest {
        let mut bytes = [0u8; 64];
        let len = d.len().min(bytes.len());
        if let (Some(dst), Some(src)) = (bytes.get_mut(..len), d.get(..len)) {
            dst.copy_from_slice(src);
        }
        Digest { bytes, len }
    }
}

impl AsRef<[u8]> for Digest {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({})", hex::encode(self.as_ref()))
    }
}

/// PCR values: bank → PCR index → value.
pub type PcrValues = std::collections::BTreeMap<HashAlg, std::collections::BTreeMap<u32, Vec<u8>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_in_place_is_the_extend_of_every_bank() {
        for alg in HashAlg::ALL {
            let n = alg.size();
            let old: Vec<u8> = (0..n as u8).collect();
            // The fast path (digest of the bank's size), and the generic
            // one (hand-built events may carry any length).
            for len in [n, 0, 1, n - 1, n + 1, 128] {
                let digest: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let mut value = old.clone();
                alg.extend_in_place(&mut value, &digest);
                assert_eq!(value, alg.extend(&old, &digest), "{alg:?} {len}");
            }
            // A value of another length is left as it is.
            let mut short = vec![9u8; n - 1];
            alg.extend_in_place(&mut short, &old);
            assert_eq!(short, vec![9u8; n - 1]);
        }
    }
}
