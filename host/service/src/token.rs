//! The HTTP bearer token: read from the operator's file, or generated into
//! `<data>/run/http.token` (owner-only) and kept across restarts so scripts
//! keep working. A token file group or others may read or write is
//! refused (`chmod 600` fixes it).

use crate::ServiceError;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Shortest token accepted from a file.
pub const MIN_TOKEN_LEN: usize = 16;

/// Where a generated token lives for store `data`.
pub fn token_path(data: &Path) -> PathBuf {
    data.join("run").join("http.token")
}

fn read(path: &Path) -> Result<String, ServiceError> {
    // Like ssh with a private key: a secret others can read is no secret,
    // so the host refuses it and names the fix.
    let meta = std::fs::metadata(path).map_err(|source| ServiceError::Io {
        context: format!("reading the token file {}", path.display()),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ServiceError::BadToken(format!(
            "{}: the token file is readable or writable by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|source| ServiceError::Io {
        context: format!("reading the token file {}", path.display()),
        source,
    })?;
    let t = text.trim().to_string();
    if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::BadToken(format!(
            "{}: a token must be at least {MIN_TOKEN_LEN} printable characters without spaces",
            path.display()
        )));
    }
    Ok(t)
}

/// The token and the file it came from: `given` when set, else the
/// generated file (created with 32 random bytes as hex when missing).
pub(crate) fn load(data: &Path, given: Option<&Path>) -> Result<(String, PathBuf), ServiceError> {
    if let Some(p) = given {
        return Ok((read(p)?, p.to_path_buf()));
    }
    crate::local::private_dir(data)?;
    let path = token_path(data);
    if path.exists() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ServiceError::Io {
                context: format!("restricting {} to the owner", path.display()),
                source,
            },
        )?;
        return Ok((read(&path)?, path));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::BadToken(format!("no randomness for a token: {e}")))?;
    let token = batpak_store::hex(&bytes);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| ServiceError::Io {
            context: format!("creating the token file {}", path.display()),
            source,
        })?;
    writeln!(f, "{token}")
        .and_then(|()| f.sync_all())
        .map_err(|source| ServiceError::Io {
            context: format!("writing the token file {}", path.display()),
            source,
        })?;
    Ok((token, path))
}
