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
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
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
        iso_utc(now_us() / 1_000_000)
    )
}

/// Seconds since the Unix epoch as ISO-8601 UTC (`2026-12-06T15:50:31Z`),
/// so the holder reads as a time, not a number.
fn iso_utc(secs: u64) -> String {
    crate::iso_time::iso_utc_secs(secs)
}

/// The inverse of [`iso_utc`] (`YYYY-MM-DDTHH:MM:SSZ` only).
fn parse_iso_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// When the holder took the lock, in seconds since the Unix epoch, from
/// the text after its last `since ` (ISO-8601, or the raw epoch seconds
/// an older build wrote).
fn holder_since(holder: &str) -> Option<u64> {
    let t = holder.rsplit_once(" since ")?.1.trim();
    t.parse::<u64>().ok().or_else(|| parse_iso_utc(t))
}

/// `, 3 min 12 s ago` for the `Locked` message (empty when unknown).
pub(crate) fn held_for_text(held_for: Option<std::time::Duration>) -> String {
    let Some(d) = held_for else {
        return String::new();
    };
    let s = d.as_secs();
    let ago = match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min {} s", s / 60, s % 60),
        3_600..=86_399 => format!("{} h {} min", s / 3_600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3_600 % 24),
    };
    format!(", {ago} ago")
}

impl DirLock {
    /// Takes the lock of `dir` (creating `dir` owner-only), after checking
    /// that group and others cannot access it.
    ///
    /// # Errors
    /// [`StoreError::NotPrivate`] naming the `chmod` that fixes it,
    /// [`StoreError::Locked`] naming the holder, or I/O.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        super::private_dir::create(dir).map_err(StoreError::io(format!(
            "creating store directory {}",
            dir.display()
        )))?;
        super::private_dir::check(dir)?;
        let path = dir.join("LOCK");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let mut holder = holder.trim().to_string();
                let since = holder_since(&holder);
                if let (Some(secs), Some((head, t))) = (since, holder.rsplit_once(" since ")) {
                    if t.trim().parse::<u64>().is_ok() {
                        // An older build's raw epoch: shown as a time too.
                        holder = format!("{head} since {}", iso_utc(secs));
                    }
                }
                let held_for = since.map(|s| {
                    std::time::Duration::from_secs((now_us() / 1_000_000).saturating_sub(s))
                });
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown holder".into()
                    } else {
                        holder
                    },
                    held_for,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn private_tempdir() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn a_refused_open_names_the_holder_with_an_iso_time_and_how_long_ago() {
        let dir = private_tempdir();
        let _held = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        let StoreError::Locked {
            holder, held_for, ..
        } = &err
        else {
            panic!("expected Locked, got {err:?}");
        };
        let since = holder.rsplit_once(" since ").unwrap().1;
        assert_eq!(parse_iso_utc(since).map(iso_utc).as_deref(), Some(since));
        assert!(held_for.is_some_and(|d| d.as_secs() < 60), "{held_for:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("since {since}, ")), "{msg}");
        assert!(msg.contains(" s ago)"), "{msg}");
    }

    #[test]
    fn an_older_lock_files_raw_epoch_is_shown_as_a_time_with_its_age() {
        let dir = private_tempdir();
        let _held = DirLock::acquire(dir.path()).unwrap();
        // What an older build wrote: raw epoch seconds, one hour ago.
        let hour_ago = now_us() / 1_000_000 - 3_600;
        let mut rec = format!("pid 7 (batpak-host run a.wasm) since {hour_ago}").into_bytes();
        rec.resize(HOLDER_LEN - 1, b' ');
        rec.push(b'\n');
        std::fs::write(dir.path().join("LOCK"), &rec).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err().to_string();
        let want = format!(
            "(pid 7 (batpak-host run a.wasm) since {}, 1 h 0 min ago)",
            iso_utc(hour_ago)
        );
        assert!(err.contains(&want), "{err}");
    }

    #[test]
    fn iso_times_round_trip_and_match_known_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_796_515_200), "2026-12-06T00:00:00Z");
        for s in [0, 951_782_399, 1_796_605_831, 4_102_444_800] {
            assert_eq!(parse_iso_utc(&iso_utc(s)), Some(s));
        }
    }
}
