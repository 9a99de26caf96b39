//! A lock-free, read-only view of a store directory, for tools that inspect
//! a log while another process owns it (`batpak-host events`, `--follow`).
//!
//! It reads segment files directly, frame by frame. An incomplete or damaged
//! frame at the end of the last segment is treated as "not written yet" and
//! read again on the next poll; damage anywhere else is an error.

use super::frame::decode_frame;
use super::segment::{
    check_segment_header, decode_batch, decode_header, list_segments, segment_path, SEGMENT_HEADER,
};
use super::StoreError;
use crate::event::Event;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads events straight from the segment files, without taking the lock.
pub struct LogReader {
    seg_dir: PathBuf,
    segment: u32,
    offset: u64,
}

impl LogReader {
    /// A reader positioned at the start of the log in `dir`.
    ///
    /// # Errors
    /// The directory holds no store.
    pub fn open(dir: &Path) -> Result<LogReader, StoreError> {
        let seg_dir = dir.join("segments");
        let segs = list_segments(&seg_dir).map_err(|_| StoreError::Io {
            context: format!("reading store {}", dir.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no store here (no segments directory); append an event first or pass the right --data",
            ),
        })?;
        Ok(LogReader {
            seg_dir,
            segment: segs.first().copied().unwrap_or(1),
            offset: SEGMENT_HEADER,
        })
    }

    /// Every complete event written since the last call (at most about
    /// `max_bytes` of frames per call; call again for more).
    ///
    /// # Errors
    /// Damage before the end of the log, or I/O.
    pub fn poll(&mut self, max_bytes: usize) -> Result<Vec<Event>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut out = Vec::new();
        loop {
            let path = segment_path(&self.seg_dir, self.segment);
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(_) => return Ok(out),
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let next_exists = segment_path(&self.seg_dir, self.segment + 1).exists();
            if self.offset == SEGMENT_HEADER {
                let mut h = vec![0u8; SEGMENT_HEADER as usize];
                if f.read_exact(&mut h).is_err() {
                    return Ok(out);
                }
                check_segment_header(&h, self.segment).map_err(|reason| StoreError::Corrupt {
                    segment: self.segment,
                    offset: 0,
                    reason,
                })?;
            }
            let want =
                (len.saturating_sub(self.offset) as usize).min(max_bytes.max(1 << 20) + (64 << 20));
            let mut buf = vec![0u8; want];
            f.seek(SeekFrom::Start(self.offset))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(StoreError::io(format!("reading {}", path.display())))?;
            let mut pos = 0usize;
            while pos < buf.len() {
                match decode_frame(&buf[pos..]) {
                    Ok((body, total)) => {
                        let at = self.offset + pos as u64;
                        let corrupt = |reason| StoreError::Corrupt {
                            segment: self.segment,
                            offset: at,
                            reason,
                        };
                        for ev in decode_batch(body).map_err(corrupt)? {
                            let header = decode_header(ev.header_bytes).map_err(corrupt)?;
                            out.push(Event {
                                header: Arc::new(header),
                                payload: Arc::from(ev.payload),
                                hash: ev.hash,
                            });
                        }
                        pos += total;
                        if pos >= max_bytes {
                            self.offset += pos as u64;
                            return Ok(out);
                        }
                    }
                    Err(e) => {
                        if next_exists && (self.offset + buf.len() as u64) >= len {
                            return Err(StoreError::Corrupt {
                                segment: self.segment,
                                offset: self.offset + pos as u64,
                                reason: e.to_string(),
                            });
                        }
                        // Not written completely yet (or our read window
                        // ended mid-frame): resume here next time.
                        break;
                    }
                }
            }
            self.offset += pos as u64;
            if self.offset >= len && next_exists {
                self.segment += 1;
                self.offset = SEGMENT_HEADER;
                continue;
            }
            return Ok(out);
        }
    }
}
