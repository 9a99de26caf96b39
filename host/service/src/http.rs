//! The HTTP API (`run --listen ADDR`): a small HTTP/1.1 server on plain
//! threads. `httparse` parses; the connection loop here owns every bound:
//! header and body sizes, the number of connections, and a deadline for a
//! whole request so a slow client (slowloris) cannot hold a thread.
//!
//! Authentication comes before work: the token is checked on the head, and
//! a request without it is answered 401 and closed before a byte of its
//! body is read. Connections that have not shown the token hold at most
//! [`MAX_UNAUTHENTICATED`] of the [`MAX_HTTP_CONNECTIONS`] slots (the
//! oldest is closed to make room), so token holders always get one; bodies
//! being read share [`MAX_BUFFERED_BODIES`] bytes across connections.
//!
//! Routes (all but `/metrics` need `Authorization: Bearer TOKEN`):
//! - `POST /v1/events`: one event object or an array; durable receipts.
//! - `GET /v1/events?entity=&entity_prefix=&scope=&correlation=&caused_by=&id=&kind=&after=&partition=&limit=&system=`
//!   (`partition`: a cluster's only)
//! - `GET /v1/events/follow?...`: chunked JSON lines, one event per line.
//! - `GET /v1/reactors`: reactor states.
//! - `POST /v1/reactors/NAME/pause`, `POST /v1/reactors/NAME/resume`: as
//!   the `pause` and `resume` commands.
//! - `GET /metrics`: Prometheus text, counts only.
//!
//! What is appended, read and followed is the served log's business
//! ([`crate::ServedLog`]): the embedded store, or a NATS cluster (each event
//! naming its partition; a follow stream then says `Batpak-Order:
//! partition`). Everything here — the token, the bounds — is the same for
//! both.

use crate::dispatch::Ctx;
use crate::protocol::Op;
use crate::query::Query;
use crate::wire_error::{ErrorCode, WireError};
use crate::ServiceError;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most simultaneous HTTP connections; more are answered 503 at once.
pub const MAX_HTTP_CONNECTIONS: usize = 128;
/// Most connections that have not (yet) shown the bearer token — fresh
/// ones, `/metrics` scrapers, refused ones. A new connection beyond it
/// closes the oldest such one, so the other slots stay for token holders.
pub const MAX_UNAUTHENTICATED: usize = 32;
/// Most request-body bytes held in memory across all connections at once;
/// a request whose body does not fit is answered 503 (retry later).
pub const MAX_BUFFERED_BODIES: usize = 64 << 20;
/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 << 10;
/// Largest request body.
pub const MAX_BODY: usize = 16 << 20;
/// A request's head must arrive within this.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// A keep-alive connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(30);

/// One open connection as the accept loop sees it: a clone to shut it down
/// with, and whether it has shown the token.
struct Conn {
    stream: TcpStream,
    authed: Arc<AtomicBool>,
}

/// Open connections by id: ids grow, so the first unauthenticated entry is
/// the oldest.
type Conns = Arc<parking_lot::Mutex<std::collections::BTreeMap<u64, Conn>>>;

pub(crate) struct HttpServer {
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
    conns: Conns,
}

