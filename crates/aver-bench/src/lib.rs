//! Fixtures and baselines shared by Aver's criterion benches.
//!
//! Every bench group measures a **baseline** next to the code under test, in
//! the same process and run, so `BENCHMARKS.md` can state ratios rather than
//! machine-dependent absolute times. Baselines are named `baseline_*`; the
//! `bench-report` binary divides every other result of a group by it.
//!
//! Inputs are real vectors from `AVER_VECTORS` (default
//! `<repo>/../shared/vectors`) where possible. When the SGX vectors are
//! absent the SGX fixture falls back to a quote from `aver-sim`, says so on
//! stderr, and the benchmark ids carry `simulated-quote` instead of
//! `azure-sdk-quote`. Nothing here is random except that fallback's keys:
//! every bench computes the same bytes on every run.
// Benchmark fixtures on fixed inputs (the shared vectors, a built-in key):
// a failure is a broken fixture and must stop the bench loudly.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

/// The allocator `aver` runs with (`crates/aver/src/main.rs`), so that
/// the benches and tools linking this library measure what the service
/// does: under glibc's malloc the allocation-heavy stages (event-log
/// parsing, policy evaluation) cost up to twice what they cost in the
/// service, while the floors, which hardly allocate, do not change.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use aver_attestation::dcap::{DcapVerifier, TrustAnchors};
use aver_attestation::evidence::sgx::{self, SGX_ENCLAVE, SgxEvidenceKind};
use aver_attestation::{
    ActivePolicy, AttestRequest, PolicyChoice, TypedData, VerificationTime, Verifiers,
    parse_rfc3339, tail,
};
use aver_policy::{Claim, Policy};
use aver_token::SigningKey;
use aver_tpm::quote::AkPublicKey;
use aver_tpm::structures::Signature;
use aver_tpm::{HashAlg, PcrValues};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde_json::{Map, Value, json};

/// The pinned verification time of every SGX bench (the Azure SDK quote's
/// PCK leaf is valid 2021-04-21 .. 2028-04-21).
pub const SGX_TIME: &str = "2024-01-01T00:00:00Z";

/// Issuer of the bench tokens (a name that resolves nowhere).
pub const TOKEN_ISSUER: &str = "https://bench.aver.invalid";

/// The TPM 1.2 JmesPath policy evaluated on GCP event-log claims: MAA's
/// documented Secure Boot / HVCI / malicious-driver sample.
pub const TPM_POLICY_VECTOR: &str =
    "maa/policies/docs-tpm-attestation-concepts_secureboot-hvci-malicious-v1.2.txt";

/// The GCP Shielded VM (Windows) vectors: event log and a TPM2 quote.
pub const GCP: &str = "tpm/go-attestation-windows-gcp-e2e";

/// The keylime `mb_log.bin` (101 events, SHA-1 and SHA-256 banks).
pub const KEYLIME_MB_LOG: &str = "tpm/keylime-eventlogs/mb_log.bin";

/// Directory of the shared vectors: `AVER_VECTORS`, else
/// `<repo>/../shared/vectors`.
pub fn vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AVER_VECTORS") {
        return PathBuf::from(dir);
    }
    // crates/aver-bench -> repository root -> ../shared/vectors
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

/// Reads a vector, or `None` (with a note on stderr) when it is absent.
pub fn read_vector(relative: &str) -> Option<Vec<u8>> {
    let path = vectors_dir().join(relative);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            eprintln!("aver-bench: vector {} unavailable: {e}", path.display());
            None
        }
    }
}

/// Reads a vector the bench cannot do without; panics with the path.
pub fn require_vector(relative: &str) -> Vec<u8> {
    read_vector(relative).unwrap_or_else(|| {
        panic!(
            "aver-bench needs {} (set AVER_VECTORS to the shared vectors directory)",
            vectors_dir().join(relative).display()
        )
    })
}

