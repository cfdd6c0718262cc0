//! # aver-tpm-client — the client side of Aver's TPM attestation
//!
//! Drives a real TPM 2.0 (swtpm over `swtpm:host=…,port=…`, or a kernel
//! resource manager `device:/dev/tpmrm0`) through **tss-esapi 7.7** (links
//! the system libtss2: Debian `libtss2-dev`) and speaks the protocol
//! implemented by `aver-tpm-attest` (see its `PROTOCOL.md`):
//!
//! * [`TpmClient::open`] a TCTI;
//! * [`TpmClient::read_ek_certificate`] (NV 0x01c00002) and the RSA-2048 EK
//!   from the TCG default template ([`TpmClient::ek_public`]);
//! * [`TpmClient::create_ak`]: a restricted signing AK under the EK
//!   (RSA-2048 RSASSA-SHA256 or ECC P-256 ECDSA-SHA256), returned as an
//!   [`AkBlob`] the caller stores (public + TPM-encrypted private area);
//! * [`enroll`]: `enroll` → TPM2_ActivateCredential → `activate`, keeping
//!   the AK certificate in the [`AkBlob`];
//! * [`attest`]: `aikcert` → quote over the requested PCRs with the
//!   challenge as qualifying data → PCR values → event log → `request` →
//!   the report token.
//!
//! The transport is the caller's: a closure that sends one `{"payload":…}`
//! message and returns the reply's payload ([`encode_data`] /
//! [`decode_data`] convert to and from the HTTP `{"data":…}` body).
//!
//! No resource manager is assumed: every transient object and session
//! this crate creates is flushed before the call returns (swtpm has only
//! three object slots; leaking one makes the next load fail with 0x902).
//!
//! Why a separate crate: the verifier (`aver-tpm`, `aver-tpm-attest`) must
//! stay pure Rust; only the client links the TSS C libraries.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::path::Path;
use std::str::FromStr;
use thiserror::Error;
use tss_esapi::Context;
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ak, ek, nv, pcr};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, NvIndexTpmHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::NvAuth;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, Digest, EncryptedSecret, IdObject, PcrSelectionListBuilder, PcrSlot, Private, Public,
    PublicBuffer, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};

/// NV index of the RSA-2048 EK certificate (TCG EK Credential Profile).
pub const EK_CERT_NV_INDEX: u32 = 0x01c0_0002;
/// Where Linux exposes the firmware event log.
pub const DEFAULT_EVENT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// A client failure.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The TPM (or the TSS) refused a command.
    #[error("TPM error during {what}: {source}")]
    Tpm {
        /// The operation.
        what: &'static str,
        /// The TSS error.
        source: tss_esapi::Error,
    },
    /// The transport closure failed (includes service error replies).
    #[error("transport: {0}")]
    Transport(String),
    /// The service answered something the protocol does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Reading a file (event log) failed.
    #[error("I/O on {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn tpm(what: &'static str) -> impl FnOnce(tss_esapi::Error) -> ClientError {
    move |source| ClientError::Tpm { what, source }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// `v[name]`, or `null`: the server's reply is untrusted input.
fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get(name).unwrap_or(&Value::Null)
}

fn unb64(field: &str, v: &Value) -> Result<Vec<u8>, ClientError> {
    let s = v
        .as_str()
        .ok_or_else(|| ClientError::Protocol(format!("reply has no string {field}")))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| ClientError::Protocol(format!("reply {field} is not base64url")))
}

/// Encodes a `{"payload":…}` message as the HTTP body `{"data": …}`.
pub fn encode_data(message: &Value) -> Value {
    json!({ "data": b64(message.to_string().as_bytes()) })
}

/// Decodes an HTTP reply body `{"data": …}` into its payload.
pub fn decode_data(body: &Value) -> Result<Value, ClientError> {
    let raw = unb64("data", body.get("data").unwrap_or(&Value::Null))?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| ClientError::Protocol(format!("reply data is not JSON: {e}")))?;
    v.get("payload")
        .cloned()
        .ok_or_else(|| ClientError::Protocol("reply has no payload".into()))
}

/// AK algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AkAlgorithm {
    /// RSA-2048, RSASSA-PKCS1-v1_5 with SHA-256.
    #[default]
    RsaSsaSha256,
    /// ECC NIST P-256, ECDSA with SHA-256.
    EcdsaP256Sha256,
}

