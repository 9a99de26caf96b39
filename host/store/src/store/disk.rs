//! The one I/O seam of the store: every segment, snapshot and marker byte
//! goes through [`Disk`] and [`DiskFile`], so a simulated disk
//! (`SimDisk`, with the `testing` feature) can lose power or fail an operation at any
//! chosen moment. Modelled on redb's `StorageBackend`: a handful of
//! positional operations, nothing buffered behind the store's back.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file on a [`Disk`]. Positional I/O only: the store tracks its
/// own offsets, so no hidden cursor can drift after an error.
pub trait DiskFile: Send + Sync + Debug {
    /// Current length in bytes (including writes not yet synced).
    ///
    /// # Errors
    /// The disk failed.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file holds no bytes.
    ///
    /// # Errors
    /// The disk failed.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// `UnexpectedEof` when the file is shorter, or the disk failed.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`. Not durable until [`DiskFile::sync`].
    ///
    /// # Errors
    /// The disk failed (EIO, ENOSPC); part of `buf` may have been written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends to `len`. Not durable until [`DiskFile::sync`].
    ///
    /// # Errors
    /// The disk failed.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every write to this file durable (fdatasync).
    ///
    /// # Errors
    /// The disk failed; what was written since the last sync is then in an
    /// unknown state, so the store stops (fail-stop).
    fn sync(&self) -> io::Result<()>;
}

/// A directory tree the store lives in: the real file system ([`OsDisk`]) or
/// a simulation. Paths are the ones the store builds under its directory.
pub trait Disk: Send + Sync + Debug {
    /// Creates a directory and its parents (owner-only, `0700`, on the
    /// real file system).
    ///
    /// # Errors
    /// The disk failed.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir`.
    ///
    /// # Errors
    /// `NotFound` when `dir` does not exist, or the disk failed.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading (and writing when permitted).
    ///
    /// # Errors
    /// `NotFound`, or the disk failed.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>>;
    /// Creates an empty file that must not exist yet (or replaces it when
    /// `replace`), owner-only (`0600`) on the real file system. The new
    /// name is durable only after [`Disk::sync_dir`].
    ///
    /// # Errors
    /// `AlreadyExists` (when not `replace`), or the disk failed.
    fn create(&self, path: &Path, replace: bool) -> io::Result<Arc<dyn DiskFile>>;
    /// Renames `from` to `to`, replacing `to`; durable after [`Disk::sync_dir`].
    ///
    /// # Errors
    /// The disk failed.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    ///
    /// # Errors
    /// `NotFound`, or the disk failed.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    ///
    /// # Errors
    /// The disk failed.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether the store takes the directory's `LOCK` file on this disk
    /// (only meaningful for the real file system).
    fn uses_lock_file(&self) -> bool {
        false
    }
}

/// Reads a whole file.
pub(crate) fn read_all(disk: &dyn Disk, path: &Path) -> io::Result<Vec<u8>> {
    let f = disk.open(path)?;
    let mut buf = vec![0u8; f.len()? as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsDisk;

#[derive(Debug)]
struct OsFile {
    file: std::fs::File,
    path: PathBuf,
}

impl DiskFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", self.path.display())))
    }
}

impl Disk for OsDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Owner-only, like the store directory (see `private_dir`).
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        // Read-only when the file cannot be opened for writing: a store on
        // read-only media can still be read and verified.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(30) =>
            {
                std::fs::File::open(path)?
            }
            Err(e) => return Err(e),
        };
        Ok(Arc::new(OsFile {
            file,
            path: path.to_path_buf(),
        }))
    }
    fn create(&self, path: &Path, replace: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut o = std::fs::OpenOptions::new();
        // Owner-only: every payload is in these files.
        std::os::unix::fs::OpenOptionsExt::mode(o.read(true).write(true), 0o600);
        if replace {
            o.create(true).truncate(true);
        } else {
            o.create_new(true);
        }
        Ok(Arc::new(OsFile {
            file: o.open(path)?,
            path: path.to_path_buf(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
    fn uses_lock_file(&self) -> bool {
        true
    }
}
