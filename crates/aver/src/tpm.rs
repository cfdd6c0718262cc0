//! TPM commands: `aver attest tpm`, `aver evidence verify tpm`,
//! `aver evidence eventlog`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct AttestTpmArgs {}

#[derive(Args, Debug)]
pub struct VerifyTpmArgs {}

#[derive(Args, Debug)]
pub struct EventlogArgs {}

pub async fn attest(_args: AttestTpmArgs) -> Result<ExitCode> {
    bail!("not implemented yet")
}

pub fn verify(_args: VerifyTpmArgs) -> Result<ExitCode> {
    bail!("not implemented yet")
}

pub fn eventlog(_args: EventlogArgs) -> Result<ExitCode> {
    bail!("not implemented yet")
}
