//! batpak-service: a running batpak-host as a service. While `run` holds
//! the store, producers and operators reach it through
//! - a **local control socket** (`<data>/run/host.sock`, owner-only) that
//!   speaks length-prefixed JSON frames ([`protocol`]); the CLI's `append`,
//!   `events`, `verify`, `parked`, `status`, `pause`, `resume` and `reset`
//!   use it through [`Client`] whenever a host runs;
//! - an optional **HTTP API** (`run --listen ADDR`) with bearer tokens and
//!   Prometheus `/metrics`.
//!
//! Reactor operations reach the host's supervisor through the [`Operator`]
//! trait, which the host library (`batpak-host-lib`) implements: this crate depends on the store only,
//! never on the wasm runtime. Appends, reads and follow streams go through
//! the [`ServedLog`] trait: the embedded [`Store`] implements it here, and
//! the host library implements it for a NATS cluster, whose hosts serve
//! the same HTTP API ([`Service::start_http`]) without a control socket.
//! Threads and blocking I/O, no async runtime.
//!
//! ```no_run
//! use batpak_service::{Client, Query};
//! if let Some(mut host) = Client::connect("./batpak-data".as_ref())? {
//!     let page = host.read(&Query { kinds: vec!["order.placed".into()], ..Query::default() })?;
//!     println!("{} events", page.events.len());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod dispatch;
mod http;
mod local;
mod operator;
mod protocol;
mod query;
mod raw_json;
mod served_log;
mod token;
mod wire_error;

pub use client::{Client, ClientError};
pub use http::{
    MAX_BODY, MAX_BUFFERED_BODIES, MAX_HEAD, MAX_HTTP_CONNECTIONS, MAX_UNAUTHENTICATED,
};
pub use local::{socket_path, LOCAL_IDLE, MAX_LOCAL_CONNECTIONS};
pub use operator::{
    region_lag, reset_checkpoint, InstanceState, OpError, Operator, ReactorRunState, ReactorState,
    ResetOutcome, ResetTo, LAG_CAP, RESET_KIND,
};
pub use protocol::{
    read_frame, write_frame, FrameReadError, Op, Reply, Request, MAX_FRAME, PROTOCOL_VERSION,
};
pub use query::{
    append, event_json, event_line, proposal, proposals, read, receipt_json, verify, verify_json,
    NewEvent, Page, PartitionPage, Query, ReceiptLine, MAX_APPEND_EVENTS, MAX_PAGE, MAX_PAGE_BYTES,
    MAX_WAIT_MS,
};
pub use raw_json::{JsonError, RawJson};
pub use served_log::{Follower, ServedLog};
pub use token::{token_path, MAKE_TOKEN_FILE, MIN_TOKEN_LEN};
pub use wire_error::{ErrorCode, WireError};

use batpak_store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Starting or running the service failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Another host already serves this store's socket.
    #[error("another host already serves {0}")]
    AlreadyServed(PathBuf),
    /// The token file is unusable.
    #[error("bad HTTP token: {0}")]
    BadToken(String),
    /// An OS error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the service was doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What to serve besides the local socket.
#[derive(Clone, Debug, Default)]
pub struct ServiceOptions {
    /// Serve HTTP on this address (off when `None`).
    pub listen: Option<SocketAddr>,
    /// Read the bearer token from this file instead of generating one.
    pub token_file: Option<PathBuf>,
}

/// A running service: over an embedded store, its control socket and
/// optionally HTTP ([`Service::start`]); over any [`ServedLog`], HTTP alone
/// ([`Service::start_http`]). Stop it with [`Service::stop`] before closing
/// the store; dropping it stops it too.
pub struct Service {
    ctx: Arc<dispatch::Ctx>,
    local: Option<local::LocalServer>,
    http: Option<http::HttpServer>,
    token_path: Option<PathBuf>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("socket", &self.socket_path())
            .field("http", &self.http_addr())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Serves `store` (and, with `options.listen`, HTTP) until stopped.
    /// A stale socket left by a killed host is replaced.
    ///
    /// # Errors
    /// The socket or the HTTP address cannot be bound, or the token file is
    /// unusable.
    pub fn start(
        store: &Store,
        operator: Arc<dyn Operator>,
        options: ServiceOptions,
    ) -> Result<Service, ServiceError> {
        let ctx = Arc::new(dispatch::Ctx {
            log: Arc::new(store.clone()),
            store: Some(store.clone()),
            operator,
            stop: AtomicBool::new(false),
            metrics: dispatch::Metrics::default(),
        });
        let mut local = local::LocalServer::start(ctx.clone(), store.dir())?;
        let (http, token_path) = match options.listen {
            None => (None, None),
            Some(addr) => {
                let started = token::load(store.dir(), options.token_file.as_deref())
                    .and_then(|(t, p)| Ok((http::HttpServer::start(ctx.clone(), addr, t)?, p)));
                match started {
                    Ok((h, p)) => (Some(h), Some(p)),
                    Err(e) => {
                        ctx.stop.store(true, Ordering::SeqCst);
                        local.stop();
                        return Err(e);
                    }
                }
            }
        };
        Ok(Service {
            ctx,
            local: Some(local),
            http,
            token_path,
        })
    }

    /// Serves the HTTP API alone over `log` — the same routes, token rules
    /// and limits as [`Service::start`]'s — for a host without a local
    /// store directory (a cluster host: its CLI commands reach the cluster
    /// directly, so there is no control socket). The token is read from
    /// `token_file`; a missing or unusable file is refused, naming the fix.
    ///
    /// # Errors
    /// The address cannot be bound, or the token file is unusable.
    pub fn start_http(
        log: Arc<dyn ServedLog>,
        operator: Arc<dyn Operator>,
        listen: SocketAddr,
        token_file: &Path,
    ) -> Result<Service, ServiceError> {
        let ctx = Arc::new(dispatch::Ctx {
            log,
            store: None,
            operator,
            stop: AtomicBool::new(false),
            metrics: dispatch::Metrics::default(),
        });
        let token = token::read_given(token_file)?;
        let http = http::HttpServer::start(ctx.clone(), listen, token)?;
        Ok(Service {
            ctx,
            local: None,
            http: Some(http),
            token_path: Some(token_file.to_path_buf()),
        })
    }

    /// The control socket's path (none for [`Service::start_http`]).
    pub fn socket_path(&self) -> Option<&Path> {
        self.local.as_ref().map(local::LocalServer::path)
    }

    /// The HTTP address actually bound (port 0 picks a free one).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(http::HttpServer::addr)
    }

    /// The file holding the HTTP bearer token.
    pub fn token_path(&self) -> Option<&Path> {
        self.token_path.as_deref()
    }

    /// Stops serving: no new requests; connections are closed, the socket
    /// file removed. Requests in flight finish or fail; appends already
    /// acknowledged stay durable.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.ctx.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(l) = &mut self.local {
            l.stop();
        }
        if let Some(h) = &mut self.http {
            h.stop();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown();
    }
}
