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

/// Largest token file read: a token is one line, so anything bigger is a
/// mistake (a log, a device) and is refused before it is read.
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

/// Reads the token from `path`: opened once (without waiting on a FIFO's
/// writer), then checked through the open descriptor — a regular file, at
/// most 64 KiB, owner-only — so what is checked is what is read, even if
/// the path is replaced meanwhile.
fn read(path: &Path) -> Result<String, ServiceError> {
    let io = |source| ServiceError::Io {
        context: format!("reading the token file {}", path.display()),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(ServiceError::BadToken(format!(
            "{}: not a regular file; give --token-file a file holding the token",
            path.display()
        )));
    }
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(ServiceError::BadToken(format!(
            "{}: {} bytes is too large for a token file (at most {MAX_TOKEN_FILE_BYTES}); a token is one line",
            path.display(),
            meta.len()
        )));
    }
    // Like ssh with a private key: a secret others can read is no secret,
    // so the host refuses it and names the fix.
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ServiceError::BadToken(format!(
            "{}: the token file is readable or writable by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(&mut f, MAX_TOKEN_FILE_BYTES),
        &mut text,
    )
    .map_err(io)?;
    let t = text.trim().to_string();
    if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::BadToken(format!(
            "{}: a token must be at least {MIN_TOKEN_LEN} printable characters without spaces",
            path.display()
        )));
    }
    Ok(t)
}

/// A shell command that makes an owner-only token file at `FILE`, for
/// messages that name the fix.
pub const MAKE_TOKEN_FILE: &str =
    "(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE)";

/// The token in `path`, which the operator gave and which must exist (a
/// host without a store directory has nowhere to generate one).
pub(crate) fn read_given(path: &Path) -> Result<String, ServiceError> {
    if !path.exists() {
        return Err(ServiceError::BadToken(format!(
            "{}: no such token file; create one holding a random token, owner-only: {}",
            path.display(),
            MAKE_TOKEN_FILE.replace("FILE", &path.display().to_string())
        )));
    }
    read(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn private_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .unwrap()
    }

    fn write_private(path: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn a_fifo_directory_or_huge_token_file_is_refused_without_reading_it() {
        let dir = private_dir();
        // A FIFO with no writer: a blocking open would wait for ever, so
        // the test runs the read on a thread and bounds the wait.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo failed");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read(&fifo).map_err(|e| e.to_string()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO token file must not wait for a writer");
        assert!(
            got.as_ref()
                .is_err_and(|e| e.contains("not a regular file")),
            "{got:?}"
        );

        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");

        let big = dir.path().join("big");
        write_private(&big, &vec![b'a'; (MAX_TOKEN_FILE_BYTES + 1) as usize]);
        let e = read(&big).unwrap_err().to_string();
        assert!(e.contains("too large for a token file"), "{e}");
    }

    #[test]
    fn an_owner_only_token_file_is_read_and_a_shared_one_refused() {
        let dir = private_dir();
        let ok = dir.path().join("ok");
        write_private(&ok, b"0123456789abcdef0123\n");
        assert_eq!(read(&ok).unwrap(), "0123456789abcdef0123");

        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&ok).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
