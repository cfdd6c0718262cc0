//! A test PKI for SEV-SNP, shaped like AMD's: an RSA-PSS ARK, ASK and
//! ASVK, an ECDSA P-384 VCEK or VLEK with the TCB and hardware-ID
//! extensions, reports signed by it, and ARK CRLs. The DER is written by
//! hand (test code); every signature is aws-lc-rs. Used by the core's
//! negative tests and by the service's revocation tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PSS_SHA384, RsaKeyPair,
};

/// Length of an SNP attestation report.
pub const REPORT_LEN: usize = 0x4A0;

// ---- a minimal DER writer (test code only) ----

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut bytes = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            bytes.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        bytes.reverse();
        body.extend(bytes);
    }
    tlv(0x06, &body)
}

pub fn int(v: u8) -> Vec<u8> {
    if v >= 0x80 {
        tlv(0x02, &[0, v])
    } else {
        tlv(0x02, &[v])
    }
}

pub fn name(cn: &str) -> Vec<u8> {
    seq(&[tlv(
        0x31,
        &seq(&[oid(&[2, 5, 4, 3]), tlv(0x0c, cn.as_bytes())]),
    )])
}

/// RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48 (as AMD encodes it).
pub fn pss_alg() -> Vec<u8> {
    let sha384 = seq(&[oid(&[2, 16, 840, 1, 101, 3, 4, 2, 2]), vec![5, 0]]);
    seq(&[
        oid(&[1, 2, 840, 113549, 1, 1, 10]),
        seq(&[
            tlv(0xa0, &sha384),
            tlv(
                0xa1,
                &seq(&[oid(&[1, 2, 840, 113549, 1, 1, 8]), sha384.clone()]),
            ),
            tlv(0xa2, &int(48)),
        ]),
    ])
}

pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(bytes);
    tlv(0x03, &body)
}

pub fn ext(id: &[u64], critical: bool, value: Vec<u8>) -> Vec<u8> {
    let mut parts = vec![oid(id)];
    if critical {
        parts.push(vec![0x01, 0x01, 0xff]);
    }
    parts.push(tlv(0x04, &value));
    seq(&parts)
}

pub struct CertSpec<'a> {
    pub subject: &'a str,
    pub issuer: &'a str,
    pub spki: Vec<u8>,
    pub not_before: &'a str,
    pub not_after: &'a str,
    pub extensions: Vec<Vec<u8>>,
}

pub fn cert(spec: CertSpec<'_>, signer: &RsaKeyPair) -> Vec<u8> {
    let mut tbs = vec![
        tlv(0xa0, &int(2)),
        int(1),
        pss_alg(),
        name(spec.issuer),
        seq(&[
            tlv(0x17, spec.not_before.as_bytes()),
            tlv(0x17, spec.not_after.as_bytes()),
        ]),
        name(spec.subject),
        spec.spki,
    ];
    if !spec.extensions.is_empty() {
        tbs.push(tlv(0xa3, &seq(&spec.extensions)));
    }
    pss_signed(seq(&tbs), signer)
}

/// `tbs` signed by `signer` with RSA-PSS (AMD's parameters): the
/// certificate or CRL as DER.
fn pss_signed(tbs: Vec<u8>, signer: &RsaKeyPair) -> Vec<u8> {
    let mut sig = vec![0u8; signer.public_modulus_len()];
    signer
        .sign(&RSA_PSS_SHA384, &SystemRandom::new(), &tbs, &mut sig)
        .unwrap(); // ok: test PKI, a buffer of the key's size
    seq(&[tbs, pss_alg(), bit_string(&sig)])
}

pub fn rsa_spki(key: &RsaKeyPair) -> Vec<u8> {
    seq(&[
        seq(&[oid(&[1, 2, 840, 113549, 1, 1, 1]), vec![5, 0]]),
        bit_string(key.public_key().as_ref()),
    ])
}

pub fn ec_spki(key: &EcdsaKeyPair) -> Vec<u8> {
    seq(&[
        seq(&[oid(&[1, 2, 840, 10045, 2, 1]), oid(&[1, 3, 132, 0, 34])]),
        bit_string(key.public_key().as_ref()),
    ])
}

pub fn ca_ext() -> Vec<Vec<u8>> {
    vec![ext(&[2, 5, 29, 19], true, seq(&[vec![0x01, 0x01, 0xff]]))]
}

// ---- the test PKI and reports ----

pub struct Pki {
    pub ark_key: RsaKeyPair,
    pub ask_key: RsaKeyPair,
    pub ark: Vec<u8>,
    pub ask: Vec<u8>,
    pub asvk: Vec<u8>,
    pub vcek_key: EcdsaKeyPair,
}

pub const GEN: &str = "Milan";

