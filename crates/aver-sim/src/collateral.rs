//! Simulated DCAP collateral under the simulator's test PKI: a TCB signing
//! certificate issued by the simulator root, TCB info and QE identity it
//! signs, a PCK CA CRL and a root CA CRL — each with chosen dates, levels,
//! statuses and revocations, so that every verdict and every refusal of the
//! collateral checks can be produced on demand. Like the quotes, it proves
//! nothing outside tests: only the simulator root vouches for it.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rcgen::{
    CertificateParams, CertificateRevocationListParams, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

use crate::{SimError, SimPlatform, name};

/// Serial of every simulated PCK certificate (revocable by CRL).
pub const PCK_SERIAL: [u8; 8] = [0x10, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
/// Serial of every simulated PCK CA certificate.
pub const CA_SERIAL: [u8; 8] = [0x20, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
/// The simulated QE's identity (see [`SimPlatform::quote`]).
pub const SIM_QE_MRSIGNER: [u8; 32] = [0xa5; 32];
pub const SIM_QE_ISVSVN: u16 = 8;
/// The simulated platform's TCB, as its PCK certificate states it.
pub const SIM_CPU_SVN_COMPONENTS: [u8; 16] = [17, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
pub const SIM_PCE_SVN: u16 = 10;

/// One TCB level of the simulated TCB info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTcbLevel {
    pub components: [u8; 16],
    pub pce_svn: u16,
    pub status: String,
    pub advisories: Vec<String>,
}

impl SimTcbLevel {
    /// A level at exactly the simulated platform's TCB with `status`.
    pub fn platform(status: &str, advisories: &[&str]) -> Self {
        SimTcbLevel {
            components: SIM_CPU_SVN_COMPONENTS,
            pce_svn: SIM_PCE_SVN,
            status: status.into(),
            advisories: advisories.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// What to put into the simulated collateral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCollateralSpec {
    /// FMSPC of the TCB info (default: the platform's).
    pub fmspc: Option<[u8; 6]>,
    /// Newest first (default: one UpToDate level at the platform's TCB).
    pub levels: Vec<SimTcbLevel>,
    /// QE identity levels (ISVSVN, status), highest first.
    pub qe_levels: Vec<(u16, String)>,
    pub qe_mrsigner: [u8; 32],
    /// issueDate / nextUpdate of TCB info and QE identity (RFC 3339).
    pub issue_date: String,
    pub next_update: String,
    /// thisUpdate / nextUpdate of both CRLs (year, month, day).
    pub crl_this_update: (i32, u8, u8),
    pub crl_next_update: (i32, u8, u8),
    /// List the PCK certificate in the PCK CA CRL.
    pub revoke_pck: bool,
    /// List the PCK CA certificate in the root CA CRL.
    pub revoke_ca: bool,
    /// The TCB evaluation data number of the TCB info and QE identity
    /// (default 17): a TCB baseline a policy may pin.
    pub tcb_evaluation_data_number: u32,
}

impl Default for SimCollateralSpec {
    fn default() -> Self {
        SimCollateralSpec {
            fmspc: None,
            levels: vec![SimTcbLevel::platform("UpToDate", &[])],
            qe_levels: vec![(SIM_QE_ISVSVN, "UpToDate".into())],
            qe_mrsigner: SIM_QE_MRSIGNER,
            issue_date: "2025-01-01T00:00:00Z".into(),
            next_update: "2025-02-01T00:00:00Z".into(),
            crl_this_update: (2025, 1, 1),
            crl_next_update: (2025, 2, 1),
            revoke_pck: false,
            revoke_ca: false,
            tcb_evaluation_data_number: 17,
        }
    }
}

/// Simulated collateral, item by item, in the shapes Intel serves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCollateral {
    pub pck_crl_issuer_chain: String,
    pub pck_crl: Vec<u8>,
    pub root_ca_crl: Vec<u8>,
    pub tcb_info_issuer_chain: String,
    pub tcb_info: String,
    pub tcb_info_signature: Vec<u8>,
    pub qe_identity_issuer_chain: String,
    pub qe_identity: String,
    pub qe_identity_signature: Vec<u8>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl SimCollateral {
    /// dcap-qvl's bundle JSON (what `aver evidence verify --collateral`
    /// and `aver collateral import` read).
    pub fn to_dcap_qvl_json(&self) -> String {
        format!(
            "{{\"pck_crl_issuer_chain\":{},\"root_ca_crl\":\"{}\",\"pck_crl\":\"{}\",\"tcb_info_issuer_chain\":{},\"tcb_info\":{},\"tcb_info_signature\":\"{}\",\"qe_identity_issuer_chain\":{},\"qe_identity\":{},\"qe_identity_signature\":\"{}\"}}",
            json_string(&self.pck_crl_issuer_chain),
            hex(&self.root_ca_crl),
            hex(&self.pck_crl),
            json_string(&self.tcb_info_issuer_chain),
            json_string(&self.tcb_info),
            hex(&self.tcb_info_signature),
            json_string(&self.qe_identity_issuer_chain),
            json_string(&self.qe_identity),
            hex(&self.qe_identity_signature),
        )
    }
}

impl SimPlatform {
    /// Collateral for this platform as `spec` describes it, signed by a
    /// fresh TCB signing key under the simulator root.
    pub fn collateral(&self, spec: &SimCollateralSpec) -> Result<SimCollateral, SimError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signing_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        let signing_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, signing_pkcs8.as_ref())?;
        let signing_rcgen = KeyPair::try_from(signing_pkcs8.as_ref())?;
        let mut p = CertificateParams::default();
        p.distinguished_name = name("Aver Simulated SGX TCB Signing (TEST ONLY)");
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2099, 12, 31);
        p.serial_number = Some(SerialNumber::from(vec![0x30, 1, 2, 3, 4, 5, 6, 7]));
        let signing_cert = p.signed_by(&signing_rcgen, &self.root_issuer)?;
        let tcb_chain = format!("{}{}", signing_cert.pem(), self.root_pem);

        let this_update = rcgen::date_time_ymd(
            spec.crl_this_update.0,
            spec.crl_this_update.1,
            spec.crl_this_update.2,
        );
        let next_update = rcgen::date_time_ymd(
            spec.crl_next_update.0,
            spec.crl_next_update.1,
            spec.crl_next_update.2,
        );
        let revoked = |serial: &[u8]| RevokedCertParams {
            serial_number: SerialNumber::from(serial.to_vec()),
            revocation_time: this_update,
            reason_code: None,
            invalidity_date: None,
        };
        let crl = |revoked_certs: Vec<RevokedCertParams>| CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let pck_crl = crl(if spec.revoke_pck {
            vec![revoked(&PCK_SERIAL)]
        } else {
            Vec::new()
        })
        .signed_by(&self.ca_issuer)?;
        let root_crl = crl(if spec.revoke_ca {
            vec![revoked(&CA_SERIAL)]
        } else {
            Vec::new()
        })
        .signed_by(&self.root_issuer)?;

        let levels: Vec<String> = spec
            .levels
            .iter()
            .map(|l| {
                let comps: Vec<String> = l
                    .components
                    .iter()
                    .map(|c| format!("{{\"svn\":{c}}}"))
                    .collect();
                let adv: Vec<String> = l.advisories.iter().map(|a| json_string(a)).collect();
                format!(
                    "{{\"tcb\":{{\"sgxtcbcomponents\":[{}],\"pcesvn\":{}}},\"tcbDate\":\"2024-11-13T00:00:00Z\",\"tcbStatus\":\"{}\"{}}}",
                    comps.join(","),
                    l.pce_svn,
                    l.status,
                    if adv.is_empty() {
                        String::new()
                    } else {
                        format!(",\"advisoryIDs\":[{}]", adv.join(","))
                    }
                )
            })
            .collect();
        let tcb_info = format!(
            "{{\"id\":\"SGX\",\"version\":3,\"issueDate\":\"{}\",\"nextUpdate\":\"{}\",\"fmspc\":\"{}\",\"pceId\":\"0000\",\"tcbType\":0,\"tcbEvaluationDataNumber\":{},\"tcbLevels\":[{}]}}",
            spec.issue_date,
            spec.next_update,
            hex(&spec.fmspc.unwrap_or(self.fmspc)),
            spec.tcb_evaluation_data_number,
            levels.join(",")
        );
        let qe_levels: Vec<String> = spec
            .qe_levels
            .iter()
            .map(|(svn, status)| {
                format!(
                    "{{\"tcb\":{{\"isvsvn\":{svn}}},\"tcbDate\":\"2024-11-13T00:00:00Z\",\"tcbStatus\":\"{status}\"}}"
                )
            })
            .collect();
        let qe_identity = format!(
            "{{\"id\":\"QE\",\"version\":2,\"issueDate\":\"{}\",\"nextUpdate\":\"{}\",\"tcbEvaluationDataNumber\":{},\"miscselect\":\"00000000\",\"miscselectMask\":\"FFFFFFFF\",\"attributes\":\"01000000000000000000000000000000\",\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",\"mrsigner\":\"{}\",\"isvprodid\":1,\"tcbLevels\":[{}]}}",
            spec.issue_date,
            spec.next_update,
            spec.tcb_evaluation_data_number,
            hex(&spec.qe_mrsigner),
            qe_levels.join(",")
        );
        let tcb_info_signature = signing_key
            .sign(&rng, tcb_info.as_bytes())?
            .as_ref()
            .to_vec();
        let qe_identity_signature = signing_key
            .sign(&rng, qe_identity.as_bytes())?
            .as_ref()
            .to_vec();
        Ok(SimCollateral {
            pck_crl_issuer_chain: format!("{}{}", self.ca_pem, self.root_pem),
            pck_crl: pck_crl.der().to_vec(),
            root_ca_crl: root_crl.der().to_vec(),
            tcb_info_issuer_chain: tcb_chain.clone(),
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: tcb_chain,
            qe_identity,
            qe_identity_signature,
        })
    }
}
