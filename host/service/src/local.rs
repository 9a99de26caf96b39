//! The local control channel: a Unix socket at `<data>/run/host.sock`,
//! in a directory only the owner can enter, serving length-prefixed JSON
//! frames one request at a time per connection.

use crate::dispatch::Ctx;
use crate::protocol::{
    read_frame, write_frame, FrameReadError, Op, Reply, Request, PROTOCOL_VERSION,
};
use crate::wire_error::{ErrorCode, WireError};
use crate::ServiceError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most simultaneous control connections. One more closes the connection
/// that has waited longest (at least [`EVICT_IDLE`]) for its next request;
/// when none has, it is answered `busy` at once.
pub const MAX_LOCAL_CONNECTIONS: usize = 64;
/// A connection that sends nothing between requests for this long is
/// closed (a follower's long poll is the host's wait, not the client's, so
/// live clients never hit it; the CLI sends its next request at once).
pub const LOCAL_IDLE: Duration = Duration::from_secs(10);
/// A connection idle this long between requests may be closed to make
/// room for a new one when every slot is taken.
const EVICT_IDLE: Duration = Duration::from_secs(1);
/// Longest wait for the next part of an open bulk transaction (it holds
/// every other append of the host).
const BULK_IDLE: Duration = Duration::from_secs(10);

/// Where a host serving `data` listens.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join("run").join("host.sock")
}

/// The private directory holding the socket (and the HTTP token), created
/// owner-only (0700) and tightened if it exists.
pub(crate) fn private_dir(data: &Path) -> Result<PathBuf, ServiceError> {
    let dir = data.join("run");
    let io = |what: &str| {
        let what = format!("{what} {}", dir.display());
        move |source| ServiceError::Io {
            context: what,
            source,
        }
    };
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) })
            .map_err(io("creating"))?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("restricting to the owner"))?;
    Ok(dir)
}

pub(crate) struct LocalServer {
    path: PathBuf,
    ctx: Arc<Ctx>,
    conns: Conns,
    thread: Option<JoinHandle<()>>,
}