/// SHA-256 with aws-lc-rs: the hashing baseline.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// An SGX quote, its runtime data and a verifier that accepts it.
pub struct SgxFixture {
    pub quote: Vec<u8>,
    pub runtime_data: Vec<u8>,
    pub verifiers: Verifiers,
    pub time: VerificationTime,
    /// `azure-sdk-quote` (real, Intel-rooted) or `simulated-quote`.
    pub source: &'static str,
}

impl SgxFixture {
    /// The real Azure SDK quote with `TrustAnchors::intel()`, or a quote
    /// from `aver-sim` under the simulator root when the vectors are absent.
    pub fn load() -> SgxFixture {
        let time = parse_rfc3339(SGX_TIME).expect("pinned time parses"); // ok: benchmark fixture on fixed inputs
        let real =
            read_vector("azure-sdk/sgx_quote.bin").zip(read_vector("azure-sdk/runtime_data.bin"));
        if let Some((quote, runtime_data)) = real {
            return SgxFixture {
                quote,
                runtime_data,
                verifiers: Verifiers::production(),
                time,
                source: "azure-sdk-quote",
            };
        }
        eprintln!(
            "aver-bench: SGX vectors not found under {}: benchmarking a SIMULATED quote \
             (aver-sim, simulator root) instead of the real Azure SDK quote",
            vectors_dir().display()
        );
        let runtime_data =
            br#"{"jwk":{"kty":"EC","crv":"P-256","x":"aver-bench","y":"aver-bench"}}"#.to_vec();
        let platform = aver_sim::SimPlatform::generate().expect("simulated platform"); // ok: benchmark fixture on fixed inputs
        let identity = aver_sim::EnclaveIdentity {
            report_data: aver_sim::report_data_for(&runtime_data),
            ..Default::default()
        };
        let quote = platform.quote(&identity).expect("simulated quote"); // ok: benchmark fixture on fixed inputs
        let mut anchors = TrustAnchors::empty();
        anchors
            .add_pem(platform.root_pem().as_bytes(), "aver-sim root")
            .expect("simulator root"); // ok: benchmark fixture on fixed inputs
        SgxFixture {
            quote,
            runtime_data,
            verifiers: Verifiers::new(DcapVerifier::new(anchors)),
            time,
            source: "simulated-quote",
        }
    }

    /// The request `/attest/SgxEnclave` builds for this quote with binary
    /// runtime data (`dataType: Binary`), no nonce.
    pub fn request(&self) -> AttestRequest {
        AttestRequest {
            evidence: self.quote.clone(),
            runtime_data: Some(TypedData {
                bytes: self.runtime_data.clone(),
                json: None,
            }),
            init_time_data: None,
            nonce: None,
            tcb_baseline: Default::default(),
            ccel_event_log: None,
        }
    }

    /// The `x-ms-*` claims the service asserts for this quote.
    pub fn service_claims(&self) -> Map<String, Value> {
        let request = self.request();
        let verified = sgx::verify(SgxEvidenceKind::Quote, &self.verifiers, &request, self.time)
            .expect("fixture quote verifies"); // ok: benchmark fixture on fixed inputs
        sgx::claims(&verified, &request)
    }

    /// The policy's incoming claims, as `aver_attestation::policy::evaluate`
    /// builds them.
    pub fn incoming_claims(&self) -> Vec<Claim> {
        aver_policy::with_legacy_aliases(&aver_policy::claims_from_json(&self.service_claims()))
    }

    /// The ECDSA baseline taken from this quote: the attestation key's
    /// signature over header + report body (one of the three ECDSA-P256
    /// verifies a full quote verification makes).
    pub fn ecdsa_baseline(&self) -> EcdsaBaseline {
        EcdsaBaseline::from_quote(&self.quote)
    }
}

