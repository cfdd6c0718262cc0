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
}

pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Hash { policy } => {
            println!("{}", aver_policy::policy_hash(&files::read_text(&policy)?));
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
        println!("decision: {}", report["decision"].as_str().unwrap_or("?"));
        if let Some(reason) = &evaluation.deny_reason {
            println!("reason:   {reason}");
        }
        if let Some(trace) = report["trace"].as_array() {
            println!("trace:");
            for step in trace {
                println!("  {step}");
            }
        }
        println!("issued:");
        for (name, value) in evaluation.issued_json() {
            println!("  {name} = {value}");
        }
    }
    Ok(match evaluation.decision {
        Decision::Permit => ExitCode::SUCCESS,
        Decision::Deny => ExitCode::from(1),
    })
}
