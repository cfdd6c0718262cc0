//! `aver token verify`: what a relying party does with a token.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use aver_client::Client;
use clap::Subcommand;

use crate::files;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Verify a token through the issuer's OpenID metadata and JWKS; print its claims.
    ///
    /// Exit status: 0 when the token verifies (its claims are printed), 2 when
    /// it is rejected (the reason follows "token rejected:"), 1 when it could
    /// not be checked (the issuer unreachable, a bad CA file, metadata that
    /// names another issuer).
    Verify {
        /// The token, `@FILE` to read it from a file, or `-` for stdin.
        token: String,
        /// The issuer you trust (the service's base URL).
        #[arg(long)]
        issuer: String,
        /// CA certificate (PEM) for the issuer's TLS certificate.
        #[arg(long, env = "AVER_CA")]
        ca: Option<PathBuf>,
        /// Clock-skew allowance for exp/nbf, in seconds.
        #[arg(long, default_value_t = 60)]
        leeway: u64,
    },
}

pub async fn run(cmd: TokenCommand) -> Result<ExitCode> {
    let TokenCommand::Verify {
        token,
        issuer,
        ca,
        leeway,
    } = cmd;
    let token = if token == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading the token from stdin")?;
        text
    } else if let Some(path) = token.strip_prefix('@') {
        files::read_text(std::path::Path::new(path))?
    } else {
        token
    };
    let ca = ca.as_deref().map(files::read).transpose()?;
    let client = Client::new(&issuer, ca.as_deref())?;
    match client
        .verify_token(token.trim(), &issuer, aver_client::unix_now(), leeway)
        .await
    {
        Ok(claims) => {
            files::print_json(&serde_json::Value::Object(claims));
            Ok(ExitCode::SUCCESS)
        }
        // A token error already reads "token rejected: ...".
        Err(e @ aver_client::ClientError::Token(_)) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
        // The others (the issuer unreachable, a bad CA file) are not a
        // verdict on the token: "token rejected" would mislead.
        Err(e) => Err(anyhow::anyhow!("the token could not be checked: {e}")),
    }
}
