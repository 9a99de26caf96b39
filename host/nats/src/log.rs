//! The NATS JetStream log behind a synchronous API: appends, fenced atomic
//! commits, reads, checkpoints, look-ups and waits, all with bounded waits
//! and typed outcomes.

use crate::codec::{self, LogEvent};
use crate::driver::Driver;
use crate::error::LogError;
use crate::layout::{Layout, LAYOUT_BUCKET, LAYOUT_KEY};
use crate::partition::{self, partition_of, stream_name};
use async_nats::jetstream::{self, message::OutboundMessage};
use async_nats::HeaderMap;
use batpak_store::{now_us, EventId, Proposal};
use futures_util::StreamExt;
use jetstream_extra::batch_fetch::{BatchFetchErrorKind, BatchFetchExt};
use jetstream_extra::batch_publish::{BatchPublishErrorKind, BatchPublishExt};
use std::error::Error as _;
use std::future::Future;
use std::time::{Duration, Instant};

/// The most reactions one commit carries (one atomic batch holds 1000
/// messages, the checkpoint is one of them).
pub const MAX_REACTIONS: usize = 999;
/// The most events one [`NatsLog::read`] returns (the direct-get batch
/// limit).
pub const MAX_READ: usize = 1000;
/// The header on a checkpoint naming the commit that wrote it.
pub const COMMIT_HEADER: &str = "Batpak-Commit";
/// JetStream's "wrong last sequence" error code (a failed expected-sequence
/// check).
const WRONG_LAST_SEQUENCE: u64 = 10071;

/// How the log talks to the cluster.
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// The longest any one operation waits for an answer before it ends in
    /// [`LogError::Unknown`] (or `Unavailable` for reads).
    pub timeout: Duration,
    /// The longest connecting waits.
    pub connect_timeout: Duration,
    /// How often the client pings its server: a server that stops
    /// answering (paused, partitioned away) is left after two missed pings,
    /// and the client reconnects to another node.
    pub ping_interval: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(2),
        }
    }
}

/// A durable append's receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The partition it went to.
    pub partition: u32,
    /// Its sequence there (the first copy's, when a duplicate).
    pub sequence: u64,
    /// Its id.
    pub id: EventId,
    /// True when the server had it already (same id or idempotency key
    /// within the stream's duplicate window): nothing new was stored.
    pub duplicate: bool,
}

/// One commit: a reactor's reactions and its new checkpoint in one
/// partition, stored as one atomic batch or not at all, fenced on the
/// checkpoint subject.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The partition (every reaction's entity must hash to it).
    pub partition: u32,
    /// The reactor.
    pub reactor: String,
    /// The reactions, in order.
    pub reactions: Vec<Proposal>,
    /// The new checkpoint's bytes (opaque to the log).
    pub checkpoint: Vec<u8>,
    /// The sequence of the checkpoint this instance last read
    /// ([`Checkpoint::sequence`]; 0 when there was none): the fence.
    pub expected: u64,
    /// A unique token written on the checkpoint, so an unknown outcome can
    /// be resolved ([`NatsLog::resolve_commit`]). Keep the same `Commit`
    /// (same token) when retrying.
    pub token: String,
}

impl Commit {
    /// A commit with a fresh token.
    pub fn new(
        partition: u32,
        reactor: impl Into<String>,
        reactions: Vec<Proposal>,
        checkpoint: Vec<u8>,
        expected: u64,
    ) -> Commit {
        Commit {
            partition,
            reactor: reactor.into(),
            reactions,
            checkpoint,
            expected,
            token: codec::id_hex(EventId::generate()),
        }
    }
}

/// A stored commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The reactions' ids and sequences, in order.
    pub reactions: Vec<(EventId, u64)>,
    /// The new checkpoint's sequence: the next commit's fence.
    pub checkpoint: u64,
}

/// A reactor's checkpoint in a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its sequence in the partition's stream (the fence for the next commit).
    pub sequence: u64,
    /// Its bytes.
    pub payload: Vec<u8>,
    /// The token of the commit that wrote it.
    pub token: Option<String>,
}

/// What [`NatsLog::resolve_commit`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The commit is stored; its checkpoint is at this sequence.
    Landed(u64),
    /// The checkpoint subject shows another commit (or none): this commit
    /// is not the latest. With the fence it was sent with still in place
    /// it never landed and may be retried; otherwise this instance is stale.
    NotLanded(Option<Checkpoint>),
}

/// Events read from a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    /// The events, in partition order.
    pub events: Vec<LogEvent>,
    /// Where the next read starts.
    pub next: u64,
}

