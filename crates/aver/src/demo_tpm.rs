//! `aver demo --tpm`: the TPM half of the workflow, step by step, against a
//! software TPM (swtpm) and an in-process service.
//!
//! 1. A TPM is manufactured with `swtpm_setup` (an EK certificate from a
//!    private CA, whose roots the service is told to trust) and started.
//! 2. The platform "boots": each event of a TCG event log is measured into
//!    the TPM's PCRs (tpm2-tools' `tpm2_pcrextend`) and logged.
//! 3. The operator sets a TPM attestation policy.
//! 4. The client creates an attestation key, enrolls it by credential
//!    activation, and sends a quote with the event log (`aver attest tpm`'s
//!    code).
//! 5. The service replays the log against the quoted PCRs, evaluates the
//!    policy and issues a token; the relying party verifies it through
//!    OpenID metadata and JWKS and reads the platform's claims.
//!
//! The software TPM comes from `aver-testkit`'s swtpm harness, the one the
//! TPM tests use. When swtpm or its tools are missing, the demo says what
//! to install and exits without failing.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use aver_client::{AdminClient, Client};
use aver_server::{Config, Service};
use aver_testkit::swtpm::{self, Swtpm};
use serde_json::Value;

use crate::tpm_attest::{AkAlg, AttestOutcome, AttestTpmArgs, Bank};

const POLICY: &str = r#"version=1.0;
authorizationrules {
    => permit();
};
issuancerules {
    [type=="aikValidated", value==true] &&
    [type=="secureBootEnabled", value==true] => issue(type="PlatformAttested", value=true);
};
"#;

fn step(n: u32, title: &str) {
    outln!("\n== {n}. {title}");
}

/// The binaries and library the software TPM needs, or what to install.
fn missing_tools() -> Option<String> {
    let on_path = |bin: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
            .unwrap_or(false)
    };
    for bin in [
        "swtpm",
        "swtpm_setup",
        "swtpm_localca",
        swtpm::TPM2_PCREXTEND,
    ] {
        if !on_path(bin) {
            return Some(format!("{bin} is not installed"));
        }
    }
    None
}

pub async fn run() -> Result<ExitCode> {
    if let Some(why) = missing_tools() {
        eprintln!(
            "aver demo --tpm: SKIPPED: {why}. It needs a software TPM: \
             apt-get install swtpm swtpm-tools tpm2-tools libtss2-dev"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let base = dir.path().to_path_buf();

    step(1, "Platform: manufacture and start a software TPM");
    let (identity, tpm) = tokio::task::spawn_blocking(move || {
        let identity = swtpm::identity(&base, "demo");
        let tpm = Swtpm::start(identity);
        (identity, tpm)
    })
    .await
    .context("starting swtpm")?;
    outln!(
        "swtpm_setup made an RSA EK and its certificate (issued by a private CA; roots in {})",
        identity.ek_roots.display()
    );
    outln!("swtpm is listening: TCTI {}", tpm.tcti());

    step(
        2,
        "Platform: boot, measuring each event into the PCRs and the log",
    );
    let (tpm, log) = tokio::task::spawn_blocking(move || {
        let log = swtpm::standard_boot(&mut tpm.extender());
        (tpm, log)
    })
    .await
    .context("measuring the boot")?;
    let log_path = dir.path().join("eventlog.bin");
    std::fs::write(&log_path, log.bytes())?;
    outln!(
        "a TCG crypto-agile event log (SHA-1 and SHA-256), {} bytes, with Secure Boot on: {}",
        log.bytes().len(),
        log_path.display()
    );

    step(3, "Operator: start the service and set a TPM policy");
    let mut config = Config::with_defaults();
    config.listen = "127.0.0.1:0".parse()?;
    config.data_dir = dir.path().join("aver-data");
    config.tpm_ek_roots = Some(identity.ek_roots.clone());
    let service = Service::start(&config).await?;
    let ca = std::fs::read(&service.tls.cert)?;
    outln!(
        "Aver at {} trusts the TPM maker's EK roots (--tpm-ek-roots)",
        service.issuer
    );
    let admin_key = service
        .new_admin_key
        .clone()
        .context("the in-process service made no admin key")?;
    let client = Client::new(&service.issuer, Some(&ca))?;
    AdminClient::new(client.clone(), &admin_key)
        .set_policy("Tpm", &aver_token::policy::unsigned(Some(POLICY)))
        .await
        .context("setting the TPM policy")?;
    outln!("policy set for Tpm:\n{POLICY}");

    step(
        4,
        "Client: enroll an attestation key and send a quote with the log",
    );
    let args = AttestTpmArgs {
        tcti: tpm.tcti(),
        url: service.issuer.clone(),
        ca: Some(service.tls.cert.clone()),
        ak_file: dir.path().join("ak.json"),
        event_log: log_path.clone(),
        pcrs: (0..8).collect(),
        banks: vec![Bank::Sha256],
        ak_alg: AkAlg::Rsa,
    };
    let token = match crate::tpm_attest::attest_outcome(args).await? {
        AttestOutcome::Token(token) => token,
        AttestOutcome::Refused {
            status,
            code,
            message,
        } => bail!("the service refused the TPM evidence (HTTP {status}): {code}: {message}"),
    };
    outln!("token: {}...", token.get(..60).unwrap_or(&token));

    step(
        5,
        "Relying party: verify the token through OpenID metadata and JWKS",
    );
    let claims = client
        .verify_token(&token, &service.issuer, aver_client::unix_now(), 60)
        .await
        .context("verifying the token")?;
    for name in [
        "x-ms-attestation-type",
        "aikValidated",
        "secureBootEnabled",
        "PlatformAttested",
        "aikPubHash",
    ] {
        outln!("  {name:<22} {}", claims.get(name).unwrap_or(&Value::Null));
    }
    let trusted = claims.get("PlatformAttested") == Some(&Value::Bool(true));
    outln!(
        "\nDecision: {}",
        if trusted {
            "the platform booted with Secure Boot and its key is bound to a genuine TPM: trust it"
        } else {
            "the policy did not attest the platform: do not trust it"
        }
    );
    service.shutdown().await;
    drop(tpm);
    cleanup(dir.path());
    Ok(if trusted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cleanup(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}