impl LocalServer {
    pub(crate) fn start(ctx: Arc<Ctx>, data: &Path) -> Result<LocalServer, ServiceError> {
        private_dir(data)?;
        let path = socket_path(data);
        if path.exists() {
            match UnixStream::connect(&path) {
                Ok(_) => return Err(ServiceError::AlreadyServed(path)),
                // Left by a host that was killed: nobody listens, replace it.
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let listener = UnixListener::bind(&path).map_err(|source| ServiceError::Io {
            context: format!("binding the control socket {}", path.display()),
            source,
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ServiceError::Io {
                context: format!("restricting {} to the owner", path.display()),
                source,
            },
        )?;
        let conns: Conns = Arc::default();
        let thread = {
            let ctx = ctx.clone();
            let conns = conns.clone();
            std::thread::Builder::new()
                .name("batpak-socket".into())
                .spawn(move || accept_loop(listener, ctx, conns))
                .map_err(|source| ServiceError::Io {
                    context: "starting the control socket thread".into(),
                    source,
                })?
        };
        Ok(LocalServer {
            path,
            ctx,
            conns,
            thread: Some(thread),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn stop(&mut self) {
        // The stop flag is set by the caller; the accept loop sees it within
        // ACCEPT_POLL, even when the socket file is gone. (Connecting wakes
        // it at once, and is the only wake-up if it could not poll.)
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (_, c) in self.conns.lock().drain() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.ctx;
    }
}

/// How often the accept loop looks at the stop flag while nobody connects.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// One open control connection as the accept loop sees it.
struct Conn {
    stream: UnixStream,
    /// When it began waiting for its next request, in ms since `epoch`;
    /// `u64::MAX` while it is busy (a call or an open bulk transaction).
    idle_since: Arc<AtomicU64>,
}

type Conns = Arc<Mutex<HashMap<u64, Conn>>>;

/// Closes the connection idle longest (at least [`EVICT_IDLE`]) between
/// requests; `false` when none is.
fn evict_idle(conns: &Conns, now_ms: u64) -> bool {
    let mut map = conns.lock();
    let oldest = map
        .iter()
        .map(|(id, c)| (*id, c.idle_since.load(Ordering::SeqCst)))
        .filter(|(_, t)| {
            *t != u64::MAX && now_ms.saturating_sub(*t) >= EVICT_IDLE.as_millis() as u64
        })
        .min_by_key(|(_, t)| *t);
    match oldest.and_then(|(id, _)| map.remove(&id)) {
        Some(c) => {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            true
        }
        None => false,
    }
}

fn accept_loop(listener: UnixListener, ctx: Arc<Ctx>, conns: Conns) {
    let epoch = std::time::Instant::now();
    let now_ms = move || epoch.elapsed().as_millis() as u64;
    let active = Arc::new(AtomicUsize::new(0));
    let next_id = AtomicU64::new(0);
    // Non-blocking, so a stop is seen even when nobody can connect any more
    // (the socket file was removed).
    let polling = listener.set_nonblocking(true).is_ok();
    loop {
        if ctx.stopping() {
            break;
        }
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && polling => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => continue,
        };
        if ctx.stopping() {
            break;
        }
        // A connection is served with blocking reads and their timeouts.
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        // One past the cap while an evicted connection's thread winds down.
        let n = active.load(Ordering::SeqCst);
        if n > MAX_LOCAL_CONNECTIONS || n == MAX_LOCAL_CONNECTIONS && !evict_idle(&conns, now_ms())
        {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = reply(
                &mut stream,
                Err(WireError::new(
                    ErrorCode::Busy,
                    format!("the host already serves {MAX_LOCAL_CONNECTIONS} busy control connections; retry later"),
                )),
            );
            continue;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let idle_since = Arc::new(AtomicU64::new(u64::MAX));
        if let Ok(c) = stream.try_clone() {
            conns.lock().insert(
                id,
                Conn {
                    stream: c,
                    idle_since: idle_since.clone(),
                },
            );
        }
        active.fetch_add(1, Ordering::SeqCst);
        ctx.metrics
            .local_connections
            .fetch_add(1, Ordering::Relaxed);
        let (ctx2, conns2, active2) = (ctx.clone(), conns.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("batpak-socket-conn".into())
            .spawn(move || {
                serve(stream, &ctx2, &|idle| {
                    idle_since.store(if idle { now_ms() } else { u64::MAX }, Ordering::SeqCst);
                });
                conns2.lock().remove(&id);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            conns.lock().remove(&id);
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn reply(
    stream: &mut UnixStream,
    result: Result<Box<serde_json::value::RawValue>, WireError>,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(&Reply::from_result(result)).expect("a reply serialises");
    write_frame(stream, &body)
}

/// Serves one connection until it closes, misbehaves at the framing level,
/// or the host stops. A bad request gets an error reply; nothing a client
/// sends can panic this thread out of the host (handlers run under
/// `catch_unwind` in `dispatch`).
/// `idle(true)` marks the connection as waiting between requests (it may
/// then be evicted), `idle(false)` as busy.
fn serve(mut stream: UnixStream, ctx: &Ctx, idle: &dyn Fn(bool)) {
    let _ = stream.set_read_timeout(Some(LOCAL_IDLE));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    // This connection's open bulk transaction: dropped (aborted, nothing
    // kept) when the connection closes, stalls or the host stops.
    let mut bulk: Option<batpak_store::BulkAppend> = None;
    loop {
        if ctx.stopping() {
            return;
        }
        // Every other append waits while a bulk transaction is open: a
        // client that stops sending parts loses it after BULK_IDLE.
        let _ = stream.set_read_timeout(Some(if bulk.is_some() {
            BULK_IDLE
        } else {
            LOCAL_IDLE
        }));
        // An open bulk transaction is never evicted: losing it loses work.
        idle(bulk.is_none());
        let frame = read_frame(&mut stream);
        idle(false);
        let body = match frame {
            Ok(b) => b,
            Err(FrameReadError::Closed) => return,
            Err(FrameReadError::TooLarge(n)) => {
                ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                let _ = reply(
                    &mut stream,
                    Err(WireError::new(
                        ErrorCode::TooLarge,
                        format!("frame of {n} bytes is larger than the limit of {} bytes; split the request", crate::protocol::MAX_FRAME),
                    )),
                );
                return; // the stream is out of step: close it
            }
            Err(FrameReadError::Io(e)) => {
                if e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut {
                    ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        };
        let result = match serde_json::from_slice::<serde_json::Value>(&body) {
            Err(e) => Err(WireError::new(
                ErrorCode::BadRequest,
                format!("the request is not JSON: {e}"),
            )),
            Ok(v) => match v.get("v").and_then(serde_json::Value::as_u64) {
                Some(ver) if ver != u64::from(PROTOCOL_VERSION) => Err(WireError::new(
                    ErrorCode::Version,
                    format!("protocol version {ver} is not spoken here (this host speaks {PROTOCOL_VERSION}); use the batpak-host binary that runs the host"),
                )),
                _ => match serde_json::from_value::<Request>(v) {
                    Err(e) => Err(WireError::new(
                        ErrorCode::BadRequest,
                        format!("bad request: {e}"),
                    )),
                    Ok(req) => match req.op {
                        op @ (Op::BulkPart { .. } | Op::BulkCommit) => {
                            ctx.dispatch_bulk(&mut bulk, op)
                        }
                        op => ctx.dispatch(op),
                    },
                },
            },
        };
        if result.is_err() {
            ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
        }
        if reply(&mut stream, result).is_err() {
            return;
        }
    }
}
