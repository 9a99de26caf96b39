//! The compile cache's directory: where it is by default (the XDG cache
//! directory) and the rule that it is owner-only.
//!
//! Loading a compiled artifact is `unsafe` in wasmtime: whoever can write
//! the cache directory can make the host run their machine code. So the
//! directory must belong to this user and be closed to everyone else
//! (0700). [`prepare_cache_dir`] creates it that way, tightens one this
//! host created that has since been opened up (discarding the entries in it
//! when others could write there), and refuses any other directory with a
//! message naming the fix.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

/// Name of the directory under the user's cache directory.
pub const CACHE_DIR_NAME: &str = "batpak-host";

/// The marker file that says a directory is a cache (backup tools skip
/// it; <https://bford.info/cachedir/>) and that this host created it.
pub(crate) const TAG_FILE: &str = "CACHEDIR.TAG";
const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This directory is batpak-host's compile cache (compiled plugins).\n\
# Deleting it is safe: plugins are compiled again when needed.\n";

/// Why a compile cache directory is not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// The directory could not be created or examined.
    #[error("cannot use the compile cache directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The path exists and is not a directory.
    #[error("the compile cache directory {path} is not a directory; pass another with --cache-dir (or BATPAK_CACHE_DIR)")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Another user owns the directory: what they put there would run here.
    #[error("the compile cache directory {path} belongs to user {owner}, not to this user ({me}): compiled code loaded from it would run whatever its owner put there; pass a directory of your own with --cache-dir (or BATPAK_CACHE_DIR), or --no-cache")]
    NotOwned {
        /// The directory.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// The directory is open to others and holds files this host did not
    /// put there, so it is not changed.
    #[error("the compile cache directory {path} is open to other users (mode {mode:03o}) and is not a cache this host created; a compile cache must be owner-only: `chmod 700 {path}` if it is yours alone, or pass another with --cache-dir (or BATPAK_CACHE_DIR)")]
    OpenToOthers {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// What [`prepare_cache_dir`] had to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirRepair {
    /// Nothing: the directory was already owner-only (or was just created
    /// so).
    None,
    /// The directory was readable by others; it is now 0700.
    Closed {
        /// Its permission bits before.
        was: u32,
    },
    /// Others could write the directory; it is now 0700 and every entry in
    /// it was discarded, since anyone could have replaced it.
    ClosedAndEmptied {
        /// Its permission bits before.
        was: u32,
    },
}

/// The default cache directory, following the XDG base directory
/// convention: `$XDG_CACHE_HOME/batpak-host` when `XDG_CACHE_HOME` is an
/// absolute path, else `$HOME/.cache/batpak-host`; `None` when neither is
/// set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let abs = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").and_then(abs) {
        return Some(x.join(CACHE_DIR_NAME));
    }
    std::env::var_os("HOME")
        .and_then(abs)
        .map(|h| h.join(".cache").join(CACHE_DIR_NAME))
}

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes `dir` a usable compile cache directory: creates it (and missing
/// parents) owner-only, or checks that it belongs to this user and is
/// closed to others. A directory this host created (it holds the cache tag,
/// or nothing) that was opened up since is closed again; when others could
/// write it, `discard` is called to empty it first.
///
/// # Errors
/// The directory cannot be created or examined, is not a directory, is
/// another user's, or is open to others and not one this host created.
pub fn prepare_cache_dir(dir: &Path, discard: impl FnOnce()) -> Result<DirRepair, CacheDirError> {
    let io = |source| CacheDirError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let m = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
            // A umask cannot widen 0700, but a directory that appeared in
            // between might be another's: check what is there now.
            let m = std::fs::metadata(dir).map_err(io)?;
            check_owner(dir, &m)?;
            if m.mode() & 0o077 != 0 {
                return Err(CacheDirError::OpenToOthers {
                    path: dir.to_path_buf(),
                    mode: m.mode() & 0o7777,
                });
            }
            write_tag(dir);
            return Ok(DirRepair::None);
        }
        Err(e) => return Err(io(e)),
    };
    if !m.is_dir() {
        return Err(CacheDirError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    check_owner(dir, &m)?;
    let mode = m.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(DirRepair::None);
    }
    if !created_here(dir) {
        return Err(CacheDirError::OpenToOthers {
            path: dir.to_path_buf(),
            mode,
        });
    }
    // Closed first, so nobody else can add anything while it is emptied.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    write_tag(dir);
    if mode & 0o022 != 0 {
        discard();
        Ok(DirRepair::ClosedAndEmptied { was: mode })
    } else {
        Ok(DirRepair::Closed { was: mode })
    }
}

fn check_owner(dir: &Path, m: &std::fs::Metadata) -> Result<(), CacheDirError> {
    if m.uid() != euid() {
        return Err(CacheDirError::NotOwned {
            path: dir.to_path_buf(),
            owner: m.uid(),
            me: euid(),
        });
    }
    Ok(())
}

/// True when `dir` holds this host's cache tag (a regular file, not a
/// link), or nothing at all.
fn created_here(dir: &Path) -> bool {
    let tagged = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(TAG_FILE))
        .and_then(|mut f| {
            let mut t = String::new();
            f.read_to_string(&mut t).map(|_| t)
        })
        .is_ok_and(|t| t == TAG);
    tagged
        || std::fs::read_dir(dir)
            .map(|mut rd| rd.next().is_none())
            .unwrap_or(false)
}

fn write_tag(dir: &Path) {
    // Best effort, and only where none is: the tag is advice for backup
    // tools and a marker for `created_here`; the cache works without it.
    // `create_new` never follows a link planted in its place.
    if let Ok(mut f) = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(TAG_FILE))
    {
        let _ = f.write_all(TAG.as_bytes());
    }
}

// What the compile cache and its file records (`file_record.rs`) share: reading files in
// the owner-only directory without following links, and the stamps and
// names they keep.

/// A file's mtime in nanoseconds since the epoch.
pub(crate) fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// A file's ctime (last change of content or metadata, set only by the
/// kernel) in nanoseconds since the epoch.
pub(crate) fn ctime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec())
}

/// Owned by this user and writable by nobody else.
pub(crate) fn private(m: &std::fs::Metadata) -> bool {
    m.uid() == euid() && m.mode() & 0o022 == 0
}

/// Opens a directory without following a link in its place.
pub(crate) fn open_dir(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

/// Opens `name` inside the open directory `dir`, read-only, without
/// following a link: the file is the one in that very directory, whatever
/// is renamed meanwhile.
pub(crate) fn open_in(dir: &File, name: &str) -> std::io::Result<File> {
    let c = CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: `dir` is an open directory descriptor and `c` a valid C
    // string for the duration of the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// A name no other process or thread uses for its temporary files.
pub(crate) fn unique() -> String {
    format!(
        "{}.{}",
        std::process::id(),
        batpak_store::EventId::generate()
    )
}
