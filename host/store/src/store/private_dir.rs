//! The store directory is private to its owner, as PostgreSQL requires of
//! its data directory: every payload is in it, so a directory that group or
//! others may read or write is refused before any file is created or read
//! by an open. A directory the store creates is made `0700`, and every file
//! it creates `0600` ([`OsDisk`](super::OsDisk)), so the files stay private
//! even if the directory's mode is later widened.
//!
//! Read-only tools (`verify`, `events`, [`LogReader`](super::LogReader))
//! create nothing and change nothing, so they do not refuse: they read what
//! the user can already read. `verify` reports that an open would refuse
//! (its `open_error`), so the check shows up there.

use super::StoreError;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode bits that must be clear on the store directory: any access by group
/// or others.
const SHARED_BITS: u32 = 0o077;

/// Creates `dir` (and missing parents) owner-only when it does not exist.
///
/// # Errors
/// The directory cannot be created.
pub(crate) fn create(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Refuses a store directory group or others can access.
///
/// # Errors
/// [`StoreError::NotPrivate`] naming the `chmod` that fixes it, or I/O when
/// the directory cannot be examined.
pub(crate) fn check(dir: &Path) -> Result<(), StoreError> {
    let meta = std::fs::metadata(dir).map_err(StoreError::io(format!(
        "examining store directory {}",
        dir.display()
    )))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & SHARED_BITS != 0 {
        return Err(StoreError::NotPrivate {
            dir: dir.to_path_buf(),
            mode,
            fix: format!("chmod 700 {}", shell_quote(dir)),
        });
    }
    Ok(())
}

/// `dir` as one shell word: as is when it holds only characters no shell
/// treats specially, otherwise in single quotes.
fn shell_quote(dir: &Path) -> String {
    let s = dir.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_a_shell_would_split_them() {
        assert_eq!(
            shell_quote(Path::new("/srv/batpak-data")),
            "/srv/batpak-data"
        );
        assert_eq!(shell_quote(Path::new("/a b")), "'/a b'");
        assert_eq!(shell_quote(Path::new("/it's")), r"'/it'\''s'");
    }
}
