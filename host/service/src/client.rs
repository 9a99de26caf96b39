//! The client side of the control channel, for the CLI commands that go
//! through a running host.

use crate::operator::{ReactorState, ResetOutcome, ResetTo};
use crate::protocol::{read_frame, write_frame, Op, Reply, Request, PROTOCOL_VERSION};
use crate::query::{NewEvent, Page, Query};
use crate::wire_error::WireError;
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
    /// The host replied with something this client cannot read.
    #[error("the running host replied with something unexpected ({0}); are the CLI and the host the same version?")]
    Protocol(String),
}

/// A connection to the host running on a store.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
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
            Ok(stream) => Ok(Some(Client { stream })),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(source) if source.kind() == ErrorKind::PermissionDenied => {
                Err(ClientError::Denied { path, source })
            }
            Err(e) => Err(ClientError::Io(e)),
        }
    }

    /// Bounds how long one reply may take (none by default).
    ///
    /// # Errors
    /// The socket refused the option.
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<(), ClientError> {
        self.stream.set_read_timeout(t)?;
        Ok(())
    }

    /// Sends `op` and returns the host's `ok` value.
    ///
    /// # Errors
    /// [`ClientError::Remote`] with the host's error; I/O or protocol errors.
    pub fn call(&mut self, op: Op) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(&Request {
            v: PROTOCOL_VERSION,
            op,
        })
        .expect("a request serialises");
        write_frame(&mut self.stream, &body)?;
        let reply = read_frame(&mut self.stream).map_err(|e| match e {
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
        let v = self.call(op)?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
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

    /// Reads one page.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn read(&mut self, q: &Query) -> Result<Page, ClientError> {
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