/// One raw ECDSA-P256-SHA256 verification with aws-lc-rs.
pub struct EcdsaBaseline {
    pub public_key: [u8; 65],
    pub message: Vec<u8>,
    pub signature: [u8; 64],
}

impl EcdsaBaseline {
    /// The quote's own signature: its attestation key over header and body.
    pub fn from_quote(quote: &[u8]) -> EcdsaBaseline {
        let quote = aver_attestation::dcap::parse_quote(quote).expect("fixture quote parses"); // ok: benchmark fixture on fixed inputs
        let mut public_key = [0u8; 65];
        public_key[0] = 0x04;
        public_key[1..].copy_from_slice(quote.attestation_key);
        EcdsaBaseline {
            public_key,
            message: quote.signed_region.to_vec(),
            signature: *quote.signature,
        }
    }

    /// True when the signature verifies (it always does for the fixture).
    pub fn verify(&self) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public_key[..])
            .verify(&self.message, &self.signature)
            .is_ok()
    }
}

/// The default SGX policy in force on a new provider (Azure's shared
/// default), as the service parses it.
pub fn sgx_default_policy() -> ActivePolicy {
    ActivePolicy::from_text(sgx::DEFAULT_SGX_POLICY, None).expect("default SGX policy parses") // ok: benchmark fixture on fixed inputs
}

/// The fixed bench token key (see `data/README.md`).
pub fn token_key() -> SigningKey {
    SigningKey::from_parts(
        include_bytes!("../data/token-key.pk8.der").to_vec(),
        include_bytes!("../data/token-cert.der").to_vec(),
    )
    .expect("bench token key loads") // ok: benchmark fixture on fixed inputs
}

/// The same key as a raw aws-lc-rs RSA key pair, for the signing baseline.
pub fn rsa_key_pair() -> aws_lc_rs::signature::RsaKeyPair {
    aws_lc_rs::signature::RsaKeyPair::from_pkcs8(include_bytes!("../data/token-key.pk8.der"))
        .expect("bench RSA key loads") // ok: benchmark fixture on fixed inputs
}

/// One raw RSA-2048 PKCS#1 v1.5 SHA-256 signature (deterministic).
pub fn rsa_sign(key: &aws_lc_rs::signature::RsaKeyPair, message: &[u8]) -> Vec<u8> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &rng,
        message,
        &mut signature,
    )
    .expect("RSA signing"); // ok: benchmark fixture on fixed inputs
    signature
}

/// The JWKS `/certs` publishes for `key`.
pub fn jwks(key: &SigningKey) -> Value {
    json!({ "keys": [key.jwk()] })
}

/// `jku` of the bench tokens.
pub fn jku() -> String {
    format!("{TOKEN_ISSUER}/certs")
}

/// Adds `iss`, `iat`, `nbf`, `exp` and `jti` like `tail::stamp`, with a
/// fixed `jti` so that the signed bytes are the same on every run
/// (`tail::stamp` draws `jti` from the system RNG: 32 bytes, a
/// negligible and constant cost next to the signature).
pub fn stamp_fixed(claims: &mut Map<String, Value>, now: u64) {
    claims.insert("iss".into(), TOKEN_ISSUER.into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), (now + tail::TOKEN_LIFETIME_SECS).into());
    claims.insert("jti".into(), hex::encode(sha256(&now.to_be_bytes())).into());
}

/// A realistic token claim set: what the service issues for the fixture
/// quote under the default SGX policy (service claims, issued claims,
/// `x-ms-policy`, policy hash), stamped at the pinned time.
pub fn sgx_token_claims(fixture: &SgxFixture) -> Map<String, Value> {
    let active = sgx_default_policy();
    let mut claims = sgx_claims(fixture, &active, &fixture.request())
        .expect("fixture attests under the default policy"); // ok: benchmark fixture on fixed inputs
    stamp_fixed(&mut claims, fixture.time.unix_seconds());
    claims
}

