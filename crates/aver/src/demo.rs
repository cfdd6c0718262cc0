//! `aver demo`: the whole Azure Attestation workflow in one command.
//!
//! 1. A (simulated) enclave publishes runtime data (its public key) and
//!    produces a quote whose report_data holds SHA-256 of that data.
//! 2. The client sends quote and runtime data to the service URI.
//! 3. The service verifies the evidence, evaluates its policy and returns a
//!    signed attestation token.
//! 4. The relying party fetches the OpenID metadata and JWKS, verifies the
//!    token, checks the enclave identity and that the runtime data is the
//!    key it was given, and decides.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use aver_client::{AttestOptions, Client, DataType, SgxEndpoint};
use aver_server::{Config, Service};
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use clap::Args;
use serde_json::{Value, json};

use crate::files;

#[derive(Args)]
pub struct DemoArgs {
    /// Use a running service instead of an in-process one. It must trust
    /// the simulator root: `aver sim root > sim-root.pem` and
    /// `aver serve --trust-root sim-root.pem`.
    #[arg(long, env = "AVER_URL")]
    url: Option<String>,
    /// CA certificate (PEM) for the running service's TLS certificate.
    #[arg(long, env = "AVER_CA")]
    ca: Option<PathBuf>,
    /// Walk the TPM workflow instead, against a software TPM (swtpm) and an
    /// in-process service: boot log and PCRs, AK enrollment, quote, token.
    #[arg(long, conflicts_with_all = ["url", "ca"])]
    tpm: bool,
}

const MRENCLAVE: [u8; 32] = [0x4a; 32];
const MRSIGNER: [u8; 32] = [0x5b; 32];

