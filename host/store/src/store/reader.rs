//! A lock-free, read-only view of a store directory, for tools that inspect
//! a log while another process owns it (`batpak-host events`, `--follow`).
//!
//! It reads segment files directly, frame by frame, checking each frame's
//! CRC and each event's hash. A bad frame is an error naming segment and
//! offset when anything shows it was complete — an intact frame after it, a
//! later segment, or the durable marker covering it. Only an incomplete
//! frame at the very end of the log, beyond the marker, may be a write in
//! progress: the reader stops before it, reports it in
//! [`LogReader::incomplete_tail`], and reads it again on the next poll.

use super::disk::OsDisk;
use super::durable_mark;
use super::frame::decode_frame;
use super::recovery::{check_shape, intact_frame_after};
use super::segment::{
    check_segment_header, decode_batch, decode_header, list_segments, segment_path, SEGMENT_HEADER,
};
use super::StoreError;
use crate::event::{hash_encoded, Event};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads events straight from the segment files, without taking the lock.
pub struct LogReader {
    dir: PathBuf,
    seg_dir: PathBuf,
    segment: u32,
    offset: u64,
    tail: Option<(u32, u64)>,
    store_id: Option<u128>,
    /// Damage found after some events of the same poll: those are returned
    /// first, the error on the next poll.
    deferred: Option<StoreError>,
}

impl LogReader {
    /// A reader positioned at the start of the log in `dir`.
    ///
    /// # Errors
    /// The directory holds no store, or its segment files are not 1, 2, …
    /// without gaps ([`StoreError::Corrupt`]).
    pub fn open(dir: &Path) -> Result<LogReader, StoreError> {
        let seg_dir = dir.join("segments");
        let segs = list_segments(&OsDisk, &seg_dir).map_err(|_| StoreError::Io {
            context: format!("reading store {}", dir.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no store here (no segments directory); append an event first or pass the right --data",
            ),
        })?;
        check_shape(&segs, durable_mark::read(&OsDisk, dir))?;
        Ok(LogReader {
            dir: dir.to_path_buf(),
            seg_dir,
            segment: 1,
            offset: SEGMENT_HEADER,
            tail: None,
            store_id: None,
            deferred: None,
        })
    }

    /// Where the last poll stopped before an incomplete frame at the end of
    /// the log: `(segment, offset)`. `None` when the log ended cleanly. A
    /// writer may still be completing it; if it stays, it is a torn write
    /// the next open of the store will cut.
    pub fn incomplete_tail(&self) -> Option<(u32, u64)> {
        self.tail
    }

    /// Every complete event written since the last call (at most about
    /// `max_bytes` of frames per call; call again for more).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming segment and offset for damage anywhere
    /// but an incomplete last frame; I/O.
    pub fn poll(&mut self, max_bytes: usize) -> Result<Vec<Event>, StoreError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let mut out = Vec::new();
        match self.poll_into(max_bytes, &mut out) {
            Ok(()) => Ok(out),
            // Hand out the intact events before the damage first.
            Err(e) if !out.is_empty() => {
                self.deferred = Some(e);
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    fn poll_into(&mut self, max_bytes: usize, out: &mut Vec<Event>) -> Result<(), StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        self.tail = None;
        loop {
            let path = segment_path(&self.seg_dir, self.segment);
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(_) => return Ok(()),
            };
            let len = f
                .metadata()
                .map(|m| m.len())
                .map_err(StoreError::io(format!("reading {}", path.display())))?;
            let next_exists = segment_path(&self.seg_dir, self.segment + 1).exists();
            if self.offset == SEGMENT_HEADER {
                let mut h = vec![0u8; SEGMENT_HEADER as usize];
                if f.read_exact(&mut h).is_err() {
                    if next_exists {
                        return Err(StoreError::Corrupt {
                            segment: self.segment,
                            offset: 0,
                            reason: "segment header is truncated".into(),
                        });
                    }
                    return Ok(());
                }
                let id = check_segment_header(&h, self.segment).map_err(|reason| {
                    StoreError::Corrupt {
                        segment: self.segment,
                        offset: 0,
                        reason,
                    }
                })?;
                if *self.store_id.get_or_insert(id) != id {
                    return Err(StoreError::Corrupt {
                        segment: self.segment,
                        offset: 0,
                        reason: "segment belongs to another store (store id differs)".into(),
                    });
                }
            }
            let want =
                (len.saturating_sub(self.offset) as usize).min(max_bytes.max(1 << 20) + (64 << 20));
            let mut buf = vec![0u8; want];
            f.seek(SeekFrom::Start(self.offset))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(StoreError::io(format!("reading {}", path.display())))?;
            let reaches_end = self.offset + buf.len() as u64 >= len;
            let mut pos = 0usize;
            while pos < buf.len() {
                let at = self.offset + pos as u64;
                let corrupt = |reason| StoreError::Corrupt {
                    segment: self.segment,
                    offset: at,
                    reason,
                };
                match decode_frame(&buf[pos..]) {
                    Ok((body, total)) => {
                        for ev in decode_batch(body).map_err(corrupt)? {
                            let header = decode_header(ev.header_bytes).map_err(corrupt)?;
                            if hash_encoded(ev.header_bytes, ev.payload) != ev.hash {
                                return Err(corrupt(format!(
                                    "event {} does not match its hash: its bytes changed after it was written",
                                    header.id
                                )));
                            }
                            out.push(Event {
                                header: Arc::new(header),
                                payload: Arc::from(ev.payload),
                                hash: ev.hash,
                            });
                        }
                        pos += total;
                        if pos >= max_bytes {
                            self.offset += pos as u64;
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        if !reaches_end {
                            // Our read window ended mid-frame: resume here.
                            break;
                        }
                        // Read while the writer was still writing it: the
                        // file has grown since its length was taken, and the
                        // marker (or a later segment) read now may already
                        // cover the frame. Not damage: read it next poll.
                        let grown = std::fs::metadata(&path).is_ok_and(|m| m.len() > len);
                        if grown {
                            self.offset += pos as u64;
                            return Ok(());
                        }
                        let marker = durable_mark::read(&OsDisk, &self.dir);
                        let acked = marker.is_some_and(|(ms, mo)| {
                            self.segment < ms || (self.segment == ms && at < mo)
                        });
                        let why = if next_exists {
                            Some("a later segment exists")
                        } else if acked {
                            Some("the durable marker says it was acknowledged")
                        } else if intact_frame_after(&buf[pos + 1..]) {
                            Some("intact data follows it")
                        } else {
                            None
                        };
                        if let Some(why) = why {
                            return Err(corrupt(format!(
                                "{e}; {why}, so this is damage, not a write in progress"
                            )));
                        }
                        self.tail = Some((self.segment, at));
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
            return Ok(());
        }
    }
}