/// The log on a NATS JetStream cluster. Synchronous: every method blocks
/// the caller (at most [`NatsOptions::timeout`], or the wait asked for)
/// while the client runs on its own thread.
pub struct NatsLog {
    conn: Connection,
    layout: Layout,
}

/// A connection without a layout (what `cluster init` uses).
pub(crate) struct Connection {
    pub driver: Driver,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub timeout: Duration,
}

impl Connection {
    /// Connects to any of `servers` (`nats://HOST:PORT`); the client
    /// reconnects by itself, to any server of the cluster, after a loss.
    pub fn open(servers: &[String], options: &NatsOptions) -> Result<Connection, LogError> {
        let shown = servers.join(",");
        let driver = Driver::start().map_err(|e| LogError::Connect {
            servers: shown.clone(),
            reason: format!("starting the client thread: {e}"),
        })?;
        let addrs = servers.to_vec();
        let opts = async_nats::ConnectOptions::new()
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.timeout))
            .ping_interval(options.ping_interval)
            // Quick, bounded reconnects: a failover should cost the
            // election, not a back-off.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 50).min(500))
            });
        let connect_timeout = options.connect_timeout;
        let client = driver
            .run(async move {
                tokio::time::timeout(
                    connect_timeout,
                    async_nats::connect_with_options(addrs, opts),
                )
                .await
            })
            .map_err(|_| LogError::ClientThreadGone)?
            .map_err(|_| LogError::Connect {
                servers: shown.clone(),
                reason: format!("no answer within {connect_timeout:?}"),
            })?
            .map_err(|e| LogError::Connect {
                servers: shown.clone(),
                reason: e.to_string(),
            })?;
        // Built on the client thread: the context spawns its acker task.
        let timeout = options.timeout;
        let for_js = client.clone();
        let js = driver
            .run(async move {
                jetstream::ContextBuilder::new()
                    .timeout(timeout)
                    .build(for_js)
            })
            .map_err(|_| LogError::ClientThreadGone)?;
        Ok(Connection {
            driver,
            client,
            js,
            timeout: options.timeout,
        })
    }

    /// Runs `fut` on the client thread, bounded by `limit`; `None` when the
    /// limit passed.
    pub fn run<F, T>(&self, limit: Duration, fut: F) -> Result<Option<T>, LogError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.driver
            .run(async move { tokio::time::timeout(limit, fut).await.ok() })
            .map_err(|_| LogError::ClientThreadGone)
    }
}

