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

/// Set once stdout's reader has gone away: the rest of the output is dropped.
static STDOUT_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes a command's output to stdout (the `outln!` and `out!` macros).
///
/// A reader that goes away before the output ends (`aver token verify … |
/// head -5`) is the reader's choice: the rest of the output is dropped and
/// the command finishes and ends with its own exit status (a verification
/// that failed still fails), where `println!` panicked with "failed printing
/// to stdout". Any other write error (a full disk under `> token.jwt`) would
/// lose output nobody chose to drop: it ends the command with exit status 1
/// and says why on stderr.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    use std::sync::atomic::Ordering;
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_GONE.store(true, Ordering::Relaxed);
        }
        Err(e) => {
            eprintln!("error: writing the output to stdout failed: {e}");
            std::process::exit(1);
        }
    }
}

/// Pretty-prints JSON to stdout.
pub fn print_json(value: &serde_json::Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
