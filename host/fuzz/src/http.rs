//! Bytes on the HTTP port of a running service: one connection per input,
//! the input sent as is, then the client's half closed. Checks: no panic
//! anywhere in the service (libFuzzer aborts on one in any thread), and
//! whatever the service answers starts as an HTTP/1.1 response.

use crate::service::{fixture, PATIENCE, TOKEN};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};

/// Feeds one connection's bytes.
pub fn run(data: &[u8]) {
    let out = exchange(data);
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 "),
        "not an HTTP response: {:?}",
        String::from_utf8_lossy(&out[..out.len().min(200)])
    );
}

/// Sends `data` on a new connection, closes the sending half, and returns
/// what the service answered (within [`PATIENCE`]).
pub fn exchange(data: &[u8]) -> Vec<u8> {
    let f = fixture();
    let mut s = TcpStream::connect(f.http).expect("connecting to the fuzz service");
    s.set_read_timeout(Some(PATIENCE)).expect("a read timeout");
    // The service may answer and close before reading everything.
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        // A read that waits for events, or a follow stream: the client
        // leaves, which the service must notice.
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the service's answer: {e}"),
    }
    out
}

fn request(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// Real requests: every route, with and without the token, bodies by
/// length and chunked, percent-encoded queries, two requests on one
/// connection.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let auth = auth.as_str();
    let body = br#"[{"entity":"order:1","scope":"shop","kind":"order.placed","payload":{"q":1}}]"#;
    let one = br#"{"entity":"order:2","scope":"shop","kind":"order.paid","payload":{"n":12345678901234567890123456789},"idempotency_key":"k1"}"#;
    let cl = |b: &[u8]| format!("Content-Length: {}", b.len());
    let mut chunked = request(
        "POST",
        "/v1/events",
        &[auth, "Transfer-Encoding: chunked"],
        b"",
    );
    chunked.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    chunked.extend_from_slice(body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut two = request("GET", "/v1/health", &[], b"");
    two.extend(request(
        "GET",
        "/metrics",
        &[auth, "Connection: close"],
        b"",
    ));
    vec![
        ("health".into(), request("GET", "/v1/health", &[], b"")),
        ("metrics".into(), request("GET", "/metrics", &[auth], b"")),
        (
            "metrics-no-token".into(),
            request("GET", "/metrics", &[], b""),
        ),
        (
            "read-no-token".into(),
            request("GET", "/v1/events", &[], b""),
        ),
        (
            "append".into(),
            request("POST", "/v1/events", &[auth, &cl(body)], body),
        ),
        (
            "append-one".into(),
            request("POST", "/v1/events", &[auth, &cl(one)], one),
        ),
        ("append-chunked".into(), chunked),
        (
            "read-query".into(),
            request(
                "GET",
                "/v1/events?kind=order.placed&entity_prefix=order%3A&after=0&limit=10",
                &[auth],
                b"",
            ),
        ),
        (
            "read-scope".into(),
            request(
                "GET",
                "/v1/events?scope=sh%6Fp&kind=order.placed&kind=order.paid&system=true&id=&caused_by=0123456789abcdef0123456789abcdef",
                &[auth],
                b"",
            ),
        ),
        (
            "read-plus".into(),
            request("GET", "/v1/events?entity=order%3a1+x&correlation=%zz", &[auth], b""),
        ),
        ("reactors".into(), request("GET", "/v1/reactors", &[auth], b"")),
        (
            "follow-bad-method".into(),
            request("DELETE", "/v1/events/follow", &[auth], b""),
        ),
        (
            "http10".into(),
            b"GET /v1/health HTTP/1.0\r\n\r\n".to_vec(),
        ),
        ("keep-alive-two".into(), two),
    ]
}
