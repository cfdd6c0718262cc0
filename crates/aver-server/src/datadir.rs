//! The data directory holds the SQLite database, the generated KEK, the
//! default provider's admin key and the generated TLS key: it is created
//! owner-only (0700) and every file in it owner-only (0600). A directory
//! made by an earlier version (0755 directory, 0644 database) is tightened
//! at start, with a warning naming each path, because until then any local
//! user could have copied a key.

use std::path::Path;

/// Creates `dir` (0700) or tightens it and everything in it.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        tighten(dir, 0)?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Directories deeper than this are left alone (the service makes one
/// level, `tls/`).
#[cfg(unix)]
const MAX_DEPTH: usize = 4;

#[cfg(unix)]
fn tighten(path: &Path, depth: usize) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Symbolic links are not followed: they may point anywhere.
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_dir() && !meta.is_file() {
        return Ok(());
    }
    if mode & 0o077 != 0 {
        let wanted = mode & 0o700;
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            new_mode = format!("{wanted:o}"),
            "data-directory entry was readable by other users; made it owner-only"
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
    }
    if meta.is_dir() && depth < MAX_DEPTH {
        for entry in std::fs::read_dir(path)? {
            match tighten(&entry?.path(), depth + 1) {
                // Gone between listing and visiting: SQLite removes its
                // `-wal` and `-shm` files when the last connection (another
                // process, or a service shutting down) closes.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// Creates `path` empty and owner-only if it does not exist, so that a file
/// another library creates there (SQLite's database, whose `-wal` and
/// `-shm` files take its mode) starts private.
pub fn touch_private(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(|_| ())
}
