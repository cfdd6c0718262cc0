//! The protocol state machine: [`TpmAttestService::handle`].

use crate::certs::{AkCa, verify_ek_certificate};
use crate::context::{Purpose, ReplayCache, ServiceContext, random, seal, unseal};
use crate::credential::make_credential;
use crate::error::TpmError;
use crate::message::{Attestation, TpmMessage, b64url, b64url_decode, decode_message};
use aver_tpm::alg::{HashAlg, PcrValues};

use aver_tpm::AkPublicKey;
use aver_tpm::structures::Public;

use crate::evidence::{AkInput, PcrSource, TpmEvidence, check_ak_attributes, verify_evidence};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Value of the `x-ms-ver` claim.
pub const X_MS_VER: &str = "1.0";
/// Length of the challenge issued by Init (bytes).
pub const CHALLENGE_LEN: usize = 32;
/// Length of the credential secret (bytes).
pub const SECRET_LEN: usize = 32;

/// Service configuration.
#[derive(Clone)]
pub struct TpmAttestConfig {
    /// AES-256-GCM key sealing service contexts (same on every replica).
    pub context_key: [u8; 32],
    /// The provider's AK CA certificate (DER).
    pub ak_ca_cert_der: Vec<u8>,
    /// The AK CA's private key (PKCS#8 DER).
    pub ak_ca_key_pkcs8_der: Vec<u8>,
    /// Trusted TPM-manufacturer roots (DER) for EK certificates.
    pub ek_roots: Vec<Vec<u8>>,
    /// Extra manufacturer intermediates (DER) usable in EK chains.
    pub ek_intermediates: Vec<Vec<u8>>,
    /// Lifetime of service contexts (seconds; default 300).
    pub context_ttl_secs: u64,
    /// Validity of issued AK certificates (seconds; default 1 year).
    pub ak_cert_lifetime_secs: u64,
}

impl std::fmt::Debug for TpmAttestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmAttestConfig")
            .field("ek_roots", &self.ek_roots.len())
            .field("ek_intermediates", &self.ek_intermediates.len())
            .field("context_ttl_secs", &self.context_ttl_secs)
            .field("ak_cert_lifetime_secs", &self.ak_cert_lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl TpmAttestConfig {
    /// A configuration with the default lifetimes (contexts 300 s, AK
    /// certificates 365 days) and no EK intermediates.
    pub fn new(
        context_key: [u8; 32],
        ak_ca_cert_der: Vec<u8>,
        ak_ca_key_pkcs8_der: Vec<u8>,
        ek_roots: Vec<Vec<u8>>,
    ) -> Self {
        Self {
            context_key,
            ak_ca_cert_der,
            ak_ca_key_pkcs8_der,
            ek_roots,
            ek_intermediates: Vec::new(),
            context_ttl_secs: 300,
            ak_cert_lifetime_secs: 365 * 24 * 3600,
        }
    }
}

/// Per-request options, normally from the policy's configuration rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestOptions {
    /// PCRs (bit n = PCR n) whose quoted values must equal the event-log
    /// replay in every quoted bank. `None`: PCRs 0–7 that every quoted bank
    /// contains. In every case each other quoted PCR the log extends must
    /// also match.
    pub required_pcr_mask: Option<u32>,
    /// Refuse requests without a valid `aik_cert`.
    pub require_valid_aik_cert: bool,
}

impl RequestOptions {
    /// From policy property claims (`Evaluation::properties_json()` of the
    /// configuration rules): `required_pcr_mask` (integer, or a string in
    /// decimal or `0x` hex) and `require_valid_aik_cert` (bool).
    pub fn from_properties(props: &Map<String, Value>) -> Result<Self, TpmError> {
        let mask = match props.get("required_pcr_mask") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| TpmError::msg("required_pcr_mask is not a 32-bit mask"))?,
            ),
            Some(Value::String(s)) => {
                let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    Some(h) => u32::from_str_radix(h, 16),
                    None => s.parse::<u32>(),
                };
                Some(parsed.map_err(|_| TpmError::msg("required_pcr_mask is not a 32-bit mask"))?)
            }
            Some(_) => return Err(TpmError::msg("required_pcr_mask has the wrong type")),
        };
        let require = match props.get("require_valid_aik_cert") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(TpmError::msg("require_valid_aik_cert is not a boolean")),
        };
        Ok(Self {
            required_pcr_mask: mask,
            require_valid_aik_cert: require,
        })
    }
}