/// An AK as the caller stores it between runs. The private area is
/// encrypted by the TPM under the EK (a primary key re-derived from the
/// TCG template), so it is only usable in the same TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkBlob {
    /// TPM2B_PUBLIC.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE contents (without the size prefix).
    pub private: Vec<u8>,
    /// AK name (nameAlg ‖ H(TPMT_PUBLIC)).
    pub name: Vec<u8>,
    /// AK certificate (DER) issued at enrollment.
    pub aik_cert: Option<Vec<u8>>,
}

impl AkBlob {
    /// JSON form (base64url fields) for storing on disk.
    pub fn to_json(&self) -> Value {
        json!({
            "public": b64(&self.public),
            "private": b64(&self.private),
            "name": b64(&self.name),
            "aik_cert": self.aik_cert.as_deref().map(b64),
        })
    }

    /// Parses [`AkBlob::to_json`].
    pub fn from_json(v: &Value) -> Result<Self, ClientError> {
        Ok(Self {
            public: unb64("public", &v["public"])?,
            private: unb64("private", &v["private"])?,
            name: unb64("name", &v["name"])?,
            aik_cert: match v.get("aik_cert") {
                None | Some(Value::Null) => None,
                Some(c) => Some(unb64("aik_cert", c)?),
            },
        })
    }
}

/// Options of [`attest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestOptions {
    /// PCR indices to quote (default 0–7).
    pub pcrs: Vec<u32>,
    /// Banks to quote (default SHA-256).
    pub banks: Vec<HashingAlgorithm>,
    /// The TCG event log bytes; `None` reads [`DEFAULT_EVENT_LOG`].
    pub event_log: Option<Vec<u8>>,
}

impl Default for AttestOptions {
    fn default() -> Self {
        Self {
            pcrs: (0..8).collect(),
            banks: vec![HashingAlgorithm::Sha256],
            event_log: None,
        }
    }
}

/// A quote with everything the `request` message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteEvidence {
    /// TPMS_ATTEST.
    pub quote: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// (TPM_ALG_ID, index, value) of every quoted PCR, read right after
    /// the quote.
    pub pcrs: Vec<(u16, u32, Vec<u8>)>,
}

/// A TPM connection.
pub struct TpmClient {
    ctx: Context,
}

impl std::fmt::Debug for TpmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmClient").finish_non_exhaustive()
    }
}

/// Flushes a transient object, ignoring failures (used on cleanup paths).
fn flush(ctx: &mut Context, h: impl Into<ObjectHandle>) {
    let _ = ctx.flush_context(h.into());
}

fn flush_session(ctx: &mut Context, s: AuthSession) {
    let _ = ctx.flush_context(SessionHandle::from(s).into());
}

impl TpmClient {
    /// Opens a TCTI: `swtpm:host=127.0.0.1,port=2321`, `device:/dev/tpmrm0`,
    /// `mssim:…`, `tabrmd:…` (libtss2's syntax).
    pub fn open(tcti: &str) -> Result<Self, ClientError> {
        let conf = TctiNameConf::from_str(tcti).map_err(tpm("parse TCTI"))?;
        let ctx = Context::new(conf).map_err(tpm("open TCTI"))?;
        Ok(Self { ctx })
    }

    /// The underlying tss-esapi context (tests extend PCRs through it).
    pub fn context_mut(&mut self) -> &mut Context {
        &mut self.ctx
    }