impl HttpServer {
    pub(crate) fn start(
        ctx: Arc<Ctx>,
        addr: SocketAddr,
        token: String,
    ) -> Result<HttpServer, ServiceError> {
        let listener = TcpListener::bind(addr).map_err(|source| ServiceError::Io {
            context: format!("listening on {addr} (--listen)"),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServiceError::Io {
            context: "reading the listening address".into(),
            source,
        })?;
        let conns: Conns = Arc::default();
        let token = Arc::new(token);
        let c2 = conns.clone();
        let thread = std::thread::Builder::new()
            .name("batpak-http".into())
            .spawn(move || accept_loop(listener, ctx, token, c2))
            .map_err(|source| ServiceError::Io {
                context: "starting the HTTP thread".into(),
                source,
            })?;
        Ok(HttpServer {
            addr,
            thread: Some(thread),
            conns,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn stop(&mut self) {
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (_, c) in std::mem::take(&mut *self.conns.lock()) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Makes room for a new connection: closes the oldest connection that has
/// not shown the token when [`MAX_UNAUTHENTICATED`] of them are open, or
/// when every slot is taken. `false` when every slot is taken by token
/// holders.
fn make_room(conns: &Conns, active: usize) -> bool {
    let mut map = conns.lock();
    let unauth = map
        .values()
        .filter(|c| !c.authed.load(Ordering::SeqCst))
        .count();
    if unauth < MAX_UNAUTHENTICATED && active < MAX_HTTP_CONNECTIONS {
        return true;
    }
    let oldest = map
        .iter()
        .find(|(_, c)| !c.authed.load(Ordering::SeqCst))
        .map(|(id, _)| *id);
    match oldest {
        Some(id) => {
            if let Some(c) = map.remove(&id) {
                // Its thread sees EOF within a tick and gives the slot back.
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
            true
        }
        None => active < MAX_HTTP_CONNECTIONS,
    }
}

fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, token: Arc<String>, conns: Conns) {
    let active = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(AtomicUsize::new(0));
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if ctx.stopping() {
            break;
        }
        let Ok(mut stream) = stream else { continue };
        // One past the cap while an evicted connection's thread winds down.
        if !make_room(&conns, active.load(Ordering::SeqCst))
            || active.load(Ordering::SeqCst) > MAX_HTTP_CONNECTIONS
        {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = respond(
                &mut stream,
                503,
                "application/json",
                &error_body(ErrorCode::Busy, "too many connections; retry later"),
                false,
            );
            continue;
        }
        // A clone lets `stop` shut the connection down; it is removed when
        // the connection ends, or the client would never see EOF.
        let id = next_id;
        next_id += 1;
        let authed = Arc::new(AtomicBool::new(false));
        if let Ok(c) = stream.try_clone() {
            conns.lock().insert(
                id,
                Conn {
                    stream: c,
                    authed: authed.clone(),
                },
            );
        }
        active.fetch_add(1, Ordering::SeqCst);
        ctx.metrics.http_connections.fetch_add(1, Ordering::Relaxed);
        let (ctx2, token2, active2, conns2, bodies2) = (
            ctx.clone(),
            token.clone(),
            active.clone(),
            conns.clone(),
            bodies.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("batpak-http-conn".into())
            .spawn(move || {
                let conn = ConnState {
                    authed,
                    bodies: bodies2,
                };
                serve(stream, &ctx2, &token2, &conn);
                conns2.lock().remove(&id);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            conns.lock().remove(&id);
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn error_body(code: ErrorCode, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": { "code": code, "message": message } }))
        .expect("serialises")
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(
    s: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        status_text(code),
        body.len()
    );
    if code == 401 {
        head.push_str("WWW-Authenticate: Bearer realm=\"batpak-host\"\r\n");
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    // Head and body written apart: a large body is never copied.
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

fn http_code(e: &WireError) -> u16 {
    match e.code {
        ErrorCode::BadRequest | ErrorCode::Version => 400,
        ErrorCode::TooLarge => 413,
        ErrorCode::Conflict | ErrorCode::IdempotencyConflict | ErrorCode::Refused => 409,
        ErrorCode::NotFound => 404,
        ErrorCode::Unsupported => 501,
        ErrorCode::Busy => 503,
        ErrorCode::Unauthorized => 401,
        ErrorCode::Store => 500,
    }
}

struct Head {
    method: String,
    path: String,
    query: String,
    auth: Option<String>,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
    body_start: Vec<u8>,
}

enum HeadError {
    Closed,
    Respond(u16, ErrorCode, String),
}

/// A head that stopped arriving: nothing to answer when no byte came (an
/// idle keep-alive connection), else a 408.
fn head_timed_out(buf: &[u8]) -> HeadError {
    if buf.is_empty() {
        HeadError::Closed
    } else {
        HeadError::Respond(
            408,
            ErrorCode::BadRequest,
            format!(
                "the request head did not arrive within {} s",
                HEAD_DEADLINE.as_secs()
            ),
        )
    }
}

/// Reads a request head within [`HEAD_DEADLINE`] (the first byte may take
/// up to [`IDLE`] on a kept-alive connection).
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Head, HeadError> {
    let started = Instant::now();
    let mut deadline = started + IDLE;
    let mut chunk = [0u8; 4096];
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    if n > MAX_HEAD {
                        return Err(HeadError::Respond(
                            431,
                            ErrorCode::TooLarge,
                            format!("request head of {n} bytes is larger than the limit of {MAX_HEAD} bytes"),
                        ));
                    }
                    let target = req.path.unwrap_or("/").to_string();
                    let (path, query) = match target.split_once('?') {
                        Some((p, q)) => (p.to_string(), q.to_string()),
                        None => (target, String::new()),
                    };
                    let mut h = Head {
                        method: req.method.unwrap_or("").to_string(),
                        path,
                        query,
                        auth: None,
                        content_length: None,
                        chunked: false,
                        close: req.version == Some(0),
                        body_start: buf[n..].to_vec(),
                    };
                    for hd in req.headers.iter() {
                        let v = String::from_utf8_lossy(hd.value).trim().to_string();
                        match hd.name.to_ascii_lowercase().as_str() {
                            "authorization" => h.auth = Some(v),
                            "content-length" if h.content_length.is_some() => {
                                return Err(HeadError::Respond(
                                    400,
                                    ErrorCode::BadRequest,
                                    "more than one Content-Length header; send exactly one".into(),
                                ))
                            }
                            "content-length" => {
                                h.content_length = Some(v.parse().map_err(|_| {
                                    HeadError::Respond(
                                        400,
                                        ErrorCode::BadRequest,
                                        format!("Content-Length {v:?} is not a number"),
                                    )
                                })?)
                            }
                            "transfer-encoding" => h.chunked = true,
                            "connection" => {
                                let v = v.to_ascii_lowercase();
                                if v.contains("close") {
                                    h.close = true;
                                } else if v.contains("keep-alive") {
                                    h.close = false;
                                }
                            }
                            _ => {}
                        }
                    }
                    return Ok(h);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    return Err(HeadError::Respond(
                        400,
                        ErrorCode::BadRequest,
                        format!("malformed HTTP request: {e}"),
                    ))
                }
            }
            if buf.len() > MAX_HEAD {
                return Err(HeadError::Respond(
                    431,
                    ErrorCode::TooLarge,
                    format!("request head larger than {MAX_HEAD} bytes"),
                ));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(head_timed_out(buf));
        }
        // The socket's read timeout is a short tick set once per connection;
        // the deadline is checked here, so no syscall per request for it.
        match s.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => {
                if buf.is_empty() {
                    // The request started: the whole head now has a deadline.
                    deadline = Instant::now() + HEAD_DEADLINE;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if is_tick(&e) => {}
            Err(_) => return Err(head_timed_out(buf)),
        }
    }
}

/// Granularity of the request deadlines: reads wake at least this often.
const TICK: Duration = Duration::from_millis(250);

/// A read that ended for the tick (or a signal), not for the connection.
fn is_tick(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
    )
}

/// What a connection's thread shares with the accept loop and the others.
struct ConnState {
    /// Set once the connection has shown the token: it then no longer
    /// counts against [`MAX_UNAUTHENTICATED`].
    authed: Arc<AtomicBool>,
    /// Body bytes held across all connections ([`MAX_BUFFERED_BODIES`]).
    bodies: Arc<AtomicUsize>,
}

/// A share of [`MAX_BUFFERED_BODIES`], given back when dropped.
struct BodyBudget<'a> {
    used: &'a AtomicUsize,
    n: usize,
}

impl<'a> BodyBudget<'a> {
    fn take(used: &'a AtomicUsize, n: usize) -> Option<BodyBudget<'a>> {
        used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
            u.checked_add(n).filter(|t| *t <= MAX_BUFFERED_BODIES)
        })
        .ok()
        .map(|_| BodyBudget { used, n })
    }
}

impl Drop for BodyBudget<'_> {
    fn drop(&mut self) {
        self.used.fetch_sub(self.n, Ordering::SeqCst);
    }
}

fn serve(mut s: TcpStream, ctx: &Ctx, token: &str, conn: &ConnState) {
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_read_timeout(Some(TICK));
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        if ctx.stopping() {
            return;
        }
        let head = match read_head(&mut s, &mut buf) {
            Ok(h) => h,
            Err(HeadError::Closed) => return,
            Err(HeadError::Respond(code, ec, msg)) => {
                ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                let _ = respond(
                    &mut s,
                    code,
                    "application/json",
                    &error_body(ec, &msg),
                    false,
                );
                return;
            }
        };
        buf.clear();
        // The token is checked on the head: a request without it is
        // answered and the connection closed before a body byte is read.
        let authed = authorized(&head, token);
        if authed {
            conn.authed.store(true, Ordering::SeqCst);
        } else if head.path.starts_with("/v1/") {
            unauthorized(&mut s, ctx, false);
            return;
        }
        if head.chunked {
            let _ = respond(
                &mut s,
                411,
                "application/json",
                &error_body(
                    ErrorCode::BadRequest,
                    "chunked request bodies are not accepted; send Content-Length",
                ),
                false,
            );
            return;
        }
        let len = head.content_length.unwrap_or(0);
        if len > MAX_BODY {
            ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
            let _ = respond(&mut s, 413, "application/json", &error_body(ErrorCode::TooLarge, &format!("body of {len} bytes is larger than the limit of {MAX_BODY} bytes; split the batch")), false);
            return;
        }
        // Only a token holder's body is ever read (no route without a
        // token takes one): answer the rest and close, unread.
        let read_body = authed && len > 0;
        let _budget = if read_body {
            match BodyBudget::take(&conn.bodies, len) {
                Some(b) => Some(b),
                None => {
                    ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = respond(&mut s, 503, "application/json", &error_body(ErrorCode::Busy, &format!("the host already holds {MAX_BUFFERED_BODIES} bytes of request bodies; retry later")), false);
                    return;
                }
            }
        } else {
            None
        };
        let mut body = Vec::new();
        if read_body {
            body = head.body_start.clone();
            if body.len() > len {
                // Pipelined bytes belong to the next request.
                buf = body.split_off(len);
            }
            body.reserve_exact(len - body.len());
            let body_deadline =
                Instant::now() + HEAD_DEADLINE + Duration::from_millis((len / 1024) as u64);
            let mut chunk = vec![0u8; (64 << 10).min(len)];
            let mut timed_out = false;
            while body.len() < len {
                let now = Instant::now();
                if now >= body_deadline {
                    timed_out = true;
                    break;
                }
                let want = (len - body.len()).min(chunk.len());
                match s.read(&mut chunk[..want]) {
                    Ok(0) => return,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                    Err(e) if is_tick(&e) => {}
                    Err(_) => {
                        timed_out = true;
                        break;
                    }
                }
            }
            if timed_out {
                ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                let _ = respond(
                    &mut s,
                    408,
                    "application/json",
                    &error_body(
                        ErrorCode::BadRequest,
                        "the request body did not arrive in time",
                    ),
                    false,
                );
                return;
            }
        } else if head.body_start.len() > len {
            buf = head.body_start[len..].to_vec();
        }
        // A body left unread ends the connection after the answer.
        let keep = !head.close && (read_body || len == 0);
        if head.method == "GET" && head.path == "/v1/events/follow" {
            follow(&mut s, ctx, &head);
            return;
        }
        let (code, ctype, out) = route(ctx, token, &head, &body);
        drop(body);
        if respond(&mut s, code, ctype, &out, keep).is_err() || !keep {
            return;
        }
    }
}

fn authorized(head: &Head, token: &str) -> bool {
    let Some(a) = &head.auth else { return false };
    let Some(given) = a.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant time in the token's length: no early exit on a mismatch.
    let (g, t) = (given.trim().as_bytes(), token.as_bytes());
    g.len() == t.len() && g.iter().zip(t).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(s: &mut TcpStream, ctx: &Ctx, keep: bool) {
    ctx.metrics
        .http_unauthorized
        .fetch_add(1, Ordering::Relaxed);
    let _ = respond(s, 401, "application/json", &error_body(ErrorCode::Unauthorized, "missing or wrong bearer token: send `Authorization: Bearer $(cat TOKEN_FILE)` (the token file's path is printed when `run --listen` starts)"), keep);
}

fn json_result(
    ctx: &Ctx,
    r: Result<Box<serde_json::value::RawValue>, WireError>,
) -> (u16, &'static str, Vec<u8>) {
    match r {
        Ok(v) => (200, "application/json", v.get().as_bytes().to_vec()),
        Err(e) => {
            ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
            (
                http_code(&e),
                "application/json",
                error_body(e.code, &e.message),
            )
        }
    }
}

fn route(ctx: &Ctx, token: &str, head: &Head, body: &[u8]) -> (u16, &'static str, Vec<u8>) {
    match (head.method.as_str(), head.path.as_str()) {
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            ctx.metrics_text().into_bytes(),
        ),
        (_, p) if p.starts_with("/v1/") && !authorized(head, token) => {
            ctx.metrics
                .http_unauthorized
                .fetch_add(1, Ordering::Relaxed);
            (401, "application/json", error_body(ErrorCode::Unauthorized, "missing or wrong bearer token: send `Authorization: Bearer $(cat TOKEN_FILE)` (the token file's path is printed when `run --listen` starts)"))
        }
        ("POST", "/v1/events") => {
            // Payloads kept as sent, duplicate keys refused (query.rs).
            let events = crate::query::parse_events(body);
            json_result(
                ctx,
                events.and_then(|events| ctx.dispatch(Op::Append { events })),
            )
        }
        ("GET", "/v1/events") => {
            let r = parse_query(&head.query).and_then(|q| ctx.dispatch(Op::Read(q)));
            json_result(ctx, r)
        }
        ("GET", "/v1/reactors") => json_result(ctx, ctx.dispatch(Op::Status)),
        (method, p) if reactor_action(p).is_some() => {
            let (name, action) = reactor_action(p).expect("matched");
            if method != "POST" {
                return (
                    405,
                    "application/json",
                    error_body(
                        ErrorCode::BadRequest,
                        &format!("{method} is not allowed on {p}; use POST"),
                    ),
                );
            }
            let r = percent_decode(name).and_then(|name| {
                ctx.dispatch(if action == "pause" {
                    Op::Pause { name }
                } else {
                    Op::Resume { name }
                })
            });
            json_result(ctx, r)
        }
        (_, "/metrics" | "/v1/events" | "/v1/reactors" | "/v1/events/follow") => (
            405,
            "application/json",
            error_body(
                ErrorCode::BadRequest,
                &format!("{} is not allowed on {}", head.method, head.path),
            ),
        ),
        _ => (
            404,
            "application/json",
            error_body(
                ErrorCode::NotFound,
                &format!(
                    "no route {} {}; see the README's HTTP section",
                    head.method, head.path
                ),
            ),
        ),
    }
}

/// `/v1/reactors/NAME/pause` or `/resume`: (NAME as sent, the action).
fn reactor_action(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v1/reactors/")?;
    let (name, action) = rest.rsplit_once('/')?;
    (!name.is_empty() && !name.contains('/') && matches!(action, "pause" | "resume"))
        .then_some((name, action))
}

fn percent_decode(s: &str) -> Result<String, WireError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                // Two hex digits exactly: `from_str_radix` alone would take
                // a sign (`%+1`).
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => out.push(v),
                    None => {
                        return Err(WireError::new(
                            ErrorCode::BadRequest,
                            format!("bad percent-escape in query {s:?}"),
                        ))
                    }
                }
                i += 2;
            }
            b'%' => {
                return Err(WireError::new(
                    ErrorCode::BadRequest,
                    format!("bad percent-escape in query {s:?}"),
                ))
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| WireError::new(ErrorCode::BadRequest, "query is not UTF-8"))
}

/// Parses `?entity=&entity_prefix=&scope=&correlation=&caused_by=&id=&kind=(repeatable)&after=&partition=&limit=&system=`.
fn parse_query(qs: &str) -> Result<Query, WireError> {
    let mut q = Query::default();
    let bad = |m: String| WireError::new(ErrorCode::BadRequest, m);
    for pair in qs.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("{k}={v:?}: expected a non-negative integer")))
        };
        match k {
            "entity" => q.entity = Some(v),
            "entity_prefix" => q.entity_prefix = Some(v),
            "scope" => q.scope = Some(v),
            "correlation" => q.correlation = Some(v),
            "caused_by" => q.caused_by = Some(v),
            "id" => q.id = Some(v),
            "kind" => q.kinds.push(v),
            "after" => q.after = num(&v)?,
            "partition" => {
                q.partition = Some(u32::try_from(num(&v)?).map_err(|_| {
                    bad(format!("partition={v:?}: expected a partition number"))
                })?)
            }
            "limit" => q.limit = Some(num(&v)?),
            "system" => {
                q.system = match v.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("system={v:?}: expected true or false"))),
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?}; known: entity, entity_prefix, scope, correlation, caused_by, id, kind, after, partition, limit, system"
                )))
            }
        }
    }
    Ok(q)
}