/// What the route does next.
#[derive(Debug)]
pub enum TpmStep {
    /// Send `{"data": message::encode_payload(&payload)}` back.
    Reply(Value),
    /// Evidence verified: evaluate the policy on `claims`, sign the token
    /// and answer `{"data": message::report_reply(&token)}`.
    Verified(Box<VerifiedTpm>),
}

/// A verified TPM attestation.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedTpm {
    /// Incoming claims for the policy (and, after evaluation, the token).
    pub claims: Map<String, Value>,
    /// True when `aik_cert` chained to the AK CA and certified this AK.
    pub aik_validated: bool,
    /// The AK name (nameAlg ‖ H(TPMT_PUBLIC)).
    pub ak_name: Vec<u8>,
    /// The quoted PCR values that were verified against the quote.
    pub pcrs: PcrValues,
    /// The PCRs whose replay was compared with the quote.
    pub replayed_pcrs: Vec<(HashAlg, u32)>,
    /// The service context id consumed.
    pub context_id: String,
}

/// The service. Cheap to share (`&self` everywhere); hold one per process.
#[derive(Debug)]
pub struct TpmAttestService {
    context_key: [u8; 32],
    ak_ca: AkCa,
    ek_roots: Vec<Vec<u8>>,
    ek_intermediates: Vec<Vec<u8>>,
    context_ttl_secs: u64,
}

fn parse_tpm_public(field: &str, b64: &str) -> Result<Public, TpmError> {
    let raw = b64url_decode(field, b64)?;
    aver_tpm::parse_public2b(&raw)
        .or_else(|_| aver_tpm::parse_public(&raw))
        .map_err(|e| TpmError::msg(format!("{field} is not a TPM2B_PUBLIC: {e}")))
}

fn ak_name(ak: &Public) -> Result<Vec<u8>, TpmError> {
    ak.name()
        .map_err(|e| TpmError::UnsupportedAlgorithm(format!("AK name: {e}")))
}

fn ak_key(ak: &Public) -> Result<AkPublicKey, TpmError> {
    AkPublicKey::from_public(ak).map_err(|e| TpmError::UnsupportedAlgorithm(format!("AK: {e}")))
}

impl TpmAttestService {
    /// Builds the service; fails on an unusable AK CA.
    pub fn new(config: TpmAttestConfig) -> Result<Self, TpmError> {
        Ok(Self {
            context_key: config.context_key,
            ak_ca: AkCa::new(
                config.ak_ca_cert_der,
                &config.ak_ca_key_pkcs8_der,
                config.ak_cert_lifetime_secs,
            )?,
            ek_roots: config.ek_roots,
            ek_intermediates: config.ek_intermediates,
            context_ttl_secs: config.context_ttl_secs,
        })
    }

    /// The AK CA certificate (DER), e.g. to publish it.
    pub fn ak_ca_cert_der(&self) -> &[u8] {
        self.ak_ca.cert_der()
    }

    /// Handles one `POST /attest/Tpm` body `data` value with default
    /// [`RequestOptions`].
    pub fn handle(
        &self,
        data_b64url: &str,
        now_unix: u64,
        replay: &ReplayCache,
    ) -> Result<TpmStep, TpmError> {
        self.handle_with(data_b64url, now_unix, replay, &RequestOptions::default())
    }

    /// Handles one `POST /attest/Tpm` body `data` value.
    pub fn handle_with(
        &self,
        data_b64url: &str,
        now_unix: u64,
        replay: &ReplayCache,
        options: &RequestOptions,
    ) -> Result<TpmStep, TpmError> {
        match decode_message(data_b64url)? {
            TpmMessage::Init => self.init(now_unix).map(TpmStep::Reply),
            TpmMessage::Request {
                service_context,
                tpm_att_data,
            } => {
                let ctx = self.consume(&service_context, Purpose::Attest, now_unix, replay)?;
                let challenge =
                    b64url_decode("challenge", ctx.challenge.as_deref().unwrap_or_default())
                        .map_err(|_| TpmError::ServiceContextInvalid("no challenge".into()))?;
                let mut v = self.verify_attestation(
                    &tpm_att_data.current_attestation,
                    &challenge,
                    now_unix,
                    options,
                )?;
                v.context_id = ctx.id;
                Ok(TpmStep::Verified(Box::new(v)))
            }
            TpmMessage::Enroll {
                ek_cert,
                ek_chain,
                ek_pub,
                ak_pub,
            } => self
                .enroll(&ek_cert, &ek_chain, &ek_pub, &ak_pub, now_unix)
                .map(TpmStep::Reply),
            TpmMessage::Activate {
                service_context,
                secret,
            } => self
                .activate(&service_context, &secret, now_unix, replay)
                .map(TpmStep::Reply),
        }
    }