    /// Reads the RSA-2048 EK certificate from NV 0x01c00002 (`None` when
    /// the index is not defined).
    pub fn read_ek_certificate(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let idx = NvIndexTpmHandle::new(EK_CERT_NV_INDEX).map_err(tpm("NV index"))?;
        let defined = nv::list(&mut self.ctx)
            .map_err(tpm("NV list"))?
            .iter()
            .any(|(p, _)| p.nv_index() == idx);
        if !defined {
            return Ok(None);
        }
        let auth = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(idx.into()))
            .map_err(tpm("NV handle"))?;
        let cert = self
            .ctx
            .execute_with_nullauth_session(|c| nv::read_full(c, NvAuth::NvIndex(auth.into()), idx))
            .map_err(tpm("NV read"));
        // (nv::read_full closes the ESYS resource of the index itself.)
        cert.map(Some)
    }

    fn create_ek(&mut self) -> Result<KeyHandle, ClientError> {
        ek::create_ek_object_2(
            &mut self.ctx,
            AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            None,
        )
        .map_err(tpm("create EK"))
    }

    /// Creates the RSA-2048 EK (TCG default template) and returns its
    /// TPM2B_PUBLIC. The EK is flushed again.
    pub fn ek_public(&mut self) -> Result<Vec<u8>, ClientError> {
        let ek = self.create_ek()?;
        let r = self.ctx.read_public(ek).map_err(tpm("read EK public"));
        flush(&mut self.ctx, ek);
        tpm2b_public(r?.0)
    }

    /// Creates an attestation key under the EK.
    pub fn create_ak(&mut self, alg: AkAlgorithm) -> Result<AkBlob, ClientError> {
        let ek = self.create_ek()?;
        let (key_alg, scheme) = match alg {
            AkAlgorithm::RsaSsaSha256 => (
                AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                SignatureSchemeAlgorithm::RsaSsa,
            ),
            AkAlgorithm::EcdsaP256Sha256 => (
                AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                SignatureSchemeAlgorithm::EcDsa,
            ),
        };
        let r = ak::create_ak_2(
            &mut self.ctx,
            ek,
            HashingAlgorithm::Sha256,
            key_alg,
            scheme,
            None,
            None,
        )
        .map_err(tpm("create AK"));
        flush(&mut self.ctx, ek);
        let created = r?;
        let name =
            self.with_ak_inner(&created.out_public, created.out_private.clone(), |c, h| {
                c.read_public(h).map_err(tpm("read AK public"))
            })?;
        Ok(AkBlob {
            public: tpm2b_public(created.out_public)?,
            private: created.out_private.value().to_vec(),
            name: name.1.value().to_vec(),
            aik_cert: None,
        })
    }

    /// Loads the EK and the AK, runs `f`, flushes both.
    fn with_ak_inner<T>(
        &mut self,
        public: &Public,
        private: Private,
        f: impl FnOnce(&mut Context, KeyHandle) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let ek = self.create_ek()?;
        let loaded =
            ak::load_ak(&mut self.ctx, ek, None, private, public.clone()).map_err(tpm("load AK"));
        flush(&mut self.ctx, ek);
        let h = loaded?;
        let r = f(&mut self.ctx, h);
        flush(&mut self.ctx, h);
        r
    }

    fn ak_parts(blob: &AkBlob) -> Result<(Public, Private), ClientError> {
        let pb = PublicBuffer::unmarshall(&blob.public).map_err(tpm("parse AK public"))?;
        let public = Public::try_from(pb).map_err(tpm("parse AK public"))?;
        let private = Private::try_from(blob.private.clone()).map_err(tpm("parse AK private"))?;
        Ok((public, private))
    }

    /// TPM2_ActivateCredential: recovers the secret the service sealed to
    /// the EK for this AK's name.
    pub fn activate_credential(
        &mut self,
        blob: &AkBlob,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let (public, private) = Self::ak_parts(blob)?;
        // Inputs arrive as TPM2B structures; tss-esapi wants their contents.
        let id = IdObject::try_from(strip_tpm2b("credential_blob", credential_blob)?)
            .map_err(tpm("credential blob"))?;
        let secret = EncryptedSecret::try_from(strip_tpm2b("encrypted_secret", encrypted_secret)?)
            .map_err(tpm("encrypted secret"))?;
        let ak = {
            let ek = self.create_ek()?;
            let loaded =
                ak::load_ak(&mut self.ctx, ek, None, private, public).map_err(tpm("load AK"));
            match loaded {
                Ok(h) => (ek, h),
                Err(e) => {
                    flush(&mut self.ctx, ek);
                    return Err(e);
                }
            }
        };
        let (ek, ak_handle) = ak;
        let r = self.activate_inner(ek, ak_handle, id, secret);
        self.ctx.clear_sessions();
        flush(&mut self.ctx, ak_handle);
        flush(&mut self.ctx, ek);
        r
    }

    fn activate_inner(
        &mut self,
        ek: KeyHandle,
        ak_handle: KeyHandle,
        id: IdObject,
        secret: EncryptedSecret,
    ) -> Result<Vec<u8>, ClientError> {
        let (attrs, mask) = SessionAttributesBuilder::new().build();
        let hmac = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Hmac,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(tpm("start HMAC session"))?
            .ok_or_else(|| ClientError::Protocol("TPM returned no session".into()))?;
        let policy = match self.ctx.start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        ) {
            Ok(Some(p)) => p,
            Ok(None) => {
                flush_session(&mut self.ctx, hmac);
                return Err(ClientError::Protocol("TPM returned no session".into()));
            }
            Err(e) => {
                flush_session(&mut self.ctx, hmac);
                return Err(tpm("start policy session")(e));
            }
        };
        let r = (|| {
            self.ctx
                .tr_sess_set_attributes(hmac, attrs, mask)
                .map_err(tpm("session attributes"))?;
            self.ctx
                .tr_sess_set_attributes(policy, attrs, mask)
                .map_err(tpm("session attributes"))?;
            let ps = PolicySession::try_from(policy).map_err(tpm("policy session"))?;
            self.ctx
                .execute_with_session(Some(hmac), |c| {
                    c.policy_secret(
                        ps,
                        AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })
                .map_err(tpm("PolicySecret(endorsement)"))?;
            self.ctx.set_sessions((Some(hmac), Some(policy), None));
            let out = self
                .ctx
                .activate_credential(ak_handle, ek, id, secret)
                .map_err(tpm("ActivateCredential"));
            self.ctx.clear_sessions();
            out.map(|d| d.value().to_vec())
        })();
        flush_session(&mut self.ctx, hmac);
        flush_session(&mut self.ctx, policy);
        r
    }

    /// Quotes `pcrs` in `banks` with the AK, `qualifying_data` as extraData,
    /// then reads the quoted PCR values.
    pub fn quote(
        &mut self,
        blob: &AkBlob,
        qualifying_data: &[u8],
        pcrs: &[u32],
        banks: &[HashingAlgorithm],
    ) -> Result<QuoteEvidence, ClientError> {
        let slots = pcrs
            .iter()
            .map(|&p| {
                1u32.checked_shl(p)
                    .ok_or(())
                    .and_then(|bit| PcrSlot::try_from(bit).map_err(|_| ()))
                    .map_err(|_| ClientError::Protocol(format!("PCR {p} out of range")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = PcrSelectionListBuilder::new();
        for &b in banks {
            builder = builder.with_selection(b, &slots);
        }
        let selection = builder.build().map_err(tpm("PCR selection"))?;
        let data = Data::try_from(qualifying_data.to_vec()).map_err(tpm("qualifying data"))?;
        let (public, private) = Self::ak_parts(blob)?;
        let (attest, sig) = self.with_ak_inner(&public, private, |c, h| {
            c.execute_with_nullauth_session(|c| {
                c.quote(h, data, SignatureScheme::Null, selection.clone())
            })
            .map_err(tpm("Quote"))
        })?;
        let values = pcr::read_all(&mut self.ctx, selection).map_err(tpm("PCR read"))?;
        let mut out = Vec::new();
        for (alg, bank) in values {
            let id: u16 = tss_esapi::tss2_esys::TPMI_ALG_HASH::from(alg);
            for (slot, digest) in &bank {
                let index = u32::from(*slot).trailing_zeros();
                out.push((id, index, digest.value().to_vec()));
            }
        }
        Ok(QuoteEvidence {
            quote: attest.marshall().map_err(tpm("marshal TPMS_ATTEST"))?,
            signature: sig.marshall().map_err(tpm("marshal TPMT_SIGNATURE"))?,
            pcrs: out,
        })
    }

    /// Extends `pcr` with one digest per bank (for tests and simulators).
    pub fn pcr_extend(
        &mut self,
        pcr: u32,
        digests: &[(HashingAlgorithm, Vec<u8>)],
    ) -> Result<(), ClientError> {
        use tss_esapi::handles::PcrHandle;
        use tss_esapi::structures::DigestValues;
        let handle =
            PcrHandle::try_from(ObjectHandle::from(tss_esapi::tss2_esys::ESYS_TR_PCR0 + pcr))
                .map_err(tpm("PCR handle"))?;
        let mut v = DigestValues::new();
        for (alg, d) in digests {
            v.set(*alg, Digest::try_from(d.clone()).map_err(tpm("digest"))?);
        }
        self.ctx
            .execute_with_nullauth_session(|c| c.pcr_extend(handle, v))
            .map_err(tpm("PCR_Extend"))
    }
}

fn tpm2b_public(p: Public) -> Result<Vec<u8>, ClientError> {
    PublicBuffer::try_from(p)
        .and_then(|b| b.marshall())
        .map_err(tpm("marshal TPM2B_PUBLIC"))
}

fn strip_tpm2b(field: &str, b: &[u8]) -> Result<Vec<u8>, ClientError> {
    match b {
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
            Ok(rest.to_vec())
        }
        _ => Err(ClientError::Protocol(format!("{field} is not a TPM2B"))),
    }
}

fn send<E: std::fmt::Display>(
    transport: &mut impl FnMut(&Value) -> Result<Value, E>,
    payload: Value,
) -> Result<Value, ClientError> {
    transport(&json!({ "payload": payload })).map_err(|e| ClientError::Transport(e.to_string()))
}

/// Enrolls `blob`: sends `enroll` with the EK certificate and public area,
/// runs ActivateCredential, sends `activate`, stores the returned AK
/// certificate in `blob.aik_cert` (and returns it).
pub fn enroll<E: std::fmt::Display>(
    tpm: &mut TpmClient,
    blob: &mut AkBlob,
    mut transport: impl FnMut(&Value) -> Result<Value, E>,
) -> Result<Vec<u8>, ClientError> {
    let ek_cert = tpm.read_ek_certificate()?.ok_or_else(|| {
        ClientError::Protocol("the TPM has no EK certificate at NV 0x01c00002".into())
    })?;
    let ek_pub = tpm.ek_public()?;
    let reply = send(
        &mut transport,
        json!({
            "type": "enroll",
            "ek_cert": b64(&ek_cert),
            "ek_pub": b64(&ek_pub),
            "ak_pub": b64(&blob.public),
        }),
    )?;
    let cred = unb64("credential_blob", field(&reply, "credential_blob"))?;
    let secret = unb64("encrypted_secret", field(&reply, "encrypted_secret"))?;
    let ctx = field(&reply, "service_context").clone();
    let recovered = tpm.activate_credential(blob, &cred, &secret)?;
    let reply = send(
        &mut transport,
        json!({ "type": "activate", "secret": b64(&recovered), "service_context": ctx }),
    )?;
    let cert = unb64("aik_cert", field(&reply, "aik_cert"))?;
    blob.aik_cert = Some(cert.clone());
    Ok(cert)
}

/// Builds the `request` payload for a challenge (exposed so tests and
/// tools can alter evidence before sending).
pub fn build_request(
    tpm: &mut TpmClient,
    blob: &AkBlob,
    challenge: &[u8],
    service_context: &Value,
    options: &AttestOptions,
) -> Result<Value, ClientError> {
    let log = match &options.event_log {
        Some(l) => l.clone(),
        None => std::fs::read(Path::new(DEFAULT_EVENT_LOG)).map_err(|source| ClientError::Io {
            path: DEFAULT_EVENT_LOG.into(),
            source,
        })?,
    };
    let q = tpm.quote(blob, challenge, &options.pcrs, &options.banks)?;
    let mut banks: Vec<(u16, Vec<Value>)> = Vec::new();
    for (alg, index, value) in &q.pcrs {
        let entry = json!({ "index": index, "digest": b64(value) });
        match banks.iter_mut().find(|(a, _)| a == alg) {
            Some((_, v)) => v.push(entry),
            None => banks.push((*alg, vec![entry])),
        }
    }
    let pcrs: Vec<Value> = banks
        .into_iter()
        .map(|(a, values)| json!({ "algorithm": a, "values": values }))
        .collect();
    let mut current = json!({
        "logs": [{ "type": "TCG", "log": b64(&log) }],
        "aik_pub": b64(&blob.public),
        "pcrs": pcrs,
        "quote": b64(&q.quote),
        "signature": b64(&q.signature),
    });
    if let (Some(c), Some(obj)) = (&blob.aik_cert, current.as_object_mut()) {
        obj.insert("aik_cert".into(), json!(b64(c)));
    }
    Ok(json!({
        "type": "request",
        "service_context": service_context,
        "tpm_att_data": { "current_attestation": current },
    }))
}

/// Runs one attestation and returns the report token (JWT).
pub fn attest<E: std::fmt::Display>(
    tpm: &mut TpmClient,
    blob: &AkBlob,
    options: &AttestOptions,
    mut transport: impl FnMut(&Value) -> Result<Value, E>,
) -> Result<String, ClientError> {
    let init = send(&mut transport, json!({ "type": "aikcert" }))?;
    let challenge = unb64("challenge", field(&init, "challenge"))?;
    let request = build_request(
        tpm,
        blob,
        &challenge,
        field(&init, "service_context"),
        options,
    )?;
    let reply = send(&mut transport, request)?;
    field(&reply, "report")
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClientError::Protocol("final reply has no report".into()))
}
