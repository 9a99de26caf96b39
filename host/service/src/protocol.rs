//! The control channel's wire format: length-prefixed frames of JSON.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of
//! UTF-8 JSON. Every request and every reply carries the protocol version
//! `v`, so a client and a host of different releases refuse each other with
//! a clear message instead of misreading each other. New operations (issue
//! 11's `swap` is already reserved) are new variants of [`Op`]; a host that
//! does not know one answers [`crate::ErrorCode::BadRequest`] and keeps serving.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;

use crate::operator::ResetTo;
use crate::query::{NewEvent, Query};
use crate::wire_error::WireError;

/// The version every frame carries.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts (requests and replies). An append
/// batch is bounded by the store's own frame limit well below this.
pub const MAX_FRAME: usize = 64 << 20;

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Is anyone there? Replies with the host's pid and data directory.
    Ping,
    /// Append a batch atomically; replies once it is durable.
    Append {
        /// The events, in order.
        events: Vec<NewEvent>,
    },
    /// Read events (one page; `wait_ms` long-polls for `--follow`).
    Read(Query),
    /// Verify the store the host holds.
    Verify,
    /// Every reactor's state.
    Status,
    /// Stop a reactor at a batch boundary, keeping its position.
    Pause {
        /// Reactor name.
        name: String,
    },
    /// Start a paused reactor again from its checkpoint.
    Resume {
        /// Reactor name.
        name: String,
    },
    /// Move a paused reactor's checkpoint.
    Reset {
        /// Reactor name.
        name: String,
        /// Where to.
        to: ResetTo,
    },
    /// Unresolved parked events.
    Parked {
        /// Only this reactor's.
        #[serde(default)]
        plugin: Option<String>,
    },
    /// Ask for parked events to be re-delivered.
    ParkedReplay {
        /// Only this reactor's.
        #[serde(default)]
        plugin: Option<String>,
        /// Only this parked event (32 hex digits).
        #[serde(default)]
        event: Option<String>,
    },
    /// Append `events` as the next part of this connection's bulk
    /// transaction (the first part opens it; control socket only). Nothing
    /// of it counts before [`Op::BulkCommit`]; a refused part, or the
    /// connection closing first, abandons it (nothing kept). While it is
    /// open every other append of the host waits. Replies with the part's
    /// receipts.
    BulkPart {
        /// The events, in order.
        events: Vec<NewEvent>,
    },
    /// Commit this connection's bulk transaction; replies
    /// `{"appended": N}` once it is durable.
    BulkCommit,
    /// Reserved for hot swap (issue 11): load FILE and swap it in for NAME.
    Swap {
        /// Reactor name.
        name: String,
        /// The new component.
        file: PathBuf,
    },
}

/// A request frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// The operation.
    pub op: Op,
}

/// A reply frame: `ok` or `error`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Protocol version.
    pub v: u32,
    /// The result on success, as its JSON text: a read's events carry
    /// their payloads' stored bytes through it unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Box<serde_json::value::RawValue>>,
    /// The error on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

impl Reply {
    /// A reply for `result`.
    pub fn from_result(result: Result<Box<serde_json::value::RawValue>, WireError>) -> Reply {
        match result {
            Ok(v) => Reply {
                v: PROTOCOL_VERSION,
                ok: Some(v),
                error: None,
            },
            Err(e) => Reply {
                v: PROTOCOL_VERSION,
                ok: None,
                error: Some(e),
            },
        }
    }
}

/// Reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The length prefix announces more than [`MAX_FRAME`].
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME} bytes")]
    TooLarge(usize),
    /// An I/O error or timeout (also a peer that stops mid-frame).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes one frame.
///
/// # Errors
/// The body exceeds [`MAX_FRAME`] or the write failed.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes is larger than the limit of {MAX_FRAME} bytes",
                body.len()
            ),
        ));
    }
    let len = u32::try_from(body.len()).expect("MAX_FRAME fits u32");
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame.
///
/// # Errors
/// See [`FrameReadError`].
pub fn read_frame(r: &mut impl Read) -> Result<Vec<u8>, FrameReadError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameReadError::Closed),
            Ok(0) => {
                return Err(FrameReadError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a frame's length prefix",
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameReadError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameReadError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_prefixes_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"v\":1,\"op\":\"ping\"}").unwrap();
        let body = read_frame(&mut &buf[..]).unwrap();
        let req: Request = serde_json::from_slice(&body).unwrap();
        assert_eq!(req.op, Op::Ping);
        let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(FrameReadError::TooLarge(_))
        ));
        assert!(matches!(
            read_frame(&mut &[][..]),
            Err(FrameReadError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0][..]),
            Err(FrameReadError::Io(_))
        ));
    }

    #[test]
    fn unknown_fields_and_ops_are_refused() {
        assert!(serde_json::from_str::<Request>(r#"{"v":1,"op":"ping","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"v":1,"op":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Request>(
            r#"{"v":1,"op":{"append":{"events":[{"entity":"e","scope":"s","kind":"k","x":1}]}}}"#
        )
        .is_err());
    }
}