impl NatsLog {
    /// Connects to the cluster at `servers` and reads its layout.
    ///
    /// # Errors
    /// [`LogError::Connect`] when no server answers; [`LogError::NoLayout`]
    /// when `cluster init` has not run.
    pub fn open(servers: &[String], options: NatsOptions) -> Result<NatsLog, LogError> {
        let conn = Connection::open(servers, &options)?;
        let js = conn.js.clone();
        let layout = conn
            .run(conn.timeout, async move {
                let kv = js
                    .get_key_value(LAYOUT_BUCKET)
                    .await
                    .map_err(|e| e.to_string())?;
                let raw = kv
                    .get(LAYOUT_KEY)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("bucket {LAYOUT_BUCKET} has no key {LAYOUT_KEY}"))?;
                serde_json::from_slice::<Layout>(&raw).map_err(|e| e.to_string())
            })?
            .ok_or_else(|| LogError::NoLayout {
                reason: "no answer in time".into(),
            })?
            .map_err(|reason| LogError::NoLayout { reason })?;
        Ok(NatsLog { conn, layout })
    }

    /// The cluster's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The partition `entity`'s events live in (see [`crate::partition`]).
    pub fn partition_of(&self, entity: &str) -> u32 {
        partition_of(entity, self.layout.partitions)
    }

    fn check_partition(&self, p: u32) -> Result<(), LogError> {
        if p < self.layout.partitions {
            Ok(())
        } else {
            Err(LogError::NotInitialised {
                stream: stream_name(p),
            })
        }
    }

    /// Appends one event to its entity's partition and returns once the
    /// stream's quorum has it on disk (every node fsyncs each write: the
    /// cluster was checked for `sync_interval: always` at init).
    ///
    /// The server de-duplicates on `Nats-Msg-Id` within the stream's
    /// duplicate window (2 minutes): the idempotency key when there is one,
    /// otherwise the id. So an append that ended in [`LogError::Unknown`] is
    /// resolved by appending the same proposal again with the id it was
    /// given (the error's caller sets `proposal.id` first to make that
    /// possible; an id is generated otherwise).
    ///
    /// # Errors
    /// `Unknown` (may be stored), `Unavailable` (not stored), `Invalid`,
    /// `Unsupported` (`expected_sequence`), `Refused`.
    pub fn append(&self, proposal: &Proposal) -> Result<Appended, LogError> {
        proposal.validate(false)?;
        if proposal.expected_sequence.is_some() {
            return Err(LogError::Unsupported {
                what: "expected_sequence (per-entity optimistic concurrency)",
            });
        }
        let partition = self.partition_of(&proposal.coordinate.entity);
        let id = proposal.id.unwrap_or_else(EventId::generate);
        let hex = codec::id_hex(id);
        let subject = partition::event_subject(partition, &proposal.coordinate.entity, &hex);
        let body = codec::encode(proposal, id, now_us());
        let mut headers = HeaderMap::new();
        let msg_id = proposal.idempotency_key.clone().unwrap_or(hex);
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        let js = self.conn.js.clone();
        let outcome = self.conn.run(self.conn.timeout, async move {
            let ack = js
                .publish_with_headers(subject, headers, body.into())
                .await
                .map_err(|e| (true, e))?;
            ack.await.map_err(|e| (false, e))
        })?;
        match outcome {
            None => Err(unknown("append", "no acknowledgement in time".into())),
            Some(Ok(ack)) => Ok(Appended {
                partition,
                sequence: ack.sequence,
                id,
                duplicate: ack.duplicate,
            }),
            Some(Err((sending, e))) => Err(publish_error(partition, sending, e)),
        }
    }

    /// Stores `commit`'s reactions and checkpoint as one atomic batch, or
    /// nothing. The checkpoint carries `Nats-Expected-Last-Subject-Sequence
    /// = commit.expected` on the reactor's checkpoint subject, so when
    /// another instance committed since this one read its checkpoint, the
    /// whole batch is refused ([`LogError::Fenced`]).
    ///
    /// # Errors
    /// `Fenced`, `Unknown` (resolve with [`NatsLog::resolve_commit`]),
    /// `Unavailable`, `BatchTooLarge`, `Invalid`, `Unsupported` (a reaction
    /// for another partition: the outbox is not built yet), `Refused`.
    pub fn commit(&self, commit: &Commit) -> Result<Committed, LogError> {
        let p = commit.partition;
        self.check_partition(p)?;
        if commit.reactions.len() > MAX_REACTIONS {
            return Err(LogError::BatchTooLarge {
                reactions: commit.reactions.len(),
                max: MAX_REACTIONS,
            });
        }
        let mut messages = Vec::with_capacity(commit.reactions.len());
        let mut ids = Vec::with_capacity(commit.reactions.len());
        let now = now_us();
        for r in &commit.reactions {
            r.validate(true)?;
            if r.expected_sequence.is_some() {
                return Err(LogError::Unsupported {
                    what: "expected_sequence (per-entity optimistic concurrency)",
                });
            }
            if self.partition_of(&r.coordinate.entity) != p {
                return Err(LogError::Unsupported {
                    what: "a reaction for an entity of another partition (the outbox)",
                });
            }
            let id = r.id.unwrap_or_else(EventId::generate);
            ids.push(id);
            messages.push(OutboundMessage {
                subject: partition::event_subject(p, &r.coordinate.entity, &codec::id_hex(id))
                    .into(),
                payload: codec::encode(r, id, now).into(),
                headers: None,
            });
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            commit.expected.to_string().as_str(),
        );
        headers.insert(COMMIT_HEADER, commit.token.as_str());
        let last = OutboundMessage {
            subject: partition::checkpoint_subject(p, &commit.reactor).into(),
            payload: commit.checkpoint.clone().into(),
            headers: Some(headers),
        };
        let js = self.conn.js.clone();
        let timeout = self.conn.timeout;
        let outcome = self.conn.run(timeout, async move {
            let mut batch = js.batch_publish().timeout(timeout).build();
            for m in messages {
                batch.add_message(m).await.map_err(|e| (true, e))?;
            }
            batch.commit_message(last).await.map_err(|e| (false, e))
        })?;
        match outcome {
            None => Err(unknown("commit", "no acknowledgement in time".into())),
            Some(Ok(ack)) => {
                let n = ids.len() as u64;
                let first = ack.sequence - n;
                Ok(Committed {
                    reactions: ids
                        .into_iter()
                        .enumerate()
                        .map(|(i, id)| (id, first + i as u64))
                        .collect(),
                    checkpoint: ack.sequence,
                })
            }
            Some(Err((adding, e))) => Err(batch_error(commit, adding, e)),
        }
    }

    /// Learns whether `commit` is stored, after it ended in
    /// [`LogError::Unknown`] (or `Fenced` on a retry): reads the reactor's
    /// checkpoint from the stream leader and compares its token.
    pub fn resolve_commit(&self, commit: &Commit) -> Result<Resolution, LogError> {
        let now = self.checkpoint(commit.partition, &commit.reactor)?;
        Ok(match now {
            Some(c) if c.token.as_deref() == Some(commit.token.as_str()) => {
                Resolution::Landed(c.sequence)
            }
            other => Resolution::NotLanded(other),
        })
    }

    /// The reactor's last checkpoint in partition `p`, read from the stream
    /// leader (not a possibly lagging replica); `None` when it never
    /// committed there.
    pub fn checkpoint(&self, p: u32, reactor: &str) -> Result<Option<Checkpoint>, LogError> {
        self.check_partition(p)?;
        let subject = partition::checkpoint_subject(p, reactor);
        match self.last_by_subject(p, subject)? {
            None => Ok(None),
            Some(m) => Ok(Some(Checkpoint {
                sequence: m.sequence,
                token: m.headers.get(COMMIT_HEADER).map(|v| v.as_str().to_string()),
                payload: m.payload.to_vec(),
            })),
        }
    }

    /// The event with `id`, looked for in every partition (one request
    /// each, leader-served); `None` when no partition has it.
    pub fn lookup(&self, id: EventId) -> Result<Option<LogEvent>, LogError> {
        let hex = codec::id_hex(id);
        for p in 0..self.layout.partitions {
            if let Some(m) = self.last_by_subject(p, partition::id_filter(p, &hex))? {
                return codec::decode(p, m.sequence, &m.payload).map(Some);
            }
        }
        Ok(None)
    }

    fn last_by_subject(
        &self,
        p: u32,
        subject: String,
    ) -> Result<Option<jetstream::message::StreamMessage>, LogError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
        let js = self.conn.js.clone();
        let name = stream_name(p);
        let out = self.conn.run(self.conn.timeout, async move {
            let stream = js
                .get_stream_no_info(&name)
                .await
                .map_err(|e| e.to_string())?;
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind() == K::NoMessageFound => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })?;
        match out {
            None => Err(LogError::Unavailable {
                partition: p,
                reason: "no answer in time".into(),
            }),
            Some(r) => r.map_err(|reason| LogError::Unavailable {
                partition: p,
                reason,
            }),
        }
    }

    /// Up to `max` (at most [`MAX_READ`]) events of partition `p` from
    /// stream sequence `from` on, in order (checkpoints left out). Served by
    /// any replica (direct get): a replica may lag the leader by a few
    /// writes, never reorder them.
    pub fn read(&self, p: u32, from: u64, max: usize) -> Result<ReadBatch, LogError> {
        self.check_partition(p)?;
        let max = max.clamp(1, MAX_READ);
        let js = self.conn.js.clone();
        let name = stream_name(p);
        let filter = partition::events_filter(p);
        let from = from.max(1);
        let out = self.conn.run(self.conn.timeout, async move {
            let mut stream = match js
                .get_batch(&name, max)
                .sequence(from)
                .subject(filter)
                .send()
                .await
            {
                Ok(s) => s,
                Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => return Ok(Vec::new()),
                Err(e) => return Err(e.to_string()),
            };
            let mut got = Vec::new();
            while let Some(m) = stream.next().await {
                match m {
                    Ok(m) => got.push(m),
                    Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(got)
        })?;
        let messages = match out {
            None => {
                return Err(LogError::Unavailable {
                    partition: p,
                    reason: "no answer in time".into(),
                })
            }
            Some(r) => r.map_err(|reason| LogError::Unavailable {
                partition: p,
                reason,
            })?,
        };
        let mut batch = ReadBatch {
            events: Vec::with_capacity(messages.len()),
            next: from,
        };
        for m in messages {
            batch.next = m.sequence + 1;
            batch.events.push(codec::decode(p, m.sequence, &m.payload)?);
        }
        Ok(batch)
    }

    /// Waits until partition `p` holds an event at sequence `from` or later,
    /// at most `timeout`; true when there is one. A core subscription wakes
    /// the wait; the answer comes from the stream leader.
    pub fn wait(&self, p: u32, from: u64, timeout: Duration) -> Result<bool, LogError> {
        self.check_partition(p)?;
        let js = self.conn.js.clone();
        let client = self.conn.client.clone();
        let name = stream_name(p);
        let filter = partition::events_filter(p);
        let deadline = Instant::now() + timeout;
        let out = self.conn.run(timeout + self.conn.timeout, async move {
            let mut wake = client
                .subscribe(filter.clone())
                .await
                .map_err(|e| e.to_string())?;
            let stream = js
                .get_stream_no_info(&name)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let found = stream
                    .raw_message_builder()
                    .sequence(from.max(1))
                    .next_by_subject(filter.clone())
                    .send()
                    .await;
                if found.is_ok() {
                    return Ok(true);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(false);
                }
                // Woken by a publish, or re-checked every 250 ms in case a
                // wake-up was missed (reconnects).
                let nap = (deadline - now).min(Duration::from_millis(250));
                let _ = tokio::time::timeout(nap, wake.next()).await;
            }
        })?;
        match out {
            None => Ok(false),
            Some(r) => r.map_err(|reason: String| LogError::Unavailable {
                partition: p,
                reason,
            }),
        }
    }

    /// The last sequence of partition `p`'s stream (events and checkpoints),
    /// from the leader; 0 when empty.
    pub fn last_sequence(&self, p: u32) -> Result<u64, LogError> {
        self.check_partition(p)?;
        let js = self.conn.js.clone();
        let name = stream_name(p);
        let out = self.conn.run(self.conn.timeout, async move {
            let mut s = js.get_stream(&name).await.map_err(|e| e.to_string())?;
            let info = s.info().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(info.state.last_sequence)
        })?;
        match out {
            None => Err(LogError::Unavailable {
                partition: p,
                reason: "no answer in time".into(),
            }),
            Some(r) => r.map_err(|reason| LogError::Unavailable {
                partition: p,
                reason,
            }),
        }
    }
}

