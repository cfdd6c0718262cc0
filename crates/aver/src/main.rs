//! `aver`: the attestation service and its tools, in one binary.
//!
//! A thin shell over the library crates: every subcommand parses its
//! arguments and calls one library function.

mod attest;
mod demo;
mod evidence;
mod files;
mod policy;
mod serve;
mod sim;
mod token;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aver",
    version,
    about = "Aver: a self-hostable remote attestation service, compatible with Azure Attestation",
    long_about = "Aver verifies SGX and OpenEnclave evidence (and, as it lands, TPM evidence), \
evaluates it against an attestation policy in Azure's claim-rule language, and issues signed \
attestation tokens that relying parties verify through OpenID metadata and JWKS."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the attestation service (HTTPS).
    Serve(serve::ServeArgs),
    /// Walk the whole workflow: enclave evidence -> service -> token -> relying party.
    Demo(demo::DemoArgs),
    /// Send evidence to a service and print the token (a client).
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Work with attestation tokens (relying party).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Verify evidence offline, with no service.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// Evaluate and hash attestation policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The simulated SGX enclave used by tests and the demo.
    #[command(subcommand)]
    Sim(sim::SimCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Attest(cmd) => attest::run(cmd).await,
            Command::Token(cmd) => token::run(cmd).await,
            Command::Evidence(cmd) => evidence::run(cmd),
            Command::Policy(cmd) => policy::run(cmd),
            Command::Sim(cmd) => sim::run(cmd),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
