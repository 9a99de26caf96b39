//! The directory lock: one owner per store directory, named in `LOCK`.
//!
//! The holder text is written with one positional write of a fixed-size,
//! space-padded record, never by truncating first: a second opener reading
//! `LOCK` at any moment sees either the previous holder or the new one,
//! never an empty file. The lock is an `flock` on the file's inode, so a
//! `LOCK` file unlinked or replaced while the store is open would let a
//! second writer in; [`DirLock::check`] notices that (same path, same inode)
//! and the writer refuses to write on.

use super::StoreError;
use crate::event::now_us;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Bytes of the holder record (space padded, newline terminated).
const HOLDER_LEN: usize = 512;

/// A held directory lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
    path: PathBuf,
    inode: (u64, u64),
}

fn holder_text() -> String {
    // The whole command line, so the holder shows the subcommand
    // (`batpak-host --data d run …`), bounded to fit the record.
    let mut args = std::env::args().collect::<Vec<_>>().join(" ");
    if args.len() > 380 {
        let mut cut = 380;
        while !args.is_char_boundary(cut) {
            cut -= 1;
        }
        args.truncate(cut);
        args.push('…');
    }
    format!(
        "pid {} ({}) since {}",
        std::process::id(),
        args,
        now_us() / 1_000_000
    )
}

impl DirLock {
    /// Takes the lock of `dir` (creating `dir`).
    ///
    /// # Errors
    /// [`StoreError::Locked`] naming the holder, or I/O.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io(format!(
            "creating store directory {}",
            dir.display()
        )))?;
        let path = dir.join("LOCK");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown holder".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io {
                    context: format!("locking {}", path.display()),
                    source: e,
                })
            }
        }
        let mut rec = holder_text().into_bytes();
        rec.resize(HOLDER_LEN - 1, b' ');
        rec.push(b'\n');
        // One write of the whole record over the previous one (same size):
        // never an empty or half-old file in between.
        let _ = file.write_all_at(&rec, 0);
        let _ = file.set_len(HOLDER_LEN as u64);
        let m = file
            .metadata()
            .map_err(StoreError::io(format!("reading {}", path.display())))?;
        Ok(DirLock {
            file,
            path,
            inode: (m.dev(), m.ino()),
        })
    }

    /// Checks that `LOCK` is still the file this process locked.
    ///
    /// # Errors
    /// A message saying the lock file was removed or replaced.
    pub fn check(&self) -> Result<(), String> {
        let _ = &self.file;
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.inode => Ok(()),
            Ok(_) => Err(format!(
                "{} was replaced while this process held the store; another process may now write to it, so this one refuses to write on. Stop every process using the store and reopen it",
                self.path.display()
            )),
            Err(_) => Err(format!(
                "{} was removed while this process held the store; another process may now write to it, so this one refuses to write on. Stop every process using the store and reopen it",
                self.path.display()
            )),
        }
    }
}