/// The service's path for the fixture without the signature: verification,
/// claims, the default policy, the token's claims (unstamped).
pub fn sgx_claims(
    fixture: &SgxFixture,
    active: &ActivePolicy,
    request: &AttestRequest,
) -> Result<Map<String, Value>, aver_attestation::AttestError> {
    let verified =
        aver_attestation::verify(&SGX_ENCLAVE, &fixture.verifiers, request, fixture.time)?;
    let (claims, _) = tail::claims(
        &SGX_ENCLAVE,
        PolicyChoice::Active(active),
        verified.claims,
        request.nonce.as_deref(),
        &aver_policy::Budget::default(),
    )?;
    Ok(claims)
}

/// The GCP Shielded VM TPM2 quote: TPMS_ATTEST bytes, signature, AK and
/// the PCR values it covers (SHA-1 PCRs 0..23, RSASSA-SHA1, empty nonce).
pub struct GcpQuote {
    pub attest: Vec<u8>,
    pub signature: Signature,
    pub ak: AkPublicKey,
    pub pcrs: PcrValues,
}

impl GcpQuote {
    pub fn load() -> GcpQuote {
        let attest = require_vector(&format!("{GCP}/quote.tpms_attest"));
        let signature =
            aver_tpm::parse_signature(&require_vector(&format!("{GCP}/quote.tpmt_signature")))
                .expect("GCP quote signature parses"); // ok: benchmark fixture on fixed inputs
        let public = aver_tpm::parse_public(&require_vector(&format!("{GCP}/ak.tpmt_public")))
            .expect("GCP AK parses"); // ok: benchmark fixture on fixed inputs
        let pcrs_json: Value =
            serde_json::from_slice(&require_vector(&format!("{GCP}/pcrs-from-tpm.json")))
                .expect("GCP PCR JSON"); // ok: benchmark fixture on fixed inputs
        GcpQuote {
            attest,
            signature,
            ak: AkPublicKey::from_public(&public).expect("GCP AK is usable"), // ok: benchmark fixture on fixed inputs
            pcrs: pcrs_from_json(&pcrs_json),
        }
    }
}

/// The `tpm_attest` bench's work on its fixed inputs, stage by stage (the
/// bench and `tpm-stages` run the same closures): the GCP quote, the
/// keylime `mb_log.bin`, MAA's Secure Boot / HVCI / malicious-driver sample
/// and the GCP event-log claims it is evaluated on, and the floor.
pub struct TpmAttest {
    log_bytes: Vec<u8>,
    quote: GcpQuote,
    policy: Policy,
    incoming: Vec<Claim>,
    pub floor: TpmFloor,
}

impl TpmAttest {
    pub fn load() -> TpmAttest {
        let log_bytes = require_vector(KEYLIME_MB_LOG);
        let log = aver_tpm::parse_event_log(&log_bytes).expect("log parses"); // ok: benchmark fixture on fixed inputs
        let quote = GcpQuote::load();
        let text = String::from_utf8(require_vector(TPM_POLICY_VECTOR)).expect("utf-8"); // ok: benchmark fixture on fixed inputs
        let policy = parse_policy(&text);
        let incoming = tpm_incoming_claims(&require_vector(&format!("{GCP}/eventlog.bin")));
        let floor = TpmFloor::new(&quote, &log);
        TpmAttest {
            log_bytes,
            quote,
            policy,
            incoming,
            floor,
        }
    }

    /// `verify_quote` on the GCP quote.
    pub fn quote(&self) -> bool {
        let q = &self.quote;
        aver_tpm::verify_quote(
            std::hint::black_box(&q.attest),
            &q.signature,
            &q.ak,
            &[],
            &q.pcrs,
        )
        .is_ok()
    }

    /// `parse_event_log` + `replay` of `mb_log.bin`.
    pub fn parse_and_replay(&self) -> bool {
        aver_tpm::parse_event_log(std::hint::black_box(&self.log_bytes))
            .ok()
            .and_then(|l| aver_tpm::replay(&l).ok())
            .is_some()
    }

