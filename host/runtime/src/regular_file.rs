//! [`read_regular`]: reading a file named by an untrusted path (a plugin, a
//! config, a token) only when it is a regular file under a size limit,
//! checked on the open descriptor before the first byte is read.
//!
//! The path is opened once, with `O_NONBLOCK` so that opening a FIFO does
//! not wait for a writer, and `O_NOCTTY` so a terminal does not become ours;
//! symlinks are resolved by that one open. What was opened is then checked
//! with `fstat` — never `stat` and then `open`, which a rename between the
//! two calls would defeat — and a FIFO, device, socket or directory is
//! refused before any `read`. The read itself never goes past the limit,
//! whatever the file grows to meanwhile.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a file named by a path was not read. Each message names the path,
/// what it is, and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum FileRefusal {
    /// Nothing is at the path.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The path could not be opened, checked or read.
    #[error("{}: cannot read it: {source}", path.display())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file (a FIFO, a device such as /dev/zero, a socket, a
    /// directory): refused before a byte was read.
    #[error("{}: not a regular file (it is {what}); give the path of a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead (`"a FIFO"`, `"a character device"`, ...).
        what: &'static str,
    },
    /// Larger than the limit: refused before a byte was read (or, for a file
    /// that grew while being read, once the limit was passed).
    #[error("{}: {size} bytes, more than the limit of {limit} bytes", path.display())]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size (at least `limit + 1` when it grew while being read).
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// Opens `path` once and checks, on the open descriptor, that it is a
/// regular file of at most `max_bytes`; returns it ready for blocking reads
/// with its size. Nothing has been read from it.
///
/// # Errors
/// A [`FileRefusal`]: missing, unopenable, not a regular file, too large.
pub fn open_regular(path: &Path, max_bytes: u64) -> Result<(File, u64), FileRefusal> {
    let p = || path.to_path_buf();
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FileRefusal::NotFound { path: p() },
            _ => FileRefusal::Unreadable {
                path: p(),
                source: e,
            },
        })?;
    let meta = file
        .metadata()
        .map_err(|source| FileRefusal::Unreadable { path: p(), source })?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(FileRefusal::NotRegular { path: p(), what });
    }
    if meta.len() > max_bytes {
        return Err(FileRefusal::TooLarge {
            path: p(),
            size: meta.len(),
            limit: max_bytes,
        });
    }
    // A regular file: back to ordinary blocking reads.
    // SAFETY: `file` owns a valid open descriptor for the whole call.
    let cleared = unsafe {
        let fd = file.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) >= 0
    };
    if !cleared {
        return Err(FileRefusal::Unreadable {
            path: p(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok((file, meta.len()))
}

/// Reads the whole of `path` when it is a regular file of at most
/// `max_bytes` ([`open_regular`]); never reads more than `max_bytes + 1`
/// bytes, even from a file that grows meanwhile.
///
/// # Errors
/// A [`FileRefusal`].
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FileRefusal> {
    let (file, len) = open_regular(path, max_bytes)?;
    let mut raw = Vec::with_capacity(len as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|source| FileRefusal::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if raw.len() as u64 > max_bytes {
        return Err(FileRefusal::TooLarge {
            path: path.to_path_buf(),
            size: raw.len() as u64,
            limit: max_bytes,
        });
    }
    Ok(raw)
}

/// [`read_regular`] as UTF-8 text.
///
/// # Errors
/// A [`FileRefusal`]; text that is not UTF-8 is
/// [`FileRefusal::Unreadable`] with an `InvalidData` error.
pub fn read_regular_text(path: &Path, max_bytes: u64) -> Result<String, FileRefusal> {
    String::from_utf8(read_regular(path, max_bytes)?).map_err(|e| FileRefusal::Unreadable {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bpk-rf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_fifo_is_refused_at_once_without_waiting_for_a_writer() {
        let d = scratch("fifo");
        let f = d.join("p.wasm");
        let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = Instant::now();
        let e = read_regular(&f, 1 << 20).unwrap_err();
        assert!(
            matches!(e, FileRefusal::NotRegular { what: "a FIFO", .. }),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("not a regular file (it is a FIFO)"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn devices_directories_and_links_to_devices_are_refused() {
        let d = scratch("dev");
        let link = d.join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (p, what) in [
            (Path::new("/dev/zero"), "a character device"),
            (link.as_path(), "a character device"),
            (d.as_path(), "a directory"),
        ] {
            let e = read_regular(p, 1 << 20).unwrap_err();
            assert!(
                matches!(&e, FileRefusal::NotRegular { what: w, .. } if *w == what),
                "{}: {e}",
                p.display()
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_over_size_file_is_refused_from_its_size_and_a_small_one_is_read() {
        let d = scratch("size");
        let big = d.join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let e = read_regular(&big, 1 << 20).unwrap_err();
        assert!(
            matches!(e, FileRefusal::TooLarge { size, limit, .. } if size == 1 << 30 && limit == 1 << 20)
        );
        let small = d.join("small");
        std::fs::write(&small, b"hello").unwrap();
        assert_eq!(read_regular_text(&small, 5).unwrap(), "hello");
        assert!(matches!(
            read_regular(&small, 4).unwrap_err(),
            FileRefusal::TooLarge { .. }
        ));
        assert!(matches!(
            read_regular(&d.join("missing"), 4).unwrap_err(),
            FileRefusal::NotFound { .. }
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
