//! A simulated SGX quoting enclave, for tests and the demo.
//!
//! It produces well-formed DCAP v3 ECDSA-P256 quotes for a chosen enclave
//! identity, signed under a test PKI it generates: a root CA, a PCK platform
//! CA, a PCK leaf carrying Intel's SGX extensions (FMSPC, PCE-ID, TCB), and
//! an attestation key bound to the simulated QE report exactly as Intel's QE
//! binds it. The quotes pass every check the real verifier makes, except
//! that they chain to the simulator's root, which **no Aver deployment
//! trusts unless an operator adds it explicitly** (`--trust-root`).
//!
//! The root key is a fixed, published test key so that the root's subject
//! and public key are the same on every run: `aver sim root` can print it
//! once and a running service configured with it accepts quotes from any
//! later simulator process. Intermediate and leaf keys are fresh per PKI.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
pub mod collateral;

pub use collateral::{SimCollateral, SimCollateralSpec, SimTcbLevel};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

/// PKCS#8 of the simulator's root CA key. A published test key: anything it
/// signs proves nothing, which is why it is never trusted by default.
pub const SIM_ROOT_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVU5MXXKdaDXs80EL\n\
Vo8gVluVd2AaswkN79vfa7rDuP2hRANCAARkFF8Vnb4Uh5WzgCze4YcWyB2Z/kcb\n\
guLKBfh1A/DUwHq0n3cGkEA4Bz7tseF1YnV7qvWwSZCr18y0TPv7B6Lk\n\
-----END PRIVATE KEY-----\n\
";

/// Subject common name of the simulator's root CA.
pub const SIM_ROOT_CN: &str = "Aver Simulated SGX Root CA (TEST ONLY, NOT INTEL)";

/// Intel's QE vendor ID, as real quotes carry it.
const QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// Errors from building the test PKI or signing.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("key operation failed: {0}")]
    Key(String),
}

impl From<aws_lc_rs::error::Unspecified> for SimError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        SimError::Key("unspecified aws-lc failure".into())
    }
}

impl From<aws_lc_rs::error::KeyRejected> for SimError {
    fn from(e: aws_lc_rs::error::KeyRejected) -> Self {
        SimError::Key(e.to_string())
    }
}

/// The identity the simulated enclave reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveIdentity {
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub product_id: u16,
    pub svn: u16,
    pub debug: bool,
    pub report_data: [u8; 64],
}

impl Default for EnclaveIdentity {
    fn default() -> Self {
        EnclaveIdentity {
            mr_enclave: [0x11; 32],
            mr_signer: [0x22; 32],
            product_id: 1,
            svn: 1,
            debug: false,
            report_data: [0; 64],
        }
    }
}

/// report_data as Azure Attestation expects it: SHA-256(runtime data) in
/// the first 32 bytes, zeros after.
pub fn report_data_for(runtime_data: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(digest(&SHA256, runtime_data).as_ref());
    out
}

/// The simulator's root certificate (PEM). Same subject and key every time.
pub fn root_certificate_pem() -> Result<String, SimError> {
    let key = KeyPair::from_pem(SIM_ROOT_KEY_PEM)?;
    Ok(root_params().self_signed(&key)?.pem())
}

fn root_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(SIM_ROOT_CN);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 12, 31);
    p
}

pub(crate) fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Aver test PKI");
    dn
}

/// A simulated SGX platform: its PCK chain and quoting enclave keys.
pub struct SimPlatform {
    chain_pem: String,
    root_pem: String,
    /// The PCK CA's certificate (PEM), its issuer (to sign PCK CRLs) and
    /// the root's issuer (to sign root CRLs and the TCB signing
    /// certificate), for [`SimPlatform::collateral`].
    ca_pem: String,
    ca_issuer: Issuer<'static, KeyPair>,
    root_issuer: Issuer<'static, KeyPair>,
    pck_key: EcdsaKeyPair,
    attestation_key: EcdsaKeyPair,
    rng: SystemRandom,
    /// FMSPC written into the PCK certificate's SGX extension.
    pub fmspc: [u8; 6],
}

impl SimPlatform {
    /// Generates a PCK CA, a PCK leaf and an attestation key under the
    /// simulator root. The PCK chain is valid from 2020 to 2099.
    pub fn generate() -> Result<Self, SimError> {
        Self::generate_with_validity((2020, 1, 1), (2099, 12, 31))
    }

