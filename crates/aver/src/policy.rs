//! `aver policy`: evaluate a policy against claims, with a trace; hash it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use aver_policy::{Decision, Policy};
use clap::Subcommand;
use serde_json::Value;

use crate::files;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Evaluate a policy against claims and show which rules matched.
    Eval {
        /// The policy text.
        #[arg(long)]
        policy: PathBuf,
        /// A JSON object from claim type to value (an array means several
        /// claims of that type), or a token's claims.
        #[arg(long)]
        claims: PathBuf,
        /// Print {"decision","issued","trace"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a policy's x-ms-policy-hash.
    Hash {
        /// The policy text.
        policy: PathBuf,
    },
    /// Print the policy in force for an attestation type.
    Get {
        /// SgxEnclave, OpenEnclave or Tpm.
        #[arg(long = "type")]
        attestation_type: String,
        /// Print the stored JWS instead of the policy text.
        #[arg(long)]
        jws: bool,
        #[command(flatten)]
        connection: crate::admin::Connection,
    },
    /// Set the policy for an attestation type (policy text, or a JWS as-is).
    Set {
        #[arg(long = "type")]
        attestation_type: String,
        /// Policy text, or an already-signed policy JWS.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        signer: crate::admin::SignerFiles,
        #[command(flatten)]
        connection: crate::admin::Connection,
    },
    /// Restore the default policy of an attestation type.
    Reset {
        #[arg(long = "type")]
        attestation_type: String,
        #[command(flatten)]
        signer: crate::admin::SignerFiles,
        #[command(flatten)]
        connection: crate::admin::Connection,
    },
    /// Sign a policy text into a JWS (RS256, certificate in x5c).
    Sign {
        /// The policy text.
        #[arg(long)]
        file: PathBuf,
        /// The signer's RSA private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// The signer's certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
    },
}

pub async fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Get {
            attestation_type,
            jws,
            connection,
        } => {
            let (stored, text) = connection.admin()?.get_policy(&attestation_type).await?;
            if jws {
                outln!("{stored}");
            } else {
                match text {
                    Some(text) => outln!("{text}"),
                    None => eprintln!("no policy is set for {attestation_type}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Set {
            attestation_type,
            file,
            signer,
            connection,
        } => {
            let signer = signer.load()?;
            let jws = crate::admin::policy_jws(&file, signer.as_ref())?;
            let result = connection
                .admin()?
                .set_policy(&attestation_type, &jws)
                .await?;
            crate::admin::print_claims(&result);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Reset {
            attestation_type,
            signer,
            connection,
        } => {
            let jws = match signer.load()? {
                Some(s) => aver_token::policy::signed(None, &s)?,
                None => aver_token::policy::unsigned(None),
            };
            let result = connection
                .admin()?
                .reset_policy(&attestation_type, &jws)
                .await?;
            crate::admin::print_claims(&result);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Sign { file, key, cert } => {
            let signer = crate::admin::load_signer(&key, &cert)?;
            outln!("{}", crate::admin::policy_jws(&file, Some(&signer))?);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Hash { policy } => {
            outln!("{}", aver_policy::policy_hash(&files::read_text(&policy)?));
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Eval {
            policy,
            claims,
            json,
        } => eval(&policy, &claims, json),
    }
}

fn eval(policy_path: &Path, claims_path: &Path, json: bool) -> Result<ExitCode> {
    let text = files::read_text(policy_path)?;
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: PolicyParsingError: {e}", policy_path.display());
            return Ok(ExitCode::from(2));
        }
    };
    let claims: Value = serde_json::from_slice(&files::read(claims_path)?)
        .with_context(|| format!("{} is not JSON", claims_path.display()))?;
    let Value::Object(map) = claims else {
        return Err(anyhow!("{} must hold a JSON object", claims_path.display()));
    };
    let incoming = aver_policy::with_legacy_aliases(&aver_policy::claims_from_json(&map));
    let evaluation = match policy.evaluate(&incoming) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("evaluation error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if json {
        files::print_json(&evaluation.to_json());
    } else {
        let report = evaluation.to_json();
        outln!(
            "decision: {}",
            report
                .get("decision")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
        if let Some(reason) = &evaluation.deny_reason {
            outln!("reason:   {reason}");
        }
        if let Some(trace) = report.get("trace").and_then(Value::as_array) {
            outln!("trace:");
            for step in trace {
                outln!("  {step}");
            }
        }
        outln!("issued:");
        for (name, value) in evaluation.issued_json() {
            outln!("  {name} = {value}");
        }
    }
    Ok(match evaluation.decision {
        Decision::Permit => ExitCode::SUCCESS,
        Decision::Deny => ExitCode::from(1),
    })
}