    /// The sample policy on the GCP claims; true when it permits.
    pub fn policy(&self) -> bool {
        self.policy
            .evaluate(std::hint::black_box(&self.incoming))
            .is_ok_and(|e| e.decision == aver_policy::Decision::Permit)
    }

    /// Quote + replay + policy: one TPM attestation's verification work.
    pub fn all(&self) -> bool {
        self.quote() && self.parse_and_replay() && self.policy()
    }
}

/// The floor of the `tpm_attest` bench's work (and of `tpm-stages`): what its cryptography costs alone.
pub struct TpmFloor {
    n: Vec<u8>,
    e: Vec<u8>,
    attest: Vec<u8>,
    signature: Vec<u8>,
    /// The quoted PCR values, concatenated (SHA-1 bank, PCRs 0..23).
    pcrs: Vec<u8>,
    /// One (algorithm, event digest) per extend the replay performs.
    extends: Vec<(&'static aws_lc_rs::digest::Algorithm, Vec<u8>)>,
    /// The same extends, for [`TpmFloor::run_tight`].
    tight_extends: Vec<(HashAlg, Vec<u8>)>,
}

fn aws_alg(alg: HashAlg) -> &'static aws_lc_rs::digest::Algorithm {
    match alg {
        HashAlg::Sha1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => &aws_lc_rs::digest::SHA256,
        HashAlg::Sha384 => &aws_lc_rs::digest::SHA384,
        HashAlg::Sha512 => &aws_lc_rs::digest::SHA512,
    }
}

impl TpmFloor {
    pub fn new(q: &GcpQuote, log: &aver_tpm::EventLog) -> TpmFloor {
        let AkPublicKey::Rsa { n, e } = &q.ak else {
            panic!("the GCP AK is RSA")
        };
        let Signature::RsaSsa { sig: signature, .. } = &q.signature else {
            panic!("the GCP quote is RSASSA")
        };
        let sha1 = q.pcrs.get(&HashAlg::Sha1).expect("SHA-1 PCRs"); // ok: benchmark fixture on fixed inputs
        let pcrs: Vec<u8> = (0..24u32)
            .flat_map(|i| sha1.get(&i).expect("PCR 0..23").clone()) // ok: benchmark fixture on fixed inputs
            .collect();
        let banks = aver_tpm::replay(log).expect("replays").banks; // ok: benchmark fixture on fixed inputs
        let mut extends = Vec::new();
        let mut tight_extends = Vec::new();
        for ev in &log.events {
            if ev.event_type == aver_tpm::eventlog::types::EV_NO_ACTION {
                continue;
            }
            for alg in banks.keys() {
                let digest = ev.digest(*alg).expect("digest").to_vec(); // ok: benchmark fixture on fixed inputs
                extends.push((aws_alg(*alg), digest.clone()));
                tight_extends.push((*alg, digest));
            }
        }
        TpmFloor {
            n: n.clone(),
            e: e.clone(),
            attest: q.attest.clone(),
            signature: signature.clone(),
            pcrs,
            extends,
            tight_extends,
        }
    }

    /// The floor with the cheapest hashing in the tree: the same RSA check
    /// and PCR digest as [`TpmFloor::run`], and every extend through
    /// `aver_tpm`'s own `HashAlg::extend_in_place` (the `sha1`/`sha2`
    /// crates with the CPU's SHA extensions, into a stack buffer), which
    /// costs less per extend than aws-lc-rs's `digest::Context`. A ratio
    /// to this floor is the stricter one: the replay's hashing cannot beat it.
    pub fn run_tight(&self) -> bool {
        let ok = self.verify_ak_signature();
        let pcr_digest = HashAlg::Sha1.digest_parts(&[&self.pcrs]);
        let mut acc = [0u8; 64];
        for (alg, d) in &self.tight_extends {
            if let Some(value) = acc.get_mut(..alg.size()) {
                alg.extend_in_place(value, d);
            }
        }
        ok && pcr_digest.as_ref().len() == 20 && acc[0] != 0xff
    }