    /// Like [`generate`](Self::generate) with a chosen PCK leaf validity
    /// (year, month, day), for expiry tests.
    pub fn generate_with_validity(
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> Result<Self, SimError> {
        let rng = SystemRandom::new();
        let root_key = KeyPair::from_pem(SIM_ROOT_KEY_PEM)?;
        let root_params = root_params();
        let root_cert = root_params.clone().self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = name("Aver Simulated SGX PCK Platform CA (TEST ONLY)");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        ca_params.serial_number = Some(rcgen::SerialNumber::from(collateral::CA_SERIAL.to_vec()));
        let ca_cert = ca_params.signed_by(&ca_key, &root_issuer)?;
        let ca_issuer = Issuer::new(ca_params, ca_key);

        let pck_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        let pck_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pck_pkcs8.as_ref())?;
        let pck_rcgen = KeyPair::try_from(pck_pkcs8.as_ref())?;
        let fmspc = [0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00];
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = name("Aver Simulated SGX PCK Certificate (TEST ONLY)");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        leaf.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        leaf.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        leaf.custom_extensions = vec![sgx_extension(&fmspc)];
        leaf.serial_number = Some(rcgen::SerialNumber::from(collateral::PCK_SERIAL.to_vec()));
        let leaf_cert = leaf.signed_by(&pck_rcgen, &ca_issuer)?;

        let chain_pem = format!("{}{}{}", leaf_cert.pem(), ca_cert.pem(), root_cert.pem());
        let att_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        let attestation_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, att_pkcs8.as_ref())?;
        Ok(SimPlatform {
            chain_pem,
            root_pem: root_cert.pem(),
            ca_pem: ca_cert.pem(),
            ca_issuer,
            root_issuer,
            pck_key,
            attestation_key,
            rng,
            fmspc,
        })
    }

    /// The simulator root certificate this platform chains to (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The PCK chain (leaf, CA, root) as carried in quotes.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// A DCAP v3 quote for `identity`.
    pub fn quote(&self, identity: &EnclaveIdentity) -> Result<Vec<u8>, SimError> {
        let mut quote = Vec::with_capacity(5000);
        // Header.
        quote.extend_from_slice(&3u16.to_le_bytes());
        quote.extend_from_slice(&2u16.to_le_bytes());
        quote.extend_from_slice(&[0; 4]);
        quote.extend_from_slice(&5u16.to_le_bytes()); // QE SVN
        quote.extend_from_slice(&10u16.to_le_bytes()); // PCE SVN
        quote.extend_from_slice(&QE_VENDOR_ID);
        quote.extend_from_slice(&[0; 20]);
        // ISV enclave report body.
        let attributes = if identity.debug { 0x07u64 } else { 0x05u64 };
        quote.extend_from_slice(&report_body(
            &identity.mr_enclave,
            &identity.mr_signer,
            identity.product_id,
            identity.svn,
            attributes,
            &identity.report_data,
        ));

        let quote_sig = self.attestation_key.sign(&self.rng, &quote)?;
        let att_pub = self.attestation_key.public_key().as_ref();
        let att_xy = att_pub
            .get(1..65)
            .ok_or(SimError::Key("bad public key".into()))?;

        let auth_data: Vec<u8> = (0u8..32).collect();
        let mut binding = att_xy.to_vec();
        binding.extend_from_slice(&auth_data);
        let qe_report = report_body(
            &[0x5a; 32],
            &[0xa5; 32],
            1,
            8,
            0x05,
            &report_data_for_binding(&binding),
        );
        let qe_sig = self.pck_key.sign(&self.rng, &qe_report)?;

        let cert_data = self.chain_pem.as_bytes();
        let mut sig = Vec::new();
        sig.extend_from_slice(quote_sig.as_ref());
        sig.extend_from_slice(att_xy);
        sig.extend_from_slice(&qe_report);
        sig.extend_from_slice(qe_sig.as_ref());
        sig.extend_from_slice(&(auth_data.len() as u16).to_le_bytes());
        sig.extend_from_slice(&auth_data);
        sig.extend_from_slice(&5u16.to_le_bytes());
        sig.extend_from_slice(&(cert_data.len() as u32).to_le_bytes());
        sig.extend_from_slice(cert_data);

        quote.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        quote.extend_from_slice(&sig);
        Ok(quote)
    }

    /// An OpenEnclave remote report (16-byte header + quote) for `identity`.
    pub fn openenclave_report(&self, identity: &EnclaveIdentity) -> Result<Vec<u8>, SimError> {
        let quote = self.quote(identity)?;
        let mut report = Vec::with_capacity(quote.len() + 16);
        report.extend_from_slice(&1u32.to_le_bytes());
        report.extend_from_slice(&2u32.to_le_bytes());
        report.extend_from_slice(&(quote.len() as u64).to_le_bytes());
        report.extend_from_slice(&quote);
        Ok(report)
    }
}

