//! Assembles TCG event logs byte by byte, so that each real-world
//! tolerance can be tested on a log that exhibits exactly that deviation.
//! Expected PCR values are computed here with the `sha1` / `sha2` crates
//! directly, independently of the replay under test.

use sha2::Digest as _;

pub const SHA1: u16 = 0x0004;
pub const SHA256: u16 = 0x000b;
pub const SHA384: u16 = 0x000c;
pub const SM3_256: u16 = 0x0012;

pub fn sha1(b: &[u8]) -> Vec<u8> {
    sha1::Sha1::digest(b).to_vec()
}

pub fn sha256(b: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(b).to_vec()
}

/// H(data) for the algorithms the tests use. SM3 cannot be computed here;
/// a fixed filler of the right size stands in (its bank is never replayed).
pub fn hash(alg: u16, data: &[u8]) -> Vec<u8> {
    match alg {
        SHA1 => sha1(data),
        SHA256 => sha256(data),
        SHA384 => sha2::Sha384::digest(data).to_vec(),
        SM3_256 => vec![0x5a; 32],
        other => panic!("no hash for 0x{other:04x}"),
    }
}

/// Digest size of an algorithm the tests use.
pub fn size(alg: u16) -> usize {
    hash(alg, b"").len()
}

/// PCR extend chain: H(…H(H(start ‖ d1) ‖ d2)… ‖ dn).
pub fn extend_chain(alg: u16, start: &[u8], digests: &[Vec<u8>]) -> Vec<u8> {
    digests.iter().fold(start.to_vec(), |v, d| {
        let mut buf = v;
        buf.extend_from_slice(d);
        hash(alg, &buf)
    })
}

/// 0…0‖locality in a bank (PCR 0 after Startup from `locality`).
pub fn locality(alg: u16, loc: u8) -> Vec<u8> {
    let mut v = vec![0u8; size(alg)];
    *v.last_mut().expect("non-empty") = loc;
    v
}

/// One legacy TCG_PCR_EVENT: pcrIndex, eventType, SHA-1 digest, eventSize,
/// event data (all little-endian).
pub fn legacy(pcr: u32, event_type: u32, digest: &[u8], data: &[u8]) -> Vec<u8> {
    assert_eq!(digest.len(), 20, "legacy digests are SHA-1");
    let mut v = Vec::new();
    v.extend_from_slice(&pcr.to_le_bytes());
    v.extend_from_slice(&event_type.to_le_bytes());
    v.extend_from_slice(digest);
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// A legacy event whose digest is SHA-1(data).
pub fn legacy_m(pcr: u32, event_type: u32, data: &[u8]) -> Vec<u8> {
    legacy(pcr, event_type, &sha1(data), data)
}

/// TCG_EfiSpecIDEvent ("Spec ID Event03") data.
pub fn spec_id_data(algs: &[(u16, u16)], version: (u8, u8, u8), vendor: &[u8]) -> Vec<u8> {
    let (major, minor, errata) = version;
    let mut v = b"Spec ID Event03\0".to_vec();
    v.extend_from_slice(&0u32.to_le_bytes()); // platformClass
    v.extend_from_slice(&[minor, major, errata, 2]); // uintnSize = 2 (64-bit)
    v.extend_from_slice(&(algs.len() as u32).to_le_bytes());
    for (id, size) in algs {
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
    }
    v.push(vendor.len() as u8);
    v.extend_from_slice(vendor);
    v
}

/// The crypto-agile header: a legacy EV_NO_ACTION record on PCR 0 with a
/// zero digest holding a version 2.0 Spec ID event for `algs`.
pub fn spec_id(algs: &[u16]) -> Vec<u8> {
    let with_sizes: Vec<(u16, u16)> = algs.iter().map(|&a| (a, size(a) as u16)).collect();
    legacy(
        0,
        EV_NO_ACTION,
        &[0; 20],
        &spec_id_data(&with_sizes, (2, 0, 0), &[]),
    )
}

/// One TCG_PCR_EVENT2 with explicit digests (count = `digests.len()`).
pub fn agile(pcr: u32, event_type: u32, digests: &[(u16, Vec<u8>)], data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&pcr.to_le_bytes());
    v.extend_from_slice(&event_type.to_le_bytes());
    v.extend_from_slice(&(digests.len() as u32).to_le_bytes());
    for (alg, d) in digests {
        v.extend_from_slice(&alg.to_le_bytes());
        v.extend_from_slice(d);
    }
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// A TCG_PCR_EVENT2 whose digest in every bank of `algs` is H(data).
pub fn agile_m(pcr: u32, event_type: u32, algs: &[u16], data: &[u8]) -> Vec<u8> {
    let digests: Vec<(u16, Vec<u8>)> = algs.iter().map(|&a| (a, hash(a, data))).collect();
    agile(pcr, event_type, &digests, data)
}

/// A TCG_PCR_EVENT2 with all-zero digests in every bank of `algs` (the
/// form of EV_NO_ACTION records).
pub fn agile_no_action(pcr: u32, algs: &[u16], data: &[u8]) -> Vec<u8> {
    let digests: Vec<(u16, Vec<u8>)> = algs.iter().map(|&a| (a, vec![0; size(a)])).collect();
    agile(pcr, EV_NO_ACTION, &digests, data)
}

/// `StartupLocality\0` + locality.
pub fn startup_locality(loc: u8) -> Vec<u8> {
    let mut v = b"StartupLocality\0".to_vec();
    v.push(loc);
    v
}

pub fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// Event types used by the tests (PFP numbering).
pub const EV_POST_CODE: u32 = 0x1;
pub const EV_NO_ACTION: u32 = 0x3;
pub const EV_SEPARATOR: u32 = 0x4;
pub const EV_S_CRTM_VERSION: u32 = 0x8;
pub const EV_IPL: u32 = 0xD;
pub const EV_EFI_ACTION: u32 = 0x8000_0007;
pub const EV_EFI_HCRTM_EVENT: u32 = 0x8000_0010;