    /// The AK's RSA-2048 check of the quote, from the key's components.
    fn verify_ak_signature(&self) -> bool {
        aws_lc_rs::signature::RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            &self.attest,
            &self.signature,
        )
        .is_ok()
    }

    pub fn run(&self) -> bool {
        let ok = self.verify_ak_signature();
        let pcr_digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.pcrs);
        let mut acc = [0u8; 64];
        for (alg, d) in &self.extends {
            let mut ctx = aws_lc_rs::digest::Context::new(alg);
            ctx.update(&acc[..alg.output_len()]);
            ctx.update(d);
            let out = ctx.finish();
            acc[..out.as_ref().len()].copy_from_slice(out.as_ref());
        }
        ok && pcr_digest.as_ref().len() == 20 && acc[0] != 0xff
    }
}

/// `{"sha1": {"0": "hex", ...}, "sha256": ...}` → [`PcrValues`] (keys
/// starting with `_` are notes).
pub fn pcrs_from_json(v: &Value) -> PcrValues {
    let mut out = PcrValues::new();
    let banks = v.as_object().expect("PCR object"); // ok: fixed fixture
    for (bank, values) in banks {
        let alg = match bank.as_str() {
            "sha1" => HashAlg::Sha1,
            "sha256" => HashAlg::Sha256,
            "sha384" => HashAlg::Sha384,
            "sha512" => HashAlg::Sha512,
            _ => continue,
        };
        let values = values.as_object().expect("bank object"); // ok: fixed fixture
        for (index, hex_value) in values {
            out.entry(alg).or_default().insert(
                index.parse().expect("PCR index"), // ok: benchmark fixture on fixed inputs
                hex::decode(hex_value.as_str().expect("hex string")).expect("hex"), // ok: benchmark fixture on fixed inputs
            );
        }
    }
    out
}

/// The incoming claims of a TPM attestation from an event log, as the
/// service builds them (`x-ms-*`, `pcrs`, `events`, Secure Boot, ...),
/// taking the replayed PCRs as the quoted ones.
pub fn tpm_incoming_claims(log_bytes: &[u8]) -> Vec<Claim> {
    let log = aver_tpm::parse_event_log(log_bytes).expect("event log parses"); // ok: benchmark fixture on fixed inputs
    let replayed = aver_tpm::replay(&log).expect("event log replays"); // ok: benchmark fixture on fixed inputs
    let mut claims = Map::new();
    claims.insert("x-ms-attestation-type".into(), json!("tpm"));
    claims.insert("x-ms-ver".into(), json!("1.0"));
    claims.insert("tpmVersion".into(), json!(2));
    let built = aver_tpm::claims::build_claims(&log, Some(&replayed), &replayed.banks);
    let built = serde_json::to_value(&built).expect("claims serialize"); // ok: fixed fixture
    if let Value::Object(m) = built {
        claims.extend(m);
    }
    aver_policy::claims_from_json(&claims)
}

/// Parses a policy the bench cannot do without; panics with the error.
pub fn parse_policy(text: &str) -> Policy {
    Policy::parse(text).unwrap_or_else(|e| panic!("policy does not parse: {e}"))
}

/// The JSON body an SDK sends to `POST /attest/SgxEnclave` for the fixture:
/// base64url quote and binary runtime data.
pub fn attest_body(fixture: &SgxFixture) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "quote": aver_token::b64::encode_url(&fixture.quote),
        "runtimeData": {
            "data": aver_token::b64::encode_url(&fixture.runtime_data),
            "dataType": "Binary",
        },
    }))
    .expect("body serializes") // ok: benchmark fixture on fixed inputs
}