    fn consume(
        &self,
        sealed: &str,
        purpose: Purpose,
        now: u64,
        replay: &ReplayCache,
    ) -> Result<ServiceContext, TpmError> {
        let ctx = unseal(&self.context_key, sealed, purpose, now)?;
        replay.consume(&ctx.id, ctx.exp, now)?;
        Ok(ctx)
    }

    /// Init: a fresh random challenge and its sealed context.
    pub fn init(&self, now: u64) -> Result<Value, TpmError> {
        self.init_with_challenge(&random::<CHALLENGE_LEN>()?, now)
    }

    /// Init with a caller-chosen challenge. Only for tests and replaying
    /// recorded evidence: a real service must use [`Self::init`].
    #[doc(hidden)]
    pub fn init_with_challenge(&self, challenge: &[u8], now: u64) -> Result<Value, TpmError> {
        let mut ctx = ServiceContext::new(Purpose::Attest, now, self.context_ttl_secs)?;
        ctx.challenge = Some(b64url(challenge));
        Ok(json!({
            "challenge": b64url(challenge),
            "service_context": seal(&self.context_key, &ctx)?,
        }))
    }

    /// Verifies a `current_attestation` against `challenge` (the Request
    /// step without the service context): the AK certificate here, the
    /// quote, PCRs and event log by [`verify_evidence`].
    pub fn verify_attestation(
        &self,
        a: &Attestation,
        challenge: &[u8],
        now: u64,
        options: &RequestOptions,
    ) -> Result<VerifiedTpm, TpmError> {
        // Attestation key.
        let ak = parse_tpm_public("aik_pub", &a.aik_pub)?;
        check_ak_attributes(&ak)?;
        let name = ak_name(&ak)?;
        let key = ak_key(&ak)?;

        // AK certificate.
        let aik_validated = match &a.aik_cert {
            None if options.require_valid_aik_cert => return Err(TpmError::AikCertificateRequired),
            None => false,
            Some(c) => {
                let der = b64url_decode("aik_cert", c)?;
                match self.ak_ca.validate(&der, &key, &name, now) {
                    Ok(()) => true,
                    Err(e) if options.require_valid_aik_cert => return Err(e),
                    Err(_) => false,
                }
            }
        };

        // PCR values.
        let mut supplied: PcrValues = BTreeMap::new();
        for bank in &a.pcrs {
            let alg = HashAlg::from_tpm(bank.algorithm).ok_or_else(|| {
                TpmError::UnsupportedAlgorithm(format!("PCR bank algorithm {}", bank.algorithm))
            })?;
            let vals = supplied.entry(alg).or_default();
            for p in &bank.values {
                if p.index >= 24 {
                    return Err(TpmError::msg(format!("PCR index {} out of range", p.index)));
                }
                let d = b64url_decode("pcrs.values.digest", &p.digest)?;
                if d.len() != alg.size() {
                    return Err(TpmError::msg(format!(
                        "PCR {} of bank {} has {} bytes",
                        p.index,
                        alg.lower_name(),
                        d.len()
                    )));
                }
                if vals.insert(p.index, d).is_some() {
                    return Err(TpmError::msg(format!(
                        "PCR {} of bank {} given twice",
                        p.index,
                        alg.lower_name()
                    )));
                }
            }
        }

        // Event log: at most one, TCG.
        let mut tcg = a
            .logs
            .iter()
            .filter(|l| l.log_type.eq_ignore_ascii_case("TCG"));
        let tcg_log = tcg.next();
        if tcg.next().is_some() {
            return Err(TpmError::msg("more than one TCG log"));
        }
        if let Some(other) = a
            .logs
            .iter()
            .find(|l| !l.log_type.eq_ignore_ascii_case("TCG"))
        {
            return Err(TpmError::msg(format!(
                "log type {:?} is not supported (TCG only)",
                other.log_type
            )));
        }
        let log_bytes = tcg_log
            .map(|l| b64url_decode("logs.log", &l.log))
            .transpose()?;
        let quote = b64url_decode("quote", &a.quote)?;
        let signature = b64url_decode("signature", &a.signature)?;

        let verified = verify_evidence(&TpmEvidence {
            ak: AkInput::Public(ak),
            quote: &quote,
            signature: &signature,
            pcrs: PcrSource::Supplied(supplied),
            event_log: log_bytes.as_deref(),
            challenge: Some(challenge),
            required_pcr_mask: options.required_pcr_mask,
        })?;
        let mut claims = verified.claims;
        claims.insert("aikValidated".into(), json!(aik_validated));
        Ok(VerifiedTpm {
            claims,
            aik_validated,
            ak_name: name,
            pcrs: verified.quoted,
            replayed_pcrs: verified.replayed_pcrs,
            context_id: String::new(),
        })
    }

