//! `aver sim`: the simulated SGX enclave, for trying Aver without hardware.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use clap::Subcommand;

use crate::files;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Print the simulator's root CA (PEM). Trust it only in test setups.
    Root,
    /// Write a simulated DCAP quote (or OpenEnclave report).
    Quote {
        /// Output file (raw bytes).
        #[arg(long)]
        out: PathBuf,
        /// Runtime data to bind into report_data (SHA-256).
        #[arg(long)]
        runtime_data: Option<PathBuf>,
        /// MRENCLAVE (64 hex characters).
        #[arg(
            long,
            default_value = "1111111111111111111111111111111111111111111111111111111111111111"
        )]
        mrenclave: String,
        /// MRSIGNER (64 hex characters).
        #[arg(
            long,
            default_value = "2222222222222222222222222222222222222222222222222222222222222222"
        )]
        mrsigner: String,
        #[arg(long, default_value_t = 1)]
        product_id: u16,
        #[arg(long, default_value_t = 1)]
        svn: u16,
        /// Mark the enclave debuggable.
        #[arg(long)]
        debug: bool,
        /// Write an OpenEnclave report instead of a bare quote.
        #[arg(long)]
        openenclave: bool,
    },
}

fn hex32(text: &str, what: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(text).map_err(|e| anyhow!("{what}: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("{what} must be 32 bytes (64 hex characters)"))
}

pub fn run(cmd: SimCommand) -> Result<ExitCode> {
    match cmd {
        SimCommand::Root => {
            out!("{}", aver_sim::root_certificate_pem()?);
        }
        SimCommand::Quote {
            out,
            runtime_data,
            mrenclave,
            mrsigner,
            product_id,
            svn,
            debug,
            openenclave,
        } => {
            let runtime = runtime_data.as_deref().map(files::read).transpose()?;
            let identity = EnclaveIdentity {
                mr_enclave: hex32(&mrenclave, "--mrenclave")?,
                mr_signer: hex32(&mrsigner, "--mrsigner")?,
                product_id,
                svn,
                debug,
                report_data: runtime.as_deref().map(report_data_for).unwrap_or([0; 64]),
            };
            let platform = SimPlatform::generate()?;
            let bytes = if openenclave {
                platform.openenclave_report(&identity)?
            } else {
                platform.quote(&identity)?
            };
            std::fs::write(&out, bytes)?;
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
