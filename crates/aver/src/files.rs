//! Reading evidence and data files given on the command line.

use anyhow::{Context, Result};
use std::path::Path;

/// Reads a file of evidence: raw bytes, or base64/base64url text (as the
/// Azure samples ship quotes), or hex text.
pub fn read_evidence(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let text = text.trim();
        let hex_text = text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit());
        if !text.is_empty()
            && hex_text
            && let Ok(decoded) = hex::decode(text)
        {
            return Ok(decoded);
        }
        let base64_text = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/-_=".contains(&b));
        if !text.is_empty()
            && base64_text
            && let Some(decoded) = aver_token::b64::decode_lenient(text)
        {
            return Ok(decoded);
        }
    }
    Ok(bytes)
}

/// Reads a file as-is.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads a text file.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Pretty-prints JSON to stdout.
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