/// How long a follow stream waits for events before looking whether its
/// client is still there.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// Whether the client closed its side (or reset) a connection that sends
/// nothing more: a non-blocking peek sees EOF. Bytes a client sends after
/// its request are left alone.
fn peer_gone(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut one = [0u8; 1];
    let gone = match s.peek(&mut one) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !is_tick(&e),
    };
    let _ = s.set_nonblocking(false);
    gone
}

/// Streams matching events as chunked JSON lines until the client goes
/// away or the host stops; a comment-free empty chunk never ends the
/// stream early, so a client sees every event in order. A failed read (a
/// damaged segment, a failed store) ends the stream with one error line
/// `{"error":{"code","message"}}` and *no* terminating chunk: a client
/// sees the error and an incomplete chunked body, never a clean end.
fn follow(s: &mut TcpStream, ctx: &Ctx, head: &Head) {
    let mut q = match parse_query(&head.query) {
        Ok(q) => q,
        Err(e) => {
            let _ = respond(
                s,
                400,
                "application/json",
                &error_body(e.code, &e.message),
                false,
            );
            return;
        }
    };
    let limit = q.limit.take();
    let mut follower = match ctx.log.follow(q) {
        Ok(f) => f,
        Err(e) => {
            let _ = respond(
                s,
                http_code(&e),
                "application/json",
                &error_body(e.code, &e.message),
                false,
            );
            return;
        }
    };
    let mut sent = 0u64;
    let order = ctx
        .log
        .order()
        .map_or(String::new(), |o| format!("Batpak-Order: {o}\r\n"));
    let head_out = format!("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n{order}Connection: close\r\n\r\n");
    if s.write_all(head_out.as_bytes()).is_err() {
        return;
    }
    // Short waits: between them the socket is checked, so a client that
    // went away is noticed within a second even when no event comes.
    loop {
        if ctx.stopping() {
            break;
        }
        let events = match follower.next(FOLLOW_POLL, &|| ctx.stopping()) {
            Ok(events) => events,
            Err(e) => {
                let mut line = error_body(e.code, &e.message);
                line.push(b'\n');
                let framed = [format!("{:x}\r\n", line.len()).as_bytes(), &line, b"\r\n"].concat();
                let _ = s.write_all(&framed).and_then(|()| s.flush());
                // Close without the last chunk: the stream did not end cleanly.
                let _ = s.shutdown(std::net::Shutdown::Both);
                return;
            }
        };
        let mut chunk = Vec::new();
        for e in &events {
            if limit.is_some_and(|l| sent >= l) {
                break;
            }
            chunk.extend_from_slice(e.get().as_bytes());
            chunk.push(b'\n');
            sent += 1;
        }
        if !chunk.is_empty() {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if s.write_all(&framed).and_then(|()| s.flush()).is_err() {
                return;
            }
        } else if peer_gone(s) {
            return;
        }
        if limit.is_some_and(|l| sent >= l) {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_parse_with_escapes_and_refuse_unknowns() {
        let q =
            parse_query("entity=order%3A42&kind=a.b&kind=c.d&after=7&limit=3&system=true").unwrap();
        assert_eq!(q.entity.as_deref(), Some("order:42"));
        assert_eq!(q.kinds, vec!["a.b", "c.d"]);
        assert_eq!((q.after, q.limit, q.system), (7, Some(3), true));
        assert!(parse_query("surprise=1").is_err());
        assert!(parse_query("after=x").is_err());
        assert!(parse_query("entity=%zz").is_err());
        assert!(parse_query("entity=%4").is_err());
        // A sign is not a hex digit (`from_str_radix` alone takes it).
        assert!(parse_query("entity=%+1").is_err());
        assert_eq!(parse_query("partition=3").unwrap().partition, Some(3));
        assert!(parse_query("partition=-1").is_err());
        assert!(parse_query("partition=4294967296").is_err());
    }

    #[test]
    fn reactor_actions_name_one_reactor_and_pause_or_resume() {
        assert_eq!(
            reactor_action("/v1/reactors/inventory/pause"),
            Some(("inventory", "pause"))
        );
        assert_eq!(
            reactor_action("/v1/reactors/a%23b/resume"),
            Some(("a%23b", "resume"))
        );
        assert_eq!(reactor_action("/v1/reactors/inventory/reset"), None);
        assert_eq!(reactor_action("/v1/reactors//pause"), None);
        assert_eq!(reactor_action("/v1/reactors/a/b/pause"), None);
        assert_eq!(reactor_action("/v1/reactors"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        let head = |a: &str| Head {
            method: "GET".into(),
            path: "/v1/events".into(),
            query: String::new(),
            auth: Some(a.into()),
            content_length: None,
            chunked: false,
            close: false,
            body_start: Vec::new(),
        };
        assert!(authorized(&head("Bearer secret-token"), "secret-token"));
        assert!(!authorized(&head("Bearer secret-toke"), "secret-token"));
        assert!(!authorized(&head("Bearer secret-tokex"), "secret-token"));
        assert!(!authorized(&head("Basic secret-token"), "secret-token"));
    }
}