fn step(n: u32, title: &str) {
    outln!("\n== {n}. {title}");
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.tpm {
        #[cfg(feature = "tpm-client")]
        return crate::demo_tpm::run().await;
        #[cfg(not(feature = "tpm-client"))]
        bail!("aver demo --tpm needs the tpm-client feature (this build has no TPM client)");
    }
    // An in-process service unless a URL was given.
    let mut _dir = None;
    let mut service = None;
    let (url, ca) = match &args.url {
        Some(url) => (
            url.clone(),
            args.ca.as_deref().map(files::read).transpose()?,
        ),
        None => {
            let dir = tempfile::tempdir().context("creating a temporary data directory")?;
            let root = dir.path().join("sim-root.pem");
            std::fs::write(&root, aver_sim::root_certificate_pem()?)?;
            let mut config = Config::with_defaults();
            config.listen = "127.0.0.1:0".parse()?;
            config.data_dir = dir.path().to_path_buf();
            config.extra_sgx_roots = vec![root];
            let started = Service::start(&config).await?;
            outln!(
                "Started an in-process Aver service at {} (data in {}, trusting the simulator root)",
                started.issuer,
                dir.path().display()
            );
            let ca = std::fs::read(&started.tls.cert)?;
            let url = started.issuer.clone();
            service = Some(started);
            _dir = Some(dir);
            (url, Some(ca))
        }
    };
    let client = Client::new(&url, ca.as_deref())?;

    step(1, "Enclave: publish runtime data and produce a quote");
    let enclave_key = aver_token::SigningKey::generate("aver-demo-enclave")?;
    let jwk = enclave_key.jwk();
    let runtime =
        json!({ "jwk": { "kty": at(&jwk, "kty"), "n": at(&jwk, "n"), "e": at(&jwk, "e") } });
    let runtime_bytes = serde_json::to_vec(&runtime)?;
    let identity = EnclaveIdentity {
        mr_enclave: MRENCLAVE,
        mr_signer: MRSIGNER,
        product_id: 1,
        svn: 2,
        debug: false,
        report_data: report_data_for(&runtime_bytes),
    };
    let quote = SimPlatform::generate()?.quote(&identity)?;
    outln!(
        "  runtime data: the enclave's RSA public key as a JWK ({} bytes)",
        runtime_bytes.len()
    );
    outln!(
        "  report_data[0..32] = SHA-256(runtime data) = {}",
        hex::encode(&identity.report_data[..32])
    );
    outln!(
        "  quote: {} bytes, DCAP v3, signed under the simulator's test PKI",
        quote.len()
    );

    step(2, "Client: send the evidence to the attestation service");
    outln!(
        "  POST {url}/attest/SgxEnclave?api-version={}",
        aver_client::API_VERSION
    );
    let options = AttestOptions {
        runtime_data: Some((runtime_bytes.clone(), DataType::Json)),
        nonce: Some("aver-demo".into()),
        ..AttestOptions::default()
    };
    let token = match client
        .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
        .await
    {
        Ok(token) => token,
        Err(e) if e.code() == Some("UntrustedRoot") => bail!(
            "the service does not trust the simulator root; start it with \
             `aver sim root > sim-root.pem && aver serve --trust-root sim-root.pem` ({e})"
        ),
        Err(e) => return Err(e.into()),
    };

    step(
        3,
        "Service: verified the quote, evaluated its policy, signed a token",
    );
    let jws = aver_token::CompactJws::parse(&token)?;
    outln!("  token header: {}", Value::Object(jws.header.clone()));
    outln!(
        "  token: {}...{} ({} bytes)",
        &token[..40.min(token.len())],
        &token[token.len().saturating_sub(20)..],
        token.len()
    );

    step(4, "Relying party: fetch metadata and keys, verify, decide");
    let metadata = client
        .get_json(&format!("{url}/.well-known/openid-configuration"))
        .await?;
    outln!(
        "  GET {url}/.well-known/openid-configuration -> issuer {}, jwks_uri {}",
        at(&metadata, "issuer"),
        at(&metadata, "jwks_uri")
    );
    let jwks = client
        .get_json(at(&metadata, "jwks_uri").as_str().unwrap_or_default())
        .await?;
    let kids: Vec<&str> = at(&jwks, "keys")
        .as_array()
        .map(|keys| keys.iter().filter_map(|k| k["kid"].as_str()).collect())
        .unwrap_or_default();
    outln!("  GET {} -> keys {kids:?}", at(&metadata, "jwks_uri"));
    let claims = client
        .verify_token(&token, &url, aver_client::unix_now(), 60)
        .await?;
    outln!(
        "  signature (kid {}), exp/nbf and issuer: verified",
        jws.header.get("kid").unwrap_or(&Value::Null)
    );

    let mut reasons = Vec::new();
    if claims
        .get("x-ms-sgx-mrenclave")
        .unwrap_or(&Value::Null)
        .clone()
        != hex::encode(MRENCLAVE)
    {
        reasons.push("unexpected MRENCLAVE");
    }
    if claims
        .get("x-ms-sgx-mrsigner")
        .unwrap_or(&Value::Null)
        .clone()
        != hex::encode(MRSIGNER)
    {
        reasons.push("unexpected MRSIGNER");
    }
    if claims
        .get("x-ms-sgx-is-debuggable")
        .unwrap_or(&Value::Null)
        .clone()
        != false
    {
        reasons.push("enclave is debuggable");
    }
    if claims.get("x-ms-runtime").unwrap_or(&Value::Null).clone() != runtime {
        reasons.push("runtime data is not the key we were given");
    }
    if claims.get("nonce").unwrap_or(&Value::Null).clone() != "aver-demo" {
        reasons.push("nonce mismatch");
    }
    outln!("  claims:");
    files::print_json(&Value::Object(claims.clone()));
    let trusted = reasons.is_empty();
    if trusted {
        outln!(
            "\nDecision: TRUST the enclave (MRENCLAVE {}, MRSIGNER {}, not debuggable); \
             its public key in x-ms-runtime can now be used to send it secrets.",
            &hex::encode(MRENCLAVE)[..16],
            &hex::encode(MRSIGNER)[..16]
        );
    } else {
        outln!(
            "\nDecision: DO NOT TRUST the enclave: {}",
            reasons.join(", ")
        );
    }
    if let Some(service) = service {
        service.shutdown().await;
    }
    Ok(if trusted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `v[name]` without the `Index` impl (the workspace lints deny indexing):
/// `null` when absent.
fn at<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get(name).unwrap_or(&Value::Null)
}
