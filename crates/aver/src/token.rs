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
        Err(e) => {
            // A token error already reads "token rejected: ..."; the others
            // (the service unreachable, a bad CA file) say why it could not
            // be checked.
            match e {
                aver_client::ClientError::Token(_) => eprintln!("{e}"),
                _ => eprintln!("token rejected: {e}"),
            }
            Ok(ExitCode::from(2))
        }
    }
}
