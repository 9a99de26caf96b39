//! Frames on the control socket of a running service, and the same bytes
//! as a reply the client reads. Server side: an input of whole frames goes
//! over one kept connection, one reply read per frame; an input starting
//! with `!` goes as is (broken framing, a cut or oversized frame) over a
//! connection of its own, then the client's half closed; any other input
//! is request bodies, one per line, framed and sent over the kept
//! connection. Every reply must be a frame holding a `Reply`. Client side: the input read frame by frame as
//! `Client` reads replies (`read_frame`, then the `Reply` JSON).

use crate::service::{fixture, PATIENCE};
use batpak_service::{read_frame, write_frame, Op, Query, Reply, Request, PROTOCOL_VERSION};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

/// Longest frame sent on the kept connection (longer ones go through a
/// connection of their own, where the service may refuse them).
const KEEP_FRAME: usize = 1 << 20;

/// Feeds one input.
pub fn run(data: &[u8]) {
    // The client's decoder on the input itself.
    let mut r = data;
    while let Ok(frame) = read_frame(&mut r) {
        let _ = serde_json::from_slice::<Reply>(&frame);
    }
    if let Some(frames) = whole_frames(data) {
        return on_kept_connection(&frames);
    }
    if let Some(raw) = data.strip_prefix(b"!") {
        return on_own_connection(raw);
    }
    // Anything else is request bodies, one per line, framed here: the
    // fuzzer mutates the JSON without breaking the framing each time.
    let framed: Vec<Vec<u8>> = data
        .split(|&b| b == b'\n')
        .map(|body| {
            let mut f = Vec::with_capacity(4 + body.len());
            write_frame(&mut f, body).expect("writing to a Vec");
            f
        })
        .collect();
    on_kept_connection(&framed.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

/// `data` split into frames, if it is whole frames of at most
/// [`KEEP_FRAME`] bytes.
fn whole_frames(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        if len > KEEP_FRAME || data.len() < 4 + len {
            return None;
        }
        out.push(&data[..4 + len]);
        data = &data[4 + len..];
    }
    Some(out)
}

/// Sends whole frames on one connection kept from input to input (the
/// service accepts a new connection only every few tens of milliseconds),
/// reading one reply per frame.
fn on_kept_connection(frames: &[&[u8]]) {
    static KEPT: Mutex<Option<UnixStream>> = Mutex::new(None);
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    for frame in frames {
        if kept.is_none() {
            let s = UnixStream::connect(&fixture().socket)
                .expect("connecting to the fuzz service's socket");
            s.set_read_timeout(Some(PATIENCE)).expect("a read timeout");
            *kept = Some(s);
        }
        let s = kept.as_mut().expect("connected");
        let answered = s.write_all(frame).is_ok() && {
            match read_frame(s) {
                Ok(reply) => {
                    serde_json::from_slice::<Reply>(&reply)
                        .expect("the service wrote a frame that is no Reply");
                    true
                }
                // Closed (a frame the service refuses ends the
                // connection), or a read waiting for events: start over.
                Err(_) => false,
            }
        };
        if !answered {
            *kept = None;
        }
    }
}

/// Sends `data` on a connection of its own, then closes the sending half:
/// broken framing, a cut frame, an oversized length.
fn on_own_connection(data: &[u8]) {
    let f = fixture();
    let mut s = UnixStream::connect(&f.socket).expect("connecting to the fuzz service's socket");
    s.set_read_timeout(Some(PATIENCE)).expect("a read timeout");
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
        Err(e) => panic!("reading the service's replies: {e}"),
    }
    // What the service wrote is whole frames of replies.
    let mut r = &out[..];
    while !r.is_empty() {
        let frame = read_frame(&mut r).expect("the service wrote a broken frame");
        serde_json::from_slice::<Reply>(&frame)
            .expect("the service wrote a frame that is no Reply");
    }
}

fn frames(ops: Vec<Op>) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        let body = serde_json::to_vec(&Request {
            v: PROTOCOL_VERSION,
            op,
        })
        .expect("a request serializes");
        write_frame(&mut out, &body).expect("writing to a Vec");
    }
    out
}

/// Real requests as the CLI sends them: each operation, a read with a
/// query, an append, a bulk transaction, a bad version.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let event: batpak_service::NewEvent = serde_json::from_str(
        r#"{"entity":"order:1","scope":"shop","kind":"order.placed","payload":{"q":1},"idempotency_key":"s1"}"#,
    )
    .expect("an event");
    let read = Query {
        kinds: vec!["order.placed".into()],
        entity_prefix: Some("order:".into()),
        limit: Some(10),
        ..Query::default()
    };
    let mut bad_version = Vec::new();
    write_frame(&mut bad_version, br#"{"v":99,"op":"ping"}"#).expect("writing to a Vec");
    vec![
        ("ping".into(), frames(vec![Op::Ping])),
        ("status-verify".into(), frames(vec![Op::Status, Op::Verify])),
        (
            "append".into(),
            frames(vec![Op::Append {
                events: vec![event.clone()],
            }]),
        ),
        ("read".into(), frames(vec![Op::Read(read)])),
        (
            "bulk".into(),
            frames(vec![
                Op::BulkPart {
                    events: vec![event],
                },
                Op::BulkCommit,
            ]),
        ),
        (
            "operator".into(),
            frames(vec![
                Op::Pause { name: "r".into() },
                Op::Parked { plugin: None },
                Op::ParkedReplay {
                    plugin: Some("r".into()),
                    event: None,
                },
            ]),
        ),
        ("bad-version".into(), bad_version),
        ("short-prefix".into(), b"!\0\0".to_vec()),
        ("cut-frame".into(), b"!\0\0\0\x10{\"v\":1".to_vec()),
        (
            "lines".into(),
            b"{\"v\":1,\"op\":\"ping\"}\n{\"v\":1,\"op\":{\"read\":{\"kinds\":[\"order.placed\"],\"limit\":5}}}\n{\"v\":1,\"op\":{\"pause\":{\"name\":\"x\"}}}".to_vec(),
        ),
    ]
}