fn unknown(op: &'static str, reason: String) -> LogError {
    LogError::Unknown {
        op,
        reason,
        resolve: if op == "commit" {
            "resolve it with resolve_commit (re-reads the reactor's checkpoint subject)"
        } else {
            "append the same proposal (same id or idempotency key) again: the server \
             de-duplicates it within its window"
        },
    }
}

/// The JetStream API error behind a client error, when the server sent one.
fn api_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a jetstream::Error> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(j) = x.downcast_ref::<jetstream::Error>() {
            return Some(j);
        }
        cur = x.source();
    }
    None
}

fn publish_error(p: u32, sending: bool, e: jetstream::context::PublishError) -> LogError {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        // The message never left: nothing stored.
        _ if sending => LogError::Unavailable {
            partition: p,
            reason: e.to_string(),
        },
        K::StreamNotFound => LogError::Unavailable {
            partition: p,
            reason: "no server answered for the stream (no responders)".into(),
        },
        K::TimedOut | K::BrokenPipe => unknown("append", e.to_string()),
        _ => match api_error(&e) {
            Some(j) => LogError::Refused {
                op: "append",
                code: j.error_code().0,
                description: j.to_string(),
            },
            None => unknown("append", e.to_string()),
        },
    }
}

fn batch_error(
    commit: &Commit,
    adding: bool,
    e: jetstream_extra::batch_publish::BatchPublishError,
) -> LogError {
    use BatchPublishErrorKind as K;
    let p = commit.partition;
    if adding {
        // The commit message was never sent: the server stores nothing of
        // an uncommitted batch (it abandons it after 10 s).
        return LogError::Unavailable {
            partition: p,
            reason: format!("sending the batch: {e}"),
        };
    }
    if let Some(j) = api_error(&e) {
        if j.error_code().0 == WRONG_LAST_SEQUENCE {
            return LogError::Fenced {
                partition: p,
                reactor: commit.reactor.clone(),
                expected: commit.expected,
            };
        }
    }
    match e.kind() {
        K::BatchPublishIncomplete => LogError::Unavailable {
            partition: p,
            reason: format!("the server abandoned the batch: {e}"),
        },
        K::Request => {
            let no_responders = e
                .source()
                .and_then(|s| s.downcast_ref::<async_nats::RequestError>())
                .is_some_and(|r| r.kind() == async_nats::RequestErrorKind::NoResponders);
            if no_responders {
                LogError::Unavailable {
                    partition: p,
                    reason: "no server answered for the stream (no responders)".into(),
                }
            } else {
                unknown("commit", e.to_string())
            }
        }
        K::Serialization | K::InvalidAck | K::Other if api_error(&e).is_none() => {
            unknown("commit", e.to_string())
        }
        _ => {
            let (code, description) = api_error(&e)
                .map(|j| (j.error_code().0, j.to_string()))
                .unwrap_or((0, e.to_string()));
            LogError::Refused {
                op: "commit",
                code,
                description,
            }
        }
    }
}