    fn enroll(
        &self,
        ek_cert: &str,
        ek_chain: &[String],
        ek_pub: &str,
        ak_pub: &str,
        now: u64,
    ) -> Result<Value, TpmError> {
        let ek = parse_tpm_public("ek_pub", ek_pub)?;
        let ek_key = AkPublicKey::from_public(&ek)
            .map_err(|e| TpmError::UnsupportedEkType(e.to_string()))?;
        let cert = b64url_decode("ek_cert", ek_cert)?;
        let mut inter = self.ek_intermediates.clone();
        for c in ek_chain {
            inter.push(b64url_decode("ek_chain", c)?);
        }
        verify_ek_certificate(&cert, &inter, &self.ek_roots, now, &ek_key)?;
        let ak = parse_tpm_public("ak_pub", ak_pub)?;
        check_ak_attributes(&ak)?;
        let name = ak_name(&ak)?;
        ak_key(&ak)?;
        let secret = random::<SECRET_LEN>()?;
        let made = make_credential(&ek, &name, &secret)?;
        let ek_spki = ek
            .to_spki_der()
            .map_err(|e| TpmError::UnsupportedEkType(e.to_string()))?;
        let mut ctx = ServiceContext::new(Purpose::Activate, now, self.context_ttl_secs)?;
        ctx.secret_sha256 = Some(b64url(&Sha256::digest(secret)));
        ctx.ak_name = Some(b64url(&name));
        ctx.ak_pub = Some(ak_pub.trim_end_matches('=').to_string());
        ctx.ek_spki_sha256 = Some(b64url(&Sha256::digest(&ek_spki)));
        Ok(json!({
            "credential_blob": b64url(&made.credential_blob),
            "encrypted_secret": b64url(&made.encrypted_secret),
            "service_context": seal(&self.context_key, &ctx)?,
        }))
    }

    fn activate(
        &self,
        sealed: &str,
        secret: &str,
        now: u64,
        replay: &ReplayCache,
    ) -> Result<Value, TpmError> {
        let ctx = self.consume(sealed, Purpose::Activate, now, replay)?;
        let secret = b64url_decode("secret", secret)?;
        let expected = ctx
            .secret_sha256
            .as_deref()
            .map(|s| b64url_decode("secret_sha256", s))
            .transpose()
            .ok()
            .flatten()
            .ok_or_else(|| TpmError::ServiceContextInvalid("no secret hash".into()))?;
        let got = Sha256::digest(&secret);
        aws_lc_rs::constant_time::verify_slices_are_equal(&got, &expected)
            .map_err(|_| TpmError::AkNotBoundToEk)?;
        let ak_pub = ctx
            .ak_pub
            .as_deref()
            .ok_or_else(|| TpmError::ServiceContextInvalid("no AK".into()))?;
        let ak = parse_tpm_public("ak_pub", ak_pub)
            .map_err(|_| TpmError::ServiceContextInvalid("bad AK".into()))?;
        let name = ak_name(&ak)?;
        let spki = ak
            .to_spki_der()
            .map_err(|e| TpmError::UnsupportedAlgorithm(format!("AK: {e}")))?;
        let cert = self.ak_ca.issue(&spki, &name, now)?;
        Ok(json!({ "aik_cert": b64url(&cert) }))
    }
}