pub fn pki(generation: &str) -> Pki {
    let ark_key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(); // ok: test PKI
    let ask_key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(); // ok: test PKI
    let ark_name = format!("ARK-{generation}");
    // The ARK, and the ASK and ASVK it signs (one key for both, as the
    // tests need only the names to differ), valid 2020-2045.
    let ca = |subject: &str, key: &RsaKeyPair| {
        cert(
            CertSpec {
                subject,
                issuer: &ark_name,
                spki: rsa_spki(key),
                not_before: "200101000000Z",
                not_after: "450101000000Z",
                extensions: ca_ext(),
            },
            &ark_key,
        )
    };
    let ark = ca(&ark_name, &ark_key);
    let ask = ca(&format!("SEV-{generation}"), &ask_key);
    let asvk = ca(&format!("SEV-VLEK-{generation}"), &ask_key);
    let vcek_key = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(); // ok: test PKI
    Pki {
        ark_key,
        ask_key,
        ark,
        ask,
        asvk,
        vcek_key,
    }
}

/// SVNs as certified: (fmc, bootloader, tee, snp, microcode).
pub type Svns = (Option<u8>, u8, u8, u8, u8);

pub const SVNS: Svns = (None, 3, 0, 8, 0x73);

pub fn signing_cert(
    pki: &Pki,
    generation: &str,
    vlek: bool,
    svns: Svns,
    hwid: Option<Vec<u8>>,
    not_after: &str,
) -> Vec<u8> {
    let tcb = |arc: u64, v: u8| ext(&[1, 3, 6, 1, 4, 1, 3704, 1, 3, arc], false, int(v));
    let mut extensions = vec![
        tcb(1, svns.1),
        tcb(2, svns.2),
        tcb(3, svns.3),
        tcb(8, svns.4),
    ];
    if let Some(fmc) = svns.0 {
        extensions.push(tcb(9, fmc));
    }
    if let Some(id) = hwid {
        extensions.push(ext(&[1, 3, 6, 1, 4, 1, 3704, 1, 4], false, id));
    }
    let (subject, issuer) = if vlek {
        ("SEV-VLEK".to_string(), format!("SEV-VLEK-{generation}"))
    } else {
        ("SEV-VCEK".to_string(), format!("SEV-{generation}"))
    };
    cert(
        CertSpec {
            subject: &subject,
            issuer: &issuer,
            spki: ec_spki(&pki.vcek_key),
            not_before: "200101000000Z",
            not_after,
            extensions,
        },
        &pki.ask_key,
    )
}

pub const CHIP: [u8; 64] = [0xC5; 64];

pub struct ReportSpec {
    pub version: u32,
    pub policy: u64,
    pub vmpl: u32,
    pub signing_key: u32,
    pub tcb: [u8; 8],
    pub cpuid_family: u8,
    pub chip_id: [u8; 64],
}

pub fn milan_report() -> ReportSpec {
    ReportSpec {
        version: 2,
        policy: 0x30000,
        vmpl: 0,
        signing_key: 0,
        tcb: [3, 0, 0, 0, 0, 0, 8, 0x73],
        cpuid_family: 0,
        chip_id: CHIP,
    }
}

pub fn report(pki: &Pki, spec: &ReportSpec) -> Vec<u8> {
    let mut r = vec![0u8; REPORT_LEN];
    r[0..4].copy_from_slice(&spec.version.to_le_bytes());
    r[8..16].copy_from_slice(&spec.policy.to_le_bytes());
    r[0x30..0x34].copy_from_slice(&spec.vmpl.to_le_bytes());
    r[0x34] = 1;
    r[0x48..0x4C].copy_from_slice(&(spec.signing_key << 2).to_le_bytes());
    r[0x50] = 0x42; // report data
    r[0x90..0xC0].fill(0x99); // measurement
    for at in [0x38, 0x180, 0x1E0, 0x1F0] {
        r[at..at + 8].copy_from_slice(&spec.tcb);
    }
    if spec.version >= 3 {
        r[0x188] = spec.cpuid_family;
    }
    r[0x1A0..0x1E0].copy_from_slice(&spec.chip_id);
    resign(pki, &mut r);
    r
}

/// Signs bytes 0x000..0x2A0 of `r` with the test VCEK into its signature.
pub fn resign(pki: &Pki, r: &mut [u8]) {
    let sig = pki
        .vcek_key
        .sign(&SystemRandom::new(), &r[..0x2A0])
        .unwrap(); // ok: test PKI
    let sig = sig.as_ref();
    for (i, b) in sig[..48].iter().rev().enumerate() {
        r[0x2A0 + i] = *b;
    }
    for (i, b) in sig[48..].iter().rev().enumerate() {
        r[0x2E8 + i] = *b;
    }
}

/// An ARK CRL signed by `signer`, valid between the two UTCTimes,
/// revoking `revoked` serials.
pub fn crl(issuer: &str, signer: &RsaKeyPair, this: &str, next: &str, revoked: &[u8]) -> Vec<u8> {
    let mut tbs = vec![
        int(1),
        pss_alg(),
        name(issuer),
        tlv(0x17, this.as_bytes()),
        tlv(0x17, next.as_bytes()),
    ];
    if !revoked.is_empty() {
        let entries: Vec<Vec<u8>> = revoked
            .iter()
            .map(|serial| seq(&[int(*serial), tlv(0x17, b"250101000000Z")]))
            .collect();
        tbs.push(seq(&entries));
    }
    pss_signed(seq(&tbs), signer)
}
