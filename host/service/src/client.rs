//! The client side of the control channel, for the CLI commands that go
//! through a running host.

use crate::operator::{ReactorState, ResetOutcome, ResetTo};
use crate::protocol::{read_frame, write_frame, Op, Reply, Request, PROTOCOL_VERSION};
use crate::query::{NewEvent, Page, Query};
use crate::wire_error::WireError;
use serde_json::value::RawValue;
use serde_json::Value;
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A call through the control channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host answered with an error (match on `.code`).
    #[error("the running host refused: {0}")]
    Remote(WireError),
    /// The socket exists but this user may not use it.
    #[error("a host is running on this store but its control socket {path} is not accessible to you ({source}); run the command as the user that runs the host")]
    Denied {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection failed mid-call.
    #[error("talking to the running host: {0}")]
    Io(#[from] std::io::Error),
    /// The host closed the connection (it stopped, or refused the frame).
    #[error("the running host closed the connection (it stopped?)")]
    Closed,
    /// The host did not answer within the call's deadline (it may be
    /// stuck; a swap or start it was asked for may still be going on).
    #[error("the running host did not answer {what} within {} s; `batpak-host status` shows what it is doing (if that times out too, the host is stuck: stop it with SIGTERM)", after.as_secs())]
    TimedOut {
        /// The request, in words.
        what: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The host replied with something this client cannot read.
    #[error("the running host replied with something unexpected ({0}); are the CLI and the host the same version?")]
    Protocol(String),
}

/// How long the host may take to answer a quick request (status, pause,
/// reset, parked): it answers between two ticks, or within the host's own
/// deadline for a pause (60 s), which it reports as an error.
pub const QUICK_DEADLINE: Duration = Duration::from_secs(90);
/// How long the host may take to answer a swap or a resume: it compiles the
/// plugin (tens of seconds for a Python component) and reports its own
/// deadline (300 s) as an error before this one passes.
pub const LOAD_DEADLINE: Duration = Duration::from_secs(330);
/// How long the host may take to answer an append or a verify (a large
/// batch is made durable, a large store read whole).
pub const BULK_DEADLINE: Duration = Duration::from_secs(600);

/// The deadline of `op` and what it is called in a timeout message.
fn deadline_of(op: &Op) -> (Duration, &'static str) {
    match op {
        Op::Swap { .. } => (LOAD_DEADLINE, "the swap"),
        Op::Resume { .. } => (LOAD_DEADLINE, "the resume"),
        Op::ParkedReplay { .. } => (LOAD_DEADLINE, "the parked replay"),
        Op::Append { .. } => (BULK_DEADLINE, "the append"),
        Op::BulkPart { .. } => (BULK_DEADLINE, "a part of the bulk append"),
        Op::BulkCommit => (BULK_DEADLINE, "the bulk append's commit"),
        Op::Verify => (BULK_DEADLINE, "the verify"),
        Op::Read(q) => (
            QUICK_DEADLINE + Duration::from_millis(q.wait_ms),
            "the read",
        ),
        Op::Status => (QUICK_DEADLINE, "status"),
        Op::Pause { .. } => (QUICK_DEADLINE, "the pause"),
        Op::Reset { .. } => (QUICK_DEADLINE, "the reset"),
        Op::Parked { .. } => (QUICK_DEADLINE, "the parked listing"),
        Op::Ping => (QUICK_DEADLINE, "a ping"),
    }
}

/// A connection to the host running on a store. Every call has a deadline
/// (see [`Client::call`]).
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    /// The socket, to reconnect to when the host closed an idle connection.
    path: PathBuf,
    /// Set by [`Client::set_timeout`]: replaces every call's own deadline.
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to the host serving `data`, if one runs: `Ok(None)` when no
    /// socket exists or nobody listens on it (a stale socket after a
    /// `kill -9`), so the caller opens the store itself.
    ///
    /// # Errors
    /// [`ClientError::Denied`] when a host runs but this user may not use
    /// its socket; other I/O errors.
    pub fn connect(data: &Path) -> Result<Option<Client>, ClientError> {
        let path = crate::local::socket_path(data);
        match UnixStream::connect(&path) {
            Ok(stream) => Ok(Some(Client {
                stream,
                path,
                timeout: None,
            })),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(source) if source.kind() == ErrorKind::PermissionDenied => {
                Err(ClientError::Denied { path, source })
            }
            Err(e) => Err(ClientError::Io(e)),
        }
    }

    /// Bounds how long one reply may take, instead of each call's own
    /// deadline (`None`: back to those).
    ///
    /// # Errors
    /// Never today; kept for callers that handle it.
    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<(), ClientError> {
        self.timeout = t;
        Ok(())
    }

    /// Sends `op` and returns the host's `ok` value. The reply must come
    /// within the operation's deadline ([`QUICK_DEADLINE`] for status and
    /// the like, [`LOAD_DEADLINE`] for a swap or resume, [`BULK_DEADLINE`]
    /// for an append or verify).
    ///
    /// # Errors
    /// [`ClientError::Remote`] with the host's error;
    /// [`ClientError::TimedOut`] naming the request; I/O or protocol errors.
    pub fn call(&mut self, op: Op) -> Result<Value, ClientError> {
        let raw = self.call_raw(op)?;
        serde_json::from_str(raw.get()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// [`Client::call`], returning the `ok` value as the host sent its text.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn call_raw(&mut self, op: Op) -> Result<Box<RawValue>, ClientError> {
        let (deadline, what) = deadline_of(&op);
        let deadline = self.timeout.unwrap_or(deadline);
        let body = serde_json::to_vec(&Request {
            v: PROTOCOL_VERSION,
            op,
        })
        .expect("a request serialises");
        self.stream.set_write_timeout(Some(deadline))?;
        self.stream.set_read_timeout(Some(deadline))?;
        let timed_out =
            |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
        write_frame(&mut self.stream, &body).map_err(|e| {
            if timed_out(&e) {
                ClientError::TimedOut {
                    what,
                    after: deadline,
                }
            } else {
                ClientError::Io(e)
            }
        })?;
        let reply = read_frame(&mut self.stream).map_err(|e| match e {
            crate::protocol::FrameReadError::Io(e) if timed_out(&e) => ClientError::TimedOut {
                what,
                after: deadline,
            },
            crate::protocol::FrameReadError::Io(e) => ClientError::Io(e),
            crate::protocol::FrameReadError::Closed => ClientError::Closed,
            other => ClientError::Protocol(other.to_string()),
        })?;
        let reply: Reply =
            serde_json::from_slice(&reply).map_err(|e| ClientError::Protocol(e.to_string()))?;
        match (reply.ok, reply.error) {
            (_, Some(e)) => Err(ClientError::Remote(e)),
            (Some(v), None) => Ok(v),
            (None, None) => Err(ClientError::Protocol(
                "a reply with neither ok nor error".into(),
            )),
        }
    }

    fn typed<T: serde::de::DeserializeOwned>(&mut self, op: Op) -> Result<T, ClientError> {
        // From the reply's text, so raw parts (a page's event lines) stay
        // byte for byte.
        let raw = self.call_raw(op)?;
        serde_json::from_str(raw.get()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Appends `events` atomically; returns the receipts once durable.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn append(&mut self, events: Vec<NewEvent>) -> Result<Vec<Value>, ClientError> {
        let v = self.call(Op::Append { events })?;
        match v.get("receipts") {
            Some(Value::Array(a)) => Ok(a.clone()),
            _ => Err(ClientError::Protocol(
                "append reply without receipts".into(),
            )),
        }
    }

    /// Appends `events` as the next part of this connection's bulk
    /// transaction ([`Op::BulkPart`]); returns their receipts, final once
    /// [`Client::bulk_commit`] succeeds. Dropping the client before that
    /// abandons the transaction: nothing of it is kept.
    ///
    /// # Errors
    /// As [`Client::call`]; the transaction is then abandoned.
    pub fn bulk_part(&mut self, events: Vec<NewEvent>) -> Result<Vec<Value>, ClientError> {
        let v = self.call(Op::BulkPart { events })?;
        match v.get("receipts") {
            Some(Value::Array(a)) => Ok(a.clone()),
            _ => Err(ClientError::Protocol(
                "bulk part reply without receipts".into(),
            )),
        }
    }

    /// Commits this connection's bulk transaction; returns how many events
    /// it appended, once durable.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn bulk_commit(&mut self) -> Result<u64, ClientError> {
        let v = self.call(Op::BulkCommit)?;
        v.get("appended")
            .and_then(Value::as_u64)
            .ok_or_else(|| ClientError::Protocol("bulk commit reply without a count".into()))
    }

    /// Reads one page (at most [`crate::MAX_PAGE_BYTES`] of events; pass
    /// its `next_after` as the next `after` while `more`). A read is
    /// idempotent, so when the host had closed this connection for idling
    /// (a caller slow to ask for the next page), it reconnects once and
    /// asks again.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn read(&mut self, q: &Query) -> Result<Page, ClientError> {
        match self.typed(Op::Read(q.clone())) {
            Err(ClientError::Closed) => {}
            Err(ClientError::Io(e))
                if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
            other => return other,
        }
        self.stream = UnixStream::connect(&self.path).map_err(|_| ClientError::Closed)?;
        self.typed(Op::Read(q.clone()))
    }

    /// Verifies the store the host holds.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn verify(&mut self) -> Result<Value, ClientError> {
        self.call(Op::Verify)
    }

    /// Every reactor's state.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn status(&mut self) -> Result<Vec<ReactorState>, ClientError> {
        self.typed(Op::Status)
    }

    /// Pauses reactor `name`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn pause(&mut self, name: &str) -> Result<ReactorState, ClientError> {
        self.typed(Op::Pause { name: name.into() })
    }

    /// Asks the running host to swap reactor `name` to the component in
    /// `file` (an absolute path: the host resolves it, not the caller) at
    /// its next batch boundary. Returns the swap outcome (position, old and
    /// new digests and versions) once the swap is recorded.
    ///
    /// # Errors
    /// As [`Client::call`]; a refused swap is a [`ClientError::Remote`]
    /// naming the reason (the old version keeps running).
    pub fn swap(&mut self, name: &str, file: &Path) -> Result<Value, ClientError> {
        self.call(Op::Swap {
            name: name.into(),
            file: file.into(),
        })
    }

    /// Resumes reactor `name`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn resume(&mut self, name: &str) -> Result<ReactorState, ClientError> {
        self.typed(Op::Resume { name: name.into() })
    }

    /// Moves paused reactor `name`'s checkpoint.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn reset(&mut self, name: &str, to: ResetTo) -> Result<ResetOutcome, ClientError> {
        self.typed(Op::Reset {
            name: name.into(),
            to,
        })
    }

    /// Unresolved parked events.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn parked(&mut self, plugin: Option<&str>) -> Result<Vec<Value>, ClientError> {
        self.typed(Op::Parked {
            plugin: plugin.map(str::to_string),
        })
    }

    /// Requests replay of parked events.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn parked_replay(
        &mut self,
        plugin: Option<&str>,
        event: Option<&str>,
    ) -> Result<Vec<Value>, ClientError> {
        self.typed(Op::ParkedReplay {
            plugin: plugin.map(str::to_string),
            event: event.map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::time::Instant;

    /// A host that accepts the connection and never answers: the call ends
    /// with an error naming the request, not a hang.
    #[test]
    fn a_host_that_never_answers_is_a_timeout_naming_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let sock = crate::local::socket_path(dir.path());
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        let listener = UnixListener::bind(&sock).unwrap();
        let silent = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            // Hold the connection open without a reply.
            std::thread::sleep(Duration::from_secs(3));
            drop(s);
        });
        let mut c = Client::connect(dir.path()).unwrap().expect("a listener");
        c.set_timeout(Some(Duration::from_millis(200))).unwrap();
        let t = Instant::now();
        match c.status() {
            Err(e @ ClientError::TimedOut { what: "status", .. }) => {
                assert!(
                    e.to_string().contains("did not answer status within"),
                    "{e}"
                )
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        silent.join().unwrap();
    }

    /// Without `set_timeout`, every operation still has a deadline, and a
    /// long-polling read gets its wait on top.
    #[test]
    fn every_operation_has_a_deadline() {
        let q = Query {
            wait_ms: 30_000,
            ..Query::default()
        };
        let ops = [
            Op::Ping,
            Op::Status,
            Op::Verify,
            Op::Read(q),
            Op::Append { events: Vec::new() },
            Op::Pause { name: "a".into() },
            Op::Resume { name: "a".into() },
            Op::Swap {
                name: "a".into(),
                file: "/x.wasm".into(),
            },
        ];
        for op in &ops {
            let (d, what) = deadline_of(op);
            assert!(d >= QUICK_DEADLINE && d <= BULK_DEADLINE, "{what}: {d:?}");
        }
        assert!(deadline_of(&ops[3]).0 >= QUICK_DEADLINE + Duration::from_secs(30));
    }
}
