//! Frames on the control socket of a running service, and the same bytes
//! as a reply the client reads. Server side: one connection per input, the
//! input sent as is, then the client's half closed; every reply must be a
//! frame holding a `Reply`. Client side: the input read frame by frame as
//! `Client` reads replies (`read_frame`, then the `Reply` JSON).

use crate::service::{fixture, PATIENCE};
use batpak_service::{read_frame, write_frame, Op, Query, Reply, Request, PROTOCOL_VERSION};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// Feeds one connection's bytes.
pub fn run(data: &[u8]) {
    // The client's decoder on the input itself.
    let mut r = data;
    while let Ok(frame) = read_frame(&mut r) {
        let _ = serde_json::from_slice::<Reply>(&frame);
    }
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
        serde_json::from_slice::<Reply>(&frame).expect("the service wrote a frame that is no Reply");
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
        ("short-prefix".into(), vec![0, 0]),
    ]
}