fn report_data_for_binding(binding: &[u8]) -> [u8; 64] {
    report_data_for(binding)
}

fn report_body(
    mr_enclave: &[u8; 32],
    mr_signer: &[u8; 32],
    product_id: u16,
    svn: u16,
    attribute_flags: u64,
    report_data: &[u8; 64],
) -> [u8; 384] {
    let mut b = [0u8; 384];
    b[0..16].copy_from_slice(&[
        0x11, 0x11, 0x03, 0x05, 0xff, 0x80, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    b[48..56].copy_from_slice(&attribute_flags.to_le_bytes());
    b[56..64].copy_from_slice(&0x07u64.to_le_bytes()); // XFRM
    b[64..96].copy_from_slice(mr_enclave);
    b[128..160].copy_from_slice(mr_signer);
    b[256..258].copy_from_slice(&product_id.to_le_bytes());
    b[258..260].copy_from_slice(&svn.to_le_bytes());
    b[320..384].copy_from_slice(report_data);
    b
}

/// Intel's SGX extension (OID 1.2.840.113741.1.13.1) with PPID, TCB,
/// PCE-ID, FMSPC and SGX type, so collateral lookups have what they need.
fn sgx_extension(fmspc: &[u8; 6]) -> CustomExtension {
    const SGX: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];
    let oid = |last: &[u64]| {
        let mut v = SGX.to_vec();
        v.extend_from_slice(last);
        yasna::models::ObjectIdentifier::from_slice(&v)
    };
    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[1]));
                w.next().write_bytes(&[0x42; 16]);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[2]));
                w.next().write_sequence(|w| {
                    for i in 1..=16u64 {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(&[2, i]));
                            w.next().write_u8(if i <= 2 { 17 } else { 0 });
                        });
                    }
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(&[2, 17]));
                        w.next().write_u16(10);
                    });
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(&[2, 18]));
                        w.next().write_bytes(&[0x11; 16]);
                    });
                });
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[3]));
                w.next().write_bytes(&[0, 0]);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[4]));
                w.next().write_bytes(fmspc);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[5]));
                w.next().write_enum(0);
            });
        })
    });
    CustomExtension::from_oid_content(&SGX, der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_parse_to_the_chosen_identity() {
        let platform = SimPlatform::generate().unwrap();
        let id = EnclaveIdentity {
            mr_enclave: [7; 32],
            mr_signer: [9; 32],
            product_id: 42,
            svn: 3,
            debug: true,
            report_data: report_data_for(b"hello"),
        };
        let quote = platform.quote(&id).unwrap();
        let parsed = aver_attestation::dcap::parse_quote(&quote).unwrap();
        let body = parsed.sgx_report().unwrap();
        assert_eq!(body.mr_enclave, &[7; 32]);
        assert_eq!(body.mr_signer, &[9; 32]);
        assert_eq!(body.isv_prod_id, 42);
        assert_eq!(body.isv_svn, 3);
        assert!(body.is_debuggable());
        assert_eq!(body.report_data, &id.report_data);
        let report = platform.openenclave_report(&id).unwrap();
        let oe = aver_attestation::evidence::sgx::parse_openenclave_report(&report).unwrap();
        assert!(!oe.sgx_report().unwrap().report_data.iter().all(|b| *b == 0));
    }

    #[test]
    fn platforms_get_fresh_pck_keys() {
        let a = SimPlatform::generate().unwrap();
        let b = SimPlatform::generate().unwrap();
        assert_ne!(a.chain_pem(), b.chain_pem());
        assert!(
            root_certificate_pem()
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }
}
