//! One module per evidence type: its parser (or the shared one it builds
//! on), its verifier and its claims, and its [`crate::registry`] entry.

pub mod azure_cvm;
pub mod sgx;
pub mod snp;
pub mod tdx;
pub mod tpm;
